"""PyTorch custom ops over libdsv4: torch.ops.dsv4.{hash_router, topk_select, activation_topk, router_forward}.

Each op is registered with torch.library.custom_op and has a fake (meta) implementation, so torch.compile
and torch.export trace through it without running it. The real implementation enqueues on
torch.cuda.current_stream() of the inputs' device (its cuda_stream handle is passed as the CUstream), never
synchronizes and allocates its outputs with PyTorch's allocator, so it works inside a captured CUDA graph
(torch.cuda.graph, or torch.compile(mode="reduce-overhead")). Run each op (or router shape) once before
capturing: the first call of a kernel specialisation JIT-compiles and loads it.

Inputs are checked (device, dtype, shape, contiguity, alignment) before anything is launched; a bad
input raises dsv4.InvalidArgumentError (a ValueError) naming the argument, both when the op runs and when
it is traced. The ops have no autograd formula (routing is a forward-only decision).

The router is not a tensor. dsv4::router_forward takes an integer: the Router's process-unique id (a key of
dsv4.core's router registry, never reused, unlike the C address which malloc may give to the next router)
and top_k. torch.compile sees plain ints: Dynamo reads `router.id` and `router.top_k` off the Python object
as constants (guarded), the graph records them as literal op arguments, and the fake implementation needs
nothing but top_k and the input shapes, so even an id that Dynamo makes symbolic traces. At run time the id
is looked up; a closed router's id raises instead of touching freed memory.

Index outputs are int32 (the C API's type), not int64 as torch.topk gives.
"""

import threading
from typing import Optional, Tuple

try:
    import torch
except ImportError as e:  # the rest of the package works without torch
    raise ImportError("dsv4.torch_ops needs PyTorch (import torch failed: %s); the ctypes API in dsv4 does not"
                      % (e,)) from e

from . import core
from .core import Context, Router, RouterConfig, RouterMode, HashWeights, router_from_id
from .errors import InvalidArgumentError

__all__ = ["context", "hash_router", "topk_select", "activation_topk", "router_forward", "make_router"]

Tensor = torch.Tensor

_CONTEXTS = {}
_CONTEXTS_LOCK = threading.Lock()


def _device_index(device) -> int:
    if device is None:
        return torch.cuda.current_device()
    if isinstance(device, int):
        return device
    d = torch.device(device)
    if d.type != "cuda":
        raise InvalidArgumentError(f"argument 'device' must be a CUDA device, not {d}", function="dsv4")
    return d.index if d.index is not None else torch.cuda.current_device()


def context(device=None) -> Context:
    """The process-wide dsv4.Context of a CUDA device (created on first use, shared by every op)."""
    idx = _device_index(device)
    ctx = _CONTEXTS.get(idx)
    if ctx is None:
        with _CONTEXTS_LOCK:
            ctx = _CONTEXTS.get(idx)
            if ctx is None:
                ctx = _CONTEXTS[idx] = Context(idx)
    return ctx


# ---- input checks (shared by the real and the fake implementations) ----

def _fail(op, msg):
    raise InvalidArgumentError(msg, function=f"dsv4::{op}")


def _check(op, name, t, dtype, ndim, device=None, contiguous=True):
    if not isinstance(t, torch.Tensor):
        _fail(op, f"argument '{name}' must be a torch.Tensor, not {type(t).__name__}")
    if t.device.type != "cuda" and t.device.type != "meta":  # meta: shape propagation reaches the fake impl only
        _fail(op, f"argument '{name}' must be a CUDA tensor, not on {t.device}")
    if device is not None and t.device.type != "meta" and device.type != "meta" and t.device != device:
        _fail(op, f"argument '{name}' is on {t.device}, the other inputs on {device}")
    if t.dtype != dtype:
        _fail(op, f"argument '{name}' must be {dtype}, not {t.dtype}")
    if t.dim() != ndim:
        _fail(op, f"argument '{name}' must be {ndim}-D, not of shape {list(t.shape)}")
    if contiguous and not t.is_contiguous():
        _fail(op, f"argument '{name}' must be contiguous (call .contiguous())")


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream


def _empty_outputs(like, n, k):
    return (like.new_empty((n, k), dtype=torch.float32), like.new_empty((n, k), dtype=torch.int32))


# ---- dsv4::hash_router ----

def _check_hash_router(token_ids, lut):
    _check("hash_router", "token_ids", token_ids, torch.int32, 1)
    _check("hash_router", "lut", lut, torch.int32, 2, device=token_ids.device)


@torch.library.custom_op("dsv4::hash_router", mutates_args=(),
                         schema="(Tensor token_ids, Tensor lut) -> (Tensor, Tensor)")
def _hash_router_op(token_ids: Tensor, lut: Tensor) -> Tuple[Tensor, Tensor]:
    _check_hash_router(token_ids, lut)
    n, (vocab, k) = token_ids.shape[0], lut.shape
    w, ids = _empty_outputs(token_ids, n, k)
    core.hash_router(context(token_ids.device), _stream(token_ids.device), token_ids.data_ptr(), n,
                     lut.data_ptr(), vocab, k, w.data_ptr(), ids.data_ptr())
    return w, ids


