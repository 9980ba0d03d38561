/* NVRTC compilation, cache keys, and the compile-or-load path shared by contexts and precompile. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <errno.h>
#include <fcntl.h>
#include <nvrtc.h>
#include <sys/file.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "jit.h"

struct dsv4_jit {
  dsv4_jit_config cfg;
  atomic_bool disk_write_ok;
  atomic_llong compiles, disk_hits, memory_hits, disk_writes, disk_rejected;
  atomic_llong compile_us;
};

/* Options every program is compiled with; the arch option is added per call. */
static const char *const k_base_options[] = {"-std=c++17", "--device-as-default-execution-space",
                                             "-DDSV4_JIT=1"};
#define NUM_BASE_OPTIONS ((int)(sizeof k_base_options / sizeof k_base_options[0]))

/* ---------------- keys ---------------- */

static void hash_field(XXH3_state_t *st, const void *p, size_t n) {
  uint64_t len = n;  /* length-prefixed, so field boundaries can't shift */
  XXH3_128bits_update(st, &len, sizeof len);
  if (n) XXH3_128bits_update(st, p, n);
}
static void hash_str(XXH3_state_t *st, const char *s) { hash_field(st, s ? s : "", s ? strlen(s) : 0); }

dsv4_key dsv4_key_compute(const dsv4_key_inputs *in) {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  hash_str(&st, "dsv4-cache-key-v1");
  hash_field(&st, in->source_text, in->source_size);
  hash_field(&st, in->headers_text, in->headers_size);
  hash_str(&st, in->name_expr);
  hash_str(&st, in->arch);
  int32_t n = in->num_options;
  hash_field(&st, &n, sizeof n);
  for (int i = 0; i < in->num_options; ++i) hash_str(&st, in->options[i]);
  int32_t v[2] = {in->nvrtc_major, in->nvrtc_minor};
  hash_field(&st, v, sizeof v);
  hash_str(&st, in->lib_version);
  XXH128_hash_t h = XXH3_128bits_digest(&st);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  dsv4_key k;
  memcpy(k.bytes, c.digest, 16);
  return k;
}

void dsv4_key_hex(const dsv4_key *k, char out[33]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) {
    out[2 * i] = hx[k->bytes[i] >> 4];
    out[2 * i + 1] = hx[k->bytes[i] & 15];
  }
  out[32] = '\0';
}

/* All embedded headers (*.cuh), names and bytes, built once. */
static char *g_headers_blob;
static size_t g_headers_size;
static pthread_once_t g_headers_once = PTHREAD_ONCE_INIT;
static void headers_build(void) {
  size_t total = 0;
  for (size_t i = 0; i < dsv4_embedded_file_count; ++i)
    if (strstr(dsv4_embedded_files[i].name, ".cuh")) total += strlen(dsv4_embedded_files[i].name) + 1 + dsv4_embedded_files[i].size + 1;
  g_headers_blob = malloc(total + 1);
  if (!g_headers_blob) return;
  for (size_t i = 0; i < dsv4_embedded_file_count; ++i) {
    const dsv4_embedded_file *f = &dsv4_embedded_files[i];
    if (!strstr(f->name, ".cuh")) continue;
    size_t nl = strlen(f->name) + 1;
    memcpy(g_headers_blob + g_headers_size, f->name, nl);
    g_headers_size += nl;
    memcpy(g_headers_blob + g_headers_size, f->text, f->size + 1);
    g_headers_size += f->size + 1;
  }
}

static const dsv4_embedded_file *find_source(const char *name) {
  for (size_t i = 0; i < dsv4_embedded_file_count; ++i)
    if (!strcmp(dsv4_embedded_files[i].name, name)) return &dsv4_embedded_files[i];
  return NULL;
}

typedef struct compile_plan {
  const dsv4_embedded_file *src;
  const char *options[DSV4_MAX_OPTIONS];
  int num_options;
  char arch_opt[48];
  const char *arch;
  dsv4_key key;
} compile_plan;

