/*
 * Bad input to the public API that no other CPU suite covers (README "Bad input" lists every row and the
 * test that covers it): each call gets its named status, the message names the argument (or the file and
 * tensor), outputs are NULL / untouched, and nothing changes.
 *
 * No GPU is needed: the context is a fake pointer that would crash if it were used, so every check here is
 * also proven to run before the library touches the device. A router made on the fake context is real (the
 * create call only allocates and copies the config) but can never be prepared; it is released with free(),
 * since dsv4_router_destroy would synchronize on the fake context.
 */
#include <math.h>
#include <unistd.h>

#include "test_util.h"
#include "safetensors.h"

#define INV DSV4_ERR_INVALID_ARGUMENT
#define UNS DSV4_ERR_UNSUPPORTED

static dsv4_context *fake_ctx(void) { return (dsv4_context *)(uintptr_t)0xdead0000u; }
#define DEV(type, addr) ((type)(uintptr_t)(addr))

/* A small valid config: E=4, H=8, k=2, vocab=5. */
static dsv4_router_config small_cfg(dsv4_router_mode mode, dsv4_hash_weights hw) {
  dsv4_router_config c = {mode, 8, 4, 2, 5, 1.5f, hw};
  return c;
}

static dsv4_router *router_on_fake_ctx(dsv4_router_config c) {
  dsv4_router *r = NULL;
  assert_int_equal(dsv4_router_create(fake_ctx(), &c, &r), DSV4_OK);
  assert_non_null(r);
  return r;
}

/* ---------------- context ---------------- */

static void test_context_jit_stats_out(void **state) {
  (void)state;
  assert_status_names(dsv4_context_jit_stats(fake_ctx(), NULL), INV, "'out'");
  assert_non_null(strstr(dsv4_last_error(), "dsv4_context_jit_stats"));
}

/* ---------------- hash router ---------------- */

static void test_hash_router_too_many_tokens(void **state) {
  (void)state;
  const int32_t *tok = DEV(const int32_t *, 0x1000), *lut = DEV(const int32_t *, 0x2000);
  float *w = DEV(float *, 0x3000);
  int32_t *ids = DEV(int32_t *, 0x4000);
  /* num_tokens * k must stay within 2^40 outputs. */
  assert_status_names(dsv4_hash_router(fake_ctx(), NULL, tok, ((int64_t)1 << 40) / 6 + 1, lut, 100, 6, w, ids), UNS,
                      "'num_tokens'");
  assert_status_names(dsv4_hash_router(fake_ctx(), NULL, tok, INT64_MAX, lut, 100, 1, w, ids), UNS, "'num_tokens'");
}

/* ---------------- configs ---------------- */

static void test_config_fields(void **state) {
  (void)state;
  const dsv4_router_config base = small_cfg(DSV4_ROUTER_DENSE, DSV4_HASH_WEIGHTS_SCORED);
  dsv4_router_config c;
  assert_int_equal(dsv4_router_config_check(&base), DSV4_OK);
  c = base, c.mode = (dsv4_router_mode)2;
  assert_status_names(dsv4_router_config_check(&c), INV, "'cfg->mode'");
  c = base, c.mode = (dsv4_router_mode)-1;
  assert_status_names(dsv4_router_config_check(&c), INV, "'cfg->mode'");
  c = base, c.hash_weights = (dsv4_hash_weights)9;
  assert_status_names(dsv4_router_config_check(&c), INV, "'cfg->hash_weights'");
  c = base, c.num_experts = -4;
  assert_status_names(dsv4_router_config_check(&c), UNS, "'cfg->num_experts'");
  c = base, c.top_k = 0;
  assert_status_names(dsv4_router_config_check(&c), UNS, "'cfg->top_k'");
  c = base, c.top_k = -1;
  assert_status_names(dsv4_router_config_check(&c), UNS, "'cfg->top_k'");
  c = base, c.hidden_size = 0;
  assert_status_names(dsv4_router_config_check(&c), UNS, "'cfg->hidden_size'");
  c = base, c.hidden_size = -8;
  assert_status_names(dsv4_router_config_check(&c), UNS, "'cfg->hidden_size'");
  c = base, c.vocab_size = 0;
  assert_status_names(dsv4_router_config_check(&c), UNS, "'cfg->vocab_size'");
  const float bad_scale[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, -2.5f, 1e31f};
  for (size_t i = 0; i < sizeof bad_scale / sizeof bad_scale[0]; ++i) {
    c = base, c.routed_scaling_factor = bad_scale[i];
    assert_status_names(dsv4_router_config_check(&c), INV, "'cfg->routed_scaling_factor'");
  }
  /* The hash-mode variants of a valid config are valid too. */
  c = small_cfg(DSV4_ROUTER_HASH, DSV4_HASH_WEIGHTS_UNIFORM);
  assert_int_equal(dsv4_router_config_check(&c), DSV4_OK);
}

