// Not part of the build: a standalone prototype (nvcc -O3 -arch=sm_90a -std=c++17 topk_sample_skeleton.cu -o tss)
// of the sample-threshold select for one long row (docs/performance.md, "The single long row: a sample threshold";
// the candidate counts come from topk_sample_study.c). One row of 131072 floats, one cluster of 16 blocks of 512
// threads, block r owning columns [r * 8192, (r + 1) * 8192):
//   1. every block loads its slice (16 scores a thread, kept in registers as order keys) and the same sample
//      (4096 scores, 8 a thread: 32 chunks of 128 consecutive scores, or every 32nd score: SAMPLE_CHUNKS below);
//   2. every block finds a threshold T from its copy of the sample: a block-local radix select of two 12-bit
//      levels (SELECT_LEVELS), T = the lower edge of the 24-bit bin that holds the q-th largest sample key
//      (q = 2 k S / cols), the same T in every block;
//   3. the scores whose key is >= T go to the block's candidate list in shared memory as composite keys
//      (order key << 32 | ~column: distinct, in output order): a thread counts its hits, a warp scan places
//      them, one shared atomic a warp;
//   4. one cluster barrier (a relaxed arrive after a fence on the block's shared memory, as topk_long's); every
//      warp reads the 16 counts (and the blocks' largest candidate keys) itself, lane b block b's;
//   5. every block copies all candidates into its own shared memory and counts them into 2048 buckets by where
//      their order key lies between T and the largest (a non-decreasing map), arrives at a second cluster
//      barrier, and turns the counts into the number of candidates above each bucket;
//   6. once every block has passed that barrier (no block reads another's list any more), each block scatters
//      all candidates by bucket into the space of its own list, and ranks each of its own candidates as the
//      candidates of the buckets above its bucket plus the larger keys in its bucket, writing it to its slot
//      when the rank is below k. A bucket of more than kBucketMax keys (ties) makes the block count each of its
//      candidates against all (rank_and_write).
// A row with fewer than k or more than kCap candidates would fall back to the exact radix select (topk_long.cu);
// here it is only reported. To split the time, STOP = 2 ends after the loads, 3 after the threshold, 1 after step
// 4's counts; the whole form also prints, from thread 0 of each block, the cycles at each phase's end. The form
// first measured (three levels with runtime shapes, a ballot and an atomic a key in the filter, cooperative
// groups' cluster.sync, the counts read by one thread, every candidate counted against all) is in the history
// (commit 4596206). H100 figures: docs/performance.md, "the sixth session".
// Checked against a host sort; timed as back-to-back calls in a CUDA graph (per call, median of 15 replays of 200).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "time_graph.cuh"

constexpr int kNT = 512, kCL = 16, kS = 4096, kSPT = kS / kNT, kCap = 8192, kCols = 131072;
constexpr int kSlice = kCols / kCL, kPT = kSlice / kNT;   // 8192 columns a block, 16 a thread
// The placement's buckets (in the threshold's histogram space, free by then) and the most keys a bucket may hold
// before the block falls back to counting every candidate against all.
constexpr int kNB = 2048, kBucketMax = 64;

