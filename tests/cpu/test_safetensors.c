/* Safetensors reader and gate loader: a good round trip, then every malformed case gets its named status
 * with the file (and the tensor, where there is one) named in dsv4_last_error(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "safetensors.h"

static char g_dir[256];
static int g_seq;

static void make_path(char *out, size_t cap, const char *stem) {
  snprintf(out, cap, "%s/%s-%d.safetensors", g_dir, stem, g_seq++);
}

/* A raw file: 8-byte length (header_len, or strlen(json) when header_len is UINT64_MAX), the json, data. */
static void write_raw_len(const char *path, uint64_t header_len, const char *json, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  uint64_t len = header_len == UINT64_MAX ? strlen(json) : header_len;
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = (uint8_t)(len >> (8 * i));
  assert_int_equal(fwrite(b, 1, 8, f), 8);
  size_t jl = strlen(json);
  if (jl) assert_int_equal(fwrite(json, 1, jl, f), jl);
  if (n) assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}
static void write_raw(const char *path, const char *json, const void *data, size_t n) {
  write_raw_len(path, UINT64_MAX, json, data, n);
}

/* The last error names the file and every given word. */
static void expect_error_mentions(const char *path, ...) {
  const char *e = dsv4_last_error();
  if (path && !strstr(e, path)) fail_msg("error '%s' does not name the file '%s'", e, path);
  va_list ap;
  va_start(ap, path);
  for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *))
    if (!strstr(e, w)) fail_msg("error '%s' does not mention '%s'", e, w);
  va_end(ap);
}

/* Opening path fails with s and names the file and the given words. */
#define EXPECT_OPEN_FAILS(path, s, ...)                          \
  do {                                                          \
    dsv4_st_file *f_ = (dsv4_st_file *)0x1;                     \
    assert_int_equal(dsv4_st_open(path, &f_), s);               \
    assert_null(f_);                                            \
    expect_error_mentions(path, __VA_ARGS__, (const char *)NULL); \
  } while (0)

