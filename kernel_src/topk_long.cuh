// Helpers of the long-row top-k (topk_long.cu): thread-block-cluster access, the histogram merge, the passes of
// the radix select, the survivor sort and the placement. Compiled by NVRTC only; no host headers.
//
// Everything here is generic in NT (threads per block, a power of two in 64..1024). Names carry a tl_ prefix
// so this header can sit beside topk.cuh in one translation unit. The cluster primitives (and the dynamic
// shared memory) are the only inline assembly; DSV4_TL_EMULATION lets a host harness supply them.
#pragma once

#include "common.cuh"

namespace dsv4 {

typedef unsigned long long tl_u64;
typedef unsigned tl_u32;

constexpr int kTlBins = 2048;                 // 11-bit digits (10-bit digits use the low half)
constexpr int kTlChunks = kTlBins / 32;       // 32-bin chunks: the first step of the merge
constexpr int kTlMaxCluster = 16;             // blocks per row at most (16 is a non-portable cluster size)
constexpr int kTlCtlBytes = 1024;             // control block + chunk sums at the start of dynamic smem (host: same)
constexpr int kTlLevels = 5;                  // digits of the composite key: 11 + 11 + 10 (value), 10 + 10 (column)
#ifdef DSV4_TL_EMULATION_HITS
constexpr int kTlHits = DSV4_TL_EMULATION_HITS;   // a host emulation shrinks the list to reach its overflow paths
#else
constexpr int kTlHits = 4096;                 // positions a 16-bit-key pass collects before re-reading (host: same)
#endif
constexpr int kTlRankSortMax = 256;           // survivor lists up to this long are sorted by counting
// The final phase of a cluster places its survivors by counting, their lists unsorted, when k * k <= cl * NT *
// kTlCountPer: a block's expected list (k / cl) against all k is then kTlCountPer key compares a thread, and
// cl * kTlCountPer <= 512 if one block holds them all. Else by buckets (tl_bucket_place). (The single row of
// 131072 at k = 512, clusters of 16: 16.8 -> 16.3 us on H100 against sorted lists and binary searches, the form
// before the buckets. At 64 rows, k = 512, clusters of 2 - 256 compares a thread - counting was slower than that
// form: 28.9 against 26.5 us; the buckets then took those rows to 22.6 us.)
constexpr int kTlCountPer = 32;
// The bucket placement of a cluster's survivors (tl_bucket_place) compares the keys of a bucket one by one up to
// this many in a bucket; past it, every block sorts all the keys.
constexpr int kTlBucketMax = 64;
// A level whose boundary bin holds more elements than still needed but at most this many (over the cluster) ends
// the select at that level when the cluster places by buckets: its blocks keep the bin's elements aside (TlCtl::maybe)
// and the final phase takes the `need` largest of them, where another level (a barrier, a merge and a pass: ~2 us at
// 64 x 131072) would have split the bin.
constexpr int kTlMaybeMax = 24;
constexpr tl_u32 kTlFull = 0xffffffffu;

// floor(log2(X)) at compile time.
template <int X>
struct TlLog2 {
  static constexpr int value = X <= 1 ? 0 : 1 + TlLog2<(X >> 1)>::value;
};
template <>
struct TlLog2<0> {
  static constexpr int value = 0;
};

// ---------------------------------------------------------------------------------------------------------
// The composite key of an element: the order key (float_order_key: NaN lowest, -0 == +0) in the high word and
// ~column in the low word. Keys are distinct (columns are), a plain unsigned compare ranks by value and then by
// lower column, and no key is 0 (columns < 2^20, so ~column >= 2^32 - 2^20): 0 is the sort's padding.
// Radix digits from the top: level 1 = key bits 31..21, level 2 = 20..10, level 3 = 9..0, level 4 = bits
// 19..10 of ~column, level 5 = bits 9..0 of ~column (bits 31..20 of ~column are 1 for every column).
// ---------------------------------------------------------------------------------------------------------
__device__ __forceinline__ tl_u64 tl_ckey(tl_u32 okey, tl_u32 col) { return ((tl_u64)okey << 32) | (tl_u64)(~col); }
__device__ __forceinline__ tl_u32 tl_ckey_col(tl_u64 c) { return ~(tl_u32)c; }
__device__ __forceinline__ int tl_shift(int level) {
  return level == 1 ? 53 : level == 2 ? 42 : level == 3 ? 32 : level == 4 ? 10 : 0;
}
__device__ __forceinline__ tl_u32 tl_dmask(int level) { return level <= 2 ? 0x7ffu : 0x3ffu; }

// The input value of a survivor: the inverse of float_order_key where it is one to one; NaN (key 0) and
// zeros (key 0x80000000, the sign folded) are read back from the row so their bits come out unchanged.
__device__ __forceinline__ float tl_value(tl_u64 c, const float* __restrict__ row) {
  const tl_u32 k = (tl_u32)(c >> 32);
  if (k == 0u || k == 0x80000000u) return __ldg(row + tl_ckey_col(c));
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Output slot `slot` of a row (oi, ov: the row's k indices and values) gets survivor c. The slot's type is the
// caller's (an int or unsigned index: the address arithmetic stays what the call site had).
template <typename I>
__device__ __forceinline__ void tl_put(int* oi, float* ov, I slot, tl_u64 c, const float* row) {
  oi[slot] = (int)tl_ckey_col(c);
  ov[slot] = tl_value(c, row);
}

// float_order_key in fewer instructions (5 instead of 8; the same value for every input bit pattern, checked
// exhaustively by tests/cpu/test_topk_long_cpu.c): x + 0.0f turns -0.0 into +0.0 and leaves every other
// non-NaN value (subnormals too: no flush to zero here) unchanged; then the usual sign flip; NaN -> 0.
__device__ __forceinline__ tl_u32 tl_order_key(float x) {
  const tl_u32 u = __float_as_uint(x + 0.0f);
  const tl_u32 k = u ^ ((tl_u32)((int)u >> 31) | 0x80000000u);
  return x != x ? 0u : k;
}

// Per-halfword unsigned max of two words (VIMNMX.U16x2 on sm_90+; a few instructions before).
__device__ __forceinline__ tl_u32 tl_vmax16(tl_u32 a, tl_u32 b) { return __vmaxu2(a, b); }

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
// Cluster barrier halves: what a block wrote to its own shared memory before arriving is visible to every block of
// the cluster after its wait, and what it read of the others' before arriving has been read. The blocks exchange
// data through shared memory only, so the release is a fence restricted to this block's shared memory at cluster
// scope (MEMBAR.ALL.CTA) before a relaxed arrive; the default release arrive is a GPU-wide fence (MEMBAR.ALL.GPU,
// which waits for every global access in flight) and cost ~2.3 us a row on H100 with its five barriers. wait keeps
// its default acquire semantics. A block's reads of the others' shared memory are all consumed (summed, or stored
// to its own shared memory) before it arrives, so they have completed when the others pass their wait and
// overwrite. Every thread of every block must call them, in uniform control flow.
__device__ __forceinline__ void tl_cluster_arrive() {
#if __CUDA_ARCH__ >= 900
  asm volatile(
      "fence.release.sync_restrict::shared::cta.cluster;\n\t"
      "barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
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
// Shared memory of a block: the control block (with the chunk sums of both histograms), two histograms of
// kTlBins counters, the survivor list, then the pool: the cache of the slice (order keys, or their top 16
// bits) and the candidate buffer; at the end, the copies of the other blocks' survivors and the ranks.
// ---------------------------------------------------------------------------------------------------------
struct TlCtl {
  tl_u32 bin, above, cnt, mine;   // the last histogram merge: boundary bin and its counts
  tl_u32 n_emit;                  // survivors in this block's list (read by the cluster at the end)
  tl_u32 n_push;                  // candidates in the buffer
  tl_u32 pad;
  tl_u32 n_hits;                  // positions in the hit list (16-bit-key passes)
  tl_u32 counts[kTlMaxCluster];   // final phase: each block's survivor count
  tl_u32 offs[kTlMaxCluster];     // final phase: where each block's list starts among the copies
  tl_u32 sums[2][kTlChunks];      // chunk sums of the two histograms (read by the cluster)
  tl_u32 mcounts[kTlMaxCluster];  // final phase after a split boundary: each block's count of maybe keys
  tl_u32 moffs[kTlMaxCluster];    // and where they start among the copies
  tl_u64 maybe[kTlMaybeMax];      // a split boundary bin's elements of this block (n_push of them; read by the cluster)
};
static_assert(sizeof(TlCtl) <= kTlCtlBytes, "control block");

// ---------------------------------------------------------------------------------------------------------
// Histogram merge over the cluster, by one warp (all 32 lanes of warp 0): the histograms h (this block's; the
// same offset in every block) with chunk sums `sums` are summed over the cluster's blocks (integers: exact,
// order-free), and the bin holding the need-th largest element (counting from the top bin down) is found in
// two steps: the chunk from the chunk sums, then the bin from that chunk's 32 counters. Every block computes
// the same answer. Results in ctl: bin, above (elements in higher bins, all blocks), cnt (elements in the bin,
// all blocks), mine (in this block). Every block's h and sums must be complete and visible (tl_sync), and
// none may change until every block has passed the next tl_sync. need must be in 1..(total count).
// ---------------------------------------------------------------------------------------------------------
__device__ __forceinline__ void tl_merge(TlCtl* ctl, const tl_u32* h, const tl_u32* sums, int cl, int rank,
                                         tl_u32 need) {
  const int lane = threadIdx.x & 31;
  // All the cluster's loads of a step are issued before any is used: one distributed-shared-memory round trip.
  // The loads are unconditional (slots past the cluster read this block, and are dropped): a load under a branch
  // waited for the one before it (the zero it would otherwise keep is a register copy), 16 round trips in a row.
  uint2 q[kTlMaxCluster];
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c)
    q[c] = *reinterpret_cast<const uint2*>(tl_peer(sums, c < cl ? (tl_u32)c : (tl_u32)rank) + 2 * lane);
  tl_u32 s0 = 0, s1 = 0;   // chunks 2 * lane and 2 * lane + 1
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c)
    if (c < cl) s0 += q[c].x, s1 += q[c].y;
  // Counts above: the chunks of higher lanes, then (for chunk 2 * lane) chunk 2 * lane + 1.
  const tl_u32 tot = s0 + s1;
  tl_u32 incl = tot;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const tl_u32 y = __shfl_down_sync(kTlFull, incl, d);
    if (lane + d < 32) incl += y;
  }
  const tl_u32 ex = incl - tot;
  const bool hi = ex < need && need <= ex + s1;
  const bool lo = !hi && ex + s1 < need && need <= ex + s1 + s0;
  const tl_u32 who = __ballot_sync(kTlFull, hi || lo);
  const int src = who ? __ffs(who) - 1 : 0;
  const int chunk = __shfl_sync(kTlFull, hi ? 2 * lane + 1 : 2 * lane, src);
  const tl_u32 abv = __shfl_sync(kTlFull, hi ? ex : ex + s1, src);
  // The chunk's bins: lane l holds bin chunk * 32 + l.
  const int b = chunk * 32 + lane;
  tl_u32 v[kTlMaxCluster];
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c) v[c] = tl_peer(h, c < cl ? (tl_u32)c : (tl_u32)rank)[b];   // (as above)
  tl_u32 g = 0, mine = 0;
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c) {
    if (c < cl) g += v[c];
    if (c == rank) mine = v[c];
  }
  tl_u32 incl2 = g;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const tl_u32 y = __shfl_down_sync(kTlFull, incl2, d);
    if (lane + d < 32) incl2 += y;
  }
  const tl_u32 a = abv + incl2 - g;
  if (a < need && need <= a + g) {   // exactly one lane
    ctl->bin = (tl_u32)b;
    ctl->above = a;
    ctl->cnt = g;
    ctl->mine = mine;
  }
}

