/* Status strings, the thread-local last error, logging. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[2048];

const char *dsv4_status_string(dsv4_status s) {
  switch (s) {
    case DSV4_OK: return "DSV4_OK: success";
    case DSV4_ERR_INVALID_ARGUMENT: return "DSV4_ERR_INVALID_ARGUMENT: an argument is invalid";
    case DSV4_ERR_UNSUPPORTED: return "DSV4_ERR_UNSUPPORTED: outside the supported shapes or targets";
    case DSV4_ERR_NO_DRIVER: return "DSV4_ERR_NO_DRIVER: the CUDA driver (libcuda.so.1) could not be loaded";
    case DSV4_ERR_NO_DEVICE: return "DSV4_ERR_NO_DEVICE: no usable CUDA device";
    case DSV4_ERR_CUDA: return "DSV4_ERR_CUDA: a CUDA driver call failed";
    case DSV4_ERR_NVRTC: return "DSV4_ERR_NVRTC: run-time compilation failed";
    case DSV4_ERR_CUBLAS: return "DSV4_ERR_CUBLAS: a cuBLASLt call failed";
    case DSV4_ERR_OUT_OF_MEMORY: return "DSV4_ERR_OUT_OF_MEMORY: out of memory";
    case DSV4_ERR_IO: return "DSV4_ERR_IO: a file operation failed";
    case DSV4_ERR_FORMAT: return "DSV4_ERR_FORMAT: malformed file contents";
  }
  return "DSV4_ERR_?: unknown status";
}

const char *dsv4_last_error(void) { return last_error; }

const char *dsv4_version(void) { return DSV4_VERSION_STRING; }

void dsv4_clear_error(void) { last_error[0] = '\0'; }

dsv4_status dsv4_fail(dsv4_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  dsv4_log(DSV4_LOG_DEBUG, "error %d: %s", (int)s, last_error);
  return s;
}

void dsv4_log(dsv4_log_level level, const char *fmt, ...) {
  if (level > dsv4_env_get()->log_level) return;
  char line[2560];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "dsv4: %s\n", line);
}

double dsv4_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}