/* ---------------- routers ---------------- */

static void test_router_create_args(void **state) {
  (void)state;
  dsv4_router_config c = small_cfg(DSV4_ROUTER_DENSE, DSV4_HASH_WEIGHTS_SCORED);
  dsv4_router *r = (dsv4_router *)0x1;
  assert_status_names(dsv4_router_create(fake_ctx(), &c, NULL), INV, "'out'");
  assert_status_names(dsv4_router_create(NULL, &c, &r), INV, "'ctx'");
  assert_null(r);
  r = (dsv4_router *)0x1;
  assert_status_names(dsv4_router_create(fake_ctx(), NULL, &r), INV, "'cfg'");
  assert_null(r);
  c.top_k = 5; /* > E = 4 */
  r = (dsv4_router *)0x1;
  assert_status_names(dsv4_router_create(fake_ctx(), &c, &r), UNS, "'cfg->top_k'");
  assert_null(r);
  c = small_cfg(DSV4_ROUTER_DENSE, DSV4_HASH_WEIGHTS_SCORED), c.routed_scaling_factor = NAN;
  r = (dsv4_router *)0x1;
  assert_status_names(dsv4_router_create(fake_ctx(), &c, &r), INV, "'cfg->routed_scaling_factor'");
  assert_null(r);
}

static void test_null_router(void **state) {
  (void)state;
  const void *w = DEV(const void *, 0x10000);
  assert_status_names(dsv4_router_set_weights(NULL, w, NULL, NULL), INV, "'r'");
  assert_status_names(dsv4_router_load_safetensors(NULL, "/tmp/x.safetensors", ""), INV, "'r'");
  assert_status_names(dsv4_router_prepare(NULL, 8), INV, "'r'");
  assert_status_names(dsv4_router_forward(NULL, NULL, w, NULL, 8, DEV(float *, 0x2000), DEV(int32_t *, 0x3000)), INV,
                      "'r'");
  assert_status_names(dsv4_router_set_decode_max_tokens(NULL, 8), INV, "'r'");
  assert_status_names(dsv4_router_set_pdl(NULL, 1), INV, "'r'");
  assert_int_equal(dsv4_router_take_error_count(NULL), -1);
  dsv4_router_destroy(NULL); /* a no-op */
}