// Chunk sums of the histogram h into sums (every warp; the caller synchronises before and after). With fold,
// the second histogram `h2` is added into h first and cleared (level 1 counts into two copies).
// Warp w sums the chunks w, w + NT / 32, ...: all its loads first, then the reductions, then one store by
// the lanes 0..J-1 (a loop with a store per chunk ran the chunks one after the other).
template <int NT>
__device__ __forceinline__ void tl_chunk_sums(tl_u32* h, tl_u32* h2, bool fold, tl_u32* sums) {
  constexpr int NW = NT / 32, J = kTlChunks / NW;   // chunks per warp
  static_assert(NW <= kTlChunks && kTlChunks % NW == 0, "whole chunks per warp");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  tl_u32 v[J];
#pragma unroll
  for (int i = 0; i < J; ++i) v[i] = h[(warp + i * NW) * 32 + lane];
  if (fold) {
#pragma unroll
    for (int i = 0; i < J; ++i) {
      const int b = (warp + i * NW) * 32 + lane;
      v[i] += h2[b];
      h[b] = v[i];
      h2[b] = 0u;
    }
  }
  tl_u32 mine = 0;   // lane i < J keeps chunk warp + i * NW
#pragma unroll
  for (int i = 0; i < J; ++i) {
    const tl_u32 s = __reduce_add_sync(kTlFull, v[i]);
    if (lane == i) mine = s;
  }
  if (lane < J) sums[warp + lane * NW] = mine;
}

