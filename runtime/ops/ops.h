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
 * out-of-range token ids. With pdl it is launched with programmatic dependent launch: it
 * may start launching while the previous kernel on the stream runs, and waits on griddepcontrol for that
 * kernel's end before it touches global memory, so any predecessor is safe. */
DSV4_INTERNAL dsv4_status dsv4_hash_router_enqueue(dsv4_context *ctx, CUstream stream, const int32_t *token_ids,
    int64_t num_tokens, const int32_t *lut, int32_t vocab_size, int32_t k, float weight, float *topk_weights,
    int32_t *topk_ids, int32_t *err_count, bool pdl);

/* gate_gemm.c: logits[N,E] fp32 = x[N,H] bf16 . W[E,H]^T bf16 through cuBLASLt (FP32 accumulation).
 * A plan per (E, H, max chunk rows) owns the cuBLASLt handle, descriptors, the algorithms (chosen once at
 * creation for power-of-two row buckets) and the workspace (allocated at creation), so enqueue never
 * allocates, queries the heuristic or synchronizes and can be captured in a CUDA graph. W and x must be
 * 16-byte aligned, logits min(16, lowest set bit of 4E)-byte aligned. A plan is immutable after creation,
 * but its one workspace means its enqueues must not run concurrently on different streams. */
typedef struct dsv4_gate_gemm_plan dsv4_gate_gemm_plan;
/* Argument checks of plan creation (no GPU needed): ctx, E in 1..1024, H in 8..16384 (multiple of 8),
 * max_chunk_rows in 1..2^20. */
DSV4_INTERNAL dsv4_status dsv4_gate_gemm_check(const char *fn, const void *ctx, int32_t num_experts,
    int32_t hidden_size, int64_t max_chunk_rows);
/* @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT / DSV4_ERR_UNSUPPORTED; DSV4_ERR_CUBLAS (no algorithm);
 *         DSV4_ERR_CUDA / DSV4_ERR_OUT_OF_MEMORY (workspace). *out is NULL on failure. */
DSV4_INTERNAL dsv4_status dsv4_gate_gemm_plan_create(dsv4_context *ctx, int32_t num_experts, int32_t hidden_size,
    int64_t max_chunk_rows, dsv4_gate_gemm_plan **out);
/* Frees the plan (NULL is a no-op); call it once the work it enqueued has finished. */
DSV4_INTERNAL void dsv4_gate_gemm_plan_destroy(dsv4_gate_gemm_plan *plan);
/* One chunk: logits[rows,E] = x[rows,H] . W^T, rows in 0..max_chunk_rows (0 is a no-op). */
DSV4_INTERNAL dsv4_status dsv4_gate_gemm_enqueue(dsv4_gate_gemm_plan *plan, CUstream stream, const void *w_bf16,
    const void *x_bf16, int64_t rows, float *logits);
/* Any number of rows, in chunks of max_chunk_rows into the full logits[num_rows,E]. */
DSV4_INTERNAL dsv4_status dsv4_gate_gemm_enqueue_all(dsv4_gate_gemm_plan *plan, CUstream stream, const void *w_bf16,
    const void *x_bf16, int64_t num_rows, float *logits);
DSV4_INTERNAL int64_t dsv4_gate_gemm_chunk_rows(const dsv4_gate_gemm_plan *plan);
DSV4_INTERNAL size_t dsv4_gate_gemm_workspace_bytes(const dsv4_gate_gemm_plan *plan);

/* topk_select.cu: dsv4_topk_select. The spec picks the warp kernel (cols <= 1024, k <= 16) or the long-row
 * kernel topk_long.cu (longer rows or larger k). */
DSV4_INTERNAL void dsv4_topk_select_spec(int64_t cols, int32_t k, dsv4_kernel_spec *out);
DSV4_INTERNAL dsv4_status dsv4_topk_select_check(const char *fn, const void *ctx, const float *scores, int64_t rows,
    int64_t cols, int64_t row_stride, int32_t k, const float *out_values, const int32_t *out_indices);
DSV4_INTERNAL dsv4_status dsv4_topk_select_enqueue(dsv4_context *ctx, CUstream stream, const float *scores,
    int64_t rows, int64_t cols, int64_t row_stride, int32_t k, float *out_values, int32_t *out_indices);
