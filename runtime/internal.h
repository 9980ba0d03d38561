/* Internal helpers shared by every layer: errors, logging, the process-wide environment. */
#ifndef DSV4_INTERNAL_H
#define DSV4_INTERNAL_H

#include "dsv4/dsv4.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#define DSV4_INTERNAL __attribute__((visibility("hidden")))

/* Records a formatted detail for dsv4_last_error() on this thread and returns s. */
DSV4_INTERNAL dsv4_status dsv4_fail(dsv4_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
DSV4_INTERNAL void dsv4_clear_error(void);

/* Argument checks: return DSV4_ERR_INVALID_ARGUMENT naming the argument. */
#define DSV4_CHECK_ARG(cond, fn, arg, why)                                                          \
  do {                                                                                              \
    if (!(cond)) return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "%s: argument '%s' %s", fn, arg, why); \
  } while (0)
#define DSV4_CHECK_RANGE(cond, fn, arg, value, range)                                               \
  do {                                                                                              \
    if (!(cond))                                                                                    \
      return dsv4_fail(DSV4_ERR_UNSUPPORTED, "%s: argument '%s' = %lld is outside the supported "   \
                       "range %s", fn, arg, (long long)(value), range);                             \
  } while (0)
/* A device pointer argument: not NULL, and aligned to `align` bytes. */
#define DSV4_CHECK_PTR(ptr, fn, arg, align)                                                          \
  do {                                                                                              \
    DSV4_CHECK_ARG((ptr) != NULL, fn, arg, "is NULL");                                              \
    DSV4_CHECK_ARG(((uintptr_t)(ptr) & ((align) - 1)) == 0, fn, arg, "is not " #align "-byte aligned"); \
  } while (0)
#define DSV4_TRY(expr)                        \
  do {                                        \
    dsv4_status dsv4_try_s_ = (expr);         \
    if (dsv4_try_s_ != DSV4_OK) return dsv4_try_s_; \
  } while (0)

typedef enum { DSV4_LOG_OFF = 0, DSV4_LOG_WARN = 1, DSV4_LOG_INFO = 2, DSV4_LOG_DEBUG = 3 } dsv4_log_level;

/* The environment, read once per process (SPEC section 4). */
typedef struct dsv4_env {
  bool cache_enabled;      /* DSV4_CACHE != "0" */
  char cache_dir[4096];    /* resolved cache root ("" if none could be resolved) */
  dsv4_log_level log_level;
  char dump_dir[4096];     /* DSV4_DUMP_DIR or "" */
  bool lineinfo;           /* DSV4_JIT_LINEINFO=1: compile with -lineinfo */
} dsv4_env;
DSV4_INTERNAL const dsv4_env *dsv4_env_get(void);

DSV4_INTERNAL void dsv4_log(dsv4_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

DSV4_INTERNAL double dsv4_now_ms(void);

#endif