__host__ __device__ inline unsigned okey(float f) {   // order key: larger float -> larger key; NaN 0; -0 == +0
  unsigned u;
  memcpy(&u, &f, 4);
  if (f != f) return 0u;
  if (f == 0.0f) u = 0u;
  return (u >> 31) ? ~u : (u | 0x80000000u);
}
__host__ __device__ inline float key_value(unsigned k) {
  const unsigned u = (k >> 31) ? (k & 0x7fffffffu) : ~k;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

struct Smem {
  unsigned hist[2][4096];           // the threshold's two radix levels (both zeroed at the start)
  unsigned scan[32];
  unsigned pick[2];
  unsigned count;                   // this block's candidates
  unsigned maxhi;                   // the largest order key among them
  unsigned crowded;                 // the bucket placement met a bucket of more than kBucketMax keys
  unsigned long long own[kSlice];   // this block's candidates
  unsigned long long all[kCap];     // every block's, in block order
  alignas(16) unsigned allhi[kCap + 512];       // their order keys (the high words), zero-padded to a multiple of 512
};

// Cluster barrier halves, as topk_long.cuh's: blocks exchange data through shared memory only, so the release is
// a fence on this block's shared memory at cluster scope before a relaxed arrive (the default release arrive is a
// GPU-wide fence: ~1400 cycles against ~105 on H100, docs/experiments/primitives.cu).
__device__ __forceinline__ void cl_arrive() {
  asm volatile("fence.release.sync_restrict::shared::cta.cluster;\n\tbarrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void cl_wait() { asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); }
template <typename T>
__device__ __forceinline__ const T* peer(const T* p, unsigned rank) {
  unsigned long long q;
  asm("mapa.u64 %0, %1, %2;" : "=l"(q) : "l"((unsigned long long)p), "r"(rank));
  return reinterpret_cast<const T*>(q);
}

// Sample i's column. SAMPLE_CHUNKS (default): 32 chunks of 128 consecutive scores, 4096 columns apart (a warp's
// load is 4 lines); SAMPLE_CHUNKS=0: every 32nd score (a warp's load is 32 lines, one L1 request each: the form
// measured first).
#ifndef SAMPLE_CHUNKS
#define SAMPLE_CHUNKS 1
#endif
// SELECT_LEVELS: the threshold's radix levels, 2 (default: a 24-bit threshold) or 1 (12 bits: more candidates).
#ifndef SELECT_LEVELS
#define SELECT_LEVELS 2
#endif
__device__ __forceinline__ int sample_col(int i) {
  return SAMPLE_CHUNKS ? (i / 128) * (kCols / (kS / 128)) + i % 128 : i * (kCols / kS);
}

// One radix level of the threshold (L = 0: key bits 31..20; L = 1: bits 19..8) over the sample keys whose
// higher bits equal `prefix`: the 12-bit digit of the need-th largest (1-based), and need within that digit.
// Compile-time shapes: every loop is unrolled, thread t owns bins [8t, 8t + 8) (two 16-byte loads).
template <int L>
__device__ __forceinline__ void sample_level(const unsigned (&sk)[kSPT], unsigned& prefix, unsigned& need, Smem& sm) {
  constexpr int shift = 20 - 12 * L;
  constexpr unsigned mask = L == 0 ? 0u : 0xfff00000u;
  unsigned* h = sm.hist[L];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < kSPT; ++i)
    if ((sk[i] & mask) == prefix) atomicAdd(&h[(sk[i] >> shift) & 4095u], 1u);
  __syncthreads();
  const uint4 lo = reinterpret_cast<const uint4*>(h)[2 * threadIdx.x];
  const uint4 hi = reinterpret_cast<const uint4*>(h)[2 * threadIdx.x + 1];
  const unsigned c[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
  unsigned mine = 0u;
#pragma unroll
  for (int j = 0; j < 8; ++j) mine += c[j];
  unsigned incl = mine;   // from the top: this lane's and the higher lanes' bins
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const unsigned o = __shfl_down_sync(0xffffffffu, incl, d);
    if (lane + d < 32) incl += o;
  }
  if (lane == 0) sm.scan[warp] = incl;
  __syncthreads();
  const unsigned wt = lane < kNT / 32 ? sm.scan[lane] : 0u;
  const unsigned later = __reduce_add_sync(0xffffffffu, lane > warp ? wt : 0u);   // the warps above
  unsigned acc = later + incl - mine;   // bins above this thread's
  if (acc < need && need <= acc + mine) {
#pragma unroll
    for (int j = 7; j >= 0; --j) {
      if (acc < need && need <= acc + c[j]) sm.pick[0] = (unsigned)(8 * threadIdx.x + j), sm.pick[1] = need - acc;
      acc += c[j];
    }
  }
  __syncthreads();
  prefix |= sm.pick[0] << shift;
  need = sm.pick[1];
  if (L == 0) __syncthreads();   // pick is rewritten by the next level
}

// The threshold: the lower edge of the 24-bit bin that holds the q-th largest sample key (at least q sample keys
// are at or above it).
__device__ __forceinline__ unsigned sample_select(const unsigned (&sk)[kSPT], unsigned q, Smem& sm) {
  unsigned prefix = 0u, need = q;
  sample_level<0>(sk, prefix, need, sm);
#if SELECT_LEVELS > 1
  sample_level<1>(sk, prefix, need, sm);
#endif
  return prefix;
}

// 5. The block's candidates ranked against all `total` (a group of P threads a candidate; P a compile-time width):
// the rank of key c is the number of larger keys, counted on the order keys alone (allhi, four to a 16-byte load,
// 16 keys a thread an iteration, no bounds test: the padding is 0, larger than no key), with the equal order keys
// counted beside; only a key whose order key another candidate shares takes a second pass over the composite keys
// (ties: the lower column first). Written where the rank is below k.
template <int P>
__device__ __forceinline__ void rank_and_write_p(Smem& sm, const unsigned long long* mine_list, unsigned n,
                                                 unsigned total, int k, float* __restrict__ out_v,
                                                 int* __restrict__ out_i) {
  constexpr unsigned groups = kNT / P;
  constexpr int U = 4;   // 16-byte loads in flight a thread
  const unsigned g = threadIdx.x / P, gl = threadIdx.x % P;
  const unsigned m_end = (((total + 511u) & ~511u) / 4u) / P;   // 16-byte loads a lane (a multiple of U)
  const uint4* hi4 = reinterpret_cast<const uint4*>(sm.allhi);
  for (unsigned i0 = 0; i0 < n; i0 += groups) {
    const unsigned i = i0 + g;
    const unsigned long long mine = i < n ? mine_list[i] : ~0ull;
    const unsigned mh = (unsigned)(mine >> 32);
    unsigned rank = 0u, eq = 0u;
    for (unsigned m0 = 0; m0 < m_end; m0 += U) {
      uint4 v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = hi4[gl + P * (m0 + u)];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        rank += (v[u].x > mh) + (v[u].y > mh) + (v[u].z > mh) + (v[u].w > mh);
        eq += (v[u].x == mh) + (v[u].y == mh) + (v[u].z == mh) + (v[u].w == mh);
      }
    }
#pragma unroll
    for (int d = P / 2; d > 0; d >>= 1) {
      rank += __shfl_down_sync(0xffffffffu, rank, d, P);
      eq += __shfl_down_sync(0xffffffffu, eq, d, P);
    }
    rank = __shfl_sync(0xffffffffu, rank, 0, P);
    eq = __shfl_sync(0xffffffffu, eq, 0, P);
    // A shared order key (the padding's 0s aside). The test is uniform over the group, not the warp: the warp
    // runs the pass if any of its groups needs it (the shuffles need the whole warp).
    const bool need_tie = eq > 1u + (mh == 0u ? ((total + 511u) & ~511u) - total : 0u);
    if (__any_sync(0xffffffffu, need_tie)) {
      unsigned tie = 0u;
      for (unsigned j = gl; j < total; j += P) {
        const unsigned long long c = sm.all[j];
        tie += ((unsigned)(c >> 32) == mh && c > mine) ? 1u : 0u;
      }
#pragma unroll
      for (int d = P / 2; d > 0; d >>= 1) tie += __shfl_down_sync(0xffffffffu, tie, d, P);
      if (need_tie) rank += tie;
    }
    if (gl == 0 && i < n && rank < (unsigned)k) {
      out_v[rank] = key_value(mh);
      out_i[rank] = (int)~(unsigned)mine;
    }
  }
}
// The counting form for the block's n candidates mine_list[0, n) (the crowded-bucket fallback of the placement).
__device__ void rank_and_write(Smem& sm, const unsigned long long* mine_list, unsigned n, unsigned total, int k,
                               float* __restrict__ out_v, int* __restrict__ out_i) {
  if (n * 32 <= (unsigned)kNT) rank_and_write_p<32>(sm, mine_list, n, total, k, out_v, out_i);
  else if (n * 16 <= (unsigned)kNT) rank_and_write_p<16>(sm, mine_list, n, total, k, out_v, out_i);
  else if (n * 8 <= (unsigned)kNT) rank_and_write_p<8>(sm, mine_list, n, total, k, out_v, out_i);
  else rank_and_write_p<4>(sm, mine_list, n, total, k, out_v, out_i);
}

// The placement's bucket of order key h (every candidate's is in [T, gmax]): non-decreasing in h.
__device__ __forceinline__ unsigned bucket_of(unsigned h, unsigned T, float scale) {
  return min((unsigned)((float)(h - T) * scale), (unsigned)kNB - 1u);
}

// above[b] = the candidates in buckets above b, from the counts cnt (every thread: 4 buckets each); cnt is zeroed
// for the scatter's fill counts. The caller synchronises before and after.
__device__ __forceinline__ void bucket_scan(unsigned* cnt, unsigned* above, unsigned* scan) {
  static_assert(kNB == 4 * kNT, "four buckets a thread");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint4 c = reinterpret_cast<const uint4*>(cnt)[threadIdx.x];
  const unsigned mine = c.x + c.y + c.z + c.w;
  unsigned incl = mine;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const unsigned o = __shfl_down_sync(0xffffffffu, incl, d);
    if (lane + d < 32) incl += o;
  }
  if (lane == 0) scan[warp] = incl;
  __syncthreads();
  const unsigned wt = lane < kNT / 32 ? scan[lane] : 0u;
  const unsigned base = __reduce_add_sync(0xffffffffu, lane > warp ? wt : 0u) + incl - mine;
  reinterpret_cast<uint4*>(above)[threadIdx.x] =
      make_uint4(base + c.w + c.z + c.y, base + c.w + c.z, base + c.w, base);
  reinterpret_cast<uint4*>(cnt)[threadIdx.x] = make_uint4(0u, 0u, 0u, 0u);
}

