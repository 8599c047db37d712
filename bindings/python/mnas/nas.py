"""The nas layer: search spaces, supernet cells, genotypes (derive, parse,
print, compare, Graphviz DOT, one-hot) and the child networks they decode to.

Modules are functional like ``mnas.MLP``: ``cell.add_params(params)``, then
``cell(tape, s0, s1, weights, alpha)`` with alpha an [edges, ops] tensor.
Registering ops implemented in Python is not bound (the library would call
them from its worker threads); the built-in spaces are ``SearchSpace.mlp(ctx)``
and ``SearchSpace.darts(ctx)`` (the 8 DARTS conv ops). The conv supernet
(``Supernet.conv``) takes one stacked alpha of [2 * edges, ops]: the normal
cell's rows, then the reduction cell's; its genotypes are (normal, reduce)
pairs printed as "normal: ... | reduce: ...".
"""

from __future__ import annotations

import ctypes
import array
from typing import TYPE_CHECKING, Any, List, Tuple, Union

from ._handle import Handle, as_int
from ._lib import C, decode
from .core import check_ctx
from .errors import ArgumentTypeError
from .nn import Module, Params, _name, check_tape, weight_array
from .tensors import Tensor
from ._types import WeightsLike

if TYPE_CHECKING:  # names used in annotations only (no import cycles at run time)
    from .autodiff import Tape
    from .core import Context


class SearchSpace(Handle):
    """An op registry (``SearchSpace.mlp(ctx)``: "linear", "skip", "zero")."""

    __slots__ = ("_ctx",)
    _kind = "search space"

    def __init__(self, ctx: Context) -> None:
        p = check_ctx(ctx)
        ctx.clear_error()
        self._init(ctx, C.mnas_search_space_create(p), "mnas_search_space_create")

    def _init(self, ctx, r, what):
        if not r:
            ctx._fail(what)
        self._ctx = ctx
        self._setup(r, C.mnas_search_space_free, ctx)

    @classmethod
    def mlp(cls, ctx: Context) -> SearchSpace:
        """The paper's MLP space: linear (Linear-ReLU-BN), skip, zero."""
        p = check_ctx(ctx)
        s = cls.__new__(cls)
        ctx.clear_error()
        s._init(ctx, C.mnas_search_space_mlp(p), "mnas_search_space_mlp")
        return s

    @property
    def ctx(self) -> Context:
        return self._ctx

    def __len__(self) -> int:
        return C.mnas_search_space_num_ops(self._p())

    def op_name(self, op: int) -> str:
        n = len(self)
        k = as_int(op, "op")
        if not 0 <= k < n:
            raise IndexError("op %d out of range (%d ops)" % (k, n))
        return decode(C.mnas_search_space_op_name(self._p(), k))

    @property
    def ops(self) -> List[str]:
        """The op names in registry order."""
        return [self.op_name(k) for k in range(len(self))]

    @classmethod
    def darts(cls, ctx: Context) -> SearchSpace:
        """The DARTS conv space: none, max_pool_3x3, avg_pool_3x3,
        skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3,
        dil_conv_5x5."""
        p = check_ctx(ctx)
        s = cls.__new__(cls)
        ctx.clear_error()
        s._init(ctx, C.mnas_search_space_darts(p), "mnas_search_space_darts")
        return s

    def op_num_params(self, op: int, width: int, stride: int = 1) -> int:
        """How many parameters op has on an edge of width at stride."""
        self.op_name(op)
        self._ctx.clear_error()
        n = C.mnas_search_space_op_num_params(self._p(), op, as_int(width, "width"),
                                              as_int(stride, "stride", -(1 << 31), (1 << 31) - 1))
        if n < 0:
            self._ctx._fail("mnas_search_space_op_num_params")
        return n

    def op_add_params(self, op: int, width: int, stride: int, params: Params, prefix: str = "",
                      group: int = 0) -> int:
        """Add op's parameters for an edge of width at stride to params
        (named prefix + suffix); returns the index of the first."""
        self.op_name(op)
        if not isinstance(params, Params):
            raise ArgumentTypeError("params must be an mnas.Params")
        self._ctx.clear_error()
        i = C.mnas_search_space_add_op_params(self._p(), op, as_int(width, "width"),
                                              as_int(stride, "stride", -(1 << 31), (1 << 31) - 1),
                                              params._p(), _name(prefix, "prefix"),
                                              as_int(group, "group", -(1 << 31), (1 << 31) - 1))
        if i < 0:
            self._ctx._fail("mnas_search_space_add_op_params")
        return i

    def op_forward(self, tape: Tape, op: int, x: Tensor, weights: WeightsLike,
                   stride: int = 1) -> Tensor:
        """One op on x ([N, C, H, W] for the conv ops) with its weights."""
        self.op_name(op)
        tp = check_tape(tape)
        if not isinstance(x, Tensor):
            raise ArgumentTypeError("x must be an mnas.Tensor")
        n = self.op_num_params(op, x.shape[1], stride)
        arr = weight_array(tape, weights, n, "op %s" % self.op_name(op))
        return tape._done(C.mnas_search_space_op_forward(
            self._p(), op, tp, tape._arg(x), arr, as_int(stride, "stride", -(1 << 31), (1 << 31) - 1)))

    def find_op(self, name: str) -> int:
        """Index of the op called name, or -1."""
        return C.mnas_search_space_find_op(self._p(), _name(name))

    def op_is_zero(self, op: int) -> bool:
        self.op_name(op)
        return bool(C.mnas_search_space_op_is_zero(self._p(), op))


