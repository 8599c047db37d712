"""Lifetimes of the Python handles over libmnas objects, and argument
checking shared by every module.

Every handle holds its C pointer, a ``weakref.finalize`` that frees it, and
a strong reference to its parent (a tensor to its context, an optimiser to
its parameter set, a task's tensors to the task, ...), so a parent is never
freed before its children. ``close()`` frees at once and closes the
children first; a closed handle raises ``ClosedHandleError`` instead of
reaching C.

Two things postpone the actual free after ``close()`` (the handle is closed
for Python either way):

* the memory is *exported*: a NumPy array or memoryview made from a tensor
  points into it; the memory is freed when the handle becomes garbage, i.e.
  when the last view is gone;
* the memory is *pinned* by a tape: a recording still reads a persistent
  tensor (an op input, a weight); it is freed when the tape is reset or
  closed.
"""

from __future__ import annotations

import functools
import operator
import weakref
from typing import TYPE_CHECKING, Any, Tuple

from .errors import ArgumentTypeError, ClosedHandleError, InvalidArgument, ShapeError
from ._types import ShapeLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from typing import Self

MAX_DIMS = 4
_U64 = 1 << 64
_I64 = 1 << 63


def _release(free, ptr, *keepalive):
    free(ptr)


def _forget(kids, k, ref):
    if kids.get(k) is ref:
        del kids[k]


class Handle:
    """Base of every handle class: close(), context manager, finaliser."""

    __slots__ = ("_ptr", "_fin", "_parent", "_children", "_exported", "_pins", "__weakref__")
    _kind = "handle"

    def _setup(self, ptr, free, parent, *keepalive, release=_release):
        """Take ownership of ``ptr`` (freed with ``free``; None: borrowed,
        the parent frees it) as a child of ``parent``."""
        self._ptr = ptr
        self._parent = parent
        self._children = None
        self._exported = False
        self._pins = 0
        self._fin = None
        if free is not None:
            # parent (and keepalive) are arguments of the finaliser so that
            # they outlive the C object, even at interpreter exit.
            self._fin = weakref.finalize(self, release, free, ptr, parent, *keepalive)
        if parent is not None:
            parent._adopt(self)

    # ---- the tree of handles ---------------------------------------------

    def _adopt(self, child):
        # {id: weakref}: children are tracked by identity, whatever their __eq__.
        kids = self._children
        if kids is None:
            kids = self._children = {}
        k = id(child)
        kids[k] = weakref.ref(child, functools.partial(_forget, kids, k))

    def _disown(self, child):
        if self._children is not None:
            self._children.pop(id(child), None)

    def _kids(self):
        kids = self._children
        if not kids:
            return ()
        return [c for c in (r() for r in list(kids.values())) if c is not None]

    def _holds_parent(self):
        """Does this (closed) child still need its parent's C object?"""
        if self._fin is not None:
            return self._fin.alive
        return self._busy()

    def _busy(self):
        if self._exported or self._pins:
            return True
        for c in self._kids():
            if c._holds_parent():
                return True
        return False

    def _on_close(self):
        """Hook run when the handle closes, before the C object is freed."""

    def close(self) -> None:
        """Free the C object (after closing the handles that depend on it).

        Idempotent. Any later use of this handle, or of a handle that
        depends on it, raises ClosedHandleError."""
        if self._ptr is None:
            return
        for c in self._kids():
            c.close()
        self._ptr = None
        self._on_close()
        if self._fin is not None and not self._busy():
            self._fin()
        elif self._fin is None and self._parent is not None:
            self._parent._maybe_release()

    def _maybe_release(self):
        """Free closed handles up the tree whose last user just went away."""
        obj = self
        while obj is not None and obj._ptr is None:
            if obj._busy():
                return
            if obj._fin is not None:
                if obj._fin.alive:
                    obj._fin()
            obj = obj._parent

    @property
    def closed(self) -> bool:
        """True once close() was called (or the owner was closed)."""
        return self._ptr is None

    def _p(self):
        p = self._ptr
        if p is None:
            raise ClosedHandleError("%s is closed" % self._kind)
        return p

    # ctypes uses this when a handle is passed straight to a C function.
    _as_parameter_ = property(_p)

    def __enter__(self) -> Self:
        self._p()
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else "0x%x" % self._ptr
        return "<mnas.%s %s>" % (type(self).__name__, state)


def new_handle(cls: type) -> Any:
    """An uninitialised instance (for wrapping pointers the library made)."""
    return cls.__new__(cls)


# ---- argument conversion ----------------------------------------------------

def as_int(value: Any, what: str, lo: int = -_I64, hi: int = _I64 - 1) -> int:
    """An exact int in [lo, hi] (bool refused), else ArgumentTypeError /
    InvalidArgument."""
    if isinstance(value, bool):
        raise ArgumentTypeError("%s must be an integer, not bool" % what)
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentTypeError("%s must be an integer, not %s" % (what, type(value).__name__)) from None
    if v < lo or v > hi:
        raise InvalidArgument("%s = %d is outside [%d, %d]" % (what, v, lo, hi))
    return v


def as_u64(value: Any, what: str) -> int:
    return as_int(value, what, 0, _U64 - 1)


def as_float(value: Any, what: str) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise ArgumentTypeError("%s must be a number, not %s" % (what, type(value).__name__))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ArgumentTypeError("%s must be a number, not %s" % (what, type(value).__name__)) from None


def as_shape(shape: ShapeLike, what: str = "shape") -> Tuple[int, ...]:
    """A tuple of 0..4 int extents (an int is a 1-D shape)."""
    if isinstance(shape, (str, bytes)):
        raise ArgumentTypeError("%s must be a sequence of integers" % what)
    try:
        dims = (operator.index(shape),)
    except TypeError:
        try:
            dims = tuple(shape)
        except TypeError:
            raise ArgumentTypeError("%s must be an int or a sequence of ints, not %s"
                                    % (what, type(shape).__name__)) from None
    if len(dims) > MAX_DIMS:
        raise ShapeError("%s %r has %d axes; tensors have at most %d" % (what, dims, len(dims), MAX_DIMS))
    return tuple(as_int(d, "%s extent" % what) for d in dims)
