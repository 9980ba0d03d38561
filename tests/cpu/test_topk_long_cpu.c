/* The long-row top-k (kernel_src/topk_long.cu) with no GPU: which kernel dsv4_topk_select picks, the launch
 * shape (dsv4_topk_long_plan_for) on H200-, A100- and small-GPU-like devices (exact shapes for the indexer's
 * rows and invariants over a sweep), argument checks of long-row calls, and NVRTC compiles of the kernel for
 * sm_80, sm_90a and sm_100a at the k and block sizes the planner uses. */
#include "test_util.h"
#include "jit.h"
#include "ops/ops.h"
#include "topk_long_shapes.h"
#include "jit_test_util.h"

#define FAKE_CTX ((dsv4_context *)(uintptr_t)0x1000)
#define DEV_F ((float *)(uintptr_t)0x7f0000001000ull)
#define DEV_F2 ((float *)(uintptr_t)0x7f0000002000ull)
#define DEV_I ((int32_t *)(uintptr_t)0x7f0000003000ull)

enum { INV = DSV4_ERR_INVALID_ARGUMENT, UNS = DSV4_ERR_UNSUPPORTED };

/* Devices: SMs, opt-in shared memory per block (bytes), largest cluster. */
typedef struct { const char *name; int sms, smem, max_cluster; } device;
static const device k_h200 = {"H200", 132, 232448, 16};
static const device k_a100 = {"A100", 108, 166912, 1};
static const device k_small = {"sm_86", 84, 101376, 1};
static const device k_b200 = {"B200", 148, 232448, 16};

static dsv4_topk_long_plan plan_on(const device *d, int64_t rows, int64_t cols, int32_t k) {
  dsv4_topk_long_plan p;
  dsv4_status s = dsv4_topk_long_plan_for(rows, cols, k, d->sms, d->smem, d->max_cluster, &p);
  if (s != DSV4_OK) fprintf(stderr, "%s %lld x %lld k %d: %s\n", d->name, (long long)rows, (long long)cols, k, dsv4_last_error());
  assert_int_equal(s, DSV4_OK);
  return p;
}

