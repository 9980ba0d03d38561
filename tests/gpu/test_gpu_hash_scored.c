/* GPU: the scored hash kernel (dsv4_hash_scored_enqueue: the router's hash mode with scored weights)
 * against the FP64 oracle (oracle_hash_scored): ids = lut[token] in LUT order exactly; weights within 1e-5
 * relative plus FLT_MIN absolute (weights below FP32's normal range cannot be FP32 outputs at full
 * precision), never NaN or inf; an out-of-range token id gives id 0 / weight 0 in every slot and is counted
 * once in the error counter. Logits as 1..64 split slabs summed in split order, with and without PDL. */
#include <float.h>
#include <limits.h>
#include <math.h>

#include "gpu_util.h"
#include "oracle.h"
#include "ops/ops.h"

static dsv4_context *g_ctx;

enum { GEN_NORMAL, GEN_SPECIAL, GEN_HUGE_TINY, GEN_ZERO_SUM, GEN_INF, GEN_COUNT };
static const char *const k_gen_names[] = {"normal", "nan/inf mix", "huge/tiny", "selected sum 0", "+inf share"};

static double uniform(uint64_t *s) { return (double)(test_rand(s) >> 11) / 9007199254740992.0; }
static float normal(uint64_t *s, double sigma) {
  double u1 = uniform(s), u2 = uniform(s);
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sigma * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Logits stay where FP32 sqrt(softplus) is at full precision (z >= -170) or exactly 0 in both (z <= -750). */
static float gen_logit(int mode, uint64_t *s) {
  switch (mode) {
    case GEN_NORMAL: return normal(s, 3.0);
    case GEN_SPECIAL: {
      uint64_t r = test_rand(s) % 8;
      return r == 0 ? NAN : r == 1 ? INFINITY : r == 2 ? -INFINITY : normal(s, 3.0);
    }
    case GEN_HUGE_TINY: {
      switch (test_rand(s) % 6) {
        case 0: return 100.0f + (float)(70.0 * uniform(s));
        case 1: return -100.0f - (float)(70.0 * uniform(s));
        case 2: return normal(s, 1e-4);
        case 3: return 1e30f;
        case 4: return -1e4f;
        default: return FLT_MAX;
      }
    }
    case GEN_ZERO_SUM: return test_rand(s) % 2 ? -INFINITY : -900.0f;
    default: return test_rand(s) % 4 ? normal(s, 2.0) : INFINITY;
  }
}

typedef struct hash_case {
  int64_t n;
  int32_t E, k, vocab;
  int mode;
  int32_t splits;
  bool pdl;
  int bad_every;   /* every bad_every-th token is out of range (0: none) */
  int64_t sample;
  uint64_t seed;
} hash_case;

static void run_case(hash_case c) {
  uint64_t seed = c.seed;
  const int64_t n = c.n, ne = c.n * c.E;
  const int32_t E = c.E, k = c.k, S = c.splits, vocab = c.vocab;
  const float scale = 1.5f;
  const int64_t ss = S > 1 ? ne + 3 : 0;
  const size_t host_elems = (size_t)(S > 1 ? ss * S : ne);
  float *part = calloc(host_elems ? host_elems : 1, 4), *z = malloc(4 * (size_t)(ne ? ne : 1));
  for (int64_t i = 0; i < ne; ++i) {
    const float x = gen_logit(c.mode, &seed);
    if (S == 1 || !isfinite(x)) {
      part[i] = x;
    } else if (S >= 3 && test_rand(&seed) % 2) {   /* cancels only in split order */
      part[i] = 1e8f, part[ss + i] = -1e8f;
      for (int32_t s = 2; s < S; ++s) part[s * ss + i] = x / (float)(S - 2);
    } else {
      for (int32_t s = 0; s < S; ++s) part[s * ss + i] = x / (float)S;
    }
    float acc = part[i];
    for (int32_t s = 1; s < S; ++s) acc += part[s * ss + i];
    z[i] = acc;
  }
  int32_t *lut = malloc(4 * (size_t)vocab * k), *tok = malloc(4 * (size_t)(n ? n : 1));
  for (int32_t v = 0; v < vocab; ++v) {   /* distinct experts per row, LUT order random */
    for (int32_t j = 0; j < k; ++j) {
      int32_t e;
      int dup;
      do {
        e = (int32_t)(test_rand(&seed) % (uint64_t)E);
        dup = 0;
        for (int32_t q = 0; q < j; ++q) dup |= lut[(int64_t)v * k + q] == e;
      } while (dup);
      lut[(int64_t)v * k + j] = e;
    }
  }
  static const int32_t bad[] = {-1, INT_MIN, INT_MAX};
  for (int64_t t = 0; t < n; ++t) {
    tok[t] = (int32_t)(test_rand(&seed) % (uint64_t)vocab);
    if (c.bad_every && t % c.bad_every == 1) tok[t] = (t / c.bad_every) % 4 == 3 ? vocab : bad[(t / c.bad_every) % 3];
  }
  if (n > 2 && !c.bad_every) tok[0] = 0, tok[n - 1] = vocab - 1;
  const size_t out = (size_t)n * k, pad = 16;
  CUdeviceptr d_lg = gpu_alloc(4 * host_elems), d_tok = gpu_alloc(4 * (size_t)n), d_lut = gpu_alloc(4 * (size_t)vocab * k);
  CUdeviceptr d_w = gpu_alloc(4 * (out + pad)), d_ids = gpu_alloc(4 * (out + pad)), d_err = gpu_alloc(4);
  gpu_upload(d_lg, part, 4 * host_elems);
  gpu_upload(d_tok, tok, 4 * (size_t)n);
  gpu_upload(d_lut, lut, 4 * (size_t)vocab * k);
  gpu_poison(d_w, 4 * (out + pad));
  gpu_poison(d_ids, 4 * (out + pad));
  GPU_CHECK(cuMemsetD32(d_err, 0, 1));
  gpu_sync();   /* the memset is done before the kernel on the non-blocking stream counts into it */
  dsv4_status st = dsv4_hash_scored_check("test", g_ctx, (const float *)d_lg, S, ss, (const int32_t *)d_tok, n, E,
                                          (const int32_t *)d_lut, vocab, k, scale, (float *)d_w, (int32_t *)d_ids);
  if (st == DSV4_OK)
    st = dsv4_hash_scored_enqueue(g_ctx, NULL, (const float *)d_lg, S, ss, (const int32_t *)d_tok, n, E,
                                  (const int32_t *)d_lut, vocab, k, scale, (float *)d_w, (int32_t *)d_ids,
                                  (int32_t *)d_err, c.pdl);
  if (st != DSV4_OK) fprintf(stderr, "hash_scored: %s\n", dsv4_last_error());
  assert_int_equal(st, DSV4_OK);
  gpu_sync();
  float *w = malloc(4 * (out + pad));
  int32_t *ids = malloc(4 * (out + pad)), *rid = malloc(4 * (out ? out : 1)), err = -1;
  double *rw = malloc(8 * (out ? out : 1));
  gpu_download(w, d_w, 4 * (out + pad));
  gpu_download(ids, d_ids, 4 * (out + pad));
  gpu_download(&err, d_err, 4);
  const int64_t want_bad = oracle_hash_scored(z, tok, n, E, lut, vocab, k, scale, rw, rid);
  int64_t wrong = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (t % c.sample != 0 && t != n - 1 && !(c.bad_every && t % c.bad_every == 1)) continue;
    for (int32_t j = 0; j < k; ++j) {
      const size_t o = (size_t)t * k + j;
      if (ids[o] != rid[o] || !isfinite(w[o]) || !(fabs((double)w[o] - rw[o]) <= 1e-5 * fabs(rw[o]) + FLT_MIN)) {
        if (wrong < 5)
          fprintf(stderr, "N=%lld E=%d k=%d vocab=%d %s splits=%d pdl=%d: token %lld (id %d) slot %d: got (%d, %.9g) want (%d, %.9g)\n",
                  (long long)n, E, k, vocab, k_gen_names[c.mode], S, (int)c.pdl, (long long)t, tok[t], j, ids[o],
                  w[o], rid[o], rw[o]);
        ++wrong;
        break;
      }
    }
  }
  for (size_t i = out; i < out + pad; ++i) {
    uint32_t u;
    memcpy(&u, &w[i], 4);
    wrong += ids[i] != -1 || u != 0xFFFFFFFFu;
  }
  assert_int_equal(wrong, 0);
  assert_int_equal(err, want_bad);
  if (c.bad_every && n > 1) assert_true(want_bad > 0);
  gpu_free(d_lg), gpu_free(d_tok), gpu_free(d_lut), gpu_free(d_w), gpu_free(d_ids), gpu_free(d_err);
  free(part), free(z), free(lut), free(tok), free(w), free(ids), free(rid), free(rw);
}

