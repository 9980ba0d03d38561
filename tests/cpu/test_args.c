/* Argument checks of the public API that need no GPU: each bad argument gets its named status, names the
 * argument, and touches nothing (the fake context below would crash if it were used). */
#include "test_util.h"

static dsv4_context *fake_ctx(void) { return (dsv4_context *)(uintptr_t)0xdead0000u; }
static const int32_t *dptr_i(void) { return (const int32_t *)(uintptr_t)0x1000u; }

static void test_hash_router_args(void **state) {
  (void)state;
  dsv4_context *c = fake_ctx();
  const int32_t *tok = dptr_i(), *lut = dptr_i();
  float *w = (float *)(uintptr_t)0x2000u;
  int32_t *ids = (int32_t *)(uintptr_t)0x3000u;
  const char *fn = "dsv4_hash_router";
  assert_status_names(dsv4_hash_router(NULL, NULL, tok, 4, lut, 100, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'ctx'");
  assert_status_names(dsv4_hash_router(c, NULL, NULL, 4, lut, 100, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'token_ids'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, -1, lut, 100, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'num_tokens'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, NULL, 100, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'lut'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 0, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'vocab_size'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, -5, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'vocab_size'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, (1 << 24) + 1, 6, w, ids), DSV4_ERR_UNSUPPORTED, "'vocab_size'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 100, 0, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'k'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 100, -3, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'k'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 100, 17, w, ids), DSV4_ERR_UNSUPPORTED, "'k'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 100, 6, NULL, ids), DSV4_ERR_INVALID_ARGUMENT, "'topk_weights'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 100, 6, w, NULL), DSV4_ERR_INVALID_ARGUMENT, "'topk_ids'");
  assert_non_null(strstr(dsv4_last_error(), fn));
  const int32_t *odd = (const int32_t *)(uintptr_t)0x1002u;
  assert_status_names(dsv4_hash_router(c, NULL, odd, 4, lut, 100, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'token_ids'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, odd, 100, 6, w, ids), DSV4_ERR_INVALID_ARGUMENT, "'lut'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 100, 6, (float *)odd, ids), DSV4_ERR_INVALID_ARGUMENT,
                      "'topk_weights'");
  assert_status_names(dsv4_hash_router(c, NULL, tok, 4, lut, 100, 6, w, (int32_t *)odd), DSV4_ERR_INVALID_ARGUMENT,
                      "'topk_ids'");
  /* num_tokens == 0 is a no-op that succeeds without touching the context or the (NULL) buffers. */
  assert_int_equal(dsv4_hash_router(c, NULL, NULL, 0, lut, 100, 6, NULL, NULL), DSV4_OK);
}

static void test_presets(void **state) {
  (void)state;
  dsv4_router_config c;
  assert_int_equal(dsv4_router_config_preset("v4-pro", DSV4_ROUTER_HASH, &c), DSV4_OK);
  assert_int_equal(c.mode, DSV4_ROUTER_HASH);
  assert_int_equal(c.hidden_size, 7168);
  assert_int_equal(c.num_experts, 384);
  assert_int_equal(c.top_k, 6);
  assert_int_equal(c.vocab_size, 129280);
  assert_true(c.routed_scaling_factor == 2.5f);
  assert_int_equal(c.hash_weights, DSV4_HASH_WEIGHTS_SCORED);
  assert_int_equal(dsv4_router_config_check(&c), DSV4_OK);
  assert_int_equal(dsv4_router_config_preset("v4-flash", DSV4_ROUTER_DENSE, &c), DSV4_OK);
  assert_int_equal(c.hidden_size, 4096);
  assert_int_equal(c.num_experts, 256);
  assert_true(c.routed_scaling_factor == 1.5f);
  dsv4_router_config before = c;
  assert_status_names(dsv4_router_config_preset("v5", DSV4_ROUTER_DENSE, &c), DSV4_ERR_INVALID_ARGUMENT, "'name'");
  assert_memory_equal(&before, &c, sizeof c);  /* unchanged on failure */
  assert_status_names(dsv4_router_config_preset(NULL, DSV4_ROUTER_DENSE, &c), DSV4_ERR_INVALID_ARGUMENT, "'name'");
  assert_status_names(dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, NULL), DSV4_ERR_INVALID_ARGUMENT, "'out'");
  assert_status_names(dsv4_router_config_preset("v4-pro", (dsv4_router_mode)7, &c), DSV4_ERR_INVALID_ARGUMENT, "'mode'");
}

static void test_config_ranges(void **state) {
  (void)state;
  dsv4_router_config base, c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &base);
  c = base, c.num_experts = 0;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_UNSUPPORTED, "num_experts");
  c = base, c.num_experts = 1025;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_UNSUPPORTED, "num_experts");
  c = base, c.num_experts = 1000;  /* not a power of two: fine */
  assert_int_equal(dsv4_router_config_check(&c), DSV4_OK);
  c = base, c.num_experts = 3, c.top_k = 4;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_UNSUPPORTED, "top_k");
  c = base, c.num_experts = 3, c.top_k = 3;
  assert_int_equal(dsv4_router_config_check(&c), DSV4_OK);
  c = base, c.top_k = 17;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_UNSUPPORTED, "top_k");
  c = base, c.hidden_size = 7170;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_UNSUPPORTED, "hidden_size");
  c = base, c.hidden_size = 16392;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_UNSUPPORTED, "hidden_size");
  c = base, c.vocab_size = (1 << 24) + 1;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_UNSUPPORTED, "vocab_size");
  c = base, c.routed_scaling_factor = -1.0f;
  assert_status_names(dsv4_router_config_check(&c), DSV4_ERR_INVALID_ARGUMENT, "routed_scaling_factor");
  assert_status_names(dsv4_router_config_check(NULL), DSV4_ERR_INVALID_ARGUMENT, "'cfg'");
}