// ---------------------------------------------------------------------------------------------------------
// One level of the radix select. An element (composite key c) is in the level's set when (c & pm) == pp (the
// digits of the levels before it equal their boundary digits). Of the set, those with a digit above `b` are
// survivors (emitted to the block's list); those with the digit equal to b are the boundary: all emitted when
// `take` (the boundary holds exactly what is still needed), else counted by their next digit into `h` (a split
// boundary's counts go unread: at most kTlMaybeMax atomics) and, with `push`, appended to the candidate buffer
// (or the maybe list). [flo, fhi] holds the order key of every element the level emits or counts (used to skip
// the rest cheaply).
// ---------------------------------------------------------------------------------------------------------
struct TlLevel {
  tl_u64 pm, pp;
  tl_u32 b, dm, dm2, flo, fhi;
  int sh, sh2;
  bool take, push;
};

// Exclusive prefix sum over the warp of per-lane counts v < 2^B, and the warp's total, from B ballots of v's
// bits (no shuffle chain). Warp-uniform.
template <int B>
__device__ __forceinline__ tl_u32 tl_warp_prefix(tl_u32 v, tl_u32* total) {
  const tl_u32 lt = (1u << (threadIdx.x & 31)) - 1u;
  tl_u32 pre = 0, tot = 0;
#pragma unroll
  for (int b = 0; b < B; ++b) {
    const tl_u32 m = __ballot_sync(kTlFull, (v >> b) & 1u);
    pre += (tl_u32)__popc(m & lt) << b;
    tot += (tl_u32)__popc(m) << b;
  }
  *total = tot;
  return pre;
}

// Classifies one key a lane (c, where `valid`) at level lv (see TlLevel): a survivor is appended to the list, a
// boundary key counted by its next digit into h and, with lv.push, appended to the candidate buffer. One shared
// atomic per warp and list. Warp-uniform. Capacity overflow cannot happen (the counts are exact); the guards only
// keep a broken invariant from writing out of bounds.
__device__ __forceinline__ void tl_classify1(tl_u64 c, bool valid, const TlLevel& lv, tl_u32* h, TlCtl* ctl,
                                             tl_u64* list, tl_u32 list_cap, tl_u64* buf, tl_u32 buf_cap) {
  bool emit = false, push = false;
  if (valid && (c & lv.pm) == lv.pp) {
    const tl_u32 d = (tl_u32)(c >> lv.sh) & lv.dm;
    if (d > lv.b || (d == lv.b && lv.take)) {
      emit = true;
    } else if (d == lv.b) {
      atomicAdd(&h[(tl_u32)(c >> lv.sh2) & lv.dm2], 1u);
      push = lv.push;
    }
  }
  const tl_u32 me = __ballot_sync(kTlFull, emit), mp = __ballot_sync(kTlFull, push);
  if ((me | mp) == 0u) return;
  const int lane = threadIdx.x & 31;
  const tl_u32 lt = (1u << lane) - 1u;
  tl_u32 b = 0;
  if (lane == 0 && me) b = atomicAdd(&ctl->n_emit, (tl_u32)__popc(me));
  if (lane == 1 && mp) b = atomicAdd(&ctl->n_push, (tl_u32)__popc(mp));
  const tl_u32 se = __shfl_sync(kTlFull, b, 0) + (tl_u32)__popc(me & lt);
  const tl_u32 sp = __shfl_sync(kTlFull, b, 1) + (tl_u32)__popc(mp & lt);
  if (emit && se < list_cap) list[se] = c;
  if (push && sp < buf_cap) buf[sp] = c;
}

// a[i] for a lane's own i (a select chain: a dynamic index would put the array in local memory).
template <int E, typename T>
__device__ __forceinline__ T tl_pick(const T (&a)[E], int i) {
  T x = a[0];
#pragma unroll
  for (int j = 1; j < E; ++j)
    if (i == j) x = a[j];
  return x;
}

// The keys flagged in `valid` classified at level lv one a lane a round (the lane's lowest flagged, its composite
// key from key_of(i)), as many rounds as the lane with the most. A pass flags few keys (a round or two), where a
// classification of all of a lane's keys at once cost that many times the work. Warp-uniform.
template <typename KeyOf>
__device__ __forceinline__ void tl_rounds(tl_u32 valid, KeyOf key_of, const TlLevel& lv, tl_u32* h, TlCtl* ctl,
                                          tl_u64* list, tl_u32 list_cap, tl_u64* buf, tl_u32 buf_cap) {
  while (__any_sync(kTlFull, valid != 0u)) {
    const int i = valid ? __ffs(valid) - 1 : 0;
    const bool v = valid != 0u;
    valid &= valid - 1u;
    tl_classify1(key_of(i), v, lv, h, ctl, list, list_cap, buf, buf_cap);
  }
}

