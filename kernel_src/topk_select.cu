// Generic top-k (dsv4_topk_select, SPEC sections 2-3): per row of `cols` FP32 values (rows `row_stride`
// elements apart) the k largest values and their column indices, descending; equal values -> lower index
// first; NaN ranks below everything. Values are copied bit for bit from the input.
//
// Two kernels:
//  - topk_select_warp<K, C> (cols <= 1024, k <= 16): one warp per row; each lane holds C candidates in
//    registers (16-byte loads when every row is 16-byte aligned) as 32-bit value keys, and K rounds of a
//    warp-wide arg-max (redux.sync) pick the winners without rescanning (warp_topk in topk.cuh).
//  - topk_select_radix<KP> (longer rows or k > 16; KP = k rounded up to a power of two): one block per row.
//    A radix select over float_order_key (11, 11, 10 bits, a shared-memory histogram per digit, stopping
//    early when the boundary bucket holds exactly what is still needed) finds the k-th key; a collect
//    pass keeps every element above it (in any slot) and the lowest-index ties at it in index order
//    (block prefix sums over row positions, never atomic slot order); a bitonic sort of the k survivors by
//    (key desc, index asc) gives the output. 4 reads of the row at most; O(cols + k log^2 k) work.
#include "topk.cuh"

namespace dsv4 {

// ------------------------------------------------------------------------------------------------------
// Warp path
// ------------------------------------------------------------------------------------------------------
constexpr int kWarpRowsPerBlock = 4;

template <int K, int C>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock)
    topk_select_warp(const float* __restrict__ scores, i64 rows, int cols, i64 row_stride,
                     float* __restrict__ out_values, int* __restrict__ out_indices) {
  static_assert(K >= 1 && K <= 32 && C >= 4 && C % 4 == 0 && C <= 32, "warp top-k shape");
  // 16-byte loads when every row starts 16-byte aligned.
  const bool vec = ((((unsigned long long)scores) | (unsigned long long)(row_stride * 4)) & 15ull) == 0;
  const int lane = threadIdx.x & 31;
  const i64 step = (i64)gridDim.x * kWarpRowsPerBlock;
  for (i64 row = (i64)blockIdx.x * kWarpRowsPerBlock + (threadIdx.x >> 5); row < rows; row += step) {
    float v[C];
    lane_row_load<C>(scores + row * row_stride, cols, lane, vec, v);
    unsigned key[C];
#pragma unroll
    for (int i = 0; i < C; ++i) {
      const int e = lane_slot_index(lane, i);
      key[i] = e < cols ? value_key(v[i] + 0.0f) : 0u;   // + 0.0f: -0.0 ranks as +0.0
    }
    float ov = 0.0f;
    int oi = 0;
    warp_topk<K, C>(key, v, [&](int j, int wi, float wv) {
      if (lane == j) ov = wv, oi = wi;
    });
    if (lane < K) {
      out_values[row * K + lane] = ov;
      out_indices[row * K + lane] = oi;
    }
  }
}

// ------------------------------------------------------------------------------------------------------
// Radix path
// ------------------------------------------------------------------------------------------------------
constexpr int kRadixThreads = 512;
constexpr int kRadixBins = 2048;   // 11-bit digits
constexpr int kRadixGroups = 4;    // loads in flight per thread per step

