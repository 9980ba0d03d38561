/* The oracle checked against values worked out by hand from SPEC section 2. */
#include <math.h>

#include "test_util.h"
#include "oracle.h"

static void test_score(void **state) {
  (void)state;
  assert_true(fabs(oracle_score(0.0) - sqrt(log(2.0))) < 1e-15);
  assert_true(fabs(oracle_score(100.0) - 10.0) < 1e-12);            /* softplus(100) = 100 + 3.7e-44 */
  assert_true(fabs(oracle_score(-50.0) - sqrt(exp(-50.0))) < 1e-20); /* log1p(e^-50) ~ e^-50 */
  assert_true(isinf(oracle_score(INFINITY)));
  assert_true(oracle_score(-INFINITY) == 0.0);
  assert_true(isnan(oracle_score(NAN)));
}

static void test_rank_order(void **state) {
  (void)state;
  assert_true(oracle_ranks_before(2.0, 5, 1.0, 0));
  assert_true(oracle_ranks_before(1.0, 0, 1.0, 5));   /* ties: lower index first */
  assert_false(oracle_ranks_before(1.0, 5, 1.0, 0));
  assert_true(oracle_ranks_before(-INFINITY, 9, NAN, 0));  /* NaN below -inf */
  assert_true(oracle_ranks_before(NAN, 1, NAN, 2));
  double v[6] = {1.0, NAN, 3.0, 3.0, -INFINITY, 2.0};
  int32_t idx[6];
  oracle_topk(v, 6, 6, idx);
  int32_t want[6] = {2, 3, 5, 0, 4, 1};
  for (int i = 0; i < 6; ++i) assert_int_equal(idx[i], want[i]);
  float row[5] = {0.5f, NAN, 0.5f, 7.0f, -1.0f}, vals[3];
  oracle_topk_select_row(row, 5, 3, vals, idx);
  assert_int_equal(idx[0], 3);
  assert_int_equal(idx[1], 0);
  assert_int_equal(idx[2], 2);
  assert_true(vals[0] == 7.0f && vals[1] == 0.5f);
}

static void test_weights_edge_cases(void **state) {
  (void)state;
  double w[4];
  double plain[3] = {1.0, 2.0, 1.0};
  oracle_weights(plain, 3, 2.0, w);
  assert_true(fabs(w[0] - 0.5) < 1e-15 && fabs(w[1] - 1.0) < 1e-15);
  double infs[4] = {INFINITY, 1.0, INFINITY, NAN};
  oracle_weights(infs, 4, 3.0, w);
  assert_true(w[0] == 1.5 && w[1] == 0.0 && w[2] == 1.5 && w[3] == 0.0);
  double zeros[4] = {0.0, 0.0, 0.0, 0.0};
  oracle_weights(zeros, 4, 2.5, w);
  for (int i = 0; i < 4; ++i) assert_true(w[i] == 2.5 / 4);
  double nan_one[2] = {NAN, 4.0};
  oracle_weights(nan_one, 2, 1.0, w);
  assert_true(w[0] == 0.0 && w[1] == 1.0);
}

static void test_route_and_hash(void **state) {
  (void)state;
  /* E = 3, k = 2, bias lifts expert 2 above expert 0 for selection; weights use unbiased scores. */
  float logits[3] = {1.0f, -2.0f, 0.5f}, bias[3] = {0.0f, 0.0f, 1.0f};
  double w[2];
  int32_t ids[2];
  oracle_route_logits(logits, 1, 3, bias, 2, 1.0, w, ids, NULL);
  assert_int_equal(ids[0], 2);
  assert_int_equal(ids[1], 0);
  double s2 = oracle_score(0.5), s0 = oracle_score(1.0);
  assert_true(fabs(w[0] - s2 / (s2 + s0)) < 1e-15);
  int32_t lut[4] = {1, 0, 2, 1}, tokens[3] = {1, -1, 2};
  double hw[6];
  int32_t hid[6];
  assert_int_equal(oracle_hash_uniform(tokens, 3, lut, 2, 2, 0.5, hw, hid), 2);
  assert_int_equal(hid[0], 2);
  assert_int_equal(hid[1], 1);
  assert_true(hw[0] == 0.5 && hw[2] == 0.0 && hid[2] == 0 && hid[4] == 0 && hw[5] == 0.0);
  uint16_t x[2] = {0x3f80, 0x4000}, wt[2] = {0x4040, 0xbf80}; /* 1, 2 ; 3, -1 */
  double lg;
  oracle_gate_logits(x, wt, 1, 2, 1, &lg);
  assert_true(lg == 1.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_score),
      cmocka_unit_test(test_rank_order),
      cmocka_unit_test(test_weights_edge_cases),
      cmocka_unit_test(test_route_and_hash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