// Phase stamps of the whole form (STOP = 0): thread 0 of each block reads clock64 at each phase boundary; the host
// prints the mean cycles over the blocks from the kernel's start, for the last call of a timed graph.
constexpr int kStamps = 9;
__device__ long long g_stamp[kCL][kStamps];
#define STAMP(i) \
  do {                                                              \
    if (STOP == 0 && threadIdx.x == 0) g_stamp[r][i] = clock64();    \
  } while (0)

template <int STOP>
__global__ void __cluster_dims__(kCL, 1, 1) __launch_bounds__(kNT)
    topk_sample(const float* __restrict__ row, int k, float* __restrict__ out_v, int* __restrict__ out_i,
                int* __restrict__ status) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  unsigned r;
  asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  const int tid = threadIdx.x, lane = tid & 31;
  STAMP(0);
  // 1. slice (4 x 16-byte loads a thread) and sample; the histograms are zeroed while the loads are in flight.
  unsigned key[kPT];
  const float4* p4 = reinterpret_cast<const float4*>(row + (size_t)r * kSlice);
  float4 raw[kPT / 4];
#pragma unroll
  for (int c = 0; c < kPT / 4; ++c) raw[c] = __ldg(p4 + tid + c * kNT);
  float sraw[kSPT];
#pragma unroll
  for (int i = 0; i < kSPT; ++i) sraw[i] = __ldg(row + sample_col(tid + i * kNT));
