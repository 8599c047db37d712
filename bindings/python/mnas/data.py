"""The data layer: few-shot tasks, the paper's toy-regression families and
test sets, image datasets (PNG class folders, IDX) with N-way K-shot task
samplers, accuracy, and mean +- 95 % confidence intervals."""

from __future__ import annotations

import ctypes
import math
import os
import weakref
from ctypes import c_double, c_int, c_int64, c_void_p
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ._handle import Handle, as_float, as_int, as_u64
from ._lib import C, decode
from ._structs import FewshotOptions, ImageLoadOptions, ImageSplitOptions, RegressionOptions
from .core import check_ctx
from .errors import ArgumentTypeError, InvalidArgument, MismatchError, NumericError, StateError, make_error
from .tensors import Tensor, float_buffer
from ._types import PathLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from .core import Context

FAMILY_SINUSOID, FAMILY_LINEAR, FAMILY_QUADRATIC, FAMILY_HARMONICS = range(4)
REGRESSION_FAMILIES = 4
FAMILIES = ("sinusoid", "linear", "quadratic", "harmonics")


def family_name(family: int) -> str:
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


def regression_options(k_shot: int = 10, k_query: int = 10,
                       families: Optional[Sequence[int]] = None) -> Any:
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

    def __init__(self, ctx: Context, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                 query_y: Tensor, family: int = -1) -> None:
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
    def ctx(self) -> Context:
        return self._ctx

    @property
    def support_x(self) -> Tensor:
        return self._view("sx", C.mnas_task_support_x)

    @property
    def support_y(self) -> Tensor:
        return self._view("sy", C.mnas_task_support_y)

    @property
    def query_x(self) -> Tensor:
        return self._view("qx", C.mnas_task_query_x)

    @property
    def query_y(self) -> Tensor:
        return self._view("qy", C.mnas_task_query_y)

    @property
    def family(self) -> int:
        """Family or dataset id, -1 when unknown."""
        return C.mnas_task_family(self._p())

    @property
    def family_name(self) -> str:
        f = self.family
        return family_name(f) if f >= 0 else "unknown"

    @property
    def params(self) -> List[float]:
        """Parameters of the true function (regression tasks; see docs/data.md)."""
        out = (c_double * 8)()
        n = C.mnas_task_params(self._p(), out)
        if n < 0:
            raise make_error(n, "mnas_task_params failed")
        return list(out[:n])

    def eval(self, x: Union[float, Sequence[float]]) -> Union[float, List[float]]:
        """The true function at x (a number or a sequence); NaN if unknown."""
        p = self._p()
        try:
            values = iter(x)
        except TypeError:
            return C.mnas_regression_eval(p, as_float(x, "x"))
        return [C.mnas_regression_eval(p, as_float(v, "x")) for v in values]

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<mnas.Task closed>"
        return "<mnas.Task %s support %r query %r>" % (self.family_name, self.support_x.shape,
                                                      self.query_x.shape)


def regression_task(ctx: Context, seed: int, index: int, family: Optional[int] = None,
                    k_shot: int = 10, k_query: int = 10,
                    families: Optional[Sequence[int]] = None) -> Task:
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

    def __init__(self, ctx: Context, tasks: Iterable[Task] = ()) -> None:
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
    def ctx(self) -> Context:
        return self._ctx

    def add(self, task: Task) -> None:
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

    def __len__(self) -> int:
        return C.mnas_task_set_size(self._p())

    def __getitem__(self, i: Union[int, slice]) -> Union[Task, List[Task]]:
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

    def __iter__(self) -> Iterator[Task]:
        for k in range(len(self)):
            yield self[k]

    def families(self) -> List[int]:
        """The family id of every task, in order."""
        return [C.mnas_task_family(C.mnas_task_set_get(self._p(), k)) for k in range(len(self))]


def regression_test_set(ctx: Context, seed: int, n_per_family: int, k_shot: int = 10,
                        k_query: int = 10, families: Optional[Sequence[int]] = None) -> TaskSet:
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


def mean_ci95(values: Sequence[float]) -> Tuple[float, float]:
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


# ---- image datasets and N-way K-shot tasks ----------------------------------

RESIZE_AREA, RESIZE_BILINEAR = 0, 1
ALPHA_WHITE, ALPHA_DROP = 0, 1
_RESIZE = {"area": RESIZE_AREA, "bilinear": RESIZE_BILINEAR}
_ALPHA = {"white": ALPHA_WHITE, "drop": ALPHA_DROP}