static uint16_t bf16_of(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

enum { E = 5, H = 16, V = 7, K = 3 };
static uint16_t g_w[E * H];
static float g_bias[E];
static int32_t g_lut32[V * K];
static int64_t g_lut64[V * K];

static void fill_gate(void) {
  for (int i = 0; i < E * H; ++i) g_w[i] = bf16_of((float)((i * 37) % 101 - 50) / 17.0f);
  for (int i = 0; i < E; ++i) g_bias[i] = 0.25f * (float)i - 0.6f;
  for (int t = 0; t < V; ++t)
    for (int j = 0; j < K; ++j) {
      g_lut32[t * K + j] = (t + 2 * j) % E;
      g_lut64[t * K + j] = (t + 2 * j) % E;
    }
}

static const int64_t k_wshape[2] = {E, H}, k_bshape[1] = {E}, k_lshape[2] = {V, K};

/* A gate checkpoint under "layers.3.gate." with the bias under bias_name and tid2eid as I32 or I64, plus
 * unrelated tensors (one of a dtype this reader does not know) and metadata. */
static void write_gate(const char *path, const char *bias_name, bool lut64) {
  char bname[96];
  snprintf(bname, sizeof bname, "layers.3.gate.%s", bias_name);
  static const uint8_t fp8[6] = {1, 2, 3, 4, 5, 6};
  static const uint8_t odd[3] = {7, 8, 9};
  const int64_t fp8_shape[2] = {2, 3}, odd_shape[1] = {3};
  dsv4_st_write_tensor t[] = {
      {"layers.3.gate.weight", "BF16", 2, k_wshape, g_w, sizeof g_w},
      {bname, "F32", 1, k_bshape, g_bias, sizeof g_bias},
      {"layers.3.gate.tid2eid", lut64 ? "I64" : "I32", 2, k_lshape, lut64 ? (const void *)g_lut64 : (const void *)g_lut32,
       lut64 ? sizeof g_lut64 : sizeof g_lut32},
      {"layers.3.ffn.w1.weight", "F8_E4M3", 2, fp8_shape, fp8, sizeof fp8},
      {"layers.3.ffn.exotic", "Q3_MADE_UP", 1, odd_shape, odd, sizeof odd},
  };
  const char *mk[] = {"format"}, *mv[] = {"pt"};
  assert_int_equal(dsv4_st_write(path, t, 5, mk, mv, 1), DSV4_OK);
}

static dsv4_gate_want want_dense(void) {
  dsv4_gate_want w = {E, H, V, K, DSV4_ST_REQUIRED, DSV4_ST_REQUIRED, DSV4_ST_SKIP};
  return w;
}
static dsv4_gate_want want_hash(void) {
  dsv4_gate_want w = {E, H, V, K, DSV4_ST_REQUIRED, DSV4_ST_OPTIONAL, DSV4_ST_REQUIRED};
  return w;
}

/* ---------------- good files ---------------- */

static void test_round_trip(void **state) {
  (void)state;
  char path[512];
  make_path(path, sizeof path, "good");
  write_gate(path, "bias", false);
  dsv4_st_file *f = NULL;
  assert_int_equal(dsv4_st_open(path, &f), DSV4_OK);
  assert_non_null(f);
  assert_string_equal(dsv4_st_path(f), path);
  assert_int_equal(dsv4_st_count(f), 5);
  assert_string_equal(dsv4_st_metadata(f, "format"), "pt");
  assert_null(dsv4_st_metadata(f, "absent"));
  for (size_t i = 1; i < dsv4_st_count(f); ++i)  /* name order */
    assert_true(strcmp(dsv4_st_at(f, i - 1)->name, dsv4_st_at(f, i)->name) < 0);
  const dsv4_st_tensor *t = NULL;
  assert_int_equal(dsv4_st_expect(f, "layers.3.gate.weight", DSV4_ST_BF16, 2, k_wshape, &t), DSV4_OK);
  assert_int_equal(t->numel, E * H);
  assert_int_equal(t->end - t->begin, sizeof g_w);
  uint16_t w[E * H];
  memset(w, 0xAB, sizeof w);
  assert_int_equal(dsv4_st_read(f, t, w, sizeof w), DSV4_OK);
  assert_memory_equal(w, g_w, sizeof w);
  /* A partial read. */
  uint16_t row[H];
  assert_int_equal(dsv4_st_read_range(f, t, 2 * H * 2, row, sizeof row), DSV4_OK);
  assert_memory_equal(row, g_w + 2 * H, sizeof row);
  /* Wildcard dims. */
  const int64_t any_rows[2] = {-1, H};
  assert_int_equal(dsv4_st_expect(f, "layers.3.gate.weight", DSV4_ST_BF16, 2, any_rows, NULL), DSV4_OK);
  const dsv4_st_tensor *fp8 = dsv4_st_get(f, "layers.3.ffn.w1.weight");
  assert_non_null(fp8);
  assert_int_equal(fp8->dtype, DSV4_ST_F8_E4M3);
  const dsv4_st_tensor *odd = dsv4_st_get(f, "layers.3.ffn.exotic");
  assert_non_null(odd);
  assert_int_equal(odd->dtype, DSV4_ST_UNKNOWN);
  assert_string_equal(odd->dtype_str, "Q3_MADE_UP");
  assert_null(dsv4_st_get(f, "layers.3.gate.absent"));
  dsv4_st_close(f);
}

static void test_gate_variants(void **state) {
  (void)state;
  static const char *bias_names[2] = {"bias", "e_score_correction_bias"};
  for (int b = 0; b < 2; ++b)
    for (int l64 = 0; l64 < 2; ++l64) {
      char path[512];
      make_path(path, sizeof path, "gate");
      write_gate(path, bias_names[b], l64 != 0);
      /* Dense: weight + bias, no table. */
      dsv4_gate_want wd = want_dense();
      dsv4_gate_host g;
      assert_int_equal(dsv4_st_load_gate(path, "layers.3.gate.", &wd, &g), DSV4_OK);
      assert_int_equal(g.num_experts, E);
      assert_int_equal(g.hidden_size, H);
      assert_non_null(g.weight);
      assert_non_null(g.bias);
      assert_null(g.tid2eid);
      assert_memory_equal(g.weight, g_w, sizeof g_w);
      assert_memory_equal(g.bias, g_bias, sizeof g_bias);
      assert_string_equal(g.bias_name, bias_names[b]);
      dsv4_gate_host_free(&g);
      assert_null(g.weight);
      /* Hash: the table (int64 converted), bias optional and present here. */
      dsv4_gate_want wh = want_hash();
      assert_int_equal(dsv4_st_load_gate(path, "layers.3.gate.", &wh, &g), DSV4_OK);
      assert_non_null(g.tid2eid);
      assert_int_equal(g.vocab_size, V);
      assert_int_equal(g.top_k, K);
      assert_memory_equal(g.tid2eid, g_lut32, sizeof g_lut32);
      assert_non_null(g.bias);
      assert_non_null(g.weight);
      dsv4_gate_host_free(&g);
    }
}

static void test_gate_hash_without_bias(void **state) {
  (void)state;
  char path[512];
  make_path(path, sizeof path, "nobias");
  dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, k_wshape, g_w, sizeof g_w},
                              {"g.tid2eid", "I32", 2, k_lshape, g_lut32, sizeof g_lut32}};
  assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  dsv4_gate_want wh = want_hash();
  dsv4_gate_host g;
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wh, &g), DSV4_OK);
  assert_null(g.bias);
  assert_non_null(g.tid2eid);
  dsv4_gate_host_free(&g);
  /* Uniform hash weights skip the weight; the config helper says so. */
  dsv4_router_config cfg = {DSV4_ROUTER_HASH, H, E, K, V, 1.5f, DSV4_HASH_WEIGHTS_UNIFORM};
  dsv4_gate_want wu;
  dsv4_gate_want_for_config(&cfg, &wu);
  assert_int_equal(wu.weight, DSV4_ST_SKIP);
  assert_int_equal(wu.tid2eid, DSV4_ST_REQUIRED);
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wu, &g), DSV4_OK);
  assert_null(g.weight);
  assert_int_equal(g.hidden_size, 0);
  dsv4_gate_host_free(&g);
  /* Dense needs the bias: missing -> FORMAT naming both names. */
  cfg.mode = DSV4_ROUTER_DENSE;
  dsv4_gate_want wd;
  dsv4_gate_want_for_config(&cfg, &wd);
  assert_int_equal(wd.bias, DSV4_ST_REQUIRED);
  memset(&g, 0x5A, sizeof g);
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wd, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.bias", "g.e_score_correction_bias", (const char *)NULL);
  assert_null(g.weight); /* all or nothing: the weight loaded first is not handed out */
  assert_null(g.bias);
  assert_null(g.tid2eid);
}

