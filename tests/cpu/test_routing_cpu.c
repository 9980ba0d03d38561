/* Routing primitives with no GPU: every argument check of dsv4_topk_select and dsv4_activation_topk (and of
 * the internal split-slab and scored-hash forms) returns the named status naming the argument; valid
 * arguments pass the checks; the kernel choice of topk_select; the router config lists the new kernels; and
 * every new kernel compiles with NVRTC for sm_80, sm_90a and sm_100a at several specialisations. */
#include <math.h>

#include "test_util.h"
#include "jit.h"
#include "ops/ops.h"
#include "jit_test_util.h"

/* The checks run before the context is touched, so a non-NULL stand-in works for them. A check that let bad
 * arguments through would reach the launcher with this pointer and crash the test. */
#define FAKE_CTX ((dsv4_context *)(uintptr_t)0x1000)
#define DEV_F ((float *)(uintptr_t)0x7f0000001000ull)          /* stand-in device pointers, 16-byte aligned */
#define DEV_F2 ((float *)(uintptr_t)0x7f0000002000ull)
#define DEV_I ((int32_t *)(uintptr_t)0x7f0000003000ull)
#define DEV_I2 ((int32_t *)(uintptr_t)0x7f0000004000ull)
#define MISALIGNED_F ((float *)(uintptr_t)0x7f0000001002ull)
#define MISALIGNED_I ((int32_t *)(uintptr_t)0x7f0000003001ull)

enum { INV = DSV4_ERR_INVALID_ARGUMENT, UNS = DSV4_ERR_UNSUPPORTED };

/* ---------------- dsv4_topk_select ---------------- */
static void test_topk_select_args(void **state) {
  (void)state;
  dsv4_context *c = FAKE_CTX;
  const float *in = DEV_F;
  float *ov = DEV_F2;
  int32_t *oi = DEV_I;
  assert_status_names(dsv4_topk_select(NULL, NULL, in, 4, 384, 384, 6, ov, oi), INV, "'ctx'");
  assert_status_names(dsv4_topk_select(c, NULL, NULL, 4, 384, 384, 6, ov, oi), INV, "'scores'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 384, 6, NULL, oi), INV, "'out_values'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 384, 6, ov, NULL), INV, "'out_indices'");
  assert_status_names(dsv4_topk_select(c, NULL, MISALIGNED_F, 4, 384, 384, 6, ov, oi), INV, "'scores'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 384, 6, MISALIGNED_F, oi), INV, "'out_values'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 384, 6, ov, MISALIGNED_I), INV, "'out_indices'");
  assert_status_names(dsv4_topk_select(c, NULL, in, -1, 384, 384, 6, ov, oi), INV, "'rows'");
  assert_status_names(dsv4_topk_select(c, NULL, in, INT64_MIN, 384, 384, 6, ov, oi), INV, "'rows'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 0, 384, 6, ov, oi), INV, "'cols'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, -5, 384, 6, ov, oi), INV, "'cols'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, (1 << 20) + 1, 1 << 21, 6, ov, oi), UNS, "'cols'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, (int64_t)1 << 32, (int64_t)1 << 32, 6, ov, oi), UNS, "'cols'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 383, 6, ov, oi), INV, "'row_stride'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, -384, 6, ov, oi), INV, "'row_stride'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 384, 0, ov, oi), INV, "'k'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 384, -3, ov, oi), INV, "'k'");
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 384, 384, 385, ov, oi), UNS, "'k'");       /* k > cols */
  assert_status_names(dsv4_topk_select(c, NULL, in, 4, 1 << 20, 1 << 20, 4097, ov, oi), UNS, "'k'");  /* > 4096 */
  assert_status_names(dsv4_topk_select(c, NULL, in, (int64_t)1 << 40, 1 << 20, 1 << 20, 6, ov, oi), UNS, "'rows'");
  /* Every message names the function too. */
  dsv4_topk_select(c, NULL, in, 4, 384, 384, 0, ov, oi);
  assert_non_null(strstr(dsv4_last_error(), "dsv4_topk_select"));
}