def _check_space(space):
    if not isinstance(space, SearchSpace):
        raise ArgumentTypeError("expected an mnas.SearchSpace, got %s" % type(space).__name__)
    return space._p()


class Cell(Module):
    """An MLP cell: 2 input states, ``n_nodes`` intermediate nodes, every
    state ``width`` features (``Cell(space, n_nodes, width)``); or a DARTS
    conv cell (``Cell.conv(space, n_nodes, c_prev_prev, c_prev, channels,
    reduction, reduction_prev)``)."""

    __slots__ = ("_space",)
    _kind = "cell"
    _c_add_params = "mnas_cell_add_params"
    _c_num_params = "mnas_cell_num_params"

    def __init__(self, space: SearchSpace, n_nodes: int, width: int) -> None:
        sp = _check_space(space)
        ctx = space._ctx
        ctx.clear_error()
        r = C.mnas_cell_create_mlp(sp, as_int(n_nodes, "n_nodes", -(1 << 31), (1 << 31) - 1),
                                   as_int(width, "width"))
        if not r:
            ctx._fail("mnas_cell_create_mlp")
        self._space = space
        self._init_module(ctx, r, C.mnas_cell_free, space)

    @classmethod
    def conv(cls, space: SearchSpace, n_nodes: int, c_prev_prev: int, c_prev: int, channels: int,
             reduction: bool = False, reduction_prev: bool = False) -> Cell:
        """A DARTS conv cell of ``channels`` per state; inputs of c_prev_prev
        and c_prev channels; output n_nodes * channels channels."""
        sp = _check_space(space)
        ctx = space._ctx
        ctx.clear_error()
        r = C.mnas_cell_create_conv(sp, as_int(n_nodes, "n_nodes", -(1 << 31), (1 << 31) - 1),
                                    as_int(c_prev_prev, "c_prev_prev"), as_int(c_prev, "c_prev"),
                                    as_int(channels, "channels"), 1 if reduction else 0,
                                    1 if reduction_prev else 0)
        if not r:
            ctx._fail("mnas_cell_create_conv")
        c = cls.__new__(cls)
        c._space = space
        c._init_module(ctx, r, C.mnas_cell_free, space)
        return c

    @property
    def is_conv(self) -> bool:
        return bool(C.mnas_cell_is_conv(self._p()))

    @property
    def is_reduction(self) -> bool:
        return bool(C.mnas_cell_is_reduction(self._p()))

    @property
    def out_width(self) -> int:
        """Features (MLP) or channels (conv: n_nodes * channels) of the output."""
        return C.mnas_cell_out_width(self._p())

    @classmethod
    def _borrowed(cls, owner, space, ptr):
        c = cls.__new__(cls)
        c._space = space
        c._init_module(space._ctx, ptr, None, owner)
        return c

    @property
    def space(self) -> SearchSpace:
        return self._space

    @property
    def num_nodes(self) -> int:
        return C.mnas_cell_num_nodes(self._p())

    @property
    def num_edges(self) -> int:
        return C.mnas_cell_num_edges(self._p())

    @property
    def alpha_shape(self) -> Tuple[int, int]:
        """(edges, ops): the shape of the architecture weights."""
        return (self.num_edges, len(self._space))

    def edge(self, node: int, input: int) -> int:
        """Edge number of (node, input state), or -1."""
        return C.mnas_cell_edge(self._p(), as_int(node, "node", -(1 << 31), (1 << 31) - 1),
                                as_int(input, "input", -(1 << 31), (1 << 31) - 1))

    def forward(self, tape: Tape, s0: Tensor, s1: Tensor, weights: WeightsLike,
                alpha: Tensor) -> Tensor:
        cp = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        return tape._done(C.mnas_cell_forward(cp, tp, tape._arg(s0), tape._arg(s1), arr,
                                              tape._arg(alpha)))

    __call__ = forward


