"""The nas layer: search spaces, supernet cells, genotypes (derive, parse,
print, compare, Graphviz DOT, one-hot) and the child networks they decode to.

Modules are functional like ``mnas.MLP``: ``cell.add_params(params)``, then
``cell(tape, s0, s1, weights, alpha)`` with alpha an [edges, ops] tensor.
Registering ops implemented in Python is not bound (the library would call
them from its worker threads); the built-in MLP space is
``SearchSpace.mlp(ctx)``.
"""

import ctypes
import array

from ._handle import Handle, as_int
from ._lib import C, decode
from .core import check_ctx
from .errors import ArgumentTypeError
from .nn import Module, _name, check_tape
from .tensors import Tensor


class SearchSpace(Handle):
    """An op registry (``SearchSpace.mlp(ctx)``: "linear", "skip", "zero")."""

    __slots__ = ("_ctx",)
    _kind = "search space"

    def __init__(self, ctx):
        p = check_ctx(ctx)
        ctx.clear_error()
        self._init(ctx, C.mnas_search_space_create(p), "mnas_search_space_create")

    def _init(self, ctx, r, what):
        if not r:
            ctx._fail(what)
        self._ctx = ctx
        self._setup(r, C.mnas_search_space_free, ctx)

    @classmethod
    def mlp(cls, ctx):
        """The paper's MLP space: linear (Linear-ReLU-BN), skip, zero."""
        p = check_ctx(ctx)
        s = cls.__new__(cls)
        ctx.clear_error()
        s._init(ctx, C.mnas_search_space_mlp(p), "mnas_search_space_mlp")
        return s

    @property
    def ctx(self):
        return self._ctx

    def __len__(self):
        return C.mnas_search_space_num_ops(self._p())

    def op_name(self, op):
        n = len(self)
        k = as_int(op, "op")
        if not 0 <= k < n:
            raise IndexError("op %d out of range (%d ops)" % (k, n))
        return decode(C.mnas_search_space_op_name(self._p(), k))

    @property
    def ops(self):
        """The op names in registry order."""
        return [self.op_name(k) for k in range(len(self))]

    def find_op(self, name):
        """Index of the op called name, or -1."""
        return C.mnas_search_space_find_op(self._p(), _name(name))

    def op_is_zero(self, op):
        self.op_name(op)
        return bool(C.mnas_search_space_op_is_zero(self._p(), op))


def _check_space(space):
    if not isinstance(space, SearchSpace):
        raise ArgumentTypeError("expected an mnas.SearchSpace, got %s" % type(space).__name__)
    return space._p()