static void test_topk_select_valid_args_pass(void **state) {
  (void)state;
  const char *fn = "t";
  const void *c = FAKE_CTX;
  assert_int_equal(dsv4_topk_select_check(fn, c, DEV_F, 4, 384, 384, 6, DEV_F2, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_topk_select_check(fn, c, DEV_F, 4, 1, 1, 1, DEV_F2, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_topk_select_check(fn, c, DEV_F, 64, 1 << 20, 1 << 20, 4096, DEV_F2, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_topk_select_check(fn, c, DEV_F, 64, 131072, 131073, 2048, DEV_F2, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_topk_select_check(fn, c, DEV_F, 3, 100, 100, 100, DEV_F2, DEV_I), DSV4_OK);  /* k = cols */
  /* Scores and outputs need only 4-byte alignment (the kernels fall back to 4-byte loads). */
  assert_int_equal(dsv4_topk_select_check(fn, c, DEV_F + 1, 4, 384, 385, 6, DEV_F2 + 3, DEV_I + 1), DSV4_OK);
  /* rows == 0 is a no-op: pointers are not needed. */
  assert_int_equal(dsv4_topk_select_check(fn, c, NULL, 0, 384, 384, 6, NULL, NULL), DSV4_OK);
  assert_int_equal(dsv4_topk_select(FAKE_CTX, NULL, NULL, 0, 384, 384, 6, NULL, NULL), DSV4_OK);
}

static void test_topk_select_kernel_choice(void **state) {
  (void)state;
  dsv4_kernel_spec s;
  dsv4_topk_select_spec(384, 6, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_select_warp<6, 12>");
  assert_string_equal(s.source, "topk_select.cu");
  dsv4_topk_select_spec(1, 1, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_select_warp<1, 4>");
  dsv4_topk_select_spec(1024, 16, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_select_warp<16, 32>");
  dsv4_topk_select_spec(129, 2, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_select_warp<2, 8>");
  dsv4_topk_select_spec(1025, 16, &s);   /* long row */
  assert_string_equal(s.name_expr, "dsv4::topk_long<16, 256>");
  dsv4_topk_select_spec(1024, 17, &s);   /* large k */
  assert_string_equal(s.name_expr, "dsv4::topk_long<32, 256>");
  dsv4_topk_select_spec(131072, 512, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_long<512, 512>");
  dsv4_topk_select_spec(131072, 2047, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_long<2048, 512>");
  dsv4_topk_select_spec(1 << 20, 4096, &s);
  assert_string_equal(s.name_expr, "dsv4::topk_long<4096, 512>");
}

/* ---------------- dsv4_activation_topk ---------------- */
static void test_activation_topk_args(void **state) {
  (void)state;
  dsv4_context *c = FAKE_CTX;
  const float *lg = DEV_F, *b = DEV_F2;
  float *w = (float *)DEV_I2;
  int32_t *ids = DEV_I;
  assert_status_names(dsv4_activation_topk(NULL, NULL, lg, 8, 384, b, 6, 2.5f, w, ids), INV, "'ctx'");
  assert_status_names(dsv4_activation_topk(c, NULL, NULL, 8, 384, b, 6, 2.5f, w, ids), INV, "'logits'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, 2.5f, NULL, ids), INV, "'topk_weights'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, 2.5f, w, NULL), INV, "'topk_ids'");
  assert_status_names(dsv4_activation_topk(c, NULL, MISALIGNED_F, 8, 384, b, 6, 2.5f, w, ids), INV, "'logits'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, MISALIGNED_F, 6, 2.5f, w, ids), INV, "'bias'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, 2.5f, MISALIGNED_F, ids), INV, "'topk_weights'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, 2.5f, w, MISALIGNED_I), INV, "'topk_ids'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, -1, 384, b, 6, 2.5f, w, ids), INV, "'num_tokens'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 0, b, 1, 2.5f, w, ids), INV, "'num_experts'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, -384, b, 6, 2.5f, w, ids), INV, "'num_experts'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 1025, b, 6, 2.5f, w, ids), UNS, "'num_experts'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 0, 2.5f, w, ids), INV, "'k'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, -6, 2.5f, w, ids), INV, "'k'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 17, 2.5f, w, ids), UNS, "'k'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 3, b, 4, 2.5f, w, ids), UNS, "'k'");   /* k > E */
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, NAN, w, ids), INV, "'routed_scaling_factor'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, INFINITY, w, ids), INV, "'routed_scaling_factor'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, -1.0f, w, ids), INV, "'routed_scaling_factor'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, 8, 384, b, 6, 0.0f, w, ids), INV, "'routed_scaling_factor'");
  assert_status_names(dsv4_activation_topk(c, NULL, lg, (int64_t)1 << 40, 384, b, 6, 2.5f, w, ids), UNS, "'num_tokens'");
  dsv4_activation_topk(c, NULL, lg, 8, 384, b, 0, 2.5f, w, ids);
  assert_non_null(strstr(dsv4_last_error(), "dsv4_activation_topk"));
}

static void test_activation_topk_valid_args_pass(void **state) {
  (void)state;
  const char *fn = "t";
  const void *c = FAKE_CTX;
  float *w = (float *)DEV_I2;
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F, 1, 0, 8, 384, DEV_F2, 6, 2.5f, w, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F, 1, 0, 8, 384, NULL, 6, 2.5f, w, DEV_I), DSV4_OK);  /* bias NULL */
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F, 1, 0, 8, 1, NULL, 1, 1.0f, w, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F, 1, 0, 8, 1024, NULL, 16, 1.0f, w, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F, 1, 0, 8, 3, NULL, 3, 1.0f, w, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F + 1, 1, 0, 8, 3, DEV_F2 + 1, 3, 1.0f, w + 1, DEV_I + 1), DSV4_OK);
  assert_int_equal(dsv4_activation_topk_check(fn, c, NULL, 1, 0, 0, 384, NULL, 6, 2.5f, NULL, NULL), DSV4_OK);
  assert_int_equal(dsv4_activation_topk(FAKE_CTX, NULL, NULL, 0, 384, NULL, 6, 2.5f, NULL, NULL), DSV4_OK);
  /* Split slabs. */
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F, 8, 64 * 384, 64, 384, NULL, 6, 2.5f, w, DEV_I), DSV4_OK);
  assert_int_equal(dsv4_activation_topk_check(fn, c, DEV_F, 64, 4096, 1, 384, NULL, 6, 2.5f, w, DEV_I), DSV4_OK);
}

