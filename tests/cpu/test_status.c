/* Status strings and the thread-local last error. */
#include <pthread.h>

#include "test_util.h"
#include "internal.h"

static void test_every_status_has_a_distinct_named_string(void **state) {
  (void)state;
  static const char *names[] = {"DSV4_OK", "DSV4_ERR_INVALID_ARGUMENT", "DSV4_ERR_UNSUPPORTED",
                                "DSV4_ERR_NO_DRIVER", "DSV4_ERR_NO_DEVICE", "DSV4_ERR_CUDA", "DSV4_ERR_NVRTC",
                                "DSV4_ERR_CUBLAS", "DSV4_ERR_OUT_OF_MEMORY", "DSV4_ERR_IO", "DSV4_ERR_FORMAT"};
  for (int s = DSV4_OK; s <= DSV4_ERR_FORMAT; ++s) {
    const char *str = dsv4_status_string((dsv4_status)s);
    assert_non_null(str);
    char want[64];
    snprintf(want, sizeof want, "%s:", names[s]);
    assert_true(strncmp(str, want, strlen(want)) == 0);
    for (int t = 0; t < s; ++t) assert_string_not_equal(str, dsv4_status_string((dsv4_status)t));
  }
  assert_non_null(strstr(dsv4_status_string((dsv4_status)999), "unknown"));
}

static void test_explicit_values(void **state) {
  (void)state;
  assert_int_equal(DSV4_OK, 0);
  assert_int_equal(DSV4_ERR_INVALID_ARGUMENT, 1);
  assert_int_equal(DSV4_ERR_FORMAT, 10);
}

static void *other_thread(void *arg) {
  char *seen = arg;
  snprintf(seen, 256, "%s", dsv4_last_error());
  dsv4_fail(DSV4_ERR_IO, "failure on the other thread");
  return NULL;
}

static void test_last_error_is_thread_local(void **state) {
  (void)state;
  assert_int_equal(dsv4_fail(DSV4_ERR_FORMAT, "detail %d", 42), DSV4_ERR_FORMAT);
  assert_string_equal(dsv4_last_error(), "detail 42");
  char seen[256];
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, other_thread, seen), 0);
  pthread_join(t, NULL);
  assert_string_equal(seen, "");                 /* a new thread starts clean */
  assert_string_equal(dsv4_last_error(), "detail 42");  /* and its failure did not leak here */
}

static void test_version(void **state) {
  (void)state;
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", DSV4_VERSION_MAJOR, DSV4_VERSION_MINOR, DSV4_VERSION_PATCH);
  assert_string_equal(dsv4_version(), want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_status_has_a_distinct_named_string),
      cmocka_unit_test(test_explicit_values),
      cmocka_unit_test(test_last_error_is_thread_local),
      cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
