/*
 * cuBLASLt gate GEMM against the FP64 oracle: logits[N,E] = x[N,H] . W[E,H]^T with random (non-zero) bf16 x
 * and W. Tolerance: ||out - ref|| / ||ref|| < 1e-5 per row — bf16 x bf16 products are exact in FP32, so the
 * only error is FP32 accumulation over H <= 7168 terms (~1e-7 relative in practice). Every output element is
 * poisoned (NaN) before each run and checked to be written; big N check sampled rows against the oracle
 * (chunk edges, the tail, random rows). Exits 77 with no driver or no device.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oracle.h"
#include "gpu_util.h"
#include "ops/ops.h"

static dsv4_context *g_ctx;
static const dsv4_driver *g_drv;
static CUstream g_stream;


static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void) {
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 32);
}
static uint16_t bf16_of(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
/* Uniform in [-1, 1), rounded to bf16, never zero. */
static uint16_t rnd_bf16(void) {
  for (;;) {
    float v = (float)((int32_t)(rnd32() >> 8) - (1 << 23)) / (float)(1 << 23);
    uint16_t b = bf16_of(v);
    if ((b & 0x7FFF) != 0) return b;
  }
}

static const uint32_t k_poison = 0xFFFFFFFFu; /* a NaN */

static CUdeviceptr dev_alloc(size_t bytes) {
  CUdeviceptr p = 0;
  GPU_CHECK(cuMemAlloc(&p, bytes));
  return p;
}

static void poison(CUdeviceptr p, size_t floats) {
  GPU_CHECK(cuMemsetD32Async(p, k_poison, floats, g_stream));
  GPU_CHECK(cuStreamSynchronize(g_stream));
}

/* Downloads logits [n,E], requires every element written (finite), and compares `rows` against the oracle. */
static void verify(CUdeviceptr d_logits, const uint16_t *x, const uint16_t *w, int64_t n, int32_t e, int32_t h,
                   const int64_t *rows, int num_rows, const char *what) {
  float *out = malloc((size_t)n * e * sizeof(float));
  double *ref = malloc((size_t)e * sizeof(double));
  assert_non_null(out);
  assert_non_null(ref);
  GPU_CHECK(cuMemcpyDtoH(out, d_logits, (size_t)n * e * sizeof(float)));
  for (int64_t i = 0; i < n * e; ++i)
    if (!isfinite(out[i]))
      fail_msg("%s: logits[%lld][%lld] = %g was not written (E=%d H=%d N=%lld)", what, (long long)(i / e),
               (long long)(i % e), (double)out[i], e, h, (long long)n);
  double worst = 0.0;
  for (int j = 0; j < num_rows; ++j) {
    int64_t r = rows[j];
    oracle_gate_logits(x + r * h, w, 1, h, e, ref);
    double num = 0.0, den = 0.0;
    for (int32_t c = 0; c < e; ++c) {
      double d = (double)out[r * e + c] - ref[c];
      num += d * d, den += ref[c] * ref[c];
    }
    assert_true(den > 0.0);
    double rel = sqrt(num / den);
    if (rel > worst) worst = rel;
    if (!(rel < 1e-5))
      fail_msg("%s: row %lld: relative error %.3g >= 1e-5 (E=%d H=%d N=%lld; out[0]=%.9g ref[0]=%.9g)", what,
               (long long)r, rel, e, h, (long long)n, (double)out[r * e], ref[0]);
  }
  printf("  %-34s E=%4d H=%5d N=%5lld: %2d rows checked, worst relative error %.2e\n", what, e, h, (long long)n,
         num_rows, worst);
  free(out);
  free(ref);
}

/* All rows if n <= 64 (rows must hold 64), else chunk edges, the tail and random rows up to cap (>= 9). */
static int pick_rows(int64_t n, int64_t chunk, int64_t *rows, int cap) {
  int k = 0;
  if (n <= 64) {
    for (int64_t r = 0; r < n; ++r) rows[k++] = r;
    return k;
  }
  const int64_t fixed[] = {0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk - 1, 2 * chunk, n - 2, n - 1};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; ++i)
    if (fixed[i] >= 0 && fixed[i] < n) rows[k++] = fixed[i];
  while (k < cap) rows[k++] = (int64_t)(rnd32() % (uint32_t)n);
  return k;
}

