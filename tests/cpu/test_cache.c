/* The module cache: key contents, file validation, recovery from bad files, publishing under contention,
 * unwritable folders and memory-only mode. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"
#include "jit.h"
#include "ops/ops.h"

static char g_root[256];

static void make_dir(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", g_root, name);
  assert_int_equal(dsv4_mkdir_p(out), DSV4_OK);
}

static dsv4_jit *jit_at(const char *dir) {
  dsv4_jit_config c = {true, ""};
  snprintf(c.dir, sizeof c.dir, "%s", dir);
  dsv4_jit *j = NULL;
  assert_int_equal(dsv4_jit_create(&c, &j), DSV4_OK);
  return j;
}

static dsv4_jit_stats stats_of(dsv4_jit *j) {
  dsv4_jit_stats s;
  dsv4_jit_get_stats(j, &s);
  return s;
}

/* Checks every file below dir/arch: valid, named by its key; returns the count. Fails on temp files. */
static int count_valid_files(const char *dir, const char *arch) {
  char sub[512];
  snprintf(sub, sizeof sub, "%s/%s", dir, arch);
  DIR *d = opendir(sub);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || e->d_name[1] == '.')) continue;
    assert_true(strncmp(e->d_name, ".tmp-", 5) != 0);  /* no temp file left behind */
    size_t len = strlen(e->d_name);
    assert_true(len > 39 && !strcmp(e->d_name + len - 6, ".cubin"));
    dsv4_key key;
    for (int i = 0; i < 16; ++i) {
      unsigned v;
      assert_int_equal(sscanf(e->d_name + len - 38 + 2 * i, "%2x", &v), 1);
      key.bytes[i] = (uint8_t)v;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", sub, e->d_name);
    dsv4_cubin c;
    dsv4_status s = dsv4_cache_read(path, &key, &c);
    if (s != DSV4_OK) fprintf(stderr, "%s\n", dsv4_last_error());
    assert_int_equal(s, DSV4_OK);
    dsv4_cubin_free(&c);
    ++n;
  }
  closedir(d);
  return n;
}

static int router_specs(dsv4_kernel_spec *specs) {
  dsv4_router_config cfg;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &cfg);
  return dsv4_router_kernel_specs(&cfg, specs);
}

/* First, before this process has threads: 16 processes warm one empty folder at once. */
static void test_sixteen_processes_warm_one_folder(void **state) {
  (void)state;
  char dir[512];
  make_dir(dir, sizeof dir, "contended");
  dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
  int n = router_specs(specs);
  pid_t pids[16];
  for (int p = 0; p < 16; ++p) {
    pids[p] = fork();
    assert_true(pids[p] >= 0);
    if (pids[p] == 0) {
      dsv4_jit_config c = {true, ""};
      snprintf(c.dir, sizeof c.dir, "%s", dir);
      dsv4_jit *j = NULL;
      if (dsv4_jit_create(&c, &j) != DSV4_OK) _exit(2);
      for (int i = 0; i < n; ++i) {
        dsv4_cubin cubin;
        if (dsv4_jit_get(j, &specs[i], "sm_90a", true, &cubin) != DSV4_OK) {
          fprintf(stderr, "child %d: %s\n", p, dsv4_last_error());
          _exit(1);
        }
        dsv4_cubin_free(&cubin);
      }
      dsv4_jit_stats st;
      dsv4_jit_get_stats(j, &st);
      _exit(100 + (int)st.compiles);  /* 100 + this process's NVRTC compiles */
    }
  }
  int compiles = 0;
  for (int p = 0; p < 16; ++p) {
    int st = 0;
    assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
    assert_true(WIFEXITED(st));
    assert_true(WEXITSTATUS(st) >= 100);
    compiles += WEXITSTATUS(st) - 100;
  }
  assert_int_equal(count_valid_files(dir, "sm_90a"), n);
  /* The compile lock: each kernel was compiled by exactly one of the 16 processes. */
  assert_int_equal(compiles, n);
}

