/* The routing activation s = sqrt(softplus(z)) of kernel_src/activation_math.cuh, proven on the CPU.
 *
 * The kernels' function is built from IEEE-exact operations only (fma, mul, add, max, integer operations on
 * the bits, and a correctly rounded sqrt), so this C build of the same source gives the same bits as the
 * GPU: running it here over every float we like proves the kernels' error. (This file is compiled with
 * -ffp-contract=off and needs FLT_EVAL_METHOD == 0, so C does not fuse or widen anything either.)
 *
 * Checked against the FP64 oracle (oracle_score):
 *  - every 4096th float bit pattern over the whole range, and every 4093rd (prime, so all low bits vary),
 *    every 256th pattern with |z| <= 100, and a list of edge cases;
 *  - relative error < 2^-22 wherever s is a normal float (the bound; the largest error found is printed);
 *    within one subnormal step plus 2^-22 relative where s is subnormal; exact 0 for z <= -208 and -inf;
 *    +inf for +inf; NaN for NaN; never negative, never NaN for a number;
 *  - the main path only ever feeds the sqrt values in [2^-101, FLT_MAX], the range on which the GPU's
 *    sqrt sequence is IEEE sqrt (dsv4_am_sqrt_in_range).
 * DSV4_TEST_EXHAUSTIVE=1 checks all 2^32 floats instead of the sweeps (a few minutes; the bound has been
 * checked that way: largest error 1.68e-7 = 2.81 * 2^-24, at z = -3.869348).
 *
 * With a GPU, the same sweep runs through the kernels' two forms of the function (the warp path's per-lane
 * form and the decode path's scalar form, kernel dsv4::activation_values in activation_topk.cu) and must
 * match this build bit for bit. Without one that part is skipped and the CPU proof still runs. */
#include <float.h>
#include <math.h>

#include "activation_math.cuh"
#include "gpu/gpu_util.h"
#include "jit.h"
#include "oracle.h"

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "the emulation needs FLT_EVAL_METHOD == 0 (float arithmetic in float)"
#endif

#define REL_BOUND 0x1.0p-22

static float from_bits(uint32_t u) { return dsv4_am_float(u); }
static uint32_t to_bits(float x) { return dsv4_am_bits(x); }

typedef struct sweep_stats {
  double max_rel;     /* over normal results */
  float worst_z;
  int64_t checked, failures;
} sweep_stats;

/* Checks s(z) against the oracle; returns 1 if wrong (and prints the first few). */
static int check_one(float z, sweep_stats *st) {
  const float s = dsv4_am_sqrt_softplus(z);
  const double ref = oracle_score((double)z);
  char why[160] = "";
  if (isnan(z)) {
    if (!isnan(s)) snprintf(why, sizeof why, "NaN in, %a out", s);
  } else if (isnan(s) || s < 0.0f || signbit(s)) {
    snprintf(why, sizeof why, "%a out of a number", s);
  } else if (isinf(ref)) {
    if (!isinf(s)) snprintf(why, sizeof why, "want +inf, got %a", s);
  } else if (isinf(s)) {
    snprintf(why, sizeof why, "got +inf, want %.9g", ref);
  } else if (ref >= FLT_MIN) {
    const double rel = fabs((double)s - ref) / ref;
    if (rel > st->max_rel) st->max_rel = rel, st->worst_z = z;
    if (!(rel < REL_BOUND)) snprintf(why, sizeof why, "%a, want %.17g: relative error %.3g", s, ref, rel);
  } else if (!(fabs((double)s - ref) <= 0x1.0p-149 + REL_BOUND * ref)) {
    snprintf(why, sizeof why, "subnormal %a, want %.17g", s, ref);
  }
  if (!isnan(z) && z <= -208.0f && s != 0.0f) snprintf(why, sizeof why, "%a, want exactly 0", s);
  /* The main path's sqrt input must lie where the GPU sequence is IEEE sqrt. */
  if (!why[0] && dsv4_am_is_main(z)) {
    const float sp = dsv4_am_softplus_main_k(z, DSV4_AM_LOG2E, DSV4_AM_EXP_C4, DSV4_AM_LOG_C7);
    if (!(sp >= DSV4_AM_SQRT_MIN && sp <= FLT_MAX)) snprintf(why, sizeof why, "sqrt input %a out of range", sp);
  }
  ++st->checked;
  if (!why[0]) return 0;
  if (st->failures++ < 10) fprintf(stderr, "z = %a (%.9g): %s\n", z, z, why);
  return 1;
}