/* ---------------- kernel choice ---------------- */
static void test_kernel_choice(void **state) {
  (void)state;
  dsv4_kernel_spec s;
  /* The warp path is unchanged. */
  dsv4_topk_select_spec(384, 6, &s);
  assert_string_equal(s.source, "topk_select.cu");
  assert_string_equal(s.name_expr, "dsv4::topk_select_warp<6, 12>");
  dsv4_topk_select_spec(1024, 16, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_select_warp<16, 32>");
  /* Everything else takes topk_long<k rounded up to a power of two, 256 or 512 threads>. */
  static const struct { int64_t cols; int32_t k; const char *name; } cases[] = {
      {1025, 16, "dsv4::topk_long<16, 256>"},      {1024, 17, "dsv4::topk_long<32, 256>"},
      {8192, 4096, "dsv4::topk_long<4096, 256>"},  {8193, 1, "dsv4::topk_long<1, 512>"},
      {65536, 1, "dsv4::topk_long<1, 512>"},      {131072, 512, "dsv4::topk_long<512, 512>"},
      {131072, 2047, "dsv4::topk_long<2048, 512>"}, {131072, 2048, "dsv4::topk_long<2048, 512>"},
      {1 << 20, 4096, "dsv4::topk_long<4096, 512>"}, {100, 100, "dsv4::topk_long<128, 256>"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    dsv4_topk_select_spec(cases[i].cols, cases[i].k, &s);
    assert_string_equal(s.source, "topk_long.cu");
    assert_string_equal(s.name_expr, cases[i].name);
    dsv4_kernel_spec t;
    dsv4_topk_long_spec(cases[i].cols, cases[i].k, &t);
    assert_string_equal(t.name_expr, s.name_expr);
    assert_string_equal(t.tag, s.tag);
  }
}

/* ---------------- launch shapes ---------------- */
/* The pool's layout (topk_long.cu): the key cache (32- or 16-bit keys of `dense` columns, rounded up to 8), the
 * hit list beside 16-bit keys (4096 positions), the candidate buffer (8 bytes an entry). */
static int64_t pool_used(const dsv4_topk_long_plan *p) {
  const int64_t d8 = ((int64_t)p->dense + 7) / 8 * 8;
  return (p->key_bits == 32 ? 4 * d8 : 2 * d8 + 4 * 4096) + 8 * (int64_t)p->cand_cap;
}

static void test_plan_indexer_shapes(void **state) {
  (void)state;
  /* Decode, one row: a cluster of 16 blocks (where the device runs it), 8192 columns each, whole keys kept. */
  dsv4_topk_long_plan p = plan_on(&k_h200, 1, 131072, 512);
  assert_int_equal(p.threads, 512);
  assert_int_equal(p.cluster, 16);
  assert_int_equal(p.slice, 8192);
  assert_int_equal(p.cached, 1);
  assert_int_equal(p.dense, 8192);
  assert_int_equal(p.key_bits, 32);
  assert_int_equal(p.cand_cap, 8192);   /* every column of the slice fits the candidate buffer */
  assert_int_equal(p.grid, 16);
  assert_int_equal(p.kp, 512);
  assert_int_equal(p.smem, 232448u);
  /* The sample-threshold kernel runs with this plan, for k up to 1024 (at 2048 it measured slower), not with the
   * portable one below, and never below 4097 columns (its sample's runs would overlap). */
  assert_true(dsv4_topk_sample_takes(&p, 131072, 512));
  assert_true(dsv4_topk_sample_takes(&p, 131072, 1));
  assert_true(dsv4_topk_sample_takes(&p, 131072, 1024));
  assert_false(dsv4_topk_sample_takes(&p, 131072, 1025));
  assert_false(dsv4_topk_sample_takes(&p, 131072, 2048));
  assert_false(dsv4_topk_sample_takes(&p, 4096, 512));
  /* The portable cluster size: 8 blocks of 16384 columns. */
  assert_int_equal(dsv4_topk_long_plan_for(1, 131072, 512, 132, 232448, 8, &p), DSV4_OK);
  assert_false(dsv4_topk_sample_takes(&p, 131072, 512));
  assert_int_equal(p.cluster, 8);
  assert_int_equal(p.slice, 16384);
  assert_int_equal(p.key_bits, 32);
  assert_int_equal(p.cached, 1);
  /* 64 rows: 2 blocks per row (128 blocks on 132 SMs), 65536 columns each: the top 16 bits of every key kept
   * (128 KiB), a 16 KiB hit list and the candidate buffer in the rest. */
  p = plan_on(&k_h200, 64, 131072, 2048);
  assert_int_equal(p.cluster, 2);
  assert_int_equal(p.slice, 65536);
  assert_int_equal(p.cached, 1);
  assert_int_equal(p.key_bits, 16);
  assert_int_equal(p.pool_words, (232448 - 1024 - 16384 - 8 * 2048) / 4);
  assert_int_equal(p.cand_cap, (4 * p.pool_words - 2 * 65536 - 16384) / 8);
  assert_int_equal(p.grid, 128);
  assert_int_equal(p.kp, 2048);
  /* 7 rows (the middle of decode): 16 blocks per row. */
  p = plan_on(&k_h200, 7, 131072, 512);
  assert_int_equal(p.cluster, 16);
  assert_int_equal(p.grid, 112);
  /* 512 rows: one block per row, 16-bit keys of the whole row. */
  p = plan_on(&k_h200, 512, 65536, 512);
  assert_int_equal(p.cluster, 1);
  assert_int_equal(p.grid, 512);
  assert_int_equal(p.cached, 1);
  assert_int_equal(p.key_bits, 16);
  /* 1M columns, 2 rows: 16 blocks of 65536 columns, all kept (16-bit); with clusters of 8 only a prefix. */
  p = plan_on(&k_h200, 2, 1 << 20, 4096);
  assert_int_equal(p.cluster, 16);
  assert_int_equal(p.slice, 65536);
  assert_int_equal(p.cached, 1);
  assert_int_equal(p.kp, 4096);
  assert_int_equal(dsv4_topk_long_plan_for(2, 1 << 20, 4096, 132, 232448, 8, &p), DSV4_OK);
  assert_int_equal(p.cluster, 8);
  assert_int_equal(p.slice, 131072);
  assert_int_equal(p.cached, 0);
  assert_int_equal(p.key_bits, 16);
  assert_int_equal(p.cand_cap, 4096);
  /* Short rows: 256 threads, the whole row's keys, one block per row, a small pool (several blocks per SM). */
  p = plan_on(&k_h200, 1000, 2048, 64);
  assert_int_equal(p.threads, 256);
  assert_int_equal(p.cluster, 1);
  assert_int_equal(p.cached, 1);
  assert_int_equal(p.key_bits, 32);
  assert_int_equal(p.cand_cap, 2048);
  assert_int_equal(p.pool_words, (4 * 2048 + 8 * 2048) / 4);
  assert_int_equal(p.grid, 1000);
  /* No clusters (sm_80): one block per row whatever the row count; 16-bit keys of a prefix. */
  p = plan_on(&k_a100, 1, 131072, 2048);
  assert_int_equal(p.cluster, 1);
  assert_int_equal(p.slice, 131072);
  assert_int_equal(p.cached, 0);
  assert_int_equal(p.key_bits, 16);
  assert_int_equal(p.smem, 166912u);
  /* The device may allow fewer blocks per cluster. */
  assert_int_equal(dsv4_topk_long_plan_for(1, 131072, 512, 132, 232448, 4, &p), DSV4_OK);
  assert_int_equal(p.cluster, 4);
  assert_int_equal(p.slice, 32768);
  /* Too little shared memory for the survivor list: a named failure, not a launch that cannot run. */
  assert_status_names(dsv4_topk_long_plan_for(1, 131072, 4096, 132, 40000, 8, &p), UNS, "shared memory");
}

static void test_plan_invariants(void **state) {
  (void)state;
  static const int64_t rowsv[] = {1, 2, 3, 7, 8, 9, 16, 17, 33, 64, 65, 66, 100, 512, 4096, (int64_t)1 << 31};
  static const int64_t colsv[] = {17, 1000, 1025, 2048, 4097, 8192, 8193, 16384, 65536, 131072, 262144, 1 << 20};
  static const int32_t ks[] = {1, 16, 17, 64, 100, 512, 2047, 2048, 4096};
  const device *devs[] = {&k_h200, &k_a100, &k_small, &k_b200};
  int checked = 0;
  for (size_t d = 0; d < 4; ++d)
    for (size_t r = 0; r < sizeof rowsv / sizeof rowsv[0]; ++r)
      for (size_t c = 0; c < sizeof colsv / sizeof colsv[0]; ++c)
        for (size_t j = 0; j < sizeof ks / sizeof ks[0]; ++j) {
          const int64_t rows = rowsv[r], cols = colsv[c];
          const int32_t k = ks[j];
          if (k > cols) continue;
          const device *dv = devs[d];
          dsv4_topk_long_plan p = plan_on(dv, rows, cols, k);
          const int64_t sp = p.kp > 64 ? p.kp : 64;
          assert_true(p.kp >= k && p.kp < 2 * k + 1 && (p.kp & (p.kp - 1)) == 0);
          /* The test hook's shape check accepts every shape the planner gives. */
          assert_int_equal(dsv4_topk_long_shape_check("plan", &p, cols, k, dv->smem, dv->max_cluster), DSV4_OK);
          assert_int_equal(p.threads, cols > 8192 ? 512 : 256);
          assert_true(p.cluster >= 1 && p.cluster <= dv->max_cluster && p.cluster <= 16 &&
                      (p.cluster & (p.cluster - 1)) == 0);
          if (p.cluster > 1) {
            assert_int_equal(p.threads, 512);
            assert_true(rows * p.cluster <= dv->sms);
            assert_true(4 * (int64_t)p.pool_words >= 16 * (int64_t)p.kp);   /* copied lists + bucket scatter fit the pool */
            assert_true((int64_t)p.slice * (p.cluster - 1) < cols);   /* no block without columns */
            assert_true(p.slice >= 8192 - 4);
          }
          assert_true(p.slice % 4 == 0 && (int64_t)p.slice * p.cluster >= cols && p.slice - 4 < (cols + p.cluster - 1) / p.cluster);
          assert_true(p.pool_words % 4 == 0 && 4 * (int64_t)p.pool_words >= 1024);   /* the counting sort's scratch */
          assert_int_equal((int64_t)p.smem, 1024 + 2 * 2048 * 4 + 8 * sp + 4 * (int64_t)p.pool_words);
          assert_true(p.smem <= (unsigned)dv->smem);
          assert_true(p.key_bits == 32 || p.key_bits == 16);
          assert_int_equal(p.cached, p.dense == p.slice);
          assert_true(p.dense >= 0 && p.dense <= p.slice);
          if (!p.cached) assert_true(p.key_bits == 16 && p.dense % 8 == 0);
          assert_true(p.cand_cap >= 0 && p.cand_cap <= p.slice);
          assert_true(pool_used(&p) <= 4 * (int64_t)p.pool_words);
          /* The cache leaves room for candidates: all of a short slice's, else 4096 (2048 for rows of 8192 or fewer). */
          if (dv->smem >= 101376 && k <= 2048) {
            const int64_t want = cols > 8192 ? 4096 : 2048;
            assert_true(p.cand_cap >= (p.slice < want ? p.slice : want));
          }
          if (p.threads == 256) assert_int_equal(p.key_bits, 32);
          assert_true(p.grid % (unsigned)p.cluster == 0);
          const int64_t clusters = p.grid / (unsigned)p.cluster;
          assert_true(clusters >= 1 && clusters <= rows && (clusters == rows || clusters * p.cluster >= ((int64_t)1 << 29)));
          ++checked;
        }
  assert_true(checked > 1000);
}

/* ---------------- argument checks of long-row calls ---------------- */
static void test_long_args(void **state) {
  (void)state;
  dsv4_context *c = FAKE_CTX;
  const float *in = DEV_F;
  float *ov = DEV_F2;
  int32_t *oi = DEV_I;
  const int64_t big = 1 << 20;
  assert_status_names(dsv4_topk_select(c, NULL, in, 1, big, big, 4097, ov, oi), UNS, "'k'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 1, 2048, 2048, 2049, ov, oi), UNS, "'k'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 1, 131072, 131072, 0, ov, oi), INV, "'k'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 1, big + 1, big + 1, 512, ov, oi), UNS, "'cols'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 64, 131072, 131071, 512, ov, oi), INV, "'row_stride'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 64, 131072, 131072, 512, NULL, oi), INV, "'out_values'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 64, 131072, 131072, 512, ov, NULL), INV, "'out_indices'");
  assert_status_names(dsv4_topk_select(c, NULL, NULL, 64, 131072, 131072, 512, ov, oi), INV, "'scores'");
  assert_status_names(dsv4_topk_select(c, NULL, (const float *)((uintptr_t)in + 2), 64, 131072, 131072, 512, ov, oi),
                      INV, "'scores'");
  assert_status_names(dsv4_topk_select(c, NULL, in, (int64_t)1 << 40, 131072, 131072, 512, ov, oi), UNS, "'rows'");
  /* The shapes of the indexer pass the checks (the launch itself needs a GPU). */
  assert_int_equal(dsv4_topk_select_check("t", c, in, 64, 131072, 131072, 512, ov, oi), DSV4_OK);
  assert_int_equal(dsv4_topk_select_check("t", c, in, 512, 65536, 65540, 2048, ov, oi), DSV4_OK);
  assert_int_equal(dsv4_topk_select_check("t", c, in, 1, big, big, 4096, ov, oi), DSV4_OK);
  assert_int_equal(dsv4_topk_select_check("t", c, in, 3, 4096, 4096, 4096, ov, oi), DSV4_OK);
  /* rows == 0 is a no-op that needs no pointers. */
  assert_int_equal(dsv4_topk_select(c, NULL, NULL, 0, 131072, 131072, 512, NULL, NULL), DSV4_OK);
}

