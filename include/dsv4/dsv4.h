/*
 * dsv4 — DeepSeek-V4 mixture-of-experts routing on NVIDIA GPUs.
 *
 * Public C API. Names and signatures of SPEC section 3 are fixed; additions are marked "(dsv4 addition)".
 *
 * Conventions
 *  - Every function that can fail returns a dsv4_status; on failure the calling thread's
 *    dsv4_last_error() says what and which argument, and output parameters are set to NULL / untouched.
 *  - A failed argument check changes nothing: no launch, no allocation, no write.
 *  - Ops take device pointers, enqueue on `stream` (NULL = the legacy default stream) and never
 *    synchronize. They use the calling thread's current CUDA context if it is the device's primary
 *    context, and push the context's primary context otherwise.
 */
#ifndef DSV4_DSV4_H
#define DSV4_DSV4_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define DSV4_API
#else
#define DSV4_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The same typedef as cuda.h, so the header works with or without it (C11 allows the repeat). */
typedef struct CUstream_st *CUstream;

#define DSV4_VERSION_MAJOR 0
#define DSV4_VERSION_MINOR 1
#define DSV4_VERSION_PATCH 0

typedef enum dsv4_status {
  DSV4_OK = 0,
  DSV4_ERR_INVALID_ARGUMENT,
  DSV4_ERR_UNSUPPORTED,
  DSV4_ERR_NO_DRIVER,
  DSV4_ERR_NO_DEVICE,
  DSV4_ERR_CUDA,
  DSV4_ERR_NVRTC,
  DSV4_ERR_CUBLAS,
  DSV4_ERR_OUT_OF_MEMORY,
  DSV4_ERR_IO,
  DSV4_ERR_FORMAT
} dsv4_status;

/** @return a static, human-readable name for s ("DSV4_ERR_NO_DRIVER: ..."); never NULL. */
DSV4_API const char *dsv4_status_string(dsv4_status s);
/** @return the detail of the last failure on the calling thread ("" if none); valid until the next call. */
DSV4_API const char *dsv4_last_error(void);
/** @return the library version, "MAJOR.MINOR.PATCH" (dsv4 addition). */
DSV4_API const char *dsv4_version(void);

/*
 * dsv4_context: one per device. Safe to share between threads: ops may be called concurrently on the
 * same context from any number of threads (the module cache is guarded by a mutex). Destroy it only
 * once no other thread uses it and all work enqueued through it has finished.
 */
typedef struct dsv4_context dsv4_context;
/** @return DSV4_OK, DSV4_ERR_NO_DRIVER (no libcuda.so.1), DSV4_ERR_NO_DEVICE (no GPU / bad ordinal). */
DSV4_API dsv4_status dsv4_context_create(int device_ordinal, dsv4_context **out);
/** Releases the context's modules and its hold on the primary context. NULL is a no-op. */
DSV4_API void dsv4_context_destroy(dsv4_context *ctx);

/** Counters of the JIT and module cache (dsv4 addition). */
typedef struct dsv4_jit_stats {
  int64_t compiles;       /* NVRTC compilations */
  int64_t disk_hits;      /* modules loaded from the disk cache */
  int64_t memory_hits;    /* modules found already loaded */
  int64_t disk_writes;    /* modules published to the disk cache */
  int64_t disk_rejected;  /* cache files that were bad or foreign and got recompiled and replaced */
  double compile_ms;      /* wall time spent inside NVRTC */
} dsv4_jit_stats;
/** Copies ctx's counters (dsv4 addition). @return DSV4_OK or DSV4_ERR_INVALID_ARGUMENT. */
DSV4_API dsv4_status dsv4_context_jit_stats(dsv4_context *ctx, dsv4_jit_stats *out);
/** The compile target of ctx's device, e.g. "sm_90a" (dsv4 addition). @return NULL if ctx is NULL. */
DSV4_API const char *dsv4_context_arch(const dsv4_context *ctx);

