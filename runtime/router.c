/*
 * dsv4_router: ties the ops together for one MoE layer's gate (SPEC section 3).
 *
 * Dense mode, N <= decode_max: gate_decode writes split-K partial logits [S][N][E] (S depends on H only),
 *   then activation_topk sums them in split order and routes, launched with PDL: 2 launches. gate_decode is
 *   PDL-launched too (unless set_pdl turned it off): it streams its weight tiles while the previous kernel on
 *   the stream finishes (back to back, the previous call's routing, which triggers its dependents as soon as
 *   its own wait returns), then waits before reading x or writing the slabs.
 *   (One launch, the last blocks of the GEMM to finish routing behind a ticket counter, was built and measured
 *   on H200: slower at every N, 8.9 vs 8.5 us at N = 1 and 12.0 vs 10.7 us at N = 64. See git history,
 *   "gate_route". So was the routing kernel polling a counter that each GEMM block raises once its partials
 *   are visible, instead of waiting for the GEMM's grid to end: H100, 4.97 vs 4.47 us at N = 1 and 9.36 vs
 *   8.63 us at N = 64; branch wip/handoff.)
 * Dense mode, N > decode_max: for each chunk of at most DSV4_PREFILL_CHUNK rows, the cuBLASLt GEMM writes
 *   logits [rows][E], then activation_topk routes that chunk. The workspace does not grow with N.
 *   (Routing chunk i on a second stream while the GEMM of chunk i + 1 runs was measured on H200 and was
 *   slower: the routing blocks take the SMs the GEMM's CTAs need. See README.)
 * Hash mode, uniform weights: the hash router with weight = scale / k (no GEMM, no hidden states), PDL-launched
 *   unless set_pdl turned it off (it waits before touching memory: only its launch overlaps the kernel before).
 * Hash mode, scored weights: the dense GEMM path for the logits, then hash_scored picks the table's experts
 *   and weighs them by their scores.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "safetensors.h"

#define DSV4_DECODE_MAX_DEFAULT 64

struct dsv4_router {
  dsv4_context *ctx;
  dsv4_router_config cfg;
  const void *weight;     /* bf16 [E,H] */
  const float *bias;      /* [E] or NULL */
  const int32_t *lut;     /* [vocab,k] */
  CUdeviceptr owned[3];   /* weights loaded from a checkpoint */
  int32_t decode_max;
  bool pdl;               /* gate_decode / hash_router launched with PDL (dsv4_router_set_pdl) */
  int64_t max_tokens;     /* 0 until prepared */
  int splits;             /* decode split-K count */
  CUdeviceptr logits;     /* workspace: max(splits * decode_max, chunk) * E floats */
  CUdeviceptr err_count;  /* int32 */
  dsv4_gate_gemm_plan *gemm;
};

static bool needs_gemm(const dsv4_router_config *c) {
  return c->mode == DSV4_ROUTER_DENSE || c->hash_weights == DSV4_HASH_WEIGHTS_SCORED;
}

dsv4_status dsv4_router_create(dsv4_context *ctx, const dsv4_router_config *cfg, dsv4_router **out) {
  static const char *fn = "dsv4_router_create";
  DSV4_CHECK_ARG(out != NULL, fn, "out", "is NULL");
  *out = NULL;
  DSV4_CHECK_ARG(ctx != NULL, fn, "ctx", "is NULL");
  DSV4_TRY(dsv4_router_config_check(cfg));
  dsv4_router *r = calloc(1, sizeof *r);
  if (!r) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "%s: allocating the router", fn);
  r->ctx = ctx;
  r->cfg = *cfg;
  r->decode_max = DSV4_DECODE_MAX_DEFAULT;
  r->pdl = true;
  *out = r;
  return DSV4_OK;
}

dsv4_status dsv4_router_set_decode_max_tokens(dsv4_router *r, int32_t n) {
  static const char *fn = "dsv4_router_set_decode_max_tokens";
  DSV4_CHECK_ARG(r != NULL, fn, "r", "is NULL");
  DSV4_CHECK_ARG(n >= 0 && n <= 64, fn, "n", "must be in 0..64");
  DSV4_CHECK_ARG(r->max_tokens == 0, fn, "r", "is already prepared; set the switch point before prepare");
  r->decode_max = n;
  return DSV4_OK;
}

dsv4_status dsv4_router_set_pdl(dsv4_router *r, int32_t enable) {
  static const char *fn = "dsv4_router_set_pdl";
  DSV4_CHECK_ARG(r != NULL, fn, "r", "is NULL");
  DSV4_CHECK_ARG(enable == 0 || enable == 1, fn, "enable", "must be 0 or 1");
  r->pdl = enable != 0;
  return DSV4_OK;
}