/* ---------------- the kernel's order key ---------------- */
/* kernel_src/topk_long.cuh's tl_order_key computes float_order_key (common.cuh) in fewer instructions: x + 0.0f
 * folds -0.0 into +0.0 (IEEE round to nearest, no flush to zero: NVRTC's default), then the sign flip, NaN -> 0.
 * Both formulas written out here (this is C; the kernel is CUDA C++) and compared on every sign and exponent
 * with the mantissa's low bits at their extremes and random, and exhaustively around zero, the subnormals,
 * the infinities and the NaNs. The GPU test checks the kernel's own code bit for bit end to end. */
static uint32_t ref_order_key(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if (f != f) return 0u;
  if (u == 0x80000000u) u = 0u;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static uint32_t fast_order_key(float x) {
  volatile float zero = 0.0f;   /* keeps the compiler from folding x + 0.0f */
  const float y = x + zero;
  uint32_t u;
  memcpy(&u, &y, 4);
  const uint32_t k = u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u);
  return x != x ? 0u : k;
}
static void check_key(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  if (ref_order_key(f) != fast_order_key(f))
    fprintf(stderr, "order key of %08x: %08x != %08x\n", u, ref_order_key(f), fast_order_key(f));
  assert_true(ref_order_key(f) == fast_order_key(f));
}
static void test_order_key(void **state) {
  (void)state;
  uint64_t seed = 42;
  for (uint32_t hi = 0; hi < (1u << 20); ++hi) {   /* sign, exponent and the top 11 mantissa bits */
    const uint32_t base = hi << 12;
    check_key(base), check_key(base | 1u), check_key(base | 0x7ffu), check_key(base | 0xfffu);
    check_key(base | (uint32_t)(test_rand(&seed) & 0xfffu));
  }
  static const uint32_t starts[] = {0x00000000u, 0x80000000u, 0x7f7f0000u, 0xff7f0000u, 0x7fff0000u, 0xffff0000u};
  for (size_t i = 0; i < sizeof starts / sizeof starts[0]; ++i)
    for (uint32_t d = 0; d < (1u << 17); ++d) check_key(starts[i] + d);
  check_key(0xffffffffu);
}

