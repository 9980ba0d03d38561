/* GPU: the dsv4_router end to end against the FP64 oracle: decode and prefill paths for both presets and
 * odd shapes, determinism, batch invariance, CUDA-graph capture, back-to-back decode calls with and without
 * launch overlap (PDL), hash mode with both weightings, the error counter, and a safetensors round trip. */
#include <math.h>
#include <unistd.h>

#include "gpu_util.h"
#include "oracle.h"
#include "safetensors.h"

static dsv4_context *g_ctx;

typedef struct model {
  dsv4_router_config cfg;
  uint16_t *x, *w;   /* bf16 bits [nmax,H], [E,H] */
  float *bias;
  int32_t *lut, *tok;
  int64_t nmax;
  CUdeviceptr dx, dw, dbias, dlut, dtok, dout_w, dout_ids;
} model;

static uint16_t bf16_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  /* round to nearest even */
}
static float frand(uint64_t *s) { return (float)((test_rand(s) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }

static void model_init(model *m, const dsv4_router_config *cfg, int64_t nmax, uint64_t seed) {
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  m->nmax = nmax;
  const int64_t H = cfg->hidden_size, E = cfg->num_experts, k = cfg->top_k, V = cfg->vocab_size;
  m->x = malloc(2 * (size_t)(nmax * H));
  m->w = malloc(2 * (size_t)(E * H));
  m->bias = malloc(4 * (size_t)E);
  m->lut = malloc(4 * (size_t)(V * k));
  m->tok = malloc(4 * (size_t)nmax);
  for (int64_t i = 0; i < nmax * H; ++i) m->x[i] = bf16_of(frand(&seed) * (i % 97 == 0 ? 8.0f : 1.0f));
  for (int64_t i = 0; i < E * H; ++i) m->w[i] = bf16_of(frand(&seed) * 0.05f);
  for (int64_t i = 0; i < E; ++i) m->bias[i] = frand(&seed) * 0.1f;
  for (int64_t v = 0; v < V; ++v) {  /* k distinct experts per row */
    int64_t start = (int64_t)(test_rand(&seed) % (uint64_t)E);
    for (int64_t j = 0; j < k; ++j) m->lut[v * k + j] = (int32_t)((start + j * 7) % E);
    if (E < 7 * k) for (int64_t j = 0; j < k; ++j) m->lut[v * k + j] = (int32_t)((start + j) % E);
  }
  for (int64_t t = 0; t < nmax; ++t) m->tok[t] = (int32_t)(test_rand(&seed) % (uint64_t)V);
  m->dx = gpu_alloc(2 * (size_t)(nmax * H));
  m->dw = gpu_alloc(2 * (size_t)(E * H));
  m->dbias = gpu_alloc(4 * (size_t)E);
  m->dlut = gpu_alloc(4 * (size_t)(V * k));
  m->dtok = gpu_alloc(4 * (size_t)nmax);
  m->dout_w = gpu_alloc(4 * (size_t)(nmax * k));
  m->dout_ids = gpu_alloc(4 * (size_t)(nmax * k));
  gpu_upload(m->dx, m->x, 2 * (size_t)(nmax * H));
  gpu_upload(m->dw, m->w, 2 * (size_t)(E * H));
  gpu_upload(m->dbias, m->bias, 4 * (size_t)E);
  gpu_upload(m->dlut, m->lut, 4 * (size_t)(V * k));
  gpu_upload(m->dtok, m->tok, 4 * (size_t)nmax);
}

static void model_free(model *m) {
  gpu_free(m->dx), gpu_free(m->dw), gpu_free(m->dbias), gpu_free(m->dlut), gpu_free(m->dtok);
  gpu_free(m->dout_w), gpu_free(m->dout_ids);
  free(m->x), free(m->w), free(m->bias), free(m->lut), free(m->tok);
}

static dsv4_router *make_router(model *m, int64_t max_tokens, int32_t decode_max) {
  dsv4_router *r = NULL;
  assert_int_equal(dsv4_router_create(g_ctx, &m->cfg, &r), DSV4_OK);
  if (decode_max >= 0) assert_int_equal(dsv4_router_set_decode_max_tokens(r, decode_max), DSV4_OK);
  assert_int_equal(dsv4_router_set_weights(r, (const void *)m->dw, (const float *)m->dbias, (const int32_t *)m->dlut),
                   DSV4_OK);
  dsv4_status s = dsv4_router_prepare(r, max_tokens);
  if (s != DSV4_OK) fprintf(stderr, "prepare: %s\n", dsv4_last_error());
  assert_int_equal(s, DSV4_OK);
  return r;
}

/* Runs forward on the first n tokens (from token offset `first`) and downloads the outputs. */
static void run(dsv4_router *r, model *m, CUstream s, int64_t first, int64_t n, float *w, int32_t *ids) {
  const int64_t H = m->cfg.hidden_size, k = m->cfg.top_k;
  gpu_poison(m->dout_w, 4 * (size_t)(n * k));
  gpu_poison(m->dout_ids, 4 * (size_t)(n * k));
  dsv4_status st = dsv4_router_forward(r, s, (const void *)(m->dx + 2 * (size_t)(first * H)),
                                       (const int32_t *)(m->dtok + 4 * (size_t)first), n, (float *)m->dout_w,
                                       (int32_t *)m->dout_ids);
  if (st != DSV4_OK) fprintf(stderr, "forward: %s\n", dsv4_last_error());
  assert_int_equal(st, DSV4_OK);
  GPU_CHECK(cuCtxSynchronize());
  gpu_download(w, m->dout_w, 4 * (size_t)(n * k));
  gpu_download(ids, m->dout_ids, 4 * (size_t)(n * k));
}

static int check_token(const model *m, int64_t t, const float *w, const int32_t *ids) {
  const dsv4_router_config *c = &m->cfg;
  char why[1024];
  int bad = oracle_check_routed_token(m->x + t * c->hidden_size, m->w, c->hidden_size, c->num_experts, m->bias,
                                      c->top_k, c->routed_scaling_factor, c->mode == DSV4_ROUTER_HASH, m->tok[t],
                                      m->lut, c->vocab_size, w, ids, why, sizeof why);
  if (bad) fprintf(stderr, "token %lld: %s\n", (long long)t, why);
  return bad;
}

static void check_many(const model *m, int64_t first, int64_t n, const float *w, const int32_t *ids) {
  const int32_t k = m->cfg.top_k;
  int64_t step = n <= 128 ? 1 : n / 61 + 1, bad = 0, checked = 0;
  for (int64_t t = 0; t < n; t += step, ++checked) bad += check_token(m, first + t, w + t * k, ids + t * k);
  if (n > 1) bad += check_token(m, first + n - 1, w + (n - 1) * k, ids + (n - 1) * k);
  if (bad) fprintf(stderr, "%lld of %lld sampled tokens wrong\n", (long long)bad, (long long)checked);
  assert_int_equal(bad, 0);
}

static void dense_shapes(const dsv4_router_config *cfg, const int64_t *ns, int count, uint64_t seed) {
  int64_t nmax = 0;
  for (int i = 0; i < count; ++i) nmax = ns[i] > nmax ? ns[i] : nmax;
  model m;
  model_init(&m, cfg, nmax, seed);
  dsv4_router *r = make_router(&m, nmax, -1);
  float *w = malloc(4 * (size_t)(nmax * cfg->top_k));
  int32_t *ids = malloc(4 * (size_t)(nmax * cfg->top_k));
  for (int i = 0; i < count; ++i) {
    run(r, &m, NULL, 0, ns[i], w, ids);
    check_many(&m, 0, ns[i], w, ids);
  }
  dsv4_router_destroy(r);
  free(w), free(ids);
  model_free(&m);
}

static void test_dense_presets(void **state) {
  (void)state;
  const int64_t ns[] = {1, 2, 63, 64, 65, 1000, 16384};
  dsv4_router_config c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &c);
  dense_shapes(&c, ns, 7, 11);
  dsv4_router_config_preset("v4-flash", DSV4_ROUTER_DENSE, &c);
  dense_shapes(&c, ns, 7, 12);
}

static void test_dense_odd_shapes(void **state) {
  (void)state;
  const int64_t ns[] = {1, 2, 63, 64, 65, 1000};
  dsv4_router_config c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &c);
  c.num_experts = 144, c.hidden_size = 1024, c.top_k = 8;
  dense_shapes(&c, ns, 6, 13);
  c.num_experts = 1000, c.hidden_size = 2056, c.top_k = 16;
  dense_shapes(&c, ns, 6, 14);
  c.num_experts = 3, c.hidden_size = 24, c.top_k = 3;
  dense_shapes(&c, ns, 6, 15);
}