static void test_key_covers_every_input(void **state) {
  (void)state;
  const char *opts[] = {"-std=c++17", "--gpu-architecture=sm_90a"};
  const char *opts2[] = {"-std=c++17", "--gpu-architecture=sm_90a", "-DX=1"};
  const char *opts3[] = {"-std=c++17", "--gpu-architecture=sm_90"};
  const char src[] = "template <int K> __global__ void k() {}", src2[] = "template <int K> __global__ void k() {} ";
  const char hdr[] = "common.cuh\0int x;", hdr2[] = "common.cuh\0int y;";
  dsv4_key_inputs base = {src, sizeof src - 1, hdr, sizeof hdr, "k<6>", "sm_90a", opts, 2, 13, 0, "0.1.0"};
  dsv4_key_inputs v[9];
  for (int i = 0; i < 9; ++i) v[i] = base;
  v[0].source_text = src2, v[0].source_size = sizeof src2 - 1;  /* source bytes */
  v[1].name_expr = "k<7>";                                      /* a specialisation constant */
  v[2].options = opts2, v[2].num_options = 3;                   /* an added option */
  v[3].options = opts3;                                         /* a changed option */
  v[4].arch = "sm_100a";                                        /* the target arch */
  v[5].nvrtc_major = 12;                                        /* NVRTC version */
  v[6].nvrtc_minor = 1;
  v[7].lib_version = "0.1.1";                                   /* library version */
  v[8].headers_text = hdr2;                                     /* a header's bytes */
  dsv4_key kb = dsv4_key_compute(&base), kb2 = dsv4_key_compute(&base);
  assert_memory_equal(kb.bytes, kb2.bytes, 16);  /* deterministic */
  dsv4_key ks[9];
  for (int i = 0; i < 9; ++i) {
    ks[i] = dsv4_key_compute(&v[i]);
    assert_memory_not_equal(ks[i].bytes, kb.bytes, 16);
    for (int j = 0; j < i; ++j) assert_memory_not_equal(ks[i].bytes, ks[j].bytes, 16);
  }
  /* Through the real path: the arch changes the key of an embedded kernel. */
  dsv4_kernel_spec spec;
  dsv4_hash_router_spec(6, &spec);
  dsv4_key a, b, c;
  assert_int_equal(dsv4_jit_key(&spec, "sm_90a", &a), DSV4_OK);
  assert_int_equal(dsv4_jit_key(&spec, "sm_100a", &b), DSV4_OK);
  dsv4_hash_router_spec(7, &spec);
  assert_int_equal(dsv4_jit_key(&spec, "sm_90a", &c), DSV4_OK);
  assert_memory_not_equal(a.bytes, b.bytes, 16);
  assert_memory_not_equal(a.bytes, c.bytes, 16);
}

