// Hash routing with scored weights (SPEC section 2, the router's hash mode): ids[n,:] = lut[token[n],:] in
// LUT order, w[n,j] = s[n,ids[n,j]] / sum_j' s[n,ids[n,j']] * scale with s = sqrt(softplus(logit)) and
// SPEC's weight edge cases. A token id outside [0, vocab) gets expert 0 with weight 0 in every slot and is
// counted once in *err_count (if not NULL); the table is never read out of bounds. A table entry outside
// [0, E) (a corrupt table) is written as expert 0 with weight 0; its slot's gathers read expert 0's logits
// (in bounds), which are not used.
//
// The logits use the split-slab convention of activation_topk.cu (partials[splits][num_tokens][E] summed
// in FP32 in split order) and the kernel waits on griddepcontrol before reading the logits (a thread's first
// token id and table row are read before it: inputs, not the GEMM's output), so it may be launched with
// programmatic dependent launch behind the gate GEMM.
//
// One thread per token: K table entries and K (x splits) gathered logits in registers, K outputs written.
// Specialised on K. At least one block an SM (launch bounds 256, 1): with the register room that leaves,
// ptxas issues a whole batch of gathers before the first add (SASS, sm_90a: K = 6 at 241 registers; under
// __launch_bounds__(256) alone it kept 48 and put each add right behind its loads, a round trip per slab).
#include "topk.cuh"

namespace dsv4 {

// One call site per slot instead of K inlined copies of expf/log1pf/sqrtf: a much smaller cubin and a
// faster JIT for a kernel whose time goes to its gathers.
__device__ __noinline__ float hash_score(float z) { return sqrt_softplus(z); }

// The table row of a token: e[j] = lut[tok][j] when tok is in range and the entry is in [0, E) (ok[j]),
// else 0 (and ok[j] false for a bad entry). Reads nothing for an out-of-range token.
template <int K>
__device__ __forceinline__ void hash_row(const int* __restrict__ lut, int tok, int vocab, int num_experts, int (&e)[K],
                                         bool (&ok)[K]) {
  const bool valid = (unsigned)tok < (unsigned)vocab;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int x = valid ? __ldg(lut + (i64)tok * K + j) : 0;
    ok[j] = valid && (unsigned)x < (unsigned)num_experts;
    e[j] = ok[j] ? x : 0;
  }
}

template <int K>
__global__ void __launch_bounds__(256, 1)
    hash_scored(const float* __restrict__ logits, int splits, i64 split_stride, const int* __restrict__ token_ids,
                i64 num_tokens, int num_experts, const int* __restrict__ lut, int vocab, float scale,
                float* __restrict__ topk_weights, int* __restrict__ topk_ids, int* __restrict__ err_count) {
  static_assert(K >= 1 && K <= 16, "hash_scored shape");
  const float nan = __int_as_float(0x7fc00000);
  const i64 stride = (i64)gridDim.x * blockDim.x;
  const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  // The token ids and the table are inputs, not the previous kernel's output: the first token's are read
  // before the PDL wait, off the critical path of decode.
  int tok = first < num_tokens ? __ldg(token_ids + first) : -1;
  int e[K];
  bool ok[K];
  hash_row<K>(lut, tok, vocab, num_experts, e, ok);
#if __CUDA_ARCH__ >= 900
  // The next kernel on the stream may launch now if launched with PDL (the router's next gate_decode streams
  // its weight, then waits for this grid to end before it writes the slabs).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  for (i64 t = first; t < num_tokens; t += stride) {
    if (t != first) {
      tok = __ldg(token_ids + t);
      hash_row<K>(lut, tok, vocab, num_experts, e, ok);
    }
    float w[K];
    if ((unsigned)tok < (unsigned)vocab) {
      const float* p = logits + t * num_experts;
      float s[K];
      // The slabs kHashBatch at a time: all kHashBatch*K gathers of a batch are issued before any add (a warp
      // issues in order: the adds of one batch wait for its loads before the next batch's loads go out), and
      // the adds keep split order (((p0 + p1) + p2) + ...). One batch covers the router's decode slabs up to
      // H = 8192 (16 splits) at K <= 6, so decode pays one round trip, not one per batch of 4 as before.
      // One slab (the prefill path's cuBLASLt logits): its K gathers alone, not a batch of re-reads.
      constexpr int kHashBatch = K <= 6 ? 16 : 96 / K;
      if (splits == 1) {
#pragma unroll
        for (int j = 0; j < K; ++j) s[j] = __ldg(p + e[j]);
      } else {
#pragma unroll 1
        for (int s0 = 0; s0 < splits; s0 += kHashBatch) {
          float v[kHashBatch][K];
#pragma unroll
          for (int u = 0; u < kHashBatch; ++u) {
            // Unconditional loads (a slab past the last re-reads the last; its value is not added): no branch
            // between the loads, so all of them are issued before the first add.
            const float* q = p + (i64)min(s0 + u, splits - 1) * split_stride;
#pragma unroll
            for (int j = 0; j < K; ++j) v[u][j] = __ldg(q + e[j]);
          }
#pragma unroll
          for (int u = 0; u < kHashBatch; ++u) {
#pragma unroll
            for (int j = 0; j < K; ++j) {
              if (s0 + u == 0) s[j] = v[u][j];
              else if (s0 + u < splits) s[j] += v[u][j];
            }
          }
        }
      }
      WeightSum acc;
#pragma unroll
      for (int j = 0; j < K; ++j) {
        s[j] = ok[j] ? hash_score(s[j]) : nan;   // NaN weighs 0
        acc.add(s[j]);
      }
#pragma unroll
      for (int j = 0; j < K; ++j) w[j] = acc.weight(s[j], scale, K);
    } else {
#pragma unroll
      for (int j = 0; j < K; ++j) e[j] = 0, w[j] = 0.0f;
      if (err_count != nullptr) atomicAdd(err_count, 1);
    }
#pragma unroll
    for (int j = 0; j < K; ++j) {
      topk_ids[t * K + j] = e[j];
      topk_weights[t * K + j] = w[j];
    }
  }
}

}  // namespace dsv4
