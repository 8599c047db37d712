"""The meta layer: the inner loop (fast-weight adaptation, the paper's
Eq. (2)/(8)) and the meta-learner that trains, evaluates and predicts.

``Learner(ctx, method="maml", ...)`` takes the method by name: "maml" now;
"mnas", "mnas-shared" and "mnas-nm" are accepted and reach the library,
which answers ``Unsupported`` until the search core lands.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
from ctypes import c_double, c_void_p
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _lib
from ._handle import Handle, as_float, as_int, as_u64
from ._lib import C, decode
from ._structs import InnerOptions, LearnerOptions
from .autodiff import Tape
from .core import check_ctx
from .data import FAMILIES, Task, TaskSet, _nan_ci, family_name, regression_options
from .errors import ArgumentTypeError, InvalidArgument, ShapeError
from .nas import Genotype, SearchSpace
from .nn import Module, Params, check_tape, weight_array
from .tensors import Tensor, float_buffer
from ._types import PathLike, WeightsLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from .core import Context

METHOD_MAML, METHOD_MNAS, METHOD_MNAS_SHARED, METHOD_MNAS_NM = range(4)
METHODS = {"maml": METHOD_MAML, "mnas": METHOD_MNAS, "mnas-shared": METHOD_MNAS_SHARED,
           "mnas-nm": METHOD_MNAS_NM}
INNER_SECOND_ORDER, INNER_FIRST_ORDER, INNER_RECOMPUTE, INNER_RECOMPUTE_CELLS = range(4)
INNER_MODES = {"second_order": INNER_SECOND_ORDER, "first_order": INNER_FIRST_ORDER,
               "recompute": INNER_RECOMPUTE, "recompute_cells": INNER_RECOMPUTE_CELLS}
RNN_GRU, RNN_LSTM = 0, 1
RNN_KINDS = {"gru": RNN_GRU, "lstm": RNN_LSTM}
MODULATE_ELEMENT, MODULATE_CHANNEL = 0, 1
MODULATIONS = {"element": MODULATE_ELEMENT, "channel": MODULATE_CHANNEL}
MODULATOR_SIGMOID, MODULATOR_TWO_SIGMOID, MODULATOR_ONE_PLUS_TANH, MODULATOR_FILM = range(4)
MODULATOR_FORMS = {"sigmoid": MODULATOR_SIGMOID, "two_sigmoid": MODULATOR_TWO_SIGMOID,
                   "one_plus_tanh": MODULATOR_ONE_PLUS_TANH, "film": MODULATOR_FILM}
INNER_LR_FIXED, INNER_LR_PER_TENSOR, INNER_LR_PER_ELEMENT = range(3)
INNER_LR_MODES = {"fixed": INNER_LR_FIXED, "per_tensor": INNER_LR_PER_TENSOR,
                  "per_element": INNER_LR_PER_ELEMENT}
_INT = (-(1 << 31), (1 << 31) - 1)


def _method_id(method):
    if isinstance(method, str):
        key = method.lower().replace("_", "-")
        if key.startswith("m-nas"):
            key = "mnas" + key[5:]
        if key not in METHODS:
            raise InvalidArgument("unknown method %r (%s)" % (method, ", ".join(METHODS)))
        return METHODS[key]
    return as_int(method, "method", *_INT)


def _mode_id(mode):
    if isinstance(mode, str):
        key = mode.lower().replace("-", "_").replace(" ", "_")
        if key not in INNER_MODES:
            raise InvalidArgument("unknown inner mode %r (%s)" % (mode, ", ".join(INNER_MODES)))
        return INNER_MODES[key]
    return as_int(mode, "inner_mode", *_INT)


def _choice(value, table, what):
    if isinstance(value, str):
        key = value.lower()
        if key not in table:
            raise InvalidArgument("unknown %s %r (%s)" % (what, value, ", ".join(table)))
        return table[key]
    return as_int(value, what, *_INT)


def method_name(method: Union[int, str]) -> str:
    """The library's display name of a method ("MAML", "M-NAS", ...)."""
    return decode(C.mnas_method_name(_method_id(method)))


# ---- the inner loop ----------------------------------------------------------

