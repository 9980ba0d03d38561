/*
 * Writes the seed corpora of the fuzz targets: make_seeds <corpus dir> fills <dir>/safetensors/ and
 * <dir>/cache_decode/ with small valid files and broken ones, then checks each valid file is accepted and
 * each broken one rejected (exit 1 otherwise). The committed tests/fuzz/corpus/ was made by it; rerun it
 * after a change to either format. Deterministic: the same bytes every run.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jit.h"
#include "safetensors.h"

static char g_dir[4096];
static int g_bad;

static void path_of(char *out, size_t cap, const char *sub, const char *name) {
  snprintf(out, cap, "%s/%s/%s", g_dir, sub, name);
}

static void write_bytes(const char *sub, const char *name, const void *p, size_t n) {
  char path[4400];
  path_of(path, sizeof path, sub, name);
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
    fprintf(stderr, "make_seeds: cannot write %s: %s\n", path, strerror(errno));
    exit(2);
  }
}

/* ---------------- safetensors ---------------- */

enum { E = 4, H = 8, V = 5, K = 2 };
static uint16_t g_w[E * H];
static float g_bias[E];
static int32_t g_lut32[V * K];
static int64_t g_lut64[V * K];
static const int64_t k_wshape[2] = {E, H}, k_bshape[1] = {E}, k_lshape[2] = {V, K};

static void st_good(const char *name, const char *prefix, const char *bias_name, int lut, bool meta) {
  char wn[128], bn[128], ln[128], path[4400];
  snprintf(wn, sizeof wn, "%sweight", prefix);
  snprintf(bn, sizeof bn, "%s%s", prefix, bias_name);
  snprintf(ln, sizeof ln, "%stid2eid", prefix);
  dsv4_st_write_tensor t[3];
  size_t n = 0;
  t[n++] = (dsv4_st_write_tensor){wn, "BF16", 2, k_wshape, g_w, sizeof g_w};
  if (bias_name) t[n++] = (dsv4_st_write_tensor){bn, "F32", 1, k_bshape, g_bias, sizeof g_bias};
  if (lut == 32) t[n++] = (dsv4_st_write_tensor){ln, "I32", 2, k_lshape, g_lut32, sizeof g_lut32};
  if (lut == 64) t[n++] = (dsv4_st_write_tensor){ln, "I64", 2, k_lshape, g_lut64, sizeof g_lut64};
  const char *mk[] = {"format"}, *mv[] = {"pt"};
  path_of(path, sizeof path, "safetensors", name);
  if (dsv4_st_write(path, t, n, mk, mv, meta ? 1 : 0) != DSV4_OK) {
    fprintf(stderr, "make_seeds: %s\n", dsv4_last_error());
    exit(2);
  }
}

/* A raw file: 8-byte little-endian length of json, json, then n data bytes (a repeating pattern). */
static void st_raw_len(const char *name, uint64_t len, const char *json, size_t n) {
  size_t jl = strlen(json);
  uint8_t *b = calloc(1, 8 + jl + n + 1);
  for (int i = 0; i < 8; ++i) b[i] = (uint8_t)(len >> (8 * i));
  memcpy(b + 8, json, jl);
  for (size_t i = 0; i < n; ++i) b[8 + jl + i] = (uint8_t)(i * 7 + 1);
  write_bytes("safetensors", name, b, 8 + jl + n);
  free(b);
}
static void st_raw(const char *name, const char *json, size_t n) { st_raw_len(name, strlen(json), json, n); }