#pragma unroll
  for (int i = 0; i < 2 * 4096 / 4 / kNT; ++i) reinterpret_cast<uint4*>(sm.hist)[tid + i * kNT] = make_uint4(0, 0, 0, 0);
  if (tid == 0) sm.count = 0u, sm.maxhi = 0u, sm.crowded = 0u;
#pragma unroll
  for (int c = 0; c < kPT / 4; ++c)
    key[4 * c] = okey(raw[c].x), key[4 * c + 1] = okey(raw[c].y), key[4 * c + 2] = okey(raw[c].z),
    key[4 * c + 3] = okey(raw[c].w);
  unsigned sk[kSPT];
#pragma unroll
  for (int i = 0; i < kSPT; ++i) sk[i] = okey(sraw[i]);
  __syncthreads();   // the zeroed histograms
  STAMP(1);
  if constexpr (STOP == 2) {   // the loads alone (their keys kept live)
    unsigned x = 0u;
#pragma unroll
    for (int i = 0; i < kPT; ++i) x ^= key[i];
#pragma unroll
    for (int i = 0; i < kSPT; ++i) x ^= sk[i];
    if (x == 0x12345u) *status = 1;
    return;
  }
  // 2. the threshold.
  const unsigned q = (unsigned)(2 * (long long)k * kS / kCols);
  const unsigned T = sample_select(sk, q, sm);
  STAMP(2);
  if constexpr (STOP == 3) {   // the loads and the threshold
    unsigned x = T;
#pragma unroll
    for (int i = 0; i < kPT; ++i) x ^= key[i];
    if (x == 0x12345u) *status = 1;
    return;
  }
  // 3. filter: a thread counts its hits, a warp scan places them, one shared atomic a warp.
  unsigned cnt = 0u;
