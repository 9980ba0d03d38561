/*
 * Decode gate GEMM (kernel_src/gate_decode.cu) with no GPU:
 *  - NVRTC compiles it for sm_80, sm_90a and sm_100a at every shape the issue names;
 *  - the split count depends on H only, the workspace size, and the launch plan (grid covers every
 *    (tile, split) once, shared memory matches the kernel's layout, forced shapes are honoured);
 *  - every argument check names its argument and runs before the context is touched;
 *  - the kernel's register layout, replayed on the CPU: the same 16-byte reads per lane (W rows g and g+8,
 *    x row g of each token tile, at hidden c*32 + q*8), packed into registers as the kernel does and fed
 *    through the PTX ISA's documented m16n8k16 fragment layout (A row-major 16x16, B column-major 16x8,
 *    C 16x8), give the oracle's logits once the slabs are summed, and the kernel's store mapping writes every
 *    (split, token, expert) exactly once. This checks the k-permutation and the fragment/store mapping that
 *    otherwise only a GPU could check.
 */
#include <math.h>

#include "test_util.h"
#include "embedded.h"
#include "jit.h"
#include "oracle.h"
#include "ops/ops.h"
#include "jit_test_util.h"

#define FAKE_CTX ((dsv4_context *)(uintptr_t)0x1000) /* never dereferenced by a check */
#define DEV_X ((const void *)(uintptr_t)0x7f0000001000ull)
#define DEV_W ((const void *)(uintptr_t)0x7f0000002000ull)
#define DEV_P ((float *)(uintptr_t)0x7f0000003000ull)

static const int32_t k_shapes[][2] = {{7168, 384}, {4096, 256}, {1024, 144}, {8, 1}, {16384, 1024}, {2056, 1000}};
#define NUM_SHAPES (sizeof k_shapes / sizeof k_shapes[0])

/* ---------------- NVRTC: every shape, every arch ---------------- */
static void test_compiles_for_every_arch(void **state) {
  (void)state;
  for (size_t i = 0; i < NUM_SHAPES; ++i) {
    dsv4_kernel_spec spec;
    dsv4_gate_decode_spec(k_shapes[i][0], k_shapes[i][1], &spec);
    test_compile_every_arch(&spec, "gate_decode");
  }
}

static void test_spec_names_the_shape(void **state) {
  (void)state;
  dsv4_kernel_spec a, b;
  dsv4_gate_decode_spec(7168, 384, &a);
  dsv4_gate_decode_spec(4096, 256, &b);
  assert_string_equal(a.source, "gate_decode.cu");
  assert_string_equal(a.name_expr, "dsv4::gate_decode<7168, 384>");
  assert_string_not_equal(a.tag, b.tag);
  for (const char *p = a.tag; *p; ++p)
    assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
}

/* The host constants must be the kernel's: find "kGateSplit = N" in the embedded source. */
static int kernel_constant(const char *name) {
  for (size_t i = 0; i < dsv4_embedded_file_count; ++i) {
    if (strcmp(dsv4_embedded_files[i].name, "gate_decode.cu")) continue;
    char pat[64];
    snprintf(pat, sizeof pat, "constexpr int %s = ", name);
    const char *p = strstr(dsv4_embedded_files[i].text, pat);
    return p ? atoi(p + strlen(pat)) : -1;
  }
  return -2;
}

static void test_host_constants_match_kernel(void **state) {
  (void)state;
  assert_int_equal(kernel_constant("kGateSplit"), DSV4_GATE_DECODE_SPLIT);
  assert_int_equal(kernel_constant("kGateMaxWarps"), DSV4_GATE_DECODE_MAX_WARPS);
}

/* ---------------- splits, workspace, plan ---------------- */
static void test_splits_depend_on_h_only(void **state) {
  (void)state;
  assert_int_equal(dsv4_gate_decode_splits(7168), 14);
  assert_int_equal(dsv4_gate_decode_splits(4096), 8);
  assert_int_equal(dsv4_gate_decode_splits(8), 1);
  assert_int_equal(dsv4_gate_decode_splits(512), 1);
  assert_int_equal(dsv4_gate_decode_splits(520), 2);
  assert_int_equal(dsv4_gate_decode_splits(2056), 5);
  assert_int_equal(dsv4_gate_decode_splits(16384), 32);
  assert_int_equal(dsv4_gate_decode_splits(0), 0);
  assert_int_equal(dsv4_gate_decode_workspace_floats(7168, 384, 64), (size_t)14 * 64 * 384);
  assert_int_equal(dsv4_gate_decode_workspace_floats(8, 1, 1), 1);
  assert_int_equal(dsv4_gate_decode_workspace_floats(7168, 384, 0), 0);
  /* The plan's split count is the same for every N and every device size. */
  for (int64_t n = 1; n <= 64; ++n)
    for (int sm = 1; sm <= 264; sm += 131) {
      dsv4_gate_decode_plan p;
      dsv4_gate_decode_plan_for(7168, 384, n, sm, 0, 0, &p);
      assert_int_equal(p.splits, 14);
    }
}

