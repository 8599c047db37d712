"""The data layer: few-shot tasks, the paper's toy-regression families and
test sets, and mean +- 95 % confidence intervals."""

import ctypes
import math
from ctypes import c_double

from ._handle import Handle, as_float, as_int, as_u64
from ._lib import C, decode
from ._structs import RegressionOptions
from .core import check_ctx
from .errors import ArgumentTypeError, InvalidArgument, MismatchError, NumericError, StateError, make_error
from .tensors import Tensor

FAMILY_SINUSOID, FAMILY_LINEAR, FAMILY_QUADRATIC, FAMILY_HARMONICS = range(4)
REGRESSION_FAMILIES = 4
FAMILIES = ("sinusoid", "linear", "quadratic", "harmonics")


def family_name(family):
    """The library's name of a regression family id ("unknown" otherwise)."""
    return decode(C.mnas_regression_family_name(as_int(family, "family", -(1 << 31), (1 << 31) - 1)))


def _family_id(family):
    if family is None:
        return -1
    if isinstance(family, str):
        try:
            return FAMILIES.index(family.lower())
        except ValueError:
            raise InvalidArgument("unknown family %r (%s)" % (family, ", ".join(FAMILIES))) from None
    return as_int(family, "family", -(1 << 31), (1 << 31) - 1)


def regression_options(k_shot=10, k_query=10, families=None):
    """The mnas_regression_options struct; families: a bit mask, or names/ids."""
    if families is None:
        mask = 0xF
    elif isinstance(families, int) and not isinstance(families, bool):
        mask = families
    else:
        if isinstance(families, str):
            families = [families]
        mask = 0
        for f in families:
            fid = _family_id(f)
            if not 0 <= fid < REGRESSION_FAMILIES:
                raise InvalidArgument("unknown family %r" % (f,))
            mask |= 1 << fid
    return RegressionOptions.new(k_shot=as_int(k_shot, "k_shot", -(1 << 31), (1 << 31) - 1),
                                 k_query=as_int(k_query, "k_query", -(1 << 31), (1 << 31) - 1),
                                 families=as_int(mask, "families", 0, (1 << 32) - 1))


class Task(Handle):
    """A few-shot task: support and query sets plus metadata.

    ``Task(ctx, support_x, support_y, query_x, query_y, family=-1)`` copies
    the four tensors; tasks also come from ``regression_task`` and task
    sets. ``support_x`` etc. are tensors owned by the task."""

    __slots__ = ("_ctx", "_views", "_in_set")
    _kind = "task"

    def __init__(self, ctx, support_x, support_y, query_x, query_y, family=-1):
        p = check_ctx(ctx)
        ptrs = []
        for name, t in (("support_x", support_x), ("support_y", support_y), ("query_x", query_x),
                        ("query_y", query_y)):
            if not isinstance(t, Tensor):
                raise ArgumentTypeError("%s must be an mnas.Tensor" % name)
            ptrs.append(t._live())
        ctx.clear_error()
        r = C.mnas_task_create(p, *ptrs, _family_id(family))
        if not r:
            ctx._fail("mnas_task_create")
        self._init(ctx, r, C.mnas_task_free, ctx)

    def _init(self, ctx, ptr, free, parent):
        self._ctx = ctx
        self._views = {}
        self._in_set = free is None
        self._setup(ptr, free, parent)

    @classmethod
    def _wrap(cls, ctx, ptr, owner=None):
        t = cls.__new__(cls)
        if owner is None:
            t._init(ctx, ptr, C.mnas_task_free, ctx)
        else:
            t._init(ctx, ptr, None, owner)
        return t

    def _view(self, which, getter):
        t = self._views.get(which)
        if t is None or t._ptr is None:
            t = self._views[which] = Tensor._borrowed(self, self._ctx, getter(self._p()))
        return t

    @property
    def ctx(self):
        return self._ctx

    @property
    def support_x(self):
        return self._view("sx", C.mnas_task_support_x)

    @property
    def support_y(self):
        return self._view("sy", C.mnas_task_support_y)

    @property
    def query_x(self):
        return self._view("qx", C.mnas_task_query_x)

    @property
    def query_y(self):
        return self._view("qy", C.mnas_task_query_y)

    @property
    def family(self):
        """Family or dataset id, -1 when unknown."""
        return C.mnas_task_family(self._p())

    @property
    def family_name(self):
        f = self.family
        return family_name(f) if f >= 0 else "unknown"

    @property
    def params(self):
        """Parameters of the true function (regression tasks; see docs/data.md)."""
        out = (c_double * 8)()
        n = C.mnas_task_params(self._p(), out)
        if n < 0:
            raise make_error(n, "mnas_task_params failed")
        return list(out[:n])

    def eval(self, x):
        """The true function at x (a number or a sequence); NaN if unknown."""
        p = self._p()
        try:
            values = iter(x)
        except TypeError:
            return C.mnas_regression_eval(p, as_float(x, "x"))
        return [C.mnas_regression_eval(p, as_float(v, "x")) for v in values]

    def __repr__(self):
        if self._ptr is None:
            return "<mnas.Task closed>"
        return "<mnas.Task %s support %r query %r>" % (self.family_name, self.support_x.shape,
                                                      self.query_x.shape)


