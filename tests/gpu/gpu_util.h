/* Device-memory helpers for GPU tests, through the library's driver table (tests never link libcuda). */
#ifndef DSV4_GPU_UTIL_H
#define DSV4_GPU_UTIL_H

#include "test_util.h"
#include "context.h"
#include "ops/ops.h"   /* gpu_topk_long_reduce: the long-row top-k's launch plan */

static const dsv4_driver *gpu_drv(void) {
  const dsv4_driver *d = NULL;
  if (dsv4_driver_get(&d) != DSV4_OK) {
    fprintf(stderr, "driver: %s\n", dsv4_last_error());
    abort();
  }
  return d;
}

#define GPU_CHECK(call)                                                               \
  do {                                                                                \
    CUresult r_ = gpu_drv()->call;                                                    \
    if (r_ != CUDA_SUCCESS) {                                                         \
      const char *n_ = NULL;                                                          \
      gpu_drv()->cuGetErrorName(r_, &n_);                                             \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, n_ ? n_ : "?"); \
      fail();                                                                         \
    }                                                                                 \
  } while (0)

/* A dsv4 call that must return DSV4_OK; the failure names the status and the library's message. */
#define DSV4_CHECK_OK(call)                                                                          \
  do {                                                                                               \
    dsv4_status s_ = (call);                                                                         \
    if (s_ != DSV4_OK)                                                                               \
      fail_msg("%s:%d: %s: %s (%s)", __FILE__, __LINE__, #call, dsv4_status_string(s_), dsv4_last_error()); \
  } while (0)

static CUdeviceptr gpu_alloc(size_t bytes) {
  CUdeviceptr p = 0;
  GPU_CHECK(cuMemAlloc(&p, bytes ? bytes : 4));
  return p;
}
static void gpu_free(CUdeviceptr p) { GPU_CHECK(cuMemFree(p)); }
/* gpu_upload and gpu_poison wait for the device: a cuMemcpyHtoD from pageable memory may return before its DMA
 * lands, and cuMemsetD8 is asynchronous, both on the legacy stream, which the tests' non-blocking streams do not
 * wait for (compute-sanitizer's initcheck once showed a poison fill landing after a graph's kernel). */
static void gpu_upload(CUdeviceptr dst, const void *src, size_t bytes) {
  if (bytes) GPU_CHECK(cuMemcpyHtoD(dst, src, bytes));
  GPU_CHECK(cuCtxSynchronize());
}
static void gpu_download(void *dst, CUdeviceptr src, size_t bytes) {
  if (bytes) GPU_CHECK(cuMemcpyDtoH(dst, src, bytes));
}
/* Fills with a byte pattern that is neither a valid weight nor a valid id (0xFF..: NaN / -1). */
static void gpu_poison(CUdeviceptr p, size_t bytes) {
  if (bytes) GPU_CHECK(cuMemsetD8(p, 0xFF, bytes));
  GPU_CHECK(cuCtxSynchronize());
}
static void gpu_sync(void) { GPU_CHECK(cuCtxSynchronize()); }
/* Ends the capture begun on stream s, instantiates the graph, replays it `reps` times on s, waits for it and
 * frees it. */
static void gpu_graph_replay(CUstream s, int reps) {
  CUgraph g = NULL;
  CUgraphExec ge = NULL;
  GPU_CHECK(cuStreamEndCapture(s, &g));
  GPU_CHECK(cuGraphInstantiate(&ge, g, 0));
  for (int rep = 0; rep < reps; ++rep) GPU_CHECK(cuGraphLaunch(ge, s));
  GPU_CHECK(cuStreamSynchronize(s));
  GPU_CHECK(cuGraphExecDestroy(ge));
  GPU_CHECK(cuGraphDestroy(g));
}

/* The body of a GPU test binary's main after DSV4_GPU_TEST_OR_SKIP(ctxp): names the device, makes the context
 * current, runs the cmocka group `tests` and releases the context; returns from main with cmocka's status. */
#define GPU_RUN_TESTS(ctx, tests)                                                                    \
  do {                                                                                               \
    setvbuf(stdout, NULL, _IOLBF, 0); /* a run killed by a timeout still shows how far it got */     \
    printf("device: %s (%s, %d SMs)\n", (ctx)->name, dsv4_context_arch(ctx), (ctx)->sm_count);      \
    bool pushed_ = false;                                                                            \
    if (dsv4_ctx_enter((ctx), &pushed_) != DSV4_OK) {                                                \
      fprintf(stderr, "dsv4_ctx_enter: %s\n", dsv4_last_error());                                   \
      dsv4_context_destroy(ctx);                                                                     \
      return 1;                                                                                      \
    }                                                                                                \
    const int rc_ = cmocka_run_group_tests((tests), NULL, NULL);                                     \
    dsv4_ctx_leave((ctx), pushed_);                                                                  \
    dsv4_context_destroy(ctx);                                                                       \
    return rc_;                                                                                      \
  } while (0)

/* DSV4_TEST_PART=i/n: a test's cases (the calls of its run_case, and each test function that does not use it)
 * are dealt round-robin into n parts and only part i runs; unset, every case runs. For sanitizer runs, which
 * split a slow test over parallel processes
 * (tests/gpu/sanitize.sh, DSV4_SANITIZE_FILTERS). Each case takes its seed from the caller, so a part runs
 * exactly the cases (and inputs) the whole test would. */
static inline bool gpu_test_part_mine(void) {
  static long next = 0, part = -1, parts = 0;
  if (parts == 0) {
    const char *e = getenv("DSV4_TEST_PART");
    parts = 1, part = 0;
    if (e && sscanf(e, "%ld/%ld", &part, &parts) == 2 && parts >= 1 && part >= 0 && part < parts) {
      printf("DSV4_TEST_PART: running part %ld of 0..%ld of the cases\n", part, parts - 1);
    } else {
      if (e) printf("DSV4_TEST_PART='%s' is not i/n with 0 <= i < n: running every case\n", e);
      parts = 1, part = 0;
    }
  }
  return next++ % parts == part;
}

/* DSV4_TEST_REDUCED=1: the topk tests run each long-row case on one row with the launch plan of the full case
 * and skip a plan they already ran (gpu_topk_long_reduce; the warp path of test_gpu_topk_select keeps at most
 * 64 rows). For racecheck, which instruments every shared-memory access: the full cases (up to 2^25 elements)
 * take far longer than a sanitizer run may (tests/gpu/sanitize.sh sets it for racecheck). Read once; unset,
 * empty or "0" is off. */
static inline bool gpu_test_reduced(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("DSV4_TEST_REDUCED");
    on = e && *e && strcmp(e, "0") != 0;
    if (on) printf("DSV4_TEST_REDUCED=%s: each long-row case on one row with the full case's plan\n", e);
  }
  return on == 1;
}