#pragma unroll
  for (int i = 0; i < kPT; ++i) cnt += key[i] >= T;
  unsigned incl = cnt;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const unsigned o = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += o;
  }
  unsigned base = 0u;
  if (lane == 31 && incl != 0u) base = atomicAdd(&sm.count, incl);
  unsigned pos = __shfl_sync(0xffffffffu, base, 31) + incl - cnt;
  unsigned kmax = 0u;
#pragma unroll
  for (int i = 0; i < kPT; ++i) kmax = max(kmax, key[i]);
  kmax = __reduce_max_sync(0xffffffffu, kmax);
  if (lane == 0 && kmax >= T) atomicMax(&sm.maxhi, kmax);
  unsigned* const bcnt = sm.hist[0];   // the placement's bucket counts (the threshold is done with hist)
  unsigned* const above = sm.hist[1];
  reinterpret_cast<uint4*>(bcnt)[tid] = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
  for (int i = 0; i < kPT; ++i)
    if (key[i] >= T) {
      const unsigned col = r * kSlice + 4 * (tid + (i / 4) * kNT) + i % 4;
      sm.own[pos++] = ((unsigned long long)key[i] << 32) | (unsigned)~col;
    }
  // 4. counts over the cluster: one barrier; then every warp reads the 16 counts itself (lane b: block b's),
  // so no block-wide step follows.
  STAMP(3);
  cl_arrive();
  cl_wait();
  STAMP(4);
  const unsigned cb = lane < kCL ? *peer(&sm.count, (unsigned)lane) : 0u;
  const unsigned gmax = __reduce_max_sync(0xffffffffu, lane < kCL ? *peer(&sm.maxhi, (unsigned)lane) : 0u);
  unsigned off = cb;   // inclusive scan over the blocks
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const unsigned o = __shfl_up_sync(0xffffffffu, off, d);
    if (lane >= d) off += o;
  }
  const unsigned total = __shfl_sync(0xffffffffu, off, 31);
  off -= cb;   // exclusive
  if (total < (unsigned)k || total > (unsigned)kCap) {   // the fallback's case: reported only
    if (r == 0 && tid == 0) *status = (int)total;
    cl_arrive();
    cl_wait();
    return;
  }
  if constexpr (STOP != 0) {
    if (r == 0 && tid == 0) *status = -(int)total;
    cl_arrive();
    cl_wait();
    return;
  } else {
    // 5. every block copies all candidates (block order); the block of entry j is found from the 16 offsets held
    // in registers; two loads in flight a thread (clamped: unconditional; a row of ~2k candidates needs two).
    unsigned offs[kCL];
#pragma unroll
    for (int b = 0; b < kCL; ++b) offs[b] = __shfl_sync(0xffffffffu, off, b);
    const unsigned offs_r = __shfl_sync(0xffffffffu, off, (int)r);
    const float scale = (float)kNB / (float)((unsigned long long)gmax - T + 1ull);
    for (unsigned j0 = tid; j0 < total; j0 += 2 * kNT) {
      unsigned long long v[2];
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const unsigned j = min(j0 + u * kNT, total - 1);
        unsigned b = 0, ob = 0;   // no dynamic index into offs (it would go to local memory)
#pragma unroll
        for (int c = 1; c < kCL; ++c)
          if (j >= offs[c]) b = c, ob = offs[c];
        v[u] = peer(sm.own, b)[j - ob];
      }
#pragma unroll
      for (int u = 0; u < 2; ++u)
        if (j0 + u * kNT < total) {
          const unsigned h = (unsigned)(v[u] >> 32);
          sm.all[j0 + u * kNT] = v[u], sm.allhi[j0 + u * kNT] = h;
          atomicAdd(&bcnt[bucket_of(h, T, scale)], 1u);
        }
    }
    for (unsigned j = total + tid; j < ((total + 511u) & ~511u); j += kNT) sm.allhi[j] = 0u;
    STAMP(5);
    cl_arrive();       // this block's reads of the others are done (their values are stored)
    __syncthreads();   // sm.all and the bucket counts are complete
    // 6. placement by buckets: above[b] from the counts; once every block has read every list (the wait), the
    // candidates are scattered into own by bucket (highest first; inside a bucket in any order) and each of this
    // block's candidates (all[offs[r], + n)) is ranked by the buckets above its own and the larger keys in it.
    bucket_scan(bcnt, above, sm.scan);
    __syncthreads();
    cl_wait();
    STAMP(6);
    for (unsigned j = tid; j < total; j += kNT) {
      const unsigned long long v = sm.all[j];
      const unsigned b = bucket_of((unsigned)(v >> 32), T, scale);
      sm.own[above[b] + atomicAdd(&bcnt[b], 1u)] = v;
    }
    __syncthreads();
    const unsigned n = sm.count;
    const unsigned long long* mine_list = sm.all + offs_r;
    for (unsigned i = tid; i < n; i += kNT) {
      const unsigned long long mine = mine_list[i];
      const unsigned b = bucket_of((unsigned)(mine >> 32), T, scale);
      const unsigned lo = above[b], hi = b > 0 ? above[b - 1] : total;
      if (hi - lo > (unsigned)kBucketMax) {
        sm.crowded = 1u;
        continue;
      }
      unsigned rank = lo;
      for (unsigned s2 = lo; s2 < hi; ++s2) rank += sm.own[s2] > mine ? 1u : 0u;
      if (rank < (unsigned)k) {
        out_v[rank] = key_value((unsigned)(mine >> 32));
        out_i[rank] = (int)~(unsigned)mine;
      }
    }
    __syncthreads();
    if (sm.crowded) rank_and_write(sm, mine_list, n, total, k, out_v, out_i);   // ties crowd a bucket: count
    if (r == 0 && tid == 0) *status = -(int)total;
    STAMP(7);
    STAMP(8);
  }
}
struct Args {
  const float* row;
  int k;
  float* v;
  int* i;
  int* status;
  int stop;
};
static void launch(cudaStream_t st, void* a_) {
  Args* a = (Args*)a_;
  switch (a->stop) {
    case 0: topk_sample<0><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
    case 1: topk_sample<1><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
    case 2: topk_sample<2><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
    default: topk_sample<3><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
  }
}

