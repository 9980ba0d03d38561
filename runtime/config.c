/* Router configurations: presets (SPEC section 1), range checks, and precompiling a config's kernels (and the
 * indexer top-k's, dsv4_precompile_topk) into the disk cache. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "jit.h"
#include "ops/ops.h"

dsv4_status dsv4_router_config_preset(const char *name, dsv4_router_mode mode, dsv4_router_config *out) {
  static const char *fn = "dsv4_router_config_preset";
  DSV4_CHECK_ARG(name != NULL, fn, "name", "is NULL");
  DSV4_CHECK_ARG(out != NULL, fn, "out", "is NULL");
  DSV4_CHECK_ARG(mode == DSV4_ROUTER_DENSE || mode == DSV4_ROUTER_HASH, fn, "mode", "is not a dsv4_router_mode");
  dsv4_router_config c = {mode, 0, 0, 6, 129280, 0.0f, DSV4_HASH_WEIGHTS_SCORED};
  if (!strcmp(name, "v4-flash")) {
    c.hidden_size = 4096, c.num_experts = 256, c.routed_scaling_factor = 1.5f;
  } else if (!strcmp(name, "v4-pro")) {
    c.hidden_size = 7168, c.num_experts = 384, c.routed_scaling_factor = 2.5f;
  } else {
    return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "%s: argument 'name' = '%s' is not a preset (v4-flash, v4-pro)", fn, name);
  }
  *out = c;
  return DSV4_OK;
}

dsv4_status dsv4_router_config_check(const dsv4_router_config *c) {
  static const char *fn = "dsv4_router_config_check";
  DSV4_CHECK_ARG(c != NULL, fn, "cfg", "is NULL");
  DSV4_CHECK_ARG(c->mode == DSV4_ROUTER_DENSE || c->mode == DSV4_ROUTER_HASH, fn, "cfg->mode", "is not a dsv4_router_mode");
  DSV4_CHECK_ARG(c->hash_weights == DSV4_HASH_WEIGHTS_SCORED || c->hash_weights == DSV4_HASH_WEIGHTS_UNIFORM, fn,
                 "cfg->hash_weights", "is not a dsv4_hash_weights");
  DSV4_CHECK_RANGE(c->num_experts >= 1 && c->num_experts <= 1024, fn, "cfg->num_experts", c->num_experts, "1..1024");
  int kmax = c->num_experts < 16 ? c->num_experts : 16;
  DSV4_CHECK_RANGE(c->top_k >= 1 && c->top_k <= kmax, fn, "cfg->top_k", c->top_k, "1..min(num_experts,16)");
  DSV4_CHECK_RANGE(c->hidden_size >= 8 && c->hidden_size <= 16384 && c->hidden_size % 8 == 0, fn,
                   "cfg->hidden_size", c->hidden_size, "8..16384, a multiple of 8");
  DSV4_CHECK_RANGE(c->vocab_size >= 1 && c->vocab_size <= (1 << 24), fn, "cfg->vocab_size", c->vocab_size, "1..2^24");
  DSV4_CHECK_ARG(c->routed_scaling_factor == c->routed_scaling_factor && c->routed_scaling_factor > 0.0f &&
                     c->routed_scaling_factor < 1e30f,
                 fn, "cfg->routed_scaling_factor", "must be finite and positive");
  return DSV4_OK;
}

int dsv4_router_kernel_specs(const dsv4_router_config *cfg, dsv4_kernel_spec *specs) {
  int n = 0;
  /* Both modes compile the hash router: a model's hash layers and dense layers share one config. */
  dsv4_hash_router_spec(cfg->top_k, &specs[n++]);
  /* Routing after the gate GEMM: dense layers (activation_topk) and scored hash layers (hash_scored). */
  dsv4_activation_topk_spec(cfg->num_experts, cfg->top_k, &specs[n++]);
  dsv4_activation_topk_slabs_spec(cfg->num_experts, cfg->top_k, &specs[n++]);   /* dense decode */
  dsv4_hash_scored_spec(cfg->top_k, &specs[n++]);
  /* The decode gate GEMM (N <= 64) feeding both of them as split-K partials. */
  dsv4_gate_decode_spec(cfg->hidden_size, cfg->num_experts, &specs[n++]);
  return n;
}

