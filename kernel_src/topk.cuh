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
//     lane's best (key, code, payload) and the key of its second best. code = index << 16 | kTopkLive | slot.
//  2. K rounds: the winner is the largest lane best (redux.sync max over keys), ties to the lowest index
//     (redux.sync min over the codes of the lanes at that key: the index is their high half); the owner lane
//     is (code >> 18) % 32 and the payload comes from it by one shuffle. The owner does not rescan: its next
//     best key is already known (the second best), so it just offers that key, "deferred": its code keeps
//     only the slot taken, so that it is below kTopkLive and so below every live code. When the round's
//     redux min comes out below kTopkLive, a deferred key ties the maximum and may win: only then do those
//     lanes rescan their untaken slots (best and second best again; the untaken ones are those ranked below
//     the lane's last winner, (its key, its slot), since a lane's winners go in rank order, so no taken mask
//     is kept) and the min is taken again. That is a lane that holds two of the top K (about 40% of random
//     rows at K = 6 of 384); the other rounds are two reductions, a shuffle and a few selects.
// Round j calls on_win(j, index, payload) in every lane with the j-th winner (rank order); the payload rides
// along bit for bit. The rounds are a rolled loop, so on_win must not index per-round register arrays by j.
// Needs at least K non-empty candidates across the warp; all 32 lanes must call it.
// ---------------------------------------------------------------------------------------------------

// 32-bit rank key of a value: a > b (as floats) <=> key(a) > key(b); NaN -> 1, below -inf (0x007fffff);
// 0 is left for empty slots. v must not be -0.0 (it would rank just below +0.0): add +0.0f first where it
// can occur (-0 + 0 = +0; every other value is unchanged). value_key_num: the same for a v known not to be
// NaN, two instructions instead of four.
__device__ __forceinline__ unsigned value_key_num(float v) {
  const unsigned u = __float_as_uint(v);
  return u ^ ((unsigned)((int)u >> 31) | 0x80000000u);   // negative: ~u; positive: u | sign
}
__device__ __forceinline__ unsigned value_key(float v) { return v != v ? 1u : value_key_num(v); }

constexpr unsigned kTopkLive = 0x8000u;   // in every live code (bit 15); a deferred code is its slot alone

// Best (largest key, lowest slot among equals) and second-best key among the lane's slots; with RESCAN only
// among those ranked below (klast, slot slast), the lane's last winner. The best comes as code (above) with
// the lane's part of the index (lane << 18) or-ed in once: one immediate per slot. pay may be null (PAY
// false): no payload is tracked.
template <int C, bool PAY, bool RESCAN>
__device__ __forceinline__ void lane_best2(const unsigned (&vk)[C], const float* pay, unsigned klast,
                                           unsigned slast, unsigned lane_hi, unsigned& b1, unsigned& code,
                                           float& bpay, unsigned& b2) {
  b1 = 0u, b2 = 0u, code = 0u, bpay = 0.0f;
#pragma unroll
  for (int i = 0; i < C; ++i) {
    unsigned v = vk[i];
    if (RESCAN && !(v < klast || (v == klast && (unsigned)i > slast))) v = 0u;
    const float p = PAY ? pay[i] : 0.0f;   // read unconditionally: the update below is two selects
    b2 = max(b2, min(v, b1));
    if (v > b1) code = ((unsigned)lane_slot_index(0, i) << 16) | kTopkLive | (unsigned)i, bpay = p;
    b1 = max(b1, v);
  }
  code |= lane_hi;
}

template <int K, int C, bool PAY, typename F>
__device__ __forceinline__ void warp_topk_impl(const unsigned (&vk)[C], const float* pay, F&& on_win) {
  static_assert(C >= 1 && C <= 32, "warp_topk: at most 32 slots per lane (5-bit slot in the code)");
  static_assert(32 * C <= 65536, "warp_topk: indices fit 16 bits");
  // The lane's part of every index (lane_slot_index(lane, i) = lane_slot_index(0, i) | 4*lane), in code.
  const unsigned lane_hi = (threadIdx.x & 31) << 18;
  unsigned b1, b2, code, klast = 0u;
  float bpay;
  lane_best2<C, PAY, false>(vk, pay, 0u, 0u, lane_hi, b1, code, bpay, b2);
#pragma unroll 1
  for (int j = 0; j < K; ++j) {
    const unsigned w = __reduce_max_sync(0xffffffffu, b1);
    const bool at_max = b1 == w;
    unsigned r = __reduce_min_sync(0xffffffffu, at_max ? code : 0xffffffffu);
    if (r < kTopkLive) {   // warp-uniform, rare: a deferred key ties the max; find its slot and payload
      if (at_max && code < kTopkLive)   // b1 stays w
        lane_best2<C, PAY, true>(vk, pay, klast, code, lane_hi, b1, code, bpay, b2);
      r = __reduce_min_sync(0xffffffffu, at_max ? code : 0xffffffffu);   // the same lanes at the max
    }
    // r is the winner's code; the owner lane is (r >> 18) % 32.
    on_win(j, r, PAY ? __shfl_sync(0xffffffffu, bpay, (int)(r >> 18)) : 0.0f);
    if (code == r) {   // the owner: offer the next best key, deferred
      klast = w;
      b1 = b2;
      code &= 31u;
    }
  }
}

template <int K, int C, typename F>
__device__ __forceinline__ void warp_topk(const unsigned (&vk)[C], const float (&pay)[C], F&& on_win) {
  warp_topk_impl<K, C, true>(vk, pay, [&](int j, unsigned r, float p) { on_win(j, (int)(r >> 16), p); });
}

// The same without payloads: on_win(j, code), the winner's index being code >> 16 (kept whole, so that a
// caller that keeps one code per lane shifts once at the end). For callers that look the winners' values up
// themselves (one load per lane at the end rather than a select per slot and a shuffle per round).
template <int K, int C, typename F>
__device__ __forceinline__ void warp_topk_ids(const unsigned (&vk)[C], F&& on_win) {
  warp_topk_impl<K, C, false>(vk, nullptr, [&](int j, unsigned r, float) { on_win(j, r); });
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

// Returns whether the lane had such a slot (or a z above 70): the only way an s can be NaN or +inf.
template <int C>
__device__ __forceinline__ bool sqrt_softplus_lane(const float (&z)[C], float (&s)[C]) {
  float log2e = DSV4_AM_LOG2E, exp_c4 = DSV4_AM_EXP_C4, log_c7 = DSV4_AM_LOG_C7;
  asm("" : "+f"(log2e), "+f"(exp_c4), "+f"(log_c7));
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < C; ++i) {
    s[i] = dsv4_am_sqrt_in_range(dsv4_am_softplus_main_k(z[i], log2e, exp_c4, log_c7));
    asm("min.NaN.f32 %0, %0, %1;" : "+f"(m) : "f"(-fabsf(z[i])));
  }
  const bool rare = !(m >= DSV4_AM_LOW_Z);
  if (rare) {
#pragma unroll
    for (int i = 0; i < C; ++i)
      if (!dsv4_am_is_main(z[i])) s[i] = sqrt_softplus_rare(z[i]);
  }
  return rare;
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