static void test_split_slab_args(void **state) {
  (void)state;
  const char *fn = "dsv4_activation_topk_enqueue";
  const void *c = FAKE_CTX;
  float *w = (float *)DEV_I2;
  assert_status_names(dsv4_activation_topk_check(fn, c, DEV_F, 0, 0, 8, 384, NULL, 6, 2.5f, w, DEV_I), INV, "'num_splits'");
  assert_status_names(dsv4_activation_topk_check(fn, c, DEV_F, -2, 0, 8, 384, NULL, 6, 2.5f, w, DEV_I), INV, "'num_splits'");
  assert_status_names(dsv4_activation_topk_check(fn, c, DEV_F, 65, 8 * 384, 8, 384, NULL, 6, 2.5f, w, DEV_I), UNS, "'num_splits'");
  assert_status_names(dsv4_activation_topk_check(fn, c, DEV_F, 2, 8 * 384 - 1, 8, 384, NULL, 6, 2.5f, w, DEV_I), INV, "'split_stride'");
  assert_status_names(dsv4_activation_topk_check(fn, c, DEV_F, 2, -1, 8, 384, NULL, 6, 2.5f, w, DEV_I), INV, "'split_stride'");
  assert_status_names(dsv4_activation_topk_check(fn, c, DEV_F, 2, (int64_t)1 << 46, 8, 384, NULL, 6, 2.5f, w, DEV_I), INV, "'split_stride'");
}

/* ---------------- scored hash (internal) ---------------- */
static void test_hash_scored_args(void **state) {
  (void)state;
  const char *fn = "hash_scored";
  const void *c = FAKE_CTX;
  const float *lg = DEV_F;
  const int32_t *tok = DEV_I, *lut = DEV_I2;
  float *w = DEV_F2;
  int32_t *ids = (int32_t *)(uintptr_t)0x7f0000005000ull;
  const int32_t V = 129280;
#define HS(...) dsv4_hash_scored_check(fn, __VA_ARGS__)
  assert_int_equal(HS(c, lg, 1, 0, tok, 8, 384, lut, V, 6, 2.5f, w, ids), DSV4_OK);
  assert_int_equal(HS(c, lg, 7, 8 * 384, tok, 8, 384, lut, V, 6, 2.5f, w, ids), DSV4_OK);
  assert_int_equal(HS(c, NULL, 1, 0, NULL, 0, 384, lut, V, 6, 2.5f, NULL, NULL), DSV4_OK);
  assert_status_names(HS(NULL, lg, 1, 0, tok, 8, 384, lut, V, 6, 2.5f, w, ids), INV, "'ctx'");
  assert_status_names(HS(c, NULL, 1, 0, tok, 8, 384, lut, V, 6, 2.5f, w, ids), INV, "'logits'");
  assert_status_names(HS(c, lg, 1, 0, NULL, 8, 384, lut, V, 6, 2.5f, w, ids), INV, "'token_ids'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, NULL, V, 6, 2.5f, w, ids), INV, "'lut'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, lut, V, 6, 2.5f, NULL, ids), INV, "'topk_weights'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, lut, V, 6, 2.5f, w, NULL), INV, "'topk_ids'");
  assert_status_names(HS(c, lg, 1, 0, MISALIGNED_I, 8, 384, lut, V, 6, 2.5f, w, ids), INV, "'token_ids'");
  assert_status_names(HS(c, lg, 1, 0, tok, -1, 384, lut, V, 6, 2.5f, w, ids), INV, "'num_tokens'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 0, lut, V, 1, 2.5f, w, ids), INV, "'num_experts'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 1025, lut, V, 6, 2.5f, w, ids), UNS, "'num_experts'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, lut, V, 0, 2.5f, w, ids), INV, "'k'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, lut, V, 17, 2.5f, w, ids), UNS, "'k'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, lut, 0, 6, 2.5f, w, ids), INV, "'vocab_size'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, lut, (1 << 24) + 1, 6, 2.5f, w, ids), UNS, "'vocab_size'");
  assert_status_names(HS(c, lg, 1, 0, tok, 8, 384, lut, V, 6, NAN, w, ids), INV, "'routed_scaling_factor'");
  assert_status_names(HS(c, lg, 0, 0, tok, 8, 384, lut, V, 6, 2.5f, w, ids), INV, "'num_splits'");
  assert_status_names(HS(c, lg, 2, 100, tok, 8, 384, lut, V, 6, 2.5f, w, ids), INV, "'split_stride'");
