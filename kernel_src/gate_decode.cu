// Decode gate GEMM, split-K partials only (the GEMM is gate_decode.cuh's; see there):
//   partial[s][n][e] = sum over h in split s of x[n,h] * W[e,h]
// A successor (dsv4_activation_topk_enqueue / dsv4_hash_scored_enqueue with num_splits = splits) sums the
// slabs in split order. The router's dense decode takes gate_route.cu instead (GEMM and routing in one launch).
#include "gate_decode.cuh"

namespace dsv4 {

template <int H, int E>
__global__ void __launch_bounds__(kGateMaxWarps * 32, 1)
    gate_decode(const unsigned short* __restrict__ x, int num_tokens, const unsigned short* __restrict__ w,
                float* __restrict__ partials) {
  gate_decode_block<H, E>(x, num_tokens, w, partials);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace dsv4