class Cell(Module):
    """An MLP cell: 2 input states, ``n_nodes`` intermediate nodes, every
    state ``width`` features (``Cell(space, n_nodes, width)``)."""

    __slots__ = ("_space",)
    _kind = "cell"
    _c_add_params = "mnas_cell_add_params"
    _c_num_params = "mnas_cell_num_params"

    def __init__(self, space, n_nodes, width):
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
    def _borrowed(cls, owner, space, ptr):
        c = cls.__new__(cls)
        c._space = space
        c._init_module(space._ctx, ptr, None, owner)
        return c

    @property
    def space(self):
        return self._space

    @property
    def num_nodes(self):
        return C.mnas_cell_num_nodes(self._p())

    @property
    def num_edges(self):
        return C.mnas_cell_num_edges(self._p())

    @property
    def alpha_shape(self):
        """(edges, ops): the shape of the architecture weights."""
        return (self.num_edges, len(self._space))

    def edge(self, node, input):
        """Edge number of (node, input state), or -1."""
        return C.mnas_cell_edge(self._p(), as_int(node, "node", -(1 << 31), (1 << 31) - 1),
                                as_int(input, "input", -(1 << 31), (1 << 31) - 1))

    def forward(self, tape, s0, s1, weights, alpha):
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

    __slots__ = ("_space", "_cell")
    _kind = "supernet"
    _c_add_params = "mnas_supernet_add_params"
    _c_num_params = "mnas_supernet_num_params"

    def __init__(self, space, in_features=1, width=50, n_nodes=3, out_features=1):
        sp = _check_space(space)
        ctx = space._ctx
        ctx.clear_error()
        r = C.mnas_supernet_create_mlp(sp, as_int(in_features, "in_features"), as_int(width, "width"),
                                       as_int(n_nodes, "n_nodes", -(1 << 31), (1 << 31) - 1),
                                       as_int(out_features, "out_features"))
        if not r:
            ctx._fail("mnas_supernet_create_mlp")
        self._space = space
        self._cell = None
        self._init_module(ctx, r, C.mnas_supernet_free, space)

    @property
    def space(self):
        return self._space

    @property
    def cell(self):
        """The supernet's cell (owned by the supernet)."""
        p = self._p()
        if self._cell is None or self._cell._ptr is None:
            self._cell = Cell._borrowed(self, self._space, C.mnas_supernet_cell(p))
        return self._cell

    def forward(self, tape, x, weights, alpha):
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
        g._key = tuple(frozenset(node) for node in g.nodes)
        return g

    @classmethod
    def derive(cls, cell, alpha):
        """Per node the 2 strongest incoming edges, each with its strongest
        non-zero op (alpha: [edges, ops] tensor)."""
        if not isinstance(cell, Cell):
            raise ArgumentTypeError("cell must be an mnas.Cell")
        if not isinstance(alpha, Tensor):
            raise ArgumentTypeError("alpha must be an mnas.Tensor")
        ctx = cell._ctx
        ctx.clear_error()
        r = C.mnas_genotype_derive(cell._p(), alpha._live())
        if not r:
            ctx._fail("mnas_genotype_derive")
        return cls._wrap(ctx, r, cell._space)

    @classmethod
    def parse(cls, space, text):
        """The genotype of a text form; FormatError says where it is wrong."""
        sp = _check_space(space)
        ctx = space._ctx
        ctx.clear_error()
        r = C.mnas_genotype_parse(ctx._p(), sp, _name(text, "text"))
        if not r:
            ctx._fail("mnas_genotype_parse")
        return cls._wrap(ctx, r, space)

    def copy(self):
        self._ctx.clear_error()
        r = C.mnas_genotype_copy(self._p())
        if not r:
            self._ctx._fail("mnas_genotype_copy")
        return Genotype._wrap(self._ctx, r, self._parent)

    @property
    def num_nodes(self):
        return C.mnas_genotype_num_nodes(self._p())

    def input(self, node, k):
        return self._pair(C.mnas_genotype_input, node, k)

    def op(self, node, k):
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

    def to_string(self):
        return self._text(C.mnas_genotype_to_string)

    def to_dot(self, title=""):
        """The cell as a Graphviz DOT graph."""
        return self._text(C.mnas_genotype_to_dot, _name(title, "title"))

    def __str__(self):
        return self.to_string()

    def __repr__(self):
        if self._ptr is None:
            return "<mnas.Genotype closed>"
        return "<mnas.Genotype %s>" % self.to_string()

    @property
    def nodes(self):
        """[((op name, input), (op name, input)), ...] per node."""
        out = []
        for node in self.to_string().split(";"):
            pairs = []
            for pair in node.split(","):
                op, _, inp = pair.strip().partition("@")
                pairs.append((op.strip(), int(inp)))
            out.append(tuple(pairs))
        return out

    def __eq__(self, other):
        if not isinstance(other, Genotype):
            return NotImplemented
        return bool(C.mnas_genotype_equal(self._p(), other._p()))

    def __hash__(self):
        return hash(self._key)

    def onehot(self, cell):
        """The one-hot alpha ([edges, ops] persistent tensor) of this
        genotype for cell."""
        if not isinstance(cell, Cell):
            raise ArgumentTypeError("cell must be an mnas.Cell")
        shape = cell.alpha_shape
        buf = array.array("f", bytes(4 * shape[0] * shape[1]))
        addr, _ = buf.buffer_info()
        self._ctx.clear_error()
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

    def __init__(self, supernet, genotype):
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

    def forward(self, tape, x, weights):
        cp = self._p()
        tp = check_tape(tape)
        arr = self._weights(tape, weights)
        return tape._done(C.mnas_child_forward(cp, tp, tape._arg(x), arr))

    __call__ = forward
