/*
 * Driver loader: the CUDA driver is dlopen()ed once per process (pthread_once) and its entry points
 * fetched through cuGetProcAddress. libcuda is never linked. The table is immutable after loading, so
 * any thread may use it.
 */
#ifndef DSV4_DRIVER_H
#define DSV4_DRIVER_H

#include <cuda.h>

#include "internal.h"

/* X(name, version): every driver entry point dsv4 (and its tests and tools) uses, with the ABI version to
 * ask cuGetProcAddress for: the one whose prototype cuda.h declares under that name (checked at compile
 * time in driver.c against cudaTypedefs.h). Asking for "the newest" is wrong: CUDA 13 gives
 * cuCtxSynchronize a context argument, and a caller of the old prototype would pass garbage. */
#define DSV4_DRIVER_FUNCS(X) \
  X(cuInit, 2000) X(cuDriverGetVersion, 2020) X(cuGetErrorName, 6000) X(cuGetErrorString, 6000) \
  X(cuDeviceGetCount, 2000) X(cuDeviceGet, 2000) X(cuDeviceGetAttribute, 2000) X(cuDeviceGetName, 2000) \
  X(cuDevicePrimaryCtxRetain, 7000) X(cuDevicePrimaryCtxRelease, 11000) X(cuCtxGetCurrent, 4000) \
  X(cuCtxSetCurrent, 4000) X(cuCtxPushCurrent, 4000) X(cuCtxPopCurrent, 4000) X(cuCtxSynchronize, 2000) \
  X(cuModuleLoadData, 2000) X(cuModuleUnload, 2000) X(cuModuleGetFunction, 2000) \
  X(cuFuncSetAttribute, 9000) X(cuFuncGetAttribute, 2020) X(cuLaunchKernel, 4000) \
  X(cuLaunchKernelEx, 11060) X(cuMemAlloc, 3020) X(cuMemFree, 3020) X(cuMemcpyHtoD, 3020) \
  X(cuMemcpyDtoH, 3020) X(cuMemcpyDtoD, 3020) X(cuMemcpyDtoDAsync, 3020) X(cuMemcpyHtoDAsync, 3020) \
  X(cuMemcpyDtoHAsync, 3020) X(cuMemsetD8, 3020) X(cuMemsetD32, 3020) X(cuMemsetD8Async, 3020) \
  X(cuMemsetD32Async, 3020) X(cuMemGetInfo, 3020) X(cuStreamCreate, 2000) X(cuStreamDestroy, 4000) \
  X(cuStreamSynchronize, 2000) X(cuStreamWaitEvent, 3020) X(cuStreamBeginCapture, 10010) X(cuStreamEndCapture, 10000) \
  X(cuStreamIsCapturing, 10000) X(cuGraphInstantiateWithFlags, 11040) X(cuGraphLaunch, 10000) \
  X(cuGraphExecDestroy, 10000) X(cuGraphDestroy, 10000) X(cuEventCreate, 2000) X(cuEventDestroy, 4000) \
  X(cuEventRecord, 2000) X(cuEventSynchronize, 2000) X(cuEventElapsedTime, 2000) \
  X(cuOccupancyMaxActiveClusters, 11070)

typedef struct dsv4_driver {
#define DSV4_DRIVER_MEMBER(name, version) __typeof__(&name) name;
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
