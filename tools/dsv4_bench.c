/*
 * dsv4-bench: the figures of SPEC section 5, measured on the GPU (never asserted in a test).
 * Every op is checked against the FP64 oracle before it is timed.
 *   dsv4-bench [--calls 200] [--reps 30] [--only GROUP[,GROUP...]]
 * GROUP: hash, gate, breakdown, router, topk, act, long, jit (default: all). A short run under a profiler:
 *   ncu -k regex:gate_decode dsv4-bench --only gate --calls 2 --reps 1
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context.h"
#include "gpu_timing.h"
#include "oracle.h"
#include "ops/ops.h"

static int g_calls = 200, g_reps = 30;
static const char *g_only = NULL;

/* Whether the bench group `name` runs (--only: a comma-separated list of group names). */
static bool want(const char *name) {
  if (!g_only) return true;
  const size_t n = strlen(name);
  for (const char *p = g_only; *p;) {
    const char *e = strchr(p, ',');
    const size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && !strncmp(p, name, n)) return true;
    if (!e) break;
    p = e + 1;
  }
  return false;
}

#define CHECK(expr)                                                                                  \
  do {                                                                                               \
    dsv4_status s_ = (expr);                                                                         \
    if (s_ != DSV4_OK) {                                                                             \
      fprintf(stderr, "dsv4-bench: %s: %s\n  %s\n", #expr, dsv4_status_string(s_), dsv4_last_error()); \
      exit(1);                                                                                       \
    }                                                                                                \
  } while (0)

static void row(const char *name, const char *target, const dsv4_timing *t, const char *extra) {
  printf("%-34s %9.2f %9.2f %9.2f %9.2f  %-14s %s\n", name, t->graph_us, t->stream_us, t->cold_us, t->cold_bb_us,
         target, extra);
}

/* ---- hash router ---- */
typedef struct hash_args {
  dsv4_context *ctx;
  CUdeviceptr tokens, lut, w, ids;
  int64_t n;
  int32_t vocab, k;
  bool plain;  /* the launcher with a plain launch instead of the public op's PDL one */
} hash_args;

static dsv4_status hash_launch(void *user, CUstream stream) {
  hash_args *a = user;
  if (a->plain)
    return dsv4_hash_router_enqueue(a->ctx, stream, (const int32_t *)a->tokens, a->n, (const int32_t *)a->lut,
                                    a->vocab, a->k, 1.0f / (float)a->k, (float *)a->w, (int32_t *)a->ids, NULL, false);
  return dsv4_hash_router(a->ctx, stream, (const int32_t *)a->tokens, a->n, (const int32_t *)a->lut, a->vocab, a->k,
                          (float *)a->w, (int32_t *)a->ids);
}

static void bench_hash(dsv4_context *ctx, CUstream stream, int64_t n) {
  const dsv4_driver *drv = ctx->drv;
  const int32_t k = 6, vocab = 129280, e = 384;
  hash_args a = {ctx, 0, 0, 0, 0, n, vocab, k, false};
  int32_t *lut = malloc(sizeof(int32_t) * vocab * k), *tok = malloc(sizeof(int32_t) * n);
  int32_t *ids = malloc(sizeof(int32_t) * n * k), *rids = malloc(sizeof(int32_t) * n * k);
  float *w = malloc(sizeof(float) * n * k);
  double *rw = malloc(sizeof(double) * n * k);
  for (int64_t i = 0; i < (int64_t)vocab * k; ++i) lut[i] = (int32_t)((i * 2654435761u) % e);
  for (int64_t t = 0; t < n; ++t) tok[t] = (int32_t)((t * 40503u + 17) % vocab);
  drv->cuMemAlloc(&a.tokens, 4 * n);
  drv->cuMemAlloc(&a.lut, 4 * (size_t)vocab * k);
  drv->cuMemAlloc(&a.w, 4 * n * k);
  drv->cuMemAlloc(&a.ids, 4 * n * k);
  drv->cuMemcpyHtoD(a.tokens, tok, 4 * n);
  drv->cuMemcpyHtoD(a.lut, lut, 4 * (size_t)vocab * k);
  drv->cuCtxSynchronize();  /* a pageable upload may still be in flight; `stream` does not wait for it */
  CHECK(hash_launch(&a, stream));
  drv->cuStreamSynchronize(stream);
  drv->cuMemcpyDtoH(ids, a.ids, 4 * n * k);
  drv->cuMemcpyDtoH(w, a.w, 4 * n * k);
  oracle_hash_uniform(tok, n, lut, vocab, k, 1.0 / k, rw, rids);
  for (int64_t i = 0; i < n * k; ++i)
    if (ids[i] != rids[i] || w[i] != (float)rw[i]) {
      fprintf(stderr, "dsv4-bench: hash router N=%lld disagrees with the oracle at %lld\n", (long long)n, (long long)i);
      exit(1);
    }
  dsv4_timing t;
  CHECK(dsv4_time_launches(drv, stream, hash_launch, &a, g_calls, g_reps, (size_t)ctx->l2_bytes * 4, &t));
  char name[64], extra[96];
  snprintf(name, sizeof name, "hash router N=%lld k=6", (long long)n);
  double bytes = 4.0 * n + 8.0 * n * k;  /* token ids in, weights and ids out (table from L2) */
  snprintf(extra, sizeof extra, "%.0f GB/s", bytes / (t.graph_us * 1e3));
  row(name, n == 65536 ? "<= 2.5 us" : "", &t, extra);
  if (n == 65536 && ctx->cc_major >= 9) {  /* the same op without the launch overlap (PDL), for scale */
    a.plain = true;
    CHECK(dsv4_time_launches(drv, stream, hash_launch, &a, g_calls, g_reps, (size_t)ctx->l2_bytes * 4, &t));
    snprintf(extra, sizeof extra, "%.0f GB/s", bytes / (t.graph_us * 1e3));
    row("hash router N=65536 k=6 plain launch", "info", &t, extra);
  }
  drv->cuMemFree(a.tokens), drv->cuMemFree(a.lut), drv->cuMemFree(a.w), drv->cuMemFree(a.ids);
  free(lut), free(tok), free(ids), free(rids), free(w), free(rw);
}

/* ---- decode gate GEMM, split-K partials only (the first of the dense decode router's two kernels) ---- */
typedef struct gate_decode_args {
  dsv4_context *ctx;
  CUdeviceptr x, w, partials;
  int64_t n;
  int32_t e, h;
  int warps;  /* 0 = the built-in shape */
} gate_decode_args;

static dsv4_status gate_decode_launch(void *user, CUstream stream) {
  gate_decode_args *a = user;
  return dsv4_gate_decode_enqueue_ex(a->ctx, stream, (const void *)(uintptr_t)a->x, a->n, (const void *)(uintptr_t)a->w,
                                     a->e, a->h, (float *)(uintptr_t)a->partials, a->warps, false);
}

static uint16_t bench_bf16(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  const float f = (float)((int)(*s >> 40 & 0xFFFF) - 32768) / 32768.0f;
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void bench_gate_decode(dsv4_context *ctx, CUstream stream, int64_t n) {
  const dsv4_driver *drv = ctx->drv;
  const int32_t e = 384, h = 7168; /* v4-pro */
  const int32_t splits = dsv4_gate_decode_splits(h);
  const size_t nw = (size_t)e * h, nx = (size_t)n * h, np = dsv4_gate_decode_workspace_floats(h, e, n);
  gate_decode_args a = {ctx, 0, 0, 0, n, e, h, 0};
  uint16_t *x = malloc(2 * nx), *w = malloc(2 * nw);
  float *p = malloc(4 * np);
  double *ref = malloc(sizeof(double) * (size_t)n * e);
  uint64_t seed = 0x5EEDull + (uint64_t)n;
  for (size_t i = 0; i < nx; ++i) x[i] = bench_bf16(&seed);
  for (size_t i = 0; i < nw; ++i) w[i] = bench_bf16(&seed);
  CHECK(drv->cuMemAlloc(&a.x, 2 * nx) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemAlloc(&a.w, 2 * nw) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemAlloc(&a.partials, 4 * np) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemcpyHtoD(a.x, x, 2 * nx) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemcpyHtoD(a.w, w, 2 * nw) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemsetD8(a.partials, 0xFF, 4 * np) ? DSV4_ERR_CUDA : DSV4_OK);
  drv->cuCtxSynchronize();  /* a pageable upload may still be in flight; `stream` does not wait for it */
  CHECK(gate_decode_launch(&a, stream));
  CHECK(drv->cuStreamSynchronize(stream) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemcpyDtoH(p, a.partials, 4 * np) ? DSV4_ERR_CUDA : DSV4_OK);
  /* The slabs summed in split order vs the FP64 oracle: per token, ||got - ref||^2 < (1e-5 ||ref||)^2. */
  oracle_gate_logits(x, w, n, h, e, ref);
  for (int64_t t = 0; t < n; ++t) {
    double num = 0.0, den = 0.0;
    for (int32_t i = 0; i < e; ++i) {
      float v = p[(size_t)t * e + i];
      for (int32_t s = 1; s < splits; ++s) v += p[((size_t)s * n + t) * e + i];
      const double r = ref[(size_t)t * e + i], d = (double)v - r;
      num += d == d ? d * d : 1e300;
      den += r * r;
    }
    if (!(num < 1e-10 * den)) {
      fprintf(stderr, "dsv4-bench: gate GEMM decode N=%lld disagrees with the oracle at token %lld\n", (long long)n,
              (long long)t);
      exit(1);
    }
  }
  dsv4_gate_decode_plan plan; /* the shape enqueue picks (it also subtracts the kernel's static smem: none) */
  int smem_limit = 0;
  drv->cuDeviceGetAttribute(&smem_limit, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, ctx->dev);
  dsv4_gate_decode_plan_for(h, e, n, ctx->sm_count, smem_limit, 0, &plan);
  dsv4_timing t;
  CHECK(dsv4_time_launches(drv, stream, gate_decode_launch, &a, g_calls, g_reps, (size_t)ctx->l2_bytes * 4, &t));
  char name[64], extra[160];
  snprintf(name, sizeof name, "gate GEMM decode (partials only) N=%lld", (long long)n);
  snprintf(extra, sizeof extra, "W read %.0f GB/s (cold %.0f); %d splits, %d warps/block, grid %u",
           2.0 * nw / (t.graph_us * 1e3), 2.0 * nw / (t.cold_us * 1e3), splits, plan.warps, plan.grid);
  row(name, "~1.5-2 us", &t, extra);
  /* The same with every block shape (graph us): what the built-in choice should be tuned against. */
  printf("    warps/block sweep, graph us:");
  for (int wp = 1; wp <= DSV4_GATE_DECODE_MAX_WARPS; ++wp) {
    gate_decode_args b = a;
    b.warps = wp;
    dsv4_timing tw;
    CHECK(dsv4_time_launches(drv, stream, gate_decode_launch, &b, g_calls, g_reps / 3 + 1, (size_t)1 << 20, &tw));
    printf(" %d:%.2f", wp, tw.graph_us);
  }
  printf("\n");
  drv->cuMemFree(a.x), drv->cuMemFree(a.w), drv->cuMemFree(a.partials);
  free(x), free(w), free(p), free(ref);
}

/* ---- routing primitives: dsv4_topk_select and dsv4_activation_topk ---- */
typedef struct routing_args {
  dsv4_context *ctx;
  CUdeviceptr in, bias, v, i;
  int64_t rows, cols;
  int32_t k;
} routing_args;

static dsv4_status topk_launch(void *user, CUstream stream) {
  routing_args *a = user;
  return dsv4_topk_select(a->ctx, stream, (const float *)(uintptr_t)a->in, a->rows, a->cols, a->cols, a->k,
                          (float *)(uintptr_t)a->v, (int32_t *)(uintptr_t)a->i);
}

/* The long-row kernel topk_long.cu alone, with the plan dsv4_topk_select would give it: beside the rows the
 * sample-threshold kernel takes (topk_sample.cu), what that kernel saves. */
static dsv4_status topk_long_launch(void *user, CUstream stream) {
  routing_args *a = user;
  return dsv4_topk_long_enqueue_planned(a->ctx, stream, a->rows, (const float *)(uintptr_t)a->in, a->rows, a->cols,
                                        a->cols, a->k, (float *)(uintptr_t)a->v, (int32_t *)(uintptr_t)a->i);
}

static dsv4_status act_launch(void *user, CUstream stream) {
  routing_args *a = user;
  return dsv4_activation_topk(a->ctx, stream, (const float *)(uintptr_t)a->in, a->rows, (int32_t)a->cols,
                              (const float *)(uintptr_t)a->bias, a->k, 2.5f, (float *)(uintptr_t)a->v,
                              (int32_t *)(uintptr_t)a->i);
}

/* Roughly N(0, 2): a sum of 4 uniforms, from the same generator as bench_bf16. */
static float bench_logit(uint64_t *s) {
  float acc = 0.0f;
  for (int i = 0; i < 4; ++i) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    acc += (float)((double)(*s >> 11) / 9007199254740992.0) - 0.5f;
  }
  return acc * 3.46f;
}

static routing_args routing_setup(dsv4_context *ctx, int64_t rows, int64_t cols, int32_t k, float **host,
                                  float **host_bias) {
  const dsv4_driver *drv = ctx->drv;
  routing_args a = {ctx, 0, 0, 0, 0, rows, cols, k};
  const size_t n = (size_t)rows * (size_t)cols, out = (size_t)rows * (size_t)k;
  *host = malloc(4 * n);
  *host_bias = malloc(4 * (size_t)cols);
  uint64_t seed = 0xB1A5ull + (uint64_t)(rows * 31 + cols);
  for (size_t i = 0; i < n; ++i) (*host)[i] = bench_logit(&seed);
  for (int64_t e = 0; e < cols; ++e) (*host_bias)[e] = 0.05f * bench_logit(&seed);
  CHECK(drv->cuMemAlloc(&a.in, 4 * n) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemAlloc(&a.bias, 4 * (size_t)cols) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemAlloc(&a.v, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemAlloc(&a.i, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemcpyHtoD(a.in, *host, 4 * n) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemcpyHtoD(a.bias, *host_bias, 4 * (size_t)cols) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemsetD8(a.v, 0xFF, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemsetD8(a.i, 0xFF, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  drv->cuCtxSynchronize();  /* uploads and memsets may still be in flight; `stream` does not wait for them */
  return a;
}

static void routing_teardown(routing_args *a) {
  const dsv4_driver *drv = a->ctx->drv;
  drv->cuMemFree(a->in), drv->cuMemFree(a->bias), drv->cuMemFree(a->v), drv->cuMemFree(a->i);
}

/* topk_select rows x cols: checked against the oracle (every row up to 4096 rows, else every 16th), then
 * timed. Effective bandwidth = 4 bytes x rows x cols (the scores read once) / time. ties: the scores rounded
 * to multiples of 1/4 (a few dozen distinct values a row, hundreds of copies of each at the cut). */
static void bench_topk_select(dsv4_context *ctx, CUstream stream, int64_t rows, int64_t cols, int32_t k, double copy_gbps,
                              bool ties, bool long_only) {
  dsv4_launch_fn launch = long_only ? topk_long_launch : topk_launch;
  const dsv4_driver *drv = ctx->drv;
  float *in, *bias;
  routing_args a = routing_setup(ctx, rows, cols, k, &in, &bias);
  if (ties) {
    for (int64_t i = 0; i < rows * cols; ++i) in[i] = rintf(in[i] * 4.0f) * 0.25f + 0.0f;
    CHECK(drv->cuMemcpyHtoD(a.in, in, 4 * (size_t)(rows * cols)) ? DSV4_ERR_CUDA : DSV4_OK);
  }
  CHECK(launch(&a, stream));
  CHECK(drv->cuStreamSynchronize(stream) ? DSV4_ERR_CUDA : DSV4_OK);
  const size_t out = (size_t)rows * k;
  float *v = malloc(4 * out), *rv = malloc(4 * (size_t)k);
  int32_t *idx = malloc(4 * out), *ri = malloc(4 * (size_t)k);
  CHECK(drv->cuMemcpyDtoH(v, a.v, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemcpyDtoH(idx, a.i, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  const int64_t step = rows <= 4096 ? 1 : 16;
  for (int64_t r = 0; r < rows; r += step) {
    oracle_topk_select_row(in + r * cols, cols, k, rv, ri);
    for (int32_t j = 0; j < k; ++j)
      if (idx[r * k + j] != ri[j] || memcmp(&v[r * k + j], &rv[j], 4) != 0) {
        fprintf(stderr, "dsv4-bench: topk_select %lldx%lld k=%d disagrees with the oracle at row %lld slot %d\n",
                (long long)rows, (long long)cols, k, (long long)r, j);
        exit(1);
      }
  }
  dsv4_timing t;
  const size_t flush = (size_t)ctx->l2_bytes * 4;
  CHECK(dsv4_time_launches(drv, stream, launch, &a, rows * cols > ((int64_t)1 << 22) ? g_calls / 4 + 1 : g_calls,
                           g_reps, flush, &t));
  char name[64], extra[160];
  snprintf(name, sizeof name, "%s %lldx%lld k=%d%s", long_only ? "topk_long alone" : "topk_select", (long long)rows,
           (long long)cols, k, ties ? " ties" : "");
  const double bytes = 4.0 * (double)rows * (double)cols, gbs = bytes / (t.graph_us * 1e3);
  snprintf(extra, sizeof extra, "%.0f GB/s scores read = %.0f%% of copy read rate (copy %.0f GB/s / 2)", gbs,
           100.0 * gbs / (copy_gbps / 2.0), copy_gbps);
  row(name, ties || long_only ? "info" : rows == 1 && cols >= 131072 ? "<= ~4 us" : cols >= 131072 ? "info; >=1.5TB/s" : "", &t,
      extra);
  routing_teardown(&a);
  free(in), free(bias), free(v), free(rv), free(idx), free(ri);
}

/* activation_topk N x E (bias on, scale 2.5): checked against the FP64 oracle on every 8th token (ids
 * exact unless the two selection scores are within 1e-6 relative; weights within 1e-5 relative), then timed.
 * Effective bandwidth = the logits bytes (4 x N x E) / time, as a share of the copy's read rate. */
static void bench_activation_topk(dsv4_context *ctx, CUstream stream, int64_t n, int32_t e, int32_t k, double copy_gbps) {
  const dsv4_driver *drv = ctx->drv;
  float *in, *bias;
  routing_args a = routing_setup(ctx, n, e, k, &in, &bias);
  CHECK(act_launch(&a, stream));
  CHECK(drv->cuStreamSynchronize(stream) ? DSV4_ERR_CUDA : DSV4_OK);
  const size_t out = (size_t)n * k;
  float *w = malloc(4 * out);
  int32_t *ids = malloc(4 * out), rid[16];
  double rw[16], *sel = malloc(8 * (size_t)e), sk[16];
  CHECK(drv->cuMemcpyDtoH(w, a.v, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  CHECK(drv->cuMemcpyDtoH(ids, a.i, 4 * out) ? DSV4_ERR_CUDA : DSV4_OK);
  for (int64_t t = 0; t < n; t += 8) {
    oracle_route_logits(in + t * e, 1, e, bias, k, 2.5, rw, rid, sel);
    for (int32_t j = 0; j < k; ++j) {
      const int32_t g = ids[t * k + j];
      int ok = g >= 0 && g < e;
      if (ok && g != rid[j]) ok = fabs(sel[g] - sel[rid[j]]) <= 1e-6 * fmax(fabs(sel[g]), fabs(sel[rid[j]]));
      if (ok) sk[j] = oracle_score((double)in[t * e + g]);
      if (!ok) {
        fprintf(stderr, "dsv4-bench: activation_topk %lldx%d k=%d: token %lld slot %d id %d, oracle %d\n",
                (long long)n, e, k, (long long)t, j, g, rid[j]);
        exit(1);
      }
    }
    oracle_weights(sk, k, 2.5, rw);
    for (int32_t j = 0; j < k; ++j)
      if (!(fabs((double)w[t * k + j] - rw[j]) <= 1e-5 * fabs(rw[j]))) {
        fprintf(stderr, "dsv4-bench: activation_topk %lldx%d k=%d: token %lld slot %d weight %.9g, oracle %.9g\n",
                (long long)n, e, k, (long long)t, j, w[t * k + j], rw[j]);
        exit(1);
      }
  }
  dsv4_timing t;
  CHECK(dsv4_time_launches(drv, stream, act_launch, &a, g_calls, g_reps, (size_t)ctx->l2_bytes * 4, &t));
  char name[64], extra[160];
  snprintf(name, sizeof name, "activation_topk %lldx%d k=%d", (long long)n, e, k);
  const double gbs = 4.0 * (double)n * e / (t.graph_us * 1e3);
  snprintf(extra, sizeof extra, "%.0f GB/s logits read = %.0f%% of copy read rate (copy %.0f GB/s / 2)", gbs,
           100.0 * gbs / (copy_gbps / 2.0), copy_gbps);
  row(name, e == 384 && n == 16384 ? ">=70% copy rd" : "", &t, extra);
  routing_teardown(&a);
  free(in), free(bias), free(w), free(ids), free(sel);
}

/* ---- JIT: cold compile and warm start ---- */
/* The v4-pro router's kernels compiled as prepare compiles them (in parallel, no cache), in this process;
 * returns the milliseconds. */
static double router_cold_compile_ms(const char *arch) {
  dsv4_router_config cfg;
  CHECK(dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &cfg));
  dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
  int n = dsv4_router_kernel_specs(&cfg, specs);
  dsv4_jit_config none = {false, ""};
  dsv4_jit *jit;
  CHECK(dsv4_jit_create(&none, &jit));
  dsv4_cubin cubins[DSV4_MAX_ROUTER_KERNELS];
  const double t0 = dsv4_now_ms();
  CHECK(dsv4_jit_get_many(jit, specs, n, arch, false, cubins));
  const double ms = dsv4_now_ms() - t0;
  for (int i = 0; i < n; ++i) dsv4_cubin_free(&cubins[i]);
  dsv4_jit_destroy(jit);
  return ms;
}

/* The same in fresh processes (this program re-run with --jit-child ARCH [ctx]), where NVRTC starts cold. With
 * with_ctx the child first creates a dsv4 context, as an engine must before it can create a router: what an
 * engine's first prepare pays. Without it no driver is loaded. The median of 3, or a negative value if the
 * child could not be run. */
static double router_cold_compile_fresh_ms(const char *arch, bool with_ctx) {
  char self[4096], cmd[4300];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return -1.0;
  self[len] = 0;
  snprintf(cmd, sizeof cmd, "'%s' --jit-child %s%s", self, arch, with_ctx ? " ctx" : "");
  double t[3];
  for (int i = 0; i < 3; ++i) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1.0;
    const int got = fscanf(f, "%lf", &t[i]);
    if (pclose(f) != 0 || got != 1) return -1.0;
  }
  return dsv4_median(t, 3);
}

static void bench_jit(dsv4_context *ctx) {
  dsv4_router_config cfg;
  CHECK(dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &cfg));
  dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
  int n = dsv4_router_kernel_specs(&cfg, specs);
  const char *arch = ctx ? ctx->arch : "sm_90a";
  /* Cold: NVRTC only, no cache. Median of 3 compiles of the first kernel, and the whole router once. */
  dsv4_jit_config none = {false, ""};
  dsv4_jit *jit;
  CHECK(dsv4_jit_create(&none, &jit));
  double t[3];
  for (int i = 0; i < 3; ++i) {
    dsv4_cubin c;
    double t0 = dsv4_now_ms();
    CHECK(dsv4_jit_compile(jit, &specs[0], arch, &c));
    t[i] = dsv4_now_ms() - t0;
    dsv4_cubin_free(&c);
  }
  double one = dsv4_median(t, 3);
  const double fresh = router_cold_compile_fresh_ms(arch, false);
  const double fresh_ctx = ctx ? router_cold_compile_fresh_ms(arch, true) : -1.0;
  const double all = router_cold_compile_ms(arch);   /* what prepare does: in parallel */
  dsv4_cubin cubins[DSV4_MAX_ROUTER_KERNELS];
  for (int i = 0; i < n; ++i) {  /* each kernel alone, to show where the time goes */
    double t1 = dsv4_now_ms();
    CHECK(dsv4_jit_compile(jit, &specs[i], arch, &cubins[i]));
    printf("  cold compile %-40s %7.1f ms\n", specs[i].name_expr, dsv4_now_ms() - t1);
    dsv4_cubin_free(&cubins[i]);
  }
  dsv4_jit_destroy(jit);
  /* Warm: publish into a fresh folder, then a fresh JIT reads every kernel back (and loads it, with a GPU). */
  char dir[] = "/tmp/dsv4-bench-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    exit(1);
  }
  dsv4_jit_config disk = {true, ""};
  snprintf(disk.dir, sizeof disk.dir, "%s", dir);
  CHECK(dsv4_jit_create(&disk, &jit));
  for (int i = 0; i < n; ++i) {
    dsv4_cubin c;
    CHECK(dsv4_jit_get(jit, &specs[i], arch, true, &c));
    dsv4_cubin_free(&c);
  }
  dsv4_jit_destroy(jit);
  CHECK(dsv4_jit_create(&disk, &jit));
  double t0 = dsv4_now_ms();
  for (int i = 0; i < n; ++i) {
    dsv4_cubin c;
    CHECK(dsv4_jit_get(jit, &specs[i], arch, true, &c));
    if (ctx) {
      CUmodule m;
      CUfunction f;
      CHECK(ctx->drv->cuModuleLoadData(&m, c.image) ? DSV4_ERR_CUDA : DSV4_OK);
      CHECK(ctx->drv->cuModuleGetFunction(&f, m, c.lowered_name) ? DSV4_ERR_CUDA : DSV4_OK);
      ctx->drv->cuModuleUnload(m);
    }
    dsv4_cubin_free(&c);
  }
  double warm = dsv4_now_ms() - t0;
  dsv4_jit_stats st;
  dsv4_jit_get_stats(jit, &st);
  dsv4_jit_destroy(jit);
  printf("%-34s %9.1f ms  (target <= 250 ms)\n", "NVRTC cold compile, one kernel", one);
  printf("%-34s %9.1f ms  (%d kernel(s) in parallel, in a process that has compiled before; target <= 400 ms)\n",
         "NVRTC cold compile, whole router", all, n);
  if (fresh_ctx >= 0)
    printf("%-34s %9.1f ms  (the same in a fresh process after dsv4_context_create, median of 3: what an engine's "
           "first prepare pays)\n", "", fresh_ctx);
  if (fresh >= 0)
    printf("%-34s %9.1f ms  (the same in a fresh process with no driver loaded, median of 3)\n", "", fresh);
  else
    printf("%-34s %9s     (the fresh-process run could not be started)\n", "", "n/a");
  printf("%-34s %9.2f ms  (%lld disk hits, %lld compiles%s; target <= 2 ms)\n", "warm start from the disk cache", warm,
         (long long)st.disk_hits, (long long)st.compiles, ctx ? ", modules loaded" : ", no GPU: read only");
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "dsv4-bench: could not remove %s\n", dir);
}

/* ---- decode breakdown: where the router's decode time goes (GEMM, routing, the pair, PDL or not) ---- */
typedef struct decode_parts {
  dsv4_context *ctx;
  CUdeviceptr x, w, partials, out_w, out_ids, tok, lut;
  int64_t n;
  int32_t e, h, k, splits, mode;  /* mode: 0 gemm, 1 route, 2 gemm+route plain, 3 gemm+route PDL, 4 hash PDL */
} decode_parts;

static dsv4_status decode_parts_launch(void *user, CUstream stream) {
  decode_parts *a = user;
  if (a->mode != 1)
    DSV4_TRY(dsv4_gate_decode_enqueue(a->ctx, stream, (const void *)a->x, a->n, (const void *)a->w, a->e, a->h,
                                      (float *)a->partials));
  if (a->mode == 0) return DSV4_OK;
  if (a->mode == 4)
    return dsv4_hash_scored_enqueue(a->ctx, stream, (const float *)a->partials, a->splits, a->n * a->e,
                                    (const int32_t *)a->tok, a->n, a->e, (const int32_t *)a->lut, 1000, a->k, 2.5f,
                                    (float *)a->out_w, (int32_t *)a->out_ids, NULL, true);
  return dsv4_activation_topk_enqueue(a->ctx, stream, (const float *)a->partials, a->splits, a->n * a->e, a->n, a->e,
                                      NULL, a->k, 2.5f, (float *)a->out_w, (int32_t *)a->out_ids, a->mode == 3);
}

static void bench_decode_breakdown(dsv4_context *ctx, CUstream stream, int64_t n) {
  const dsv4_driver *drv = ctx->drv;
  decode_parts a = {ctx, 0, 0, 0, 0, 0, 0, 0, n, 384, 7168, 6, dsv4_gate_decode_splits(7168), 0};
  drv->cuMemAlloc(&a.x, 2 * (size_t)(64 * a.h));
  drv->cuMemAlloc(&a.w, 2 * (size_t)(a.e * a.h));
  drv->cuMemAlloc(&a.partials, 4 * (size_t)(a.splits * 64 * a.e));
  drv->cuMemAlloc(&a.out_w, 4 * 64 * 16);
  drv->cuMemAlloc(&a.out_ids, 4 * 64 * 16);
  drv->cuMemAlloc(&a.tok, 4 * 64);
  drv->cuMemAlloc(&a.lut, 4 * 1000 * 6);
  drv->cuMemsetD8(a.x, 0x3c, 2 * (size_t)(64 * a.h));
  drv->cuMemsetD8(a.w, 0x3c, 2 * (size_t)(a.e * a.h));
  drv->cuMemsetD32(a.tok, 7, 64);
  drv->cuMemsetD32(a.lut, 3, 6000);
  static const char *names[] = {"gemm alone", "route alone", "gemm+route", "gemm+route PDL", "gemm+hash PDL"};
  printf("decode breakdown v4-pro N=%lld:", (long long)n);
  for (int m = 0; m < 5; ++m) {
    a.mode = m;
    dsv4_timing t;
    CHECK(dsv4_time_launches(drv, stream, decode_parts_launch, &a, g_calls, g_reps, (size_t)ctx->l2_bytes * 4, &t));
    printf("  %s %.2f us (stream %.2f)%s", names[m], t.graph_us, t.stream_us, m < 4 ? ";" : "\n");
  }
  CUdeviceptr all[] = {a.x, a.w, a.partials, a.out_w, a.out_ids, a.tok, a.lut};
  for (int i = 0; i < 7; ++i) drv->cuMemFree(all[i]);
}

/* ---- the router: decode and prefill, beside the cuBLASLt GEMM alone ---- */
typedef struct router_args {
  dsv4_router *r;
  dsv4_gate_gemm_plan *gemm;
  CUdeviceptr x, w, logits, out_w, out_ids;
  int64_t n;
} router_args;

static dsv4_status router_launch(void *user, CUstream stream) {
  router_args *a = user;
  return dsv4_router_forward(a->r, stream, (const void *)a->x, NULL, a->n, (float *)a->out_w, (int32_t *)a->out_ids);
}
static dsv4_status gemm_only_launch(void *user, CUstream stream) {
  router_args *a = user;
  return dsv4_gate_gemm_enqueue_all(a->gemm, stream, (const void *)a->w, (const void *)a->x, a->n, (float *)a->logits);
}

static void bench_router(dsv4_context *ctx, CUstream stream, const char *preset) {
  const dsv4_driver *drv = ctx->drv;
  dsv4_router_config c;
  CHECK(dsv4_router_config_preset(preset, DSV4_ROUTER_DENSE, &c));
  const int64_t nmax = 16384, H = c.hidden_size, E = c.num_experts, k = c.top_k;
  uint16_t *x = malloc(2 * (size_t)(nmax * H)), *w = malloc(2 * (size_t)(E * H));
  float *bias = malloc(4 * (size_t)E), *ow = malloc(4 * (size_t)(nmax * k));
  int32_t *oi = malloc(4 * (size_t)(nmax * k));
  uint64_t seed = 0x1234567;
  for (int64_t i = 0; i < nmax * H; ++i) x[i] = bench_bf16(&seed);
  for (int64_t i = 0; i < E * H; ++i) w[i] = bench_bf16(&seed);
  for (int64_t i = 0; i < E; ++i) bias[i] = (float)(i % 7) * 0.01f;
  router_args a = {0};
  CUdeviceptr dbias;
  drv->cuMemAlloc(&a.x, 2 * (size_t)(nmax * H));
  drv->cuMemAlloc(&a.w, 2 * (size_t)(E * H));
  drv->cuMemAlloc(&dbias, 4 * (size_t)E);
  drv->cuMemAlloc(&a.logits, 4 * (size_t)(nmax * E));
  drv->cuMemAlloc(&a.out_w, 4 * (size_t)(nmax * k));
  drv->cuMemAlloc(&a.out_ids, 4 * (size_t)(nmax * k));
  drv->cuMemcpyHtoD(a.x, x, 2 * (size_t)(nmax * H));
  drv->cuMemcpyHtoD(a.w, w, 2 * (size_t)(E * H));
  drv->cuMemcpyHtoD(dbias, bias, 4 * (size_t)E);
  drv->cuCtxSynchronize();
  CHECK(dsv4_router_create(ctx, &c, &a.r));
  CHECK(dsv4_router_set_weights(a.r, (const void *)a.w, (const float *)dbias, NULL));
  CHECK(dsv4_router_prepare(a.r, nmax));
  CHECK(dsv4_gate_gemm_plan_create(ctx, (int32_t)E, (int32_t)H, DSV4_PREFILL_CHUNK, &a.gemm));
  static const int64_t ns[] = {1, 8, 32, 64, 4096, 16384};
  for (int i = 0; i < 6; ++i) {
    a.n = ns[i];
    CHECK(router_launch(&a, stream));
    drv->cuStreamSynchronize(stream);
    drv->cuMemcpyDtoH(ow, a.out_w, 4 * (size_t)(a.n * k));
    drv->cuMemcpyDtoH(oi, a.out_ids, 4 * (size_t)(a.n * k));
    int64_t step = a.n <= 64 ? 1 : a.n / 32, bad = 0;
    for (int64_t t = 0; t < a.n; t += step)
      bad += oracle_check_routed_token(x + t * H, w, (int32_t)H, (int32_t)E, bias, (int32_t)k, c.routed_scaling_factor,
                                       0, 0, NULL, 0, ow + t * k, oi + t * k, NULL, 0);
    if (bad) {
      fprintf(stderr, "dsv4-bench: %s router N=%lld disagrees with the oracle on %lld tokens\n", preset,
              (long long)a.n, (long long)bad);
      exit(1);
    }
    dsv4_timing t, g;
    int calls = a.n > 64 ? 20 : g_calls;
    CHECK(dsv4_time_launches(drv, stream, router_launch, &a, calls, g_reps, (size_t)ctx->l2_bytes * 4, &t));
    char name[64], extra[128];
    snprintf(name, sizeof name, "router %s %s N=%lld", preset, a.n <= 64 ? "decode" : "prefill", (long long)a.n);
    if (a.n > 64) {
      CHECK(dsv4_time_launches(drv, stream, gemm_only_launch, &a, calls, g_reps, (size_t)ctx->l2_bytes * 4, &g));
      /* The ratio from rounds that replay the router and the GEMM alone back to back: a long GEMM's time drifts
       * between separate measurements (clocks, heat), by more than the routing costs. */
      double pr = 0, pg = 0, ratio = 0;
      CHECK(dsv4_time_pair(drv, stream, router_launch, &a, gemm_only_launch, &a, calls, g_reps, &pr, &pg, &ratio));
      snprintf(extra, sizeof extra, "GEMM alone %.2f us (cold %.2f); paired: %.2f / %.2f us = %.3fx", g.graph_us,
               g.cold_us, pr, pg, ratio);
      row(name, "<= 1.10x GEMM", &t, extra);
    } else {
      /* The same calls with the gate GEMM as a plain launch (dsv4_router_set_pdl off): what forward costs when
       * its weight loads cannot start under the previous kernel. */
      dsv4_timing np;
      CHECK(dsv4_router_set_pdl(a.r, 0));
      CHECK(dsv4_time_launches(drv, stream, router_launch, &a, calls, g_reps, (size_t)ctx->l2_bytes * 4, &np));
      CHECK(dsv4_router_set_pdl(a.r, 1));
      snprintf(extra, sizeof extra, "W %.1f MB; no PDL %.2f / %.2f / %.2f us", 2.0 * (double)(E * H) / 1e6,
               np.graph_us, np.stream_us, np.cold_us);
      row(name, "<= 3 / 4 us", &t, extra);
    }
  }
  /* The decode/prefill switch point: the same small batches forced through the cuBLASLt path. */
  dsv4_router *decode_router = a.r;
  CHECK(dsv4_router_create(ctx, &c, &a.r));
  CHECK(dsv4_router_set_decode_max_tokens(a.r, 0));
  CHECK(dsv4_router_set_weights(a.r, (const void *)a.w, (const float *)dbias, NULL));
  CHECK(dsv4_router_prepare(a.r, 64));
  printf("switch point %s, prefill path forced (graph us):", preset);
  static const int64_t small[] = {1, 8, 16, 32, 64};
  for (int i = 0; i < 5; ++i) {
    a.n = small[i];
    dsv4_timing t;
    CHECK(dsv4_time_launches(drv, stream, router_launch, &a, g_calls, g_reps, (size_t)ctx->l2_bytes * 4, &t));
    printf(" N=%lld %.2f", (long long)a.n, t.graph_us);
  }
  printf("\n");
  dsv4_router_destroy(a.r);
  a.r = decode_router;
  dsv4_gate_gemm_plan_destroy(a.gemm);
  dsv4_router_destroy(a.r);
  CUdeviceptr all[] = {a.x, a.w, dbias, a.logits, a.out_w, a.out_ids};
  for (int i = 0; i < 6; ++i) drv->cuMemFree(all[i]);
  free(x), free(w), free(bias), free(ow), free(oi);
}

int main(int argc, char **argv) {
  if ((argc == 3 || argc == 4) && !strcmp(argv[1], "--jit-child")) {   /* bench_jit's fresh process: the ms only */
    dsv4_context *cctx = NULL;   /* "ctx": the driver and a context first, as in an engine (kept until exit) */
    if (argc == 4 && !strcmp(argv[3], "ctx") && dsv4_context_create(0, &cctx) != DSV4_OK) return 1;
    printf("%.3f\n", router_cold_compile_ms(argv[2]));
    if (cctx) dsv4_context_destroy(cctx);
    return 0;
  }
  for (int i = 1; i + 1 < argc; ++i) {
    if (!strcmp(argv[i], "--calls")) g_calls = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--reps")) g_reps = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--only")) g_only = argv[i + 1];
  }
  if (g_calls < 1 || g_reps < 1) {
    fprintf(stderr, "dsv4-bench: --calls and --reps must be at least 1\n");
    return 2;
  }
  dsv4_context *ctx = NULL;
  dsv4_status s = dsv4_context_create(0, &ctx);
  if (s != DSV4_OK) {
    printf("dsv4-bench: no GPU (%s); only the JIT figures can be measured here\n", dsv4_last_error());
    bench_jit(NULL);
    return 0;
  }
  const dsv4_driver *drv = ctx->drv;
  bool pushed;
  CHECK(dsv4_ctx_enter(ctx, &pushed));
  CUstream stream;
  CHECK(drv->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) ? DSV4_ERR_CUDA : DSV4_OK);
  printf("dsv4-bench %s on %s (%s, %d SMs, %d MB L2), driver %d\n", dsv4_version(), ctx->name, ctx->arch,
         ctx->sm_count, ctx->l2_bytes >> 20, drv->driver_version);
  printf("per call: median over %d reps of %d back-to-back calls (graph replay, and plain stream launches);\n"
         "cold-L2: one call after overwriting %d MB, median of %d; cold bb: back to back in a graph, L2 overwritten\n"
         "before each call (a graph of flush + call against one of flushes alone, paired, the difference)\n\n",
         g_reps, g_calls, ctx->l2_bytes * 4 >> 20, g_reps);
  double gbps = 0;
  CHECK(dsv4_copy_bandwidth(drv, stream, (size_t)1 << 30, 10, &gbps));
  printf("floor: device copy bandwidth %.0f GB/s (read + write, 1 GiB)\n\n", gbps);
  printf("%-34s %9s %9s %9s %9s  %-14s %s\n", "workload", "graph us", "stream us", "cold us", "cold bb", "target",
         "effective");
  if (want("hash")) {
    bench_hash(ctx, stream, 1);
    bench_hash(ctx, stream, 4096);
    bench_hash(ctx, stream, 65536);
  }
  if (want("gate"))
    for (int64_t n = 1; n <= 64; n = n == 1 ? 8 : n * 2)
      if (n != 16) bench_gate_decode(ctx, stream, n);
  if (want("breakdown")) {
    bench_decode_breakdown(ctx, stream, 1);
    bench_decode_breakdown(ctx, stream, 64);
  }
  if (want("router")) {
    bench_router(ctx, stream, "v4-pro");
    bench_router(ctx, stream, "v4-flash");
  }
  if (want("topk")) {
    bench_topk_select(ctx, stream, 16384, 384, 6, gbps, false, false);
    bench_topk_select(ctx, stream, 65536, 384, 6, gbps, false, false);
  }
  if (want("act")) {
    bench_activation_topk(ctx, stream, 16384, 384, 6, gbps);
    bench_activation_topk(ctx, stream, 16384, 256, 6, gbps);
    bench_activation_topk(ctx, stream, 4096, 384, 6, gbps);   /* the routing of a 4096-token prefill */
  }
  if (want("long")) {
    /* The indexer's long rows (topk_long.cu): a prefill-sized batch, then decode's single row (latency), where
     * dsv4_topk_select takes the sample-threshold kernel on sm_90 for k <= 1024 (topk_sample.cu), each k beside
     * topk_long alone (the plan dsv4_topk_select would give it): the A/B in one run. */
    static const int32_t ks[] = {512, 2048}, single_ks[] = {512, 1024, 2048};
    for (int i = 0; i < 2; ++i) bench_topk_select(ctx, stream, 64, 131072, ks[i], gbps, false, false);
    for (int i = 0; i < 3; ++i)
      for (int alone = 0; alone < 2; ++alone)
        bench_topk_select(ctx, stream, 1, 131072, single_ks[i], gbps, false, alone);
    for (int i = 0; i < 2; ++i) bench_topk_select(ctx, stream, 512, 65536, ks[i], gbps, false, false);
    /* Rows with hundreds of equal values at the cut: at 64 rows the crowded-bucket fallback (every k); the single
     * row (k = 512), which on sm_90 the sample-threshold kernel sends to topk_long's row body from its sample
     * (some 560 copies of the value at its threshold), beside topk_long alone (which places it by counting). */
    for (int i = 0; i < 2; ++i) bench_topk_select(ctx, stream, 64, 131072, ks[i], gbps, true, false);
    for (int alone = 0; alone < 2; ++alone) bench_topk_select(ctx, stream, 1, 131072, 512, gbps, true, alone);
  }
  printf("\n");
  if (want("jit")) bench_jit(ctx);
  drv->cuStreamDestroy(stream);
  dsv4_ctx_leave(ctx, pushed);
  dsv4_context_destroy(ctx);
  return 0;
}
