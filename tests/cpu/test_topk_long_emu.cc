/* The long-row top-k kernel (kernel_src/topk_long.cu), its algorithm run on the CPU: the kernel's own source,
 * compiled as C++ against the SIMT emulator of topk_long_emu.h (DSV4_TL_EMULATION supplies the cluster
 * primitives), checked bit for bit (values and indices) against the FP64 oracle (oracle_topk_select_row).
 * It proves the radix select, the candidate buffer, the 16-bit-key passes, the survivor sorts and the cluster
 * merge with no GPU, under random thread interleavings, for clusters of 1..16 blocks; the GPU tests
 * (tests/gpu/test_gpu_topk_long.c) prove the real device's memory model and speed.
 *
 * Each case draws rows from one generator (random, ties, special values, all equal, all NaN, half NaN, few
 * finite, ascending, descending, signed zeros, a narrow range, ties at the cut, infinities, bell-shaped) into
 * a buffer that ends right before an unmapped page (a read past the input faults), with row strides and
 * offsets that make the rows 16-byte aligned (vector loads) or not, and checks that nothing is written past
 * the output. The launch shape is either the planner's (dsv4_topk_long_plan_for, on H200- and A100-like
 * devices) or forced, to reach every source of keys in small blocks:
 *   pool 0: 32-bit keys of the whole slice, every candidate fits;  1: 32-bit keys, 4 candidates;
 *   pool 2: 16-bit keys of the whole slice;  3: 16-bit keys, 4 candidates;
 *   pool 4: 16-bit keys of half the slice, the rest re-read from global memory;  5: nothing cached.
 * The 16-bit-key passes collect positions in a hit list of 4096 entries, which small blocks never fill: the
 * same source is built a second time with the list shrunk to 64 (DSV4_TL_EMULATION_HITS,
 * test_topk_long_emu_hits) to take its overflow paths in every block size.
 *
 * The default run (a few seconds; about 30 s with ASan + UBSan) takes every 13th case of the small-block
 * sweep, every case of the others and two small planner shapes: with the two builds it reaches every line and
 * branch of topk_long.cu/.cuh that the whole sweep (less the full-size planner shapes) reaches, per template
 * instance too but for one && operand (checked with gcov; the branches no case takes are the capacity guards).
 * DSV4_TEST_EXHAUSTIVE=1 runs the whole small-block sweep and the planner's shapes at full size (up to 2^20
 * columns, clusters of 16 blocks of 512 threads; about 1.5 minutes per build). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <vector>

extern "C" {   /* C headers (cmocka's, too) without C++ guards */
#include "test_util.h"
#include "ops/ops.h"
#include "oracle.h"
#include "topk_long_shapes.h"
}

#include "topk_long_emu.h"
static int g_sample_fast_rows;   /* rows topk_sample.cu selected without its fallback */
#define DSV4_TS_FAST_ROW() (++g_sample_fast_rows)
static int g_sample_early_rows;  /* rows it sent to the fallback from the sample alone (a crowded threshold bin) */
#define DSV4_TS_EARLY_FALLBACK() (++g_sample_early_rows)
static int g_sample_third_levels;   /* rows whose threshold bin was crowded enough to count the key's copies */
#define DSV4_TS_THIRD_LEVEL() (++g_sample_third_levels)
#include "topk_long.cu"
#include "topk_sample.cu"

static bool exhaustive() {
  const char* ex = getenv("DSV4_TEST_EXHAUSTIVE");
  return ex && ex[0] == '1';
}

/* ---------------- inputs ---------------- */
enum { RANDOM, TIES, SPECIAL, EQUAL, ALLNAN, HALFNAN, FEWFINITE, ASC, DESC, ZEROS, NARROW, CUTTIES, INF, BELL, SPREAD,
       QUARTER, OUTLIER, NMODES, MIXED = NMODES /* outside the sweeps: each row its own of k_mixed */ };
static const char* const k_mode_names[NMODES + 1] = {"random", "ties",    "special",  "equal",   "allnan",  "halfnan",
                                                 "fewfinite", "asc",  "desc",     "zeros",   "narrow",  "cutties",
                                                 "inf",    "bell",    "spread",   "quarter", "outlier", "mixed"};
/* MIXED rows: row r takes k_mixed[r % 9], so that one cluster looping over rows meets every path of
 * topk_sample.cu in turn (the fallback from the sample, the sample path, the fallback after the copy). */
