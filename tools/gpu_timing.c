#include "gpu_timing.h"

#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double dsv4_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define CU(call, what) DSV4_CU(drv, call, what)

static dsv4_status elapsed_us(const dsv4_driver *drv, CUevent a, CUevent b, double *us) {
  float ms = 0;
  CU(cuEventSynchronize(b), "cuEventSynchronize");
  CU(cuEventElapsedTime(&ms, a, b), "cuEventElapsedTime");
  *us = (double)ms * 1000.0;
  return DSV4_OK;
}

dsv4_status dsv4_time_launches(const dsv4_driver *drv, CUstream stream, dsv4_launch_fn fn, void *user, int calls,
                               int reps, size_t flush_bytes, dsv4_timing *out) {
  CUevent a, b;
  CU(cuEventCreate(&a, CU_EVENT_DEFAULT), "cuEventCreate");
  CU(cuEventCreate(&b, CU_EVENT_DEFAULT), "cuEventCreate");
  double *t = malloc(sizeof(double) * (size_t)reps);
  dsv4_status s = DSV4_OK;
  for (int i = 0; i < 5 && s == DSV4_OK; ++i) s = fn(user, stream);  /* warm-up: JIT, module load, L2 */
  /* Graph of `calls` launches. */
  CUgraph g = NULL;
  CUgraphExec ge = NULL;
  if (s == DSV4_OK) {
    CUresult r = drv->cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
    if (r != CUDA_SUCCESS) s = dsv4_cu_fail(r, "cuStreamBeginCapture");
    for (int i = 0; i < calls && s == DSV4_OK; ++i) s = fn(user, stream);
    r = drv->cuStreamEndCapture(stream, &g);
    if (s == DSV4_OK && r != CUDA_SUCCESS) s = dsv4_cu_fail(r, "cuStreamEndCapture");
    if (s == DSV4_OK && (r = drv->cuGraphInstantiate(&ge, g, 0)) != CUDA_SUCCESS) s = dsv4_cu_fail(r, "cuGraphInstantiate");
  }
  if (s == DSV4_OK) {
    drv->cuGraphLaunch(ge, stream);
    for (int i = 0; i < reps && s == DSV4_OK; ++i) {
      drv->cuEventRecord(a, stream);
      drv->cuGraphLaunch(ge, stream);
      drv->cuEventRecord(b, stream);
      s = elapsed_us(drv, a, b, &t[i]);
      t[i] /= calls;
    }
    if (s == DSV4_OK) out->graph_us = dsv4_median(t, reps);
  }
  if (ge) drv->cuGraphExecDestroy(ge);
  if (g) drv->cuGraphDestroy(g);
  for (int i = 0; i < reps && s == DSV4_OK; ++i) {
    drv->cuEventRecord(a, stream);
    for (int c = 0; c < calls && s == DSV4_OK; ++c) s = fn(user, stream);
    drv->cuEventRecord(b, stream);
    if (s == DSV4_OK) s = elapsed_us(drv, a, b, &t[i]);
    t[i] /= calls;
  }
  if (s == DSV4_OK) out->stream_us = dsv4_median(t, reps);
  /* Cold L2: overwrite a buffer larger than L2 before each timed call. */
  CUdeviceptr flush = 0;
  if (s == DSV4_OK) {
    CUresult r = drv->cuMemAlloc(&flush, flush_bytes);
    if (r != CUDA_SUCCESS) s = dsv4_cu_fail(r, "cuMemAlloc(flush)");
  }
  for (int i = 0; i < reps && s == DSV4_OK; ++i) {
    drv->cuMemsetD32Async(flush, (unsigned)i, flush_bytes / 4, stream);
    drv->cuEventRecord(a, stream);
    s = fn(user, stream);
    drv->cuEventRecord(b, stream);
    if (s == DSV4_OK) s = elapsed_us(drv, a, b, &t[i]);
  }
  if (s == DSV4_OK) out->cold_us = dsv4_median(t, reps);
  if (flush) drv->cuMemFree(flush);
  free(t);
  drv->cuEventDestroy(a);
  drv->cuEventDestroy(b);
  return s;
}

dsv4_status dsv4_copy_bandwidth(const dsv4_driver *drv, CUstream stream, size_t bytes, int reps, double *gbps) {
  CUdeviceptr src = 0, dst = 0;
  CU(cuMemAlloc(&src, bytes), "cuMemAlloc(copy src)");
  CUresult r = drv->cuMemAlloc(&dst, bytes);
  if (r != CUDA_SUCCESS) {
    drv->cuMemFree(src);
    return dsv4_cu_fail(r, "cuMemAlloc(copy dst)");
  }
  drv->cuMemsetD32Async(src, 0x3f800000u, bytes / 4, stream);
  CUevent a, b;
  drv->cuEventCreate(&a, CU_EVENT_DEFAULT);
  drv->cuEventCreate(&b, CU_EVENT_DEFAULT);
  double *t = malloc(sizeof(double) * (size_t)reps);
  dsv4_status s = DSV4_OK;
  drv->cuMemcpyDtoDAsync(dst, src, bytes, stream);
  for (int i = 0; i < reps && s == DSV4_OK; ++i) {
    drv->cuEventRecord(a, stream);
    drv->cuMemcpyDtoDAsync(dst, src, bytes, stream);
    drv->cuEventRecord(b, stream);
    s = elapsed_us(drv, a, b, &t[i]);
  }
  if (s == DSV4_OK) *gbps = 2.0 * (double)bytes / (dsv4_median(t, reps) * 1e3);
  free(t);
  drv->cuEventDestroy(a);
  drv->cuEventDestroy(b);
  drv->cuMemFree(src);
  drv->cuMemFree(dst);
  return s;
}