/* ---------------- NVRTC ---------------- */
static void test_compiles(void **state) {
  (void)state;
  /* (cols, k): the indexer's k = 512 and 2048 on long rows, the extremes of k, and both block sizes. */
  static const struct { int64_t cols; int32_t k; } shapes[] = {
      {131072, 512}, {131072, 2048}, {1 << 20, 4096}, {65536, 1}, {2048, 64}, {8192, 4096}, {1025, 17}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
    dsv4_kernel_spec spec;
    dsv4_topk_select_spec(shapes[i].cols, shapes[i].k, &spec);
    assert_string_equal(spec.source, "topk_long.cu");
    test_compile_every_arch(&spec, NULL);
  }
  /* The sample-threshold kernel (few rows of 131072 columns, k <= 1024): the indexer's k and the extremes. Only
   * sm_90+ runs it; it compiles for sm_80 too (its cluster steps become block barriers there). */
  static const int32_t sample_ks[] = {512, 1, 1024};
  for (size_t i = 0; i < sizeof sample_ks / sizeof sample_ks[0]; ++i) {
    dsv4_kernel_spec spec;
    dsv4_topk_sample_spec(sample_ks[i], &spec);
    assert_string_equal(spec.source, "topk_sample.cu");
    test_compile_every_arch(&spec, NULL);
  }
}

