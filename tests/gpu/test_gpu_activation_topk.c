/* GPU: dsv4_activation_topk and its split-slab / PDL form (dsv4_activation_topk_enqueue) against the FP64
 * oracle of SPEC section 2.
 *
 * Tolerances (the kernel is FP32, the oracle FP64):
 *  - ids: exact, except that two experts whose FP64 selection scores differ (not equal) by at most 1e-6 of
 *    the magnitude of their terms (|s| + |bias|) may come in either order, or either may be the k-th pick.
 *    Checked pairwise: no selected expert may rank after a later-listed one, and no unselected expert may
 *    rank before a selected one, by more than such a near-tie. Exact ties (equal FP64 scores: equal logits
 *    and bias) must follow the lower-index-first rule exactly. ids are distinct and in [0, E).
 *  - weights: within 1e-5 relative of the oracle's weights for the ids the kernel chose, plus FLT_MIN
 *    absolute (a weight below FP32's normal range, e.g. 1e-45 next to an s of 1e19, cannot be an FP32
 *    output at full precision); never NaN or inf.
 * Logits stay where FP32 can represent sqrt(softplus) at full precision (z >= -170) or where both give 0
 * exactly (z <= -750, -inf); between those FP32 underflows where FP64 does not (a limit of FP32, not a
 * bug). */
#include <float.h>
#include <math.h>

#include "gpu_util.h"
#include "oracle.h"
#include "ops/ops.h"

static dsv4_context *g_ctx;

enum { GEN_NORMAL, GEN_TIES, GEN_SPECIAL, GEN_HUGE_TINY, GEN_ZERO_SUM, GEN_EQUAL, GEN_NAN_NEG, GEN_INF, GEN_COUNT };
static const char *const k_gen_names[] = {"normal", "ties", "nan/inf mix", "huge/tiny", "selected sum 0",
                                          "all equal", "nan/-inf/-800", "+inf share"};