/* Prefill over more than one chunk (DSV4_PREFILL_CHUNK rows a GEMM call, the logits workspace holding one
 * chunk), dense and hash mode (scored weights: the token ids of each chunk): the tokens at both chunk edges
 * and a sample against the oracle. */
static void test_prefill_chunks(void **state) {
  (void)state;
  const int64_t chunk = DSV4_PREFILL_CHUNK, n = 2 * chunk + 77;
  for (int mode = 0; mode < 2; ++mode) {
    dsv4_router_config c;
    dsv4_router_config_preset("v4-flash", mode ? DSV4_ROUTER_HASH : DSV4_ROUTER_DENSE, &c);
    c.hidden_size = 1024;   /* the chunking does not depend on H; a quarter of the memory and time */
    model m;
    model_init(&m, &c, n, 31 + (uint64_t)mode);
    dsv4_router *r = make_router(&m, n, -1);
    float *w = malloc(4 * (size_t)(n * c.top_k));
    int32_t *ids = malloc(4 * (size_t)(n * c.top_k));
    assert_non_null(w);
    assert_non_null(ids);
    run(r, &m, NULL, 0, n, w, ids);
    check_many(&m, 0, n, w, ids);
    const int64_t edges[] = {chunk - 1, chunk, chunk + 1, 2 * chunk - 1, 2 * chunk, 2 * chunk + 1};
    int bad = 0;
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; ++i)
      bad += check_token(&m, edges[i], w + edges[i] * c.top_k, ids + edges[i] * c.top_k);
    assert_int_equal(bad, 0);
    dsv4_router_destroy(r);
    free(w), free(ids);
    model_free(&m);
  }
}