/* ---- Ops: device pointers, enqueued on stream (NULL = default stream), never synchronize. ---- */

/**
 * Hash router: topk_ids[n,j] = lut[token_ids[n], j], topk_weights[n,j] = 1/k. A token id outside
 * [0, vocab_size) gets expert 0 with weight 0 in every slot; the table is never read out of bounds.
 * lut is int32 [vocab_size, k]; outputs are [num_tokens, k]. num_tokens == 0 is a no-op.
 * Launch overlap (sm_90 and later): the kernel is launched with programmatic dependent launch, so its launch
 * may overlap the end of the kernel before it on the stream; it waits for that kernel to finish before it
 * reads or writes any memory, so every predecessor is safe (the token ids may be its output). Its blocks let
 * the next kernel launch early once they are done: a successor launched with PDL must wait on its grid
 * dependency before it reads or writes topk_weights / topk_ids, as PDL requires of it anyway.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL pointer, negative count, k < 1, vocab_size < 1);
 *         DSV4_ERR_UNSUPPORTED (k > 16, vocab_size > 2^24); DSV4_ERR_NVRTC / DSV4_ERR_CUDA.
 */
DSV4_API dsv4_status dsv4_hash_router(dsv4_context *ctx, CUstream stream, const int32_t *token_ids,
    int64_t num_tokens, const int32_t *lut, int32_t vocab_size, int32_t k,
    float *topk_weights, int32_t *topk_ids);

/**
 * Generic top-k: for each of `rows` rows of `cols` FP32 scores (row r at scores + r * row_stride), the k
 * largest values and their column indices in descending order; equal values -> lower index first; NaN
 * ranks below everything (below -inf); -0.0 and +0.0 are equal. out_values (bit-exact copies of the
 * inputs) and out_indices are [rows, k]. rows == 0 is a no-op.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL or misaligned pointer, rows < 0, cols < 1, k < 1,
 *         row_stride < cols); DSV4_ERR_UNSUPPORTED (cols > 2^20, k > min(cols, 4096));
 *         DSV4_ERR_NVRTC / DSV4_ERR_CUDA.
 */
DSV4_API dsv4_status dsv4_topk_select(dsv4_context *ctx, CUstream stream, const float *scores, int64_t rows,
    int64_t cols, int64_t row_stride, int32_t k, float *out_values, int32_t *out_indices);

/**
 * Dense routing from FP32 logits [num_tokens, num_experts] (SPEC section 2): s = sqrt(softplus(logit)),
 * topk_ids = the k experts with the largest s + bias (descending; ties lower expert first; NaN lowest),
 * topk_weights = s[ids] / sum(s[ids]) * routed_scaling_factor (a NaN score weighs 0; +inf scores share the
 * weight; a zero sum gives routed_scaling_factor / k). bias [num_experts] may be NULL (zeros). Outputs
 * [num_tokens, k]. num_tokens == 0 is a no-op. One kernel, FP32 throughout.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL or misaligned pointer, num_tokens < 0, num_experts < 1,
 *         k < 1, routed_scaling_factor not finite and positive); DSV4_ERR_UNSUPPORTED (num_experts > 1024,
 *         k > min(num_experts, 16)); DSV4_ERR_NVRTC / DSV4_ERR_CUDA.
 */
DSV4_API dsv4_status dsv4_activation_topk(dsv4_context *ctx, CUstream stream, const float *logits,
    int64_t num_tokens, int32_t num_experts, const float *bias /* NULL = zeros */, int32_t k,
    float routed_scaling_factor, float *topk_weights, int32_t *topk_ids);

/* ---- Router configuration ---- */
typedef enum { DSV4_ROUTER_DENSE = 0, DSV4_ROUTER_HASH = 1 } dsv4_router_mode;
typedef enum { DSV4_HASH_WEIGHTS_SCORED = 0, DSV4_HASH_WEIGHTS_UNIFORM = 1 } dsv4_hash_weights;
typedef struct dsv4_router_config {
  dsv4_router_mode mode; int32_t hidden_size, num_experts, top_k, vocab_size;
  float routed_scaling_factor; dsv4_hash_weights hash_weights;
} dsv4_router_config;

