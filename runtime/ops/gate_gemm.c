/*
 * Gate GEMM through cuBLASLt: logits[N,E] (fp32, row-major) = x[N,H] (bf16, row-major) . W[E,H]^T (bf16,
 * row-major), FP32 accumulation (CUBLAS_COMPUTE_32F, scale CUDA_R_32F, A/B CUDA_R_16BF, C/D CUDA_R_32F).
 *
 * Layout. cuBLASLt is column-major. Row-major logits[N,E] is column-major D[E,N] (ld E); row-major W[E,H] is
 * column-major [H,E] (ld H) and row-major x[N,H] is column-major [H,N] (ld H). So D = op(A) . op(B) with
 * A = W as [H,E] and op(A) = T, B = x as [H,N] and op(B) = N: m = E, n = rows, k = H. beta = 0 and C = D.
 *
 * Algorithms. The heuristic's answer depends on n, so rows 1..max_chunk_rows are split into power-of-two
 * buckets (1], (1,2], (2,4], ..., (2^j, max_chunk_rows]. At plan creation, for each bucket (lo, hi], one
 * cublasLtMatmulAlgoGetHeuristic query at n = hi (32 MiB workspace cap, alignments the plan guarantees)
 * gives up to 8 algorithms; those that cublasLtMatmulAlgoCheck also accepts at n = lo are kept (up to 4, in
 * heuristic order). If none passes at both ends, a query at n = lo supplies algorithms checked at n = hi.
 * No candidate at all is DSV4_ERR_CUBLAS at creation. At enqueue, rows equal to a bucket end use the first
 * candidate directly (checked at creation); other row counts run cublasLtMatmulAlgoCheck (host-only: no
 * allocation, no GPU work, legal during stream capture) on the bucket's candidates in order and take the
 * first that passes with a workspace need within the plan's. So every row count runs an algorithm cuBLASLt
 * has validated for that exact problem, and nothing is queried, allocated or compiled at enqueue.
 *
 * Workspace: allocated once at creation (cuMemAlloc), sized to the largest need among the kept candidates
 * (at most 32 MiB), so a plan costs only what its algorithms use.
 *
 * Alignment: the heuristic is told W and x are 16-byte aligned (x rows are 2H bytes, H % 8 == 0, so every
 * chunk start is too) and logits are aligned to min(16, lowest set bit of 4E) bytes (every row start of
 * [N,E] fp32 is); enqueue rejects pointers that break this with DSV4_ERR_INVALID_ARGUMENT.
 */
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#define WS_PREF ((uint64_t)32 << 20)
#define MAX_CAND 4
#define MAX_BUCKETS 24
#define HEUR_RESULTS 8
#define MAX_CHUNK_ROWS ((int64_t)1 << 20)
#define AB_ALIGN 16u

typedef struct gg_bucket {
  int64_t lo, hi; /* rows in [lo, hi] */
  int num;
  cublasLtMatmulAlgo_t algo[MAX_CAND];
} gg_bucket;

struct dsv4_gate_gemm_plan {
  dsv4_context *ctx;
  int32_t num_experts, hidden_size;
  int64_t chunk_rows;
  uint32_t d_align;
  cublasLtHandle_t lt;
  cublasLtMatmulDescOpaque_t op;
  cublasLtMatrixLayoutOpaque_t a; /* W as column-major [H,E] */
  CUdeviceptr ws;
  size_t ws_bytes;
  int num_buckets;
  gg_bucket buckets[MAX_BUCKETS];
};

/* rows == 0: a plan-level call, no row count to report. */
static dsv4_status lt_fail(cublasStatus_t st, const char *what, int32_t e, int32_t h, int64_t rows) {
  char r[40] = "";
  if (rows > 0) snprintf(r, sizeof r, ", rows=%lld", (long long)rows);
  return dsv4_fail(DSV4_ERR_CUBLAS, "gate GEMM %s (E=%d, H=%d%s): %s (%s)", what, (int)e, (int)h, r,
                   cublasLtGetStatusName(st), cublasLtGetStatusString(st));
}
#define LT_TRY(call, what, g, rows)                                                             \
  do {                                                                                          \
    cublasStatus_t lt_st_ = (call);                                                             \
    if (lt_st_ != CUBLAS_STATUS_SUCCESS) return lt_fail(lt_st_, what, (g)->num_experts, (g)->hidden_size, rows); \
  } while (0)

