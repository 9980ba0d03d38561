/* Safetensors reader, gate loader and a small writer (see safetensors.h). */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dsv4's safetensors reader assumes a little-endian host (as the format does)"
#endif

/* ---------------- dtypes ---------------- */

static const struct {
  const char *name;
  int bits;
} k_dtypes[DSV4_ST_NUM_DTYPES] = {
    [DSV4_ST_UNKNOWN] = {"?", 0},        [DSV4_ST_BOOL] = {"BOOL", 8},
    [DSV4_ST_U8] = {"U8", 8},            [DSV4_ST_I8] = {"I8", 8},
    [DSV4_ST_F8_E5M2] = {"F8_E5M2", 8},  [DSV4_ST_F8_E4M3] = {"F8_E4M3", 8},
    [DSV4_ST_F8_E8M0] = {"F8_E8M0", 8},  [DSV4_ST_I16] = {"I16", 16},
    [DSV4_ST_U16] = {"U16", 16},         [DSV4_ST_F16] = {"F16", 16},
    [DSV4_ST_BF16] = {"BF16", 16},       [DSV4_ST_I32] = {"I32", 32},
    [DSV4_ST_U32] = {"U32", 32},         [DSV4_ST_F32] = {"F32", 32},
    [DSV4_ST_I64] = {"I64", 64},         [DSV4_ST_U64] = {"U64", 64},
    [DSV4_ST_F64] = {"F64", 64},         [DSV4_ST_C64] = {"C64", 64},
    [DSV4_ST_F4] = {"F4", 4},            [DSV4_ST_F6_E2M3] = {"F6_E2M3", 6},
    [DSV4_ST_F6_E3M2] = {"F6_E3M2", 6},
};

const char *dsv4_st_dtype_name(dsv4_st_dtype d) {
  return (d > DSV4_ST_UNKNOWN && d < DSV4_ST_NUM_DTYPES) ? k_dtypes[d].name : "?";
}

int dsv4_st_dtype_bits(dsv4_st_dtype d) {
  return (d > DSV4_ST_UNKNOWN && d < DSV4_ST_NUM_DTYPES) ? k_dtypes[d].bits : 0;
}

static dsv4_st_dtype dtype_parse(const char *s) {
  for (int d = DSV4_ST_UNKNOWN + 1; d < DSV4_ST_NUM_DTYPES; ++d)
    if (!strcmp(s, k_dtypes[d].name)) return (dsv4_st_dtype)d;
  return DSV4_ST_UNKNOWN;
}

/* ---------------- the open file ---------------- */

struct dsv4_st_file {
  char *path;
  int fd;
  uint64_t file_size, header_len, data_start, data_size;
  dsv4_st_tensor *tensors; /* sorted by name */
  size_t num_tensors;
  char **meta_keys, **meta_values;
  size_t num_meta;
};

/* ST_FMT("format", path, ...): DSV4_ERR_FORMAT with "safetensors '<path>': " in front. */
#define ST_FMT(...) dsv4_fail(DSV4_ERR_FORMAT, "safetensors '%s': " __VA_ARGS__)

static void shape_str(const int64_t *shape, int rank, char *buf, size_t cap) {
  size_t n = 0;
  n += (size_t)snprintf(buf + n, cap - n, "[");
  for (int i = 0; i < rank && n < cap; ++i)
    n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* pread all of [off, off + len) or fail. */
static dsv4_status pread_all(int fd, void *dst, size_t len, uint64_t off, const char *path, const char *what) {
  char *p = dst;
  while (len > 0) {
    size_t step = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
    ssize_t r = pread(fd, p, step, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return dsv4_fail(DSV4_ERR_IO, "safetensors '%s': reading %s: %s", path, what, strerror(errno));
    }
    if (r == 0)
      return dsv4_fail(DSV4_ERR_IO, "safetensors '%s': reading %s: unexpected end of file at byte %llu", path,
                       what, (unsigned long long)off);
    p += r, len -= (size_t)r, off += (uint64_t)r;
  }
  return DSV4_OK;
}

/* A JSON number that is a non-negative integer representable exactly (<= 2^53). */
static bool json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return false;
  double v = j->valuedouble;
  if (!(v >= 0.0 && v <= 9007199254740992.0)) return false; /* also rejects NaN */
  uint64_t u = (uint64_t)v;
  if ((double)u != v) return false;
  *out = u;
  return true;
}

