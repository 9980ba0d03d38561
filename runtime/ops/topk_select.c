/* Host launcher of dsv4_topk_select: the warp kernel of kernel_src/topk_select.cu for routing sizes
 * (cols <= 1024 and k <= 16), the cluster radix select of kernel_src/topk_long.cu for everything else (its
 * launch shape: dsv4_topk_long_plan_for), except where that plan takes clusters of 16 blocks of 512 threads and
 * slices of at most 8192 columns (on an H100 or H200: rows of exactly 131072 columns, as many as run as clusters
 * of 16 at once, 7 on the H200 measured) and k is at most 1024: there the sample-threshold select of
 * kernel_src/topk_sample.cu, with the same plan (it falls back to topk_long's row body in the same launch). */
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
#define LONG_CTL_BYTES 1024     /* kTlCtlBytes */
#define LONG_BINS 2048          /* kTlBins: two histograms of 4-byte counters */
#define LONG_MAX_CLUSTER 16     /* kTlMaxCluster; 16 is a non-portable cluster size (sm_90+ if the device runs it) */
#define LONG_WIDE_COLS 8192     /* wider rows take LONG_WIDE_THREADS-thread blocks (and clusters on sm_90+) */
#ifndef LONG_WIDE_THREADS
/* Threads of a block of the wide-row form, one block per SM (measured on H100 against 1024 and 256: 1024
 * capped registers at 64 and spilled; 512 was 10-18 % faster on every bench shape, 256 slower). */
#define LONG_WIDE_THREADS 512
#endif
#define LONG_MIN_SLICE 8192     /* columns per block at least, when a row is split over a cluster */
#define LONG_MIN_CANDIDATES 4096   /* candidate buffer entries the key cache leaves room for (the wide form) */
#define LONG_SMALL_CANDIDATES 2048 /* the same for 256-thread blocks (short rows) */
#define LONG_HIT_BYTES (4096 * 4)  /* kTlHits: the hit list beside a 16-bit key cache */
#define LONG_MIN_POOL 1024         /* 4 * kTlRankSortMax: the counting sort's scratch */
#define STATIC_SMEM_LIMIT (48 * 1024)
/* topk_sample.cu */
#define SAMPLE_CLUSTER 16        /* kTsCluster */
#define SAMPLE_THREADS 512       /* kTsThreads */
#define SAMPLE_MAX_SLICE 8192    /* kTsMaxSlice */
#define SAMPLE_MIN_COLS 4097     /* cols > kTsSample: the sample's runs of 128 columns do not overlap */
#define SAMPLE_SMEM 164064       /* sizeof(TsSmem) */
/* k of at most 1024: measured on an H200 at 1 x 131072, the sample kernel takes 9.8 us at k = 512 against topk_long's
 * 12.7, but 13.4 at k = 2048 against 12.7 (its copy and ranking grow with the candidates, about 2 k). */
#define SAMPLE_MAX_K 1024

bool dsv4_topk_select_uses_warp(int64_t cols, int32_t k) { return cols <= WARP_MAX_COLS && k <= WARP_MAX_K; }

static int pow2_at_least(int32_t k) {
  int p = 1;
  while (p < k) p <<= 1;
  return p;
}

static int long_threads(int64_t cols) { return cols > LONG_WIDE_COLS ? LONG_WIDE_THREADS : 256; }

/* The fixed part of topk_long.cu's shared memory for kp: control block, two histograms, the survivor list. */
static int64_t long_fixed_bytes(int kp) {
  return LONG_CTL_BYTES + 2 * LONG_BINS * 4 + 8 * (int64_t)(kp > 64 ? kp : 64);
}

static void long_spec_threads(int32_t k, int nt, dsv4_kernel_spec *out) {
  const int kp = pow2_at_least(k);
  out->source = "topk_long.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::topk_long<%d, %d>", kp, nt);
  snprintf(out->tag, sizeof out->tag, "topk_long-kp%d-t%d", kp, nt);
}

