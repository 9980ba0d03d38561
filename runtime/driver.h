/*
 * Driver loader: the CUDA driver is dlopen()ed once per process (pthread_once) and its entry points
 * fetched through cuGetProcAddress. libcuda is never linked. The table is immutable after loading, so
 * any thread may use it.
 */
#ifndef DSV4_DRIVER_H
#define DSV4_DRIVER_H

#include <cuda.h>

#include "internal.h"

/* X(name): every driver entry point dsv4 (and its tests and tools) uses. */
#define DSV4_DRIVER_FUNCS(X)                                                                     \
  X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuGetErrorString) X(cuDeviceGetCount)      \
  X(cuDeviceGet) X(cuDeviceGetAttribute) X(cuDeviceGetName) X(cuDevicePrimaryCtxRetain)          \
  X(cuDevicePrimaryCtxRelease) X(cuCtxGetCurrent) X(cuCtxSetCurrent) X(cuCtxPushCurrent)         \
  X(cuCtxPopCurrent) X(cuCtxSynchronize) X(cuModuleLoadData) X(cuModuleUnload)                   \
  X(cuModuleGetFunction) X(cuFuncSetAttribute) X(cuFuncGetAttribute) X(cuLaunchKernel)           \
  X(cuLaunchKernelEx) X(cuMemAlloc) X(cuMemFree) X(cuMemcpyHtoD) X(cuMemcpyDtoH)                 \
  X(cuMemcpyDtoD) X(cuMemcpyDtoDAsync) X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync) X(cuMemsetD8)   \
  X(cuMemsetD32) X(cuMemsetD8Async) X(cuMemsetD32Async) X(cuMemGetInfo) X(cuStreamCreate)         \
  X(cuStreamDestroy) X(cuStreamSynchronize) X(cuStreamBeginCapture) X(cuStreamEndCapture)        \
  X(cuStreamIsCapturing) X(cuGraphInstantiate) X(cuGraphLaunch) X(cuGraphExecDestroy)             \
  X(cuGraphDestroy) X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord) X(cuEventSynchronize)    \
  X(cuEventElapsedTime)

typedef struct dsv4_driver {
#define DSV4_DRIVER_MEMBER(name) __typeof__(&name) name;
  DSV4_DRIVER_FUNCS(DSV4_DRIVER_MEMBER)
#undef DSV4_DRIVER_MEMBER
  int driver_version; /* cuDriverGetVersion, e.g. 13000 */
} dsv4_driver;

/* Loads the driver once and returns its table in *out.
 * @return DSV4_OK, DSV4_ERR_NO_DRIVER (libcuda.so.1 missing or cuInit failed) — the same every call. */
DSV4_INTERNAL dsv4_status dsv4_driver_get(const dsv4_driver **out);

/* Turns a failed CUresult into DSV4_ERR_CUDA (DSV4_ERR_OUT_OF_MEMORY for CUDA_ERROR_OUT_OF_MEMORY)
 * with "what: CUDA_ERROR_X (description)" as the detail. */
DSV4_INTERNAL dsv4_status dsv4_cu_fail(CUresult r, const char *what);
#define DSV4_CU(drv, call, what)                              \
  do {                                                        \
    CUresult dsv4_cu_r_ = (drv)->call;                        \
    if (dsv4_cu_r_ != CUDA_SUCCESS) return dsv4_cu_fail(dsv4_cu_r_, what); \
  } while (0)

/* Test hook: the library file name dlopen()ed ("libcuda.so.1" unless DSV4_TEST_DRIVER_LIB was set
 * at first use). Lets the CPU suite prove the no-driver path on machines that do have a driver. */
DSV4_INTERNAL const char *dsv4_driver_library_name(void);

#endif