static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const dsv4_st_tensor *)a)->name, ((const dsv4_st_tensor *)b)->name);
}

void dsv4_st_close(dsv4_st_file *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  for (size_t i = 0; i < f->num_tensors; ++i) {
    free((char *)f->tensors[i].name);
    free((char *)f->tensors[i].dtype_str);
  }
  free(f->tensors);
  for (size_t i = 0; i < f->num_meta; ++i) {
    free(f->meta_keys[i]);
    free(f->meta_values[i]);
  }
  free(f->meta_keys);
  free(f->meta_values);
  free(f->path);
  free(f);
}

/* Validates one tensor entry and fills *t (name and dtype_str are strdup()ed by the caller afterwards). */
static dsv4_status parse_entry(const dsv4_st_file *f, const cJSON *e, dsv4_st_tensor *t) {
  const char *path = f->path, *name = e->string;
  if (!cJSON_IsObject(e)) return ST_FMT("tensor '%s': the entry is not a JSON object", path, name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!dt) return ST_FMT("tensor '%s': no \"dtype\"", path, name);
  if (!sh) return ST_FMT("tensor '%s': no \"shape\"", path, name);
  if (!of) return ST_FMT("tensor '%s': no \"data_offsets\"", path, name);
  if (!cJSON_IsString(dt) || !dt->valuestring)
    return ST_FMT("tensor '%s': \"dtype\" is not a string", path, name);
  if (!cJSON_IsArray(sh)) return ST_FMT("tensor '%s': \"shape\" is not an array", path, name);
  if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
    return ST_FMT("tensor '%s': \"data_offsets\" is not an array of two numbers", path, name);
  t->dtype = dtype_parse(dt->valuestring);
  int rank = cJSON_GetArraySize(sh);
  if (rank > DSV4_ST_MAX_RANK)
    return ST_FMT("tensor '%s': rank %d is above the %d this reader supports", path, name, rank, DSV4_ST_MAX_RANK);
  t->rank = rank;
  uint64_t numel = 1;
  bool overflow = false;
  int i = 0;
  for (const cJSON *d = sh->child; d; d = d->next, ++i) {
    uint64_t v;
    if (!json_uint(d, &v))
      return ST_FMT("tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
    t->shape[i] = (int64_t)v;
    if (__builtin_mul_overflow(numel, v, &numel)) overflow = true;
  }
  uint64_t begin, end;
  if (!json_uint(of->child, &begin) || !json_uint(of->child->next, &end))
    return ST_FMT("tensor '%s': \"data_offsets\" holds a value that is not a non-negative integer", path, name);
  if (begin > end)
    return ST_FMT("tensor '%s': data_offsets [%llu, %llu] has begin > end", path, name,
                  (unsigned long long)begin, (unsigned long long)end);
  if (end > f->data_size)
    return ST_FMT("tensor '%s': data_offsets end %llu is beyond the data section (%llu bytes)", path, name,
                  (unsigned long long)end, (unsigned long long)f->data_size);
  t->begin = begin, t->end = end;
  char sbuf[256];
  shape_str(t->shape, t->rank, sbuf, sizeof sbuf);
  if (overflow)
    return ST_FMT("tensor '%s': the element count of shape %s overflows 64 bits", path, name, sbuf);
  t->numel = numel;
  if (t->dtype != DSV4_ST_UNKNOWN) {
    uint64_t bits = 0;
    bool ovf = __builtin_mul_overflow(numel, (uint64_t)dsv4_st_dtype_bits(t->dtype), &bits);
    if (ovf || bits % 8 != 0 || bits / 8 != end - begin) {
      char need[64];
      if (ovf) snprintf(need, sizeof need, "more than 2^64 bits");
      else if (bits % 8 != 0) snprintf(need, sizeof need, "%llu bits, not a whole number of bytes", (unsigned long long)bits);
      else snprintf(need, sizeof need, "%llu bytes", (unsigned long long)(bits / 8));
      return ST_FMT("tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s %s needs %s", path, name,
                    (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin),
                    dt->valuestring, sbuf, need);
    }
  }
  return DSV4_OK;
}

static dsv4_status parse_header(dsv4_st_file *f, const char *text) {
  const char *path = f->path;
  const char *err_at = NULL;
  cJSON *root = cJSON_ParseWithOpts(text, &err_at, 1);
  if (!root)
    return ST_FMT("the %llu-byte header is not valid JSON (error near header byte %lld)", path,
                  (unsigned long long)f->header_len, err_at ? (long long)(err_at - text) : -1LL);
  dsv4_status s = DSV4_OK;
  if (!cJSON_IsObject(root)) {
    s = ST_FMT("the header is not a JSON object", path);
    goto out;
  }
  size_t n = 0;
  for (const cJSON *e = root->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
  f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
  if (!f->tensors) {
    s = dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating %zu tensor entries", path, n);
    goto out;
  }
  bool seen_meta = false;
  for (const cJSON *e = root->child; e; e = e->next) {
    if (!strcmp(e->string, "__metadata__")) {
      if (seen_meta) {
        s = ST_FMT("\"__metadata__\" appears twice", path);
        goto out;
      }
      seen_meta = true;
      if (!cJSON_IsObject(e)) {
        s = ST_FMT("\"__metadata__\" is not a JSON object", path);
        goto out;
      }
      size_t m = (size_t)cJSON_GetArraySize(e);
      f->meta_keys = calloc(m ? m : 1, sizeof *f->meta_keys);
      f->meta_values = calloc(m ? m : 1, sizeof *f->meta_values);
      if (!f->meta_keys || !f->meta_values) {
        s = dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating metadata", path);
        goto out;
      }
      for (const cJSON *kv = e->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv) || !kv->valuestring) {
          s = ST_FMT("\"__metadata__\" value of '%s' is not a string", path, kv->string);
          goto out;
        }
        f->meta_keys[f->num_meta] = strdup(kv->string);
        f->meta_values[f->num_meta] = strdup(kv->valuestring);
        f->num_meta++;
        if (!f->meta_keys[f->num_meta - 1] || !f->meta_values[f->num_meta - 1]) {
          s = dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': copying metadata", path);
          goto out;
        }
      }
      continue;
    }
    dsv4_st_tensor *t = &f->tensors[f->num_tensors];
    s = parse_entry(f, e, t);
    if (s != DSV4_OK) goto out;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    t->name = strdup(e->string);
    t->dtype_str = strdup(dt->valuestring);
    f->num_tensors++;
    if (!t->name || !t->dtype_str) {
      s = dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': copying tensor names", path);
      goto out;
    }
  }
  qsort(f->tensors, f->num_tensors, sizeof *f->tensors, cmp_tensor);
  for (size_t i = 1; i < f->num_tensors; ++i)
    if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name)) {
      s = ST_FMT("tensor '%s' appears twice in the header", path, f->tensors[i].name);
      goto out;
    }