static void free_owned(dsv4_router *r) {
  for (int i = 0; i < 3; ++i)
    if (r->owned[i]) r->ctx->drv->cuMemFree(r->owned[i]), r->owned[i] = 0;
}

static dsv4_status check_weights(const char *fn, const dsv4_router_config *c, const void *w, const int32_t *lut) {
  if (needs_gemm(c))
    DSV4_CHECK_ARG(w != NULL, fn, "gate_weight_bf16", c->mode == DSV4_ROUTER_DENSE
                   ? "is NULL (dense mode needs the gate weight)" : "is NULL (scored hash weights need the gate weight)");
  if (c->mode == DSV4_ROUTER_HASH) DSV4_CHECK_ARG(lut != NULL, fn, "tid2eid", "is NULL (hash mode needs the table)");
  return DSV4_OK;
}

dsv4_status dsv4_router_set_weights(dsv4_router *r, const void *w, const float *bias, const int32_t *tid2eid) {
  static const char *fn = "dsv4_router_set_weights";
  DSV4_CHECK_ARG(r != NULL, fn, "r", "is NULL");
  DSV4_TRY(check_weights(fn, &r->cfg, w, tid2eid));
  DSV4_CHECK_ARG(((uintptr_t)w & 15) == 0, fn, "gate_weight_bf16", "must be 16-byte aligned");
  DSV4_CHECK_ARG(((uintptr_t)bias & 3) == 0, fn, "bias", "must be 4-byte aligned");
  DSV4_CHECK_ARG(((uintptr_t)tid2eid & 3) == 0, fn, "tid2eid", "must be 4-byte aligned");
  bool pushed;
  DSV4_TRY(dsv4_ctx_enter(r->ctx, &pushed));
  free_owned(r);
  dsv4_ctx_leave(r->ctx, pushed);
  r->weight = w, r->bias = bias, r->lut = tid2eid;
  return DSV4_OK;
}

static dsv4_status upload(dsv4_router *r, const void *host, size_t bytes, CUdeviceptr *out) {
  *out = 0;
  if (!host) return DSV4_OK;
  DSV4_CU(r->ctx->drv, cuMemAlloc(out, bytes), "dsv4_router_load_safetensors: cuMemAlloc");
  CUresult e = r->ctx->drv->cuMemcpyHtoD(*out, host, bytes);
  if (e != CUDA_SUCCESS) {
    r->ctx->drv->cuMemFree(*out);
    *out = 0;
    return dsv4_cu_fail(e, "dsv4_router_load_safetensors: cuMemcpyHtoD");
  }
  return DSV4_OK;
}

dsv4_status dsv4_router_load_safetensors(dsv4_router *r, const char *path, const char *prefix) {
  static const char *fn = "dsv4_router_load_safetensors";
  DSV4_CHECK_ARG(r != NULL, fn, "r", "is NULL");
  DSV4_CHECK_ARG(path != NULL, fn, "path", "is NULL");
  dsv4_gate_want want;
  dsv4_gate_want_for_config(&r->cfg, &want);
  dsv4_gate_host g;
  DSV4_TRY(dsv4_st_load_gate(path, prefix ? prefix : "", &want, &g));
  const dsv4_router_config *c = &r->cfg;
  CUdeviceptr d[3] = {0, 0, 0};
  bool pushed;
  dsv4_status s = dsv4_ctx_enter(r->ctx, &pushed);
  if (s == DSV4_OK) s = upload(r, g.weight, (size_t)c->num_experts * c->hidden_size * 2, &d[0]);
  if (s == DSV4_OK) s = upload(r, g.bias, (size_t)c->num_experts * 4, &d[1]);
  if (s == DSV4_OK) s = upload(r, g.tid2eid, (size_t)c->vocab_size * c->top_k * 4, &d[2]);
  dsv4_gate_host_free(&g);
  if (s != DSV4_OK) {  /* all or nothing: the previous weights stay */
    for (int i = 0; i < 3; ++i)
      if (d[i]) r->ctx->drv->cuMemFree(d[i]);
    dsv4_ctx_leave(r->ctx, pushed);
    return s;
  }
  free_owned(r);
  dsv4_ctx_leave(r->ctx, pushed);
  memcpy(r->owned, d, sizeof d);
  r->weight = (const void *)d[0], r->bias = (const float *)d[1], r->lut = (const int32_t *)d[2];
  return DSV4_OK;
}

static void release_workspace(dsv4_router *r) {
  if (r->gemm) dsv4_gate_gemm_plan_destroy(r->gemm), r->gemm = NULL;
  if (r->logits) r->ctx->drv->cuMemFree(r->logits), r->logits = 0;
  if (r->err_count) r->ctx->drv->cuMemFree(r->err_count), r->err_count = 0;
  r->max_tokens = 0;
}

