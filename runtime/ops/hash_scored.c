/* Host launcher for kernel_src/hash_scored.cu (the router's hash mode with scored weights). */
#include <stdint.h>
#include <stdio.h>

#include "ops.h"

#define MAX_VOCAB (1 << 24)
#define BLOCK 256   /* one thread per token */

void dsv4_hash_scored_spec(int32_t k, dsv4_kernel_spec *out) {
  out->source = "hash_scored.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::hash_scored<%d>", (int)k);
  snprintf(out->tag, sizeof out->tag, "hash_scored-k%d", (int)k);
}

dsv4_status dsv4_hash_scored_check(const char *fn, const void *ctx, const float *logits, int32_t num_splits,
                                   int64_t split_stride, const int32_t *token_ids, int64_t num_tokens,
                                   int32_t num_experts, const int32_t *lut, int32_t vocab_size, int32_t k,
                                   float scale, const float *w, const int32_t *ids) {
  DSV4_TRY(dsv4_routing_logits_check(fn, ctx, num_splits, split_stride, num_tokens, num_experts, k, scale));
  DSV4_CHECK_ARG(vocab_size >= 1, fn, "vocab_size", "must be at least 1");
  DSV4_CHECK_RANGE(vocab_size <= MAX_VOCAB, fn, "vocab_size", vocab_size, "1..2^24");
  DSV4_CHECK_PTR(lut, fn, "lut", 4);
  if (num_tokens == 0) return DSV4_OK;
  DSV4_CHECK_PTR(logits, fn, "logits", 4);
  DSV4_CHECK_PTR(token_ids, fn, "token_ids", 4);
  DSV4_CHECK_PTR(w, fn, "topk_weights", 4);
  DSV4_CHECK_PTR(ids, fn, "topk_ids", 4);
  return DSV4_OK;
}

dsv4_status dsv4_hash_scored_enqueue(dsv4_context *ctx, CUstream stream, const float *logits, int32_t num_splits,
                                     int64_t split_stride, const int32_t *token_ids, int64_t num_tokens,
                                     int32_t num_experts, const int32_t *lut, int32_t vocab_size, int32_t k,
                                     float scale, float *w, int32_t *ids, int32_t *err_count, bool pdl) {
  if (num_tokens == 0) return DSV4_OK;
  dsv4_kernel_spec spec;
  dsv4_hash_scored_spec(k, &spec);
  CUfunction fn = NULL;
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, &fn));
  if (num_splits == 1) split_stride = 0;
  int64_t grid = (num_tokens + BLOCK - 1) / BLOCK;
  const int64_t max_grid = (int64_t)ctx->sm_count * 16;   /* the kernel loops over tokens beyond the grid */
  if (grid > max_grid) grid = max_grid;
  void *args[] = {&logits, &num_splits, &split_stride, &token_ids, &num_tokens, &num_experts,
                  &lut, &vocab_size, &scale, &w, &ids, &err_count};
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  dsv4_status s = dsv4_launch(ctx, fn, (unsigned)grid, BLOCK, 0, stream, args, pdl, "launching hash_scored");
  dsv4_ctx_leave(ctx, pushed);
  return s;
}
