"""The core layer: versions, the context (root of every object, holder of
the last error message) and the deterministic random number generator."""

from __future__ import annotations

import ctypes
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Tuple, Union

from . import _lib
from ._handle import Handle, as_int, as_u64, new_handle
from ._lib import C, decode
from ._structs import CtxOptions
from .errors import ArgumentTypeError, InvalidArgument, make_error
from ._types import ShapeLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from .autodiff import Tape
    from .nn import Params
    from .tensors import Tensor

LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 0, 1, 2, 3
_LOG_LEVELS = {"error": LOG_ERROR, "warn": LOG_WARN, "warning": LOG_WARN, "info": LOG_INFO,
               "debug": LOG_DEBUG}
RNG_STATE_WORDS = 6


def version() -> str:
    """The library's version string ("0.1.0")."""
    return decode(C.mnas_version_string())


def version_number() -> int:
    """major * 10000 + minor * 100 + patch of the loaded library."""
    return C.mnas_version_number()


def status_str(status: int) -> str:
    """The library's description of a status code."""
    return decode(C.mnas_status_str(as_int(status, "status", -(1 << 31), (1 << 31) - 1)))


def _log_level(level):
    if isinstance(level, str):
        try:
            return _LOG_LEVELS[level.lower()]
        except KeyError:
            raise InvalidArgument("unknown log level %r (error, warn, info, debug)" % level) from None
    return as_int(level, "log_level", 0, 3)


class Context(Handle):
    """A libmnas context: allocator, RNG, last error, logging.

    ``Context(seed=0, log=None, log_level="warn")``: ``log`` is an optional
    callable ``log(level, message)`` receiving the library's messages up to
    ``log_level`` (it may be called from the library's worker threads;
    exceptions it raises are reported on stderr and otherwise ignored).

    Every object is made from a context and keeps it alive; ``close()``
    closes them all (with ``with mnas.Context() as ctx:`` that happens at
    the end of the block)."""

    __slots__ = ("_log_cb", "_rng")
    _kind = "context"

    def __init__(self, seed: int = 0, log: Optional[Callable[[int, str], None]] = None,
                 log_level: Union[int, str] = "warn") -> None:
        opts = CtxOptions.new(seed=as_u64(seed, "seed"), log_level=_log_level(log_level))
        cb = None
        if log is not None:
            if not callable(log):
                raise ArgumentTypeError("log must be callable(level, message)")

            def _log(user, level, message, _log=log):
                try:
                    _log(int(level), decode(message))
                except Exception as e:  # never let it unwind into C
                    print("mnas: exception in the log callback: %r" % (e,), file=sys.stderr)

            cb = _lib.LOG_FN(_log)
            opts.log = ctypes.cast(cb, ctypes.c_void_p).value
        out = ctypes.c_void_p()
        st = C.mnas_ctx_create(ctypes.byref(out), ctypes.byref(opts))
        if st != 0:
            raise make_error(st, "mnas_ctx_create: %s" % status_str(st))
        _lib.mark_in_use()
        self._log_cb = cb
        self._rng = None
        self._setup(out.value, C.mnas_ctx_free, None, cb)

    # ---- errors and logging ---------------------------------------------

    @property
    def last_error(self) -> str:
        """The message of the last failure on this context ("" if none)."""
        return decode(C.mnas_ctx_last_error(self._p()))

    def clear_error(self) -> None:
        C.mnas_ctx_clear_error(self._p())

    @property
    def live_allocations(self) -> int:
        """Memory blocks the library holds from this context (0 once every
        object made from it is freed)."""
        return int(C.mnas_ctx_live_allocations(self._p()))

    @property
    def live_tensors(self) -> int:
        """Live persistent tensors made from this context."""
        return int(C.mnas_ctx_live_tensors(self._p()))

    def log(self, level: Union[int, str], message: str) -> None:
        """Send a message through the context's log callback."""
        C.mnas_ctx_log(self._p(), _log_level(level), str(message).encode())

    def _fail(self, what=None, status=None):
        """Raise for a failed call: the status (or the one its message names)
        with the context's message."""
        msg = decode(C.mnas_ctx_last_error(self._ptr)) if self._ptr else ""
        if status is None:
            status = _lib.status_of_message(msg) if msg else -10
        elif msg and _lib.status_of_message(msg) != status:
            msg = ""  # an older failure's message, not this one's
        if not msg:
            msg = "%s failed: %s" % (what or "libmnas call", status_str(status))
        raise make_error(status, msg)

    def _check(self, status, what=None):
        if status != 0:
            self._fail(what, status)

    # ---- randomness -----------------------------------------------------

    def seed(self, seed: int) -> None:
        """Re-seed the context's generator (parameter initialisation, randn, ...)."""
        C.mnas_ctx_seed(self._p(), as_u64(seed, "seed"))

    @property
    def rng(self) -> Rng:
        """The context's own generator (an Rng owned by the context)."""
        if self._rng is None or self._rng._ptr is None:
            r = new_handle(Rng)
            r._setup(C.mnas_ctx_rng(self._p()), None, self)
            self._rng = r
        return self._rng

    # ---- factories (see the classes for details) -------------------------

    def tensor(self, data: Any, shape: Optional[ShapeLike] = None,
               requires_grad: bool = False) -> Tensor:
        """A persistent tensor holding a copy of ``data`` (buffer, NumPy
        array, nested lists, a number, or a Tensor)."""
        from .tensors import tensor
        return tensor(self, data, shape, requires_grad)

    def zeros(self, shape: ShapeLike, requires_grad: bool = False) -> Tensor:
        from .tensors import Tensor
        return Tensor.zeros(self, shape, requires_grad)

    def randn(self, shape: ShapeLike, mean: float = 0.0, std: float = 1.0,
              rng: Optional[Rng] = None) -> Tensor:
        from .tensors import Tensor
        return Tensor.randn(self, shape, mean, std, rng)

    def rand(self, shape: ShapeLike, lo: float = 0.0, hi: float = 1.0,
             rng: Optional[Rng] = None) -> Tensor:
        from .tensors import Tensor
        return Tensor.rand(self, shape, lo, hi, rng)

    def tape(self) -> Tape:
        from .autodiff import Tape
        return Tape(self)

    def params(self) -> Params:
        from .nn import Params
        return Params(self)

    def rng_create(self, seed: int = 0, stream: int = 0) -> Rng:
        return Rng(self, seed, stream)