void dsv4_topk_long_spec(int64_t cols, int32_t k, dsv4_kernel_spec *out) {
  long_spec_threads(k, long_threads(cols), out);
}

void dsv4_topk_sample_spec(int32_t k, dsv4_kernel_spec *out) {
  const int kp = pow2_at_least(k);
  out->source = "topk_sample.cu";
  snprintf(out->name_expr, sizeof out->name_expr, "dsv4::topk_sample<%d>", kp);
  snprintf(out->tag, sizeof out->tag, "topk_sample-kp%d", kp);
}

void dsv4_topk_select_spec(int64_t cols, int32_t k, dsv4_kernel_spec *out) {
  if (dsv4_topk_select_uses_warp(cols, k)) {
    out->source = "topk_select.cu";
    const int c = 4 * (int)((cols + 127) / 128);   /* candidates per lane, a multiple of 4 */
    snprintf(out->name_expr, sizeof out->name_expr, "dsv4::topk_select_warp<%d, %d>", (int)k, c);
    snprintf(out->tag, sizeof out->tag, "topk_select_warp-k%d-c%d", (int)k, c);
  } else {
    dsv4_topk_long_spec(cols, k, out);
  }
}

static int64_t round8(int64_t x) { return (x + 7) / 8 * 8; }

dsv4_status dsv4_topk_long_plan_for(int64_t rows, int64_t cols, int32_t k, int sm_count, int smem_limit,
                                    int max_cluster, dsv4_topk_long_plan *out) {
  memset(out, 0, sizeof *out);
  const int kp = pow2_at_least(k), nt = long_threads(cols);
  const bool wide = cols > LONG_WIDE_COLS;   /* one block per SM, clusters */
  const int64_t fixed = long_fixed_bytes(kp);
  const int64_t avail = ((int64_t)smem_limit - fixed) / 16 * 16;   /* pool bytes at most, a multiple of 16 */
  if (avail < 16)
    return dsv4_fail(DSV4_ERR_UNSUPPORTED, "dsv4_topk_select: %lld bytes of shared memory per block needed for k = %d, "
                     "the device allows %d", (long long)(fixed + 16), (int)k, smem_limit);
  int cl = 1;
  if (wide)   /* one block per SM: split rows over clusters while the blocks still fit in one wave */
    while (2 * cl <= max_cluster && 2 * cl <= LONG_MAX_CLUSTER && rows * 2 * cl <= sm_count &&
           cols >= (int64_t)LONG_MIN_SLICE * 2 * cl && avail >= 16 * (int64_t)kp)   /* pool: copies + scatter */
      cl *= 2;
  const int64_t slice = ((cols + cl - 1) / cl + 3) / 4 * 4;
  /* The key cache and the candidate buffer share the pool. Wide-row blocks (one per SM) take all the shared
   * memory there is; 256-thread blocks (rows up to 8192) what the whole row's keys and candidates need, so
   * several share an SM. Whole 32-bit keys when they fit beside the candidates; else 16-bit keys; else 16-bit
   * keys of a prefix of the slice (a multiple of 8 columns), the rest re-read from L2 by the passes. */
  const int64_t cand_min = slice < (wide ? LONG_MIN_CANDIDATES : LONG_SMALL_CANDIDATES)
                               ? slice : (wide ? LONG_MIN_CANDIDATES : LONG_SMALL_CANDIDATES);
  int64_t pool = avail;
  if (!wide) {
    int64_t want = (4 * round8(slice) + 8 * cand_min + 15) / 16 * 16;
    if (want < LONG_MIN_POOL) want = LONG_MIN_POOL;
    if (want < pool) pool = want;
  }
  if (pool < LONG_MIN_POOL)
    return dsv4_fail(DSV4_ERR_UNSUPPORTED, "dsv4_topk_select: %lld bytes of shared memory per block needed for k = %d, "
                     "the device allows %d", (long long)(fixed + LONG_MIN_POOL), (int)k, smem_limit);
  int64_t dense, key_bits, cache;   /* cache: the key cache's bytes, with the hit list of 16-bit keys */
  if (4 * round8(slice) + 8 * cand_min <= pool) {
    key_bits = 32, dense = slice, cache = 4 * round8(slice);
  } else if (2 * round8(slice) + LONG_HIT_BYTES + 8 * cand_min <= pool) {
    key_bits = 16, dense = slice, cache = 2 * round8(slice) + LONG_HIT_BYTES;
  } else {
    key_bits = 16;
    dense = (pool - LONG_HIT_BYTES - 8 * cand_min) / 2 / 8 * 8;
    if (dense < 0) dense = 0;
    cache = 2 * dense + LONG_HIT_BYTES;
    if (cache > pool) cache = pool;   /* a tiny pool: no room for candidates (the passes re-read the slice) */
  }
  int64_t cap = (pool - cache) / 8;
  if (cap > slice) cap = slice;   /* every column of the slice fits: more is never used */
  out->threads = nt;
  out->cluster = cl;
  out->kp = kp;
  out->slice = (int32_t)slice;
  out->pool_words = (int32_t)(pool / 4);
  out->dense = (int32_t)dense;
  out->cached = dense == slice;
  out->key_bits = (int32_t)key_bits;
  out->cand_cap = (int32_t)cap;
  out->smem = (unsigned)(fixed + pool);
  const int64_t max_clusters = ((int64_t)1 << 30) / cl;   /* the kernel loops over rows beyond the grid */
  out->grid = (unsigned)((rows < max_clusters ? rows : max_clusters) * cl);
  return DSV4_OK;
}

