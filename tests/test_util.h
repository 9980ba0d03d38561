/* Helpers shared by the cmocka suites. */
#ifndef DSV4_TEST_UTIL_H
#define DSV4_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dsv4/dsv4.h"

/* Asserts that `call` returned `status` and that dsv4_last_error() mentions `needle`. */
#define assert_status_names(call, status, needle)                                          \
  do {                                                                                     \
    dsv4_status st_ = (call);                                                              \
    if (st_ != (status) || !strstr(dsv4_last_error(), (needle))) {                         \
      fprintf(stderr, "%s\n  got %s, last error: %s\n  wanted %s naming '%s'\n", #call,    \
              dsv4_status_string(st_), dsv4_last_error(), dsv4_status_string(status), needle); \
      fail();                                                                              \
    }                                                                                      \
  } while (0)

/* xorshift64*: deterministic random inputs per seed. */
static inline uint64_t test_rand(uint64_t *s) {
  *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}

/* For GPU tests: exit 77 (CTest: skipped) when there is no driver or no device. */
#define DSV4_GPU_TEST_OR_SKIP(ctxp)                                                                \
  do {                                                                                             \
    dsv4_status st_ = dsv4_context_create(0, (ctxp));                                              \
    if (st_ == DSV4_ERR_NO_DRIVER || st_ == DSV4_ERR_NO_DEVICE) {                                  \
      printf("SKIPPED: no GPU (%s)\n", dsv4_last_error());                                         \
      return 77;                                                                                   \
    }                                                                                              \
    if (st_ != DSV4_OK) {                                                                          \
      fprintf(stderr, "dsv4_context_create: %s: %s\n", dsv4_status_string(st_), dsv4_last_error()); \
      return 1;                                                                                    \
    }                                                                                              \
    /* DSV4_TEST_FILTER: run only the cmocka tests whose name matches (wildcards * and ?). */      \
    if (getenv("DSV4_TEST_FILTER")) cmocka_set_test_filter(getenv("DSV4_TEST_FILTER"));            \
  } while (0)

#endif