static double uniform(uint64_t *s) { return (double)(test_rand(s) >> 11) / 9007199254740992.0; }
static float normal(uint64_t *s, double sigma) {
  double u1 = uniform(s), u2 = uniform(s);
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sigma * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static float gen_logit(int mode, uint64_t *s) {
  switch (mode) {
    case GEN_NORMAL: return normal(s, 3.0);
    case GEN_TIES: return (float)(int)(test_rand(s) % 4) - 1.0f;
    case GEN_SPECIAL: {
      uint64_t r = test_rand(s) % 12;
      return r == 0 ? NAN : r == 1 ? INFINITY : r == 2 ? -INFINITY : normal(s, 3.0);
    }
    case GEN_HUGE_TINY: {
      switch (test_rand(s) % 7) {
        case 0: return 100.0f + (float)(70.0 * uniform(s));
        case 1: return -100.0f - (float)(70.0 * uniform(s));
        case 2: return normal(s, 1e-4);
        case 3: return 1e30f;
        case 4: return -1e4f;
        case 5: return 3.0e38f;
        default: return -FLT_MAX;
      }
    }
    case GEN_ZERO_SUM: return test_rand(s) % 3 ? -INFINITY : -1000.0f;
    case GEN_EQUAL: return 0.5f;
    case GEN_NAN_NEG: {
      uint64_t r = test_rand(s) % 3;
      return r == 0 ? NAN : r == 1 ? -INFINITY : -800.0f;
    }
    default: return test_rand(s) % 3 ? normal(s, 2.0) : INFINITY;
  }
}

/* ---------------- the checker ---------------- */
typedef struct token_ref {
  const float *z;   /* [E] the logits the kernel saw (FP32 sum of the slabs in split order) */
  const float *bias;
  int32_t E, k;
  double scale;
  double *s, *sel, *sk, *rw;
  char *taken;
} token_ref;

static double mag(const token_ref *r, int32_t e) { return fabs(r->s[e]) + (r->bias ? fabs((double)r->bias[e]) : 0.0); }

/* x ranks before y by more than a near-tie. */
static int sig_before(const token_ref *r, int32_t x, int32_t y) {
  const double a = r->sel[x], b = r->sel[y];
  if (!oracle_ranks_before(a, x, b, y)) return 0;
  if (a == b || isnan(a) || isnan(b) || isinf(a) || isinf(b)) return 1;
  const double m = fmax(mag(r, x), mag(r, y));
  return !(fabs(a - b) <= 1e-6 * m);
}

/* Returns 0 if token t's outputs are right; otherwise prints why (the first few times) and returns 1. */
static int check_token(token_ref *r, const float *w, const int32_t *ids, const char *what, int64_t t, int64_t *shown) {
  const int32_t E = r->E, k = r->k;
  for (int32_t e = 0; e < E; ++e) {
    r->s[e] = oracle_score((double)r->z[e]);
    r->sel[e] = r->s[e] + (r->bias ? (double)r->bias[e] : 0.0);
    r->taken[e] = 0;
  }
  char why[256] = "";
  for (int32_t j = 0; j < k && !why[0]; ++j) {
    if (ids[j] < 0 || ids[j] >= E) {
      snprintf(why, sizeof why, "slot %d: id %d outside [0,%d)", j, ids[j], E);
      break;
    }
    if (r->taken[ids[j]]) snprintf(why, sizeof why, "slot %d: id %d repeated", j, ids[j]);
    r->taken[ids[j]] = 1;
    for (int32_t q = 0; q < j && !why[0]; ++q)
      if (sig_before(r, ids[j], ids[q]))
        snprintf(why, sizeof why, "order: id %d (sel %.9g) at slot %d ranks before id %d (sel %.9g) at slot %d",
                 ids[j], r->sel[ids[j]], j, ids[q], r->sel[ids[q]], q);
  }
  for (int32_t e = 0; e < E && !why[0]; ++e) {
    if (r->taken[e]) continue;
    for (int32_t j = 0; j < k && !why[0]; ++j)
      if (sig_before(r, e, ids[j]))
        snprintf(why, sizeof why, "unselected id %d (sel %.9g) ranks before selected id %d (sel %.9g, slot %d)", e,
                 r->sel[e], ids[j], r->sel[ids[j]], j);
  }
  if (!why[0]) {
    for (int32_t j = 0; j < k; ++j) r->sk[j] = r->s[ids[j]];
    oracle_weights(r->sk, k, r->scale, r->rw);
    for (int32_t j = 0; j < k && !why[0]; ++j)
      if (!isfinite(w[j]) || !(fabs((double)w[j] - r->rw[j]) <= 1e-5 * fabs(r->rw[j]) + FLT_MIN))
        snprintf(why, sizeof why, "slot %d (id %d, s %.9g): weight %.9g, want %.9g", j, ids[j], r->sk[j], w[j], r->rw[j]);
  }
  if (!why[0]) return 0;
  if ((*shown)++ < 5) {
    int32_t ref[16];
    double rw[16];
    oracle_route_logits(r->z, 1, E, r->bias, k, r->scale, rw, ref, NULL);
    fprintf(stderr, "%s: token %lld: %s\n  got ids", what, (long long)t, why);
    for (int32_t j = 0; j < k; ++j) fprintf(stderr, " %d", ids[j]);
    fprintf(stderr, "\n  oracle  ");
    for (int32_t j = 0; j < k; ++j) fprintf(stderr, " %d", ref[j]);
    fprintf(stderr, "\n");
  }
  return 1;
}

/* ---------------- one call ---------------- */
typedef struct act_case {
  int64_t n;
  int32_t E, k;
  int mode;
  bool use_bias;
  int32_t splits;   /* 1 = the public op (unless pdl) */
  bool pdl;         /* through dsv4_activation_topk_enqueue with PDL */
  int64_t offset;   /* floats added to the logits pointer (1: rows not 16-byte aligned) */
  int64_t sample;   /* check every sample-th token (and the last) */
  uint64_t seed;
} act_case;

static void run_case(act_case c) {
  uint64_t seed = c.seed;
  const int64_t n = c.n, ne = c.n * c.E;
  const int32_t E = c.E, k = c.k, S = c.splits;
  const float scale = 2.5f;
  const int64_t ss = S > 1 ? ne + 4 : 0;   /* slab stride: keeps 16-byte alignment when ne % 4 == 0 */
  const size_t host_elems = (size_t)(S > 1 ? ss * S : ne) + (size_t)c.offset;
  float *part = calloc(host_elems ? host_elems : 1, 4), *z = malloc(4 * (size_t)(ne ? ne : 1));
  float *lg = part + c.offset;
  for (int64_t i = 0; i < ne; ++i) {
    const float x = gen_logit(c.mode, &seed);
    if (S == 1) {
      lg[i] = x;
    } else {
      switch (isfinite(x) && S >= 3 ? test_rand(&seed) % 3 : test_rand(&seed) % 2) {
        case 0: lg[i] = x; break;                                                       /* one slab */
        case 1: for (int32_t s = 0; s < S; ++s) lg[s * ss + i] = x / (float)S; break;   /* spread */
        default:   /* +-1e8 cancel only when added in split order: any other order loses x */
          lg[i] = 1e8f, lg[ss + i] = -1e8f;
          for (int32_t s = 2; s < S; ++s) lg[s * ss + i] = x / (float)(S - 2);
      }
    }
    float acc = lg[i];   /* what the kernel must compute: FP32, split order */
    for (int32_t s = 1; s < S; ++s) acc += lg[s * ss + i];
    z[i] = acc;
  }
  float *bias = malloc(4 * (size_t)E);
  for (int32_t e = 0; e < E; ++e)
    bias[e] = (c.mode == GEN_TIES || c.mode == GEN_EQUAL) ? 0.25f * (float)(test_rand(&seed) % 2)
                                                         : (float)(0.2 * uniform(&seed) - 0.1);
  const size_t out = (size_t)n * k, pad = 16;
  CUdeviceptr d_lg = gpu_alloc(4 * host_elems), d_b = gpu_alloc(4 * (size_t)E);
  CUdeviceptr d_w = gpu_alloc(4 * (out + pad)), d_ids = gpu_alloc(4 * (out + pad));
  gpu_upload(d_lg, part, 4 * host_elems);
  gpu_upload(d_b, bias, 4 * (size_t)E);
  gpu_poison(d_w, 4 * (out + pad));
  gpu_poison(d_ids, 4 * (out + pad));
  const float *d_logits = (const float *)(d_lg + 4 * (size_t)c.offset);
  const float *d_bias = c.use_bias ? (const float *)d_b : NULL;
  dsv4_status st;
  if (S == 1 && !c.pdl) {
    st = dsv4_activation_topk(g_ctx, NULL, d_logits, n, E, d_bias, k, scale, (float *)d_w, (int32_t *)d_ids);
  } else {
    st = dsv4_activation_topk_check("test", g_ctx, d_logits, S, ss, n, E, d_bias, k, scale, (float *)d_w, (int32_t *)d_ids);
    if (st == DSV4_OK)
      st = dsv4_activation_topk_enqueue(g_ctx, NULL, d_logits, S, ss, n, E, d_bias, k, scale, (float *)d_w,
                                        (int32_t *)d_ids, c.pdl);
  }
  if (st != DSV4_OK) fprintf(stderr, "activation_topk: %s\n", dsv4_last_error());
  assert_int_equal(st, DSV4_OK);
  gpu_sync();
  float *w = malloc(4 * (out + pad));
  int32_t *ids = malloc(4 * (out + pad));
  gpu_download(w, d_w, 4 * (out + pad));
  gpu_download(ids, d_ids, 4 * (out + pad));
  char what[192];
  snprintf(what, sizeof what, "N=%lld E=%d k=%d %s bias=%s splits=%d pdl=%d offset=%lld", (long long)n, E, k,
           k_gen_names[c.mode], c.use_bias ? "yes" : "NULL", S, (int)c.pdl, (long long)c.offset);
  token_ref r = {NULL, c.use_bias ? bias : NULL, E, k, scale, malloc(8 * (size_t)E), malloc(8 * (size_t)E),
                 malloc(8 * 16), malloc(8 * 16), malloc((size_t)E)};
  int64_t bad = 0, shown = 0, checked = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (t % c.sample != 0 && t != n - 1) continue;
    r.z = z + t * E;
    bad += check_token(&r, w + t * k, ids + t * k, what, t, &shown);
    ++checked;
  }
  for (size_t i = out; i < out + pad; ++i) {   /* nothing written past the end */
    uint32_t u;
    memcpy(&u, &w[i], 4);
    if (ids[i] != -1 || u != 0xFFFFFFFFu) {
      if (shown++ < 5) fprintf(stderr, "%s: element %zu past the end was written\n", what, i);
      ++bad;
    }
  }
  if (n > 0) assert_true(checked > 0);
  if (bad) fprintf(stderr, "%s: %lld of %lld checked tokens wrong\n", what, (long long)bad, (long long)checked);
  assert_int_equal(bad, 0);
  gpu_free(d_lg), gpu_free(d_b), gpu_free(d_w), gpu_free(d_ids);
  free(part), free(z), free(bias), free(w), free(ids);
  free(r.s), free(r.sel), free(r.sk), free(r.rw), free(r.taken);
}

