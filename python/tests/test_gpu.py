"""GPU tests of the dsv4 Python package and its PyTorch ops (unittest; skipped without torch or CUDA).

Run on the GPU machine, from the repository root:
    DSV4_LIBRARY=build/libdsv4.so python3 -m unittest discover -s python/tests -v

Every op is judged against a plain-PyTorch reference in float64 of SPEC section 2 (never against another
dsv4 kernel); selection is checked exactly where the inputs have no near-ties and, for gate GEMM inputs
(FP32 accumulation in a different order), as "a valid top-k within a tolerance" plus an exact-match rate.
"""

import math
import os
import struct
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

import dsv4  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def _why_skip():
    if torch is None:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    try:
        dsv4.Context(torch.cuda.current_device()).close()
    except (dsv4.Dsv4Error, dsv4.LibraryNotFoundError) as e:
        return f"dsv4 cannot create a context: {e}"
    return None


SKIP = _why_skip()
if SKIP is None:
    import dsv4.torch_ops as T  # noqa: E402  (registers torch.ops.dsv4.*)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    DEV = torch.device("cuda", torch.cuda.current_device())


# ---------------- plain-PyTorch references (float64) ----------------

def ref_order(sel):
    """Row-wise order of SPEC section 2: descending, equal values lower index first, NaN lowest (below -inf),
    -0.0 == +0.0. sel: float64 [rows, cols]. Returns int64 [rows, cols]."""
    key = torch.where(torch.isnan(sel), torch.full_like(sel, -math.inf), sel)
    idx = torch.sort(key, dim=1, descending=True, stable=True).indices
    nan_last = torch.isnan(sel).gather(1, idx).to(torch.int8)
    perm = torch.sort(nan_last, dim=1, stable=True).indices  # non-NaN first, each group keeps its order
    return idx.gather(1, perm)


def ref_scores(logits64):
    """s = sqrt(softplus(z)), softplus(z) = max(z,0) + log1p(exp(-|z|)) (NaN stays NaN, +inf -> inf)."""
    z = logits64
    sp = torch.clamp(z, min=0) + torch.log1p(torch.exp(-torch.abs(z)))
    sp = torch.where(torch.isposinf(z), z, sp)
    return torch.sqrt(sp)


def ref_weights(s_sel, scale):
    """Weights from the selected scores (float64 [N,k]), with SPEC's edge cases (as tests/oracle does): a NaN
    score weighs 0; +inf scores share the weight; a zero sum of the others gives scale/k each."""
    k = s_sel.shape[1]
    nan = torch.isnan(s_sel)
    s0 = torch.where(nan, torch.zeros_like(s_sel), s_sel)
    inf = torch.isposinf(s0)
    ninf = inf.double().sum(dim=1, keepdim=True)
    w_inf = torch.where(inf, scale / ninf.clamp(min=1), torch.zeros_like(s0))
    finite = torch.where(inf, torch.zeros_like(s0), s0)
    total = finite.sum(dim=1, keepdim=True)
    w_fin = torch.where(total != 0, finite / torch.where(total != 0, total, torch.ones_like(total)) * scale,
                        torch.full_like(s0, scale / k))
    w = torch.where(ninf > 0, w_inf, w_fin)
    return torch.where(nan, torch.zeros_like(w), w)


def ref_activation_topk(logits, bias, k, scale):
    s = ref_scores(logits.double())
    sel = s + (bias.double() if bias is not None else 0.0)
    ids = ref_order(sel)[:, :k]
    return ref_weights(s.gather(1, ids), scale), ids, s, sel


def ref_gate_logits(hidden_bf16, weight_bf16):
    return hidden_bf16.double() @ weight_bf16.double().t()


def ref_topk_select(scores, k):
    ids = ref_order(scores.double())[:, :k]
    return scores.gather(1, ids), ids


def ref_hash(token_ids, lut):
    vocab, k = lut.shape
    valid = (token_ids >= 0) & (token_ids < vocab)
    safe = torch.where(valid, token_ids, torch.zeros_like(token_ids)).long()
    ids = torch.where(valid[:, None], lut[safe], torch.zeros_like(lut[safe]))
    w = torch.where(valid[:, None], torch.full(ids.shape, 1.0 / k, dtype=torch.float64, device=ids.device),
                    torch.zeros(ids.shape, dtype=torch.float64, device=ids.device))
    return w, ids