static void test_file_validation(void **state) {
  (void)state;
  dsv4_kernel_spec spec;
  dsv4_hash_router_spec(6, &spec);
  dsv4_cubin c;
  assert_int_equal(dsv4_jit_compile(NULL, &spec, "sm_80", &c), DSV4_OK);
  uint8_t *bytes;
  size_t size;
  assert_int_equal(dsv4_cache_encode(&c, &bytes, &size), DSV4_OK);
  dsv4_cubin back;
  assert_int_equal(dsv4_cache_decode(bytes, size, &c.key, &back), DSV4_OK);
  assert_int_equal(back.size, c.size);
  assert_memory_equal(back.image, c.image, c.size);
  assert_string_equal(back.lowered_name, c.lowered_name);
  dsv4_cubin_free(&back);
  for (size_t len = 0; len < size; len += (len < 80 ? 1 : 37))  /* truncated */
    assert_int_equal(dsv4_cache_decode(bytes, len, &c.key, &back), DSV4_ERR_FORMAT);
  for (size_t i = 0; i < size; ++i) {  /* every single-bit flip, one byte at a time */
    uint8_t bit = (uint8_t)(1u << (i % 8));
    bytes[i] ^= bit;
    dsv4_status s = dsv4_cache_decode(bytes, size, &c.key, &back);
    if (s == DSV4_OK) fprintf(stderr, "flip at byte %zu went unnoticed\n", i);
    assert_int_equal(s, DSV4_ERR_FORMAT);
    bytes[i] ^= bit;
  }
  dsv4_key other = c.key;
  other.bytes[3] ^= 1;
  assert_status_names(dsv4_cache_decode(bytes, size, &other, &back), DSV4_ERR_FORMAT, "foreign");
  uint8_t *padded = calloc(1, size + 8);
  memcpy(padded, bytes, size);
  assert_int_equal(dsv4_cache_decode(padded, size + 8, &c.key, &back), DSV4_ERR_FORMAT);
  free(padded);
  free(bytes);
  dsv4_cubin_free(&c);
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  fclose(f);
}
static size_t read_bytes(const char *path, uint8_t *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

static void test_bad_files_are_recompiled_and_replaced(void **state) {
  (void)state;
  char dir[512];
  make_dir(dir, sizeof dir, "recover");
  dsv4_kernel_spec spec, other;
  dsv4_hash_router_spec(6, &spec);
  dsv4_hash_router_spec(2, &other);
  dsv4_key key, other_key;
  assert_int_equal(dsv4_jit_key(&spec, "sm_90a", &key), DSV4_OK);
  assert_int_equal(dsv4_jit_key(&other, "sm_90a", &other_key), DSV4_OK);
  char path[1024], other_path[1024];
  dsv4_cache_path(dir, "sm_90a", spec.tag, &key, path, sizeof path);
  dsv4_cache_path(dir, "sm_90a", other.tag, &other_key, other_path, sizeof other_path);

  dsv4_jit *j = jit_at(dir);
  dsv4_cubin c;
  assert_int_equal(dsv4_jit_get(j, &spec, "sm_90a", false, &c), DSV4_OK);
  dsv4_cubin_free(&c);
  assert_int_equal(dsv4_jit_get(j, &other, "sm_90a", false, &c), DSV4_OK);
  dsv4_cubin_free(&c);
  assert_int_equal(stats_of(j).compiles, 2);
  assert_int_equal(stats_of(j).disk_writes, 2);
  dsv4_jit_destroy(j);

  static uint8_t good[1 << 20], buf[1 << 20];
  size_t good_size = read_bytes(path, good, sizeof good);
  assert_true(good_size > 64);

  /* A fresh JIT loads from disk with no compile. */
  j = jit_at(dir);
  assert_int_equal(dsv4_jit_get(j, &spec, "sm_90a", false, &c), DSV4_OK);
  dsv4_cubin_free(&c);
  assert_int_equal(stats_of(j).compiles, 0);
  assert_int_equal(stats_of(j).disk_hits, 1);
  dsv4_jit_destroy(j);

  for (int kind = 0; kind < 4; ++kind) {
    const char *what[] = {"truncated", "bit-flipped", "foreign", "empty"};
    if (kind == 0) write_bytes(path, good, good_size / 2);
    if (kind == 1) {
      memcpy(buf, good, good_size);
      buf[good_size - 100] ^= 0x10;
      write_bytes(path, buf, good_size);
    }
    if (kind == 2) {  /* another kernel's valid file under this kernel's name */
      size_t n = read_bytes(other_path, buf, sizeof buf);
      write_bytes(path, buf, n);
    }
    if (kind == 3) write_bytes(path, "", 0);
    j = jit_at(dir);
    assert_int_equal(dsv4_jit_get(j, &spec, "sm_90a", false, &c), DSV4_OK);
    assert_memory_equal(c.key.bytes, key.bytes, 16);
    dsv4_cubin_free(&c);
    dsv4_jit_stats st = stats_of(j);
    if (st.disk_rejected != 1 || st.compiles != 1 || st.disk_writes != 1) fprintf(stderr, "%s file not handled\n", what[kind]);
    assert_int_equal(st.disk_rejected, 1);
    assert_int_equal(st.compiles, 1);
    assert_int_equal(st.disk_writes, 1);
    dsv4_jit_destroy(j);
    /* Replaced by a valid file. */
    assert_int_equal(dsv4_cache_read(path, &key, &c), DSV4_OK);
    dsv4_cubin_free(&c);
  }
  assert_int_equal(count_valid_files(dir, "sm_90a"), 2);
}

static void test_unwritable_folder_is_memory_only_with_one_warning(void **state) {
  (void)state;
  char file[512], dir[600];
  snprintf(file, sizeof file, "%s/a-regular-file", g_root);
  write_bytes(file, "x", 1);
  snprintf(dir, sizeof dir, "%s/cache", file);  /* below a regular file: mkdir fails even for root */
  char log[600];
  snprintf(log, sizeof log, "%s/stderr.txt", g_root);
  fflush(stderr);
  int saved = dup(2);
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 2);
  close(fd);
  dsv4_kernel_spec spec;
  int ok = 1;
  for (int round = 0; round < 3; ++round) {
    dsv4_jit *j = jit_at(dir);
    dsv4_hash_router_spec(1 + round, &spec);
    dsv4_cubin c;
    ok &= dsv4_jit_get(j, &spec, "sm_80", false, &c) == DSV4_OK;
    ok &= c.size > 0;
    dsv4_cubin_free(&c);
    ok &= stats_of(j).compiles == 1 && stats_of(j).disk_writes == 0;
    ok &= dsv4_jit_get(j, &spec, "sm_80", true, &c) == DSV4_ERR_IO;  /* precompile insists on the disk */
    dsv4_jit_destroy(j);
  }
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  assert_true(ok);
  static uint8_t text[1 << 16];
  size_t n = read_bytes(log, text, sizeof text - 1);
  text[n] = 0;
  int warnings = 0;
  for (const char *p = (const char *)text; (p = strstr(p, "cannot be written")); ++p) ++warnings;
  assert_int_equal(warnings, 1);
}

static void test_memory_only_jit(void **state) {
  (void)state;
  dsv4_jit_config none = {false, ""};
  dsv4_jit *j;
  assert_int_equal(dsv4_jit_create(&none, &j), DSV4_OK);
  dsv4_kernel_spec spec;
  dsv4_hash_router_spec(6, &spec);
  dsv4_cubin c;
  assert_int_equal(dsv4_jit_get(j, &spec, "sm_90a", false, &c), DSV4_OK);
  dsv4_cubin_free(&c);
  assert_int_equal(stats_of(j).compiles, 1);
  assert_int_equal(stats_of(j).disk_writes, 0);
  assert_status_names(dsv4_jit_get(j, &spec, "sm_90a", true, &c), DSV4_ERR_IO, "disabled");
  dsv4_jit_destroy(j);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_root, sizeof g_root, "/tmp/dsv4-test-cache-XXXXXX");
  return mkdtemp(g_root) ? 0 : -1;
}
static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sixteen_processes_warm_one_folder),
      cmocka_unit_test(test_key_covers_every_input),
      cmocka_unit_test(test_file_validation),
      cmocka_unit_test(test_bad_files_are_recompiled_and_replaced),
      cmocka_unit_test(test_unwritable_folder_is_memory_only_with_one_warning),
      cmocka_unit_test(test_memory_only_jit),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
