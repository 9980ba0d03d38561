// The router's dense decode in one launch (N <= 64 tokens, SPEC section 2):
//   1. every block computes its share of the split-K partial logits (gate_decode.cuh, the same GEMM and the
//      same bits as gate_decode.cu) and stores it to the slabs [splits][N][E];
//   2. every block takes a ticket (one atomic per block, after a fence that publishes its slabs);
//   3. the last min(N, blocks) blocks to arrive route the tokens (route_slabs.cuh: the slabs summed in split
//      order, activation, bias, top-k, weights), token n by the worker of rank n, n + workers, ...; the very
//      last block to arrive needs no wait, the others wait until it has arrived.
// So a token's ids and weights are the same bits as the two-launch path (gate_decode then activation_topk
// with num_splits = splits) and do not depend on N, the token's position, the block shape or which block
// routes it: the ticket order decides only who does the work.
//
// sync: two 32-bit words of device memory (8-byte aligned), zero before the first launch, used as one 64-bit
// word: [0] the arrival count, put back to 0 by the last block to arrive (so a replayed graph starts clean);
// [1] a generation that the same atomic bumps, releasing the waiting workers (each compares it with the value
// its own ticket returned, so it may wrap). Launches that share `sync` (or the slabs) must not run
// concurrently. The last block's critical path holds one atomic round trip; it waits for no one.
//
// Forward progress: a waiting worker holds its SM only while it waits for blocks that have not yet arrived;
// at most min(N, blocks) - 1 <= 63 blocks wait, each on a different SM slot, and the GPU has many more
// slots than that, so every block that has not arrived can still be scheduled and finish its GEMM.
#include "gate_decode.cuh"
#include "route_slabs.cuh"

namespace dsv4 {

typedef unsigned long long gate_u64;

__device__ __forceinline__ gate_u64 gate_ld_acquire(const gate_u64* p) {
  gate_u64 v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ gate_u64 gate_atom_add_acq_rel(gate_u64* p, gate_u64 v) {
  gate_u64 old;
  asm volatile("atom.acq_rel.gpu.global.add.u64 %0, [%1], %2;" : "=l"(old) : "l"(p), "l"(v) : "memory");
  return old;
}
__device__ __forceinline__ void gate_red_add_release(gate_u64* p, gate_u64 v) {
  asm volatile("red.release.gpu.global.add.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// Launch shape and dynamic shared memory as gate_decode (runtime/ops/gate_decode.c plans both).
template <int H, int E, int K>
__global__ void __launch_bounds__(kGateMaxWarps * 32, 1)
    gate_route(const unsigned short* __restrict__ x, int num_tokens, const unsigned short* __restrict__ w,
               float* __restrict__ partials, const float* __restrict__ bias, float scale,
               float* __restrict__ topk_w, int* __restrict__ topk_ids, unsigned* __restrict__ sync) {
  static_assert(K >= 1 && K <= 16 && K <= E, "gate_route: k in 1..min(E, 16)");
  constexpr int EP = route_slabs_pad<E>();
  __shared__ __align__(16) unsigned skey[EP];
  __shared__ __align__(16) float spay[EP];
  __shared__ int s_rank;
  for (int e = E + threadIdx.x; e < EP; e += blockDim.x) skey[e] = 0u, spay[e] = 0.0f;   // the keys' padding

  gate_decode_block<H, E>(x, num_tokens, w, partials);   // waits on griddepcontrol before touching x

  // 2. The ticket: one atomic per block, with release semantics for the slab stores of every thread of the
  // block (ordered before it by the barrier) and acquire semantics for everything the blocks before it stored.
  // sync as one 64-bit word: arrivals in the low half, the generation in the high half.
  __syncthreads();
  const int blocks = (int)gridDim.x;
  const int workers = min(num_tokens, blocks);
  if (threadIdx.x == 0) {
    gate_u64* word = reinterpret_cast<gate_u64*>(sync);
    const gate_u64 old = gate_atom_add_acq_rel(word, 1ull);
    const int ticket = (int)(unsigned)old;
    const unsigned gen = (unsigned)(old >> 32);
    int rank = -1;
    if (ticket == blocks - 1) {
      // Every block has arrived: in one release, count back to 0 and generation + 1 (frees the waiters).
      gate_red_add_release(word, (1ull << 32) - (gate_u64)blocks);
      rank = workers - 1;
    } else if (ticket >= blocks - workers) {
      rank = ticket - (blocks - workers);
      while ((unsigned)(gate_ld_acquire(word) >> 32) == gen) __nanosleep(32);
    }
    s_rank = rank;
  }
  __syncthreads();
  const int rank = s_rank;
  if (rank >= 0) {
    const i64 split_stride = (i64)num_tokens * E;
    for (int t = rank; t < num_tokens; t += workers)
      route_token_slabs<K, E>(partials, gate_decode_shape<H>::kSplits, split_stride, t, bias, scale, topk_w,
                              topk_ids, skey, spay);
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace dsv4
