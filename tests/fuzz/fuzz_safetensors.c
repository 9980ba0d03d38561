/*
 * libFuzzer target: the safetensors header parser and the gate loader (runtime/safetensors.c).
 *
 * Each input is the whole file. It is written into one memfd (no disk traffic) that both entry points open
 * by its /proc/self/fd path, so dsv4_st_open goes through the real open/fstat/pread path. Then:
 *  - dsv4_st_open: on success every entry must satisfy what the header promises (begin <= end <= data size,
 *    a known dtype's bytes equal numel * bits / 8, names sorted and unique), every lookup must find itself,
 *    and reading each tensor (bounded) and a range just past it must behave; on failure *out is NULL and the
 *    status is one of the documented ones with a message naming the file.
 *  - dsv4_st_load_gate with a few wants (dense, hash uniform, hash scored, other shapes, two prefixes): on
 *    success the parts asked for are there with the shapes asked for and every tid2eid id is in [0,E); on
 *    failure the output is all zero.
 * A broken promise is a crash (abort), so the fuzzer reports it like a memory error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "safetensors.h"

static int g_fd = -1;
static char g_path[64];

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "fuzz_safetensors: broken promise at line %d: %s\n  last error: %s\n", \
              __LINE__, #cond, dsv4_last_error());                                        \
      abort();                                                                            \
    }                                                                                     \
  } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  g_fd = memfd_create("dsv4-fuzz-safetensors", MFD_CLOEXEC);
  if (g_fd < 0) {
    perror("memfd_create");
    abort();
  }
  snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
  return 0;
}

static void put_file(const uint8_t *data, size_t size) {
  if (ftruncate(g_fd, 0) != 0) abort();
  size_t done = 0;
  while (done < size) {
    ssize_t w = pwrite(g_fd, data + done, size - done, (off_t)done);
    if (w <= 0) abort();
    done += (size_t)w;
  }
}

static void check_failure(dsv4_status s) {
  CHECK(s == DSV4_ERR_IO || s == DSV4_ERR_FORMAT || s == DSV4_ERR_OUT_OF_MEMORY ||
        s == DSV4_ERR_INVALID_ARGUMENT || s == DSV4_ERR_UNSUPPORTED);
  if (s == DSV4_ERR_FORMAT) CHECK(strstr(dsv4_last_error(), g_path) != NULL);
}

static void exercise_open(const uint8_t *data, size_t file_size) {
  dsv4_st_file *f = (dsv4_st_file *)&g_fd; /* poisoned: must come back NULL on failure */
  dsv4_status s = dsv4_st_open(g_path, &f);
  if (s != DSV4_OK) {
    CHECK(f == NULL);
    check_failure(s);
    return;
  }
  CHECK(f != NULL && file_size >= 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  CHECK(header_len <= file_size - 8);
  const uint64_t data_size = file_size - 8 - header_len;
  CHECK(!strcmp(dsv4_st_path(f), g_path));
  size_t n = dsv4_st_count(f);
  CHECK(dsv4_st_at(f, n) == NULL);
  uint8_t buf[4096];
  for (size_t i = 0; i < n; ++i) {
    const dsv4_st_tensor *t = dsv4_st_at(f, i);
    CHECK(t && t->name && t->dtype_str);
    if (i) CHECK(strcmp(dsv4_st_at(f, i - 1)->name, t->name) < 0);
    CHECK(dsv4_st_get(f, t->name) == t);
    CHECK(t->rank >= 0 && t->rank <= DSV4_ST_MAX_RANK);
    CHECK(t->begin <= t->end && t->end <= data_size);
    uint64_t numel = 1;
    for (int d = 0; d < t->rank; ++d) {
      CHECK(t->shape[d] >= 0);
      numel *= (uint64_t)t->shape[d];
    }
    CHECK(numel == t->numel);
    int bits = dsv4_st_dtype_bits(t->dtype);
    if (t->dtype != DSV4_ST_UNKNOWN) {
      CHECK(bits > 0 && !strcmp(dsv4_st_dtype_name(t->dtype), t->dtype_str));
      CHECK(t->numel * (uint64_t)bits == (t->end - t->begin) * 8);
    } else {
      CHECK(bits == 0);
    }
    /* Ask for it as itself (or, if unknown, as BF16: a FORMAT error naming the tensor). */
    const dsv4_st_tensor *got = NULL;
    dsv4_st_dtype as = t->dtype == DSV4_ST_UNKNOWN ? DSV4_ST_BF16 : t->dtype;
    s = dsv4_st_expect(f, t->name, as, t->rank, t->shape, &got);
    if (t->dtype == DSV4_ST_UNKNOWN) {
      CHECK(s == DSV4_ERR_FORMAT && got == NULL);
    } else {
      CHECK(s == DSV4_OK && got == t);
      int64_t any[DSV4_ST_MAX_RANK];
      for (int d = 0; d < DSV4_ST_MAX_RANK; ++d) any[d] = -1;
      CHECK(dsv4_st_expect(f, t->name, as, t->rank, any, NULL) == DSV4_OK);
      if (t->rank < DSV4_ST_MAX_RANK) CHECK(dsv4_st_expect(f, t->name, as, t->rank + 1, any, NULL) == DSV4_ERR_FORMAT);
    }
    uint64_t size = t->end - t->begin;
    size_t take = size < sizeof buf ? (size_t)size : sizeof buf;
    CHECK(dsv4_st_read_range(f, t, 0, buf, take) == DSV4_OK);
    if (size <= sizeof buf) CHECK(dsv4_st_read(f, t, buf, (size_t)size) == DSV4_OK);
    CHECK(dsv4_st_read(f, t, buf, (size_t)size + 1) == DSV4_ERR_INVALID_ARGUMENT);
    CHECK(dsv4_st_read_range(f, t, size, buf, 1) == DSV4_ERR_INVALID_ARGUMENT);
    CHECK(dsv4_st_read_range(f, t, UINT64_MAX, buf, 1) == DSV4_ERR_INVALID_ARGUMENT);
  }
  (void)dsv4_st_metadata(f, "format");
  (void)dsv4_st_metadata(f, "");
  CHECK(dsv4_st_get(f, "dsv4-fuzz: no tensor has this name") == NULL || n > 0);
  dsv4_st_close(f);
}

