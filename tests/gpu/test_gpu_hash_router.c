/* GPU: dsv4_hash_router against the FP64 oracle. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "gpu_util.h"
#include "oracle.h"

static dsv4_context *g_ctx;

/* Runs the hash router on `n` tokens and compares every output element with the oracle. */
static void check_case(int64_t n, int32_t k, int32_t vocab, int32_t num_experts, uint64_t seed, int bad_every) {
  int32_t *lut = malloc(sizeof(int32_t) * (size_t)vocab * k);
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < (int64_t)vocab * k; ++i) lut[i] = (int32_t)(test_rand(&seed) % (uint64_t)num_experts);
  static const int32_t bad[] = {-1, INT_MIN, INT_MAX, 0x7fff0000};
  for (int64_t t = 0; t < n; ++t) {
    tok[t] = (int32_t)(test_rand(&seed) % (uint64_t)vocab);
    if (bad_every && t % bad_every == 3) tok[t] = (t / bad_every) % 5 == 4 ? vocab : bad[(t / bad_every) % 4];
  }
  if (n > 2) tok[n - 1] = vocab - 1, tok[n - 2] = 0;  /* the table's first and last rows */
  size_t out = (size_t)n * k;
  CUdeviceptr d_tok = gpu_alloc(4 * (size_t)n), d_lut = gpu_alloc(4 * (size_t)vocab * k);
  CUdeviceptr d_w = gpu_alloc(4 * out + 64), d_ids = gpu_alloc(4 * out + 64);
  gpu_upload(d_tok, tok, 4 * (size_t)n);
  gpu_upload(d_lut, lut, 4 * (size_t)vocab * k);
  gpu_poison(d_w, 4 * out + 64);
  gpu_poison(d_ids, 4 * out + 64);
  assert_int_equal(dsv4_hash_router(g_ctx, NULL, (const int32_t *)d_tok, n, (const int32_t *)d_lut, vocab, k,
                                    (float *)d_w, (int32_t *)d_ids), DSV4_OK);
  gpu_sync();
  float *w = malloc(4 * out + 64);
  int32_t *ids = malloc(4 * out + 64), *ref_ids = malloc(4 * (out ? out : 1));
  double *ref_w = malloc(8 * (out ? out : 1));
  gpu_download(w, d_w, 4 * out + 64);
  gpu_download(ids, d_ids, 4 * out + 64);
  oracle_hash_uniform(tok, n, lut, vocab, k, 1.0 / k, ref_w, ref_ids);
  int64_t wrong = 0;
  for (size_t i = 0; i < out; ++i) {
    if (ids[i] != ref_ids[i] || (double)w[i] != (double)(float)ref_w[i]) {
      if (wrong++ < 5)
        fprintf(stderr, "n=%lld k=%d elem %zu: got (%d, %g) want (%d, %g)\n", (long long)n, k, i, ids[i], w[i],
                ref_ids[i], ref_w[i]);
    }
  }
  /* Nothing written past the end. */
  for (size_t i = out; i < out + 16; ++i) wrong += ids[i] != -1;
  assert_int_equal(wrong, 0);
  gpu_free(d_tok), gpu_free(d_lut), gpu_free(d_w), gpu_free(d_ids);
  free(lut), free(tok), free(w), free(ids), free(ref_ids), free(ref_w);
}

static void test_sizes_and_k(void **state) {
  (void)state;
  const int64_t ns[] = {0, 1, 7, 4096, 65536};
  const int32_t ks[] = {1, 6, 16};
  for (int a = 0; a < 5; ++a)
    for (int b = 0; b < 3; ++b) check_case(ns[a], ks[b], 129280, 384, 1000 + a * 7 + b, 0);
}

static void test_out_of_range_ids(void **state) {
  (void)state;
  check_case(4096, 6, 129280, 384, 77, 10);
  check_case(7, 16, 1, 1, 78, 2);          /* vocab 1: every id but 0 is out of range */
  check_case(65536, 1, 1 << 24, 1024, 79, 100);
}

