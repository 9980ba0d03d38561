/* Host launcher for kernel_src/hash_router.cu. */
#include <stdint.h>
#include <stdio.h>

#include "ops.h"

#define MAX_K 16
#define MAX_VOCAB (1 << 24)

void dsv4_hash_router_spec(int32_t k, dsv4_kernel_spec *out) {
  out->source = "hash_router.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::hash_router<%d>", (int)k);
  snprintf(out->tag, sizeof out->tag, "hash_router-k%d", (int)k);
}

dsv4_status dsv4_hash_router_check(const char *fn, const void *ctx, const int32_t *token_ids, int64_t num_tokens,
                                   const int32_t *lut, int32_t vocab_size, int32_t k, const float *w,
                                   const int32_t *ids) {
  DSV4_CHECK_ARG(ctx != NULL, fn, "ctx", "is NULL");
  DSV4_CHECK_ARG(num_tokens >= 0, fn, "num_tokens", "is negative");
  DSV4_CHECK_ARG(k >= 1, fn, "k", "must be at least 1");
  DSV4_CHECK_RANGE(k <= MAX_K, fn, "k", k, "1..16");
  DSV4_CHECK_ARG(vocab_size >= 1, fn, "vocab_size", "must be at least 1");
  DSV4_CHECK_RANGE(vocab_size <= MAX_VOCAB, fn, "vocab_size", vocab_size, "1..2^24");
  DSV4_CHECK_PTR(lut, fn, "lut", 4);
  if (num_tokens == 0) return DSV4_OK;
  DSV4_CHECK_PTR(token_ids, fn, "token_ids", 4);
  DSV4_CHECK_PTR(w, fn, "topk_weights", 4);
  DSV4_CHECK_PTR(ids, fn, "topk_ids", 4);
  DSV4_CHECK_RANGE(num_tokens <= ((int64_t)1 << 40) / k, fn, "num_tokens", num_tokens, "0..2^40/k");
  return DSV4_OK;
}

dsv4_status dsv4_hash_router_enqueue(dsv4_context *ctx, CUstream stream, const int32_t *token_ids,
                                     int64_t num_tokens, const int32_t *lut, int32_t vocab_size, int32_t k,
                                     float weight, float *topk_weights, int32_t *topk_ids, int32_t *err_count,
                                     bool pdl) {
  if (num_tokens == 0) return DSV4_OK;
  dsv4_kernel_spec spec;
  dsv4_hash_router_spec(k, &spec);
  CUfunction fn = NULL;
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, &fn));
  const int64_t total = num_tokens * k;
  const int block = 256;
  int64_t grid = ((total + 1) / 2 + block - 1) / block;  /* 2 outputs per thread */
  const int64_t max_grid = (int64_t)ctx->sm_count * 16;
  if (grid > max_grid) grid = max_grid;
  void *args[] = {&token_ids, &num_tokens, &lut, &vocab_size, &weight, &topk_weights, &topk_ids, &err_count};
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  dsv4_status s = dsv4_launch(ctx, fn, (unsigned)grid, block, 0, stream, args, pdl, "launching hash_router");
  dsv4_ctx_leave(ctx, pushed);
  return s;
}

dsv4_status dsv4_hash_router(dsv4_context *ctx, CUstream stream, const int32_t *token_ids, int64_t num_tokens,
                             const int32_t *lut, int32_t vocab_size, int32_t k, float *topk_weights,
                             int32_t *topk_ids) {
  DSV4_TRY(dsv4_hash_router_check("dsv4_hash_router", ctx, token_ids, num_tokens, lut, vocab_size, k,
                                  topk_weights, topk_ids));
  return dsv4_hash_router_enqueue(ctx, stream, token_ids, num_tokens, lut, vocab_size, k, 1.0f / (float)k,
                                  topk_weights, topk_ids, NULL, true);
}