def _enum(value, table, what):
    if isinstance(value, str):
        try:
            return table[value.lower()]
        except KeyError:
            raise InvalidArgument("unknown %s %r (%s)" % (what, value, ", ".join(table))) from None
    return as_int(value, what, -(1 << 31), (1 << 31) - 1)


def _path(p, what):
    if isinstance(p, bytes):
        return p
    try:
        return os.fsencode(p)
    except TypeError:
        raise ArgumentTypeError("%s must be a path (str, bytes or os.PathLike)" % what) from None


def _load_options(channels, size, resize, alpha, cache):
    if size is None:
        h = w = 0
    else:
        try:
            h, w = size
        except (TypeError, ValueError):
            raise ArgumentTypeError("size must be (height, width) or None") from None
    o = ImageLoadOptions.new(channels=as_int(channels, "channels", -(1 << 31), (1 << 31) - 1),
                             height=as_int(h, "height", -(1 << 31), (1 << 31) - 1),
                             width=as_int(w, "width", -(1 << 31), (1 << 31) - 1),
                             resize=_enum(resize, _RESIZE, "resize"),
                             alpha=_enum(alpha, _ALPHA, "alpha"))
    keep = None
    if cache is not None:
        keep = ctypes.c_char_p(_path(cache, "cache"))
        o.cache_path = ctypes.cast(keep, c_void_p).value
    return o, keep