dsv4_status dsv4_router_prepare(dsv4_router *r, int64_t max_tokens) {
  static const char *fn = "dsv4_router_prepare";
  DSV4_CHECK_ARG(r != NULL, fn, "r", "is NULL");
  DSV4_CHECK_ARG(max_tokens >= 1, fn, "max_tokens", "must be at least 1");
  DSV4_CHECK_ARG(max_tokens <= ((int64_t)1 << 31) / 16, fn, "max_tokens", "is larger than 2^27");
  DSV4_TRY(check_weights(fn, &r->cfg, r->weight, r->lut));
  const dsv4_router_config *c = &r->cfg;
  /* Every kernel up front: forward then only finds them in memory. */
  dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
  int n = dsv4_router_kernel_specs(c, specs);
  CUfunction fns[DSV4_MAX_ROUTER_KERNELS];
  DSV4_TRY(dsv4_ctx_functions(r->ctx, specs, n, fns));
  bool pushed;
  DSV4_TRY(dsv4_ctx_enter(r->ctx, &pushed));
  release_workspace(r);
  dsv4_status s = DSV4_OK;
  r->splits = dsv4_gate_decode_splits(c->hidden_size);
  int64_t decode_rows = (int64_t)r->splits * (max_tokens < r->decode_max ? max_tokens : r->decode_max);
  int64_t chunk = max_tokens < DSV4_PREFILL_CHUNK ? max_tokens : DSV4_PREFILL_CHUNK;
  int64_t rows = decode_rows > chunk ? decode_rows : chunk;
  CUresult e = r->ctx->drv->cuMemAlloc(&r->logits, (size_t)rows * c->num_experts * sizeof(float));
  /* The logits workspace is zeroed once, here: forward always writes what it reads, but compute-sanitizer
   * initcheck does not see every store of cuBLASLt's GEMM kernels and would report the routing kernel's reads of
   * the prefill logits otherwise. */
  if (e == CUDA_SUCCESS) e = r->ctx->drv->cuMemsetD32(r->logits, 0, (size_t)rows * c->num_experts);
  if (e == CUDA_SUCCESS) e = r->ctx->drv->cuMemAlloc(&r->err_count, sizeof(int32_t));
  if (e == CUDA_SUCCESS) e = r->ctx->drv->cuMemsetD32(r->err_count, 0, 1);   /* done by the sync below */
  if (e != CUDA_SUCCESS) s = dsv4_cu_fail(e, "dsv4_router_prepare: workspace");
  if (s == DSV4_OK && needs_gemm(c) && max_tokens > r->decode_max)
    s = dsv4_gate_gemm_plan_create(r->ctx, c->num_experts, c->hidden_size, (int32_t)chunk, &r->gemm);
  if (s == DSV4_OK) {
    e = r->ctx->drv->cuCtxSynchronize();
    if (e != CUDA_SUCCESS) s = dsv4_cu_fail(e, "dsv4_router_prepare: synchronize");
  }
  if (s != DSV4_OK) release_workspace(r);
  else r->max_tokens = max_tokens;
  dsv4_ctx_leave(r->ctx, pushed);
  return s;
}

/* The routing of rows [r0, r0 + rows) from logits (splits slabs) on stream. */
static dsv4_status route(dsv4_router *r, CUstream stream, const float *logits, int32_t splits, const int32_t *tok,
                         int64_t r0, int64_t rows, float *w, int32_t *ids, bool pdl) {
  const dsv4_router_config *c = &r->cfg;
  const int64_t split_stride = rows * c->num_experts;
  w += r0 * c->top_k, ids += r0 * c->top_k;
  if (c->mode == DSV4_ROUTER_DENSE)
    return dsv4_activation_topk_enqueue(r->ctx, stream, logits, splits, split_stride, rows, c->num_experts, r->bias,
                                        c->top_k, c->routed_scaling_factor, w, ids, pdl);
  return dsv4_hash_scored_enqueue(r->ctx, stream, logits, splits, split_stride, tok + r0, rows, c->num_experts,
                                  r->lut, c->vocab_size, c->top_k, c->routed_scaling_factor, w, ids,
                                  (int32_t *)r->err_count, pdl);
}

/* Prefill: chunk by chunk, the GEMM into the workspace, then the routing of that chunk. (Launching the routing
 * with PDL behind cuBLASLt's GEMM was measured on H100: no faster.) */