/* The forced shapes of test_gpu_topk_long's test_forced_shapes (tests/topk_long_shapes.h, the same case list)
 * pass the shape check exactly when they fit the device's shared memory (H200-, A100- and small-GPU-like, the
 * clusters each runs); each pool kind gives the layout it names. */
static void test_forced_shapes_check(void **state) {
  (void)state;
  static const struct { const char *name; int smem, max_cluster; } devs[] = {
      {"H200", 232448, 16}, {"A100", 166912, 1}, {"sm_86", 101376, 1}};
  for (size_t d = 0; d < 3; ++d) {
    int ok = 0, too_big = 0;
    for (int i = 0; i < TOPK_LONG_FORCED_CASES; ++i) {
      const topk_long_forced c = topk_long_forced_case(i);
      if (c.cluster > devs[d].max_cluster) continue;
      const dsv4_topk_long_plan s = c.shape;
      const int pool = c.pool_kind;
      assert_int_equal(s.threads, c.threads);
      assert_int_equal(s.cluster, c.cluster);
      assert_int_equal(s.key_bits, pool < 2 ? 32 : 16);
      assert_int_equal(s.cached, pool != 4 && pool != 5);
      assert_int_equal(s.cand_cap, pool == 1 || pool == 3 || pool == 5 ? 4 : s.slice);
      const dsv4_status st = dsv4_topk_long_shape_check("forced", &s, c.cols, c.k, devs[d].smem, devs[d].max_cluster);
      if (s.smem <= (unsigned)devs[d].smem) {
        if (st != DSV4_OK)
          fail_msg("%s case %d (cols %lld k %d nt %d cl %d pool %d): %s", devs[d].name, i, (long long)c.cols, c.k,
                   c.threads, c.cluster, pool, dsv4_last_error());
        ++ok;
      } else {
        assert_status_names(st, DSV4_ERR_INVALID_ARGUMENT, "'shape.smem'");
        ++too_big;
      }
    }
    assert_true(ok >= 20);
    printf("  %s: %d forced shapes fit, %d do not\n", devs[d].name, ok, too_big);
  }
}

