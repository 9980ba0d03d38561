/*
 * dsv4: the command-line tool.
 *   dsv4 demo [--preset v4-pro|v4-flash]     route a batch on the GPU and check it against the FP64 oracle;
 *                                            with no GPU, compile and cache every kernel for sm_90a instead
 *   dsv4 info                                driver, device, arch, cache folder
 *   dsv4 cache warm --arch sm_90a [--preset v4-pro] [--mode dense|hash] [--topk K[,K...]]
 *   dsv4 cache list | verify | clear
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "gpu_timing.h"
#include "ops/ops.h"
#include "oracle.h"

static const char *opt(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 0; i + 1 < argc; ++i)
    if (!strcmp(argv[i], name)) return argv[i + 1];
  return dflt;
}

static int fail(const char *what, dsv4_status s) {
  fprintf(stderr, "dsv4: %s failed: %s\n  %s\n", what, dsv4_status_string(s), dsv4_last_error());
  return 1;
}

/* --topk K[,K...]: the indexer top-k's k values, into ks (at most max); -1 when the list is not one. */
static int parse_ks(const char *list, int32_t *ks, int max) {
  int n = 0;
  for (const char *p = list; *p;) {
    char *end = NULL;
    const long v = strtol(p, &end, 10);
    if (end == p || n == max || v < INT32_MIN || v > INT32_MAX || (*end != ',' && *end != '\0')) return -1;
    ks[n++] = (int32_t)v;
    p = *end == ',' ? end + 1 : end;
  }
  return n;
}

static int warm_topk(const char *list, const int32_t *ks, int n, const char *arch) {
  dsv4_jit_stats st;
  dsv4_status s = dsv4_precompile_topk(ks, n, arch, &st);
  if (s != DSV4_OK) return fail("compiling the top-k kernels", s);
  printf("indexer top-k k=%s for %s: %lld kernel(s) compiled in %.0f ms, %lld already cached, cache folder %s\n", list,
         arch, (long long)st.compiles, st.compile_ms, (long long)st.disk_hits, dsv4_cache_dir());
  return 0;
}

static int warm(const char *preset, const char *mode, const char *arch) {
  dsv4_router_config cfg;
  dsv4_router_mode m = (mode && !strcmp(mode, "hash")) ? DSV4_ROUTER_HASH : DSV4_ROUTER_DENSE;
  dsv4_status s = dsv4_router_config_preset(preset, m, &cfg);
  if (s != DSV4_OK) return fail("choosing the preset", s);
  dsv4_jit_stats st;
  s = dsv4_precompile(&cfg, arch, &st);
  if (s != DSV4_OK) return fail("compiling the kernels", s);
  printf("%s for %s: %lld kernel(s) compiled in %.0f ms, %lld already cached, cache folder %s\n", preset, arch,
         (long long)st.compiles, st.compile_ms, (long long)st.disk_hits, dsv4_cache_dir());
  return 0;
}

/* ---- cache list / verify / clear ---- */

static int parse_key(const char *file, dsv4_key *key) {
  size_t n = strlen(file);
  if (n < 6 + 33 || strcmp(file + n - 6, ".cubin") != 0 || file[n - 6 - 33] != '-') return 0;
  const char *hex = file + n - 6 - 32;
  for (int i = 0; i < 16; ++i) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
    key->bytes[i] = (uint8_t)v;
  }
  return 1;
}

typedef enum { CACHE_LIST, CACHE_VERIFY, CACHE_CLEAR } cache_cmd;

