#!/usr/bin/env python3
"""An independent oracle for libmnas's autodiff: PyTorch in float64.

Every public differentiable op of include/mnas/autodiff.h, ~200 random
compositions of them and a second- and third-order MAML meta-gradient through
a Linear-ReLU-BN MLP (mnas_mlp_forward) and through the conv MAML's network
(mnas_convnet_forward: Winograd and direct convolutions, the fused
batch-norm + ReLU, max-pool) are computed by libmnas and by torch, and the
values and derivatives of orders 1, 2 and 3 must agree.

Precision. `mnas_real` is float32 in the shipped library; CMake also builds
the same sources with MNAS_REAL_IS_DOUBLE=1 (the test-only double build of
tests/test_f64_*.c). This test loads its shared form, libmnas_f64.so
(target mnas_f64_shared; path in MNAS_F64_LIBRARY, else found under
build/*/tests), through its own small ctypes layer (the package's `mnas`
binding speaks float32 only), and compares with torch in float64 at a
tolerance of 1e-8 of the scale (1 + the largest
reference entry; for derivatives, the largest of that order over all inputs). The per-op table runs
a second time on the float32 library (MNAS_LIBRARY, else build/*/libmnas.so.0)
against the same float64 torch reference, at a tolerance of 2e-3 of the
scale (orders 0-2; third derivatives of float32 values are left to the double
build), so float-only kernels are exercised as well.

The torch side is written independently of libmnas; batch-norm is written
out with its formula, because torch 1.13's own fused batch-norm has a wrong
third derivative (test_reference_batch_norm_third_order checks the formula
against central differences instead).

How derivatives are taken. For an op y = op(x1, ..., xk) the scalar is
    f = sum(c * y^2) + sum(d * y^3)      (c, d fixed random tensors)
so the gradient arriving at the op depends on its inputs (the case that
exposed the batch-norm double counting of issue 13). Then
    order 1: G = grad f
    order 2: H = grad <G, v>
    order 3: T = grad <H, w>
for fixed random directions v, w, each with respect to every differentiable
input. In libmnas each pass before the last is taken with create_graph; the
last pass is taken twice, recorded (create_graph=1) and not (create_graph=0,
where fused backward kernels run), and both must match torch.

What it cannot reach, and why:
  * derivatives with respect to integer arguments (cross_entropy's labels,
    gather/scatter/mix indices, kernel sizes, strides): not differentiable;
    mask_mul's mask is a constant by contract (its gradient is not defined
    by the library), so only x is differentiated;
  * relu at exactly 0 and max_pool2d at ties: not differentiable; the inputs
    are random, so no case sits on a kink (relu(NaN) is tested in
    test_autodiff.py);
  * mnas_detach, mnas_tape_tensor: no derivative to compare (detach is used
    inside one case, as torch's .detach());
  * the module forwards of nn.h / nas.h / meta.h other than mnas_mlp_forward
    and mnas_convnet_forward (search-space ops, cells, supernets, children, task encoder,
    controller, modulator, mnas_inner_loop): compositions of the ops above
    whose weight layouts are private, some with random or discrete parts
    (path dropout, straight-through discretisation); an independent torch
    model of each would be a re-implementation of the library, not an oracle.
    The ops they are made of are all covered here; mnas_mlp_forward and
    mnas_convnet_forward are covered by the MAML checks.
  * mnas_gradcheck: a checker, not an op.

Run by ctest as `python_torch_oracle` (exit code 77 = skipped when torch
cannot be imported or the double library is missing); directly:
    /usr/bin/python3 tests/python/test_torch_oracle.py -v
`python_bindings` (unittest discovery of this folder) skips this module.
"""

import ctypes
import glob
import math
import os
import random
import sys
import time
import unittest
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t, c_uint, c_void_p

SKIP_EXIT = 77
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

if __name__ != "__main__" and os.environ.get("MNAS_SKIP_TORCH_ORACLE"):
    raise unittest.SkipTest("the torch oracle runs as its own ctest (python_torch_oracle)")

try:
    import torch
    import torch.nn.functional as F
    _TORCH_ERROR = None
except Exception as e:  # ImportError, or a broken installation
    torch = None
    _TORCH_ERROR = e


def _find(env, patterns):
    path = os.environ.get(env)
    if path:
        return path
    for pat in patterns:
        hits = sorted(glob.glob(os.path.join(REPO, pat)))
        hits = [h for h in hits if "/asan/" not in h]
        if hits:
            return hits[0]
    return None


F64_LIBRARY = _find("MNAS_F64_LIBRARY", ["build/default/tests/libmnas_f64.so", "build/ci/tests/libmnas_f64.so",
                                         "build/*/tests/libmnas_f64.so"])
F32_LIBRARY = _find("MNAS_LIBRARY", ["build/default/libmnas.so.0", "build/ci/libmnas.so.0", "build/*/libmnas.so.0"])

# ---------------------------------------------------------------------------
# A minimal ctypes layer over either precision of the library
# ---------------------------------------------------------------------------

H = c_void_p
HP = POINTER(c_void_p)
I64P = POINTER(c_int64)

_SIGS = {
    "mnas_ctx_create": ([HP, c_void_p], c_int),
    "mnas_ctx_free": ([H], None),
    "mnas_tape_create": ([H, HP], c_int),
    "mnas_tape_free": ([H], None),
    "mnas_tape_reset": ([H], None),
    "mnas_tape_last_error": ([H], c_char_p),
    "mnas_tape_clear_error": ([H], None),
    "mnas_tape_tensor": ([H, c_int, I64P, c_void_p], H),
    "mnas_tensor_set_requires_grad": ([H, c_int], c_int),
    "mnas_tensor_requires_grad": ([H], c_int),
    "mnas_tensor_ndim": ([H], c_int),
    "mnas_tensor_shape": ([H, I64P], c_int),
    "mnas_tensor_size": ([H], c_int64),
    "mnas_tensor_data": ([H], c_void_p),
    "mnas_tensor_item": ([H], c_double),
    "mnas_grad": ([H, H, c_size_t, HP, HP, c_int], c_int),
    "mnas_detach": ([H, H], H),
    "mnas_axpy": ([H, c_double, H, H], H),
    "mnas_mix": ([H, H, c_size_t, HP, I64P], H),
    "mnas_scale": ([H, H, c_double], H),
    "mnas_add_scalar": ([H, H, c_double], H),
    "mnas_pow": ([H, H, c_double], H),
    "mnas_matmul": ([H, H, H, c_int, c_int], H),
    "mnas_linear": ([H, H, H, H], H),
    "mnas_sum_axis": ([H, H, c_int, c_int], H),
    "mnas_mean_axis": ([H, H, c_int, c_int], H),
    "mnas_sum_to": ([H, H, c_int, I64P], H),
    "mnas_broadcast_to": ([H, H, c_int, I64P], H),
    "mnas_reshape": ([H, H, c_int, I64P], H),
    "mnas_concat": ([H, c_size_t, HP, c_int], H),
    "mnas_slice": ([H, H, c_int, c_int64, c_int64], H),
    "mnas_gather_rows": ([H, H, c_size_t, I64P], H),
    "mnas_scatter_add_rows": ([H, H, c_size_t, I64P, c_int64], H),
    "mnas_pad_axis": ([H, H, c_int, c_int64, c_int64], H),
    "mnas_cross_entropy": ([H, H, c_size_t, POINTER(c_int32)], H),
    "mnas_mse": ([H, H, H], H),
    "mnas_batch_norm": ([H, H, H, H, c_double], H),
    "mnas_unfold": ([H, H, c_int, c_int, c_int, c_int, c_int], H),
    "mnas_fold": ([H, H, c_int64, c_int64, c_int64, c_int, c_int, c_int, c_int, c_int], H),
    "mnas_conv2d": ([H, H, H, H, c_int, c_int, c_int, c_int], H),
    "mnas_max_pool2d": ([H, H, c_int, c_int, c_int], H),
    "mnas_avg_pool2d": ([H, H, c_int, c_int, c_int], H),
    "mnas_global_avg_pool": ([H, H], H),
    "mnas_mlp_create": ([H, c_int, I64P, c_uint], H),
    "mnas_mlp_free": ([H], None),
    "mnas_mlp_num_params": ([H], c_size_t),
    "mnas_mlp_forward": ([H, H, H, H, HP], H),
    "mnas_convnet_create": ([H, c_int64, c_int64, c_int64, c_int64, c_int64], H),
    "mnas_convnet_free": ([H], None),
    "mnas_convnet_num_params": ([H], c_size_t),
    "mnas_convnet_forward": ([H, H, H, HP], H),
}
for _n in ("add", "sub", "mul", "div", "mask_mul"):
    _SIGS["mnas_" + _n] = ([H, H, H], H)
