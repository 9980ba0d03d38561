// Hash router (SPEC section 2, "uniform weights"): ids[n,j] = lut[token[n], j], w[n,j] = weight.
// A token id outside [0, vocab) gets expert 0 with weight 0 in every slot and is counted once in
// *err_count (if not NULL); the table is never read out of bounds.
//
// The output is a flat [num_tokens * K] array; each thread writes 2 consecutive elements with 8-byte
// stores when both outputs are 8-byte aligned (scalar stores otherwise), so writes are fully coalesced.
// (4 elements a thread with 16-byte stores, and whole tokens a thread, were measured slower on H100 at
// 65536 tokens: 2.78 and 3.8 us against 2.6 us with plain launches; the time goes to the gathers' latency,
// and more threads keep more of them in flight.) Token ids are read through L1 (each is shared by K
// consecutive elements) and the table stays in L2 across calls. Specialised on K.
//
// On sm_90+ the kernel first waits on griddepcontrol (a no-op unless it was launched with programmatic
// dependent launch), so the host may launch it with PDL behind any kernel: it touches no global memory
// before the previous grid has ended and its writes are visible (the token ids may be that grid's output,
// the outputs that grid's input). Each block triggers a PDL-launched successor at its end (a block's trigger
// counts when the first of its threads reaches it; the successor waits for this grid's end and its writes
// anyway). At the start instead, the successor's waiting blocks took the SM slots this grid's later blocks
// needed (65536 tokens at 2 elements a thread is 768 blocks: 2.95 against 2.20 us on H100).
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
#endif
  const i64 total = num_tokens * K;
  const i64 stride = (i64)gridDim.x * blockDim.x;
  const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const bool vec = ((reinterpret_cast<unsigned long long>(topk_weights) |
                     reinterpret_cast<unsigned long long>(topk_ids)) & 7ull) == 0;
  if (vec) {
    const i64 groups = total / 2;
    for (i64 g = first; g < groups; g += stride) {
      int2 e;
      float2 w;
      hash_element<K>(token_ids, lut, vocab, weight, 2 * g + 0, e.x, w.x, err_count);
      hash_element<K>(token_ids, lut, vocab, weight, 2 * g + 1, e.y, w.y, err_count);
      reinterpret_cast<int2*>(topk_ids)[g] = e;
      reinterpret_cast<float2*>(topk_weights)[g] = w;
    }
    for (i64 i = 2 * groups + first; i < total; i += stride) {  // the tail (one element)
      hash_element<K>(token_ids, lut, vocab, weight, i, topk_ids[i], topk_weights[i], err_count);
    }
  } else {
    for (i64 i = first; i < total; i += stride)
      hash_element<K>(token_ids, lut, vocab, weight, i, topk_ids[i], topk_weights[i], err_count);
  }
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

}  // namespace dsv4