@_hash_router_op.register_fake
def _(token_ids, lut):
    _check_hash_router(token_ids, lut)
    return _empty_outputs(token_ids, token_ids.shape[0], lut.shape[1])


def hash_router(token_ids: Tensor, lut: Tensor) -> Tuple[Tensor, Tensor]:
    """ids[n] = lut[token_ids[n]], weights 1/k (fp32 [N,k], int32 [N,k]). token_ids int32 [N], lut int32
    [vocab,k]. A token id outside [0,vocab) gets expert 0 with weight 0 in every slot."""
    return torch.ops.dsv4.hash_router(token_ids, lut)


# ---- dsv4::topk_select ----

def _topk_row_stride(scores):
    rows, cols = scores.shape
    if rows <= 1:
        return cols
    if cols > 1 and scores.stride(1) != 1:
        _fail("topk_select", "argument 'scores' must have contiguous rows (stride(1) == 1)")
    if scores.stride(0) < cols:
        _fail("topk_select", f"argument 'scores' has row stride {scores.stride(0)} < cols {cols}")
    return scores.stride(0)


def _check_topk_select(scores, k):
    _check("topk_select", "scores", scores, torch.float32, 2, contiguous=False)
    if k < 1:
        _fail("topk_select", f"argument 'k' = {k} must be at least 1")
    return _topk_row_stride(scores)


@torch.library.custom_op("dsv4::topk_select", mutates_args=(),
                         schema="(Tensor scores, int k) -> (Tensor, Tensor)")