/* Every check of set_weights, prepare and forward that runs before the device is touched. */
static void test_router_checks_before_the_device(void **state) {
  (void)state;
  const void *w = DEV(const void *, 0x10000);
  const float *bias = DEV(const float *, 0x20000);
  const int32_t *lut = DEV(const int32_t *, 0x30000);
  float *ow = DEV(float *, 0x40000);
  int32_t *oi = DEV(int32_t *, 0x50000);

  dsv4_router *r = router_on_fake_ctx(small_cfg(DSV4_ROUTER_DENSE, DSV4_HASH_WEIGHTS_SCORED));
  /* Not prepared yet: forward refuses any call, even an empty one. */
  assert_status_names(dsv4_router_forward(r, NULL, w, NULL, 8, ow, oi), INV, "not prepared");
  assert_status_names(dsv4_router_forward(r, NULL, NULL, NULL, 0, NULL, NULL), INV, "not prepared");
  assert_status_names(dsv4_router_forward(r, NULL, w, NULL, -1, ow, oi), INV, "'num_tokens'");
  assert_int_equal(dsv4_router_take_error_count(r), 0); /* nothing ran */
  /* set_weights: dense mode needs the gate weight; alignment of each pointer. */
  assert_status_names(dsv4_router_set_weights(r, NULL, bias, NULL), INV, "'gate_weight_bf16'");
  assert_status_names(dsv4_router_set_weights(r, DEV(const void *, 0x10008), bias, NULL), INV, "'gate_weight_bf16'");
  assert_non_null(strstr(dsv4_last_error(), "16-byte"));
  assert_status_names(dsv4_router_set_weights(r, w, DEV(const float *, 0x20002), NULL), INV, "'bias'");
  assert_status_names(dsv4_router_set_weights(r, w, bias, DEV(const int32_t *, 0x30001)), INV, "'tid2eid'");
  /* prepare: max_tokens range, then the weights it needs. */
  assert_status_names(dsv4_router_prepare(r, 0), INV, "'max_tokens'");
  assert_status_names(dsv4_router_prepare(r, -8), INV, "'max_tokens'");
  assert_status_names(dsv4_router_prepare(r, ((int64_t)1 << 27) + 1), INV, "'max_tokens'");
  assert_status_names(dsv4_router_prepare(r, 8), INV, "'gate_weight_bf16'");
  /* The decode switch point: 0..64, before prepare. */
  assert_status_names(dsv4_router_set_decode_max_tokens(r, -1), INV, "'n'");
  assert_status_names(dsv4_router_set_decode_max_tokens(r, 65), INV, "'n'");
  assert_int_equal(dsv4_router_set_decode_max_tokens(r, 0), DSV4_OK); /* valid, and touches no device */
  /* Launch overlap: 0 or 1, at any time. */
  assert_status_names(dsv4_router_set_pdl(r, 2), INV, "'enable'");
  assert_status_names(dsv4_router_set_pdl(r, -1), INV, "'enable'");
  assert_int_equal(dsv4_router_set_pdl(r, 0), DSV4_OK);
  assert_int_equal(dsv4_router_set_pdl(r, 1), DSV4_OK);
  /* Nothing above changed the router: it is still unprepared. */
  assert_status_names(dsv4_router_forward(r, NULL, w, NULL, 1, ow, oi), INV, "not prepared");
  free(r);

  /* Hash mode, scored weights: the table and the gate weight are both needed. */
  r = router_on_fake_ctx(small_cfg(DSV4_ROUTER_HASH, DSV4_HASH_WEIGHTS_SCORED));
  assert_status_names(dsv4_router_set_weights(r, w, NULL, NULL), INV, "'tid2eid'");
  assert_status_names(dsv4_router_set_weights(r, NULL, NULL, lut), INV, "'gate_weight_bf16'");
  assert_non_null(strstr(dsv4_last_error(), "scored"));
  assert_status_names(dsv4_router_prepare(r, 8), INV, "'gate_weight_bf16'");
  free(r);

  /* Hash mode, uniform weights: only the table. */
  r = router_on_fake_ctx(small_cfg(DSV4_ROUTER_HASH, DSV4_HASH_WEIGHTS_UNIFORM));
  assert_status_names(dsv4_router_set_weights(r, w, bias, NULL), INV, "'tid2eid'");
  assert_status_names(dsv4_router_prepare(r, 8), INV, "'tid2eid'");
  assert_status_names(dsv4_router_forward(r, NULL, NULL, lut, 4, ow, oi), INV, "not prepared");
  free(r);
}