out:
  cJSON_Delete(root);
  return s;
}

dsv4_status dsv4_st_open(const char *path, dsv4_st_file **out) {
  static const char *fn = "dsv4_st_open";
  DSV4_CHECK_ARG(out != NULL, fn, "out", "is NULL");
  *out = NULL;
  DSV4_CHECK_ARG(path != NULL, fn, "path", "is NULL");
  dsv4_st_file *f = calloc(1, sizeof *f);
  if (!f) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating the reader", path);
  f->fd = -1;
  f->path = strdup(path);
  if (!f->path) {
    free(f);
    return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating the reader", path);
  }
  dsv4_status s = DSV4_OK;
  char *text = NULL;
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    s = dsv4_fail(DSV4_ERR_IO, "safetensors '%s': cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat st;
  if (fstat(f->fd, &st) != 0) {
    s = dsv4_fail(DSV4_ERR_IO, "safetensors '%s': cannot stat: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    s = dsv4_fail(DSV4_ERR_IO, "safetensors '%s': not a regular file", path);
    goto fail;
  }
  f->file_size = (uint64_t)st.st_size;
  if (f->file_size < 8) {
    s = ST_FMT("the file is %llu bytes, shorter than the 8-byte header length", path,
               (unsigned long long)f->file_size);
    goto fail;
  }
  uint8_t len8[8];
  if ((s = pread_all(f->fd, len8, 8, 0, path, "the header length")) != DSV4_OK) goto fail;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len8[i];
  f->header_len = n;
  if (n > DSV4_ST_MAX_HEADER) {
    s = ST_FMT("header length %llu is larger than the %llu-byte limit", path, (unsigned long long)n,
               DSV4_ST_MAX_HEADER);
    goto fail;
  }
  if (n > f->file_size - 8) {
    s = ST_FMT("header length %llu is larger than the %llu bytes after it", path, (unsigned long long)n,
               (unsigned long long)(f->file_size - 8));
    goto fail;
  }
  f->data_start = 8 + n;
  f->data_size = f->file_size - f->data_start;
  text = malloc((size_t)n + 1);
  if (!text) {
    s = dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating the %llu-byte header", path,
                  (unsigned long long)n);
    goto fail;
  }
  if ((s = pread_all(f->fd, text, (size_t)n, 8, path, "the header")) != DSV4_OK) goto fail;
  text[n] = '\0';
  if (memchr(text, '\0', (size_t)n)) {
    s = ST_FMT("the header holds a NUL byte", path);
    goto fail;
  }
  if ((s = parse_header(f, text)) != DSV4_OK) goto fail;
  free(text);
  *out = f;
  return DSV4_OK;
fail:
  free(text);
  dsv4_st_close(f);
  return s;
}

const char *dsv4_st_path(const dsv4_st_file *f) { return f ? f->path : NULL; }
size_t dsv4_st_count(const dsv4_st_file *f) { return f ? f->num_tensors : 0; }

const dsv4_st_tensor *dsv4_st_at(const dsv4_st_file *f, size_t i) {
  return (f && i < f->num_tensors) ? &f->tensors[i] : NULL;
}

const dsv4_st_tensor *dsv4_st_get(const dsv4_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  dsv4_st_tensor key;
  key.name = name;
  return bsearch(&key, f->tensors, f->num_tensors, sizeof key, cmp_tensor);
}

const char *dsv4_st_metadata(const dsv4_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (size_t i = 0; i < f->num_meta; ++i)
    if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
  return NULL;
}

dsv4_status dsv4_st_expect(const dsv4_st_file *f, const char *name, dsv4_st_dtype dtype, int rank,
                           const int64_t *shape, const dsv4_st_tensor **out) {
  static const char *fn = "dsv4_st_expect";
  DSV4_CHECK_ARG(f != NULL, fn, "f", "is NULL");
  DSV4_CHECK_ARG(name != NULL, fn, "name", "is NULL");
  DSV4_CHECK_ARG(rank >= 0 && rank <= DSV4_ST_MAX_RANK, fn, "rank", "is outside 0..16");
  DSV4_CHECK_ARG(rank == 0 || shape != NULL, fn, "shape", "is NULL");
  const dsv4_st_tensor *t = dsv4_st_get(f, name);
  if (!t) return ST_FMT("tensor '%s' is missing", f->path, name);
  if (t->dtype == DSV4_ST_UNKNOWN)
    return ST_FMT("tensor '%s' has dtype \"%s\", which this reader does not know (expected %s)", f->path, name,
                  t->dtype_str, dsv4_st_dtype_name(dtype));
  if (t->dtype != dtype)
    return ST_FMT("tensor '%s' has dtype %s, expected %s", f->path, name, t->dtype_str, dsv4_st_dtype_name(dtype));
  bool ok = t->rank == rank;
  for (int i = 0; ok && i < rank; ++i) ok = shape[i] < 0 || shape[i] == t->shape[i];
  if (!ok) {
    char got[256], want[256];
    shape_str(t->shape, t->rank, got, sizeof got);
    shape_str(shape, rank, want, sizeof want);
    return ST_FMT("tensor '%s' has shape %s, expected %s (-1 = any)", f->path, name, got, want);
  }
  if (out) *out = t;
  return DSV4_OK;
}

dsv4_status dsv4_st_read_range(const dsv4_st_file *f, const dsv4_st_tensor *t, uint64_t offset, void *dst,
                               size_t bytes) {
  static const char *fn = "dsv4_st_read_range";
  DSV4_CHECK_ARG(f != NULL, fn, "f", "is NULL");
  DSV4_CHECK_ARG(t != NULL, fn, "t", "is NULL");
  DSV4_CHECK_ARG(dst != NULL || bytes == 0, fn, "dst", "is NULL");
  uint64_t size = t->end - t->begin;
  if (offset > size || bytes > size - offset)
    return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT,
                     "%s: safetensors '%s': tensor '%s': bytes [%llu, +%zu) are outside its %llu bytes", fn, f->path,
                     t->name, (unsigned long long)offset, bytes, (unsigned long long)size);
  char what[320];
  snprintf(what, sizeof what, "tensor '%s'", t->name);
  return pread_all(f->fd, dst, bytes, f->data_start + t->begin + offset, f->path, what);
}