static const int k_mixed[9] = {QUARTER, RANDOM, OUTLIER, QUARTER, NARROW, BELL, OUTLIER, RANDOM, TIES};

static float unif(uint64_t* s) { return (float)((double)(test_rand(s) >> 11) / 9007199254740992.0); }

static float gen(int mode, int64_t col, uint64_t* s) {
  switch (mode) {
    case RANDOM: return (unif(s) - 0.5f) * 200.0f;
    case TIES: return (float)(int)(test_rand(s) % 7) * 0.5f - 1.0f;
    case SPECIAL: {
      static const float k_special[7] = {NAN, -NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 3.0e38f};
      const uint64_t r = test_rand(s) % 10;
      return r < 7 ? k_special[r] : (unif(s) - 0.5f) * 4.0f;
    }
    case EQUAL: return 1.25f;
    case ALLNAN: {   /* quiet NaNs of either sign with random payloads: their bits must come out unchanged */
      const uint32_t u = 0x7fc00000u | (uint32_t)(test_rand(s) & 0x3fffff) | (uint32_t)((test_rand(s) & 1) << 31);
      return __uint_as_float(u);
    }
    case HALFNAN: return test_rand(s) & 1 ? NAN : (unif(s) - 0.5f);
    case FEWFINITE: {
      const uint64_t r = test_rand(s) % 8;
      return r == 0 ? (float)(int)(test_rand(s) % 3) : r < 4 ? -INFINITY : NAN;
    }
    case ASC: return (float)col;
    case DESC: return -(float)col * 0.25f;
    case ZEROS: return test_rand(s) & 1 ? -0.0f : 0.0f;
    case NARROW: return 1.0f + unif(s) * 0.001f;
    case CUTTIES: return test_rand(s) % 4 == 0 ? 2.0f : (unif(s) - 0.5f);
    case INF: return test_rand(s) % 3 == 0 ? INFINITY : test_rand(s) % 2 ? -INFINITY : 1.0f;
    case SPREAD: return col % 66 == 0 ? 10.0f : (unif(s) - 0.5f);   /* one value, spread over the row */
    case OUTLIER: return col == 70000 ? 3.0e38f : (unif(s) - 0.5f);   /* distinct values, one huge (long rows) */
    default: {   /* BELL: a sum of 4 uniforms; QUARTER: that rounded to quarters (dsv4-bench's ties rows) */
      float a = 0.0f;
      for (int i = 0; i < 4; ++i) a += unif(s) - 0.5f;
      return mode == QUARTER ? rintf(a * 3.46f * 4.0f) * 0.25f + 0.0f : a * 3.46f;
    }
  }
}

/* ---------------- launches ---------------- */
/* A launch shape: the kernel's template and arguments (topk_long.cu), its dynamic shared memory, and the
 * clusters the grid has (fewer than the rows: the kernel loops over rows). */
struct shape {
  int kp, nt, cl, slice, dense, cap, wide;
  size_t smem;
  int nclusters;
  bool sample;   /* topk_sample.cu with this (topk_long) plan: clusters of 16 blocks of 512 threads */
};

template <int KP, int NT>
static void launch(const float* scores, int64_t rows, int cols, int64_t stride, int k, float* ov, int* oi,
                   const shape& s) {
  emu::dim3 grid;
  grid.x = (unsigned)(s.nclusters * s.cl);
  for (int c = 0; c < s.nclusters; ++c)
    emu::run_cluster(s.cl, NT, s.smem, (unsigned)(c * s.cl), grid, [&] {
      if constexpr (NT == dsv4::kTsThreads) {
        if (s.sample) {
          dsv4::topk_sample<KP>(scores, rows, cols, stride, k, ov, oi, s.slice, s.dense, s.cap, s.wide);
          return;
        }
      }
      dsv4::topk_long<KP, NT>(scores, rows, cols, stride, k, ov, oi, s.slice, s.dense, s.cap, s.wide);
    });
}

typedef void (*launch_fn)(const float*, int64_t, int, int64_t, int, float*, int*, const shape&);

