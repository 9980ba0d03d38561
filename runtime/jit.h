/*
 * JIT compiler and module cache (the layer above the driver loader).
 *
 * A kernel is named by a dsv4_kernel_spec: an embedded source file plus a name expression that picks
 * one template instantiation, e.g. "dsv4::hash_router<6>". NVRTC compiles it to a cubin for one exact
 * arch. Cubins are cached on disk, one file per (kernel, specialisation, arch), under
 * <cache root>/<arch>/<tag>-<key>.cubin, where key = XXH3-128 of every compile input.
 *
 * Thread rules: a dsv4_jit may be used from any number of threads at once (counters are atomic; the
 * disk publish is atomic by rename, so concurrent compiles of one key just race to an identical file).
 */
#ifndef DSV4_JIT_H
#define DSV4_JIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define DSV4_MAX_OPTIONS 16

typedef struct dsv4_kernel_spec {
  const char *source;    /* embedded file name */
  char name_expr[192];   /* template instantiation to compile and look up */
  char tag[96];          /* readable name for files and logs, [A-Za-z0-9_-] */
} dsv4_kernel_spec;

/* Everything the cache key covers. */
typedef struct dsv4_key_inputs {
  const char *source_text; size_t source_size;   /* the kernel file's bytes */
  const char *headers_text; size_t headers_size; /* all embedded headers, names and bytes, concatenated */
  const char *name_expr;                         /* the specialisation constants */
  const char *arch;
  const char *const *options; int num_options;
  int nvrtc_major, nvrtc_minor;
  const char *lib_version;
} dsv4_key_inputs;

typedef struct dsv4_key { uint8_t bytes[16]; } dsv4_key;
DSV4_INTERNAL dsv4_key dsv4_key_compute(const dsv4_key_inputs *in);
DSV4_INTERNAL void dsv4_key_hex(const dsv4_key *k, char out[33]);

/* A compiled kernel: one cubin holding one entry point. */
typedef struct dsv4_cubin {
  dsv4_key key;
  char lowered_name[512];
  void *image; size_t size;   /* malloc()ed; free with dsv4_cubin_free */
} dsv4_cubin;
DSV4_INTERNAL void dsv4_cubin_free(dsv4_cubin *c);

typedef struct dsv4_jit_config {
  bool disk_enabled;
  char dir[4096];   /* cache root; the arch folder goes under it */
} dsv4_jit_config;
/* The configuration the environment asks for (SPEC section 4). */
DSV4_INTERNAL dsv4_jit_config dsv4_jit_config_from_env(void);

typedef struct dsv4_jit dsv4_jit;
DSV4_INTERNAL dsv4_status dsv4_jit_create(const dsv4_jit_config *cfg, dsv4_jit **out);
DSV4_INTERNAL void dsv4_jit_destroy(dsv4_jit *j);
DSV4_INTERNAL void dsv4_jit_get_stats(dsv4_jit *j, dsv4_jit_stats *out);
DSV4_INTERNAL void dsv4_jit_count_memory_hit(dsv4_jit *j);

/* The cubin of spec for arch: from the disk cache when a valid file is there, else compiled by NVRTC and
 * published to the disk cache. With require_disk, failing to publish is an error (DSV4_ERR_IO); without,
 * it turns the cache memory-only with one warning. */
DSV4_INTERNAL dsv4_status dsv4_jit_get(dsv4_jit *j, const dsv4_kernel_spec *spec, const char *arch,
                                       bool require_disk, dsv4_cubin *out);

/* dsv4_jit_get for n specs at once, compiling on up to n threads (NVRTC is thread-safe), so a router's
 * cold start costs its slowest kernel rather than the sum. On failure every out[] is freed.
 * @return the first failure in spec order. */
DSV4_INTERNAL dsv4_status dsv4_jit_get_many(dsv4_jit *j, const dsv4_kernel_spec *specs, int n, const char *arch,
                                            bool require_disk, dsv4_cubin *out);

/* Compiles with NVRTC, no cache involved (the bench's cold-compile figure). */
DSV4_INTERNAL dsv4_status dsv4_jit_compile(dsv4_jit *j, const dsv4_kernel_spec *spec, const char *arch,
                                           dsv4_cubin *out);

/* The key of spec for arch with this library's options and NVRTC. */
DSV4_INTERNAL dsv4_status dsv4_jit_key(const dsv4_kernel_spec *spec, const char *arch, dsv4_key *out);

/* Arch strings: "sm_80", "sm_90a", "sm_100a". Checks the form and that NVRTC can target it; dsv4_arch_number
 * also gives the number (80, 90, 100; num may be NULL). */
DSV4_INTERNAL dsv4_status dsv4_arch_check(const char *arch);
DSV4_INTERNAL dsv4_status dsv4_arch_number(const char *arch, int *num);
/* The exact target for a compute capability: sm_90a on 9.0, sm_100a on 10.0, sm_XY otherwise. */
DSV4_INTERNAL void dsv4_arch_for_cc(int major, int minor, char out[16]);

/* ---- The disk cache file (cache.c) ---- */
/* Path of a cache file: <root>/<arch>/<tag>-<keyhex>.cubin */
DSV4_INTERNAL void dsv4_cache_path(const char *root, const char *arch, const char *tag,
                                   const dsv4_key *key, char *out, size_t cap);
/* Reads and verifies a cache file: magic, format, sizes, checksum, and (if expect != NULL) the key.
 * @return DSV4_OK; DSV4_ERR_IO (missing/unreadable); DSV4_ERR_FORMAT (bad or foreign: why in last_error). */
DSV4_INTERNAL dsv4_status dsv4_cache_read(const char *path, const dsv4_key *expect, dsv4_cubin *out);
/* Publishes a cubin at path: temp file in the same folder, write, fsync, rename, fsync the folder. */
DSV4_INTERNAL dsv4_status dsv4_cache_write(const char *path, const dsv4_cubin *c);
/* Serialises a cubin into a cache file's bytes (malloc()ed). */
DSV4_INTERNAL dsv4_status dsv4_cache_encode(const dsv4_cubin *c, uint8_t **out, size_t *out_size);
/* Parses cache file bytes (the fuzz target's entry point). */
DSV4_INTERNAL dsv4_status dsv4_cache_decode(const uint8_t *data, size_t size, const dsv4_key *expect,
                                            dsv4_cubin *out);
DSV4_INTERNAL dsv4_status dsv4_mkdir_p(const char *path);

#endif