typedef struct problem {
  int32_t e, h;
  int64_t nmax;
  uint16_t *x, *w;    /* host */
  CUdeviceptr dx, dw, dlogits;
} problem;

static void problem_init(problem *p, int32_t e, int32_t h, int64_t nmax) {
  p->e = e, p->h = h, p->nmax = nmax;
  p->x = malloc((size_t)nmax * h * 2);
  p->w = malloc((size_t)e * h * 2);
  assert_non_null(p->x);
  assert_non_null(p->w);
  for (int64_t i = 0; i < nmax * h; ++i) p->x[i] = rnd_bf16();
  for (int64_t i = 0; i < (int64_t)e * h; ++i) p->w[i] = rnd_bf16();
  p->dx = dev_alloc((size_t)nmax * h * 2);
  p->dw = dev_alloc((size_t)e * h * 2);
  p->dlogits = dev_alloc((size_t)nmax * e * 4);
  GPU_CHECK(cuMemcpyHtoD(p->dx, p->x, (size_t)nmax * h * 2));
  GPU_CHECK(cuMemcpyHtoD(p->dw, p->w, (size_t)e * h * 2));
  GPU_CHECK(cuCtxSynchronize());   /* the copies are done before g_stream (non-blocking) reads them */
}

static void problem_free(problem *p) {
  GPU_CHECK(cuMemFree(p->dx));
  GPU_CHECK(cuMemFree(p->dw));
  GPU_CHECK(cuMemFree(p->dlogits));
  free(p->x);
  free(p->w);
}

/* The brief's sweep: N in {1, 7, 64, 1000, 8193} with chunk 4096, for each (E, H). */
static void sweep(int32_t e, int32_t h) {
  static const int64_t ns[] = {1, 7, 64, 1000, 8193};
  const int64_t chunk = 4096;
  problem p;
  problem_init(&p, e, h, 8193);
  dsv4_gate_gemm_plan *plan = NULL;
  DSV4_CHECK_OK(dsv4_gate_gemm_plan_create(g_ctx, e, h, chunk, &plan));
  assert_non_null(plan);
  assert_int_equal(dsv4_gate_gemm_chunk_rows(plan), chunk);
  assert_true(dsv4_gate_gemm_workspace_bytes(plan) <= ((size_t)32 << 20));
  printf("  plan E=%d H=%d chunk=%lld: workspace %zu bytes\n", e, h, (long long)chunk,
         dsv4_gate_gemm_workspace_bytes(plan));
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; ++i) {
    int64_t n = ns[i];
    poison(p.dlogits, (size_t)p.nmax * e);
    DSV4_CHECK_OK(dsv4_gate_gemm_enqueue_all(plan, g_stream, (const void *)p.dw, (const void *)p.dx, n,
                                        (float *)p.dlogits));
    GPU_CHECK(cuStreamSynchronize(g_stream));
    int64_t rows[64];
    int k = pick_rows(n, chunk, rows, 40);
    verify(p.dlogits, p.x, p.w, n, e, h, rows, k, "enqueue_all chunk 4096");
    /* Nothing beyond row n was written. */
    if (n < p.nmax) {
      uint32_t after[64];
      size_t cnt = (size_t)(p.nmax - n) * e < 64 ? (size_t)(p.nmax - n) * e : 64;
      GPU_CHECK(cuMemcpyDtoH(after, p.dlogits + (size_t)n * e * 4, cnt * 4));
      for (size_t j = 0; j < cnt; ++j) assert_int_equal(after[j], k_poison);
    }
  }
  dsv4_gate_gemm_plan_destroy(plan);
  problem_free(&p);
}

static void test_v4_pro(void **state) {
  (void)state;
  sweep(384, 7168);
}
static void test_v4_flash(void **state) {
  (void)state;
  sweep(256, 4096);
}
static void test_e144(void **state) {
  (void)state;
  sweep(144, 1024);
}

/* The router's way: one chunk at a time into a [chunk,E] scratch, copied out after each chunk. Odd E (4-byte
 * aligned logits rows) and a chunk of 96 rows: tails of every size class go through the per-call check. */