dsv4_status dsv4_st_read(const dsv4_st_file *f, const dsv4_st_tensor *t, void *dst, size_t dst_bytes) {
  DSV4_CHECK_ARG(t != NULL, "dsv4_st_read", "t", "is NULL");
  if (dst_bytes != t->end - t->begin)
    return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "dsv4_st_read: tensor '%s' is %llu bytes, argument 'dst_bytes' = %zu",
                     t->name, (unsigned long long)(t->end - t->begin), dst_bytes);
  return dsv4_st_read_range(f, t, 0, dst, dst_bytes);
}

/* ---------------- the gate ---------------- */

void dsv4_gate_want_for_config(const dsv4_router_config *cfg, dsv4_gate_want *out) {
  memset(out, 0, sizeof *out);
  out->num_experts = cfg->num_experts;
  out->hidden_size = cfg->hidden_size;
  out->vocab_size = cfg->vocab_size;
  out->top_k = cfg->top_k;
  if (cfg->mode == DSV4_ROUTER_DENSE) {
    out->weight = DSV4_ST_REQUIRED, out->bias = DSV4_ST_REQUIRED, out->tid2eid = DSV4_ST_SKIP;
  } else {
    out->weight = cfg->hash_weights == DSV4_HASH_WEIGHTS_SCORED ? DSV4_ST_REQUIRED : DSV4_ST_SKIP;
    out->bias = DSV4_ST_OPTIONAL, out->tid2eid = DSV4_ST_REQUIRED;
  }
}

