/*
 * FP64 CPU oracle of SPEC section 2, written from the spec (not from any kernel). Inputs are what the
 * kernels see (FP32 logits, bf16 as raw uint16), every intermediate is double.
 */
#ifndef DSV4_ORACLE_H
#define DSV4_ORACLE_H

#include <stdint.h>

/* sqrt(softplus(z)), softplus(z) = max(z,0) + log1p(exp(-|z|)); NaN stays NaN, -inf gives 0. */
double oracle_score(double logit);

/* Total order of SPEC section 2: returns 1 if (a, ia) ranks before (b, ib): larger value first, NaN below
 * everything (below -inf), equal values -> lower index first. */
int oracle_ranks_before(double a, int64_t ia, double b, int64_t ib);

/* The k best of values[0..n) in rank order. */
void oracle_topk(const double *values, int64_t n, int32_t k, int32_t *out_idx);

/* Top-k of one row of floats (dsv4_topk_select). */
void oracle_topk_select_row(const float *row, int64_t cols, int32_t k, float *out_values, int32_t *out_idx);

/* Weights for the selected experts given their (unbiased) scores s[0..k): renormalise and scale, with the
 * edge cases of SPEC section 2 (NaN weighs 0; +inf entries share the weight; a zero sum -> scale/k). */
void oracle_weights(const double *s, int32_t k, double scale, double *out_w);

/* Dense routing from FP32 logits [n, e] (dsv4_activation_topk). bias may be NULL (zeros). */
void oracle_route_logits(const float *logits, int64_t n, int32_t e, const float *bias, int32_t k, double scale,
                         double *out_w, int32_t *out_ids, double *out_sel /* [n,e] or NULL */);

/* Dense logits in FP64 from bf16 x [n,h] and W [e,h] (raw bf16 bits). */
double oracle_bf16_to_double(uint16_t b);
void oracle_gate_logits(const uint16_t *x, const uint16_t *w, int64_t n, int32_t h, int32_t e, double *out);

/* Hash routing, uniform weights: ids = lut[token], w = weight_each; bad token -> id 0, weight 0.
 * Returns the number of out-of-range token ids. */
int64_t oracle_hash_uniform(const int32_t *tokens, int64_t n, const int32_t *lut, int32_t vocab, int32_t k,
                            double weight_each, double *out_w, int32_t *out_ids);

/* Hash routing, scored weights from FP32 logits [n, e]. Returns the number of out-of-range token ids. */
int64_t oracle_hash_scored(const float *logits, const int32_t *tokens, int64_t n, int32_t e, const int32_t *lut,
                           int32_t vocab, int32_t k, double scale, double *out_w, int32_t *out_ids);

/* Judges one routed token of a dense or scored-hash gate (bf16 x row [h], W [e,h]) against the FP64 math.
 * Selection: ids distinct, in range, and each chosen expert's FP64 selection score within a tolerance of the
 * oracle's at that rank (a near-tie whose order FP32 accumulation may flip; the tolerance is 1e-6 of
 * sum_h |x_h| * max|W| plus 1e-7); hash: ids exactly the table's. Weights: the FP64 weights of the chosen
 * experts, within 1e-4 relative (+1e-6). bias may be NULL; token/lut/vocab are used when hash != 0.
 * Returns 0 when right; otherwise 1, with a description in why (may be NULL). */
int oracle_check_routed_token(const uint16_t *x, const uint16_t *w, int32_t h, int32_t e, const float *bias,
                              int32_t k, double scale, int hash, int32_t token, const int32_t *lut, int32_t vocab,
                              const float *got_w, const int32_t *got_ids, char *why, int why_cap);

#endif
