// Reusable device-side top-k pieces (SPEC section 2): rank keys, the warp top-k used for routing sizes,
// the activation (activation_math.cuh) and weight rules, and the block helpers of the long-row radix
// select. Compiled by NVRTC only; no host headers.
#pragma once

#include "activation_math.cuh"
#include "common.cuh"

namespace dsv4 {

typedef unsigned long long u64;

// ---------------------------------------------------------------------------------------------------
// Rank keys
// ---------------------------------------------------------------------------------------------------

// 64-bit rank key of (value, index) for the long-row path: float_order_key(value) in the high word, ~index
// in the low word, so a plain unsigned max prefers the larger value, then the lower index, and NaN ranks
// below -inf. Every real key is > 0 (its low word is ~index != 0 for index < 2^32 - 1), so 0 means "no
// candidate".
__device__ __forceinline__ u64 topk_key(float v, int index) {
  return ((u64)float_order_key(v) << 32) | (u64)(~(unsigned)index);
}
__device__ __forceinline__ int topk_key_index(u64 key) { return (int)(~(unsigned)key); }

// ---------------------------------------------------------------------------------------------------
// Row layout of the warp path: each lane holds C candidates of a row of n floats (C a multiple of 4,
// 32*C >= n); slot 4c+u of lane l is element 128c + 4l + u. When the row is 16-byte aligned (vec) chunk c
// is one coalesced 16-byte load per lane; otherwise (and at a partial tail) four 4-byte loads.
// ---------------------------------------------------------------------------------------------------

__device__ __forceinline__ int lane_slot_index(int lane, int i) { return 128 * (i >> 2) + 4 * lane + (i & 3); }

// This lane's C elements of the row at p (n floats); slots past n get 0.
template <int C>
__device__ __forceinline__ void lane_row_load(const float* __restrict__ p, int n, int lane, bool vec,
                                              float (&v)[C]) {
  if (vec && n >= 32 * C) {   // every chunk whole: C/4 coalesced 16-byte loads, no bounds tests
    const float4* p4 = reinterpret_cast<const float4*>(p) + lane;
#pragma unroll
    for (int c = 0; c < C / 4; ++c) {
      const float4 q = __ldg(p4 + 32 * c);
      v[4 * c + 0] = q.x, v[4 * c + 1] = q.y, v[4 * c + 2] = q.z, v[4 * c + 3] = q.w;
    }
    return;
  }
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
    v[4 * c + 0] = q.x, v[4 * c + 1] = q.y, v[4 * c + 2] = q.z, v[4 * c + 3] = q.w;
  }
}

// ---------------------------------------------------------------------------------------------------
// Warp top-k (routing sizes: K <= 32, 32*C candidates). Every lane holds C candidates as 32-bit value keys
// (value_key below; 0 = empty slot) with a float payload beside each; a candidate's index is
// lane_slot_index(lane, slot), so within a lane a higher slot is a higher index. The order is the SPEC's:
// larger value first, equal values lower index first, NaN below -inf, empty below NaN.
//
//  1. One pass over the lane's slots (strict > in slot order keeps the lowest index on ties) gives the
//     lane's best (key, slot, payload) and the key of its second best.
//  2. K rounds: the winner is the largest lane best (redux.sync max over keys), ties to the lowest index
//     (redux.sync min over the indices of the lanes at that key); its payload comes by one shuffle. The
//     winning lane does not rescan: its next best key is already known (the second best), so it just
//     offers that key, marked "deferred" (slot and payload unknown). Only when a deferred key ties the
//     round's maximum, and so may win, does that lane rescan its untaken slots (best and second best
//     again): only for a lane that holds two of the top K (about 40% of random rows at K = 6 of 384),
//     rather than a rescan every round.
// Round j calls on_win(j, index, payload) in every lane with the j-th winner (rank order); the payload rides
// along bit for bit. The rounds are a rolled loop, so on_win must not index per-round register arrays by j.
// Needs at least K non-empty candidates across the warp; all 32 lanes must call it.
// ---------------------------------------------------------------------------------------------------

// 32-bit rank key of a value: a > b (as floats) <=> key(a) > key(b); NaN -> 1, below -inf (0x007fffff);
// 0 is left for empty slots. v must not be -0.0 (it would rank just below +0.0): add +0.0f first where it
// can occur (-0 + 0 = +0; every other value is unchanged).
__device__ __forceinline__ unsigned value_key(float v) {
  const unsigned u = __float_as_uint(v);
  const unsigned k = u ^ ((unsigned)((int)u >> 31) | 0x80000000u);   // negative: ~u; positive: u | sign
  return v != v ? 1u : k;
}