static int cache_walk(cache_cmd cmd) {
  const char *root = dsv4_cache_dir();
  if (!root) {
    printf("the disk cache is disabled (DSV4_CACHE=0)\n");
    return cmd == CACHE_VERIFY ? 1 : 0;
  }
  DIR *top = opendir(root);
  if (!top) {
    printf("%s: no cache yet (%s)\n", root, strerror(errno));
    return 0;
  }
  int files = 0, bad = 0, removed = 0;
  struct dirent *a;
  while ((a = readdir(top))) {
    if (a->d_name[0] == '.') continue;
    char archdir[4400];
    snprintf(archdir, sizeof archdir, "%s/%s", root, a->d_name);
    DIR *d = opendir(archdir);
    if (!d) continue;
    struct dirent *f;
    while ((f = readdir(d))) {
      if (!strcmp(f->d_name, ".") || !strcmp(f->d_name, "..")) continue;
      char path[8800];
      snprintf(path, sizeof path, "%s/%s", archdir, f->d_name);
      int is_tmp = !strncmp(f->d_name, ".tmp-", 5);
      if (cmd == CACHE_CLEAR) {
        if ((is_tmp || strstr(f->d_name, ".cubin")) && unlink(path) == 0) ++removed;
        continue;
      }
      struct stat st;
      if (stat(path, &st) != 0) continue;
      ++files;
      dsv4_key key;
      const char *state = "ok";
      char why[1024] = "";
      if (is_tmp) {
        state = "temp";  /* a publish in progress, or left by a killed process */
      } else if (!parse_key(f->d_name, &key)) {
        state = "BAD", ++bad;
        snprintf(why, sizeof why, "name is not <kernel>-<key>.cubin");
      } else {
        dsv4_cubin c;
        dsv4_status s = dsv4_cache_read(path, &key, &c);
        if (s == DSV4_OK) dsv4_cubin_free(&c);
        else state = "BAD", ++bad, snprintf(why, sizeof why, "%s", dsv4_last_error());
      }
      if (cmd == CACHE_LIST || strcmp(state, "ok") != 0)
        printf("%-5s %-8s %8lld  %s%s%s\n", state, a->d_name, (long long)st.st_size, f->d_name, why[0] ? "  " : "", why);
    }
    closedir(d);
    if (cmd == CACHE_CLEAR) rmdir(archdir);
  }
  closedir(top);
  if (cmd == CACHE_CLEAR) {  /* the compile locks (runtime/jit.c) */
    char locks[4400];
    snprintf(locks, sizeof locks, "%s/.locks", root);
    DIR *d = opendir(locks);
    struct dirent *f;
    while (d && (f = readdir(d))) {
      if (f->d_name[0] == '.') continue;
      char path[8800];
      snprintf(path, sizeof path, "%s/%s", locks, f->d_name);
      unlink(path);
    }
    if (d) closedir(d);
    rmdir(locks);
    printf("%s: removed %d file(s)\n", root, removed);
  }
  else printf("%s: %d file(s), %d bad\n", root, files, bad);
  return bad ? 1 : 0;
}

/* ---- demo ---- */

static uint64_t rng(uint64_t *s) {
  *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}
