/* dsv4_context: device discovery, primary context, module table. */
#include "context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dsv4_status dsv4_context_create(int device_ordinal, dsv4_context **out) {
  DSV4_CHECK_ARG(out != NULL, "dsv4_context_create", "out", "is NULL");
  *out = NULL;
  const dsv4_driver *drv = NULL;
  DSV4_TRY(dsv4_driver_get(&drv));
  int count = 0;
  DSV4_CU(drv, cuDeviceGetCount(&count), "cuDeviceGetCount");
  if (count <= 0) return dsv4_fail(DSV4_ERR_NO_DEVICE, "the CUDA driver sees no GPU");
  if (device_ordinal < 0 || device_ordinal >= count)
    return dsv4_fail(DSV4_ERR_NO_DEVICE, "argument 'device_ordinal' = %d: there are %d device(s)", device_ordinal, count);
  dsv4_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "allocating a context");
  ctx->drv = drv;
  ctx->ordinal = device_ordinal;
  dsv4_status s = DSV4_OK;
  CUresult r = drv->cuDeviceGet(&ctx->dev, device_ordinal);
  if (r == CUDA_SUCCESS) r = drv->cuDeviceGetAttribute(&ctx->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, ctx->dev);
  if (r == CUDA_SUCCESS) r = drv->cuDeviceGetAttribute(&ctx->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, ctx->dev);
  if (r == CUDA_SUCCESS) r = drv->cuDeviceGetAttribute(&ctx->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, ctx->dev);
  if (r == CUDA_SUCCESS) r = drv->cuDeviceGetAttribute(&ctx->l2_bytes, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, ctx->dev);
  if (r == CUDA_SUCCESS) r = drv->cuDeviceGetName(ctx->name, sizeof ctx->name, ctx->dev);
  if (r != CUDA_SUCCESS) {
    s = dsv4_cu_fail(r, "querying the device");
    free(ctx);
    return s;
  }
  if (ctx->cc_major < 8) {
    s = dsv4_fail(DSV4_ERR_UNSUPPORTED, "device %d has compute capability %d.%d; dsv4 needs 8.0 or newer",
                  device_ordinal, ctx->cc_major, ctx->cc_minor);
    free(ctx);
    return s;
  }
  dsv4_arch_for_cc(ctx->cc_major, ctx->cc_minor, ctx->arch);
  r = drv->cuDevicePrimaryCtxRetain(&ctx->cuctx, ctx->dev);
  if (r != CUDA_SUCCESS) {
    s = dsv4_cu_fail(r, "cuDevicePrimaryCtxRetain");
    free(ctx);
    return s;
  }
  dsv4_jit_config cfg = dsv4_jit_config_from_env();
  s = dsv4_jit_create(&cfg, &ctx->jit);
  if (s != DSV4_OK) {
    drv->cuDevicePrimaryCtxRelease(ctx->dev);
    free(ctx);
    return s;
  }
  pthread_mutex_init(&ctx->mu, NULL);
  dsv4_log(DSV4_LOG_INFO, "context on device %d (%s, %s, %d SMs)", device_ordinal, ctx->name, ctx->arch, ctx->sm_count);
  *out = ctx;
  return DSV4_OK;
}

void dsv4_context_destroy(dsv4_context *ctx) {
  if (!ctx) return;
  bool pushed = false;
  if (dsv4_ctx_enter(ctx, &pushed) == DSV4_OK) {
    for (size_t i = 0; i < ctx->num_loaded; ++i) ctx->drv->cuModuleUnload(ctx->loaded[i].module);
    dsv4_ctx_leave(ctx, pushed);
  }
  free(ctx->loaded);
  dsv4_jit_destroy(ctx->jit);
  pthread_mutex_destroy(&ctx->mu);
  ctx->drv->cuDevicePrimaryCtxRelease(ctx->dev);
  free(ctx);
}

dsv4_status dsv4_context_jit_stats(dsv4_context *ctx, dsv4_jit_stats *out) {
  DSV4_CHECK_ARG(ctx != NULL, "dsv4_context_jit_stats", "ctx", "is NULL");
  DSV4_CHECK_ARG(out != NULL, "dsv4_context_jit_stats", "out", "is NULL");
  dsv4_jit_get_stats(ctx->jit, out);
  return DSV4_OK;
}

const char *dsv4_context_arch(const dsv4_context *ctx) { return ctx ? ctx->arch : NULL; }

dsv4_status dsv4_ctx_enter(dsv4_context *ctx, bool *pushed) {
  *pushed = false;
  CUcontext cur = NULL;
  DSV4_CU(ctx->drv, cuCtxGetCurrent(&cur), "cuCtxGetCurrent");
  if (cur == ctx->cuctx) return DSV4_OK;
  DSV4_CU(ctx->drv, cuCtxPushCurrent(ctx->cuctx), "cuCtxPushCurrent");
  *pushed = true;
  return DSV4_OK;
}

void dsv4_ctx_leave(dsv4_context *ctx, bool pushed) {
  if (pushed) {
    CUcontext popped = NULL;
    ctx->drv->cuCtxPopCurrent(&popped);
  }
}