static void st_expect(const char *name, bool opens, const dsv4_gate_want *w, const char *prefix, bool gate_ok) {
  char path[4400];
  path_of(path, sizeof path, "safetensors", name);
  dsv4_st_file *f = NULL;
  dsv4_status s = dsv4_st_open(path, &f);
  dsv4_st_close(f);
  if ((s == DSV4_OK) != opens) {
    fprintf(stderr, "make_seeds: %s: open gave %s (%s), expected %s\n", name, dsv4_status_string(s),
            dsv4_last_error(), opens ? "success" : "a failure");
    g_bad = 1;
  }
  if (!w) return;
  dsv4_gate_host g;
  s = dsv4_st_load_gate(path, prefix, w, &g);
  dsv4_gate_host_free(&g);
  if ((s == DSV4_OK) != gate_ok) {
    fprintf(stderr, "make_seeds: %s: load_gate gave %s (%s), expected %s\n", name, dsv4_status_string(s),
            dsv4_last_error(), gate_ok ? "success" : "a failure");
    g_bad = 1;
  }
}

static void make_safetensors(void) {
  for (int i = 0; i < E * H; ++i) g_w[i] = (uint16_t)(0x3F80 + (i * 37) % 101);
  for (int i = 0; i < E; ++i) g_bias[i] = 0.25f * (float)i - 0.5f;
  for (int t = 0; t < V; ++t)
    for (int j = 0; j < K; ++j) g_lut32[t * K + j] = (int32_t)(g_lut64[t * K + j] = (t + 3 * j) % E);
  const dsv4_gate_want dense = {E, H, V, K, DSV4_ST_REQUIRED, DSV4_ST_REQUIRED, DSV4_ST_SKIP};
  const dsv4_gate_want hash = {E, H, V, K, DSV4_ST_REQUIRED, DSV4_ST_OPTIONAL, DSV4_ST_REQUIRED};

  st_good("dense.safetensors", "", "bias", 0, true);
  st_good("hash_i32.safetensors", "", "e_score_correction_bias", 32, false);
  st_good("hash_i64.safetensors", "", NULL, 64, true);
  st_good("prefixed.safetensors", "model.layers.0.ffn.gate.", "bias", 32, true);
  st_expect("dense.safetensors", true, &dense, "", true);
  st_expect("hash_i32.safetensors", true, &hash, "", true);
  st_expect("hash_i64.safetensors", true, &hash, "", true);
  st_expect("prefixed.safetensors", true, &hash, "model.layers.0.ffn.gate.", true);

  /* Odd but valid: a scalar, an empty tensor, sub-byte dtypes, an unknown dtype, escapes in names. */
  st_raw("odd_dtypes.safetensors",
         "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
         "\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[8,8]},"
         "\"f4\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[8,11]},"
         "\"f6\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[11,14]},"
         "\"q\":{\"dtype\":\"Q3_MADE_UP\",\"shape\":[3],\"data_offsets\":[14,17]},"
         "\"na\\u00efve \\\"x\\\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[17,18]},"
         "\"__metadata__\":{\"a\":\"b\",\"\":\"\"}}",
         18);
  st_expect("odd_dtypes.safetensors", true, NULL, NULL, false);

  /* Broken headers. */
  st_raw_len("len_too_big.safetensors", 1000, "{}", 0);
  st_raw_len("len_over_limit.safetensors", 200000000, "{}", 0);
  st_raw("not_json.safetensors", "{\"w\":{\"dtype\":\"BF16\",", 0);
  st_raw("not_object.safetensors", "[1,2,3]", 0);
  st_raw("dup_name.safetensors",
         "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
         2);
  st_raw("dup_meta.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0);
  st_raw("meta_not_string.safetensors", "{\"__metadata__\":{\"k\":1}}", 0);
  st_raw("begin_after_end.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,1]}}", 2);
  st_raw("end_past_data.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 2);
  st_raw("size_mismatch.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
  st_raw("shape_overflow.safetensors",
         "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0);
  st_raw("shape_negative.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0);
  st_raw("shape_fraction.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", 0);
  st_raw("rank_17.safetensors",
         "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
  st_raw("offsets_three.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 2);
  st_raw("no_dtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
  st_raw("f4_half_byte.safetensors", "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2);
  st_raw_len("nul_in_header.safetensors", 12, "{}  ", 0);
  static const char *broken[] = {"len_too_big", "len_over_limit", "not_json", "not_object", "dup_name",
                                 "dup_meta", "meta_not_string", "begin_after_end", "end_past_data",
                                 "size_mismatch", "shape_overflow", "shape_negative", "shape_fraction",
                                 "rank_17", "offsets_three", "no_dtype", "f4_half_byte", "nul_in_header"};
  for (size_t i = 0; i < sizeof broken / sizeof broken[0]; ++i) {
    char name[128];
    snprintf(name, sizeof name, "%s.safetensors", broken[i]);
    st_expect(name, false, NULL, NULL, false);
  }
  {
    uint8_t tiny[5] = {1, 0, 0, 0, 0};
    write_bytes("safetensors", "shorter_than_8.safetensors", tiny, sizeof tiny);
    st_expect("shorter_than_8.safetensors", false, NULL, NULL, false);
  }

  /* Headers that open but gates that fail to load. */
  char j[2048];
  snprintf(j, sizeof j,
           "{\"weight\":{\"dtype\":\"BF16\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]},"
           "\"bias\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
           "\"e_score_correction_bias\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%d,%d]}}",
           E, H, E * H * 2, E, E * H * 2, E * H * 2 + 4 * E, E, E * H * 2, E * H * 2 + 4 * E);
  st_raw("gate_two_biases.safetensors", j, E * H * 2 + 4 * E);
  st_expect("gate_two_biases.safetensors", true, &dense, "", false);
  snprintf(j, sizeof j,
           "{\"weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]},"
           "\"bias\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%d,%d]}}",
           E, H, E * H * 4, E, E * H * 4, E * H * 4 + 4 * E);
  st_raw("gate_weight_f32.safetensors", j, E * H * 4 + 4 * E);
  st_expect("gate_weight_f32.safetensors", true, &dense, "", false);
  snprintf(j, sizeof j,
           "{\"weight\":{\"dtype\":\"BF16\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]},"
           "\"tid2eid\":{\"dtype\":\"I32\",\"shape\":[%d,%d],\"data_offsets\":[%d,%d]}}",
           E, H, E * H * 2, V, K, E * H * 2, E * H * 2 + 4 * V * K);
  st_raw("gate_lut_out_of_range.safetensors", j, E * H * 2 + 4 * V * K); /* the pattern bytes are big ids */
  st_expect("gate_lut_out_of_range.safetensors", true, &hash, "", false);
  snprintf(j, sizeof j,
           "{\"tid2eid\":{\"dtype\":\"I16\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]}}", V, K, 2 * V * K);
  st_raw("gate_lut_i16.safetensors", j, 2 * V * K);
  st_expect("gate_lut_i16.safetensors", true, &hash, "", false);
}

/* ---------------- cache files ---------------- */

static const dsv4_key k_seed_key = {{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                                     0xdd, 0xee, 0xff}};

static void cache_expect(const char *name, const uint8_t *b, size_t n, bool ok) {
  write_bytes("cache_decode", name, b, n);
  dsv4_cubin c;
  dsv4_status s = dsv4_cache_decode(b, n, &k_seed_key, &c);
  dsv4_cubin_free(&c);
  if ((s == DSV4_OK) != ok) {
    fprintf(stderr, "make_seeds: %s: decode gave %s (%s), expected %s\n", name, dsv4_status_string(s),
            dsv4_last_error(), ok ? "success" : "a failure");
    g_bad = 1;
  }
}

/* Recomputes a cache file's checksum (XXH3-64 of [0,32) then [40,end)), as a writer would. */
static void fix_sum(uint8_t *b, size_t n) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, b, 32);
  XXH3_64bits_update(&st, b + 40, n - 40);
  uint64_t sum = XXH3_64bits_digest(&st);
  memcpy(b + 32, &sum, 8);
}

static void make_cache(void) {
  /* A tiny fake cubin: an ELF-looking header and a pattern. */
  uint8_t image[200];
  static const uint8_t elf[16] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33, 7, 0, 0, 0, 0, 0, 0, 0};
  memcpy(image, elf, sizeof elf);
  for (size_t i = sizeof elf; i < sizeof image; ++i) image[i] = (uint8_t)(i * 13 + 5);
  dsv4_cubin c;
  memset(&c, 0, sizeof c);
  c.key = k_seed_key;
  snprintf(c.lowered_name, sizeof c.lowered_name, "_ZN4dsv411hash_routerILi6EEEvPKilS2_iPfPiS4_");
  c.image = image;
  c.size = sizeof image;
  uint8_t *b = NULL;
  size_t n = 0;
  if (dsv4_cache_encode(&c, &b, &n) != DSV4_OK) exit(2);
  cache_expect("valid.cubin", b, n, true);

  /* One byte of image: the smallest valid file. */
  c.size = 1;
  snprintf(c.lowered_name, sizeof c.lowered_name, "k");
  uint8_t *small = NULL;
  size_t small_n = 0;
  if (dsv4_cache_encode(&c, &small, &small_n) != DSV4_OK) exit(2);
  cache_expect("smallest.cubin", small, small_n, true);
  free(small);

  /* Broken copies of valid.cubin. */
  uint8_t *x = malloc(n + 16);
  memcpy(x, b, n);
  cache_expect("truncated_header.cubin", x, 40, false);
  cache_expect("truncated_body.cubin", x, n - 1, false);
  memset(x + n, 0, 16);
  cache_expect("padded.cubin", x, n + 16, false);
  memcpy(x, b, n), x[0] = 'X';
  cache_expect("bad_magic.cubin", x, n, false);
  memcpy(x, b, n), x[8] = 2;
  cache_expect("format_2.cubin", x, n, false);
  memcpy(x, b, n), x[n - 1] ^= 1;
  cache_expect("corrupt_body.cubin", x, n, false);
  memcpy(x, b, n), x[16] ^= 0x80;
  cache_expect("foreign_key.cubin", x, n, false);
  memcpy(x, b, n), memset(x + 40, 0xFF, 4);
  cache_expect("name_len_huge.cubin", x, n, false);
  memcpy(x, b, n), memset(x + 48, 0xFF, 8);
  cache_expect("cubin_size_huge.cubin", x, n, false);
  cache_expect("empty.cubin", x, 0, false);
  /* Checksum-valid files: a foreign key, a NUL in the name, nonzero reserved fields (accepted). */
  memcpy(x, b, n), x[20] ^= 1, fix_sum(x, n);
  cache_expect("foreign_key_summed.cubin", x, n, false);
  memcpy(x, b, n), x[64 + 3] = 0, fix_sum(x, n);
  cache_expect("name_nul_summed.cubin", x, n, false);
  memcpy(x, b, n), x[44] = 1, x[60] = 2, fix_sum(x, n);
  cache_expect("reserved_set_summed.cubin", x, n, true);
  memcpy(x, b, n), memset(x + 48, 0, 8), fix_sum(x, n);
  cache_expect("cubin_size_zero_summed.cubin", x, n, false);
  free(x);
  free(b);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds <corpus dir>\n");
    return 2;
  }
  snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
  char sub[4400];
  snprintf(sub, sizeof sub, "%s/safetensors", g_dir);
  if (dsv4_mkdir_p(sub) != DSV4_OK) return 2;
  snprintf(sub, sizeof sub, "%s/cache_decode", g_dir);
  if (dsv4_mkdir_p(sub) != DSV4_OK) return 2;
  make_safetensors();
  make_cache();
  if (!g_bad) printf("make_seeds: corpus written to %s; every file is accepted or rejected as intended\n", g_dir);
  return g_bad;
}
