/*
 * dsv4: the command-line tool.
 *   dsv4 demo [--preset v4-pro|v4-flash]     route a batch on the GPU and check it against the FP64 oracle;
 *                                            with no GPU, compile and cache every kernel for sm_90a instead
 *   dsv4 info                                driver, device, arch, cache folder
 *   dsv4 cache warm --arch sm_90a [--preset v4-pro] [--mode dense|hash]
 *   dsv4 cache list | verify | clear
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "gpu_timing.h"
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
  if (cmd == CACHE_CLEAR) printf("%s: removed %d file(s)\n", root, removed);
  else printf("%s: %d file(s), %d bad\n", root, files, bad);
  return bad ? 1 : 0;
}

/* ---- demo ---- */

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

static int demo(const char *preset) {
  dsv4_router_config cfg;
  dsv4_status s = dsv4_router_config_preset(preset, DSV4_ROUTER_HASH, &cfg);
  if (s != DSV4_OK) return fail("choosing the preset", s);
  printf("dsv4 %s demo, preset %s (H=%d, E=%d, k=%d, vocab=%d)\n", dsv4_version(), preset, cfg.hidden_size,
         cfg.num_experts, cfg.top_k, cfg.vocab_size);
  dsv4_context *ctx = NULL;
  s = dsv4_context_create(0, &ctx);
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
  const int64_t n = 4096;
  const int32_t k = cfg.top_k, vocab = cfg.vocab_size, e = cfg.num_experts;
  int32_t *lut = malloc(sizeof(int32_t) * (size_t)vocab * k), *tok = malloc(sizeof(int32_t) * n);
  int32_t *ids = malloc(sizeof(int32_t) * n * k), *ref_ids = malloc(sizeof(int32_t) * n * k);
  float *w = malloc(sizeof(float) * n * k);
  double *ref_w = malloc(sizeof(double) * n * k);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int64_t v = 0; v < vocab; ++v)
    for (int32_t j = 0; j < k; ++j) lut[v * k + j] = (int32_t)((v * 7 + j * 61) % e);
  for (int64_t t = 0; t < n; ++t) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    tok[t] = (t % 997 == 5) ? vocab + (int32_t)(t % 3) : (int32_t)(x % (uint64_t)vocab);  /* a few bad ids */
  }
  hash_args a = {ctx, 0, 0, 0, 0, n, vocab, k};
  CUstream stream;
  int rc = 1;
  if (drv->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS ||
      drv->cuMemAlloc(&a.tokens, sizeof(int32_t) * n) || drv->cuMemAlloc(&a.lut, sizeof(int32_t) * vocab * k) ||
      drv->cuMemAlloc(&a.w, sizeof(float) * n * k) || drv->cuMemAlloc(&a.ids, sizeof(int32_t) * n * k)) {
    fprintf(stderr, "dsv4: device allocation failed\n");
    return 1;
  }
  drv->cuMemcpyHtoD(a.tokens, tok, sizeof(int32_t) * n);
  drv->cuMemcpyHtoD(a.lut, lut, sizeof(int32_t) * vocab * k);
  s = hash_launch(&a, stream);
  if (s != DSV4_OK) return fail("dsv4_hash_router", s);
  drv->cuStreamSynchronize(stream);
  drv->cuMemcpyDtoH(ids, a.ids, sizeof(int32_t) * n * k);
  drv->cuMemcpyDtoH(w, a.w, sizeof(float) * n * k);
  int64_t bad_tokens = oracle_hash_uniform(tok, n, lut, vocab, k, 1.0 / k, ref_w, ref_ids);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < n * k; ++i) mismatches += ids[i] != ref_ids[i] || (double)w[i] != (double)(float)ref_w[i];
  printf("hash router, %lld tokens (%lld out of range): %s against the FP64 oracle (%lld mismatches)\n",
         (long long)n, (long long)bad_tokens, mismatches ? "MISMATCH" : "exact", (long long)mismatches);
  dsv4_timing tm;
  s = dsv4_time_launches(drv, stream, hash_launch, &a, 200, 20, (size_t)ctx->l2_bytes * 4, &tm);
  if (s != DSV4_OK) return fail("timing", s);
  printf("\n%-28s %12s %12s %12s\n", "op", "graph us", "stream us", "cold-L2 us");
  printf("%-28s %12.2f %12.2f %12.2f\n", "hash router N=4096", tm.graph_us, tm.stream_us, tm.cold_us);
  dsv4_jit_stats st;
  dsv4_context_jit_stats(ctx, &st);
  printf("\nJIT: %lld compiled (%.0f ms), %lld from the disk cache (%s)\n", (long long)st.compiles, st.compile_ms,
         (long long)st.disk_hits, dsv4_cache_dir() ? dsv4_cache_dir() : "disabled");
  rc = mismatches ? 1 : 0;
  drv->cuMemFree(a.tokens), drv->cuMemFree(a.lut), drv->cuMemFree(a.w), drv->cuMemFree(a.ids);
  drv->cuStreamDestroy(stream);
  dsv4_ctx_leave(ctx, pushed);
  dsv4_context_destroy(ctx);
  free(lut), free(tok), free(ids), free(ref_ids), free(w), free(ref_w);
  return rc;
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
          "       dsv4 cache warm --arch sm_90a [--preset v4-pro] [--mode dense|hash]\n"
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
    if (!strcmp(argv[2], "warm")) return warm(preset, opt(argc, argv, "--mode", "dense"), opt(argc, argv, "--arch", "sm_90a"));
    if (!strcmp(argv[2], "list")) return cache_walk(CACHE_LIST);
    if (!strcmp(argv[2], "verify")) return cache_walk(CACHE_VERIFY);
    if (!strcmp(argv[2], "clear")) return cache_walk(CACHE_CLEAR);
  }
  usage();
  return 2;
}
