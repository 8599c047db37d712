"""The io layer: PNG figures (line and scatter plots on a grid of panels),
and ``plot_regression`` drawing the paper's Figure 3 (true function, support
points and each learner's prediction after adaptation)."""

from __future__ import annotations

import ctypes
import math
import os
from ctypes import c_double, c_int
from typing import TYPE_CHECKING, Optional, Sequence, Tuple, Union

from ._handle import Handle, as_float, as_int
from ._lib import C
from .core import check_ctx
from .errors import ArgumentTypeError, InvalidArgument, ShapeError
from ._types import PathLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from .core import Context
    from .data import Task
    from .meta import Learner

LEGEND_AUTO, LEGEND_NONE, LEGEND_UPPER_RIGHT, LEGEND_UPPER_LEFT, LEGEND_LOWER_LEFT, \
    LEGEND_LOWER_RIGHT = range(6)
_LEGENDS = {"auto": LEGEND_AUTO, "none": LEGEND_NONE, "upper right": LEGEND_UPPER_RIGHT,
            "upper left": LEGEND_UPPER_LEFT, "lower left": LEGEND_LOWER_LEFT,
            "lower right": LEGEND_LOWER_RIGHT}
_INT = (-(1 << 31), (1 << 31) - 1)


def color(index: int) -> int:
    """Colour number index of the figure palette, as 0xRRGGBB."""
    return C.mnas_figure_color(as_int(index, "index", 0, (1 << 32) - 1))


def _text(s, what):
    if s is None:
        return None
    if not isinstance(s, str):
        raise ArgumentTypeError("%s must be a str or None" % what)
    b = s.encode("utf-8")
    if b"\0" in b:
        raise InvalidArgument("%s contains a NUL character" % what)
    return b


def _doubles(values, what):
    vals = [as_float(v, what) for v in values]
    return vals, (c_double * max(len(vals), 1))(*vals)


class Figure(Handle):
    """An RGB raster of ``width`` x ``height`` pixels split into ``rows`` x
    ``cols`` panels (numbered row by row from the top left):
    ``Figure(ctx, width=800, height=600, rows=1, cols=1)``."""

    __slots__ = ("_ctx",)
    _kind = "figure"

    def __init__(self, ctx: Context, width: int = 800, height: int = 600, rows: int = 1,
                 cols: int = 1) -> None:
        p = check_ctx(ctx)
        ctx.clear_error()
        r = C.mnas_figure_create(p, as_int(width, "width", *_INT), as_int(height, "height", *_INT),
                                 as_int(rows, "rows", *_INT), as_int(cols, "cols", *_INT))
        if not r:
            ctx._fail("mnas_figure_create")
        self._ctx = ctx
        self._setup(r, C.mnas_figure_free, ctx)

    def _check(self, st, what):
        self._ctx._check(st, what)
        return self

    def _panel(self, panel):
        return as_int(panel, "panel", *_INT)

    @property
    def panels(self) -> int:
        return C.mnas_figure_panels(self._p())

    def text_scale(self, scale: float) -> Figure:
        """Text size 1..4 (times the built-in font), 0 to choose from the size."""
        self._ctx.clear_error()
        return self._check(C.mnas_figure_text_scale(self._p(), as_int(scale, "scale", *_INT)),
                           "mnas_figure_text_scale")

    def range(self, panel: int, xlim: Optional[Tuple[float, float]] = None,
              ylim: Optional[Tuple[float, float]] = None) -> Figure:
        """Fix a panel's data range per axis ((lo, hi)); None: automatic."""
        xs = (math.nan, math.nan) if xlim is None else tuple(as_float(v, "xlim") for v in xlim)
        ys = (math.nan, math.nan) if ylim is None else tuple(as_float(v, "ylim") for v in ylim)
        if len(xs) != 2 or len(ys) != 2:
            raise InvalidArgument("xlim and ylim are (lo, hi) pairs")
        self._ctx.clear_error()
        return self._check(C.mnas_figure_panel_range(self._p(), self._panel(panel), xs[0], xs[1],
                                                     ys[0], ys[1]), "mnas_figure_panel_range")

    def get_range(self, panel: int) -> Tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) in use now."""
        out = (c_double * 4)()
        self._ctx.clear_error()
        self._check(C.mnas_figure_panel_get_range(self._p(), self._panel(panel), out),
                    "mnas_figure_panel_get_range")
        return tuple(out)

    def _series(self, f, what, panel, x, y, rgb, size, label):
        fp = self._p()
        xv, xa = _doubles(x, "x")
        yv, ya = _doubles(y, "y")
        if len(xv) != len(yv):  # C reads n values from both
            raise ShapeError("%d x values and %d y values" % (len(xv), len(yv)))
        rgb = as_int(rgb, "rgb", 0, 0xFFFFFF)
        self._ctx.clear_error()
        return self._check(f(fp, self._panel(panel), xa, ya, len(xv), rgb, as_float(size, "size"),
                             _text(label, "label")), what)

    def line(self, panel: int, x: Sequence[float], y: Sequence[float], rgb: Optional[int] = None,
             width: float = 2.0, label: Optional[str] = None) -> Figure:
        """A polyline through (x[i], y[i]); NaN breaks it."""
        rgb = color(0) if rgb is None else rgb
        return self._series(C.mnas_figure_line, "mnas_figure_line", panel, x, y, rgb, width, label)

    def points(self, panel: int, x: Sequence[float], y: Sequence[float], rgb: Optional[int] = None,
               radius: float = 3.0, label: Optional[str] = None) -> Figure:
        """Filled circles at the points."""
        rgb = color(0) if rgb is None else rgb
        return self._series(C.mnas_figure_points, "mnas_figure_points", panel, x, y, rgb, radius, label)

    def title(self, panel: int, text: str) -> Figure:
        self._ctx.clear_error()
        return self._check(C.mnas_figure_title(self._p(), self._panel(panel), _text(text, "title")),
                           "mnas_figure_title")

    def axis_labels(self, panel: int, xlabel: Optional[str] = None,
                    ylabel: Optional[str] = None) -> Figure:
        self._ctx.clear_error()
        return self._check(C.mnas_figure_axis_labels(self._p(), self._panel(panel), _text(xlabel, "xlabel"),
                                                     _text(ylabel, "ylabel")), "mnas_figure_axis_labels")

    def legend(self, panel: int, pos: str = "auto") -> Figure:
        """Legend position: auto, none, upper right/left, lower left/right."""
        if isinstance(pos, str):
            if pos.lower() not in _LEGENDS:
                raise InvalidArgument("unknown legend position %r (%s)" % (pos, ", ".join(_LEGENDS)))
            pos = _LEGENDS[pos.lower()]
        self._ctx.clear_error()
        return self._check(C.mnas_figure_legend(self._p(), self._panel(panel), as_int(pos, "pos", *_INT)),
                           "mnas_figure_legend")

    def clear(self, panel: int) -> Figure:
        self._ctx.clear_error()
        return self._check(C.mnas_figure_panel_clear(self._p(), self._panel(panel)), "mnas_figure_panel_clear")

    def plot_area(self, panel: int) -> Tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the pixel rectangle of the panel's frame."""
        v = [c_int() for _ in range(4)]
        self._ctx.clear_error()
        self._check(C.mnas_figure_plot_area(self._p(), self._panel(panel), *[ctypes.byref(i) for i in v]),
                    "mnas_figure_plot_area")
        return tuple(i.value for i in v)

    def data_to_pixel(self, panel: int, x: float, y: float) -> Tuple[float, float]:
        px, py = c_double(), c_double()
        self._ctx.clear_error()
        self._check(C.mnas_figure_data_to_pixel(self._p(), self._panel(panel), as_float(x, "x"),
                                                as_float(y, "y"), ctypes.byref(px), ctypes.byref(py)),
                    "mnas_figure_data_to_pixel")
        return px.value, py.value

    def pixels(self) -> Tuple[int, int, bytes]:
        """(width, height, bytes of height rows of width * 3 RGB bytes) — a copy."""
        rgb = ctypes.c_void_p()
        w, h = c_int(), c_int()
        self._ctx.clear_error()
        self._check(C.mnas_figure_pixels(self._p(), ctypes.byref(rgb), ctypes.byref(w), ctypes.byref(h)),
                    "mnas_figure_pixels")
        return w.value, h.value, ctypes.string_at(rgb.value, w.value * h.value * 3)

    def save_png(self, path: PathLike) -> Figure:
        """Write the figure as a PNG (atomically: the old file or the new one)."""
        self._ctx.clear_error()
        return self._check(C.mnas_figure_save_png(self._p(), os.fsencode(path)), "mnas_figure_save_png")