for _n in ("neg", "relu", "sigmoid", "tanh", "exp", "log", "sqrt", "square", "transpose", "sum", "mean",
           "softmax", "log_softmax"):
    _SIGS["mnas_" + _n] = ([H, H], H)


class Lib:
    """One loaded copy of libmnas (float or double) with its own context."""

    def __init__(self, path, real):
        self.path = path
        self.real = real
        self.c = ctypes.CDLL(path)
        for name, (args, res) in _SIGS.items():
            fn = getattr(self.c, name)
            fn.argtypes = args
            fn.restype = res
        self.c.mnas_mlp_forward.argtypes = [H, H, H, HP]
        ctx = c_void_p()
        if self.c.mnas_ctx_create(ctypes.byref(ctx), None) != 0:
            raise RuntimeError("mnas_ctx_create failed")
        self.ctx = ctx
        tape = c_void_p()
        if self.c.mnas_tape_create(self.ctx, ctypes.byref(tape)) != 0:
            raise RuntimeError("mnas_tape_create failed")
        self.tape = tape
        # The precision must be the one we were told: 0.1 round-trips exactly
        # only through a buffer of the right type.
        t = self.from_list([0.1], (1,))
        if self.c.mnas_tensor_item(t) != float(real(0.1).value):
            raise RuntimeError("%s does not hold %s" % (path, real.__name__))
        self.c.mnas_tape_reset(self.tape)

    def close(self):
        self.c.mnas_tape_free(self.tape)
        self.c.mnas_ctx_free(self.ctx)

    def from_list(self, values, shape, requires_grad=False):
        buf = (self.real * max(1, len(values)))(*values)
        shp = (c_int64 * max(1, len(shape)))(*shape)
        t = self.c.mnas_tape_tensor(self.tape, len(shape), shp, buf)
        if not t:
            raise RuntimeError(self.c.mnas_tape_last_error(self.tape).decode())
        if requires_grad:
            self.c.mnas_tensor_set_requires_grad(t, 1)
        return t

    def shape(self, t):
        nd = self.c.mnas_tensor_ndim(t)
        s = (c_int64 * 4)()
        self.c.mnas_tensor_shape(t, s)
        return tuple(s[i] for i in range(nd))

    def values(self, t):
        n = self.c.mnas_tensor_size(t)
        p = self.c.mnas_tensor_data(t)
        return list((self.real * n).from_address(p))


class OpError(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# Two backends with the same (libmnas) semantics: libmnas itself, and torch
# ---------------------------------------------------------------------------

class MnasB:
    """The op set of autodiff.h on a libmnas tape."""

    def __init__(self, lib):
        self.L = lib
        self.c = lib.c
        self.tp = lib.tape

    def _ok(self, t, what):
        if not t:
            msg = self.c.mnas_tape_last_error(self.tp)
            self.c.mnas_tape_clear_error(self.tp)
            raise OpError("%s: %s" % (what, msg.decode() if msg else "NULL"))
        return t

    @staticmethod
    def _shape(shape):
        return len(shape), (c_int64 * max(1, len(shape)))(*shape)

    def const(self, t):
        return self.L.from_list(t.reshape(-1).tolist(), tuple(t.shape))

    def leaf(self, t):
        return self.L.from_list(t.reshape(-1).tolist(), tuple(t.shape), requires_grad=True)

    def to_torch(self, t):
        return torch.tensor(self.L.values(t), dtype=torch.float64)

    def shape(self, t):
        return self.L.shape(t)

    def grad(self, y, xs, create_graph):
        n = len(xs)
        ins = (c_void_p * n)(*xs)
        outs = (c_void_p * n)()
        st = self.c.mnas_grad(self.tp, y, n, ins, outs, 1 if create_graph else 0)
        if st != 0:
            msg = self.c.mnas_tape_last_error(self.tp)
            self.c.mnas_tape_clear_error(self.tp)
            raise OpError("mnas_grad: status %d: %s" % (st, msg.decode() if msg else ""))
        return [outs[i] for i in range(n)]

    def __getattr__(self, name):
        fn = getattr(self.c, "mnas_" + name)

        def call(*args):
            return self._ok(fn(self.tp, *args), name)
        return call

    # ops whose arguments need converting
    def mix(self, alpha, ys, idx):
        n = len(ys)
        return self._ok(self.c.mnas_mix(self.tp, alpha, n, (c_void_p * n)(*ys), (c_int64 * n)(*idx)), "mix")

    def matmul(self, a, b, ta=0, tb=0):
        return self._ok(self.c.mnas_matmul(self.tp, a, b, ta, tb), "matmul")

    def linear(self, x, w, b=None):
        return self._ok(self.c.mnas_linear(self.tp, x, w, b), "linear")

    def sum_to(self, x, shape):
        return self._ok(self.c.mnas_sum_to(self.tp, x, *self._shape(shape)), "sum_to")

    def broadcast_to(self, x, shape):
        return self._ok(self.c.mnas_broadcast_to(self.tp, x, *self._shape(shape)), "broadcast_to")

    def reshape(self, x, shape):
        return self._ok(self.c.mnas_reshape(self.tp, x, *self._shape(shape)), "reshape")

    def concat(self, xs, axis):
        n = len(xs)
        return self._ok(self.c.mnas_concat(self.tp, n, (c_void_p * n)(*xs), axis), "concat")

    def gather_rows(self, x, idx):
        n = len(idx)
        return self._ok(self.c.mnas_gather_rows(self.tp, x, n, (c_int64 * n)(*idx)), "gather_rows")

    def scatter_add_rows(self, x, idx, rows):
        n = len(idx)
        return self._ok(self.c.mnas_scatter_add_rows(self.tp, x, n, (c_int64 * n)(*idx), rows), "scatter_add_rows")

    def cross_entropy(self, x, labels):
        n = len(labels)
        return self._ok(self.c.mnas_cross_entropy(self.tp, x, n, (c_int32 * n)(*labels)), "cross_entropy")

    def batch_norm(self, x, g, b, eps):
        return self._ok(self.c.mnas_batch_norm(self.tp, x, g, b, eps), "batch_norm")

    def conv2d(self, x, w, b, s, p, d, g):
        return self._ok(self.c.mnas_conv2d(self.tp, x, w, b, s, p, d, g), "conv2d")


class TorchB:
    """The same semantics written with torch (float64), independently of libmnas."""

    def const(self, t):
        return t.detach().clone()

    def leaf(self, t):
        return t.detach().clone().requires_grad_(True)

    def to_torch(self, t):
        return t.detach().reshape(-1)

    def shape(self, t):
        return tuple(t.shape)

    def grad(self, y, xs, create_graph):
        if not y.requires_grad:
            return [torch.zeros_like(x) for x in xs]
        gs = torch.autograd.grad(y, xs, create_graph=create_graph, allow_unused=True)
        return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, xs)]

    add = staticmethod(lambda a, b: a + b)
    sub = staticmethod(lambda a, b: a - b)
    mul = staticmethod(lambda a, b: a * b)
    div = staticmethod(lambda a, b: a / b)
    mask_mul = staticmethod(lambda x, m: x * m)
    axpy = staticmethod(lambda alpha, x, y: alpha * x + y)
    neg = staticmethod(lambda x: -x)
    scale = staticmethod(lambda x, s: x * s)
    add_scalar = staticmethod(lambda x, c: x + c)
    relu = staticmethod(torch.relu if torch else None)
    sigmoid = staticmethod(torch.sigmoid if torch else None)
    tanh = staticmethod(torch.tanh if torch else None)
    exp = staticmethod(torch.exp if torch else None)
    log = staticmethod(torch.log if torch else None)
    sqrt = staticmethod(torch.sqrt if torch else None)
    pow = staticmethod(lambda x, p: x ** p)
    square = staticmethod(lambda x: x * x)
    transpose = staticmethod(lambda x: x.transpose(-1, -2))
    sum = staticmethod(lambda x: x.sum())
    mean = staticmethod(lambda x: x.mean())
    sum_axis = staticmethod(lambda x, a, k: x.sum(dim=a, keepdim=bool(k)))
    mean_axis = staticmethod(lambda x, a, k: x.mean(dim=a, keepdim=bool(k)))
    reshape = staticmethod(lambda x, s: x.reshape(s))
    broadcast_to = staticmethod(lambda x, s: x.expand(s))
    concat = staticmethod(lambda xs, a: torch.cat(xs, a))
    slice = staticmethod(lambda x, a, s, n: x.narrow(a, s, n))
    softmax = staticmethod(lambda x: torch.softmax(x, -1))
    log_softmax = staticmethod(lambda x: torch.log_softmax(x, -1))
    mse = staticmethod(lambda a, b: ((a - b) ** 2).mean())
    global_avg_pool = staticmethod(lambda x: x.mean(dim=(2, 3)))
    detach = staticmethod(lambda x: x.detach())

    @staticmethod
    def mix(alpha, ys, idx):
        flat = alpha.reshape(-1)
        out = flat[idx[0]] * ys[0]
        for k in range(1, len(ys)):
            out = out + flat[idx[k]] * ys[k]
        return out

    @staticmethod
    def matmul(a, b, ta=0, tb=0):
        return (a.t() if ta else a) @ (b.t() if tb else b)

    @staticmethod
    def linear(x, w, b=None):
        return F.linear(x, w, b)

    @staticmethod
    def sum_to(x, shape):
        while x.dim() > len(shape):
            x = x.sum(0)
        for i, s in enumerate(shape):
            if s == 1 and x.shape[i] != 1:
                x = x.sum(i, keepdim=True)
        return x

    @staticmethod
    def gather_rows(x, idx):
        return x.index_select(0, torch.tensor(idx, dtype=torch.long))

    @staticmethod
    def scatter_add_rows(x, idx, rows):
        z = torch.zeros((rows,) + tuple(x.shape[1:]), dtype=x.dtype)
        return z.index_add(0, torch.tensor(idx, dtype=torch.long), x)

    @staticmethod
    def pad_axis(x, axis, start, full):
        shp = list(x.shape)
        parts = []
        if start > 0:
            shp[axis] = start
            parts.append(torch.zeros(shp, dtype=x.dtype))
        parts.append(x)
        after = full - start - x.shape[axis]
        if after > 0:
            shp[axis] = after
            parts.append(torch.zeros(shp, dtype=x.dtype))
        return torch.cat(parts, axis)

    @staticmethod
    def cross_entropy(x, labels):
        return F.cross_entropy(x, torch.tensor(labels, dtype=torch.long))

    @staticmethod
    def batch_norm(x, g, b, eps):
        # batch statistics, biased variance; per feature of [N, F], per channel of [N, C, H, W].
        # Written out rather than F.batch_norm: torch 1.13's fused batch-norm
        # has a wrong third derivative with respect to x (off by ~60 where
        # central differences of this formula agree to 1e-9; see
        # test_reference_batch_norm_third_order).
        dims = (0,) if x.dim() == 2 else (0, 2, 3)
        shape = (1, -1) if x.dim() == 2 else (1, -1, 1, 1)
        mu = x.mean(dim=dims, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
        y = (x - mu) / torch.sqrt(var + eps)
        if g is not None:
            y = y * g.reshape(shape)
        if b is not None:
            y = y + b.reshape(shape)
        return y

    @staticmethod
    def unfold(x, kh, kw, s, p, d):
        return F.unfold(x, (kh, kw), dilation=d, padding=p, stride=s)

    @staticmethod
    def fold(cols, C, Hh, W, kh, kw, s, p, d):
        return F.fold(cols, (Hh, W), (kh, kw), dilation=d, padding=p, stride=s)

    @staticmethod
    def conv2d(x, w, b, s, p, d, g):
        return F.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)

    @staticmethod
    def max_pool2d(x, k, s, p):
        # windows of the (-inf)-padded input, the maximum of each picked by a
        # gather: differentiable to any order (the argmax is a constant)
        n, c, hh, ww = x.shape
        xp = F.pad(x, (p, p, p, p), value=float("-inf"))
        cols = F.unfold(xp.reshape(n * c, 1, hh + 2 * p, ww + 2 * p), (k, k), stride=s)  # [NC, k*k, L]
        idx = cols.detach().argmax(dim=1, keepdim=True)
        out = cols.gather(1, idx)
        oh = (hh + 2 * p - k) // s + 1
        ow = (ww + 2 * p - k) // s + 1
        return out.reshape(n, c, oh, ow)

    @staticmethod
    def avg_pool2d(x, k, s, p):
        return F.avg_pool2d(x, k, s, p, count_include_pad=False)


