// Helpers of the long-row top-k (topk_long.cu): thread-block-cluster access, block scans, the survivor sort,
// and the chunked passes of the radix select. Compiled by NVRTC only; no host headers.
//
// Everything here is generic in NT (threads per block, a power of two in 64..1024). Names carry a tl_ prefix
// so this header can sit beside topk.cuh in one translation unit.
#pragma once

#include "common.cuh"

namespace dsv4 {

typedef unsigned long long tl_u64;
typedef unsigned tl_u32;

constexpr int kTlBins = 2048;        // 11-bit digits (the last level uses 10 bits of them)
constexpr int kTlMaxCluster = 8;     // blocks per row at most (the portable cluster size)
constexpr int kTlCtlBytes = 512;     // the control block at the start of dynamic shared memory (host: same)

// floor(log2(X)) at compile time.
template <int X>
struct TlLog2 {
  static constexpr int value = X <= 1 ? 0 : 1 + TlLog2<(X >> 1)>::value;
};
template <>
struct TlLog2<0> {
  static constexpr int value = 0;
};

// The rank key of a survivor: the order key in the high word, ~index in the low word, so a plain unsigned
// compare orders by value (NaN lowest) and then by lower index. Every real key is nonzero; 0 is padding.
__device__ __forceinline__ tl_u64 tl_key(tl_u32 okey, tl_u32 index) { return ((tl_u64)okey << 32) | (tl_u64)(~index); }
__device__ __forceinline__ tl_u32 tl_key_index(tl_u64 key) { return ~(tl_u32)key; }

// The input value of a survivor: the inverse of float_order_key where it is one to one; NaN (key 0) and
// zeros (key 0x80000000, the sign folded) are read back from the row so their bits come out unchanged.
__device__ __forceinline__ float tl_key_value(tl_u64 key, const float* __restrict__ row) {
  const tl_u32 k = (tl_u32)(key >> 32);
  if (k == 0u || k == 0x80000000u) return __ldg(row + tl_key_index(key));
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// ---------------------------------------------------------------------------------------------------------
// Thread block clusters (sm_90+). One cluster handles one row; its blocks read each other's shared memory
// (distributed shared memory) through generic pointers from mapa. On sm_80 every cluster is one block: the
// host never launches more there, and these compile to their one-block meaning.
// ---------------------------------------------------------------------------------------------------------
#ifndef DSV4_TL_EMULATION
extern __shared__ __align__(16) unsigned char tl_dyn_smem[];
__device__ __forceinline__ unsigned char* tl_smem() { return tl_dyn_smem; }

__device__ __forceinline__ tl_u32 tl_cluster_rank() {
#if __CUDA_ARCH__ >= 900
  tl_u32 r;
  asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
#else
  return 0;
#endif
}
__device__ __forceinline__ tl_u32 tl_cluster_size() {
#if __CUDA_ARCH__ >= 900
  tl_u32 n;
  asm("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
  return n;
#else
  return 1;
#endif
}
// Cluster barrier halves. arrive has release semantics and wait acquire semantics (the PTX defaults): what a
// block wrote to any shared memory of the cluster before arriving is visible to every block after its wait.
// Every thread of every block must call them, in uniform control flow.
__device__ __forceinline__ void tl_cluster_arrive() {
#if __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.aligned;" ::: "memory");
#else
  __syncthreads();
#endif
}
__device__ __forceinline__ void tl_cluster_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}
// The same object (a shared-memory pointer of this block) in block `rank` of the cluster.
template <typename T>
__device__ __forceinline__ T* tl_peer(T* p, tl_u32 rank) {
#if __CUDA_ARCH__ >= 900
  unsigned long long q;
  asm("mapa.u64 %0, %1, %2;" : "=l"(q) : "l"((unsigned long long)p), "r"(rank));
  return reinterpret_cast<T*>(q);
#else
  (void)rank;
  return p;
#endif
}
#endif  // DSV4_TL_EMULATION

// A block barrier that is also a cluster barrier when the row is split over several blocks.
__device__ __forceinline__ void tl_sync(int cl) {
  if (cl > 1) {
    tl_cluster_arrive();
    tl_cluster_wait();
  } else {
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Shared-memory layout of a block: the control block, two histograms, the survivor list, then the pool
// (the row slice's keys and/or the candidate buffers; later the copies of the other blocks' survivors).
// ---------------------------------------------------------------------------------------------------------
struct TlCtl {
  tl_u32 bin, above, cnt, pre, mine;   // the last histogram merge: boundary bin and its counts
  tl_u32 n_emit;                       // survivors in this block's list (read by the cluster at the end)
  tl_u32 scratch[32];                  // block scan scratch
  tl_u64 scratch64[32];
};
static_assert(sizeof(TlCtl) <= kTlCtlBytes, "control block");

// ---------------------------------------------------------------------------------------------------------
// Block scans (every thread must call; they synchronise the block).
// ---------------------------------------------------------------------------------------------------------
template <int NT>
__device__ __forceinline__ tl_u32 tl_scan_excl(tl_u32 v, tl_u32* scratch, tl_u32* total) {
  static_assert(NT % 32 == 0 && NT >= 64 && NT <= 1024, "block size");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  tl_u32 x = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const tl_u32 y = __shfl_up_sync(0xffffffffu, x, d);
    if (lane >= d) x += y;
  }
  if (lane == 31) scratch[warp] = x;
  __syncthreads();
  if (warp == 0) {
    tl_u32 t = lane < NT / 32 ? scratch[lane] : 0u;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const tl_u32 y = __shfl_up_sync(0xffffffffu, t, d);
      if (lane >= d) t += y;
    }
    scratch[lane] = t;
  }
  __syncthreads();
  const tl_u32 before = warp > 0 ? scratch[warp - 1] : 0u;
  *total = scratch[NT / 32 - 1];
  __syncthreads();
  return before + x - v;
}

template <int NT>
__device__ __forceinline__ tl_u64 tl_scan_excl64(tl_u64 v, tl_u64* scratch, tl_u64* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  tl_u64 x = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const tl_u64 y = __shfl_up_sync(0xffffffffu, x, d);
    if (lane >= d) x += y;
  }
  if (lane == 31) scratch[warp] = x;
  __syncthreads();
  if (warp == 0) {
    tl_u64 t = lane < NT / 32 ? scratch[lane] : 0ull;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const tl_u64 y = __shfl_up_sync(0xffffffffu, t, d);
      if (lane >= d) t += y;
    }
    scratch[lane] = t;
  }
  __syncthreads();
  const tl_u64 before = warp > 0 ? scratch[warp - 1] : 0ull;
  *total = scratch[NT / 32 - 1];
  __syncthreads();
  return before + x - v;
}

