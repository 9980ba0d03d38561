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
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL pointer, negative count, k < 1, vocab_size < 1);
 *         DSV4_ERR_UNSUPPORTED (k > 16, vocab_size > 2^24); DSV4_ERR_NVRTC / DSV4_ERR_CUDA.
 */
DSV4_API dsv4_status dsv4_hash_router(dsv4_context *ctx, CUstream stream, const int32_t *token_ids,
    int64_t num_tokens, const int32_t *lut, int32_t vocab_size, int32_t k,
    float *topk_weights, int32_t *topk_ids);

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

/** The disk cache root in use (DSV4_CACHE_DIR, else $XDG_CACHE_HOME/dsv4, else ~/.cache/dsv4);
 *  NULL when DSV4_CACHE=0 (dsv4 addition). */
DSV4_API const char *dsv4_cache_dir(void);

#ifdef __cplusplus
}
#endif
#endif /* DSV4_DSV4_H */
