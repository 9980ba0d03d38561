// Dense routing from FP32 logits (dsv4_activation_topk, SPEC section 2), one kernel:
//   s = sqrt(softplus(logit)), sel = s + bias (bias NULL = zeros), ids = top-k of sel (descending, ties
//   lower expert first, NaN lowest), w = s[ids] / sum(s[ids]) * scale with SPEC's edge cases.
//
// A warp per token at a time; the grid is one wave of blocks and each warp loops over tokens, loading the
// next token's row while it selects this one. Each lane holds C = 4*ceil(E/128) candidates in registers
// (16-byte loads when the rows are 16-byte aligned), computes s (activation_math.cuh: MUFU.EX2 and MUFU.SQRT
// on the main path, the same instructions and so the same bits on both paths below) and sel for them; the
// warp top-k (topk.cuh) runs on sel alone - compared as floats in the common case, as 32-bit rank keys when
// the warp holds a NaN, an infinity or a z below -70, or the bias holds a NaN or -inf - and the K winners' s
// are read back from shared memory: the weights use the unbiased s that was selected, never sel - bias.
// Specialised on K and E.
//
// The logits of split-K partial slabs (the router's decode path) are routed by activation_topk_slabs.cu, with
// the same activation and the same rank order: a token gets the same bits from either kernel. The kernel
// waits on griddepcontrol before reading the logits, so it may be launched with programmatic dependent launch
// behind the kernel that writes them (a no-op otherwise).
#include "topk.cuh"

namespace dsv4 {

constexpr int kActTokensPerBlock = 4;
// Blocks per SM that the host launcher sizes the warp path's grid for (one wave: act_blocks_per_sm in
// runtime/ops/activation_topk.c must agree); __launch_bounds__ guarantees them by capping the registers
// (56 up to E = 256, 64 up to E = 384: no spills on sm_80, sm_90a, sm_100a), so no block of the grid waits
// for a second wave.
constexpr int act_min_blocks(int e) { return e <= 256 ? 9 : e <= 384 ? 8 : e <= 640 ? 5 : 4; }

// This lane's C bias values (slot layout of lane_row_load) from shared memory. Volatile: read for every
// token, not hoisted out of the token loop into C registers.
template <int C>
__device__ __forceinline__ void lane_bias(const float* sb, int lane, float (&b)[C]) {
  const unsigned a = (unsigned)__cvta_generic_to_shared(sb) + 16u * lane;
#pragma unroll
  for (int c = 0; c < C / 4; ++c)
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(b[4 * c]), "=f"(b[4 * c + 1]), "=f"(b[4 * c + 2]), "=f"(b[4 * c + 3])
                 : "r"(a + 512u * c));
}