/* topk_long.cu: the kernel dsv4_topk_select takes for every shape the warp kernel does not (cols > 1024 or
 * k > 16): dsv4::topk_long<KP, NT>, KP = k rounded up to a power of two, NT = 512 threads for cols > 8192,
 * else 256. One thread-block cluster per row (sm_90+; 1 block on sm_80); no workspace, no global scratch. */
DSV4_INTERNAL void dsv4_topk_long_spec(int64_t cols, int32_t k, dsv4_kernel_spec *out);
/* The launch shape for rows x cols, k on a device with sm_count SMs, smem_limit bytes of opt-in dynamic shared
 * memory per block and clusters of up to max_cluster blocks (1: none; up to 16). Wide-row blocks (cols > 8192)
 * split a row over a cluster of CL = 1, 2, 4, 8 or 16 blocks while rows * CL <= sm_count and each block keeps
 * >= 8192 columns; the block of cluster rank r owns columns [r * slice, (r + 1) * slice). A block keeps the
 * order keys of its columns in shared memory: whole (key_bits 32) when they fit beside a candidate buffer, else
 * their top 16 bits (key_bits 16), of a prefix of `dense` columns when even those do not fit. The shape changes
 * the speed, never the result. @return DSV4_OK, or DSV4_ERR_UNSUPPORTED when the shared memory cannot hold the survivor
 * list. */
typedef struct dsv4_topk_long_plan {
  int32_t threads, cluster, kp;
  int32_t slice;        /* columns per block, a multiple of 4 */
  int32_t pool_words;   /* 4-byte words of shared memory for the key cache and the candidate buffer */
  int32_t dense;        /* columns of its slice whose keys a block keeps in shared memory (the rest is re-read) */
  int32_t cached;       /* dense == slice: each block reads its columns from global memory exactly once */
  unsigned smem;        /* dynamic shared bytes per block */
  unsigned grid;        /* blocks, a multiple of cluster */
  int32_t key_bits;     /* 32: whole order keys cached; 16: their top 16 bits */
  int32_t cand_cap;     /* candidate buffer entries (8 bytes each) after the cache */
} dsv4_topk_long_plan;
DSV4_INTERNAL dsv4_status dsv4_topk_long_plan_for(int64_t rows, int64_t cols, int32_t k, int sm_count, int smem_limit,
    int max_cluster, dsv4_topk_long_plan *out);
/* The shape dsv4_topk_select's launch takes on ctx's device (loads the kernel; clusters as the device runs them). */
DSV4_INTERNAL dsv4_status dsv4_topk_long_plan_ctx(dsv4_context *ctx, int64_t rows, int64_t cols, int32_t k,
    dsv4_topk_long_plan *out);
/* Whether dsv4_topk_select takes the warp kernel (topk_select.cu) for rows of cols values and this k. */
DSV4_INTERNAL bool dsv4_topk_select_uses_warp(int64_t cols, int32_t k);
/* topk_sample.cu: the sample-threshold select dsv4_topk_select takes on sm_90+ where topk_long's plan is
 * dsv4_topk_sample_takes (clusters of 16 blocks of 512 threads, slices of at most 8192 columns, cols > 4096,
 * k <= 1024: dsv4_topk_sample_serves_k) and all the rows' clusters fit at once: dsv4::topk_sample<KP>, launched
 * with that plan; a row it cannot select (a threshold value with more than ~256 copies in the row, estimated
 * from the sample, or a NaN; too few or too many candidates above its threshold; ties crowding a bucket) gets
 * topk_long's row body in the same launch. */
DSV4_INTERNAL void dsv4_topk_sample_spec(int32_t k, dsv4_kernel_spec *out);
DSV4_INTERNAL bool dsv4_topk_sample_serves_k(int32_t k);
DSV4_INTERNAL bool dsv4_topk_sample_takes(const dsv4_topk_long_plan *plan, int64_t cols, int32_t k);
/* Test hook: whether dsv4_topk_select on rows x cols with this k launches the sample-threshold kernel on ctx's
 * device (the same decision, kernels loaded as the call would). */
DSV4_INTERNAL dsv4_status dsv4_topk_select_takes_sample(dsv4_context *ctx, int64_t rows, int64_t cols, int32_t k,
    bool *takes);