static unsigned expected_row_bytes(int32_t h) {
  unsigned pad = h < 512 ? (unsigned)(h + 31) / 32 * 32 : 512;
  unsigned b = pad * 2;
  return b % 128 == 0 ? b + 64 : b;
}
static unsigned expected_smem(int32_t h, int64_t n, int warps) {
  return (unsigned)(8 * ((n + 7) / 8) + 16 * warps) * expected_row_bytes(h);
}

static void check_plan(int32_t h, int32_t e, int64_t n, int sm, int limit, int warps) {
  dsv4_gate_decode_plan p;
  dsv4_gate_decode_plan_for(h, e, n, sm, limit, warps, &p);
  const int tiles = (e + 15) / 16;
  if (p.warps < 1 || p.warps > DSV4_GATE_DECODE_MAX_WARPS || p.warps > tiles)
    fail_msg("H=%d E=%d N=%lld sm=%d: %d warps for %d tiles", h, e, (long long)n, sm, p.warps, tiles);
  assert_int_equal(p.splits, dsv4_gate_decode_splits(h));
  const int groups = (tiles + p.warps - 1) / p.warps;
  assert_int_equal(p.grid, (unsigned)(groups * p.splits));
  assert_int_equal(p.block, (unsigned)(32 * p.warps));
  /* Every tile has a warp: groups * warps covers the tiles, and one group fewer would not. */
  assert_true(groups * p.warps >= tiles && (groups - 1) * p.warps < tiles);
  assert_int_equal(p.smem, expected_smem(h, n, p.warps));
  /* One warp always fits the smallest opt-in limit of an sm_80+ part (99 KB); more fit the given limit. */
  assert_true(expected_smem(h, n, 1) <= 99 * 1024);
  if (limit > 0) assert_true(p.smem <= (unsigned)limit || p.warps == 1);
  if (warps >= 1 && warps <= DSV4_GATE_DECODE_MAX_WARPS) {
    int want = warps < tiles ? warps : tiles;
    while (want > 1 && limit > 0 && expected_smem(h, n, want) > (unsigned)limit) --want;
    assert_int_equal(p.warps, want);
  }
  /* Pitch = 64 mod 128 bytes: lanes g, g+1 of a quarter warp read disjoint bank halves. */
  assert_int_equal(expected_row_bytes(h) % 128, 64);
}

static void test_plan_covers_every_tile(void **state) {
  (void)state;
  static const int32_t hs[] = {8, 16, 24, 200, 504, 512, 520, 1024, 2056, 4096, 7168, 16384};
  static const int32_t es[] = {1, 3, 15, 16, 17, 144, 256, 384, 1000, 1024};
  static const int sms[] = {1, 78, 108, 132, 148};
  static const int limits[] = {0, 99 * 1024, 163 * 1024, 227 * 1024};
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; ++i)
    for (size_t j = 0; j < sizeof es / sizeof es[0]; ++j)
      for (int64_t n = 1; n <= 64; n += (n < 10 ? 1 : 9))
        for (size_t k = 0; k < sizeof sms / sizeof sms[0]; ++k)
          for (size_t l = 0; l < sizeof limits / sizeof limits[0]; ++l)
            for (int w = 0; w <= DSV4_GATE_DECODE_MAX_WARPS + 1; ++w) check_plan(hs[i], es[j], n, sms[k], limits[l], w);
  /* What the built-in choice picks for the presets on a 132-SM, 227 KB part (printed for the record). */
  for (int preset = 0; preset < 2; ++preset) {
    const int32_t h = preset ? 4096 : 7168, e = preset ? 256 : 384;
    for (int64_t n = 1; n <= 64; n = n == 1 ? 8 : n * 2) {
      dsv4_gate_decode_plan p;
      dsv4_gate_decode_plan_for(h, e, n, 132, 227 * 1024, 0, &p);
      printf("  H=%d E=%d N=%-2lld: %d splits, %d warps/block, grid %u, %u B smem\n", h, e, (long long)n, p.splits,
             p.warps, p.grid, p.smem);
    }
  }
}

/* ---------------- argument checks ---------------- */
enum { INV = DSV4_ERR_INVALID_ARGUMENT, UNS = DSV4_ERR_UNSUPPORTED };