static const float k_edges[] = {
    0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, 0x1p-149f, -0x1p-149f, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX,
    INFINITY, -INFINITY, 70.0f, -70.0f, 80.0f, -80.0f, 88.7f, -88.7f, -87.33655f, -100.0f, -140.0f, -170.0f,
    -174.673f, -174.68f, -200.0f, -206.0f, -207.0f, -208.0f, -220.0f, -750.0f, -800.0f, -1e4f, 1e30f, 3e38f,
    17.0f, -17.0f, 16.635532f, 0.34657359f, -0.34657359f, 0.6931472f, -0.6931472f, 1.0397208f, -1.0397208f,
    3.8693483f, -3.8693483f, 0x1.9c7c02p-11f, -0x1.ef46cep+1f, 1e-3f, -1e-3f, 1e-7f, -1e-7f, 20.0f, -20.0f,
    40.0f, -40.0f, 69.999992f, -69.999992f};

static void test_edge_cases(void **state) {
  (void)state;
  sweep_stats st = {0};
  for (size_t i = 0; i < sizeof k_edges / sizeof k_edges[0]; ++i) {
    check_one(k_edges[i], &st);
    check_one(nextafterf(k_edges[i], INFINITY), &st);
    check_one(nextafterf(k_edges[i], -INFINITY), &st);
  }
  /* NaN of every kind: quiet, signalling, negative, with payload. */
  static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0xffffffffu,
                                  0x7fa5a5a5u};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; ++i) check_one(from_bits(nans[i]), &st);
  assert_int_equal(st.failures, 0);
  /* The special values exactly. */
  assert_true(isinf(dsv4_am_sqrt_softplus(INFINITY)) && dsv4_am_sqrt_softplus(INFINITY) > 0);
  assert_true(to_bits(dsv4_am_sqrt_softplus(-INFINITY)) == 0u);   /* +0 */
  assert_true(isnan(dsv4_am_sqrt_softplus(NAN)));
  assert_true(dsv4_am_sqrt_softplus(-FLT_MAX) == 0.0f);
  /* s(0) = sqrt(ln 2), correctly rounded here. */
  assert_true(dsv4_am_sqrt_softplus(0.0f) == (float)sqrt(log(2.0)));
  assert_true(dsv4_am_sqrt_softplus(-0.0f) == dsv4_am_sqrt_softplus(0.0f));
}

/* The CPU really does IEEE fma (the emulation's premise): 1 + 2^-23 squared minus its rounded square. */
static void test_fma_is_exact(void **state) {
  (void)state;
  volatile float a = 1.0f + 0x1p-23f;
  const float p = a * a;   /* 1 + 2^-22 (the 2^-46 rounded off) */
  assert_true(fmaf(a, a, -p) == 0x1p-46f);
}

static void sweep(uint64_t start, uint64_t stop, uint64_t step, int only_small, sweep_stats *st) {
  for (uint64_t b = start; b < stop; b += step) {
    const float z = from_bits((uint32_t)b);
    if (only_small && !(fabsf(z) <= 100.0f)) continue;
    check_one(z, st);
  }
}

static void test_sweeps(void **state) {
  (void)state;
  sweep_stats st = {0};
  const char *ex = getenv("DSV4_TEST_EXHAUSTIVE");
  if (ex && ex[0] == '1') {
    sweep(0, (uint64_t)1 << 32, 1, 0, &st);
  } else {
    sweep(0, (uint64_t)1 << 32, 4096, 0, &st);
    sweep(1, (uint64_t)1 << 32, 4093, 0, &st);
    sweep(7, (uint64_t)1 << 32, 256, 1, &st);
  }
  printf("  %lld values: largest relative error %.4g (%.3f * 2^-24) at z = %a (%.9g); bound 2^-22 = %.4g\n",
         (long long)st.checked, st.max_rel, st.max_rel / 0x1p-24, st.worst_z, st.worst_z, REL_BOUND);
  assert_int_equal(st.failures, 0);
  assert_true(st.checked > 3000000);
  assert_true(st.max_rel > 0.0 && st.max_rel < REL_BOUND);
}

