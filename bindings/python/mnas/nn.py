"""The nn layer: parameter sets (named persistent tensors with gradient
buffers), the SGD/Adam optimisers, and the MLP used functionally
(``mlp(tape, x, weights)`` with any weights of the right shapes)."""

from __future__ import annotations

import ctypes
import os
from ctypes import c_int64, c_void_p
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Union

from ._handle import Handle, as_float, as_int, as_shape
from ._lib import C, decode
from ._structs import OptimOptions
from .autodiff import Tape
from .core import Rng, check_ctx
from .errors import ArgumentTypeError, InvalidArgument, ShapeError
from .tensors import Tensor, shape_array
from ._types import PathLike, ShapeLike, WeightsLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from .core import Context

INIT_ZEROS, INIT_ONES, INIT_FAN_IN, INIT_UNIFORM, INIT_NORMAL, INIT_CONSTANT = range(6)
_INITS = {"zeros": INIT_ZEROS, "ones": INIT_ONES, "fan_in": INIT_FAN_IN, "uniform": INIT_UNIFORM,
          "normal": INIT_NORMAL, "constant": INIT_CONSTANT}
OPTIM_SGD, OPTIM_ADAM = 0, 1
MLP_NO_BN = 1


def _name(s, what="name"):
    if not isinstance(s, str):
        raise ArgumentTypeError("%s must be a str" % what)
    b = s.encode("utf-8")
    if b"\0" in b:
        raise InvalidArgument("%s contains a NUL character" % what)
    return b