void dsv4_gate_host_free(dsv4_gate_host *g) {
  if (!g) return;
  free(g->weight);
  free(g->bias);
  free(g->tid2eid);
  memset(g, 0, sizeof *g);
}

static dsv4_status check_ids(const dsv4_st_file *f, const char *name, int64_t v, int64_t i, int32_t k, int32_t e) {
  if (v >= 0 && v < e) return DSV4_OK;
  return ST_FMT("tensor '%s': row %lld column %lld holds expert id %lld, outside [0,%d)", f->path, name,
                (long long)(i / k), (long long)(i % k), (long long)v, (int)e);
}

static dsv4_status load_tid2eid(const dsv4_st_file *f, const char *name, const dsv4_gate_want *w, int32_t **out) {
  const dsv4_st_tensor *t = dsv4_st_get(f, name);
  if (!t) return ST_FMT("tensor '%s' is missing", f->path, name);
  if (t->dtype != DSV4_ST_I32 && t->dtype != DSV4_ST_I64)
    return ST_FMT("tensor '%s' has dtype %s, expected I32 or I64", f->path, name, t->dtype_str);
  const int64_t shape[2] = {w->vocab_size, w->top_k};
  DSV4_TRY(dsv4_st_expect(f, name, t->dtype, 2, shape, NULL));
  const int64_t count = (int64_t)w->vocab_size * w->top_k;
  int32_t *ids = malloc((size_t)count * sizeof *ids);
  if (!ids) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating tensor '%s'", f->path, name);
  dsv4_status s = DSV4_OK;
  if (t->dtype == DSV4_ST_I32) {
    s = dsv4_st_read(f, t, ids, (size_t)count * sizeof *ids);
    for (int64_t i = 0; s == DSV4_OK && i < count; ++i) s = check_ids(f, name, ids[i], i, w->top_k, w->num_experts);
  } else {
    /* int64 -> int32 through a bounded buffer: never the whole tensor twice. */
    enum { CHUNK = 1 << 16 };
    int64_t *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) s = dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating a read buffer", f->path);
    for (int64_t i0 = 0; s == DSV4_OK && i0 < count; i0 += CHUNK) {
      int64_t m = count - i0 < CHUNK ? count - i0 : CHUNK;
      s = dsv4_st_read_range(f, t, (uint64_t)i0 * 8, buf, (size_t)m * 8);
      for (int64_t j = 0; s == DSV4_OK && j < m; ++j) {
        s = check_ids(f, name, buf[j], i0 + j, w->top_k, w->num_experts);
        ids[i0 + j] = (int32_t)buf[j];
      }
    }
    free(buf);
  }
  if (s != DSV4_OK) {
    free(ids);
    return s;
  }
  *out = ids;
  return DSV4_OK;
}