static uint32_t d_align_for(int32_t e) {
  uint32_t bytes = 4u * (uint32_t)e;
  uint32_t low = bytes & (~bytes + 1u);
  return low < 16u ? low : 16u;
}

dsv4_status dsv4_gate_gemm_check(const char *fn, const void *ctx, int32_t num_experts, int32_t hidden_size,
                                 int64_t max_chunk_rows) {
  DSV4_CHECK_ARG(ctx != NULL, fn, "ctx", "is NULL");
  DSV4_CHECK_ARG(num_experts >= 1, fn, "num_experts", "must be at least 1");
  DSV4_CHECK_RANGE(num_experts <= 1024, fn, "num_experts", num_experts, "1..1024");
  DSV4_CHECK_ARG(hidden_size >= 1, fn, "hidden_size", "must be at least 1");
  DSV4_CHECK_RANGE(hidden_size >= 8 && hidden_size <= 16384 && hidden_size % 8 == 0, fn, "hidden_size", hidden_size,
                   "8..16384, a multiple of 8");
  DSV4_CHECK_ARG(max_chunk_rows >= 1, fn, "max_chunk_rows", "must be at least 1");
  DSV4_CHECK_RANGE(max_chunk_rows <= MAX_CHUNK_ROWS, fn, "max_chunk_rows", max_chunk_rows, "1..2^20");
  return DSV4_OK;
}

/* B (x as column-major [H,rows]) and D (logits as column-major [E,rows]) for a row count. */
static dsv4_status make_bd(const dsv4_gate_gemm_plan *g, int64_t rows, cublasLtMatrixLayoutOpaque_t *b,
                           cublasLtMatrixLayoutOpaque_t *d) {
  LT_TRY(cublasLtMatrixLayoutInit(b, CUDA_R_16BF, (uint64_t)g->hidden_size, (uint64_t)rows, g->hidden_size),
         "cublasLtMatrixLayoutInit(x)", g, rows);
  LT_TRY(cublasLtMatrixLayoutInit(d, CUDA_R_32F, (uint64_t)g->num_experts, (uint64_t)rows, g->num_experts),
         "cublasLtMatrixLayoutInit(logits)", g, rows);
  return DSV4_OK;
}

/* cublasLtMatmulAlgoCheck at rows; *ws_need gets the algorithm's workspace need. */
static bool algo_ok(dsv4_gate_gemm_plan *g, const cublasLtMatmulAlgo_t *algo, int64_t rows, size_t ws_limit,
                    size_t *ws_need) {
  cublasLtMatrixLayoutOpaque_t b, d;
  if (make_bd(g, rows, &b, &d) != DSV4_OK) return false;
  cublasLtMatmulHeuristicResult_t r;
  memset(&r, 0, sizeof r);
  cublasStatus_t st = cublasLtMatmulAlgoCheck(g->lt, &g->op, &g->a, &b, &d, &d, algo, &r);
  if (st != CUBLAS_STATUS_SUCCESS || r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > ws_limit) return false;
  if (ws_need) *ws_need = r.workspaceSize;
  return true;
}

/* Heuristic at query_rows; keeps results also valid at other_rows, appending to bk. */
static dsv4_status collect(dsv4_gate_gemm_plan *g, cublasLtMatmulPreference_t pref, gg_bucket *bk, int64_t query_rows,
                           int64_t other_rows, size_t *ws_max, int *heur_found) {
  cublasLtMatrixLayoutOpaque_t b, d;
  DSV4_TRY(make_bd(g, query_rows, &b, &d));
  cublasLtMatmulHeuristicResult_t res[HEUR_RESULTS];
  memset(res, 0, sizeof res);
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g->lt, &g->op, &g->a, &b, &d, &d, pref, HEUR_RESULTS, res, &found);
  if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED)
    return lt_fail(st, "cublasLtMatmulAlgoGetHeuristic", g->num_experts, g->hidden_size, query_rows);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) found = 0;
  *heur_found += found;
  for (int i = 0; i < found && bk->num < MAX_CAND; ++i) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > WS_PREF) continue;
    size_t need_other = 0;
    if (!algo_ok(g, &res[i].algo, other_rows, WS_PREF, &need_other)) continue;
    bk->algo[bk->num++] = res[i].algo;
    if (res[i].workspaceSize > *ws_max) *ws_max = res[i].workspaceSize;
    if (need_other > *ws_max) *ws_max = need_other;
  }
  return DSV4_OK;
}