/* Test hook: the long-row kernel on rows x cols, launched with the plan dsv4_topk_select takes for plan_rows
 * (>= rows) rows - the same kernel, cluster, slice, key width, buffers and shared memory - its grid cut to the
 * rows given. The output is what dsv4_topk_select gives (the plan changes the speed, never the result). For
 * sanitizer runs (tests/gpu, DSV4_TEST_REDUCED): a plan only many rows choose (one block per row, clusters of
 * 2) runs on one row. */
DSV4_INTERNAL dsv4_status dsv4_topk_long_enqueue_planned(dsv4_context *ctx, CUstream stream, int64_t plan_rows,
    const float *scores, int64_t rows, int64_t cols, int64_t row_stride, int32_t k, float *out_values,
    int32_t *out_indices);

/* Whether shape is a launch shape topk_long.cu can run for rows of cols columns and this k: kp = k rounded up to
 * a power of two; threads 256 or the wide-row size; cluster a power of two up to max_cluster (and 16); slice a
 * multiple of 4 that splits the row over the cluster with columns in every block; key_bits 32 or 16; dense a
 * multiple of 8 (or the slice) in 0..slice and cached == (dense == slice); cand_cap in 0..slice; smem the fixed
 * part plus a pool (pool_words * 4 bytes, a multiple of 16) that holds the layout (the cache, the hit list of
 * 16-bit keys, the candidates, the counting sort's scratch, with a cluster the copied lists) and, with
 * smem_limit > 0, at most smem_limit. grid is not checked. DSV4_ERR_INVALID_ARGUMENT names the field. Every
 * shape dsv4_topk_long_plan_for gives passes (tests/cpu/test_topk_long_cpu.c). */
DSV4_INTERNAL dsv4_status dsv4_topk_long_shape_check(const char *fn, const dsv4_topk_long_plan *shape, int64_t cols,
    int32_t k, int smem_limit, int max_cluster);
/* Sets shape's cached, pool_words and smem to the least shared memory its other fields need (for tests that
 * build shapes). */
DSV4_INTERNAL void dsv4_topk_long_shape_fit(dsv4_topk_long_plan *shape);
/* Test hook: the long-row kernel on rows x cols with a launch shape given whole, one cluster per row (grid
 * ignored). A malformed shape (the check above) is DSV4_ERR_INVALID_ARGUMENT; one this device cannot run (its
 * shared memory, or a cluster size the device does not run at once: cuOccupancyMaxActiveClusters, none before
 * sm_90) is DSV4_ERR_UNSUPPORTED, so that a test may skip it. The output is what
 * dsv4_topk_select gives: the shape changes the speed, never the result. For sanitizer runs (tests/gpu,
 * test_forced_shapes): every code path of the kernel on small rows - 16-bit keys, an uncached tail, a full
 * candidate buffer, every cluster size - that the planner would pick only for rows of hundreds of thousands. */
DSV4_INTERNAL dsv4_status dsv4_topk_long_enqueue_shape(dsv4_context *ctx, CUstream stream,
    const dsv4_topk_long_plan *shape, const float *scores, int64_t rows, int64_t cols, int64_t row_stride, int32_t k,
    float *out_values, int32_t *out_indices);

/* activation_topk.cu (one slab) and activation_topk_slabs.cu (several): dense routing from FP32 logits. The
 * logits are `num_splits` partial slabs
 * (float partials[num_splits][num_tokens][num_experts], slab s at logits + s * split_stride elements) that the
 * kernel sums in FP32 in split order (s = 0, 1, 2, ...) before the activation; num_splits = 1 is
 * dsv4_activation_topk (split_stride is then ignored). With pdl the kernel is launched with programmatic
 * dependent launch: it may start while the previous kernel on the stream (the one writing
 * the partials) still runs, and waits on griddepcontrol before reading them; it reads the bias (a weight)
 * before that wait, so that kernel must not write the bias. The split-slab kernel triggers its own dependents
 * right after that wait: a successor launched with PDL may run its part before its own griddepcontrol.wait
 * beside the slab loads and the selection (the router's next gate_decode streams its weight there). */
/* The checks shared by every consumer of split-slab logits (activation_topk, hash_scored), in this order: ctx,
 * num_tokens >= 0, E in 1..1024, k in 1..min(E, 16), scale finite and positive, num_splits in 1..64,
 * num_tokens * E bounded, split_stride at least num_tokens * E. */