static void test_precompile_args(void **state) {
  (void)state;
  dsv4_router_config c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &c);
  assert_status_names(dsv4_precompile(&c, "sm90a", NULL), DSV4_ERR_INVALID_ARGUMENT, "'arch'");
  assert_status_names(dsv4_precompile(&c, "compute_90", NULL), DSV4_ERR_INVALID_ARGUMENT, "'arch'");
  assert_status_names(dsv4_precompile(&c, "sm_90ax", NULL), DSV4_ERR_INVALID_ARGUMENT, "'arch'");
  assert_status_names(dsv4_precompile(&c, "sm_20", NULL), DSV4_ERR_UNSUPPORTED, "'arch'");
  assert_status_names(dsv4_precompile(&c, NULL, NULL), DSV4_ERR_INVALID_ARGUMENT, "'arch'");
  c.top_k = 0;
  assert_status_names(dsv4_precompile(&c, "sm_90a", NULL), DSV4_ERR_UNSUPPORTED, "top_k");
  assert_status_names(dsv4_precompile(NULL, "sm_90a", NULL), DSV4_ERR_INVALID_ARGUMENT, "'cfg'");
  /* The indexer top-k's kernels: every argument checked before anything is compiled. */
  const int32_t ks[17] = {512, 2048, 1, 4096, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  const int32_t bad_lo[2] = {512, 0}, bad_hi[1] = {4097};
  assert_status_names(dsv4_precompile_topk(NULL, 1, "sm_90a", NULL), DSV4_ERR_INVALID_ARGUMENT, "'ks'");
  assert_status_names(dsv4_precompile_topk(ks, 0, "sm_90a", NULL), DSV4_ERR_UNSUPPORTED, "'count'");
  assert_status_names(dsv4_precompile_topk(ks, 17, "sm_90a", NULL), DSV4_ERR_UNSUPPORTED, "'count'");
  assert_status_names(dsv4_precompile_topk(bad_lo, 2, "sm_90a", NULL), DSV4_ERR_UNSUPPORTED, "'ks[1]'");
  assert_status_names(dsv4_precompile_topk(bad_hi, 1, "sm_90a", NULL), DSV4_ERR_UNSUPPORTED, "'ks[0]'");
  assert_status_names(dsv4_precompile_topk(ks, 2, "sm90a", NULL), DSV4_ERR_INVALID_ARGUMENT, "'arch'");
  assert_status_names(dsv4_precompile_topk(ks, 2, NULL, NULL), DSV4_ERR_INVALID_ARGUMENT, "'arch'");
}

static void test_context_args(void **state) {
  (void)state;
  assert_status_names(dsv4_context_create(0, NULL), DSV4_ERR_INVALID_ARGUMENT, "'out'");
  dsv4_jit_stats st;
  assert_status_names(dsv4_context_jit_stats(NULL, &st), DSV4_ERR_INVALID_ARGUMENT, "'ctx'");
  assert_null(dsv4_context_arch(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hash_router_args), cmocka_unit_test(test_presets),
      cmocka_unit_test(test_config_ranges),    cmocka_unit_test(test_precompile_args),
      cmocka_unit_test(test_context_args),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