def inner_loop(tape: Tape, loss: Callable[..., Tensor], weights: Sequence[Tensor],
               extra: Sequence[Tensor] = (), steps: int = 5, lr: float = 0.001,
               mode: str = "second_order",
               rates: Optional[Sequence[Tensor]] = None) -> List[Tensor]:
    """``steps`` SGD steps w <- w - lr * d loss(tape, w, extra) / d w from
    ``weights``, recorded on ``tape``; returns the adapted weights (tape
    tensors, differentiable with respect to ``weights`` and ``extra``).

    ``rates`` (Meta-SGD): one tensor per weight, of shape [1] or the
    weight's shape; each step is then w <- w - rate * grad (elementwise) and
    the result is differentiable with respect to the rates too ("recompute"
    mode refuses them).

    ``loss(tape, weights, extra)`` builds a scalar tensor on the tape it is
    given (in "recompute" mode that is a scratch tape of the library, and it
    is called again during ``tape.grad``). It must be deterministic."""
    if not isinstance(tape, Tape):
        raise ArgumentTypeError("tape must be an mnas.Tape")
    if not callable(loss):
        raise ArgumentTypeError("loss must be callable(tape, weights, extra)")
    tp = tape._p()
    ws = weights.tensors() if isinstance(weights, Params) else list(weights)
    ex = list(extra)
    wp = [tape._arg(w) for w in ws]
    ep = [tape._arg(e) for e in ex]
    known = dict(zip(wp + ep, ws + ex))
    n, ne = len(ws), len(ex)
    ctx = tape._ctx

    def _cb(tape_ptr, w_ptr, e_ptr, user):
        on = tape if tape_ptr == tape._ptr else Tape._borrowed(ctx, tape_ptr)
        try:
            def wrap(p):
                t = known.get(p)
                return t if t is not None else on._wrap(p)
            w = [wrap(w_ptr[i]) for i in range(n)]
            e = [wrap(e_ptr[j]) for j in range(ne)] if ne else []
            y = loss(on, w, e)
            if not isinstance(y, Tensor):
                raise ArgumentTypeError("the loss function must return an mnas.Tensor")
            return on._arg(y)
        except BaseException as exc:  # reported by the Python call that reaches C
            if tape._pending is None:
                tape._pending = exc
            return None
        finally:
            if on is not tape:
                on.close()

    cb = _lib.LOSS_FN(_cb)
    tape._keep.append(cb)  # recompute mode calls it again during tape.grad
    opts = InnerOptions.new(steps=as_int(steps, "steps", *_INT), lr=as_float(lr, "lr"),
                            mode=_mode_id(mode))
    if rates is not None:
        rs = list(rates)
        if len(rs) != n:
            raise InvalidArgument("inner_loop: %d rates for %d weights" % (len(rs), n))
        arr_r = (c_void_p * max(n, 1))(*[tape._arg(r) for r in rs])
        opts.rates = ctypes.cast(arr_r, c_void_p)
    arr_w = (c_void_p * max(n, 1))(*wp)
    arr_e = (c_void_p * max(ne, 1))(*ep)
    out = (c_void_p * max(n, 1))()
    st = C.mnas_inner_loop(tp, cb, None, n, arr_w, ne, arr_e if ne else None, ctypes.byref(opts), out)
    if st != 0 or tape._pending is not None:
        tape._fail(st)
    return [tape._wrap(out[i]) for i in range(n)]


# ---- task encoder, controller, modulator (M-NAS building blocks) ----------------