// Composite keys c[0..E) flagged in `valid`: those that matter (in the level's set, digit at or above the
// boundary) classified at level lv. When some lane holds two or more of them (a long re-read list of a 16-bit
// pass or a long buffer: past NT entries the lanes hold several) all at once: a warp prefix of the counts and one
// shared atomic per list for the whole warp, where one key a lane a round took a round (two ballots, two atomics,
// two shuffles) per key of the fullest lane; else at most one round (tl_rounds). Warp-uniform.
template <int E>
__device__ __forceinline__ void tl_consume(const tl_u64 (&c)[E], tl_u32 valid, const TlLevel& lv, tl_u32* h,
                                           TlCtl* ctl, tl_u64* list, tl_u32 list_cap, tl_u64* buf, tl_u32 buf_cap) {
  static_assert(E >= 1 && E <= 8, "tl_consume: at most 8 keys a lane");
#pragma unroll
  for (int i = 0; i < E; ++i)
    if ((c[i] & lv.pm) != lv.pp || ((tl_u32)(c[i] >> lv.sh) & lv.dm) < lv.b) valid &= ~(1u << i);
  if (!__any_sync(kTlFull, __popc(valid) >= 2)) {
    tl_rounds(valid, [&](int i) { return tl_pick(c, i); }, lv, h, ctl, list, list_cap, buf, buf_cap);
    return;
  }
  tl_u32 me = 0, mp = 0;   // the keys to emit and to push
#pragma unroll
  for (int i = 0; i < E; ++i) {
    if (!((valid >> i) & 1u)) continue;
    const tl_u32 d = (tl_u32)(c[i] >> lv.sh) & lv.dm;   // >= lv.b (above)
    if (d > lv.b || lv.take) {
      me |= 1u << i;
    } else {
      atomicAdd(&h[(tl_u32)(c[i] >> lv.sh2) & lv.dm2], 1u);
      if (lv.push) mp |= 1u << i;
    }
  }
  tl_u32 te, tp;
  tl_u32 se = tl_warp_prefix<4>((tl_u32)__popc(me), &te), sp = tl_warp_prefix<4>((tl_u32)__popc(mp), &tp);
  const int lane = threadIdx.x & 31;
  tl_u32 b = 0;
  if (lane == 0 && te) b = atomicAdd(&ctl->n_emit, te);
  if (lane == 1 && tp) b = atomicAdd(&ctl->n_push, tp);
  se += __shfl_sync(kTlFull, b, 0), sp += __shfl_sync(kTlFull, b, 1);
#pragma unroll
  for (int i = 0; i < E; ++i) {
    if ((me >> i) & 1u) {
      if (se < list_cap) list[se] = c[i];
      ++se;
    }
    if ((mp >> i) & 1u) {
      if (sp < buf_cap) buf[sp] = c[i];
      ++sp;
    }
  }
}

// Order keys of a lane's two groups of 4 positions (key i at column col0 + (i >> 2) * 4 * NT + (i & 3)) flagged
// in `hit`, classified at level lv (tl_rounds); the composite key is built for those only. Warp-uniform.
template <int NT>
__device__ __forceinline__ void tl_consume_keys(const tl_u32 (&key)[8], tl_u32 hit, tl_u32 col0, const TlLevel& lv,
                                                tl_u32* h, TlCtl* ctl, tl_u64* list, tl_u32 list_cap, tl_u64* buf,
                                                tl_u32 buf_cap) {
  tl_rounds(hit, [&](int i) { return tl_ckey(tl_pick(key, i), col0 + (tl_u32)((i >> 2) * 4 * NT + (i & 3))); }, lv, h,
            ctl, list, list_cap, buf, buf_cap);
}

// ---------------------------------------------------------------------------------------------------------
// Loads of the block's slice from global memory: thread t's group g of a chunk is the 4 consecutive positions
// base + (g * NT + t) * 4 + e (16-byte loads when vec, the rows being 16-byte aligned; scalar otherwise).
// Positions >= n read as +0.0 (the caller masks them).
// ---------------------------------------------------------------------------------------------------------
template <int NT, int G>
__device__ __forceinline__ void tl_load_global(int base, int n, const float* __restrict__ pg, bool vec,
                                               float (&v)[4 * G]) {
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const int p0 = base + (g * NT + (int)threadIdx.x) * 4;
    if (vec && p0 + 3 < n) {
      const float4 q = __ldg(reinterpret_cast<const float4*>(pg + p0));
      v[4 * g] = q.x, v[4 * g + 1] = q.y, v[4 * g + 2] = q.z, v[4 * g + 3] = q.w;
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) v[4 * g + e] = p0 + e < n ? __ldg(pg + p0 + e) : 0.0f;
    }
  }
}

// Pass 1 of a row: reads the slice (n columns at pg) once, keeps the order keys of its first dn columns in the
// cache (wide: 32-bit keys; else their top 16 bits) and counts the top digit of every key into h_even (even
// lanes) or h_odd (odd lanes): two copies halve the same-address conflicts of concentrated data.
// The bulk of pass 1: the positions [0, nf) (nf a multiple of 16 * NT, all cached, 16-byte loads), with no
// bounds checks.
template <int NT, bool WIDE>
__device__ __forceinline__ void tl_pass1_full(int nf, const float* __restrict__ pg, unsigned char* cache,
                                              tl_u32* h) {
  constexpr int G = 4;   // 4 x 16 bytes in flight per thread
  for (int base = 0; base < nf; base += 4 * G * NT) {
    float4 q[G];
#pragma unroll
    for (int g = 0; g < G; ++g)
      q[g] = __ldg(reinterpret_cast<const float4*>(pg + base + (g * NT + (int)threadIdx.x) * 4));
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int p0 = base + (g * NT + (int)threadIdx.x) * 4;
      const tl_u32 k0 = tl_order_key(q[g].x), k1 = tl_order_key(q[g].y), k2 = tl_order_key(q[g].z),
                   k3 = tl_order_key(q[g].w);
      if (WIDE)
        *reinterpret_cast<uint4*>(cache + 4 * p0) = make_uint4(k0, k1, k2, k3);
      else   // the top halves: (k0 >> 16) | (k1 & 0xffff0000), (k2 >> 16) | (k3 & 0xffff0000)
        *reinterpret_cast<uint2*>(cache + 2 * p0) =
            make_uint2(__byte_perm(k0, k1, 0x7632), __byte_perm(k2, k3, 0x7632));
      atomicAdd(&h[k0 >> 21], 1u);
      atomicAdd(&h[k1 >> 21], 1u);
      atomicAdd(&h[k2 >> 21], 1u);
      atomicAdd(&h[k3 >> 21], 1u);
    }
  }
}

template <int NT>
__device__ __noinline__ void tl_pass1(int n, int dn, const float* __restrict__ pg, bool vec, bool wide,
                                      unsigned char* cache, tl_u32* h_even, tl_u32* h_odd) {
  constexpr int G = 4;   // 4 x 16 bytes in flight per thread
  tl_u32* h = (threadIdx.x & 1) ? h_odd : h_even;
  // Whole 16 * NT chunks of the cached part with 16-byte loads first; the rest (a partial chunk, the uncached
  // columns, unaligned rows) below with bounds checks.
  const int nf = vec ? ((dn < n ? dn : n) / (4 * G * NT)) * (4 * G * NT) : 0;
  if (wide)
    tl_pass1_full<NT, true>(nf, pg, cache, h);
  else
    tl_pass1_full<NT, false>(nf, pg, cache, h);
  for (int base = nf; base < n; base += 4 * G * NT) {
    float v[4 * G];
    tl_load_global<NT, G>(base, n, pg, vec, v);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int p0 = base + (g * NT + (int)threadIdx.x) * 4;
      if (p0 >= n) continue;
      tl_u32 key[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) key[e] = tl_order_key(v[4 * g + e]);
      if (p0 < dn) {   // (dn is a multiple of 4 or n; the cache has room for the whole last group)
        if (wide)
          *reinterpret_cast<uint4*>(cache + 4 * p0) = make_uint4(key[0], key[1], key[2], key[3]);
        else
          *reinterpret_cast<uint2*>(cache + 2 * p0) =
              make_uint2((key[0] >> 16) | (key[1] & 0xffff0000u), (key[2] >> 16) | (key[3] & 0xffff0000u));
      }
      if (p0 + 3 < n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) atomicAdd(&h[key[e] >> 21], 1u);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (p0 + e < n) atomicAdd(&h[key[e] >> 21], 1u);
      }
    }
  }
}