static dsv4_status prefill(dsv4_router *r, CUstream stream, const uint16_t *x, const int32_t *tok, int64_t n,
                           float *w, int32_t *ids) {
  const dsv4_router_config *c = &r->cfg;
  for (int64_t r0 = 0; r0 < n; r0 += DSV4_PREFILL_CHUNK) {
    const int64_t rows = n - r0 < DSV4_PREFILL_CHUNK ? n - r0 : DSV4_PREFILL_CHUNK;
    DSV4_TRY(dsv4_gate_gemm_enqueue(r->gemm, stream, r->weight, x + r0 * c->hidden_size, rows, (float *)r->logits));
    DSV4_TRY(route(r, stream, (const float *)r->logits, 1, tok, r0, rows, w, ids, false));
  }
  return DSV4_OK;
}

dsv4_status dsv4_router_forward(dsv4_router *r, CUstream stream, const void *hidden, const int32_t *token_ids,
                                int64_t n, float *w, int32_t *ids) {
  static const char *fn = "dsv4_router_forward";
  DSV4_CHECK_ARG(r != NULL, fn, "r", "is NULL");
  DSV4_CHECK_ARG(n >= 0, fn, "num_tokens", "is negative");
  DSV4_CHECK_ARG(r->max_tokens > 0, fn, "r", "is not prepared (call dsv4_router_prepare first)");
  if (n > r->max_tokens)
    return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "%s: argument 'num_tokens' = %lld exceeds the %lld given to "
                     "dsv4_router_prepare", fn, (long long)n, (long long)r->max_tokens);
  if (n == 0) return DSV4_OK;
  const dsv4_router_config *c = &r->cfg;
  if (needs_gemm(c)) {
    DSV4_CHECK_ARG(hidden != NULL, fn, "hidden_bf16", "is NULL");
    DSV4_CHECK_ARG(((uintptr_t)hidden & 15) == 0, fn, "hidden_bf16", "must be 16-byte aligned");
  }
  if (c->mode == DSV4_ROUTER_HASH) {
    DSV4_CHECK_ARG(token_ids != NULL, fn, "token_ids", "is NULL (hash mode)");
    DSV4_CHECK_ARG(((uintptr_t)token_ids & 3) == 0, fn, "token_ids", "is not 4-byte aligned");
  }
  DSV4_CHECK_PTR(w, fn, "topk_weights", 4);
  DSV4_CHECK_PTR(ids, fn, "topk_ids", 4);
  if (c->mode == DSV4_ROUTER_HASH && c->hash_weights == DSV4_HASH_WEIGHTS_UNIFORM)
    return dsv4_hash_router_enqueue(r->ctx, stream, token_ids, n, r->lut, c->vocab_size, c->top_k,
                                    c->routed_scaling_factor / (float)c->top_k, w, ids, (int32_t *)r->err_count,
                                    r->pdl);
  if (n > r->decode_max) return prefill(r, stream, hidden, token_ids, n, w, ids);
  /* Decode: the split-K partials (PDL-launched unless turned off), then the routing launched with PDL
   * behind them. */
  DSV4_TRY(dsv4_gate_decode_enqueue_ex(r->ctx, stream, hidden, n, r->weight, c->num_experts, c->hidden_size,
                                       (float *)r->logits, 0, r->pdl));
  return route(r, stream, (const float *)r->logits, r->splits, token_ids, 0, n, w, ids, true);
}

int64_t dsv4_router_take_error_count(dsv4_router *r) {
  if (!r) return -1;
  if (!r->err_count) return 0;  /* not prepared: nothing ran */
  bool pushed;
  if (dsv4_ctx_enter(r->ctx, &pushed) != DSV4_OK) return -1;
  int32_t count = -1;
  CUresult e = r->ctx->drv->cuCtxSynchronize();
  if (e == CUDA_SUCCESS) e = r->ctx->drv->cuMemcpyDtoH(&count, r->err_count, sizeof count);
  if (e == CUDA_SUCCESS) e = r->ctx->drv->cuMemsetD32(r->err_count, 0, 1);
  /* A memset of device memory may return before it is done: a forward on another stream right after this call
   * would count into the old value and its count be lost. */
  if (e == CUDA_SUCCESS) e = r->ctx->drv->cuCtxSynchronize();
  dsv4_ctx_leave(r->ctx, pushed);
  if (e != CUDA_SUCCESS) {
    dsv4_cu_fail(e, "dsv4_router_take_error_count");
    return -1;
  }
  return count;
}

void dsv4_router_destroy(dsv4_router *r) {
  if (!r) return;
  bool pushed;
  if (dsv4_ctx_enter(r->ctx, &pushed) == DSV4_OK) {
    r->ctx->drv->cuCtxSynchronize();
    release_workspace(r);
    free_owned(r);
    dsv4_ctx_leave(r->ctx, pushed);
  }
  free(r);
}
