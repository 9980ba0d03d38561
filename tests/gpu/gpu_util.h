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
static void gpu_upload(CUdeviceptr dst, const void *src, size_t bytes) {
  if (bytes) GPU_CHECK(cuMemcpyHtoD(dst, src, bytes));
}
static void gpu_download(void *dst, CUdeviceptr src, size_t bytes) {
  if (bytes) GPU_CHECK(cuMemcpyDtoH(dst, src, bytes));
}
/* Fills with a byte pattern that is neither a valid weight nor a valid id (0xFF..: NaN / -1). */
static void gpu_poison(CUdeviceptr p, size_t bytes) {
  if (bytes) GPU_CHECK(cuMemsetD8(p, 0xFF, bytes));
}
static void gpu_sync(void) { GPU_CHECK(cuCtxSynchronize()); }

#endif