#undef HS
}

/* ---------------- router config ---------------- */
static int has_tag(const dsv4_kernel_spec *specs, int n, const char *tag) {
  for (int i = 0; i < n; ++i)
    if (!strcmp(specs[i].tag, tag)) return 1;
  return 0;
}

static void test_router_config_lists_routing_kernels(void **state) {
  (void)state;
  const char *presets[] = {"v4-pro", "v4-flash"};
  const char *dense_tags[] = {"activation_topk-k6-e384", "activation_topk-k6-e256"};
  const char *slabs_tags[] = {"activation_topk_slabs-k6-e384", "activation_topk_slabs-k6-e256"};
  for (int p = 0; p < 2; ++p)
    for (int m = 0; m < 2; ++m) {
      dsv4_router_config cfg;
      assert_int_equal(dsv4_router_config_preset(presets[p], m ? DSV4_ROUTER_HASH : DSV4_ROUTER_DENSE, &cfg), DSV4_OK);
      dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
      int n = dsv4_router_kernel_specs(&cfg, specs);
      assert_true(n <= DSV4_MAX_ROUTER_KERNELS);
      assert_true(has_tag(specs, n, dense_tags[p]));
      assert_true(has_tag(specs, n, slabs_tags[p]));
      assert_true(has_tag(specs, n, "hash_scored-k6"));
    }
}

/* ---------------- NVRTC compiles ---------------- */

static void test_topk_select_compiles(void **state) {
  (void)state;
  static const struct { int64_t cols; int32_t k; } shapes[] = {
      {384, 1}, {384, 6}, {1024, 16}, {3, 3}, {131072, 512}, {131072, 2048}, {4096, 16}, {100000, 1}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
    dsv4_kernel_spec spec;
    dsv4_topk_select_spec(shapes[i].cols, shapes[i].k, &spec);
    test_compile_every_arch(&spec, NULL);
  }
}

static void test_activation_topk_compiles(void **state) {
  (void)state;
  static const int32_t shapes[][2] = {{3, 1}, {3, 3}, {384, 1}, {384, 6}, {384, 16}, {1024, 1}, {1024, 6}, {1024, 16}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
    dsv4_kernel_spec spec;
    dsv4_activation_topk_spec(shapes[i][0], shapes[i][1], &spec);
    test_compile_every_arch(&spec, NULL);
  }
}

static void test_hash_scored_compiles(void **state) {
  (void)state;
  static const int32_t ks[] = {1, 6, 16};
  for (size_t i = 0; i < 3; ++i) {
    dsv4_kernel_spec spec;
    dsv4_hash_scored_spec(ks[i], &spec);
    test_compile_every_arch(&spec, NULL);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_topk_select_args),
      cmocka_unit_test(test_topk_select_valid_args_pass),
      cmocka_unit_test(test_topk_select_kernel_choice),
      cmocka_unit_test(test_activation_topk_args),
      cmocka_unit_test(test_activation_topk_valid_args_pass),
      cmocka_unit_test(test_split_slab_args),
      cmocka_unit_test(test_hash_scored_args),
      cmocka_unit_test(test_router_config_lists_routing_kernels),
      cmocka_unit_test(test_topk_select_compiles),
      cmocka_unit_test(test_activation_topk_compiles),
      cmocka_unit_test(test_hash_scored_compiles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
