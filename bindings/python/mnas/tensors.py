"""Tensors: dense float32 arrays of 0 to 4 axes, in and out of Python
buffers without NumPy as a dependency.

In: ``Tensor.from_buffer`` / ``ctx.tensor`` take anything with the buffer
protocol holding C-contiguous float32 (``array('f')``, a memoryview, NumPy
float32 arrays, raw ``bytes``), or nested lists and numbers; the data is
copied, or with ``from_buffer(..., copy=False)`` viewed in place (a
writable float32 buffer the tensor keeps alive; docs/python.md). Out:
``__array_interface__`` (``numpy.asarray(t)`` is a zero-copy view that
keeps the tensor alive), ``memoryview()`` (zero-copy), and ``tolist()`` /
``to_bytes()`` (copies).

Two lifetimes, as in C: persistent tensors (``ctx.tensor``, ``zeros``,
``copy()``, ...) live until closed or garbage; tape tensors (results of
ops) live until their tape is reset or closed, after which using them
raises ``StaleTensor`` / ``ClosedHandleError``.
"""

from __future__ import annotations

import array
import ctypes
import sys
import threading
from ctypes import c_int64, c_void_p
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ._handle import MAX_DIMS, Handle, as_float, as_shape
from ._lib import C
from .core import check_ctx
from .errors import (ArgumentTypeError, ClosedHandleError, InvalidArgument, ShapeError, StaleTensor,
                     StateError, make_error)
from ._types import ShapeLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from .autodiff import Tape
    from .core import Context, Rng

_FLOAT_FORMATS = {"f", "=f", "@f", "<f" if sys.byteorder == "little" else ">f"}
_BYTE_FORMATS = {"B", "b", "c"}
_TYPESTR = ("<f4" if sys.byteorder == "little" else ">f4")


def shape_array(shape: Tuple[int, ...]) -> Tuple[int, Any]:
    """(ndim, int64 array) for a checked shape tuple."""
    n = len(shape)
    return n, (c_int64 * n)(*shape) if n else None


def _nested(obj, depth=0):
    """Flatten nested lists/tuples of numbers: (flat list, shape)."""
    if isinstance(obj, (list, tuple)):
        if depth >= MAX_DIMS:
            raise ShapeError("nested sequence has more than %d levels" % MAX_DIMS)
        if not obj:
            raise ShapeError("empty sequence: tensors have extents >= 1")
        flat, shape = [], None
        for item in obj:
            f, s = _nested(item, depth + 1)
            if shape is None:
                shape = s
            elif s != shape:
                raise ShapeError("ragged nested sequence: shapes %r and %r" % (shape, s))
            flat.extend(f)
        return flat, (len(obj),) + shape
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        try:
            return [float(obj)], ()
        except (TypeError, ValueError):
            raise ArgumentTypeError("cannot make a tensor element from %s" % type(obj).__name__) from None
    return [float(obj)], ()


def float_buffer(data: Any, shape: Optional[ShapeLike] = None) -> Tuple[Any, int, Tuple[int, ...]]:
    """Turn ``data`` into (keepalive, address, shape) of C-contiguous float32
    values, checking that the element count matches ``shape`` (so C never
    reads past the buffer)."""
    if isinstance(data, Tensor):
        raise ArgumentTypeError("a Tensor is not a buffer here; use t.copy() or t.tolist()")
    try:
        mv = memoryview(data)
    except TypeError:
        mv = None
    if mv is None:
        if isinstance(data, (str,)):
            raise ArgumentTypeError("cannot make a tensor from a str")
        flat, inferred = _nested(data)
        buf = array.array("f", flat)
        mv = memoryview(buf)
        if shape is None:
            shape = inferred
    else:
        fmt = mv.format
        if fmt in _BYTE_FORMATS:
            if not mv.c_contiguous:
                raise InvalidArgument("the byte buffer is not C-contiguous")
            if mv.nbytes % 4:
                raise ShapeError("%d bytes are not a whole number of float32 values" % mv.nbytes)
            mv = mv.cast("B").cast("f")
            if shape is None:
                shape = (len(mv),)
        elif fmt in _FLOAT_FORMATS:
            if not mv.c_contiguous:
                raise InvalidArgument("the buffer is not C-contiguous (with NumPy: "
                                      "numpy.ascontiguousarray(a))")
            if shape is None:
                shape = tuple(mv.shape)
        else:
            raise ArgumentTypeError(
                "need float32 data (buffer format 'f'), got format %r; convert first, e.g. "
                "array('f', values) or a.astype(numpy.float32)" % fmt)
    shape = as_shape(shape)
    count = 1
    for d in shape:
        count *= d
    n_items = mv.nbytes // 4
    if any(d < 1 for d in shape):
        raise ShapeError("shape %r has an extent below 1" % (shape,))
    if count != n_items:
        raise ShapeError("shape %r needs %d values, the buffer holds %d" % (shape, count, n_items))
    if mv.readonly:
        keep = mv.tobytes()
        addr = ctypes.cast(ctypes.c_char_p(keep), c_void_p).value
    else:
        keep = (ctypes.c_char * mv.nbytes).from_buffer(mv.cast("B"))
        addr = ctypes.addressof(keep)
    return keep, addr, shape