// ---------------------------------------------------------------------------------------------------------
// Histogram merge over the cluster: the histograms `h` (this block's; the same offset in every block) are
// summed bin by bin over the cluster's blocks in rank order (integers: the result is exact), and the bin
// holding the need-th largest element is found (counting from the top bin down). Every block computes the
// same answer. Results in ctl: bin, above (elements in higher bins, all blocks), cnt (elements in the bin,
// all blocks), pre (elements in the bin in blocks of lower rank, i.e. lower column indices), mine (in this
// block). The caller must have made every block's h complete and visible (tl_sync) and must not change any
// h until every block has passed the next tl_sync. need must be in 1..(total count).
// ---------------------------------------------------------------------------------------------------------
template <int NT>
__device__ __forceinline__ void tl_merge(TlCtl* ctl, const tl_u32* h, int cl, int rank, tl_u32 need) {
  constexpr int BPT = kTlBins / NT;   // bins per thread, held from the top bin down
  static_assert(BPT >= 2 && BPT * NT == kTlBins, "bins per thread");
  const int t = threadIdx.x;
  const int first = kTlBins - BPT * (t + 1);   // lowest bin of this thread; bin first + BPT - 1 - u is slot u
  // All loads first (unrolled over the largest cluster), so the remote loads of every block are in flight at once.
  tl_u32 v[kTlMaxCluster][BPT];
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c) {
#pragma unroll
    for (int u = 0; u < BPT; ++u) v[c][u] = 0;
    if (c < cl) {
      const tl_u32* hc = c == rank ? h : tl_peer(h, (tl_u32)c);
      if constexpr (BPT == 2) {
        const uint2 q = *reinterpret_cast<const uint2*>(hc + first);
        v[c][0] = q.x, v[c][1] = q.y;
      } else {
#pragma unroll
        for (int u = 0; u < BPT; u += 4) {
          const uint4 q = *reinterpret_cast<const uint4*>(hc + first + u);
          v[c][u] = q.x, v[c][u + 1] = q.y, v[c][u + 2] = q.z, v[c][u + 3] = q.w;
        }
      }
    }
  }
  tl_u32 g[BPT], pre[BPT], mine[BPT];
#pragma unroll
  for (int u = 0; u < BPT; ++u) {   // slot u is bin first + BPT - 1 - u
    g[u] = 0, pre[u] = 0, mine[u] = 0;
#pragma unroll
    for (int c = 0; c < kTlMaxCluster; ++c) {
      const tl_u32 x = v[c][BPT - 1 - u];
      g[u] += x;
      if (c < rank) pre[u] += x;
      if (c == rank) mine[u] = x;
    }
  }
  tl_u32 local = 0;