static act_case mk(int64_t n, int32_t E, int32_t k, int mode, bool bias, uint64_t seed) {
  act_case c = {n, E, k, mode, bias, 1, false, 0, 1, seed};
  return c;
}

static const int32_t k_experts[] = {1, 2, 3, 144, 256, 320, 384, 1000, 1024};
static const int32_t k_ks[] = {1, 2, 6, 8, 16};

/* Every E of the list with every k of {1,2,6,8,16} (and k = E for E <= 16): N = 4096, N = 5 with every
 * generator with and without bias, N = 1 and N = 0. */
static void test_shapes(void **state) {
  (void)state;
  uint64_t seed = 1;
  for (size_t a = 0; a < sizeof k_experts / sizeof k_experts[0]; ++a)
    for (size_t b = 0; b < 6; ++b) {
      const int32_t E = k_experts[a];
      int32_t k = b < 5 ? k_ks[b] : E;
      if (b == 5 && E > 16) continue;
      if (k > E || (b == 5 && (E == 1 || E == 2))) continue;   /* k = E already covered */
      act_case c = mk(4096, E, k, GEN_NORMAL, true, seed++);
      c.sample = E >= 1000 ? 3 : 1;
      run_case(c);
      for (int mode = 0; mode < GEN_COUNT; ++mode) {
        run_case(mk(5, E, k, mode, true, seed++));
        run_case(mk(5, E, k, mode, false, seed++));
      }
      run_case(mk(1, E, k, GEN_NORMAL, false, seed++));
      run_case(mk(0, E, k, GEN_NORMAL, true, seed++));
    }
}

