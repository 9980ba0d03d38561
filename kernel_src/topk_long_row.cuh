// The row body of the long-row top-k (topk_long.cu's kernel loops over its rows with it): the k largest of row
// `row`, descending, to out_values / out_indices rows of k. Every thread of every block of the row's cluster calls
// it with the same arguments, in uniform control flow. `pending` carries a cluster arrive whose wait is still due
// from one row to the next (the caller waits on it before its blocks leave). Compiled by NVRTC only.
#pragma once

#include "topk_long.cuh"

namespace dsv4 {

template <int KP, int NT>
__device__ __forceinline__ void topk_long_row(const float* __restrict__ scores, int cols, i64 row_stride, int k,
                                              float* __restrict__ out_values, int* __restrict__ out_indices,
                                              int slice, int dense_n, int cap, int wide_keys, i64 row,
                                              bool& pending) {
  static_assert(KP >= 1 && KP <= 4096 && (KP & (KP - 1)) == 0, "KP is a power of two up to 4096");
  static_assert(NT >= 64 && NT <= 1024 && (NT & (NT - 1)) == 0, "NT is a power of two in 64..1024");
  constexpr int SP = KP > 64 ? KP : 64;   // survivor list capacity (the sort works on >= 64 keys)
  unsigned char* sm = tl_smem();
  TlCtl* ctl = reinterpret_cast<TlCtl*>(sm);
  tl_u32* hist = reinterpret_cast<tl_u32*>(sm + kTlCtlBytes);                     // [2][kTlBins]
  tl_u64* list = reinterpret_cast<tl_u64*>(sm + kTlCtlBytes + 2 * kTlBins * 4);   // [SP]
  unsigned char* pool = sm + kTlCtlBytes + 2 * kTlBins * 4 + SP * 8;
  const bool wide = wide_keys != 0;
  tl_u32* hits = reinterpret_cast<tl_u32*>(pool + ((dense_n + 7) & ~7) * (wide ? 4 : 2));   // 16-bit keys only
  tl_u64* buf = reinterpret_cast<tl_u64*>(reinterpret_cast<unsigned char*>(hits) + (wide ? 0 : kTlHits * 4));
  const int cl = (int)tl_cluster_size(), rank = (int)tl_cluster_rank();
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const bool vec = ((((unsigned long long)scores) | (unsigned long long)(row_stride * 4)) & 15ull) == 0;
  const int lo = rank * slice;
  const int n = lo < cols ? (cols - lo < slice ? cols - lo : slice) : 0;
  const int dn = dense_n < n ? dense_n : n;
  // The final phase: survivors placed by counting (small k for the cluster) or by buckets; only the buckets take a
  // split boundary (the maybe keys join the copies before the placement).
  const bool counting = cl > 1 && (tl_u64)k * (tl_u64)k <= (tl_u64)cl * NT * kTlCountPer;
  const bool can_split = cl > 1 && !counting;
  const float* prow = scores + row * row_stride;
  const float* pg = prow + lo;
  for (int b = tid; b < 2 * kTlBins; b += NT) hist[b] = 0u;
  __syncthreads();

  // ---- pass 1: cache the slice's keys, histogram the top digit (even lanes: hist[1], odd: hist[0]) ----
  tl_pass1<NT>(n, dn, pg, vec, wide, pool, hist + kTlBins, hist);
  __syncthreads();
  tl_chunk_sums<NT>(hist + kTlBins, hist, true, ctl->sums[1]);   // folds hist[0] into hist[1], clears hist[0]
  if (pending) tl_cluster_wait(), pending = false;   // the other blocks are done reading our list and counts
  if (tid == 0) ctl->n_emit = 0u, ctl->n_push = 0u;
  tl_sync(cl);
  if (warp == 0) tl_merge(ctl, hist + kTlBins, ctl->sums[1], cl, rank, (tl_u32)k);
  if (tid == 0) ctl->n_hits = 0u;
  __syncthreads();

  // ---- levels: the histogram of level L's digit is hist[L & 1], its chunk sums ctl->sums[L & 1] ----
  tl_u32 need = (tl_u32)k;
  TlLevel lv;
  lv.pm = 0ull, lv.pp = 0ull;
  bool in_buf = false;
  bool split = false;   // the select ended on a split boundary (kTlMaybeMax): its bin's elements in ctl->maybe
  int sn = 0;
  for (int level = 1;; ++level) {
    const tl_u32 bin = ctl->bin, above = ctl->above, cnt = ctl->cnt, mine = ctl->mine;
    need -= above;
    const int sh = tl_shift(level);
    lv.b = bin, lv.sh = sh, lv.dm = tl_dmask(level);
    lv.take = cnt == need || level == kTlLevels;
    split = !lv.take && can_split && cnt <= (tl_u32)kTlMaybeMax;   // cnt: the cluster's, the same in every block
    lv.sh2 = level < kTlLevels ? tl_shift(level + 1) : 0;
    lv.dm2 = level < kTlLevels ? tl_dmask(level + 1) : 0u;
    lv.push = split || (!lv.take && !in_buf && mine <= (tl_u32)cap);
    lv.flo = (tl_u32)(lv.pp >> 32) | (level <= 3 ? bin << (sh - 32) : 0u);
    lv.fhi = (tl_u32)(lv.pp >> 32) | ~(tl_u32)(lv.pm >> 32);   // the largest order key with the set's digits
    tl_u32* hn = hist + ((level + 1) & 1) * kTlBins;   // the next digit's histogram (zero)
    // Pushes go to the candidate buffer, or on a split boundary to the maybe list (n_push is 0 here: no buffer
    // was filled, or it was reset once its count was read).
    tl_u64* pb = split ? ctl->maybe : buf;
    const tl_u32 pcap = split ? (tl_u32)kTlMaybeMax : (tl_u32)cap;
    if (in_buf)
      tl_scan_buffer<NT>(sn, buf, lv, hn, ctl, list, (tl_u32)SP, pb, split ? pcap : 0u);
    else
      tl_scan_slice<NT>(n, dn, pg, vec, lo, wide, pool, hits, lv, hn, ctl, list, (tl_u32)SP, pb, pcap);
    __syncthreads();
    if (lv.take || split) break;
    if (lv.push) in_buf = true, sn = (int)ctl->n_push;
    lv.pp |= (tl_u64)bin << sh;
    lv.pm |= (tl_u64)lv.dm << sh;
    tl_chunk_sums<NT>(hn, nullptr, false, ctl->sums[(level + 1) & 1]);
    tl_sync(cl);
    if (warp == 0) tl_merge(ctl, hn, ctl->sums[(level + 1) & 1], cl, rank, need);
    // This level's histogram: every block read it before the barrier above; zero for the level after next.
    tl_u32* hc = hist + (level & 1) * kTlBins;
    for (int b = tid; b < kTlBins; b += NT) hc[b] = 0u;
    if (tid == 0) {
      ctl->n_hits = 0u;
      if (in_buf) ctl->n_push = 0u;   // every thread read it (sn) before the cluster barrier above
    }
    __syncthreads();
  }

  // ---- final: place the survivors (one block: sort its list; a cluster: counting or buckets) ----
  const int nr = (int)ctl->n_emit < SP ? (int)ctl->n_emit : SP;
  float* ov = out_values + row * (i64)k;
  int* oi = out_indices + row * (i64)k;
  if (cl == 1) {
    tl_sort_list<NT>(list, nr, pool);
    for (int i = tid; i < nr; i += NT) tl_put(oi, ov, i, list[i], prow);
    __syncthreads();   // list and ctl are reused by the next row
    return;
  }
  tl_sync(cl);   // every block's list and its count are final
  if (warp == 0) {
    tl_u32 v = 0u, mv = 0u;
    if (lane < cl) {
      const TlCtl* pc = lane == rank ? ctl : tl_peer(ctl, (tl_u32)lane);
      v = pc->n_emit;
      if (split) mv = pc->n_push;
    }
    tl_u32 incl = v, mincl = mv;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const tl_u32 y = __shfl_up_sync(kTlFull, incl, d), my = __shfl_up_sync(kTlFull, mincl, d);
      if (lane >= d) incl += y, mincl += my;
    }
    if (lane < kTlMaxCluster)
      ctl->counts[lane] = v, ctl->offs[lane] = incl - v, ctl->mcounts[lane] = mv, ctl->moffs[lane] = mincl - mv;
  }
  __syncthreads();
  // Copy the lists, this block's own too, concatenated in rank order, to the pool: wpl warps per list, 4 remote
  // loads in flight per thread.
  tl_u64* copies = reinterpret_cast<tl_u64*>(pool);
  tl_u32* ranks = reinterpret_cast<tl_u32*>(pool + 8 * KP);   // counting
  tl_u64* scat = reinterpret_cast<tl_u64*>(pool + 8 * KP);    // buckets
  int total = 0;
  tl_u64 mx = 0ull;   // the largest key this thread copies (buckets; the maybe keys are below every copy)
  {
    constexpr int NW = NT / 32;
    const int wpl = NW / cl >= 1 ? NW / cl : 1;
    for (int w = warp; w < cl * wpl; w += NW) {
      const int c = w % cl, sub = w / cl;
      const int cnt_c = (int)ctl->counts[c], off = (int)ctl->offs[c];
      if (cnt_c == 0 || off + cnt_c > KP) continue;   // an empty list; the guard: memory only
      const tl_u64* src = tl_peer(list, (tl_u32)c);
      for (int j0 = sub * 32 + lane; j0 < cnt_c; j0 += 4 * wpl * 32) {
        tl_u64 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int j = j0 + u * wpl * 32;
          v[u] = j < cnt_c ? src[j] : 0ull;
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int j = j0 + u * wpl * 32;
          if (j < cnt_c) copies[off + j] = v[u];
          mx = v[u] > mx ? v[u] : mx;   // (0 past the list)
        }
      }
    }
    total = (int)(ctl->offs[cl - 1] + ctl->counts[cl - 1]);
    if (total > KP) total = KP;   // the guard: memory only (the counts sum to k)
  }
  // A split boundary: every block's maybe keys (the cluster's cnt <= kTlMaybeMax of them) to scat[0, mt).
  const int mtc = split ? (int)(ctl->moffs[cl - 1] + ctl->mcounts[cl - 1]) : 0;
  const int mt = mtc < kTlMaybeMax ? mtc : kTlMaybeMax;   // (the cap: memory only)
  for (int j = tid; j < mt; j += NT) {
    int c = 0;
    while (c + 1 < cl && (int)ctl->moffs[c + 1] <= j) ++c;
    const int jj = j - (int)ctl->moffs[c];
    scat[j] = jj < kTlMaybeMax ? tl_peer(ctl, (tl_u32)c)->maybe[jj] : 0ull;   // the guard: memory only
  }
  if (!counting) {
    // The placement's inputs beside the keys: each warp's largest key (red), and its bucket counters zeroed (hist:
    // every block read this block's histograms before the barrier that began the final phase).
#pragma unroll
    for (int d = 16; d >= 1; d >>= 1) {
      const tl_u64 y = __shfl_xor_sync(kTlFull, mx, d);
      mx = y > mx ? y : mx;
    }
    static_assert((NT / 32) * 8 <= (int)sizeof(ctl->sums[0]), "a warp maximum each in ctl->sums[0]");
    if (lane == 0) reinterpret_cast<tl_u64*>(ctl->sums[0])[warp] = mx;
    for (int b = tid; b < (KP > NT ? KP : NT); b += NT) hist[b] = 0u;
  }
  if (counting)
    for (int i = tid; i < nr; i += NT) ranks[i] = 0u;
  tl_cluster_arrive();   // done reading the other blocks' shared memory for this row
  pending = true;
  __syncthreads();
  if (split) {
    // The `need` largest maybe keys complete the k survivors; the rank among them orders their appends (any order
    // would do: the placement reads counts only).
    for (int i = tid; i < mt; i += NT) {
      const tl_u64 x = scat[i];
      int r = 0;
      for (int j = 0; j < mt; ++j) r += scat[j] > x ? 1 : 0;
      if (r < (int)need && total + r < KP) copies[total + r] = x;
    }
    __syncthreads();
    total = total + (int)need < KP ? total + (int)need : KP;
  }
  if (counting) {
    // slot = the number of larger keys among all the cluster's survivors (own list included).
    tl_count_ranks<NT>(list, nr, copies, total, ranks);
    __syncthreads();
    for (int i = tid; i < nr; i += NT) {
      const tl_u64 c = list[i];
      const tl_u32 slot = ranks[i];
      if (slot < (tl_u32)k) tl_put(oi, ov, slot, c, prow);
    }
  } else {
    // slot = the number of larger keys among all: buckets over the copies; this block writes its range of slots.
    // Every key is at or above the start of the select's last boundary bin, and has bits 31..20 set (~column,
    // columns < 2^20): without them the bound sat 2^32 below keys of one value (a select ending at level 4 or
    // 5), and every key fell in the top bucket.
    const tl_u64 mn = lv.pp | ((tl_u64)lv.b << lv.sh) | 0xfff00000ull;
    tl_bucket_place<NT, KP>(copies, total, mn, scat, hist,
                            reinterpret_cast<tl_u64*>(ctl->sums[0]), ov, oi, prow, k, cl, rank);
  }
  __syncthreads();   // list, pool and ctl are reused by the next row
}

}  // namespace dsv4