static void test_empty_and_scalar_tensors(void **state) {
  (void)state;
  char path[512];
  make_path(path, sizeof path, "empty");
  float one = 3.5f;
  const int64_t zero_shape[2] = {0, 4};
  dsv4_st_write_tensor t[] = {{"scalar", "F32", 0, NULL, &one, 4}, {"nothing", "F32", 2, zero_shape, NULL, 0}};
  assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  dsv4_st_file *f = NULL;
  assert_int_equal(dsv4_st_open(path, &f), DSV4_OK);
  const dsv4_st_tensor *s = NULL;
  assert_int_equal(dsv4_st_expect(f, "scalar", DSV4_ST_F32, 0, NULL, &s), DSV4_OK);
  float back = 0;
  assert_int_equal(dsv4_st_read(f, s, &back, 4), DSV4_OK);
  assert_true(back == 3.5f);
  assert_int_equal(dsv4_st_expect(f, "nothing", DSV4_ST_F32, 2, zero_shape, &s), DSV4_OK);
  assert_int_equal(s->numel, 0);
  dsv4_st_close(f);
  /* A header with no tensors at all, only metadata. */
  make_path(path, sizeof path, "meta-only");
  write_raw(path, "{\"__metadata__\":{\"a\":\"b\"}}   ", NULL, 0);
  assert_int_equal(dsv4_st_open(path, &f), DSV4_OK);
  assert_int_equal(dsv4_st_count(f), 0);
  assert_string_equal(dsv4_st_metadata(f, "a"), "b");
  dsv4_st_close(f);
}

