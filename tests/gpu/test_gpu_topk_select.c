/* GPU: dsv4_topk_select against the FP64 oracle (oracle_topk_select_row). Selection is exact: every index
 * must match and every value must equal the input bit for bit, ties (lower index first), NaN (lowest),
 * +-inf and -0.0/+0.0 included. Covers the warp kernel (cols <= 1024, k <= 16) and the radix kernel (long
 * rows, k > 16), aligned and unaligned rows, strided rows, and many rows (65536: 16384 warp blocks). */
#include <math.h>

#include "gpu_util.h"
#include "oracle.h"

static dsv4_context *g_ctx;

enum { GEN_RANDOM, GEN_TIES, GEN_SPECIAL, GEN_EQUAL, GEN_NAN, GEN_FEW_FINITE, GEN_ASCENDING, GEN_DESCENDING,
       GEN_COUNT };
static const char *const k_gen_names[] = {"random", "ties", "special", "all-equal", "all-NaN", "few-finite",
                                          "ascending", "descending"};

static float uniform(uint64_t *s) { return (float)((double)(test_rand(s) >> 11) / 9007199254740992.0); }

static float gen_value(int mode, int64_t col, uint64_t *s) {
  switch (mode) {
    case GEN_RANDOM: return (uniform(s) - 0.5f) * 200.0f;
    case GEN_TIES: return (float)(int)(test_rand(s) % 7) * 0.5f - 1.0f;   /* 7 distinct values */
    case GEN_SPECIAL: {
      switch (test_rand(s) % 10) {
        case 0: return NAN;
        case 1: return -NAN;
        case 2: return INFINITY;
        case 3: return -INFINITY;
        case 4: return -0.0f;
        case 5: return 0.0f;
        case 6: return 3.0e38f;
        default: return (uniform(s) - 0.5f) * 4.0f;
      }
    }
    case GEN_EQUAL: return 1.25f;
    case GEN_NAN: return NAN;
    case GEN_FEW_FINITE: {   /* mostly NaN and -inf: k reaches into them */
      uint64_t r = test_rand(s) % 8;
      return r == 0 ? (float)(int)(test_rand(s) % 3) : r < 4 ? -INFINITY : NAN;
    }
    case GEN_ASCENDING: return (float)col;
    default: return -(float)col * 0.25f;
  }
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* DSV4_TEST_REDUCED (racecheck, gpu_util.h): the long-row kernel's cases run on their first row with the
 * full case's launch plan (*plan_rows), repeats skipped (gpu_topk_long_reduce); the warp kernel's keep at most
 * 64 rows (16 blocks of 4 warps, a row per warp as at any row count: its grid-stride loop over rows takes a
 * second trip only past 2^32 rows, the grid being capped at 2^30 blocks in runtime/ops/topk_select.c, which no
 * test reaches).
 * Returns false to skip the case. */
static bool reduce_case(int64_t *rows, int64_t *plan_rows, int64_t cols, int64_t row_stride, int64_t offset,
                        int32_t k, int mode, int64_t *sample) {
  if (!dsv4_topk_select_uses_warp(cols, k))
    return gpu_topk_long_reduce(g_ctx, rows, plan_rows, cols, row_stride, offset, k, mode, k_gen_names[mode],
                                sample);
  if (*rows > 64) {
    printf("    reduced %lld x %lld k=%d (warp kernel) -> 64 rows; all rows checked\n", (long long)*rows,
           (long long)cols, k);
    *rows = 64, *sample = 1;
  }
  *plan_rows = *rows;   /* the warp kernel has no plan to keep: a plain call */
  return true;
}

/* Runs one call and checks rows [0, rows) (every `sample`-th row and the last one) against the oracle.
 * offset: elements added to the start of the input (offset 1 makes every row misaligned). */
static void run_case(int64_t rows, int64_t cols, int64_t row_stride, int64_t offset, int32_t k, int mode,
                     int64_t sample, uint64_t seed) {
  if (!gpu_test_part_mine()) return;
  int64_t plan_rows = rows;
  if (gpu_test_reduced() && !reduce_case(&rows, &plan_rows, cols, row_stride, offset, k, mode, &sample)) return;
  const size_t in_elems = (size_t)(rows > 0 ? (rows - 1) * row_stride + cols : 0) + (size_t)offset;
  float *in = malloc(4 * (in_elems ? in_elems : 1));
  for (size_t i = 0; i < in_elems; ++i) in[i] = gen_value(mode, (int64_t)((i - (size_t)offset) % (size_t)row_stride), &seed);
  const size_t out = (size_t)rows * (size_t)k, pad = 16;
  CUdeviceptr d_in = gpu_alloc(4 * in_elems), d_v = gpu_alloc(4 * (out + pad)), d_i = gpu_alloc(4 * (out + pad));
  gpu_upload(d_in, in, 4 * in_elems);
  gpu_poison(d_v, 4 * (out + pad));
  gpu_poison(d_i, 4 * (out + pad));
  dsv4_status st = gpu_topk_call(g_ctx, plan_rows, (const float *)(d_in + 4 * (size_t)offset), rows,
                                   cols, row_stride, k, d_v, d_i);
  if (st != DSV4_OK) fprintf(stderr, "dsv4_topk_select: %s\n", dsv4_last_error());
  assert_int_equal(st, DSV4_OK);
  gpu_sync();
  float *v = malloc(4 * (out + pad)), *rv = malloc(4 * (size_t)k);
  int32_t *idx = malloc(4 * (out + pad)), *ri = malloc(4 * (size_t)k);
  gpu_download(v, d_v, 4 * (out + pad));
  gpu_download(idx, d_i, 4 * (out + pad));
  int64_t wrong = 0, checked = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (r % sample != 0 && r != rows - 1) continue;
    ++checked;
    const float *row = in + offset + r * row_stride;
    oracle_topk_select_row(row, cols, k, rv, ri);
    for (int32_t j = 0; j < k; ++j) {
      const size_t o = (size_t)r * k + j;
      if (idx[o] != ri[j] || bits(v[o]) != bits(rv[j])) {
        if (wrong < 5)
          fprintf(stderr, "rows %lld cols %lld stride %lld off %lld k %d %s: row %lld slot %d: got (%d, %a) want (%d, %a)\n",
                  (long long)rows, (long long)cols, (long long)row_stride, (long long)offset, k, k_gen_names[mode],
                  (long long)r, j, idx[o], v[o], ri[j], rv[j]);
        ++wrong;
        break;
      }
    }
  }
  /* Nothing written past the end. */
  for (size_t i = out; i < out + pad; ++i) wrong += idx[i] != -1 || bits(v[i]) != 0xFFFFFFFFu;
  if (rows > 0) assert_true(checked > 0);
  assert_int_equal(wrong, 0);
  gpu_free(d_in), gpu_free(d_v), gpu_free(d_i);
  free(in), free(v), free(rv), free(idx), free(ri);
}