// The keys of a group of 8 16-bit keys (4 words, key 2j in the low half of word j) that are >= f16, as a bit
// mask; only the first lim (>= 1) positions of the group count.
__device__ __forceinline__ tl_u32 tl_hit_mask16(const uint4 q, tl_u32 f16, int lim) {
  const tl_u32 w[4] = {q.x, q.y, q.z, q.w};
  tl_u32 hit = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if ((w[j] & 0xffffu) >= f16) hit |= 1u << (2 * j);
    if (w[j] >= (f16 << 16)) hit |= 2u << (2 * j);   // the high half >= f16
  }
  return lim < 8 ? hit & ((1u << lim) - 1u) : hit;
}

// The elements flagged in `direct` among the 8 positions p0.. of the slice, re-read from global memory at once
// and classified (the overflow path of the 16-bit-key pass). Warp-uniform.
__device__ __forceinline__ void tl_scan_direct(tl_u32 direct, const float* __restrict__ pg, int p0, int lo,
                                               const TlLevel& lv, tl_u32* h, TlCtl* ctl, tl_u64* list,
                                               tl_u32 list_cap, tl_u64* buf, tl_u32 buf_cap) {
  if (!__any_sync(kTlFull, direct != 0u)) return;
  tl_u64 c[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float x = ((direct >> i) & 1u) ? __ldg(pg + p0 + i) : 0.0f;
    c[i] = tl_ckey(tl_order_key(x), (tl_u32)(lo + p0 + i));
  }
  tl_consume<8>(c, direct, lv, h, ctl, list, list_cap, buf, buf_cap);
}

// U iterations of the group scan of a 16-bit-key pass (tl_scan_slice), base, base + 8 * NT, ...: this thread's 8
// keys at base + u * 8 * NT + tid * 8 tested together; the warp's groups that may hold a key >= f16 appended to
// gseg in iteration order (the warp's part of the list, kseg entries; ng: its count, warp-uniform). false
// (nothing appended) when they do not all fit. The U loads are issued before any is tested and the U ballots
// before any append: one shared-memory round trip and one ballot chain for U iterations, where a loop of single
// iterations waited for each (16 iterations a block at 64 rows of 131072). TAIL (U = 1): the iteration may reach
// past dn.
template <int NT, int U, bool TAIL>
__device__ __forceinline__ bool tl_group_steps(const unsigned char* cache, int base, int dn, tl_u32 f16, tl_u32 fm1,
                                               tl_u32 lt, tl_u32* gseg, int kseg, int& ng) {
  static_assert(!TAIL || U == 1, "a tail is one iteration");
  uint4 q[U];
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int p0 = base + u * 8 * NT + (int)threadIdx.x * 8;
    q[u] = make_uint4(0u, 0u, 0u, 0u);
    if (!TAIL || p0 < dn) q[u] = *reinterpret_cast<const uint4*>(cache + 2 * p0);
  }
  tl_u32 ball[U];
  bool maybe[U];
  int nn = ng;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int p0 = base + u * 8 * NT + (int)threadIdx.x * 8;
    const tl_u32 m = tl_vmax16(tl_vmax16(tl_vmax16(q[u].x, q[u].y), tl_vmax16(q[u].z, q[u].w)), fm1);
    maybe[u] = (!TAIL || p0 < dn) && (f16 == 0u || m != fm1);   // garbage past dn: only a false "maybe"
    ball[u] = __ballot_sync(kTlFull, maybe[u]);
    nn += __popc(ball[u]);
  }
  if (nn > kseg) return false;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    if (maybe[u]) gseg[ng + __popc(ball[u] & lt)] = (tl_u32)(base + u * 8 * NT + (int)threadIdx.x * 8);
    ng += __popc(ball[u]);
  }
  return true;
}