// The warp path of activation_topk: warp w of the grid routes tokens w, w + step, ... (the host sizes the grid
// to about one wave), loading the next token's row as soon as this one's activation is done, so that the
// load is in flight while this token is selected and written. VEC: 16-byte loads (a template parameter, so
// that the loop holds no predicated-off copy of the other kind of load).
template <int K, int E, bool VEC>
__device__ __forceinline__ void route_tokens_warp(const float* __restrict__ logits, i64 num_tokens,
                                                  const float* sbias, float* sbuf, float scale,
                                                  float* __restrict__ topk_weights, int* __restrict__ topk_ids) {
  constexpr int C = 4 * ((E + 127) / 128);
  const int lane = threadIdx.x & 31;
  const i64 step = (i64)gridDim.x * kActTokensPerBlock;
  i64 t = (i64)blockIdx.x * kActTokensPerBlock + (threadIdx.x >> 5);
  if (t >= num_tokens) return;
  // This warp's scores s, by expert (the slot layout makes chunk c of a lane one 16-byte store): the
  // selection runs on sel alone and lanes 0..K-1 read their winner's s back at the end.
  unsigned ws = (unsigned)__cvta_generic_to_shared(sbuf + (threadIdx.x >> 5) * (32 * C));
  asm("" : "+r"(ws));   // computed once, not for every token
  // The fast path below hands sel = s + b to the warp top-k as floats, which needs no NaN, -0.0 or -inf
  // among them: sel is NaN only if s is NaN (a rare z, which sqrt_softplus_lane reports), b is NaN, or
  // s = +inf (rare too) meets b = -inf; -inf only if b is; -0.0 never (s > 0 off the rare path). A lane
  // with such a bias makes its warp take the exact keys (value_key) for every token.
  float b[C];
  lane_bias<C>(sbias, lane, b);
  unsigned bias_odd = 0u;
#pragma unroll
  for (int i = 0; i < C; ++i) bias_odd |= !(b[i] > -__int_as_float(0x7f800000));
  asm("" : "+r"(bias_odd));   // once, not re-derived from b for every token
  // Lane j < K writes slot j of its token; the pointers advance by a step of tokens.
  float* out_w = topk_weights + t * K + min(lane, K - 1);
  int* out_id = topk_ids + t * K + min(lane, K - 1);
  const float* row = logits + t * E;
  float z[C];
  lane_row_load<C>(row, E, lane, VEC, z);
  bool more;
  do {
    float s[C];
    // Warp-uniform: every lane takes the same kind of selection values (an empty slot ranks below NaN
    // only among keys), and the branches below do not diverge.
    const bool exact = __any_sync(0xffffffffu, sqrt_softplus_lane<C>(z, s) || bias_odd != 0u);
    t += step;
    more = t < num_tokens;
    row += step * E;
    if (more) lane_row_load<C>(row, E, lane, VEC, z);   // z is free from here on
    __syncwarp();   // lanes 0..K-1 have read the previous token's s (they also fed shuffles every lane passed)
#pragma unroll
    for (int c = 0; c < C / 4; ++c)
      asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};" ::"r"(ws + 16u * lane + 512u * c), "f"(s[4 * c]),
                   "f"(s[4 * c + 1]), "f"(s[4 * c + 2]), "f"(s[4 * c + 3]) : "memory");
    lane_bias<C>(sbias, lane, b);
    // Round j: lane j keeps the j-th winner. Then lanes 0..K-1 read their winner's unbiased s (never
    // sel - bias) and every lane sums the K of them in rank order, as WeightSum does: the plain sum is
    // WeightSum's unless a selected s is NaN or +inf, which the sum then shows.
    unsigned my_code = 0u;
    warp_topk_ids_sel<K, C>(
        exact,
        [&](unsigned(&v)[C]) {
          // sel as a float, compared as such by the warp top-k: never NaN here, never -0.0 (s > 0 on the
          // main path, and s + b rounds an exact zero to +0), never -inf (b > -inf and s finite), so -inf
          // marks the empty slots.
#pragma unroll
          for (int i = 0; i < C; ++i) {
            // Slots of a chunk that lies wholly inside the row are live in every lane (known at compile time).
            const bool live = 128 * (i / 4 + 1) <= E || lane_slot_index(lane, i) < E;
            v[i] = __float_as_uint(live ? s[i] + b[i] : -__int_as_float(0x7f800000));
          }
        },
        [&](unsigned(&v)[C]) {
#pragma unroll
          for (int i = 0; i < C; ++i) {
            const bool live = 128 * (i / 4 + 1) <= E || lane_slot_index(lane, i) < E;
            v[i] = live ? value_key(s[i] + b[i]) : 0u;
          }
        },
        [&](int j, unsigned code) {
          if (lane == j) my_code = code;
        });
    const int my_id = (int)(my_code >> 16);
    __syncwarp();   // ws written by every lane
    float my_s;
    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(my_s) : "r"(ws + 4u * my_id) : "memory");
    float sj[K];
#pragma unroll
    for (int j = 0; j < K; ++j) sj[j] = __shfl_sync(0xffffffffu, my_s, j);
    float sum = sj[0];   // == 0.0f + sj[0]: s is never -0
#pragma unroll
    for (int j = 1; j < K; ++j) sum += sj[j];
    float w;
    if (sum <= 0x1.fffffep+127f) {   // no selected s is NaN or +inf: WeightSum's weight, its other rules void
      w = sum == 0.0f ? scale / (float)K : my_s / sum * scale;
    } else {   // warp-uniform, rare: SPEC's NaN / +inf rules
      WeightSum acc;
#pragma unroll
      for (int j = 0; j < K; ++j) acc.add(sj[j]);
      w = acc.weight(my_s, scale, K);
    }
    if (lane < K) *out_w = w, *out_id = my_id;
    out_w += step * K, out_id += step * K;
  } while (more);
}

template <int K, int E>
__global__ void __launch_bounds__(32 * kActTokensPerBlock, act_min_blocks(E))
    activation_topk(const float* __restrict__ logits, i64 num_tokens, const float* __restrict__ bias, float scale,
                    float* __restrict__ topk_weights, int* __restrict__ topk_ids) {
  static_assert(E >= 1 && E <= 1024 && K >= 1 && K <= 16 && K <= E, "activation_topk shape");
  constexpr int C = 4 * ((E + 127) / 128);   // candidates per lane
  // 16-byte loads when every row starts 16-byte aligned.
  const bool vec = (E % 4 == 0) && (((unsigned long long)logits) & 15ull) == 0;
  // Each warp's scores of its current token.
  __shared__ __align__(16) float warp_s[kActTokensPerBlock * 32 * C];
  // The bias, zero-padded to 32*C entries, in shared memory (it is a weight, not the previous kernel's output:
  // read before the wait). The warp path reads a lane's C values for each token (C/4 16-byte loads) rather
  // than holding them in C registers beside the next token's row.
  __shared__ __align__(16) float sbias[32 * C];
  load_bias_shared(bias, E, sbias, 32 * C);
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  __syncthreads();
  if (vec) {
    route_tokens_warp<K, E, true>(logits, num_tokens, sbias, warp_s, scale, topk_weights, topk_ids);
  } else {
    route_tokens_warp<K, E, false>(logits, num_tokens, sbias, warp_s, scale, topk_weights, topk_ids);
  }
}