/* Every generator at the preset shapes with 4096 tokens, bias and NULL bias. */
static void test_edge_cases_at_presets(void **state) {
  (void)state;
  uint64_t seed = 500;
  for (int mode = 0; mode < GEN_COUNT; ++mode)
    for (int b = 0; b < 2; ++b) {
      run_case(mk(4096, 384, 6, mode, b, seed++));
      run_case(mk(4096, 256, 6, mode, b, seed++));
      run_case(mk(1024, 1024, 16, mode, b, seed++));
    }
}

/* 65536 tokens (checked every 37th and the last). */
static void test_many_tokens(void **state) {
  (void)state;
  act_case c = mk(65536, 384, 6, GEN_NORMAL, true, 900);
  c.sample = 37;
  run_case(c);
  c = mk(65536, 256, 6, GEN_NORMAL, false, 901), c.sample = 37;
  run_case(c);
  c = mk(65536, 1024, 16, GEN_SPECIAL, true, 902), c.sample = 101;
  run_case(c);
  c = mk(65536, 3, 3, GEN_TIES, true, 903), c.sample = 7;
  run_case(c);
  c = mk(65536, 144, 8, GEN_HUGE_TINY, true, 904), c.sample = 37;
  run_case(c);
}

/* Logits that are not 16-byte aligned take 4-byte loads. */
static void test_unaligned_logits(void **state) {
  (void)state;
  uint64_t seed = 1000;
  for (int64_t off = 1; off < 4; ++off) {
    act_case c = mk(777, 384, 6, GEN_NORMAL, true, seed++);
    c.offset = off;
    run_case(c);
    c = mk(333, 256, 8, GEN_SPECIAL, false, seed++), c.offset = off;
    run_case(c);
    c = mk(333, 3, 2, GEN_TIES, true, seed++), c.offset = off;
    run_case(c);
  }
}

