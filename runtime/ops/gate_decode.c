/* Host launcher for kernel_src/gate_decode.cu: the decode gate GEMM (N <= 64) as split-K partial slabs. */
#include <stdint.h>
#include <stdio.h>

#include "ops.h"

/* Must match kGateSplit / kGateMaxWarps / gate_decode_shape in kernel_src/gate_decode.cu. */
#define SPLIT DSV4_GATE_DECODE_SPLIT
#define MAX_WARPS DSV4_GATE_DECODE_MAX_WARPS
#define MAX_E 1024
#define MIN_H 8
#define MAX_H 16384
#define STATIC_SMEM_LIMIT (48 * 1024)

void dsv4_gate_decode_spec(int32_t hidden_size, int32_t num_experts, dsv4_kernel_spec *out) {
  out->source = "gate_decode.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::gate_decode<%d, %d>", (int)hidden_size, (int)num_experts);
  snprintf(out->tag, sizeof out->tag, "gate_decode-h%d-e%d", (int)hidden_size, (int)num_experts);
}

int32_t dsv4_gate_decode_splits(int32_t hidden_size) {
  if (hidden_size < 1) return 0;
  return (hidden_size + SPLIT - 1) / SPLIT;
}

size_t dsv4_gate_decode_workspace_floats(int32_t hidden_size, int32_t num_experts, int64_t num_tokens) {
  if (hidden_size < 1 || num_experts < 1 || num_tokens < 1) return 0;
  return (size_t)dsv4_gate_decode_splits(hidden_size) * (size_t)num_tokens * (size_t)num_experts;
}

/* Shared-memory pitch of one staged row (x or W): the split padded to 32-wide chunks, in bytes, = 64 mod 128. */
static unsigned row_bytes(int32_t hidden_size) {
  const unsigned pad = hidden_size < SPLIT ? (unsigned)(hidden_size + 31) / 32 * 32 : SPLIT;
  return (pad * 2) % 128 == 0 ? pad * 2 + 64 : pad * 2;
}

/* Dynamic shared memory: 8 * ceil(N/8) x rows, then 16 W rows per warp. */
static unsigned smem_bytes(int32_t hidden_size, int64_t num_tokens, int warps) {
  return (unsigned)(8 * ((num_tokens + 7) / 8) + 16 * warps) * row_bytes(hidden_size);
}

/*
 * Warps (16-expert tiles) per block. A rough per-SM cost model in cycles, from the resources of one SM
 * (H100/H200 class; the constants are estimates, tune with dsv4-bench's sweep):
 *   - its blocks' global bytes (W tiles + the x tile + the partials written) at ~64 B/clk per SM, and the
 *     grid's total bytes at ~32 B/clk per SM of aggregate L2 bandwidth;
 *   - MMAs: one warp's chains are (split/16) x ceil(N/8) mma.sync, ~6 clk each, one warp per sub-partition;
 *   - shared memory at 256 B/clk: the fills, and every warp reading its W tile and the whole x tile. (The
 *     hardware's figure is 128 B/clk, but with it the model kept 3 warps at N = 64 where the H100 sweep
 *     measured 4 faster: 5.42 against 5.87 us, v4-pro; the shared reads overlap the rest more than it assumed.)
 * Cost = the 4-norm of the four (they overlap but contend).
 * More warps per block share one x tile (less traffic at large N); fewer spread W over more SMs (small N).
 * The choice never changes the arithmetic (see the kernel), only the speed.
 */
static double pow4(double v) { return (v * v) * (v * v); }

static int pick_warps(int tiles, int splits, int split_len, int32_t hidden_size, int64_t n, int sm_count,
                      int smem_limit) {
  const double nt = (double)((n + 7) / 8);
  double best = 0.0;
  int best_w = 1;
  for (int w = 1; w <= MAX_WARPS && w <= tiles; ++w) {
    const int groups = (tiles + w - 1) / w;
    if (w > 1 && (tiles + w - 2) / (w - 1) == groups) continue; /* same grid as w-1, more idle warps */
    if (w > 1 && smem_limit > 0 && smem_bytes(hidden_size, n, w) > (unsigned)smem_limit) break;
    const double blocks = (double)groups * splits;
    const double per_sm = (double)(((int64_t)groups * splits + sm_count - 1) / sm_count);
    const double in_bytes = w * 16.0 * split_len * 2 + (double)n * split_len * 2;
    const double blk_bytes = in_bytes + w * 16.0 * (double)n * 4;
    const double t_sm = per_sm * blk_bytes / 64.0;
    const double t_l2 = blocks * blk_bytes / (sm_count * 32.0);
    const double per_part = (double)(((int64_t)per_sm * w + 3) / 4);
    const double t_mma = per_part * (split_len / 16) * nt * 6.0;
    const double t_lds = per_sm * (in_bytes + w * (nt * 8.0 + 16.0) * split_len * 2) / 256.0;
    /* They overlap but contend: a soft maximum (4-norm), so near-ties go to the shape lighter elsewhere. */
    const double t = pow4(t_sm) + pow4(t_l2) + pow4(t_mma) + pow4(t_lds); /* 4-norm, to the 4th power */
    if (w == 1 || t < best) best = t, best_w = w;
  }
  return best_w;
}