def plot_regression(path: PathLike, learners: Union[Learner, Sequence[Learner]],
                    tasks: Union[Task, Sequence[Task]], labels: Optional[Sequence[str]] = None,
                    steps: Optional[int] = None, grid: int = 200,
                    xlim: Tuple[float, float] = (-5.0, 5.0), width: Optional[int] = None,
                    height: Optional[int] = None) -> Figure:
    """The paper's Figure 3: for each task a panel with its true function,
    its support points and every learner's prediction after adapting to the
    support set. Saves a PNG at path and returns the Figure (close it or
    let it be collected)."""
    from .meta import Learner
    if isinstance(learners, Learner):
        learners = [learners]
    learners = list(learners)
    tasks = list(tasks)
    if not learners or not tasks:
        raise InvalidArgument("plot_regression needs at least one learner and one task")
    labels = [l.method for l in learners] if labels is None else list(labels)
    if len(labels) != len(learners):
        raise InvalidArgument("one label per learner")
    ctx = learners[0].ctx
    n = len(tasks)
    cols = min(n, 4)
    rows = min((n + cols - 1) // cols, 8)
    fig = Figure(ctx, width or 420 * cols, height or 340 * rows, rows, cols)
    lo, hi = (as_float(v, "xlim") for v in xlim)
    xs = [lo + (hi - lo) * i / (grid - 1) for i in range(grid)]
    for k, task in enumerate(tasks[:rows * cols]):
        fig.title(k, "%s (task %d)" % (task.family_name, k))
        truth = task.eval(xs)
        if not all(math.isnan(v) for v in truth):
            fig.line(k, xs, truth, color(6), 2.0, "true function")
        sx = [r[0] for r in task.support_x.tolist()]
        sy = [r[0] for r in task.support_y.tolist()]
        fig.points(k, sx, sy, color(6), 4.0, "support")
        for j, (learner, label) in enumerate(zip(learners, labels)):
            fig.line(k, xs, learner.adapt_predict(task, xs, steps), color(j), 2.0, label)
    fig.save_png(path)
    return fig
