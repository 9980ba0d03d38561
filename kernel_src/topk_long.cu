// Long-row top-k (dsv4_topk_select for every shape the warp path does not take; the indexer's rows: k up to
// 4096, up to 2^20 columns). Per row: the k largest values and their column indices, descending; equal
// values -> lower index first; NaN below everything (-0.0 == +0.0). Values are copied bit for bit.
//
// topk_long<KP, NT>: KP = k rounded up to a power of two (>= 1), NT threads per block. One thread-block
// cluster of CL blocks (CL = 1..16, a launch attribute; always 1 on sm_80) per row: block r of the cluster
// owns the columns [r*slice, (r+1)*slice). The host (runtime/ops/topk_select.c, dsv4_topk_long_plan_for) picks
// CL so that rows * CL blocks fill the SMs once, and the shared-memory layout (below).
//
// Every element gets a composite key: its order key (float_order_key) above ~column. The keys are distinct
// and their descending order is the output order, so the k survivors are the k largest composite keys: a radix
// select over the composite key's digits (11 + 11 + 10 bits of the value, then 10 + 10 bits of ~column for
// ties) finds them, and their output slots are counts of larger keys. Nothing depends on the order in which threads
// append to a list: the result is the same bits on every run.
//
//   pass 1:  every block reads its slice from global memory once, keeps the order keys in shared memory (the
//            whole 32-bit key when the slice fits beside a candidate buffer, else its top 16 bits; a prefix
//            of the slice when even that does not fit, the rest is re-read from L2) and histograms the top
//            digit (shared atomics into two copies, even and odd lanes).
//   merge:   the histograms are summed over the cluster through distributed shared memory by one warp per
//            block, in two steps (64 chunk sums, then the 32 bins of the chunk that holds the cut; each step
//            one round trip, all blocks' loads in flight at once): every block finds the same boundary bin,
//            the count above it and in it. Integer sums: exact, order-free.
//   level L: one pass over the level's set emits the elements above the boundary digit to the block's
//            survivor list (warp-aggregated shared atomics) and counts the boundary elements' next digit; the
//            first time the block's boundary elements fit the candidate buffer they are appended to it, and
//            later levels read only the buffer. A pass over the slice touches only keys at or above a lower
//            bound (one compare per key); with 16-bit keys the positions that may qualify are collected and
//            re-read from global memory together for their low bits. When the boundary bin holds exactly the
//            elements still needed it is taken whole and the select ends; it always ends by level 5 (a digit
//            of ~column is unique within its set). Random rows end after level 2 or 3. With buckets (below),
//            a boundary bin of at most kTlMaybeMax elements (over the cluster) also ends it: the blocks set the
//            bin's elements aside (the maybe keys), and the final phase takes the largest of them that are
//            still needed, where a next level would have split the bin.
//   final:   with CL = 1 the block sorts its survivors (up to 256 by counting ranks, longer lists by a bitonic
//            sort: 64-key segments in registers, larger strides in shared memory) and the sorted list is the
//            output. With CL > 1 every block copies all the cluster's lists of survivors (its own too), a slot
//            being the number of larger keys among all k: when k is small for the cluster (kTlCountPer) a block
//            writes its own survivors to their slots, counted against all k (counts summed with shared atomics:
//            integers, exact); else every block copies the maybe keys too, ranks them and appends those still
//            needed, then writes its 1/CL of the slots, found by buckets over the k keys (tl_bucket_place; a
//            crowded bucket makes every block sort all k).
//
// Barriers per row: a few block barriers and one cluster barrier per level, one cluster barrier at the end;
// none per chunk of data. No global scratch, no atomics outside shared memory, no inter-cluster communication:
// the launch needs no workspace, is graph-capturable and concurrent calls on different streams do not
// interact. The host checks with cuOccupancyMaxActiveClusters that the clusters of the chosen size fit at once.
#include "topk_long_row.cuh"

namespace dsv4 {

// Arguments besides the problem: slice = columns per block (a multiple of 4); dense_n = columns of the slice
// kept in shared memory (a multiple of 8, or >= slice); cap = candidate buffer entries; wide_keys = 1 for
// 32-bit cached keys, 0 for 16-bit. Dynamic shared memory: kTlCtlBytes + 2 * kTlBins * 4 + max(KP, 64) * 8 +
// the pool: roundup(dense_n, 8) * (wide ? 4 : 2) bytes of cache, with 16-bit keys kTlHits * 4 bytes of hit
// list, then cap * 8 bytes of candidates; the pool holds at least 4 * kTlRankSortMax bytes (the counting
// sort's scratch) and, with CL > 1, 16 * KP bytes (the copied lists, then the ranks or the bucket scatter).
template <int KP, int NT>
__global__ void __launch_bounds__(NT)
    topk_long(const float* __restrict__ scores, i64 rows, int cols, i64 row_stride, int k,
              float* __restrict__ out_values, int* __restrict__ out_indices, int slice, int dense_n, int cap,
              int wide_keys) {
  const int cl = (int)tl_cluster_size();
  const i64 nclusters = (i64)(gridDim.x / (unsigned)cl);
  bool pending = false;   // a cluster arrive whose wait is still due
  for (i64 row = (i64)(blockIdx.x / (unsigned)cl); row < rows; row += nclusters)
    topk_long_row<KP, NT>(scores, cols, row_stride, k, out_values, out_indices, slice, dense_n, cap, wide_keys, row,
                          pending);
  if (pending) tl_cluster_wait();   // no block leaves while another may still read its shared memory
}

}  // namespace dsv4