/* The shared-memory layout of topk_long.cu for a shape: the least pool the cache, hit list, candidates,
 * counting sort and (clusters) the copied lists need (the fixed part: long_fixed_bytes). */
static int64_t long_pool_needed(const dsv4_topk_long_plan *s) {
  /* With 16-bit keys the hit list sits after the cache and the candidates after it; a shape with no cached
   * column and no candidate (a device with a tiny pool) never touches either. */
  const bool hits = s->key_bits == 16 && (s->dense > 0 || s->cand_cap > 0);
  int64_t need = round8(s->dense) * (s->key_bits == 32 ? 4 : 2) + (hits ? LONG_HIT_BYTES : 0) +
                 8 * (int64_t)s->cand_cap;
  if (need < LONG_MIN_POOL) need = LONG_MIN_POOL;
  if (s->cluster > 1 && need < 16 * (int64_t)s->kp) need = 16 * (int64_t)s->kp;
  return need;
}

void dsv4_topk_long_shape_fit(dsv4_topk_long_plan *s) {
  const int64_t pool = (long_pool_needed(s) + 15) / 16 * 16;
  s->cached = s->dense == s->slice;
  s->pool_words = (int32_t)(pool / 4);
  s->smem = (unsigned)(long_fixed_bytes(s->kp) + pool);
}