/* Determinism (two runs bitwise equal) and batch invariance (a token alone == the same token in a batch of
 * 64, at any position), on the decode path. Then the prefill path: forced by a switch point of 0. */
static void test_determinism_and_batch_invariance(void **state) {
  (void)state;
  dsv4_router_config c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &c);
  model m;
  model_init(&m, &c, 64, 21);
  for (int path = 0; path < 2; ++path) {
    dsv4_router *r = make_router(&m, 64, path == 0 ? -1 : 0);
    float wa[384], wb[384], w1[6];
    int32_t ia[384], ib[384], i1[6];
    run(r, &m, NULL, 0, 64, wa, ia);
    run(r, &m, NULL, 0, 64, wb, ib);
    assert_memory_equal(wa, wb, sizeof wa);
    assert_memory_equal(ia, ib, sizeof ia);
    for (int64_t t = 0; t < 64; t += (path == 0 ? 1 : 9)) {
      run(r, &m, NULL, t, 1, w1, i1);
      assert_memory_equal(w1, wa + 6 * t, sizeof w1);
      assert_memory_equal(i1, ia + 6 * t, sizeof i1);
    }
    for (int64_t n = 2; n <= 64; n += 13) {  /* prefixes of the batch */
      run(r, &m, NULL, 0, n, wb, ib);
      assert_memory_equal(wb, wa, 4 * (size_t)(6 * n));
      assert_memory_equal(ib, ia, 4 * (size_t)(6 * n));
    }
    dsv4_router_destroy(r);
  }
  model_free(&m);
}

