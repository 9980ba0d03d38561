/* Launch shapes of the long-row top-k (kernel_src/topk_long.cu) forced onto small rows, shared by the CPU test
 * of the shape check (tests/cpu/test_topk_long_cpu.c) and the GPU test that runs them
 * (tests/gpu/test_gpu_topk_long.c, test_forced_shapes). The same six pool kinds as the host emulation's forced
 * shapes (tests/cpu/test_topk_long_emu.cc): every code path of the kernel on rows of a few tens of thousands of
 * columns, where the planner takes them only for rows of hundreds of thousands. */
#ifndef DSV4_TEST_TOPK_LONG_SHAPES_H
#define DSV4_TEST_TOPK_LONG_SHAPES_H

#include <string.h>

#include "ops/ops.h"

/* Pool kinds: 0 whole 32-bit keys and a candidate buffer for the whole slice; 1 whole keys, 4 candidates (the
 * buffer overflows: later levels re-scan the slice); 2 16-bit keys of the whole slice (the hit list), room for
 * every candidate; 3 the same with 4 candidates; 4 16-bit keys of the first half of the slice (the rest re-read
 * from global memory); 5 no cached column and 4 candidates (every level re-reads the slice). */
enum { TOPK_LONG_POOL_KINDS = 6 };

static inline dsv4_topk_long_plan topk_long_forced_shape(int64_t cols, int32_t k, int threads, int cluster,
                                                         int pool_kind) {
  dsv4_topk_long_plan s;
  memset(&s, 0, sizeof s);
  s.kp = 1;
  while (s.kp < k) s.kp <<= 1;
  s.threads = threads;
  s.cluster = cluster;
  s.slice = (int32_t)(((cols + cluster - 1) / cluster + 3) / 4 * 4);
  const int32_t half = (s.slice / 2) & ~7;
  s.key_bits = pool_kind < 2 ? 32 : 16;
  s.dense = pool_kind == 4 ? half : pool_kind == 5 ? 0 : s.slice;
  s.cand_cap = pool_kind == 1 || pool_kind == 3 || pool_kind == 5 ? 4 : s.slice;
  dsv4_topk_long_shape_fit(&s);
  return s;
}

/* The forced cases, one list for the three tests that use it: case i (0 <= i < TOPK_LONG_FORCED_CASES) is
 * block size threads, cluster, pool kind and (cols, k), the block sizes outermost and the (cols, k) pairs
 * innermost, with its shape; each test derives rows, strides and generator from i. */
enum { TOPK_LONG_FORCED_CASES = 2 * 5 * TOPK_LONG_POOL_KINDS * 5 };
typedef struct topk_long_forced {
  int threads, cluster, pool_kind;
  int64_t cols;
  int32_t k;
  dsv4_topk_long_plan shape;
} topk_long_forced;
static inline topk_long_forced topk_long_forced_case(int i) {
  static const int64_t colsv[5] = {20000, 20000, 40000, 5000, 30000};
  static const int32_t ks[5] = {512, 2048, 64, 300, 4096};
  topk_long_forced c;
  c.cols = colsv[i % 5], c.k = ks[i % 5];
  i /= 5;
  c.pool_kind = i % TOPK_LONG_POOL_KINDS;
  i /= TOPK_LONG_POOL_KINDS;
  c.cluster = 1 << (i % 5);
  c.threads = i / 5 ? 512 : 256;
  c.shape = topk_long_forced_shape(c.cols, c.k, c.threads, c.cluster, c.pool_kind);
  return c;
}

#endif
