// Long-row top-k for few long rows by a sample threshold (dsv4_topk_select picks it for k <= 1024 where
// topk_long.cu's plan takes clusters of 16 blocks of 512 threads and a block's slice is at most 8192 columns: on an
// H100 or H200 the planner gives clusters of 16 only to rows of 131072 columns or more and only as many rows as the
// device runs such clusters at once, so a few rows (1..7 on the H200 measured) of exactly 131072 columns). The
// same contract and bits as topk_long.cu: per row the k largest values and their column indices, descending;
// equal values -> lower index first; NaN below everything (-0.0 == +0.0); values copied bit for bit. Measured
// first as docs/experiments/topk_sample_skeleton.cu (docs/performance.md).
//
// topk_sample<KP>: one cluster of 16 blocks per row, block r owning the columns [r*slice, (r+1)*slice), 16 a
// thread, kept in registers as order keys (tl_order_key). Per row:
//   1. every block loads its slice and the same sample of kTsSample scores (32 runs of 128 consecutive columns
//      spread over the row);
//   2. every block finds the same threshold T from the sample: a two-level radix select (12 + 12 bits) of the
//      q-th largest sample key, q = min(2 k, 6144) kTsSample / cols + 8 (at most the sample), and T the lower edge
//      of its 24-bit bin; where that bin is crowded, a third level (8 bits) counts the copies of the key itself;
//   3. the keys >= T go to the block's candidate list as composite keys (tl_ckey: distinct, in output order),
//      placed by a ballot a slot and one shared atomic a warp;
//   4. a cluster barrier; warp 0 reads the 16 blocks' counts and largest keys and hands the offsets to the block;
//   5. every block copies all the cluster's candidates (warp b those of block b), counts them into kTsBuckets
//      buckets by where their order key lies between T and the largest (a non-decreasing map), arrives at a
//      second cluster barrier, scans the counts into "candidates above", waits, scatters all candidates by bucket
//      into its own list's space, and writes its own candidates whose rank (the candidates above their bucket plus
//      the larger keys in it) is below k (tl_put: the value read back where the key does not give its bits).
// Fallback, decided alike by every block from the same sample and counts, to topk_long's row body
// (topk_long_row.cuh) in the same launch, with the plan's slice, cache and buffer sizes (the dynamic shared memory
// is the larger of the two layouts):
//   - from the sample, before step 3 and any cluster barrier of the row: the q-th sample key has more than
//     kTsTieMax copies in the row, estimated from its copies in the sample (ties at the threshold), or it is a NaN;
//   - after step 4 (and a second barrier: no block reads another's counts any more): fewer than k or more than
//     kTsCap candidates (rows of few distinct values);
//   - after step 5 (both barriers completed): a bucket of more than kTsBucketMax keys (ties, or one huge value
//     that leaves every other candidate in the lowest bucket).
//
// Cluster barriers per row: two on the sample path and on the later fallbacks, none on the fallback from the
// sample; then topk_long's own on a fallback. No global scratch, no atomics outside
// shared memory: like topk_long, the launch needs no workspace and is graph-capturable.
#include "topk_long_row.cuh"

// A host harness (tests/cpu/test_topk_long_emu.cc) counts the rows the sample path selects, those it sends to the
// fallback from the sample, and the third levels it runs; nothing on a GPU.
#ifndef DSV4_TS_FAST_ROW
#define DSV4_TS_FAST_ROW()
#endif
#ifndef DSV4_TS_EARLY_FALLBACK
#define DSV4_TS_EARLY_FALLBACK()
#endif
#ifndef DSV4_TS_THIRD_LEVEL
#define DSV4_TS_THIRD_LEVEL()
#endif
// The phase harness (docs/experiments/topk_sample_phases.cu) reads the clock at each phase's end; nothing in the
// library does.
#ifndef DSV4_TS_STAMP
#define DSV4_TS_STAMP(i)
#endif

