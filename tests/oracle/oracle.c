/* FP64 oracle of SPEC section 2. */
#include "oracle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double oracle_score(double z) {
  if (isnan(z)) return NAN;
  double sp = fmax(z, 0.0) + log1p(exp(-fabs(z)));   /* +inf -> inf, -inf -> 0 */
  return sqrt(sp);
}

int oracle_ranks_before(double a, int64_t ia, double b, int64_t ib) {
  int an = isnan(a), bn = isnan(b);
  if (an != bn) return bn;              /* the non-NaN one ranks first */
  if (!an && a != b) return a > b;
  return ia < ib;                       /* equal (or both NaN): lower index first */
}

void oracle_topk(const double *v, int64_t n, int32_t k, int32_t *out_idx) {
  /* Selection by repeated scan keeps the oracle obviously correct; k is small in routing. For long rows
   * the caller uses oracle_topk_select_row, which sorts. */
  char *taken = calloc((size_t)n, 1);
  for (int32_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i)
      if (!taken[i] && (best < 0 || oracle_ranks_before(v[i], i, v[best], best))) best = i;
    taken[best] = 1;
    out_idx[j] = (int32_t)best;
  }
  free(taken);
}

typedef struct { double v; int64_t i; } ranked;
static int cmp_ranked(const void *pa, const void *pb) {
  const ranked *a = pa, *b = pb;
  if (oracle_ranks_before(a->v, a->i, b->v, b->i)) return -1;
  if (oracle_ranks_before(b->v, b->i, a->v, a->i)) return 1;
  return 0;
}

void oracle_topk_select_row(const float *row, int64_t cols, int32_t k, float *out_values, int32_t *out_idx) {
  ranked *r = malloc((size_t)cols * sizeof *r);
  for (int64_t i = 0; i < cols; ++i) r[i].v = row[i], r[i].i = i;
  qsort(r, (size_t)cols, sizeof *r, cmp_ranked);
  for (int32_t j = 0; j < k; ++j) {
    out_values[j] = row[r[j].i];
    out_idx[j] = (int32_t)r[j].i;
  }
  free(r);
}

void oracle_weights(const double *s, int32_t k, double scale, double *w) {
  int ninf = 0;
  double sum = 0.0;
  for (int32_t j = 0; j < k; ++j) {
    if (isnan(s[j])) continue;
    if (isinf(s[j]) && s[j] > 0) ++ninf;
    else sum += s[j];
  }
  for (int32_t j = 0; j < k; ++j) {
    if (isnan(s[j])) w[j] = 0.0;
    else if (ninf > 0) w[j] = (isinf(s[j]) && s[j] > 0) ? scale / ninf : 0.0;
    else if (sum == 0.0) w[j] = scale / k;
    else w[j] = s[j] / sum * scale;
  }
}

void oracle_route_logits(const float *logits, int64_t n, int32_t e, const float *bias, int32_t k, double scale,
                         double *out_w, int32_t *out_ids, double *out_sel) {
  double *s = malloc((size_t)e * sizeof *s), *sel = malloc((size_t)e * sizeof *sel), sk[16];
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t i = 0; i < e; ++i) {
      s[i] = oracle_score((double)logits[t * e + i]);
      sel[i] = s[i] + (bias ? (double)bias[i] : 0.0);
      if (out_sel) out_sel[t * e + i] = sel[i];
    }
    oracle_topk(sel, e, k, out_ids + t * k);
    for (int32_t j = 0; j < k; ++j) sk[j] = s[out_ids[t * k + j]];
    oracle_weights(sk, k, scale, out_w + t * k);
  }
  free(s);
  free(sel);
}

double oracle_bf16_to_double(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return (double)f;
}

void oracle_gate_logits(const uint16_t *x, const uint16_t *w, int64_t n, int32_t h, int32_t e, double *out) {
  for (int64_t t = 0; t < n; ++t)
    for (int32_t i = 0; i < e; ++i) {
      double acc = 0.0;
      for (int32_t c = 0; c < h; ++c)
        acc += oracle_bf16_to_double(x[t * h + c]) * oracle_bf16_to_double(w[(int64_t)i * h + c]);
      out[t * e + i] = acc;
    }
}