// Calls f(index, value) for every element of the row; the visiting order is unspecified.
template <typename F>
__device__ __forceinline__ void radix_for_each(const float* __restrict__ p, int cols, bool vec, F&& f) {
  const int tid = threadIdx.x;
  int done = 0;
  if (vec) {
    const int n4 = cols >> 2;
    const float4* p4 = reinterpret_cast<const float4*>(p);
    for (int base = 0; base < n4; base += kRadixGroups * kRadixThreads) {
      float4 q[kRadixGroups];
#pragma unroll
      for (int g = 0; g < kRadixGroups; ++g) {
        const int i = base + g * kRadixThreads + tid;
        if (i < n4) q[g] = __ldg(p4 + i);
      }
#pragma unroll
      for (int g = 0; g < kRadixGroups; ++g) {
        const int i = base + g * kRadixThreads + tid;
        if (i < n4) f(4 * i, q[g].x), f(4 * i + 1, q[g].y), f(4 * i + 2, q[g].z), f(4 * i + 3, q[g].w);
      }
    }
    done = n4 * 4;
  }
  for (int base = done; base < cols; base += kRadixGroups * kRadixThreads) {
    float q[kRadixGroups];
#pragma unroll
    for (int g = 0; g < kRadixGroups; ++g) {
      const int i = base + g * kRadixThreads + tid;
      if (i < cols) q[g] = __ldg(p + i);
    }
#pragma unroll
    for (int g = 0; g < kRadixGroups; ++g) {
      const int i = base + g * kRadixThreads + tid;
      if (i < cols) f(i, q[g]);
    }
  }
}

struct RadixShared {
  unsigned hist[kRadixBins];
  unsigned scratch[32];
  unsigned bin, above, count, slot;
};

// Collect pass over elements [start, stop) of the row, in groups of EPT consecutive elements per thread
// (EPT = 4: one float4; the range is then float4-aligned). Elements whose masked key is above `prefix`
// take any slot in [0, n_above); ties (masked key == prefix) are ranked in index order and the first
// `need` of them (counting *tie_base seen before this range) go to slots n_above + rank.
template <int EPT>
__device__ __forceinline__ void radix_collect(const float* __restrict__ p, int start, int stop, unsigned prefix,
                                             unsigned mask, int n_above, int need, unsigned* tie_base,
                                             RadixShared& sh, u64* cand) {
  const int tid = threadIdx.x;
  for (int base = start; base < stop; base += kRadixGroups * kRadixThreads * EPT) {
    float v[kRadixGroups][EPT];
#pragma unroll
    for (int g = 0; g < kRadixGroups; ++g) {
      const int i0 = base + (g * kRadixThreads + tid) * EPT;
      if (i0 < stop) {
        if constexpr (EPT == 4) {
          const float4 q = __ldg(reinterpret_cast<const float4*>(p + i0));
          v[g][0] = q.x, v[g][1] = q.y, v[g][2] = q.z, v[g][3] = q.w;
        } else {
          v[g][0] = __ldg(p + i0);
        }
      }
    }
    unsigned tie_bits = 0;   // bit g*EPT + u: element u of group g ties at the threshold
#pragma unroll
    for (int g = 0; g < kRadixGroups; ++g) {
      const int i0 = base + (g * kRadixThreads + tid) * EPT;
#pragma unroll
      for (int u = 0; u < EPT; ++u) {
        if (i0 < stop) {
          const unsigned km = float_order_key(v[g][u]) & mask;
          if (km > prefix) {
            const unsigned slot = atomicAdd(&sh.slot, 1u);
            cand[slot] = topk_key(v[g][u], i0 + u);
          } else if (km == prefix) {
            tie_bits |= 1u << (g * EPT + u);
          }
        }
      }
    }
    // Ties are rare except in flat rows; rank them only when this step has any and some are still needed.
    if (*tie_base < (unsigned)need && __syncthreads_or(tie_bits != 0)) {
#pragma unroll
      for (int g = 0; g < kRadixGroups; ++g) {   // group g precedes group g+1 in index order
        const unsigned mine = __popc((tie_bits >> (g * EPT)) & ((1u << EPT) - 1u));
        unsigned total;
        unsigned rank = *tie_base + block_exclusive_scan<kRadixThreads>(mine, sh.scratch, &total);
        const int i0 = base + (g * kRadixThreads + tid) * EPT;
#pragma unroll
        for (int u = 0; u < EPT; ++u) {
          if ((tie_bits >> (g * EPT + u)) & 1u) {
            if (rank < (unsigned)need) cand[n_above + rank] = topk_key(v[g][u], i0 + u);
            ++rank;
          }
        }
        *tie_base += total;
      }
    }
  }
}

