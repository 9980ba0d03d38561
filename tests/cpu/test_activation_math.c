/* The routing activation s = sqrt(softplus(z)) of kernel_src/activation_math.cuh, on the CPU.
 *
 * The kernels' main path (finite z >= -70) takes 2^f from MUFU.EX2 (ex2.approx.ftz.f32) and the square
 * root from MUFU.SQRT (sqrt.approx.ftz.f32), whose bits no CPU reproduces: its error bound is proven on the
 * GPU, for every float, by tests/gpu/test_gpu_activation_math.c. What this file checks is what the CPU
 * can check (it is compiled with -ffp-contract=off and needs FLT_EVAL_METHOD == 0, so that C does not fuse
 * or widen anything):
 *  - the rare path (z < -70, +-inf, NaN) is built from exact IEEE operations only, so this C build gives
 *    the GPU's bits: its error is proven here (every 64th float below -70 and a list of edge cases; every
 *    one with DSV4_TEST_EXHAUSTIVE=1): relative error < 2^-22 where s is a normal float, within one
 *    subnormal step plus that where s is subnormal, exactly 0 for z <= -208 and -inf, NaN for NaN, +inf
 *    for +inf;
 *  - the main path's error budget: with the two MUFU instructions modelled as correctly rounded
 *    (DSV4_AM_EX2 / DSV4_AM_SQRT_APPROX) and then pushed 2 ulp (ex2: CUDA documents exp2f, which is
 *    ex2.approx.f32, at 2 ulp) and 1 ulp (sqrt: sqrtf without -prec-sqrt, documented at 1 ulp) the wrong
 *    way, every swept z stays below the bound the GPU test asserts, 1.75 * 2^-22;
 *  - the main path's domain: 2^f is only asked for |f| <= 0.5 + 2^-19, the square root only of normal
 *    floats in [2^-101, FLT_MAX], as activation_math.cuh says;
 *  - the edge cases of SPEC section 2 (NaN -> NaN, +inf -> +inf, -inf -> +0, s never negative).
 * Sweeps: every 4096th and every 4093rd float bit pattern (prime, so all low bits vary) and every 256th
 * with |z| <= 100; DSV4_TEST_EXHAUSTIVE=1 runs all 2^32 instead (about half an hour on one core; done:
 * rare path 2.74 * 2^-24 at most; main path 2.18 * 2^-24 with the MUFU models correctly rounded, 6.13 *
 * 2^-24 pushed, against the bound's 7 * 2^-24). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The two MUFU instructions of the main path, modelled: correctly rounded, then pushed g_push_* ulps. */
static int g_push_ex2, g_push_sqrt;
static double g_max_ex2_arg;                  /* largest |f| handed to 2^f */
static float g_min_sqrt_arg = INFINITY, g_max_sqrt_arg;
static float push_ulps(float y, int n) {
  for (; n > 0; --n) y = nextafterf(y, INFINITY);
  for (; n < 0; ++n) y = nextafterf(y, -INFINITY);
  return y;
}
static float model_ex2(float x) {
  if (fabs((double)x) > g_max_ex2_arg) g_max_ex2_arg = fabs((double)x);
  return push_ulps((float)exp2((double)x), g_push_ex2);
}
static float model_sqrt(float x) {
  if (x < g_min_sqrt_arg) g_min_sqrt_arg = x;
  if (x > g_max_sqrt_arg) g_max_sqrt_arg = x;
  return push_ulps(sqrtf(x), g_push_sqrt);
}
#define DSV4_AM_EX2(x) model_ex2(x)
#define DSV4_AM_SQRT_APPROX(x) model_sqrt(x)

#include "activation_math.cuh"
#include "test_util.h"
#include "oracle.h"

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "the emulation needs FLT_EVAL_METHOD == 0 (float arithmetic in float)"
#endif

#define RARE_BOUND 0x1.0p-22   /* the rare path: exact IEEE operations, the GPU's bits */
#define MAIN_BOUND 0x1.cp-22   /* 1.75 * 2^-22: the bound tests/gpu/test_gpu_activation_math.c proves */

static float from_bits(uint32_t u) { return dsv4_am_float(u); }
static uint32_t to_bits(float x) { return dsv4_am_bits(x); }

typedef struct sweep_stats {
  double max_rel;     /* over normal results */
  float worst_z;
  int64_t checked, failures;
} sweep_stats;

/* Checks s(z) against the oracle with relative bound `bound`; returns 1 if wrong (and prints the first
 * few). */
static int check_one(float z, double bound, sweep_stats *st) {
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
    if (!(rel < bound)) snprintf(why, sizeof why, "%a, want %.17g: relative error %.3g", s, ref, rel);
  } else if (!(fabs((double)s - ref) <= 0x1.0p-149 + bound * ref)) {
    snprintf(why, sizeof why, "subnormal %a, want %.17g", s, ref);
  }
  if (!isnan(z) && z <= -208.0f && s != 0.0f) snprintf(why, sizeof why, "%a, want exactly 0", s);
  ++st->checked;
  if (!why[0]) return 0;
  if (st->failures++ < 10)
    fprintf(stderr, "z = %a (%.9g), ex2 %+d ulp, sqrt %+d ulp: %s\n", z, z, g_push_ex2, g_push_sqrt, why);
  return 1;
}

