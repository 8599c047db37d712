"""Exceptions of the mnas package: one class per libmnas status code.

Every failing C call becomes an instance of a subclass of ``mnas.Error``
carrying the status code and the library's message. The subclasses also
derive from the closest built-in exception (``ShapeError`` is a
``ValueError``, ``OutOfMemory`` a ``MemoryError``, ...), so generic Python
code that catches those keeps working.
"""

from __future__ import annotations

import builtins
from typing import Optional

# Status codes of include/mnas/core.h (part of the ABI: fixed values).
OK = 0
E_INVALID = -1
E_SHAPE = -2
E_NOMEM = -3
E_STALE = -4
E_NUMERIC = -5
E_IO = -6
E_FORMAT = -7
E_STATE = -8
E_UNSUPPORTED = -9
E_INTERNAL = -10
E_MISMATCH = -11


class Error(Exception):
    """Base class of every error raised by the mnas package.

    ``status`` is the libmnas status code (a negative int) and ``message``
    the library's message (``mnas_ctx_last_error`` / ``mnas_tape_last_error``),
    or the binding's own when the error was caught before calling C.
    """

    status = E_INTERNAL

    def __init__(self, message: str = "", status: Optional[int] = None) -> None:
        if status is not None:
            self.status = status
        self.message = message
        super().__init__(message)


class InvalidArgument(Error, ValueError):
    """MNAS_E_INVALID: a bad argument (out-of-range option, bad index, ...)."""
    status = E_INVALID


class ArgumentTypeError(InvalidArgument, builtins.TypeError):
    """An argument of the wrong Python type (caught before calling C)."""
    status = E_INVALID


class ShapeError(Error, ValueError):
    """MNAS_E_SHAPE: shapes do not fit the operation."""
    status = E_SHAPE


class OutOfMemory(Error, MemoryError):
    """MNAS_E_NOMEM: an allocation failed."""
    status = E_NOMEM


class StaleTensor(Error):
    """MNAS_E_STALE: a tape tensor used after its tape was reset or freed."""
    status = E_STALE


class NumericError(Error, ArithmeticError):
    """MNAS_E_NUMERIC: NaN or Inf where finite values are required."""
    status = E_NUMERIC


class FileError(Error, OSError):
    """MNAS_E_IO: a file could not be read or written."""
    status = E_IO


class FormatError(Error, ValueError):
    """MNAS_E_FORMAT: a file or string is malformed."""
    status = E_FORMAT


class StateError(Error):
    """MNAS_E_STATE: the call does not fit the object's state."""
    status = E_STATE


class ClosedHandleError(StateError):
    """A Python handle used after close() (caught before calling C)."""
    status = E_STATE


class Unsupported(Error, NotImplementedError):
    """MNAS_E_UNSUPPORTED: a valid request this build cannot do."""
    status = E_UNSUPPORTED


class InternalError(Error):
    """MNAS_E_INTERNAL: a bug in libmnas (please report it)."""
    status = E_INTERNAL


class MismatchError(Error, ValueError):
    """MNAS_E_MISMATCH: objects from different contexts or tapes mixed."""
    status = E_MISMATCH


class LibraryError(Error, ImportError):
    """libmnas could not be found or loaded, or is not the expected version."""
    status = E_UNSUPPORTED


class LibraryNotFoundError(LibraryError):
    """No libmnas shared library was found (see mnas.load)."""


class LibraryVersionError(LibraryError):
    """The loaded libmnas has another major version, or lacks a function."""


_BY_STATUS = {
    E_INVALID: InvalidArgument,
    E_SHAPE: ShapeError,
    E_NOMEM: OutOfMemory,
    E_STALE: StaleTensor,
    E_NUMERIC: NumericError,
    E_IO: FileError,
    E_FORMAT: FormatError,
    E_STATE: StateError,
    E_UNSUPPORTED: Unsupported,
    E_INTERNAL: InternalError,
    E_MISMATCH: MismatchError,
}


def error_class(status: int) -> type:
    """The exception class of a status code (InternalError if unknown)."""
    return _BY_STATUS.get(status, InternalError)


def make_error(status: int, message: str) -> Error:
    """An exception instance for a failing status and its message."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        return InternalError("unknown status %d: %s" % (status, message), status)
    return cls(message, status)