template <int NT>
static launch_fn pick_kp(int kp) {
  switch (kp) {
    case 1: return launch<1, NT>;
    case 2: return launch<2, NT>;
    case 4: return launch<4, NT>;
    case 8: return launch<8, NT>;
    case 16: return launch<16, NT>;
    case 32: return launch<32, NT>;
    case 64: return launch<64, NT>;
    case 128: return launch<128, NT>;
    case 256: return launch<256, NT>;
    case 512: return launch<512, NT>;
    case 1024: return launch<1024, NT>;
    case 2048: return launch<2048, NT>;
    default: return launch<4096, NT>;
  }
}
static launch_fn pick(int kp, int nt) {
  switch (nt) {
    case 64: return pick_kp<64>(kp);
    case 128: return pick_kp<128>(kp);
    case 256: return pick_kp<256>(kp);
    case 512: return pick_kp<512>(kp);
    default: return pick_kp<1024>(kp);
  }
}

/* A library launch shape (dsv4_topk_long_plan) as the emulated launch takes it, on nclusters clusters. */
static shape from_plan(const dsv4_topk_long_plan& p, int nclusters) {
  shape s;
  s.kp = p.kp, s.nt = p.threads, s.cl = p.cluster, s.slice = p.slice, s.dense = p.dense, s.cap = p.cand_cap;
  s.wide = p.key_bits == 32, s.smem = p.smem, s.nclusters = nclusters, s.sample = false;
  return s;
}

/* A forced shape in small blocks: pool as in the header comment (tests/topk_long_shapes.h builds it; the
 * shared memory is the layout's least, dsv4_topk_long_shape_fit). */
static shape forced_shape(int cols, int k, int nt, int cl, int pool, int nclusters) {
  return from_plan(topk_long_forced_shape(cols, k, nt, cl, pool), nclusters);
}

/* The planner's shape for (plan_rows, cols, k) on a device, run on `rows` rows. */
static shape planned_shape(int64_t plan_rows, int64_t rows, int cols, int k, int sms, int smem_limit,
                           int max_cluster) {
  dsv4_topk_long_plan pl;
  const dsv4_status st = dsv4_topk_long_plan_for(plan_rows, cols, k, sms, smem_limit, max_cluster, &pl);
  if (st != DSV4_OK) fprintf(stderr, "dsv4_topk_long_plan_for: %s\n", dsv4_last_error());
  assert_int_equal(st, DSV4_OK);
  const int64_t clusters = (int64_t)(pl.grid / (unsigned)pl.cluster);
  return from_plan(pl, (int)(rows < clusters ? rows : clusters));
}

static int g_cases, g_failures;

/* Runs one case (rows of `cols` columns at stride `stride`, starting `off` floats into the buffer) and
 * compares every row with the oracle. */
