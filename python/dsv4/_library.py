"""Finding and binding libdsv4.so with ctypes.

Where the library is looked for, in order:
  1. the environment variable DSV4_LIBRARY (a file, or a folder holding libdsv4.so). When it is set it is
     the only place tried: an explicit choice never silently falls back to another copy;
  2. beside this package (dsv4/libdsv4.so, where `pip install` puts it);
  3. the source tree this package sits in, when it is one (<repo>/build/libdsv4.so);
  4. the system's dynamic loader ("libdsv4.so.0", then "libdsv4.so": LD_LIBRARY_PATH, ld.so.cache).
If none loads, LibraryNotFoundError lists every place and why it failed (or why it was not tried).

The library is loaded once, at the first call that needs it, so `import dsv4` works without it.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_void_p

from .errors import LibraryNotFoundError, exception_for_status

ENV_VAR = "DSV4_LIBRARY"
LIB_NAME = "libdsv4.so"
SYSTEM_NAMES = ("libdsv4.so.0", "libdsv4.so")
# The struct layouts below mirror this MAJOR.MINOR of include/dsv4/dsv4.h.
ABI_VERSION = (0, 1)

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class RouterConfigC(ctypes.Structure):
    """struct dsv4_router_config (enums are C ints)."""

    _fields_ = [
        ("mode", c_int),
        ("hidden_size", c_int32),
        ("num_experts", c_int32),
        ("top_k", c_int32),
        ("vocab_size", c_int32),
        ("routed_scaling_factor", c_float),
        ("hash_weights", c_int),
    ]


class JitStatsC(ctypes.Structure):
    """struct dsv4_jit_stats."""

    _fields_ = [
        ("compiles", c_int64),
        ("disk_hits", c_int64),
        ("memory_hits", c_int64),
        ("disk_writes", c_int64),
        ("disk_rejected", c_int64),
        ("compile_ms", c_double),
    ]


_st = c_int  # dsv4_status
_p = c_void_p
# name: (restype, argtypes) for every function of include/dsv4/dsv4.h.
_SIGNATURES = {
    "dsv4_status_string": (c_char_p, [c_int]),
    "dsv4_last_error": (c_char_p, []),
    "dsv4_version": (c_char_p, []),
    "dsv4_context_create": (_st, [c_int, POINTER(c_void_p)]),
    "dsv4_context_destroy": (None, [_p]),
    "dsv4_context_jit_stats": (_st, [_p, POINTER(JitStatsC)]),
    "dsv4_context_arch": (c_char_p, [_p]),
    "dsv4_hash_router": (_st, [_p, _p, _p, c_int64, _p, c_int32, c_int32, _p, _p]),
    "dsv4_topk_select": (_st, [_p, _p, _p, c_int64, c_int64, c_int64, c_int32, _p, _p]),
    "dsv4_activation_topk": (_st, [_p, _p, _p, c_int64, c_int32, _p, c_int32, c_float, _p, _p]),
    "dsv4_router_config_preset": (_st, [c_char_p, c_int, POINTER(RouterConfigC)]),
    "dsv4_router_config_check": (_st, [POINTER(RouterConfigC)]),
    "dsv4_precompile": (_st, [POINTER(RouterConfigC), c_char_p, POINTER(JitStatsC)]),
    "dsv4_precompile_topk": (_st, [POINTER(c_int32), c_int32, c_char_p, POINTER(JitStatsC)]),
    "dsv4_router_create": (_st, [_p, POINTER(RouterConfigC), POINTER(c_void_p)]),
    "dsv4_router_set_weights": (_st, [_p, _p, _p, _p]),
    "dsv4_router_load_safetensors": (_st, [_p, c_char_p, c_char_p]),
    "dsv4_router_prepare": (_st, [_p, c_int64]),
    "dsv4_router_forward": (_st, [_p, _p, _p, _p, c_int64, _p, _p]),
    "dsv4_router_take_error_count": (c_int64, [_p]),
    "dsv4_router_destroy": (None, [_p]),
    "dsv4_router_set_decode_max_tokens": (_st, [_p, c_int32]),
    "dsv4_router_set_pdl": (_st, [_p, c_int32]),
    "dsv4_cache_dir": (c_char_p, []),
}

_lock = threading.Lock()
_lib = None
_lib_path = None


def _source_tree_candidate():
    """<repo>/build/libdsv4.so when this package lives in the dsv4 source tree (python/dsv4/)."""
    repo = os.path.dirname(os.path.dirname(_PKG_DIR))
    if os.path.isfile(os.path.join(repo, "include", "dsv4", "dsv4.h")):
        return os.path.join(repo, "build", LIB_NAME)
    return None


def candidate_places():
    """Every place looked at, in order, as (kind, path-or-name)."""
    places = []
    env = os.environ.get(ENV_VAR)
    if env:
        path = os.path.join(env, LIB_NAME) if os.path.isdir(env) else env
        places.append(("env", path))
    places.append(("package", os.path.join(_PKG_DIR, LIB_NAME)))
    tree = _source_tree_candidate()
    if tree:
        places.append(("source tree", tree))
    for name in SYSTEM_NAMES:
        places.append(("system loader", name))
    return places


def _describe(kind, where):
    if kind == "env":
        return f"{ENV_VAR}={os.environ.get(ENV_VAR)} -> {where}"
    if kind == "system loader":
        return f"the system loader: {where} (LD_LIBRARY_PATH, ld.so.cache)"
    return f"{kind}: {where}"


def _try_load(kind, where):
    """(CDLL or None, why it failed)."""
    if kind != "system loader" and not os.path.isfile(where):
        return None, "no such file"
    try:
        return ctypes.CDLL(where, mode=ctypes.RTLD_LOCAL), None
    except OSError as e:
        return None, str(e)


def _bind(cdll):
    """Sets the signatures; returns why the library is unusable, or None."""
    missing = [n for n in _SIGNATURES if not hasattr(cdll, n)]
    if missing:
        return f"not a compatible libdsv4 (an older build?): it lacks {', '.join(missing)}"
    for name, (restype, argtypes) in _SIGNATURES.items():
        f = getattr(cdll, name)
        f.restype = restype
        f.argtypes = argtypes
    version = cdll.dsv4_version().decode()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        major, minor = -1, -1
    if (major, minor) != ABI_VERSION:
        return (f"libdsv4 {version}; this package binds {ABI_VERSION[0]}.{ABI_VERSION[1]}.x "
                "(the struct layouts differ)")
    return None


def load_library(path: str | None = None):
    """The bound ctypes library, loading it on first use (or from `path`, if given, on first use).

    Raises LibraryNotFoundError naming every place looked at.
    """
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            return _lib
        if path is not None:
            places = [("argument", path)]
        else:
            places = candidate_places()
        tried = []
        only_env = places and places[0][0] == "env"
        for i, (kind, where) in enumerate(places):
            if only_env and i > 0:
                tried.append((_describe(kind, where), f"not tried: {ENV_VAR} is set"))
                continue
            if path is not None and i > 0:
                continue
            cdll, why = _try_load(kind, where)
            if cdll is not None:
                why = _bind(cdll)
            if why is not None:
                tried.append((_describe(kind, where), why))
                continue
            _lib = cdll
            _lib_path = _resolved_path(cdll, where)
            return _lib
        lines = "\n".join(f"  - {p}: {why}" for p, why in tried)
        hint = (f"Build it (cmake -S . -B build && cmake --build build), then set {ENV_VAR} to build/libdsv4.so, "
                f"or install the package with pip (it builds and bundles the library).")
        raise LibraryNotFoundError(f"libdsv4.so could not be loaded. Places looked at:\n{lines}\n{hint}", tried)


def _resolved_path(cdll, fallback):
    """The file the loader actually mapped (via dladdr on a symbol), else the name used."""
    try:
        class DlInfo(ctypes.Structure):
            _fields_ = [("dli_fname", c_char_p), ("dli_fbase", c_void_p), ("dli_sname", c_char_p),
                        ("dli_saddr", c_void_p)]

        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
        dladdr.argtypes = [c_void_p, POINTER(DlInfo)]
        dladdr.restype = c_int
        info = DlInfo()
        addr = ctypes.cast(cdll.dsv4_version, c_void_p).value
        if dladdr(addr, ctypes.byref(info)) and info.dli_fname:
            return os.path.abspath(info.dli_fname.decode())
    except (OSError, AttributeError):
        pass
    return fallback


def library_path() -> str:
    """The path of the loaded libdsv4.so (loading it if needed)."""
    load_library()
    return _lib_path


def last_error() -> str:
    """dsv4_last_error() of the calling thread ("" if none)."""
    return load_library().dsv4_last_error().decode(errors="replace")


def status_string(status: int) -> str:
    return load_library().dsv4_status_string(int(status)).decode(errors="replace")


def check(status: int, function: str) -> None:
    """Raises the exception class of `status` (with dsv4_last_error()) unless it is DSV4_OK."""
    if status == 0:
        return
    lib = load_library()
    detail = lib.dsv4_last_error().decode(errors="replace")
    cls = exception_for_status(status)
    raise cls(detail, status=int(status), function=function,
              status_string=lib.dsv4_status_string(int(status)).decode(errors="replace"))
