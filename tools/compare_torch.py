#!/usr/bin/env python3
"""dsv4 beside the DeepSeek-V4 reference gate written in plain PyTorch, on the same inputs.

    python3 tools/compare_torch.py --lib build/libdsv4.so

1. Agreement, for both presets (v4-flash, v4-pro): the dense gate (decode and prefill sizes), the hash gate
   with scored weights, the plain hash router, activation_topk and topk_select. Printed: the fraction of
   tokens (rows) whose expert ids equal the reference's, and the largest weight difference on those rows.
   The reference is the model's gate: an FP32 GEMM of the bf16 inputs upcast (TF32 off), sqrt(softplus),
   + bias for selection, topk, gather, renormalise, * routed_scaling_factor; hash layers gather the
   tid2eid table and weigh the table's experts by their scores.
2. Speed (v4-pro unless said): each side runs as CUDA graphs, `--calls` back-to-back calls captured in one
   graph, each replay timed with CUDA events; the table shows the median time per call in microseconds
   over `--replays` replays, and the speedup (reference time / dsv4 time). dsv4 runs through its PyTorch
   ops (torch.ops.dsv4.*) on torch's current stream, so both sides pay for the same output allocations.

Needs PyTorch with CUDA and a GPU; no network. Exit status 1 if an agreement check fails.
"""

import argparse
import json
import math
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", help="path of libdsv4.so (sets DSV4_LIBRARY); default: the package's own search")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    p.add_argument("--calls", type=int, default=100, help="calls captured back to back in one graph (100)")
    p.add_argument("--replays", type=int, default=30, help="timed replays of each graph; the median is shown (30)")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile of the reference (Inductor, captured in the same kind of graph)")
    p.add_argument("--no-timing", action="store_true", help="agreement only")
    p.add_argument("--json", help="also write every figure to this JSON file")
    return p.parse_args()


args = parse_args()
if args.lib:
    os.environ["DSV4_LIBRARY"] = os.path.abspath(args.lib)
sys.path.insert(0, os.path.join(REPO, "python"))  # the package of this checkout, unless installed and found first

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import dsv4  # noqa: E402

if not torch.cuda.is_available():
    sys.exit("compare_torch: no CUDA device visible to PyTorch")
import dsv4.torch_ops as T  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.cuda.set_device(args.device)
DEV = torch.device("cuda", args.device)


# ---------------- the reference gate, plain PyTorch ----------------

def ref_dense(x, weight, bias, k, scale):
    logits = x.float() @ weight.float().t()          # FP32 GEMM of the bf16 inputs upcast
    s = F.softplus(logits).sqrt()
    ids = (s + bias).topk(k, dim=-1).indices         # the bias only selects
    w = s.gather(-1, ids)
    return w / w.sum(dim=-1, keepdim=True) * scale, ids


def ref_hash_scored(x, weight, token_ids, tid2eid, scale):
    logits = x.float() @ weight.float().t()
    s = F.softplus(logits).sqrt()
    ids = tid2eid[token_ids.long()].long()            # LUT order kept
    w = s.gather(-1, ids)
    return w / w.sum(dim=-1, keepdim=True) * scale, ids


def ref_hash_uniform(token_ids, tid2eid):
    ids = tid2eid[token_ids.long()]
    return torch.full(ids.shape, 1.0 / ids.shape[1], dtype=torch.float32, device=ids.device), ids


def ref_activation_topk(logits, bias, k, scale):
    s = F.softplus(logits).sqrt()
    ids = (s + bias).topk(k, dim=-1).indices
    w = s.gather(-1, ids)
    return w / w.sum(dim=-1, keepdim=True) * scale, ids


def ref_topk(scores, k):
    return scores.topk(k, dim=-1)


# ---------------- inputs ----------------

def gate_weights(cfg, seed):
    g = torch.Generator(device=DEV).manual_seed(seed)
    weight = (torch.randn(cfg.num_experts, cfg.hidden_size, generator=g, device=DEV)
              / math.sqrt(cfg.hidden_size)).to(torch.bfloat16)
    bias = torch.randn(cfg.num_experts, generator=g, device=DEV) * 0.02
    tid2eid = torch.stack([torch.randperm(cfg.num_experts, generator=g, device=DEV)[:cfg.top_k]
                           for _ in range(64)]).to(torch.int32)
    tid2eid = tid2eid.repeat((cfg.vocab_size + 63) // 64, 1)[:cfg.vocab_size].contiguous()  # distinct per row
    return weight, bias, tid2eid


def hidden(n, h, seed):
    g = torch.Generator(device=DEV).manual_seed(seed)
    return torch.randn(n, h, generator=g, device=DEV).to(torch.bfloat16)


def tokens(n, vocab, seed):
    g = torch.Generator(device=DEV).manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g, device=DEV, dtype=torch.int32)


