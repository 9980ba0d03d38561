"""Exceptions: one class per dsv4_status, all under Dsv4Error.

A failed C call raises the class of its status, carrying dsv4_status_string() and the calling thread's
dsv4_last_error() (which names the function and the argument). Checks done in Python before any call
(tensor dtype, device, shape, contiguity) raise InvalidArgumentError too, so callers catch one family.
"""

from __future__ import annotations

__all__ = [
    "Dsv4Error",
    "InvalidArgumentError",
    "UnsupportedError",
    "NoDriverError",
    "NoDeviceError",
    "CudaError",
    "NvrtcError",
    "CublasError",
    "OutOfMemoryError",
    "IoError",
    "FormatError",
    "LibraryNotFoundError",
    "STATUS_NAMES",
    "exception_for_status",
]

# The values of enum dsv4_status in include/dsv4/dsv4.h (SPEC section 3 fixes their order).
STATUS_NAMES = {
    0: "DSV4_OK",
    1: "DSV4_ERR_INVALID_ARGUMENT",
    2: "DSV4_ERR_UNSUPPORTED",
    3: "DSV4_ERR_NO_DRIVER",
    4: "DSV4_ERR_NO_DEVICE",
    5: "DSV4_ERR_CUDA",
    6: "DSV4_ERR_NVRTC",
    7: "DSV4_ERR_CUBLAS",
    8: "DSV4_ERR_OUT_OF_MEMORY",
    9: "DSV4_ERR_IO",
    10: "DSV4_ERR_FORMAT",
}


class Dsv4Error(RuntimeError):
    """A dsv4 call failed.

    Attributes: ``status`` (the int dsv4_status, None for errors raised in Python before any call),
    ``status_name`` ("DSV4_ERR_..."), ``detail`` (dsv4_last_error() at the failure: what and which
    argument), ``function`` (the C function or Python entry point that failed).
    """

    status_value: int | None = None  # the class's own status; None for the base class

    def __init__(self, detail: str, *, status: int | None = None, function: str | None = None,
                 status_string: str | None = None):
        if status is None:
            status = self.status_value
        self.status = status
        self.status_name = STATUS_NAMES.get(status, f"DSV4_ERR_{status}") if status is not None else None
        self.detail = detail
        self.function = function
        self.status_string = status_string
        head = self.status_name or type(self).__name__
        if not detail:
            detail = status_string or ""
        if function and function not in detail:
            detail = f"{function}: {detail}" if detail else function
        super().__init__(f"{head}: {detail}" if detail else head)


class InvalidArgumentError(Dsv4Error, ValueError):
    """DSV4_ERR_INVALID_ARGUMENT: an argument is invalid (the message names it). Also a ValueError."""

    status_value = 1


class UnsupportedError(Dsv4Error):
    """DSV4_ERR_UNSUPPORTED: outside the supported shapes or targets (the message names the argument)."""

    status_value = 2


class NoDriverError(Dsv4Error):
    """DSV4_ERR_NO_DRIVER: the CUDA driver (libcuda.so.1) could not be loaded."""

    status_value = 3


class NoDeviceError(Dsv4Error):
    """DSV4_ERR_NO_DEVICE: no usable CUDA device (or a bad ordinal)."""

    status_value = 4


class CudaError(Dsv4Error):
    """DSV4_ERR_CUDA: a CUDA driver call failed."""

    status_value = 5


class NvrtcError(Dsv4Error):
    """DSV4_ERR_NVRTC: run-time compilation failed."""

    status_value = 6


class CublasError(Dsv4Error):
    """DSV4_ERR_CUBLAS: a cuBLASLt call failed."""

    status_value = 7


class OutOfMemoryError(Dsv4Error):
    """DSV4_ERR_OUT_OF_MEMORY: out of (host or device) memory."""

    status_value = 8


class IoError(Dsv4Error):
    """DSV4_ERR_IO: a file operation failed (missing or unreadable file, unwritable cache)."""

    status_value = 9


class FormatError(Dsv4Error):
    """DSV4_ERR_FORMAT: malformed file contents (the message names the file and tensor)."""

    status_value = 10


_BY_STATUS = {cls.status_value: cls for cls in (
    InvalidArgumentError, UnsupportedError, NoDriverError, NoDeviceError, CudaError, NvrtcError,
    CublasError, OutOfMemoryError, IoError, FormatError)}


def exception_for_status(status: int) -> type:
    """The exception class for a dsv4_status value (Dsv4Error itself for an unknown one)."""
    return _BY_STATUS.get(int(status), Dsv4Error)


class LibraryNotFoundError(ImportError):
    """libdsv4.so could not be loaded. ``places`` lists (place, why) for every place looked at."""

    def __init__(self, message: str, places):
        super().__init__(message)
        self.places = list(places)
