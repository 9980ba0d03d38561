/*
 * Safetensors reader (and a small writer for tests and the demo).
 *
 * Format: an 8-byte little-endian u64 header length N, N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
 * then the data section; offsets are relative to the data section's start.
 *
 * dsv4_st_open reads and validates the whole header (never the data): every entry must have a string dtype,
 * an array of non-negative integer dims, and 0 <= begin <= end <= data size with end - begin equal to
 * product(shape) * dtype size (overflow-checked). A dtype this reader does not know is accepted at open, so
 * one exotic tensor in a checkpoint shard does not hide the others, and is DSV4_ERR_FORMAT when that tensor
 * is asked for. Tensor bytes are read with pread() into caller buffers, never the whole file.
 *
 * Errors: DSV4_ERR_IO (open / stat / read failures), DSV4_ERR_FORMAT (malformed header, missing tensor,
 * wrong dtype or shape), DSV4_ERR_INVALID_ARGUMENT (bad arguments), DSV4_ERR_OUT_OF_MEMORY; the detail in
 * dsv4_last_error() names the file and, where there is one, the tensor.
 *
 * Thread rules: an open dsv4_st_file is immutable; any number of threads may look up and read from it at
 * once (pread has no shared file position). Close it once no thread uses it.
 */
#ifndef DSV4_SAFETENSORS_H
#define DSV4_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Largest header accepted (the reference implementation's limit). */
#define DSV4_ST_MAX_HEADER 100000000ull

typedef enum dsv4_st_dtype {
  DSV4_ST_UNKNOWN = 0, /* a dtype string this reader does not know */
  DSV4_ST_BOOL, DSV4_ST_U8, DSV4_ST_I8, DSV4_ST_F8_E5M2, DSV4_ST_F8_E4M3, DSV4_ST_F8_E8M0,
  DSV4_ST_I16, DSV4_ST_U16, DSV4_ST_F16, DSV4_ST_BF16,
  DSV4_ST_I32, DSV4_ST_U32, DSV4_ST_F32,
  DSV4_ST_I64, DSV4_ST_U64, DSV4_ST_F64, DSV4_ST_C64,
  DSV4_ST_F4, DSV4_ST_F6_E2M3, DSV4_ST_F6_E3M2,
  DSV4_ST_NUM_DTYPES
} dsv4_st_dtype;

/* @return the safetensors name of d ("BF16", ...; "?" for DSV4_ST_UNKNOWN). */
DSV4_INTERNAL const char *dsv4_st_dtype_name(dsv4_st_dtype d);
/* @return the size of one element in bits (16 for BF16, 4 for F4), 0 for DSV4_ST_UNKNOWN. */
DSV4_INTERNAL int dsv4_st_dtype_bits(dsv4_st_dtype d);

#define DSV4_ST_MAX_RANK 16

typedef struct dsv4_st_tensor {
  const char *name;
  dsv4_st_dtype dtype;
  const char *dtype_str;   /* as written in the file */
  int rank;
  int64_t shape[DSV4_ST_MAX_RANK];
  uint64_t numel;          /* product of shape (1 for rank 0) */
  uint64_t begin, end;     /* byte offsets relative to the data section */
} dsv4_st_tensor;

typedef struct dsv4_st_file dsv4_st_file;

/* Opens path and validates its header. *out is NULL on failure.
 * @return DSV4_OK, DSV4_ERR_IO, DSV4_ERR_FORMAT, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY. */
DSV4_INTERNAL dsv4_status dsv4_st_open(const char *path, dsv4_st_file **out);
/* Closes f; NULL is a no-op. */
DSV4_INTERNAL void dsv4_st_close(dsv4_st_file *f);

DSV4_INTERNAL const char *dsv4_st_path(const dsv4_st_file *f);
DSV4_INTERNAL size_t dsv4_st_count(const dsv4_st_file *f);
/* The i-th tensor in name order (i < dsv4_st_count). */
DSV4_INTERNAL const dsv4_st_tensor *dsv4_st_at(const dsv4_st_file *f, size_t i);
/* @return the tensor called name, or NULL (no error recorded). */
DSV4_INTERNAL const dsv4_st_tensor *dsv4_st_get(const dsv4_st_file *f, const char *name);
/* @return the __metadata__ value for key, or NULL. */
DSV4_INTERNAL const char *dsv4_st_metadata(const dsv4_st_file *f, const char *key);