static void test_per_chunk_scratch(void **state) {
  (void)state;
  static const struct {
    int32_t e, h;
    int64_t n, chunk;
  } cases[] = {{37, 72, 1000, 96}, {384, 7168, 300, 96}, {1, 8, 77, 5}, {1024, 16384, 70, 33}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
    const int32_t e = cases[c].e, h = cases[c].h;
    const int64_t n = cases[c].n, chunk = cases[c].chunk;
    problem p;
    problem_init(&p, e, h, n);
    CUdeviceptr scratch = dev_alloc((size_t)chunk * e * 4);
    dsv4_gate_gemm_plan *plan = NULL;
    DSV4_CHECK_OK(dsv4_gate_gemm_plan_create(g_ctx, e, h, chunk, &plan));
    poison(p.dlogits, (size_t)n * e);
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      int64_t rows = n - r0 < chunk ? n - r0 : chunk;
      poison(scratch, (size_t)chunk * e);
      DSV4_CHECK_OK(dsv4_gate_gemm_enqueue(plan, g_stream, (const void *)p.dw, (const void *)(p.dx + (size_t)r0 * h * 2),
                                      rows, (float *)scratch));
      GPU_CHECK(cuMemcpyDtoDAsync(p.dlogits + (size_t)r0 * e * 4, scratch, (size_t)rows * e * 4, g_stream));
    }
    GPU_CHECK(cuStreamSynchronize(g_stream));
    /* Small problems: every row against the oracle; large ones: sampled rows. */
    int64_t *rows = malloc((size_t)(n > 64 ? n : 64) * sizeof *rows);
    assert_non_null(rows);
    int k = 0;
    if ((int64_t)e * h <= 4096)
      for (int64_t r = 0; r < n; ++r) rows[k++] = r;
    else
      k = pick_rows(n, chunk, rows, 24);
    verify(p.dlogits, p.x, p.w, n, e, h, rows, k, "per-chunk into scratch");
    /* The whole-N call on the same plan, checked the same way. */
    poison(p.dlogits, (size_t)n * e);
    DSV4_CHECK_OK(dsv4_gate_gemm_enqueue_all(plan, g_stream, (const void *)p.dw, (const void *)p.dx, n, (float *)p.dlogits));
    GPU_CHECK(cuStreamSynchronize(g_stream));
    verify(p.dlogits, p.x, p.w, n, e, h, rows, k, "enqueue_all, small chunk");
    free(rows);
    dsv4_gate_gemm_plan_destroy(plan);
    GPU_CHECK(cuMemFree(scratch));
    problem_free(&p);
  }
}

/* Captured into a CUDA graph (global capture mode: any allocation or sync would break the capture) with a
 * fresh plan, a tail that needs the per-call algorithm check, then replayed twice. */
