/* The only process-wide state of dsv4: the driver table and the environment, each set up once. */
#include "driver.h"

#include <cudaTypedefs.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- environment ---------------- */

static dsv4_env g_env;
static pthread_once_t g_env_once = PTHREAD_ONCE_INIT;

static void env_read(void) {
  const char *c = getenv("DSV4_CACHE");
  g_env.cache_enabled = !(c && strcmp(c, "0") == 0);
  const char *dir = getenv("DSV4_CACHE_DIR");
  const char *xdg = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  if (dir && *dir)
    snprintf(g_env.cache_dir, sizeof g_env.cache_dir, "%s", dir);
  else if (xdg && *xdg)
    snprintf(g_env.cache_dir, sizeof g_env.cache_dir, "%s/dsv4", xdg);
  else if (home && *home)
    snprintf(g_env.cache_dir, sizeof g_env.cache_dir, "%s/.cache/dsv4", home);
  else
    g_env.cache_dir[0] = '\0';
  const char *log = getenv("DSV4_LOG");
  g_env.log_level = DSV4_LOG_WARN;
  if (log) {
    if (!strcmp(log, "info")) g_env.log_level = DSV4_LOG_INFO;
    else if (!strcmp(log, "debug")) g_env.log_level = DSV4_LOG_DEBUG;
    else if (!strcmp(log, "off") || !strcmp(log, "0")) g_env.log_level = DSV4_LOG_OFF;
  }
  const char *dump = getenv("DSV4_DUMP_DIR");
  snprintf(g_env.dump_dir, sizeof g_env.dump_dir, "%s", dump ? dump : "");
  const char *li = getenv("DSV4_JIT_LINEINFO");
  g_env.lineinfo = li && !strcmp(li, "1");
}

const dsv4_env *dsv4_env_get(void) {
  pthread_once(&g_env_once, env_read);
  return &g_env;
}

const char *dsv4_cache_dir(void) {
  const dsv4_env *e = dsv4_env_get();
  return (e->cache_enabled && e->cache_dir[0]) ? e->cache_dir : NULL;
}

/* ---------------- driver ---------------- */

static dsv4_driver g_drv;
static dsv4_status g_drv_status;
static char g_drv_error[1024];
static char g_drv_lib[256];
static pthread_once_t g_drv_once = PTHREAD_ONCE_INIT;

typedef CUresult (*get_proc_v2_fn)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*get_proc_v1_fn)(const char *, void **, int, cuuint64_t);

static void driver_load(void) {
  const char *lib = getenv("DSV4_TEST_DRIVER_LIB");
  snprintf(g_drv_lib, sizeof g_drv_lib, "%s", (lib && *lib) ? lib : "libcuda.so.1");
  g_drv_status = DSV4_ERR_NO_DRIVER;
  void *h = dlopen(g_drv_lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    snprintf(g_drv_error, sizeof g_drv_error,
             "the CUDA driver library %s could not be loaded (%s); is an NVIDIA driver installed?",
             g_drv_lib, why ? why : "unknown reason");
    return;
  }
  get_proc_v2_fn gp2 = (get_proc_v2_fn)dlsym(h, "cuGetProcAddress_v2");
  get_proc_v1_fn gp1 = gp2 ? NULL : (get_proc_v1_fn)dlsym(h, "cuGetProcAddress");
  if (!gp2 && !gp1) {
    snprintf(g_drv_error, sizeof g_drv_error, "%s has no cuGetProcAddress; the driver is too old", g_drv_lib);
    return;  /* the handle stays open: unloading a driver is never worth the risk */
  }
#define DSV4_DRIVER_LOOKUP(name, version)                                                         \
  {                                                                                               \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&name), PFN_##name##_v##version),      \
                   #name ": cuda.h's prototype is not the ABI version requested");                \
    void *p = NULL;                                                                               \
    CUdriverProcAddressQueryResult q = CU_GET_PROC_ADDRESS_SUCCESS;                               \
    CUresult r = gp2 ? gp2(#name, &p, version, CU_GET_PROC_ADDRESS_DEFAULT, &q)                   \
                     : gp1(#name, &p, version, CU_GET_PROC_ADDRESS_DEFAULT);                      \
    if (r != CUDA_SUCCESS || !p) {                                                                \
      snprintf(g_drv_error, sizeof g_drv_error,                                                   \
               "the CUDA driver %s lacks %s (error %d); a driver for CUDA %d.%d or newer is needed", \
               g_drv_lib, #name, (int)r, CUDA_VERSION / 1000, (CUDA_VERSION % 1000) / 10);        \
      return;                                                                                     \
    }                                                                                             \
    memcpy(&g_drv.name, &p, sizeof p);                                                            \
  }
  DSV4_DRIVER_FUNCS(DSV4_DRIVER_LOOKUP)
#undef DSV4_DRIVER_LOOKUP
  CUresult r = g_drv.cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char *name = NULL;
    g_drv.cuGetErrorName(r, &name);
    /* cuInit failing with "no device" is a machine with a driver but no GPU. */
    g_drv_status = (r == CUDA_ERROR_NO_DEVICE) ? DSV4_ERR_NO_DEVICE : DSV4_ERR_NO_DRIVER;
    snprintf(g_drv_error, sizeof g_drv_error, "cuInit failed: %s", name ? name : "unknown error");
    return;
  }
  g_drv.cuDriverGetVersion(&g_drv.driver_version);
  g_drv_status = DSV4_OK;
}

dsv4_status dsv4_driver_get(const dsv4_driver **out) {
  pthread_once(&g_drv_once, driver_load);
  if (g_drv_status != DSV4_OK) {
    if (out) *out = NULL;
    return dsv4_fail(g_drv_status, "%s", g_drv_error);
  }
  if (out) *out = &g_drv;
  return DSV4_OK;
}

const char *dsv4_driver_library_name(void) {
  pthread_once(&g_drv_once, driver_load);
  return g_drv_lib;
}

dsv4_status dsv4_cu_fail(CUresult r, const char *what) {
  const char *name = NULL, *desc = NULL;
  if (g_drv_status == DSV4_OK) {
    g_drv.cuGetErrorName(r, &name);
    g_drv.cuGetErrorString(r, &desc);
  }
  return dsv4_fail(r == CUDA_ERROR_OUT_OF_MEMORY ? DSV4_ERR_OUT_OF_MEMORY : DSV4_ERR_CUDA,
                   "%s: %s (%s)", what, name ? name : "CUDA error", desc ? desc : "no description");
}