/* forward captured in a CUDA graph and replayed gives what eager forward gives. */
static void test_graph_capture(void **state) {
  (void)state;
  dsv4_router_config c;
  dsv4_router_config_preset("v4-flash", DSV4_ROUTER_DENSE, &c);
  /* Decode, one prefill chunk, two prefill chunks. */
  const int64_t nmax = DSV4_PREFILL_CHUNK + 77, sizes[] = {8, 5000, nmax};
  model m;
  model_init(&m, &c, nmax, 31);
  dsv4_router *r = make_router(&m, nmax, -1);
  CUstream s;
  GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  float *we = malloc(4 * (size_t)(nmax * 6)), *wg = malloc(4 * (size_t)(nmax * 6));
  int32_t *ie = malloc(4 * (size_t)(nmax * 6)), *ig = malloc(4 * (size_t)(nmax * 6));
  for (int i = 0; i < 3; ++i) {
    int64_t n = sizes[i];
    run(r, &m, s, 0, n, we, ie);
    gpu_poison(m.dout_w, 4 * (size_t)(n * 6));
    gpu_poison(m.dout_ids, 4 * (size_t)(n * 6));
    GPU_CHECK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
    dsv4_status st = dsv4_router_forward(r, s, (const void *)m.dx, NULL, n, (float *)m.dout_w, (int32_t *)m.dout_ids);
    gpu_graph_replay(s, 3);
    assert_int_equal(st, DSV4_OK);
    gpu_download(wg, m.dout_w, 4 * (size_t)(n * 6));
    gpu_download(ig, m.dout_ids, 4 * (size_t)(n * 6));
    assert_memory_equal(we, wg, 4 * (size_t)(n * 6));
    assert_memory_equal(ie, ig, 4 * (size_t)(n * 6));
  }
  GPU_CHECK(cuStreamDestroy(s));
  dsv4_router_destroy(r);
  free(we), free(wg), free(ie), free(ig);
  model_free(&m);
}

/* Decode calls enqueued back to back, no sync between them, each on other tokens into its own outputs, with
 * launch overlap on (the default: each call's gate GEMM loads its weight while the previous call's routing
 * runs) and off, eagerly and replayed from a graph: every call gives the bits it gives alone. A call that wrote
 * its split-K slabs before the previous call had read them would show here. Dense and scored-hash modes. */