static void test_streams_and_odd_sizes(void **state) {
  (void)state;
  CUstream s;
  GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  const int64_t n = 1001;
  const int32_t k = 3, vocab = 50;
  int32_t lut[150], tok[1001];
  for (int i = 0; i < 150; ++i) lut[i] = (i * 7) % 144;
  for (int i = 0; i < n; ++i) tok[i] = (i * 13) % 53 - 1;  /* -1..51: some out of range */
  CUdeviceptr d_tok = gpu_alloc(4 * n), d_lut = gpu_alloc(sizeof lut), d_w = gpu_alloc(4 * n * k), d_ids = gpu_alloc(4 * n * k);
  gpu_upload(d_tok, tok, 4 * n);
  gpu_upload(d_lut, lut, sizeof lut);
  gpu_poison(d_w, 4 * n * k);
  gpu_poison(d_ids, 4 * n * k);
  assert_int_equal(dsv4_hash_router(g_ctx, s, (const int32_t *)d_tok, n, (const int32_t *)d_lut, vocab, k,
                                    (float *)d_w, (int32_t *)d_ids), DSV4_OK);
  GPU_CHECK(cuStreamSynchronize(s));
  static float w[3003];
  static int32_t ids[3003], rids[3003];
  static double rw[3003];
  gpu_download(w, d_w, sizeof w);
  gpu_download(ids, d_ids, sizeof ids);
  int64_t bad = oracle_hash_uniform(tok, n, lut, vocab, k, 1.0 / k, rw, rids);
  assert_true(bad > 0);
  for (int i = 0; i < n * k; ++i) {
    assert_int_equal(ids[i], rids[i]);
    assert_true((double)w[i] == (double)(float)rw[i]);
  }
  GPU_CHECK(cuStreamDestroy(s));
  gpu_free(d_tok), gpu_free(d_lut), gpu_free(d_w), gpu_free(d_ids);
}

/* Outputs 4 bytes past a 16-byte boundary take the scalar path, 8 bytes past it the 8-byte stores; the results
 * must be the same, and nothing around the outputs is touched. */
static void test_unaligned_outputs(void **state) {
  (void)state;
  const int64_t n = 333;
  const int32_t k = 6, vocab = 1000;
  static int32_t lut[6000], tok[333], ids[2004], rids[2000];
  static float w[2004];
  static double rw[2000];
  for (int i = 0; i < 6000; ++i) lut[i] = (i * 31) % 256;
  for (int i = 0; i < n; ++i) tok[i] = (i * 97) % 1003;  /* a few >= vocab */
  oracle_hash_uniform(tok, n, lut, vocab, k, 1.0 / k, rw, rids);
  const size_t bytes = 16 + 4 * (size_t)(n * k);
  CUdeviceptr d_tok = gpu_alloc(sizeof tok), d_lut = gpu_alloc(sizeof lut), d_w = gpu_alloc(bytes),
              d_ids = gpu_alloc(bytes);
  gpu_upload(d_tok, tok, sizeof tok);
  gpu_upload(d_lut, lut, sizeof lut);
  for (int off = 1; off <= 2; ++off) {   /* in elements: 4 and 8 bytes */
    gpu_poison(d_w, bytes);
    gpu_poison(d_ids, bytes);
    assert_int_equal(dsv4_hash_router(g_ctx, NULL, (const int32_t *)d_tok, n, (const int32_t *)d_lut, vocab, k,
                                      (float *)(d_w + 4 * off), (int32_t *)(d_ids + 4 * off)), DSV4_OK);
    gpu_sync();
    gpu_download(w, d_w, bytes);
    gpu_download(ids, d_ids, bytes);
    for (int i = 0; i < off; ++i) assert_int_equal(ids[i], -1);  /* the elements before the output: untouched */
    assert_int_equal(ids[n * k + off], -1);                       /* and the one after */
    for (int i = 0; i < n * k; ++i) {
      if (ids[i + off] != rids[i] || (double)w[i + off] != (double)(float)rw[i])
        fail_msg("output offset %d bytes, element %d: id %d weight %g, the oracle %d %g", 4 * off, i, ids[i + off],
                 (double)w[i + off], rids[i], rw[i]);
    }
  }
  gpu_free(d_tok), gpu_free(d_lut), gpu_free(d_w), gpu_free(d_ids);
}