class Supernet(Module):
    """The paper's toy supernet: stem Linear(in -> width) + ReLU, one MLP
    cell, head Linear(width -> out): ``Supernet(space, in_features, width,
    n_nodes, out_features)``; ``net(tape, x, weights, alpha)``."""

    __slots__ = ("_space", "_cells")
    _kind = "supernet"
    _c_add_params = "mnas_supernet_add_params"
    _c_num_params = "mnas_supernet_num_params"

    def __init__(self, space: SearchSpace, in_features: int = 1, width: int = 50, n_nodes: int = 3,
                 out_features: int = 1) -> None:
        sp = _check_space(space)
        ctx = space._ctx
        ctx.clear_error()
        r = C.mnas_supernet_create_mlp(sp, as_int(in_features, "in_features"), as_int(width, "width"),
                                       as_int(n_nodes, "n_nodes", -(1 << 31), (1 << 31) - 1),
                                       as_int(out_features, "out_features"))
        if not r:
            ctx._fail("mnas_supernet_create_mlp")
        self._space = space
        self._cells = None
        self._init_module(ctx, r, C.mnas_supernet_free, space)

    @classmethod
    def conv(cls, space: SearchSpace, in_channels: int = 1, channels: int = 16, n_nodes: int = 4,
             n_classes: int = 5) -> Supernet:
        """The paper's conv supernet: stem 3x3 conv (-> 3C) - BN, a normal
        cell of C channels, a reduction cell of 2C, global average pooling,
        Linear head. ``net(tape, x, weights, alpha)`` with x [N,
        in_channels, H, W] and alpha [2 * edges, ops] (normal rows first)."""
        sp = _check_space(space)
        ctx = space._ctx
        ctx.clear_error()
        r = C.mnas_supernet_create_conv(sp, as_int(in_channels, "in_channels"),
                                        as_int(channels, "channels"),
                                        as_int(n_nodes, "n_nodes", -(1 << 31), (1 << 31) - 1),
                                        as_int(n_classes, "n_classes"))
        if not r:
            ctx._fail("mnas_supernet_create_conv")
        n = cls.__new__(cls)
        n._space = space
        n._cells = None
        n._init_module(ctx, r, C.mnas_supernet_free, space)
        return n

    @property
    def space(self) -> SearchSpace:
        return self._space

    @property
    def is_conv(self) -> bool:
        return bool(C.mnas_supernet_is_conv(self._p()))

    @property
    def stem_stride(self) -> int:
        """The conv supernet's stem stride: 1, 2 (stride-2 stem conv) or 4
        (and a 2x2 average pooling); settable, MLP supernets refuse it."""
        return C.mnas_supernet_stem_stride(self._p())

    @stem_stride.setter
    def stem_stride(self, stride: int) -> None:
        p = self._p()
        self._ctx.clear_error()
        self._ctx._check(C.mnas_supernet_set_stem_stride(p, as_int(stride, "stride", -(1 << 31), (1 << 31) - 1)),
                         "mnas_supernet_set_stem_stride")

    @property
    def cells(self) -> List[Cell]:
        """The supernet's cells (owned by it): [cell] for the MLP one,
        [normal, reduction] for the conv one."""
        p = self._p()
        if self._cells is None or any(c._ptr is None for c in self._cells):
            self._cells = [Cell._borrowed(self, self._space, C.mnas_supernet_cell_at(p, k))
                           for k in range(C.mnas_supernet_num_cells(p))]
        return list(self._cells)

    @property
    def cell(self) -> Cell:
        """The supernet's (first) cell (owned by the supernet)."""
        return self.cells[0]

    @property
    def alpha_rows(self) -> int:
        return C.mnas_supernet_alpha_rows(self._p())

    @property
    def alpha_shape(self) -> Tuple[int, int]:
        """(rows, ops) of the alpha the forward takes."""
        return (self.alpha_rows, len(self._space))

    def forward(self, tape: Tape, x: Tensor, weights: WeightsLike, alpha: Tensor) -> Tensor:
        np_ = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        return tape._done(C.mnas_supernet_forward(np_, tp, tape._arg(x), arr, tape._arg(alpha)))

    __call__ = forward