static dsv4_status plan(const dsv4_kernel_spec *spec, const char *arch, compile_plan *p) {
  memset(p, 0, sizeof *p);
  p->src = find_source(spec->source);
  if (!p->src) return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "no embedded kernel source named %s", spec->source);
  DSV4_TRY(dsv4_arch_check(arch));
  pthread_once(&g_headers_once, headers_build);
  if (!g_headers_blob) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "embedding kernel headers");
  p->arch = arch;
  snprintf(p->arch_opt, sizeof p->arch_opt, "--gpu-architecture=%s", arch);
  for (int i = 0; i < NUM_BASE_OPTIONS; ++i) p->options[p->num_options++] = k_base_options[i];
  p->options[p->num_options++] = p->arch_opt;
  /* DSV4_JIT_LINEINFO=1: source line tables in the cubin, for a profiler's source view (part of the key, as
   * every option is: such modules are cached apart from the plain ones). */
  if (dsv4_env_get()->lineinfo) p->options[p->num_options++] = "-lineinfo";
  int maj = 0, min = 0;
  nvrtcVersion(&maj, &min);
  dsv4_key_inputs in = {p->src->text, p->src->size, g_headers_blob, g_headers_size, spec->name_expr, arch,
                        p->options, p->num_options, maj, min, DSV4_VERSION_STRING};
  p->key = dsv4_key_compute(&in);
  return DSV4_OK;
}

dsv4_status dsv4_jit_key(const dsv4_kernel_spec *spec, const char *arch, dsv4_key *out) {
  compile_plan p;
  DSV4_TRY(plan(spec, arch, &p));
  *out = p.key;
  return DSV4_OK;
}

/* ---------------- arch ---------------- */

void dsv4_arch_for_cc(int major, int minor, char out[16]) {
  if ((major == 9 && minor == 0) || (major == 10 && minor == 0))
    snprintf(out, 16, "sm_%d%da", major, minor);
  else
    snprintf(out, 16, "sm_%d%d", major, minor);
}

dsv4_status dsv4_arch_check(const char *arch) { return dsv4_arch_number(arch, NULL); }

dsv4_status dsv4_arch_number(const char *arch, int *out) {
  if (!arch) return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "argument 'arch' is NULL");
  const char *p = arch;
  if (strncmp(p, "sm_", 3) != 0) goto bad;
  p += 3;
  int num = 0, digits = 0;
  while (*p >= '0' && *p <= '9' && digits < 4) num = num * 10 + (*p++ - '0'), ++digits;
  if (digits < 2) goto bad;
  if (*p == 'a' || *p == 'f') ++p;
  if (*p != '\0') goto bad;
  int n = 0;
  if (nvrtcGetNumSupportedArchs(&n) != NVRTC_SUCCESS || n <= 0 || n > 256)
    return dsv4_fail(DSV4_ERR_NVRTC, "NVRTC cannot list its supported archs");
  int archs[256];
  nvrtcGetSupportedArchs(archs);
  for (int i = 0; i < n; ++i)
    if (archs[i] == num) {
      if (out) *out = num;
      return DSV4_OK;
    }
  return dsv4_fail(DSV4_ERR_UNSUPPORTED, "argument 'arch' = %s: this NVRTC cannot target it", arch);
bad:
  return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "argument 'arch' = '%s' is not of the form sm_XY[a]", arch);
}

/* ---------------- jit object ---------------- */

dsv4_jit_config dsv4_jit_config_from_env(void) {
  const dsv4_env *e = dsv4_env_get();
  dsv4_jit_config c;
  memset(&c, 0, sizeof c);
  c.disk_enabled = e->cache_enabled && e->cache_dir[0] != '\0';
  snprintf(c.dir, sizeof c.dir, "%s", e->cache_dir);
  return c;
}

dsv4_status dsv4_jit_create(const dsv4_jit_config *cfg, dsv4_jit **out) {
  *out = NULL;
  dsv4_jit *j = calloc(1, sizeof *j);
  if (!j) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "allocating the JIT");
  j->cfg = *cfg;
  atomic_store(&j->disk_write_ok, cfg->disk_enabled);
  *out = j;
  return DSV4_OK;
}

void dsv4_jit_destroy(dsv4_jit *j) { free(j); }