/* Looks up name and checks it has dtype and exactly `rank` dims equal to shape[] (a shape entry < 0 accepts
 * any extent). @return DSV4_OK or DSV4_ERR_FORMAT (missing, unknown dtype, wrong dtype, wrong shape). */
DSV4_INTERNAL dsv4_status dsv4_st_expect(const dsv4_st_file *f, const char *name, dsv4_st_dtype dtype, int rank,
                                         const int64_t *shape, const dsv4_st_tensor **out);

/* Reads t's bytes [offset, offset + bytes) into dst (pread; restarts on EINTR and short reads).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (range outside the tensor), DSV4_ERR_IO. */
DSV4_INTERNAL dsv4_status dsv4_st_read_range(const dsv4_st_file *f, const dsv4_st_tensor *t, uint64_t offset,
                                             void *dst, size_t bytes);
/* Reads all of t into dst, which holds dst_bytes. @return as dsv4_st_read_range; INVALID_ARGUMENT when
 * dst_bytes differs from the tensor's size. */
DSV4_INTERNAL dsv4_status dsv4_st_read(const dsv4_st_file *f, const dsv4_st_tensor *t, void *dst, size_t dst_bytes);

/* ---- the router's gate ---- */

typedef enum { DSV4_ST_SKIP = 0, DSV4_ST_OPTIONAL = 1, DSV4_ST_REQUIRED = 2 } dsv4_st_need;

/* What to load from `<prefix>weight`, `<prefix>bias` | `<prefix>e_score_correction_bias`, `<prefix>tid2eid`. */
typedef struct dsv4_gate_want {
  int32_t num_experts;   /* E: weight [E,H] bf16, bias [E] fp32, tid2eid ids in [0,E) */
  int32_t hidden_size;   /* H */
  int32_t vocab_size;    /* tid2eid rows */
  int32_t top_k;         /* tid2eid columns */
  dsv4_st_need weight, bias, tid2eid;
} dsv4_gate_want;

/* Host copies of a gate; a part that was skipped or absent (optional) is NULL. */
typedef struct dsv4_gate_host {
  int32_t num_experts, hidden_size, vocab_size, top_k;
  uint16_t *weight;   /* bf16 bits [E,H] */
  float *bias;        /* [E] */
  int32_t *tid2eid;   /* [vocab,k], every id in [0,E) */
  char bias_name[32]; /* "bias" or "e_score_correction_bias" when bias was loaded */
} dsv4_gate_host;

/* What a router with cfg needs: dense -> weight and bias required, no tid2eid; hash -> tid2eid required,
 * bias optional (not used by hash routing), weight required for scored weights and skipped for uniform. */
DSV4_INTERNAL void dsv4_gate_want_for_config(const dsv4_router_config *cfg, dsv4_gate_want *out);

/* Loads the gate under prefix (NULL = "") from path. tid2eid may be int32 or int64 (converted, range-checked);
 * every id must lie in [0,E). Both bias names present is ambiguous (DSV4_ERR_FORMAT). All or nothing: on
 * failure *out is zeroed and nothing stays allocated.
 * @return DSV4_OK, DSV4_ERR_IO, DSV4_ERR_FORMAT, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_UNSUPPORTED (E, H, vocab
 *         or k outside SPEC ranges), DSV4_ERR_OUT_OF_MEMORY. */
DSV4_INTERNAL dsv4_status dsv4_st_load_gate(const char *path, const char *prefix, const dsv4_gate_want *want,
                                            dsv4_gate_host *out);
/* Frees what dsv4_st_load_gate allocated and zeroes *g; NULL is a no-op. */
DSV4_INTERNAL void dsv4_gate_host_free(dsv4_gate_host *g);

/* ---- writer (tests, demo) ---- */

typedef struct dsv4_st_write_tensor {
  const char *name;
  const char *dtype;     /* written as given, so tests can write any string */
  int rank;
  const int64_t *shape;
  const void *data;
  size_t bytes;          /* written as given: data_offsets end - begin */
} dsv4_st_write_tensor;

/* Writes a safetensors file: tensors in the given order, header padded with spaces to a multiple of 8,
 * optional metadata (num_meta key/value pairs; may be 0). Published by temp file + rename.
 * @return DSV4_OK, DSV4_ERR_IO, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY. */
DSV4_INTERNAL dsv4_status dsv4_st_write(const char *path, const dsv4_st_write_tensor *tensors, size_t num_tensors,
                                        const char *const *meta_keys, const char *const *meta_values,
                                        size_t num_meta);

#endif
