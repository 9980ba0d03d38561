/* GPU: a second context in a fresh process loads every kernel from the disk cache with zero NVRTC compiles.
 * The parent never touches CUDA (so fork is safe); each child is a fresh process. */
#include <sys/wait.h>
#include <unistd.h>

#include "gpu_util.h"

/* Child: route once with a fresh context; exit 77 with no GPU, 0 if the compile counts match `expect_cold`. */
static int child(int expect_cold) {
  dsv4_context *ctx = NULL;
  DSV4_GPU_TEST_OR_SKIP(&ctx);
  bool pushed;
  dsv4_ctx_enter(ctx, &pushed);
  const int32_t k = 6, vocab = 16;
  int32_t lut[96], tok[4] = {0, 5, 15, 3};
  for (int i = 0; i < 96; ++i) lut[i] = i % 384;
  CUdeviceptr d_tok = gpu_alloc(sizeof tok), d_lut = gpu_alloc(sizeof lut), d_w = gpu_alloc(96), d_ids = gpu_alloc(96);
  gpu_upload(d_tok, tok, sizeof tok);
  gpu_upload(d_lut, lut, sizeof lut);
  dsv4_status s = dsv4_hash_router(ctx, NULL, (const int32_t *)d_tok, 4, (const int32_t *)d_lut, vocab, k,
                                   (float *)d_w, (int32_t *)d_ids);
  gpu_sync();
  int32_t ids[24];
  gpu_download(ids, d_ids, sizeof ids);
  dsv4_jit_stats st;
  dsv4_context_jit_stats(ctx, &st);
  printf("%s process: %lld compiles, %lld disk hits, %lld disk writes\n", expect_cold ? "first" : "second",
         (long long)st.compiles, (long long)st.disk_hits, (long long)st.disk_writes);
  int ok = s == DSV4_OK && ids[6] == lut[30] && ids[23] == lut[23];
  if (expect_cold) ok &= st.compiles >= 1 && st.disk_writes == st.compiles;
  else ok &= st.compiles == 0 && st.disk_hits >= 1;
  gpu_free(d_tok), gpu_free(d_lut), gpu_free(d_w), gpu_free(d_ids);
  dsv4_ctx_leave(ctx, pushed);
  dsv4_context_destroy(ctx);
  return ok ? 0 : 1;
}

static int run_child(int expect_cold) {
  fflush(stdout);
  pid_t p = fork();
  if (p == 0) _exit(child(expect_cold));
  int st = 0;
  waitpid(p, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(void) {
  char dir[] = "/tmp/dsv4-warm-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  setenv("DSV4_CACHE_DIR", dir, 1);  /* read by each child at its first use of the library */
  int rc = run_child(1);
  if (rc == 0) rc = run_child(0);
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  if (rc == 77) printf("SKIPPED: no GPU\n");
  else printf("%s\n", rc == 0 ? "1 passed, 0 failed" : "0 passed, 1 failed");
  return rc;
}