static const float k_edges[] = {
    0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, 0x1p-149f, -0x1p-149f, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX,
    INFINITY, -INFINITY, 70.0f, -70.0f, 80.0f, -80.0f, 88.7f, -88.7f, -87.33655f, -100.0f, -140.0f, -170.0f,
    -174.673f, -174.68f, -200.0f, -206.0f, -207.0f, -208.0f, -220.0f, -750.0f, -800.0f, -1e4f, 1e30f, 3e38f,
    17.0f, -17.0f, 16.635532f, 0.34657359f, -0.34657359f, 0.6931472f, -0.6931472f, 1.0397208f, -1.0397208f,
    3.8693483f, -3.8693483f, 0x1.9c7c02p-11f, -0x1.ef46cep+1f, 1e-3f, -1e-3f, 1e-7f, -1e-7f, 20.0f, -20.0f,
    40.0f, -40.0f, 69.999992f, -69.999992f, -4.13759327f, -9.70300007f};

static const int k_pushes[3][2] = {{0, 0}, {2, 1}, {-2, -1}};   /* ex2, sqrt: exact, both up, both down */

static void test_edge_cases(void **state) {
  (void)state;
  for (int p = 0; p < 3; ++p) {
    g_push_ex2 = k_pushes[p][0], g_push_sqrt = k_pushes[p][1];
    sweep_stats st = {0};
    for (size_t i = 0; i < sizeof k_edges / sizeof k_edges[0]; ++i) {
      const float z = k_edges[i];
      const double bound = dsv4_am_is_main(z) ? MAIN_BOUND : RARE_BOUND;
      check_one(z, bound, &st);
      check_one(nextafterf(z, INFINITY), dsv4_am_is_main(nextafterf(z, INFINITY)) ? MAIN_BOUND : RARE_BOUND, &st);
      check_one(nextafterf(z, -INFINITY), dsv4_am_is_main(nextafterf(z, -INFINITY)) ? MAIN_BOUND : RARE_BOUND,
                &st);
    }
    /* NaN of every kind: quiet, signalling, negative, with payload. */
    static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
                                    0xffffffffu, 0x7fa5a5a5u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; ++i) check_one(from_bits(nans[i]), RARE_BOUND, &st);
    assert_int_equal(st.failures, 0);
    /* The special values exactly (the rare path: the GPU's bits). */
    assert_true(isinf(dsv4_am_sqrt_softplus(INFINITY)) && dsv4_am_sqrt_softplus(INFINITY) > 0);
    assert_true(to_bits(dsv4_am_sqrt_softplus(-INFINITY)) == 0u);   /* +0 */
    assert_true(isnan(dsv4_am_sqrt_softplus(NAN)));
    assert_true(dsv4_am_sqrt_softplus(-FLT_MAX) == 0.0f);
    assert_true(dsv4_am_sqrt_softplus(-0.0f) == dsv4_am_sqrt_softplus(0.0f));
    assert_true(!dsv4_am_is_main(NAN) && !dsv4_am_is_main(INFINITY) && !dsv4_am_is_main(-INFINITY));
    assert_true(dsv4_am_is_main(-70.0f) && !dsv4_am_is_main(nextafterf(-70.0f, -INFINITY)));
    assert_true(dsv4_am_is_main(FLT_MAX));
  }
  g_push_ex2 = g_push_sqrt = 0;
}

/* The lane form spots the rare inputs by a = max(-|z|, -70): -70 (DSV4_AM_LOW_A_BITS) for every input off
 * the main path, or NaN (C's fmaxf gives NaN for a signalling NaN; the GPU's max gives -70), and in
 * (-70, -0] for |z| < 70; as signed integers the former bits are >= DSV4_AM_LOW_A_BITS, the latter below. */
