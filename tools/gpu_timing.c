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

/* A graph of `calls` launches of fn, captured on stream and instantiated. */
static dsv4_status capture(const dsv4_driver *drv, CUstream stream, dsv4_launch_fn fn, void *user, int calls,
                           CUgraph *g, CUgraphExec *ge) {
  CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture");
  dsv4_status s = DSV4_OK;
  for (int i = 0; i < calls && s == DSV4_OK; ++i) s = fn(user, stream);
  CUresult r = drv->cuStreamEndCapture(stream, g);
  if (s == DSV4_OK && r != CUDA_SUCCESS) s = dsv4_cu_fail(r, "cuStreamEndCapture");
  if (s == DSV4_OK && (r = drv->cuGraphInstantiate(ge, *g, 0)) != CUDA_SUCCESS)
    s = dsv4_cu_fail(r, "cuGraphInstantiate");
  return s;
}

/* One L2 flush (a write of a buffer larger than L2), then fn unless `call` is false. */
typedef struct flush_call {
  const dsv4_driver *drv;
  dsv4_launch_fn fn;
  void *user;
  CUdeviceptr buf;
  size_t bytes;
  bool call;
} flush_call;

static dsv4_status flush_launch(void *user, CUstream stream) {
  flush_call *f = user;
  const dsv4_driver *drv = f->drv;
  CU(cuMemsetD32Async(f->buf, 0x5a5a5a5au, f->bytes / 4, stream), "cuMemsetD32Async(flush)");
  return f->call ? f->fn(f->user, stream) : DSV4_OK;
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
  if (s == DSV4_OK) s = capture(drv, stream, fn, user, calls, &g, &ge);
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
  /* Cold L2 back to back: (flush, call) pairs against flushes alone, in graphs, paired. The flushes' dirty lines
   * that a call's misses evict would be written back by the next flush anyway, so the difference charges the
   * call with its own traffic. Fewer calls a graph than warm: each flush writes flush_bytes. */
  out->cold_bb_us = 0.0;
  if (s == DSV4_OK) {
    flush_call with = {drv, fn, user, flush, flush_bytes, true}, without = {drv, fn, user, flush, flush_bytes, false};
    double a_us = 0, b_us = 0, ratio = 0;
    s = dsv4_time_pair(drv, stream, flush_launch, &with, flush_launch, &without, calls < 50 ? calls : 50, reps, &a_us,
                       &b_us, &ratio);
    if (s == DSV4_OK) out->cold_bb_us = a_us - b_us;
  }
  if (flush) drv->cuMemFree(flush);
  free(t);
  drv->cuEventDestroy(a);
  drv->cuEventDestroy(b);
  return s;
}

dsv4_status dsv4_time_pair(const dsv4_driver *drv, CUstream stream, dsv4_launch_fn fa, void *ua, dsv4_launch_fn fb,
                           void *ub, int calls, int reps, double *a_us, double *b_us, double *ratio) {
  if (calls < 1 || reps < 1) return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "dsv4_time_pair: calls and reps must be >= 1");
  CUevent e[3] = {NULL, NULL, NULL};
  double *t = malloc(sizeof(double) * 3 * (size_t)reps);
  CUgraph g[2] = {NULL, NULL};
  CUgraphExec ge[2] = {NULL, NULL};
  dsv4_status s = t ? DSV4_OK : dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "dsv4_time_pair");
  for (int i = 0; i < 3 && s == DSV4_OK; ++i) {
    CUresult r = drv->cuEventCreate(&e[i], CU_EVENT_DEFAULT);
    if (r != CUDA_SUCCESS) s = dsv4_cu_fail(r, "cuEventCreate");
  }
  for (int i = 0; i < 5 && s == DSV4_OK; ++i) s = fa(ua, stream);   /* warm-up */
  for (int i = 0; i < 5 && s == DSV4_OK; ++i) s = fb(ub, stream);
  if (s == DSV4_OK) s = capture(drv, stream, fa, ua, calls, &g[0], &ge[0]);
  if (s == DSV4_OK) s = capture(drv, stream, fb, ub, calls, &g[1], &ge[1]);
  /* Rounds alternate the order (A B, then B A) so that neither side always runs first after the host's wait. */
  for (int i = -1; i < reps && s == DSV4_OK; ++i) {   /* round -1: one untimed replay of each */
    const int first = i & 1;   /* 0: A first */
    CUresult r = drv->cuEventRecord(e[0], stream);
    if (r == CUDA_SUCCESS) r = drv->cuGraphLaunch(ge[first], stream);
    if (r == CUDA_SUCCESS) r = drv->cuEventRecord(e[1], stream);
    if (r == CUDA_SUCCESS) r = drv->cuGraphLaunch(ge[!first], stream);
    if (r == CUDA_SUCCESS) r = drv->cuEventRecord(e[2], stream);
    if (r != CUDA_SUCCESS) {
      s = dsv4_cu_fail(r, "dsv4_time_pair: replaying the graphs");
      break;
    }
    double t1 = 0, t2 = 0;
    s = elapsed_us(drv, e[0], e[1], &t1);
    if (s == DSV4_OK) s = elapsed_us(drv, e[1], e[2], &t2);
    if (i < 0) continue;
    const double ta = first ? t2 : t1, tb = first ? t1 : t2;
    t[i] = ta / calls, t[reps + i] = tb / calls, t[2 * reps + i] = ta / tb;
  }
  if (s == DSV4_OK) {
    *a_us = dsv4_median(t, reps), *b_us = dsv4_median(t + reps, reps), *ratio = dsv4_median(t + 2 * reps, reps);
  }
  for (int i = 0; i < 2; ++i) {
    if (ge[i]) drv->cuGraphExecDestroy(ge[i]);
    if (g[i]) drv->cuGraphDestroy(g[i]);
  }
  free(t);
  for (int i = 0; i < 3; ++i)
    if (e[i]) drv->cuEventDestroy(e[i]);
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