dsv4_status dsv4_topk_long_shape_check(const char *fn, const dsv4_topk_long_plan *s, int64_t cols, int32_t k,
                                       int smem_limit, int max_cluster) {
  DSV4_CHECK_ARG(s != NULL, fn, "shape", "is NULL");
  DSV4_CHECK_ARG(s->kp == pow2_at_least(k), fn, "shape.kp", "is not k rounded up to a power of two");
  DSV4_CHECK_ARG(s->threads == 256 || s->threads == LONG_WIDE_THREADS, fn, "shape.threads",
                 "is neither 256 nor the wide-row block size");
  DSV4_CHECK_ARG(s->cluster >= 1 && s->cluster <= LONG_MAX_CLUSTER && (s->cluster & (s->cluster - 1)) == 0, fn,
                 "shape.cluster", "is not a power of two in 1..16");
  DSV4_CHECK_ARG(s->cluster <= max_cluster, fn, "shape.cluster", "is larger than the device runs");
  DSV4_CHECK_ARG(s->slice >= 4 && s->slice % 4 == 0, fn, "shape.slice", "is not a positive multiple of 4");
  DSV4_CHECK_ARG((int64_t)s->slice * s->cluster >= cols && (int64_t)s->slice * (s->cluster - 1) < cols, fn,
                 "shape.slice", "does not split the row over the cluster with columns in every block");
  DSV4_CHECK_ARG(s->key_bits == 32 || s->key_bits == 16, fn, "shape.key_bits", "is neither 32 nor 16");
  DSV4_CHECK_ARG(s->dense >= 0 && s->dense <= s->slice && (s->dense % 8 == 0 || s->dense == s->slice), fn,
                 "shape.dense", "is not a multiple of 8 (or the slice) in 0..slice");
  DSV4_CHECK_ARG(s->cached == (s->dense == s->slice), fn, "shape.cached", "does not say whether dense == slice");
  DSV4_CHECK_ARG(s->cand_cap >= 0 && s->cand_cap <= s->slice, fn, "shape.cand_cap", "is outside 0..slice");
  const int64_t pool = (int64_t)s->smem - long_fixed_bytes(s->kp);
  DSV4_CHECK_ARG(pool >= long_pool_needed(s) && pool % 16 == 0, fn, "shape.smem",
                 "leaves a pool smaller than the layout needs (or not a multiple of 16 bytes)");
  DSV4_CHECK_ARG((int64_t)s->pool_words * 4 == pool, fn, "shape.pool_words", "is not the pool of shape.smem");
  DSV4_CHECK_ARG(smem_limit <= 0 || s->smem <= (unsigned)smem_limit, fn, "shape.smem", "exceeds the device's limit");
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

/* The config of a launch of `grid` blocks of `threads` threads in clusters of `cluster` blocks, `smem` dynamic
 * shared bytes, on stream (also what cuOccupancyMaxActiveClusters asks about); cfg points at attr. */
static void cluster_config(CUlaunchConfig *cfg, CUlaunchAttribute *attr, unsigned grid, int threads, int cluster,
                           unsigned smem, CUstream stream) {
  memset(attr, 0, sizeof *attr);
  attr->id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attr->value.clusterDim.x = (unsigned)cluster, attr->value.clusterDim.y = 1, attr->value.clusterDim.z = 1;
  memset(cfg, 0, sizeof *cfg);
  cfg->gridDimX = grid, cfg->gridDimY = 1, cfg->gridDimZ = 1;
  cfg->blockDimX = (unsigned)threads, cfg->blockDimY = 1, cfg->blockDimZ = 1;
  cfg->sharedMemBytes = smem;
  cfg->hStream = stream;
  cfg->attrs = attr;
  cfg->numAttrs = 1;
}

/* With ctx current: the dynamic shared memory fn may have on this device (opt-in limit less its static part). */
static dsv4_status long_smem_limit(dsv4_context *ctx, CUfunction fn, int *limit) {
  int optin = 0, static_smem = 0;
  DSV4_CU(ctx->drv, cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, ctx->dev),
          "topk_long: cuDeviceGetAttribute(MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)");
  DSV4_CU(ctx->drv, cuFuncGetAttribute(&static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn),
          "topk_long: cuFuncGetAttribute(SHARED_SIZE_BYTES)");
  *limit = optin - static_smem;
  return DSV4_OK;
}

/* With ctx current: lets fn launch with smem dynamic bytes. Above the static 48 KB always the whole limit, so
 * concurrent enqueues of different shapes never lower it under each other; a host-side attribute: no
 * allocation, no sync. */
static dsv4_status long_allow_smem(dsv4_context *ctx, CUfunction fn, unsigned smem, int limit) {
  if (smem > STATIC_SMEM_LIMIT)
    DSV4_CU(ctx->drv, cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, limit),
            "topk_long: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
  return DSV4_OK;
}

/* How many clusters of 2, 4, 8 and 16 blocks of fn (`threads` threads, `smem` bytes each) the device runs at once
 * (cuOccupancyMaxActiveClusters; 0: none), asked once per function and remembered; all 0 before sm_90. 16 is a
 * non-portable size: fn is allowed it first (a host-side attribute); a device or driver that refuses gets 0. */
