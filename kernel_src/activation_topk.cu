// Dense routing from FP32 logits (dsv4_activation_topk, SPEC section 2), one kernel:
//   s = sqrt(softplus(logit)), sel = s + bias (bias NULL = zeros), ids = top-k of sel (descending, ties
//   lower expert first, NaN lowest), w = s[ids] / sum(s[ids]) * scale with SPEC's edge cases.
//
// One warp per token. Each lane holds C = 4*ceil(E/128) candidates in registers (16-byte loads when the
// rows are 16-byte aligned), computes s (activation_math.cuh: the same bits on both paths below) and the
// 32-bit rank key of sel for them, and keeps s beside each candidate as the payload of the warp top-k
// (topk.cuh): the weights use the unbiased s that was selected, never sel - bias. Specialised on K and E.
//
// The logits may come as `splits` partial slabs (partials[splits][num_tokens][E], slab s at
// logits + s * split_stride) that are summed in FP32 in split order before the activation; splits == 1 is
// the public op. The kernel waits on griddepcontrol before reading them, so it may be launched with
// programmatic dependent launch behind the kernel that writes them (a no-op otherwise).
#include "topk.cuh"

namespace dsv4 {

constexpr int kActTokensPerBlock = 4;

template <int K, int E>
__global__ void __launch_bounds__(32 * kActTokensPerBlock)
    activation_topk(const float* __restrict__ logits, int splits, i64 split_stride, i64 num_tokens,
                    const float* __restrict__ bias, float scale, float* __restrict__ topk_weights,
                    int* __restrict__ topk_ids) {
  static_assert(E >= 1 && E <= 1024 && K >= 1 && K <= 16 && K <= E, "activation_topk shape");
  constexpr int C = 4 * ((E + 127) / 128);   // candidates per lane
  const int lane = threadIdx.x & 31;
  // 16-byte loads when every row of every slab starts 16-byte aligned (split_stride is 0 for one slab).
  const bool vec = (E % 4 == 0) &&
                   ((((unsigned long long)logits) | (unsigned long long)(split_stride * 4)) & 15ull) == 0;
  // This lane's bias values (the bias is a weight, not the previous kernel's output: read before the wait).
  float b[C];
#pragma unroll
  for (int i = 0; i < C; ++i) {
    const int e = lane_slot_index(lane, i);
    b[i] = (bias != nullptr && e < E) ? __ldg(bias + e) : 0.0f;
  }
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  if (splits > 1) {
    // Decode (N <= 64, many slabs): one token per block, so a token's slab reads are spread over 128 threads
    // and issued together (one round trip per 8 slabs) instead of one dependent round trip per slab on one
    // warp. Same sums in the same order, same activation and keys as the warp path below: same bits.
    constexpr int EPT = (E + 127) / 128;   // experts per thread
    constexpr int SC = 8;                  // slabs loaded at once
    __shared__ unsigned skey[E];
    __shared__ float spay[E];
    for (i64 t = blockIdx.x; t < num_tokens; t += gridDim.x) {
      const float* row = logits + t * E;
      float acc[EPT];
      for (int s0 = 0; s0 < splits; s0 += SC) {
        float v[EPT][SC];
#pragma unroll
        for (int i = 0; i < EPT; ++i) {
          const int e = threadIdx.x + 128 * i;
#pragma unroll
          for (int u = 0; u < SC; ++u)
            v[i][u] = (e < E && s0 + u < splits) ? __ldg(row + (i64)(s0 + u) * split_stride + e) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < EPT; ++i) {
#pragma unroll
          for (int u = 0; u < SC; ++u) {
            if (s0 + u < splits) acc[i] = (s0 + u == 0) ? v[i][u] : acc[i] + v[i][u];
          }
        }
      }
#pragma unroll
      for (int i = 0; i < EPT; ++i) {
        const int e = threadIdx.x + 128 * i;
        if (e < E) {
          const float sv = sqrt_softplus(acc[i]);
          skey[e] = value_key(sv + (bias != nullptr ? __ldg(bias + e) : 0.0f));
          spay[e] = sv;
        }
      }
      __syncthreads();
      if (threadIdx.x < 32) {
        unsigned key[C];
        float sc[C];
#pragma unroll
        for (int i = 0; i < C; ++i) {
          const int e = lane_slot_index(lane, i);
          key[i] = e < E ? skey[e] : 0u;
          sc[i] = e < E ? spay[e] : 0.0f;
        }
        WeightSum acc2;
        float my_s = 0.0f;
        int my_id = 0;
        warp_topk<K, C>(key, sc, [&](int j, int wi, float ws) {
          acc2.add(ws);
          if (lane == j) my_s = ws, my_id = wi;
        });
        if (lane < K) {
          topk_weights[t * K + lane] = acc2.weight(my_s, scale, K);
          topk_ids[t * K + lane] = my_id;
        }
      }
      __syncthreads();
    }
    return;
  }
  const i64 step = (i64)gridDim.x * kActTokensPerBlock;
  for (i64 t = (i64)blockIdx.x * kActTokensPerBlock + (threadIdx.x >> 5); t < num_tokens; t += step) {
    float z[C];
    lane_row_load<C>(logits + t * E, E, lane, vec, z);
    float s[C];
    sqrt_softplus_lane<C>(z, s);
    unsigned key[C];
#pragma unroll
    for (int i = 0; i < C; ++i) {
      // Slots of a chunk that lies wholly inside the row are live in every lane (known at compile time).
      const bool live = 128 * (i / 4 + 1) <= E || lane_slot_index(lane, i) < E;
      key[i] = live ? value_key(s[i] + b[i]) : 0u;   // s >= +0 and b + (+0) is never -0: no -0.0 here
    }
    // Round j: lane j keeps the j-th winner and its unbiased score; every lane sums the selected scores in
    // rank order.
    WeightSum acc;
    float my_s = 0.0f;
    int my_id = 0;
    warp_topk<K, C>(key, s, [&](int j, int wi, float ws) {
      acc.add(ws);
      if (lane == j) my_s = ws, my_id = wi;
    });
    if (lane < K) {
      topk_weights[t * K + lane] = acc.weight(my_s, scale, K);
      topk_ids[t * K + lane] = my_id;
    }
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