class GpuCase(unittest.TestCase):
    def assert_ids_equal(self, got, want, msg=""):
        got = got.long().cpu()
        want = want.long().cpu()
        bad = (got != want).any(dim=1).nonzero().flatten()
        if len(bad):
            r = bad[0].item()
            self.fail(f"{msg}: {len(bad)} rows differ; first row {r}: got {got[r].tolist()} want {want[r].tolist()}")

    def assert_valid_topk(self, ids, sel64, tol, msg=""):
        """ids int [N,k] is a top-k of sel64 (float64 [N,E]) up to `tol`: distinct, in range, every selected
        value >= every unselected one - tol, and in descending order up to tol."""
        n, k = ids.shape
        e = sel64.shape[1]
        ids = ids.long()
        self.assertTrue(bool(((ids >= 0) & (ids < e)).all()), f"{msg}: ids out of range")
        srt = ids.sort(dim=1).values
        self.assertTrue(bool((srt[:, 1:] != srt[:, :-1]).all()) if k > 1 else True, f"{msg}: repeated ids")
        chosen = sel64.gather(1, ids)
        mask = torch.ones_like(sel64, dtype=torch.bool).scatter_(1, ids, False)
        rest_max = torch.where(mask, sel64, torch.full_like(sel64, -math.inf)).max(dim=1).values
        self.assertTrue(bool((chosen.min(dim=1).values >= rest_max - tol).all()), f"{msg}: not a top-k")
        if k > 1:
            self.assertTrue(bool((chosen[:, 1:] <= chosen[:, :-1] + tol).all()), f"{msg}: not descending")


# ---------------- the ops ----------------

@unittest.skipIf(SKIP, SKIP)
class TopkSelectTest(GpuCase):
    def check(self, scores, k, exact=True):
        values, indices = T.topk_select(scores, k)
        torch.cuda.synchronize()
        self.assertEqual(values.shape, (scores.shape[0], k))
        self.assertEqual(values.dtype, torch.float32)
        self.assertEqual(indices.dtype, torch.int32)
        want_v, want_i = ref_topk_select(scores, k)
        self.assert_ids_equal(indices, want_i, f"topk_select {tuple(scores.shape)} k={k}")
        # values are bit-exact copies of the inputs
        got_bits = values.contiguous().view(torch.int32)
        want_bits = scores.gather(1, indices.long()).contiguous().view(torch.int32)
        self.assertTrue(bool((got_bits == want_bits).all()), "values are not bit-exact copies")

    def test_shapes(self):
        g = torch.Generator(device=DEV).manual_seed(1)
        for rows, cols, k in [(1, 1, 1), (7, 100, 5), (33, 384, 6), (16, 256, 16), (5, 1024, 16), (3, 1025, 17),
                              (4, 5000, 64), (2, 131072, 2048), (64, 131072, 512), (3, 4096, 4096), (300, 384, 6)]:
            with self.subTest(rows=rows, cols=cols, k=k):
                scores = torch.randn(rows, cols, generator=g, device=DEV)
                self.check(scores, k)

    def test_ties_nan_inf_zero(self):
        g = torch.Generator(device=DEV).manual_seed(2)
        for cols, k in [(384, 6), (3000, 100)]:
            scores = torch.randint(-3, 3, (9, cols), generator=g, device=DEV).float()  # many ties
            scores[0, :] = 0.0
            scores[1, ::2] = -0.0                                                       # -0 == +0
            scores[2, 5] = float("nan")
            scores[2, 7] = float("inf")
            scores[3, :] = float("nan")                                                # all NaN
            scores[4, 10:20] = float("-inf")
            scores[5, :] = float("-inf")
            scores[5, 3] = float("nan")                                                # NaN below -inf
            with self.subTest(cols=cols):
                self.check(scores, k)

    def test_strided_rows(self):
        g = torch.Generator(device=DEV).manual_seed(3)
        wide = torch.randn(20, 600, generator=g, device=DEV)
        view = wide[:, 50:450]  # row stride 600, cols 400
        self.assertFalse(view.is_contiguous())
        self.check(view, 8)
        self.check(wide[::2, :300], 5)  # row stride 1200

    def test_empty(self):
        v, i = T.topk_select(torch.empty(0, 50, device=DEV), 3)
        self.assertEqual(v.shape, (0, 3))
        self.assertEqual(i.shape, (0, 3))

    def test_unsupported_k(self):
        with self.assertRaises(dsv4.UnsupportedError) as cm:
            T.topk_select(torch.randn(2, 10, device=DEV), 11)
        self.assertIn("'k'", str(cm.exception))