typedef struct long_cluster_entry {
  CUdevice dev;
  CUfunction fn;
  unsigned smem;
  int active[5];   /* index log2(cluster size); [0] unused */
} long_cluster_entry;
static long_cluster_entry g_long_clusters[64];
static int g_num_long_clusters;
static pthread_mutex_t g_long_mu = PTHREAD_MUTEX_INITIALIZER;

static void long_active_clusters(dsv4_context *ctx, CUfunction fn, int threads, unsigned smem, int active[5]) {
  memset(active, 0, 5 * sizeof active[0]);
  if (ctx->cc_major < 9) return;
  bool known = false;
  pthread_mutex_lock(&g_long_mu);
  for (int i = 0; i < g_num_long_clusters && !known; ++i)
    if (g_long_clusters[i].dev == ctx->dev && g_long_clusters[i].fn == fn && g_long_clusters[i].smem == smem)
      memcpy(active, g_long_clusters[i].active, 5 * sizeof active[0]), known = true;
  pthread_mutex_unlock(&g_long_mu);
  if (known) return;
  const bool non_portable =
      ctx->drv->cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1) == CUDA_SUCCESS;
  for (int lg = 1; lg <= 4; ++lg) {
    const int cl = 1 << lg;
    if (cl > LONG_MAX_CLUSTER || (cl > 8 && !non_portable)) break;
    CUlaunchAttribute attr;
    CUlaunchConfig cfg;
    cluster_config(&cfg, &attr, (unsigned)cl, threads, cl, smem, NULL);
    int n = 0;
    CUresult r = ctx->drv->cuOccupancyMaxActiveClusters(&n, fn, &cfg);
    active[lg] = r == CUDA_SUCCESS && n > 0 ? n : 0;
    dsv4_log(DSV4_LOG_DEBUG, "topk_long: clusters of %d blocks at %u bytes: %d active (CUresult %d)", cl, smem, n,
             (int)r);
  }
  pthread_mutex_lock(&g_long_mu);
  if (g_num_long_clusters < (int)(sizeof g_long_clusters / sizeof g_long_clusters[0])) {
    long_cluster_entry e = {ctx->dev, fn, smem, {0, 0, 0, 0, 0}};
    memcpy(e.active, active, sizeof e.active);
    g_long_clusters[g_num_long_clusters++] = e;
  }
  pthread_mutex_unlock(&g_long_mu);
}

/* With ctx current: the long-row kernel for (cols, k) and the shape its launch takes on this device: the
 * largest cluster the planner wants for which all the row clusters run at once (else a smaller one). */
