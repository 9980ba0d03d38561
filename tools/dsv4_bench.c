/*
 * dsv4-bench: the figures of SPEC section 5, measured on the GPU (never asserted in a test).
 * Every op is checked against the FP64 oracle before it is timed.
 *   dsv4-bench [--calls 200] [--reps 30]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context.h"
#include "gpu_timing.h"
#include "oracle.h"
#include "ops/ops.h"

static int g_calls = 200, g_reps = 30;

#define CHECK(expr)                                                                                  \
  do {                                                                                               \
    dsv4_status s_ = (expr);                                                                         \
    if (s_ != DSV4_OK) {                                                                             \
      fprintf(stderr, "dsv4-bench: %s: %s\n  %s\n", #expr, dsv4_status_string(s_), dsv4_last_error()); \
      exit(1);                                                                                       \
    }                                                                                                \
  } while (0)

static void row(const char *name, const char *target, const dsv4_timing *t, const char *extra) {
  printf("%-34s %9.2f %9.2f %9.2f  %-14s %s\n", name, t->graph_us, t->stream_us, t->cold_us, target, extra);
}

/* ---- hash router ---- */
typedef struct hash_args {
  dsv4_context *ctx;
  CUdeviceptr tokens, lut, w, ids;
  int64_t n;
  int32_t vocab, k;
} hash_args;

static dsv4_status hash_launch(void *user, CUstream stream) {
  hash_args *a = user;
  return dsv4_hash_router(a->ctx, stream, (const int32_t *)a->tokens, a->n, (const int32_t *)a->lut, a->vocab, a->k,
                          (float *)a->w, (int32_t *)a->ids);
}

static void bench_hash(dsv4_context *ctx, CUstream stream, int64_t n) {
  const dsv4_driver *drv = ctx->drv;
  const int32_t k = 6, vocab = 129280, e = 384;
  hash_args a = {ctx, 0, 0, 0, 0, n, vocab, k};
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
  drv->cuMemFree(a.tokens), drv->cuMemFree(a.lut), drv->cuMemFree(a.w), drv->cuMemFree(a.ids);
  free(lut), free(tok), free(ids), free(rids), free(w), free(rw);
}

/* ---- JIT: cold compile and warm start ---- */
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
  double t0 = dsv4_now_ms();
  for (int i = 0; i < n; ++i) {
    dsv4_cubin c;
    CHECK(dsv4_jit_compile(jit, &specs[i], arch, &c));
    dsv4_cubin_free(&c);
  }
  double all = dsv4_now_ms() - t0;
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
  t0 = dsv4_now_ms();
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
  printf("%-34s %9.1f ms  (%d kernel(s), serial; target <= 400 ms)\n", "NVRTC cold compile, whole router", all, n);
  printf("%-34s %9.2f ms  (%lld disk hits, %lld compiles%s; target <= 2 ms)\n", "warm start from the disk cache", warm,
         (long long)st.disk_hits, (long long)st.compiles, ctx ? ", modules loaded" : ", no GPU: read only");
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "dsv4-bench: could not remove %s\n", dir);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (!strcmp(argv[i], "--calls")) g_calls = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--reps")) g_reps = atoi(argv[i + 1]);
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
         "cold-L2: one call after overwriting %d MB, median of %d\n\n", g_reps, g_calls, ctx->l2_bytes * 4 >> 20, g_reps);
  double gbps = 0;
  CHECK(dsv4_copy_bandwidth(drv, stream, (size_t)1 << 30, 10, &gbps));
  printf("floor: device copy bandwidth %.0f GB/s (read + write, 1 GiB)\n\n", gbps);
  printf("%-34s %9s %9s %9s  %-14s %s\n", "workload", "graph us", "stream us", "cold us", "target", "effective");
  bench_hash(ctx, stream, 1);
  bench_hash(ctx, stream, 4096);
  bench_hash(ctx, stream, 65536);
  printf("\n");
  bench_jit(ctx);
  drv->cuStreamDestroy(stream);
  dsv4_ctx_leave(ctx, pushed);
  dsv4_context_destroy(ctx);
  return 0;
}