/* The shape check names the field it rejects. */
static void test_shape_check_names_fields(void **state) {
  (void)state;
  const dsv4_topk_long_plan good = plan_on(&k_h200, 64, 131072, 512);
  const int64_t cols = 131072;
  assert_int_equal(dsv4_topk_long_shape_check("t", &good, cols, 512, 232448, 16), DSV4_OK);
  enum { INV = DSV4_ERR_INVALID_ARGUMENT };
  dsv4_topk_long_plan s;
#define BAD(field_expr, needle, limit, maxcl)                                                   \
  do {                                                                                        \
    s = good;                                                                                 \
    field_expr;                                                                               \
    assert_status_names(dsv4_topk_long_shape_check("t", &s, cols, 512, limit, maxcl), INV, needle); \
  } while (0)
  assert_status_names(dsv4_topk_long_shape_check("t", NULL, cols, 512, 232448, 16), INV, "'shape'");
  BAD(s.kp = 1024, "'shape.kp'", 232448, 16);
  BAD(s.threads = 1024, "'shape.threads'", 232448, 16);
  BAD(s.cluster = 3, "'shape.cluster'", 232448, 16);
  BAD(s.cluster = 32, "'shape.cluster'", 232448, 16);
  BAD((void)0, "'shape.cluster'", 232448, 1);   /* clusters of 2 on a device without clusters */
  BAD(s.slice = s.slice + 2, "'shape.slice'", 232448, 16);
  BAD(s.slice = s.slice / 2, "'shape.slice'", 232448, 16);
  BAD(s.key_bits = 8, "'shape.key_bits'", 232448, 16);
  BAD(s.dense = 7, "'shape.dense'", 232448, 16);
  BAD(s.dense = s.slice + 8, "'shape.dense'", 232448, 16);
  BAD(s.cached = !s.cached, "'shape.cached'", 232448, 16);
  BAD(s.cand_cap = -1, "'shape.cand_cap'", 232448, 16);
  BAD(s.cand_cap = s.slice + 1, "'shape.cand_cap'", 232448, 16);
  BAD(s.smem = 1024, "'shape.smem'", 232448, 16);
  BAD(s.pool_words = s.pool_words - 4, "'shape.pool_words'", 232448, 16);
  BAD((void)0, "'shape.smem'", (int)good.smem - 16, 16);   /* over the device's limit */
#undef BAD
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernel_choice),
      cmocka_unit_test(test_plan_indexer_shapes),
      cmocka_unit_test(test_plan_invariants),
      cmocka_unit_test(test_long_args),
      cmocka_unit_test(test_forced_shapes_check),
      cmocka_unit_test(test_shape_check_names_fields),
      cmocka_unit_test(test_order_key),
      cmocka_unit_test(test_compiles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