static void run_case(int64_t rows, int cols, int64_t stride, int off, int k, int mode, const shape& s,
                     uint64_t seed) {
  ++g_cases;
  const size_t n = (size_t)((rows - 1) * stride + cols) + (size_t)off;
  const size_t page = 4096, bytes = (n * 4 + page - 1) / page * page;
  unsigned char* region = static_cast<unsigned char*>(
      mmap(nullptr, bytes + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  assert_true(region != MAP_FAILED);
  assert_int_equal(mprotect(region, page, PROT_NONE), 0);
  assert_int_equal(mprotect(region + page + bytes, page, PROT_NONE), 0);
  float* buf = reinterpret_cast<float*>(region + page + bytes - n * 4);
  if (seed & 1) buf = reinterpret_cast<float*>((uintptr_t)buf & ~(uintptr_t)15);   /* 16-byte aligned, half the time */
  for (size_t i = 0; i < n; ++i) {
    const size_t at = i - (size_t)off;   /* wraps below off: those floats are never read */
    buf[i] = gen(mode == MIXED ? k_mixed[at / (size_t)stride % 9] : mode, (int64_t)(at % (size_t)stride), &seed);
  }
  const float* in = buf + off;
  const size_t outs = (size_t)(rows * k), guard = 16;
  std::vector<float> ov(outs + guard);
  std::vector<int> oi(outs + guard);
  memset(ov.data(), 0xff, ov.size() * 4);
  memset(oi.data(), 0xff, oi.size() * 4);
  pick(s.kp, s.nt)(in, rows, cols, stride, k, ov.data(), oi.data(), s);
  std::vector<float> rv((size_t)k);
  std::vector<int> ri((size_t)k);
  bool bad = false;
  for (int64_t r = 0; r < rows && !bad; ++r) {
    oracle_topk_select_row(in + r * stride, cols, k, rv.data(), ri.data());
    for (int j = 0; j < k && !bad; ++j) {
      const size_t o = (size_t)(r * k + j);
      if (oi[o] != ri[(size_t)j] || __float_as_uint(ov[o]) != __float_as_uint(rv[(size_t)j])) {
        fprintf(stderr, "FAIL rows %lld cols %d stride %lld off %d k %d %s, nt %d cl %d slice %d dense %d cap %d "
                "keys %d smem %zu clusters %d: row %lld slot %d got (%d, %08x) want (%d, %08x)\n",
                (long long)rows, cols, (long long)stride, off, k, k_mode_names[mode], s.nt, s.cl, s.slice, s.dense,
                s.cap, s.wide ? 32 : 16, s.smem, s.nclusters, (long long)r, j, oi[o], __float_as_uint(ov[o]),
                ri[(size_t)j], __float_as_uint(rv[(size_t)j]));
        bad = true;
      }
    }
  }
  for (size_t i = outs; i < outs + guard && !bad; ++i)
    if (__float_as_uint(ov[i]) != 0xffffffffu || oi[i] != -1) {
      fprintf(stderr, "FAIL rows %lld cols %d k %d: a write past the output\n", (long long)rows, cols, k);
      bad = true;
    }
  munmap(region, bytes + 2 * page);
  g_failures += bad;
}

/* The small-block sweep deals its cases to this: true for every 13th in the default run (13 divides none of
 * the sweep's dimensions, so each cluster size and pool meets a different generator and k), for all with
 * DSV4_TEST_EXHAUSTIVE=1. */
static bool take(unsigned* seen) { return exhaustive() || (*seen)++ % 13 == 0; }

static void report(const char* what, int cases0, int failures0) {
  printf("  %s: %d cases, %d failures\n", what, g_cases - cases0, g_failures - failures0);
  assert_int_equal(g_failures, failures0);
}

/* ---------------- the sweeps ---------------- */
/* Small blocks: every cluster size, pool and generator, k from 1 to past the counting sort. */
static void test_small_blocks(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 1;
  unsigned seen = 0;
  for (int nt : {64, 128})
    for (int cl : {1, 2, 4, 8, 16})
      for (int pool = 0; pool < 6; ++pool)
        for (int mode = 0; mode < NMODES; ++mode) {
          const int cols = mode % 3 == 0 ? 3000 : mode % 3 == 1 ? 2049 : 1531;
          for (int k : {1, 7, 64, 300}) {
            ++seed;
            if (!take(&seen)) continue;
            run_case(2, cols, cols + (mode & 1) * 5, mode & 1, k, mode, forced_shape(cols, k, nt, cl, pool, 1), seed);
          }
        }
  report("small blocks", c0, f0);
}

/* k == cols and k close to it, tiny rows: every column survives or nearly. */
static void test_k_near_cols(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 1000;
  for (int cl : {1, 2, 4})
    for (int mode : {RANDOM, TIES, EQUAL, ALLNAN, SPECIAL}) {
      run_case(1, 100, 100, 0, 100, mode, forced_shape(100, 100, 64, cl, 0, 1), seed++);
      run_case(1, 257, 260, 0, 256, mode, forced_shape(257, 256, 64, cl, 2, 1), seed++);
      run_case(1, 17, 17, 0, 17, mode, forced_shape(17, 17, 64, cl, 3, 1), seed++);
      run_case(3, 33, 40, 1, 20, mode, forced_shape(33, 20, 64, cl, 1, 1), seed++);
    }
  report("k near cols", c0, f0);
}

/* Fewer clusters than rows: the row loop and its pending cluster wait, with every pool. */
static void test_row_loops(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 2000;
  for (int pool = 0; pool < 6; ++pool)
    for (int mode : {RANDOM, CUTTIES, ZEROS, HALFNAN})
      run_case(5, 1200, 1203, 3, 40, mode, forced_shape(1200, 40, 64, 4, pool, 2), seed++);
  report("row loops", c0, f0);
}

/* Large k: the bitonic sort of up to 4096 survivors (one block), the bucket placement over them (clusters; its
 * crowded-bucket fallback on the tied rows), and the placement by counting. */
static void test_large_k(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 3000;
  for (int cl : {1, 2, 8})
    for (int mode : {RANDOM, TIES, ASC, DESC, NARROW, CUTTIES}) {
      run_case(1, 9000, 9000, 0, 4096, mode, forced_shape(9000, 4096, 128, cl, 0, 1), seed++);
      run_case(1, 6000, 6004, 0, 2048, mode, forced_shape(6000, 2048, 128, cl, 2, 1), seed++);
      run_case(1, 5000, 5000, 0, 1000, mode, forced_shape(5000, 1000, 128, cl, 3, 1), seed++);
      run_case(1, 7000, 7003, 1, 3000, mode, forced_shape(7000, 3000, 128, cl, 4, 1), seed++);
      run_case(2, 7000, 7000, 0, 100, mode, forced_shape(7000, 100, 128, cl, 5, 1), seed++);
      // k = 150: clusters of 8 place the survivors by counting (kTlCountPer), one block holding them all in
      // ASC and DESC rows; clusters of 2 sort.
      run_case(1, 8000, 8000, 0, 150, mode, forced_shape(8000, 150, 128, cl, 1, 1), seed++);
    }
  report("large k", c0, f0);
}

/* The real block sizes (256 and 512 threads; 1024 once, the kernel being generic) with forced shapes. */
static void test_real_blocks(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 4000;
  for (int mode : {RANDOM, TIES, SPECIAL, EQUAL, NARROW, CUTTIES, ALLNAN, BELL}) {
    run_case(1, 20000, 20000, 0, 512, mode, forced_shape(20000, 512, 512, 2, 0, 1), seed++);
    run_case(1, 20000, 20000, 0, 2048, mode, forced_shape(20000, 2048, 1024, 2, 2, 1), seed++);
    run_case(2, 5000, 5001, 1, 300, mode, forced_shape(5000, 300, 256, 1, 0, 1), seed++);
    run_case(1, 30000, 30000, 0, 4096, mode, forced_shape(30000, 4096, 512, 1, 3, 1), seed++);
    run_case(1, 40000, 40000, 0, 2048, mode, forced_shape(40000, 2048, 512, 2, 4, 1), seed++);
    run_case(1, 40000, 40000, 0, 512, mode, forced_shape(40000, 512, 512, 2, 5, 1), seed++);
  }
  report("real block sizes", c0, f0);
}

/* The shapes of the GPU test test_forced_shapes (tests/topk_long_shapes.h, the same loops and case list), run
 * here first: the kernel's logic on exactly those launch shapes and shared-memory sizes. Every 7th case by
 * default (they are the largest blocks here), all of them with DSV4_TEST_EXHAUSTIVE=1. */
/* One value every 66 columns above a spread of small ones: the k survivors are mostly copies of that value, so the
 * select runs to the column digits (level 4, a split boundary there with buckets) and the placement buckets keys
 * of one value by column (the bound from the select keeps them apart: all in one bucket would make every block
 * sort instead, the same output). */
static void test_spread_ties(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 9000;
  for (int cl : {2, 4, 8})
    for (int pool = 0; pool < TOPK_LONG_POOL_KINDS; ++pool)
      for (int k : {70, 100, 110}) {
        run_case(2, 8000, 8000, 0, k, SPREAD, forced_shape(8000, k, 64, cl, pool, 1), seed++);
        run_case(1, 8000, 8000, 0, k, SPREAD, forced_shape(8000, k, 128, cl, pool, 1), seed++);
      }
  report("one value spread over the row (level-4 ends)", c0, f0);
}

static void test_gpu_forced_shapes(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 6000;
  for (int i = 0; i < TOPK_LONG_FORCED_CASES; ++i) {
    const topk_long_forced c = topk_long_forced_case(i);
    if (c.shape.smem > 232448u || (!exhaustive() && i % 7 != 0)) continue;
    const int64_t rows = 1 + i % 2, stride = i % 3 == 2 ? c.cols + 4 : c.cols;
    run_case(rows, (int)c.cols, stride, i % 5 == 4 ? 1 : 0, c.k, i % NMODES, from_plan(c.shape, (int)rows), seed++);
  }
  report("the GPU test's forced shapes", c0, f0);
}

/* The planner's shapes: H200-like (132 SMs, 227 KB, clusters of 16, and of 8) and A100-like (108 SMs, 163 KB,
 * no clusters). The default run takes two small ones; the full sizes only with DSV4_TEST_EXHAUSTIVE=1. */
static void test_planner_shapes(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures;
  uint64_t seed = 5000;
  const int h200 = 132, h200_smem = 232448, a100 = 108, a100_smem = 166912;
  run_case(3, 2048, 2048, 0, 64, SPECIAL, planned_shape(100, 3, 2048, 64, h200, h200_smem, 8), seed++);
  run_case(2, 8192, 8192, 0, 4096, CUTTIES, planned_shape(10, 2, 8192, 4096, h200, h200_smem, 16), seed++);
  if (exhaustive()) {
    for (int mode : {RANDOM, NARROW, CUTTIES, EQUAL, SPECIAL, BELL}) {
      for (int k : {1, 64, 512, 2048, 4096}) {
        run_case(1, 131072, 131072, 0, k, mode, planned_shape(1, 1, 131072, k, h200, h200_smem, 16), seed++);
        run_case(1, 131072, 131072, 0, k, mode, planned_shape(1, 1, 131072, k, h200, h200_smem, 8), seed++);
      }
      run_case(2, 131072, 131072, 0, 2048, mode, planned_shape(64, 2, 131072, 2048, h200, h200_smem, 8), seed++);
      run_case(2, 131072, 131072, 0, 512, mode, planned_shape(64, 2, 131072, 512, h200, h200_smem, 8), seed++);
      run_case(3, 65536, 65536, 0, 512, mode, planned_shape(7, 3, 65536, 512, h200, h200_smem, 8), seed++);
      run_case(3, 262144, 262144, 0, 2048, mode, planned_shape(3, 3, 262144, 2048, h200, h200_smem, 8), seed++);
      run_case(2, 65536, 65536, 0, 2048, mode, planned_shape(512, 2, 65536, 2048, h200, h200_smem, 8), seed++);
      run_case(1, 131072, 131072, 0, 2048, mode, planned_shape(1, 1, 131072, 2048, a100, a100_smem, 1), seed++);
      run_case(3, 2048, 2048, 0, 64, mode, planned_shape(100, 3, 2048, 64, h200, h200_smem, 8), seed++);
      run_case(10, 8192, 8192, 0, 4096, mode, planned_shape(10, 10, 8192, 4096, h200, h200_smem, 8), seed++);
    }
    for (int mode : {RANDOM, EQUAL})
      run_case(2, 1 << 20, 1 << 20, 0, 4096, mode, planned_shape(2, 2, 1 << 20, 4096, h200, h200_smem, 16), seed++);
  }
  report("planner shapes", c0, f0);
}

/* The sample-threshold kernel (topk_sample.cu) on the plans it runs with (clusters of 16 blocks of 512 threads;
 * slices down to ~300 columns here, 8192 on the GPU), its shared memory the larger of its layout and topk_long's:
 * every generator, so that rows of few distinct values, NaN-heavy rows and ties at the cut take its fallback
 * (topk_long's row body in the same launch) and the others its own path; rows looped over by one cluster too.
 * It must select the continuous rows itself: at least the random and bell rows take the fast path. */
static shape sample_shape(int cols, int k, int pool, int nclusters) {
  shape s = forced_shape(cols, k, 512, 16, pool, nclusters);
  s.sample = true;
  if (s.smem < sizeof(dsv4::TsSmem)) s.smem = sizeof(dsv4::TsSmem);
  return s;
}

static void test_sample_select(void** state) {
  (void)state;
  const int c0 = g_cases, f0 = g_failures, fast0 = g_sample_fast_rows, early0 = g_sample_early_rows;
  uint64_t seed = 7000;
  for (int mode = 0; mode < NMODES; ++mode) {
    const int cols = mode % 2 ? 16003 : 6000;
    for (int k : {1, 64, 700}) {
      const int64_t rows = mode % 3 == 0 ? 2 : 1;
      const int64_t stride = cols + (mode & 1) * 5;
      const int before = g_sample_fast_rows;
      run_case(rows, cols, stride, (int)(mode & 1), k, mode, sample_shape(cols, k, mode % 3 == 0 ? 1 : 0,
               mode % 3 == 0 ? 1 : (int)rows), seed++);
      if ((mode == RANDOM || mode == BELL) && g_sample_fast_rows - before != (int)rows) {   /* continuous rows */
        fprintf(stderr, "FAIL: %lld x %d k = %d %s fell back\n", (long long)rows, cols, k, k_mode_names[mode]);
        fail();
      }
    }
  }
  /* The indexer's shape itself: one row of 131072, k = 512 and 2048; random rows at the ends of k too, each of
   * which the sample path must select itself (the threshold's q keeps a small k and k = 4096 on it). */
  for (int mode : {RANDOM, CUTTIES})
    for (int k : {8, 512, 2048, 4096}) {
      if (mode == CUTTIES && (k == 8 || k == 4096)) continue;
      const int before = g_sample_fast_rows;
      run_case(1, 131072, 131072, 0, k, mode, sample_shape(131072, k, 0, 1), seed++);
      if (mode == RANDOM) {
        if (g_sample_fast_rows - before != 1) {
          fprintf(stderr, "FAIL: 1 x 131072 k = %d random fell back\n", k);
          fail();
        }
      }
    }
  /* Hundreds of copies of a value at the cut (quarters): the fallback is taken from the sample, before the filter
   * (the bench's tied row took 24.3 us against topk_long's 15.3 when it fell back only after the copy). */
  for (int k : {512, 1024}) {
    const int before = g_sample_early_rows;
    run_case(1, 131072, 131072, 0, k, QUARTER, sample_shape(131072, k, 0, 1), seed++);
    if (g_sample_early_rows - before != 1) {
      fprintf(stderr, "FAIL: 1 x 131072 k = %d quarter-valued did not fall back from its sample\n", k);
      fail();
    }
  }
  /* One 3e38 among distinct values below 1 puts every other candidate into the lowest bucket: the fallback after
   * the copy (test_gpu_topk_long's test_sample_paths takes this row to that path on the GPU). */
  {
    const int fast = g_sample_fast_rows, early = g_sample_early_rows;
    run_case(1, 131072, 131072, 0, 512, OUTLIER, sample_shape(131072, 512, 0, 1), seed++);
    if (g_sample_fast_rows != fast || g_sample_early_rows != early) {
      fprintf(stderr, "FAIL: 1 x 131072 k = 512 outlier did not fall back after the copy\n");
      fail();
    }
  }
  /* Distinct values in a narrow range crowd the threshold's 24-bit bin but not a key: the third level runs and the
   * row stays on the sample path (level 0's histogram, reused by level 2, is then the bucket counts). */
  for (int k : {512, 1024}) {
    const int fast = g_sample_fast_rows, third = g_sample_third_levels;
    run_case(1, 131072, 131072, 0, k, NARROW, sample_shape(131072, k, 0, 1), seed++);
    if (g_sample_third_levels - third != 1 || g_sample_fast_rows - fast != 1) {
      fprintf(stderr, "FAIL: 1 x 131072 k = %d narrow: third level %d, sample path %d (want 1, 1)\n", k,
              g_sample_third_levels - third, g_sample_fast_rows - fast);
      fail();
    }
  }
  /* One cluster looping over rows of every path in turn (and two, three clusters): each row's path follows the
   * one before it, whichever barriers that one passed (the pending wait of topk_long's row body). */
  static const struct { int k, nclusters; } loops[] = {{512, 1}, {1024, 2}, {512, 3}};
  for (const auto& l : loops) {
    const int fast = g_sample_fast_rows, early = g_sample_early_rows;
    run_case(9, 131072, 131072, 0, l.k, MIXED, sample_shape(131072, l.k, 0, l.nclusters), seed++);
    const int nfast = g_sample_fast_rows - fast, nearly = g_sample_early_rows - early, nlate = 9 - nfast - nearly;
    if (nfast < 1 || nearly < 1 || nlate < 1) {
      fprintf(stderr, "FAIL: 9 mixed rows k = %d on %d cluster(s): %d sample path, %d from the sample, %d after "
              "(want each >= 1)\n", l.k, l.nclusters, nfast, nearly, nlate);
      fail();
    }
  }
  printf("  the sample path selected %d rows itself, the others its fallback (%d from the sample)\n",
         g_sample_fast_rows - fast0, g_sample_early_rows - early0);
  report("sample-threshold select", c0, f0);
}

int main(void) {
  printf("hit list: %d positions%s\n", dsv4::kTlHits, exhaustive() ? "; DSV4_TEST_EXHAUSTIVE=1: every case" : "");
  /* DSV4_TEST_FILTER: run only the tests whose name matches (wildcards * and ?), as in the GPU suite. */
  if (getenv("DSV4_TEST_FILTER")) cmocka_set_test_filter(getenv("DSV4_TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_blocks),  cmocka_unit_test(test_k_near_cols), cmocka_unit_test(test_row_loops),
      cmocka_unit_test(test_large_k),       cmocka_unit_test(test_real_blocks), cmocka_unit_test(test_gpu_forced_shapes),
      cmocka_unit_test(test_planner_shapes), cmocka_unit_test(test_spread_ties), cmocka_unit_test(test_sample_select),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