// Test hook (tests/gpu/test_gpu_activation_math.c): the proof of activation_math.cuh's bound where the code
// runs. Checks s = sqrt(softplus(z)) for float bit patterns against an FP64 reference computed here
// (sqrt(max(z,0) + log1p(exp(-|z|)))), in both forms the routing kernels use: the per-lane form of the warp
// path (sqrt_softplus_lane<4>) and the scalar form of the decode path and hash_scored (sqrt_softplus), which
// must agree bit for bit. Group g holds the four patterns (4g + u) ^ (u << 30), u = 0..3, so that groups
// 0..2^30-1 hold every pattern once and each group mixes signs and magnitudes (1.0 meets +inf, -1.0 and
// -inf), so rare values meet common ones in a lane. Groups first_group .. first_group + num_groups - 1 are
// checked. A value fails when: the two forms differ; NaN does not give NaN; a number gives NaN, a negative
// s (sign bit set) or, if finite, +inf; +inf does not give +inf; -inf does not give +0; z <= -208 does not
// give exactly 0; the relative error is not below `bound` where the reference is at least FLT_MIN; the
// error exceeds one subnormal step plus bound * reference below that.
// out: u64 words the caller zeroes: [0] failures, [1] of them where the two forms differ, [2] the largest
// relative error over the main path (z in [-70, FLT_MAX]) as float(error) bits << 32 | z bits, [3] the
// same over the other inputs, [4] values checked against the bound (reference >= FLT_MIN), [5] failures
// recorded, [8 + 2i] and [9 + 2i] for i < 16: the first recorded failures, z bits and the two forms' s
// bits (lane form low, scalar form high).
__device__ __forceinline__ bool activation_check_one(float z, float s, double bound, u64& max_main, u64& max_rare,
                                                     u64& checked) {
  const unsigned zb = __float_as_uint(z), sb = __float_as_uint(s);
  if (z != z) return s != s;
  if (s != s || (sb >> 31) != 0u) return false;
  if (zb == 0x7f800000u) return sb == 0x7f800000u;
  if (zb == 0xff800000u) return sb == 0u;
  if (sb == 0x7f800000u) return false;
  if (z <= -208.0f && sb != 0u) return false;
  const double zd = z;
  const double ref = sqrt(fmax(zd, 0.0) + log1p(exp(-fabs(zd))));
  const double err = fabs((double)s - ref);
  if (ref >= 0x1.0p-126) {
    const double rel = err / ref;
    const u64 code = ((u64)__float_as_uint((float)rel) << 32) | zb;
    if (dsv4_am_is_main(z)) max_main = code > max_main ? code : max_main;
    else max_rare = code > max_rare ? code : max_rare;
    ++checked;
    return rel < bound;
  }
  return err <= 0x1.0p-149 + bound * ref;
}

template <int G>
__global__ void __launch_bounds__(256)
    activation_check(u64 first_group, u64 num_groups, float bound, u64* __restrict__ out) {
  static_assert(G == 4, "four patterns a group");
  u64 max_main = 0, max_rare = 0, checked = 0, failures = 0, mismatches = 0;
  const u64 step = (u64)gridDim.x * blockDim.x;
  for (u64 g = (u64)blockIdx.x * blockDim.x + threadIdx.x; g < num_groups; g += step) {
    const unsigned base = (unsigned)((first_group + g) << 2);
    float zz[G], sl[G];
#pragma unroll
    for (int u = 0; u < G; ++u) zz[u] = __uint_as_float((base | (unsigned)u) ^ ((unsigned)u << 30));
    sqrt_softplus_lane<G>(zz, sl);
#pragma unroll
    for (int u = 0; u < G; ++u) {
      const float ss = sqrt_softplus(zz[u]);
      const bool same = __float_as_uint(ss) == __float_as_uint(sl[u]);
      const bool ok = activation_check_one(zz[u], sl[u], (double)bound, max_main, max_rare, checked) && same;
      if (!ok) {
        ++failures, mismatches += !same;
        const u64 slot = atomicAdd(out + 5, 1ull);
        if (slot < 16) {
          out[8 + 2 * slot] = __float_as_uint(zz[u]);
          out[9 + 2 * slot] = ((u64)__float_as_uint(ss) << 32) | __float_as_uint(sl[u]);
        }
      }
    }
  }
  if (failures) atomicAdd(out + 0, failures), atomicAdd(out + 1, mismatches);
  atomicMax(out + 2, max_main);
  atomicMax(out + 3, max_rare);
  atomicAdd(out + 4, checked);
}

}  // namespace dsv4
