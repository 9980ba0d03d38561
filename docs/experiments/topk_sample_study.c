// Not part of the build: a host-only study for the single long row of the indexer (issue #5), run on the
// build machine (gcc -O2 topk_sample_study.c -o study -lm && ./study). Question: if every block of the row's
// cluster took the same threshold from a strided sample of the row (4096 of 131072 scores, every 32nd), how
// many candidates would a filter pass leave, and how often would a row have to fall back to the exact radix
// select? Threshold: the q-th largest sample order key, q = 2 k S / cols (so ~2k candidates expected); also
// that key cut to its top 12 bits (one histogram level instead of a full select on the sample). A row falls
// back when fewer than k or more than 8192 scores are at or above the threshold. The generators are those of
// tests/gpu/test_gpu_topk_long.c, plus normal and exponential scores. Results: docs/performance.md.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static uint64_t rnd(uint64_t *s) { uint64_t x = *s += 0x9E3779B97F4A7C15ull; x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull; x = (x ^ (x >> 27)) * 0x94D049BB133111EBull; return x ^ (x >> 31); }
static double uni(uint64_t *s) { return (double)(rnd(s) >> 11) / 9007199254740992.0; }
static uint32_t okey(float f) { if (f != f) return 0; if (f == 0) f = 0; uint32_t u; memcpy(&u, &f, 4); return (u >> 31) ? ~u : u | 0x80000000u; }
enum { RANDOM, BELL, NARROW, CUT_TIES, FEW, ASC, DESC, EQUAL, HALF_NAN, NORMAL, EXP, NG };
static const char *nm[] = {"random", "bell", "narrow", "cut_ties", "few", "ascending", "descending", "equal", "half_nan", "normal", "exp"};
static float gen(int g, int64_t c, uint64_t *s) {
  switch (g) {
    case RANDOM: return (float)((uni(s) - 0.5) * 200.0);
    case BELL: { double a = 0; for (int i = 0; i < 4; ++i) a += uni(s) - 0.5; return (float)a * 3.46f; }
    case NARROW: return 1.0f + (float)uni(s) * 0.0005f;
    case CUT_TIES: { uint64_t r = rnd(s) % 100; return r == 0 ? 2.0f : r <= 20 ? 1.0f : (float)(uni(s) - 1.0); }
    case FEW: return (float)(rnd(s) % 5);
    case ASC: return (float)c * 0.5f;
    case DESC: return -(float)c;
    case EQUAL: return -3.5f;
    case HALF_NAN: return (rnd(s) & 1) ? NAN : (float)(uni(s) - 0.5);
    case NORMAL: { double u1 = uni(s) + 1e-300, u2 = uni(s); return (float)(sqrt(-2 * log(u1)) * cos(6.283185307 * u2)); }
    default: return (float)(-log(uni(s) + 1e-300));
  }
}
static int cmpd(const void *a, const void *b) { uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b; return x < y ? 1 : x > y ? -1 : 0; }
int main(void) {
  const int64_t cols = 131072, S = 4096, stride = cols / S, slice = cols / 16;
  uint32_t *key = malloc(4 * cols), *smp = malloc(4 * S);
  for (int ki = 0; ki < 2; ++ki) {
    const int64_t k = ki ? 2048 : 512, q = 2 * k * S / cols, cap = 8192;
    printf("k=%lld q=%lld (of %lld samples), cap %lld\n", (long long)k, (long long)q, (long long)S, (long long)cap);
    for (int g = 0; g < NG; ++g) {
      int64_t cmin = 1 << 30, cmax = 0, bmax = 0, fb = 0, c12max = 0, fb12 = 0; double csum = 0;
      const int T = 50;
      for (int t = 0; t < T; ++t) {
        uint64_t s = 1000 * g + t + 77 * ki;
        for (int64_t c = 0; c < cols; ++c) key[c] = okey(gen(g, c, &s));
        for (int64_t i = 0; i < S; ++i) smp[i] = key[i * stride];
        qsort(smp, S, 4, cmpd);
        const uint32_t th = smp[q - 1], th12 = th & 0xfff00000u;
        int64_t C = 0, C12 = 0, blk[16] = {0};
        for (int64_t c = 0; c < cols; ++c) { if (key[c] >= th) ++C, ++blk[c / slice]; if (key[c] >= th12) ++C12; }
        for (int b = 0; b < 16; ++b) if (blk[b] > bmax) bmax = blk[b];
        if (C < cmin) cmin = C;
        if (C > cmax) cmax = C;
        if (C12 > c12max) c12max = C12;
        csum += C;
        if (C < k || C > cap) ++fb;
        if (C12 < k || C12 > cap) ++fb12;
      }
      printf("  %-10s C min %6lld mean %8.0f max %6lld  block max %6lld  fallback %2lld/%d | 12-bit bin edge: C max %6lld fallback %2lld/%d\n",
             nm[g], (long long)cmin, csum / T, (long long)cmax, (long long)bmax, (long long)fb, T, (long long)c12max, (long long)fb12, T);
    }
  }
  return 0;
}
