/* Host launcher for kernel_src/gate_route.cu: the dense decode router in one launch (gate GEMM + routing). */
#include <stdint.h>
#include <stdio.h>

#include "ops.h"

void dsv4_gate_route_spec(int32_t hidden_size, int32_t num_experts, int32_t k, dsv4_kernel_spec *out) {
  out->source = "gate_route.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::gate_route<%d, %d, %d>", (int)hidden_size,
           (int)num_experts, (int)k);
  snprintf(out->tag, sizeof out->tag, "gate_route-h%d-e%d-k%d", (int)hidden_size, (int)num_experts, (int)k);
}

dsv4_status dsv4_gate_route_check(const char *fn, const void *ctx, const void *x, int64_t num_tokens, const void *w,
                                  int32_t num_experts, int32_t hidden_size, const float *bias, int32_t k, float scale,
                                  const float *partials, const uint32_t *sync, const float *topk_weights,
                                  const int32_t *topk_ids) {
  DSV4_TRY(dsv4_gate_decode_check(fn, ctx, x, num_tokens, w, num_experts, hidden_size, partials));
  /* The routing half: the same rules as dsv4_activation_topk (k, scale, bias, outputs). */
  DSV4_TRY(dsv4_activation_topk_check(fn, ctx, partials, 1, 0, num_tokens, num_experts, bias, k, scale, topk_weights,
                                      topk_ids));
  if (num_tokens == 0) return DSV4_OK;
  DSV4_CHECK_PTR(sync, fn, "sync", 8);
  return DSV4_OK;
}

dsv4_status dsv4_gate_route_enqueue(dsv4_context *ctx, CUstream stream, const void *x, int64_t num_tokens,
                                    const void *w, int32_t num_experts, int32_t hidden_size, const float *bias,
                                    int32_t k, float scale, float *partials, uint32_t *sync, float *topk_weights,
                                    int32_t *topk_ids, int warps, bool pdl) {
  if (num_tokens == 0) return DSV4_OK;
  dsv4_kernel_spec spec;
  dsv4_gate_route_spec(hidden_size, num_experts, k, &spec);
  CUfunction fn = NULL;
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, &fn));
  int n = (int)num_tokens;
  void *args[] = {&x, &n, &w, &partials, &bias, &scale, &topk_weights, &topk_ids, &sync};
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  dsv4_status s = dsv4_gate_decode_launch(ctx, fn, stream, num_tokens, num_experts, hidden_size, warps, pdl, args,
                                          "launching gate_route");
  dsv4_ctx_leave(ctx, pushed);
  return s;
}
