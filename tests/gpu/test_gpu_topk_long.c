/* GPU: dsv4_topk_select on long rows (kernel_src/topk_long.cu) against the FP64 oracle (oracle_topk_select_row).
 * Selection is exact: every index must match and every value must equal the input bit for bit. Covers the
 * indexer's whole matrix (cols 2048, 65536, 131072, 262144, 2^20 x k 1, 64, 512, 2048, 4096 x rows 1, 7, 64, 512;
 * every case with random rows and with an adversarial generator), every launch shape of the kernel (one block
 * per row; clusters of 2 to 16 blocks; whole 32-bit keys, 16-bit keys of the whole slice and of a prefix of it;
 * 256- and 512-thread blocks), strided and misaligned rows, adversarial rows (all equal, thousands of ties at
 * the cut, five distinct values, half and all NaN, +-inf, -0.0/+0.0, sorted both ways, a narrow range that needs
 * every radix digit), two runs bitwise equal, a CUDA graph replayed on new data, and two streams running the op
 * at once (no shared scratch). Outputs are poisoned before every call and checked past the end. The oracle is a
 * CPU sort per row, so large cases check a sample of rows (the determinism check covers all). */
#include <math.h>

#include "gpu_util.h"
#include "internal.h"   /* dsv4_now_ms */
#include "topk_long_shapes.h"
#include "oracle.h"

static dsv4_context *g_ctx;

enum { GEN_RANDOM, GEN_NARROW, GEN_EQUAL, GEN_CUT_TIES, GEN_HALF_NAN, GEN_ALL_NAN, GEN_INF, GEN_ZEROS, GEN_ASCENDING,
       GEN_DESCENDING, GEN_SPECIAL, GEN_FEW, GEN_BELL, GEN_COUNT,
       GEN_QUARTERS = GEN_COUNT, GEN_OUTLIER };   /* outside the adversarial sweep: test_sample_paths' */
static const char *const k_gen_names[] = {"random", "narrow", "all-equal", "ties-at-cut", "half-NaN", "all-NaN",
                                          "+-inf", "+-0", "ascending", "descending", "special", "five-values",
                                          "bell", "bell-quarters", "outlier"};

static double uniform(uint64_t *s) { return (double)(test_rand(s) >> 11) / 9007199254740992.0; }

