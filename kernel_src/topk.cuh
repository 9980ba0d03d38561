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
// Needs at least K non-empty candidates across the warp; all 32 lanes must call it. warp_topk_ids_sel may
// take a lane's candidates as floats instead (no NaN, no -0.0, -inf = empty): step 1 then compares the
// floats and makes keys of the best two only (lane_best2_floats); the rest is the same.
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

// Best (largest key, lowest slot among equals) and second-best key among the lane's slots, slot i's key being
// key_of(i); with RESCAN only among those ranked below (klast, slot slast), the lane's last winner. The best
// comes as code (above) with the lane's part of the index (lane << 18) or-ed in once: one immediate per slot.
// pay may be null (PAY false): no payload is tracked.
template <int C, bool PAY, bool RESCAN, typename KeyOf>
__device__ __forceinline__ void lane_best2(KeyOf&& key_of, const float* pay, unsigned klast, unsigned slast,
                                           unsigned lane_hi, unsigned& b1, unsigned& code, float& bpay,
                                           unsigned& b2) {
  b1 = 0u, b2 = 0u, code = 0u, bpay = 0.0f;
#pragma unroll
  for (int i = 0; i < C; ++i) {
    unsigned v = key_of(i);
    if (RESCAN && !(v < klast || (v == klast && (unsigned)i > slast))) v = 0u;
    const float p = PAY ? pay[i] : 0.0f;   // read unconditionally: the update below is two selects
    b2 = max(b2, min(v, b1));
    if (v > b1) code = ((unsigned)lane_slot_index(0, i) << 16) | kTopkLive | (unsigned)i, bpay = p;
    b1 = max(b1, v);
  }
  code |= lane_hi;
}

// The same first pass (no RESCAN, no payload) over float selection values - none NaN or -0.0, -inf for an
// empty slot - given as their bits: the same compares on the floats, whose order is their keys' order
// (value_key_num is strictly increasing on them), and only the best and the second best made keys: two
// instructions a lane instead of two a slot. It gives what lane_best2 gives for the keys value_key_num(v),
// except that an empty slot's key is value_key_num(-inf) = 0x007fffff rather than 0: still below every live
// key, so it changes no winner (there are at least K live slots).
template <int C>
__device__ __forceinline__ void lane_best2_floats(const unsigned (&vb)[C], unsigned lane_hi, unsigned& b1,
                                                  unsigned& code, unsigned& b2) {
  static_assert(C >= 2, "lane_best2_floats: two slots or more");
  // Slots 0 and 1 as the loop would take them from f1 = f2 = -inf (max(-inf, x) = x: no NaN here), but
  // that slot 0 gets a live code even when empty: then the lane has no live slot at all, and its best,
  // value_key_num(-inf), is below every live key, so that code never wins either.
  float f1 = __uint_as_float(vb[0]), f2 = fminf(__uint_as_float(vb[1]), f1);
  code = kTopkLive;
#pragma unroll
  for (int i = 1; i < C; ++i) {
    const float v = __uint_as_float(vb[i]);
    if (i > 1) f2 = fmaxf(f2, fminf(v, f1));
    if (v > f1) code = ((unsigned)lane_slot_index(0, i) << 16) | kTopkLive | (unsigned)i;
    f1 = fmaxf(f1, v);
  }
  code |= lane_hi;
  b1 = value_key_num(f1), b2 = value_key_num(f2);
}