static dsv4_status long_setup(dsv4_context *ctx, int64_t rows, int64_t cols, int32_t k, CUfunction *fn,
                              dsv4_topk_long_plan *plan) {
  dsv4_kernel_spec spec;
  dsv4_topk_long_spec(cols, k, &spec);
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, fn));
  int smem_limit = 0;
  DSV4_TRY(long_smem_limit(ctx, *fn, &smem_limit));
  DSV4_TRY(dsv4_topk_long_plan_for(rows, cols, k, ctx->sm_count, smem_limit, 1, plan));
  DSV4_TRY(long_allow_smem(ctx, *fn, plan->smem, smem_limit));
  if (cols > LONG_WIDE_COLS && ctx->cc_major >= 9) {
    int active[5];
    long_active_clusters(ctx, *fn, plan->threads, plan->smem, active);
    for (int lg = 4; lg >= 1; --lg) {
      if (active[lg] == 0) continue;
      dsv4_topk_long_plan p;
      DSV4_TRY(dsv4_topk_long_plan_for(rows, cols, k, ctx->sm_count, smem_limit, 1 << lg, &p));
      int plg = 0;
      while ((1 << plg) < p.cluster) ++plg;
      if (p.cluster == 1 || rows <= (int64_t)active[plg]) {
        *plan = p;
        break;
      }
    }
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

/* With ctx current: fn (a topk_long instance) on `rows` rows with launch shape `plan`, its grid cut to the rows
 * given. */
static dsv4_status launch_shape(dsv4_context *ctx, CUstream stream, CUfunction fn, dsv4_topk_long_plan plan,
                                const float *scores, int64_t rows, int64_t cols, int64_t row_stride, int32_t k,
                                float *out_values, int32_t *out_indices) {
  if ((int64_t)plan.grid > rows * plan.cluster) plan.grid = (unsigned)(rows * plan.cluster);
  int ncols = (int)cols, slice = plan.slice, dense = plan.dense, cap = plan.cand_cap, wide = plan.key_bits == 32;
  void *args[] = {&scores, &rows, &ncols, &row_stride, &k, &out_values, &out_indices, &slice, &dense, &cap, &wide};
  if (plan.cluster == 1)
    return dsv4_launch(ctx, fn, plan.grid, (unsigned)plan.threads, plan.smem, stream, args, false,
                       "launching topk_long");
  CUlaunchAttribute attr;
  CUlaunchConfig cfg;
  cluster_config(&cfg, &attr, plan.grid, plan.threads, plan.cluster, plan.smem, stream);
  DSV4_CU(ctx->drv, cuLaunchKernelEx(&cfg, fn, args, NULL), "launching topk_long (cluster)");
  return DSV4_OK;
}

/* With ctx current: the long-row kernel on `rows` rows, launched as it is for plan_rows (>= rows) rows: the
 * same plan, the grid cut to the rows given. */
static dsv4_status launch_long(dsv4_context *ctx, CUstream stream, int64_t plan_rows, const float *scores,
                               int64_t rows, int64_t cols, int64_t row_stride, int32_t k, float *out_values,
                               int32_t *out_indices) {
  CUfunction fn = NULL;
  dsv4_topk_long_plan plan;
  DSV4_TRY(long_setup(ctx, plan_rows, cols, k, &fn, &plan));
  return launch_shape(ctx, stream, fn, plan, scores, rows, cols, row_stride, k, out_values, out_indices);
}

bool dsv4_topk_sample_serves_k(int32_t k) { return k <= SAMPLE_MAX_K; }

/* Whether topk_long's plan for a shape is one the sample-threshold kernel runs with, at a k it is faster for. */
bool dsv4_topk_sample_takes(const dsv4_topk_long_plan *plan, int64_t cols, int32_t k) {
  return plan->cluster == SAMPLE_CLUSTER && plan->threads == SAMPLE_THREADS && plan->slice <= SAMPLE_MAX_SLICE &&
         cols >= SAMPLE_MIN_COLS && dsv4_topk_sample_serves_k(k);
}

/* With ctx current: whether the sample-threshold kernel takes `rows` rows of cols with topk_long's plan: the plan
 * is one it runs with, at a k it serves, on sm_90+, its shared memory fits and all the rows' clusters are resident
 * at once. Where it does: *fn (loaded) and *smem (allowed) for its launch. */
static dsv4_status sample_decide(dsv4_context *ctx, const dsv4_topk_long_plan *plan, int64_t rows, int64_t cols,
                                 int32_t k, CUfunction *fn, unsigned *smem, bool *takes) {
  *takes = false;
  if (ctx->cc_major < 9 || !dsv4_topk_sample_takes(plan, cols, k)) return DSV4_OK;
  dsv4_kernel_spec spec;
  dsv4_topk_sample_spec(k, &spec);
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, fn));
  int limit = 0;
  DSV4_TRY(long_smem_limit(ctx, *fn, &limit));
  *smem = plan->smem > SAMPLE_SMEM ? plan->smem : SAMPLE_SMEM;
  if ((int64_t)*smem > limit) return DSV4_OK;
  DSV4_TRY(long_allow_smem(ctx, *fn, *smem, limit));
  int active[5];
  long_active_clusters(ctx, *fn, SAMPLE_THREADS, *smem, active);
  *takes = rows <= (int64_t)active[4];   /* (log2 16 = 4) */
  return DSV4_OK;
}