static void test_back_to_back_decode(void **state) {
  (void)state;
  enum { CALLS = 8 };
  static const int64_t ns[] = {1, 8, 64};
  for (int mode = 0; mode < 2; ++mode) {
    dsv4_router_config c;
    dsv4_router_config_preset(mode ? "v4-flash" : "v4-pro", mode ? DSV4_ROUTER_HASH : DSV4_ROUTER_DENSE, &c);
    const int64_t k = c.top_k, H = c.hidden_size, nmax = 64 + 3 * CALLS;
    model m;
    model_init(&m, &c, nmax, 51 + (uint64_t)mode);
    dsv4_router *r = make_router(&m, 64, -1);
    CUstream s;
    GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr outs = gpu_alloc(2 * 4 * (size_t)(CALLS * 64 * k));   /* weights, then ids, per call */
    float *ref_w = malloc(4 * (size_t)(CALLS * 64 * k)), *got_w = malloc(4 * (size_t)(CALLS * 64 * k));
    int32_t *ref_i = malloc(4 * (size_t)(CALLS * 64 * k)), *got_i = malloc(4 * (size_t)(CALLS * 64 * k));
    for (int ni = 0; ni < 3; ++ni) {
      const int64_t n = ns[ni], per = n * k;
      for (int call = 0; call < CALLS; ++call) {   /* each call alone, synchronised */
        run(r, &m, s, 3 * call, n, ref_w + call * per, ref_i + call * per);
        check_many(&m, 3 * call, n, ref_w + call * per, ref_i + call * per);
      }
      for (int variant = 0; variant < 4; ++variant) {   /* PDL on / off x eager / graph */
        const int pdl = variant < 2, graph = variant & 1;
        assert_int_equal(dsv4_router_set_pdl(r, pdl), DSV4_OK);
        gpu_poison(outs, 2 * 4 * (size_t)(CALLS * per));
        if (graph) GPU_CHECK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
        dsv4_status st = DSV4_OK;
        for (int call = 0; call < CALLS && st == DSV4_OK; ++call)
          st = dsv4_router_forward(r, s, (const void *)(m.dx + 2 * (size_t)(3 * call * H)),
                                   (const int32_t *)(m.dtok + 4 * (size_t)(3 * call)), n,
                                   (float *)(outs + 4 * (size_t)(call * per)),
                                   (int32_t *)(outs + 4 * (size_t)(CALLS * per + call * per)));
        if (graph) gpu_graph_replay(s, 3);
        assert_int_equal(st, DSV4_OK);
        GPU_CHECK(cuStreamSynchronize(s));
        gpu_download(got_w, outs, 4 * (size_t)(CALLS * per));
        gpu_download(got_i, outs + 4 * (size_t)(CALLS * per), 4 * (size_t)(CALLS * per));
        for (int call = 0; call < CALLS; ++call) {
          if (memcmp(got_w + call * per, ref_w + call * per, 4 * (size_t)per) ||
              memcmp(got_i + call * per, ref_i + call * per, 4 * (size_t)per))
            fail_msg("%s N=%lld, PDL %s, %s: call %d of %d back to back differs from the call alone",
                     mode ? "hash" : "dense", (long long)n, pdl ? "on" : "off", graph ? "graph" : "eager", call,
                     CALLS);
        }
      }
    }
    gpu_free(outs);
    free(ref_w), free(got_w), free(ref_i), free(got_i);
    GPU_CHECK(cuStreamDestroy(s));
    dsv4_router_destroy(r);
    model_free(&m);
  }
}

/* dsv4_hash_router reading, as its token ids, the topk_ids a dense decode forward wrote just before it on the same
 * stream. The decode path's routing kernel lets its PDL dependents launch before it writes its outputs, and the
 * hash router is PDL-launched: this checks that the hash router waits for it before reading (a read too early sees
 * the poison: an out-of-range token, expert 0 with weight 0). Eager and in a graph, several rounds each. */
static void test_hash_router_behind_decode(void **state) {
  (void)state;
  enum { ROUNDS = 6 };
  dsv4_router_config c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &c);
  const int64_t n = 64, k = c.top_k, E = c.num_experts, nk = n * k;
  model m;
  model_init(&m, &c, n, 61);
  dsv4_router *r = make_router(&m, n, -1);
  int32_t *lut = malloc(4 * (size_t)E), *ids = malloc(4 * (size_t)nk), *hids = malloc(4 * (size_t)nk);
  float *w = malloc(4 * (size_t)nk), *hw = malloc(4 * (size_t)nk);
  for (int64_t v = 0; v < E; ++v) lut[v] = (int32_t)((v * 37 + 11) % E);   /* vocab = E, one slot a token */
  CUdeviceptr d_lut = gpu_alloc(4 * (size_t)E), d_hw = gpu_alloc(4 * (size_t)nk), d_hids = gpu_alloc(4 * (size_t)nk);
  gpu_upload(d_lut, lut, 4 * (size_t)E);
  run(r, &m, NULL, 0, n, w, ids);   /* the forward alone: the hash router's token ids */
  check_many(&m, 0, n, w, ids);
  CUstream s;
  GPU_CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  for (int graph = 0; graph < 2; ++graph)
    for (int round = 0; round < ROUNDS; ++round) {
      gpu_poison(m.dout_ids, 4 * (size_t)nk);
      gpu_poison(d_hids, 4 * (size_t)nk);
      gpu_poison(d_hw, 4 * (size_t)nk);
      if (graph) GPU_CHECK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
      dsv4_status st = dsv4_router_forward(r, s, (const void *)m.dx, NULL, n, (float *)m.dout_w, (int32_t *)m.dout_ids);
      if (st == DSV4_OK)
        st = dsv4_hash_router(g_ctx, s, (const int32_t *)m.dout_ids, nk, (const int32_t *)d_lut, (int32_t)E, 1,
                              (float *)d_hw, (int32_t *)d_hids);
      if (graph) gpu_graph_replay(s, 1);
      assert_int_equal(st, DSV4_OK);
      GPU_CHECK(cuStreamSynchronize(s));
      gpu_download(hids, d_hids, 4 * (size_t)nk);
      gpu_download(hw, d_hw, 4 * (size_t)nk);
      int64_t wrong = 0;
      for (int64_t i = 0; i < nk; ++i) wrong += hids[i] != lut[ids[i]] || hw[i] != 1.0f;
      if (wrong) fail_msg("hash router behind a decode forward (%s, round %d): %lld of %lld outputs wrong",
                          graph ? "graph" : "eager", round, (long long)wrong, (long long)nk);
    }
  GPU_CHECK(cuStreamDestroy(s));
  gpu_free(d_lut), gpu_free(d_hw), gpu_free(d_hids);
  free(lut), free(ids), free(hids), free(w), free(hw);
  dsv4_router_destroy(r);
  model_free(&m);
}