/** Fills *out for "v4-flash" or "v4-pro" (SPEC section 1). @return DSV4_OK or DSV4_ERR_INVALID_ARGUMENT. */
DSV4_API dsv4_status dsv4_router_config_preset(const char *name, dsv4_router_mode mode,
    dsv4_router_config *out);
/** Checks a config against the supported ranges. @return DSV4_OK, DSV4_ERR_UNSUPPORTED or
 *  DSV4_ERR_INVALID_ARGUMENT, naming the field (dsv4 addition). */
DSV4_API dsv4_status dsv4_router_config_check(const dsv4_router_config *cfg);

/**
 * Compiles every kernel a router with this config uses for `arch` ("sm_80", "sm_90a", "sm_100a", ...)
 * into the disk cache, with no GPU and no driver needed (dsv4 addition). Kernels already cached and
 * valid are left alone. stats may be NULL.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (bad arch or config); DSV4_ERR_NVRTC;
 *         DSV4_ERR_IO when the disk cache is disabled (DSV4_CACHE=0) or cannot be written.
 */
DSV4_API dsv4_status dsv4_precompile(const dsv4_router_config *cfg, const char *arch,
    dsv4_jit_stats *stats);

/**
 * Compiles the long-row kernels dsv4_topk_select uses for each k of ks[0, count) (the indexer's top-k:
 * rows of more than 1024 columns, or k > 16; both block sizes, rows of up to 8192 columns and longer, and, for
 * k <= 1024 on sm_90+, the sample-threshold kernel of few rows of 131072 columns) for `arch` into the disk
 * cache, with no GPU and no driver needed (dsv4 addition; the `dsv4 cache warm --topk` of the tool). k values
 * that round up to the same power of two share a kernel. stats may be NULL.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (ks NULL, bad arch); DSV4_ERR_UNSUPPORTED (count outside 1..16,
 *         a k outside 1..4096, an arch NVRTC does not know); DSV4_ERR_NVRTC; DSV4_ERR_IO when the disk cache
 *         is disabled (DSV4_CACHE=0) or cannot be written.
 */
DSV4_API dsv4_status dsv4_precompile_topk(const int32_t *ks, int32_t count, const char *arch,
    dsv4_jit_stats *stats);

/*
 * dsv4_router: one MoE layer's gate. Create it, give it weights (borrowed device pointers or a safetensors
 * checkpoint), prepare it once for the largest batch, then call forward as often as you like.
 * Thread rules: a router is used by one thread at a time (forward, set_weights, prepare are not
 * reentrant on the same router); different routers on one context may run on different threads.
 * The forward calls of one router share its workspace: enqueue them on one stream (or order their
 * streams with events); give concurrent streams a router each.
 * After prepare, forward never compiles, allocates or synchronizes, so it can be captured in a CUDA graph.
 */
typedef struct dsv4_router dsv4_router;
/** @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT / DSV4_ERR_UNSUPPORTED naming the config field. */
DSV4_API dsv4_status dsv4_router_create(dsv4_context *ctx, const dsv4_router_config *cfg, dsv4_router **out);
/** Borrowed device pointers, kept until the next set_weights/load or destroy. gate_weight_bf16 [E,H] is
 *  needed in dense mode and for scored hash weights; bias [E] may be NULL (zeros); tid2eid int32 [vocab,k]
 *  with every id in [0,E) is needed in hash mode. @return DSV4_OK or DSV4_ERR_INVALID_ARGUMENT. */
DSV4_API dsv4_status dsv4_router_set_weights(dsv4_router *r, const void *gate_weight_bf16, const float *bias,
    const int32_t *tid2eid);