/* With ctx current: the sample-threshold kernel on `rows` rows with topk_long's plan, where sample_decide takes
 * them (*launched says whether it was launched). */
static dsv4_status launch_sample(dsv4_context *ctx, CUstream stream, const dsv4_topk_long_plan *plan,
                                 const float *scores, int64_t rows, int64_t cols, int64_t row_stride, int32_t k,
                                 float *out_values, int32_t *out_indices, bool *launched) {
  *launched = false;
  CUfunction fn = NULL;
  unsigned smem = 0;
  bool takes = false;
  DSV4_TRY(sample_decide(ctx, plan, rows, cols, k, &fn, &smem, &takes));
  if (!takes) return DSV4_OK;
  unsigned grid = plan->grid;
  if ((int64_t)grid > rows * SAMPLE_CLUSTER) grid = (unsigned)(rows * SAMPLE_CLUSTER);
  int ncols = (int)cols, slice = plan->slice, dense = plan->dense, cap = plan->cand_cap, wide = plan->key_bits == 32;
  void *args[] = {&scores, &rows, &ncols, &row_stride, &k, &out_values, &out_indices, &slice, &dense, &cap, &wide};
  CUlaunchAttribute attr;
  CUlaunchConfig cfg;
  cluster_config(&cfg, &attr, grid, SAMPLE_THREADS, SAMPLE_CLUSTER, smem, stream);
  DSV4_CU(ctx->drv, cuLaunchKernelEx(&cfg, fn, args, NULL), "launching topk_sample (cluster)");
  *launched = true;
  return DSV4_OK;
}

dsv4_status dsv4_topk_select_takes_sample(dsv4_context *ctx, int64_t rows, int64_t cols, int32_t k, bool *takes) {
  static const char *fn = "dsv4_topk_select_takes_sample";
  DSV4_CHECK_ARG(ctx != NULL, fn, "ctx", "is NULL");
  DSV4_CHECK_ARG(takes != NULL, fn, "takes", "is NULL");
  DSV4_CHECK_ARG(rows >= 1, fn, "rows", "is below 1");
  DSV4_CHECK_ARG(cols >= 1 && cols <= INT32_MAX, fn, "cols", "is outside 1..2^31-1");
  DSV4_CHECK_ARG(k >= 1 && k <= cols, fn, "k", "is outside 1..cols");
  *takes = false;
  if (dsv4_topk_select_uses_warp(cols, k)) return DSV4_OK;
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  CUfunction f = NULL, g = NULL;
  dsv4_topk_long_plan plan;
  unsigned smem = 0;
  dsv4_status s = long_setup(ctx, rows, cols, k, &f, &plan);
  if (s == DSV4_OK) s = sample_decide(ctx, &plan, rows, cols, k, &g, &smem, takes);
  dsv4_ctx_leave(ctx, pushed);
  return s;
}