@unittest.skipIf(SKIP, SKIP)
class ActivationTopkTest(GpuCase):
    def check_exact(self, logits, bias, k, scale):
        w, ids = T.activation_topk(logits, k, scale, bias)
        torch.cuda.synchronize()
        ww, wids, _, _ = ref_activation_topk(logits, bias, k, scale)
        self.assert_ids_equal(ids, wids, f"activation_topk {tuple(logits.shape)} k={k}")
        self.assertFalse(bool(torch.isnan(w).any() or torch.isinf(w).any()), "weights must be finite")
        torch.testing.assert_close(w.double(), ww, rtol=2e-6, atol=1e-6)

    def separated_logits(self, n, e, g):
        """Distinct logits 0.05 apart per row (random order): scores with no near-ties."""
        perm = torch.argsort(torch.rand(n, e, generator=g, device=DEV), dim=1)
        return (perm.float() - e / 2) * 0.05

    def test_shapes(self):
        g = torch.Generator(device=DEV).manual_seed(4)
        for n, e, k, scale in [(1, 384, 6, 2.5), (37, 256, 6, 1.5), (1000, 384, 6, 2.5), (5, 1, 1, 1.0),
                               (9, 100, 16, 1.0), (17, 1024, 16, 3.0), (3, 7, 7, 1.0)]:
            logits = self.separated_logits(n, e, g)
            for use_bias in (False, True):
                bias = None
                if use_bias:
                    # Distinct steps of 10 (scores lie in [0, 3.2)): the bias alone decides the selection, with
                    # no near-ties, while the weights still come from the scores.
                    bias = torch.randperm(e, generator=torch.Generator().manual_seed(e)).to(DEV).float() * 10.0
                with self.subTest(n=n, e=e, k=k, bias=use_bias):
                    self.check_exact(logits, bias, k, scale)

    def test_random_within_tolerance(self):
        g = torch.Generator(device=DEV).manual_seed(5)
        logits = torch.randn(4096, 384, generator=g, device=DEV) * 3
        bias = torch.randn(384, generator=g, device=DEV) * 0.1
        w, ids = T.activation_topk(logits, 6, 2.5, bias)
        _, wids, s, sel = ref_activation_topk(logits, bias, 6, 2.5)
        self.assert_valid_topk(ids, sel, 1e-5, "activation_topk random")
        exact = (ids.long() == wids).all(dim=1).double().mean().item()
        self.assertGreater(exact, 0.999)
        torch.testing.assert_close(w.double(), ref_weights(s.gather(1, ids.long()), 2.5), rtol=1e-5, atol=1e-6)

    def test_edge_values(self):
        e, k = 64, 6
        logits = torch.linspace(-3, 3, e, device=DEV).repeat(6, 1).contiguous()
        logits[0, 10] = float("nan")                 # NaN ranks lowest and weighs 0
        logits[0, 63] = float("nan")
        logits[1, [3, 40]] = float("inf")            # +inf scores share the weight
        logits[2, :] = float("-inf")                 # all scores 0: uniform weights
        logits[3, :] = 1.0                           # all equal: lowest experts first
        logits[4, :] = float("nan")                  # all NaN: ids 0..k-1, weight 0... still finite
        logits[5, :6] = float("-inf")
        self.check_exact(logits, None, k, 2.5)

    def test_empty_and_unsupported(self):
        w, ids = T.activation_topk(torch.empty(0, 384, device=DEV), 6, 2.5)
        self.assertEqual(w.shape, (0, 6))
        with self.assertRaises(dsv4.UnsupportedError) as cm:
            T.activation_topk(torch.randn(2, 384, device=DEV), 17, 1.0)
        self.assertIn("'k'", str(cm.exception))
        with self.assertRaises(dsv4.UnsupportedError) as cm:
            T.activation_topk(torch.randn(2, 1025, device=DEV), 6, 1.0)
        self.assertIn("'num_experts'", str(cm.exception))


@unittest.skipIf(SKIP, SKIP)
class HashRouterTest(GpuCase):
    def test_lut_and_bad_tokens(self):
        g = torch.Generator(device=DEV).manual_seed(6)
        for vocab, k, e, n in [(129280, 6, 384, 1000), (10, 1, 5, 7), (1000, 16, 256, 65536), (50, 6, 8, 0)]:
            lut = torch.randint(0, e, (vocab, k), generator=g, device=DEV, dtype=torch.int32)
            tok = torch.randint(0, vocab, (n,), generator=g, device=DEV, dtype=torch.int32)
            if n >= 4:
                tok[:4] = torch.tensor([-1, vocab, 2 ** 31 - 1, -(2 ** 31)], dtype=torch.int32, device=DEV)
            with self.subTest(vocab=vocab, k=k, n=n):
                w, ids = T.hash_router(tok, lut)
                torch.cuda.synchronize()
                ww, wids = ref_hash(tok, lut)
                self.assertEqual(w.shape, (n, k))
                self.assert_ids_equal(ids, wids, "hash_router")
                torch.testing.assert_close(w.double(), ww, rtol=1e-7, atol=0)

    def test_unsupported_k(self):
        lut = torch.zeros(10, 17, dtype=torch.int32, device=DEV)
        with self.assertRaises(dsv4.UnsupportedError) as cm:
            T.hash_router(torch.zeros(3, dtype=torch.int32, device=DEV), lut)
        self.assertIn("'k'", str(cm.exception))