# ---------------------------------------------------------------------------
# Running one function through both backends, orders 0-3
# ---------------------------------------------------------------------------

def _objective(B, y, c, d):
    yy = B.square(y)
    return B.add(B.sum(B.mul(c, yy)), B.sum(B.mul(d, B.mul(yy, y))))


def _dot(B, gs, vs):
    acc = None
    for g, v in zip(gs, vs):
        t = B.sum(B.mul(g, v))
        acc = t if acc is None else B.add(acc, t)
    return acc


class Probe:
    """Inputs and random constants for one function: c, d of the output's
    shape (set after a first torch run), directions v, w per input."""

    def __init__(self, gen, inputs, out_shape):
        self.inputs = inputs
        n = 1
        for s in out_shape:
            n *= s
        self.c = _r32(torch.randn(n, generator=gen, dtype=torch.float64))
        self.d = _r32(0.3 * torch.randn(n, generator=gen, dtype=torch.float64))
        self.v = [_r32(torch.randn(x.shape, generator=gen, dtype=torch.float64)) for x in inputs]
        self.w = [_r32(torch.randn(x.shape, generator=gen, dtype=torch.float64)) for x in inputs]


def _r32(t):
    """Round to float32 values so that both libraries see the same numbers."""
    return t.float().double()


def run_backend(B, fn, probe, order):
    """Value, objective and derivatives of orders 1..order; each pass but the
    last recorded, the last one both recorded and (libmnas only) not."""
    X = [B.leaf(x) for x in probe.inputs]
    y = fn(B, X)
    shp = B.shape(y)
    c = B.const(probe.c.reshape(shp))
    d = B.const(probe.d.reshape(shp))
    f = _objective(B, y, c, d)
    out = {"value": B.to_torch(y), "objective": B.to_torch(f)}
    torch_side = isinstance(B, TorchB)
    cur = f
    dirs = [None, probe.v, probe.w]
    for k in range(1, order + 1):
        last = k == order
        gs = B.grad(cur, X, create_graph=not (torch_side and last))
        out[(k, "recorded")] = [B.to_torch(g) for g in gs]
        if not torch_side:
            gs0 = B.grad(cur, X, create_graph=False)
            out[(k, "unrecorded")] = [B.to_torch(g) for g in gs0]
        if not last:
            cur = _dot(B, gs, [B.const(v) for v in dirs[k]])
    return out


def compare(ref, got, rtol, scale=None):
    """Largest |got - ref| in units of rtol * (1 + scale); <= 1 passes. The
    scale is max|ref| unless given: the derivatives of one order with respect
    to all inputs share one (the largest), since rounding error follows the
    size of the terms computed, and a derivative that is 0 by cancellation
    (a bias in front of batch-norm) carries the noise of the others."""
    ref = ref.reshape(-1)
    got = got.reshape(-1)
    if ref.numel() != got.numel():
        return float("inf")
    if ref.numel() == 0:
        return 0.0
    scale = 1.0 + (float(ref.abs().max()) if scale is None else scale)
    diff = (got - ref).abs()
    if bool(torch.isnan(diff).any()):
        return float("inf")
    return float(diff.max()) / (rtol * scale)