static float gen_value(int mode, int64_t col, uint64_t *s) {
  switch (mode) {
    case GEN_RANDOM: return (float)((uniform(s) - 0.5) * 200.0);
    case GEN_NARROW: return 1.0f + (float)uniform(s) * 0.0005f;   /* one top digit: every level is needed */
    case GEN_EQUAL: return -3.5f;
    case GEN_CUT_TIES: {   /* ~1% at 2.0, ~20% at 1.0, the rest below: the k-th value sits inside a tie group */
      const uint64_t r = test_rand(s) % 100;
      return r == 0 ? 2.0f : r <= 20 ? 1.0f : (float)(uniform(s) - 1.0);
    }
    case GEN_HALF_NAN: {
      if (test_rand(s) & 1) {
        const uint32_t u = 0x7f800001u | (uint32_t)(test_rand(s) & 0x7fffffu) | (uint32_t)((test_rand(s) & 1) << 31);
        float f;
        memcpy(&f, &u, 4);
        return f;   /* NaN with a random payload and sign: must come out bit for bit */
      }
      return (float)(uniform(s) - 0.5);
    }
    case GEN_ALL_NAN: {
      const uint32_t u = 0x7fc00000u | (uint32_t)(test_rand(s) & 0x3fffffu) | (uint32_t)((test_rand(s) & 1) << 31);
      float f;
      memcpy(&f, &u, 4);
      return f;
    }
    case GEN_INF: {
      const uint64_t r = test_rand(s) % 8;
      return r < 2 ? INFINITY : r < 5 ? -INFINITY : r == 5 ? NAN : (float)(uniform(s) * 10.0 - 5.0);
    }
    case GEN_ZEROS: {
      const uint64_t r = test_rand(s) % 16;
      return r == 0 ? 1.0e-30f : r == 1 ? -1.0e-30f : r < 9 ? -0.0f : 0.0f;
    }
    case GEN_ASCENDING: return (float)col * 0.5f;
    case GEN_DESCENDING: return -(float)col;
    case GEN_FEW: return (float)(test_rand(s) % 5);   /* ~20% of the row ties with the k-th value */
    case GEN_BELL:       /* the bench's rows: a sum of four uniforms (most keys share few top digits) */
    case GEN_QUARTERS: { /* the same rounded to quarters: hundreds of copies of each value (the bench's ties) */
      double a = 0.0;
      for (int i = 0; i < 4; ++i) a += uniform(s) - 0.5;
      return mode == GEN_BELL ? (float)a * 3.46f : rintf((float)a * 3.46f * 4.0f) * 0.25f + 0.0f;
    }
    case GEN_OUTLIER: return col == 70000 ? 3.0e38f : (float)(uniform(s) - 0.5);   /* distinct values, one huge */
    default:
      switch (test_rand(s) % 10) {
        case 0: return NAN;
        case 1: return -NAN;
        case 2: return INFINITY;
        case 3: return -INFINITY;
        case 4: return -0.0f;
        case 5: return 0.0f;
        case 6: return 3.0e38f;
        case 7: return -1.0e-40f;   /* subnormal */
        default: return (float)(uniform(s) - 0.5) * 4.0f;
      }
  }
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* Prints the launch shape the library takes for this shape on this device (clusters as the device runs them). */
static void print_plan(int64_t rows, int64_t cols, int32_t k) {
  dsv4_topk_long_plan p;
  dsv4_status st = dsv4_topk_long_plan_ctx(g_ctx, rows, cols, k, &p);
  if (st != DSV4_OK) fprintf(stderr, "dsv4_topk_long_plan_ctx: %s\n", dsv4_last_error());
  assert_int_equal(st, DSV4_OK);
  printf("    plan %lld x %lld k=%d: %d threads, cluster %d, slice %d (%d kept as %d-bit keys), %d candidates, "
         "%u B smem, grid %u\n", (long long)rows, (long long)cols, k, p.threads, p.cluster, p.slice, p.dense,
         p.key_bits, p.cand_cap, p.smem, p.grid);
}

/* One shape: rows x cols (rows row_stride apart, the input starting `offset` floats into its buffer), k. Runs
 * the op twice (outputs poisoned before each), checks the two results are bitwise equal and that nothing was
 * written past rows*k, and checks every `sample`-th row and the last against the oracle. DSV4_TEST_REDUCED
 * (racecheck): the first row alone, launched with the full case's plan, and a plan already run with the same
 * data kind skipped (gpu_topk_long_reduce). */
enum { CASE_NOT_MINE, CASE_RAN, CASE_UNSUPPORTED };
static int run_case_with(const dsv4_topk_long_plan *shape, int64_t rows, int64_t cols, int64_t row_stride,
                         int64_t offset, int32_t k, int mode, int64_t sample, uint64_t seed) {
  if (!gpu_test_part_mine()) return CASE_NOT_MINE;
  int64_t plan_rows = rows;
  if (!shape && gpu_test_reduced() &&
      !gpu_topk_long_reduce(g_ctx, &rows, &plan_rows, cols, row_stride, offset, k, mode, k_gen_names[mode], &sample))
    return CASE_NOT_MINE;
  const size_t in_elems = (size_t)((rows - 1) * row_stride + cols) + (size_t)offset;
  float *in = malloc(4 * in_elems);
  assert_non_null(in);
  for (size_t i = 0; i < in_elems; ++i)
    in[i] = gen_value(mode, (int64_t)((i - (size_t)offset) % (size_t)row_stride), &seed);
  const size_t out = (size_t)rows * (size_t)k, pad = 64;
  CUdeviceptr d_in = gpu_alloc(4 * in_elems), d_v = gpu_alloc(4 * (out + pad)), d_i = gpu_alloc(4 * (out + pad));
  gpu_upload(d_in, in, 4 * in_elems);
  float *v[2];
  int32_t *idx[2];
  for (int run = 0; run < 2; ++run) {
    gpu_poison(d_v, 4 * (out + pad));
    gpu_poison(d_i, 4 * (out + pad));
    const float *src = (const float *)(d_in + 4 * (size_t)offset);
    dsv4_status st = shape ? dsv4_topk_long_enqueue_shape(g_ctx, NULL, shape, src, rows, cols, row_stride, k,
                                                          (float *)d_v, (int32_t *)d_i)
                           : gpu_topk_call(g_ctx, plan_rows, src, rows, cols, row_stride, k, d_v, d_i);
    if (shape && st == DSV4_ERR_UNSUPPORTED && run == 0) {   /* a shape this device does not run: skipped */
      gpu_free(d_in), gpu_free(d_v), gpu_free(d_i);
      free(in);
      return CASE_UNSUPPORTED;
    }
    if (st != DSV4_OK)
      fprintf(stderr, "%s: %s\n", shape ? "dsv4_topk_long_enqueue_shape" : "dsv4_topk_select", dsv4_last_error());
    assert_int_equal(st, DSV4_OK);
    gpu_sync();
    v[run] = malloc(4 * (out + pad));
    idx[run] = malloc(4 * (out + pad));
    assert_non_null(v[run]);
    assert_non_null(idx[run]);
    gpu_download(v[run], d_v, 4 * (out + pad));
    gpu_download(idx[run], d_i, 4 * (out + pad));
  }
  int64_t wrong = 0, checked = 0;
  float *rv = malloc(4 * (size_t)k);
  int32_t *ri = malloc(4 * (size_t)k);
  for (int64_t r = 0; r < rows; ++r) {
    if (r % sample != 0 && r != rows - 1) continue;
    ++checked;
    oracle_topk_select_row(in + offset + r * row_stride, cols, k, rv, ri);
    for (int32_t j = 0; j < k; ++j) {
      const size_t o = (size_t)r * k + j;
      if (idx[0][o] != ri[j] || bits(v[0][o]) != bits(rv[j])) {
        if (wrong < 5)
          fprintf(stderr, "rows %lld cols %lld stride %lld off %lld k %d %s: row %lld slot %d: got (%d, %a = %08x) want (%d, %a = %08x)\n",
                  (long long)rows, (long long)cols, (long long)row_stride, (long long)offset, k, k_gen_names[mode],
                  (long long)r, j, idx[0][o], v[0][o], bits(v[0][o]), ri[j], rv[j], bits(rv[j]));
        ++wrong;
        break;
      }
    }
  }
  int64_t past = 0;
  for (size_t i = out; i < out + pad; ++i) past += idx[0][i] != -1 || bits(v[0][i]) != 0xFFFFFFFFu;
  if (past) fprintf(stderr, "rows %lld cols %lld k %d %s: %lld values written past the end\n", (long long)rows,
                    (long long)cols, k, k_gen_names[mode], (long long)past);
  const int same = memcmp(v[0], v[1], 4 * (out + pad)) == 0 && memcmp(idx[0], idx[1], 4 * (out + pad)) == 0;
  if (!same) fprintf(stderr, "rows %lld cols %lld k %d %s: two runs differ\n", (long long)rows, (long long)cols, k,
                     k_gen_names[mode]);
  assert_true(checked > 0);
  assert_int_equal(wrong, 0);
  assert_int_equal(past, 0);
  assert_true(same);
  gpu_free(d_in), gpu_free(d_v), gpu_free(d_i);
  free(in), free(v[0]), free(v[1]), free(idx[0]), free(idx[1]), free(rv), free(ri);
  return CASE_RAN;
}

/* run_case with the launch dsv4_topk_select picks. */
static void run_case(int64_t rows, int64_t cols, int64_t row_stride, int64_t offset, int32_t k, int mode,
                     int64_t sample, uint64_t seed) {
  run_case_with(NULL, rows, cols, row_stride, offset, k, mode, sample, seed);
}

/* How many rows to skip between oracle checks so a case checks about `budget` elements' worth of rows. */
static int64_t sample_for(int64_t rows, int64_t cols, int64_t budget) {
  int64_t s = rows * cols / budget;
  if (s < 1) s = 1;
  return s;
}

/* The matrix of the issue: every (cols, k, rows) with k <= cols, rows capped so a case holds at most 2^25
 * elements (512 -> 64 -> 7 -> 1). Each case runs twice: random rows, and one of the adversarial generators in
 * turn (so every generator meets every kind of launch shape somewhere); every third case has strided rows. */
static void test_shapes(void **state) {
  (void)state;
  static const int64_t colsv[] = {2048, 65536, 131072, 262144, 1 << 20};
  static const int32_t ks[] = {1, 64, 512, 2048, 4096};
  static const int64_t rowsv[] = {1, 7, 64, 512};
  uint64_t seed = 2024;
  int n = 0;
  for (size_t c = 0; c < 5; ++c)
    for (size_t j = 0; j < 5; ++j)
      for (size_t r = 0; r < 4; ++r) {
        const int64_t cols = colsv[c];
        const int32_t k = ks[j];
        if (k > cols) continue;
        int64_t rows = rowsv[r];
        if (rows * cols > ((int64_t)1 << 25)) continue;   /* covered by the next smaller row count */
        const int64_t stride = n % 3 == 2 ? cols + 4 : cols;
        print_plan(rows, cols, k);
        run_case(rows, cols, stride, 0, k, GEN_RANDOM, sample_for(rows, cols, (int64_t)1 << 20), seed++);
        const int mode = 1 + n % (GEN_COUNT - 1);
        run_case(rows, cols, stride, 0, k, mode, sample_for(rows, cols, (int64_t)1 << 20), seed++);
        ++n;
      }
  assert_true(n >= 70);
}

/* The bench shapes, every row checked. On sm_90+ a decode row must be split over a cluster (else the library
 * fell back to one block per row: correct, but far from the latency target). */
static void test_indexer_shapes(void **state) {
  (void)state;
  uint64_t seed = 77;
  if (g_ctx->cc_major >= 9) {
    dsv4_topk_long_plan p;
    assert_int_equal(dsv4_topk_long_plan_ctx(g_ctx, 1, 131072, 512, &p), DSV4_OK);
    if (p.cluster < 16) printf("    NOTE: 1 x 131072 runs on clusters of %d blocks (16 expected on H100/H200)\n", p.cluster);
    assert_true(p.cluster >= 2);
  }
  static const int32_t ks[] = {512, 2048};
  for (int j = 0; j < 2; ++j) {
    print_plan(1, 131072, ks[j]);
    run_case(1, 131072, 131072, 0, ks[j], GEN_RANDOM, 1, seed++);
    run_case(1, 131072, 131072, 0, ks[j], GEN_BELL, 1, seed++);
    print_plan(64, 131072, ks[j]);
    run_case(64, 131072, 131072, 0, ks[j], GEN_RANDOM, 1, seed++);
    run_case(64, 131072, 131072, 0, ks[j], GEN_BELL, 1, seed++);
    print_plan(512, 65536, ks[j]);
    run_case(512, 65536, 65536, 0, ks[j], GEN_RANDOM, 8, seed++);
    run_case(512, 65536, 65536, 0, ks[j], GEN_BELL, 8, seed++);
  }
}

/* Adversarial rows at the shapes of every code path: clusters of 16 (or 8) with whole 32-bit keys (1 x 131072,
 * 7 x 131072), clusters with 16-bit keys of the whole slice (2 x 2^20) and of a prefix (12 x 2^20: clusters of 8
 * with 131072 columns a block), a cluster of 2 with 16-bit keys (64 x 131072), one block per row with 16-bit keys
 * (512 x 65536) and of a prefix (200 x 262144), 256-thread blocks (300 x 2048, 5 x 8192 with k = 4096), k = cols.
 * All-equal and narrow rows overflow the candidate buffers and the hit list (the slow paths). */
static void test_adversarial(void **state) {
  (void)state;
  uint64_t seed = 999;
  static const struct { int64_t rows, cols; int32_t k; int64_t sample; } shapes[] = {
      {1, 131072, 2048, 1},  {7, 131072, 4096, 1}, {64, 131072, 512, 16}, {2, 1 << 20, 4096, 1},
      {12, 1 << 20, 64, 5},  {512, 65536, 2048, 97}, {200, 262144, 512, 67}, {300, 2048, 64, 7},
      {5, 8192, 4096, 1},    {3, 262144, 4096, 1},  {2, 4096, 4096, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
    print_plan(shapes[s].rows, shapes[s].cols, shapes[s].k);
    for (int mode = 0; mode < GEN_COUNT; ++mode)
      run_case(shapes[s].rows, shapes[s].cols, shapes[s].cols, 0, shapes[s].k, mode, shapes[s].sample, seed++);
  }
}

/* The sample-threshold select (kernel_src/topk_sample.cu), which dsv4_topk_select takes on sm_90+ for a few rows of
 * 131072 columns (1..7 on the H200 measured) and k <= 1024 (checked first, through the launcher's own decision):
 * rows it selects itself (random, bell, sorted), rows it sends to topk_long's row body from its sample (quarters and the other tied rows:
 * a threshold value with hundreds of copies) and after its copy (outlier at k = 512 and 1024: one 3e38 among values
 * below 1 puts every other candidate into its lowest bucket; at k = 1 its ~256 candidates stay on the sample path),
 * every adversarial generator, at k = 512 and 1024 on 1 row and on 7 (7 clusters at once), k = 1 and 700 on one
 * row. The emulator (test_topk_long_emu's test_sample_select) checks which path each kind of row takes. On other
 * GPUs (or other plans) the same calls take topk_long and must give the same results. */
static void test_sample_paths(void **state) {
  (void)state;
  uint64_t seed = 4242;
  print_plan(1, 131072, 512);
  /* Where topk_long's plan for a shape is the sample kernel's (clusters of 16 blocks of 512 threads, slices of at
   * most 8192: a few rows of 131072 on an H100 or H200) and k <= 1024, the call must launch it, or the cases below
   * would pass on topk_long alone. */
  static const struct { int64_t rows; int32_t k; } picks[] = {{1, 512}, {7, 1024}, {8, 512}, {1, 1}, {1, 700},
                                                             {1, 1025}, {1, 2048}};
  int sample_shapes = 0;
  for (size_t i = 0; i < sizeof picks / sizeof picks[0]; ++i) {
    dsv4_topk_long_plan p;
    assert_int_equal(dsv4_topk_long_plan_ctx(g_ctx, picks[i].rows, 131072, picks[i].k, &p), DSV4_OK);
    const bool want = g_ctx->cc_major >= 9 && p.cluster == 16 && p.threads == 512 && p.slice <= 8192 &&
                      picks[i].k <= 1024;
    bool takes = !want;
    assert_int_equal(dsv4_topk_select_takes_sample(g_ctx, picks[i].rows, 131072, picks[i].k, &takes), DSV4_OK);
    if (takes != want)
      fail_msg("%lld x 131072 k = %d: the sample kernel %s", (long long)picks[i].rows, picks[i].k,
               takes ? "launches" : "does not launch");
    sample_shapes += takes;
  }
  printf("    the sample kernel takes %d of %d shapes here%s\n", sample_shapes, (int)(sizeof picks / sizeof picks[0]),
         g_ctx->cc_major >= 9 ? "" : " (it needs sm_90)");
  if (g_ctx->cc_major == 9) assert_true(sample_shapes >= 4);   /* H100, H200: 1 row at k = 512, 1, 700 and more */
  for (int mode = 0; mode <= GEN_OUTLIER; ++mode) {
    run_case(1, 131072, 131072, 0, 512, mode, 1, seed++);
    run_case(7, 131072, 131072, 0, 1024, mode, 1, seed++);
  }
  static const int32_t ks[] = {1, 700, 1024};
  for (int j = 0; j < 3; ++j) {
    run_case(1, 131072, 131072, 0, ks[j], GEN_RANDOM, 1, seed++);
    run_case(1, 131072, 131072, 0, ks[j], GEN_OUTLIER, 1, seed++);
  }
  run_case(8, 131072, 131072, 0, 512, GEN_QUARTERS, 1, seed++);
}

/* Strided rows (row_stride > cols), aligned and misaligned (every row starting 4 bytes past a 16-byte boundary). */
static void test_strided(void **state) {
  (void)state;
  uint64_t seed = 4242;
  run_case(7, 131072, 131072 + 4, 0, 2048, GEN_RANDOM, 1, seed++);
  run_case(7, 131072, 131072 + 3, 1, 2048, GEN_CUT_TIES, 1, seed++);
  run_case(64, 65536, 70000, 0, 512, GEN_SPECIAL, 7, seed++);
  run_case(3, 1 << 20, (1 << 20) + 5, 3, 4096, GEN_NARROW, 1, seed++);
  run_case(33, 4097, 5000, 2, 100, GEN_HALF_NAN, 1, seed++);
  run_case(16, 131071, 131073, 1, 4096, GEN_RANDOM, 3, seed++);   /* odd cols: a partial last vector */
  run_case(2, 1025, 1029, 1, 1025, GEN_SPECIAL, 1, seed++);        /* k == cols */
}

/* A CUDA graph holding the op, replayed on new input each time (capture after a first call that compiled it). */
static void test_graph(void **state) {
  (void)state;
  if (!gpu_test_part_mine()) return;   /* one case of DSV4_TEST_PART's deal */
  const bool reduced = gpu_test_reduced();   /* racecheck: one row (the same cluster plan), one replay */
  const int64_t rows = reduced ? 1 : 7, cols = 131072;
  const int32_t k = 2048;
  CUstream s;
  GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  float *in = malloc(4 * (size_t)(rows * cols)), *v = malloc(4 * (size_t)(rows * k)), *rv = malloc(4 * (size_t)k);
  int32_t *idx = malloc(4 * (size_t)(rows * k)), *ri = malloc(4 * (size_t)k);
  CUdeviceptr d_in = gpu_alloc(4 * (size_t)(rows * cols)), d_v = gpu_alloc(4 * (size_t)(rows * k)),
              d_i = gpu_alloc(4 * (size_t)(rows * k));
  GPU_CHECK(cuMemsetD8(d_in, 0, 4 * (size_t)(rows * cols)));
  gpu_sync();   /* the memset is done before the non-blocking stream reads it */
  assert_int_equal(dsv4_topk_select(g_ctx, s, (const float *)d_in, rows, cols, cols, k, (float *)d_v, (int32_t *)d_i),
                   DSV4_OK);
  GPU_CHECK(cuStreamSynchronize(s));
  CUgraph graph;
  CUgraphExec exec;
  GPU_CHECK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
  dsv4_status st = dsv4_topk_select(g_ctx, s, (const float *)d_in, rows, cols, cols, k, (float *)d_v, (int32_t *)d_i);
  GPU_CHECK(cuStreamEndCapture(s, &graph));
  assert_int_equal(st, DSV4_OK);
  GPU_CHECK(cuGraphInstantiateWithFlags(&exec, graph, 0));
  uint64_t seed = 31337;
  for (int rep = 0; rep < (reduced ? 1 : 3); ++rep) {
    const int mode = rep == 0 ? GEN_RANDOM : rep == 1 ? GEN_CUT_TIES : GEN_NARROW;
    for (int64_t i = 0; i < rows * cols; ++i) in[i] = gen_value(mode, i % cols, &seed);
    gpu_upload(d_in, in, 4 * (size_t)(rows * cols));
    gpu_poison(d_v, 4 * (size_t)(rows * k));
    gpu_poison(d_i, 4 * (size_t)(rows * k));
    GPU_CHECK(cuGraphLaunch(exec, s));
    GPU_CHECK(cuStreamSynchronize(s));
    gpu_download(v, d_v, 4 * (size_t)(rows * k));
    gpu_download(idx, d_i, 4 * (size_t)(rows * k));
    for (int64_t r = 0; r < rows; ++r) {
      oracle_topk_select_row(in + r * cols, cols, k, rv, ri);
      for (int32_t j = 0; j < k; ++j) {
        if (idx[r * k + j] != ri[j] || bits(v[r * k + j]) != bits(rv[j]))
          fprintf(stderr, "graph replay %d (%s): row %lld slot %d: got %d want %d\n", rep, k_gen_names[mode],
                  (long long)r, j, idx[r * k + j], ri[j]);
        assert_int_equal(idx[r * k + j], ri[j]);
        assert_int_equal(bits(v[r * k + j]), bits(rv[j]));
      }
    }
  }
  GPU_CHECK(cuGraphExecDestroy(exec));
  GPU_CHECK(cuGraphDestroy(graph));
  GPU_CHECK(cuStreamDestroy(s));
  gpu_free(d_in), gpu_free(d_v), gpu_free(d_i);
  free(in), free(v), free(rv), free(idx), free(ri);
}

/* Two streams running the op on different data at the same time, many times: each result is its own oracle's
 * (a kernel with shared scratch would mix them). */
static void test_concurrent_streams(void **state) {
  (void)state;
  if (!gpu_test_part_mine()) return;   /* one case of DSV4_TEST_PART's deal */
  const bool reduced = gpu_test_reduced();   /* racecheck: one row, two rounds */
  const int64_t rows = reduced ? 1 : 3, cols = 131072;
  const int32_t k = 512;
  CUstream s[2];
  float *in[2], *v = malloc(4 * (size_t)(rows * k)), *rv = malloc(4 * (size_t)k);
  int32_t *idx = malloc(4 * (size_t)(rows * k)), *ri = malloc(4 * (size_t)k);
  CUdeviceptr d_in[2], d_v[2], d_i[2];
  uint64_t seed = 5150;
  for (int t = 0; t < 2; ++t) {
    GPU_CHECK(cuStreamCreate(&s[t], CU_STREAM_NON_BLOCKING));
    in[t] = malloc(4 * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; ++i) in[t][i] = gen_value(t ? GEN_CUT_TIES : GEN_RANDOM, i % cols, &seed);
    d_in[t] = gpu_alloc(4 * (size_t)(rows * cols));
    d_v[t] = gpu_alloc(4 * (size_t)(rows * k));
    d_i[t] = gpu_alloc(4 * (size_t)(rows * k));
    gpu_upload(d_in[t], in[t], 4 * (size_t)(rows * cols));
    gpu_poison(d_v[t], 4 * (size_t)(rows * k));
    gpu_poison(d_i[t], 4 * (size_t)(rows * k));
  }
  for (int it = 0; it < (reduced ? 2 : 50); ++it)
    for (int t = 0; t < 2; ++t)
      assert_int_equal(dsv4_topk_select(g_ctx, s[t], (const float *)d_in[t], rows, cols, cols, k, (float *)d_v[t],
                                        (int32_t *)d_i[t]),
                       DSV4_OK);
  for (int t = 0; t < 2; ++t) GPU_CHECK(cuStreamSynchronize(s[t]));
  for (int t = 0; t < 2; ++t) {
    gpu_download(v, d_v[t], 4 * (size_t)(rows * k));
    gpu_download(idx, d_i[t], 4 * (size_t)(rows * k));
    for (int64_t r = 0; r < rows; ++r) {
      oracle_topk_select_row(in[t] + r * cols, cols, k, rv, ri);
      for (int32_t j = 0; j < k; ++j) {
        assert_int_equal(idx[r * k + j], ri[j]);
        assert_int_equal(bits(v[r * k + j]), bits(rv[j]));
      }
    }
    GPU_CHECK(cuStreamDestroy(s[t]));
    gpu_free(d_in[t]), gpu_free(d_v[t]), gpu_free(d_i[t]);
    free(in[t]);
  }
  free(v), free(rv), free(idx), free(ri);
}

/* Every code path of the kernel on small rows, through dsv4_topk_long_enqueue_shape: both block sizes, every
 * cluster size the device runs (up to 16 on sm_90+, 1 before), and the six pool kinds of topk_long_shapes.h
 * (whole or 16-bit keys, a cached prefix or none, a candidate buffer of the whole slice or of 4 entries) on
 * 1 or 2 rows of 5000 to 40000 columns, the generators taken in turn (every pool kind meets all of them), every
 * third case strided and every fifth misaligned. The planner takes these paths only for rows of hundreds of
 * thousands of columns: here a sanitizer sees them at a few percent of the cost
 * (DSV4_SANITIZE_FILTERS='racecheck:test_gpu_topk_long=test_forced_shapes'). Shapes past the device's shared
 * memory or with a cluster size the device does not run (DSV4_ERR_UNSUPPORTED from the hook) are skipped and
 * counted. */
static void test_forced_shapes(void **state) {
  (void)state;
  int ran = 0, unsupported = 0;
  /* DSV4_TEST_FORCED_CASES=first-last: only those cases (a sanitizer run split over several machine calls) */
  int first = 0, last = TOPK_LONG_FORCED_CASES - 1;
  const char *range = getenv("DSV4_TEST_FORCED_CASES");
  if (range && *range) {
    assert_int_equal(sscanf(range, "%d-%d", &first, &last), 2);
    assert_true(first >= 0 && first <= last && last < TOPK_LONG_FORCED_CASES);
    printf("    DSV4_TEST_FORCED_CASES: cases %d to %d of 0..%d\n", first, last, TOPK_LONG_FORCED_CASES - 1);
  }
  for (int i = first; i <= last; ++i) {
    const topk_long_forced c = topk_long_forced_case(i);
    const int64_t rows = 1 + i % 2, stride = i % 3 == 2 ? c.cols + 4 : c.cols, offset = i % 5 == 4 ? 1 : 0;
    const double t0 = dsv4_now_ms();
    switch (run_case_with(&c.shape, rows, c.cols, stride, offset, c.k, i % GEN_COUNT, 1, 31337u + (uint64_t)i)) {
      case CASE_RAN:
        ++ran;
        /* one line a case: under a sanitizer a part that runs out of time still shows which cases ran clean */
        fprintf(stderr, "    forced case %d: %d threads, cluster %d, pool kind %d, %lld x %lld, k %d: %.0f ms\n", i,
                c.threads, c.cluster, c.pool_kind, (long long)rows, (long long)c.cols, c.k, dsv4_now_ms() - t0);
        break;
      case CASE_UNSUPPORTED: ++unsupported; break;
      default: break;   /* another part's case, or a reduced-mode repeat */
    }
  }
  printf("    forced shapes: %d run here, %d that this device does not run (shared memory, cluster size)\n", ran,
         unsupported);
  assert_true(ran > 0);   /* (every part of a DSV4_TEST_PART split gets some of the 300 cases) */
}

/* A rejected long-row call changes nothing. */
static void test_rejected_call_writes_nothing(void **state) {
  (void)state;
  if (!gpu_test_part_mine()) return;   /* one case of DSV4_TEST_PART's deal */
  const int64_t cols = 131072;
  CUdeviceptr d_in = gpu_alloc(4 * (size_t)cols), d_v = gpu_alloc(4 * 4096), d_i = gpu_alloc(4 * 4096);
  gpu_poison(d_v, 4 * 4096);
  gpu_poison(d_i, 4 * 4096);
  assert_status_names(dsv4_topk_select(g_ctx, NULL, (const float *)d_in, 1, cols, cols, 4097, (float *)d_v, (int32_t *)d_i),
                      DSV4_ERR_UNSUPPORTED, "'k'");
  assert_status_names(dsv4_topk_select(g_ctx, NULL, (const float *)d_in, 1, cols, cols - 1, 512, (float *)d_v, (int32_t *)d_i),
                      DSV4_ERR_INVALID_ARGUMENT, "row_stride");
  gpu_sync();
  int32_t *h = malloc(4 * 4096);
  gpu_download(h, d_i, 4 * 4096);
  for (int i = 0; i < 4096; ++i) assert_int_equal(h[i], -1);
  gpu_download(h, d_v, 4 * 4096);
  for (int i = 0; i < 4096; ++i) assert_int_equal(h[i], -1);
  free(h);
  gpu_free(d_in), gpu_free(d_v), gpu_free(d_i);
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_indexer_shapes),
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_adversarial),
      cmocka_unit_test(test_sample_paths),
      cmocka_unit_test(test_strided),
      cmocka_unit_test(test_graph),
      cmocka_unit_test(test_concurrent_streams),
      cmocka_unit_test(test_forced_shapes),
      cmocka_unit_test(test_rejected_call_writes_nothing),
  };
  GPU_RUN_TESTS(g_ctx, tests);
}