def _topk_select_op(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    row_stride = _check_topk_select(scores, k)
    rows, cols = scores.shape
    values, indices = _empty_outputs(scores, rows, k)
    core.topk_select(context(scores.device), _stream(scores.device), scores.data_ptr(), rows, cols, row_stride, k,
                     values.data_ptr(), indices.data_ptr())
    return values, indices


@_topk_select_op.register_fake
def _(scores, k):
    _check_topk_select(scores, k)
    return _empty_outputs(scores, scores.shape[0], k)


def topk_select(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """Per row of fp32 scores [rows, cols] (rows may be strided, elements contiguous): the k largest values
    (bit-exact) and their int32 column indices, descending, ties lower index first, NaN lowest."""
    return torch.ops.dsv4.topk_select(scores, k)


# ---- dsv4::activation_topk ----

def _check_activation_topk(logits, bias, k, routed_scaling_factor):
    _check("activation_topk", "logits", logits, torch.float32, 2)
    if bias is not None:
        _check("activation_topk", "bias", bias, torch.float32, 1, device=logits.device)
        if bias.shape[0] != logits.shape[1]:
            _fail("activation_topk", f"argument 'bias' has {bias.shape[0]} entries, logits have "
                                     f"{logits.shape[1]} experts")
    if k < 1:
        _fail("activation_topk", f"argument 'k' = {k} must be at least 1")
    if not (routed_scaling_factor > 0.0 and routed_scaling_factor < float("inf")):
        _fail("activation_topk", f"argument 'routed_scaling_factor' = {routed_scaling_factor} must be finite "
                                 "and positive")


@torch.library.custom_op("dsv4::activation_topk", mutates_args=(),
                         schema="(Tensor logits, Tensor? bias, int k, float routed_scaling_factor) -> (Tensor, Tensor)")
def _activation_topk_op(logits: Tensor, bias: Optional[Tensor], k: int,
                        routed_scaling_factor: float) -> Tuple[Tensor, Tensor]:
    _check_activation_topk(logits, bias, k, routed_scaling_factor)
    n, e = logits.shape
    w, ids = _empty_outputs(logits, n, k)
    core.activation_topk(context(logits.device), _stream(logits.device), logits.data_ptr(), n, e,
                         None if bias is None else bias.data_ptr(), k, routed_scaling_factor, w.data_ptr(),
                         ids.data_ptr())
    return w, ids


@_activation_topk_op.register_fake
def _(logits, bias, k, routed_scaling_factor):
    _check_activation_topk(logits, bias, k, routed_scaling_factor)
    return _empty_outputs(logits, logits.shape[0], k)


def activation_topk(logits: Tensor, k: int, routed_scaling_factor: float = 1.0,
                    bias: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Dense routing from fp32 logits [N,E]: s = sqrt(softplus(logits)), the k experts with the largest
    s + bias (descending), weights s / sum(s) * routed_scaling_factor. Returns fp32 [N,k], int32 [N,k]."""
    return torch.ops.dsv4.activation_topk(logits, bias, k, float(routed_scaling_factor))


# ---- dsv4::router_forward ----

def _router_num_tokens(router, top_k, hidden, token_ids):
    """Checks the inputs against what the router's mode needs; returns N. `router` is None when tracing
    with a symbolic id (then only what the inputs themselves say is checked)."""
    op = "router_forward"
    if top_k < 1:
        _fail(op, f"argument 'top_k' = {top_k} must be at least 1")
    if hidden is None and token_ids is None:
        _fail(op, "arguments 'hidden' and 'token_ids' are both None")
    dev = None
    n = None
    if router is not None:
        c = router.config
        if top_k != c.top_k:
            _fail(op, f"argument 'top_k' = {top_k} differs from the router's top_k {c.top_k}")
        needs_hidden = c.mode == RouterMode.DENSE or c.hash_weights == HashWeights.SCORED
        needs_tokens = c.mode == RouterMode.HASH
        if needs_hidden and hidden is None:
            _fail(op, "argument 'hidden' is None: this router needs hidden states bf16 [N, hidden_size]")
        if needs_tokens and token_ids is None:
            _fail(op, "argument 'token_ids' is None: a hash-mode router needs token ids int32 [N]")
        if not needs_hidden:
            hidden = None  # ignored by the C router
        if not needs_tokens:
            token_ids = None
        dev = torch.device("cuda", router.device)
    if hidden is not None:
        _check(op, "hidden", hidden, torch.bfloat16, 2, device=dev)
        dev = hidden.device
        n = hidden.shape[0]
        if router is not None and hidden.shape[1] != router.config.hidden_size:
            _fail(op, f"argument 'hidden' has {hidden.shape[1]} columns, the router's hidden_size is "
                      f"{router.config.hidden_size}")
    if token_ids is not None:
        _check(op, "token_ids", token_ids, torch.int32, 1, device=dev)
        dev = token_ids.device
        if n is not None and token_ids.shape[0] != n:
            _fail(op, f"argument 'token_ids' has {token_ids.shape[0]} entries, 'hidden' {n} rows")
        n = token_ids.shape[0]
    return n, hidden, token_ids, (hidden if hidden is not None else token_ids)


@torch.library.custom_op("dsv4::router_forward", mutates_args=(),
                         schema="(int router, int top_k, Tensor? hidden, Tensor? token_ids) -> (Tensor, Tensor)")
def _router_forward_op(router: int, top_k: int, hidden: Optional[Tensor],
                       token_ids: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    r = router_from_id(router)
    n, hidden, token_ids, like = _router_num_tokens(r, top_k, hidden, token_ids)
    if hidden is not None and hidden.data_ptr() % 16:
        _fail("router_forward", "argument 'hidden' must be 16-byte aligned (a row-offset view? use .clone())")
    if not r.max_tokens:
        _fail("router_forward", "argument 'router' is not prepared (call Router.prepare first)")
    if n > r.max_tokens:
        _fail("router_forward", f"argument 'num_tokens' = {n} exceeds the {r.max_tokens} the router was prepared for")
    w, ids = _empty_outputs(like, n, top_k)
    r.forward(_stream(like.device), hidden, token_ids, n, w.data_ptr(), ids.data_ptr())
    return w, ids


@_router_forward_op.register_fake
def _(router, top_k, hidden, token_ids):
    r = None
    if isinstance(router, int):  # a concrete id: check against the live router when there is one
        try:
            r = router_from_id(router)
        except InvalidArgumentError:
            r = None
    n, _, _, like = _router_num_tokens(r, top_k, hidden, token_ids)
    return _empty_outputs(like, n, top_k)


def router_forward(router, hidden: Optional[Tensor] = None,
                   token_ids: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Routes N tokens through a prepared dsv4.Router: fp32 weights [N,k] and int32 expert ids [N,k].
    hidden: bf16 [N, hidden_size] (dense mode, scored hash weights); token_ids: int32 [N] (hash mode).
    `router` is a dsv4.Router or its id."""
    if isinstance(router, Router):
        return torch.ops.dsv4.router_forward(router.id, router.config.top_k, hidden, token_ids)
    r = router_from_id(router)
    return torch.ops.dsv4.router_forward(r.id, r.config.top_k, hidden, token_ids)


def make_router(config: RouterConfig, device=None, *, gate_weight: Optional[Tensor] = None,
                bias: Optional[Tensor] = None, tid2eid: Optional[Tensor] = None, checkpoint: Optional[str] = None,
                prefix: str = "", max_tokens: int = 16384, decode_max_tokens: Optional[int] = None) -> Router:
    """A prepared dsv4.Router on `device` (the shared context of dsv4.torch_ops.context), with weights from
    tensors (borrowed and kept alive; tid2eid int64 is converted to int32) or from a safetensors checkpoint."""
    ctx = context(device)
    r = Router(ctx, config)
    try:
        if checkpoint is not None:
            r.load_safetensors(checkpoint, prefix)
        else:
            if tid2eid is not None and tid2eid.dtype == torch.int64:
                tid2eid = tid2eid.to(torch.int32)
            r.set_weights(gate_weight, bias, tid2eid)
        if decode_max_tokens is not None:
            r.set_decode_max_tokens(decode_max_tokens)
        r.prepare(max_tokens)
    except BaseException:
        r.close()
        raise
    return r