int main() {
  for (auto f : {(const void*)topk_sample<0>, (const void*)topk_sample<1>, (const void*)topk_sample<2>,
                 (const void*)topk_sample<3>}) {
    cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sizeof(Smem));
    cudaFuncSetAttribute(f, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  }
  std::vector<float> h(kCols);
  uint64_t s = 12345;
  auto rnd = [&] { s = s * 6364136223846793005ull + 1442695040888963407ull; return (double)(s >> 11) / 9007199254740992.0; };
  float *row, *v;
  int *idx, *status;
  cudaMalloc(&row, kCols * 4);
  cudaMalloc(&v, 4096 * 4);
  cudaMalloc(&idx, 4096 * 4);
  cudaMalloc(&status, 4);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  printf("smem %zu bytes a block\n", sizeof(Smem));
  for (int gen = 0; gen < 3; ++gen) {
    for (int c = 0; c < kCols; ++c) {
      if (gen == 0) h[c] = (float)((rnd() - 0.5) * 200.0);   // the bench's random rows
      else if (gen == 2) h[c] = (float)std::floor((rnd() - 0.5) * 800.0) * 0.25f;   // quarters: ~164 copies a value
      else {                                                  // the bench's bell rows
        double a = 0;
        for (int i = 0; i < 4; ++i) a += rnd() - 0.5;
        h[c] = (float)a * 3.46f;
      }
    }
    cudaMemcpy(row, h.data(), kCols * 4, cudaMemcpyHostToDevice);
    std::vector<int> order(kCols);
    for (int c = 0; c < kCols; ++c) order[c] = c;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return okey(h[a]) > okey(h[b]); });
    for (int k : {512, 2048}) {
      Args a{row, k, v, idx, status, 0};
      cudaMemset(idx, 0xff, 4096 * 4);
      launch(st, &a);
      int stat = 0;
      std::vector<int> gi(k);
      std::vector<float> gv(k);
      cudaStreamSynchronize(st);
      cudaMemcpy(&stat, status, 4, cudaMemcpyDeviceToHost);
      cudaMemcpy(gi.data(), idx, k * 4, cudaMemcpyDeviceToHost);
      cudaMemcpy(gv.data(), v, k * 4, cudaMemcpyDeviceToHost);
      int bad = 0;
      for (int j = 0; j < k; ++j) bad += gi[j] != order[j] || memcmp(&gv[j], &h[order[j]], 4) != 0;
      const float t_full = time_graph(st, [&] { launch(st, &a); });
      long long stamp[kCL][kStamps];
      cudaMemcpyFromSymbol(stamp, g_stamp, sizeof stamp);
      printf("  phase cycles from the start (mean over blocks): ");
      static const char* pn[kStamps] = {"", "loads", "threshold", "filter", "barrier", "", "copy+scan", "place", "end"};
      for (int i = 1; i < kStamps; ++i) {
        if (i == 5) continue;
        double m = 0;
        for (int b = 0; b < kCL; ++b) m += (double)(stamp[b][i] - stamp[b][0]) / kCL;
        printf("%s %.0f%s", pn[i], m, i + 1 < kStamps ? "," : "\n");
      }
      float t_stop[4];
      for (int stop = 1; stop < 4; ++stop) a.stop = stop, t_stop[stop] = time_graph(st, [&] { launch(st, &a); });
      printf("%s row, k = %4d: %s (%d candidates, %d slots wrong); us a call: the loads %.2f, + the threshold %.2f,"
             " + filter and the cluster's counts %.2f, whole %.2f\n",
             gen == 2 ? "ties  " : gen ? "bell  " : "random", k, stat < 0 ? "fast path" : "would fall back", stat < 0 ? -stat : stat, bad,
             t_stop[2], t_stop[3], t_stop[1], t_full);
    }
  }
  const cudaError_t e = cudaGetLastError();
  printf("%s\n", e == cudaSuccess ? "no error" : cudaGetErrorString(e));
  return 0;
}