int64_t oracle_hash_uniform(const int32_t *tokens, int64_t n, const int32_t *lut, int32_t vocab, int32_t k,
                            double weight_each, double *out_w, int32_t *out_ids) {
  int64_t bad = 0;
  for (int64_t t = 0; t < n; ++t) {
    int ok = tokens[t] >= 0 && tokens[t] < vocab;
    bad += !ok;
    for (int32_t j = 0; j < k; ++j) {
      out_ids[t * k + j] = ok ? lut[(int64_t)tokens[t] * k + j] : 0;
      out_w[t * k + j] = ok ? weight_each : 0.0;
    }
  }
  return bad;
}

int64_t oracle_hash_scored(const float *logits, const int32_t *tokens, int64_t n, int32_t e, const int32_t *lut,
                           int32_t vocab, int32_t k, double scale, double *out_w, int32_t *out_ids) {
  int64_t bad = 0;
  double sk[16];
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab) {
      ++bad;
      for (int32_t j = 0; j < k; ++j) out_ids[t * k + j] = 0, out_w[t * k + j] = 0.0;
      continue;
    }
    for (int32_t j = 0; j < k; ++j) {
      out_ids[t * k + j] = lut[(int64_t)tokens[t] * k + j];
      sk[j] = oracle_score((double)logits[t * e + out_ids[t * k + j]]);
    }
    oracle_weights(sk, k, scale, out_w + t * k);
  }
  return bad;
}

int oracle_check_routed_token(const uint16_t *x, const uint16_t *w, int32_t h, int32_t e, const float *bias,
                              int32_t k, double scale, int hash, int32_t token, const int32_t *lut, int32_t vocab,
                              const float *got_w, const int32_t *got_ids, char *why, int why_cap) {
  double *lg = malloc(8 * (size_t)e), *sel = malloc(8 * (size_t)e), wmax = 0.0, mag = 0.0;
  float *lf = malloc(4 * (size_t)e);
  oracle_gate_logits(x, w, 1, h, e, lg);
  for (int64_t i = 0; i < (int64_t)e * h; ++i) wmax = fmax(wmax, fabs(oracle_bf16_to_double(w[i])));
  for (int32_t c = 0; c < h; ++c) mag += fabs(oracle_bf16_to_double(x[c]));
  const double tol = 1e-6 * mag * wmax + 1e-7;
  for (int32_t i = 0; i < e; ++i) lf[i] = (float)lg[i];
  double rw[16], s[16], ow[16];
  int32_t rid[16];
  int bad = 0;
  if (!hash) {
    oracle_route_logits(lf, 1, e, bias, k, scale, rw, rid, sel);
    for (int32_t j = 0; j < k && !bad; ++j) {
      bad |= got_ids[j] < 0 || got_ids[j] >= e;
      for (int32_t i = 0; i < j && !bad; ++i) bad |= got_ids[i] == got_ids[j];
      if (!bad) bad |= fabs(sel[got_ids[j]] - sel[rid[j]]) > tol;
      if (!bad) s[j] = oracle_score(lg[got_ids[j]]);
    }
    if (!bad) oracle_weights(s, k, scale, ow);
  } else {
    oracle_hash_scored(lf, &token, 1, e, lut, vocab, k, scale, ow, rid);
    for (int32_t j = 0; j < k; ++j) bad |= got_ids[j] != rid[j];
  }
  for (int32_t j = 0; j < k && !bad; ++j) bad |= !(fabs(got_w[j] - ow[j]) <= 1e-4 * fabs(ow[j]) + 1e-6);
  if (bad && why) {
    int n = snprintf(why, (size_t)why_cap, "E=%d H=%d k=%d%s:", e, h, k, hash ? " hash" : "");
    for (int32_t j = 0; j < k && n < why_cap; ++j)
      n += snprintf(why + n, (size_t)(why_cap - n), " (%d, %.7g | want %d, %.7g)", got_ids[j], got_w[j], rid[j],
                    bad ? ow[j] : 0.0);
  }
  free(lg), free(sel), free(lf);
  return bad;
}