# ---------------- the raw (ctypes) API on device pointers ----------------

@unittest.skipIf(SKIP, SKIP)
class RawApiTest(GpuCase):
    def test_ops_write_every_output_and_nothing_on_failure(self):
        ctx = T.context(DEV)
        self.assertTrue(ctx.arch.startswith("sm_"))
        stream = torch.cuda.current_stream(DEV)
        g = torch.Generator(device=DEV).manual_seed(7)
        n, e, k = 333, 256, 6
        logits = torch.randn(n, e, generator=g, device=DEV)
        w = torch.full((n, k), float("nan"), device=DEV)            # poison
        ids = torch.full((n, k), -7, dtype=torch.int32, device=DEV)
        dsv4.activation_topk(ctx, stream, logits, n, e, None, k, 1.5, w, ids)
        torch.cuda.synchronize()
        _, wids, s, sel = ref_activation_topk(logits, None, k, 1.5)
        self.assert_valid_topk(ids, sel, 1e-5, "raw activation_topk")
        torch.testing.assert_close(w.double(), ref_weights(s.gather(1, ids.long()), 1.5), rtol=1e-5, atol=1e-6)
        # a refused call changes nothing
        w.fill_(float("nan"))
        ids.fill_(-7)
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            dsv4.activation_topk(ctx, stream.cuda_stream, logits, n, e, None, k, -1.0, w, ids)
        self.assertIn("'routed_scaling_factor'", str(cm.exception))
        torch.cuda.synchronize()
        self.assertTrue(bool(torch.isnan(w).all()) and bool((ids == -7).all()))
        # hash router and top-k on raw ints
        lut = torch.randint(0, e, (100, k), generator=g, device=DEV, dtype=torch.int32)
        tok = torch.randint(0, 100, (n,), generator=g, device=DEV, dtype=torch.int32)
        dsv4.hash_router(ctx, stream.cuda_stream, tok.data_ptr(), n, lut.data_ptr(), 100, k, w.data_ptr(),
                         ids.data_ptr())
        torch.cuda.synchronize()
        self.assert_ids_equal(ids, lut[tok.long()], "raw hash_router")
        self.assertTrue(bool((w == 1.0 / k).all()))
        vals = torch.full((n, 9), float("nan"), device=DEV)
        idx = torch.full((n, 9), -7, dtype=torch.int32, device=DEV)
        dsv4.topk_select(ctx, None, logits, n, e, e, 9, vals, idx)   # None: the legacy default stream
        torch.cuda.synchronize()
        self.assert_ids_equal(idx, ref_topk_select(logits, 9)[1], "raw topk_select")
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            dsv4.topk_select(ctx, None, logits, n, e, e - 1, 9, vals, idx)
        self.assertIn("'row_stride'", str(cm.exception))
        st = ctx.jit_stats()
        self.assertGreaterEqual(st.compiles + st.disk_hits + st.memory_hits, 3)


# ---------------- the router ----------------

def make_weights(cfg, seed, device):
    g = torch.Generator(device=device).manual_seed(seed)
    w = (torch.randn(cfg.num_experts, cfg.hidden_size, generator=g, device=device)
         / math.sqrt(cfg.hidden_size)).to(torch.bfloat16)
    bias = torch.randn(cfg.num_experts, generator=g, device=device) * 0.05
    lut = torch.randint(0, cfg.num_experts, (cfg.vocab_size, cfg.top_k), generator=g, device=device,
                        dtype=torch.int32)
    return w, bias, lut