// K rounds from the lanes' first pass (b1, code, bpay, b2); key_of(i) gives slot i's key when a lane rescans.
template <int K, int C, bool PAY, typename KeyOf, typename F>
__device__ __forceinline__ void warp_topk_rounds(KeyOf&& key_of, const float* pay, unsigned lane_hi, unsigned b1,
                                                 unsigned code, float bpay, unsigned b2, F&& on_win) {
  unsigned klast = 0u;
#pragma unroll 1
  for (int j = 0; j < K; ++j) {
    const unsigned w = __reduce_max_sync(0xffffffffu, b1);
    const bool at_max = b1 == w;
    unsigned r = __reduce_min_sync(0xffffffffu, at_max ? code : 0xffffffffu);
    if (r < kTopkLive) {   // warp-uniform, rare: a deferred key ties the max; find its slot and payload
      if (at_max && code < kTopkLive)   // b1 stays w
        lane_best2<C, PAY, true>(key_of, pay, klast, code, lane_hi, b1, code, bpay, b2);
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

template <int K, int C, bool PAY, typename F>
__device__ __forceinline__ void warp_topk_impl(const unsigned (&vk)[C], const float* pay, F&& on_win) {
  static_assert(C >= 1 && C <= 32, "warp_topk: at most 32 slots per lane (5-bit slot in the code)");
  static_assert(32 * C <= 65536, "warp_topk: indices fit 16 bits");
  // The lane's part of every index (lane_slot_index(lane, i) = lane_slot_index(0, i) | 4*lane), in code.
  const unsigned lane_hi = (threadIdx.x & 31) << 18;
  const auto key_of = [&](int i) { return vk[i]; };
  unsigned b1, b2, code;
  float bpay;
  lane_best2<C, PAY, false>(key_of, pay, 0u, 0u, lane_hi, b1, code, bpay, b2);
  warp_topk_rounds<K, C, PAY>(key_of, pay, lane_hi, b1, code, bpay, b2, on_win);
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

// warp_topk_ids where the lanes give their slots either as keys (keys true: fill_keys(v) writes them) or as
// the bits of float selection values (keys false: fill_floats(v) writes them; none NaN or -0.0, -inf for an
// empty slot - so no real value may be -inf either, it would tie the empty slots). Floats make the same
// winners as their keys with two integer operations a slot fewer (lane_best2_floats). keys must be the same
// in every lane: a float lane's empty slot (key 0x007fffff) would outrank a key lane's NaN (key 1). A key
// for a rescan is made there, behind an empty volatile asm, so that the compiler does not hoist C key
// computations out of the rounds into the common path.
template <int K, int C, typename FillFloats, typename FillKeys, typename F>
__device__ __forceinline__ void warp_topk_ids_sel(bool keys, FillFloats&& fill_floats, FillKeys&& fill_keys,
                                                  F&& on_win) {
  static_assert(C >= 1 && C <= 32, "warp_topk: at most 32 slots per lane (5-bit slot in the code)");
  static_assert(32 * C <= 65536, "warp_topk: indices fit 16 bits");
  const unsigned lane_hi = (threadIdx.x & 31) << 18;
  unsigned v[C], b1, b2, code;
  float bpay = 0.0f;
  if (!keys) {
    fill_floats(v);
    lane_best2_floats<C>(v, lane_hi, b1, code, b2);
  } else {
    fill_keys(v);
    lane_best2<C, false, false>([&](int i) { return v[i]; }, nullptr, 0u, 0u, lane_hi, b1, code, bpay, b2);
  }
  warp_topk_rounds<K, C, false>(
      [&](int i) {
        unsigned u = v[i];
        asm volatile("" : "+r"(u));
        return keys ? u : value_key_num(__uint_as_float(u));
      },
      nullptr, lane_hi, b1, code, bpay, b2, [&](int j, unsigned r, float) { on_win(j, r); });
}

// ---------------------------------------------------------------------------------------------------
// Activation and weights (SPEC section 2), FP32.
// ---------------------------------------------------------------------------------------------------

// s = sqrt(softplus(z)), softplus(z) = max(z,0) + log1p(exp(-|z|)); NaN -> NaN, +inf -> inf, -inf -> 0.
// activation_math.cuh: relative error < 1.75 * 2^-22 wherever s is a normal float (proven on the GPU for
// every float by tests/gpu/test_gpu_activation_math.c); sqrt_softplus and sqrt_softplus_lane give the same
// bits (the same instructions), so every kernel routes a token alike.
__device__ __forceinline__ float sqrt_softplus(float z) { return dsv4_am_sqrt_softplus(z); }

// The same function for the C slots of a lane at once: the branch-free main path for every slot, then the
// slots outside it (z < -70, +inf, NaN) fixed up. They are spotted from a = max(-|z|, -70), which every
// slot computes anyway: for each of them a is -70 (or NaN, should max() return a NaN for a signalling one),
// and so is it, harmlessly, for |z| >= 70, which then just passes the per-slot test below; every other a
// lies in (-70, -0]. As signed integers the bits of those a are below -70's and a NaN's are above, so a
// signed max over the lane's a (a three-input integer max on sm_90 and later: half an instruction a slot)
// tells. log2(e) and Q's leading coefficient are held in registers across the slots rather than
// re-materialised for each (an fma takes one immediate); the rare path is one out-of-line copy, not C.
__device__ __noinline__ float sqrt_softplus_rare(float z) { return dsv4_am_sqrt_softplus_low(z); }

// Returns whether the lane had such a slot (or a |z| of 70 or more): the only way an s can be NaN or +inf.
template <int C>
__device__ __forceinline__ bool sqrt_softplus_lane(const float (&z)[C], float (&s)[C]) {
  float log2e = DSV4_AM_LOG2E, log_c7 = DSV4_AM_LOG_C7;
  asm("" : "+f"(log2e), "+f"(log_c7));
  int m = (int)0x80000000u;   // the bits of -0.0
#pragma unroll
  for (int i = 0; i < C; i += 2) {
    const float a0 = dsv4_am_main_arg(z[i]);
    s[i] = DSV4_AM_SQRT_APPROX(dsv4_am_softplus_main_k(z[i], a0, log2e, log_c7));
    if (i + 1 < C) {
      const float a1 = dsv4_am_main_arg(z[i + 1]);
      s[i + 1] = DSV4_AM_SQRT_APPROX(dsv4_am_softplus_main_k(z[i + 1], a1, log2e, log_c7));
      m = max(m, max(__float_as_int(a0), __float_as_int(a1)));   // one VIMNMX3
    } else {
      m = max(m, __float_as_int(a0));
    }
  }
  const bool rare = m >= (int)DSV4_AM_LOW_A_BITS;
  if (rare) {
#pragma unroll
    for (int i = 0; i < C; ++i)
      if (!dsv4_am_is_main(z[i])) s[i] = sqrt_softplus_rare(z[i]);
  }
  return rare;
}

// The routing kernels' bias in shared memory: sbias[e] = bias[e] for e < E, 0 for E <= e < n (and everywhere
// when bias is null), by the whole block. The bias is a weight, not the previous kernel's output: the kernels
// call it before their griddepcontrol.wait. The caller orders it before the reads (a barrier).
__device__ __forceinline__ void load_bias_shared(const float* __restrict__ bias, int E, float* sbias, int n) {
  for (int e = threadIdx.x; e < n; e += blockDim.x) sbias[e] = (bias != nullptr && e < E) ? __ldg(bias + e) : 0.0f;
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
