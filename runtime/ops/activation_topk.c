/* Host launchers for kernel_src/activation_topk.cu (dsv4_activation_topk) and activation_topk_slabs.cu (the
 * split-slab form). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "ops.h"

#define MAX_EXPERTS 1024
#define MAX_K 16
#define MAX_SPLITS 64
#define SLABS_MAX_THREADS 512 /* kSlabsMaxThreads in activation_topk_slabs.cu */
#define TOKENS_PER_BLOCK 4   /* kActTokensPerBlock in the kernel: one warp per token at a time */

/* act_min_blocks in the kernel: the blocks per SM its __launch_bounds__ guarantees. */
static int act_blocks_per_sm(int32_t e) { return e <= 256 ? 9 : e <= 384 ? 8 : e <= 640 ? 5 : 4; }

void dsv4_activation_topk_spec(int32_t num_experts, int32_t k, dsv4_kernel_spec *out) {
  out->source = "activation_topk.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::activation_topk<%d, %d>", (int)k, (int)num_experts);
  snprintf(out->tag, sizeof out->tag, "activation_topk-k%d-e%d", (int)k, (int)num_experts);
}

void dsv4_activation_topk_slabs_spec(int32_t num_experts, int32_t k, dsv4_kernel_spec *out) {
  out->source = "activation_topk_slabs.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::activation_topk_slabs<%d, %d>", (int)k, (int)num_experts);
  snprintf(out->tag, sizeof out->tag, "activation_topk_slabs-k%d-e%d", (int)k, (int)num_experts);
}

dsv4_status dsv4_routing_logits_check(const char *fn, const void *ctx, int32_t num_splits, int64_t split_stride,
                                      int64_t num_tokens, int32_t num_experts, int32_t k, float scale) {
  DSV4_CHECK_ARG(ctx != NULL, fn, "ctx", "is NULL");
  DSV4_CHECK_ARG(num_tokens >= 0, fn, "num_tokens", "is negative");
  DSV4_CHECK_ARG(num_experts >= 1, fn, "num_experts", "must be at least 1");
  DSV4_CHECK_RANGE(num_experts <= MAX_EXPERTS, fn, "num_experts", num_experts, "1..1024");
  DSV4_CHECK_ARG(k >= 1, fn, "k", "must be at least 1");
  DSV4_CHECK_RANGE(k <= MAX_K && k <= num_experts, fn, "k", k, "1..min(num_experts,16)");
  DSV4_CHECK_ARG(isfinite(scale) && scale > 0.0f, fn, "routed_scaling_factor", "must be finite and positive");
  DSV4_CHECK_ARG(num_splits >= 1, fn, "num_splits", "must be at least 1");
  DSV4_CHECK_RANGE(num_splits <= MAX_SPLITS, fn, "num_splits", num_splits, "1..64");
  DSV4_CHECK_RANGE(num_tokens <= ((int64_t)1 << 40) / num_experts, fn, "num_tokens", num_tokens,
                   "0..2^40/num_experts");
  DSV4_CHECK_ARG(num_splits == 1 || split_stride >= num_tokens * num_experts, fn, "split_stride",
                 "is smaller than num_tokens * num_experts");
  DSV4_CHECK_ARG(num_splits == 1 || split_stride <= ((int64_t)1 << 46) / num_splits, fn, "split_stride",
                 "is too large (num_splits * split_stride > 2^46)");
  return DSV4_OK;
}

dsv4_status dsv4_activation_topk_check(const char *fn, const void *ctx, const float *logits, int32_t num_splits,
                                       int64_t split_stride, int64_t num_tokens, int32_t num_experts,
                                       const float *bias, int32_t k, float scale, const float *w,
                                       const int32_t *ids) {
  DSV4_TRY(dsv4_routing_logits_check(fn, ctx, num_splits, split_stride, num_tokens, num_experts, k, scale));
  DSV4_CHECK_ARG(((uintptr_t)bias & 3) == 0, fn, "bias", "is not 4-byte aligned");
  if (num_tokens == 0) return DSV4_OK;
  DSV4_CHECK_PTR(logits, fn, "logits", 4);
  DSV4_CHECK_PTR(w, fn, "topk_weights", 4);
  DSV4_CHECK_PTR(ids, fn, "topk_ids", 4);
  return DSV4_OK;
}

dsv4_status dsv4_activation_topk_enqueue(dsv4_context *ctx, CUstream stream, const float *logits,
                                         int32_t num_splits, int64_t split_stride, int64_t num_tokens,
                                         int32_t num_experts, const float *bias, int32_t k, float scale, float *w,
                                         int32_t *ids, bool pdl) {
  if (num_tokens == 0) return DSV4_OK;
  const bool slabs = num_splits > 1;
  dsv4_kernel_spec spec;
  if (slabs) dsv4_activation_topk_slabs_spec(num_experts, k, &spec);
  else dsv4_activation_topk_spec(num_experts, k, &spec);
  CUfunction fn = NULL;
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, &fn));
  /* Several slabs (decode, activation_topk_slabs.cu): one block per token, one thread per expert. One slab
   * (activation_topk.cu): a warp per token up to one wave of resident blocks; beyond it each warp loops over
   * tokens, loading the next one's row while it routes this one. */
  int64_t grid;
  unsigned block;
  if (slabs) {
    grid = num_tokens;
    block = (unsigned)((num_experts + 31) / 32 * 32);
    if (block > SLABS_MAX_THREADS) block = SLABS_MAX_THREADS;
  } else {
    grid = (num_tokens + TOKENS_PER_BLOCK - 1) / TOKENS_PER_BLOCK;
    const int64_t wave = (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 1) * act_blocks_per_sm(num_experts);
    if (grid > wave) grid = wave;
    block = 32 * TOKENS_PER_BLOCK;
  }
  if (grid > ((int64_t)1 << 30)) grid = (int64_t)1 << 30;   /* the kernels loop over tokens beyond the grid */
  void *args_slabs[] = {&logits, &num_splits, &split_stride, &num_tokens, &bias, &scale, &w, &ids};
  void *args_one[] = {&logits, &num_tokens, &bias, &scale, &w, &ids};
  void **args = slabs ? args_slabs : args_one;
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  dsv4_status s = dsv4_launch(ctx, fn, (unsigned)grid, block, 0, stream, args, pdl,
                              slabs ? "launching activation_topk_slabs" : "launching activation_topk");
  dsv4_ctx_leave(ctx, pushed);
  return s;
}

dsv4_status dsv4_activation_topk(dsv4_context *ctx, CUstream stream, const float *logits, int64_t num_tokens,
                                 int32_t num_experts, const float *bias, int32_t k, float routed_scaling_factor,
                                 float *topk_weights, int32_t *topk_ids) {
  DSV4_TRY(dsv4_activation_topk_check("dsv4_activation_topk", ctx, logits, 1, 0, num_tokens, num_experts, bias, k,
                                      routed_scaling_factor, topk_weights, topk_ids));
  return dsv4_activation_topk_enqueue(ctx, stream, logits, 1, 0, num_tokens, num_experts, bias, k,
                                      routed_scaling_factor, topk_weights, topk_ids, false);
}