/* The warp kernel: routing sizes, every generator, aligned and misaligned rows. */
static void test_warp_path(void **state) {
  (void)state;
  static const int64_t colsv[] = {1, 2, 3, 5, 31, 127, 128, 129, 256, 320, 384, 1000, 1023, 1024};
  static const int32_t ks[] = {1, 2, 6, 8, 16};
  uint64_t seed = 11;
  for (size_t c = 0; c < sizeof colsv / sizeof colsv[0]; ++c)
    for (size_t j = 0; j < 5; ++j) {
      const int64_t cols = colsv[c];
      const int32_t k = ks[j];
      if (k > cols) continue;
      for (int mode = 0; mode < GEN_COUNT; ++mode) run_case(37, cols, cols, 0, k, mode, 1, seed++);
      run_case(29, cols, cols + 1, 1, k, GEN_SPECIAL, 1, seed++);                 /* misaligned rows */
      run_case(29, cols, ((cols + 3) / 4) * 4 + 4, 0, k, GEN_TIES, 1, seed++);   /* aligned, stride > cols */
    }
  run_case(3, 7, 7, 0, 7, GEN_TIES, 1, seed++);    /* k == cols */
  run_case(3, 16, 16, 0, 16, GEN_SPECIAL, 1, seed++);
}

/* Row counts: 0 (no-op), 1, 5, 4096 and 65536 (every 61st / 97th row checked, and the last). None makes the
 * warp kernel's grid loop (that takes over 2^32 rows, see reduce_case), so in reduced mode its 4096- and
 * 65536-row cases shrink to 64 rows like any other (the 2048-column ones, long-row kernel, run once on 1 row,
 * repeats skipped). */
static void test_row_counts(void **state) {
  (void)state;
  uint64_t seed = 77;
  static const int64_t ns[] = {0, 1, 5, 4096};
  for (int i = 0; i < 4; ++i) {
    run_case(ns[i], 384, 384, 0, 6, GEN_RANDOM, 1, seed++);
    run_case(ns[i], 256, 256, 0, 8, GEN_TIES, 1, seed++);
    run_case(ns[i], 2048, 2048, 0, 32, GEN_SPECIAL, 1, seed++);
  }
  run_case(65536, 384, 384, 0, 6, GEN_RANDOM, 61, seed++);
  run_case(65536, 384, 390, 0, 6, GEN_TIES, 61, seed++);   /* stride not a multiple of 4: 4-byte loads */
  run_case(65536, 1000, 1000, 0, 16, GEN_SPECIAL, 97, seed++);
}