/* The reduced form (gpu_test_reduced) of a long-row top-k case: dsv4_topk_select past its warp path, rows x
 * cols (row_stride apart, the input `offset` floats into its buffer), k, generator `mode`. The kernel's code
 * paths follow from its launch plan (threads, cluster, slice, cached prefix, key width, candidate capacity,
 * shared memory: the template and the branches it takes), from whether the rows allow 16-byte loads, and from
 * the data; the row count only picks the plan (a row is split over a cluster while all the row clusters fit
 * one wave) and the grid, one row per cluster. (Its loop over rows beyond the grid takes over 2^30 / cluster
 * clusters: no test reaches it, reduced or not.) So the case runs on its first row (*rows = 1, checked:
 * *sample = 1) with the full case's plan (*plan_rows = the original rows: gpu_topk_call launches it with
 * dsv4_topk_long_enqueue_planned). The tests generate the input in order from the case's seed, so that row is
 * the original's first. Returns false (skip the case) when the same plan already ran here with the same cols,
 * k, generator and load width: another seed of the same shape and data kind runs the same code. Call it after
 * gpu_test_part_mine() (every part must deal the same cases); the table is per process, so each part skips
 * only repeats of its own cases. */
static inline bool gpu_topk_long_reduce(dsv4_context *ctx, int64_t *rows, int64_t *plan_rows, int64_t cols,
                                        int64_t row_stride, int64_t offset, int32_t k, int mode,
                                        const char *mode_name, int64_t *sample) {
  *plan_rows = *rows;
  if (*rows < 1) return true;   /* no launch: nothing to reduce */
  dsv4_topk_long_plan want;
  const dsv4_status st = dsv4_topk_long_plan_ctx(ctx, *rows, cols, k, &want);
  if (st != DSV4_OK) fail_msg("dsv4_topk_long_plan_ctx: %s (%s)", dsv4_status_string(st), dsv4_last_error());
  const unsigned grid = want.grid;
  want.grid = 0;   /* the plan is 4-byte fields, zeroed first by the planner: memcmp compares all but grid */
  /* The kernel's 16-byte loads: every row start 16-byte aligned (the tests' buffers start 256-byte aligned). */
  const bool vec = ((4 * offset) | (4 * row_stride)) % 16 == 0;
  static struct {
    dsv4_topk_long_plan plan;
    int64_t cols;
    int32_t k;
    int mode;
    bool vec;
  } seen[1024];
  static int nseen;
  for (int i = 0; i < nseen; ++i)
    if (memcmp(&seen[i].plan, &want, sizeof want) == 0 && seen[i].cols == cols && seen[i].k == k &&
        seen[i].mode == mode && seen[i].vec == vec) {
      printf("    reduced: skipped %lld x %lld k=%d %s%s: its plan already ran with these cols, k and data\n",
             (long long)*rows, (long long)cols, k, mode_name, vec ? "" : " (4-byte loads)");
      return false;
    }
  if (nseen < (int)(sizeof seen / sizeof seen[0])) {   /* a full table only means repeats run again */
    seen[nseen].plan = want, seen[nseen].cols = cols, seen[nseen].k = k, seen[nseen].mode = mode;
    seen[nseen].vec = vec;
    ++nseen;
  }
  if (*rows > 1)
    printf("    reduced %lld x %lld k=%d %s%s -> 1 row, the full case's plan (%d threads, cluster %d), grid %d "
           "instead of %u\n", (long long)*rows, (long long)cols, k, mode_name, vec ? "" : " (4-byte loads)",
           want.threads, want.cluster, want.cluster, grid);
  *rows = 1, *sample = 1;
  return true;
}

/* dsv4_topk_select on rows x cols, or, for a reduced long-row case (plan_rows > rows), the long-row kernel
 * launched with the plan of plan_rows rows. */
static inline dsv4_status gpu_topk_call(dsv4_context *ctx, int64_t plan_rows, const float *scores, int64_t rows,
                                        int64_t cols, int64_t row_stride, int32_t k, CUdeviceptr v, CUdeviceptr idx) {
  if (plan_rows > rows)
    return dsv4_topk_long_enqueue_planned(ctx, NULL, plan_rows, scores, rows, cols, row_stride, k, (float *)v,
                                          (int32_t *)idx);
  return dsv4_topk_select(ctx, NULL, scores, rows, cols, row_stride, k, (float *)v, (int32_t *)idx);
}

#endif
