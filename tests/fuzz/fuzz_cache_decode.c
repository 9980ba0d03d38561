/*
 * libFuzzer target: the kernel cache file reader, dsv4_cache_decode (runtime/cache.c).
 *
 * Each input is a whole cache file. It is decoded as is, with no expected key, with a fixed key (the one
 * the seed files carry) and with the key the file itself holds. Mutated files almost never keep a valid
 * checksum, so the input is also decoded a second time with its checksum recomputed: that is how the
 * fuzzer reaches the checks after the checksum (key, NUL bytes in the name) and the copy-out.
 * Promises checked (abort on a broken one):
 *  - failure: DSV4_ERR_FORMAT (or OUT_OF_MEMORY) and *out is zero (no image, size 0);
 *  - success: name and cubin sizes add up to the file, the image is the file's tail, the name is the
 *    file's name bytes, the key is the file's key (and the expected one when given), and encoding the
 *    result gives back the input byte for byte except the two reserved fields, which the reader ignores.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit.h"

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "fuzz_cache_decode: broken promise at line %d: %s\n  last error: %s\n", \
              __LINE__, #cond, dsv4_last_error());                                          \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

/* The key the seed corpus files carry (see make_seeds.c). */
static const dsv4_key k_seed_key = {{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                                     0xdd, 0xee, 0xff}};

static void decode_and_check(const uint8_t *data, size_t size, const dsv4_key *expect) {
  dsv4_cubin c;
  memset(&c, 0x5A, sizeof c); /* poisoned: must be zeroed or filled */
  dsv4_status s = dsv4_cache_decode(data, size, expect, &c);
  if (s != DSV4_OK) {
    CHECK(s == DSV4_ERR_FORMAT || s == DSV4_ERR_OUT_OF_MEMORY);
    CHECK(c.image == NULL && c.size == 0);
    return;
  }
  size_t name_len = strlen(c.lowered_name);
  CHECK(size >= 64 && name_len > 0 && name_len < sizeof c.lowered_name);
  CHECK(c.image != NULL && c.size > 0 && 64 + name_len + c.size == size);
  CHECK(!memcmp(c.key.bytes, data + 16, 16));
  if (expect) CHECK(!memcmp(c.key.bytes, expect->bytes, 16));
  CHECK(!memcmp(c.lowered_name, data + 64, name_len));
  CHECK(!memcmp(c.image, data + 64 + name_len, c.size));
  uint8_t *again = NULL;
  size_t again_size = 0;
  CHECK(dsv4_cache_encode(&c, &again, &again_size) == DSV4_OK);
  CHECK(again_size == size);
  uint8_t *want = malloc(size);
  CHECK(want != NULL);
  memcpy(want, data, size);
  memset(want + 44, 0, 4); /* reserved u32 */
  memset(want + 56, 0, 8); /* reserved u64 */
  /* The checksum covers the reserved fields, so compare it only when they were zero. */
  bool reserved_zero = !memcmp(want + 44, data + 44, 4) && !memcmp(want + 56, data + 56, 8);
  if (!reserved_zero) memcpy(want + 32, again + 32, 8);
  CHECK(!memcmp(again, want, size));
  free(want);
  free(again);
  dsv4_cubin_free(&c);
  CHECK(c.image == NULL && c.size == 0);
}

static void decode_all_ways(const uint8_t *data, size_t size) {
  decode_and_check(data, size, NULL);
  decode_and_check(data, size, &k_seed_key);
  if (size >= 32) {
    dsv4_key own;
    memcpy(own.bytes, data + 16, 16);
    decode_and_check(data, size, &own);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode_all_ways(data, size);
  if (size < 64) return 0;
  /* The same bytes with a checksum that matches them (XXH3-64 of [0,32) then [40,end)). */
  uint8_t *fixed = malloc(size);
  if (!fixed) return 0;
  memcpy(fixed, data, size);
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, fixed, 32);
  XXH3_64bits_update(&st, fixed + 40, size - 40);
  uint64_t sum = XXH3_64bits_digest(&st);
  memcpy(fixed + 32, &sum, 8);
  decode_all_ways(fixed, size);
  free(fixed);
  return 0;
}