/* The radix kernel: longer rows and k > 16, every generator, misaligned and strided rows. */
static void test_radix_path(void **state) {
  (void)state;
  static const struct { int64_t cols; int32_t k; } shapes[] = {
      {1025, 1}, {1025, 16}, {1024, 17}, {2000, 64}, {4096, 100}, {4096, 4096}, {5000, 4096},
      {10007, 512}, {33000, 2048}, {65536, 1}, {100, 100}, {300, 17}};
  uint64_t seed = 1234;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
    for (int mode = 0; mode < GEN_COUNT; ++mode) run_case(5, shapes[s].cols, shapes[s].cols, 0, shapes[s].k, mode, 1, seed++);
    run_case(4, shapes[s].cols, shapes[s].cols + 3, 1, shapes[s].k, GEN_TIES, 1, seed++);
    run_case(4, shapes[s].cols, shapes[s].cols + 4, 0, shapes[s].k, GEN_SPECIAL, 1, seed++);
  }
}

/* The indexer's long rows: 64 x 131072, k 512 and 2048; also the largest supported row and k. */
static void test_long_rows(void **state) {
  (void)state;
  uint64_t seed = 4321;
  run_case(64, 131072, 131072, 0, 512, GEN_RANDOM, 1, seed++);
  run_case(64, 131072, 131072, 0, 2048, GEN_RANDOM, 1, seed++);
  run_case(8, 131072, 131072, 0, 2048, GEN_TIES, 1, seed++);
  run_case(8, 131072, 131072, 0, 512, GEN_SPECIAL, 1, seed++);
  run_case(4, 131072, 131075, 1, 2048, GEN_RANDOM, 1, seed++);
  run_case(2, 1 << 20, 1 << 20, 0, 4096, GEN_RANDOM, 1, seed++);
  run_case(2, 1 << 20, 1 << 20, 0, 4096, GEN_TIES, 1, seed++);
}

/* A rejected call changes nothing. */
static void test_rejected_call_writes_nothing(void **state) {
  (void)state;
  if (!gpu_test_part_mine()) return;   /* one case of DSV4_TEST_PART's deal */
  CUdeviceptr d_in = gpu_alloc(4 * 384 * 4), d_v = gpu_alloc(4 * 64), d_i = gpu_alloc(4 * 64);
  gpu_poison(d_v, 4 * 64);
  gpu_poison(d_i, 4 * 64);
  assert_status_names(dsv4_topk_select(g_ctx, NULL, (const float *)d_in, 4, 384, 383, 6, (float *)d_v, (int32_t *)d_i),
                      DSV4_ERR_INVALID_ARGUMENT, "row_stride");
  assert_status_names(dsv4_topk_select(g_ctx, NULL, (const float *)d_in, 4, 384, 384, 385, (float *)d_v, (int32_t *)d_i),
                      DSV4_ERR_UNSUPPORTED, "'k'");
  gpu_sync();
  int32_t h[64];
  gpu_download(h, d_i, sizeof h);
  for (int i = 0; i < 64; ++i) assert_int_equal(h[i], -1);
  gpu_download(h, d_v, sizeof h);
  for (int i = 0; i < 64; ++i) assert_int_equal(h[i], -1);
  gpu_free(d_in), gpu_free(d_v), gpu_free(d_i);
}

/* The op on a user stream (non-blocking): the result is ready after synchronizing that stream. */
static void test_stream(void **state) {
  (void)state;
  if (!gpu_test_part_mine()) return;   /* one case of DSV4_TEST_PART's deal */
  CUstream s;
  GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  const int64_t rows = 100, cols = 384;
  const int32_t k = 6;
  uint64_t seed = 99;
  float *in = malloc(4 * rows * cols), v[600], rv[6];
  int32_t idx[600], ri[6];
  for (int64_t i = 0; i < rows * cols; ++i) in[i] = gen_value(GEN_RANDOM, i % cols, &seed);
  CUdeviceptr d_in = gpu_alloc(4 * rows * cols), d_v = gpu_alloc(sizeof v), d_i = gpu_alloc(sizeof idx);
  gpu_upload(d_in, in, 4 * rows * cols);
  gpu_poison(d_v, sizeof v);
  gpu_poison(d_i, sizeof idx);
  assert_int_equal(dsv4_topk_select(g_ctx, s, (const float *)d_in, rows, cols, cols, k, (float *)d_v, (int32_t *)d_i), DSV4_OK);
  GPU_CHECK(cuStreamSynchronize(s));
  gpu_download(v, d_v, sizeof v);
  gpu_download(idx, d_i, sizeof idx);
  for (int64_t r = 0; r < rows; ++r) {
    oracle_topk_select_row(in + r * cols, cols, k, rv, ri);
    for (int j = 0; j < k; ++j) {
      assert_int_equal(idx[r * k + j], ri[j]);
      assert_int_equal(bits(v[r * k + j]), bits(rv[j]));
    }
  }
  GPU_CHECK(cuStreamDestroy(s));
  gpu_free(d_in), gpu_free(d_v), gpu_free(d_i);
  free(in);
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_warp_path),
      cmocka_unit_test(test_row_counts),
      cmocka_unit_test(test_radix_path),
      cmocka_unit_test(test_long_rows),
      cmocka_unit_test(test_rejected_call_writes_nothing),
      cmocka_unit_test(test_stream),
  };
  GPU_RUN_TESTS(g_ctx, tests);
}
