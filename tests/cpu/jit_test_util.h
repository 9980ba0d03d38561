/* The CPU tests' NVRTC check, shared: a kernel spec compiles for sm_80, sm_90a and sm_100a into a cubin. Include
 * after test_util.h (cmocka) and jit.h. */
#ifndef DSV4_JIT_TEST_UTIL_H
#define DSV4_JIT_TEST_UTIL_H

#include <stdio.h>
#include <string.h>

static const char *const k_test_archs[3] = {"sm_80", "sm_90a", "sm_100a"};

/* Compiles spec for each of k_test_archs: every compile must succeed (NVRTC's log printed otherwise) and give an
 * ELF image of more than 256 bytes with a lowered name that contains `lowered` (any name when NULL). Prints a
 * line per cubin (size, time). */
static inline void test_compile_every_arch(const dsv4_kernel_spec *spec, const char *lowered) {
  for (int a = 0; a < 3; ++a) {
    dsv4_cubin cubin;
    const double t0 = dsv4_now_ms();
    const dsv4_status s = dsv4_jit_compile(NULL, spec, k_test_archs[a], &cubin);
    if (s != DSV4_OK) fprintf(stderr, "%s for %s: %s\n", spec->name_expr, k_test_archs[a], dsv4_last_error());
    assert_int_equal(s, DSV4_OK);
    assert_true(cubin.size > 256);
    assert_memory_equal(cubin.image, "\177ELF", 4);   /* a cubin is an ELF image */
    assert_true(strlen(cubin.lowered_name) > 0);
    if (lowered) assert_non_null(strstr(cubin.lowered_name, lowered));
    printf("  %-40s %-8s %7zu bytes %6.0f ms\n", spec->name_expr, k_test_archs[a], cubin.size, dsv4_now_ms() - t0);
    dsv4_cubin_free(&cubin);
  }
}

#endif