void dsv4_jit_get_stats(dsv4_jit *j, dsv4_jit_stats *o) {
  o->compiles = atomic_load(&j->compiles);
  o->disk_hits = atomic_load(&j->disk_hits);
  o->memory_hits = atomic_load(&j->memory_hits);
  o->disk_writes = atomic_load(&j->disk_writes);
  o->disk_rejected = atomic_load(&j->disk_rejected);
  o->compile_ms = (double)atomic_load(&j->compile_us) / 1000.0;
}

void dsv4_jit_count_memory_hit(dsv4_jit *j) { atomic_fetch_add(&j->memory_hits, 1); }

void dsv4_cubin_free(dsv4_cubin *c) {
  free(c->image);
  c->image = NULL;
  c->size = 0;
}

static void dump_file(const char *dir, const char *tag, const char *hex, const char *ext, const char *text,
                      size_t n) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s-%s.%s", dir, tag, hex, ext);
  FILE *f = fopen(path, "wb");
  if (!f) {
    dsv4_log(DSV4_LOG_WARN, "DSV4_DUMP_DIR: cannot write %s", path);
    return;
  }
  fwrite(text, 1, n, f);
  fclose(f);
}

static void dump_program(const compile_plan *p, const dsv4_kernel_spec *spec, const char *lowered,
                         const char *log, size_t log_size) {
  const char *dir = dsv4_env_get()->dump_dir;
  if (!dir[0] || dsv4_mkdir_p(dir) != DSV4_OK) return;
  char hex[33];
  dsv4_key_hex(&p->key, hex);
  dump_file(dir, spec->tag, hex, "cu", p->src->text, p->src->size);
  char opts[4096];
  int n = snprintf(opts, sizeof opts, "name_expression: %s\nlowered_name: %s\n", spec->name_expr,
                   lowered ? lowered : "(compile failed)");
  for (int i = 0; i < p->num_options && n < (int)sizeof opts; ++i)
    n += snprintf(opts + n, sizeof opts - (size_t)n, "option: %s\n", p->options[i]);
  dump_file(dir, spec->tag, hex, "options", opts, strlen(opts));
  dump_file(dir, spec->tag, hex, "log", log ? log : "", log ? log_size : 0);
}

#define NVRTC_TRY(call, what)                                                                     \
  do {                                                                                            \
    nvrtcResult r_ = (call);                                                                      \
    if (r_ != NVRTC_SUCCESS) {                                                                    \
      s = dsv4_fail(DSV4_ERR_NVRTC, "%s (%s): %s", what, spec->tag, nvrtcGetErrorString(r_));     \
      goto done;                                                                                  \
    }                                                                                             \
  } while (0)