static hash_case mk(int64_t n, int32_t E, int32_t k, int32_t vocab, int mode, uint64_t seed) {
  hash_case c = {n, E, k, vocab, mode, 1, false, 0, 1, seed};
  return c;
}

static void test_sizes_and_k(void **state) {
  (void)state;
  static const int64_t ns[] = {0, 1, 5, 4096};
  static const int32_t ks[] = {1, 6, 16};
  uint64_t seed = 10;
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 3; ++b) {
      run_case(mk(ns[a], 384, ks[b], 129280, GEN_NORMAL, seed++));
      run_case(mk(ns[a], 256, ks[b], 1000, GEN_NORMAL, seed++));
    }
  hash_case c = mk(65536, 384, 6, 129280, GEN_NORMAL, seed++);
  c.sample = 13;
  run_case(c);
  c = mk(65536, 1024, 16, 50000, GEN_SPECIAL, seed++), c.sample = 29;
  run_case(c);
  run_case(mk(100, 16, 16, 7, GEN_NORMAL, seed++));   /* k = E */
  run_case(mk(100, 1, 1, 3, GEN_NORMAL, seed++));
}

static void test_weight_edge_cases(void **state) {
  (void)state;
  uint64_t seed = 100;
  for (int mode = 0; mode < GEN_COUNT; ++mode)
    for (int b = 0; b < 3; ++b) run_case(mk(4096, 384, (int32_t[]){1, 6, 16}[b], 129280, mode, seed++));
}

