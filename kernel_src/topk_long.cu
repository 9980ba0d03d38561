// Long-row top-k (dsv4_topk_select for every shape the warp path does not take; the indexer's rows: k up to
// 4096, up to 2^20 columns). Per row: the k largest values and their column indices, descending; equal
// values -> lower index first; NaN below everything (-0.0 == +0.0). Values are copied bit for bit.
//
// topk_long<KP, NT>: KP = k rounded up to a power of two (>= 1), NT threads per block. One thread-block
// cluster of CL blocks (CL = 1..8, a launch attribute; always 1 on sm_80) per row: block r of the cluster
// owns the columns [r*slice, (r+1)*slice), reads them from global memory once and keeps the order keys
// (float_order_key) of as many as fit (dense_n: all, or a prefix) in shared memory; the rest is re-read (from
// L2) by the level-2 pass, which compacts the boundary candidates into shared memory for the passes after it.
// The host (runtime/ops/topk_select.c, dsv4_topk_long_plan_for) picks CL so that rows * CL blocks of 1024
// threads fill the SMs once (1 row: 8 blocks of 16384 columns, 64 rows: 2 blocks each), and gives every block
// all the shared memory an SM has.
//
// Radix select over the keys, 11 + 11 + 10 bits from the top:
//   level 1: every block histograms the top digit of its slice; the histograms are merged over the cluster
//            through distributed shared memory (integer sums: exact, order-free) and every block finds the
//            same boundary bin (the one holding the k-th largest element), the count above it and the
//            count in it. If the bin holds exactly what is still needed, it is taken whole (early stop).
//   level 2, 3: a pass over the previous boundary set emits the elements above the new boundary to the
//            block's survivor list, histograms the next digit of those in the boundary bin and compacts them
//            (in column order, by block prefix sums) into a shared-memory candidate buffer when they fit, so
//            later passes read only the candidates.
//   final:   elements above the full threshold are emitted; of those equal to it, the `need` lowest columns
//            are taken: each block knows how many equal ones the blocks of lower rank (lower columns) hold
//            and ranks its own in column order with block prefix sums (never atomic slot order).
// Every block then sorts its own survivors (bitonic, descending by the 64-bit key (order key, ~column)),
// and with CL > 1 copies the other blocks' sorted lists; a survivor's output slot is its position in its
// own list plus the number of larger keys in the other lists (binary search). The k keys are distinct, so
// the slots are a permutation of 0..k-1 and the output is the same whatever order the survivors arrived in.
//
// No global scratch, no atomics outside shared memory, no inter-cluster communication: the launch needs no
// workspace, is graph-capturable and concurrent calls on different streams do not interact. Cluster
// co-residency is guaranteed by the hardware; the host checks with cuOccupancyMaxActiveClusters that a
// cluster of the chosen size fits before launching it.
#include "topk_long.cuh"