static uint16_t bf16_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float frand(uint64_t *s) { return (float)((rng(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

typedef struct demo_run {
  dsv4_router *r;
  CUdeviceptr x, tok, w, ids;
  int64_t n;
  dsv4_gate_gemm_plan *gemm;
  CUdeviceptr weight, logits;
  const dsv4_router_config *cfg;
} demo_run;

static dsv4_status forward_launch(void *user, CUstream stream) {
  demo_run *d = user;
  return dsv4_router_forward(d->r, stream, (const void *)d->x, (const int32_t *)d->tok, d->n, (float *)d->w,
                             (int32_t *)d->ids);
}
static dsv4_status gemm_launch(void *user, CUstream stream) {
  demo_run *d = user;
  return dsv4_gate_gemm_enqueue_all(d->gemm, stream, (const void *)d->weight, (const void *)d->x, d->n,
                                    (float *)d->logits);
}

/* The floor of a decode call: one tiny kernel in a graph, measured as the plain hash router on one token. */
typedef struct tiny_run {
  dsv4_context *ctx;
  CUdeviceptr tok, lut, w, ids;
  int32_t vocab, k;
} tiny_run;
static dsv4_status tiny_launch(void *user, CUstream stream) {
  tiny_run *t = user;
  return dsv4_hash_router(t->ctx, stream, (const int32_t *)t->tok, 1, (const int32_t *)t->lut, t->vocab, t->k,
                          (float *)t->w, (int32_t *)t->ids);
}

#define DEMO_CU(call)                                                         \
  do {                                                                        \
    CUresult r_ = drv->call;                                                  \
    if (r_ != CUDA_SUCCESS) return fail(#call, dsv4_cu_fail(r_, #call));      \
  } while (0)
#define DEMO_TRY(call)                                                        \
  do {                                                                        \
    dsv4_status s_ = (call);                                                  \
    if (s_ != DSV4_OK) return fail(#call, s_);                                \
  } while (0)

/* Routes n tokens through r, checks sampled tokens against the FP64 oracle, returns the mismatch count. */
static int64_t demo_check(const dsv4_driver *drv, demo_run *d, const uint16_t *x, const uint16_t *w, const float *bias,
                          const int32_t *tok, const int32_t *lut, int hash) {
  const dsv4_router_config *c = d->cfg;
  const int64_t n = d->n, k = c->top_k;
  float *ow = malloc(4 * (size_t)(n * k));
  int32_t *oi = malloc(4 * (size_t)(n * k));
  if (forward_launch(d, NULL) != DSV4_OK || drv->cuCtxSynchronize() != CUDA_SUCCESS) return -1;
  drv->cuMemcpyDtoH(ow, d->w, 4 * (size_t)(n * k));
  drv->cuMemcpyDtoH(oi, d->ids, 4 * (size_t)(n * k));
  int64_t bad = 0, step = n <= 64 ? 1 : n / 64;
  for (int64_t t = 0; t < n; t += step)
    bad += oracle_check_routed_token(x + t * c->hidden_size, w, c->hidden_size, c->num_experts, bias, c->top_k,
                                     c->routed_scaling_factor, hash, tok[t], lut, c->vocab_size, ow + t * k,
                                     oi + t * k, NULL, 0);
  free(ow), free(oi);
  return bad;
}

static int demo(const char *preset) {
  dsv4_router_config cfg;
  DEMO_TRY(dsv4_router_config_preset(preset, DSV4_ROUTER_DENSE, &cfg));
  printf("dsv4 %s demo, preset %s (H=%d, E=%d, k=%d, vocab=%d, scale %.1f)\n", dsv4_version(), preset,
         cfg.hidden_size, cfg.num_experts, cfg.top_k, cfg.vocab_size, cfg.routed_scaling_factor);
  dsv4_context *ctx = NULL;
  dsv4_status s = dsv4_context_create(0, &ctx);
  if (s == DSV4_ERR_NO_DRIVER || s == DSV4_ERR_NO_DEVICE) {
    printf("NO GPU FOUND (%s). Nothing will run; compiling and caching every kernel for sm_90a instead.\n",
           dsv4_last_error());
    return warm(preset, "dense", "sm_90a");
  }
  if (s != DSV4_OK) return fail("creating the context", s);
  const dsv4_driver *drv = ctx->drv;
  printf("GPU: %s (%s, %d SMs)\n", ctx->name, ctx->arch, ctx->sm_count);
  bool pushed;
  dsv4_ctx_enter(ctx, &pushed);
  const int64_t H = cfg.hidden_size, E = cfg.num_experts, k = cfg.top_k, V = cfg.vocab_size, nmax = 4096;
  uint64_t seed = 0x5eed;
  uint16_t *x = malloc(2 * (size_t)(nmax * H)), *w = malloc(2 * (size_t)(E * H));
  float *bias = malloc(4 * (size_t)E);
  int32_t *lut = malloc(4 * (size_t)(V * k)), *tok = malloc(4 * (size_t)nmax);
  for (int64_t i = 0; i < nmax * H; ++i) x[i] = bf16_of(frand(&seed));
  for (int64_t i = 0; i < E * H; ++i) w[i] = bf16_of(frand(&seed) * 0.05f);
  for (int64_t i = 0; i < E; ++i) bias[i] = frand(&seed) * 0.1f;
  for (int64_t v = 0; v < V; ++v)
    for (int64_t j = 0; j < k; ++j) lut[v * k + j] = (int32_t)((v * 7 + j * 61) % E);
  for (int64_t t = 0; t < nmax; ++t) tok[t] = (t % 997 == 5) ? (int32_t)V : (int32_t)(rng(&seed) % (uint64_t)V);
  CUdeviceptr dx, dw, dbias, dlut, dtok, dow, doi, dlogits;
  DEMO_CU(cuMemAlloc(&dx, 2 * (size_t)(nmax * H)));
  DEMO_CU(cuMemAlloc(&dw, 2 * (size_t)(E * H)));
  DEMO_CU(cuMemAlloc(&dbias, 4 * (size_t)E));
  DEMO_CU(cuMemAlloc(&dlut, 4 * (size_t)(V * k)));
  DEMO_CU(cuMemAlloc(&dtok, 4 * (size_t)nmax));
  DEMO_CU(cuMemAlloc(&dow, 4 * (size_t)(nmax * k)));
  DEMO_CU(cuMemAlloc(&doi, 4 * (size_t)(nmax * k)));
  DEMO_CU(cuMemAlloc(&dlogits, 4 * (size_t)(nmax * E)));
  DEMO_CU(cuMemcpyHtoD(dx, x, 2 * (size_t)(nmax * H)));
  DEMO_CU(cuMemcpyHtoD(dw, w, 2 * (size_t)(E * H)));
  DEMO_CU(cuMemcpyHtoD(dbias, bias, 4 * (size_t)E));
  DEMO_CU(cuMemcpyHtoD(dlut, lut, 4 * (size_t)(V * k)));
  DEMO_CU(cuMemcpyHtoD(dtok, tok, 4 * (size_t)nmax));
  dsv4_router *dense = NULL, *hash = NULL;
  dsv4_router_config hcfg = cfg;
  hcfg.mode = DSV4_ROUTER_HASH;
  double t0 = dsv4_now_ms();
  DEMO_TRY(dsv4_router_create(ctx, &cfg, &dense));
  DEMO_TRY(dsv4_router_set_weights(dense, (const void *)dw, (const float *)dbias, NULL));
  DEMO_TRY(dsv4_router_prepare(dense, nmax));
  DEMO_TRY(dsv4_router_create(ctx, &hcfg, &hash));
  DEMO_TRY(dsv4_router_set_weights(hash, (const void *)dw, NULL, (const int32_t *)dlut));
  DEMO_TRY(dsv4_router_prepare(hash, nmax));
  printf("two routers (dense, hash) prepared in %.1f ms\n\n", dsv4_now_ms() - t0);
  CUstream stream;
  DEMO_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  dsv4_gate_gemm_plan *gemm = NULL;
  DEMO_TRY(dsv4_gate_gemm_plan_create(ctx, (int32_t)E, (int32_t)H, nmax, &gemm));
  static const struct { const char *name; int64_t n; int hash; } rows[] = {
      {"dense decode N=1", 1, 0}, {"dense decode N=64", 64, 0}, {"dense prefill N=4096", 4096, 0},
      {"hash (scored) decode N=64", 64, 1}, {"hash (scored) prefill N=4096", 4096, 1}};
  tiny_run tiny = {ctx, dtok, dlut, dow, doi, (int32_t)V, (int32_t)k};
  dsv4_timing tiny_t;
  DEMO_TRY(dsv4_time_launches(drv, stream, tiny_launch, &tiny, 100, 15, (size_t)ctx->l2_bytes * 4, &tiny_t));
  printf("%-30s %10s %10s %10s %10s   %s\n", "batch", "oracle", "graph us", "cold us", "floor us", "floor");
  int64_t total_bad = 0;
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; ++i) {
    demo_run d = {rows[i].hash ? hash : dense, dx, dtok, dow, doi, rows[i].n, gemm, dw, dlogits,
                  rows[i].hash ? &hcfg : &cfg};
    int64_t bad = demo_check(drv, &d, x, w, rows[i].hash ? NULL : bias, tok, lut, rows[i].hash);
    total_bad += bad != 0;
    dsv4_timing tm, floor;
    DEMO_TRY(dsv4_time_launches(drv, stream, forward_launch, &d, 100, 15, (size_t)ctx->l2_bytes * 4, &tm));
    const char *floor_name;
    if (rows[i].n > 64) {
      DEMO_TRY(dsv4_time_launches(drv, stream, gemm_launch, &d, 20, 15, (size_t)ctx->l2_bytes * 4, &floor));
      floor_name = "the cuBLASLt GEMM alone";
    } else {
      floor = tiny_t;
      floor_name = "one tiny kernel in a graph (the hash router, N=1)";
    }
    printf("%-30s %10s %10.2f %10.2f %10.2f   %s\n", rows[i].name, bad == 0 ? "exact" : "MISMATCH", tm.graph_us,
           tm.cold_us, floor.graph_us, floor_name);
  }
  printf("\n(hash layers: %lld out-of-range token ids counted)\n", (long long)dsv4_router_take_error_count(hash));
  dsv4_jit_stats st;
  dsv4_context_jit_stats(ctx, &st);
  printf("JIT: %lld compiled (%.0f ms of NVRTC), %lld from the disk cache (%s)\n", (long long)st.compiles,
         st.compile_ms, (long long)st.disk_hits, dsv4_cache_dir() ? dsv4_cache_dir() : "disabled");
  dsv4_gate_gemm_plan_destroy(gemm);
  dsv4_router_destroy(dense);
  dsv4_router_destroy(hash);
  drv->cuStreamDestroy(stream);
  CUdeviceptr all[] = {dx, dw, dbias, dlut, dtok, dow, doi, dlogits};
  for (size_t i = 0; i < 8; ++i) drv->cuMemFree(all[i]);
  dsv4_ctx_leave(ctx, pushed);
  dsv4_context_destroy(ctx);
  free(x), free(w), free(bias), free(lut), free(tok);
  printf("%s\n", total_bad ? "demo: MISMATCH against the oracle" : "demo: every batch agrees with the FP64 oracle");
  return total_bad ? 1 : 0;
}

static int info(void) {
  printf("dsv4 %s\ncache folder: %s\n", dsv4_version(), dsv4_cache_dir() ? dsv4_cache_dir() : "(disabled)");
  const dsv4_driver *drv;
  dsv4_status s = dsv4_driver_get(&drv);
  if (s != DSV4_OK) {
    printf("driver: none (%s)\n", dsv4_last_error());
    return 0;
  }
  printf("driver: CUDA %d.%d\n", drv->driver_version / 1000, (drv->driver_version % 1000) / 10);
  int count = 0;
  drv->cuDeviceGetCount(&count);
  for (int i = 0; i < count; ++i) {
    dsv4_context *ctx;
    if (dsv4_context_create(i, &ctx) != DSV4_OK) {
      printf("device %d: %s\n", i, dsv4_last_error());
      continue;
    }
    printf("device %d: %s, %s, %d SMs, %d MB L2\n", i, ctx->name, ctx->arch, ctx->sm_count, ctx->l2_bytes >> 20);
    dsv4_context_destroy(ctx);
  }
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: dsv4 demo [--preset v4-pro|v4-flash]\n"
          "       dsv4 info\n"
          "       dsv4 cache warm --arch sm_90a [--preset v4-pro] [--mode dense|hash] [--topk K[,K...]]\n"
          "       dsv4 cache list|verify|clear\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  const char *preset = opt(argc, argv, "--preset", "v4-pro");
  if (!strcmp(argv[1], "demo")) return demo(preset);
  if (!strcmp(argv[1], "info")) return info();
  if (!strcmp(argv[1], "cache") && argc >= 3) {
    if (!strcmp(argv[2], "warm")) {
      const char *arch = opt(argc, argv, "--arch", "sm_90a"), *topk = opt(argc, argv, "--topk", NULL);
      int32_t ks[64];   /* how many k one call takes is dsv4_precompile_topk's to say ('count') */
      const int nk = topk ? parse_ks(topk, ks, 64) : 0;
      if (topk && nk < 1) {
        fprintf(stderr, "dsv4: --topk takes comma-separated k values, e.g. --topk 512,2048 (got '%s')\n", topk);
        return 2;
      }
      const int rc = warm(preset, opt(argc, argv, "--mode", "dense"), arch);
      return rc != 0 || topk == NULL ? rc : warm_topk(topk, ks, nk, arch);
    }
    if (!strcmp(argv[2], "list")) return cache_walk(CACHE_LIST);
    if (!strcmp(argv[2], "verify")) return cache_walk(CACHE_VERIFY);
    if (!strcmp(argv[2], "clear")) return cache_walk(CACHE_CLEAR);
  }
  usage();
  return 2;
}