DSV4_INTERNAL dsv4_status dsv4_routing_logits_check(const char *fn, const void *ctx, int32_t num_splits,
    int64_t split_stride, int64_t num_tokens, int32_t num_experts, int32_t k, float scale);
DSV4_INTERNAL void dsv4_activation_topk_spec(int32_t num_experts, int32_t k, dsv4_kernel_spec *out);
/* activation_topk_slabs.cu: the num_splits > 1 form (decode: one block per token, one thread per expert). */
DSV4_INTERNAL void dsv4_activation_topk_slabs_spec(int32_t num_experts, int32_t k, dsv4_kernel_spec *out);
/* Checks the arguments of dsv4_activation_topk and of the split-slab form (num_splits in 1..64; with more
 * than one split, split_stride >= num_tokens * num_experts). */
DSV4_INTERNAL dsv4_status dsv4_activation_topk_check(const char *fn, const void *ctx, const float *logits,
    int32_t num_splits, int64_t split_stride, int64_t num_tokens, int32_t num_experts, const float *bias, int32_t k,
    float scale, const float *topk_weights, const int32_t *topk_ids);
DSV4_INTERNAL dsv4_status dsv4_activation_topk_enqueue(dsv4_context *ctx, CUstream stream, const float *logits,
    int32_t num_splits, int64_t split_stride, int64_t num_tokens, int32_t num_experts, const float *bias, int32_t k,
    float scale, float *w, int32_t *ids, bool pdl);

/* hash_scored.cu: hash routing with scored weights (the router's hash mode): ids = lut[token] in LUT order,
 * w = their scores sqrt(softplus(logit)) renormalised times scale. Logits [num_tokens, num_experts] in the
 * split-slab form of dsv4_activation_topk_enqueue, same pdl option. A token id outside [0, vocab_size) gets
 * id 0 / weight 0 in every slot and increments *err_count (device int32, may be NULL) once; a table entry
 * outside [0, num_experts) gets id 0 / weight 0 in its slot. With pdl, a thread reads its first token's id and
 * table row before its griddepcontrol.wait (the logits after it), and triggers its own dependents there: the
 * kernel before must not write token_ids or the table (in the router it is gate_decode, which triggers only
 * after its own wait, so hash_scored never starts beside the kernel before gate_decode). One block of 256
 * threads an SM at most (its registers): a launch of more than 256 x SMs tokens runs in waves; the router's
 * prefill chunks (16384 tokens, 64 blocks) never do. */
DSV4_INTERNAL void dsv4_hash_scored_spec(int32_t k, dsv4_kernel_spec *out);
DSV4_INTERNAL dsv4_status dsv4_hash_scored_check(const char *fn, const void *ctx, const float *logits,
    int32_t num_splits, int64_t split_stride, const int32_t *token_ids, int64_t num_tokens, int32_t num_experts,
    const int32_t *lut, int32_t vocab_size, int32_t k, float scale, const float *topk_weights,
    const int32_t *topk_ids);
DSV4_INTERNAL dsv4_status dsv4_hash_scored_enqueue(dsv4_context *ctx, CUstream stream, const float *logits,
    int32_t num_splits, int64_t split_stride, const int32_t *token_ids, int64_t num_tokens, int32_t num_experts,
    const int32_t *lut, int32_t vocab_size, int32_t k, float scale, float *w, int32_t *ids, int32_t *err_count,
    bool pdl);

/* gate_decode.cu: the decode gate GEMM (N <= 64) as split-K partial logits, the input of the split-slab form
 * of dsv4_activation_topk_enqueue / dsv4_hash_scored_enqueue:
 *   partials[s][n][e] = sum over h in [s*512, min(H, s*512+512)) of x[n,h] * W[e,h]   (FP32 on tensor cores)
 * slab s at partials + s * num_tokens * E (split_stride = num_tokens * E). The split count depends on H only
 * (dsv4_gate_decode_splits), and a token's partials are bitwise the same whatever N and its position in the
 * batch. x [N,H] and W [E,H] bf16, 16-byte aligned. Every element of every slab is written; no atomics. */