def _writable_float_buffer(data, shape=None):
    """(export, address, shape) of a writable, C-contiguous float32 buffer
    for ``copy=False``; the export (a ctypes array over the buffer) pins the
    buffer: the object stays alive and a bytearray cannot be resized while
    the export exists. A refused buffer is released at once."""
    if isinstance(data, Tensor):
        raise ArgumentTypeError("a Tensor is not a buffer here; use the tensor itself or t.copy()")
    try:
        mv = memoryview(data)
    except TypeError:
        raise ArgumentTypeError("copy=False needs an object with the buffer protocol (array('f'), "
                                "bytearray, a NumPy float32 array), not %s" % type(data).__name__) from None
    try:
        shape = _check_wrappable(mv, type(data).__name__, shape)
        raw = mv.cast("B")
    except BaseException:
        mv.release()
        raise
    keep = (ctypes.c_char * mv.nbytes).from_buffer(raw)
    return keep, ctypes.addressof(keep), shape


def _check_wrappable(mv, kind, shape):
    fmt = mv.format
    if fmt in _BYTE_FORMATS:
        raw = True
    elif fmt in _FLOAT_FORMATS:
        raw = False
    else:
        raise ArgumentTypeError(
            "copy=False needs float32 data (buffer format 'f'), got format %r; converting would copy "
            "(use copy=True, or a.astype(numpy.float32) and wrap that)" % fmt)
    if mv.readonly:
        raise InvalidArgument("copy=False needs a writable buffer; this %s is read-only "
                              "(use copy=True to copy it)" % kind)
    if not mv.c_contiguous:
        raise InvalidArgument("copy=False needs a C-contiguous buffer; this one is strided "
                              "(numpy.ascontiguousarray(a) makes a contiguous copy to wrap)")
    if raw and mv.nbytes % 4:
        raise ShapeError("%d bytes are not a whole number of float32 values" % mv.nbytes)
    n_items = mv.nbytes // 4
    if shape is None:
        shape = (n_items,) if raw else tuple(mv.shape)
    shape = as_shape(shape)
    if any(d < 1 for d in shape):
        raise ShapeError("shape %r has an extent below 1" % (shape,))
    count = 1
    for d in shape:
        count *= d
    if count != n_items:
        raise ShapeError("shape %r needs %d values, the buffer holds %d" % (shape, count, n_items))
    return shape


# ---- the active tape (for operators such as a + b) ---------------------------

_active = threading.local()


def active_tape() -> Optional[Tape]:
    """The innermost tape made active by ``with tape:`` / ``tape.active()``
    on this thread, or None."""
    stack = getattr(_active, "stack", None)
    return stack[-1] if stack else None


def _push_tape(tape):
    stack = getattr(_active, "stack", None)
    if stack is None:
        stack = _active.stack = []
    stack.append(tape)


def _pop_tape(tape):
    stack = getattr(_active, "stack", None)
    if stack and stack[-1] is tape:
        stack.pop()
    elif stack and tape in stack:
        stack.remove(tape)


def _tape_for(*xs):
    for x in xs:
        if isinstance(x, Tensor) and x._tape is not None:
            return x._tape
    t = active_tape()
    if t is None:
        raise StateError("no tape for this operation: call the op on a tape (tape.add(a, b)) "
                         "or run it inside `with tape:` / `with tape.active():`")
    return t