class Params(Handle):
    """An ordered set of named parameters (``Params(ctx)``).

    Indexing gives the parameter tensors (``p[0]``, ``p["l0.w"]``,
    ``p[1:3]``); ``p.grad(i)`` the gradient buffers. ``len(p)`` counts the
    parameters; ``p.tensors()`` is the list a module's forward takes."""

    __slots__ = ("_ctx", "_values", "_grads")
    _kind = "parameter set"

    def __init__(self, ctx: Context) -> None:
        p = check_ctx(ctx)
        ctx.clear_error()
        r = C.mnas_params_create(p)
        if not r:
            ctx._fail("mnas_params_create")
        self._ctx = ctx
        self._values = []
        self._grads = []
        self._setup(r, C.mnas_params_free, ctx)

    def save(self, path: PathLike) -> None:
        """Write the values to a checkpoint file (atomically)."""
        self._ctx.clear_error()
        self._ctx._check(C.mnas_params_save(self._p(), os.fsencode(path)), "mnas_params_save")

    def load(self, path: PathLike) -> None:
        """Read values saved by save: the same names with the same shapes
        (any order), all finite, or nothing changes and an error is raised."""
        self._ctx.clear_error()
        self._ctx._check(C.mnas_params_load(self._p(), os.fsencode(path)), "mnas_params_load")

    @classmethod
    def _borrowed(cls, owner, ctx, ptr):
        s = cls.__new__(cls)
        s._ctx = ctx
        s._values = []
        s._grads = []
        s._setup(ptr, None, owner)
        return s

    @property
    def ctx(self) -> Context:
        return self._ctx

    def add(self, name: str, shape: ShapeLike, init: str = "fan_in", arg: Optional[float] = None,
            group: int = 0) -> int:
        """Append a parameter; returns its index. ``init`` is one of zeros,
        ones, fan_in (arg = fan-in, default: the last extent), uniform and
        normal (arg = scale), constant (arg = value)."""
        p = self._p()
        if isinstance(init, str):
            try:
                init = _INITS[init.lower()]
            except KeyError:
                raise InvalidArgument("unknown initialiser %r (%s)" % (init, ", ".join(_INITS))) from None
        init = as_int(init, "init", -(1 << 31), (1 << 31) - 1)
        shape = as_shape(shape)
        if arg is None:
            arg = float(shape[-1]) if init == INIT_FAN_IN and shape else (1.0 if init == INIT_FAN_IN else 0.0)
        nd, sh = shape_array(shape)
        self._ctx.clear_error()
        i = C.mnas_params_add(p, _name(name), nd, sh, init, as_float(arg, "arg"),
                              as_int(group, "group", -(1 << 31), (1 << 31) - 1))
        if i < 0:
            self._ctx._fail("mnas_params_add")
        return i

    def init(self, rng: Optional[Rng] = None) -> None:
        """Redraw every parameter from its initialiser (context RNG if None)."""
        p = self._p()
        if rng is not None and not isinstance(rng, Rng):
            raise ArgumentTypeError("rng must be an mnas.Rng or None")
        self._ctx.clear_error()
        st = C.mnas_params_init(p, None if rng is None else rng._p())
        self._ctx._check(st, "mnas_params_init")

    def __len__(self) -> int:
        return C.mnas_params_count(self._p())

    @property
    def numel(self) -> int:
        """Total number of elements over all parameters."""
        return C.mnas_params_numel(self._p())

    def _index(self, i):
        n = len(self)
        if isinstance(i, str):
            k = C.mnas_params_find(self._p(), _name(i))
            if k < 0:
                raise KeyError(i)
            return k
        k = as_int(i, "index")
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError("parameter index %d out of range (%d parameters)" % (i, n))
        return k

    def _cached(self, cache, getter, k):
        while len(cache) <= k:
            cache.append(None)
        t = cache[k]
        if t is None or t._ptr is None:
            r = getter(self._p(), k)
            t = cache[k] = Tensor._borrowed(self, self._ctx, r)
        return t

    def __getitem__(self, i: Union[int, str, slice]) -> Union[Tensor, List[Tensor]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self._cached(self._values, C.mnas_params_get, self._index(i))

    def __iter__(self) -> Iterator[Tensor]:
        for k in range(len(self)):
            yield self[k]

    def tensors(self) -> List[Tensor]:
        """The parameter tensors in order (what a forward takes)."""
        return [self[k] for k in range(len(self))]

    def grad(self, i: Union[int, str]) -> Tensor:
        """The gradient buffer of parameter i (index or name)."""
        return self._cached(self._grads, C.mnas_params_grad, self._index(i))

    def name(self, i: int) -> str:
        return decode(C.mnas_params_name(self._p(), self._index(i)))

    def names(self) -> List[str]:
        return [self.name(k) for k in range(len(self))]

    def group(self, i: Union[int, str]) -> int:
        return C.mnas_params_group(self._p(), self._index(i))

    def find(self, name: str) -> int:
        """Index of the parameter called name, or -1."""
        return C.mnas_params_find(self._p(), _name(name))

    def zero_grad(self) -> None:
        C.mnas_params_zero_grad(self._p())

    def accumulate_grad(self, grads: Sequence[Optional[Tensor]], scale: float = 1.0) -> None:
        """grad_i += scale * grads[i]; one entry per parameter (None skips)."""
        p = self._p()
        grads = list(grads)
        n = len(self)
        if len(grads) != n:
            raise ShapeError("accumulate_grad: %d gradients for %d parameters" % (len(grads), n))
        ptrs = []
        for g in grads:
            if g is None:
                ptrs.append(None)
            elif isinstance(g, Tensor):
                ptrs.append(g._live())
            else:
                raise ArgumentTypeError("gradients must be mnas.Tensor or None")
        arr = (c_void_p * max(n, 1))(*ptrs)
        self._ctx.clear_error()
        st = C.mnas_params_accumulate_grad(p, arr, as_float(scale, "scale"))
        self._ctx._check(st, "mnas_params_accumulate_grad")

    def copy_values(self, src: Params) -> None:
        """Copy the values of src (same names and shapes, same order)."""
        if not isinstance(src, Params):
            raise ArgumentTypeError("src must be an mnas.Params")
        self._ctx.clear_error()
        st = C.mnas_params_copy_values(self._p(), src._p())
        self._ctx._check(st, "mnas_params_copy_values")

    def copy_matching(self, src: Params) -> int:
        """Copy the values of every parameter of src whose name and shape
        match one here (any order); returns how many were copied."""
        if not isinstance(src, Params):
            raise ArgumentTypeError("src must be an mnas.Params")
        self._ctx.clear_error()
        n = C.mnas_params_copy_matching(self._p(), src._p())
        if n < 0:
            self._ctx._fail("mnas_params_copy_matching")
        return n

    def grad_norm(self) -> float:
        """sqrt of the sum of squares of every gradient buffer."""
        return C.mnas_params_grad_norm(self._p())

    def state_dict(self) -> Dict[str, Any]:
        """{name: nested lists of values} (a copy)."""
        return {self.name(k): self[k].tolist() for k in range(len(self))}


class Optimizer(Handle):
    """SGD or Adam over every parameter of a set.

    ``Optimizer(params, kind="adam", lr=1e-3, momentum=0, beta1=0.9,
    beta2=0.999, eps=1e-8, clip_norm=0)``. ``step()`` updates from the
    gradient buffers (it does not clear them)."""

    __slots__ = ("_params",)
    _kind = "optimizer"

    def __init__(self, params: Params, kind: Union[int, str] = "adam", lr: float = 1e-3,
                 momentum: float = 0.0, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 clip_norm: float = 0.0) -> None:
        if not isinstance(params, Params):
            raise ArgumentTypeError("params must be an mnas.Params")
        if isinstance(kind, str):
            kinds = {"sgd": OPTIM_SGD, "adam": OPTIM_ADAM}
            if kind.lower() not in kinds:
                raise InvalidArgument("unknown optimiser %r (sgd, adam)" % kind)
            kind = kinds[kind.lower()]
        opts = OptimOptions.new(kind=as_int(kind, "kind", -(1 << 31), (1 << 31) - 1),
                                lr=as_float(lr, "lr"), momentum=as_float(momentum, "momentum"),
                                beta1=as_float(beta1, "beta1"), beta2=as_float(beta2, "beta2"),
                                eps=as_float(eps, "eps"), clip_norm=as_float(clip_norm, "clip_norm"))
        ctx = params._ctx
        ctx.clear_error()
        r = C.mnas_optim_create(params._p(), ctypes.byref(opts))
        if not r:
            if len(params) == 0 and not ctx.last_error:
                raise InvalidArgument("mnas_optim_create: the parameter set is empty")
            ctx._fail("mnas_optim_create")
        self._params = params
        self._setup(r, C.mnas_optim_free, params)

    def set_group_lr(self, group: int, lr: float) -> None:
        self._params._ctx.clear_error()
        st = C.mnas_optim_set_group_lr(self._p(), as_int(group, "group", -(1 << 31), (1 << 31) - 1),
                                       as_float(lr, "lr"))
        self._params._ctx._check(st, "mnas_optim_set_group_lr")

    def step(self) -> None:
        self._params._ctx.clear_error()
        st = C.mnas_optim_step(self._p())
        self._params._ctx._check(st, "mnas_optim_step")

    @property
    def steps(self) -> int:
        """Number of successful steps."""
        return C.mnas_optim_steps(self._p())

    def save(self, path: PathLike) -> None:
        """Write the optimiser's state (kind, step count, moments per
        parameter name) to a checkpoint file, atomically. The parameter
        values are saved separately (Params.save)."""
        self._params._ctx.clear_error()
        self._params._ctx._check(C.mnas_optim_save(self._p(), os.fsencode(path)), "mnas_optim_save")

    def load(self, path: PathLike) -> None:
        """Read a state written by save: the same kind over parameters of
        the same names and shapes, or nothing changes and an error is
        raised (FormatError, MismatchError, NumericError, FileError)."""
        self._params._ctx.clear_error()
        self._params._ctx._check(C.mnas_optim_load(self._p(), os.fsencode(path)), "mnas_optim_load")


def Adam(params: Params, lr: float = 1e-3, *, beta1: float = 0.9, beta2: float = 0.999,
         eps: float = 1e-8, clip_norm: float = 0.0) -> Optimizer:
    """Adam over ``params`` (the options of Optimizer, by name)."""
    return Optimizer(params, "adam", lr, beta1=beta1, beta2=beta2, eps=eps, clip_norm=clip_norm)


def SGD(params: Params, lr: float, momentum: float = 0.0, *, clip_norm: float = 0.0) -> Optimizer:
    """SGD (with momentum) over ``params`` (the options of Optimizer, by name)."""
    return Optimizer(params, "sgd", lr, momentum, clip_norm=clip_norm)


def weight_array(tape: Tape, weights: WeightsLike, n: int, what: str = "the module") -> Any:
    """A C array of exactly n tensor pointers from a Params or a sequence of
    tensors (C reads n entries, so the count is checked here)."""
    if isinstance(weights, Params):
        weights = weights.tensors()
    elif isinstance(weights, (str, bytes, Tensor)) or not hasattr(weights, "__iter__"):
        raise ArgumentTypeError("weights must be an mnas.Params or a sequence of mnas.Tensor")
    weights = list(weights)
    for w in weights:
        if not isinstance(w, Tensor):
            raise ArgumentTypeError("weights must be mnas.Tensor objects, not %s" % type(w).__name__)
    if len(weights) != n:
        raise ShapeError("%s takes %d weight tensors, got %d" % (what, n, len(weights)))
    return (c_void_p * max(n, 1))(*[tape._arg(w) for w in weights])


def check_tape(tape: Any) -> int:
    if not isinstance(tape, Tape):
        raise ArgumentTypeError("tape must be an mnas.Tape, not %s" % type(tape).__name__)
    return tape._p()


class Module(Handle):
    """Base of the functional modules: shapes only, weights given to every
    forward. Subclasses name their C functions."""

    __slots__ = ("_ctx", "_n")
    _c_add_params = None
    _c_num_params = None

    def _init_module(self, ctx, ptr, free, parent):
        self._ctx = ctx
        self._setup(ptr, free, parent)
        self._n = getattr(C, self._c_num_params)(ptr)

    @property
    def ctx(self) -> Context:
        return self._ctx

    @property
    def num_params(self) -> int:
        """Number of weight tensors the forward takes."""
        return self._n

    def add_params(self, params: Params, prefix: str = "", group: int = 0) -> int:
        """Add the module's parameters to params (names start with prefix);
        returns the index of the first."""
        if not isinstance(params, Params):
            raise ArgumentTypeError("params must be an mnas.Params")
        self._ctx.clear_error()
        i = getattr(C, self._c_add_params)(self._p(), params._p(), _name(prefix, "prefix"),
                                           as_int(group, "group", -(1 << 31), (1 << 31) - 1))
        if i < 0:
            self._ctx._fail(self._c_add_params)
        return i

    def _weights(self, tape, weights):
        return weight_array(tape, weights, self._n, "the %s" % self._kind)


class MLP(Module):
    """Linear layers with ReLU and batch-norm between them (the paper's
    Linear-ReLU-BN block): ``MLP(ctx, [1, 50, 50, 1], batch_norm=True)``.

    The module holds shapes only: ``mlp.add_params(params)`` creates its
    weights in a set, and ``mlp(tape, x, weights)`` runs it with any
    weights (the set, a slice of it, or tape tensors such as fast weights)."""

    __slots__ = ("dims",)
    _kind = "MLP"
    _c_add_params = "mnas_mlp_add_params"
    _c_num_params = "mnas_mlp_num_params"

    def __init__(self, ctx: Context, dims: Sequence[int], batch_norm: bool = True) -> None:
        p = check_ctx(ctx)
        dims = [as_int(d, "width") for d in dims]
        if len(dims) < 2:
            raise InvalidArgument("an MLP needs at least 2 widths (inputs and outputs)")
        arr = (c_int64 * len(dims))(*dims)
        ctx.clear_error()
        r = C.mnas_mlp_create(p, len(dims) - 1, arr, 0 if batch_norm else MLP_NO_BN)
        if not r:
            ctx._fail("mnas_mlp_create")
        self.dims = tuple(dims)
        self._init_module(ctx, r, C.mnas_mlp_free, ctx)

    def forward(self, tape: Tape, x: Tensor, weights: WeightsLike) -> Tensor:
        """y = MLP(x; weights) on tape; weights: a Params holding exactly
        this network's parameters, or a sequence of num_params tensors."""
        mp = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        return tape._done(C.mnas_mlp_forward(mp, tp, tape._arg(x), arr))

    __call__ = forward


class ConvNet(Module):
    """The paper's MAML baseline for images: 4 blocks of 3x3 conv - BN
    (batch statistics) - ReLU - 2x2 max-pool, then a Linear head:
    ``ConvNet(ctx, in_channels, height, width, filters=32, n_classes=5)``
    (64 filters is Omniglot's choice). Images are [N, in_channels, height,
    width] with height, width >= 16; ``net(tape, x, weights)`` gives
    [N, n_classes] logits."""

    __slots__ = ("in_channels", "height", "width", "n_classes")
    _kind = "conv net"
    _c_add_params = "mnas_convnet_add_params"
    _c_num_params = "mnas_convnet_num_params"

    def __init__(self, ctx: Context, in_channels: int, height: int, width: int, filters: int = 32,
                 n_classes: int = 5) -> None:
        p = check_ctx(ctx)
        ctx.clear_error()
        r = C.mnas_convnet_create(p, as_int(in_channels, "in_channels"), as_int(height, "height"),
                                  as_int(width, "width"), as_int(filters, "filters"),
                                  as_int(n_classes, "n_classes"))
        if not r:
            ctx._fail("mnas_convnet_create")
        self.in_channels, self.height, self.width, self.n_classes = in_channels, height, width, n_classes
        self._init_module(ctx, r, C.mnas_convnet_free, ctx)

    @property
    def filters(self) -> int:
        return C.mnas_convnet_filters(self._p())

    def forward(self, tape: Tape, x: Tensor, weights: WeightsLike) -> Tensor:
        mp = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        return tape._done(C.mnas_convnet_forward(mp, tp, tape._arg(x), arr))

    __call__ = forward