static dsv4_status load_gate(const dsv4_st_file *f, const char *prefix, const dsv4_gate_want *w,
                             dsv4_gate_host *g, char *name, size_t cap) {
  if (w->weight != DSV4_ST_SKIP) {
    snprintf(name, cap, "%sweight", prefix);
    if (dsv4_st_get(f, name)) {
      const int64_t shape[2] = {w->num_experts, w->hidden_size};
      const dsv4_st_tensor *t = NULL;
      DSV4_TRY(dsv4_st_expect(f, name, DSV4_ST_BF16, 2, shape, &t));
      size_t bytes = (size_t)w->num_experts * (size_t)w->hidden_size * 2;
      g->weight = malloc(bytes);
      if (!g->weight) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating '%s'", f->path, name);
      DSV4_TRY(dsv4_st_read(f, t, g->weight, bytes));
    } else if (w->weight == DSV4_ST_REQUIRED) {
      return ST_FMT("tensor '%s' is missing", f->path, name);
    }
  }
  if (w->bias != DSV4_ST_SKIP) {
    snprintf(name, cap, "%sbias", prefix);
    const dsv4_st_tensor *b1 = dsv4_st_get(f, name);
    snprintf(name, cap, "%se_score_correction_bias", prefix);
    const dsv4_st_tensor *b2 = dsv4_st_get(f, name);
    if (b1 && b2)
      return ST_FMT("both '%sbias' and '%se_score_correction_bias' exist; which is the gate bias is ambiguous",
                    f->path, prefix, prefix);
    if (b1 || b2) {
      const char *suffix = b1 ? "bias" : "e_score_correction_bias";
      snprintf(name, cap, "%s%s", prefix, suffix);
      const int64_t shape[1] = {w->num_experts};
      const dsv4_st_tensor *t = NULL;
      DSV4_TRY(dsv4_st_expect(f, name, DSV4_ST_F32, 1, shape, &t));
      g->bias = malloc((size_t)w->num_experts * sizeof(float));
      if (!g->bias) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "safetensors '%s': allocating '%s'", f->path, name);
      DSV4_TRY(dsv4_st_read(f, t, g->bias, (size_t)w->num_experts * sizeof(float)));
      snprintf(g->bias_name, sizeof g->bias_name, "%s", suffix);
    } else if (w->bias == DSV4_ST_REQUIRED) {
      return ST_FMT("neither '%sbias' nor '%se_score_correction_bias' is present", f->path, prefix, prefix);
    }
  }
  if (w->tid2eid != DSV4_ST_SKIP) {
    snprintf(name, cap, "%stid2eid", prefix);
    if (dsv4_st_get(f, name)) {
      DSV4_TRY(load_tid2eid(f, name, w, &g->tid2eid));
    } else if (w->tid2eid == DSV4_ST_REQUIRED) {
      return ST_FMT("tensor '%s' is missing", f->path, name);
    }
  }
  return DSV4_OK;
}

