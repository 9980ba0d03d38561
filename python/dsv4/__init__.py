"""dsv4: DeepSeek-V4 MoE routing on NVIDIA GPUs — Python bindings of libdsv4.so (ctypes).

    import dsv4
    cfg = dsv4.RouterConfig.preset("v4-pro", "dense")
    with dsv4.Context(0) as ctx, dsv4.Router(ctx, cfg) as r:
        ...

This module needs neither PyTorch nor a GPU to import; libdsv4.so is loaded at the first call that needs
it (DSV4_LIBRARY, else beside this package, else the source tree's build/, else the system loader).
The PyTorch ops (torch.ops.dsv4.*) live in dsv4.torch_ops, imported on demand.
"""

from ._library import LIB_NAME, ENV_VAR, candidate_places, last_error, library_path, load_library, status_string
from .core import (
    PRESETS,
    Context,
    HashWeights,
    JitStats,
    Router,
    RouterConfig,
    RouterMode,
    activation_topk,
    cache_dir,
    hash_router,
    precompile,
    precompile_topk,
    router_from_id,
    topk_select,
    version,
)
from .errors import (
    CublasError,
    CudaError,
    Dsv4Error,
    FormatError,
    InvalidArgumentError,
    IoError,
    LibraryNotFoundError,
    NoDeviceError,
    NoDriverError,
    NvrtcError,
    OutOfMemoryError,
    STATUS_NAMES,
    UnsupportedError,
    exception_for_status,
)

__version__ = "0.1.0"


def __getattr__(name):
    # dsv4.torch_ops on first touch (it imports torch); `import dsv4` alone never does.
    if name == "torch_ops":
        import importlib
        return importlib.import_module(".torch_ops", __name__)
    raise AttributeError(f"module 'dsv4' has no attribute {name!r}")


__all__ = [
    "LIB_NAME", "ENV_VAR", "candidate_places", "last_error", "library_path", "load_library", "status_string",
    "PRESETS", "Context", "HashWeights", "JitStats", "Router", "RouterConfig", "RouterMode", "activation_topk",
    "cache_dir", "hash_router", "precompile", "precompile_topk", "router_from_id", "topk_select",
    "version",
    "CublasError", "CudaError", "Dsv4Error", "FormatError", "InvalidArgumentError", "IoError",
    "LibraryNotFoundError", "NoDeviceError", "NoDriverError", "NvrtcError", "OutOfMemoryError", "STATUS_NAMES",
    "UnsupportedError", "exception_for_status",
]