dsv4_status dsv4_topk_select_enqueue(dsv4_context *ctx, CUstream stream, const float *scores, int64_t rows,
                                     int64_t cols, int64_t row_stride, int32_t k, float *out_values,
                                     int32_t *out_indices) {
  if (rows == 0) return DSV4_OK;
  bool pushed = false;
  dsv4_status s;
  if (dsv4_topk_select_uses_warp(cols, k)) {
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
    s = dsv4_launch(ctx, fn, (unsigned)grid, 32 * WARP_ROWS_PER_BLOCK, 0, stream, args, false,
                    "launching topk_select_warp");
  } else {
    DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
    CUfunction fn = NULL;
    dsv4_topk_long_plan plan;
    bool launched = false;
    s = long_setup(ctx, rows, cols, k, &fn, &plan);
    if (s == DSV4_OK)
      s = launch_sample(ctx, stream, &plan, scores, rows, cols, row_stride, k, out_values, out_indices, &launched);
    if (s == DSV4_OK && !launched)
      s = launch_shape(ctx, stream, fn, plan, scores, rows, cols, row_stride, k, out_values, out_indices);
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

dsv4_status dsv4_topk_long_enqueue_planned(dsv4_context *ctx, CUstream stream, int64_t plan_rows, const float *scores,
                                           int64_t rows, int64_t cols, int64_t row_stride, int32_t k,
                                           float *out_values, int32_t *out_indices) {
  static const char *fn = "dsv4_topk_long_enqueue_planned";
  DSV4_TRY(dsv4_topk_select_check(fn, ctx, scores, rows, cols, row_stride, k, out_values, out_indices));
  DSV4_CHECK_ARG(!dsv4_topk_select_uses_warp(cols, k), fn, "cols", "and k take the warp kernel, not the long-row one");
  DSV4_CHECK_ARG(plan_rows >= rows, fn, "plan_rows", "is below rows");
  if (rows == 0) return DSV4_OK;
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  dsv4_status s = launch_long(ctx, stream, plan_rows, scores, rows, cols, row_stride, k, out_values, out_indices);
  dsv4_ctx_leave(ctx, pushed);
  return s;
}

dsv4_status dsv4_topk_long_enqueue_shape(dsv4_context *ctx, CUstream stream, const dsv4_topk_long_plan *shape,
                                         const float *scores, int64_t rows, int64_t cols, int64_t row_stride,
                                         int32_t k, float *out_values, int32_t *out_indices) {
  static const char *fn = "dsv4_topk_long_enqueue_shape";
  DSV4_TRY(dsv4_topk_select_check(fn, ctx, scores, rows, cols, row_stride, k, out_values, out_indices));
  DSV4_CHECK_ARG(!dsv4_topk_select_uses_warp(cols, k), fn, "cols", "and k take the warp kernel, not the long-row one");
  DSV4_CHECK_ARG(shape != NULL, fn, "shape", "is NULL");
  DSV4_TRY(dsv4_topk_long_shape_check(fn, shape, cols, k, 0, LONG_MAX_CLUSTER));   /* the shape itself */
  dsv4_kernel_spec spec;
  long_spec_threads(k, shape->threads, &spec);
  CUfunction f = NULL;
  DSV4_TRY(dsv4_ctx_function(ctx, &spec, &f));
  bool pushed = false;
  DSV4_TRY(dsv4_ctx_enter(ctx, &pushed));
  /* Whether this device runs it: DSV4_ERR_UNSUPPORTED (a caller may skip the shape) when its shared memory is
   * past the device's, or its cluster is not one the device runs at once (none before sm_90; more than 8
   * blocks only where the function may take the non-portable size). */
  int smem_limit = 0;
  dsv4_status s = long_smem_limit(ctx, f, &smem_limit);
  if (s == DSV4_OK && shape->smem > (unsigned)(smem_limit > 0 ? smem_limit : 0))
    s = dsv4_fail(DSV4_ERR_UNSUPPORTED, "%s: shape.smem = %u bytes, the device allows %d", fn, shape->smem, smem_limit);
  if (s == DSV4_OK) s = long_allow_smem(ctx, f, shape->smem, smem_limit);
  if (s == DSV4_OK && shape->cluster > 1) {
    int active[5], lg = 0;
    long_active_clusters(ctx, f, shape->threads, shape->smem, active);
    while ((1 << lg) < shape->cluster) ++lg;
    if (active[lg] < 1)
      s = dsv4_fail(DSV4_ERR_UNSUPPORTED, "%s: shape.cluster = %d: the device does not run clusters of %d blocks of "
                    "%d threads and %u bytes", fn, shape->cluster, shape->cluster, shape->threads, shape->smem);
  }
  if (s == DSV4_OK && rows > 0) {
    dsv4_topk_long_plan plan = *shape;   /* at most 2^30 blocks (the kernel loops over rows beyond the grid) */
    plan.grid = (unsigned)((((int64_t)1 << 30) / plan.cluster) * plan.cluster);   /* launch_shape cuts it to rows */
    s = launch_shape(ctx, stream, f, plan, scores, rows, cols, row_stride, k, out_values, out_indices);
  }
  dsv4_ctx_leave(ctx, pushed);
  return s;
}