static dsv4_status choose_algorithms(dsv4_gate_gemm_plan *g, size_t *ws_max) {
  cublasLtMatmulPreference_t pref = NULL;
  LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", g, 0);
  uint64_t ws = WS_PREF;
  uint32_t ab = AB_ALIGN, cd = g->d_align;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &ab, sizeof ab);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &cd, sizeof cd);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &cd, sizeof cd);
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatmulPreferenceDestroy(pref);
    return lt_fail(st, "cublasLtMatmulPreferenceSetAttribute", g->num_experts, g->hidden_size, 0);
  }
  dsv4_status s = DSV4_OK;
  int64_t lo = 1;
  for (int64_t hi = 1; s == DSV4_OK; hi *= 2) {
    if (hi > g->chunk_rows) hi = g->chunk_rows;
    gg_bucket *bk = &g->buckets[g->num_buckets++];
    bk->lo = lo, bk->hi = hi, bk->num = 0;
    int heur_found = 0;
    s = collect(g, pref, bk, hi, lo, ws_max, &heur_found);
    if (s == DSV4_OK && bk->num == 0 && lo != hi) s = collect(g, pref, bk, lo, hi, ws_max, &heur_found);
    if (s == DSV4_OK && bk->num == 0)
      s = dsv4_fail(DSV4_ERR_CUBLAS,
                    "cublasLtMatmulAlgoGetHeuristic found %s for the gate GEMM (E=%d, H=%d, rows %lld..%lld, bf16 x "
                    "bf16 -> fp32, workspace <= 32 MiB) on %s",
                    heur_found ? "no algorithm valid at both ends of the row range" : "no algorithm",
                    (int)g->num_experts, (int)g->hidden_size, (long long)lo, (long long)hi, g->ctx->arch);
    if (hi == g->chunk_rows) break;
    lo = hi + 1;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  return s;
}

