/* Device-memory helpers for GPU tests, through the library's driver table (tests never link libcuda). */
#ifndef DSV4_GPU_UTIL_H
#define DSV4_GPU_UTIL_H

#include "test_util.h"
#include "context.h"

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

/* The body of a GPU test binary's main after DSV4_GPU_TEST_OR_SKIP(ctxp): names the device, makes the context
 * current, runs the cmocka group `tests` and releases the context; returns from main with cmocka's status. */
#define GPU_RUN_TESTS(ctx, tests)                                                                    \
  do {                                                                                               \
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

/* DSV4_TEST_PART=i/n: a test's cases (the calls of its run_case) are dealt round-robin into n parts and only
 * part i runs; unset, every case runs. For sanitizer runs, which split a slow test over parallel processes
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

#endif
