/*
 * Decode gate GEMM (kernel_src/gate_decode.cu) on the GPU against the FP64 oracle.
 *
 * Shapes (E, H): (384,7168) (256,4096) (144,1024) (1000,2056) (1,8) (3,24); N: 1 2 7 8 9 17 32 63 64 (the
 * kernel's one-token-tile form up to 8, its eight-tile form with 2, 3, 4 and 8 tiles used). Inputs are
 * random bf16 in [-1, 1] with a few large-magnitude entries (|x| up to 320, |W| up to 64).
 *  - Every run first poisons the whole workspace (0xFF bytes: NaN) plus a guard zone behind the slabs; after
 *    it every element of every slab must be finite (written) and the guard zone untouched.
 *  - Accuracy: the slabs summed on the CPU in FP32 in split order (what activation_topk does) vs
 *    oracle_gate_logits, per token row: ||got - ref||_2 / max(||ref||_2, 1e-3 ||sum_h |x W| ||_2) < 1e-5.
 *    bf16 x bf16 products are exact in FP32, so the error is the FP32 accumulation (~1e-7 relative); the
 *    floor only matters for rows that cancel to almost nothing (tiny H and E), where relative error to the
 *    result is meaningless and the bound is relative to the magnitude of the terms instead.
 *  - Determinism: two runs are bitwise equal.
 *  - Batch invariance: each token's partials at every N equal bitwise those of the same token in the N = 64
 *    batch; a token alone (N = 1, x pointer at its row) equals its partials at position p of the batch.
 *  - The launch shape (1..8 warps per block) and PDL launch never change a bit.
 * Exits 77 (skipped) with no driver or no device.
 */
#include <math.h>

#include "gpu_util.h"
#include "oracle.h"
#include "ops/ops.h"

static dsv4_context *g_ctx;
static const dsv4_driver *g_drv;
static CUstream g_stream;


#define MAX_N 64
#define GUARD_FLOATS 4096
#define POISON 0xFFFFFFFFu

static const int32_t k_shapes[][2] = {{384, 7168}, {256, 4096}, {144, 1024}, {1000, 2056}, {1, 8}, {3, 24}};
static const int k_ns[] = {1, 2, 7, 8, 9, 17, 32, 63, 64};
#define NUM_SHAPES ((int)(sizeof k_shapes / sizeof k_shapes[0]))
#define NUM_NS ((int)(sizeof k_ns / sizeof k_ns[0]))

