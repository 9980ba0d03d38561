// Dense routing from FP32 logits (dsv4_activation_topk, SPEC section 2), one kernel:
//   s = sqrt(softplus(logit)), sel = s + bias (bias NULL = zeros), ids = top-k of sel (descending, ties
//   lower expert first, NaN lowest), w = s[ids] / sum(s[ids]) * scale with SPEC's edge cases.
//
// A warp per token at a time; the grid is one wave of blocks and each warp loops over tokens, loading the
// next token's row while it selects this one. Each lane holds C = 4*ceil(E/128) candidates in registers
// (16-byte loads when the rows are 16-byte aligned), computes s (activation_math.cuh: the same bits on both
// paths below) and the 32-bit rank key of sel for them; the warp top-k (topk.cuh) runs on the keys alone and
// the K winners' s are read back from shared memory: the weights use the unbiased s that was selected, never
// sel - bias. Specialised on K and E.
//
// The logits may come as `splits` partial slabs (partials[splits][num_tokens][E], slab s at
// logits + s * split_stride) that are summed in FP32 in split order before the activation; splits == 1 is
// the public op. The kernel waits on griddepcontrol before reading them, so it may be launched with
// programmatic dependent launch behind the kernel that writes them (a no-op otherwise).
#include "route_slabs.cuh"
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
  // selection runs on keys alone and lanes 0..K-1 read their winner's s back at the end.
  unsigned ws = (unsigned)__cvta_generic_to_shared(sbuf + (threadIdx.x >> 5) * (32 * C));
  asm("" : "+r"(ws));   // computed once, not for every token
  // The fast keys below skip value_key's NaN test: sel = s + b is NaN only if s is NaN (a rare z, which
  // sqrt_softplus_lane reports), b is NaN, or s = +inf (rare too) meets b = -inf. A lane with such a bias
  // takes the exact keys for every token.
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
    const bool exact = sqrt_softplus_lane<C>(z, s) || bias_odd != 0u;
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
    unsigned key[C];
    if (!exact) {
#pragma unroll
      for (int i = 0; i < C; ++i) {
        // Slots of a chunk that lies wholly inside the row are live in every lane (known at compile time).
        const bool live = 128 * (i / 4 + 1) <= E || lane_slot_index(lane, i) < E;
        key[i] = live ? value_key_num(s[i] + b[i]) : 0u;   // s >= +0 and b + (+0) is never -0: no -0.0 here
      }
    } else {
#pragma unroll
      for (int i = 0; i < C; ++i) {
        const bool live = 128 * (i / 4 + 1) <= E || lane_slot_index(lane, i) < E;
        key[i] = live ? value_key(s[i] + b[i]) : 0u;
      }
    }
    // Round j: lane j keeps the j-th winner. Then lanes 0..K-1 read their winner's unbiased s (never
    // sel - bias) and every lane sums the K of them in rank order, as WeightSum does: the plain sum is
    // WeightSum's unless a selected s is NaN or +inf, which the sum then shows.
    unsigned my_code = 0u;
    warp_topk_ids<K, C>(key, [&](int j, unsigned code) {
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
    activation_topk(const float* __restrict__ logits, int splits, i64 split_stride, i64 num_tokens,
                    const float* __restrict__ bias, float scale, float* __restrict__ topk_weights,
                    int* __restrict__ topk_ids) {
  static_assert(E >= 1 && E <= 1024 && K >= 1 && K <= 16 && K <= E, "activation_topk shape");
  constexpr int C = 4 * ((E + 127) / 128);   // candidates per lane
  const int lane = threadIdx.x & 31;
  // 16-byte loads when every row of every slab starts 16-byte aligned (split_stride is 0 for one slab).
  const bool vec = (E % 4 == 0) &&
                   ((((unsigned long long)logits) | (unsigned long long)(split_stride * 4)) & 15ull) == 0;
  // The split path's keys and scores of one token, or the warp path's scores of one token per warp.
  __shared__ __align__(16) union {
    struct {
      unsigned key[32 * C];   // route_slabs_pad<E>() entries
      float pay[32 * C];
    } tok;
    float warp_s[kActTokensPerBlock * 32 * C];
  } sbuf;
  if (splits > 1) {
    // Decode (N <= 64, many slabs): one token per block (route_slabs.cuh), so a token's slab reads are spread
    // over the block and issued together, the bias reads beside them. Same sums in the same order, same
    // activation and keys as the warp path below: same bits. The keys' padding past E is zeroed once.
    for (int e = E + threadIdx.x; e < 32 * C; e += blockDim.x) sbuf.tok.key[e] = 0u, sbuf.tok.pay[e] = 0.0f;
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    for (i64 t = blockIdx.x; t < num_tokens; t += gridDim.x)
      route_token_slabs<K, E, (E + 127) / 128 < 4 ? (E + 127) / 128 : 4, 8>(   // within the register cap
          logits, splits, split_stride, t, bias, scale, topk_weights, topk_ids, sbuf.tok.key, sbuf.tok.pay);
    return;
  }
  // The bias, zero-padded to 32*C entries, in shared memory (it is a weight, not the previous kernel's output:
  // read before the wait). The warp path reads a lane's C values for each token (C/4 16-byte loads) rather
  // than holding them in C registers beside the next token's row.
  __shared__ __align__(16) float sbias[32 * C];
  for (int e = threadIdx.x; e < 32 * C; e += blockDim.x)
    sbias[e] = (bias != nullptr && e < E) ? __ldg(bias + e) : 0.0f;
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  __syncthreads();
  if (vec) {
    route_tokens_warp<K, E, true>(logits, num_tokens, sbias, sbuf.warp_s, scale, topk_weights, topk_ids);
  } else {
    route_tokens_warp<K, E, false>(logits, num_tokens, sbias, sbuf.warp_s, scale, topk_weights, topk_ids);
  }
}

// Test hook (tests/cpu/test_activation_math.c): s for n logits in both forms the routing kernels use - the
// per-lane form of the warp path (sqrt_softplus_lane over groups of 4 consecutive values, so rare values
// meet common ones in a group) into s_lane, and the scalar form of the decode path into s_scalar - for
// the CPU to compare bit for bit with its own evaluation of activation_math.cuh. A template, so that it is
// compiled only when named.
template <int G>
__global__ void __launch_bounds__(128)
    activation_values(const float* __restrict__ z, i64 n, float* __restrict__ s_lane,
                      float* __restrict__ s_scalar) {
  static_assert(G >= 1 && G <= 32, "group size");
  const i64 step = (i64)gridDim.x * blockDim.x * G;
  for (i64 base = ((i64)blockIdx.x * blockDim.x + threadIdx.x) * G; base < n; base += step) {
    float zz[G], ss[G];
#pragma unroll
    for (int u = 0; u < G; ++u) zz[u] = base + u < n ? z[base + u] : 0.0f;
    sqrt_softplus_lane<G>(zz, ss);
#pragma unroll
    for (int u = 0; u < G; ++u) {
      if (base + u < n) s_lane[base + u] = ss[u], s_scalar[base + u] = sqrt_softplus(zz[u]);
    }
  }
}

}  // namespace dsv4