static void test_graph_capture(void **state) {
  (void)state;
  const int32_t e = 256, h = 4096;
  const int64_t n = 1000, chunk = 96; /* 10 full chunks + a 40-row tail */
  problem p;
  problem_init(&p, e, h, n);
  dsv4_gate_gemm_plan *plan = NULL;
  DSV4_CHECK_OK(dsv4_gate_gemm_plan_create(g_ctx, e, h, chunk, &plan));
  GPU_CHECK(cuStreamBeginCapture(g_stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  dsv4_status s = dsv4_gate_gemm_enqueue_all(plan, g_stream, (const void *)p.dw, (const void *)p.dx, n,
                                             (float *)p.dlogits);
  CUgraph graph = NULL;
  CUresult end = g_drv->cuStreamEndCapture(g_stream, &graph);
  if (s != DSV4_OK) fail_msg("enqueue during capture: %s (%s)", dsv4_status_string(s), dsv4_last_error());
  assert_int_equal(end, CUDA_SUCCESS);
  CUgraphExec exec = NULL;
  GPU_CHECK(cuGraphInstantiate(&exec, graph, 0));
  int64_t rows[64];
  int k = pick_rows(n, chunk, rows, 24);
  for (int rep = 0; rep < 2; ++rep) {
    poison(p.dlogits, (size_t)n * e);
    GPU_CHECK(cuGraphLaunch(exec, g_stream));
    GPU_CHECK(cuStreamSynchronize(g_stream));
    verify(p.dlogits, p.x, p.w, n, e, h, rows, k, rep ? "graph replay 2" : "graph replay 1");
  }
  GPU_CHECK(cuGraphExecDestroy(exec));
  GPU_CHECK(cuGraphDestroy(graph));
  dsv4_gate_gemm_plan_destroy(plan);
  problem_free(&p);
}

/* Bad arguments on a real plan: named status, nothing enqueued (the poisoned output stays poisoned). */
static void test_bad_args_change_nothing(void **state) {
  (void)state;
  const int32_t e = 384, h = 7168;
  const int64_t n = 16;
  problem p;
  problem_init(&p, e, h, n);
  dsv4_gate_gemm_plan *plan = NULL;
  DSV4_CHECK_OK(dsv4_gate_gemm_plan_create(g_ctx, e, h, 8, &plan));
  poison(p.dlogits, (size_t)n * e);
  const void *w = (const void *)p.dw, *x = (const void *)p.dx;
  float *out = (float *)p.dlogits;
  struct {
    dsv4_status got;
    const char *arg;
  } c[] = {
      {dsv4_gate_gemm_enqueue(plan, g_stream, w, x, 9, out), "'rows'"},
      {dsv4_gate_gemm_enqueue(plan, g_stream, w, x, -1, out), "'rows'"},
      {dsv4_gate_gemm_enqueue(plan, g_stream, NULL, x, 4, out), "'w_bf16'"},
      {dsv4_gate_gemm_enqueue(plan, g_stream, w, NULL, 4, out), "'x_bf16'"},
      {dsv4_gate_gemm_enqueue(plan, g_stream, w, x, 4, NULL), "'logits'"},
      {dsv4_gate_gemm_enqueue(plan, g_stream, (const uint16_t *)w + 1, x, 4, out), "'w_bf16'"},
      {dsv4_gate_gemm_enqueue(plan, g_stream, w, (const uint16_t *)x + 4, 4, out), "'x_bf16'"},
      {dsv4_gate_gemm_enqueue(plan, g_stream, w, x, 4, out + 2), "'logits'"},
      {dsv4_gate_gemm_enqueue_all(plan, g_stream, w, x, -5, out), "'num_rows'"},
      {dsv4_gate_gemm_enqueue_all(plan, g_stream, w, x, n, out + 1), "'logits'"},
  };
  /* Every call was rejected; two are repeated to read their own messages. */
  for (size_t i = 0; i < sizeof c / sizeof c[0]; ++i) assert_int_equal(c[i].got, DSV4_ERR_INVALID_ARGUMENT);
  assert_int_equal(dsv4_gate_gemm_enqueue(plan, g_stream, w, x, 4, out + 2), DSV4_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(dsv4_last_error(), "'logits'"));
  assert_non_null(strstr(dsv4_last_error(), "16-byte"));
  assert_int_equal(dsv4_gate_gemm_enqueue(plan, g_stream, w, x, 9, out), DSV4_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(dsv4_last_error(), "'rows'"));
  /* rows == 0 and num_rows == 0 are no-ops, even with NULL pointers. */
  DSV4_CHECK_OK(dsv4_gate_gemm_enqueue(plan, g_stream, NULL, NULL, 0, NULL));
  DSV4_CHECK_OK(dsv4_gate_gemm_enqueue_all(plan, g_stream, NULL, NULL, 0, NULL));
  GPU_CHECK(cuStreamSynchronize(g_stream));
  uint32_t *host = malloc((size_t)n * e * 4);
  assert_non_null(host);
  GPU_CHECK(cuMemcpyDtoH(host, p.dlogits, (size_t)n * e * 4));
  for (int64_t i = 0; i < n * e; ++i)
    if (host[i] != k_poison) fail_msg("logits[%lld] changed by a rejected call", (long long)i);
  free(host);
  dsv4_gate_gemm_plan_destroy(plan);
  problem_free(&p);
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx); /* exits 77 with no driver or no device */
  g_drv = g_ctx->drv;
  bool pushed = false;
  if (dsv4_ctx_enter(g_ctx, &pushed) != DSV4_OK ||
      g_drv->cuStreamCreate(&g_stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) {
    fprintf(stderr, "could not make the context current or create a stream: %s\n", dsv4_last_error());
    return 1;
  }
  printf("device: %s (%s)\n", g_ctx->name, g_ctx->arch);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_graph_capture),     /* first: a plan never run before is captured */
      cmocka_unit_test(test_v4_pro),
      cmocka_unit_test(test_v4_flash),
      cmocka_unit_test(test_e144),
      cmocka_unit_test(test_per_chunk_scratch),
      cmocka_unit_test(test_bad_args_change_nothing),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  g_drv->cuStreamDestroy(g_stream);
  dsv4_ctx_leave(g_ctx, pushed);
  dsv4_context_destroy(g_ctx);
  return failed;
}
