/* The loader with no driver: run with DSV4_TEST_DRIVER_LIB naming a library that does not exist, so the
 * no-driver path is proven even on a machine that has a driver. */
#include <pthread.h>

#include "test_util.h"
#include "driver.h"

static void test_context_create_reports_no_driver(void **state) {
  (void)state;
  dsv4_context *ctx = (dsv4_context *)0x1;
  assert_status_names(dsv4_context_create(0, &ctx), DSV4_ERR_NO_DRIVER, "libcuda-absent.so.1");
  assert_null(ctx);
  /* The same answer every time: the load is attempted once. */
  assert_status_names(dsv4_context_create(0, &ctx), DSV4_ERR_NO_DRIVER, "could not be loaded");
  assert_string_equal(dsv4_driver_library_name(), "libcuda-absent.so.1");
}

static void *create_on_thread(void *arg) {
  dsv4_context *ctx = NULL;
  *(dsv4_status *)arg = dsv4_context_create(0, &ctx);
  return NULL;
}

static void test_concurrent_first_use(void **state) {
  (void)state;
  pthread_t t[8];
  dsv4_status s[8];
  for (int i = 0; i < 8; ++i) pthread_create(&t[i], NULL, create_on_thread, &s[i]);
  for (int i = 0; i < 8; ++i) {
    pthread_join(t[i], NULL);
    assert_int_equal(s[i], DSV4_ERR_NO_DRIVER);
  }
}

static void test_cpu_paths_still_work(void **state) {
  (void)state;
  dsv4_router_config cfg;
  assert_int_equal(dsv4_router_config_preset("v4-flash", DSV4_ROUTER_DENSE, &cfg), DSV4_OK);
  assert_int_equal(cfg.num_experts, 256);
  assert_non_null(dsv4_status_string(DSV4_ERR_NO_DRIVER));
  dsv4_context_destroy(NULL);  /* a no-op */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_context_create_reports_no_driver),
      cmocka_unit_test(test_concurrent_first_use),
      cmocka_unit_test(test_cpu_paths_still_work),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