/* ---------------- malformed files ---------------- */

static void test_short_and_length(void **state) {
  (void)state;
  char path[512];
  make_path(path, sizeof path, "empty-file");
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  fclose(fp);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "shorter than the 8-byte");
  make_path(path, sizeof path, "five-bytes");
  fp = fopen(path, "wb");
  assert_int_equal(fwrite("\x02\0\0\0\0", 1, 5, fp), 5);
  fclose(fp);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "5 bytes");
  make_path(path, sizeof path, "len-beyond");
  write_raw_len(path, 1000, "{}", NULL, 0);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "header length 1000");
  make_path(path, sizeof path, "len-absurd");
  write_raw_len(path, 200000000ull, "{}", NULL, 0);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "limit");
  make_path(path, sizeof path, "len-huge");
  write_raw_len(path, UINT64_MAX - 1, "{}", NULL, 0);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "header length");
  make_path(path, sizeof path, "len-zero");
  write_raw_len(path, 0, "", NULL, 0);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "not valid JSON");
}

static void test_bad_json(void **state) {
  (void)state;
  static const struct {
    const char *json, *word;
  } cases[] = {
      {"{\"a\": {\"dtype\": \"F32\"", "not valid JSON"},
      {"{} trailing", "not valid JSON"},
      {"[1, 2, 3]", "not a JSON object"},
      {"\"str\"", "not a JSON object"},
      {"{\"__metadata__\": [1]}", "__metadata__"},
      {"{\"__metadata__\": {\"k\": 5}}", "__metadata__"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    char path[512];
    make_path(path, sizeof path, "badjson");
    write_raw(path, cases[i].json, NULL, 0);
    EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, cases[i].word);
  }
  /* A NUL inside the header. */
  char path[512];
  make_path(path, sizeof path, "nul");
  FILE *fp = fopen(path, "wb");
  const uint8_t hdr[8 + 4] = {4, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' '};
  assert_int_equal(fwrite(hdr, 1, sizeof hdr, fp), sizeof hdr);
  fclose(fp);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "NUL");
}

static void test_bad_entries(void **state) {
  (void)state;
  static const struct {
    const char *json;
    size_t data;
    const char *word;
  } cases[] = {
      {"{\"t.w\": 5}", 0, "not a JSON object"},
      {"{\"t.w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "no \"dtype\""},
      {"{\"t.w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8, "no \"shape\""},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "no \"data_offsets\""},
      {"{\"t.w\": {\"dtype\": 3, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "\"dtype\" is not a string"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}", 8, "\"shape\" is not an array"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": 0}}", 8, "data_offsets"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8, "data_offsets"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 9]}}", 9, "data_offsets"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, "shape[0]"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2, 1.5], \"data_offsets\": [0, 8]}}", 8, "shape[1]"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8, "shape[0]"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}", 8, "not a non-negative integer"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8.5]}}", 9, "not a non-negative integer"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, \"8\"]}}", 8, "not a non-negative integer"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 0]}}", 8, "begin > end"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4, "beyond the data section"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 1e300]}}", 8, "not a non-negative integer"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, "needs 12 bytes"},
      {"{\"t.w\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 6]}}", 8, "needs 8 bytes"},
      {"{\"t.w\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}}", 8, "not a whole number of bytes"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8, "overflows"},
      {"{\"t.w\": {\"dtype\": \"F64\", \"shape\": [4294967296, 536870912], \"data_offsets\": [0, 8]}}", 8,
       "more than 2^64 bits"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
       "\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "appears twice"},
      {"{\"t.w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
       8, "rank 17"},
  };
  static const uint8_t data[16] = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    char path[512];
    make_path(path, sizeof path, "badentry");
    write_raw(path, cases[i].json, data, cases[i].data);
    EXPECT_OPEN_FAILS(path, DSV4_ERR_FORMAT, "t.w", cases[i].word);
  }
}