static dsv4_status plan_init(dsv4_gate_gemm_plan *g) {
  dsv4_context *ctx = g->ctx;
  LT_TRY(cublasLtCreate(&g->lt), "cublasLtCreate", g, 0);
  LT_TRY(cublasLtMatmulDescInit(&g->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescInit", g, 0);
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LT_TRY(cublasLtMatmulDescSetAttribute(&g->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
         "cublasLtMatmulDescSetAttribute(TRANSA)", g, 0);
  LT_TRY(cublasLtMatmulDescSetAttribute(&g->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
         "cublasLtMatmulDescSetAttribute(TRANSB)", g, 0);
  LT_TRY(cublasLtMatrixLayoutInit(&g->a, CUDA_R_16BF, (uint64_t)g->hidden_size, (uint64_t)g->num_experts,
                                  g->hidden_size),
         "cublasLtMatrixLayoutInit(W)", g, 0);
  size_t ws_max = 0;
  DSV4_TRY(choose_algorithms(g, &ws_max));
  if (ws_max > 0) {
    size_t bytes = (ws_max + 255) & ~(size_t)255;
    DSV4_CU(ctx->drv, cuMemAlloc(&g->ws, bytes), "allocating the gate GEMM workspace");
    g->ws_bytes = bytes;
    /* Zeroed once: no read of it ever sees memory nothing wrote (compute-sanitizer initcheck does not see every
     * store cuBLASLt's kernels make, and reports their split-K reduction reading this workspace otherwise). */
    DSV4_CU(ctx->drv, cuMemsetD8(g->ws, 0, bytes), "zeroing the gate GEMM workspace");
  }
  dsv4_log(DSV4_LOG_DEBUG, "gate GEMM plan E=%d H=%d chunk=%lld: %d row buckets, workspace %zu bytes",
           (int)g->num_experts, (int)g->hidden_size, (long long)g->chunk_rows, g->num_buckets, g->ws_bytes);
  return DSV4_OK;
}

static void plan_release(dsv4_gate_gemm_plan *g) {
  if (g->ws) g->ctx->drv->cuMemFree(g->ws);
  if (g->lt) cublasLtDestroy(g->lt);
  g->ws = 0, g->lt = NULL;
}

dsv4_status dsv4_gate_gemm_plan_create(dsv4_context *ctx, int32_t num_experts, int32_t hidden_size,
                                  int64_t max_chunk_rows, dsv4_gate_gemm_plan **out) {
  static const char *fn = "dsv4_gate_gemm_plan_create";
  DSV4_CHECK_ARG(out != NULL, fn, "out", "is NULL");
  *out = NULL;
  DSV4_TRY(dsv4_gate_gemm_check(fn, ctx, num_experts, hidden_size, max_chunk_rows));
  dsv4_gate_gemm_plan *g = calloc(1, sizeof *g);
  if (!g) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "%s: allocating the plan", fn);
  g->ctx = ctx;
  g->num_experts = num_experts;
  g->hidden_size = hidden_size;
  g->chunk_rows = max_chunk_rows;
  g->d_align = d_align_for(num_experts);
  bool pushed = false;
  dsv4_status s = dsv4_ctx_enter(ctx, &pushed);
  if (s != DSV4_OK) {
    free(g);
    return s;
  }
  s = plan_init(g);
  if (s != DSV4_OK) plan_release(g);
  dsv4_ctx_leave(ctx, pushed);
  if (s != DSV4_OK) {
    free(g);
    return s;
  }
  *out = g;
  return DSV4_OK;
}

void dsv4_gate_gemm_plan_destroy(dsv4_gate_gemm_plan *g) {
  if (!g) return;
  bool pushed = false;
  if (dsv4_ctx_enter(g->ctx, &pushed) == DSV4_OK) {
    plan_release(g);
    dsv4_ctx_leave(g->ctx, pushed);
  }
  free(g);
}

int64_t dsv4_gate_gemm_chunk_rows(const dsv4_gate_gemm_plan *g) { return g ? g->chunk_rows : 0; }
size_t dsv4_gate_gemm_workspace_bytes(const dsv4_gate_gemm_plan *g) { return g ? g->ws_bytes : 0; }

static dsv4_status check_ptrs(const char *fn, const dsv4_gate_gemm_plan *g, const void *w, const void *x,
                              const float *logits) {
  DSV4_CHECK_ARG(w != NULL, fn, "w_bf16", "is NULL");
  DSV4_CHECK_ARG(x != NULL, fn, "x_bf16", "is NULL");
  DSV4_CHECK_ARG(logits != NULL, fn, "logits", "is NULL");
  DSV4_CHECK_ARG((uintptr_t)w % AB_ALIGN == 0, fn, "w_bf16", "must be 16-byte aligned");
  DSV4_CHECK_ARG((uintptr_t)x % AB_ALIGN == 0, fn, "x_bf16", "must be 16-byte aligned");
  if ((uintptr_t)logits % g->d_align != 0)
    return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "%s: argument 'logits' must be %u-byte aligned (E = %d)", fn,
                     g->d_align, (int)g->num_experts);
  return DSV4_OK;
}

/* The algorithm for a chunk of `rows` (1..chunk_rows); ctx is current. */
static dsv4_status pick_algo(dsv4_gate_gemm_plan *g, int64_t rows, const cublasLtMatmulAlgo_t **out) {
  const gg_bucket *bk = &g->buckets[g->num_buckets - 1];
  for (int i = 0; i < g->num_buckets; ++i)
    if (rows <= g->buckets[i].hi) {
      bk = &g->buckets[i];
      break;
    }
  if (rows == bk->hi || rows == bk->lo) { /* checked at plan creation */
    *out = &bk->algo[0];
    return DSV4_OK;
  }
  for (int i = 0; i < bk->num; ++i)
    if (algo_ok(g, &bk->algo[i], rows, g->ws_bytes, NULL)) {
      *out = &bk->algo[i];
      return DSV4_OK;
    }
  return dsv4_fail(DSV4_ERR_CUBLAS,
                   "gate GEMM (E=%d, H=%d): none of the %d algorithm(s) chosen at plan creation for rows %lld..%lld "
                   "passes cublasLtMatmulAlgoCheck at rows=%lld",
                   (int)g->num_experts, (int)g->hidden_size, bk->num, (long long)bk->lo, (long long)bk->hi,
                   (long long)rows);
}

/* One chunk; ctx is current and the arguments were checked. */
static dsv4_status run_chunk(dsv4_gate_gemm_plan *g, CUstream stream, const cublasLtMatmulAlgo_t *algo, const void *w,
                             const void *x, int64_t rows, float *logits) {
  cublasLtMatrixLayoutOpaque_t b, d;
  DSV4_TRY(make_bd(g, rows, &b, &d));
  const float alpha = 1.0f, beta = 0.0f;
  LT_TRY(cublasLtMatmul(g->lt, &g->op, &alpha, w, &g->a, x, &b, &beta, logits, &d, logits, &d, algo,
                        (void *)(uintptr_t)g->ws, g->ws_bytes, (cudaStream_t)stream),
         "cublasLtMatmul", g, rows);
  return DSV4_OK;
}

dsv4_status dsv4_gate_gemm_enqueue(dsv4_gate_gemm_plan *g, CUstream stream, const void *w_bf16, const void *x_bf16,
                                         int64_t rows, float *logits) {
  static const char *fn = "dsv4_gate_gemm_enqueue";
  DSV4_CHECK_ARG(g != NULL, fn, "plan", "is NULL");
  DSV4_CHECK_ARG(rows >= 0, fn, "rows", "is negative");
  if (rows > g->chunk_rows)
    return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "%s: argument 'rows' = %lld is above the plan's max_chunk_rows %lld",
                     fn, (long long)rows, (long long)g->chunk_rows);
  if (rows == 0) return DSV4_OK;
  DSV4_TRY(check_ptrs(fn, g, w_bf16, x_bf16, logits));
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(g->ctx, &pushed));
  const cublasLtMatmulAlgo_t *algo = NULL;
  dsv4_status s = pick_algo(g, rows, &algo);
  if (s == DSV4_OK) s = run_chunk(g, stream, algo, w_bf16, x_bf16, rows, logits);
  dsv4_ctx_leave(g->ctx, pushed);
  return s;
}