void dsv4_gate_decode_plan_for(int32_t hidden_size, int32_t num_experts, int64_t num_tokens, int sm_count,
                               int smem_limit, int warps, dsv4_gate_decode_plan *out) {
  const int tiles = (num_experts + 15) / 16;
  const int splits = dsv4_gate_decode_splits(hidden_size);
  const int split_len = hidden_size < SPLIT ? hidden_size : SPLIT;
  if (sm_count < 1) sm_count = 1;
  if (warps < 1 || warps > MAX_WARPS)
    warps = pick_warps(tiles, splits, split_len, hidden_size, num_tokens, sm_count, smem_limit);
  if (warps > tiles) warps = tiles;
  while (warps > 1 && smem_limit > 0 && smem_bytes(hidden_size, num_tokens, warps) > (unsigned)smem_limit) --warps;
  const int groups = (tiles + warps - 1) / warps;
  out->splits = splits;
  out->warps = warps;
  out->grid = (unsigned)(groups * splits);
  out->block = (unsigned)(warps * 32);
  out->smem = smem_bytes(hidden_size, num_tokens, warps);
}

dsv4_status dsv4_gate_decode_check(const char *fn, const void *ctx, const void *x, int64_t num_tokens,
                                   const void *w, int32_t num_experts, int32_t hidden_size, const float *partials) {
  DSV4_CHECK_ARG(ctx != NULL, fn, "ctx", "is NULL");
  DSV4_CHECK_ARG(num_tokens >= 0, fn, "num_tokens", "is negative");
  DSV4_CHECK_RANGE(num_tokens <= DSV4_GATE_DECODE_MAX_TOKENS, fn, "num_tokens", num_tokens, "0..64 (decode)");
  DSV4_CHECK_ARG(num_experts >= 1, fn, "num_experts", "must be at least 1");
  DSV4_CHECK_RANGE(num_experts <= MAX_E, fn, "num_experts", num_experts, "1..1024");
  DSV4_CHECK_ARG(hidden_size >= 1, fn, "hidden_size", "must be at least 1");
  DSV4_CHECK_RANGE(hidden_size >= MIN_H && hidden_size <= MAX_H && hidden_size % 8 == 0, fn, "hidden_size",
                   hidden_size, "8..16384, a multiple of 8");
  DSV4_CHECK_ARG(w != NULL, fn, "gate_weight_bf16", "is NULL");
  DSV4_CHECK_ARG(((uintptr_t)w & 15) == 0, fn, "gate_weight_bf16", "is not 16-byte aligned");
  if (num_tokens == 0) return DSV4_OK;
  DSV4_CHECK_ARG(x != NULL, fn, "hidden_bf16", "is NULL");
  DSV4_CHECK_ARG(((uintptr_t)x & 15) == 0, fn, "hidden_bf16", "is not 16-byte aligned");
  DSV4_CHECK_PTR(partials, fn, "partials", 4);
  return DSV4_OK;
}

/* With ctx current: the launch of fn. */
static dsv4_status launch(dsv4_context *ctx, CUfunction fn, CUstream stream, const void *x, int64_t num_tokens,
                          const void *w, int32_t num_experts, int32_t hidden_size, float *partials, int warps,
                          bool pdl) {
  /* Shared memory: the device's opt-in limit per block less the kernel's static part (none, or what the
   * system reserves). */
  int optin = 0, static_smem = 0;
  DSV4_CU(ctx->drv, cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, ctx->dev),
          "gate_decode: cuDeviceGetAttribute(MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)");
  DSV4_CU(ctx->drv, cuFuncGetAttribute(&static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn),
          "gate_decode: cuFuncGetAttribute(SHARED_SIZE_BYTES)");
  const int smem_limit = optin - static_smem;
  dsv4_gate_decode_plan plan;
  dsv4_gate_decode_plan_for(hidden_size, num_experts, num_tokens, ctx->sm_count, smem_limit, warps, &plan);
  if (smem_limit <= 0 || plan.smem > (unsigned)smem_limit)
    return dsv4_fail(DSV4_ERR_UNSUPPORTED, "gate_decode: %u bytes of shared memory needed, the device allows %d",
                     plan.smem, smem_limit);
  if (plan.smem > STATIC_SMEM_LIMIT) {
    /* Opt in above 48 KB. Always the same value (the whole limit), so concurrent enqueues of different N on
     * one function never lower it under each other; a host-side attribute: no allocation, no sync. */
    DSV4_CU(ctx->drv, cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem_limit),
            "gate_decode: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
  }
  int n = (int)num_tokens;
  void *args[] = {&x, &n, &w, &partials};
  return dsv4_launch(ctx, fn, plan.grid, plan.block, plan.smem, stream, args, pdl, "launching gate_decode");
}

dsv4_status dsv4_gate_decode_enqueue_ex(dsv4_context *ctx, CUstream stream, const void *x, int64_t num_tokens,
                                        const void *w, int32_t num_experts, int32_t hidden_size, float *partials,
                                        int warps, bool pdl) {
  if (num_tokens == 0) return DSV4_OK;
  dsv4_kernel_spec spec;
  dsv4_gate_decode_spec(hidden_size, num_experts, &spec);
  CUfunction fn = NULL;
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, &fn));
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  dsv4_status s = launch(ctx, fn, stream, x, num_tokens, w, num_experts, hidden_size, partials, warps, pdl);
  dsv4_ctx_leave(ctx, pushed);
  return s;
}

dsv4_status dsv4_gate_decode_enqueue(dsv4_context *ctx, CUstream stream, const void *x, int64_t num_tokens,
                                     const void *w, int32_t num_experts, int32_t hidden_size, float *partials) {
  return dsv4_gate_decode_enqueue_ex(ctx, stream, x, num_tokens, w, num_experts, hidden_size, partials, 0, false);
}