namespace dsv4 {

constexpr int kTsThreads = 512, kTsCluster = 16;
constexpr int kTsPer = 16;                       // slice keys a thread: slices up to kTsThreads * kTsPer columns
constexpr int kTsMaxSlice = kTsThreads * kTsPer;
constexpr int kTsSample = 4096, kTsSamplePer = kTsSample / kTsThreads, kTsRun = 128;
constexpr int kTsCap = 8192;                     // candidates of a row at most (the copies' room)
// A bucket of more than kTsBucketMax keys sends the row to the fallback: a key of it compares against that many at
// most (512: ~2 us of one thread), where ties of a few hundred copies of a value (scores rounded to quarters)
// would otherwise pay for the sample phases and topk_long both.
constexpr int kTsBuckets = 2048, kTsBucketMax = 512;
// A q-th sample key with more than kTsTieMax copies in the row, estimated from its copies in the sample (x cols /
// kTsSample; at 131072 columns more than 8 of the sample's), sends the row to the fallback before the filter: such a
// row (scores rounded to quarters: some 560 copies at the cut) would most likely fill a bucket past kTsBucketMax and
// fall back after the copy, having paid for every phase (measured on an H200: 24.3 us against 15.3 for topk_long
// alone). Half the bucket limit, because the estimate is a count of 8-16 in the sample: a row of more than 512
// copies rarely gets past it (rows of 256-512 copies, which the sample path would have taken, go to the fallback
// too; not measured). The copies are counted by a third radix level (the key's last 8 bits), run only where the
// 24-bit bin already holds that many: a row of distinct values in a narrow range crowds bins, not keys.
constexpr int kTsTieMax = 256;

struct TsSmem {
  tl_u32 hist[2][4096];     // the threshold's two levels; then bucket counts ([0]) and "above" ([1])
  tl_u32 scan[32];
  tl_u32 pick[3];           // the digit, need within it, the keys in its bin
  tl_u32 count;             // this block's candidates (read by the cluster)
  tl_u32 maxkey;            // the largest order key of its slice (read by the cluster)
  tl_u32 offs[kTsCluster];  // where each block's candidates start among all (from warp 0)
  tl_u32 total, top;        // all candidates; the largest order key of the row (from warp 0)
  tl_u64 own[kTsMaxSlice];  // this block's candidates (read by the cluster); then all of them by bucket
  tl_u64 all[kTsCap];       // every block's, in block order
};
static_assert(sizeof(TsSmem) == 164064, "host: SAMPLE_SMEM (runtime/ops/topk_select.c)");

// One radix level of the threshold (L = 0: order-key bits 31..20; L = 1: 19..8; L = 2: 7..0) over the sample keys
// whose higher bits equal `prefix`: the digit (12 bits; 8 at L = 2) of the need-th largest (1-based), need within
// it, and the sample keys in its bin (`in_bin`). Thread t owns the bins [8t, 8t + 8).
template <int L>
__device__ __forceinline__ void ts_level(const tl_u32 (&sk)[kTsSamplePer], tl_u32& prefix, tl_u32& need,
                                         tl_u32& in_bin, TsSmem& sm) {
  constexpr int shift = L == 0 ? 20 : L == 1 ? 8 : 0;
  constexpr tl_u32 mask = L == 0 ? 0u : L == 1 ? 0xfff00000u : 0xffffff00u;
  tl_u32* h = sm.hist[L & 1];   // level 2 (8 bits: bins 0..255) reuses level 0's, cleared
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < kTsSamplePer; ++i)
    if ((sk[i] & mask) == prefix) atomicAdd(&h[(sk[i] >> shift) & (L == 2 ? 255u : 4095u)], 1u);
  __syncthreads();
  const uint4 c0 = reinterpret_cast<const uint4*>(h)[2 * threadIdx.x];
  const uint4 c1 = reinterpret_cast<const uint4*>(h)[2 * threadIdx.x + 1];
  const tl_u32 c[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
  tl_u32 mine = 0u;
#pragma unroll
  for (int j = 0; j < 8; ++j) mine += c[j];
  tl_u32 incl = mine;   // this thread's bins and the higher threads' (within the warp)
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const tl_u32 o = __shfl_down_sync(kTlFull, incl, d);
    if (lane + d < 32) incl += o;
  }
  if (lane == 0) sm.scan[warp] = incl;
  __syncthreads();
  const tl_u32 wt = lane < kTsThreads / 32 ? sm.scan[lane] : 0u;
  tl_u32 acc = __reduce_add_sync(kTlFull, lane > warp ? wt : 0u) + incl - mine;   // the bins above this thread's
  if (acc < need && need <= acc + mine) {   // exactly one thread
#pragma unroll
    for (int j = 7; j >= 0; --j) {
      if (acc < need && need <= acc + c[j])
        sm.pick[0] = (tl_u32)(8 * threadIdx.x + j), sm.pick[1] = need - acc, sm.pick[2] = c[j];
      acc += c[j];
    }
  }
  __syncthreads();
  prefix |= sm.pick[0] << shift;
  need = sm.pick[1];
  in_bin = sm.pick[2];
  __syncthreads();   // pick (and scan) are rewritten next
}