typedef struct fixture {
  int32_t e, h, splits;
  uint16_t *x, *w;        /* host copies: x [64,H], W [E,H] */
  double *ref, *absref;   /* oracle logits [64,E] and sum_h |x W| [64,E] */
  CUdeviceptr dx, dw, dp; /* dp: splits * 64 * E floats + guard */
  size_t cap;             /* floats in dp */
  float *out, *out2;      /* host buffers of cap floats */
} fixture;

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static float uniform(uint64_t *s) { return (float)((double)(test_rand(s) >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static void fill(uint16_t *v, size_t n, float big, uint64_t *seed) {
  for (size_t i = 0; i < n; ++i) {
    float f = uniform(seed);
    if (test_rand(seed) % 997 == 0) f = (f < 0 ? -big : big) * (0.25f + 0.75f * fabsf(uniform(seed)));
    v[i] = to_bf16(f);
  }
}

static void fixture_init(fixture *f, int32_t e, int32_t h, uint64_t seed) {
  memset(f, 0, sizeof *f);
  f->e = e, f->h = h, f->splits = dsv4_gate_decode_splits(h);
  f->x = malloc(sizeof(uint16_t) * MAX_N * (size_t)h);
  f->w = malloc(sizeof(uint16_t) * (size_t)e * h);
  f->ref = malloc(sizeof(double) * MAX_N * (size_t)e);
  f->absref = malloc(sizeof(double) * MAX_N * (size_t)e);
  assert_non_null(f->x), assert_non_null(f->w), assert_non_null(f->ref), assert_non_null(f->absref);
  fill(f->x, MAX_N * (size_t)h, 320.0f, &seed);
  fill(f->w, (size_t)e * h, 64.0f, &seed);
  oracle_gate_logits(f->x, f->w, MAX_N, h, e, f->ref);
  for (int n = 0; n < MAX_N; ++n)
    for (int i = 0; i < e; ++i) {
      double a = 0.0;
      for (int c = 0; c < h; ++c)
        a += fabs(oracle_bf16_to_double(f->x[(size_t)n * h + c]) * oracle_bf16_to_double(f->w[(size_t)i * h + c]));
      f->absref[(size_t)n * e + i] = a;
    }
  f->cap = dsv4_gate_decode_workspace_floats(h, e, MAX_N) + GUARD_FLOATS;
  f->out = malloc(sizeof(float) * f->cap);
  f->out2 = malloc(sizeof(float) * f->cap);
  assert_non_null(f->out), assert_non_null(f->out2);
  GPU_CHECK(cuMemAlloc(&f->dx, sizeof(uint16_t) * MAX_N * (size_t)h));
  GPU_CHECK(cuMemAlloc(&f->dw, sizeof(uint16_t) * (size_t)e * h));
  GPU_CHECK(cuMemAlloc(&f->dp, sizeof(float) * f->cap));
  GPU_CHECK(cuMemcpyHtoD(f->dx, f->x, sizeof(uint16_t) * MAX_N * (size_t)h));
  GPU_CHECK(cuMemcpyHtoD(f->dw, f->w, sizeof(uint16_t) * (size_t)e * h));
  GPU_CHECK(cuCtxSynchronize());   /* the copies are done before g_stream (non-blocking) reads them */
}

static void fixture_free(fixture *f) {
  GPU_CHECK(cuMemFree(f->dx));
  GPU_CHECK(cuMemFree(f->dw));
  GPU_CHECK(cuMemFree(f->dp));
  free(f->x), free(f->w), free(f->ref), free(f->absref), free(f->out), free(f->out2);
}

/* Poison the workspace, run tokens [row0, row0 + n) of x, download the whole workspace into out. */
static void run(fixture *f, int row0, int n, int warps, bool pdl, float *out) {
  GPU_CHECK(cuMemsetD8Async(f->dp, 0xFF, sizeof(float) * f->cap, g_stream));
  const uint16_t *x = (const uint16_t *)(uintptr_t)f->dx + (size_t)row0 * f->h;
  DSV4_CHECK_OK(dsv4_gate_decode_check("test", g_ctx, x, n, (const void *)(uintptr_t)f->dw, f->e, f->h,
                                  (float *)(uintptr_t)f->dp));
  if (warps == 0 && !pdl)
    DSV4_CHECK_OK(dsv4_gate_decode_enqueue(g_ctx, g_stream, x, n, (const void *)(uintptr_t)f->dw, f->e, f->h,
                                      (float *)(uintptr_t)f->dp));
  else
    DSV4_CHECK_OK(dsv4_gate_decode_enqueue_ex(g_ctx, g_stream, x, n, (const void *)(uintptr_t)f->dw, f->e, f->h,
                                         (float *)(uintptr_t)f->dp, warps, pdl));
  GPU_CHECK(cuStreamSynchronize(g_stream));
  GPU_CHECK(cuMemcpyDtoH(out, f->dp, sizeof(float) * f->cap));
}

static uint32_t bits(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}

/* Every slab element written (finite: the inputs are finite, the poison is NaN); nothing past the slabs. */
static void check_written(const fixture *f, int n, const float *out) {
  const size_t used = (size_t)f->splits * n * f->e;
  for (size_t i = 0; i < used; ++i)
    if (!isfinite(out[i]))
      fail_msg("E=%d H=%d N=%d: slab %zu token %zu expert %zu not written (bits %08x)", f->e, f->h, n,
               i / ((size_t)n * f->e), i / f->e % n, i % f->e, bits(out[i]));
  for (size_t i = used; i < f->cap; ++i)
    if (bits(out[i]) != POISON)
      fail_msg("E=%d H=%d N=%d: element %zu past the %zu slab floats was written", f->e, f->h, n, i, used);
}

/* Slabs summed in FP32 in split order vs the oracle, per token row. Returns the worst row error. */
static double check_oracle(const fixture *f, int row0, int n, const float *out) {
  double worst = 0.0;
  for (int t = 0; t < n; ++t) {
    double num = 0.0, den = 0.0, den_abs = 0.0;
    for (int i = 0; i < f->e; ++i) {
      float v = out[(size_t)t * f->e + i];
      for (int s = 1; s < f->splits; ++s) v += out[((size_t)s * n + t) * f->e + i];
      const double r = f->ref[(size_t)(row0 + t) * f->e + i], a = f->absref[(size_t)(row0 + t) * f->e + i];
      num += ((double)v - r) * ((double)v - r);
      den += r * r;
      den_abs += a * a;
    }
    double d = sqrt(den), floor = 1e-3 * sqrt(den_abs);
    const double err = sqrt(num) / (d > floor ? d : floor);
    if (!(err < 1e-5))
      fail_msg("E=%d H=%d N=%d: token %d: relative error %.3g vs the FP64 oracle", f->e, f->h, n, row0 + t, err);
    if (err > worst) worst = err;
  }
  return worst;
}

/* Token t's partials in `a` (batch of na tokens, at position pa) vs `b` (nb tokens, position pb): bitwise. */
static void expect_same_token(const fixture *f, const float *a, int na, int pa, const float *b, int nb, int pb,
                              const char *what) {
  for (int s = 0; s < f->splits; ++s)
    for (int i = 0; i < f->e; ++i) {
      const uint32_t x = bits(a[((size_t)s * na + pa) * f->e + i]), y = bits(b[((size_t)s * nb + pb) * f->e + i]);
      if (x != y)
        fail_msg("E=%d H=%d: %s: split %d expert %d: %08x (N=%d, position %d) vs %08x (N=%d, position %d)", f->e,
                 f->h, what, s, i, x, na, pa, y, nb, pb);
    }
}

static void test_matches_oracle_and_writes_every_slab(void **state) {
  (void)state;
  for (int si = 0; si < NUM_SHAPES; ++si) {
    fixture f;
    fixture_init(&f, k_shapes[si][0], k_shapes[si][1], 0x9E3779B97F4A7C15ull + (uint64_t)si);
    double worst = 0.0;
    for (int ni = 0; ni < NUM_NS; ++ni) {
      const int n = k_ns[ni];
      run(&f, 0, n, 0, false, f.out);
      check_written(&f, n, f.out);
      const double e = check_oracle(&f, 0, n, f.out);
      if (e > worst) worst = e;
      /* Determinism: a second run is bitwise the same. */
      run(&f, 0, n, 0, false, f.out2);
      check_written(&f, n, f.out2);
      if (memcmp(f.out, f.out2, sizeof(float) * (size_t)f.splits * n * f.e))
        fail_msg("E=%d H=%d N=%d: two runs differ", f.e, f.h, n);
    }
    printf("  E=%-4d H=%-5d %2d splits: worst row error %.2e\n", f.e, f.h, f.splits, worst);
    fixture_free(&f);
  }
}

static void test_batch_invariance(void **state) {
  (void)state;
  for (int si = 0; si < NUM_SHAPES; ++si) {
    fixture f;
    fixture_init(&f, k_shapes[si][0], k_shapes[si][1], 0xD1B54A32D192ED03ull + (uint64_t)si);
    float *full = malloc(sizeof(float) * f.cap);
    assert_non_null(full);
    run(&f, 0, MAX_N, 0, false, full);
    check_written(&f, MAX_N, full);
    /* The first n tokens at every N: the same bits as in the batch of 64. */
    for (int ni = 0; ni < NUM_NS; ++ni) {
      const int n = k_ns[ni];
      run(&f, 0, n, 0, false, f.out);
      check_written(&f, n, f.out);
      for (int t = 0; t < n; ++t) expect_same_token(&f, f.out, n, t, full, MAX_N, t, "first n tokens");
    }
    /* A token alone (N = 1, x at its row) vs at position p of the batch, and a batch of 9 starting at p. */
    static const int positions[] = {0, 5, 13, 37, 55, 63};
    for (size_t i = 0; i < sizeof positions / sizeof positions[0]; ++i) {
      const int p = positions[i];
      run(&f, p, 1, 0, false, f.out);
      check_written(&f, 1, f.out);
      check_oracle(&f, p, 1, f.out);
      expect_same_token(&f, f.out, 1, 0, full, MAX_N, p, "token alone vs in the batch");
      if (p + 9 <= MAX_N) {
        run(&f, p, 9, 0, false, f.out);
        for (int t = 0; t < 9; ++t) expect_same_token(&f, f.out, 9, t, full, MAX_N, p + t, "shifted batch of 9");
      }
    }
    free(full);
    fixture_free(&f);
  }
}

static void test_launch_shape_and_pdl_change_nothing(void **state) {
  (void)state;
  static const int shapes[] = {0, 3, 5}; /* pro, (144, 1024), (3, 24) */
  static const int ns[] = {1, 9, 17, 64};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; ++si) {
    fixture f;
    fixture_init(&f, k_shapes[shapes[si]][0], k_shapes[shapes[si]][1], 0xA0761D6478BD642Full + si);
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ++ni) {
      const int n = ns[ni];
      const size_t used = (size_t)f.splits * n * f.e;
      run(&f, 0, n, 0, false, f.out);
      check_written(&f, n, f.out);
      for (int warps = 1; warps <= DSV4_GATE_DECODE_MAX_WARPS; ++warps)
        for (int pdl = 0; pdl <= 1; ++pdl) {
          run(&f, 0, n, warps, pdl != 0, f.out2);
          check_written(&f, n, f.out2);
          if (memcmp(f.out, f.out2, sizeof(float) * used))
            fail_msg("E=%d H=%d N=%d: %d warps/block%s differs from the default shape", f.e, f.h, n, warps,
                     pdl ? " with PDL" : "");
        }
    }
    fixture_free(&f);
  }
}

static void test_zero_tokens_is_a_no_op(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, 3, 24, 7);
  GPU_CHECK(cuMemsetD8Async(f.dp, 0xFF, sizeof(float) * f.cap, g_stream));
  DSV4_CHECK_OK(dsv4_gate_decode_check("test", g_ctx, NULL, 0, (const void *)(uintptr_t)f.dw, f.e, f.h, NULL));
  DSV4_CHECK_OK(dsv4_gate_decode_enqueue(g_ctx, g_stream, NULL, 0, (const void *)(uintptr_t)f.dw, f.e, f.h, NULL));
  GPU_CHECK(cuStreamSynchronize(g_stream));
  GPU_CHECK(cuMemcpyDtoH(f.out, f.dp, sizeof(float) * f.cap));
  for (size_t i = 0; i < f.cap; ++i) assert_int_equal(bits(f.out[i]), POISON);
  fixture_free(&f);
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx);
  g_drv = g_ctx->drv;
  bool pushed = false;
  if (dsv4_ctx_enter(g_ctx, &pushed) != DSV4_OK || g_drv->cuStreamCreate(&g_stream, CU_STREAM_NON_BLOCKING)) {
    fprintf(stderr, "cannot make the context current / create a stream: %s\n", dsv4_last_error());
    return 1;
  }
  printf("device: %s (%s, %d SMs)\n", g_ctx->name, g_ctx->arch, g_ctx->sm_count);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zero_tokens_is_a_no_op),
      cmocka_unit_test(test_matches_oracle_and_writes_every_slab),
      cmocka_unit_test(test_batch_invariance),
      cmocka_unit_test(test_launch_shape_and_pdl_change_nothing),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  g_drv->cuStreamDestroy(g_stream);
  dsv4_ctx_leave(g_ctx, pushed);
  dsv4_context_destroy(g_ctx);
  return rc;
}