def check_ctx(ctx: Any) -> int:
    if not isinstance(ctx, Context):
        raise ArgumentTypeError("expected an mnas.Context, got %s" % type(ctx).__name__)
    return ctx._p()


class Rng(Handle):
    """xoshiro256** generator (bit-identical streams on every platform).

    ``Rng(ctx, seed=0, stream=0)``: ``stream`` picks one of 2^64 independent
    streams of the seed (e.g. one per task index). Not thread-safe."""

    __slots__ = ()
    _kind = "rng"

    def __init__(self, ctx: Context, seed: int = 0, stream: int = 0) -> None:
        p = check_ctx(ctx)
        ctx.clear_error()
        r = C.mnas_rng_create(p, as_u64(seed, "seed"), as_u64(stream, "stream"))
        if not r:
            ctx._fail("mnas_rng_create")
        self._setup(r, C.mnas_rng_free, ctx)

    def _ctx(self):
        obj = self._parent
        return obj

    def seed(self, seed: int, stream: int = 0) -> None:
        C.mnas_rng_seed(self._p(), as_u64(seed, "seed"), as_u64(stream, "stream"))

    def u64(self) -> int:
        """A uniform 64-bit unsigned integer."""
        return C.mnas_rng_u64(self._p())

    def below(self, n: int) -> int:
        """A uniform integer in [0, n) (0 when n == 0)."""
        return C.mnas_rng_below(self._p(), as_u64(n, "n"))

    def uniform(self) -> float:
        """A uniform double in [0, 1)."""
        return C.mnas_rng_uniform(self._p())

    def normal(self) -> float:
        """A standard normal double."""
        return C.mnas_rng_normal(self._p())

    @property
    def state(self) -> Tuple[int, ...]:
        """The full state as a tuple of 6 ints (for checkpoints)."""
        buf = (ctypes.c_uint64 * RNG_STATE_WORDS)()
        C.mnas_rng_get_state(self._p(), buf)
        return tuple(buf)

    @state.setter
    def state(self, words: Sequence[int]) -> None:
        words = tuple(words)
        if len(words) != RNG_STATE_WORDS:
            raise InvalidArgument("an Rng state has %d words, got %d" % (RNG_STATE_WORDS, len(words)))
        buf = (ctypes.c_uint64 * RNG_STATE_WORDS)(*[as_u64(w, "state word") for w in words])
        self._parent.clear_error()
        st = C.mnas_rng_set_state(self._p(), buf)
        if st != 0:
            self._parent._fail("mnas_rng_set_state", st)