static dsv4_status compile_planned(dsv4_jit *j, const compile_plan *p, const dsv4_kernel_spec *spec,
                                   dsv4_cubin *out) {
  memset(out, 0, sizeof *out);
  const char *hdr_names[64], *hdr_texts[64];
  int nh = 0;
  for (size_t i = 0; i < dsv4_embedded_file_count && nh < 64; ++i) {
    if (!strstr(dsv4_embedded_files[i].name, ".cuh")) continue;
    hdr_names[nh] = dsv4_embedded_files[i].name;
    hdr_texts[nh++] = dsv4_embedded_files[i].text;
  }
  dsv4_status s = DSV4_OK;
  char *log = NULL;
  size_t log_size = 0;
  const char *lowered = NULL;
  double t0 = dsv4_now_ms();
  nvrtcProgram prog = NULL;
  NVRTC_TRY(nvrtcCreateProgram(&prog, p->src->text, p->src->name, nh, hdr_texts, hdr_names), "nvrtcCreateProgram");
  NVRTC_TRY(nvrtcAddNameExpression(prog, spec->name_expr), "nvrtcAddNameExpression");
  nvrtcResult cr = nvrtcCompileProgram(prog, p->num_options, p->options);
  if (nvrtcGetProgramLogSize(prog, &log_size) == NVRTC_SUCCESS && log_size > 1) {
    log = malloc(log_size);
    if (log && nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS) log[0] = '\0';
  }
  if (cr != NVRTC_SUCCESS) {
    s = dsv4_fail(DSV4_ERR_NVRTC, "compiling %s (%s) for %s failed: %s\n%s", spec->name_expr, p->src->name,
                  p->arch, nvrtcGetErrorString(cr), log ? log : "(no log)");
    goto done;
  }
  NVRTC_TRY(nvrtcGetLoweredName(prog, spec->name_expr, &lowered), "nvrtcGetLoweredName");
  if (strlen(lowered) >= sizeof out->lowered_name) {
    s = dsv4_fail(DSV4_ERR_NVRTC, "lowered name of %s is too long", spec->name_expr);
    goto done;
  }
  snprintf(out->lowered_name, sizeof out->lowered_name, "%s", lowered);
  size_t size = 0;
  NVRTC_TRY(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
  out->image = malloc(size);
  if (!out->image) {
    s = dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "cubin of %zu bytes", size);
    goto done;
  }
  NVRTC_TRY(nvrtcGetCUBIN(prog, out->image), "nvrtcGetCUBIN");
  out->size = size;
  out->key = p->key;
done:;
  double ms = dsv4_now_ms() - t0;
  if (j) {
    atomic_fetch_add(&j->compiles, 1);
    atomic_fetch_add(&j->compile_us, (long long)(ms * 1000.0));
  }
  dump_program(p, spec, s == DSV4_OK ? out->lowered_name : NULL, log, log_size ? log_size - 1 : 0);
  if (s == DSV4_OK)
    dsv4_log(DSV4_LOG_INFO, "compiled %s for %s in %.1f ms (%zu-byte cubin)", spec->name_expr, p->arch,
             ms, out->size);
  else
    dsv4_cubin_free(out);
  free(log);
  if (prog) nvrtcDestroyProgram(&prog);
  return s;
}

dsv4_status dsv4_jit_compile(dsv4_jit *j, const dsv4_kernel_spec *spec, const char *arch, dsv4_cubin *out) {
  compile_plan p;
  DSV4_TRY(plan(spec, arch, &p));
  return compile_planned(j, &p, spec, out);
}

static void warn_unwritable_once(const char *dir, const char *why) {
  static atomic_flag warned = ATOMIC_FLAG_INIT;
  if (!atomic_flag_test_and_set(&warned))
    fprintf(stderr, "dsv4: warning: the kernel cache folder %s cannot be written (%s); compiled kernels "
            "stay in memory only\n", dir, why);
}

dsv4_status dsv4_jit_get(dsv4_jit *j, const dsv4_kernel_spec *spec, const char *arch, bool require_disk,
                         dsv4_cubin *out) {
  memset(out, 0, sizeof *out);
  compile_plan p;
  DSV4_TRY(plan(spec, arch, &p));
  if (require_disk && !j->cfg.disk_enabled)
    return dsv4_fail(DSV4_ERR_IO, "the disk cache is disabled (DSV4_CACHE=0 or no cache folder): nothing to warm");
  char path[4400] = "";
  if (j->cfg.disk_enabled) {
    dsv4_cache_path(j->cfg.dir, arch, spec->tag, &p.key, path, sizeof path);
    dsv4_status s = dsv4_cache_read(path, &p.key, out);
    if (s == DSV4_OK) {
      atomic_fetch_add(&j->disk_hits, 1);
      dsv4_log(DSV4_LOG_DEBUG, "disk hit %s", path);
      return DSV4_OK;
    }
    if (s == DSV4_ERR_FORMAT) {
      atomic_fetch_add(&j->disk_rejected, 1);
      dsv4_log(DSV4_LOG_INFO, "rejected cache file, recompiling: %s", dsv4_last_error());
    }
  }
  /* One compile per kernel across processes: hold an advisory lock on <root>/.locks/<arch>-<tag>-<key>
   * while compiling and publishing, and look again once we have it: a process that waited finds the file
   * the holder published. The lock is only an economy: without it (no lock folder, a file system without
   * flock) every process compiles and the rename still publishes a whole file. */
  int lock_fd = -1;
  if (j->cfg.disk_enabled && atomic_load(&j->disk_write_ok)) {
    char lock_dir[4200], lock_path[4400], hex[33];
    snprintf(lock_dir, sizeof lock_dir, "%s/.locks", j->cfg.dir);
    dsv4_key_hex(&p.key, hex);
    snprintf(lock_path, sizeof lock_path, "%s/%s-%s-%s", lock_dir, arch, spec->tag, hex);
    if (dsv4_mkdir_p(lock_dir) == DSV4_OK) lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd >= 0) {
      int r;
      while ((r = flock(lock_fd, LOCK_EX)) != 0 && errno == EINTR) {
      }
      if (r == 0 && dsv4_cache_read(path, &p.key, out) == DSV4_OK) {
        close(lock_fd);  /* releases the lock */
        atomic_fetch_add(&j->disk_hits, 1);
        dsv4_log(DSV4_LOG_DEBUG, "disk hit after waiting for another compile: %s", path);
        dsv4_clear_error();
        return DSV4_OK;
      }
    }
  }
  dsv4_status cs = compile_planned(j, &p, spec, out);
  if (cs != DSV4_OK) {
    if (lock_fd >= 0) close(lock_fd);
    return cs;
  }
  if (j->cfg.disk_enabled && (require_disk || atomic_load(&j->disk_write_ok))) {
    dsv4_status s = dsv4_cache_write(path, out);
    if (s == DSV4_OK) {
      atomic_fetch_add(&j->disk_writes, 1);
      dsv4_log(DSV4_LOG_INFO, "cached %s", path);
    } else if (require_disk) {
      dsv4_cubin_free(out);
      if (lock_fd >= 0) close(lock_fd);
      return s;
    } else {
      atomic_store(&j->disk_write_ok, false);
      warn_unwritable_once(j->cfg.dir, dsv4_last_error());
    }
  }
  if (lock_fd >= 0) close(lock_fd);
  dsv4_clear_error();
  return DSV4_OK;
}