static void test_lookup_errors(void **state) {
  (void)state;
  char path[512];
  make_path(path, sizeof path, "lookup");
  write_gate(path, "bias", false);
  dsv4_st_file *f = NULL;
  assert_int_equal(dsv4_st_open(path, &f), DSV4_OK);
  const dsv4_st_tensor *t = NULL;
  assert_int_equal(dsv4_st_expect(f, "layers.3.gate.nope", DSV4_ST_F32, 1, k_bshape, &t), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "layers.3.gate.nope", "missing", (const char *)NULL);
  assert_null(t);
  assert_int_equal(dsv4_st_expect(f, "layers.3.gate.weight", DSV4_ST_F32, 2, k_wshape, &t), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "layers.3.gate.weight", "dtype BF16, expected F32", (const char *)NULL);
  const int64_t wrong[2] = {E, H + 8};
  assert_int_equal(dsv4_st_expect(f, "layers.3.gate.weight", DSV4_ST_BF16, 2, wrong, &t), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "layers.3.gate.weight", "[5,16]", "[5,24]", (const char *)NULL);
  assert_int_equal(dsv4_st_expect(f, "layers.3.gate.weight", DSV4_ST_BF16, 1, k_wshape, &t), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "layers.3.gate.weight", "shape", (const char *)NULL);
  assert_int_equal(dsv4_st_expect(f, "layers.3.ffn.exotic", DSV4_ST_U8, 1, NULL, &t), DSV4_ERR_INVALID_ARGUMENT);
  const int64_t three[1] = {3};
  assert_int_equal(dsv4_st_expect(f, "layers.3.ffn.exotic", DSV4_ST_U8, 1, three, &t), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "layers.3.ffn.exotic", "Q3_MADE_UP", "does not know", (const char *)NULL);
  /* Reads outside a tensor or into the wrong size. */
  assert_int_equal(dsv4_st_expect(f, "layers.3.gate.bias", DSV4_ST_F32, 1, k_bshape, &t), DSV4_OK);
  float buf[E + 1];
  assert_int_equal(dsv4_st_read(f, t, buf, sizeof buf), DSV4_ERR_INVALID_ARGUMENT);
  assert_int_equal(dsv4_st_read_range(f, t, 4, buf, sizeof(float) * E), DSV4_ERR_INVALID_ARGUMENT);
  expect_error_mentions(path, "layers.3.gate.bias", (const char *)NULL);
  assert_int_equal(dsv4_st_read_range(f, t, UINT64_MAX, buf, 4), DSV4_ERR_INVALID_ARGUMENT);
  dsv4_st_close(f);
}

