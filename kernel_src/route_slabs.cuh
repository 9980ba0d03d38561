// Dense routing of one token whose logits come as split-K partial slabs (SPEC section 2), by a whole block:
//   z[e] = slab[0][e] + slab[1][e] + ... (FP32, in split order), s = sqrt(softplus(z)), sel = s + bias,
//   ids = top-k of sel (warp_topk: ties to the lower expert, NaN lowest), w = s[ids] / sum * scale.
// The threads of the block sum the slabs of experts threadIdx.x, + blockDim.x, ... (SC slabs in flight per
// expert, G experts at a time) and leave key and s in shared memory; warp 0 then selects and writes.
// The sums and the activation are the same operations in the same order as activation_topk.cu's (the
// scalar sqrt_softplus is the per-lane form's instruction sequence, MUFU.EX2 and MUFU.SQRT included), and
// the selection the same order (keys here, floats or keys there: the same winners), so the bits are the same
// whichever kernel routes a token.
//
// Slabs are read through L2 (ld.global.cg): the previous kernel on the stream wrote them (the callers wait on
// griddepcontrol first when launched with PDL).
#pragma once

#include "topk.cuh"

namespace dsv4 {

// Token t of slabs [splits][*][E] (slab s at slabs + s * split_stride, token t at + t * E). sbias: the bias in
// shared memory, E floats (zeros where there is no bias), loaded by the caller once, before its wait, so that no
// global load follows the slab loads. skey / spay: route_slabs_pad<E>() entries of shared memory, 16-byte
// aligned, whose entries past E the caller has zeroed once. Every thread of the block must call it; it ends
// with a barrier, so the next call may reuse skey / spay at once.
template <int E>
__host__ __device__ constexpr int route_slabs_pad() { return 128 * ((E + 127) / 128); }

// G experts per thread at a time and SC slabs in flight per expert (G * SC loads in flight per thread: the
// caller picks what its register budget allows).
template <int K, int E, int G = 4, int SC = 16>
__device__ __forceinline__ void route_token_slabs(const float* __restrict__ slabs, int splits, i64 split_stride,
                                                  i64 t, const float* sbias, float scale,
                                                  float* __restrict__ topk_w, int* __restrict__ topk_ids,
                                                  unsigned* skey, float* spay) {
  const float* row = slabs + t * E;
  for (int e0 = threadIdx.x; e0 < E; e0 += G * blockDim.x) {
    float acc[G];
#pragma unroll
    for (int g = 0; g < G; ++g) acc[g] = 0.0f;
    for (int s0 = 0; s0 < splits; s0 += SC) {
      float v[G][SC];
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const int e = e0 + g * blockDim.x;
        // One pointer stepped by the split stride: a 64-bit add a load, not a 64-bit multiply (SASS, sm_90a:
        // ~12 instructions a load before, issued by every warp ahead of the round trip).
        const float* q = row + (i64)s0 * split_stride + e;
#pragma unroll
        for (int u = 0; u < SC; ++u, q += split_stride) v[g][u] = (e < E && s0 + u < splits) ? __ldcg(q) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int u = 0; u < SC; ++u)
          if (s0 + u < splits) acc[g] = (s0 + u == 0) ? v[g][u] : acc[g] + v[g][u];
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int e = e0 + g * blockDim.x;
      if (e < E) {
        const float sv = sqrt_softplus(acc[g]);
        skey[e] = value_key(sv + sbias[e]);
        spay[e] = sv;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x < 32) {
    constexpr int C = 4 * ((E + 127) / 128);
    const int lane = threadIdx.x;
    unsigned key[C];
    float sc[C];
#pragma unroll
    for (int c = 0; c < C / 4; ++c) {   // slots 4c..4c+3 of a lane are 4 consecutive entries: one 16-byte read
      const uint4 kq = *reinterpret_cast<const uint4*>(skey + 128 * c + 4 * lane);
      const float4 sq = *reinterpret_cast<const float4*>(spay + 128 * c + 4 * lane);
      key[4 * c + 0] = kq.x, key[4 * c + 1] = kq.y, key[4 * c + 2] = kq.z, key[4 * c + 3] = kq.w;
      sc[4 * c + 0] = sq.x, sc[4 * c + 1] = sq.y, sc[4 * c + 2] = sq.z, sc[4 * c + 3] = sq.w;
    }
    WeightSum sum;
    float my_s = 0.0f;
    int my_id = 0;
    warp_topk<K, C>(key, sc, [&](int j, int wi, float ws) {
      sum.add(ws);
      if (lane == j) my_s = ws, my_id = wi;
    });
    if (lane < K) {
      topk_w[t * K + lane] = sum.weight(my_s, scale, K);
      topk_ids[t * K + lane] = my_id;
    }
  }
  __syncthreads();
}

}  // namespace dsv4