template <int KP>
__global__ void __launch_bounds__(kRadixThreads)
    topk_select_radix(const float* __restrict__ scores, i64 rows, int cols, i64 row_stride, int k,
                      float* __restrict__ out_values, int* __restrict__ out_indices) {
  static_assert(KP >= 1 && KP <= 4096 && (KP & (KP - 1)) == 0, "KP is a power of two up to 4096");
  __shared__ RadixShared sh;
  __shared__ u64 cand[KP];
  const int tid = threadIdx.x;
  const bool vec = ((((unsigned long long)scores) | (unsigned long long)(row_stride * 4)) & 15ull) == 0;

  for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* p = scores + row * row_stride;
    // ---- radix select: find the k-th key, digit by digit from the top ----
    unsigned prefix = 0, mask = 0;
    int need = k;   // how many of the elements matching (key & mask) == prefix are still to be taken
#pragma unroll 1
    for (int pass = 0; pass < 3; ++pass) {
      const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
      const unsigned dmask = pass == 2 ? 0x3ffu : 0x7ffu;
      for (int b = tid; b < kRadixBins; b += kRadixThreads) sh.hist[b] = 0;
      __syncthreads();
      radix_for_each(p, cols, vec, [&](int, float x) {
        const unsigned key = float_order_key(x);
        if ((key & mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & dmask], 1u);
      });
      __syncthreads();
      // Thread t holds bins 2047-4t down to 2044-4t; the exclusive scan counts the elements in higher bins.
      constexpr int kPer = kRadixBins / kRadixThreads;
      unsigned h[kPer], local = 0;
#pragma unroll
      for (int u = 0; u < kPer; ++u) h[u] = sh.hist[kRadixBins - 1 - kPer * tid - u], local += h[u];
      unsigned total;
      unsigned above = block_exclusive_scan<kRadixThreads>(local, sh.scratch, &total);
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        if (above < (unsigned)need && above + h[u] >= (unsigned)need) {   // exactly one bin in the block
          sh.bin = (unsigned)(kRadixBins - 1 - kPer * tid - u);
          sh.above = above;
          sh.count = h[u];
        }
        above += h[u];
      }
      __syncthreads();
      const unsigned bin = sh.bin, count = sh.count;
      need -= (int)sh.above;
      prefix |= bin << shift;
      mask |= dmask << shift;
      __syncthreads();   // everyone has read sh.bin/above/count and the histogram
      if (count == (unsigned)need) break;   // the whole boundary bucket is taken: no need to refine it
    }

    // ---- collect: k - need elements above the threshold, then the `need` lowest-index ties ----
    const int n_above = k - need;
    if (tid == 0) sh.slot = 0;
    __syncthreads();
    unsigned tie_base = 0;
    int done = 0;
    if (vec) {
      done = (cols >> 2) << 2;
      radix_collect<4>(p, 0, done, prefix, mask, n_above, need, &tie_base, sh, cand);
    }
    radix_collect<1>(p, done, cols, prefix, mask, n_above, need, &tie_base, sh, cand);
    for (int i = k + tid; i < KP; i += kRadixThreads) cand[i] = 0ull;   // padding sorts last
    __syncthreads();

    // ---- sort the k survivors by (key desc, index asc) and write them ----
    block_sort_desc<kRadixThreads>(cand, KP);
    for (int j = tid; j < k; j += kRadixThreads) {
      const int idx = topk_key_index(cand[j]);
      out_indices[row * k + j] = idx;
      out_values[row * k + j] = __ldg(p + idx);
    }
    __syncthreads();   // cand and sh are reused by the next row
  }
}

}  // namespace dsv4