/* load_safetensors reads and checks the whole file before it touches the device. */
static void test_load_safetensors_errors(void **state) {
  (void)state;
  char dir[] = "/tmp/dsv4-bad-input-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], missing[256];
  snprintf(path, sizeof path, "%s/gate.safetensors", dir);
  snprintf(missing, sizeof missing, "%s/absent.safetensors", dir);
  /* A dense gate for E=4, H=8 under "g.", with a tid2eid whose ids are out of range for E=4. */
  uint16_t wt[4 * 8];
  float b[4];
  int32_t lut[5 * 2];
  for (int i = 0; i < 32; ++i) wt[i] = 0x3f80;
  for (int i = 0; i < 4; ++i) b[i] = 0.0f;
  for (int i = 0; i < 10; ++i) lut[i] = i; /* 4..9 are not experts */
  const int64_t sw[2] = {4, 8}, sb[1] = {4}, sl[2] = {5, 2};
  dsv4_st_write_tensor t[3] = {{"g.weight", "BF16", 2, sw, wt, sizeof wt},
                               {"g.bias", "F32", 1, sb, b, sizeof b},
                               {"g.tid2eid", "I32", 2, sl, lut, sizeof lut}};
  assert_int_equal(dsv4_st_write(path, t, 3, NULL, NULL, 0), DSV4_OK);

  dsv4_router *r = router_on_fake_ctx(small_cfg(DSV4_ROUTER_DENSE, DSV4_HASH_WEIGHTS_SCORED));
  assert_status_names(dsv4_router_load_safetensors(r, NULL, "g."), INV, "'path'");
  assert_status_names(dsv4_router_load_safetensors(r, missing, "g."), DSV4_ERR_IO, missing);
  assert_status_names(dsv4_router_load_safetensors(r, path, "h."), DSV4_ERR_FORMAT, "h.weight");
  assert_non_null(strstr(dsv4_last_error(), path));
  free(r);

  /* Another shape than the config's: FORMAT naming the tensor and its shape. */
  dsv4_router_config wide = small_cfg(DSV4_ROUTER_DENSE, DSV4_HASH_WEIGHTS_SCORED);
  wide.hidden_size = 16;
  r = router_on_fake_ctx(wide);
  assert_status_names(dsv4_router_load_safetensors(r, path, "g."), DSV4_ERR_FORMAT, "g.weight");
  assert_non_null(strstr(dsv4_last_error(), "[4,8]"));
  free(r);

  /* Hash mode: a table id outside [0,E) is FORMAT naming the tensor, row and column. */
  r = router_on_fake_ctx(small_cfg(DSV4_ROUTER_HASH, DSV4_HASH_WEIGHTS_UNIFORM));
  assert_status_names(dsv4_router_load_safetensors(r, path, "g."), DSV4_ERR_FORMAT, "g.tid2eid");
  assert_non_null(strstr(dsv4_last_error(), "row 2 column 0"));
  /* A NULL prefix means "": no tensor called "weight" / "tid2eid" at top level. */
  assert_status_names(dsv4_router_load_safetensors(r, path, NULL), DSV4_ERR_FORMAT, "'tid2eid'");
  /* Not a safetensors file at all. */
  char junk[256];
  snprintf(junk, sizeof junk, "%s/junk.safetensors", dir);
  FILE *f = fopen(junk, "wb");
  assert_non_null(f);
  fputs("not a safetensors file", f);
  fclose(f);
  assert_status_names(dsv4_router_load_safetensors(r, junk, "g."), DSV4_ERR_FORMAT, junk);
  /* After all that the router is as it was: unprepared, no weights. */
  assert_status_names(dsv4_router_prepare(r, 4), INV, "'tid2eid'");
  free(r);
  unlink(junk);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_context_jit_stats_out),
      cmocka_unit_test(test_hash_router_too_many_tokens),
      cmocka_unit_test(test_config_fields),
      cmocka_unit_test(test_router_create_args),
      cmocka_unit_test(test_null_router),
      cmocka_unit_test(test_router_checks_before_the_device),
      cmocka_unit_test(test_load_safetensors_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