namespace dsv4 {

// Pass 1: keys of the slice's first dn columns to `dense` (dn a multiple of 4 or n), top-digit histogram of
// all n into hist[0, kTlBins). Even and odd lanes count into the two histograms (both zero on entry), halving
// same-address atomic conflicts on concentrated data; the second is folded into the first at the end (the
// caller synchronises).
template <int NT>
__device__ __noinline__ void tl_pass1(int n, int dn, const float* __restrict__ pg, bool vec, tl_u32* dense,
                                      tl_u32* hist) {
  constexpr int G = 4;
  tl_u32* h = hist + (threadIdx.x & 1) * kTlBins;
  for (int base = 0; base < n; base += 4 * G * NT) {
    tl_u32 key[4 * G], ix[4 * G];
    tl_load<NT, G, false>(base, n, pg, vec, 0, nullptr, nullptr, key, ix);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int p0 = tl_pos<NT>(base, g, 0);
      if (p0 < dn)
        *reinterpret_cast<uint4*>(dense + p0) = make_uint4(key[4 * g], key[4 * g + 1], key[4 * g + 2], key[4 * g + 3]);
    }
#pragma unroll
    for (int i = 0; i < 4 * G; ++i)
      if (tl_pos<NT>(base, i >> 2, i & 3) < n) atomicAdd(&h[key[i] >> 21], 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < kTlBins; b += NT) hist[b] += hist[kTlBins + b];
}

enum { kTlEqDrop = 0, kTlEqTake = 1, kTlEqRank = 2, kTlEqRefine = 3 };

// One pass over the boundary set (key & fM) == fP of the source. Keys with (key & M) > P are emitted to the
// survivor list. Keys with (key & M) == P:
//   kTlEqRefine: the new boundary set: counted in h by digit (key >> shift) & dmask and, with push,
//                compacted in source order to (ok, oi) (in place when the source is that buffer);
//   kTlEqTake / kTlEqDrop: all emitted / none;
//   kTlEqRank:   ranked in source order from `start` (the equal ones before this source: of lower-rank
//                blocks and of an earlier part of the slice), and those ranked below need emitted.
// Compaction (kTlEqRefine with push) writes from position `start`. Returns the counter after the pass: the
// compacted count (refine) or the rank base for what follows (rank).
template <int NT, int G, bool SMEM>
__device__ __noinline__ tl_u32 tl_pass(int n, const float* __restrict__ pg, bool vec, int lo, const tl_u32* keys,
                                       const tl_u32* idx, tl_u32 fP, tl_u32 fM, tl_u32 P, tl_u32 M, int eq_mode,
                                       tl_u32* h, int shift, tl_u32 dmask, bool push, tl_u32* ok, tl_u32* oi,
                                       tl_u32 start, tl_u32 need, TlCtl* ctl, tl_u64* list) {
  tl_u32 running = start;
  const bool refine = eq_mode == kTlEqRefine;
  const bool ordered = eq_mode == kTlEqRank || (refine && push);
  constexpr int CH = 4 * G * NT;   // elements per chunk
  tl_u32 key[4 * G], ix[4 * G], nkey[4 * G], nix[4 * G];
  if (!SMEM && n > 0) tl_load<NT, G, SMEM>(0, n, pg, vec, lo, keys, idx, nkey, nix);
  for (int base = 0; base < n; base += CH) {
    // Global source: the next chunk's loads are issued before this chunk's barriers (one chunk ahead).
    // Shared source: loaded now (it may be compacted in place behind the reads, never ahead of them).
    if constexpr (SMEM) {
      tl_load<NT, G, SMEM>(base, n, pg, vec, lo, keys, idx, key, ix);
    } else {
#pragma unroll
      for (int i = 0; i < 4 * G; ++i) key[i] = nkey[i], ix[i] = (tl_u32)(lo + tl_pos<NT>(base, i >> 2, i & 3));
      if (base + CH < n) tl_load<NT, G, SMEM>(base + CH, n, pg, vec, lo, keys, idx, nkey, nix);
    }
    tl_u32 emit = 0, eq = 0;
#pragma unroll
    for (int i = 0; i < 4 * G; ++i) {
      if (tl_pos<NT>(base, i >> 2, i & 3) < n && (key[i] & fM) == fP) {
        const tl_u32 km = key[i] & M;
        if (km > P) {
          emit |= 1u << i;
        } else if (km == P) {
          eq |= 1u << i;
          if (refine) atomicAdd(&h[(key[i] >> shift) & dmask], 1u);
        }
      }
    }
    if (eq_mode == kTlEqTake) emit |= eq;
    if (ordered) {
      tl_ordered<NT, G>(eq, ctl, &running, [&](int i, tl_u32 r) {
        if (refine) {
          ok[r] = key[i];
          oi[r] = ix[i];
        } else if (r < need) {
          emit |= 1u << i;
        }
      });
    }
    tl_emit<G>(emit, key, ix, ctl, list);
  }
  return running;
}

// Sorts this block's survivors (ctl->n_emit keys in list) and writes each to its output slot: its position in
// its own list plus, with cl > 1, the number of larger keys in the other blocks' lists (copied to `pool`,
// which must hold KP keys). Returns true when it left a cluster arrive whose wait is due before the next
// cluster barrier (and before the block exits).
template <int NT, int kTopStep>
__device__ __noinline__ bool tl_place(TlCtl* ctl, tl_u64* list, tl_u32* pool, int cl, int rank,
                                      const float* __restrict__ prow, float* __restrict__ ov, int* __restrict__ oi) {
  const int tid = threadIdx.x;
  const int nr = (int)ctl->n_emit;
  int m = 64;
  while (m < nr) m <<= 1;
  for (int i = nr + tid; i < m; i += NT) list[i] = 0ull;
  __syncthreads();
  tl_sort_desc<NT>(list, m);
  if (cl == 1) {
    for (int i = tid; i < nr; i += NT) {
      const tl_u64 x = list[i];
      oi[i] = (int)tl_key_index(x);
      ov[i] = tl_key_value(x, prow);
    }
    return false;
  }
  tl_sync(cl);   // every block's list is sorted and its count final
  if (tid < cl) ctl->scratch[tid] = tid == rank ? 0u : *tl_peer(&ctl->n_emit, (tl_u32)tid);
  __syncthreads();
  tl_u32 off[kTlMaxCluster], cnt[kTlMaxCluster], acc = 0;
#pragma unroll
  for (int c = 0; c < kTlMaxCluster; ++c) {
    cnt[c] = c < cl ? ctl->scratch[c] : 0u;
    off[c] = acc;
    acc += cnt[c];
  }
  // Copy the other lists (acc keys in all) to the pool, 8 remote loads in flight per thread.
  tl_u64* copies = reinterpret_cast<tl_u64*>(pool);
  for (int base = 0; base < (int)acc; base += 8 * NT) {
    tl_u64 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const tl_u32 j = (tl_u32)(base + u * NT + tid);
      int c = 0;   // the list holding copy position j: the last one starting at or before j
#pragma unroll
      for (int d = 1; d < kTlMaxCluster; ++d)
        if (cnt[d] != 0 && off[d] <= j) c = d;
      v[u] = j < acc ? tl_peer(list, (tl_u32)c)[j - off[c]] : 0ull;
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const tl_u32 j = (tl_u32)(base + u * NT + tid);
      if (j < acc) copies[j] = v[u];
    }
  }
  tl_cluster_arrive();   // done reading the other blocks' shared memory for this row
  __syncthreads();
  for (int i = tid; i < nr; i += NT) {
    const tl_u64 x = list[i];
    const tl_u32 slot = (tl_u32)i + tl_count_greater(copies, off, cnt, kTopStep, x);
    oi[slot] = (int)tl_key_index(x);
    ov[slot] = tl_key_value(x, prow);
  }
  return true;
}

