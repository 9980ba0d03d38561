/* Gate GEMM plan: the argument checks that need no GPU. Each bad argument gets its named status, *out is
 * NULL, and the context is never touched (a fake, unusable pointer stands in for it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ops/ops.h"

/* Any dereference of this would crash the test: the checks must run before the context is used. */
static dsv4_context *fake_ctx(void) { return (dsv4_context *)(uintptr_t)0x10; }

static void expect_create(dsv4_context *ctx, int32_t e, int32_t h, int64_t rows, dsv4_status want, const char *arg) {
  dsv4_gate_gemm_plan *p = (dsv4_gate_gemm_plan *)(uintptr_t)0x1;
  assert_int_equal(dsv4_gate_gemm_plan_create(ctx, e, h, rows, &p), want);
  assert_null(p);
  if (!strstr(dsv4_last_error(), arg)) fail_msg("error '%s' does not name '%s'", dsv4_last_error(), arg);
  assert_non_null(strstr(dsv4_last_error(), "dsv4_gate_gemm_plan_create"));
}

static void test_create_args(void **state) {
  (void)state;
  assert_int_equal(dsv4_gate_gemm_plan_create(fake_ctx(), 384, 7168, 4096, NULL), DSV4_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(dsv4_last_error(), "'out'"));
  expect_create(NULL, 384, 7168, 4096, DSV4_ERR_INVALID_ARGUMENT, "'ctx'");
  expect_create(fake_ctx(), 0, 7168, 4096, DSV4_ERR_INVALID_ARGUMENT, "'num_experts'");
  expect_create(fake_ctx(), -3, 7168, 4096, DSV4_ERR_INVALID_ARGUMENT, "'num_experts'");
  expect_create(fake_ctx(), 1025, 7168, 4096, DSV4_ERR_UNSUPPORTED, "'num_experts'");
  expect_create(fake_ctx(), 384, 0, 4096, DSV4_ERR_INVALID_ARGUMENT, "'hidden_size'");
  expect_create(fake_ctx(), 384, 4, 4096, DSV4_ERR_UNSUPPORTED, "'hidden_size'");
  expect_create(fake_ctx(), 384, 7170, 4096, DSV4_ERR_UNSUPPORTED, "'hidden_size'");
  expect_create(fake_ctx(), 384, 16392, 4096, DSV4_ERR_UNSUPPORTED, "'hidden_size'");
  expect_create(fake_ctx(), 384, 7168, 0, DSV4_ERR_INVALID_ARGUMENT, "'max_chunk_rows'");
  expect_create(fake_ctx(), 384, 7168, -1, DSV4_ERR_INVALID_ARGUMENT, "'max_chunk_rows'");
  expect_create(fake_ctx(), 384, 7168, ((int64_t)1 << 20) + 1, DSV4_ERR_UNSUPPORTED, "'max_chunk_rows'");
  /* The edges of the ranges pass the check. */
  assert_int_equal(dsv4_gate_gemm_check("f", fake_ctx(), 1, 8, 1), DSV4_OK);
  assert_int_equal(dsv4_gate_gemm_check("f", fake_ctx(), 1024, 16384, (int64_t)1 << 20), DSV4_OK);
  assert_int_equal(dsv4_gate_gemm_check("f", fake_ctx(), 144, 1024, 4096), DSV4_OK);
}

static void test_enqueue_and_accessors_without_plan(void **state) {
  (void)state;
  float out[4];
  uint16_t x[8] __attribute__((aligned(16)));
  assert_int_equal(dsv4_gate_gemm_enqueue(NULL, NULL, x, x, 1, out), DSV4_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(dsv4_last_error(), "'plan'"));
  assert_int_equal(dsv4_gate_gemm_enqueue_all(NULL, NULL, x, x, 1, out), DSV4_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(dsv4_last_error(), "'plan'"));
  assert_int_equal(dsv4_gate_gemm_chunk_rows(NULL), 0);
  assert_int_equal(dsv4_gate_gemm_workspace_bytes(NULL), 0);
  dsv4_gate_gemm_plan_destroy(NULL); /* no-op */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_args),
      cmocka_unit_test(test_enqueue_and_accessors_without_plan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