static void test_hash_modes_and_error_count(void **state) {
  (void)state;
  dsv4_router_config c;
  dsv4_router_config_preset("v4-pro", DSV4_ROUTER_HASH, &c);
  model m;
  model_init(&m, &c, 3000, 41);
  m.tok[5] = -7, m.tok[77] = c.vocab_size, m.tok[2999] = 1 << 30;  /* three bad ids */
  gpu_upload(m.dtok, m.tok, 4 * 3000);
  float *w = malloc(4 * 3000 * 6);
  int32_t *ids = malloc(4 * 3000 * 6);
  /* Scored (the checkpoint's behaviour): decode and prefill. */
  dsv4_router *r = make_router(&m, 3000, -1);
  const int64_t ns[] = {1, 64, 3000};
  for (int i = 0; i < 3; ++i) {
    run(r, &m, NULL, 0, ns[i], w, ids);
    check_many(&m, 0, ns[i], w, ids);
    for (int j = 0; j < 6 && ns[i] > 77; ++j) assert_true(ids[5 * 6 + j] == 0 && w[5 * 6 + j] == 0.0f);
  }
  assert_int_equal(dsv4_router_take_error_count(r), 1 + 3);  /* token 5 at N=64; 5, 77, 2999 at N=3000 */
  assert_int_equal(dsv4_router_take_error_count(r), 0);
  dsv4_router_destroy(r);
  /* Uniform: no GEMM, no hidden states, no gate weight. */
  c.hash_weights = DSV4_HASH_WEIGHTS_UNIFORM;
  assert_int_equal(dsv4_router_create(g_ctx, &c, &r), DSV4_OK);
  assert_int_equal(dsv4_router_set_weights(r, NULL, NULL, (const int32_t *)m.dlut), DSV4_OK);
  assert_int_equal(dsv4_router_prepare(r, 3000), DSV4_OK);
  gpu_poison(m.dout_w, 4 * 3000 * 6);
  assert_int_equal(dsv4_router_forward(r, NULL, NULL, (const int32_t *)m.dtok, 3000, (float *)m.dout_w,
                                       (int32_t *)m.dout_ids), DSV4_OK);
  gpu_sync();
  gpu_download(w, m.dout_w, 4 * 3000 * 6);
  gpu_download(ids, m.dout_ids, 4 * 3000 * 6);
  for (int64_t t = 0; t < 3000; ++t) {
    int ok = m.tok[t] >= 0 && m.tok[t] < c.vocab_size;
    for (int j = 0; j < 6; ++j) {
      assert_int_equal(ids[t * 6 + j], ok ? m.lut[(int64_t)m.tok[t] * 6 + j] : 0);
      assert_true(w[t * 6 + j] == (ok ? 2.5f / 6.0f : 0.0f));
    }
  }
  assert_int_equal(dsv4_router_take_error_count(r), 3);
  dsv4_router_destroy(r);
  free(w), free(ids);
  model_free(&m);
}

