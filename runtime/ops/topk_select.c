/* Host launcher of dsv4_topk_select: the warp kernel of kernel_src/topk_select.cu for routing sizes
 * (cols <= 1024 and k <= 16), the cluster radix select of kernel_src/topk_long.cu for everything else. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

#define MAX_COLS (1 << 20)
#define MAX_K 4096
#define WARP_MAX_COLS 1024   /* the warp kernel: one warp per row, candidates in registers */
#define WARP_MAX_K 16
#define WARP_ROWS_PER_BLOCK 4   /* kWarpRowsPerBlock in the kernel */
/* topk_long.cu */
#define LONG_CTL_BYTES 512      /* kTlCtlBytes */
#define LONG_BINS 2048          /* kTlBins: two histograms of 4-byte counters */
#define LONG_MAX_CLUSTER 8      /* kTlMaxCluster */
#define LONG_WIDE_COLS 8192     /* wider rows take 1024-thread blocks (and clusters on sm_90+) */
#define LONG_MIN_SLICE 8192     /* columns per block at least, when a row is split over a cluster */
#define LONG_MIN_CANDIDATES 2048   /* candidate buffer entries beside a partly cached slice */
#define LONG_MAX_CANDIDATES 8192
#define STATIC_SMEM_LIMIT (48 * 1024)

static bool use_warp(int64_t cols, int32_t k) { return cols <= WARP_MAX_COLS && k <= WARP_MAX_K; }

static int pow2_at_least(int32_t k) {
  int p = 1;
  while (p < k) p <<= 1;
  return p;
}

static int long_threads(int64_t cols) { return cols > LONG_WIDE_COLS ? 1024 : 256; }

void dsv4_topk_long_spec(int64_t cols, int32_t k, dsv4_kernel_spec *out) {
  const int kp = pow2_at_least(k), nt = long_threads(cols);
  out->source = "topk_long.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::topk_long<%d, %d>", kp, nt);
  snprintf(out->tag, sizeof out->tag, "topk_long-kp%d-t%d", kp, nt);
}

void dsv4_topk_select_spec(int64_t cols, int32_t k, dsv4_kernel_spec *out) {
  if (use_warp(cols, k)) {
    out->source = "topk_select.cu";
    const int c = 4 * (int)((cols + 127) / 128);   /* candidates per lane, a multiple of 4 */
    snprintf(out->name_expr, sizeof out->name_expr, "dsv4::topk_select_warp<%d, %d>", (int)k, c);
    snprintf(out->tag, sizeof out->tag, "topk_select_warp-k%d-c%d", (int)k, c);
  } else {
    dsv4_topk_long_spec(cols, k, out);
  }
}

dsv4_status dsv4_topk_long_plan_for(int64_t rows, int64_t cols, int32_t k, int sm_count, int smem_limit,
                                    int max_cluster, dsv4_topk_long_plan *out) {
  memset(out, 0, sizeof *out);
  const int kp = pow2_at_least(k), nt = long_threads(cols);
  const int64_t sp = kp > 64 ? kp : 64;
  const int64_t fixed = LONG_CTL_BYTES + 2 * LONG_BINS * 4 + 8 * sp;
  int cl = 1;
  if (nt == 1024)   /* one block per SM: split rows over clusters while the blocks still fit in one wave */
    while (2 * cl <= max_cluster && 2 * cl <= LONG_MAX_CLUSTER && rows * 2 * cl <= sm_count &&
           cols >= (int64_t)LONG_MIN_SLICE * 2 * cl)
      cl *= 2;
  const int64_t slice = ((cols + cl - 1) / cl + 3) / 4 * 4;
  int64_t avail = ((int64_t)smem_limit - fixed) / 4 / 4 * 4;   /* pool words, a multiple of 4 */
  /* 256-thread blocks (rows up to 8192): the row's keys and an index for every one of them at most, so
   * several blocks share an SM. 1024-thread blocks: all the shared memory there is (one block per SM). */
  int64_t pool = nt == 1024 ? avail : (avail < 2 * slice ? avail : 2 * slice);
  const int64_t need_pool = cl > 1 ? 2 * (int64_t)kp : 8;   /* with cl > 1 the pool takes kp copied keys */
  if (pool < need_pool)
    return dsv4_fail(DSV4_ERR_UNSUPPORTED, "dsv4_topk_select: %lld bytes of shared memory per block needed for k = %d, "
                     "the device allows %d", (long long)(fixed + 4 * need_pool), (int)k, smem_limit);
  /* The slice's keys stay in shared memory when they fit with room to spare; else a prefix of them does,
   * beside candidate buffers (keys and indices) of `cand` entries, and the rest is re-read from L2. */
  int64_t dense = slice;
  if (slice + 4 > pool) {
    int64_t cand = pool / 8;
    if (cand < LONG_MIN_CANDIDATES) cand = LONG_MIN_CANDIDATES;
    if (cand > LONG_MAX_CANDIDATES) cand = LONG_MAX_CANDIDATES;
    dense = (pool - 2 * cand) / 4 * 4;
    if (dense < 0) dense = 0;
  }
  out->threads = nt;
  out->cluster = cl;
  out->kp = kp;
  out->slice = (int32_t)slice;
  out->pool_words = (int32_t)pool;
  out->dense = (int32_t)dense;
  out->cached = dense == slice;
  out->smem = (unsigned)(fixed + 4 * pool);
  const int64_t max_clusters = ((int64_t)1 << 30) / cl;   /* the kernel loops over rows beyond the grid */
  out->grid = (unsigned)((rows < max_clusters ? rows : max_clusters) * cl);
  return DSV4_OK;
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
  DSV4_CHECK_PTR(scores, fn, "scores", 4);
  DSV4_CHECK_PTR(out_values, fn, "out_values", 4);
  DSV4_CHECK_PTR(out_indices, fn, "out_indices", 4);
  return DSV4_OK;
}