class Genotype(Handle):
    """A discrete cell: per node two (op, input state) pairs.

    ``str(g)`` is the text form ("linear@0,skip@1;..."), ``g.nodes`` the
    same as a list of ((op, input), (op, input)), ``g.to_dot(title)`` a
    Graphviz DOT graph, ``g == h`` compares cells. Made by
    ``Genotype.derive(cell, alpha)``, ``Genotype.parse(space, text)`` and
    ``learner.genotype(task)``."""

    __slots__ = ("_ctx", "_key")
    _kind = "genotype"

    @classmethod
    def _wrap(cls, ctx, ptr, parent):
        g = cls.__new__(cls)
        g._ctx = ctx
        g._key = None
        g._setup(ptr, C.mnas_genotype_free, parent)
        # Genotypes are immutable: a hash consistent with ==, which compares
        # each node's two pairs as a set.
        g._key = tuple(tuple(frozenset(node) for node in cell) for cell in g.cells)
        return g

    @classmethod
    def derive(cls, cell: Cell, alpha: Tensor) -> Genotype:
        """Per node the 2 strongest incoming edges, each with its strongest
        non-zero op (alpha: [edges, ops] tensor). cell may be a Supernet:
        alpha is then its whole [alpha_rows, ops] and the conv supernet
        gives a (normal, reduce) pair."""
        if not isinstance(cell, (Cell, Supernet)):
            raise ArgumentTypeError("cell must be an mnas.Cell or mnas.Supernet")
        if not isinstance(alpha, Tensor):
            raise ArgumentTypeError("alpha must be an mnas.Tensor")
        ctx = cell._ctx
        ctx.clear_error()
        if isinstance(cell, Supernet):
            r = C.mnas_genotype_derive_supernet(cell._p(), alpha._live())
            what = "mnas_genotype_derive_supernet"
        else:
            r = C.mnas_genotype_derive(cell._p(), alpha._live())
            what = "mnas_genotype_derive"
        if not r:
            ctx._fail(what)
        return cls._wrap(ctx, r, cell._space)

    @classmethod
    def pair(cls, normal: Genotype, reduce: Genotype) -> Genotype:
        """A (normal, reduce) pair from two single-cell genotypes."""
        if not isinstance(normal, Genotype) or not isinstance(reduce, Genotype):
            raise ArgumentTypeError("normal and reduce must be mnas.Genotype objects")
        ctx = normal._ctx
        ctx.clear_error()
        r = C.mnas_genotype_make_pair(normal._p(), reduce._p())
        if not r:
            ctx._fail("mnas_genotype_make_pair")
        return cls._wrap(ctx, r, normal._parent)

    @property
    def num_cells(self) -> int:
        """1 for a single cell, 2 for a (normal, reduce) pair."""
        return C.mnas_genotype_num_cells(self._p())

    def part(self, k: int) -> Genotype:
        """Cell k of a pair (0 normal, 1 reduce) as a single-cell genotype."""
        self._ctx.clear_error()
        r = C.mnas_genotype_part(self._p(), as_int(k, "k", -(1 << 31), (1 << 31) - 1))
        if not r:
            self._ctx._fail("mnas_genotype_part")
        return Genotype._wrap(self._ctx, r, self._parent)

    @classmethod
    def parse(cls, space: SearchSpace, text: str) -> Genotype:
        """The genotype of a text form; FormatError says where it is wrong."""
        sp = _check_space(space)
        ctx = space._ctx
        ctx.clear_error()
        r = C.mnas_genotype_parse(ctx._p(), sp, _name(text, "text"))
        if not r:
            ctx._fail("mnas_genotype_parse")
        return cls._wrap(ctx, r, space)

    def copy(self) -> Genotype:
        self._ctx.clear_error()
        r = C.mnas_genotype_copy(self._p())
        if not r:
            self._ctx._fail("mnas_genotype_copy")
        return Genotype._wrap(self._ctx, r, self._parent)

    @property
    def num_nodes(self) -> int:
        return C.mnas_genotype_num_nodes(self._p())

    def input(self, node: int, k: int) -> int:
        return self._pair(C.mnas_genotype_input, node, k)

    def op(self, node: int, k: int) -> int:
        """Index of the op of pair k of node (in the search space)."""
        return self._pair(C.mnas_genotype_op, node, k)

    def _pair(self, f, node, k):
        v = f(self._p(), as_int(node, "node", -(1 << 31), (1 << 31) - 1),
              as_int(k, "k", -(1 << 31), (1 << 31) - 1))
        if v < 0:
            raise IndexError("no pair %r of node %r" % (k, node))
        return v

    def _text(self, f, *args):
        p = self._p()
        self._ctx.clear_error()
        n = f(p, *args, None, 0)
        if n < 0:
            self._ctx._fail(f.__name__)
        buf = ctypes.create_string_buffer(n + 1)
        f(p, *args, buf, n + 1)
        return decode(buf.value)

    def to_string(self) -> str:
        return self._text(C.mnas_genotype_to_string)

    def to_dot(self, title: str = "") -> str:
        """The cell as a Graphviz DOT graph."""
        return self._text(C.mnas_genotype_to_dot, _name(title, "title"))

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<mnas.Genotype closed>"
        return "<mnas.Genotype %s>" % self.to_string()

    @staticmethod
    def _parse_nodes(text):
        out = []
        for node in text.split(";"):
            pairs = []
            for pair in node.split(","):
                op, _, inp = pair.strip().partition("@")
                pairs.append((op.strip(), int(inp)))
            out.append(tuple(pairs))
        return out

    @property
    def cells(self) -> List[List[Tuple[Tuple[str, int], ...]]]:
        """Per cell (one, or normal and reduce) its nodes as in ``nodes``."""
        text = self.to_string()
        if "|" not in text:
            return [self._parse_nodes(text)]
        return [self._parse_nodes(part.strip().partition(":")[2]) for part in text.split("|")]

    @property
    def nodes(self) -> List[Tuple[Tuple[str, int], ...]]:
        """[((op name, input), (op name, input)), ...] per node (of the
        normal cell for a pair)."""
        return self.cells[0]

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Genotype):
            return NotImplemented
        return bool(C.mnas_genotype_equal(self._p(), other._p()))

    def __hash__(self) -> int:
        return hash(self._key)

    def onehot(self, cell: Union[Cell, Supernet]) -> Tensor:
        """The one-hot alpha ([edges, ops] persistent tensor) of this
        genotype for cell; for a Supernet its whole [alpha_rows, ops]."""
        if not isinstance(cell, (Cell, Supernet)):
            raise ArgumentTypeError("cell must be an mnas.Cell or mnas.Supernet")
        shape = cell.alpha_shape
        buf = array.array("f", bytes(4 * shape[0] * shape[1]))
        addr, _ = buf.buffer_info()
        self._ctx.clear_error()
        if isinstance(cell, Supernet):
            st = C.mnas_genotype_onehot_supernet(self._p(), cell._p(), addr)
            self._ctx._check(st, "mnas_genotype_onehot_supernet")
        else:
            st = C.mnas_genotype_onehot(self._p(), cell._p(), addr)
            self._ctx._check(st, "mnas_genotype_onehot")
        return self._ctx.tensor(buf, shape)


class Child(Module):
    """The stand-alone network a genotype decodes to (``Child(supernet,
    genotype)``): the supernet's stem and head and each node's two chosen
    ops. Parameter names match the supernet's, so
    ``child_params.copy_matching(supernet_params)`` transfers the weights."""

    __slots__ = ()
    _kind = "child network"
    _c_add_params = "mnas_child_add_params"
    _c_num_params = "mnas_child_num_params"

    def __init__(self, supernet: Supernet, genotype: Genotype) -> None:
        if not isinstance(supernet, Supernet):
            raise ArgumentTypeError("supernet must be an mnas.Supernet")
        if not isinstance(genotype, Genotype):
            raise ArgumentTypeError("genotype must be an mnas.Genotype")
        ctx = supernet._ctx
        ctx.clear_error()
        r = C.mnas_child_create(supernet._p(), genotype._p())
        if not r:
            ctx._fail("mnas_child_create")
        self._init_module(ctx, r, C.mnas_child_free, supernet)

    def forward(self, tape: Tape, x: Tensor, weights: WeightsLike) -> Tensor:
        cp = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        return tape._done(C.mnas_child_forward(cp, tp, tape._arg(x), arr))

    __call__ = forward