/* The split-slab form: 1..8 slabs summed in split order, with and without PDL. */
static void test_split_slabs(void **state) {
  (void)state;
  uint64_t seed = 2000;
  for (int32_t S = 1; S <= 8; ++S) {
    act_case c = mk(4096, 384, 6, GEN_NORMAL, true, seed++);
    c.splits = S, c.pdl = S % 2 == 0;
    run_case(c);
    c = mk(64, 256, 6, GEN_SPECIAL, false, seed++), c.splits = S, c.pdl = S % 2 == 1;
    run_case(c);
    c = mk(33, 1000, 16, GEN_HUGE_TINY, true, seed++), c.splits = S, c.pdl = true;
    run_case(c);
    c = mk(17, 3, 3, GEN_NORMAL, true, seed++), c.splits = S;
    run_case(c);
    c = mk(100, 384, 6, GEN_NORMAL, true, seed++), c.splits = S, c.offset = 1;   /* unaligned slabs */
    run_case(c);
  }
  act_case c = mk(1, 384, 6, GEN_NORMAL, true, seed++);   /* decode: one token, 7 slabs */
  c.splits = 7, c.pdl = true;
  run_case(c);
}

/* PDL behind a producer kernel on the same stream: dsv4_topk_select (k = E: every row sorted) writes the
 * logits the PDL-launched activation_topk reads; the buffer starts poisoned (NaN), so reading before the
 * producer finished would show. */
