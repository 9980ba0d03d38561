"""The C API in Python: configs, the context, the router and the ops, over ctypes.

Pointers: every device-pointer argument takes an int address, None (NULL), or an object that knows its
address (a torch.Tensor's data_ptr(), __cuda_array_interface__). Streams: None (the legacy default
stream), an int CUstream / cudaStream_t handle, or a stream object (torch.cuda.Stream's cuda_stream, CuPy's
ptr, the __cuda_stream__ protocol). Objects passed as router weights are kept alive by the router, since
the C router borrows them.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import threading
import weakref
from ctypes import byref, c_void_p
from dataclasses import dataclass, fields

from . import _library
from ._library import JitStatsC, RouterConfigC, check, load_library
from .errors import InvalidArgumentError

__all__ = [
    "PRESETS", "RouterMode", "HashWeights", "RouterConfig", "JitStats", "Context", "Router",
    "precompile", "precompile_topk", "cache_dir", "version", "hash_router", "topk_select", "activation_topk",
    "router_from_id",
]

PRESETS = ("v4-flash", "v4-pro")


class RouterMode(enum.IntEnum):
    DENSE = 0
    HASH = 1


class HashWeights(enum.IntEnum):
    SCORED = 0
    UNIFORM = 1


def _enum(cls, value, name):
    if isinstance(value, str):
        try:
            return cls[value.upper()]
        except KeyError:
            raise InvalidArgumentError(f"argument '{name}' = {value!r} is not one of "
                                       f"{', '.join(m.name.lower() for m in cls)}", function="dsv4") from None
    try:
        return cls(int(value))
    except ValueError:
        raise InvalidArgumentError(f"argument '{name}' = {value!r} is not a {cls.__name__}",
                                   function="dsv4") from None


@dataclass
class RouterConfig:
    """struct dsv4_router_config. Build one with RouterConfig.preset("v4-pro", "dense") or by fields."""

    mode: RouterMode
    hidden_size: int
    num_experts: int
    top_k: int
    vocab_size: int
    routed_scaling_factor: float
    hash_weights: HashWeights = HashWeights.SCORED

    def __post_init__(self):
        self.mode = _enum(RouterMode, self.mode, "mode")
        self.hash_weights = _enum(HashWeights, self.hash_weights, "hash_weights")

    @classmethod
    def preset(cls, name: str, mode="dense") -> "RouterConfig":
        """dsv4_router_config_preset: "v4-flash" or "v4-pro" (SPEC section 1), mode "dense" or "hash"."""
        lib = load_library()
        c = RouterConfigC()
        mode = _enum(RouterMode, mode, "mode")
        raw = name.encode() if isinstance(name, str) else name
        check(lib.dsv4_router_config_preset(raw, int(mode), byref(c)), "dsv4_router_config_preset")
        return cls._from_c(c)

    def check(self) -> None:
        """dsv4_router_config_check: raises UnsupportedError / InvalidArgumentError naming the field."""
        c = self._to_c()
        check(load_library().dsv4_router_config_check(byref(c)), "dsv4_router_config_check")

    def replace(self, **changes) -> "RouterConfig":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(changes)
        return RouterConfig(**d)

    def _to_c(self) -> RouterConfigC:
        return RouterConfigC(int(self.mode), int(self.hidden_size), int(self.num_experts), int(self.top_k),
                             int(self.vocab_size), float(self.routed_scaling_factor), int(self.hash_weights))

    @classmethod
    def _from_c(cls, c: RouterConfigC) -> "RouterConfig":
        return cls(RouterMode(c.mode), c.hidden_size, c.num_experts, c.top_k, c.vocab_size,
                   c.routed_scaling_factor, HashWeights(c.hash_weights))


@dataclass(frozen=True)
class JitStats:
    """struct dsv4_jit_stats."""

    compiles: int
    disk_hits: int
    memory_hits: int
    disk_writes: int
    disk_rejected: int
    compile_ms: float

    @classmethod
    def _from_c(cls, s: JitStatsC) -> "JitStats":
        return cls(s.compiles, s.disk_hits, s.memory_hits, s.disk_writes, s.disk_rejected, s.compile_ms)


def version() -> str:
    """dsv4_version() of the loaded library."""
    return load_library().dsv4_version().decode()


def cache_dir() -> str | None:
    """dsv4_cache_dir(): the disk cache root in use, None when DSV4_CACHE=0."""
    p = load_library().dsv4_cache_dir()
    return p.decode() if p else None


def precompile(config: RouterConfig, arch: str) -> JitStats:
    """dsv4_precompile: compile every kernel of `config` for `arch` ("sm_90a", ...) into the disk cache.
    Needs no GPU and no driver."""
    lib = load_library()
    c = config._to_c()
    stats = JitStatsC()
    check(lib.dsv4_precompile(byref(c), arch.encode(), byref(stats)), "dsv4_precompile")
    return JitStats._from_c(stats)


def precompile_topk(ks, arch: str) -> JitStats:
    """dsv4_precompile_topk: compile the long-row kernels topk_select takes for each k of `ks` (the indexer's
    top-k, e.g. [512, 2048]) for `arch` into the disk cache. Needs no GPU and no driver."""
    lib = load_library()
    ks = [int(k) for k in ks]
    arr = (ctypes.c_int32 * max(len(ks), 1))(*ks)
    stats = JitStatsC()
    check(lib.dsv4_precompile_topk(arr, len(ks), arch.encode(), byref(stats)), "dsv4_precompile_topk")
    return JitStats._from_c(stats)


# ---- pointers and streams ----

def _ptr(obj, name: str):
    """A device address from an int, None, a torch.Tensor or a __cuda_array_interface__ object."""
    if obj is None:
        return None
    if isinstance(obj, bool):
        raise InvalidArgumentError(f"argument '{name}' is a bool, not a device pointer", function="dsv4")
    if isinstance(obj, int):
        return obj or None
    if isinstance(obj, c_void_p):
        return obj.value
    data_ptr = getattr(obj, "data_ptr", None)
    if callable(data_ptr):
        if getattr(obj, "is_cuda", True) is False:  # a host tensor: the kernels would fault on it
            raise InvalidArgumentError(f"argument '{name}' is not on a CUDA device ({getattr(obj, 'device', '?')})",
                                       function="dsv4")
        return data_ptr() or None
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        return cai["data"][0] or None
    raise InvalidArgumentError(f"argument '{name}' ({type(obj).__name__}) is not a device pointer, a tensor "
                               "or a __cuda_array_interface__ object", function="dsv4")


def _stream(stream):
    """A CUstream value (None = the legacy default stream)."""
    if stream is None:
        return None
    if isinstance(stream, bool):
        raise InvalidArgumentError("argument 'stream' is a bool, not a CUDA stream", function="dsv4")
    if isinstance(stream, int):
        return stream or None
    if isinstance(stream, c_void_p):
        return stream.value
    for attr in ("cuda_stream", "ptr", "handle"):  # torch.cuda.Stream, cupy.cuda.Stream, others
        v = getattr(stream, attr, None)
        if isinstance(v, int):
            return v or None
    proto = getattr(stream, "__cuda_stream__", None)  # (version, handle)
    if callable(proto):
        return int(proto()[1]) or None
    try:
        return int(stream) or None  # cuda-python CUstream
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"argument 'stream' ({type(stream).__name__}) is not a CUDA stream",
                                   function="dsv4") from None


def _as_int(v, name):
    if isinstance(v, bool) or not isinstance(v, int):
        try:
            iv = int(v)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"argument '{name}' = {v!r} is not an integer", function="dsv4") from None
        if iv != v:
            raise InvalidArgumentError(f"argument '{name}' = {v!r} is not an integer", function="dsv4")
        return iv
    return v


# ---- the context ----

class Context:
    """dsv4_context: one per device. Safe to share between threads. close() (or `with`, or garbage
    collection) closes its routers, then destroys it; a router the context cannot reach any more (one being
    collected) still keeps the C context alive until that router is destroyed."""

    def __init__(self, device: int = 0):
        lib = load_library()
        h = c_void_p()
        check(lib.dsv4_context_create(_as_int(device, "device_ordinal"), byref(h)), "dsv4_context_create")
        self._h = h.value
        self._closed = False
        self._nrouters = 0           # routers created on it and not yet destroyed
        self._lock = threading.Lock()
        self.device = int(device)
        self._routers = weakref.WeakSet()
        self._lib = lib

    @property
    def handle(self) -> int:
        """The dsv4_context * as an int (0 once closed)."""
        return 0 if self._closed else (self._h or 0)

    def _live(self) -> int:
        if self._closed or not self._h:
            raise InvalidArgumentError("argument 'ctx' is a closed context", function="dsv4")
        return self._h

    @property
    def arch(self) -> str:
        """The compile target of the device, e.g. "sm_90a"."""
        h = self._live()
        return self._lib.dsv4_context_arch(h).decode()

    def jit_stats(self) -> JitStats:
        h = self._live()
        s = JitStatsC()
        check(self._lib.dsv4_context_jit_stats(h, byref(s)), "dsv4_context_jit_stats")
        return JitStats._from_c(s)

    def _router_added(self):
        with self._lock:
            self._nrouters += 1

    def _router_gone(self):
        with self._lock:
            self._nrouters -= 1
        self._maybe_destroy()

    def _maybe_destroy(self):
        with self._lock:
            if not (self._closed and self._nrouters == 0 and self._h):
                return
            h, self._h = self._h, None
        self._lib.dsv4_context_destroy(h)

    def close(self) -> None:
        if not getattr(self, "_h", None) or self._closed:
            return
        self._closed = True
        for r in list(self._routers):
            r.close()
        self._maybe_destroy()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def __repr__(self):
        state = f"arch={self.arch}" if self.handle else "closed"
        return f"<dsv4.Context device={self.device} {state}>"


# ---- ops (raw: device pointers, C argument order) ----

def hash_router(ctx: Context, stream, token_ids, num_tokens, lut, vocab_size, k, topk_weights, topk_ids):
    """dsv4_hash_router: ids = lut[token], weights = 1/k (an out-of-range token: expert 0, weight 0)."""
    lib = load_library()
    check(lib.dsv4_hash_router(ctx._live(), _stream(stream), _ptr(token_ids, "token_ids"),
                               _as_int(num_tokens, "num_tokens"), _ptr(lut, "lut"), _as_int(vocab_size, "vocab_size"),
                               _as_int(k, "k"), _ptr(topk_weights, "topk_weights"), _ptr(topk_ids, "topk_ids")),
          "dsv4_hash_router")


def topk_select(ctx: Context, stream, scores, rows, cols, row_stride, k, out_values, out_indices):
    """dsv4_topk_select: per row the k largest FP32 values, descending, ties lower index first."""
    lib = load_library()
    check(lib.dsv4_topk_select(ctx._live(), _stream(stream), _ptr(scores, "scores"), _as_int(rows, "rows"),
                               _as_int(cols, "cols"), _as_int(row_stride, "row_stride"), _as_int(k, "k"),
                               _ptr(out_values, "out_values"), _ptr(out_indices, "out_indices")),
          "dsv4_topk_select")


def activation_topk(ctx: Context, stream, logits, num_tokens, num_experts, bias, k, routed_scaling_factor,
                    topk_weights, topk_ids):
    """dsv4_activation_topk: sqrt(softplus(logits)), + bias for selection, top-k, renormalised * scale."""
    lib = load_library()
    check(lib.dsv4_activation_topk(ctx._live(), _stream(stream), _ptr(logits, "logits"),
                                   _as_int(num_tokens, "num_tokens"), _as_int(num_experts, "num_experts"),
                                   _ptr(bias, "bias"), _as_int(k, "k"), float(routed_scaling_factor),
                                   _ptr(topk_weights, "topk_weights"), _ptr(topk_ids, "topk_ids")),
          "dsv4_activation_topk")


# ---- the router ----

# Live routers by id. An id is never reused in a process (unlike an address, which malloc may hand to the
# next router), so a stale id held by a compiled graph fails loudly instead of driving another router.
_ROUTERS: dict[int, "weakref.ref[Router]"] = {}
_ROUTERS_LOCK = threading.Lock()
_NEXT_ID = itertools.count(1)


def router_from_id(router_id: int) -> "Router":
    """The live Router registered under `router_id` (Router.id); InvalidArgumentError if none."""
    with _ROUTERS_LOCK:
        ref = _ROUTERS.get(router_id)
    r = ref() if ref is not None else None
    if r is None or not r._h:
        raise InvalidArgumentError(f"argument 'router' = {router_id} is not a live dsv4 router id "
                                   "(closed, or never created in this process)", function="dsv4")
    return r


def _torch_dtype_name(t):
    return str(getattr(t, "dtype", "")).replace("torch.", "")


def _check_weight_tensor(obj, name, dtype, shape, device):
    """Checks torch tensors handed to set_weights (ints are trusted as raw device pointers)."""
    if obj is None or isinstance(obj, int) or not hasattr(obj, "data_ptr") or not hasattr(obj, "dtype"):
        return
    if not getattr(obj, "is_cuda", False):
        raise InvalidArgumentError(f"argument '{name}' must be a CUDA tensor, not on {obj.device}", function="dsv4")
    idx = getattr(obj.device, "index", None)
    if idx is not None and idx != device:
        raise InvalidArgumentError(f"argument '{name}' is on cuda:{idx}, the router's context is on cuda:{device}",
                                   function="dsv4")
    if _torch_dtype_name(obj) != dtype:
        raise InvalidArgumentError(f"argument '{name}' must be {dtype}, not {_torch_dtype_name(obj)}", function="dsv4")
    if tuple(obj.shape) != tuple(shape):
        raise InvalidArgumentError(f"argument '{name}' must have shape {list(shape)}, not {list(obj.shape)}",
                                   function="dsv4")
    if not obj.is_contiguous():
        raise InvalidArgumentError(f"argument '{name}' must be contiguous", function="dsv4")


class Router:
    """dsv4_router: one MoE layer's gate.

        r = Router(ctx, RouterConfig.preset("v4-pro", "dense"))
        r.set_weights(gate_weight, bias)        # or r.load_safetensors(path, "model.layers.3.ffn.gate.")
        r.prepare(max_tokens)
        r.forward(stream, hidden, None, n, topk_weights, topk_ids)

    Used by one thread at a time. close() (or `with`, or garbage collection) destroys it. `id` is the
    process-unique key the PyTorch op dsv4::router_forward takes (dsv4.torch_ops.router_forward).
    """

    def __init__(self, ctx: Context, config: RouterConfig):
        if not isinstance(ctx, Context):
            raise InvalidArgumentError(f"argument 'ctx' must be a dsv4.Context, not {type(ctx).__name__}",
                                       function="dsv4_router_create")
        if not isinstance(config, RouterConfig):
            raise InvalidArgumentError(f"argument 'cfg' must be a dsv4.RouterConfig, not {type(config).__name__}",
                                       function="dsv4_router_create")
        lib = load_library()
        c = config._to_c()
        h = c_void_p()
        check(lib.dsv4_router_create(ctx._live(), byref(c), byref(h)), "dsv4_router_create")
        self._h = h.value
        self._lib = lib
        self.context = ctx
        self.config = RouterConfig._from_c(c)
        self._keep = ()  # objects whose memory the router borrows
        self.max_tokens = 0
        self.id = next(_NEXT_ID)
        ctx._router_added()
        ctx._routers.add(self)
        with _ROUTERS_LOCK:
            _ROUTERS[self.id] = weakref.ref(self)

    @property
    def handle(self) -> int:
        """The dsv4_router * as an int (0 once closed)."""
        return self._h or 0

    @property
    def top_k(self) -> int:
        return self.config.top_k

    @property
    def device(self) -> int:
        return self.context.device

    def _live(self) -> int:
        if not self._h:
            raise InvalidArgumentError("argument 'r' is a closed router", function="dsv4")
        return self._h

    def set_weights(self, gate_weight=None, bias=None, tid2eid=None) -> None:
        """dsv4_router_set_weights with borrowed device memory: gate_weight bf16 [E,H], bias fp32 [E] or None,
        tid2eid int32 [vocab,k]. Tensors are checked (device, dtype, shape, contiguity) and kept alive."""
        c = self.config
        h = self._live()
        _check_weight_tensor(gate_weight, "gate_weight_bf16", "bfloat16", (c.num_experts, c.hidden_size), self.device)
        _check_weight_tensor(bias, "bias", "float32", (c.num_experts,), self.device)
        _check_weight_tensor(tid2eid, "tid2eid", "int32", (c.vocab_size, c.top_k), self.device)
        check(self._lib.dsv4_router_set_weights(h, _ptr(gate_weight, "gate_weight_bf16"), _ptr(bias, "bias"),
                                                _ptr(tid2eid, "tid2eid")), "dsv4_router_set_weights")
        self._keep = (gate_weight, bias, tid2eid)

    def load_safetensors(self, path, tensor_prefix: str = "") -> None:
        """dsv4_router_load_safetensors: `<prefix>weight`, `<prefix>bias` | `<prefix>e_score_correction_bias`,
        `<prefix>tid2eid` into device memory the router owns. All or nothing."""
        import os
        check(self._lib.dsv4_router_load_safetensors(self._live(), os.fsencode(path),
                                                     (tensor_prefix or "").encode()),
              "dsv4_router_load_safetensors")
        self._keep = ()

    def set_decode_max_tokens(self, n: int) -> None:
        """dsv4_router_set_decode_max_tokens (0..64; before prepare)."""
        check(self._lib.dsv4_router_set_decode_max_tokens(self._live(), _as_int(n, "n")),
              "dsv4_router_set_decode_max_tokens")

    def set_pdl(self, enable: bool) -> None:
        """dsv4_router_set_pdl: launch overlap of the decode path (on by default; see the C header)."""
        check(self._lib.dsv4_router_set_pdl(self._live(), 1 if enable else 0), "dsv4_router_set_pdl")

    def prepare(self, max_tokens: int) -> None:
        """dsv4_router_prepare: JIT-load every kernel and allocate the workspace. Synchronizes."""
        check(self._lib.dsv4_router_prepare(self._live(), _as_int(max_tokens, "max_tokens")), "dsv4_router_prepare")
        self.max_tokens = int(max_tokens)

    def forward(self, stream, hidden, token_ids, num_tokens, topk_weights, topk_ids) -> None:
        """dsv4_router_forward on device pointers (or tensors). Never synchronizes; graph-capturable."""
        check(self._lib.dsv4_router_forward(self._live(), _stream(stream), _ptr(hidden, "hidden_bf16"),
                                            _ptr(token_ids, "token_ids"), _as_int(num_tokens, "num_tokens"),
                                            _ptr(topk_weights, "topk_weights"), _ptr(topk_ids, "topk_ids")),
              "dsv4_router_forward")

    def take_error_count(self) -> int:
        """dsv4_router_take_error_count: out-of-range token ids since the last call, resetting it. Syncs."""
        n = self._lib.dsv4_router_take_error_count(self._live())
        if n < 0:
            check(5, "dsv4_router_take_error_count")  # the count could not be read: a CUDA failure
        return int(n)

    def close(self) -> None:
        if getattr(self, "_h", None):
            with _ROUTERS_LOCK:
                _ROUTERS.pop(self.id, None)
            h, self._h = self._h, None
            self._lib.dsv4_router_destroy(h)
            self._keep = ()
            self.context._router_gone()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        c = self.config
        state = f"prepared for {self.max_tokens}" if self.max_tokens else "not prepared"
        if not self._h:
            state = "closed"
        return (f"<dsv4.Router id={self.id} {c.mode.name.lower()} H={c.hidden_size} E={c.num_experts} "
                f"k={c.top_k} on cuda:{self.device}, {state}>")