/* The largest cluster (1, 2, 4 or 8 blocks) of fn at `smem` bytes and 1024 threads that the device can run,
 * asked once per function (cuOccupancyMaxActiveClusters) and remembered; 1 before sm_90. */
typedef struct long_cluster_entry {
  CUdevice dev;
  CUfunction fn;
  unsigned smem;
  int max_cluster;
} long_cluster_entry;
static long_cluster_entry g_long_clusters[64];
static int g_num_long_clusters;
static pthread_mutex_t g_long_mu = PTHREAD_MUTEX_INITIALIZER;

static dsv4_status long_max_cluster(dsv4_context *ctx, CUfunction fn, unsigned smem, int *out) {
  *out = 1;
  if (ctx->cc_major < 9) return DSV4_OK;
  bool known = false;
  pthread_mutex_lock(&g_long_mu);
  for (int i = 0; i < g_num_long_clusters && !known; ++i)
    if (g_long_clusters[i].dev == ctx->dev && g_long_clusters[i].fn == fn && g_long_clusters[i].smem == smem)
      *out = g_long_clusters[i].max_cluster, known = true;
  pthread_mutex_unlock(&g_long_mu);
  if (known) return DSV4_OK;
  int best = 1;
  for (int cl = LONG_MAX_CLUSTER; cl > 1 && best == 1; cl >>= 1) {
    CUlaunchAttribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attr.value.clusterDim.x = (unsigned)cl, attr.value.clusterDim.y = 1, attr.value.clusterDim.z = 1;
    CUlaunchConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDimX = (unsigned)cl, cfg.gridDimY = 1, cfg.gridDimZ = 1;
    cfg.blockDimX = 1024, cfg.blockDimY = 1, cfg.blockDimZ = 1;
    cfg.sharedMemBytes = smem;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int n = 0;
    CUresult r = ctx->drv->cuOccupancyMaxActiveClusters(&n, fn, &cfg);
    if (r == CUDA_SUCCESS && n >= 1) best = cl;
    else
      dsv4_log(DSV4_LOG_DEBUG, "topk_long: clusters of %d blocks at %u bytes: %d active (CUresult %d)", cl, smem, n,
               (int)r);
  }
  pthread_mutex_lock(&g_long_mu);
  if (g_num_long_clusters < (int)(sizeof g_long_clusters / sizeof g_long_clusters[0]))
    g_long_clusters[g_num_long_clusters++] = (long_cluster_entry){ctx->dev, fn, smem, best};
  pthread_mutex_unlock(&g_long_mu);
  *out = best;
  return DSV4_OK;
}