dsv4_status dsv4_st_load_gate(const char *path, const char *prefix, const dsv4_gate_want *want,
                              dsv4_gate_host *out) {
  static const char *fn = "dsv4_st_load_gate";
  DSV4_CHECK_ARG(out != NULL, fn, "out", "is NULL");
  memset(out, 0, sizeof *out);
  DSV4_CHECK_ARG(path != NULL, fn, "path", "is NULL");
  DSV4_CHECK_ARG(want != NULL, fn, "want", "is NULL");
  const dsv4_gate_want *w = want;
  DSV4_CHECK_ARG(w->weight >= DSV4_ST_SKIP && w->weight <= DSV4_ST_REQUIRED, fn, "want->weight", "is not a dsv4_st_need");
  DSV4_CHECK_ARG(w->bias >= DSV4_ST_SKIP && w->bias <= DSV4_ST_REQUIRED, fn, "want->bias", "is not a dsv4_st_need");
  DSV4_CHECK_ARG(w->tid2eid >= DSV4_ST_SKIP && w->tid2eid <= DSV4_ST_REQUIRED, fn, "want->tid2eid",
                 "is not a dsv4_st_need");
  DSV4_CHECK_RANGE(w->num_experts >= 1 && w->num_experts <= 1024, fn, "want->num_experts", w->num_experts, "1..1024");
  if (w->weight != DSV4_ST_SKIP)
    DSV4_CHECK_RANGE(w->hidden_size >= 8 && w->hidden_size <= 16384 && w->hidden_size % 8 == 0, fn,
                     "want->hidden_size", w->hidden_size, "8..16384, a multiple of 8");
  if (w->tid2eid != DSV4_ST_SKIP) {
    int kmax = w->num_experts < 16 ? w->num_experts : 16;
    DSV4_CHECK_RANGE(w->top_k >= 1 && w->top_k <= kmax, fn, "want->top_k", w->top_k, "1..min(num_experts,16)");
    DSV4_CHECK_RANGE(w->vocab_size >= 1 && w->vocab_size <= (1 << 24), fn, "want->vocab_size", w->vocab_size,
                     "1..2^24");
  }
  if (!prefix) prefix = "";
  size_t cap = strlen(prefix) + 64;
  char *name = malloc(cap);
  if (!name) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "%s: allocating a name buffer", fn);
  dsv4_st_file *f = NULL;
  dsv4_status s = dsv4_st_open(path, &f);
  dsv4_gate_host g;
  memset(&g, 0, sizeof g);
  if (s == DSV4_OK) s = load_gate(f, prefix, w, &g, name, cap);
  dsv4_st_close(f);
  free(name);
  if (s != DSV4_OK) {
    dsv4_gate_host_free(&g);
    return s;
  }
  g.num_experts = w->num_experts;
  g.hidden_size = g.weight ? w->hidden_size : 0;
  g.vocab_size = g.tid2eid ? w->vocab_size : 0;
  g.top_k = g.tid2eid ? w->top_k : 0;
  *out = g;
  return DSV4_OK;
}