static void test_pdl_after_producer(void **state) {
  (void)state;
  const int64_t n = 2048;
  const int32_t E = 384, k = 6;
  uint64_t seed = 3000;
  float *src = malloc(4 * n * E), *sorted = malloc(4 * n * E), *bias = malloc(4 * E);
  int32_t *tmp = malloc(4 * E);
  for (int64_t i = 0; i < n * E; ++i) src[i] = gen_logit(GEN_NORMAL, &seed);
  for (int32_t e = 0; e < E; ++e) bias[e] = (float)(0.2 * uniform(&seed) - 0.1);
  for (int64_t t = 0; t < n; ++t) oracle_topk_select_row(src + t * E, E, E, sorted + t * E, tmp);
  CUstream s;
  GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  CUdeviceptr d_src = gpu_alloc(4 * n * E), d_lg = gpu_alloc(4 * n * E), d_idx = gpu_alloc(4 * n * E),
              d_b = gpu_alloc(4 * E), d_w = gpu_alloc(4 * n * k), d_ids = gpu_alloc(4 * n * k);
  gpu_upload(d_src, src, 4 * n * E);
  gpu_upload(d_b, bias, 4 * E);
  for (int rep = 0; rep < 3; ++rep) {
    gpu_poison(d_lg, 4 * n * E);
    gpu_poison(d_w, 4 * n * k);
    gpu_poison(d_ids, 4 * n * k);
    gpu_sync();
    assert_int_equal(dsv4_topk_select(g_ctx, s, (const float *)d_src, n, E, E, E, (float *)d_lg, (int32_t *)d_idx), DSV4_OK);
    assert_int_equal(dsv4_activation_topk_enqueue(g_ctx, s, (const float *)d_lg, 1, 0, n, E, (const float *)d_b, k,
                                                  2.5f, (float *)d_w, (int32_t *)d_ids, true), DSV4_OK);
    GPU_CHECK(cuStreamSynchronize(s));
    float *w = malloc(4 * n * k);
    int32_t *ids = malloc(4 * n * k);
    gpu_download(w, d_w, 4 * n * k);
    gpu_download(ids, d_ids, 4 * n * k);
    token_ref r = {NULL, bias, E, k, 2.5, malloc(8 * E), malloc(8 * E), malloc(8 * 16), malloc(8 * 16), malloc(E)};
    int64_t bad = 0, shown = 0;
    for (int64_t t = 0; t < n; ++t) {
      r.z = sorted + t * E;
      bad += check_token(&r, w + t * k, ids + t * k, "PDL after topk_select", t, &shown);
    }
    assert_int_equal(bad, 0);
    free(w), free(ids), free(r.s), free(r.sel), free(r.sk), free(r.rw), free(r.taken);
  }
  GPU_CHECK(cuStreamDestroy(s));
  gpu_free(d_src), gpu_free(d_lg), gpu_free(d_idx), gpu_free(d_b), gpu_free(d_w), gpu_free(d_ids);
  free(src), free(sorted), free(bias), free(tmp);
}

/* A rejected call changes nothing; num_tokens == 0 needs no pointers. */
static void test_rejected_call_writes_nothing(void **state) {
  (void)state;
  CUdeviceptr d_lg = gpu_alloc(4 * 384 * 8), d_w = gpu_alloc(4 * 64), d_ids = gpu_alloc(4 * 64);
  gpu_poison(d_w, 4 * 64);
  gpu_poison(d_ids, 4 * 64);
  assert_status_names(dsv4_activation_topk(g_ctx, NULL, (const float *)d_lg, 8, 384, NULL, 17, 2.5f, (float *)d_w,
                                           (int32_t *)d_ids), DSV4_ERR_UNSUPPORTED, "'k'");
  assert_status_names(dsv4_activation_topk(g_ctx, NULL, (const float *)d_lg, 8, 1025, NULL, 6, 2.5f, (float *)d_w,
                                           (int32_t *)d_ids), DSV4_ERR_UNSUPPORTED, "'num_experts'");
  assert_status_names(dsv4_activation_topk(g_ctx, NULL, (const float *)d_lg, 8, 384, NULL, 6, NAN, (float *)d_w,
                                           (int32_t *)d_ids), DSV4_ERR_INVALID_ARGUMENT, "'routed_scaling_factor'");
  assert_int_equal(dsv4_activation_topk(g_ctx, NULL, NULL, 0, 384, NULL, 6, 2.5f, NULL, NULL), DSV4_OK);
  gpu_sync();
  int32_t h[64];
  gpu_download(h, d_ids, sizeof h);
  for (int i = 0; i < 64; ++i) assert_int_equal(h[i], -1);
  gpu_download(h, d_w, sizeof h);
  for (int i = 0; i < 64; ++i) assert_int_equal(h[i], -1);
  gpu_free(d_lg), gpu_free(d_w), gpu_free(d_ids);
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_edge_cases_at_presets),
      cmocka_unit_test(test_many_tokens),
      cmocka_unit_test(test_unaligned_logits),
      cmocka_unit_test(test_split_slabs),
      cmocka_unit_test(test_pdl_after_producer),
      cmocka_unit_test(test_rejected_call_writes_nothing),
  };
  GPU_RUN_TESTS(g_ctx, tests);
}