/* ---------------- the GPU's bits (skipped without a device) ---------------- */
static void test_gpu_matches_bit_for_bit(void **state) {
  (void)state;
  dsv4_context *ctx = NULL;
  const dsv4_status cs = dsv4_context_create(0, &ctx);
  if (cs == DSV4_ERR_NO_DRIVER || cs == DSV4_ERR_NO_DEVICE) {
    printf("  no GPU (%s): the bit-for-bit GPU comparison is skipped\n", dsv4_status_string(cs));
    return;
  }
  assert_int_equal(cs, DSV4_OK);
  bool outer_pushed = false;  /* the test's own allocations and copies need the context current */
  assert_int_equal(dsv4_ctx_enter(ctx, &outer_pushed), DSV4_OK);
  /* The sweeps' values and the edge cases, in an order that mixes rare and common ones in a group. */
  size_t n = 0, cap = (size_t)1 << 23;
  float *z = malloc(cap * sizeof *z);
  assert_non_null(z);
  for (uint64_t b = 0; b < ((uint64_t)1 << 32) && n < cap; b += 4093) z[n++] = from_bits((uint32_t)b);
  for (uint64_t b = 11; b < ((uint64_t)1 << 32) && n < cap; b += 509) {
    const float x = from_bits((uint32_t)b);
    if (fabsf(x) <= 100.0f) z[n++] = x;
  }
  for (size_t i = 0; i < sizeof k_edges / sizeof k_edges[0] && n + 3 <= cap; ++i) {
    z[n++] = k_edges[i];
    z[n++] = nextafterf(k_edges[i], INFINITY);
    z[n++] = nextafterf(k_edges[i], -INFINITY);
  }
  const int64_t nn = (int64_t)n;
  CUdeviceptr dz = gpu_alloc(4 * n), dl = gpu_alloc(4 * n), ds = gpu_alloc(4 * n);
  gpu_upload(dz, z, 4 * n);
  gpu_poison(dl, 4 * n);
  gpu_poison(ds, 4 * n);
  dsv4_kernel_spec spec = {"activation_topk.cu", "dsv4::activation_values<4>", "activation_values-g4"};
  CUfunction fn = NULL;
  dsv4_status s = dsv4_ctx_function(ctx, &spec, &fn);
  if (s != DSV4_OK) fprintf(stderr, "activation_values: %s\n", dsv4_last_error());
  assert_int_equal(s, DSV4_OK);
  bool pushed = false;
  assert_int_equal(dsv4_ctx_enter(ctx, &pushed), DSV4_OK);
  const float *pz = (const float *)dz;
  float *pl = (float *)dl, *ps = (float *)ds;
  void *args[] = {&pz, (void *)&nn, &pl, &ps};
  const unsigned grid = (unsigned)((n + 4 * 128 - 1) / (4 * 128));
  s = dsv4_launch(ctx, fn, grid, 128, 0, NULL, args, "launching activation_values");
  dsv4_ctx_leave(ctx, pushed);
  assert_int_equal(s, DSV4_OK);
  gpu_sync();
  float *sl = malloc(4 * n), *ss = malloc(4 * n);
  assert_non_null(sl);
  assert_non_null(ss);
  gpu_download(sl, dl, 4 * n);
  gpu_download(ss, ds, 4 * n);
  int64_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const float want = dsv4_am_sqrt_softplus(z[i]);
    const float got[2] = {sl[i], ss[i]};
    for (int f = 0; f < 2; ++f) {
      const int same = isnan(want) ? isnan(got[f]) : to_bits(got[f]) == to_bits(want);
      if (!same && bad++ < 10)
        fprintf(stderr, "GPU %s form: z = %a: got %a (0x%08x), CPU %a (0x%08x)\n", f ? "scalar" : "lane", z[i],
                got[f], to_bits(got[f]), want, to_bits(want));
    }
  }
  printf("  GPU: %zu values, both forms, %lld differ from the CPU\n", n, (long long)bad);
  assert_int_equal(bad, 0);
  gpu_free(dz), gpu_free(dl), gpu_free(ds);
  free(z), free(sl), free(ss);
  dsv4_ctx_leave(ctx, outer_pushed);
  dsv4_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fma_is_exact),
      cmocka_unit_test(test_edge_cases),
      cmocka_unit_test(test_sweeps),
      cmocka_unit_test(test_gpu_matches_bit_for_bit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