/* ---------------- writer ---------------- */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
  if (b->oom) return;
  if (b->n + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + len + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = true;
      return;
    }
    b->p = q, b->cap = cap;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = '\0';
}

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_json_string(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; ++c) {
    if (*c == '"' || *c == '\\') {
      char e[2] = {'\\', (char)*c};
      sb_put(b, e, 2);
    } else if (*c < 0x20) {
      sb_fmt(b, "\\u%04x", *c);
    } else {
      sb_put(b, (const char *)c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

static dsv4_status write_all(int fd, const void *p, size_t len, const char *path) {
  const char *c = p;
  while (len > 0) {
    ssize_t r = write(fd, c, len);
    if (r < 0) {
      if (errno == EINTR) continue;
      return dsv4_fail(DSV4_ERR_IO, "safetensors '%s': writing: %s", path, strerror(errno));
    }
    c += r, len -= (size_t)r;
  }
  return DSV4_OK;
}

dsv4_status dsv4_st_write(const char *path, const dsv4_st_write_tensor *tensors, size_t num_tensors,
                          const char *const *meta_keys, const char *const *meta_values, size_t num_meta) {
  static const char *fn = "dsv4_st_write";
  DSV4_CHECK_ARG(path != NULL, fn, "path", "is NULL");
  DSV4_CHECK_ARG(tensors != NULL || num_tensors == 0, fn, "tensors", "is NULL");
  DSV4_CHECK_ARG((meta_keys != NULL && meta_values != NULL) || num_meta == 0, fn, "meta_keys", "is NULL");
  for (size_t i = 0; i < num_tensors; ++i) {
    const dsv4_st_write_tensor *t = &tensors[i];
    DSV4_CHECK_ARG(t->name && t->dtype, fn, "tensors[i].name/dtype", "is NULL");
    DSV4_CHECK_ARG(t->rank >= 0 && (t->rank == 0 || t->shape), fn, "tensors[i].shape", "is NULL or rank < 0");
    DSV4_CHECK_ARG(t->data != NULL || t->bytes == 0, fn, "tensors[i].data", "is NULL");
  }
  sbuf b = {0};
  sb_put(&b, "{", 1);
  bool first = true;
  if (num_meta) {
    sb_json_string(&b, "__metadata__");
    sb_put(&b, ":{", 2);
    for (size_t i = 0; i < num_meta; ++i) {
      if (i) sb_put(&b, ",", 1);
      sb_json_string(&b, meta_keys[i]);
      sb_put(&b, ":", 1);
      sb_json_string(&b, meta_values[i]);
    }
    sb_put(&b, "}", 1);
    first = false;
  }
  uint64_t off = 0;
  for (size_t i = 0; i < num_tensors; ++i) {
    const dsv4_st_write_tensor *t = &tensors[i];
    if (!first) sb_put(&b, ",", 1);
    first = false;
    sb_json_string(&b, t->name);
    sb_put(&b, ":{\"dtype\":", 10);
    sb_json_string(&b, t->dtype);
    sb_put(&b, ",\"shape\":[", 10);
    for (int d = 0; d < t->rank; ++d) sb_fmt(&b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    sb_fmt(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + t->bytes));
    off += t->bytes;
  }
  sb_put(&b, "}", 1);
  while (!b.oom && b.n % 8 != 0) sb_put(&b, " ", 1);
  if (b.oom) {
    free(b.p);
    return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "%s: building the header of '%s'", fn, path);
  }
  size_t tlen = strlen(path) + 32;
  char *tmp = malloc(tlen);
  if (!tmp) {
    free(b.p);
    return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "%s: allocating a path", fn);
  }
  snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
  dsv4_status s = DSV4_OK;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    s = dsv4_fail(DSV4_ERR_IO, "safetensors '%s': cannot create '%s': %s", path, tmp, strerror(errno));
  } else {
    uint8_t len8[8];
    for (int i = 0; i < 8; ++i) len8[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    s = write_all(fd, len8, 8, path);
    if (s == DSV4_OK) s = write_all(fd, b.p, b.n, path);
    for (size_t i = 0; s == DSV4_OK && i < num_tensors; ++i) s = write_all(fd, tensors[i].data, tensors[i].bytes, path);
    if (close(fd) != 0 && s == DSV4_OK)
      s = dsv4_fail(DSV4_ERR_IO, "safetensors '%s': closing: %s", path, strerror(errno));
    if (s == DSV4_OK && rename(tmp, path) != 0)
      s = dsv4_fail(DSV4_ERR_IO, "safetensors '%s': renaming '%s' into place: %s", path, tmp, strerror(errno));
    if (s != DSV4_OK) unlink(tmp);
  }
  free(tmp);
  free(b.p);
  return s;
}