class ImageDataset(Handle):
    """Images as float32 [C, H, W] in [0, 1], grouped by named class.

    Made by ``ImageDataset.load_folder`` (class folders of PNG files),
    ``ImageDataset.load_idx`` (MNIST-style IDX, plain or gzip),
    ``ImageDataset.create`` (caller pixels), ``subset`` and ``split``.
    Loaded images are held as their decoded samples and converted when
    read; subsets and splits share their parent's pixels (docs/data.md).
    ``len(ds)`` is the number of classes."""

    __slots__ = ("_ctx", "_samplers")
    _kind = "image dataset"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use ImageDataset.load_folder, load_idx or create")

    @classmethod
    def _wrap(cls, ctx, ptr):
        d = cls.__new__(cls)
        d._ctx = ctx
        d._samplers = weakref.WeakSet()
        d._setup(ptr, C.mnas_image_dataset_free, ctx)
        return d

    @classmethod
    def load_folder(cls, ctx: Context, path: PathLike, channels: int = 0,
                    size: Optional[Tuple[int, int]] = None, resize: str = "area",
                    alpha: str = "white", cache: Optional[PathLike] = None) -> ImageDataset:
        """Class folders: ``path/<class>/<image>.png``. ``channels`` 1 or 3
        (0: as the first image); ``size=(height, width)`` resizes every
        image (``resize`` "area" or "bilinear"); ``alpha`` "white"
        (composite on white) or "drop"; ``cache`` a file for the decoded
        images (reused while the folder and options are unchanged)."""
        p = check_ctx(ctx)
        opts, keep = _load_options(channels, size, resize, alpha, cache)
        ctx.clear_error()
        r = C.mnas_image_dataset_load_folder(p, _path(path, "path"), ctypes.byref(opts))
        del keep
        if not r:
            ctx._fail("mnas_image_dataset_load_folder")
        return cls._wrap(ctx, r)

    @classmethod
    def load_idx(cls, ctx: Context, images: PathLike, labels: PathLike, channels: int = 0,
                 size: Optional[Tuple[int, int]] = None, resize: str = "area",
                 alpha: str = "white") -> ImageDataset:
        """IDX image and label files (MNIST, Fashion-MNIST), plain or gzip."""
        p = check_ctx(ctx)
        opts, _ = _load_options(channels, size, resize, alpha, None)
        ctx.clear_error()
        r = C.mnas_image_dataset_load_idx(p, _path(images, "images"), _path(labels, "labels"),
                                          ctypes.byref(opts))
        if not r:
            ctx._fail("mnas_image_dataset_load_idx")
        return cls._wrap(ctx, r)

    @classmethod
    def create(cls, ctx: Context, counts: Sequence[int], data: Any, shape: Sequence[int],
               names: Optional[Sequence[str]] = None) -> ImageDataset:
        """From caller pixels: ``counts[c]`` images per class, ``data`` every
        image [C, H, W] in class order (a float32 buffer or nested lists),
        ``shape`` = (C, H, W), ``names`` optional class names."""
        p = check_ctx(ctx)
        counts = [as_int(c, "count", 0, (1 << 63) - 1) for c in counts]
        c, h, w = (as_int(v, "shape extent", 1, (1 << 31) - 1) for v in shape)
        total = sum(counts)
        keep, addr, _ = float_buffer(data, (total * c * h * w,) if total else None)
        n = len(counts)
        carr = (ctypes.c_size_t * max(n, 1))(*counts)
        name_arr = None
        if names is not None:
            names = [_path(s, "name") for s in names]
            if len(names) != n:
                raise InvalidArgument("%d names for %d classes" % (len(names), n))
            name_arr = (ctypes.c_char_p * max(n, 1))(*names)
        ctx.clear_error()
        r = C.mnas_image_dataset_create(p, n, carr, name_arr, c, h, w, addr)
        del keep
        if not r:
            ctx._fail("mnas_image_dataset_create")
        return cls._wrap(ctx, r)

    def close(self) -> None:
        # A sampler reads the dataset's pixels: it goes first.
        if self._ptr is not None:
            for s in list(self._samplers):
                s.close()
        Handle.close(self)

    @property
    def ctx(self) -> Context:
        return self._ctx

    def __len__(self) -> int:
        return C.mnas_image_dataset_num_classes(self._p())

    @property
    def num_classes(self) -> int:
        return len(self)

    @property
    def num_images(self) -> int:
        return C.mnas_image_dataset_num_images(self._p())

    @property
    def shape(self) -> Tuple[int, int, int]:
        """(C, H, W) of every image."""
        out = (c_int64 * 3)()
        self._ctx._check(C.mnas_image_dataset_shape(self._p(), out), "mnas_image_dataset_shape")
        return tuple(out)

    @property
    def class_names(self) -> List[str]:
        p = self._p()
        return [decode(C.mnas_image_dataset_class_name(p, i)) for i in range(len(self))]

    def class_size(self, cls: int) -> int:
        """Images of class ``cls`` (an index or a name)."""
        return C.mnas_image_dataset_class_size(self._p(), self._class(cls))

    def find_class(self, name: str) -> int:
        """Index of a class name, or -1."""
        return C.mnas_image_dataset_find_class(self._p(), _path(name, "name"))

    def _class(self, cls):
        if isinstance(cls, (str, bytes)):
            k = self.find_class(cls)
            if k < 0:
                raise InvalidArgument("no class named %r" % (cls,))
            return k
        k = as_int(cls, "class")
        n = len(self)
        if not 0 <= k < n:
            raise IndexError("class %d out of range (%d classes)" % (k, n))
        return k

    def image(self, cls: int, i: int) -> Tensor:
        """Image ``i`` of class ``cls`` as a new Tensor [C, H, W]."""
        k = self._class(cls)
        shape = self.shape
        t = Tensor.zeros(self._ctx, shape)
        self._ctx.clear_error()
        st = C.mnas_image_dataset_copy_image(self._p(), k, as_int(i, "image", 0), t._addr(),
                                             shape[0] * shape[1] * shape[2])
        if st != 0:
            t.close()
            self._ctx._fail("mnas_image_dataset_copy_image", st)
        return t

    @property
    def from_cache(self) -> bool:
        """True if the images were read from the decoded cache."""
        return bool(C.mnas_image_dataset_from_cache(self._p()))

    def subset(self, classes: Sequence[int]) -> ImageDataset:
        """A new dataset of the given classes (indices or names), in that order."""
        idx = [self._class(c) for c in classes]
        if not idx:
            raise InvalidArgument("subset of no classes")
        arr = (ctypes.c_size_t * len(idx))(*idx)
        self._ctx.clear_error()
        r = C.mnas_image_dataset_subset(self._p(), arr, len(idx))
        if not r:
            self._ctx._fail("mnas_image_dataset_subset")
        return ImageDataset._wrap(self._ctx, r)

    def split(self, train: float = 0.64, val: float = 0.16, seed: int = 0,
              lists: Optional[Dict[str, PathLike]] = None,
              want: Sequence[str] = ("train", "val", "test")
              ) -> Tuple[Optional[ImageDataset], Optional[ImageDataset], Optional[ImageDataset]]:
        """Class split into (train, val, test) datasets (None for a set not
        in ``want``). By fraction with ``seed`` (same seed, same split), or
        from ``lists`` = {"train": path, "val": path, "test": path} of
        class-list files."""
        opts = ImageSplitOptions.new(train_fraction=as_float(train, "train"),
                                     val_fraction=as_float(val, "val"), seed=as_u64(seed, "seed"))
        keep = []
        for key in (lists or {}):
            if key not in ("train", "val", "test"):
                raise InvalidArgument("unknown list %r (train, val, test)" % (key,))
            b = ctypes.c_char_p(_path(lists[key], key + " list"))
            keep.append(b)
            setattr(opts, key + "_list", ctypes.cast(b, c_void_p).value)
        for w in want:
            if w not in ("train", "val", "test"):
                raise InvalidArgument("unknown set %r (train, val, test)" % (w,))
        outs = [c_void_p() for _ in range(3)]
        refs = [ctypes.byref(o) if name in want else None
                for o, name in zip(outs, ("train", "val", "test"))]
        self._ctx.clear_error()
        st = C.mnas_image_dataset_split(self._p(), ctypes.byref(opts), *refs)
        del keep
        if st != 0:
            self._ctx._fail("mnas_image_dataset_split", st)
        return tuple(ImageDataset._wrap(self._ctx, o.value) if o.value else None for o in outs)

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<mnas.ImageDataset closed>"
        return "<mnas.ImageDataset %d classes, %d images of %r>" % (len(self), self.num_images,
                                                                   self.shape)