static void test_check_names_arguments(void **state) {
  (void)state;
  const char *fn = "dsv4_gate_decode";
  assert_int_equal(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 64, DEV_W, 384, 7168, DEV_P), DSV4_OK);
  assert_int_equal(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 1, DEV_W, 1, 8, DEV_P), DSV4_OK);
  assert_int_equal(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 1, DEV_W, 1024, 16384, DEV_P), DSV4_OK);
  assert_int_equal(dsv4_gate_decode_check(fn, FAKE_CTX, NULL, 0, DEV_W, 384, 7168, NULL), DSV4_OK); /* N = 0 */
  assert_status_names(dsv4_gate_decode_check(fn, NULL, DEV_X, 8, DEV_W, 384, 7168, DEV_P), INV, "'ctx'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, -1, DEV_W, 384, 7168, DEV_P), INV, "'num_tokens'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 65, DEV_W, 384, 7168, DEV_P), UNS, "'num_tokens'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 0, 7168, DEV_P), INV, "'num_experts'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, -2, 7168, DEV_P), INV, "'num_experts'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 1025, 7168, DEV_P), UNS, "'num_experts'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 384, 0, DEV_P), INV, "'hidden_size'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 384, 4, DEV_P), UNS, "'hidden_size'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 384, 7170, DEV_P), UNS, "'hidden_size'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 384, 16392, DEV_P), UNS, "'hidden_size'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, NULL, 8, DEV_W, 384, 7168, DEV_P), INV, "'hidden_bf16'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, (const char *)DEV_X + 8, 8, DEV_W, 384, 7168, DEV_P), INV,
                      "'hidden_bf16'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, NULL, 384, 7168, DEV_P), INV,
                      "'gate_weight_bf16'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, (const char *)DEV_W + 2, 384, 7168, DEV_P), INV,
                      "'gate_weight_bf16'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 384, 7168, NULL), INV, "'partials'");
  assert_status_names(dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 8, DEV_W, 384, 7168, (float *)((char *)DEV_P + 2)),
                      INV, "'partials'");
  dsv4_gate_decode_check(fn, FAKE_CTX, DEV_X, 99, DEV_W, 384, 7168, DEV_P);
  assert_non_null(strstr(dsv4_last_error(), fn));
}

/* ---------------- the kernel's register layout, replayed ---------------- */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* One lane's 16-byte load: 8 bf16 as 4 x 32-bit registers (element 2i in the low half of register i). */
typedef struct { uint32_t r[4]; } u128;
static u128 load8(const uint16_t *p, bool ok) {
  u128 v = {{0, 0, 0, 0}};
  if (ok)
    for (int i = 0; i < 4; ++i) v.r[i] = (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 16;
  return v;
}
static double half(uint32_t reg, int hi) { return oracle_bf16_to_double((uint16_t)(hi ? reg >> 16 : reg & 0xFFFF)); }

/* mma.m16n8k16 .row.col bf16 per the PTX ISA fragment tables: lane (g = lane/4, q = lane%4) holds
 *   A: a0,a1 (row g, cols 2q,2q+1) a2,a3 (row g+8, same cols) a4,a5 (row g, cols 2q+8,2q+9) a6,a7 (row g+8)
 *   B: b0,b1 (rows 2q,2q+1, col g) b2,b3 (rows 2q+8,2q+9, col g)
 *   C: c0,c1 (row g, cols 2q,2q+1) c2,c3 (row g+8, cols 2q,2q+1)                                        */
static void mma_emulate(double acc[32][4], const uint32_t a[32][4], const uint32_t b[32][2]) {
  double A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, q = lane % 4;
    for (int i = 0; i < 8; ++i) A[g + 8 * ((i / 2) % 2)][2 * q + (i % 2) + 8 * (i / 4)] = half(a[lane][i / 2], i % 2);
    for (int i = 0; i < 4; ++i) B[2 * q + (i % 2) + 8 * (i / 2)][g] = half(b[lane][i / 2], i % 2);
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, q = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2), col = 2 * q + (i % 2);
      double d = 0.0;
      for (int k = 0; k < 16; ++k) d += A[row][k] * B[k][col];
      acc[lane][i] += d;
    }
  }
}