def write_safetensors(path, tensors):
    """A minimal safetensors writer (header JSON + raw little-endian data), so the test needs no package."""
    import json
    names = {torch.bfloat16: "BF16", torch.float32: "F32", torch.int32: "I32", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


@unittest.skipIf(SKIP, SKIP)
class RouterTest(GpuCase):
    def dense_check(self, r, cfg, w, bias, n, seed):
        g = torch.Generator(device=DEV).manual_seed(seed)
        x = torch.randn(n, cfg.hidden_size, generator=g, device=DEV).to(torch.bfloat16)
        tw, tids = T.router_forward(r, x)
        torch.cuda.synchronize()
        self.assertEqual(tw.shape, (n, cfg.top_k))
        s = ref_scores(ref_gate_logits(x, w))
        sel = s + bias.double()
        self.assert_valid_topk(tids, sel, 1e-4, f"router dense N={n}")
        exact = (tids.long() == ref_order(sel)[:, :cfg.top_k]).all(dim=1).double().mean().item()
        self.assertGreater(exact, 0.98, f"N={n}: only {exact:.3f} of the rows equal the reference")
        torch.testing.assert_close(tw.double(), ref_weights(s.gather(1, tids.long()), cfg.routed_scaling_factor),
                                   rtol=1e-4, atol=1e-5)
        return x, tw, tids

    def test_dense_presets(self):
        for preset in dsv4.PRESETS:
            cfg = dsv4.RouterConfig.preset(preset, "dense")
            w, bias, _ = make_weights(cfg, 11, DEV)
            r = T.make_router(cfg, DEV, gate_weight=w, bias=bias, max_tokens=5000)
            try:
                for n in (1, 8, 64, 65, 300, 4097, 5000):   # decode, cuBLASLt prefill (one chunk)
                    with self.subTest(preset=preset, n=n):
                        self.dense_check(r, cfg, w, bias, n, seed=n)
                with self.assertRaises(dsv4.InvalidArgumentError):
                    T.router_forward(r, torch.zeros(5001, cfg.hidden_size, dtype=torch.bfloat16, device=DEV))
                e, ids = T.router_forward(r, torch.zeros(0, cfg.hidden_size, dtype=torch.bfloat16, device=DEV))
                self.assertEqual(ids.shape, (0, cfg.top_k))
            finally:
                r.close()

    def test_decode_switch_point(self):
        cfg = dsv4.RouterConfig.preset("v4-flash", "dense")
        w, bias, _ = make_weights(cfg, 12, DEV)
        r = T.make_router(cfg, DEV, gate_weight=w, bias=bias, max_tokens=64, decode_max_tokens=0)
        try:
            for n in (1, 8, 64):  # every batch through the prefill GEMM now
                self.dense_check(r, cfg, w, bias, n, seed=100 + n)
        finally:
            r.close()

    def test_hash_modes_and_error_count(self):
        cfg = dsv4.RouterConfig.preset("v4-flash", "hash")
        w, bias, lut = make_weights(cfg, 13, DEV)
        for weights in ("scored", "uniform"):
            c = cfg.replace(hash_weights=weights)
            r = T.make_router(c, DEV, gate_weight=w, bias=bias, tid2eid=lut, max_tokens=5000)
            try:
                for n in (1, 64, 300, 5000):
                    with self.subTest(weights=weights, n=n):
                        g = torch.Generator(device=DEV).manual_seed(n)
                        tok = torch.randint(0, c.vocab_size, (n,), generator=g, device=DEV, dtype=torch.int32)
                        bad = [0] if n == 1 else [0, n // 2]
                        tok[bad[0]] = -5
                        if len(bad) > 1:
                            tok[bad[1]] = c.vocab_size
                        x = torch.randn(n, c.hidden_size, generator=g, device=DEV).to(torch.bfloat16)
                        tw, tids = T.router_forward(r, x, tok)
                        self.assertEqual(r.take_error_count(), len(bad))
                        self.assertEqual(r.take_error_count(), 0)
                        _, want_ids = ref_hash(tok, lut)
                        self.assert_ids_equal(tids, want_ids, "hash router ids (LUT order)")
                        valid = torch.ones(n, dtype=torch.bool, device=DEV)
                        valid[bad] = False
                        if weights == "uniform":
                            want_w = torch.full((n, c.top_k), c.routed_scaling_factor / c.top_k,
                                                dtype=torch.float64, device=DEV)
                        else:
                            s = ref_scores(ref_gate_logits(x, w))
                            want_w = ref_weights(s.gather(1, want_ids.long()), c.routed_scaling_factor)
                        want_w[~valid] = 0.0
                        torch.testing.assert_close(tw.double(), want_w, rtol=1e-4, atol=1e-5)
                if weights == "uniform":  # no hidden states needed
                    tok = torch.zeros(3, dtype=torch.int32, device=DEV)
                    tw, tids = T.router_forward(r, None, tok)
                    self.assert_ids_equal(tids, lut[[0, 0, 0]], "uniform without hidden")
                with self.assertRaises(dsv4.InvalidArgumentError):
                    T.router_forward(r, torch.zeros(2, c.hidden_size, dtype=torch.bfloat16, device=DEV))  # no tokens
            finally:
                r.close()

    def test_load_safetensors_matches_set_weights(self):
        cfg = dsv4.RouterConfig.preset("v4-flash", "dense")
        w, bias, lut = make_weights(cfg, 14, DEV)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "gate.safetensors")
            write_safetensors(path, {"model.layers.3.ffn.gate.weight": w,
                                     "model.layers.3.ffn.gate.e_score_correction_bias": bias,
                                     "model.layers.3.ffn.gate.tid2eid": lut.long()})
            a = T.make_router(cfg, DEV, checkpoint=path, prefix="model.layers.3.ffn.gate.", max_tokens=300)
            b = T.make_router(cfg, DEV, gate_weight=w, bias=bias, max_tokens=300)
            try:
                x = torch.randn(300, cfg.hidden_size, device=DEV).to(torch.bfloat16)
                wa, ia = T.router_forward(a, x)
                wb, ib = T.router_forward(b, x)
                self.assert_ids_equal(ia, ib, "checkpoint vs set_weights")   # same bytes, same kernels
                torch.testing.assert_close(wa, wb, rtol=1e-6, atol=0)
                self.assertEqual(a.take_error_count(), 0)
                with self.assertRaises(dsv4.FormatError) as cm:
                    a.load_safetensors(path, "model.layers.4.")   # no such tensors
                self.assertIn("model.layers.4.", str(cm.exception))
                with self.assertRaises(dsv4.IoError):
                    a.load_safetensors(os.path.join(d, "missing.safetensors"), "")
                wa2, ia2 = T.router_forward(a, x)                   # all or nothing: the old weights stay
                self.assertTrue(bool(torch.equal(ia2, ia)) and bool(torch.equal(wa2, wa)))
            finally:
                a.close()
                b.close()

    def test_lifetime(self):
        cfg = dsv4.RouterConfig.preset("v4-flash", "dense")
        w, bias, _ = make_weights(cfg, 15, DEV)
        with dsv4.Context(DEV.index) as ctx:
            with dsv4.Router(ctx, cfg) as r:
                r.set_weights(w, bias)
                r.prepare(8)
                rid = r.id
                self.assertIs(dsv4.router_from_id(rid), r)
                T.router_forward(r, torch.zeros(8, cfg.hidden_size, dtype=torch.bfloat16, device=DEV))
            with self.assertRaises(dsv4.InvalidArgumentError):   # closed: its id is dead, never reused
                torch.ops.dsv4.router_forward(rid, cfg.top_k, torch.zeros(1, cfg.hidden_size, dtype=torch.bfloat16,
                                                                         device=DEV), None)
            r2 = dsv4.Router(ctx, cfg)
            self.assertNotEqual(r2.id, rid)
        self.assertEqual(r2.handle, 0)  # the context closed its routers first
        with self.assertRaises(dsv4.InvalidArgumentError):
            r2.prepare(8)

    def test_set_weights_checks_tensors(self):
        cfg = dsv4.RouterConfig.preset("v4-flash", "dense")
        w, bias, _ = make_weights(cfg, 16, DEV)
        r = dsv4.Router(T.context(DEV), cfg)
        try:
            for args, name in [((w.float(), bias), "gate_weight_bf16"), ((w[:, :-8], bias), "gate_weight_bf16"),
                               ((w.cpu(), bias), "gate_weight_bf16"), ((w, bias.double()), "bias"),
                               ((w.t().contiguous().t(), bias), "gate_weight_bf16"), ((None, bias), "gate_weight_bf16")]:
                with self.subTest(name=name):
                    with self.assertRaises(dsv4.InvalidArgumentError) as cm:
                        r.set_weights(*args)
                    self.assertIn(f"'{name}'", str(cm.exception))
            with self.assertRaises(dsv4.InvalidArgumentError) as cm:
                r.prepare(8)   # no weights were accepted
            self.assertIn("'gate_weight_bf16'", str(cm.exception))
        finally:
            r.close()


# ---------------- input checks of the torch ops ----------------

@unittest.skipIf(SKIP, SKIP)
class InputCheckTest(GpuCase):
    @classmethod
    def setUpClass(cls):
        cls.cfg = dsv4.RouterConfig.preset("v4-flash", "dense")
        w, bias, _ = make_weights(cls.cfg, 17, DEV)
        cls.router = T.make_router(cls.cfg, DEV, gate_weight=w, bias=bias, max_tokens=64)

    @classmethod
    def tearDownClass(cls):
        cls.router.close()

    def expect(self, fn, name):
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            fn()
        self.assertIn(f"'{name}'", str(cm.exception))

    def test_router_inputs(self):
        H = self.cfg.hidden_size
        x = torch.zeros(4, H, dtype=torch.bfloat16, device=DEV)
        r = self.router
        self.expect(lambda: T.router_forward(r, x.float()), "hidden")                    # dtype
        self.expect(lambda: T.router_forward(r, x.cpu()), "hidden")                      # device
        self.expect(lambda: T.router_forward(r, x[:, :-8].contiguous()), "hidden")       # shape
        self.expect(lambda: T.router_forward(r, x[None]), "hidden")                      # rank
        self.expect(lambda: T.router_forward(r, torch.zeros(H, 4, dtype=torch.bfloat16, device=DEV).t()),
                    "hidden")                                                            # contiguity
        big = torch.zeros(5 * H + 1, dtype=torch.bfloat16, device=DEV)
        self.expect(lambda: T.router_forward(r, big[1:1 + 4 * H].view(4, H)), "hidden")  # 16-byte alignment
        self.expect(lambda: T.router_forward(r, None), "hidden")
        self.expect(lambda: torch.ops.dsv4.router_forward(r.id, 5, x, None), "top_k")

    def test_op_inputs(self):
        logits = torch.randn(4, 64, device=DEV)
        self.expect(lambda: T.activation_topk(logits.double(), 6), "logits")
        self.expect(lambda: T.activation_topk(logits.cpu(), 6), "logits")
        self.expect(lambda: T.activation_topk(logits.t(), 6), "logits")
        self.expect(lambda: T.activation_topk(logits, 6, 1.0, torch.zeros(63, device=DEV)), "bias")
        self.expect(lambda: T.activation_topk(logits, 6, float("inf")), "routed_scaling_factor")
        self.expect(lambda: T.topk_select(logits.half(), 2), "scores")
        self.expect(lambda: T.topk_select(logits.t(), 2), "scores")     # columns not contiguous
        self.expect(lambda: T.topk_select(logits[0], 2), "scores")      # 1-D
        self.expect(lambda: T.topk_select(logits, 0), "k")
        tok = torch.zeros(4, dtype=torch.int32, device=DEV)
        lut = torch.zeros(10, 6, dtype=torch.int32, device=DEV)
        self.expect(lambda: T.hash_router(tok.long(), lut), "token_ids")
        self.expect(lambda: T.hash_router(tok, lut.cpu()), "lut")
        self.expect(lambda: T.hash_router(tok[None], lut), "token_ids")
        self.expect(lambda: T.hash_router(tok, lut.t()), "lut")

    def test_refused_call_keeps_a_capture_valid(self):
        # A refused call inside a capture raises before touching the stream: the capture goes on and the graph
        # replays the work around it.
        x = torch.zeros(4, self.cfg.hidden_size, dtype=torch.float32, device=DEV)
        counter = torch.zeros(1, device=DEV)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            counter.add_(1)
            with self.assertRaises(dsv4.InvalidArgumentError):
                T.router_forward(self.router, x)
            counter.add_(1)
        for _ in range(3):
            g.replay()
        torch.cuda.synchronize()
        self.assertEqual(counter.item(), 6.0)


# ---------------- torch.compile, opcheck, CUDA graphs ----------------

@unittest.skipIf(SKIP, SKIP)
class IntegrationTest(GpuCase):
    @classmethod
    def setUpClass(cls):
        cls.cfg = dsv4.RouterConfig.preset("v4-flash", "dense")
        cls.w, cls.bias, cls.lut = make_weights(cls.cfg, 18, DEV)
        cls.router = T.make_router(cls.cfg, DEV, gate_weight=cls.w, bias=cls.bias, max_tokens=256)

    @classmethod
    def tearDownClass(cls):
        cls.router.close()

    def test_opcheck(self):
        g = torch.Generator(device=DEV).manual_seed(19)
        H = self.cfg.hidden_size
        cases = [
            (torch.ops.dsv4.router_forward.default,
             (self.router.id, 6, torch.randn(8, H, generator=g, device=DEV).to(torch.bfloat16), None)),
            (torch.ops.dsv4.router_forward.default,
             (self.router.id, 6, torch.randn(100, H, generator=g, device=DEV).to(torch.bfloat16), None)),
            (torch.ops.dsv4.activation_topk.default, (torch.randn(50, 256, generator=g, device=DEV), self.bias, 6, 1.5)),
            (torch.ops.dsv4.activation_topk.default, (torch.randn(50, 256, generator=g, device=DEV), None, 6, 1.5)),
            (torch.ops.dsv4.topk_select.default, (torch.randn(10, 3000, generator=g, device=DEV), 20)),
            (torch.ops.dsv4.hash_router.default,
             (torch.randint(0, 1000, (77,), generator=g, device=DEV, dtype=torch.int32), self.lut[:1000])),
        ]
        for op, args in cases:
            with self.subTest(op=str(op)):
                torch.library.opcheck(op, args)

    def test_torch_compile(self):
        r = self.router
        scale = torch.linspace(1.0, 2.0, self.cfg.top_k, device=DEV)

        def moe_gate(x):
            w, ids = T.router_forward(r, x)
            return (w * scale).sum(dim=-1), ids.long() + 1

        x = torch.randn(32, self.cfg.hidden_size, device=DEV).to(torch.bfloat16)
        eager = moe_gate(x)
        torch._dynamo.reset()
        compiled = torch.compile(moe_gate, fullgraph=True)
        for n in (32, 17, 32):   # a second shape recompiles (dynamic N), then the first is reused
            xn = x[:n].contiguous()
            got = compiled(xn)
            want = moe_gate(xn)
            torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-6)
            self.assertTrue(bool(torch.equal(got[1], want[1])))
        self.assertTrue(bool(torch.equal(compiled(x)[1], eager[1])))

        def all_ops(logits, scores, tok, lut):
            a = T.activation_topk(logits, 6, 2.5, self.bias)
            b = T.topk_select(scores, 4)
            c = T.hash_router(tok, lut)
            return a[0].sum() + b[0].sum() + c[0].sum(), a[1], b[1], c[1]

        g = torch.Generator(device=DEV).manual_seed(20)
        args = (torch.randn(40, 256, generator=g, device=DEV), torch.randn(8, 2000, generator=g, device=DEV),
                torch.randint(0, 500, (40,), generator=g, device=DEV, dtype=torch.int32), self.lut[:500])
        got = torch.compile(all_ops, fullgraph=True)(*args)
        want = all_ops(*args)
        torch.testing.assert_close(got[0], want[0])
        for a, b in zip(got[1:], want[1:]):
            self.assertTrue(bool(torch.equal(a, b)))

    def test_compile_reduce_overhead(self):
        r = self.router

        def gate(x):
            return T.router_forward(r, x)

        x = torch.randn(16, self.cfg.hidden_size, device=DEV).to(torch.bfloat16)
        want = gate(x)
        torch._dynamo.reset()
        compiled = torch.compile(gate, mode="reduce-overhead", fullgraph=True)
        for _ in range(4):   # warm-up runs, then CUDA graph replays
            got = compiled(x)
            self.assertTrue(bool(torch.equal(got[1], want[1])) and bool(torch.equal(got[0], want[0])))

    def test_cuda_graph_capture_and_replay(self):
        H = self.cfg.hidden_size
        g = torch.Generator(device=DEV).manual_seed(21)
        static_x = torch.randn(48, H, generator=g, device=DEV).to(torch.bfloat16)
        static_logits = torch.randn(48, 256, generator=g, device=DEV)
        static_tok = torch.randint(0, 1000, (48,), generator=g, device=DEV, dtype=torch.int32)
        lut = self.lut[:1000]

        def step():
            return (T.router_forward(self.router, static_x), T.activation_topk(static_logits, 6, 1.5, self.bias),
                    T.topk_select(static_logits, 10), T.hash_router(static_tok, lut))

        side = torch.cuda.Stream(DEV)      # warm-up off the capture stream (JIT loads happen here)
        side.wait_stream(torch.cuda.current_stream(DEV))
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream(DEV).wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outs = step()
        for trial in range(3):
            static_x.copy_(torch.randn(48, H, generator=g, device=DEV).to(torch.bfloat16))
            static_logits.copy_(torch.randn(48, 256, generator=g, device=DEV))
            static_tok.copy_(torch.randint(0, 1000, (48,), generator=g, device=DEV, dtype=torch.int32))
            for o in outs:                                 # poison: the replay must rewrite every output
                o[0].fill_(float("nan"))
                o[1].fill_(-7)
            graph.replay()
            torch.cuda.synchronize()
            want = step()
            torch.cuda.synchronize()
            for (gw, gi), (ww, wi) in zip(outs, want):
                self.assertTrue(bool(torch.equal(gi, wi)), f"trial {trial}: ids differ after replay")
                self.assertTrue(bool(torch.equal(gw, ww)), f"trial {trial}: weights differ after replay")
            self.assert_ids_equal(outs[3][1], lut[static_tok.long()], "hash in graph")


if __name__ == "__main__":
    unittest.main()