class FewShotSampler(Handle):
    """N-way K-shot tasks from one dataset or a mixture (one dataset drawn
    per task; the task's ``family`` is its index). ``task(seed, index)`` is
    a pure function of its arguments: support x [way*shot, C, H, W], query
    x [way*query, C, H, W], y [n, 1] holding the class index 0..way-1."""

    __slots__ = ("_ctx", "_datasets")
    _kind = "few-shot sampler"

    def __init__(self, ctx: Context, datasets: Union[ImageDataset, Sequence[ImageDataset]],
                 way: int = 5, shot: int = 1, query: int = 15) -> None:
        p = check_ctx(ctx)
        if isinstance(datasets, ImageDataset):
            datasets = [datasets]
        datasets = list(datasets)
        for d in datasets:
            if not isinstance(d, ImageDataset):
                raise ArgumentTypeError("datasets must be mnas.ImageDataset objects")
            if d._ctx is not ctx:
                raise MismatchError("a dataset comes from another context")
        ptrs = (c_void_p * max(len(datasets), 1))(*[d._p() for d in datasets])
        opts = FewshotOptions.new(way=as_int(way, "way", -(1 << 31), (1 << 31) - 1),
                                  shot=as_int(shot, "shot", -(1 << 31), (1 << 31) - 1),
                                  query=as_int(query, "query", -(1 << 31), (1 << 31) - 1))
        ctx.clear_error()
        r = C.mnas_fewshot_sampler_create(p, ptrs, len(datasets), ctypes.byref(opts))
        if not r:
            ctx._fail("mnas_fewshot_sampler_create")
        self._ctx = ctx
        self._datasets = tuple(datasets)
        self._setup(r, C.mnas_fewshot_sampler_free, ctx, *datasets)
        for d in datasets:
            d._samplers.add(self)

    @property
    def ctx(self) -> Context:
        return self._ctx

    @property
    def datasets(self) -> List[ImageDataset]:
        return self._datasets

    @property
    def sizes(self) -> Tuple[int, int, int]:
        """(way, shot, query)."""
        w, s, q = c_int(), c_int(), c_int()
        self._ctx._check(C.mnas_fewshot_sampler_sizes(self._p(), ctypes.byref(w), ctypes.byref(s),
                                                      ctypes.byref(q)))
        return w.value, s.value, q.value

    def task(self, seed: int, index: int) -> Task:
        p = self._p()
        self._ctx.clear_error()
        r = C.mnas_fewshot_task(self._ctx._p(), p, as_u64(seed, "seed"), as_u64(index, "index"))
        if not r:
            self._ctx._fail("mnas_fewshot_task")
        return Task._wrap(self._ctx, r)

    def test_set(self, seed: int, n_tasks: int) -> TaskSet:
        """Tasks 0..n_tasks-1 of the stream ``seed``, as a TaskSet."""
        p = self._p()
        self._ctx.clear_error()
        r = C.mnas_fewshot_test_set(self._ctx._p(), p, as_u64(seed, "seed"), as_u64(n_tasks, "n_tasks"))
        if not r:
            self._ctx._fail("mnas_fewshot_test_set")
        s = TaskSet.__new__(TaskSet)
        s._init(self._ctx, r)
        return s


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows of ``logits`` [n, classes] whose arg-max equals the
    class index in ``labels`` [n, 1]."""
    if not isinstance(logits, Tensor) or not isinstance(labels, Tensor):
        raise ArgumentTypeError("logits and labels must be mnas.Tensor objects")
    out = c_double()
    lp = logits._live()
    st = C.mnas_accuracy(lp, labels._live(), ctypes.byref(out))
    if st != 0:
        logits._ctx._fail("mnas_accuracy", st)
    return out.value