// The bucket of order key h (every candidate's is in [T, top]): non-decreasing in h.
__device__ __forceinline__ tl_u32 ts_bucket(tl_u32 h, tl_u32 T, float scale) {
  return min((tl_u32)((float)(h - T) * scale), (tl_u32)kTsBuckets - 1u);
}

template <int KP>
__global__ void __launch_bounds__(kTsThreads)
    topk_sample(const float* __restrict__ scores, i64 rows, int cols, i64 row_stride, int k,
                float* __restrict__ out_values, int* __restrict__ out_indices, int slice, int dense_n, int cap,
                int wide_keys) {
  static_assert(KP >= 1 && KP <= 4096 && (KP & (KP - 1)) == 0, "KP is a power of two up to 4096");
  static_assert(kTsBuckets == 4 * kTsThreads && kTsSample == kTsSamplePer * kTsThreads, "shapes");
  static_assert(kTsThreads / 32 == kTsCluster, "step 5: warp b copies block b's candidates");
  TsSmem& sm = *reinterpret_cast<TsSmem*>(tl_smem());
  const tl_u32 r = tl_cluster_rank();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const bool vec = ((((unsigned long long)scores) | (unsigned long long)(row_stride * 4)) & 15ull) == 0;
  const int lo = (int)r * slice;
  const int n = lo < cols ? (cols - lo < slice ? cols - lo : slice) : 0;   // this block's columns (<= slice)
  const i64 nclusters = (i64)(gridDim.x / (unsigned)kTsCluster);
  bool pending = false;   // a cluster arrive of topk_long_row whose wait is still due

  for (i64 row = (i64)(blockIdx.x / (unsigned)kTsCluster); row < rows; row += nclusters) {
    const float* prow = scores + row * row_stride;
    if (pending) tl_cluster_wait(), pending = false;   // the previous row's readers of this block are done
    DSV4_TS_STAMP(0);
    // 1. The slice (thread t: columns lo + 4 (t + 512 c) + u; a column past the slice is a NaN, key 0) and the
    // sample (run j: 128 columns from j * (cols / 32)); the histograms and counters are cleared while the loads are
    // in flight.
    float v[kTsPer];
#pragma unroll
    for (int c = 0; c < kTsPer / 4; ++c) {
      const int col = 4 * (tid + c * kTsThreads);
      if (vec && col + 3 < n) {
        const float4 q = __ldg(reinterpret_cast<const float4*>(prow + lo + col));
        v[4 * c] = q.x, v[4 * c + 1] = q.y, v[4 * c + 2] = q.z, v[4 * c + 3] = q.w;
      } else {
#pragma unroll
        for (int u = 0; u < 4; ++u) v[4 * c + u] = col + u < n ? __ldg(prow + lo + col + u) : __uint_as_float(0x7fffffffu);
      }
    }
    float sv[kTsSamplePer];
    const int run_stride = cols / (kTsSample / kTsRun);   // >= kTsRun: cols > kTsSample
#pragma unroll
    for (int i = 0; i < kTsSamplePer; ++i) {
      const int s = tid + i * kTsThreads;
      sv[i] = __ldg(prow + (s / kTsRun) * run_stride + s % kTsRun);
    }
#pragma unroll
    for (int i = 0; i < 2 * 4096 / 4 / kTsThreads; ++i)
      reinterpret_cast<uint4*>(&sm.hist[0][0])[tid + i * kTsThreads] = make_uint4(0u, 0u, 0u, 0u);
    if (tid == 0) sm.count = 0u, sm.maxkey = 0u;
    tl_u32 key[kTsPer], sk[kTsSamplePer];
#pragma unroll
    for (int i = 0; i < kTsPer; ++i) key[i] = tl_order_key(v[i]);
#pragma unroll
    for (int i = 0; i < kTsSamplePer; ++i) sk[i] = tl_order_key(sv[i]);
    __syncthreads();
    DSV4_TS_STAMP(1);

    // 2. The threshold.
    // q: about twice the sample's share of k, at most the share of 6144 (the copies hold kTsCap = 8192), plus 8 (a
    // small k: a row's q-th sample key then still has a few hundred scores above it), at most the sample.
    // Expected candidates q * cols / kTsSample: at 131072 columns 1280 for k = 512 (+-15 %), 4352 for 2048,
    // 6400 for 4096 (+-7 %), 256 for k = 8; the row falls back if it has fewer than k or more than kTsCap.
    const i64 share = 2 * (i64)k * kTsSample / cols, cap_share = (i64)(3 * kTsCap / 4) * kTsSample / cols;
    const tl_u32 q = (tl_u32)min(min(share, cap_share) + 8, (i64)kTsSample);
    tl_u32 T = 0u, need = q, in_bin = 0u;
    ts_level<0>(sk, T, need, in_bin, sm);
    DSV4_TS_STAMP(10);
    ts_level<1>(sk, T, need, in_bin, sm);
    // Ties at the threshold: decided alike by every block (the same sample), before any cluster barrier of the row.
    const i64 tie_max = (i64)kTsTieMax * kTsSample;   // copies x cols compared with it
    bool fallback = false;
    if ((i64)in_bin * cols > tie_max) {
#pragma unroll
      for (int i = 0; i < 4096 / 4 / kTsThreads; ++i)
        reinterpret_cast<uint4*>(&sm.hist[0][0])[tid + i * kTsThreads] = make_uint4(0u, 0u, 0u, 0u);
      __syncthreads();
      tl_u32 kq = T, need2 = need, copies = 0u;   // the q-th sample key itself, and its copies in the sample
      ts_level<2>(sk, kq, need2, copies, sm);
      if (r == 0u && tid == 0) DSV4_TS_THIRD_LEVEL();
      fallback = (i64)copies * cols > tie_max;
      if (fallback && r == 0u && tid == 0) DSV4_TS_EARLY_FALLBACK();
    }
    // T = 0: the q-th sample key is a NaN, and every key, the padding's (key 0) too, would be a candidate. At least
    // kTsSample - q + 1 of the sample's keys are then NaN, so where q is well below kTsSample (at 131072 columns q
    // is at most 200) the rule above has already sent the row to the fallback; where k is large against cols, q
    // nears kTsSample and only this test keeps the filter's "T > 0" true.
    if (!fallback && T == 0u) {
      fallback = true;
      if (r == 0u && tid == 0) DSV4_TS_EARLY_FALLBACK();
    }
    DSV4_TS_STAMP(2);

    if (!fallback) {
      // 3. The candidates, keys >= T (T > 0: never the padding): a warp ballots each slot of its threads, one shared
      // atomic a warp reserves places for its hits, and a slot's hits go to the warp's next places in lane order.
      // Candidates are ~1 % of a slice, so most slots' ballots are empty and skip their stores. (The form before,
      // a count and a scan a thread and 16 predicated stores, issued ~5 times the instructions; the 16 warps of a
      // block issue on 4 schedulers, so a phase costs about 4 x its instructions a warp.) The block's largest key
      // beside: the row's largest key is a candidate, and so the cluster's is the largest candidate key.
      tl_u32 bal[kTsPer], wcnt = 0u, kmax = 0u;
#pragma unroll
      for (int i = 0; i < kTsPer; ++i) {
        bal[i] = __ballot_sync(kTlFull, key[i] >= T);
        wcnt += __popc(bal[i]);
        kmax = max(kmax, key[i]);
      }
      tl_u32 base = 0u;
      if (lane == 0 && wcnt != 0u) base = atomicAdd(&sm.count, wcnt);
      base = __shfl_sync(kTlFull, base, 0);
      kmax = __reduce_max_sync(kTlFull, kmax);
      if (lane == 0) atomicMax(&sm.maxkey, kmax);
      const tl_u32 lower = (1u << lane) - 1u;   // the lanes below this one
#pragma unroll
      for (int i = 0; i < kTsPer; ++i)
        if (bal[i] != 0u) {   // warp-uniform
          if ((bal[i] >> lane) & 1u)
            sm.own[base + __popc(bal[i] & lower)] =
                tl_ckey(key[i], (tl_u32)(lo + 4 * (tid + (i / 4) * kTsThreads) + i % 4));
          base += __popc(bal[i]);
        }
      DSV4_TS_STAMP(3);

      // 4. The counts over the cluster, read by warp 0 (lane b: block b's count and largest key) and handed to the
      // block through shared memory. (When every warp read them itself, this step took ~3200 cycles on an H200,
      // against ~1100 now: docs/experiments/topk_sample_phases.cu.) The bucket counts are cleared beside: they
      // were the threshold's first histogram, which every thread of this block read before the barriers above.
      tl_cluster_arrive();
      tl_cluster_wait();
      DSV4_TS_STAMP(4);
      tl_u32* const bcnt = sm.hist[0];
      tl_u32* const above = sm.hist[1];
      if (warp == 0) {
        const tl_u32 cb = lane < kTsCluster ? tl_peer(&sm.count, (tl_u32)lane)[0] : 0u;
        const tl_u32 top = __reduce_max_sync(kTlFull, lane < kTsCluster ? tl_peer(&sm.maxkey, (tl_u32)lane)[0] : 0u);
        tl_u32 off = cb;
#pragma unroll
        for (int d = 1; d < 32; d <<= 1) {
          const tl_u32 o = __shfl_up_sync(kTlFull, off, d);
          if (lane >= d) off += o;
        }
        if (lane < kTsCluster) sm.offs[lane] = off - cb;
        if (lane == 31) sm.total = off, sm.top = top;
      }
      reinterpret_cast<uint4*>(bcnt)[tid] = make_uint4(0u, 0u, 0u, 0u);
      __syncthreads();
      const tl_u32 total = sm.total, top = sm.top;
      fallback = total < (tl_u32)k || total > (tl_u32)kTsCap;
      if (!fallback) {
        // 5. Copy all candidates into `all` in block order, warp b those of block b (coalesced loads from one block,
        // two in flight a lane), and count them into buckets. A load past the candidates is not issued: every read
        // of another block's shared memory must be consumed before this block arrives at the barrier below (the
        // relaxed arrive and the fence on this block's own shared memory do not order it), or that block might
        // overwrite its list, or exit, under it.
        const tl_u32 mine_at = sm.offs[r];
        const float scale = (float)kTsBuckets / (float)((tl_u64)top - T + 1ull);
        DSV4_TS_STAMP(5);
        {
          const tl_u32 ob = sm.offs[warp], nb = (warp + 1 < kTsCluster ? sm.offs[warp + 1] : total) - ob;
          const tl_u64* src = tl_peer(sm.own, (tl_u32)warp);
          for (tl_u32 j0 = (tl_u32)lane; j0 < nb; j0 += 64u) {
            tl_u64 c[2];
#pragma unroll
            for (int u = 0; u < 2; ++u) c[u] = j0 + 32u * u < nb ? src[j0 + 32u * u] : 0ull;
#pragma unroll
            for (int u = 0; u < 2; ++u)
              if (j0 + 32u * u < nb) {
                sm.all[ob + j0 + 32u * u] = c[u];
                atomicAdd(&bcnt[ts_bucket((tl_u32)(c[u] >> 32), T, scale)], 1u);
              }
          }
        }
        tl_cluster_arrive();   // this block's reads of the others are done (their values are stored)
        __syncthreads();       // all and the bucket counts are complete
        DSV4_TS_STAMP(6);
        // above[b] = the candidates in buckets above b; the counts are cleared for the scatter's fills. Every block
        // has the same counts, so every block sees the same crowded bucket, or none.
        const uint4 bc = reinterpret_cast<const uint4*>(bcnt)[tid];
        const tl_u32 bmine = bc.x + bc.y + bc.z + bc.w;
        tl_u32 bincl = bmine;
#pragma unroll
        for (int d = 1; d < 32; d <<= 1) {
          const tl_u32 o = __shfl_down_sync(kTlFull, bincl, d);
          if (lane + d < 32) bincl += o;
        }
        if (lane == 0) sm.scan[warp] = bincl;
        const bool crowded_here = max(max(bc.x, bc.y), max(bc.z, bc.w)) > (tl_u32)kTsBucketMax;
        const bool crowded = __syncthreads_or(crowded_here) != 0;
        const tl_u32 wt = lane < kTsThreads / 32 ? sm.scan[lane] : 0u;
        const tl_u32 bbase = __reduce_add_sync(kTlFull, lane > warp ? wt : 0u) + bincl - bmine;
        reinterpret_cast<uint4*>(above)[tid] = make_uint4(bbase + bc.w + bc.z + bc.y, bbase + bc.w + bc.z,
                                                          bbase + bc.w, bbase);
        reinterpret_cast<uint4*>(bcnt)[tid] = make_uint4(0u, 0u, 0u, 0u);
        __syncthreads();
        tl_cluster_wait();   // no block reads this block's list any more
        DSV4_TS_STAMP(7);
        if (crowded) {
          fallback = true;
        } else {
          // 6. Scatter all candidates by bucket into own's space (highest bucket first), then rank and write this
          // block's own (all[mine_at, + count)).
          for (tl_u32 j = (tl_u32)tid; j < total; j += kTsThreads) {
            const tl_u64 c = sm.all[j];
            const tl_u32 b = ts_bucket((tl_u32)(c >> 32), T, scale);
            sm.own[above[b] + atomicAdd(&bcnt[b], 1u)] = c;
          }
          __syncthreads();
          DSV4_TS_STAMP(8);
          const tl_u32 nm = sm.count;
          float* ov = out_values + row * (i64)k;
          int* oi = out_indices + row * (i64)k;
          for (tl_u32 i = (tl_u32)tid; i < nm; i += kTsThreads) {
            const tl_u64 c = sm.all[mine_at + i];
            const tl_u32 b = ts_bucket((tl_u32)(c >> 32), T, scale);
            const tl_u32 s_lo = above[b], s_hi = b > 0u ? above[b - 1u] : total;
            tl_u32 slot = s_lo;
            for (tl_u32 s = s_lo; s < s_hi; ++s) slot += sm.own[s] > c ? 1u : 0u;
            if (slot < (tl_u32)k) tl_put(oi, ov, slot, c, prow);
          }
          if (r == 0u && tid == 0) DSV4_TS_FAST_ROW();
          __syncthreads();   // own, all and the counters are reused by the next row
          DSV4_TS_STAMP(9);
        }
      } else {
        tl_cluster_arrive();   // this block's reads of the others' counts are done
        tl_cluster_wait();
      }
    }
    if (fallback)   // every block alike: topk_long's select on this row, over the whole shared memory
      topk_long_row<KP, kTsThreads>(scores, cols, row_stride, k, out_values, out_indices, slice, dense_n, cap,
                                    wide_keys, row, pending);
  }
  if (pending) tl_cluster_wait();   // no block leaves while another may still read its shared memory
}

}  // namespace dsv4