static CUfunction find_loaded(dsv4_context *ctx, const char *name_expr) {
  for (size_t i = 0; i < ctx->num_loaded; ++i)
    if (!strcmp(ctx->loaded[i].name_expr, name_expr)) return ctx->loaded[i].fn;
  return NULL;
}

/* Loads a cubin into ctx and records it under spec's name (or takes the module another thread recorded). */
static dsv4_status install(dsv4_context *ctx, const dsv4_kernel_spec *spec, const dsv4_cubin *cubin, CUfunction *out) {
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  CUmodule mod = NULL;
  CUfunction fn = NULL;
  CUresult r = ctx->drv->cuModuleLoadData(&mod, cubin->image);
  if (r == CUDA_SUCCESS) r = ctx->drv->cuModuleGetFunction(&fn, mod, cubin->lowered_name);
  if (r != CUDA_SUCCESS) {
    if (mod) ctx->drv->cuModuleUnload(mod);
    dsv4_ctx_leave(ctx, pushed);
    return dsv4_cu_fail(r, spec->name_expr);
  }
  pthread_mutex_lock(&ctx->mu);
  CUfunction existing = find_loaded(ctx, spec->name_expr);
  if (!existing && ctx->num_loaded == ctx->cap_loaded) {
    size_t cap = ctx->cap_loaded ? ctx->cap_loaded * 2 : 16;
    dsv4_loaded *grown = realloc(ctx->loaded, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&ctx->mu);
      ctx->drv->cuModuleUnload(mod);
      dsv4_ctx_leave(ctx, pushed);
      return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "growing the module table");
    }
    ctx->loaded = grown;
    ctx->cap_loaded = cap;
  }
  if (existing) {
    ctx->drv->cuModuleUnload(mod);  /* another thread won the race with an identical module */
    fn = existing;
  } else {
    dsv4_loaded *e = &ctx->loaded[ctx->num_loaded++];
    snprintf(e->name_expr, sizeof e->name_expr, "%s", spec->name_expr);
    e->module = mod;
    e->fn = fn;
  }
  pthread_mutex_unlock(&ctx->mu);
  dsv4_ctx_leave(ctx, pushed);
  *out = fn;
  return DSV4_OK;
}

static CUfunction lookup(dsv4_context *ctx, const char *name_expr) {
  pthread_mutex_lock(&ctx->mu);
  CUfunction fn = find_loaded(ctx, name_expr);
  pthread_mutex_unlock(&ctx->mu);
  return fn;
}

dsv4_status dsv4_ctx_function(dsv4_context *ctx, const dsv4_kernel_spec *spec, CUfunction *out) {
  CUfunction fn = lookup(ctx, spec->name_expr);
  if (fn) {
    dsv4_jit_count_memory_hit(ctx->jit);
    *out = fn;
    return DSV4_OK;
  }
  /* Compile or read outside the lock: a concurrent first use of one kernel costs a duplicate compile,
   * never a wrong result, and other kernels stay usable meanwhile. */
  dsv4_cubin cubin;
  DSV4_TRY(dsv4_jit_get(ctx->jit, spec, ctx->arch, false, &cubin));
  dsv4_status s = install(ctx, spec, &cubin, out);
  dsv4_cubin_free(&cubin);
  return s;
}

dsv4_status dsv4_ctx_functions(dsv4_context *ctx, const dsv4_kernel_spec *specs, int n, CUfunction *out) {
  dsv4_kernel_spec missing[64];
  int idx[64], m = 0;
  for (int i = 0; i < n; ++i) {
    out[i] = lookup(ctx, specs[i].name_expr);
    if (out[i]) dsv4_jit_count_memory_hit(ctx->jit);
    else if (m < 64) missing[m] = specs[i], idx[m++] = i;
    else return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "dsv4_ctx_functions: more than 64 kernels");
  }
  if (m == 0) return DSV4_OK;
  dsv4_cubin cubins[64];
  DSV4_TRY(dsv4_jit_get_many(ctx->jit, missing, m, ctx->arch, false, cubins));
  dsv4_status s = DSV4_OK;
  for (int i = 0; i < m; ++i) {
    if (s == DSV4_OK) s = install(ctx, &missing[i], &cubins[i], &out[idx[i]]);
    dsv4_cubin_free(&cubins[i]);
  }
  return s;
}

dsv4_status dsv4_launch(dsv4_context *ctx, CUfunction fn, unsigned grid, unsigned block, unsigned smem,
                        CUstream stream, void **args, bool pdl, const char *what) {
  if (!pdl || ctx->cc_major < 9) {
    DSV4_CU(ctx->drv, cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, smem, stream, args, NULL), what);
    return DSV4_OK;
  }
  CUlaunchAttribute attr;
  memset(&attr, 0, sizeof attr);
  attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  attr.value.programmaticStreamSerializationAllowed = 1;
  CUlaunchConfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.gridDimX = grid, cfg.gridDimY = 1, cfg.gridDimZ = 1;
  cfg.blockDimX = block, cfg.blockDimY = 1, cfg.blockDimZ = 1;
  cfg.sharedMemBytes = smem;
  cfg.hStream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  DSV4_CU(ctx->drv, cuLaunchKernelEx(&cfg, fn, args, NULL), what);
  return DSV4_OK;
}