// Best (largest key, lowest slot among equals) and second-best key among the slots not in `taken`. The best
// comes as `code` = slot << 16 | (lane_slot_index(0, slot)), one immediate per slot.
template <int C, bool TAKEN>
__device__ __forceinline__ void lane_best2(const unsigned (&vk)[C], const float (&pay)[C], unsigned taken,
                                           unsigned& b1, unsigned& code, float& bpay, unsigned& b2) {
  b1 = 0u, b2 = 0u, code = 0u, bpay = 0.0f;
#pragma unroll
  for (int i = 0; i < C; ++i) {
    const unsigned v = (TAKEN && ((taken >> i) & 1u)) ? 0u : vk[i];
    b2 = max(b2, min(v, b1));
    if (v > b1) code = ((unsigned)i << 16) | (unsigned)lane_slot_index(0, i), bpay = pay[i];
    b1 = max(b1, v);
  }
}

template <int K, int C, typename F>
__device__ __forceinline__ void warp_topk(const unsigned (&vk)[C], const float (&pay)[C], F&& on_win) {
  static_assert(C >= 1 && C <= 32, "warp_topk: at most 32 slots per lane (the taken mask)");
  static_assert(32 * C <= 65536, "warp_topk: indices fit 16 bits");
  unsigned lane4 = (threadIdx.x & 31) << 2;   // lane_slot_index(lane, i) = lane_slot_index(0, i) | lane4
  asm("" : "+r"(lane4));                      // kept in a register, not recomputed every round
  unsigned b1, b2, code, taken = 0u, deferred = 0u;
  float bpay;
  lane_best2<C, false>(vk, pay, 0u, b1, code, bpay, b2);
#pragma unroll 1
  for (int j = 0; j < K; ++j) {
    const unsigned w = __reduce_max_sync(0xffffffffu, b1);
    const bool at_max = b1 == w;
    if (__any_sync(0xffffffffu, deferred && at_max)) {   // rare: a lane's next-best may win this round
      if (deferred && at_max) {
        lane_best2<C, true>(vk, pay, taken, b1, code, bpay, b2);   // b1 stays w
        deferred = 0u;
      }
    }
    const unsigned idx = (code & 0xffffu) | lane4;
    const unsigned wi = __reduce_min_sync(0xffffffffu, at_max ? idx : 0xffffffffu);
    const float wp = __shfl_sync(0xffffffffu, bpay, (int)(wi >> 2));   // the owner lane is (wi >> 2) % 32
    on_win(j, (int)wi, wp);
    if (idx == wi) {   // the owner: offer the next best key, its slot and payload found if it can win
      taken |= 1u << (code >> 16);
      b1 = b2;
      deferred = 1u;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Activation and weights (SPEC section 2), FP32.
// ---------------------------------------------------------------------------------------------------

// s = sqrt(softplus(z)), softplus(z) = max(z,0) + log1p(exp(-|z|)); NaN -> NaN, +inf -> inf, -inf -> 0.
// activation_math.cuh: relative error < 2^-22 wherever s is a normal float, the same bits on every GPU
// and in the CPU test that proves the bound.
__device__ __forceinline__ float sqrt_softplus(float z) { return dsv4_am_sqrt_softplus(z); }

// The same function for the C slots of a lane at once: the branch-free main path for every slot, then the
// slots outside it (z < -70, +inf, NaN) fixed up. The lane's NaN-propagating minimum of -|z| is below -70
// or NaN whenever there is one (and also, harmlessly, for a z above 70, which then just passes the
// per-slot test below). Three polynomial constants are held in registers across the slots rather than
// re-materialised for each (an fma takes one immediate); the rare path is one out-of-line copy, not C.
__device__ __noinline__ float sqrt_softplus_rare(float z) { return dsv4_am_sqrt_softplus_low(z); }

template <int C>
__device__ __forceinline__ void sqrt_softplus_lane(const float (&z)[C], float (&s)[C]) {
  float log2e = DSV4_AM_LOG2E, exp_c4 = DSV4_AM_EXP_C4, log_c7 = DSV4_AM_LOG_C7;
  asm("" : "+f"(log2e), "+f"(exp_c4), "+f"(log_c7));
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < C; ++i) {
    s[i] = dsv4_am_sqrt_in_range(dsv4_am_softplus_main_k(z[i], log2e, exp_c4, log_c7));
    asm("min.NaN.f32 %0, %0, %1;" : "+f"(m) : "f"(-fabsf(z[i])));
  }
  if (!(m >= DSV4_AM_LOW_Z)) {
#pragma unroll
    for (int i = 0; i < C; ++i)
      if (!dsv4_am_is_main(z[i])) s[i] = sqrt_softplus_rare(z[i]);
  }
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

}  // namespace dsv4
