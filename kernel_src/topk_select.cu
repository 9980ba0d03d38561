// Generic top-k (dsv4_topk_select, SPEC sections 2-3), the routing sizes: per row of `cols` FP32 values
// (rows `row_stride` elements apart) the k largest values and their column indices, descending; equal
// values -> lower index first; NaN ranks below everything. Values are copied bit for bit from the input.
//
// topk_select_warp<K, C> (cols <= 1024, k <= 16): one warp per row; each lane holds C candidates in
// registers (16-byte loads when every row is 16-byte aligned) as 32-bit value keys, and K rounds of a
// warp-wide arg-max (redux.sync) pick the winners without rescanning (warp_topk in topk.cuh).
// Longer rows and larger k (the indexer) go to topk_long.cu.
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

}  // namespace dsv4