static void test_out_of_range_tokens(void **state) {
  (void)state;
  hash_case c = mk(4096, 384, 6, 129280, GEN_NORMAL, 200);
  c.bad_every = 10;
  run_case(c);
  c = mk(7, 16, 16, 1, GEN_NORMAL, 201), c.bad_every = 2;   /* vocab 1: every id but 0 is out of range */
  run_case(c);
  c = mk(65536, 256, 6, 1 << 24, GEN_SPECIAL, 202), c.bad_every = 100, c.sample = 17;
  run_case(c);
}

static void test_split_slabs(void **state) {
  (void)state;
  uint64_t seed = 300;
  for (int32_t S = 1; S <= 8; ++S) {
    hash_case c = mk(4096, 384, 6, 129280, GEN_NORMAL, seed++);
    c.splits = S, c.pdl = S % 2 == 0, c.bad_every = 50;
    run_case(c);
    c = mk(64, 256, 16, 1000, GEN_HUGE_TINY, seed++), c.splits = S, c.pdl = true;
    run_case(c);
    c = mk(1, 384, 6, 129280, GEN_SPECIAL, seed++), c.splits = S, c.pdl = S % 2 == 1;
    run_case(c);
  }
}

/* The kernel gathers the slabs a batch at a time (16 for k <= 6, 96 / k for larger k: 13 for k = 7, 6 for
 * k = 16): slab counts around one and two batches (k = 6 on both sides of each, the others at and past them),
 * up to the 64 slabs the API allows, with and without PDL. */