// A pass of level lv over the block's slice: the cached columns [0, dn) from the cache (wide or 16-bit keys;
// with 16-bit keys an element that may qualify is re-read from global memory for its full key), the rest
// [dn, n) from global memory. Only elements whose key is >= lv.flo are classified. Block-uniform (it
// synchronises the block with 16-bit keys).
// ctl->n_hits must be 0 on entry (16-bit keys); hits: kTlHits positions of scratch.
template <int NT>
__device__ __noinline__ void tl_scan_slice(int n, int dn, const float* __restrict__ pg, bool vec, int lo, bool wide,
                                           const unsigned char* cache, tl_u32* hits, const TlLevel lv, tl_u32* h,
                                           TlCtl* ctl, tl_u64* list, tl_u32 list_cap, tl_u64* buf, tl_u32 buf_cap) {
  const int tid = threadIdx.x;
  if (wide) {
    // 8 keys per thread: positions base + (g * NT + tid) * 4 + e, g = 0, 1.
    for (int base = 0; base < dn; base += 8 * NT) {
      tl_u32 key[8];
#pragma unroll
      for (int g = 0; g < 2; ++g) {
        const int p0 = base + (g * NT + tid) * 4;
        uint4 q = make_uint4(0u, 0u, 0u, 0u);
        if (p0 < dn) q = *reinterpret_cast<const uint4*>(cache + 4 * p0);
        key[4 * g] = q.x, key[4 * g + 1] = q.y, key[4 * g + 2] = q.z, key[4 * g + 3] = q.w;
      }
      tl_u32 hit = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (key[i] >= lv.flo && key[i] <= lv.fhi && base + ((i >> 2) * NT + tid) * 4 + (i & 3) < dn) hit |= 1u << i;
      tl_consume_keys<NT>(key, hit, (tl_u32)(lo + base + tid * 4), lv, h, ctl, list, list_cap, buf, buf_cap);
    }
  } else {
    // 8 16-bit keys per thread: positions base + tid * 8 + e. An element that may qualify is re-read from global
    // memory for its full key. Few keys qualify in a pass over the slice, so the work goes in three steps, each
    // with full warps: (1) the scan tests a lane's 8 keys together (halfword maxima against f16 - 1: three
    // instructions) and appends the position of each group of 8 that may hold one to the warp's part of the
    // first half of `hits` (a ballot and a count in a register: no atomics); (2) each warp takes its groups one
    // per lane, tests their keys one by one and appends the qualifying positions to the second half (one shared
    // atomic per warp); (3) after a barrier those are re-read from global memory together. What does not fit
    // either half is re-read at once (correct, only slower).
    const tl_u32 f16 = lv.flo >> 16;
    const tl_u32 fm1 = f16 ? (f16 - 1u) * 0x10001u : 0u;   // f16 == 0: every key qualifies
    const int warp = tid >> 5, lane = tid & 31;
    const tl_u32 lt = (1u << lane) - 1u;
    constexpr int kSeg = kTlHits / 2 / (NT / 32);   // group entries per warp
    tl_u32* gseg = hits + warp * kSeg;
    tl_u32* hl = hits + kTlHits / 2;                // the positions to re-read
    int ng = 0;                                     // groups in gseg (warp-uniform)
    int ov = dn;                                    // where the warp's part of the list ran full
    const int dfull = dn / (8 * NT) * (8 * NT);     // whole iterations: no bounds checks
    constexpr int kGroupBatch = 4;                  // iterations a tl_group_steps call
    int base = 0;
    bool full = false;                              // the warp's part of the list ran full at `base`
    while (!full && base + kGroupBatch * 8 * NT <= dfull) {
      if (tl_group_steps<NT, kGroupBatch, false>(cache, base, dn, f16, fm1, lt, gseg, kSeg, ng))
        base += kGroupBatch * 8 * NT;
      else
        full = true;
    }
    while (!full && base < dfull) {
      if (tl_group_steps<NT, 1, false>(cache, base, dn, f16, fm1, lt, gseg, kSeg, ng))
        base += 8 * NT;
      else
        full = true;
    }
    if (full || (base < dn && !tl_group_steps<NT, 1, true>(cache, base, dn, f16, fm1, lt, gseg, kSeg, ng)))
      ov = base;   // this iteration and the rest go the slow way (below)
    __syncwarp();
    // (2) this warp's groups, one per lane.
    for (int j0 = 0; j0 < ng; j0 += 32) {
      const int j = j0 + lane;
      tl_u32 hit = 0;
      int p0 = 0;
      if (j < ng) {
        p0 = (int)gseg[j];
        hit = tl_hit_mask16(*reinterpret_cast<const uint4*>(cache + 2 * p0), f16, dn - p0);
      }
      tl_u32 tot;
      const tl_u32 pre = tl_warp_prefix<4>((tl_u32)__popc(hit), &tot);
      tl_u32 b0 = 0;
      if (lane == 0 && tot) b0 = atomicAdd(&ctl->n_hits, tot);
      tl_u32 slot = __shfl_sync(kTlFull, b0, 0) + pre;
      tl_u32 direct = 0;
      while (hit) {
        const int i = __ffs(hit) - 1;
        hit &= hit - 1u;
        if (slot < (tl_u32)(kTlHits / 2)) hl[slot] = (tl_u32)(p0 + i);
        else direct |= 1u << i;
        ++slot;
      }
      tl_scan_direct(direct, pg, p0, lo, lv, h, ctl, list, list_cap, buf, buf_cap);
    }
    // The rest of the warp's iterations after its part of the list ran full (many qualifying keys: e.g. a
    // level whose boundary bin holds most of the slice): every key that may qualify re-read at once.
    for (int base = ov; base < dn; base += 8 * NT) {
      const int p0 = base + tid * 8;
      tl_u32 direct = 0;
      if (p0 < dn) direct = tl_hit_mask16(*reinterpret_cast<const uint4*>(cache + 2 * p0), f16, dn - p0);
      tl_scan_direct(direct, pg, p0, lo, lv, h, ctl, list, list_cap, buf, buf_cap);
    }
    __syncthreads();
    // (3) the positions hl[0, nh): warp w takes the 32 entries from 32 w and those NT, 2 NT and 3 NT on (4 loads
    // in flight a lane), so a short list is spread over all the warps.
    const int nh = ctl->n_hits < (tl_u32)(kTlHits / 2) ? (int)ctl->n_hits : kTlHits / 2;
    const tl_u32* hp = hl;
    for (int base = warp * 32; base < nh; base += 4 * NT) {
      tl_u32 pos[4];
      float x[4];
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        const int j = base + g * NT + lane;
        pos[g] = j < nh ? hp[j] : 0u;
        x[g] = j < nh ? __ldg(pg + pos[g]) : 0.0f;
      }
      tl_u64 c[4];
      tl_u32 valid = 0;
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        c[g] = tl_ckey(tl_order_key(x[g]), (tl_u32)lo + pos[g]);
        if (base + g * NT + lane < nh) valid |= 1u << g;
      }
      tl_consume<4>(c, valid, lv, h, ctl, list, list_cap, buf, buf_cap);
    }
  }
  // The uncached rest, from global memory.
  if (n > dn) {
    const float* pr = pg + dn;
    const int nr = n - dn;
    for (int base = 0; base < nr; base += 8 * NT) {
      float v[8];
      tl_load_global<NT, 2>(base, nr, pr, vec, v);
      tl_u32 hit = 0;
      tl_u32 key[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        key[i] = tl_order_key(v[i]);
        if (key[i] >= lv.flo && key[i] <= lv.fhi && base + ((i >> 2) * NT + tid) * 4 + (i & 3) < nr) hit |= 1u << i;
      }
      tl_consume_keys<NT>(key, hit, (tl_u32)(lo + dn + base + tid * 4), lv, h, ctl, list, list_cap, buf, buf_cap);
    }
  }
}