/* With ctx current: the long-row kernel for (cols, k) and the shape its launch takes on this device. */
static dsv4_status long_setup(dsv4_context *ctx, int64_t rows, int64_t cols, int32_t k, CUfunction *fn,
                              dsv4_topk_long_plan *plan) {
  dsv4_kernel_spec spec;
  dsv4_topk_long_spec(cols, k, &spec);
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, fn));
  int optin = 0, static_smem = 0;
  DSV4_CU(ctx->drv, cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, ctx->dev),
          "topk_long: cuDeviceGetAttribute(MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)");
  DSV4_CU(ctx->drv, cuFuncGetAttribute(&static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, *fn),
          "topk_long: cuFuncGetAttribute(SHARED_SIZE_BYTES)");
  const int smem_limit = optin - static_smem;
  DSV4_TRY(dsv4_topk_long_plan_for(rows, cols, k, ctx->sm_count, smem_limit, 1, plan));
  if (plan->smem > STATIC_SMEM_LIMIT) {
    /* Always the whole limit, so concurrent enqueues of different shapes never lower it under each other;
     * a host-side attribute: no allocation, no sync. */
    DSV4_CU(ctx->drv, cuFuncSetAttribute(*fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem_limit),
            "topk_long: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
  }
  if (plan->threads == 1024 && ctx->cc_major >= 9) {
    int max_cluster = 1;
    DSV4_TRY(long_max_cluster(ctx, *fn, plan->smem, &max_cluster));
    if (max_cluster > 1) DSV4_TRY(dsv4_topk_long_plan_for(rows, cols, k, ctx->sm_count, smem_limit, max_cluster, plan));
  }
  return DSV4_OK;
}

dsv4_status dsv4_topk_long_plan_ctx(dsv4_context *ctx, int64_t rows, int64_t cols, int32_t k, dsv4_topk_long_plan *out) {
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  CUfunction fn = NULL;
  dsv4_status s = long_setup(ctx, rows, cols, k, &fn, out);
  dsv4_ctx_leave(ctx, pushed);
  return s;
}

/* With ctx current: the long-row kernel. */
static dsv4_status launch_long(dsv4_context *ctx, CUstream stream, const float *scores, int64_t rows, int64_t cols,
                               int64_t row_stride, int32_t k, float *out_values, int32_t *out_indices) {
  CUfunction fn = NULL;
  dsv4_topk_long_plan plan;
  DSV4_TRY(long_setup(ctx, rows, cols, k, &fn, &plan));
  int ncols = (int)cols, slice = plan.slice, pool_words = plan.pool_words, dense = plan.dense;
  void *args[] = {&scores, &rows, &ncols, &row_stride, &k, &out_values, &out_indices, &slice, &pool_words, &dense};
  if (plan.cluster == 1)
    return dsv4_launch(ctx, fn, plan.grid, (unsigned)plan.threads, plan.smem, stream, args, "launching topk_long");
  CUlaunchAttribute attr;
  memset(&attr, 0, sizeof attr);
  attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attr.value.clusterDim.x = (unsigned)plan.cluster, attr.value.clusterDim.y = 1, attr.value.clusterDim.z = 1;
  CUlaunchConfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.gridDimX = plan.grid, cfg.gridDimY = 1, cfg.gridDimZ = 1;
  cfg.blockDimX = (unsigned)plan.threads, cfg.blockDimY = 1, cfg.blockDimZ = 1;
  cfg.sharedMemBytes = plan.smem;
  cfg.hStream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  DSV4_CU(ctx->drv, cuLaunchKernelEx(&cfg, fn, args, NULL), "launching topk_long (cluster)");
  return DSV4_OK;
}

dsv4_status dsv4_topk_select_enqueue(dsv4_context *ctx, CUstream stream, const float *scores, int64_t rows,
                                     int64_t cols, int64_t row_stride, int32_t k, float *out_values,
                                     int32_t *out_indices) {
  if (rows == 0) return DSV4_OK;
  bool pushed = false;
  dsv4_status s;
  if (use_warp(cols, k)) {
    dsv4_kernel_spec spec;
    dsv4_topk_select_spec(cols, k, &spec);
    CUfunction fn = NULL;
    DSV4_TRY(dsv4_ctx_function(ctx, &spec, &fn));
    int32_t ncols = (int32_t)cols;
    const int64_t max_grid = (int64_t)1 << 30;   /* the kernel loops over rows beyond the grid */
    DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
    int64_t grid = (rows + WARP_ROWS_PER_BLOCK - 1) / WARP_ROWS_PER_BLOCK;
    if (grid > max_grid) grid = max_grid;
    void *args[] = {&scores, &rows, &ncols, &row_stride, &out_values, &out_indices};
    s = dsv4_launch(ctx, fn, (unsigned)grid, 32 * WARP_ROWS_PER_BLOCK, 0, stream, args, "launching topk_select_warp");
  } else {
    DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
    s = launch_long(ctx, stream, scores, rows, cols, row_stride, k, out_values, out_indices);
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