# ---------------- agreement ----------------

def agreement(got, want):
    """(fraction of rows with identical ids, max |weight difference| on those rows)."""
    gw, gi = got
    ww, wi = want
    same = (gi.long() == wi.long()).all(dim=-1)
    frac = same.double().mean().item() if same.numel() else 1.0
    err = (gw.float() - ww.float()).abs()[same].max().item() if bool(same.any()) else float("nan")
    return frac, err


AGREE_ROWS = []
FAILED = []


def record(preset, what, n, got, want, min_frac, max_err):
    frac, err = agreement(got, want)
    ok = frac >= min_frac and err <= max_err
    if not ok:
        FAILED.append(f"{preset} {what} N={n}")
    AGREE_ROWS.append({"preset": preset, "workload": what, "n": n, "ids_equal": frac, "max_weight_err": err,
                       "ok": ok})
    print(f"  {preset:9s} {what:28s} {n:>7d}   {frac:10.6f}   {err:12.3e}   {'ok' if ok else 'MISMATCH'}")


def run_agreement():
    print("\nAgreement with the plain-PyTorch reference (same inputs)")
    print(f"  {'preset':9s} {'workload':28s} {'N':>7s}   {'ids equal':>10s}   {'max |dw|':>12s}")
    routers = {}
    for pi, preset in enumerate(dsv4.PRESETS):
        dense = dsv4.RouterConfig.preset(preset, "dense")
        weight, bias, tid2eid = gate_weights(dense, 1 + pi)
        k, scale, H, E = dense.top_k, dense.routed_scaling_factor, dense.hidden_size, dense.num_experts
        r = T.make_router(dense, DEV, gate_weight=weight, bias=bias, max_tokens=16384)
        routers[preset] = (r, weight, bias, tid2eid)
        # FP32 accumulation in another order than cuBLAS: a near-tie may flip now and then.
        for n in (1, 8, 32, 64, 4096, 16384):
            x = hidden(n, H, 100 + n)
            record(preset, "dense router", n, T.router_forward(r, x), ref_dense(x, weight, bias, k, scale), 0.99, 1e-4)
        hcfg = dsv4.RouterConfig.preset(preset, "hash")
        hr = T.make_router(hcfg, DEV, gate_weight=weight, bias=bias, tid2eid=tid2eid, max_tokens=16384)
        for n in (8, 4096):
            x, tok = hidden(n, H, 200 + n), tokens(n, hcfg.vocab_size, 300 + n)
            record(preset, "hash router (scored)", n, T.router_forward(hr, x, tok),
                   ref_hash_scored(x, weight, tok, tid2eid, scale), 1.0, 1e-4)
        hr.close()
        tok = tokens(65536, dense.vocab_size, 400)
        record(preset, "hash_router op (1/k)", 65536, T.hash_router(tok, tid2eid), ref_hash_uniform(tok, tid2eid),
               1.0, 0.0)
        g = torch.Generator(device=DEV).manual_seed(500)
        logits = torch.randn(16384, E, generator=g, device=DEV)
        record(preset, f"activation_topk {E} k={k}", 16384, T.activation_topk(logits, k, scale, bias),
               ref_activation_topk(logits, bias, k, scale), 0.999, 1e-5)
        record(preset, f"topk_select {E} k={k}", 16384, T.topk_select(logits, k), ref_topk(logits, k), 1.0, 0.0)
    g = torch.Generator(device=DEV).manual_seed(600)
    scores = torch.randn(64, 131072, generator=g, device=DEV)
    for k in (512, 2048):
        record("-", f"topk_select 131072 k={k}", 64, T.topk_select(scores, k), ref_topk(scores, k), 1.0, 0.0)
    return routers


# ---------------- timing ----------------