static void test_rare_marker(void **state) {
  (void)state;
  assert_true(to_bits(DSV4_AM_LOW_Z) == DSV4_AM_LOW_A_BITS);
  static const uint32_t off[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffffffffu, 0x7f800000u, 0xff800000u,
                                 0xc28c0001u, 0xff7fffffu, 0xff800001u, 0x7fffffffu};
  for (size_t i = 0; i < sizeof off / sizeof off[0]; ++i) {
    const float a = dsv4_am_main_arg(from_bits(off[i]));
    assert_false(dsv4_am_is_main(from_bits(off[i])));
    assert_true(to_bits(a) == DSV4_AM_LOW_A_BITS || isnan(a));
    assert_true((int32_t)to_bits(a) >= (int32_t)DSV4_AM_LOW_A_BITS);
  }
  /* Every NaN a, whatever its sign and payload, is above as a signed integer. */
  assert_true((int32_t)0x7fc00000u >= (int32_t)DSV4_AM_LOW_A_BITS);
  assert_true((int32_t)0xff800001u >= (int32_t)DSV4_AM_LOW_A_BITS);
  for (uint64_t b = 0; b < ((uint64_t)1 << 32); b += 65521) {
    const float z = from_bits((uint32_t)b);
    const int32_t a = (int32_t)to_bits(dsv4_am_main_arg(z));
    if (!dsv4_am_is_main(z)) {
      assert_true(a >= (int32_t)DSV4_AM_LOW_A_BITS);
    } else {
      assert_true(a >= (int32_t)0x80000000u && a <= (int32_t)DSV4_AM_LOW_A_BITS);   /* in [-0, -70] */
      if (fabsf(z) < 70.0f) assert_true(a < (int32_t)DSV4_AM_LOW_A_BITS);
    }
  }
}

/* The CPU really does IEEE fma (the emulation's premise): 1 + 2^-23 squared minus its rounded square. */
static void test_fma_is_exact(void **state) {
  (void)state;
  volatile float a = 1.0f + 0x1p-23f;
  const float p = a * a;   /* 1 + 2^-22 (the 2^-46 rounded off) */
  assert_true(fmaf(a, a, -p) == 0x1p-46f);
}

static int exhaustive(void) {
  const char *ex = getenv("DSV4_TEST_EXHAUSTIVE");
  return ex && ex[0] == '1';
}

/* The rare path, proven: it is the GPU's bits. */
static void test_rare_path(void **state) {
  (void)state;
  sweep_stats st = {0};
  const uint64_t step = exhaustive() ? 1 : 64;
  for (uint64_t b = 0; b < ((uint64_t)1 << 32); b += step) {
    const float z = from_bits((uint32_t)b);
    if (!dsv4_am_is_main(z)) check_one(z, RARE_BOUND, &st);
  }
  printf("  rare path, %lld values: largest relative error %.4g (%.3f * 2^-24) at z = %a (%.9g); bound 2^-22\n",
         (long long)st.checked, st.max_rel, st.max_rel / 0x1p-24, st.worst_z, st.worst_z);
  assert_int_equal(st.failures, 0);
  assert_true(st.checked > (exhaustive() ? 1000000000 : 15000000));
  assert_true(st.max_rel > 0.0 && st.max_rel < RARE_BOUND);
}

static void sweep_main(uint64_t start, uint64_t stop, uint64_t step, int only_small, sweep_stats *st) {
  for (uint64_t b = start; b < stop; b += step) {
    const float z = from_bits((uint32_t)b);
    if (!dsv4_am_is_main(z) || (only_small && !(fabsf(z) <= 100.0f))) continue;
    check_one(z, MAIN_BOUND, st);
  }
}

/* The main path's error budget with the MUFU instructions modelled, and its domain. */
static void test_main_path_budget(void **state) {
  (void)state;
  for (int p = 0; p < 3; ++p) {
    g_push_ex2 = k_pushes[p][0], g_push_sqrt = k_pushes[p][1];
    g_max_ex2_arg = 0.0, g_min_sqrt_arg = INFINITY, g_max_sqrt_arg = 0.0f;
    sweep_stats st = {0};
    if (exhaustive()) {
      sweep_main(0, (uint64_t)1 << 32, 1, 0, &st);
    } else {
      sweep_main(0, (uint64_t)1 << 32, 4096, 0, &st);
      sweep_main(1, (uint64_t)1 << 32, 4093, 0, &st);
      sweep_main(7, (uint64_t)1 << 32, 256, 1, &st);
    }
    printf("  main path, 2^f %+d ulp, sqrt %+d ulp, %lld values: largest relative error %.4g (%.3f * 2^-24) at "
           "z = %a (%.9g); bound 1.75 * 2^-22 = %.4g\n", g_push_ex2, g_push_sqrt, (long long)st.checked,
           st.max_rel, st.max_rel / 0x1p-24, st.worst_z, st.worst_z, MAIN_BOUND);
    assert_int_equal(st.failures, 0);
    assert_true(st.checked > 2000000);
    assert_true(st.max_rel > 0.0 && st.max_rel < MAIN_BOUND);
    /* The domain the MUFU instructions are used on. */
    assert_true(g_max_ex2_arg <= 0.5 + 0x1p-19);
    assert_true(g_min_sqrt_arg >= DSV4_AM_SQRT_MIN && g_max_sqrt_arg <= FLT_MAX);
  }
  g_push_ex2 = g_push_sqrt = 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fma_is_exact),
      cmocka_unit_test(test_edge_cases),
      cmocka_unit_test(test_rare_marker),
      cmocka_unit_test(test_rare_path),
      cmocka_unit_test(test_main_path_budget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
