// Dense routing of a decode batch from split-K partial slabs (SPEC section 2): the second kernel of the router's
// dense decode path, behind gate_decode.cu (dsv4_activation_topk_enqueue with num_splits > 1).
//   z[n,e] = partials[0][n][e] + partials[1][n][e] + ... (FP32, in split order), then the routing of
//   activation_topk.cu: s = sqrt(softplus(z)), sel = s + bias, top-k of sel, w = s[ids] / sum * scale.
//
// One block per token (grid-stride over tokens), one thread per expert (blockDim = E rounded up to a warp, at
// most 512; above that two experts a thread): every slab load of a token is in flight at once
// (route_token_slabs with G = 1 and 16 slabs a batch: one round trip for up to 16 splits), then warp 0
// selects. A token's latency is what decode pays, so the work is spread as wide as a block goes; before, the
// 128-thread blocks of activation_topk.cu did it (three experts and two batches of slab loads a thread at
// E = 384).
//
// The sums, the activation and the keys are route_slabs.cuh's, the same operations in the same order as the
// warp path of activation_topk.cu: a token gets the same bits whichever kernel routes it. The kernel waits on
// griddepcontrol before reading the slabs, so it may be launched with programmatic dependent launch behind
// the kernel that writes them (a no-op otherwise). Specialised on K and E.
#include "route_slabs.cuh"

namespace dsv4 {

constexpr int kSlabsMaxThreads = 512;   // host: SLABS_MAX_THREADS (512: 128 registers, no spills at E = 1000)

template <int K, int E>
__global__ void __launch_bounds__(kSlabsMaxThreads)
    activation_topk_slabs(const float* __restrict__ logits, int splits, i64 split_stride, i64 num_tokens,
                          const float* __restrict__ bias, float scale, float* __restrict__ topk_weights,
                          int* __restrict__ topk_ids) {
  static_assert(E >= 1 && E <= 1024 && K >= 1 && K <= 16 && K <= E, "activation_topk_slabs shape");
  __shared__ __align__(16) unsigned skey[route_slabs_pad<E>()];
  __shared__ __align__(16) float spay[route_slabs_pad<E>()];
  __shared__ float sbias[E];
  // The padding past E is zeroed once (route_token_slabs' barrier orders it before warp 0 reads it).
  for (int e = E + threadIdx.x; e < route_slabs_pad<E>(); e += blockDim.x) skey[e] = 0u, spay[e] = 0.0f;
  // The bias is a weight, not the previous kernel's output: read before the wait (as activation_topk.cu does),
  // so that its load is not a second round trip after the slab loads. With PDL the kernel before is the router's
  // gate_decode, which never writes it.
  load_bias_shared(bias, E, sbias, E);
  __syncthreads();
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  // The next kernel on the stream may launch as soon as this wait returns, if it was launched with PDL: the
  // router's next gate_decode then streams its weight beside these slab loads and the selection, and waits for
  // this grid to end before it writes the slabs. H100, v4-pro N = 1 / 8 / 32 / 64, against the trigger after
  // the slab loads and the activation: 3.86 / 4.21 / 6.28 / 7.52 -> 3.68 / 4.10 / 6.17 / 7.43 us (v4-flash
  // unchanged); at the kernel's start, before the wait, 4.03 / 4.20 / 6.23 / 7.69 us.
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  for (i64 t = blockIdx.x; t < num_tokens; t += gridDim.x)
    route_token_slabs<K, E, 1, 16>(logits, splits, split_stride, t, sbias, scale, topk_weights, topk_ids, skey,
                                   spay);
}

}  // namespace dsv4