def regression_task(ctx, seed, index, family=None, k_shot=10, k_query=10, families=None):
    """Task number ``index`` of the toy-regression stream ``seed`` (a pure
    function of its arguments). ``family`` (id or name) forces the family;
    ``families`` restricts the draw (names, ids or a bit mask)."""
    p = check_ctx(ctx)
    opts = regression_options(k_shot, k_query, families)
    ctx.clear_error()
    r = C.mnas_regression_task(p, ctypes.byref(opts), as_u64(seed, "seed"), as_u64(index, "index"),
                               _family_id(family))
    if not r:
        ctx._fail("mnas_regression_task")
    return Task._wrap(ctx, r)


class TaskSet(Handle):
    """An owning list of tasks (``TaskSet(ctx)``; also from
    ``regression_test_set``). ``len``, indexing and iteration give the
    tasks (owned by the set)."""

    __slots__ = ("_ctx", "_tasks")
    _kind = "task set"

    def __init__(self, ctx, tasks=()):
        p = check_ctx(ctx)
        ctx.clear_error()
        r = C.mnas_task_set_create(p)
        if not r:
            ctx._fail("mnas_task_set_create")
        self._init(ctx, r)
        for t in tasks:
            self.add(t)

    def _init(self, ctx, ptr):
        self._ctx = ctx
        self._tasks = {}
        self._setup(ptr, C.mnas_task_set_free, ctx)

    @property
    def ctx(self):
        return self._ctx

    def add(self, task):
        """Move ``task`` into the set (the Task object now refers to the
        set's copy; it is no longer freed on its own)."""
        sp = self._p()
        if not isinstance(task, Task):
            raise ArgumentTypeError("expected an mnas.Task")
        tp = task._p()
        if task._in_set:
            raise StateError("the task already belongs to a task set")
        if task._ctx is not self._ctx:
            raise MismatchError("the task comes from another context")
        # The set owns the task from now on, also if the call fails.
        task._fin.detach()
        task._fin = None
        task._in_set = True
        self._ctx.clear_error()
        st = C.mnas_task_set_add(sp, tp)
        if st != 0:
            task.close()
            self._ctx._fail("mnas_task_set_add", st)
        task._parent._disown(task)
        task._parent = self
        self._adopt(task)
        self._tasks[len(self) - 1] = task

    def __len__(self):
        return C.mnas_task_set_size(self._p())

    def __getitem__(self, i):
        n = len(self)
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(n))]
        k = as_int(i, "index")
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError("task index %d out of range (%d tasks)" % (i, n))
        t = self._tasks.get(k)
        if t is None or t._ptr is None:
            r = C.mnas_task_set_get(self._p(), k)
            if not r:
                self._ctx._fail("mnas_task_set_get")
            t = self._tasks[k] = Task._wrap(self._ctx, r, owner=self)
        return t

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def families(self):
        """The family id of every task, in order."""
        return [C.mnas_task_family(C.mnas_task_set_get(self._p(), k)) for k in range(len(self))]


def regression_test_set(ctx, seed, n_per_family, k_shot=10, k_query=10, families=None):
    """A fixed test set: ``n_per_family`` tasks of every family (in
    family-major order) from the stream ``seed``."""
    p = check_ctx(ctx)
    opts = regression_options(k_shot, k_query, families)
    ctx.clear_error()
    r = C.mnas_regression_test_set(p, ctypes.byref(opts), as_u64(seed, "seed"),
                                   as_u64(n_per_family, "n_per_family"))
    if not r:
        ctx._fail("mnas_regression_test_set")
    s = TaskSet.__new__(TaskSet)
    s._init(ctx, r)
    return s


def mean_ci95(values):
    """(mean, 95 % CI half-width = 1.96 sd / sqrt(n)) of a sequence of
    numbers. Raises NumericError for NaN/Inf values (the results would be
    NaN), InvalidArgument for an empty sequence."""
    vals = [as_float(v, "value") for v in values]
    n = len(vals)
    if n == 0:
        raise InvalidArgument("mean_ci95 of no values")
    arr = (c_double * n)(*vals)
    mean, ci = c_double(), c_double()
    st = C.mnas_mean_ci95(arr, n, ctypes.byref(mean), ctypes.byref(ci))
    if st != 0:
        raise make_error(st, "mnas_mean_ci95: %s" % (
            "a value is NaN or infinite" if st == -5 else decode(C.mnas_status_str(st))))
    return mean.value, ci.value


def _nan_ci(values):
    try:
        return mean_ci95(values)
    except NumericError:
        return math.nan, math.nan