/* Calls that read what the call before them wrote, and overwrite what it read: with k = 1 the ids of one call
 * are the token ids of the next, in two buffers used in turn, on one stream, eager and in a graph. The op is
 * launched with PDL (sm_90+), so this checks that it touches no memory before the call before it has ended:
 * a read of the previous output too early sees the poison (out of range: expert 0) or an older step. */
static void test_chained_calls(void **state) {
  (void)state;
  enum { STEPS = 8 };
  const int64_t n = 1 << 19;
  const int32_t vocab = 1 << 16;
  int32_t *lut = malloc(4 * (size_t)vocab), *tok = malloc(4 * (size_t)n), *ref = malloc(4 * (size_t)n);
  int32_t *got = malloc(4 * (size_t)n);
  double *rw = malloc(8 * (size_t)n);
  float *w = malloc(4 * (size_t)n);
  uint64_t seed = 4242;
  for (int32_t v = 0; v < vocab; ++v) lut[v] = (int32_t)(test_rand(&seed) % (uint64_t)vocab);
  CUdeviceptr d_lut = gpu_alloc(4 * (size_t)vocab), d_buf[2] = {gpu_alloc(4 * (size_t)n), gpu_alloc(4 * (size_t)n)};
  CUdeviceptr d_w = gpu_alloc(4 * (size_t)n);
  gpu_upload(d_lut, lut, 4 * (size_t)vocab);
  CUstream s;
  GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  for (int graph = 0; graph < 2; ++graph) {
    for (int64_t t = 0; t < n; ++t) tok[t] = (int32_t)(test_rand(&seed) % (uint64_t)vocab);
    gpu_upload(d_buf[0], tok, 4 * (size_t)n);
    gpu_poison(d_buf[1], 4 * (size_t)n);
    gpu_poison(d_w, 4 * (size_t)n);
    if (graph) GPU_CHECK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
    dsv4_status st = DSV4_OK;
    for (int step = 0; step < STEPS && st == DSV4_OK; ++step)
      st = dsv4_hash_router(g_ctx, s, (const int32_t *)d_buf[step & 1], n, (const int32_t *)d_lut, vocab, 1,
                            (float *)d_w, (int32_t *)d_buf[(step + 1) & 1]);
    if (graph) gpu_graph_replay(s, 1);
    assert_int_equal(st, DSV4_OK);
    GPU_CHECK(cuStreamSynchronize(s));
    /* STEPS is even: the last step wrote buffer 0, the one before it buffer 1. */
    for (int step = 0; step < STEPS; ++step) {
      oracle_hash_uniform(tok, n, lut, vocab, 1, 1.0, rw, ref);
      memcpy(tok, ref, 4 * (size_t)n);
      if (step >= STEPS - 2) {
        gpu_download(got, d_buf[(step + 1) & 1], 4 * (size_t)n);
        int64_t wrong = 0;
        for (int64_t t = 0; t < n; ++t) wrong += got[t] != ref[t];
        if (wrong) fprintf(stderr, "chained calls (graph %d): step %d: %lld ids wrong\n", graph, step, (long long)wrong);
        assert_int_equal(wrong, 0);
      }
    }
    gpu_download(w, d_w, 4 * (size_t)n);
    for (int64_t t = 0; t < n; ++t) assert_true(w[t] == 1.0f);
  }
  GPU_CHECK(cuStreamDestroy(s));
  gpu_free(d_lut), gpu_free(d_buf[0]), gpu_free(d_buf[1]), gpu_free(d_w);
  free(lut), free(tok), free(ref), free(got), free(rw), free(w);
}

static void test_bad_ordinal(void **state) {
  (void)state;
  dsv4_context *other = (dsv4_context *)0x1;
  assert_status_names(dsv4_context_create(4096, &other), DSV4_ERR_NO_DEVICE, "device_ordinal");
  assert_null(other);
  assert_status_names(dsv4_context_create(-1, &other), DSV4_ERR_NO_DEVICE, "device_ordinal");
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_and_k),
      cmocka_unit_test(test_out_of_range_ids),
      cmocka_unit_test(test_streams_and_odd_sizes),
      cmocka_unit_test(test_unaligned_outputs),
      cmocka_unit_test(test_chained_calls),
      cmocka_unit_test(test_bad_ordinal),
  };
  GPU_RUN_TESTS(g_ctx, tests);
}