typedef struct get_job {
  dsv4_jit *jit;
  const dsv4_kernel_spec *spec;
  const char *arch;
  bool require_disk;
  dsv4_cubin *out;
  dsv4_status status;
  char error[2048];
} get_job;

static void *get_job_run(void *arg) {
  get_job *job = arg;
  job->status = dsv4_jit_get(job->jit, job->spec, job->arch, job->require_disk, job->out);
  if (job->status != DSV4_OK) snprintf(job->error, sizeof job->error, "%s", dsv4_last_error());
  return NULL;
}

dsv4_status dsv4_jit_get_many(dsv4_jit *j, const dsv4_kernel_spec *specs, int n, const char *arch,
                              bool require_disk, dsv4_cubin *out) {
  get_job *jobs = calloc((size_t)(n > 0 ? n : 1), sizeof *jobs);
  pthread_t *threads = calloc((size_t)(n > 0 ? n : 1), sizeof *threads);
  if (!jobs || !threads) {
    free(jobs), free(threads);
    return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "dsv4_jit_get_many: %d jobs", n);
  }
  for (int i = 0; i < n; ++i) {
    jobs[i] = (get_job){j, &specs[i], arch, require_disk, &out[i], DSV4_OK, ""};
    memset(&out[i], 0, sizeof out[i]);
  }
  /* The first job runs on this thread; a thread that cannot start runs its job here too. */
  bool *started = calloc((size_t)(n > 0 ? n : 1), sizeof *started);
  if (!started) {
    free(jobs), free(threads);
    return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "dsv4_jit_get_many: %d jobs", n);
  }
  for (int i = 1; i < n; ++i) started[i] = pthread_create(&threads[i], NULL, get_job_run, &jobs[i]) == 0;
  if (n > 0) get_job_run(&jobs[0]);
  for (int i = 1; i < n; ++i) {
    if (started[i]) pthread_join(threads[i], NULL);
    else get_job_run(&jobs[i]);
  }
  dsv4_status s = DSV4_OK;
  for (int i = 0; i < n && s == DSV4_OK; ++i)
    if (jobs[i].status != DSV4_OK) s = dsv4_fail(jobs[i].status, "%s", jobs[i].error);
  if (s != DSV4_OK)
    for (int i = 0; i < n; ++i) dsv4_cubin_free(&out[i]);
  free(jobs), free(threads), free(started);
  return s;
}
