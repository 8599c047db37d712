"""The DARTS conv space, conv cells and supernet, (normal, reduce) genotype
pairs, conv child networks and the conv MAML baseline through the bindings."""

import unittest

from mnas_test_util import mnas

DARTS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
         "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


class TestConvSpace(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=9)
        self.space = mnas.SearchSpace.darts(self.ctx)
        self.tape = mnas.Tape(self.ctx)

    def tearDown(self):
        self.ctx.close()

    def test_space_and_ops(self):
        s = self.space
        self.assertEqual(s.ops, DARTS)
        self.assertTrue(s.op_is_zero(0))
        self.assertEqual(s.op_num_params(3, 4, 1), 0)
        self.assertEqual(s.op_num_params(3, 4, 2), 2)
        with self.assertRaises(mnas.InvalidArgument):
            s.op_num_params(3, 5, 2)  # factorized reduce needs an even width
        p = mnas.Params(self.ctx)
        self.assertEqual(s.op_add_params(4, 4, 2, p, "sep."), 0)
        self.assertEqual(p.names(), ["sep.dw1", "sep.pw1", "sep.dw2", "sep.pw2"])
        x = self.ctx.randn((2, 4, 7, 7))
        y = s.op_forward(self.tape, 4, x, p, stride=2)
        self.assertEqual(y.shape, (2, 4, 4, 4))
        self.assertEqual(s.op_forward(self.tape, 1, x, [], stride=1).shape, (2, 4, 7, 7))
        with self.assertRaises(mnas.ShapeError):
            s.op_forward(self.tape, 4, x, [], stride=2)

    def test_cells(self):
        normal = mnas.Cell.conv(self.space, 4, 6, 6, 4)
        red = mnas.Cell.conv(self.space, 4, 6, 6, 4, reduction=True)
        self.assertTrue(normal.is_conv)
        self.assertFalse(normal.is_reduction)
        self.assertTrue(red.is_reduction)
        self.assertEqual(normal.out_width, 16)
        self.assertEqual(normal.alpha_shape, (14, 8))
        s0, s1 = self.ctx.randn((2, 6, 6, 6)), self.ctx.randn((2, 6, 6, 6))
        alpha = self.ctx.tensor([[1 / 8.0] * 8] * 14)
        for cell, hw in ((normal, 6), (red, 3)):
            p = mnas.Params(self.ctx)
            cell.add_params(p)
            self.assertEqual(cell(self.tape, s0, s1, p, alpha).shape, (2, 16, hw, hw))
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Cell.conv(self.space, 4, 6, 6, 5, reduction_prev=True)
        self.assertFalse(mnas.Cell(mnas.SearchSpace.mlp(self.ctx), 3, 8).is_conv)

    def test_supernet_genotype_child(self):
        net = mnas.Supernet.conv(self.space, in_channels=1, channels=4, n_nodes=4, n_classes=5)
        self.assertTrue(net.is_conv)
        self.assertEqual(len(net.cells), 2)
        self.assertTrue(net.cells[1].is_reduction)
        self.assertEqual(net.alpha_shape, (28, 8))
        p = mnas.Params(self.ctx)
        net.add_params(p, "net.")
        self.assertEqual(len(p), net.num_params)
        self.assertIn("net.reduce.e0.skip_connect.fr_w1", p.names())
        x = self.ctx.randn((5, 1, 12, 12))
        alpha = self.ctx.randn((28, 8))
        alpha.requires_grad = True
        y = net(self.tape, x, p, self.tape.softmax(alpha))
        self.assertEqual(y.shape, (5, 5))
        ga = self.tape.grad(self.tape.mean(self.tape.square(y)), alpha)
        self.assertEqual(ga.shape, (28, 8))
        # the stem stride: another network on the same weights, refused values
        self.assertEqual(net.stem_stride, 1)
        net.stem_stride = 4
        self.assertEqual(net.stem_stride, 4)
        y4 = net(self.tape, x, p, self.tape.softmax(alpha))
        self.assertEqual(y4.shape, (5, 5))
        self.assertNotEqual(y4.tolist(), y.tolist())
        with self.assertRaises(mnas.InvalidArgument):
            net.stem_stride = 3
        self.assertEqual(net.stem_stride, 4)
        net.stem_stride = 1

        g = mnas.Genotype.derive(net, alpha)
        self.assertEqual(g.num_cells, 2)
        text = str(g)
        self.assertTrue(text.startswith("normal: ") and " | reduce: " in text)
        h = mnas.Genotype.parse(self.space, text)
        self.assertEqual(g, h)
        self.assertEqual(hash(g), hash(h))
        self.assertEqual(len(g.cells), 2)
        self.assertEqual(g.nodes, g.cells[0])
        self.assertEqual(mnas.Genotype.pair(g.part(0), g.part(1)), g)
        self.assertNotEqual(g.part(0), g)
        self.assertIn("cluster_reduce", g.to_dot("pair"))
        with self.assertRaises(mnas.FormatError):
            mnas.Genotype.parse(self.space, text.replace("reduce:", "reduction:"))
        oh = g.onehot(net)
        self.assertEqual(oh.shape, (28, 8))
        self.assertEqual(sum(oh.tolist()[r].count(1.0) for r in range(28)), 16)
        self.assertEqual(mnas.Genotype.derive(net, oh), g)

        child = mnas.Child(net, g)
        cp = mnas.Params(self.ctx)
        child.add_params(cp, "net.")
        self.assertEqual(cp.copy_matching(p), len(cp))
        yc = child(self.tape, x, cp)
        ys = net(self.tape, x, p, oh)
        self.assertEqual(yc.tolist(), ys.tolist())
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Child(net, g.part(0))

    def test_convnet(self):
        m = mnas.ConvNet(self.ctx, 1, 28, 28, n_classes=5)
        self.assertEqual(m.filters, 32)
        self.assertEqual(m.num_params, 18)
        p = mnas.Params(self.ctx)
        m.add_params(p, "maml.")
        self.assertEqual(p.names()[16:], ["maml.head.w", "maml.head.b"])
        y = m(self.tape, self.ctx.randn((5, 1, 28, 28)), p)
        self.assertEqual(y.shape, (5, 5))
        with self.assertRaises(mnas.ShapeError):
            m(self.tape, self.ctx.randn((5, 3, 28, 28)), p)
        with self.assertRaises(mnas.InvalidArgument):
            mnas.ConvNet(self.ctx, 1, 8, 8)
        self.assertEqual(mnas.ConvNet(self.ctx, 3, 84, 84, filters=64).filters, 64)


if __name__ == "__main__":
    unittest.main()