def check(name, fn, inputs, seed, mlib, order, rtol):
    """Compare libmnas with torch on fn; return a list of failure strings."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y0 = fn(TORCH, [x.clone() for x in inputs])
    probe = Probe(gen, inputs, tuple(y0.shape))
    ref = run_backend(TORCH, fn, probe, order)
    mb = MnasB(mlib)
    fails = []
    try:
        got = run_backend(mb, fn, probe, order)
    except OpError as e:
        mlib.c.mnas_tape_reset(mlib.tape)
        return ["%s: libmnas error: %s" % (name, e)], 0.0
    worst = 0.0
    for key in ("value", "objective"):
        e = compare(ref[key], got[key], rtol)
        worst = max(worst, e)
        if e > 1:
            fails.append("%s: %s off by %.3g tolerances" % (name, key, e))
    for k in range(1, order + 1):
        scale = max(float(r.abs().max()) if r.numel() else 0.0 for r in ref[(k, "recorded")])
        for mode in ("recorded", "unrecorded"):
            for i, (r, g) in enumerate(zip(ref[(k, "recorded")], got[(k, mode)])):
                e = compare(r, g, rtol, scale)
                worst = max(worst, e)
                if e > 1:
                    fails.append("%s: order %d (%s last pass), input %d off by %.3g tolerances"
                                 % (name, k, mode, i, e))
    mlib.c.mnas_tape_reset(mlib.tape)
    return fails, worst


TORCH = TorchB() if torch else None

# ---------------------------------------------------------------------------
# The op table: every public differentiable op of autodiff.h
# ---------------------------------------------------------------------------


def _case_inputs(seed, specs):
    """specs: list of (shape, kind) with kind 'n' (normal), 'p' (positive,
    in [0.5, 2]) or 'a' (normal, |x| >= 0.1: away from relu's kink)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape, kind in specs:
        if kind == "p":
            t = 0.5 + 1.5 * torch.rand(shape, generator=g, dtype=torch.float64)
        else:
            t = torch.randn(shape, generator=g, dtype=torch.float64)
            if kind == "a":
                t = torch.where(t.abs() < 0.1, t.sign() * 0.1 + t, t)
        out.append(_r32(t))
    return out


def _mask(shape):
    g = torch.Generator().manual_seed(99)
    return _r32(torch.randint(0, 3, shape, generator=g).double() * 0.5)


def op_cases():
    """(name, fn(B, X), input specs). Shapes are small; every op appears with
    the arguments that select its different code paths."""
    C = []

    def add(name, fn, specs):
        C.append((name, fn, specs))

    n = "n"
    # elementwise, broadcasting
    add("add", lambda B, X: B.add(X[0], X[1]), [((3, 4), n), ((3, 4), n)])
    add("add_broadcast_row", lambda B, X: B.add(X[0], X[1]), [((3, 4), n), ((4,), n)])
    add("sub_broadcast_3d", lambda B, X: B.sub(X[0], X[1]), [((2, 3, 4), n), ((3, 1), n)])
    add("sub_broadcast_left", lambda B, X: B.sub(X[0], X[1]), [((1, 4), n), ((3, 1), n)])
    add("mul", lambda B, X: B.mul(X[0], X[1]), [((3, 4), n), ((3, 4), n)])
    add("mul_broadcast_4d", lambda B, X: B.mul(X[0], X[1]), [((2, 3, 2, 2), n), ((3, 1, 1), n)])
    add("mul_scalar_tensor", lambda B, X: B.mul(X[0], X[1]), [((3, 4), n), ((1,), n)])
    add("div", lambda B, X: B.div(X[0], X[1]), [((3, 4), n), ((3, 4), "p")])
    add("div_broadcast", lambda B, X: B.div(X[0], X[1]), [((3, 4), "p"), ((4,), n)])
    mask = _mask((3, 4))
    add("mask_mul", lambda B, X: B.mask_mul(X[0], B.const(mask)), [((3, 4), n)])
    add("axpy", lambda B, X: B.axpy(-0.7, X[0], X[1]), [((3, 4), n), ((3, 4), n)])
    # unary
    add("neg", lambda B, X: B.neg(X[0]), [((3, 4), n)])
    add("scale", lambda B, X: B.scale(X[0], -1.3), [((3, 4), n)])
    add("add_scalar", lambda B, X: B.add_scalar(X[0], 0.4), [((3, 4), n)])
    add("relu", lambda B, X: B.relu(X[0]), [((3, 4), "a")])
    add("sigmoid", lambda B, X: B.sigmoid(X[0]), [((3, 4), n)])
    add("tanh", lambda B, X: B.tanh(X[0]), [((3, 4), n)])
    add("exp", lambda B, X: B.exp(X[0]), [((3, 4), n)])
    add("log", lambda B, X: B.log(X[0]), [((3, 4), "p")])
    add("sqrt", lambda B, X: B.sqrt(X[0]), [((3, 4), "p")])
    add("pow_2.5", lambda B, X: B.pow(X[0], 2.5), [((3, 4), "p")])
    add("pow_-1.5", lambda B, X: B.pow(X[0], -1.5), [((3, 4), "p")])
    add("pow_3_negative_base", lambda B, X: B.pow(X[0], 3.0), [((3, 4), "a")])
    add("square", lambda B, X: B.square(X[0]), [((3, 4), n)])
    add("detach_product", lambda B, X: B.mul(X[0], B.detach(X[0])), [((3, 4), n)])
    # mix
    add("mix", lambda B, X: B.mix(X[0], [X[1], X[2], X[3]], [0, 4, 5]),
        [((2, 3), n), ((2, 4), n), ((2, 4), n), ((2, 4), n)])
    add("mix_repeated_index", lambda B, X: B.mix(X[0], [X[1], X[2], X[3]], [1, 1, 2]),
        [((3,), n), ((2, 2, 3), n), ((2, 2, 3), n), ((2, 2, 3), n)])
    add("mix_same_input_twice", lambda B, X: B.mix(X[0], [X[1], X[1]], [0, 1]), [((2,), n), ((3, 4), n)])
    # linear algebra
    add("matmul", lambda B, X: B.matmul(X[0], X[1]), [((3, 4), n), ((4, 5), n)])
    add("matmul_ta", lambda B, X: B.matmul(X[0], X[1], 1, 0), [((4, 3), n), ((4, 5), n)])
    add("matmul_tb", lambda B, X: B.matmul(X[0], X[1], 0, 1), [((3, 4), n), ((5, 4), n)])
    add("matmul_ta_tb", lambda B, X: B.matmul(X[0], X[1], 1, 1), [((4, 3), n), ((5, 4), n)])
    add("linear_bias", lambda B, X: B.linear(X[0], X[1], X[2]), [((5, 4), n), ((3, 4), n), ((3,), n)])
    add("linear_no_bias", lambda B, X: B.linear(X[0], X[1]), [((5, 4), n), ((3, 4), n)])
    add("transpose_2d", lambda B, X: B.transpose(X[0]), [((3, 4), n)])
    add("transpose_4d", lambda B, X: B.transpose(X[0]), [((2, 2, 3, 4), n)])
    # reductions and shape
    add("sum", lambda B, X: B.sum(X[0]), [((3, 4), n)])
    add("mean", lambda B, X: B.mean(X[0]), [((2, 3, 4), n)])
    add("sum_axis0", lambda B, X: B.sum_axis(X[0], 0, 0), [((2, 3, 4), n)])
    add("sum_axis1_keepdim", lambda B, X: B.sum_axis(X[0], 1, 1), [((2, 3, 4), n)])
    add("sum_axis_last", lambda B, X: B.sum_axis(X[0], 2, 0), [((2, 3, 4), n)])
    add("mean_axis1", lambda B, X: B.mean_axis(X[0], 1, 0), [((2, 3, 4), n)])
    add("mean_axis0_keepdim", lambda B, X: B.mean_axis(X[0], 0, 1), [((3, 4), n)])
    add("sum_to", lambda B, X: B.sum_to(X[0], (3, 1)), [((2, 3, 4), n)])
    add("sum_to_same_rank", lambda B, X: B.sum_to(X[0], (1, 4)), [((3, 4), n)])
    add("broadcast_to", lambda B, X: B.broadcast_to(X[0], (2, 3, 4)), [((3, 1), n)])
    add("reshape", lambda B, X: B.reshape(X[0], (6, 4)), [((2, 3, 4), n)])
    add("concat_axis1", lambda B, X: B.concat([X[0], X[1], X[2]], 1), [((2, 1, 3), n), ((2, 2, 3), n), ((2, 3, 3), n)])
    add("concat_axis0_repeated", lambda B, X: B.concat([X[0], X[1], X[0]], 0), [((2, 3), n), ((1, 3), n)])
    add("concat_channels_4d", lambda B, X: B.concat([X[0], X[1]], 1), [((2, 2, 3, 3), n), ((2, 1, 3, 3), n)])
    add("slice", lambda B, X: B.slice(X[0], 1, 1, 2), [((2, 4, 3), n)])
    add("slice_last_axis", lambda B, X: B.slice(X[0], 1, 2, 3), [((3, 6), n)])
    add("gather_rows", lambda B, X: B.gather_rows(X[0], [2, 0, 2, 1]), [((3, 4), n)])
    add("scatter_add_rows", lambda B, X: B.scatter_add_rows(X[0], [1, 3, 1], 5), [((3, 2, 2), n)])
    add("pad_axis", lambda B, X: B.pad_axis(X[0], 1, 2, 6), [((2, 3, 2), n)])
    add("pad_axis0", lambda B, X: B.pad_axis(X[0], 0, 0, 4), [((2, 3), n)])
    # neural-network ops
    add("softmax", lambda B, X: B.softmax(X[0]), [((3, 5), n)])
    add("softmax_3d", lambda B, X: B.softmax(X[0]), [((2, 2, 4), n)])
    add("log_softmax", lambda B, X: B.log_softmax(X[0]), [((3, 5), n)])
    add("cross_entropy", lambda B, X: B.cross_entropy(X[0], [1, 0, 4, 4]), [((4, 5), n)])
    add("mse", lambda B, X: B.mse(X[0], X[1]), [((3, 4), n), ((3, 4), n)])
    add("batch_norm_2d_affine", lambda B, X: B.batch_norm(X[0], X[1], X[2], 1e-5),
        [((5, 3), n), ((3,), n), ((3,), n)])
    add("batch_norm_2d_plain", lambda B, X: B.batch_norm(X[0], None, None, 1e-5), [((5, 3), n)])
    add("batch_norm_2d_gamma_only", lambda B, X: B.batch_norm(X[0], X[1], None, 1e-3), [((4, 2), n), ((2,), n)])
    add("batch_norm_2d_beta_only", lambda B, X: B.batch_norm(X[0], None, X[1], 1e-5), [((4, 2), n), ((2,), n)])
    add("batch_norm_4d_affine", lambda B, X: B.batch_norm(X[0], X[1], X[2], 1e-5),
        [((3, 2, 3, 2), n), ((2,), n), ((2,), n)])
    add("batch_norm_4d_plain", lambda B, X: B.batch_norm(X[0], None, None, 1e-5), [((2, 3, 2, 2), n)])
    # convolution and pooling
    add("unfold", lambda B, X: B.unfold(X[0], 3, 2, 2, 1, 1), [((2, 2, 5, 6), n)])
    add("unfold_dilated", lambda B, X: B.unfold(X[0], 2, 2, 1, 2, 2), [((1, 2, 4, 4), n)])
    add("fold", lambda B, X: B.fold(X[0], 2, 5, 6, 3, 2, 2, 1, 1), [((2, 12, 12), n)])
    add("fold_dilated", lambda B, X: B.fold(X[0], 1, 4, 4, 2, 2, 1, 2, 2), [((1, 4, 36), n)])
    add("conv2d_s2_p1_g2_bias", lambda B, X: B.conv2d(X[0], X[1], X[2], 2, 1, 1, 2),
        [((2, 4, 6, 5), n), ((6, 2, 3, 3), n), ((6,), n)])
    add("conv2d_dil2_p2_nobias", lambda B, X: B.conv2d(X[0], X[1], None, 1, 2, 2, 1),
        [((2, 3, 5, 5), n), ((2, 3, 3, 3), n)])
    add("conv2d_1x1", lambda B, X: B.conv2d(X[0], X[1], X[2], 1, 0, 1, 1),
        [((2, 3, 4, 4), n), ((5, 3, 1, 1), n), ((5,), n)])
    add("conv2d_nonsquare_kernel", lambda B, X: B.conv2d(X[0], X[1], X[2], 1, 1, 1, 1),
        [((1, 2, 4, 5), n), ((3, 2, 2, 3), n), ((3,), n)])
    add("conv2d_depthwise_s1_p1", lambda B, X: B.conv2d(X[0], X[1], X[2], 1, 1, 1, 3),
        [((2, 3, 5, 5), n), ((3, 1, 3, 3), n), ((3,), n)])
    add("conv2d_depthwise_s2_d2", lambda B, X: B.conv2d(X[0], X[1], None, 2, 2, 2, 3),
        [((2, 3, 6, 6), n), ((3, 1, 3, 3), n)])
    add("conv2d_depthwise_5x5_d2", lambda B, X: B.conv2d(X[0], X[1], None, 1, 4, 2, 2),
        [((1, 2, 6, 6), n), ((2, 1, 5, 5), n)])
    add("max_pool2d_k3_s1_p1", lambda B, X: B.max_pool2d(X[0], 3, 1, 1), [((2, 2, 4, 4), n)])
    add("max_pool2d_k2_s2", lambda B, X: B.max_pool2d(X[0], 2, 2, 0), [((2, 2, 4, 5), n)])
    add("max_pool2d_k3_s2_p1", lambda B, X: B.max_pool2d(X[0], 3, 2, 1), [((1, 2, 5, 5), n)])
    add("avg_pool2d_k3_s1_p1", lambda B, X: B.avg_pool2d(X[0], 3, 1, 1), [((2, 2, 4, 4), n)])
    add("avg_pool2d_k2_s2", lambda B, X: B.avg_pool2d(X[0], 2, 2, 0), [((2, 2, 4, 5), n)])
    add("avg_pool2d_k3_s2_p1", lambda B, X: B.avg_pool2d(X[0], 3, 2, 1), [((1, 2, 5, 5), n)])
    add("global_avg_pool", lambda B, X: B.global_avg_pool(X[0]), [((2, 3, 3, 2), n)])
    return C


# The ops of autodiff.h each case above reaches (checked to be complete).
PUBLIC_OPS = """add sub mul div mask_mul axpy neg scale add_scalar relu sigmoid tanh exp log sqrt pow square
mix matmul linear transpose sum mean sum_axis mean_axis sum_to broadcast_to reshape concat slice
gather_rows scatter_add_rows pad_axis softmax log_softmax cross_entropy mse batch_norm unfold fold
conv2d max_pool2d avg_pool2d global_avg_pool detach""".split()

# ---------------------------------------------------------------------------
# Random graphs
# ---------------------------------------------------------------------------


class Graph:
    """A random composition of 3-8 ops, as a program both backends run."""

    def __init__(self, seed):
        rnd = random.Random(seed)
        self.seed = seed
        self.specs = []   # input specs (shape, kind)
        self.prog = []    # (op name, argument description)
        self.names = []
        image = rnd.random() < 0.4
        if image:
            shape = (2, rnd.choice([2, 3, 4]), rnd.choice([4, 5]), rnd.choice([4, 5]))
        else:
            shape = (rnd.choice([3, 4, 5]), rnd.choice([2, 3, 4]))
        self.nodes = [shape]               # node 0: the first input
        self.specs.append((shape, "n"))
        self.input_of_node = {0: 0}
        self.steps = []
        n_ops = rnd.randint(3, 8)
        while len(self.steps) < n_ops:
            step = self._pick(rnd)
            if step is not None:
                self.steps.append(step)

    def _new_input(self, shape, kind="n"):
        self.specs.append((tuple(shape), kind))
        return ("in", len(self.specs) - 1)

    def _same_shape_nodes(self, shape):
        return [i for i, s in enumerate(self.nodes) if s == shape]

    def _pick(self, rnd):
        cur = len(self.nodes) - 1
        s = self.nodes[cur]
        nd = len(s)
        choices = ["unary", "unary", "binary_node", "binary_param", "axpy", "mask"]
        if nd == 2:
            choices += ["linear", "matmul", "bn", "bn", "softmax", "log_softmax", "transpose", "sum_axis",
                        "concat", "slice", "gather", "scatter", "pad", "mix", "reshape"]
        elif nd == 4:
            choices += ["conv", "conv", "bn", "bn", "maxpool", "avgpool", "gap", "unfold", "concat", "slice",
                        "mix", "transpose"]
        else:
            choices += ["softmax", "sum_axis", "slice", "mix"]
        kind = rnd.choice(choices)
        out = None
        arg = None
        if kind == "unary":
            u = rnd.choice(["relu", "sigmoid", "tanh", "exp_tanh", "log1p2", "sqrt1p2", "pow1p2", "square_half",
                            "neg", "scale", "add_scalar"])
            arg = (u, round(rnd.uniform(-1.5, 1.5), 3))
            out = s
        elif kind == "binary_node":
            others = self._same_shape_nodes(s)
            other = rnd.choice(others)
            arg = (rnd.choice(["add", "sub", "mul", "div_safe"]), other)
            out = s
        elif kind == "binary_param":
            pshape = [1] * nd
            pshape[-1] = s[-1]
            if nd == 4 and rnd.random() < 0.5:
                pshape = [s[1], 1, 1]
            elif rnd.random() < 0.5:
                pshape = pshape[1:]
            arg = (rnd.choice(["add", "sub", "mul"]), self._new_input(pshape))
            out = s
        elif kind == "axpy":
            arg = (round(rnd.uniform(-1, 1), 3), rnd.choice(self._same_shape_nodes(s)))
            out = s
        elif kind == "mask":
            arg = _r32(torch.randint(0, 3, s, generator=torch.Generator().manual_seed(rnd.randint(0, 1 << 30))
                                     ).double() * 0.5)
            out = s
        elif kind == "linear":
            o = rnd.choice([2, 3, 4])
            w = self._new_input((o, s[1]))
            b = self._new_input((o,)) if rnd.random() < 0.6 else None
            arg = (w, b)
            out = (s[0], o)
        elif kind == "matmul":
            o = rnd.choice([2, 3, 4])
            tb = rnd.random() < 0.5
            w = self._new_input((o, s[1]) if tb else (s[1], o))
            arg = (w, tb)
            out = (s[0], o)
        elif kind == "bn":
            C = s[1]
            g = self._new_input((C,)) if rnd.random() < 0.6 else None
            b = self._new_input((C,)) if rnd.random() < 0.6 else None
            if (nd == 2 and s[0] < 2):
                return None
            arg = (g, b)
            out = s
        elif kind in ("softmax", "log_softmax"):
            out = s
        elif kind == "transpose":
            out = s[:-2] + (s[-1], s[-2])
        elif kind == "sum_axis":
            ax = rnd.randrange(nd)
            arg = (ax, rnd.choice(["sum", "mean"]))
            out = s[:ax] + (1,) + s[ax + 1:]
        elif kind == "concat":
            ax = 1
            others = [i for i, t in enumerate(self.nodes) if len(t) == nd and t[:ax] == s[:ax] and t[ax + 1:] == s[ax + 1:]]
            other = rnd.choice(others)
            arg = (ax, other)
            out = s[:ax] + (s[ax] + self.nodes[other][ax],) + s[ax + 1:]
        elif kind == "slice":
            ax = rnd.randrange(1, nd) if nd > 1 else 0
            if s[ax] < 2:
                return None
            ln = rnd.randint(1, s[ax] - 1)
            st = rnd.randint(0, s[ax] - ln)
            arg = (ax, st, ln)
            out = s[:ax] + (ln,) + s[ax + 1:]
        elif kind == "gather":
            idx = [rnd.randrange(s[0]) for _ in range(rnd.randint(2, 5))]
            arg = idx
            out = (len(idx),) + s[1:]
        elif kind == "scatter":
            rows = rnd.randint(2, 5)
            idx = [rnd.randrange(rows) for _ in range(s[0])]
            arg = (idx, rows)
            out = (rows,) + s[1:]
        elif kind == "pad":
            ax = rnd.randrange(nd)
            full = s[ax] + rnd.randint(1, 3)
            st = rnd.randint(0, full - s[ax])
            arg = (ax, st, full)
            out = s[:ax] + (full,) + s[ax + 1:]
        elif kind == "mix":
            others = self._same_shape_nodes(s)
            ys = [cur] + [rnd.choice(others) for _ in range(rnd.randint(0, 2))]
            alpha = self._new_input((rnd.choice([2, 3]), 2))
            na = self.specs[alpha[1]][0][0] * 2
            idx = [rnd.randrange(na) for _ in ys]
            arg = (alpha, ys, idx)
            out = s
        elif kind == "reshape":
            out = (s[1], s[0])
        elif kind == "conv":
            C = s[1]
            groups = rnd.choice([g for g in (1, 2, C) if C % g == 0])
            O = C if groups == C and rnd.random() < 0.7 else groups * rnd.choice([1, 2])
            k = rnd.choice([1, 2, 3])
            st = rnd.choice([1, 1, 2])
            dil = rnd.choice([1, 1, 2])
            pad = rnd.choice([0, 1, 2])
            oh = (s[2] + 2 * pad - dil * (k - 1) - 1) // st + 1
            ow = (s[3] + 2 * pad - dil * (k - 1) - 1) // st + 1
            if oh < 2 or ow < 2 or oh > 7 or ow > 7:
                return None
            w = self._new_input((O, C // groups, k, k))
            b = self._new_input((O,)) if rnd.random() < 0.5 else None
            arg = (w, b, st, pad, dil, groups)
            out = (s[0], O, oh, ow)
        elif kind in ("maxpool", "avgpool"):
            k, st, pad = rnd.choice([(2, 1, 0), (2, 2, 0), (3, 1, 1), (3, 2, 1)])
            oh = (s[2] + 2 * pad - k) // st + 1
            ow = (s[3] + 2 * pad - k) // st + 1
            if oh < 2 or ow < 2:
                return None
            arg = (k, st, pad)
            out = (s[0], s[1], oh, ow)
        elif kind == "gap":
            out = (s[0], s[1])
        elif kind == "unfold":
            k, st, pad, dil = rnd.choice([(2, 1, 0, 1), (3, 1, 1, 1), (2, 2, 1, 1), (2, 1, 1, 2)])
            oh = (s[2] + 2 * pad - dil * (k - 1) - 1) // st + 1
            ow = (s[3] + 2 * pad - dil * (k - 1) - 1) // st + 1
            if oh < 1 or ow < 1:
                return None
            # unfold, then either fold back (the same geometry) or keep the columns
            back = rnd.random() < 0.6
            arg = (k, st, pad, dil, back, s)
            out = s if back else (s[0], s[1] * k * k, oh * ow)
        self.nodes.append(tuple(out))
        return (kind, cur, arg)

    def describe(self):
        return "graph %d: %s" % (self.seed, " -> ".join(
            (k if k != "unary" else a[0]) for k, _, a in self.steps))

    def fn(self, B, X):
        vals = [X[0]]

        def inp(ref):
            return None if ref is None else X[ref[1]]

        for kind, cur, a in self.steps:
            h = vals[cur]
            if kind == "unary":
                u, p = a
                if u == "relu":
                    r = B.relu(h)
                elif u == "sigmoid":
                    r = B.sigmoid(h)
                elif u == "tanh":
                    r = B.tanh(h)
                elif u == "exp_tanh":
                    r = B.exp(B.tanh(h))
                elif u == "log1p2":
                    r = B.log(B.add_scalar(B.square(h), 1.0))
                elif u == "sqrt1p2":
                    r = B.sqrt(B.add_scalar(B.square(h), 0.5))
                elif u == "pow1p2":
                    r = B.pow(B.add_scalar(B.square(h), 1.0), 0.75)
                elif u == "square_half":
                    r = B.scale(B.square(h), 0.5)
                elif u == "neg":
                    r = B.neg(h)
                elif u == "scale":
                    r = B.scale(h, p)
                else:
                    r = B.add_scalar(h, p)
            elif kind == "binary_node":
                op, other = a
                o = vals[other]
                if op == "div_safe":
                    r = B.div(h, B.add_scalar(B.square(o), 1.0))
                else:
                    r = getattr(B, op)(h, o)
            elif kind == "binary_param":
                op, ref = a
                r = getattr(B, op)(h, inp(ref))
            elif kind == "axpy":
                r = B.axpy(a[0], h, vals[a[1]])
            elif kind == "mask":
                r = B.mask_mul(h, B.const(a))
            elif kind == "linear":
                r = B.linear(h, inp(a[0]), inp(a[1]))
            elif kind == "matmul":
                r = B.matmul(h, inp(a[0]), 0, 1 if a[1] else 0)
            elif kind == "bn":
                r = B.batch_norm(h, inp(a[0]), inp(a[1]), 1e-5)
            elif kind == "softmax":
                r = B.softmax(h)
            elif kind == "log_softmax":
                r = B.log_softmax(h)
            elif kind == "transpose":
                r = B.transpose(h)
            elif kind == "sum_axis":
                r = (B.sum_axis if a[1] == "sum" else B.mean_axis)(h, a[0], 1)
            elif kind == "concat":
                r = B.concat([h, vals[a[1]]], a[0])
            elif kind == "slice":
                r = B.slice(h, *a)
            elif kind == "gather":
                r = B.gather_rows(h, a)
            elif kind == "scatter":
                r = B.scatter_add_rows(h, a[0], a[1])
            elif kind == "pad":
                r = B.pad_axis(h, *a)
            elif kind == "mix":
                alpha, ys, idx = a
                r = B.mix(inp(alpha), [vals[i] for i in ys], idx)
            elif kind == "reshape":
                r = B.reshape(h, self.nodes[len(vals)])
            elif kind == "conv":
                w, b, st, pad, dil, groups = a
                r = B.conv2d(h, inp(w), inp(b), st, pad, dil, groups)
            elif kind == "maxpool":
                r = B.max_pool2d(h, *a)
            elif kind == "avgpool":
                r = B.avg_pool2d(h, *a)
            elif kind == "gap":
                r = B.global_avg_pool(h)
            elif kind == "unfold":
                k, st, pad, dil, back, s = a
                r = B.unfold(h, k, k, st, pad, dil)
                if back:
                    r = B.fold(r, s[1], s[2], s[3], k, k, st, pad, dil)
            else:
                raise AssertionError(kind)
            vals.append(r)
        return vals[-1]


# ---------------------------------------------------------------------------
# MAML through a Linear-ReLU-BN MLP
# ---------------------------------------------------------------------------

MAML_DIMS = (2, 6, 5, 1)
MAML_STEPS = 3
MAML_LR = 0.1


def _maml_data():
    g = torch.Generator().manual_seed(2026)
    params = []
    for i in range(len(MAML_DIMS) - 1):
        fi, fo = MAML_DIMS[i], MAML_DIMS[i + 1]
        params.append(torch.randn(fo, fi, generator=g, dtype=torch.float64) / math.sqrt(fi))
        params.append(0.1 * torch.randn(fo, generator=g, dtype=torch.float64))
        if i < len(MAML_DIMS) - 2:
            params.append(1.0 + 0.2 * torch.randn(fo, generator=g, dtype=torch.float64))
            params.append(0.2 * torch.randn(fo, generator=g, dtype=torch.float64))
    xs = torch.randn(6, 2, generator=g, dtype=torch.float64)
    ys = torch.sin(xs[:, :1] * 1.5) + 0.3 * xs[:, 1:]
    xq = torch.randn(7, 2, generator=g, dtype=torch.float64)
    yq = torch.sin(xq[:, :1] * 1.5) + 0.3 * xq[:, 1:]
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    return [_r32(p) for p in params], [_r32(t) for t in (xs, ys, xq, yq)], [_r32(t) for t in v]


def _torch_mlp(x, w):
    """Linear-ReLU-BN blocks and a Linear head, written out (independent of libmnas)."""
    h = x
    k = 0
    n_layers = len(MAML_DIMS) - 1
    for layer in range(n_layers):
        h = h @ w[k].t() + w[k + 1]
        k += 2
        if layer < n_layers - 1:
            h = torch.clamp(h, min=0.0)
            mu = h.mean(0, keepdim=True)
            var = ((h - mu) ** 2).mean(0, keepdim=True)
            h = (h - mu) / torch.sqrt(var + 1e-5) * w[k] + w[k + 1]
            k += 2
    return h


# The conv MAML's network (mnas_convnet, its parameter order documented in
# include/mnas/nn.h): 16 x 16 grey images and 8 filters, so the second
# block (8 x 8, 8 channels) takes the Winograd kernels and the others the
# direct ones, and each block's batch-norm + ReLU is the library's fused op.
# 5-way 1-shot with 2 queries per class; the loss is the MSE against one-hot
# targets.
CONV_FILTERS, CONV_SIZE, CONV_WAYS = 8, 16, 5


def _conv_data():
    g = torch.Generator().manual_seed(2027)
    params = []
    c = 1
    for _ in range(4):
        params.append(torch.randn(CONV_FILTERS, c, 3, 3, generator=g, dtype=torch.float64) / math.sqrt(9 * c))
        params.append(0.1 * torch.randn(CONV_FILTERS, generator=g, dtype=torch.float64))
        params.append(1.0 + 0.2 * torch.randn(CONV_FILTERS, generator=g, dtype=torch.float64))
        params.append(0.2 * torch.randn(CONV_FILTERS, generator=g, dtype=torch.float64))
        c = CONV_FILTERS
    params.append(torch.randn(CONV_WAYS, CONV_FILTERS, generator=g, dtype=torch.float64) / math.sqrt(CONV_FILTERS))
    params.append(0.1 * torch.randn(CONV_WAYS, generator=g, dtype=torch.float64))
    eye = torch.eye(CONV_WAYS, dtype=torch.float64)
    xs = torch.randn(CONV_WAYS, 1, CONV_SIZE, CONV_SIZE, generator=g, dtype=torch.float64)
    xq = torch.randn(2 * CONV_WAYS, 1, CONV_SIZE, CONV_SIZE, generator=g, dtype=torch.float64)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    data = (xs, eye, xq, torch.cat([eye, eye]))
    return [_r32(p) for p in params], [_r32(t) for t in data], [_r32(t) for t in v]


def _torch_convnet(x, w):
    """Conv-BN-ReLU-max-pool blocks and a Linear head (batch-norm written out, as above)."""
    h = x
    for b in range(4):
        h = F.conv2d(h, w[4 * b], w[4 * b + 1], padding=1)
        mu = h.mean((0, 2, 3), keepdim=True)
        var = ((h - mu) ** 2).mean((0, 2, 3), keepdim=True)
        h = (h - mu) / torch.sqrt(var + 1e-5) * w[4 * b + 2].view(1, -1, 1, 1) + w[4 * b + 3].view(1, -1, 1, 1)
        h = F.max_pool2d(torch.clamp(h, min=0.0), 2)
    return h.reshape(h.shape[0], -1) @ w[16].t() + w[17]


def torch_maml(params, data, v, steps, net=_torch_mlp):
    xs, ys, xq, yq = data
    w0 = [p.clone().requires_grad_(True) for p in params]
    w = w0
    for _ in range(steps):
        loss = ((net(xs, w) - ys) ** 2).mean()
        gs = torch.autograd.grad(loss, w, create_graph=True)
        w = [a - MAML_LR * b for a, b in zip(w, gs)]
    lq = ((net(xq, w) - yq) ** 2).mean()
    meta = torch.autograd.grad(lq, w0, create_graph=True)
    hv = sum((m * u).sum() for m, u in zip(meta, v))
    third = torch.autograd.grad(hv, w0)
    return lq.detach(), [m.detach() for m in meta], list(third)


def mnas_maml(lib, params, data, v, steps, third_recorded, model="mlp"):
    """The same objective through mnas_mlp_forward (model "mlp") or
    mnas_convnet_forward ("conv"), mnas_mse, mnas_grad, mnas_axpy.
    The third-order pass is taken unrecorded and, if third_recorded, recorded
    too (None otherwise)."""
    B = MnasB(lib)
    c = lib.c
    # the module's create / free / num_params / forward, by its prefix
    fn = {k: getattr(c, "mnas_%s_%s" % ("mlp" if model == "mlp" else "convnet", k))
          for k in ("free", "num_params", "forward")}
    if model == "mlp":
        dims = (c_int64 * len(MAML_DIMS))(*MAML_DIMS)
        handle = c.mnas_mlp_create(lib.ctx, len(MAML_DIMS) - 1, dims, 0)
    else:
        handle = c.mnas_convnet_create(lib.ctx, 1, CONV_SIZE, CONV_SIZE, CONV_FILTERS, CONV_WAYS)
    if not handle:
        raise OpError("mnas_%s_create failed" % model)
    try:
        if fn["num_params"](handle) != len(params):
            raise OpError("%s: %d parameters, expected %d" % (model, fn["num_params"](handle), len(params)))

        def net(x, w):
            arr = (c_void_p * len(w))(*w)
            return B._ok(fn["forward"](handle, lib.tape, x, arr), "%s forward" % model)

        xs, ys, xq, yq = [B.const(t) for t in data]
        w0 = [B.leaf(p) for p in params]
        w = w0
        for _ in range(steps):
            loss = B.mse(net(xs, w), ys)
            gs = B.grad(loss, w, create_graph=True)
            w = [B.axpy(-MAML_LR, g, a) for a, g in zip(w, gs)]
        lq = B.mse(net(xq, w), yq)
        meta_rec = B.grad(lq, w0, create_graph=True)
        meta_unrec = B.grad(lq, w0, create_graph=False)
        hv = _dot(B, meta_rec, [B.const(t) for t in v])
        third_unrec = B.grad(hv, w0, create_graph=False)
        third_rec = B.grad(hv, w0, create_graph=True) if third_recorded else None
        out = (B.to_torch(lq), [B.to_torch(t) for t in meta_rec], [B.to_torch(t) for t in meta_unrec],
               third_rec and [B.to_torch(t) for t in third_rec], [B.to_torch(t) for t in third_unrec])
    finally:
        c.mnas_tape_reset(lib.tape)
        fn["free"](handle)
    return out


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------

F64_RTOL = 1e-8
F32_RTOL = 2e-3
N_GRAPHS = 200
_FAILED = []  # every failing case, for the summary at the end


def _report(test, fails):
    for f in fails:
        _FAILED.append(f)
    if fails:
        test.fail("%d mismatches:\n  %s" % (len(fails), "\n  ".join(fails)))


@unittest.skipIf(torch is None, "torch is not importable: %s" % (_TORCH_ERROR,))
class TorchOracle(unittest.TestCase):
    f64 = None
    f32 = None

    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        if not F64_LIBRARY or not os.path.exists(F64_LIBRARY):
            raise unittest.SkipTest("the double build libmnas_f64.so is not built (target mnas_f64_shared)")
        cls.f64 = Lib(F64_LIBRARY, c_double)
        if F32_LIBRARY and os.path.exists(F32_LIBRARY):
            cls.f32 = Lib(F32_LIBRARY, c_float)

    @classmethod
    def tearDownClass(cls):
        for lib in (cls.f64, cls.f32):
            if lib:
                lib.close()

    def test_every_public_op_is_in_the_table(self):
        with open(os.path.join(REPO, "include", "mnas", "autodiff.h")) as f:
            header = f.read()
        import re
        declared = set(re.findall(r"MNAS_API mnas_tensor \*mnas_(\w+)\(mnas_tape", header))
        declared -= {"tape_tensor"}  # a constructor, not an op
        table = " ".join(name for name, _, _ in op_cases())
        used = set(PUBLIC_OPS)
        self.assertEqual(declared, used, "ops of autodiff.h missing from PUBLIC_OPS or vice versa")
        for op in used:
            # every op must appear in the table (by its name or inside a case's name)
            self.assertIn(op, table, "no case for %s" % op)

    def test_reference_batch_norm_third_order(self):
        # the oracle's own batch-norm: its third derivative (x only) against
        # central differences of its second, in float64
        g = torch.Generator().manual_seed(5)
        x0, gam, bet, c, v, w = [torch.randn(s, generator=g, dtype=torch.float64)
                                 for s in ((4, 3), (3,), (3,), (4, 3), (4, 3), (4, 3))]

        def h(x, create_graph):
            y = TORCH.batch_norm(x, gam, bet, 1e-5)
            f = (c * y * y).sum() + 0.3 * (y ** 3).sum()
            gx = torch.autograd.grad(f, x, create_graph=True)[0]
            hx = torch.autograd.grad((gx * v).sum(), x, create_graph=create_graph)[0]
            return hx

        x = x0.clone().requires_grad_(True)
        t3 = torch.autograd.grad((h(x, True) * w).sum(), x)[0].reshape(-1)
        step = 1e-6
        for i in range(x0.numel()):
            e = torch.zeros(x0.numel(), dtype=torch.float64)
            e[i] = step
            e = e.reshape(x0.shape)
            hp = (h((x0 + e).requires_grad_(True), False) * w).sum()
            hm = (h((x0 - e).requires_grad_(True), False) * w).sum()
            fd = float(hp - hm) / (2 * step)
            self.assertLess(abs(float(t3[i]) - fd), 1e-6 * (1 + abs(fd)), "element %d" % i)

    def _ops(self, lib, rtol, order, prefix=""):
        for i, (name, fn, specs) in enumerate(op_cases()):
            inputs = _case_inputs(1000 + i, specs)
            with self.subTest(op=name):
                f, _ = check(prefix + name, fn, inputs, 7 + i, lib, order, rtol)
                _report(self, f)

    def test_ops_f64_orders_0_to_3(self):
        self._ops(self.f64, F64_RTOL, 3)

    def test_ops_float32_orders_0_to_2(self):
        if self.f32 is None:
            self.skipTest("float library not found")
        self._ops(self.f32, F32_RTOL, 2, prefix="float32 ")

    def test_random_graphs_f64_orders_1_to_3(self):
        for seed in range(N_GRAPHS):
            g = Graph(seed)
            inputs = _case_inputs(50000 + seed, g.specs)
            with self.subTest(graph=g.describe()):
                f, _ = check(g.describe(), g.fn, inputs, 90000 + seed, self.f64, 3, F64_RTOL)
                _report(self, f)

    def test_maml_bn_mlp_second_and_third_order(self):
        # MAML_STEPS inner steps, the third-order pass unrecorded; and one inner
        # step with the third-order pass recorded as well (with two or more
        # steps that recording grows without bound on the current code: it did
        # not finish in 60 s and took > 8 GB with three steps)
        for steps, third_recorded in ((MAML_STEPS, False), (1, True)):
            with self.subTest(inner_steps=steps, third_recorded=third_recorded):
                self._maml(steps, third_recorded)

    def test_maml_convnet_second_and_third_order(self):
        # the conv MAML's network: Winograd and direct convolutions, the fused
        # batch-norm + ReLU, max-pool; two inner steps, third order unrecorded
        self._maml(2, False, "conv")

    def _maml(self, steps, third_recorded, model="mlp"):
        params, data, v = _maml_data() if model == "mlp" else _conv_data()
        net = _torch_mlp if model == "mlp" else _torch_convnet
        lq_t, meta_t, third_t = torch_maml(params, data, v, steps, net)
        name = "maml %s (%d inner steps)" % (model, steps)
        try:
            lq, meta_rec, meta_unrec, third_rec, third_unrec = mnas_maml(self.f64, params, data, v, steps,
                                                                         third_recorded, model)
        except OpError as e:
            _report(self, ["%s: libmnas error: %s" % (name, e)])
            return
        fails = []
        if compare(lq_t, lq, F64_RTOL) > 1:
            fails.append("%s: query loss %r vs torch %r" % (name, float(lq[0]), float(lq_t)))
        for label, got, ref in (("2nd-order meta-gradient (recorded)", meta_rec, meta_t),
                                ("2nd-order meta-gradient (unrecorded)", meta_unrec, meta_t),
                                ("3rd order, grad <meta-gradient, v> (recorded)", third_rec, third_t),
                                ("3rd order, grad <meta-gradient, v> (unrecorded)", third_unrec, third_t)):
            if got is None:
                continue
            scale = max(float(r.abs().max()) for r in ref)
            for i, (g, r) in enumerate(zip(got, ref)):
                e = compare(r, g, F64_RTOL, scale)
                if e > 1:
                    fails.append("%s: %s, parameter %d off by %.3g tolerances" % (name, label, i, e))
        _report(self, fails)


def main():
    if torch is None:
        print("SKIP: torch is not importable (%s); install python3-torch" % (_TORCH_ERROR,))
        return SKIP_EXIT
    if not F64_LIBRARY or not os.path.exists(F64_LIBRARY):
        print("SKIP: libmnas_f64.so not found (build the mnas_f64_shared target, or set MNAS_F64_LIBRARY)")
        return SKIP_EXIT
    print("double library: %s\nfloat library:  %s\ntorch %s" % (F64_LIBRARY, F32_LIBRARY, torch.__version__))
    t0 = time.time()
    prog = unittest.main(exit=False, argv=[sys.argv[0]] + sys.argv[1:])
    dt = time.time() - t0
    if _FAILED:
        print("\n%d failing checks (all cases):" % len(_FAILED))
        for f in _FAILED:
            print("  " + f)
    print("torch oracle: %.1f s" % dt)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