/* The kernel's steps 1, 3 and 4 for one (tile, split), every token tile, with the CPU MMA above. */
static void replay_tile(const uint16_t *x, int n_tok, const uint16_t *w, int e, int h, int tile, int split,
                        double *slabs, int *written) {
  const int split_pad = h < 512 ? (h + 31) / 32 * 32 : 512, chunks = split_pad / 32;
  const int k0 = split * 512, klen = h - k0 < 512 ? h - k0 : 512, nt = (n_tok + 7) / 8;
  for (int t = 0; t < nt; ++t) {
    double acc[32][4] = {{0}};
    for (int c = 0; c < chunks; ++c) {
      if (c * 32 >= klen) continue;
      uint32_t a0[32][4], a1[32][4], b0[32][2], b1[32][2];
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, q = lane % 4, r0 = tile * 16 + g, r1 = r0 + 8, hh = k0 + c * 32 + q * 8;
        const bool in = c * 32 + q * 8 < klen;
        const u128 wa = load8(w + (size_t)r0 * h + hh, in && r0 < e);
        const u128 wb = load8(w + (size_t)r1 * h + hh, in && r1 < e);
        const int n = t * 8 + g;
        const u128 xb = load8(x + (size_t)n * h + hh, in && n < n_tok);
        /* gate_mma(acc, wa.x, wb.x, wa.y, wb.y, b.x, b.y); gate_mma(acc, wa.z, wb.z, wa.w, wb.w, b.z, b.w) */
        const uint32_t A0[4] = {wa.r[0], wb.r[0], wa.r[1], wb.r[1]}, A1[4] = {wa.r[2], wb.r[2], wa.r[3], wb.r[3]};
        memcpy(a0[lane], A0, sizeof A0), memcpy(a1[lane], A1, sizeof A1);
        b0[lane][0] = xb.r[0], b0[lane][1] = xb.r[1], b1[lane][0] = xb.r[2], b1[lane][1] = xb.r[3];
      }
      mma_emulate(acc, a0, b0);
      mma_emulate(acc, a1, b1);
    }
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, q = lane % 4, r0 = tile * 16 + g, r1 = r0 + 8, n = t * 8 + 2 * q;
      const int rows[4] = {r0, r0, r1, r1}, toks[4] = {n, n + 1, n, n + 1};
      for (int i = 0; i < 4; ++i) {
        if (rows[i] >= e || toks[i] >= n_tok) continue;
        const size_t at = ((size_t)split * n_tok + toks[i]) * e + rows[i];
        slabs[at] = acc[lane][i];
        written[at]++;
      }
    }
  }
}

static void replay_case(int h, int e, int n_tok, uint64_t seed) {
  uint16_t *x = malloc(sizeof(uint16_t) * (size_t)n_tok * h), *w = malloc(sizeof(uint16_t) * (size_t)e * h);
  for (size_t i = 0; i < (size_t)n_tok * h; ++i)
    x[i] = to_bf16((float)((int)(test_rand(&seed) % 2001) - 1000) / 500.0f);
  for (size_t i = 0; i < (size_t)e * h; ++i)
    w[i] = to_bf16((float)((int)(test_rand(&seed) % 2001) - 1000) / 700.0f);
  const int splits = dsv4_gate_decode_splits(h);
  const size_t nslab = (size_t)splits * n_tok * e;
  double *slabs = calloc(nslab, sizeof(double)), *ref = malloc(sizeof(double) * (size_t)n_tok * e);
  int *written = calloc(nslab, sizeof(int));
  for (int s = 0; s < splits; ++s)
    for (int tile = 0; tile < (e + 15) / 16; ++tile) replay_tile(x, n_tok, w, e, h, tile, s, slabs, written);
  for (size_t i = 0; i < nslab; ++i)
    if (written[i] != 1) fail_msg("H=%d E=%d N=%d: slab element %zu written %d times", h, e, n_tok, i, written[i]);
  oracle_gate_logits(x, w, n_tok, h, e, ref);
  for (int n = 0; n < n_tok; ++n)
    for (int i = 0; i < e; ++i) {
      double sum = 0.0;
      for (int s = 0; s < splits; ++s) sum += slabs[((size_t)s * n_tok + n) * e + i];
      const double want = ref[(size_t)n * e + i];
      if (fabs(sum - want) > 1e-9 * (1.0 + fabs(want)))
        fail_msg("H=%d E=%d N=%d: token %d expert %d: replay %.17g, oracle %.17g", h, e, n_tok, n, i, sum, want);
    }
  free(x), free(w), free(slabs), free(ref), free(written);
}

static void test_register_layout_replay(void **state) {
  (void)state;
  /* Tails in every direction: E not a multiple of 16, H not a multiple of 32 / of the split, N not of 8. */
  replay_case(1064, 40, 9, 1);   /* 3 splits (512, 512, 40): a partial chunk; E tail of 8 rows */
  replay_case(24, 3, 2, 2);
  replay_case(8, 1, 1, 3);
  replay_case(544, 17, 16, 4);   /* second split is exactly one chunk */
  replay_case(512, 16, 64, 5);   /* all 8 token tiles */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_names_the_shape),
      cmocka_unit_test(test_host_constants_match_kernel),
      cmocka_unit_test(test_splits_depend_on_h_only),
      cmocka_unit_test(test_plan_covers_every_tile),
      cmocka_unit_test(test_check_names_arguments),
      cmocka_unit_test(test_register_layout_replay),
      cmocka_unit_test(test_compiles_for_every_arch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
