/* Every kernel a router can use compiles with NVRTC for sm_80, sm_90a and sm_100a (no GPU needed), and a
 * failed compile reports DSV4_ERR_NVRTC with the compiler's log. */
#include "test_util.h"
#include "jit.h"
#include "ops/ops.h"
#include "jit_test_util.h"

static void test_every_router_kernel_compiles_for_every_arch(void **state) {
  (void)state;
  /* The presets and the corners of the supported range (k = 1, k = 16, E = 1, E not a power of two). */
  dsv4_router_config cfgs[6];
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &cfgs[0]);
  dsv4_router_config_preset("v4-flash", DSV4_ROUTER_DENSE, &cfgs[1]);
  cfgs[2] = cfgs[0], cfgs[2].num_experts = 1, cfgs[2].top_k = 1, cfgs[2].hidden_size = 8;
  cfgs[3] = cfgs[0], cfgs[3].num_experts = 1000, cfgs[3].top_k = 16, cfgs[3].hidden_size = 2056;
  cfgs[4] = cfgs[0], cfgs[4].num_experts = 1024, cfgs[4].top_k = 8, cfgs[4].hidden_size = 16384;
  cfgs[5] = cfgs[0], cfgs[5].num_experts = 144, cfgs[5].top_k = 2, cfgs[5].hidden_size = 1024;
  char seen[256][192];
  int num_seen = 0, compiled = 0;
  for (int c = 0; c < 6; ++c) {
    assert_int_equal(dsv4_router_config_check(&cfgs[c]), DSV4_OK);
    dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
    int n = dsv4_router_kernel_specs(&cfgs[c], specs);
    assert_true(n >= 1);
    for (int i = 0; i < n; ++i) {
      int dup = 0;
      for (int s = 0; s < num_seen; ++s) dup |= !strcmp(seen[s], specs[i].name_expr);
      if (dup) continue;
      snprintf(seen[num_seen++], sizeof seen[0], "%s", specs[i].name_expr);
      test_compile_every_arch(&specs[i], NULL);
      compiled += 3;
    }
  }
  printf("compiled %d kernel(s) x 3 archs = %d cubins\n", num_seen, compiled);
}

static void test_compile_failure_reports_the_log(void **state) {
  (void)state;
  dsv4_kernel_spec bad = {"hash_router.cu", "dsv4::no_such_kernel<3>", "bad"};
  dsv4_cubin cubin;
  assert_status_names(dsv4_jit_compile(NULL, &bad, "sm_90a", &cubin), DSV4_ERR_NVRTC, "no_such_kernel");
  assert_null(cubin.image);
  dsv4_kernel_spec missing = {"no_such_file.cu", "x", "x"};
  assert_status_names(dsv4_jit_compile(NULL, &missing, "sm_90a", &cubin), DSV4_ERR_INVALID_ARGUMENT, "no_such_file.cu");
}

static void test_arch_for_compute_capability(void **state) {
  (void)state;
  char a[16];
  dsv4_arch_for_cc(9, 0, a);
  assert_string_equal(a, "sm_90a");
  dsv4_arch_for_cc(10, 0, a);
  assert_string_equal(a, "sm_100a");
  dsv4_arch_for_cc(8, 6, a);
  assert_string_equal(a, "sm_86");
  dsv4_arch_for_cc(12, 0, a);
  assert_string_equal(a, "sm_120");
  assert_int_equal(dsv4_arch_check("sm_80"), DSV4_OK);
  assert_int_equal(dsv4_arch_check("sm_90a"), DSV4_OK);
  assert_int_equal(dsv4_arch_check("sm_100a"), DSV4_OK);
  int num = -1;   /* dsv4_precompile_topk's sm_90+ test reads the number from here */
  assert_int_equal(dsv4_arch_number("sm_80", &num), DSV4_OK);
  assert_int_equal(num, 80);
  assert_int_equal(dsv4_arch_number("sm_100a", &num), DSV4_OK);
  assert_int_equal(num, 100);
  num = -1;
  assert_int_equal(dsv4_arch_number("sm_9", &num), DSV4_ERR_INVALID_ARGUMENT);
  assert_int_equal(num, -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_router_kernel_compiles_for_every_arch),
      cmocka_unit_test(test_compile_failure_reports_the_log),
      cmocka_unit_test(test_arch_for_compute_capability),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