/* The wants tried on every input; the seed corpus holds gates that satisfy the first ones. */
static const struct {
  const char *prefix;
  dsv4_gate_want want;
} k_wants[] = {
    {"", {4, 8, 5, 2, DSV4_ST_REQUIRED, DSV4_ST_REQUIRED, DSV4_ST_SKIP}},      /* dense */
    {"", {4, 8, 5, 2, DSV4_ST_SKIP, DSV4_ST_OPTIONAL, DSV4_ST_REQUIRED}},      /* hash, uniform weights */
    {"", {4, 8, 5, 2, DSV4_ST_REQUIRED, DSV4_ST_OPTIONAL, DSV4_ST_REQUIRED}},  /* hash, scored weights */
    {"", {4, 8, 5, 2, DSV4_ST_OPTIONAL, DSV4_ST_OPTIONAL, DSV4_ST_OPTIONAL}},  /* whatever is there */
    {"", {3, 16, 2, 3, DSV4_ST_OPTIONAL, DSV4_ST_OPTIONAL, DSV4_ST_OPTIONAL}}, /* other shapes */
    {"model.layers.0.ffn.gate.", {4, 8, 5, 2, DSV4_ST_REQUIRED, DSV4_ST_OPTIONAL, DSV4_ST_REQUIRED}},
};

static void exercise_gate(void) {
  for (size_t i = 0; i < sizeof k_wants / sizeof k_wants[0]; ++i) {
    const dsv4_gate_want *w = &k_wants[i].want;
    dsv4_gate_host g;
    memset(&g, 0xA5, sizeof g); /* poisoned: zeroed on failure */
    dsv4_status s = dsv4_st_load_gate(g_path, k_wants[i].prefix, w, &g);
    if (s != DSV4_OK) {
      check_failure(s);
      static const dsv4_gate_host zero;
      CHECK(!memcmp(&g, &zero, sizeof g));
      continue;
    }
    CHECK(g.num_experts == w->num_experts);
    CHECK(w->weight != DSV4_ST_REQUIRED || g.weight != NULL);
    CHECK(w->bias != DSV4_ST_REQUIRED || g.bias != NULL);
    CHECK(w->tid2eid != DSV4_ST_REQUIRED || g.tid2eid != NULL);
    CHECK(w->weight != DSV4_ST_SKIP || g.weight == NULL);
    CHECK(w->bias != DSV4_ST_SKIP || g.bias == NULL);
    CHECK(w->tid2eid != DSV4_ST_SKIP || g.tid2eid == NULL);
    CHECK(g.weight ? g.hidden_size == w->hidden_size : g.hidden_size == 0);
    CHECK(!g.bias || !strcmp(g.bias_name, "bias") || !strcmp(g.bias_name, "e_score_correction_bias"));
    if (g.weight) { /* touch every byte, so ASan sees any short allocation */
      volatile uint32_t acc = 0;
      for (int64_t j = 0; j < (int64_t)w->num_experts * w->hidden_size; ++j) acc += g.weight[j];
    }
    if (g.bias) {
      volatile float acc = 0;
      for (int j = 0; j < w->num_experts; ++j) acc += g.bias[j];
    }
    if (g.tid2eid) {
      CHECK(g.vocab_size == w->vocab_size && g.top_k == w->top_k);
      for (int64_t j = 0; j < (int64_t)w->vocab_size * w->top_k; ++j)
        CHECK(g.tid2eid[j] >= 0 && g.tid2eid[j] < w->num_experts);
    } else {
      CHECK(g.vocab_size == 0 && g.top_k == 0);
    }
    dsv4_gate_host_free(&g);
    static const dsv4_gate_host zero;
    CHECK(!memcmp(&g, &zero, sizeof g));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  put_file(data, size);
  exercise_open(data, size);
  exercise_gate();
  return 0;
}
