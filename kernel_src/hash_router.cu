// Hash router (SPEC section 2, "uniform weights"): ids[n,j] = lut[token[n], j], w[n,j] = weight.
// A token id outside [0, vocab) gets expert 0 with weight 0 in every slot and is counted once in
// *err_count (if not NULL); the table is never read out of bounds.
//
// The output is a flat [num_tokens * K] array; each thread writes 4 consecutive elements with 16-byte
// stores when both outputs are 16-byte aligned (scalar stores otherwise), so writes are fully coalesced.
// Token ids are read through L1 (each is shared by K consecutive elements) and the table stays in L2
// across calls. Specialised on K.
//
// On sm_90+ the kernel first waits on griddepcontrol (a no-op unless it was launched with programmatic
// dependent launch), so the host may launch it with PDL behind any kernel: it touches no global memory
// before the previous grid has ended and its writes are visible (the token ids may be that grid's output,
// the outputs that grid's input). Then it lets its own PDL-launched successor start launching.
#include "common.cuh"

namespace dsv4 {

template <int K>
__device__ __forceinline__ void hash_element(const int* __restrict__ token_ids, const int* __restrict__ lut,
                                             int vocab, float weight, i64 i, int& e, float& w,
                                             int* __restrict__ err_count) {
  const i64 t = i / K;
  const int j = (int)(i - t * K);
  const int tok = __ldg(token_ids + t);
  e = 0;
  w = 0.0f;
  if ((unsigned)tok < (unsigned)vocab) {
    e = __ldg(lut + (i64)tok * K + j);
    w = weight;
  } else if (j == 0 && err_count != nullptr) {
    atomicAdd(err_count, 1);
  }
}

template <int K>
__global__ void __launch_bounds__(256) hash_router(const int* __restrict__ token_ids, i64 num_tokens,
                                                   const int* __restrict__ lut, int vocab, float weight,
                                                   float* __restrict__ topk_weights, int* __restrict__ topk_ids,
                                                   int* __restrict__ err_count) {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  const i64 total = num_tokens * K;
  const i64 stride = (i64)gridDim.x * blockDim.x;
  const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const bool vec = ((reinterpret_cast<unsigned long long>(topk_weights) |
                     reinterpret_cast<unsigned long long>(topk_ids)) & 15ull) == 0;
  if (vec) {
    const i64 groups = total / 4;
    for (i64 g = first; g < groups; g += stride) {
      int4 e;
      float4 w;
      hash_element<K>(token_ids, lut, vocab, weight, 4 * g + 0, e.x, w.x, err_count);
      hash_element<K>(token_ids, lut, vocab, weight, 4 * g + 1, e.y, w.y, err_count);
      hash_element<K>(token_ids, lut, vocab, weight, 4 * g + 2, e.z, w.z, err_count);
      hash_element<K>(token_ids, lut, vocab, weight, 4 * g + 3, e.w, w.w, err_count);
      reinterpret_cast<int4*>(topk_ids)[g] = e;
      reinterpret_cast<float4*>(topk_weights)[g] = w;
    }
    for (i64 i = 4 * groups + first; i < total; i += stride) {  // the tail (fewer than 4 elements)
      hash_element<K>(token_ids, lut, vocab, weight, i, topk_ids[i], topk_weights[i], err_count);
    }
  } else {
    for (i64 i = first; i < total; i += stride)
      hash_element<K>(token_ids, lut, vocab, weight, i, topk_ids[i], topk_weights[i], err_count);
  }
}

}  // namespace dsv4
