"""The tape: differentiable ops, reverse-mode gradients of any order
(``tape.grad(y, inputs, create_graph=True)``), and the finite-difference
gradient checker.

Ops are methods of the tape (``tape.add(a, b)``, ``tape.mse(p, y)``, ...).
Their results are tape tensors: valid until ``tape.reset()`` or
``tape.close()``; using one afterwards raises ``StaleTensor`` (or
``ClosedHandleError``). Operators (``a + b``, ``a @ w``, ``x ** 2``) run on
the tape of a tape-tensor operand, else on the tape made active with
``with tape:`` (which also closes it at the end) or ``with tape.active():``.
"""

from __future__ import annotations

import contextlib
import ctypes
from ctypes import c_double, c_int32, c_int64, c_void_p
from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

from . import _lib
from ._handle import Handle, as_float, as_int, as_shape
from ._lib import C, decode
from ._structs import GradcheckOptions
from .core import Context, check_ctx
from .errors import ArgumentTypeError, ClosedHandleError, InvalidArgument, NumericError, make_error
from .tensors import Tensor, _pop_tape, _push_tape, _stale, float_buffer, shape_array
from ._types import ShapeLike

_INT32 = (-(1 << 31), (1 << 31) - 1)


def _unpin(held):
    for t in list(held.values()):
        t._pins -= 1
        if t._pins == 0 and t._ptr is None:
            t._maybe_release()
    held.clear()


def _release_tape(free, ptr, parent, held):
    free(ptr)
    _unpin(held)