class Tensor(Handle):
    """A libmnas tensor (float32, row-major, 0 to 4 axes)."""

    __slots__ = ("_ctx", "_tape", "_gen", "_base")
    _kind = "tensor"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("make tensors with ctx.tensor(data), ctx.zeros(shape), "
                        "Tensor.from_buffer(ctx, buf), or ops on a tape")

    # ---- wrapping pointers ------------------------------------------------

    @classmethod
    def _owned(cls, ctx, ptr, *keepalive):
        t = cls.__new__(cls)
        t._ctx = ctx
        t._tape = None
        t._gen = 0
        t._base = None
        t._setup(ptr, C.mnas_tensor_free, ctx, *keepalive)
        return t

    @classmethod
    def _borrowed(cls, owner, ctx, ptr):
        """A tensor owned by another object (a parameter set, a task)."""
        t = cls.__new__(cls)
        t._ctx = ctx
        t._tape = None
        t._gen = 0
        t._base = None
        t._setup(ptr, None, owner)
        return t

    # ---- constructors -----------------------------------------------------

    @classmethod
    def zeros(cls, ctx: Context, shape: ShapeLike, requires_grad: bool = False) -> Tensor:
        p = check_ctx(ctx)
        nd, sh = shape_array(as_shape(shape))
        ctx.clear_error()
        r = C.mnas_tensor_zeros(p, nd, sh)
        if not r:
            ctx._fail("mnas_tensor_zeros")
        t = cls._owned(ctx, r)
        if requires_grad:
            t.requires_grad = True
        return t

    @classmethod
    def from_buffer(cls, ctx: Context, data: Any, shape: Optional[ShapeLike] = None,
                    requires_grad: bool = False, copy: bool = True) -> Tensor:
        """A persistent tensor from float32 data in any buffer (array('f'),
        memoryview, bytes, bytearray, NumPy float32 arrays), or from nested
        lists/numbers. ``shape`` defaults to the buffer's shape (1-D for
        byte buffers).

        With ``copy=True`` (the default) the values are copied. With
        ``copy=False`` the tensor views the buffer itself (zero-copy,
        ``mnas_tensor_wrap``): writes on either side are seen by the other,
        including ``assign`` and the results of in-place updates. Only a
        writable, C-contiguous buffer of float32 (format 'f', or raw bytes
        such as a bytearray) holding exactly the values of ``shape`` is
        accepted; anything else raises ``ArgumentTypeError`` (a TypeError:
        wrong element type, not a buffer) or ``InvalidArgument`` /
        ``ShapeError`` (ValueErrors: read-only, not contiguous, misaligned,
        wrong size). The tensor holds an export of the buffer, so the buffer
        object stays alive at least as long as the tensor (``del`` of the
        caller's name is safe) and a bytearray cannot be resized meanwhile;
        the caller must not reallocate the memory by other means (e.g.
        ``numpy.ndarray.resize(refcheck=False)``) while the tensor lives."""
        p = check_ctx(ctx)
        if copy:
            keep, addr, shape = float_buffer(data, shape)
        else:
            keep, addr, shape = _writable_float_buffer(data, shape)
        nd, sh = shape_array(shape)
        ctx.clear_error()
        fn = "mnas_tensor_from_data" if copy else "mnas_tensor_wrap"
        r = getattr(C, fn)(p, nd, sh, addr)
        if not r:
            del keep  # a refused buffer is not kept exported
            ctx._fail(fn)
        # A wrapped tensor's finaliser holds the buffer export: it is
        # released after mnas_tensor_free, never before.
        t = cls._owned(ctx, r) if copy else cls._owned(ctx, r, keep)
        del keep
        if requires_grad:
            t.requires_grad = True
        return t

    @classmethod
    def randn(cls, ctx: Context, shape: ShapeLike, mean: float = 0.0, std: float = 1.0,
              rng: Optional[Rng] = None) -> Tensor:
        """Normal(mean, std^2) values from the context's generator (or rng)."""
        return cls._random(ctx, shape, as_float(mean, "mean"), as_float(std, "std"), rng, True)

    @classmethod
    def rand(cls, ctx: Context, shape: ShapeLike, lo: float = 0.0, hi: float = 1.0,
             rng: Optional[Rng] = None) -> Tensor:
        """Uniform [lo, hi) values from the context's generator (or rng)."""
        return cls._random(ctx, shape, as_float(lo, "lo"), as_float(hi, "hi"), rng, False)

    @classmethod
    def _random(cls, ctx, shape, a, b, rng, normal):
        from .core import Rng
        p = check_ctx(ctx)
        nd, sh = shape_array(as_shape(shape))
        ctx.clear_error()
        if rng is None:
            r = (C.mnas_tensor_randn if normal else C.mnas_tensor_rand)(p, nd, sh, a, b)
        else:
            if not isinstance(rng, Rng):
                raise ArgumentTypeError("rng must be an mnas.Rng")
            r = (C.mnas_tensor_randn_rng if normal else C.mnas_tensor_rand_rng)(p, rng._p(), nd, sh, a, b)
        if not r:
            ctx._fail("mnas_tensor_randn" if normal else "mnas_tensor_rand")
        return cls._owned(ctx, r)

    # ---- validity ---------------------------------------------------------

    def _live(self):
        """The pointer, if this handle may be used: not closed, not stale.
        (Op arguments go through Tape._arg instead, which lets libmnas
        report the staleness it can detect itself.)"""
        p = self._ptr
        if p is None:
            raise ClosedHandleError("tensor is closed (its owner was closed or freed)")
        tp = self._tape
        if tp is not None and self._gen != tp._gen:
            if tp._ptr is None:
                raise ClosedHandleError("tensor belongs to a closed tape")
            raise StaleTensor("stale tensor: its tape was reset after it was made")
        return p

    def _fail(self, what=None, status=None):
        self._ctx._fail(what, status)

    # ---- queries ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once closed, or when its owner or tape was closed."""
        return self._ptr is None or (self._tape is not None and self._tape._ptr is None)

    @property
    def ctx(self) -> Context:
        return self._ctx

    @property
    def tape(self) -> Optional[Tape]:
        """The owning tape, or None for a persistent tensor."""
        return self._tape

    @property
    def shape(self) -> Tuple[int, ...]:
        p = self._live()
        buf = (c_int64 * MAX_DIMS)()
        st = C.mnas_tensor_shape(p, buf)
        if st != 0:
            self._fail("mnas_tensor_shape", st)
        return tuple(buf[: C.mnas_tensor_ndim(p)])

    @property
    def ndim(self) -> int:
        n = C.mnas_tensor_ndim(self._live())
        if n < 0:
            self._fail("mnas_tensor_ndim", -4 if self._tape is not None else -1)
        return n

    @property
    def size(self) -> int:
        """Number of elements."""
        p = self._live()
        if not C.mnas_tensor_is_valid(p):
            self._fail("mnas_tensor_size", -4)
        return C.mnas_tensor_size(p)

    @property
    def is_tape_owned(self) -> bool:
        return self._tape is not None

    @property
    def requires_grad(self) -> bool:
        return bool(C.mnas_tensor_requires_grad(self._live()))

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self._ctx.clear_error()
        st = C.mnas_tensor_set_requires_grad(self._live(), 1 if flag else 0)
        if st != 0:
            self._fail("mnas_tensor_set_requires_grad", st)

    def _addr(self):
        p = self._live()
        a = C.mnas_tensor_data(p)
        if not a:
            self._fail("mnas_tensor_data", -4 if self._tape is not None else -1)
        return a

    def item(self) -> float:
        """The value of a one-element tensor, as a float."""
        if self.size != 1:
            raise ShapeError("item() needs a tensor with one element, this one has shape %r" % (self.shape,))
        return C.mnas_tensor_item(self._live())

    def __float__(self) -> float:
        return self.item()

    def to_bytes(self) -> bytes:
        """A copy of the elements as bytes (native float32, row-major)."""
        n = self.size
        return ctypes.string_at(self._addr(), 4 * n)

    def to_array(self) -> array.array:
        """A copy of the elements as a flat array('f')."""
        a = array.array("f")
        a.frombytes(self.to_bytes())
        return a

    def tolist(self) -> Any:
        """The elements as nested lists of floats (a float for a scalar)."""
        shape = self.shape
        flat = self.to_array().tolist()
        if not shape:
            return flat[0]
        for d in reversed(shape[1:]):
            flat = [flat[i:i + d] for i in range(0, len(flat), d)]
        return flat

    def _mark_exported(self):
        self._exported = True
        if self._tape is not None:
            self._tape._exported = True
        if self._base is not None:
            self._base._exported = True

    def memoryview(self) -> memoryview:
        """A writable, zero-copy memoryview of the elements (format 'f', the
        tensor's shape). It keeps the tensor alive; closing the tensor
        postpones freeing its memory until the view is gone. A view of a
        tape tensor shows recycled memory after the tape is reset."""
        shape = self.shape
        n = C.mnas_tensor_size(self._ptr)
        arr = (ctypes.c_float * n).from_address(self._addr())
        arr._mnas_owner = self
        self._mark_exported()
        return memoryview(arr).cast("B").cast("f", list(shape))

    @property
    def __array_interface__(self) -> Dict[str, Any]:
        shape = self.shape
        addr = self._addr()
        self._mark_exported()
        return {"version": 3, "shape": shape, "typestr": _TYPESTR, "data": (addr, False),
                "strides": None}

    def copy(self) -> Tensor:
        """A persistent copy (does not require a gradient)."""
        p = self._live()
        self._ctx.clear_error()
        r = C.mnas_tensor_copy(p)
        if not r:
            self._fail("mnas_tensor_copy")
        return Tensor._owned(self._ctx, r)

    def assign(self, src: Any) -> Tensor:
        """Copy values in from a tensor (same element count) or a buffer."""
        p = self._live()
        if isinstance(src, Tensor):
            self._ctx.clear_error()
            st = C.mnas_tensor_assign(p, src._live())
            if st != 0:
                self._fail("mnas_tensor_assign", st)
            return self
        keep, addr, shape = float_buffer(src, None)
        n = 1
        for d in shape:
            n *= d
        if n != self.size:
            raise ShapeError("assign: %d values into a tensor of %d" % (n, self.size))
        if self._tape is not None:
            raise StateError("assign: raw values go into persistent tensors only; make a tape "
                             "tensor with tape.tensor(data) instead")
        ctypes.memmove(self._addr(), addr, 4 * n)
        del keep
        return self

    def reshape_(self, shape: Optional[ShapeLike]) -> Tensor:
        """Change a persistent tensor's shape in place (same element count)."""
        p = self._live()
        nd, sh = shape_array(as_shape(shape))
        self._ctx.clear_error()
        st = C.mnas_tensor_reshape(p, nd, sh)
        if st != 0:
            self._fail("mnas_tensor_reshape", st)
        return self

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<mnas.Tensor closed>"
        if self._tape is not None and self._gen != self._tape._gen:
            return "<mnas.Tensor stale>"
        try:
            shape = self.shape
            kind = "tape" if self._tape is not None else "persistent"
            vals = ""
            if self.size <= 8:
                vals = " " + repr(self.tolist())
            return "<mnas.Tensor %s shape=%r%s%s>" % (
                kind, shape, " requires_grad" if self.requires_grad else "", vals)
        except Exception:
            return "<mnas.Tensor invalid>"

    # ---- operators (on the tensor's tape, or the active tape) -------------

    def __add__(self, other: Any) -> Tensor:
        tp = _tape_for(self, other)
        if isinstance(other, Tensor):
            return tp.add(self, other)
        return tp.add_scalar(self, other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Tensor:
        tp = _tape_for(self, other)
        if isinstance(other, Tensor):
            return tp.sub(self, other)
        return tp.add_scalar(self, -as_float(other, "scalar"))

    def __rsub__(self, other: Any) -> Tensor:
        tp = _tape_for(self, other)
        return tp.add_scalar(tp.neg(self), other)

    def __mul__(self, other: Any) -> Tensor:
        tp = _tape_for(self, other)
        if isinstance(other, Tensor):
            return tp.mul(self, other)
        return tp.scale(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Tensor:
        tp = _tape_for(self, other)
        if isinstance(other, Tensor):
            return tp.div(self, other)
        return tp.scale(self, 1.0 / as_float(other, "scalar"))

    def __rtruediv__(self, other: Any) -> Tensor:
        tp = _tape_for(self, other)
        return tp.scale(tp.pow(self, -1.0), other)

    def __neg__(self) -> Tensor:
        return _tape_for(self).neg(self)

    def __pow__(self, p: float) -> Tensor:
        return _tape_for(self).pow(self, p)

    def __matmul__(self, other: Any) -> Tensor:
        return _tape_for(self, other).matmul(self, other)

    @property
    def T(self) -> Tensor:
        """Transpose of the last two axes (an op on the tape)."""
        return _tape_for(self).transpose(self)


def _stale(t):
    tp = t._tape
    if tp._ptr is None:
        raise ClosedHandleError("tensor belongs to a closed tape")
    if tp._gen - t._gen > 1:
        raise StaleTensor("stale tensor: it belongs to a tape recording that was reset "
                          "%d times since" % (tp._gen - t._gen))
    # one reset back: the library detects it and says so itself


def tensor(ctx: Context, data: Any, shape: Optional[ShapeLike] = None,
           requires_grad: bool = False) -> Tensor:
    """A persistent tensor from ``data``: a buffer or NumPy array of float32,
    nested lists or a number (converted), or a Tensor (copied)."""
    if isinstance(data, Tensor):
        t = data.copy()
        if shape is not None:
            t.reshape_(shape)
        if requires_grad:
            t.requires_grad = True
        return t
    return Tensor.from_buffer(ctx, data, shape, requires_grad)


def zeros(ctx: Context, shape: ShapeLike, requires_grad: bool = False) -> Tensor:
    return Tensor.zeros(ctx, shape, requires_grad)


def tensor_ptr(x: Any, what: str = "argument") -> int:
    """The live pointer of a tensor argument, with a clear type error."""
    if not isinstance(x, Tensor):
        raise ArgumentTypeError("%s must be an mnas.Tensor, not %s" % (what, type(x).__name__))
    return x._live()


__all__ = ["Tensor", "tensor", "zeros", "active_tape", "make_error"]