class TaskEncoder(Module):
    """The task encoder of Eq. (4)-(6): ``TaskEncoder(ctx, x_features,
    y_features, f_dim, z_dim, kind="gru")``. ``enc(tape, x, y, weights,
    perm=None)`` returns (z [1, z_dim], L_r scalar)."""

    __slots__ = ()
    _kind = "task encoder"
    _c_add_params = "mnas_task_encoder_add_params"
    _c_num_params = "mnas_task_encoder_num_params"

    def __init__(self, ctx: Context, x_features: int = 1, y_features: int = 1, f_dim: int = 32,
                 z_dim: int = 32, kind: str = "gru") -> None:
        p = check_ctx(ctx)
        ctx.clear_error()
        r = C.mnas_task_encoder_create(p, as_int(x_features, "x_features"), as_int(y_features, "y_features"),
                                       as_int(f_dim, "f_dim"), as_int(z_dim, "z_dim"),
                                       _choice(kind, RNN_KINDS, "encoder kind"))
        if not r:
            ctx._fail("mnas_task_encoder_create")
        self._init_module(ctx, r, C.mnas_task_encoder_free, ctx)

    @property
    def z_dim(self) -> int:
        return C.mnas_task_encoder_z_dim(self._p())

    def forward(self, tape: Tape, x: Tensor, y: Tensor, weights: WeightsLike,
                perm: Optional[Sequence[int]] = None,
                recon: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """(z, L_r) of the support set x [K, x_features], y [K, y_features];
        perm: the feeding order (a permutation of range(K)) or None. With
        recon=False, L_r is None."""
        ep = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        xp, yp = tape._arg(x), tape._arg(y)
        perm_arr = None
        if perm is not None:
            perm = [as_int(i, "perm entry") for i in perm]
            k = x.shape[0] if x.ndim >= 1 else 1
            if len(perm) != k:  # C reads K entries
                raise ShapeError("perm has %d entries for %d support rows" % (len(perm), k))
            perm_arr = (ctypes.c_int64 * k)(*perm)
        z = c_void_p()
        r = c_void_p()
        st = C.mnas_task_encoder_forward(ep, tp, xp, yp, arr, perm_arr, ctypes.byref(z),
                                         ctypes.byref(r) if recon else None)
        if st != 0:
            tape._fail(st)
        return tape._wrap(z.value), (tape._wrap(r.value) if recon else None)

    __call__ = forward


class Controller(Module):
    """The architecture controller: z [1, z_dim] -> alpha [edges, ops]
    (rows sum to 1): ``Controller(ctx, z_dim, hidden, edges, ops)``."""

    __slots__ = ()
    _kind = "controller"
    _c_add_params = "mnas_controller_add_params"
    _c_num_params = "mnas_controller_num_params"

    def __init__(self, ctx: Context, z_dim: int, hidden: int, edges: int, ops: int) -> None:
        p = check_ctx(ctx)
        ctx.clear_error()
        r = C.mnas_controller_create(p, as_int(z_dim, "z_dim"), as_int(hidden, "hidden"),
                                     as_int(edges, "edges"), as_int(ops, "ops"))
        if not r:
            ctx._fail("mnas_controller_create")
        self._init_module(ctx, r, C.mnas_controller_free, ctx)

    def forward(self, tape: Tape, z: Tensor, weights: WeightsLike) -> Tensor:
        cp = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        return tape._done(C.mnas_controller_forward(cp, tp, tape._arg(z), arr))

    __call__ = forward

    @property
    def temperature(self) -> float:
        """Softmax temperature T: alpha = softmax(logits / T) per edge
        (default 1; settable, in [1e-3, 1e3])."""
        return C.mnas_controller_temperature(self._p())

    @temperature.setter
    def temperature(self, t: float) -> None:
        self._ctx.clear_error()
        st = C.mnas_controller_set_temperature(self._p(), as_float(t, "temperature"))
        self._ctx._check(st, "mnas_controller_set_temperature")


class Modulator(Module):
    """tau = sigmoid(FC(z)) scaling meta-weights (Eq. (7)):
    ``Modulator(ctx, z_dim, targets, mode="element", bias_init=3.0, form="sigmoid")``
    (form: "sigmoid", "two_sigmoid" = 2 sigmoid, "one_plus_tanh" = 1 + tanh)
    where targets are tensors with the shapes to modulate;
    ``mod(tape, z, weights, targets)`` returns tau_i * targets[i]."""

    __slots__ = ("_targets",)
    _kind = "modulator"
    _c_add_params = "mnas_modulator_add_params"
    _c_num_params = "mnas_modulator_num_params"

    def __init__(self, ctx: Context, z_dim: int, targets: WeightsLike,
                 mode: str = "element", bias_init: float = 3.0, form: str = "sigmoid") -> None:
        p = check_ctx(ctx)
        if isinstance(targets, Params):
            targets = targets.tensors()
        targets = list(targets)
        ptrs = []
        for t in targets:
            if not isinstance(t, Tensor):
                raise ArgumentTypeError("targets must be mnas.Tensor objects")
            ptrs.append(t._live())
        arr = (c_void_p * max(len(ptrs), 1))(*ptrs)
        ctx.clear_error()
        r = C.mnas_modulator_create(p, as_int(z_dim, "z_dim"), len(ptrs), arr,
                                    _choice(mode, MODULATIONS, "modulation"), as_float(bias_init, "bias_init"))
        if not r:
            ctx._fail("mnas_modulator_create")
        self._targets = len(ptrs)
        self._init_module(ctx, r, C.mnas_modulator_free, ctx)
        ctx._check(C.mnas_modulator_set_form(r, _choice(form, MODULATOR_FORMS, "modulator form")),
                   "mnas_modulator_set_form")

    def forward(self, tape: Tape, z: Tensor, weights: WeightsLike,
                targets: Sequence[Tensor]) -> List[Tensor]:
        mp = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        tarr = weight_array(tape, targets, self._targets, "the modulator's targets")
        out = (c_void_p * max(self._targets, 1))()
        st = C.mnas_modulator_forward(mp, tp, tape._arg(z), arr, tarr, out)
        if st != 0:
            tape._fail(st)
        return [tape._wrap(out[i]) for i in range(self._targets)]

    __call__ = forward


# ---- progress ------------------------------------------------------------------

class _ProgressPrinter:
    """A rewritten line on a terminal, about 20 plain lines otherwise."""

    def __init__(self, label, total, tasks_per_iter, stream=None):
        self.label = label
        self.total = total
        self.tasks = tasks_per_iter
        self.stream = stream if stream is not None else sys.stdout
        try:
            self.tty = self.stream.isatty()
        except Exception:
            self.tty = False
        self.every = max(total // 20, 1)
        self.start = time.monotonic()
        self.avg = math.nan

    @staticmethod
    def _hms(s):
        s = int(s + 0.5) if math.isfinite(s) and s > 0 else 0
        return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)

    def __call__(self, it, total, loss):
        self.avg = loss if math.isnan(self.avg) else 0.95 * self.avg + 0.05 * loss
        el = time.monotonic() - self.start
        eta = el / it * (total - it) if it else 0.0
        tps = it * self.tasks / el if el > 0 else 0.0
        line = "%s: iteration %d/%d  loss %.4f  %.0f tasks/s  elapsed %s  ETA %s" % (
            self.label, it, total, self.avg, tps, self._hms(el), self._hms(eta))
        if self.tty:
            self.stream.write("\r" + line + "   " + ("\n" if it == total else ""))
            self.stream.flush()
        elif it % self.every == 0 or it == total:
            self.stream.write(line + "\n")
            self.stream.flush()


# ---- evaluation results ----------------------------------------------------------

class Evaluation:
    """Per-task query losses of a test set, before and after adaptation,
    with per-family mean +- 95 % CI in the layout of the paper's Table 1."""

    def __init__(self, families: Sequence[int], before: Sequence[float], after: Sequence[float],
                 label: str = "MAML", archs: Optional[str] = None) -> None:
        self.families = list(families)
        self.before = list(before)
        self.after = list(after)
        self.label = label
        self.archs = archs if archs is not None else ("5 FCs" if label == "MAML" else "Cell")

    def _columns(self):
        ids = sorted(set(f for f in self.families if f >= 0))
        return ids

    def stats(self, which: str = "after") -> Dict[str, Tuple[float, float]]:
        """{family name: (mean, ci95)} plus "average" (over every task)."""
        values = self.after if which == "after" else self.before
        out = {}
        for f in self._columns():
            name = family_name(f) if f < len(FAMILIES) else str(f)
            out[name] = _nan_ci([v for v, g in zip(values, self.families) if g == f])
        out["average"] = _nan_ci(values)
        return out

    @property
    def mean_mse(self) -> float:
        """Mean query loss after adaptation over all tasks."""
        return self.stats("after")["average"][0]

    def table(self, label: Optional[str] = None, archs: Optional[str] = None) -> str:
        label = self.label if label is None else label
        archs = self.archs if archs is None else archs
        before, after = self.stats("before"), self.stats("after")
        names = list(after)
        head = "%-22s %-7s" % ("Model", "Archs.") + "".join(
            " %-17s" % ("Averaged" if n == "average" else n) for n in names)

        def row(name, st):
            return "%-22s %-7s" % (name, archs) + "".join(
                " %7.3f +- %-6.3f" % st[n] for n in names)

        lines = [head, row(label + " (before adapt.)", before), row(label, after)]
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return "<mnas.Evaluation %d tasks, mean MSE after adaptation %.4g>" % (
            len(self.after), self.mean_mse)


def results_table(evaluations: Sequence[Evaluation], before: bool = False) -> str:
    """Table 1 of the paper for several evaluations (one row each, query
    MSE +- 95 % CI after adaptation, or before with before=True)."""
    evaluations = list(evaluations)
    if not evaluations:
        return ""
    which = "before" if before else "after"
    stats = [e.stats(which) for e in evaluations]
    names = list(stats[0])
    head = "%-22s %-7s" % ("Model", "Archs.") + "".join(
        " %-17s" % ("Averaged" if n == "average" else n) for n in names)
    lines = [head]
    for e, st in zip(evaluations, stats):
        lines.append("%-22s %-7s" % (e.label, e.archs) + "".join(
            " %7.3f +- %-6.3f" % st.get(n, (math.nan, math.nan)) for n in names))
    return "\n".join(line.rstrip() for line in lines)


# ---- the learner --------------------------------------------------------------------

class Learner(Handle):
    """A meta-learner: ``Learner(ctx, method="maml", **options)``.

    method: "maml", "mnas", "mnas-shared" or "mnas-nm". Options (defaults
    are the library's, i.e. the paper's toy-regression settings):
    meta_batch=25, inner_steps=5, inner_lr=0.001, outer_lr=0.001,
    inner_mode="second_order" ("first_order", "recompute", "recompute_cells":
    recompute, plus per-cell checkpointing of the supernet's query pass), threads=1,
    seed=0, clip_norm=0.0, hidden=50, layers=5, in_features=1,
    out_features=1; for the M-NAS methods also arch_lr=1e-4, beta=0.01,
    path_dropout=0.1, nodes=3, z_dim=32, f_dim=32, controller_hidden=64,
    encoder="gru" ("lstm"), modulation="element" ("channel"),
    modulator_bias=3.0, modulator_form="sigmoid" ("two_sigmoid",
    "one_plus_tanh", "film"); few-shot image classification (classes > 0, images
    [n, in_channels, image_size, image_size], labels [n, 1]): classes=0,
    in_channels=1, image_size=28, filters=32 (MAML's conv network),
    channels=16 (the DARTS supernet's C; nodes=4 is DARTS's cell),
    sample_ops=0 (M-NAS variants: k ops per mixed edge drawn per task, Gumbel
    top-k with straight-through gradients; 0 is the paper's full supernet),
    stem_stride=1 (M-NAS variants: 2 or 4 reduce the images in the
    supernet's stem, docs/images.md), inner_lr_mode="fixed" ("per_tensor",
    "per_element": learned inner rates, Meta-SGD: rate = inner_lr *
    exp(rho) with rho the parameters "lr.<weight>", 0 at the start;
    docs/meta.md "Learned inner rates"), inner_lr_max=0.0 (> inner_lr: the
    learned rates bounded smoothly below it, inner_lr * exp(b tanh(rho / b)),
    b = log(inner_lr_max / inner_lr)), encoder_input_scale=0.0 (M-NAS
    variants, in (0, 1]: the task encoder reads that scale of [x, y], its
    embedding initialised wider to match; 1/sqrt(pixels + classes) for
    images, docs/encoder.md "Input scale").
    space: an ``mnas.SearchSpace`` for the M-NAS methods' supernet instead
    of the preset's (``mnas_learner_create_with_space``; ops registered from
    Python are not bound, so a built-in space or one made in C)."""

    __slots__ = ("_ctx", "_opts", "_params")
    _kind = "learner"

    _INT_OPTS = ("meta_batch", "inner_steps", "threads", "hidden", "layers", "in_features",
                 "out_features", "nodes", "z_dim", "f_dim", "controller_hidden", "classes",
                 "in_channels", "image_size", "filters", "channels", "sample_ops",
                 "stem_stride")
    _FLOAT_OPTS = ("inner_lr", "outer_lr", "clip_norm", "arch_lr", "beta", "path_dropout",
                   "modulator_bias", "inner_lr_max", "encoder_input_scale")
    _OPTION_NAMES = frozenset(_INT_OPTS + _FLOAT_OPTS + ("seed", "inner_mode", "encoder", "modulation",
                                                               "modulator_form", "inner_lr_mode"))

    def __init__(self, ctx: Context, method: str = "maml", *, meta_batch: Optional[int] = None,
                 inner_steps: Optional[int] = None, inner_lr: Optional[float] = None,
                 outer_lr: Optional[float] = None, inner_mode: Optional[str] = None,
                 threads: Optional[int] = None, seed: Optional[int] = None,
                 clip_norm: Optional[float] = None, hidden: Optional[int] = None,
                 layers: Optional[int] = None, in_features: Optional[int] = None,
                 out_features: Optional[int] = None, arch_lr: Optional[float] = None,
                 beta: Optional[float] = None, path_dropout: Optional[float] = None,
                 nodes: Optional[int] = None, z_dim: Optional[int] = None,
                 f_dim: Optional[int] = None, controller_hidden: Optional[int] = None,
                 encoder: Optional[str] = None, modulation: Optional[str] = None,
                 modulator_bias: Optional[float] = None, modulator_form: Optional[str] = None,
                 classes: Optional[int] = None, in_channels: Optional[int] = None,
                 image_size: Optional[int] = None, filters: Optional[int] = None,
                 channels: Optional[int] = None, sample_ops: Optional[int] = None,
                 stem_stride: Optional[int] = None, inner_lr_mode: Optional[str] = None,
                 inner_lr_max: Optional[float] = None, encoder_input_scale: Optional[float] = None,
                 space: Optional[SearchSpace] = None) -> None:
        # Named keyword-only options (None: the library's default), so a
        # misspelt option is a TypeError from Python itself and editors list
        # them; the values are checked as before.
        options = {k: v for k, v in locals().items()
                   if k in self._OPTION_NAMES and v is not None}
        p = check_ctx(ctx)
        o = LearnerOptions.new(method=_method_id(method))
        for name, value in options.items():
            if name in self._INT_OPTS:
                setattr(o, name, as_int(value, name, *_INT))
            elif name in self._FLOAT_OPTS:
                setattr(o, name, as_float(value, name))
            elif name == "seed":
                o.seed = as_u64(value, "seed")
            elif name == "inner_mode":
                o.inner_mode = _mode_id(value)
            elif name == "encoder":
                o.encoder = _choice(value, RNN_KINDS, "encoder")
            elif name == "modulation":
                o.modulation = _choice(value, MODULATIONS, "modulation")
            elif name == "modulator_form":
                o.modulator_form = _choice(value, MODULATOR_FORMS, "modulator_form")
            elif name == "inner_lr_mode":
                key = value.replace("-", "_") if isinstance(value, str) else value
                o.inner_lr_mode = _choice(key, INNER_LR_MODES, "inner_lr_mode")
            else:
                raise ArgumentTypeError("Learner got an unknown option %r" % name)
        ctx.clear_error()
        if space is None:
            r = C.mnas_learner_create(p, ctypes.byref(o))
            if not r:
                ctx._fail("mnas_learner_create")
        else:
            if not isinstance(space, SearchSpace):
                raise ArgumentTypeError("space must be an mnas.SearchSpace")
            r = C.mnas_learner_create_with_space(p, ctypes.byref(o), space._p())
            if not r:
                ctx._fail("mnas_learner_create_with_space")
        self._ctx = ctx
        self._opts = o
        self._params = None
        # Over a given space the learner is the space's child: the space
        # outlives it, and closing the space closes the learner first.
        self._setup(r, C.mnas_learner_free, ctx if space is None else space)

    @classmethod
    def from_checkpoint(cls, ctx: Context, path: PathLike,
                        threads: Optional[int] = None) -> Learner:
        """A learner with the options a checkpoint was written with (threads
        as given, else as saved), with the checkpoint loaded: training goes
        on exactly where it stopped."""
        p = check_ctx(ctx)
        o = LearnerOptions.new()
        ctx.clear_error()
        ctx._check(C.mnas_learner_checkpoint_options(p, os.fsencode(path), ctypes.byref(o)),
                   "mnas_learner_checkpoint_options")
        if threads is not None:
            o.threads = as_int(threads, "threads", 1, 256)
        s = cls.__new__(cls)
        ctx.clear_error()
        r = C.mnas_learner_create(p, ctypes.byref(o))
        if not r:
            ctx._fail("mnas_learner_create")
        s._ctx = ctx
        s._opts = o
        s._params = None
        s._setup(r, C.mnas_learner_free, ctx)
        s.load(path)
        return s

    def save(self, path: PathLike) -> None:
        """Write a checkpoint of the complete training state (atomically:
        the old file or the new one; format in docs/checkpoints.md)."""
        self._ctx.clear_error()
        self._ctx._check(C.mnas_learner_save(self._p(), os.fsencode(path)), "mnas_learner_save")

    def load(self, path: PathLike) -> None:
        """Restore a checkpoint written by save. The whole file is validated
        first: a damaged, foreign or mismatched file raises (FormatError,
        MismatchError, NumericError, FileError) and changes nothing."""
        self._ctx.clear_error()
        self._ctx._check(C.mnas_learner_load(self._p(), os.fsencode(path)), "mnas_learner_load")

    @property
    def ctx(self) -> Context:
        return self._ctx

    @property
    def method(self) -> str:
        return decode(C.mnas_method_name(self._opts.method))

    @property
    def options(self) -> Dict[str, Any]:
        """The learner's options as a dict."""
        return {name: getattr(self._opts, name) for name, _ in LearnerOptions._fields_
                if name != "struct_size"}

    @property
    def params(self) -> Params:
        """The meta-parameters (a Params owned by the learner)."""
        lp = self._p()
        if self._params is None or self._params._ptr is None:
            self._params = Params._borrowed(self, self._ctx, C.mnas_learner_params(lp))
        return self._params

    @property
    def iteration(self) -> int:
        """Meta-updates done so far."""
        return C.mnas_learner_iteration(self._p())

    def _task_ptrs(self, tasks):
        if isinstance(tasks, Task):
            tasks = [tasks]
        tasks = list(tasks)
        ptrs = []
        for t in tasks:
            if not isinstance(t, Task):
                raise ArgumentTypeError("expected mnas.Task objects, got %s" % type(t).__name__)
            ptrs.append(t._p())
        return tasks, ptrs

    def step(self, tasks: Union[Task, Sequence[Task]]) -> float:
        """One meta-update on the given tasks; returns the mean query loss."""
        lp = self._p()
        tasks, ptrs = self._task_ptrs(tasks)
        if not ptrs:
            raise InvalidArgument("step needs at least one task")
        arr = (c_void_p * len(ptrs))(*ptrs)
        loss = c_double()
        self._ctx.clear_error()
        st = C.mnas_learner_step(lp, arr, len(ptrs), ctypes.byref(loss))
        self._ctx._check(st, "mnas_learner_step")
        return loss.value

    def task_objective(self, task: Task, stream: int = 0, want_grad: bool = False) -> float:
        """The per-task meta-objective as training computes it (query loss
        after adaptation + beta * L_r), with the random choices of stream;
        with want_grad the parameters' gradient buffers receive its gradient."""
        lp = self._p()
        if not isinstance(task, Task):
            raise ArgumentTypeError("task must be an mnas.Task")
        out = c_double()
        self._ctx.clear_error()
        st = C.mnas_learner_task_objective(lp, task._p(), as_u64(stream, "stream"), ctypes.byref(out),
                                           1 if want_grad else 0)
        self._ctx._check(st, "mnas_learner_task_objective")
        return out.value

    def set_lr(self, outer_lr: float, arch_lr: float) -> None:
        """Change the Adam step sizes from the next meta-update on (the
        meta-weights, encoder and modulator; the controller or shared alpha).
        Checkpoints record the rates in force and loading restores them."""
        self._ctx.clear_error()
        st = C.mnas_learner_set_lr(self._p(), as_float(outer_lr, "outer_lr"), as_float(arch_lr, "arch_lr"))
        self._ctx._check(st, "mnas_learner_set_lr")

    @property
    def alpha_temperature(self) -> float:
        """Temperature T of the architecture weights while searching,
        alpha = softmax(logits / T) (default 1, the paper's; settable between
        meta-updates, in [1e-3, 1e3]; MAML: StateError). Checkpoints record it."""
        return C.mnas_learner_alpha_temperature(self._p())

    @alpha_temperature.setter
    def alpha_temperature(self, t: float) -> None:
        self._ctx.clear_error()
        st = C.mnas_learner_set_alpha_temperature(self._p(), as_float(t, "temperature"))
        self._ctx._check(st, "mnas_learner_set_alpha_temperature")

    def discretize(self, reinit: bool = False) -> None:
        """Enter the architecture-evaluation phase (M-NAS methods; MAML:
        StateError)."""
        self._ctx.clear_error()
        st = C.mnas_learner_discretize(self._p(), 1 if reinit else 0)
        self._ctx._check(st, "mnas_learner_discretize")

    @property
    def is_discrete(self) -> bool:
        return bool(C.mnas_learner_is_discrete(self._p()))

    def genotype(self, task: Task) -> Optional[Genotype]:
        """The genotype the learner uses for task (None for MAML)."""
        lp = self._p()
        if not isinstance(task, Task):
            raise ArgumentTypeError("task must be an mnas.Task")
        if self._opts.method == METHOD_MAML:
            return None
        self._ctx.clear_error()
        r = C.mnas_learner_genotype(lp, task._p())
        if not r:
            self._ctx._fail("mnas_learner_genotype")
        return Genotype._wrap(self._ctx, r, self)

    def _give(self, task):
        """A task pointer the learner may free: the task itself when the
        caller's Task owns it and nothing still reads it (the Task object is
        closed), otherwise a copy."""
        if not isinstance(task, Task):
            raise ArgumentTypeError("the task source must return mnas.Task objects, not %s"
                                    % type(task).__name__)
        p = task._p()
        if task._ctx is not self._ctx:
            raise ArgumentTypeError("the task source returned a task of another context")
        if task._fin is not None and not task._busy():
            task._fin.detach()
            task._fin = None
            task.close()
            return p
        self._ctx.clear_error()
        r = C.mnas_task_create(self._ctx._ptr, C.mnas_task_support_x(p), C.mnas_task_support_y(p),
                               C.mnas_task_query_x(p), C.mnas_task_query_y(p), C.mnas_task_family(p))
        if not r:
            self._ctx._fail("mnas_task_create")
        return r

    def train(self, iterations: int, tasks: Optional[Callable[[int], Task]] = None, *,
              seed: Optional[int] = None,
              progress: Union[bool, Callable[[int, int, float], Any]] = False, k_shot: int = 10,
              k_query: int = 10, families: Optional[Sequence[int]] = None,
              checkpoint: Optional[PathLike] = None, every: int = 0) -> List[float]:
        """``iterations`` meta-updates; returns the loss of each.

        Tasks come from ``tasks(index) -> Task`` (the learner takes each
        returned task: the Task object is closed, or copied if it is in use
        or in a set), or by default from the toy-regression stream ``seed``
        (default: the learner's seed) with ``k_shot``/``k_query`` points and
        the given ``families``. Training resumed later continues the same
        stream. ``progress``: True prints a progress line, a callable
        ``progress(iteration, total, loss)`` is called after every update
        (return True to stop early). Exceptions raised by ``tasks`` or
        ``progress`` (also KeyboardInterrupt) stop training and propagate.

        ``checkpoint``: a path; the state is saved there at the start, every
        ``every`` iterations (0: only at the end) and at the end, and a
        NaN/Inf loss, gradient or parameter stops training (NumericError
        naming the iteration) with the last good checkpoint kept and the
        learner at its last good state."""
        lp = self._p()
        iterations = as_int(iterations, "iterations", 0)
        ctx = self._ctx
        ctxp = ctx._p()
        errors = []
        if tasks is None:
            opts = regression_options(k_shot, k_query, families)
            s = self._opts.seed if seed is None else as_u64(seed, "seed")
            make = C.mnas_regression_task
            optp = ctypes.byref(opts)

            def source(user, index):
                try:
                    return make(ctxp, optp, s, index, -1)
                except BaseException as e:
                    errors.append(e)
                    return None
        elif callable(tasks):
            def source(user, index):
                try:
                    return self._give(tasks(index))
                except BaseException as e:
                    errors.append(e)
                    return None
        else:
            raise ArgumentTypeError("tasks must be None (toy regression) or callable(index) -> Task")

        losses = []
        printer = None
        if progress is True:
            phase = ("meta-train" if self._opts.method == METHOD_MAML else
                     "evaluation phase" if self.is_discrete else "search")
            printer = _ProgressPrinter("%s %s" % (self.method, phase), iterations,
                                       self._opts.meta_batch)
        elif progress and not callable(progress):
            raise ArgumentTypeError("progress must be a bool or callable(iteration, total, loss)")
        user_cb = progress if callable(progress) else None

        def on_progress(user, it, total, loss):
            try:
                losses.append(loss)
                if printer is not None:
                    printer(it, total, loss)
                if user_cb is not None and user_cb(it, total, loss):
                    return 1
                return 0
            except BaseException as e:
                errors.append(e)
                return 1

        src_cb = _lib.TASK_SOURCE_FN(source)
        prog_cb = _lib.PROGRESS_FN(on_progress)
        ctx.clear_error()
        if checkpoint is None:
            st = C.mnas_learner_train(lp, src_cb, None, iterations, prog_cb, None)
        else:
            st = C.mnas_learner_train_checkpointed(lp, src_cb, None, iterations, os.fsencode(checkpoint),
                                                   as_int(every, "every", 0), prog_cb, None)
        if errors:
            raise errors[0]
        ctx._check(st, "mnas_learner_train")
        return losses

    def evaluate(self, test_set: TaskSet, steps: Optional[int] = None,
                 label: Optional[str] = None) -> Evaluation:
        """Query losses of every task of ``test_set`` before and after
        adaptation (``steps`` SGD steps; default the training inner_steps).
        Returns an Evaluation (``print(result)`` shows the Table-1 layout)."""
        before, after = self._per_task(C.mnas_learner_evaluate, "mnas_learner_evaluate", test_set, steps)
        return Evaluation(test_set.families(), before, after,
                          label=self.method if label is None else label)

    def evaluate_accuracy(self, test_set: TaskSet,
                          steps: Optional[int] = None) -> Tuple[List[float], List[float]]:
        """Few-shot classification accuracy of every task of ``test_set``
        before and after adaptation (``steps`` SGD steps; default the
        training inner_steps): a pair of lists of floats in [0, 1].
        Classification learners only (``classes > 0``)."""
        before, after = self._per_task(C.mnas_learner_evaluate_accuracy, "mnas_learner_evaluate_accuracy",
                                       test_set, steps)
        return list(before), list(after)

    def _per_task(self, fn, name, test_set, steps):
        """Call ``fn(learner, set, steps, before, after)``: two arrays of a
        double per task of ``test_set``."""
        lp = self._p()
        if not isinstance(test_set, TaskSet):
            raise ArgumentTypeError("test_set must be an mnas.TaskSet")
        n = len(test_set)
        if n == 0:
            raise InvalidArgument("the test set is empty")
        before = (c_double * n)()
        after = (c_double * n)()
        st_steps = -1 if steps is None else as_int(steps, "steps", 0, 1000)
        self._ctx.clear_error()
        st = fn(lp, test_set._p(), st_steps, before, after)
        self._ctx._check(st, name)
        return before, after

    def adapt_predict(self, task: Task, x: Union[float, Sequence[float], Sequence[Sequence[float]]],
                      steps: Optional[int] = None) -> Union[List[float], List[List[float]]]:
        """Adapt to ``task``'s support set, then predict at the inputs ``x``
        (a sequence or float32 buffer of single-feature inputs). Returns a
        list of floats (lists of out_features floats per input when the
        model has several outputs)."""
        lp = self._p()
        if not isinstance(task, Task):
            raise ArgumentTypeError("task must be an mnas.Task")
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            x = [x]
        keep, addr, shape = float_buffer(x, None)
        n = 1
        for d in shape:
            n *= d
        out_f = self._opts.out_features
        y = (ctypes.c_float * (n * out_f))()
        st_steps = -1 if steps is None else as_int(steps, "steps", 0, 1000)
        self._ctx.clear_error()
        st = C.mnas_learner_adapt_predict(lp, task._p(), st_steps, n, addr, y)
        del keep
        self._ctx._check(st, "mnas_learner_adapt_predict")
        vals = list(y)
        if out_f == 1:
            return vals
        return [vals[i * out_f:(i + 1) * out_f] for i in range(n)]
