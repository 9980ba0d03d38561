// Reusable device-side top-k pieces (SPEC section 2): rank keys, the warp top-k used for routing sizes,
// the activation and weight rules, and the block helpers of the long-row radix select.
// Compiled by NVRTC only; no host headers.
#pragma once

#include "common.cuh"

namespace dsv4 {

typedef unsigned long long u64;

// ---------------------------------------------------------------------------------------------------
// Rank keys
// ---------------------------------------------------------------------------------------------------

// 64-bit rank key of (value, index): float_order_key(value) in the high word, ~index in the low word, so a
// plain unsigned max prefers the larger value, then the lower index, and NaN ranks below -inf. Every real
// key is > 0 (its low word is ~index != 0 for index < 2^32 - 1), so 0 means "no candidate".
__device__ __forceinline__ u64 topk_key(float v, int index) {
  return ((u64)float_order_key(v) << 32) | (u64)(~(unsigned)index);
}
__device__ __forceinline__ int topk_key_index(u64 key) { return (int)(~(unsigned)key); }

__device__ __forceinline__ u64 warp_max_u64(u64 v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) {
    const u64 o = __shfl_xor_sync(0xffffffffu, v, m);
    v = o > v ? o : v;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------
// Row layout of the warp path: each lane holds C candidates of a row of n floats (C a multiple of 4,
// 32*C >= n); slot 4c+u of lane l is element 128c + 4l + u. When the row is 16-byte aligned (vec) chunk c
// is one coalesced 16-byte load per lane; otherwise (and at a partial tail) four 4-byte loads.
// ---------------------------------------------------------------------------------------------------

__device__ __forceinline__ int lane_slot_index(int lane, int i) { return 128 * (i >> 2) + 4 * lane + (i & 3); }

// Adds (ADD) or stores this lane's C elements of the row at p; slots past n get 0.
template <int C, bool ADD>
__device__ __forceinline__ void lane_row_load(const float* __restrict__ p, int n, int lane, bool vec,
                                              float (&v)[C]) {
#pragma unroll
  for (int c = 0; c < C / 4; ++c) {
    const int base = 128 * c + 4 * lane;
    float4 q;
    if (vec && base + 3 < n) {
      q = __ldg(reinterpret_cast<const float4*>(p + base));
    } else {
      q.x = base + 0 < n ? __ldg(p + base + 0) : 0.0f;
      q.y = base + 1 < n ? __ldg(p + base + 1) : 0.0f;
      q.z = base + 2 < n ? __ldg(p + base + 2) : 0.0f;
      q.w = base + 3 < n ? __ldg(p + base + 3) : 0.0f;
    }
    if (ADD) {
      v[4 * c + 0] += q.x, v[4 * c + 1] += q.y, v[4 * c + 2] += q.z, v[4 * c + 3] += q.w;
    } else {
      v[4 * c + 0] = q.x, v[4 * c + 1] = q.y, v[4 * c + 2] = q.z, v[4 * c + 3] = q.w;
    }
  }
}

// This lane's C elements of a row given as `splits` partial slabs `slab_stride` elements apart, summed in
// FP32 in slab order (((p0 + p1) + p2) + ...). splits == 1 is a plain row.
template <int C>
__device__ __forceinline__ void lane_row_sum(const float* __restrict__ p, int n, int splits, i64 slab_stride,
                                             int lane, bool vec, float (&v)[C]) {
  lane_row_load<C, false>(p, n, lane, vec, v);
#pragma unroll 1
  for (int s = 1; s < splits; ++s) lane_row_load<C, true>(p + (i64)s * slab_stride, n, lane, vec, v);
}

// ---------------------------------------------------------------------------------------------------
// Warp top-k: every lane holds C candidate keys (0 = empty) with a float payload beside each. K rounds of
// a warp-wide arg-max over the 64-bit keys; the winning lane drops its candidate and rescans its own slots.
// Round j calls on_win(j, key, payload) in every lane with the same j-th winner (rank order); the payload
// rides along unchanged (bit-exact), e.g. the raw input value or the unbiased score. The rounds are a rolled
// loop (code size O(C), not O(K*C)), so on_win must not index per-round register arrays by j.
// Needs at least K non-empty candidates across the warp; all 32 lanes must call it.
// ---------------------------------------------------------------------------------------------------
template <int K, int C, typename F>
__device__ __forceinline__ void warp_topk(u64 (&key)[C], const float (&pay)[C], F&& on_win) {
  const int lane = threadIdx.x & 31;
  u64 best = 0;
  float best_pay = 0.0f;
#pragma unroll
  for (int i = 0; i < C; ++i) {
    if (key[i] > best) best = key[i], best_pay = pay[i];
  }
#pragma unroll 1
  for (int j = 0; j < K; ++j) {
    const u64 w = warp_max_u64(best);
    const int owner = __ffs(__ballot_sync(0xffffffffu, best == w)) - 1;   // keys are unique
    const float wp = __shfl_sync(0xffffffffu, best_pay, owner);
    on_win(j, w, wp);
    if (lane == owner) {
      best = 0;
#pragma unroll
      for (int i = 0; i < C; ++i) {
        if (key[i] == w) key[i] = 0;
        if (key[i] > best) best = key[i], best_pay = pay[i];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Activation and weights (SPEC section 2), FP32.
// ---------------------------------------------------------------------------------------------------

// s = sqrt(softplus(z)), softplus(z) = max(z,0) + log1p(exp(-|z|)). NaN -> NaN, +inf -> inf, -inf -> 0.
// Below z = -80, log1p(e^z) = e^z (1 - e^z/2 + ...) equals e^z to far below FP32 precision, so
// s = e^(z/2) exactly there; that keeps full precision down to z ~ -174 where e^z itself would already
// be subnormal (below that s leaves FP32's normal range).
__device__ __forceinline__ float sqrt_softplus(float z) {
  if (z < -80.0f) return expf(0.5f * z);
  return sqrtf(fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z))));
}

// Weights w[j] = s[j] / sum(s) * scale with SPEC's edge cases: a NaN score weighs 0; if any score is +inf
// the +inf entries share `scale` equally and the rest weigh 0; if the scores sum to 0 every non-NaN entry
// weighs scale/K. Scores are >= 0 (sqrt of softplus), so the result is never NaN or infinite for finite
// scale. Feed the K selected scores to add() in slot order (the FP32 sum order is fixed, so every lane
// that feeds the same scores gets the same bits), then ask weight() for each.
struct WeightSum {
  float sum = 0.0f;
  int ninf = 0;
  __device__ __forceinline__ void add(float s) {
    if (s != s) return;
    if (s == __int_as_float(0x7f800000)) ++ninf;
    else sum += s;
  }
  __device__ __forceinline__ float weight(float s, float scale, int k) const {
    if (s != s) return 0.0f;
    if (ninf > 0) return s == __int_as_float(0x7f800000) ? scale / (float)ninf : 0.0f;
    if (sum == 0.0f) return scale / (float)k;
    return s / sum * scale;
  }
};

// ---------------------------------------------------------------------------------------------------
// Block helpers (long rows).
// ---------------------------------------------------------------------------------------------------

// Exclusive prefix sum of v over the NT threads of the block, in thread order; *total gets the block sum.
// scratch: 32 unsigned of shared memory. Every thread must call it; it synchronises the block.
template <int NT>
__device__ __forceinline__ unsigned block_exclusive_scan(unsigned v, unsigned* scratch, unsigned* total) {
  static_assert(NT % 32 == 0 && NT <= 1024, "block size");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned x = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const unsigned y = __shfl_up_sync(0xffffffffu, x, d);
    if (lane >= d) x += y;
  }
  if (lane == 31) scratch[warp] = x;
  __syncthreads();
  if (warp == 0) {
    unsigned t = lane < NT / 32 ? scratch[lane] : 0u;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const unsigned y = __shfl_up_sync(0xffffffffu, t, d);
      if (lane >= d) t += y;
    }
    scratch[lane] = t;   // inclusive sums of the warp totals
  }
  __syncthreads();
  const unsigned before = warp > 0 ? scratch[warp - 1] : 0u;
  *total = scratch[NT / 32 - 1];
  __syncthreads();   // scratch is free again
  return before + x - v;
}

// Sorts n (a power of two) keys in shared memory in descending order (bitonic network).
template <int NT>
__device__ __forceinline__ void block_sort_desc(u64* keys, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < (n >> 1); t += NT) {
        const int i = 2 * t - (t & (stride - 1));
        const int j = i + stride;
        const bool desc = (i & size) == 0;
        const u64 a = keys[i], b = keys[j];
        if ((a < b) == desc) keys[i] = b, keys[j] = a;
      }
      __syncthreads();
    }
  }
}

}  // namespace dsv4
