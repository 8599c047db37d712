"""Search spaces, cells, supernets, genotypes and child networks, and the
M-NAS building blocks (task encoder, controller, modulator)."""

import unittest

from mnas_test_util import mnas


class TestNas(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=6)
        self.space = mnas.SearchSpace.mlp(self.ctx)
        self.tape = mnas.Tape(self.ctx)

    def tearDown(self):
        self.ctx.close()

    def test_search_space(self):
        s = self.space
        self.assertEqual(s.ops, ["linear", "skip", "zero"])
        self.assertEqual(s.find_op("skip"), 1)
        self.assertEqual(s.find_op("conv"), -1)
        self.assertTrue(s.op_is_zero(2))
        self.assertFalse(s.op_is_zero(0))
        with self.assertRaises(IndexError):
            s.op_name(3)
        self.assertEqual(len(mnas.SearchSpace(self.ctx)), 0)

    def test_cell_and_supernet(self):
        cell = mnas.Cell(self.space, 3, 8)
        self.assertEqual(cell.num_nodes, 3)
        self.assertEqual(cell.num_edges, 2 + 3 + 4)
        self.assertEqual(cell.alpha_shape, (9, 3))
        self.assertEqual(cell.edge(1, 0), 2)
        self.assertEqual(cell.edge(5, 0), -1)
        p = mnas.Params(self.ctx)
        cell.add_params(p, "cell.")
        self.assertEqual(len(p), cell.num_params)
        s0, s1 = self.ctx.randn((4, 8)), self.ctx.randn((4, 8))
        alpha = self.ctx.tensor([[1 / 3.0] * 3] * 9)
        out = cell(self.tape, s0, s1, p, alpha)
        self.assertEqual(out.shape, (4, 8))
        with self.assertRaises(mnas.ShapeError):
            cell(self.tape, s0, s1, p, self.ctx.zeros((9, 2)))

        net = mnas.Supernet(self.space, 1, 16, 3, 1)
        self.assertEqual(net.cell.num_edges, 9)
        q = mnas.Params(self.ctx)
        net.add_params(q)
        self.assertIn("stem.w", q.names())
        x = self.ctx.randn((5, 1))
        alpha.requires_grad = True
        y = net(self.tape, x, q, alpha)
        self.assertEqual(y.shape, (5, 1))
        ga = self.tape.grad(self.tape.mean(self.tape.square(y)), alpha)
        self.assertEqual(ga.shape, (9, 3))

    def test_genotypes(self):
        text = "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3"
        g = mnas.Genotype.parse(self.space, text)
        self.assertEqual(str(g), text)
        self.assertEqual(g.num_nodes, 3)
        self.assertEqual(g.nodes[1], (("skip", 0), ("linear", 2)))
        self.assertEqual(g.input(2, 1), 3)
        self.assertEqual(g.op(2, 1), self.space.find_op("skip"))
        with self.assertRaises(IndexError):
            g.op(3, 0)
        same = mnas.Genotype.parse(self.space, " skip@1 , linear@0 ; skip@0,linear@2;skip@3,linear@1")
        self.assertEqual(g, same)
        self.assertEqual(hash(g), hash(same))
        self.assertEqual(len({g, same, g.copy()}), 1)
        other = mnas.Genotype.parse(self.space, "linear@0,linear@1;skip@0,linear@2;linear@1,skip@3")
        self.assertNotEqual(g, other)
        dot = g.to_dot("toy")
        self.assertTrue(dot.startswith("digraph"))
        self.assertIn("toy", dot)
        for bad in ("linear@0", "conv@0,skip@1;skip@0,linear@2;linear@1,skip@3",
                    "linear@0,skip@9;skip@0,linear@2;linear@1,skip@3", ""):
            with self.assertRaises(mnas.FormatError):
                mnas.Genotype.parse(self.space, bad)
        # derive from alpha: one-hot alpha of a genotype gives it back
        cell = mnas.Cell(self.space, 3, 4)
        onehot = g.onehot(cell)
        self.assertEqual(onehot.shape, (9, 3))
        self.assertEqual(sum(sum(r) for r in onehot.tolist()), 6)
        self.assertEqual(mnas.Genotype.derive(cell, onehot), g)

    def test_child_equals_supernet_under_one_hot_alpha(self):
        net = mnas.Supernet(self.space, 1, 8, 3, 1)
        sp = mnas.Params(self.ctx)
        net.add_params(sp)
        g = mnas.Genotype.parse(self.space, "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3")
        child = mnas.Child(net, g)
        cp = mnas.Params(self.ctx)
        child.add_params(cp)
        self.assertLess(child.num_params, net.num_params)
        self.assertEqual(cp.copy_matching(sp), len(cp))
        x = self.ctx.randn((6, 1))
        y_child = child(self.tape, x, cp).tolist()
        y_net = net(self.tape, x, sp, g.onehot(net.cell)).tolist()
        for u, v in zip(y_child, y_net):
            self.assertAlmostEqual(u[0], v[0], places=4)
        g.close()  # the child copied what it needs
        self.assertEqual(len(child(self.tape, x, cp).tolist()), 6)

    def test_mix(self):
        tp = self.tape
        alpha = self.ctx.tensor([[0.5, 2.0], [1.0, -1.0]], requires_grad=True)
        ys = [self.ctx.tensor([1.0, 2.0]), self.ctx.tensor([10.0, 20.0])]
        m = tp.mix(alpha, ys, [1, 3])  # 2.0 * ys[0] + (-1.0) * ys[1]
        self.assertEqual(m.tolist(), [-8.0, -16.0])
        g = tp.grad(tp.sum(m), alpha)
        self.assertEqual(g.tolist(), [[0.0, 3.0], [0.0, 30.0]])
        with self.assertRaises(mnas.InvalidArgument):
            tp.mix(alpha, ys, [1])

    def test_encoder_controller_modulator(self):
        enc = mnas.TaskEncoder(self.ctx, 1, 1, f_dim=8, z_dim=6, kind="lstm")
        self.assertEqual(enc.z_dim, 6)
        p = mnas.Params(self.ctx)
        first_enc = enc.add_params(p, "enc.")
        task = mnas.regression_task(self.ctx, 4, 0, k_shot=5)
        we = p[first_enc:first_enc + enc.num_params]
        z, lr = enc(self.tape, task.support_x, task.support_y, we, perm=[4, 3, 2, 1, 0])
        self.assertEqual(z.shape, (1, 6))
        self.assertEqual(lr.shape, ())
        self.assertGreaterEqual(lr.item(), 0.0)
        z2, none = enc(self.tape, task.support_x, task.support_y, we, recon=False)
        self.assertIsNone(none)
        with self.assertRaises(mnas.ShapeError):
            enc(self.tape, task.support_x, task.support_y, we, perm=[0, 1])
        with self.assertRaises(mnas.InvalidArgument):
            enc(self.tape, task.support_x, task.support_y, we, perm=[0, 0, 1, 2, 3])

        ctl = mnas.Controller(self.ctx, 6, 10, 9, 3)
        first_ctl = ctl.add_params(p, "ctl.")
        alpha = ctl(self.tape, z, p[first_ctl:first_ctl + ctl.num_params])
        self.assertEqual(alpha.shape, (9, 3))
        for row in alpha.tolist():
            self.assertAlmostEqual(sum(row), 1.0, places=5)

        targets = [self.ctx.randn((4, 2)), self.ctx.randn((4,))]
        mod = mnas.Modulator(self.ctx, 6, targets, mode="channel", bias_init=3.0)
        first_mod = mod.add_params(p, "mod.")
        out = mod(self.tape, z, p[first_mod:first_mod + mod.num_params], targets)
        self.assertEqual([o.shape for o in out], [(4, 2), (4,)])
        ratio = out[1].tolist()[0] / targets[1].tolist()[0]
        self.assertTrue(0.0 < ratio < 1.0)
        # 2 sigmoid with bias 3: tau = 2 sigmoid(3 + W z) can exceed 1
        mod2 = mnas.Modulator(self.ctx, 6, targets, mode="channel", bias_init=3.0, form="two_sigmoid")
        p2 = mnas.Params(self.ctx)
        mod2.add_params(p2, "")
        out2 = mod2(self.tape, z, p2[0:mod2.num_params], targets)
        ratio2 = out2[1].tolist()[0] / targets[1].tolist()[0]
        self.assertTrue(1.0 < ratio2 < 2.0)
        # FiLM: gamma per channel (4 + 4) and a shift per element of the 1-D target (4)
        mod3 = mnas.Modulator(self.ctx, 6, targets, mode="channel", bias_init=3.0, form="film")
        p3 = mnas.Params(self.ctx)
        mod3.add_params(p3, "")
        self.assertEqual(p3[0].shape, (12, 6))
        out3 = mod3(self.tape, z, p3[0:mod3.num_params], targets)
        self.assertEqual([o.shape for o in out3], [(4, 2), (4,)])
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Modulator(self.ctx, 6, targets, form="affine")
        with self.assertRaises(mnas.ShapeError):
            mod(self.tape, z, p[first_mod:first_mod + mod.num_params], targets[:1])
        # gradients reach the encoder through controller and modulator
        loss = self.tape.add(self.tape.sum(alpha), self.tape.sum(out[0]))
        g = self.tape.grad(loss, we[0])
        self.assertEqual(g.shape, we[0].shape)


if __name__ == "__main__":
    unittest.main()