def graph_us(fn, calls, replays):
    """Median microseconds per call of `fn`, `calls` of them captured back to back in one CUDA graph."""
    side = torch.cuda.Stream(DEV)
    side.wait_stream(torch.cuda.current_stream(DEV))
    with torch.cuda.stream(side):   # warm-up: JIT loads, cuBLAS workspaces, Inductor autotuning
        for _ in range(3):
            fn()
    torch.cuda.current_stream(DEV).wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    per_call = []
    for _ in range(replays):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) * 1000.0 / calls)
    del graph
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return statistics.median(per_call)


def compiled(fn):
    import torch._dynamo
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(fn, dynamic=False)


def run_timing(routers):
    r, weight, bias, tid2eid = routers["v4-pro"]
    cfg = r.config
    k, scale, H, E = cfg.top_k, cfg.routed_scaling_factor, cfg.hidden_size, cfg.num_experts
    rows = []
    workloads = []
    for n in (1, 8, 32, 64):
        x = hidden(n, H, 700 + n)
        workloads.append((f"dense router decode N={n}", lambda x=x: ref_dense(x, weight, bias, k, scale),
                          lambda x=x: T.router_forward(r, x)))
    for n in (4096, 16384):
        x = hidden(n, H, 800 + n)
        workloads.append((f"dense router prefill N={n}", lambda x=x: ref_dense(x, weight, bias, k, scale),
                          lambda x=x: T.router_forward(r, x)))
    tok = tokens(65536, cfg.vocab_size, 900)
    workloads.append(("hash router N=65536", lambda: ref_hash_uniform(tok, tid2eid),
                      lambda: T.hash_router(tok, tid2eid)))
    g = torch.Generator(device=DEV).manual_seed(901)
    logits = torch.randn(16384, E, generator=g, device=DEV)
    workloads.append((f"activation_topk 16384x{E} k={k}", lambda: ref_activation_topk(logits, bias, k, scale),
                      lambda: T.activation_topk(logits, k, scale, bias)))
    workloads.append((f"topk 16384x{E} k={k}", lambda: ref_topk(logits, k), lambda: T.topk_select(logits, k)))
    scores = torch.randn(64, 131072, generator=g, device=DEV)
    for kk in (512, 2048):
        workloads.append((f"topk 64x131072 k={kk}", lambda kk=kk: ref_topk(scores, kk),
                          lambda kk=kk: T.topk_select(scores, kk)))

    print(f"\nTime per call, v4-pro (H={H}, E={E}, k={k}): CUDA graphs of {args.calls} back-to-back calls, "
          f"median of {args.replays} replays, microseconds")
    head = f"  {'workload':34s} {'PyTorch':>10s}"
    if args.compile:
        head += f" {'compiled':>10s}"
    head += f" {'dsv4':>10s} {'speedup':>9s}"
    print(head)
    for name, ref_fn, dsv4_fn in workloads:
        t_ref = graph_us(ref_fn, args.calls, args.replays)
        t_cmp = None
        if args.compile:
            try:
                t_cmp = graph_us(compiled(ref_fn), args.calls, args.replays)
            except Exception as e:  # report and go on: the eager figures still stand
                print(f"  ({name}: torch.compile failed: {type(e).__name__}: {e})")
        t_dsv4 = graph_us(dsv4_fn, args.calls, args.replays)
        line = f"  {name:34s} {t_ref:10.2f}"
        if args.compile:
            line += f" {t_cmp:10.2f}" if t_cmp is not None else f" {'n/a':>10s}"
        line += f" {t_dsv4:10.2f} {t_ref / t_dsv4:8.1f}x"
        print(line, flush=True)
        rows.append({"workload": name, "torch_us": t_ref, "torch_compile_us": t_cmp, "dsv4_us": t_dsv4,
                     "speedup": t_ref / t_dsv4})
    return rows


def main():
    props = torch.cuda.get_device_properties(DEV)
    print(f"device: {props.name} ({props.multi_processor_count} SMs), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    print(f"dsv4 {dsv4.version()} from {dsv4.library_path()}, arch {T.context(DEV).arch}")
    routers = run_agreement()
    timing = [] if args.no_timing else run_timing(routers)
    for r, *_ in routers.values():
        r.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": props.name, "torch": torch.__version__, "dsv4": dsv4.version(),
                       "calls_per_graph": args.calls, "replays": args.replays, "agreement": AGREE_ROWS,
                       "timing": timing}, f, indent=2)
    if FAILED:
        print(f"\nagreement FAILED for: {', '.join(FAILED)}")
        return 1
    print("\nagreement: all ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