template <int KP, int NT>
__global__ void __launch_bounds__(NT)
    topk_long(const float* __restrict__ scores, i64 rows, int cols, i64 row_stride, int k,
              float* __restrict__ out_values, int* __restrict__ out_indices, int slice, int pool_words, int dense_n) {
  static_assert(KP >= 1 && KP <= 4096 && (KP & (KP - 1)) == 0, "KP is a power of two up to 4096");
  static_assert(NT >= 64 && NT <= 1024 && (NT & (NT - 1)) == 0, "NT is a power of two in 64..1024");
  constexpr int SP = KP > 64 ? KP : 64;   // survivor list capacity (the sort works on >= 64 keys)
  constexpr int kTopStep = TlLog2<KP>::value;   // binary lifting from 2^kTopStep reaches 2 * KP - 1 >= any list
  unsigned char* sm = tl_smem();
  TlCtl* ctl = reinterpret_cast<TlCtl*>(sm);
  tl_u32* hist = reinterpret_cast<tl_u32*>(sm + kTlCtlBytes);                        // [2][kTlBins]
  tl_u64* list = reinterpret_cast<tl_u64*>(sm + kTlCtlBytes + 2 * kTlBins * 4);      // [SP]
  tl_u32* pool = reinterpret_cast<tl_u32*>(sm + kTlCtlBytes + 2 * kTlBins * 4 + SP * 8);
  const int cl = (int)tl_cluster_size(), rank = (int)tl_cluster_rank();
  const int tid = threadIdx.x;
  const bool vec = ((((unsigned long long)scores) | (unsigned long long)(row_stride * 4)) & 15ull) == 0;
  const int lo = rank * slice;
  const int n = lo < cols ? (cols - lo < slice ? cols - lo : slice) : 0;
  // Pool: the keys of the slice's first dn columns (dense, all of them when they fit), then the candidate
  // buffers: with the whole slice dense, candidate keys are compacted in place over the dense keys and only
  // their column indices (ci, cap) follow; else keys (ck) and indices (ci) of cap candidates each follow.
  const int dn = dense_n < n ? dense_n : n;   // dense_n is a multiple of 4 or the whole slice
  const bool whole = dn == n;
  const int dwords = (dense_n + 3) & ~3;
  tl_u32* const dense = pool;
  tl_u32 *ck, *ci;
  int cap;
  if (whole) {
    cap = (pool_words - dwords) & ~3, ck = dense, ci = pool + dwords;
  } else {
    cap = ((pool_words - dwords) >> 1) & ~3, ck = pool + dwords, ci = ck + cap;
  }
  if (cap < 0) cap = 0;
  bool pending = false;   // a cluster arrive whose wait is still due
  const i64 nclusters = (i64)(gridDim.x / (unsigned)cl);

  for (i64 row = (i64)(blockIdx.x / (unsigned)cl); row < rows; row += nclusters) {
    const float* prow = scores + row * row_stride;
    const float* pg = prow + lo;
    for (int b = tid; b < 2 * kTlBins; b += NT) hist[b] = 0;
    __syncthreads();

    // ---- level 1 ----
    tl_pass1<NT>(n, dn, pg, vec, dense, hist);
    if (pending) tl_cluster_wait(), pending = false;   // the previous row's copies of our list are done
    tl_sync(cl);
    if (tid == 0) ctl->n_emit = 0;   // published by tl_merge's barriers before the first emit
    tl_merge<NT>(ctl, hist, cl, rank, (tl_u32)k);
    tl_u32 need = (tl_u32)k - ctl->above;
    tl_u32 cnt = ctl->cnt, pre = ctl->pre, mine = ctl->mine;
    tl_u32 P = ctl->bin << 21, M = 0x7ffu << 21, fP = 0, fM = 0;
    // The source of the next pass: the slice (its dense part from shared memory, the rest from global memory,
    // in column order) or, once the boundary set has been compacted, the candidate buffer (ck, ci, sn).
    bool in_buf = false;
    int sn = 0;
    auto run_pass = [&](int eq_mode, tl_u32* h, int shift, tl_u32 dmask, bool push, tl_u32 start) -> tl_u32 {
      if (in_buf)
        return tl_pass<NT, 2, true>(sn, pg, vec, lo, ck, ci, fP, fM, P, M, eq_mode, h, shift, dmask, push, ck, ci,
                                    start, need, ctl, list);
      tl_u32 r = start;
      if (dn > 0)
        r = tl_pass<NT, 2, true>(dn, pg, vec, lo, dense, nullptr, fP, fM, P, M, eq_mode, h, shift, dmask, push, ck,
                                 ci, r, need, ctl, list);
      if (n > dn)
        r = tl_pass<NT, 2, false>(n - dn, pg + dn, vec, lo + dn, nullptr, nullptr, fP, fM, P, M, eq_mode, h, shift,
                                  dmask, push, ck, ci, r, need, ctl, list);
      return r;
    };
    int level = 1;

    // ---- levels 2 and 3 ----
    while (cnt != need && level < 3) {
      tl_u32* h = hist + (level & 1) * kTlBins;
      const int shift = level == 1 ? 10 : 0;
      const tl_u32 dmask = level == 1 ? 0x7ffu : 0x3ffu;
      const bool push = in_buf || mine <= (tl_u32)cap;   // a buffer compacts in place
      for (int b = tid; b < kTlBins; b += NT) h[b] = 0;
      __syncthreads();
      const tl_u32 pushed = run_pass(kTlEqRefine, h, shift, dmask, push, 0);
      if (push) in_buf = true, sn = (int)pushed;
      tl_sync(cl);
      tl_merge<NT>(ctl, h, cl, rank, need);
      need -= ctl->above;
      cnt = ctl->cnt, pre = ctl->pre, mine = ctl->mine;
      fP = P, fM = M;
      P |= ctl->bin << shift;
      M |= dmask << shift;
      ++level;
    }

    // ---- final: emit the rest of the k ----
    int eq_mode = kTlEqTake;
    if (cnt != need) eq_mode = pre >= need ? kTlEqDrop : pre + mine <= need ? kTlEqTake : kTlEqRank;
    run_pass(eq_mode, nullptr, 0, 0, false, pre);
    __syncthreads();

    // ---- sort this block's survivors; place them ----
    if (tl_place<NT, kTopStep>(ctl, list, pool, cl, rank, prow, out_values + row * (i64)k, out_indices + row * (i64)k))
      pending = true;
    __syncthreads();   // list, pool and ctl are reused by the next row
  }
  if (pending) tl_cluster_wait();   // no block leaves while another may still read its shared memory
}

}  // namespace dsv4