#define DSV4_GATE_DECODE_SPLIT 512      /* hidden elements per split (kernel: kGateSplit) */
#define DSV4_GATE_DECODE_MAX_TOKENS 64
#define DSV4_GATE_DECODE_MAX_WARPS 8    /* 16-expert tiles per block (kernel: kGateMaxWarps) */
DSV4_INTERNAL void dsv4_gate_decode_spec(int32_t hidden_size, int32_t num_experts, dsv4_kernel_spec *out);
/* ceil(H / 512): the number of slabs (0 for H < 1). */
DSV4_INTERNAL int32_t dsv4_gate_decode_splits(int32_t hidden_size);
/* splits * num_tokens * num_experts: the floats the partials need (at most splits * 64 * E). */
DSV4_INTERNAL size_t dsv4_gate_decode_workspace_floats(int32_t hidden_size, int32_t num_experts, int64_t num_tokens);
/* The launch shape for N tokens on a device with sm_count SMs and smem_limit bytes of opt-in shared memory per
 * block (0: no limit); warps = 16-expert tiles per block (1..8, or 0 for the built-in choice), lowered to fit
 * smem_limit. The shape changes the speed, never the result. */
typedef struct dsv4_gate_decode_plan {
  int32_t splits, warps;
  unsigned grid, block, smem;   /* smem: dynamic shared bytes, (8 * ceil(N/8) + 16 * warps) staged rows */
} dsv4_gate_decode_plan;
DSV4_INTERNAL void dsv4_gate_decode_plan_for(int32_t hidden_size, int32_t num_experts, int64_t num_tokens,
    int sm_count, int smem_limit, int warps, dsv4_gate_decode_plan *out);
/* Checks: ctx, num_tokens in 0..64, E in 1..1024, H in 8..16384 (multiple of 8), pointers non-NULL and aligned
 * (x, W 16 bytes; partials 4). num_tokens == 0 needs neither x nor partials. */
DSV4_INTERNAL dsv4_status dsv4_gate_decode_check(const char *fn, const void *ctx, const void *x, int64_t num_tokens,
    const void *w, int32_t num_experts, int32_t hidden_size, const float *partials);
/* Enqueues the GEMM (plain launch, built-in shape). Never allocates or synchronizes; num_tokens == 0 is a
 * no-op. Arguments as checked above. */
DSV4_INTERNAL dsv4_status dsv4_gate_decode_enqueue(dsv4_context *ctx, CUstream stream, const void *x,
    int64_t num_tokens, const void *w, int32_t num_experts, int32_t hidden_size, float *partials);
/* The same with a chosen shape (warps 1..8, 0 = built-in) and optional PDL launch: the kernel issues its W
 * loads, then waits on griddepcontrol before reading x or writing the slabs, and triggers its own PDL
 * dependents right after that wait: a dependent launched with PDL behind it may run the part before its own
 * griddepcontrol.wait while gate_decode still runs, but never beside gate_decode's predecessor (hash_scored
 * reads the token ids there). With pdl, W must not be written by the kernel just before this one. */
DSV4_INTERNAL dsv4_status dsv4_gate_decode_enqueue_ex(dsv4_context *ctx, CUstream stream, const void *x,
    int64_t num_tokens, const void *w, int32_t num_experts, int32_t hidden_size, float *partials, int warps,
    bool pdl);

/* The kernels a router with cfg uses (precompile, prepare). Returns the count written to specs. */
#define DSV4_MAX_ROUTER_KERNELS 16
/* Kernels one precompile call compiles at most (a router's, or dsv4_precompile_topk's up to three per k). */
#define DSV4_MAX_PRECOMPILE_KERNELS 48
/* Rows per cuBLASLt GEMM call on the router's prefill path, whatever N: the router's logits workspace holds
 * max(splits * min(max_tokens, decode_max), min(max_tokens, chunk)) rows of E floats (25 MB for v4-pro once
 * max_tokens >= 16384). 16384 rather than 4096 measured on H100 (v4-pro, N = 16384, paired with the GEMM
 * alone): one routing launch instead of four, 1.26x -> 1.21x the GEMM alone. Another value must reach the
 * library, the tests and dsv4-bench alike (CMAKE_C_FLAGS=-DDSV4_PREFILL_CHUNK=...): the router tests put
 * their chunk edges there and the bench times the GEMM alone in the same chunks. */
#ifndef DSV4_PREFILL_CHUNK
#define DSV4_PREFILL_CHUNK 16384
#endif
DSV4_INTERNAL int dsv4_router_kernel_specs(const dsv4_router_config *cfg, dsv4_kernel_spec *specs);

#endif
