/* Run-time settings (SPEC section 4), one environment per CTest entry:
 *   test_env_default              DSV4_CACHE_DIR set: precompile fills it, a second run compiles nothing
 *   test_env_default off          DSV4_CACHE=0: no cache folder, precompile refuses, compiles still work
 *   test_env_default unwritable   DSV4_CACHE_DIR unusable: precompile fails with IO, compiles still work
 *   test_env_default dump         DSV4_DUMP_DIR: source, options and log of each compile are written */
#include <dirent.h>

#include "test_util.h"
#include "jit.h"
#include "ops/ops.h"

static dsv4_router_config pro(void) {
  dsv4_router_config c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &c);
  return c;
}

static void compile_through_env_jit(void) {
  dsv4_jit_config jc = dsv4_jit_config_from_env();
  dsv4_jit *j;
  assert_int_equal(dsv4_jit_create(&jc, &j), DSV4_OK);
  dsv4_kernel_spec spec;
  dsv4_hash_router_spec(6, &spec);
  dsv4_cubin c;
  assert_int_equal(dsv4_jit_get(j, &spec, "sm_90a", false, &c), DSV4_OK);
  assert_true(c.size > 0);
  dsv4_cubin_free(&c);
  dsv4_jit_destroy(j);
}

static void test_default(void **state) {
  (void)state;
  assert_non_null(dsv4_cache_dir());
  assert_string_equal(dsv4_cache_dir(), getenv("DSV4_CACHE_DIR"));
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dsv4_cache_dir());
  assert_int_equal(system(cmd), 0);
  dsv4_router_config c = pro();
  dsv4_jit_stats st;
  assert_int_equal(dsv4_precompile(&c, "sm_90a", &st), DSV4_OK);
  assert_true(st.compiles >= 1);
  assert_int_equal(st.disk_writes, st.compiles);
  assert_int_equal(dsv4_precompile(&c, "sm_90a", &st), DSV4_OK);
  assert_int_equal(st.compiles, 0);
  assert_true(st.disk_hits >= 1);
}

static void test_cache_off(void **state) {
  (void)state;
  assert_null(dsv4_cache_dir());
  assert_false(dsv4_jit_config_from_env().disk_enabled);
  dsv4_router_config c = pro();
  assert_status_names(dsv4_precompile(&c, "sm_90a", NULL), DSV4_ERR_IO, "DSV4_CACHE=0");
  const int32_t k = 512;
  assert_status_names(dsv4_precompile_topk(&k, 1, "sm_90a", NULL), DSV4_ERR_IO, "DSV4_CACHE=0");
  compile_through_env_jit();
  DIR *d = opendir(getenv("DSV4_CACHE_DIR"));  /* nothing was written where the cache would be */
  assert_null(d);
}

static void test_unwritable(void **state) {
  (void)state;
  dsv4_router_config c = pro();
  assert_int_equal(dsv4_precompile(&c, "sm_90a", NULL), DSV4_ERR_IO);
  compile_through_env_jit();  /* memory only, one warning on stderr */
}

static void test_dump(void **state) {
  (void)state;
  compile_through_env_jit();
  DIR *d = opendir(getenv("DSV4_DUMP_DIR"));
  assert_non_null(d);
  int cu = 0, opts = 0, log = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "hash_router-k6-", 15) != 0) continue;
    cu += strstr(e->d_name, ".cu") != NULL && strstr(e->d_name, ".cubin") == NULL;
    opts += strstr(e->d_name, ".options") != NULL;
    log += strstr(e->d_name, ".log") != NULL;
  }
  closedir(d);
  assert_true(cu >= 1 && opts >= 1 && log >= 1);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "default";
  const struct CMUnitTest t_default[] = {cmocka_unit_test(test_default)};
  const struct CMUnitTest t_off[] = {cmocka_unit_test(test_cache_off)};
  const struct CMUnitTest t_unwritable[] = {cmocka_unit_test(test_unwritable)};
  const struct CMUnitTest t_dump[] = {cmocka_unit_test(test_dump)};
  if (!strcmp(mode, "off")) return cmocka_run_group_tests(t_off, NULL, NULL);
  if (!strcmp(mode, "unwritable")) return cmocka_run_group_tests(t_unwritable, NULL, NULL);
  if (!strcmp(mode, "dump")) return cmocka_run_group_tests(t_dump, NULL, NULL);
  return cmocka_run_group_tests(t_default, NULL, NULL);
}