static void test_split_batches(void **state) {
  (void)state;
  uint64_t seed = 400;
  static const int32_t s6[] = {15, 16, 17, 31, 32, 33, 64};   /* k = 6: batches of 16 */
  for (size_t i = 0; i < sizeof s6 / sizeof s6[0]; ++i) {
    hash_case c = mk(64, 384, 6, 129280, GEN_NORMAL, seed++);
    c.splits = s6[i], c.pdl = i % 2 == 0, c.bad_every = 7;
    run_case(c);
    c = mk(1, 384, 6, 129280, GEN_SPECIAL, seed++), c.splits = s6[i], c.pdl = true;
    run_case(c);
  }
  static const int32_t s16[] = {5, 6, 7, 12, 13};   /* k = 16: batches of 6 */
  for (size_t i = 0; i < sizeof s16 / sizeof s16[0]; ++i) {
    hash_case c = mk(33, 256, 16, 1000, GEN_HUGE_TINY, seed++);
    c.splits = s16[i], c.pdl = i % 2 == 1;
    run_case(c);
  }
  static const int32_t s7[] = {13, 14, 27};   /* k = 7: batches of 13 */
  for (size_t i = 0; i < sizeof s7 / sizeof s7[0]; ++i) {
    hash_case c = mk(17, 144, 7, 5000, GEN_NORMAL, seed++);
    c.splits = s7[i], c.pdl = true, c.bad_every = 5;
    run_case(c);
  }
}

/* A table entry outside [0, E) (a corrupt table): id 0 and weight 0 in that slot (its logit is not used), the
 * other slots renormalised among themselves. */
static void test_corrupt_table_entry(void **state) {
  (void)state;
  const int32_t E = 8, k = 4, vocab = 3;
  const int64_t n = 3;
  const int32_t lut[12] = {0, 1, 2, 3, /* row 1: */ 4, -1, 5, 8, /* row 2: */ 6, INT_MIN, INT_MAX, 7};
  const int32_t tok[3] = {1, 2, 0};
  float lg[24];
  for (int i = 0; i < 24; ++i) lg[i] = 0.25f * (float)(i % 7) - 0.5f;
  CUdeviceptr d_lg = gpu_alloc(sizeof lg), d_tok = gpu_alloc(sizeof tok), d_lut = gpu_alloc(sizeof lut);
  CUdeviceptr d_w = gpu_alloc(4 * 12), d_ids = gpu_alloc(4 * 12);
  gpu_upload(d_lg, lg, sizeof lg);
  gpu_upload(d_tok, tok, sizeof tok);
  gpu_upload(d_lut, lut, sizeof lut);
  gpu_poison(d_w, 48);
  gpu_poison(d_ids, 48);
  assert_int_equal(dsv4_hash_scored_enqueue(g_ctx, NULL, (const float *)d_lg, 1, 0, (const int32_t *)d_tok, n, E,
                                            (const int32_t *)d_lut, vocab, k, 2.0f, (float *)d_w, (int32_t *)d_ids,
                                            NULL, false), DSV4_OK);
  gpu_sync();
  float w[12];
  int32_t ids[12];
  gpu_download(w, d_w, sizeof w);
  gpu_download(ids, d_ids, sizeof ids);
  for (int64_t t = 0; t < n; ++t) {
    double s[4], rw[4];
    for (int32_t j = 0; j < k; ++j) {
      const int32_t e = lut[tok[t] * k + j];
      const int ok = e >= 0 && e < E;
      s[j] = ok ? oracle_score((double)lg[t * E + e]) : NAN;
      assert_int_equal(ids[t * k + j], ok ? e : 0);
    }
    oracle_weights(s, k, 2.0, rw);
    for (int32_t j = 0; j < k; ++j) {
      assert_true(isfinite(w[t * k + j]));
      assert_true(fabs((double)w[t * k + j] - rw[j]) <= 1e-5 * fabs(rw[j]) + FLT_MIN);
    }
  }
  gpu_free(d_lg), gpu_free(d_tok), gpu_free(d_lut), gpu_free(d_w), gpu_free(d_ids);
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_and_k),
      cmocka_unit_test(test_weight_edge_cases),
      cmocka_unit_test(test_out_of_range_tokens),
      cmocka_unit_test(test_split_slabs),
      cmocka_unit_test(test_split_batches),
      cmocka_unit_test(test_corrupt_table_entry),
  };
  GPU_RUN_TESTS(g_ctx, tests);
}