static void test_io_errors(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/does-not-exist.safetensors", g_dir);
  EXPECT_OPEN_FAILS(path, DSV4_ERR_IO, "cannot open");
  EXPECT_OPEN_FAILS(g_dir, DSV4_ERR_IO, "not a regular file");
  dsv4_st_file *f = NULL;
  assert_int_equal(dsv4_st_open(NULL, &f), DSV4_ERR_INVALID_ARGUMENT);
  assert_int_equal(dsv4_st_open(path, NULL), DSV4_ERR_INVALID_ARGUMENT);
  /* The file shrinks after open: the read fails with IO, naming file and tensor. */
  make_path(path, sizeof path, "shrink");
  write_gate(path, "bias", false);
  assert_int_equal(dsv4_st_open(path, &f), DSV4_OK);
  const dsv4_st_tensor *t = dsv4_st_get(f, "layers.3.ffn.exotic");
  assert_non_null(t);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(truncate(path, st.st_size - 2), 0);
  uint8_t b[3];
  assert_int_equal(dsv4_st_read(f, t, b, 3), DSV4_ERR_IO);
  expect_error_mentions(path, "layers.3.ffn.exotic", "end of file", (const char *)NULL);
  dsv4_st_close(f);
  /* The gate loader passes IO errors through and hands nothing out. */
  snprintf(path, sizeof path, "%s/absent-gate.safetensors", g_dir);
  dsv4_gate_want wd = want_dense();
  dsv4_gate_host g;
  assert_int_equal(dsv4_st_load_gate(path, "x.", &wd, &g), DSV4_ERR_IO);
  expect_error_mentions(path, (const char *)NULL);
  assert_null(g.weight);
}

/* ---------------- gate loader failures ---------------- */

