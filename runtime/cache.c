/*
 * The disk cache file: one compiled kernel per file.
 *
 * Layout (little-endian):
 *   0  char[8]  magic "DSV4MOD\n"
 *   8  u32      format version (1)
 *  12  u32      header size (64)
 *  16  u8[16]   key
 *  32  u64      checksum: XXH3-64 of bytes [0,32) followed by [40,end)
 *  40  u32      lowered-name length (no NUL)
 *  44  u32      reserved, 0
 *  48  u64      cubin size
 *  56  u64      reserved, 0
 *  64  name bytes, then cubin bytes; nothing after.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jit.h"

#define CACHE_MAGIC "DSV4MOD\n"
#define CACHE_FORMAT 1u
#define CACHE_HEADER 64u
#define CACHE_MAX_FILE (256u << 20)

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint64_t file_checksum(const uint8_t *data, size_t size) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, data, 32);
  XXH3_64bits_update(&st, data + 40, size - 40);
  return XXH3_64bits_digest(&st);
}

void dsv4_cache_path(const char *root, const char *arch, const char *tag, const dsv4_key *key,
                     char *out, size_t cap) {
  char hex[33];
  dsv4_key_hex(key, hex);
  snprintf(out, cap, "%s/%s/%s-%s.cubin", root, arch, tag, hex);
}

dsv4_status dsv4_cache_encode(const dsv4_cubin *c, uint8_t **out, size_t *out_size) {
  size_t name_len = strlen(c->lowered_name);
  size_t total = CACHE_HEADER + name_len + c->size;
  uint8_t *buf = calloc(1, total);
  if (!buf) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "cache: %zu bytes for a cache file", total);
  memcpy(buf, CACHE_MAGIC, 8);
  put32(buf + 8, CACHE_FORMAT);
  put32(buf + 12, CACHE_HEADER);
  memcpy(buf + 16, c->key.bytes, 16);
  put32(buf + 40, (uint32_t)name_len);
  put64(buf + 48, (uint64_t)c->size);
  memcpy(buf + CACHE_HEADER, c->lowered_name, name_len);
  memcpy(buf + CACHE_HEADER + name_len, c->image, c->size);
  put64(buf + 32, file_checksum(buf, total));
  *out = buf;
  *out_size = total;
  return DSV4_OK;
}

dsv4_status dsv4_cache_decode(const uint8_t *data, size_t size, const dsv4_key *expect, dsv4_cubin *out) {
  memset(out, 0, sizeof *out);
  if (size < CACHE_HEADER) return dsv4_fail(DSV4_ERR_FORMAT, "truncated (%zu bytes, header is 64)", size);
  if (memcmp(data, CACHE_MAGIC, 8) != 0) return dsv4_fail(DSV4_ERR_FORMAT, "not a dsv4 cache file (bad magic)");
  if (get32(data + 8) != CACHE_FORMAT || get32(data + 12) != CACHE_HEADER)
    return dsv4_fail(DSV4_ERR_FORMAT, "cache format %u not understood", get32(data + 8));
  uint64_t name_len = get32(data + 40), cubin_size = get64(data + 48);
  if (name_len == 0 || name_len >= sizeof out->lowered_name)
    return dsv4_fail(DSV4_ERR_FORMAT, "entry-point name length %llu is invalid", (unsigned long long)name_len);
  if (cubin_size == 0 || cubin_size > size || CACHE_HEADER + name_len + cubin_size != size)
    return dsv4_fail(DSV4_ERR_FORMAT, "sizes disagree with the file (%zu bytes): truncated or padded", size);
  if (get64(data + 32) != file_checksum(data, size))
    return dsv4_fail(DSV4_ERR_FORMAT, "checksum mismatch: the file is corrupt");
  if (expect && memcmp(expect->bytes, data + 16, 16) != 0)
    return dsv4_fail(DSV4_ERR_FORMAT, "foreign file: its key is not the one its name promises");
  for (uint64_t i = 0; i < name_len; ++i)
    if (data[CACHE_HEADER + i] == 0) return dsv4_fail(DSV4_ERR_FORMAT, "entry-point name holds a NUL byte");
  out->image = malloc(cubin_size);
  if (!out->image) return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "cache: %llu bytes", (unsigned long long)cubin_size);
  memcpy(out->key.bytes, data + 16, 16);
  memcpy(out->lowered_name, data + CACHE_HEADER, name_len);
  out->lowered_name[name_len] = '\0';
  memcpy(out->image, data + CACHE_HEADER + name_len, cubin_size);
  out->size = cubin_size;
  return DSV4_OK;
}

dsv4_status dsv4_cache_read(const char *path, const dsv4_key *expect, dsv4_cubin *out) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return dsv4_fail(DSV4_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return dsv4_fail(DSV4_ERR_FORMAT, "%s is not a regular file", path);
  }
  if (st.st_size > (off_t)CACHE_MAX_FILE) {
    close(fd);
    return dsv4_fail(DSV4_ERR_FORMAT, "%s is too large (%lld bytes) to be a cache file", path, (long long)st.st_size);
  }
  size_t size = (size_t)st.st_size, got = 0;
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) {
    close(fd);
    return dsv4_fail(DSV4_ERR_OUT_OF_MEMORY, "cache: %zu bytes", size);
  }
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  dsv4_status s = dsv4_cache_decode(buf, got, expect, out);
  free(buf);
  if (s == DSV4_ERR_FORMAT) {
    char why[1024];
    snprintf(why, sizeof why, "%s", dsv4_last_error());
    return dsv4_fail(DSV4_ERR_FORMAT, "%s: %s", path, why);
  }
  return s;
}

dsv4_status dsv4_mkdir_p(const char *path) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return dsv4_fail(DSV4_ERR_IO, "path too long: %s", path);
  for (char *p = buf + 1; *p; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return dsv4_fail(DSV4_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return dsv4_fail(DSV4_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
  return DSV4_OK;
}

static dsv4_status write_all(int fd, const uint8_t *p, size_t n, const char *path) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return dsv4_fail(DSV4_ERR_IO, "write %s: %s", path, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return DSV4_OK;
}

dsv4_status dsv4_cache_write(const char *path, const dsv4_cubin *c) {
  static atomic_uint counter;
  char dir[4096], tmp[4200];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) return dsv4_fail(DSV4_ERR_INVALID_ARGUMENT, "cache path %s has no folder", path);
  *slash = '\0';
  DSV4_TRY(dsv4_mkdir_p(dir));
  snprintf(tmp, sizeof tmp, "%s/.tmp-%ld-%u-%s", dir, (long)getpid(), atomic_fetch_add(&counter, 1u), slash + 1);
  uint8_t *bytes = NULL;
  size_t size = 0;
  DSV4_TRY(dsv4_cache_encode(c, &bytes, &size));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    free(bytes);
    return dsv4_fail(DSV4_ERR_IO, "create %s: %s", tmp, strerror(errno));
  }
  dsv4_status s = write_all(fd, bytes, size, tmp);
  free(bytes);
  if (s == DSV4_OK && fsync(fd) != 0) s = dsv4_fail(DSV4_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
  if (close(fd) != 0 && s == DSV4_OK) s = dsv4_fail(DSV4_ERR_IO, "close %s: %s", tmp, strerror(errno));
  if (s == DSV4_OK && rename(tmp, path) != 0) s = dsv4_fail(DSV4_ERR_IO, "rename to %s: %s", path, strerror(errno));
  if (s != DSV4_OK) {
    unlink(tmp);
    return s;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  /* makes the rename durable; failure here loses nothing already visible */
    close(dfd);
  }
  return DSV4_OK;
}
