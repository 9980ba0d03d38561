/*
 * Ops layer: one host launcher per kernel in kernel_src/. Each op has a spec function (which kernel,
 * which specialisation) used both to launch and to precompile, and an enqueue function that assumes
 * its arguments were checked.
 */
#ifndef DSV4_OPS_H
#define DSV4_OPS_H

#include "../context.h"

/* hash_router.cu */
DSV4_INTERNAL void dsv4_hash_router_spec(int32_t k, dsv4_kernel_spec *out);
/* Checks the arguments of dsv4_hash_router (fn names the caller in the message). */
DSV4_INTERNAL dsv4_status dsv4_hash_router_check(const char *fn, const void *ctx, const int32_t *token_ids,
    int64_t num_tokens, const int32_t *lut, int32_t vocab_size, int32_t k, const float *w, const int32_t *ids);
/* Enqueues the hash router with every weight = `weight`; err_count (device, may be NULL) counts
 * out-of-range token ids. */
DSV4_INTERNAL dsv4_status dsv4_hash_router_enqueue(dsv4_context *ctx, CUstream stream, const int32_t *token_ids,
    int64_t num_tokens, const int32_t *lut, int32_t vocab_size, int32_t k, float weight, float *topk_weights,
    int32_t *topk_ids, int32_t *err_count);

/* The kernels a router with cfg uses (precompile, prepare). Returns the count written to specs. */
#define DSV4_MAX_ROUTER_KERNELS 16
DSV4_INTERNAL int dsv4_router_kernel_specs(const dsv4_router_config *cfg, dsv4_kernel_spec *specs);

#endif