static void test_gate_failures(void **state) {
  (void)state;
  char path[512];
  dsv4_gate_host g;
  dsv4_gate_want wd = want_dense(), wh = want_hash();

  /* Missing weight. */
  make_path(path, sizeof path, "gate-noweight");
  {
    dsv4_st_write_tensor t[] = {{"g.bias", "F32", 1, k_bshape, g_bias, sizeof g_bias}};
    assert_int_equal(dsv4_st_write(path, t, 1, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wd, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.weight", "missing", (const char *)NULL);

  /* Both bias names: ambiguous. */
  make_path(path, sizeof path, "gate-twobias");
  {
    dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, k_wshape, g_w, sizeof g_w},
                                {"g.bias", "F32", 1, k_bshape, g_bias, sizeof g_bias},
                                {"g.e_score_correction_bias", "F32", 1, k_bshape, g_bias, sizeof g_bias}};
    assert_int_equal(dsv4_st_write(path, t, 3, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wd, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.bias", "g.e_score_correction_bias", "ambiguous", (const char *)NULL);
  assert_null(g.weight);

  /* Wrong weight dtype / shape, wrong bias dtype. */
  make_path(path, sizeof path, "gate-wdtype");
  {
    const int64_t half[2] = {E, H / 2};
    dsv4_st_write_tensor t[] = {{"g.weight", "F32", 2, half, g_w, sizeof g_w},
                                {"g.bias", "F32", 1, k_bshape, g_bias, sizeof g_bias}};
    assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wd, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.weight", "F32", "BF16", (const char *)NULL);
  make_path(path, sizeof path, "gate-wshape");
  {
    const int64_t t_shape[2] = {H, E};
    dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, t_shape, g_w, sizeof g_w},
                                {"g.bias", "F32", 1, k_bshape, g_bias, sizeof g_bias}};
    assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wd, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.weight", "[16,5]", "[5,16]", (const char *)NULL);
  make_path(path, sizeof path, "gate-bdtype");
  {
    dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, k_wshape, g_w, sizeof g_w},
                                {"g.e_score_correction_bias", "F16", 1, k_bshape, g_w, E * 2}};
    assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wd, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.e_score_correction_bias", "F16", (const char *)NULL);
  assert_null(g.weight);

  /* tid2eid: missing, wrong dtype, wrong shape, ids out of range (int32 and int64, both ends). */
  make_path(path, sizeof path, "gate-nolut");
  {
    dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, k_wshape, g_w, sizeof g_w}};
    assert_int_equal(dsv4_st_write(path, t, 1, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wh, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.tid2eid", "missing", (const char *)NULL);
  assert_null(g.weight);

  make_path(path, sizeof path, "gate-lutdtype");
  {
    dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, k_wshape, g_w, sizeof g_w},
                                {"g.tid2eid", "F32", 2, k_lshape, g_lut32, sizeof g_lut32}};
    assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wh, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.tid2eid", "I32 or I64", (const char *)NULL);

  make_path(path, sizeof path, "gate-lutshape");
  {
    const int64_t s[2] = {K, V};
    dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, k_wshape, g_w, sizeof g_w},
                                {"g.tid2eid", "I64", 2, s, g_lut64, sizeof g_lut64}};
    assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  }
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wh, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "g.tid2eid", "[3,7]", (const char *)NULL);

  static const int64_t bad_ids[] = {E, -1, (int64_t)1 << 40, -((int64_t)1 << 40) + 2};
  for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; ++i)
    for (int as64 = 0; as64 < 2; ++as64) {
      if (!as64 && (bad_ids[i] > INT32_MAX || bad_ids[i] < INT32_MIN)) continue;
      int64_t l64[V * K];
      int32_t l32[V * K];
      memcpy(l64, g_lut64, sizeof l64);
      memcpy(l32, g_lut32, sizeof l32);
      l64[V * K - 2] = bad_ids[i]; /* row V-1, column K-2 */
      l32[V * K - 2] = (int32_t)bad_ids[i];
      make_path(path, sizeof path, "gate-badid");
      dsv4_st_write_tensor t[] = {{"g.weight", "BF16", 2, k_wshape, g_w, sizeof g_w},
                                  {"g.tid2eid", as64 ? "I64" : "I32", 2, k_lshape, as64 ? (void *)l64 : (void *)l32,
                                   as64 ? sizeof l64 : sizeof l32}};
      assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
      memset(&g, 0x5A, sizeof g);
      assert_int_equal(dsv4_st_load_gate(path, "g.", &wh, &g), DSV4_ERR_FORMAT);
      char id[64];
      snprintf(id, sizeof id, "expert id %lld", (long long)bad_ids[i]);
      expect_error_mentions(path, "g.tid2eid", "row 6 column 1", id, "[0,5)", (const char *)NULL);
      assert_null(g.weight);  /* loaded before the table, then released */
      assert_null(g.tid2eid);
      assert_null(g.bias);
    }

  /* Argument checks. */
  assert_int_equal(dsv4_st_load_gate(NULL, "g.", &wh, &g), DSV4_ERR_INVALID_ARGUMENT);
  expect_error_mentions(NULL, "path", (const char *)NULL);
  assert_int_equal(dsv4_st_load_gate(path, "g.", NULL, &g), DSV4_ERR_INVALID_ARGUMENT);
  assert_int_equal(dsv4_st_load_gate(path, "g.", &wh, NULL), DSV4_ERR_INVALID_ARGUMENT);
  dsv4_gate_want bad = wh;
  bad.num_experts = 1025;
  assert_int_equal(dsv4_st_load_gate(path, "g.", &bad, &g), DSV4_ERR_UNSUPPORTED);
  expect_error_mentions(NULL, "num_experts", (const char *)NULL);
  bad = wh;
  bad.hidden_size = 12;
  assert_int_equal(dsv4_st_load_gate(path, "g.", &bad, &g), DSV4_ERR_UNSUPPORTED);
  expect_error_mentions(NULL, "hidden_size", (const char *)NULL);
  bad = wh;
  bad.top_k = 6; /* > E */
  assert_int_equal(dsv4_st_load_gate(path, "g.", &bad, &g), DSV4_ERR_UNSUPPORTED);
  expect_error_mentions(NULL, "top_k", (const char *)NULL);
  bad = wh;
  bad.tid2eid = (dsv4_st_need)7;
  assert_int_equal(dsv4_st_load_gate(path, "g.", &bad, &g), DSV4_ERR_INVALID_ARGUMENT);
  expect_error_mentions(NULL, "want->tid2eid", (const char *)NULL);
}