_Static_assert(DSV4_MAX_ROUTER_KERNELS <= DSV4_MAX_PRECOMPILE_KERNELS, "a router's kernels fit one precompile");

/* Compiles specs[0, n) for arch into the disk cache (fn names the caller in errors). */
static dsv4_status precompile_specs(const char *fn, const dsv4_kernel_spec *specs, int n, const char *arch,
                                    dsv4_jit_stats *stats) {
  dsv4_jit_config jc = dsv4_jit_config_from_env();
  if (!jc.disk_enabled)
    return dsv4_fail(DSV4_ERR_IO, "%s: the disk cache is disabled (DSV4_CACHE=0 or no cache folder)", fn);
  dsv4_jit *jit = NULL;
  DSV4_TRY(dsv4_jit_create(&jc, &jit));
  dsv4_cubin cubins[DSV4_MAX_PRECOMPILE_KERNELS];
  dsv4_status s = dsv4_jit_get_many(jit, specs, n, arch, true, cubins);
  for (int i = 0; i < n && s == DSV4_OK; ++i) dsv4_cubin_free(&cubins[i]);
  if (stats) dsv4_jit_get_stats(jit, stats);
  dsv4_jit_destroy(jit);
  return s;
}

dsv4_status dsv4_precompile(const dsv4_router_config *cfg, const char *arch, dsv4_jit_stats *stats) {
  DSV4_TRY(dsv4_router_config_check(cfg));
  DSV4_TRY(dsv4_arch_check(arch));
  dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
  const int n = dsv4_router_kernel_specs(cfg, specs);
  return precompile_specs("dsv4_precompile", specs, n, arch, stats);
}

dsv4_status dsv4_precompile_topk(const int32_t *ks, int32_t count, const char *arch, dsv4_jit_stats *stats) {
  static const char *fn = "dsv4_precompile_topk";
  DSV4_CHECK_ARG(ks != NULL, fn, "ks", "is NULL");
  DSV4_CHECK_RANGE(count >= 1 && count <= DSV4_MAX_PRECOMPILE_KERNELS / 3, fn, "count", count, "1..16");
  for (int32_t i = 0; i < count; ++i) {   /* dsv4_topk_select's range of k */
    char arg[16];
    snprintf(arg, sizeof arg, "ks[%d]", (int)i);
    DSV4_CHECK_RANGE(ks[i] >= 1 && ks[i] <= 4096, fn, arg, ks[i], "1..4096");
  }
  int arch_num = 0;
  DSV4_TRY(dsv4_arch_number(arch, &arch_num));
  /* dsv4_topk_select's long-row kernel in both block sizes (rows of more than 8192 columns take 512 threads a
   * block, shorter ones, the warp kernel aside: cols <= 1024 and k <= 16, 256) and the sample-threshold kernel
   * its few rows of 131072 columns take on sm_90+ (k <= 1024). */
  const bool sample_arch = arch_num >= 90;   /* the sample kernel runs on sm_90 and later only */
  dsv4_kernel_spec specs[DSV4_MAX_PRECOMPILE_KERNELS];
  int n = 0;
  for (int32_t i = 0; i < count; ++i) {
    dsv4_kernel_spec mine[3];
    int m = 0;
    dsv4_topk_select_spec((int64_t)1 << 17, ks[i], &mine[m++]);
    dsv4_topk_select_spec(8192, ks[i], &mine[m++]);
    if (sample_arch && dsv4_topk_sample_serves_k(ks[i])) dsv4_topk_sample_spec(ks[i], &mine[m++]);
    for (int j = 0; j < m; ++j) {
      bool seen = false;   /* k = 500 and 512 share a kernel (k rounded up to a power of two) */
      for (int u = 0; u < n && !seen; ++u) seen = !strcmp(specs[u].name_expr, mine[j].name_expr);
      if (!seen) specs[n++] = mine[j];
    }
  }
  return precompile_specs(fn, specs, n, arch, stats);
}