class Tape(Handle):
    """Records ops for reverse-mode differentiation (``Tape(ctx)``)."""

    __slots__ = ("_ctx", "_gen", "_held", "_keep", "_pending")
    _kind = "tape"

    def __init__(self, ctx: Context) -> None:
        p = check_ctx(ctx)
        out = c_void_p()
        ctx.clear_error()
        st = C.mnas_tape_create(p, ctypes.byref(out))
        if st != 0:
            ctx._fail("mnas_tape_create", st)
        self._init(ctx)
        self._setup(out.value, C.mnas_tape_free, ctx, self._held, release=_release_tape)

    def _init(self, ctx):
        self._ctx = ctx
        self._gen = 1
        self._held = {}    # persistent tensors the recording reads (pinned)
        self._keep = []    # ctypes callbacks the recording may still call
        self._pending = None

    @classmethod
    def _borrowed(cls, ctx, ptr):
        """A tape the library lends to a callback (closed when it returns)."""
        t = cls.__new__(cls)
        t._init(ctx)
        t._setup(ptr, None, ctx)
        return t

    def _on_close(self):
        self._gen += 2  # every tensor of the tape now fails the generation check
        _unpin(self._held)
        self._keep = []
        _pop_tape(self)

    # ---- the recording ----------------------------------------------------

    def reset(self) -> None:
        """Drop the recording in O(1), keeping the memory. Every tensor of
        the tape becomes stale."""
        C.mnas_tape_reset(self._p())
        self._gen += 1
        _unpin(self._held)
        self._keep = []
        self._pending = None

    @property
    def ctx(self) -> Context:
        return self._ctx

    @property
    def generation(self) -> int:
        """Counts resets (tape tensors remember the one they were made in)."""
        return self._gen

    @property
    def num_nodes(self) -> int:
        return C.mnas_tape_num_nodes(self._p())

    @property
    def bytes_reserved(self) -> int:
        return C.mnas_tape_bytes_reserved(self._p())

    @property
    def is_recording(self) -> bool:
        return bool(C.mnas_tape_is_recording(self._p()))

    @property
    def status(self) -> int:
        """Status of the first failure since the last reset or clear."""
        return C.mnas_tape_status(self._p())

    @property
    def last_error(self) -> str:
        return decode(C.mnas_tape_last_error(self._p()))

    def clear_error(self) -> None:
        C.mnas_tape_clear_error(self._p())

    @contextlib.contextmanager
    def no_grad(self) -> Iterator[None]:
        """Inside the block ops compute but record nothing."""
        p = self._p()
        C.mnas_tape_no_grad_begin(p)
        try:
            yield self
        finally:
            if self._ptr is not None:
                C.mnas_tape_no_grad_end(self._ptr)

    @contextlib.contextmanager
    def active(self) -> Iterator[Tape]:
        """Make this the tape of operators (a + b) inside the block, without
        closing it at the end (``with tape:`` closes it)."""
        self._p()
        _push_tape(self)
        try:
            yield self
        finally:
            _pop_tape(self)

    def __enter__(self) -> Tape:
        self._p()
        _push_tape(self)
        return self

    def __exit__(self, *exc: Any) -> bool:
        _pop_tape(self)
        self.close()
        return False

    # ---- plumbing ---------------------------------------------------------

    def _arg(self, t):
        """Pointer of a tensor argument: type, closed and stale checks; a
        persistent tensor is pinned until the next reset (the recording
        may read it during backward)."""
        if not isinstance(t, Tensor):
            raise ArgumentTypeError("expected an mnas.Tensor, got %s" % type(t).__name__)
        p = t._ptr
        if p is None:
            raise ClosedHandleError("tensor is closed (its owner was closed or freed)")
        tp = t._tape
        if tp is None:
            held = self._held
            k = id(t)
            if k not in held:
                held[k] = t
                t._pins += 1
        elif t._gen != tp._gen:
            _stale(t)
        return p

    def _opt(self, t):
        return None if t is None else self._arg(t)

    def _wrap(self, ptr, base=None):
        t = Tensor.__new__(Tensor)
        t._ptr = ptr
        t._fin = None
        t._parent = self
        t._children = None
        t._exported = False
        t._pins = 0
        t._ctx = self._ctx
        t._tape = self
        t._gen = self._gen
        t._base = base
        return t

    def _fail(self, status=None):
        p = self._ptr
        msg = decode(C.mnas_tape_last_error(p))
        st = C.mnas_tape_status(p)
        C.mnas_tape_clear_error(p)
        if not status:
            status = st
        if not msg:
            msg = decode(C.mnas_ctx_last_error(self._ctx._ptr))
            if not status:
                status = _lib.status_of_message(msg) if msg else -10
        pending, self._pending = self._pending, None
        err = make_error(status or -10, msg or "tape operation failed")
        if pending is not None:
            raise pending from err
        raise err

    def _done(self, r):
        if not r:
            self._fail()
        return self._wrap(r)

    # ---- tensors on the tape ------------------------------------------------

    def tensor(self, data: Any = None, shape: Optional[ShapeLike] = None,
               requires_grad: bool = False) -> Tensor:
        """A tape tensor: zeros of ``shape`` when data is None, else a copy
        of ``data`` (any float32 buffer, nested lists, ...)."""
        p = self._p()
        if data is None:
            if shape is None:
                raise InvalidArgument("tape.tensor needs data or a shape")
            keep, addr, shape = None, None, as_shape(shape)
        else:
            keep, addr, shape = float_buffer(data, shape)
        nd, sh = shape_array(shape)
        r = C.mnas_tape_tensor(p, nd, sh, addr)
        del keep
        t = self._done(r)
        if requires_grad:
            t.requires_grad = True
        return t

    def detach(self, x: Tensor) -> Tensor:
        """The same values cut from the recording (shares x's memory)."""
        r = C.mnas_detach(self._p(), self._arg(x))
        return self._done_view(r, x)

    def _done_view(self, r, x):
        if not r:
            self._fail()
        base = x if x._tape is None else x._base
        return self._wrap(r, base)

    def grad(self, y: Tensor, inputs: Union[Tensor, Sequence[Tensor]],
             create_graph: bool = False) -> Union[Tensor, List[Tensor]]:
        """Gradients of the one-element tensor ``y`` with respect to
        ``inputs`` (a Tensor, or a sequence of them: returns a list). With
        ``create_graph`` the gradients are recorded and can be
        differentiated again."""
        single = isinstance(inputs, Tensor)
        ins = [inputs] if single else list(inputs)
        p = self._p()
        yp = self._arg(y)
        n = len(ins)
        arr_in = (c_void_p * max(n, 1))(*[self._arg(t) for t in ins])
        arr_out = (c_void_p * max(n, 1))()
        st = C.mnas_grad(p, yp, n, arr_in, arr_out, 1 if create_graph else 0)
        if st != 0 or self._pending is not None:
            self._fail(st)
        out = [self._wrap(arr_out[i]) for i in range(n)]
        return out[0] if single else out

    # ---- elementwise ----------------------------------------------------------

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        """a + b (broadcasting like NumPy)."""
        r = C.mnas_add(self._p(), self._arg(a), self._arg(b))
        if not r:
            self._fail()
        return self._wrap(r)

    def sub(self, a: Tensor, b: Tensor) -> Tensor:
        """a - b (broadcasting)."""
        return self._done(C.mnas_sub(self._p(), self._arg(a), self._arg(b)))

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        """a * b elementwise (broadcasting)."""
        return self._done(C.mnas_mul(self._p(), self._arg(a), self._arg(b)))

    def div(self, a: Tensor, b: Tensor) -> Tensor:
        """a / b elementwise (broadcasting)."""
        return self._done(C.mnas_div(self._p(), self._arg(a), self._arg(b)))

    def mask_mul(self, x: Tensor, mask: Tensor) -> Tensor:
        """x * mask, the mask treated as a constant (dropout)."""
        return self._done(C.mnas_mask_mul(self._p(), self._arg(x), self._arg(mask)))

    def axpy(self, alpha: float, x: Tensor, y: Tensor) -> Tensor:
        """alpha * x + y (same shapes): the fused SGD step."""
        return self._done(C.mnas_axpy(self._p(), as_float(alpha, "alpha"), self._arg(x), self._arg(y)))

    def neg(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_neg(self._p(), self._arg(x)))

    def scale(self, x: Tensor, s: float) -> Tensor:
        """s * x for a number s."""
        return self._done(C.mnas_scale(self._p(), self._arg(x), as_float(s, "s")))

    def add_scalar(self, x: Tensor, c: float) -> Tensor:
        """x + c for a number c."""
        return self._done(C.mnas_add_scalar(self._p(), self._arg(x), as_float(c, "c")))

    def relu(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_relu(self._p(), self._arg(x)))

    def sigmoid(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_sigmoid(self._p(), self._arg(x)))

    def tanh(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_tanh(self._p(), self._arg(x)))

    def exp(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_exp(self._p(), self._arg(x)))

    def log(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_log(self._p(), self._arg(x)))

    def sqrt(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_sqrt(self._p(), self._arg(x)))

    def pow(self, x: Tensor, p: float) -> Tensor:
        """x ** p for a number p."""
        return self._done(C.mnas_pow(self._p(), self._arg(x), as_float(p, "p")))

    def square(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_square(self._p(), self._arg(x)))

    def mix(self, alpha: Tensor, ys: Sequence[Tensor], idx: Sequence[int]) -> Tensor:
        """sum_k alpha.flat[idx[k]] * ys[k]: a weighted sum of same-shaped
        tensors with weights read from alpha at flat indices (one supernet
        node's mixed edges in one op)."""
        ys = list(ys)
        idx = [as_int(i, "index") for i in idx]
        if len(idx) != len(ys):  # C reads n entries of both
            raise InvalidArgument("mix: %d tensors and %d indices" % (len(ys), len(idx)))
        ptrs = [self._arg(t) for t in ys]
        arr = (c_void_p * max(len(ptrs), 1))(*ptrs)
        iarr = (c_int64 * max(len(idx), 1))(*idx)
        return self._done(C.mnas_mix(self._p(), self._arg(alpha), len(ptrs), arr, iarr))

    # ---- linear algebra --------------------------------------------------------

    def matmul(self, a: Tensor, b: Tensor, transpose_a: bool = False,
               transpose_b: bool = False) -> Tensor:
        """op(a) @ op(b) for 2-D a, b."""
        return self._done(C.mnas_matmul(self._p(), self._arg(a), self._arg(b),
                                        1 if transpose_a else 0, 1 if transpose_b else 0))

    def linear(self, x: Tensor, w: Tensor, b: Optional[Tensor] = None) -> Tensor:
        """x @ w.T + b: x [N, in], w [out, in], b [out] or None."""
        return self._done(C.mnas_linear(self._p(), self._arg(x), self._arg(w), self._opt(b)))

    def transpose(self, x: Tensor) -> Tensor:
        """Swap the last two axes."""
        return self._done(C.mnas_transpose(self._p(), self._arg(x)))

    # ---- reductions and shape ----------------------------------------------------

    def sum(self, x: Tensor, axis: Optional[int] = None, keepdim: bool = False) -> Tensor:
        """Sum of all elements (a scalar), or along ``axis``."""
        if axis is None:
            return self._done(C.mnas_sum(self._p(), self._arg(x)))
        return self._done(C.mnas_sum_axis(self._p(), self._arg(x), as_int(axis, "axis", *_INT32),
                                          1 if keepdim else 0))

    def mean(self, x: Tensor, axis: Optional[int] = None, keepdim: bool = False) -> Tensor:
        """Mean of all elements (a scalar), or along ``axis``."""
        if axis is None:
            return self._done(C.mnas_mean(self._p(), self._arg(x)))
        return self._done(C.mnas_mean_axis(self._p(), self._arg(x), as_int(axis, "axis", *_INT32),
                                           1 if keepdim else 0))

    def sum_to(self, x: Tensor, shape: ShapeLike) -> Tensor:
        """Sum x down to a shape it broadcasts from."""
        nd, sh = shape_array(as_shape(shape))
        return self._done(C.mnas_sum_to(self._p(), self._arg(x), nd, sh))

    def broadcast_to(self, x: Tensor, shape: ShapeLike) -> Tensor:
        nd, sh = shape_array(as_shape(shape))
        return self._done(C.mnas_broadcast_to(self._p(), self._arg(x), nd, sh))

    def reshape(self, x: Tensor, shape: ShapeLike) -> Tensor:
        """The same elements in another shape (shares x's memory)."""
        nd, sh = shape_array(as_shape(shape))
        return self._done_view(C.mnas_reshape(self._p(), self._arg(x), nd, sh), x)

    def concat(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor:
        """Join tensors along ``axis``."""
        xs = list(xs)
        ptrs = [self._arg(t) for t in xs]
        arr = (c_void_p * max(len(ptrs), 1))(*ptrs)
        return self._done(C.mnas_concat(self._p(), len(ptrs), arr, as_int(axis, "axis", *_INT32)))

    def slice(self, x: Tensor, axis: int, start: int, length: int) -> Tensor:
        """x[..., start:start+length, ...] along ``axis``."""
        return self._done(C.mnas_slice(self._p(), self._arg(x), as_int(axis, "axis", *_INT32),
                                       as_int(start, "start"), as_int(length, "length")))

    def pad_axis(self, x: Tensor, axis: int, start: int, full: int) -> Tensor:
        """x placed at [start, start+len) of zeros whose extent along axis is full."""
        return self._done(C.mnas_pad_axis(self._p(), self._arg(x), as_int(axis, "axis", *_INT32),
                                          as_int(start, "start"), as_int(full, "full")))

    def gather_rows(self, x: Tensor, idx: Sequence[int]) -> Tensor:
        """Rows idx (a sequence of ints, repeats allowed) of x."""
        idx = [as_int(i, "index") for i in idx]
        arr = (c_int64 * max(len(idx), 1))(*idx)
        return self._done(C.mnas_gather_rows(self._p(), self._arg(x), len(idx), arr))

    def scatter_add_rows(self, x: Tensor, idx: Sequence[int], rows: int) -> Tensor:
        """Zeros of ``rows`` rows with the rows of x added at idx."""
        idx = [as_int(i, "index") for i in idx]
        arr = (c_int64 * max(len(idx), 1))(*idx)
        return self._done(C.mnas_scatter_add_rows(self._p(), self._arg(x), len(idx), arr,
                                                  as_int(rows, "rows")))

    # ---- neural-network ops ---------------------------------------------------------

    def softmax(self, x: Tensor) -> Tensor:
        """Softmax along the last axis."""
        return self._done(C.mnas_softmax(self._p(), self._arg(x)))

    def log_softmax(self, x: Tensor) -> Tensor:
        return self._done(C.mnas_log_softmax(self._p(), self._arg(x)))

    def cross_entropy(self, logits: Tensor, labels: Sequence[int]) -> Tensor:
        """Mean over rows of -log softmax(logits)[label] (labels: ints)."""
        labels = [as_int(v, "label", *_INT32) for v in labels]
        arr = (c_int32 * max(len(labels), 1))(*labels)
        return self._done(C.mnas_cross_entropy(self._p(), self._arg(logits), len(labels), arr))

    def mse(self, pred: Tensor, target: Tensor) -> Tensor:
        """mean((pred - target) ** 2) over all elements."""
        return self._done(C.mnas_mse(self._p(), self._arg(pred), self._arg(target)))

    def batch_norm(self, x: Tensor, gamma: Optional[Tensor] = None, beta: Optional[Tensor] = None,
                   eps: float = 1e-5) -> Tensor:
        """Batch normalisation with batch statistics ([N, F] or [N, C, H, W])."""
        return self._done(C.mnas_batch_norm(self._p(), self._arg(x), self._opt(gamma),
                                            self._opt(beta), as_float(eps, "eps")))

    # ---- convolution and pooling ([N, C, H, W] tensors) ----------------------

    def unfold(self, x: Tensor, kh: int, kw: int, stride: int = 1, padding: int = 0,
               dilation: int = 1) -> Tensor:
        """im2col: x [N, C, H, W] -> columns [N, C*kh*kw, OH*OW] (zero padding)."""
        return self._done(C.mnas_unfold(self._p(), self._arg(x), as_int(kh, "kh", *_INT32),
                                        as_int(kw, "kw", *_INT32), as_int(stride, "stride", *_INT32),
                                        as_int(padding, "padding", *_INT32), as_int(dilation, "dilation", *_INT32)))

    def fold(self, cols: Tensor, channels: int, height: int, width: int, kh: int, kw: int,
             stride: int = 1, padding: int = 0, dilation: int = 1) -> Tensor:
        """The adjoint of unfold: columns summed back into [N, channels, height, width]."""
        return self._done(C.mnas_fold(self._p(), self._arg(cols), as_int(channels, "channels"),
                                      as_int(height, "height"), as_int(width, "width"),
                                      as_int(kh, "kh", *_INT32), as_int(kw, "kw", *_INT32),
                                      as_int(stride, "stride", *_INT32), as_int(padding, "padding", *_INT32),
                                      as_int(dilation, "dilation", *_INT32)))

    def conv2d(self, x: Tensor, w: Tensor, b: Optional[Tensor] = None, stride: int = 1,
               padding: int = 0, dilation: int = 1, groups: int = 1) -> Tensor:
        """Cross-correlation of x [N, C, H, W] with w [O, C/groups, kh, kw], plus b [O]."""
        return self._done(C.mnas_conv2d(self._p(), self._arg(x), self._arg(w), self._opt(b),
                                        as_int(stride, "stride", *_INT32), as_int(padding, "padding", *_INT32),
                                        as_int(dilation, "dilation", *_INT32), as_int(groups, "groups", *_INT32)))

    def max_pool2d(self, x: Tensor, kernel: int, stride: int = 1, padding: int = 0) -> Tensor:
        """Max over kernel x kernel windows (padding never wins)."""
        return self._done(C.mnas_max_pool2d(self._p(), self._arg(x), as_int(kernel, "kernel", *_INT32),
                                            as_int(stride, "stride", *_INT32), as_int(padding, "padding", *_INT32)))

    def avg_pool2d(self, x: Tensor, kernel: int, stride: int = 1, padding: int = 0) -> Tensor:
        """Mean over kernel x kernel windows, padding excluded from the count."""
        return self._done(C.mnas_avg_pool2d(self._p(), self._arg(x), as_int(kernel, "kernel", *_INT32),
                                            as_int(stride, "stride", *_INT32), as_int(padding, "padding", *_INT32)))

    def global_avg_pool(self, x: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, C]: the mean over H and W."""
        return self._done(C.mnas_global_avg_pool(self._p(), self._arg(x)))


def gradcheck(ctx: Context, f: Callable[[Tape, List[Tensor]], Tensor], inputs: Sequence[Tensor],
              order: int = 1, eps: float = 0.0, atol: float = 0.0, rtol: float = 0.0, seed: int = 1,
              record_last: bool = False) -> float:
    """Check the analytic gradient of ``f(tape, inputs) -> scalar tensor``
    against central finite differences (order 2: the gradient of a
    Hessian-vector product v·grad; order 3: of w·grad(v·grad)). With
    ``record_last`` the checked gradient pass is itself recorded, so the
    recorded form of every backward rule on the path is what is tested.

    ``inputs`` are persistent tensors that require gradients. Returns the
    largest error ratio (<= 1 passes); raises NumericError (with
    ``.max_err``) when an element disagrees. 0 for eps/atol/rtol picks the
    library's defaults."""
    p = check_ctx(ctx)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for t in ins:
        if not isinstance(t, Tensor):
            raise ArgumentTypeError("gradcheck inputs must be mnas.Tensor objects")
        t._live()
    if not callable(f):
        raise ArgumentTypeError("f must be callable(tape, inputs)")
    box = []

    def _cb(tape_ptr, inputs_ptr, user):
        tape = Tape._borrowed(ctx, tape_ptr)
        try:
            y = f(tape, ins)
            if not isinstance(y, Tensor):
                raise ArgumentTypeError("the gradcheck function must return an mnas.Tensor")
            return tape._arg(y)
        except BaseException as e:  # reported after the C call returns
            box.append(e)
            return None
        finally:
            tape.close()

    cb = _lib.GRADCHECK_FN(_cb)
    opts = GradcheckOptions.new(order=as_int(order, "order", 1, 3), eps=as_float(eps, "eps"),
                                atol=as_float(atol, "atol"), rtol=as_float(rtol, "rtol"),
                                seed=as_int(seed, "seed", 0, (1 << 64) - 1),
                                record_last=1 if record_last else 0)
    arr = (c_void_p * max(len(ins), 1))(*[t._ptr for t in ins])
    err = c_double(0.0)
    ctx.clear_error()
    st = C.mnas_gradcheck(p, cb, None, len(ins), arr, ctypes.byref(opts), ctypes.byref(err))
    if box:
        raise box[0]
    if st != 0:
        try:
            ctx._fail("mnas_gradcheck", st)
        except NumericError as e:
            e.max_err = err.value
            raise
    return err.value


__all__ = ["Tape", "gradcheck", "Context"]