/* A large int64 table goes through the bounded conversion buffer in several pieces. */
static void test_gate_large_lut64(void **state) {
  (void)state;
  enum { BV = 50000, BK = 6, BE = 384, BH = 8 };
  int64_t *l64 = malloc(sizeof(int64_t) * BV * BK);
  uint16_t *w = calloc(BE * BH, 2);
  assert_non_null(l64);
  assert_non_null(w);
  for (int64_t i = 0; i < (int64_t)BV * BK; ++i) l64[i] = (i * 7919) % BE;
  char path[512];
  make_path(path, sizeof path, "biglut");
  const int64_t ls[2] = {BV, BK}, ws[2] = {BE, BH};
  dsv4_st_write_tensor t[] = {{"weight", "BF16", 2, ws, w, BE * BH * 2},
                              {"tid2eid", "I64", 2, ls, l64, sizeof(int64_t) * BV * BK}};
  assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  dsv4_gate_want want = {BE, BH, BV, BK, DSV4_ST_SKIP, DSV4_ST_SKIP, DSV4_ST_REQUIRED};
  dsv4_gate_host g;
  assert_int_equal(dsv4_st_load_gate(path, NULL, &want, &g), DSV4_OK);
  for (int64_t i = 0; i < (int64_t)BV * BK; ++i)
    if (g.tid2eid[i] != l64[i]) fail_msg("tid2eid[%lld] = %d, expected %lld", (long long)i, g.tid2eid[i], (long long)l64[i]);
  assert_null(g.weight);
  dsv4_gate_host_free(&g);
  /* The last element out of range: found after several full buffers. */
  l64[(int64_t)BV * BK - 1] = BE;
  assert_int_equal(dsv4_st_write(path, t, 2, NULL, NULL, 0), DSV4_OK);
  assert_int_equal(dsv4_st_load_gate(path, NULL, &want, &g), DSV4_ERR_FORMAT);
  expect_error_mentions(path, "'tid2eid'", "row 49999 column 5", (const char *)NULL);
  free(l64);
  free(w);
}

static void test_writer_escapes(void **state) {
  (void)state;
  char path[512];
  make_path(path, sizeof path, "escape");
  const char *name = "we\"ird\\name\n";
  float v = 1.0f;
  const int64_t one[1] = {1};
  dsv4_st_write_tensor t[] = {{name, "F32", 1, one, &v, 4}};
  const char *mk[] = {"k\"ey"}, *mv[] = {"va\\lue"};
  assert_int_equal(dsv4_st_write(path, t, 1, mk, mv, 1), DSV4_OK);
  dsv4_st_file *f = NULL;
  assert_int_equal(dsv4_st_open(path, &f), DSV4_OK);
  assert_non_null(dsv4_st_get(f, name));
  assert_string_equal(dsv4_st_metadata(f, "k\"ey"), "va\\lue");
  dsv4_st_close(f);
  /* The header is padded to a multiple of 8 bytes. */
  FILE *fp = fopen(path, "rb");
  uint8_t len8[8];
  assert_int_equal(fread(len8, 1, 8, fp), 8);
  fclose(fp);
  assert_int_equal(len8[0] % 8, 0);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/dsv4-st-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  fill_gate();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_gate_variants),
      cmocka_unit_test(test_gate_hash_without_bias), cmocka_unit_test(test_empty_and_scalar_tensors),
      cmocka_unit_test(test_short_and_length), cmocka_unit_test(test_bad_json),
      cmocka_unit_test(test_bad_entries),      cmocka_unit_test(test_lookup_errors),
      cmocka_unit_test(test_io_errors),        cmocka_unit_test(test_gate_failures),
      cmocka_unit_test(test_gate_large_lut64), cmocka_unit_test(test_writer_escapes),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
