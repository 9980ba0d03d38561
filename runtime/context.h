/*
 * dsv4_context: one device's primary context, its JIT and its loaded modules.
 * Thread rules: every function here may be called from any thread at once; the module table is guarded
 * by ctx->mu, and functions handed out stay valid until dsv4_context_destroy.
 */
#ifndef DSV4_CONTEXT_H
#define DSV4_CONTEXT_H

#include <pthread.h>

#include "driver.h"
#include "jit.h"

typedef struct dsv4_loaded {
  char name_expr[192];
  CUmodule module;
  CUfunction fn;
} dsv4_loaded;

struct dsv4_context {
  const dsv4_driver *drv;
  int ordinal;
  CUdevice dev;
  CUcontext cuctx;   /* the device's primary context, retained */
  char arch[16];
  int cc_major, cc_minor, sm_count, l2_bytes;
  char name[256];
  dsv4_jit *jit;
  pthread_mutex_t mu;
  dsv4_loaded *loaded;
  size_t num_loaded, cap_loaded;
};

/* Makes ctx's context current on this thread if it is not; *pushed says whether to pop afterwards. */
DSV4_INTERNAL dsv4_status dsv4_ctx_enter(dsv4_context *ctx, bool *pushed);
DSV4_INTERNAL void dsv4_ctx_leave(dsv4_context *ctx, bool pushed);

/* The kernel for spec on ctx's device: loaded once (memory, then disk cache, then NVRTC). */
DSV4_INTERNAL dsv4_status dsv4_ctx_function(dsv4_context *ctx, const dsv4_kernel_spec *spec, CUfunction *out);

/* The same for n kernels, compiling the missing ones in parallel (dsv4_router_prepare, warm-up). */
DSV4_INTERNAL dsv4_status dsv4_ctx_functions(dsv4_context *ctx, const dsv4_kernel_spec *specs, int n, CUfunction *out);

/* Launches fn (ctx must be current); `what` names the launch in the error message. With pdl, on devices that
 * have it (compute 9.0+), with programmatic dependent launch (PDL): fn may start before the previous kernel on
 * the stream ends, and must run griddepcontrol.wait (cudaGridDependencySynchronize) before it reads what that
 * kernel wrote. Without pdl, or on older devices, a plain launch. */
DSV4_INTERNAL dsv4_status dsv4_launch(dsv4_context *ctx, CUfunction fn, unsigned grid, unsigned block,
                                      unsigned smem, CUstream stream, void **args, bool pdl, const char *what);

#endif