#pragma unroll
  for (int u = 0; u < BPT; ++u) local += g[u];
  tl_u32 total;
  tl_u32 above = tl_scan_excl<NT>(local, ctl->scratch, &total);
#pragma unroll
  for (int u = 0; u < BPT; ++u) {
    if (above < need && above + g[u] >= need) {   // exactly one slot in the block
      ctl->bin = (tl_u32)(first + BPT - 1 - u);
      ctl->above = above;
      ctl->cnt = g[u];
      ctl->pre = pre[u];
      ctl->mine = mine[u];
    }
    above += g[u];
  }
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------------------
// Sort of the survivor list: s[0..m) descending, m a power of two >= 64. Bitonic network; the strides below
// 64 run in registers (two keys per lane, shuffles), the larger ones through shared memory.
// ---------------------------------------------------------------------------------------------------------
// One compare-exchange stage of stride st (< 64) inside a 64-key segment: lane holds keys a (position
// base + lane) and b (position base + 32 + lane); size is the bitonic block size (> st).
__device__ __forceinline__ void tl_warp_stage(tl_u64& a, tl_u64& b, int pos_a, int size, int st) {
  if (st == 32) {
    const bool desc = (pos_a & size) == 0;   // pair (pos_a, pos_a + 32)
    if ((a < b) == desc) {
      const tl_u64 t = a;
      a = b, b = t;
    }
    return;
  }
  const tl_u64 pa = __shfl_xor_sync(0xffffffffu, a, st);
  const tl_u64 pb = __shfl_xor_sync(0xffffffffu, b, st);
  const int pos_b = pos_a + 32;
  // The lower position of a pair keeps the larger key when the block sorts descending, and vice versa.
  const bool max_a = ((pos_a & st) == 0) == ((pos_a & size) == 0);
  const bool max_b = ((pos_b & st) == 0) == ((pos_b & size) == 0);
  a = max_a ? (a > pa ? a : pa) : (a < pa ? a : pa);
  b = max_b ? (b > pb ? b : pb) : (b < pb ? b : pb);
}

template <int NT>
__device__ __forceinline__ void tl_sort_desc(tl_u64* s, int m) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int segs = m >> 6;
  // Sizes 2..64: every 64-key segment on its own.
  for (int seg = warp; seg < segs; seg += NT / 32) {
    const int base = seg << 6;
    tl_u64 a = s[base + lane], b = s[base + 32 + lane];
#pragma unroll 1
    for (int size = 2; size <= 64; size <<= 1)
#pragma unroll 1
      for (int st = size >> 1; st > 0; st >>= 1) tl_warp_stage(a, b, base + lane, size, st);
    s[base + lane] = a, s[base + 32 + lane] = b;
  }
  __syncthreads();
  for (int size = 128; size <= m; size <<= 1) {
    for (int st = size >> 1; st >= 64; st >>= 1) {
      for (int t = threadIdx.x; t < (m >> 1); t += NT) {
        const int i = 2 * t - (t & (st - 1));
        const int j = i + st;
        const bool desc = (i & size) == 0;
        const tl_u64 a = s[i], b = s[j];
        if ((a < b) == desc) s[i] = b, s[j] = a;
      }
      __syncthreads();
    }
    for (int seg = warp; seg < segs; seg += NT / 32) {
      const int base = seg << 6;
      tl_u64 a = s[base + lane], b = s[base + 32 + lane];
#pragma unroll
      for (int st = 32; st > 0; st >>= 1) tl_warp_stage(a, b, base + lane, size, st);
      s[base + lane] = a, s[base + 32 + lane] = b;
    }
    __syncthreads();
  }
}

// The number of keys greater than x in each of up to kTlMaxCluster descending lists (list c: lst + off[c],
// n[c] keys; n[c] == 0 for absent lists), summed. Binary lifting over all lists at once, so the loads of
// one step are independent.
__device__ __forceinline__ tl_u32 tl_count_greater(const tl_u64* lst, const tl_u32 (&off)[kTlMaxCluster],
                                                   const tl_u32 (&n)[kTlMaxCluster], int top_step, tl_u64 x) {
  tl_u32 pos[kTlMaxCluster];
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c) pos[c] = 0;
  for (int step = top_step; step >= 0; --step) {
#pragma unroll
    for (int c = 0; c < kTlMaxCluster; ++c) {
      const tl_u32 q = pos[c] + (1u << step);
      if (q <= n[c] && lst[off[c] + q - 1] > x) pos[c] = q;
    }
  }
  tl_u32 sum = 0;
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c) sum += pos[c];
  return sum;
}