static void test_safetensors_round_trip(void **state) {
  (void)state;
  dsv4_router_config c;
  dsv4_router_config_preset("v4-flash", DSV4_ROUTER_DENSE, &c);
  c.vocab_size = 1000;
  model m;
  model_init(&m, &c, 100, 51);
  int64_t *lut64 = malloc(8 * 1000 * 6);
  for (int i = 0; i < 6000; ++i) lut64[i] = m.lut[i];
  int64_t sw[2] = {256, 4096}, sb[1] = {256}, sl[2] = {1000, 6};
  dsv4_st_write_tensor t[3] = {
      {"model.layers.3.ffn.gate.weight", "BF16", 2, sw, m.w, 2 * 256 * 4096},
      {"model.layers.3.ffn.gate.e_score_correction_bias", "F32", 1, sb, m.bias, 4 * 256},
      {"model.layers.3.ffn.gate.tid2eid", "I64", 2, sl, lut64, 8 * 6000}};
  char path[] = "/tmp/dsv4-router-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(dsv4_st_write(path, t, 3, NULL, NULL, 0), DSV4_OK);
  for (int mode = 0; mode < 2; ++mode) {
    c.mode = mode == 0 ? DSV4_ROUTER_DENSE : DSV4_ROUTER_HASH;
    m.cfg = c;
    dsv4_router *a = make_router(&m, 100, -1), *b = NULL;
    assert_int_equal(dsv4_router_create(g_ctx, &c, &b), DSV4_OK);
    assert_status_names(dsv4_router_load_safetensors(b, "/nonexistent/x.safetensors", "p."), DSV4_ERR_IO, "x.safetensors");
    assert_status_names(dsv4_router_load_safetensors(b, path, "model.layers.4.ffn.gate."), DSV4_ERR_FORMAT, "layers.4");
    assert_int_equal(dsv4_router_load_safetensors(b, path, "model.layers.3.ffn.gate."), DSV4_OK);
    assert_int_equal(dsv4_router_prepare(b, 100), DSV4_OK);
    float wa[600], wb[600];
    int32_t ia[600], ib[600];
    run(a, &m, NULL, 0, 100, wa, ia);
    run(b, &m, NULL, 0, 100, wb, ib);
    assert_memory_equal(wa, wb, sizeof wa);
    assert_memory_equal(ia, ib, sizeof ia);
    dsv4_router_destroy(a);
    dsv4_router_destroy(b);
  }
  unlink(path);
  free(lut64);
  model_free(&m);
}