// A pass of level lv over the candidate buffer (sn composite keys); pushes (a split boundary only) go to `out`.
template <int NT>
__device__ __noinline__ void tl_scan_buffer(int sn, const tl_u64* buf, const TlLevel lv, tl_u32* h, TlCtl* ctl,
                                            tl_u64* list, tl_u32 list_cap, tl_u64* out, tl_u32 out_cap) {
  // Warp w takes the 32 entries from 32 w and those NT, 2 NT and 3 NT on: a short buffer is spread over all warps.
  const int lane = (int)threadIdx.x & 31;
  for (int base = ((int)threadIdx.x >> 5) * 32; base < sn; base += 4 * NT) {
    tl_u64 c[4];
    tl_u32 valid = 0;
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const int p = base + g * NT + lane;
      c[g] = p < sn ? buf[p] : 0ull;
      if (p < sn) valid |= 1u << g;
    }
    tl_consume<4>(c, valid, lv, h, ctl, list, list_cap, out, out_cap);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Sort of the survivor list: s[0..m) descending, m a power of two >= 64. Bitonic network; a warp sorts and
// merges 64-key segments in registers (lane l holds positions 2l and 2l + 1 of the segment), the strides of
// 64 and more go through shared memory.
// ---------------------------------------------------------------------------------------------------------
// Strides st..1 of a bitonic merge of blocks of `size` (pos0: the position of x0; x1 is at pos0 + 1).
template <int ST>
__device__ __forceinline__ void tl_warp_merge(tl_u64& x0, tl_u64& x1, int pos0, int size) {
#pragma unroll
  for (int st = ST; st >= 2; st >>= 1) {
    const tl_u64 y0 = __shfl_xor_sync(kTlFull, x0, st >> 1);
    const tl_u64 y1 = __shfl_xor_sync(kTlFull, x1, st >> 1);
    // The lower position of a pair keeps the larger key in a descending block (pos & size) == 0.
    const bool keep_max = ((pos0 & st) == 0) == ((pos0 & size) == 0);   // same for pos0 + 1
    x0 = keep_max ? (x0 > y0 ? x0 : y0) : (x0 < y0 ? x0 : y0);
    x1 = keep_max ? (x1 > y1 ? x1 : y1) : (x1 < y1 ? x1 : y1);
  }
  const bool desc = (pos0 & size) == 0;
  if ((x0 < x1) == desc) {
    const tl_u64 t = x0;
    x0 = x1, x1 = t;
  }
}

template <int NT>
__device__ __noinline__ void tl_sort_desc(tl_u64* s, int m) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int segs = m >> 6;
  for (int seg = warp; seg < segs; seg += NT / 32) {
    const int pos0 = seg * 64 + 2 * lane;
    tl_u64 x0 = s[pos0], x1 = s[pos0 + 1];
    tl_warp_merge<1>(x0, x1, pos0, 2);
    tl_warp_merge<2>(x0, x1, pos0, 4);
    tl_warp_merge<4>(x0, x1, pos0, 8);
    tl_warp_merge<8>(x0, x1, pos0, 16);
    tl_warp_merge<16>(x0, x1, pos0, 32);
    tl_warp_merge<32>(x0, x1, pos0, 64);
    s[pos0] = x0, s[pos0 + 1] = x1;
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
      const int pos0 = seg * 64 + 2 * lane;
      tl_u64 x0 = s[pos0], x1 = s[pos0 + 1];
      tl_warp_merge<32>(x0, x1, pos0, size);
      s[pos0] = x0, s[pos0 + 1] = x1;
    }
    __syncthreads();
  }
}

// rk[i] += the number of keys of l[0..nl) greater than x[i], for i < nx (keys distinct within each list; rk
// zeroed by the caller, who synchronises the block after). Warps split the work into (32 keys of x, part of l)
// pairs so that every thread compares its key with about nx * nl / NT others; all lanes of a warp read the
// same key of l (broadcasts). Integer counts summed with shared atomics: exact, order-free.
template <int NT>
__device__ __forceinline__ void tl_count_ranks(const tl_u64* x, int nx, const tl_u64* l, int nl, tl_u32* rk) {
  constexpr int NW = NT / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int groups = nx > 32 ? (nx + 31) >> 5 : 1;
  const int parts = NW / groups >= 1 ? NW / groups : 1;
  const int len = (nl + parts - 1) / parts;
  for (int w = warp; w < groups * parts; w += NW) {
    const int i = (w % groups) * 32 + lane, part = w / groups;
    const tl_u64 v = i < nx ? x[i] : ~0ull;
    const int t0 = part * len, t1 = t0 + len < nl ? t0 + len : nl;
    tl_u32 cnt = 0;
#pragma unroll 8
    for (int t = t0; t < t1; ++t) cnt += l[t] > v ? 1u : 0u;
    if (i < nx && cnt) atomicAdd(&rk[i], cnt);
  }
}

// Sort of a short survivor list (nr <= kTlRankSortMax distinct keys) by counting: the rank of a key is the
// number of larger keys (tl_count_ranks of the list against itself). rk: nr words of shared scratch.
template <int NT>
__device__ __noinline__ void tl_rank_sort(tl_u64* s, int nr, tl_u32* rk) {
  constexpr int PER = (kTlRankSortMax + NT - 1) / NT;   // keys per thread at the end
  for (int i = threadIdx.x; i < nr; i += NT) rk[i] = 0u;
  __syncthreads();
  tl_count_ranks<NT>(s, nr, s, nr, rk);
  __syncthreads();
  tl_u64 v[PER];
  tl_u32 r[PER];
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    const int i = u * NT + (int)threadIdx.x;
    v[u] = i < nr ? s[i] : 0ull;
    r[u] = i < nr ? rk[i] : 0u;
  }
  __syncthreads();
#pragma unroll
  for (int u = 0; u < PER; ++u)
    if (u * NT + (int)threadIdx.x < nr) s[r[u]] = v[u];
  __syncthreads();
}

// Sorts this block's survivor list s[0..nr) descending: by counting up to kTlRankSortMax keys, else by the
// bitonic network on the list padded with zeros to a power of two (>= 64; s has room for it). scratch: the
// pool (4 * kTlRankSortMax bytes used).
template <int NT>
__device__ __forceinline__ void tl_sort_list(tl_u64* s, int nr, unsigned char* scratch) {
  if (nr <= kTlRankSortMax) {
    tl_rank_sort<NT>(s, nr, reinterpret_cast<tl_u32*>(scratch));
  } else {
    int m = 64;
    while (m < nr) m <<= 1;
    for (int i = nr + (int)threadIdx.x; i < m; i += NT) s[i] = 0ull;
    __syncthreads();
    tl_sort_desc<NT>(s, m);
  }
}

