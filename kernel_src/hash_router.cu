// Hash router (SPEC section 2, "uniform weights"): ids[n,j] = lut[token[n], j], w[n,j] = weight.
// A token id outside [0, vocab) gets expert 0 with weight 0 in every slot and is counted once in
// *err_count (if not NULL); the table is never read out of bounds.
//
// One thread per output element (n, j): writes are fully coalesced, the token id is a broadcast read
// within a group of K threads, and the table stays in L2 across calls. Specialised on K.
#include "common.cuh"

namespace dsv4 {

template <int K>
__global__ void __launch_bounds__(256) hash_router(const int* __restrict__ token_ids, i64 num_tokens,
                                                   const int* __restrict__ lut, int vocab, float weight,
                                                   float* __restrict__ topk_weights, int* __restrict__ topk_ids,
                                                   int* __restrict__ err_count) {
  const i64 total = num_tokens * K;
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const i64 t = i / K;
    const int j = (int)(i - t * K);
    const int tok = __ldg(token_ids + t);
    const bool ok = (unsigned)tok < (unsigned)vocab;
    int e = 0;
    float w = 0.0f;
    if (ok) {
      e = __ldg(lut + (i64)tok * K + j);
      w = weight;
    } else if (j == 0 && err_count != nullptr) {
      atomicAdd(err_count, 1);
    }
    topk_ids[i] = e;
    topk_weights[i] = w;
  }
}

}  // namespace dsv4