/** Loads `<prefix>weight`, `<prefix>bias` | `<prefix>e_score_correction_bias`, `<prefix>tid2eid` (int32 or
 *  int64) from a safetensors file into device memory the router owns. All or nothing.
 *  @return DSV4_OK, DSV4_ERR_IO, DSV4_ERR_FORMAT (naming file and tensor), DSV4_ERR_OUT_OF_MEMORY, ... */
DSV4_API dsv4_status dsv4_router_load_safetensors(dsv4_router *r, const char *path, const char *tensor_prefix);
/** JIT-loads every kernel forward will use and allocates the workspace for up to max_tokens per call
 *  (bounded whatever max_tokens: large prefills are chunked). Synchronizes. */
DSV4_API dsv4_status dsv4_router_prepare(dsv4_router *r, int64_t max_tokens);
/** Routes num_tokens tokens: topk_weights fp32 [N,k], topk_ids int32 [N,k]. hidden_bf16 [N,H] is needed in
 *  dense mode and for scored hash weights; token_ids int32 [N] in hash mode (else may be NULL).
 *  Launch overlap (sm_90 and later, on unless dsv4_router_set_pdl turned it off): in decode batches the first
 *  kernel is launched with programmatic dependent launch and streams the gate weight into shared memory
 *  while the kernel enqueued just before forward on the stream may still run; it waits for that kernel
 *  before it reads hidden_bf16 or token_ids or writes anything. So that immediately preceding kernel must
 *  not write the gate weight (weights written by a copy, or by any earlier kernel, are safe). In hash mode
 *  with uniform weights the one kernel is PDL-launched too, but touches no memory before the kernel before
 *  it has finished: any predecessor is safe. The last kernel lets the next kernel on the stream launch
 *  early the same way: a successor launched with PDL must wait on its grid dependency before it reads or
 *  writes topk_weights / topk_ids, as PDL requires of it anyway.
 *  @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL pointer, N < 0, N > prepared max_tokens, not prepared). */
DSV4_API dsv4_status dsv4_router_forward(dsv4_router *r, CUstream stream, const void *hidden_bf16,
    const int32_t *token_ids, int64_t num_tokens, float *topk_weights, int32_t *topk_ids);
/** @return the number of out-of-range token ids seen since the last call (hash mode), resetting it; syncs.
 *  -1 if r is NULL or the count could not be read. */
DSV4_API int64_t dsv4_router_take_error_count(dsv4_router *r);
/** Frees the router's workspace and owned weights (waits for its work to finish). NULL is a no-op. */
DSV4_API void dsv4_router_destroy(dsv4_router *r);
/** The largest batch that takes the fused decode kernel; larger batches take the cuBLASLt prefill path.
 *  Default: the switch point measured on H200 (see README); 0 forces prefill for every batch. Call before
 *  prepare (dsv4 addition). @return DSV4_OK or DSV4_ERR_INVALID_ARGUMENT (outside 0..64). */
DSV4_API dsv4_status dsv4_router_set_decode_max_tokens(dsv4_router *r, int32_t n);
/** Launch overlap of the decode path and of uniform hash routing (see dsv4_router_forward): 1 (the default)
 *  or 0 (plain launches for the first kernel: for an engine whose kernel just before forward writes the gate
 *  weight). The results are the same bits either way. May be called at any time between forward calls (dsv4
 *  addition).
 *  @return DSV4_OK or DSV4_ERR_INVALID_ARGUMENT ('r' NULL, 'enable' not 0 or 1). */
DSV4_API dsv4_status dsv4_router_set_pdl(dsv4_router *r, int32_t enable);

/** The disk cache root in use (DSV4_CACHE_DIR, else $XDG_CACHE_HOME/dsv4, else ~/.cache/dsv4);
 *  NULL when DSV4_CACHE=0 (dsv4 addition). */
DSV4_API const char *dsv4_cache_dir(void);

#ifdef __cplusplus
}
#endif
#endif /* DSV4_DSV4_H */