// ---------------------------------------------------------------------------------------------------------
// Sources of a pass: the block's slice of the row in global memory (SMEM = false), or shared memory
// (SMEM = true): the slice's keys (dense: the key of column lo + i at i; idx == nullptr) or a candidate
// buffer (key and column index arrays, in column order). A chunk gives each thread G groups of 4
// consecutive positions: group g, thread t holds positions base + (g * NT + t) * 4 + e, e = 0..3, so the
// order (g, t, e) is the source's order.
// ---------------------------------------------------------------------------------------------------------
template <int NT>
__device__ __forceinline__ int tl_pos(int base, int g, int e) {
  return base + (g * NT + (int)threadIdx.x) * 4 + e;
}

// Loads a chunk of keys and their column indices into registers. Positions >= n load garbage that the
// caller masks.
template <int NT, int G, bool SMEM>
__device__ __forceinline__ void tl_load(int base, int n, const float* __restrict__ pg, bool vec, int lo,
                                        const tl_u32* keys, const tl_u32* idx, tl_u32 (&key)[4 * G],
                                        tl_u32 (&ix)[4 * G]) {
  if constexpr (!SMEM) {
    float v[4 * G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int p0 = tl_pos<NT>(base, g, 0);
      if (vec && p0 + 3 < n) {
        const float4 q = __ldg(reinterpret_cast<const float4*>(pg + p0));
        v[4 * g] = q.x, v[4 * g + 1] = q.y, v[4 * g + 2] = q.z, v[4 * g + 3] = q.w;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) v[4 * g + e] = p0 + e < n ? __ldg(pg + p0 + e) : 0.0f;
      }
    }
#pragma unroll
    for (int i = 0; i < 4 * G; ++i)
      key[i] = float_order_key(v[i]), ix[i] = (tl_u32)(lo + tl_pos<NT>(base, i >> 2, i & 3));
  } else {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int p0 = tl_pos<NT>(base, g, 0);
      uint4 q = make_uint4(0u, 0u, 0u, 0u), r = make_uint4(0u, 0u, 0u, 0u);
      if (p0 < n) {
        q = *reinterpret_cast<const uint4*>(keys + p0);
        if (idx) {
          r = *reinterpret_cast<const uint4*>(idx + p0);
        } else {
          const tl_u32 c = (tl_u32)(lo + p0);
          r = make_uint4(c, c + 1, c + 2, c + 3);
        }
      }
      key[4 * g] = q.x, key[4 * g + 1] = q.y, key[4 * g + 2] = q.z, key[4 * g + 3] = q.w;
      ix[4 * g] = r.x, ix[4 * g + 1] = r.y, ix[4 * g + 2] = r.z, ix[4 * g + 3] = r.w;
    }
  }
}

// Appends the keys flagged in `bits` (bit i: key[i], column ix[i]) to the block's survivor list, in any
// order. Warp-uniform.
template <int G>
__device__ __forceinline__ void tl_emit(tl_u32 bits, const tl_u32 (&key)[4 * G], const tl_u32 (&ix)[4 * G],
                                        TlCtl* ctl, tl_u64* list) {
  const int lane = threadIdx.x & 31;
  const tl_u32 cnt = (tl_u32)__popc(bits);
  if (!__any_sync(0xffffffffu, cnt != 0)) return;
  tl_u32 incl = cnt;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const tl_u32 y = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += y;
  }
  tl_u32 slot = 0;
  if (lane == 31) slot = atomicAdd(&ctl->n_emit, incl);
  slot = __shfl_sync(0xffffffffu, slot, 31) + incl - cnt;
#pragma unroll
  for (int i = 0; i < 4 * G; ++i)
    if ((bits >> i) & 1u) list[slot++] = tl_key(key[i], ix[i]);
}

// Ranks the keys flagged in `bits` in source order across the block: the flagged key of order r within this
// chunk gets *running + r; *running grows by the chunk's count. Calls on(i, rank) for each. Block-uniform.
template <int NT, int G, typename F>
__device__ __forceinline__ void tl_ordered(tl_u32 bits, TlCtl* ctl, tl_u32* running, F&& on) {
  if (!__syncthreads_or(bits != 0)) return;
  static_assert(G <= 4, "16-bit fields");
  tl_u64 packed = 0;
#pragma unroll
  for (int g = 0; g < G; ++g) packed |= (tl_u64)__popc((bits >> (4 * g)) & 0xfu) << (16 * g);
  tl_u64 tot;
  const tl_u64 ex = tl_scan_excl64<NT>(packed, ctl->scratch64, &tot);
  tl_u32 before = *running;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    tl_u32 r = before + (tl_u32)((ex >> (16 * g)) & 0xffffu);
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if ((bits >> (4 * g + e)) & 1u) on(4 * g + e, r++);
    before += (tl_u32)((tot >> (16 * g)) & 0xffffu);
  }
  *running = before;
}

}  // namespace dsv4