static void test_forward_argument_checks(void **state) {
  (void)state;
  dsv4_router_config c;
  dsv4_router_config_preset("v4-flash", DSV4_ROUTER_DENSE, &c);
  model m;
  model_init(&m, &c, 8, 61);
  dsv4_router *r = NULL;
  assert_int_equal(dsv4_router_create(g_ctx, &c, &r), DSV4_OK);
  float *w = (float *)m.dout_w;
  int32_t *ids = (int32_t *)m.dout_ids;
  assert_status_names(dsv4_router_forward(r, NULL, (const void *)m.dx, NULL, 8, w, ids), DSV4_ERR_INVALID_ARGUMENT, "prepare");
  assert_status_names(dsv4_router_prepare(r, 8), DSV4_ERR_INVALID_ARGUMENT, "gate_weight_bf16");
  assert_int_equal(dsv4_router_set_weights(r, (const void *)m.dw, NULL, NULL), DSV4_OK);
  dsv4_status st = dsv4_router_prepare(r, 8);
  if (st != DSV4_OK) fprintf(stderr, "prepare: %s\n", dsv4_last_error());
  assert_int_equal(st, DSV4_OK);
  assert_status_names(dsv4_router_forward(r, NULL, (const void *)m.dx, NULL, 9, w, ids), DSV4_ERR_INVALID_ARGUMENT, "num_tokens");
  assert_status_names(dsv4_router_forward(r, NULL, (const void *)m.dx, NULL, -1, w, ids), DSV4_ERR_INVALID_ARGUMENT, "num_tokens");
  assert_status_names(dsv4_router_forward(r, NULL, NULL, NULL, 8, w, ids), DSV4_ERR_INVALID_ARGUMENT, "hidden_bf16");
  assert_status_names(dsv4_router_forward(r, NULL, (const void *)m.dx, NULL, 8, NULL, ids), DSV4_ERR_INVALID_ARGUMENT, "topk_weights");
  assert_status_names(dsv4_router_forward(r, NULL, (const void *)m.dx, NULL, 8, w, NULL), DSV4_ERR_INVALID_ARGUMENT, "topk_ids");
  assert_status_names(dsv4_router_forward(r, NULL, (const void *)(m.dx + 8), NULL, 8, w, ids),
                      DSV4_ERR_INVALID_ARGUMENT, "hidden_bf16");   /* not 16-byte aligned */
  assert_status_names(dsv4_router_forward(r, NULL, (const void *)m.dx, NULL, 8, (float *)(m.dout_w + 2), ids),
                      DSV4_ERR_INVALID_ARGUMENT, "topk_weights");
  assert_int_equal(dsv4_router_forward(r, NULL, NULL, NULL, 0, NULL, NULL), DSV4_OK);
  assert_status_names(dsv4_router_set_decode_max_tokens(r, 65), DSV4_ERR_INVALID_ARGUMENT, "'n'");
  dsv4_router_destroy(r);
  /* Hash mode, both weightings: token_ids NULL or not 4-byte aligned. */
  for (int uniform = 0; uniform <= 1; ++uniform) {
    dsv4_router_config h;
    dsv4_router_config_preset("v4-flash", DSV4_ROUTER_HASH, &h);
    if (uniform) h.hash_weights = DSV4_HASH_WEIGHTS_UNIFORM;
    assert_int_equal(dsv4_router_create(g_ctx, &h, &r), DSV4_OK);
    assert_int_equal(dsv4_router_set_weights(r, uniform ? NULL : (const void *)m.dw, NULL, (const int32_t *)m.dlut),
                     DSV4_OK);
    assert_int_equal(dsv4_router_prepare(r, 8), DSV4_OK);
    const void *x = uniform ? NULL : (const void *)m.dx;
    assert_status_names(dsv4_router_forward(r, NULL, x, NULL, 8, w, ids), DSV4_ERR_INVALID_ARGUMENT, "token_ids");
    assert_status_names(dsv4_router_forward(r, NULL, x, (const int32_t *)(m.dtok + 2), 8, w, ids),
                        DSV4_ERR_INVALID_ARGUMENT, "token_ids");
    assert_int_equal(dsv4_router_forward(r, NULL, x, (const int32_t *)m.dtok, 8, w, ids), DSV4_OK);
    gpu_sync();
    dsv4_router_destroy(r);
  }
  dsv4_router_config bad = c;
  bad.top_k = 17;
  r = (dsv4_router *)0x1;
  assert_status_names(dsv4_router_create(g_ctx, &bad, &r), DSV4_ERR_UNSUPPORTED, "top_k");
  assert_null(r);
  model_free(&m);
}

int main(void) {
  DSV4_GPU_TEST_OR_SKIP(&g_ctx);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_argument_checks),
      cmocka_unit_test(test_dense_presets),
      cmocka_unit_test(test_dense_odd_shapes),
      cmocka_unit_test(test_prefill_chunks),
      cmocka_unit_test(test_determinism_and_batch_invariance),
      cmocka_unit_test(test_graph_capture),
      cmocka_unit_test(test_back_to_back_decode),
      cmocka_unit_test(test_hash_router_behind_decode),
      cmocka_unit_test(test_hash_modes_and_error_count),
      cmocka_unit_test(test_safetensors_round_trip),
  };
  GPU_RUN_TESTS(g_ctx, tests);
}