// The final placement of a cluster's survivors when k is large for the cluster (not kTlCountPer): every block
// holds all `total` survivors of the row (distinct composite keys, `all`) and writes the output slots
// [rank * total / cl, (rank + 1) * total / cl), the slot of a key being the number of larger keys among all. A
// bucket sort of the keys by where they sit between a lower bound and the largest (NB = max(KP, NT) buckets,
// (c - mn) >> shift: a larger key never lands in a lower bucket) gives each key the count of the buckets above its
// own; the keys of its own bucket are then compared one by one. Integer counts and a scatter whose order within a
// bucket does not matter (only the count of larger keys is read): the same slots on every run. A key's slot lies in
// its bucket's range of the scatter, so a block finds the keys of its slots within `most` - 1 positions of them and
// a warp's writes land close together (where each block writing its own survivors spread them over the whole
// output: 64 x 131072, k = 2048, ~1 us of scattered 4-byte stores a block). Random rows put a key or two in a
// bucket. Keys crowded in a narrow band of a wide range (ties among a few far larger values) would share one: when
// a bucket holds more than kTlBucketMax keys, every block sorts all the keys instead (bitonic, as a single block
// does) and writes its range of slots from the sorted keys.
// The caller knows the bounds on its way here: mn <= every key (the start of the select's last boundary bin: no
// pass for the minimum), and the largest key is the largest of red[0, NT / 32) (each warp's, from the copies).
// scat: KP entries of shared scratch; bh: NB counters, zero; red: NT / 32 words of 8 bytes (shared; reused as
// 2 * NT / 32 words of 4).
// Block-uniform; synchronises the block (the caller before: `all`, bh and red complete).
template <int NT, int KP>
__device__ __noinline__ void tl_bucket_place(const tl_u64* all, int total, tl_u64 mn, tl_u64* scat,
                                             tl_u32* bh, tl_u64* red, float* __restrict__ ov, int* __restrict__ oi,
                                             const float* __restrict__ prow, int k, int cl, int rank) {
  constexpr int NW = NT / 32, NB = KP > NT ? KP : NT, PER = NB / NT, LOGNB = TlLog2<NB>::value;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  tl_u64 mx = 0ull;
#pragma unroll
  for (int w = 0; w < NW; ++w) mx = red[w] > mx ? red[w] : mx;
  if (mx < mn) mx = mn;   // (every key is >= mn: the guard is for memory only, as is the bucket clamp below)
  const tl_u64 range = mx - mn;   // total >= 1: mn <= mx
  const tl_u32 hi = (tl_u32)(range >> 32), lo = (tl_u32)range;
  const int bits = hi ? 64 - __clz(hi) : lo ? 32 - __clz(lo) : 0;   // range < 2^bits
  const int shift = bits > LOGNB ? bits - LOGNB : 0;
  const auto bucket = [&](tl_u64 c) {
    const tl_u64 d = (c - mn) >> shift;   // < NB
    return d < (tl_u64)NB ? (tl_u32)d : (tl_u32)(NB - 1);
  };
  // Histogram of the buckets.
  for (int i = tid; i < total; i += NT) atomicAdd(&bh[bucket(all[i])], 1u);
  __syncthreads();
  // bh[b] = the keys in the buckets above b: thread t takes the PER buckets from the top down at t * PER.
  tl_u32 cnt[PER], run = 0, most = 0;
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    cnt[u] = bh[NB - 1 - (tid * PER + u)], run += cnt[u];
    most = cnt[u] > most ? cnt[u] : most;
  }
#pragma unroll
  for (int d = 16; d >= 1; d >>= 1) {
    const tl_u32 y = __shfl_xor_sync(kTlFull, most, d);
    most = y > most ? y : most;
  }
  tl_u32 incl = run;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const tl_u32 y = __shfl_up_sync(kTlFull, incl, d);
    if (lane >= d) incl += y;
  }
  tl_u32* wsum = reinterpret_cast<tl_u32*>(red);   // the maxima were read before the last barrier
  if (lane == 31) wsum[warp] = incl, wsum[NW + warp] = most;
  __syncthreads();
  most = 0u;
#pragma unroll
  for (int w = 0; w < NW; ++w) most = wsum[NW + w] > most ? wsum[NW + w] : most;
  const int lgcl = __ffs(cl) - 1;   // cl is a power of two
  const int s_lo = (rank * total) >> lgcl, s_hi = ((rank + 1) * total) >> lgcl;
  if (most > (tl_u32)kTlBucketMax) {   // crowded: sort all the keys (block-uniform)
    int m = 64;
    while (m < total) m <<= 1;
    // m <= KP, so scat has room: this path runs only when counting does not, which needs k > 64 (k * k > cl * NT *
    // kTlCountPer with cl >= 2, NT >= 64), so KP >= 128 >= total.
    for (int i = tid; i < m; i += NT) scat[i] = i < total ? all[i] : 0ull;
    __syncthreads();
    tl_sort_desc<NT>(scat, m);
    for (int i = s_lo + tid; i < s_hi && i < k; i += NT) tl_put(oi, ov, i, scat[i], prow);
    return;
  }
  tl_u32 above = incl - run;
  for (int w = 0; w < warp; ++w) above += wsum[w];
#pragma unroll
  for (int u = 0; u < PER; ++u) bh[NB - 1 - (tid * PER + u)] = above, above += cnt[u];
  __syncthreads();
  // Scatter: bucket b's keys go to [bh[b], end); bh[b] ends as its end, which is the start of bucket b - 1.
  for (int i = tid; i < total; i += NT) {
    const tl_u64 c = all[i];
    const tl_u32 p = atomicAdd(&bh[bucket(c)], 1u);
    if (p < (tl_u32)total) scat[p] = c;   // (p < total always: the guard is for memory only)
  }
  __syncthreads();
  // A key's slot: the keys of the buckets above (the start of its bucket = the end of the bucket above) plus the
  // larger keys of its own bucket. Slot s's key sits in its bucket's range of scat, which holds s and at most `most`
  // keys: within most - 1 positions of s.
  const int p_lo = s_lo - (int)most + 1 > 0 ? s_lo - (int)most + 1 : 0;
  const int p_hi = s_hi + (int)most - 1 < total ? s_hi + (int)most - 1 : total;
  for (int p = p_lo + tid; p < p_hi; p += NT) {
    const tl_u64 x = scat[p];
    const tl_u32 b = bucket(x);
    const tl_u32 start = b + 1 < (tl_u32)NB ? bh[b + 1] : 0u, end = bh[b];
    tl_u32 slot = start;
    for (tl_u32 q = start; q < end && q < (tl_u32)total; ++q) slot += scat[q] > x ? 1u : 0u;
    if (slot >= (tl_u32)s_lo && slot < (tl_u32)s_hi && slot < (tl_u32)k) tl_put(oi, ov, slot, x, prow);
  }
}

}  // namespace dsv4