dsv4_status dsv4_gate_gemm_enqueue_all(dsv4_gate_gemm_plan *g, CUstream stream, const void *w_bf16, const void *x_bf16,
                                   int64_t num_rows, float *logits) {
  static const char *fn = "dsv4_gate_gemm_enqueue_all";
  DSV4_CHECK_ARG(g != NULL, fn, "plan", "is NULL");
  DSV4_CHECK_ARG(num_rows >= 0, fn, "num_rows", "is negative");
  if (num_rows == 0) return DSV4_OK;
  DSV4_CHECK_RANGE(num_rows <= ((int64_t)1 << 40) / g->hidden_size, fn, "num_rows", num_rows, "0..2^40/H");
  DSV4_TRY(check_ptrs(fn, g, w_bf16, x_bf16, logits));
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(g->ctx, &pushed));
  /* Both algorithms (full chunks, tail) are resolved before anything is enqueued. */
  const int64_t full = num_rows / g->chunk_rows, tail = num_rows % g->chunk_rows;
  const cublasLtMatmulAlgo_t *algo_full = NULL, *algo_tail = NULL;
  dsv4_status s = DSV4_OK;
  if (full > 0) s = pick_algo(g, g->chunk_rows, &algo_full);
  if (s == DSV4_OK && tail > 0) s = pick_algo(g, tail, &algo_tail);
  for (int64_t r0 = 0; r0 < num_rows && s == DSV4_OK; r0 += g->chunk_rows) {
    int64_t rows = num_rows - r0 < g->chunk_rows ? num_rows - r0 : g->chunk_rows;
    s = run_chunk(g, stream, rows == g->chunk_rows ? algo_full : algo_tail, w_bf16,
                  (const uint16_t *)x_bf16 + r0 * g->hidden_size, rows, logits + r0 * g->num_experts);
  }
  dsv4_ctx_leave(g->ctx, pushed);
  return s;
}
