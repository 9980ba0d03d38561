/* Host launcher for kernel_src/topk_select.cu (dsv4_topk_select). */
#include <stdint.h>
#include <stdio.h>

#include "ops.h"

#define MAX_COLS (1 << 20)
#define MAX_K 4096
#define WARP_MAX_COLS 1024   /* the warp kernel: one warp per row, candidates in registers */
#define WARP_MAX_K 16
#define WARP_ROWS_PER_BLOCK 4   /* kWarpRowsPerBlock in the kernel */
#define RADIX_THREADS 512       /* kRadixThreads in the kernel */

static bool use_warp(int64_t cols, int32_t k) { return cols <= WARP_MAX_COLS && k <= WARP_MAX_K; }

static int pow2_at_least(int32_t k) {
  int p = 1;
  while (p < k) p <<= 1;
  return p;
}

void dsv4_topk_select_spec(int64_t cols, int32_t k, dsv4_kernel_spec *out) {
  out->source = "topk_select.cu";
  if (use_warp(cols, k)) {
    const int c = 4 * (int)((cols + 127) / 128);   /* candidates per lane, a multiple of 4 */
    snprintf(out->name_expr, sizeof out->name_expr, "dsv4::topk_select_warp<%d, %d>", (int)k, c);
    snprintf(out->tag, sizeof out->tag, "topk_select_warp-k%d-c%d", (int)k, c);
  } else {
    const int kp = pow2_at_least(k);
    snprintf(out->name_expr, sizeof out->name_expr, "dsv4::topk_select_radix<%d>", kp);
    snprintf(out->tag, sizeof out->tag, "topk_select_radix-kp%d", kp);
  }
}

dsv4_status dsv4_topk_select_check(const char *fn, const void *ctx, const float *scores, int64_t rows, int64_t cols,
                                   int64_t row_stride, int32_t k, const float *out_values,
                                   const int32_t *out_indices) {
  DSV4_CHECK_ARG(ctx != NULL, fn, "ctx", "is NULL");
  DSV4_CHECK_ARG(rows >= 0, fn, "rows", "is negative");
  DSV4_CHECK_ARG(cols >= 1, fn, "cols", "must be at least 1");
  DSV4_CHECK_RANGE(cols <= MAX_COLS, fn, "cols", cols, "1..2^20");
  DSV4_CHECK_ARG(row_stride >= cols, fn, "row_stride", "is smaller than cols");
  DSV4_CHECK_ARG(k >= 1, fn, "k", "must be at least 1");
  DSV4_CHECK_RANGE(k <= cols && k <= MAX_K, fn, "k", k, "1..min(cols,4096)");
  DSV4_CHECK_RANGE(rows <= ((int64_t)1 << 46) / row_stride, fn, "rows", rows, "rows * row_stride <= 2^46");
  if (rows == 0) return DSV4_OK;
  DSV4_CHECK_ARG(scores != NULL, fn, "scores", "is NULL");
  DSV4_CHECK_ARG(((uintptr_t)scores & 3) == 0, fn, "scores", "is not 4-byte aligned");
  DSV4_CHECK_ARG(out_values != NULL, fn, "out_values", "is NULL");
  DSV4_CHECK_ARG(((uintptr_t)out_values & 3) == 0, fn, "out_values", "is not 4-byte aligned");
  DSV4_CHECK_ARG(out_indices != NULL, fn, "out_indices", "is NULL");
  DSV4_CHECK_ARG(((uintptr_t)out_indices & 3) == 0, fn, "out_indices", "is not 4-byte aligned");
  return DSV4_OK;
}

dsv4_status dsv4_topk_select_enqueue(dsv4_context *ctx, CUstream stream, const float *scores, int64_t rows,
                                     int64_t cols, int64_t row_stride, int32_t k, float *out_values,
                                     int32_t *out_indices) {
  if (rows == 0) return DSV4_OK;
  dsv4_kernel_spec spec;
  dsv4_topk_select_spec(cols, k, &spec);
  CUfunction fn = NULL;
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, &fn));
  int32_t ncols = (int32_t)cols;
  const int64_t max_grid = (int64_t)1 << 30;   /* the kernels loop over rows beyond the grid */
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  dsv4_status s;
  if (use_warp(cols, k)) {
    int64_t grid = (rows + WARP_ROWS_PER_BLOCK - 1) / WARP_ROWS_PER_BLOCK;
    if (grid > max_grid) grid = max_grid;
    void *args[] = {&scores, &rows, &ncols, &row_stride, &out_values, &out_indices};
    s = dsv4_launch(ctx, fn, (unsigned)grid, 32 * WARP_ROWS_PER_BLOCK, 0, stream, args, "launching topk_select_warp");
  } else {
    int64_t grid = rows < max_grid ? rows : max_grid;
    void *args[] = {&scores, &rows, &ncols, &row_stride, &k, &out_values, &out_indices};
    s = dsv4_launch(ctx, fn, (unsigned)grid, RADIX_THREADS, 0, stream, args, "launching topk_select_radix");
  }
  dsv4_ctx_leave(ctx, pushed);
  return s;
}

dsv4_status dsv4_topk_select(dsv4_context *ctx, CUstream stream, const float *scores, int64_t rows, int64_t cols,
                             int64_t row_stride, int32_t k, float *out_values, int32_t *out_indices) {
  DSV4_TRY(dsv4_topk_select_check("dsv4_topk_select", ctx, scores, rows, cols, row_stride, k, out_values,
                                  out_indices));
  return dsv4_topk_select_enqueue(ctx, stream, scores, rows, cols, row_stride, k, out_values, out_indices);
}
