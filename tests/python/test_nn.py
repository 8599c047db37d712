"""Parameter sets, optimisers and the MLP through the binding."""

import math
import unittest

from mnas_test_util import mnas


class TestParams(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=2)

    def tearDown(self):
        self.ctx.close()

    def test_add_and_query(self):
        p = mnas.Params(self.ctx)
        self.assertEqual(p.add("enc.w", (50, 1), "fan_in", 1.0), 0)
        self.assertEqual(p.add("enc.b", 50, "zeros"), 1)
        self.assertEqual(p.add("alpha", (), "constant", 0.5, group=1), 2)
        self.assertEqual(len(p), 3)
        self.assertEqual(p.numel, 101)
        self.assertEqual(p.names(), ["enc.w", "enc.b", "alpha"])
        self.assertEqual(p.find("alpha"), 2)
        self.assertEqual(p.find("nope"), -1)
        self.assertEqual(p.group(2), 1)
        self.assertEqual(p["alpha"].item(), 0.5)
        self.assertEqual(p[-1].item(), 0.5)
        self.assertEqual(p[1].tolist(), [0.0] * 50)
        self.assertTrue(all(abs(v[0]) <= 1.0 for v in p["enc.w"].tolist()))
        self.assertTrue(p[0].requires_grad)
        self.assertIs(p[0], p[0])  # cached wrappers
        self.assertEqual(len(p[0:2]), 2)
        self.assertEqual(len(list(p)), 3)
        self.assertEqual(p.grad(0).shape, (50, 1))
        self.assertFalse(p.grad(0).requires_grad)
        with self.assertRaises(IndexError):
            p[3]
        with self.assertRaises(KeyError):
            p["nope"]
        with self.assertRaises(mnas.InvalidArgument) as cm:
            p.add("enc.w", 3)  # duplicate
        self.assertIn("enc.w", str(cm.exception))
        with self.assertRaises(mnas.InvalidArgument):
            p.add("bad name", 3)
        with self.assertRaises(mnas.InvalidArgument):
            p.add("g", 3, group=16)
        with self.assertRaises(mnas.InvalidArgument):
            p.add("u", 3, "uniform", -1.0)
        with self.assertRaises(mnas.InvalidArgument):
            p.add("z", 3, "sparkly")
        self.assertEqual(len(p), 3)  # refusals change nothing
        self.assertIn("enc.w", p.state_dict())

    def test_init_is_deterministic(self):
        p = mnas.Params(self.ctx)
        p.add("w", (4, 4), "normal", 0.1)
        r = mnas.Rng(self.ctx, 9)
        p.init(r)
        a = p[0].tolist()
        r.seed(9)
        p.init(r)
        self.assertEqual(p[0].tolist(), a)
        p.init()  # context generator

    def test_gradients_and_copies(self):
        p = mnas.Params(self.ctx)
        p.add("a", 2, "ones")
        p.add("b", 3, "ones")
        tp = mnas.Tape(self.ctx)
        loss = tp.add(tp.sum(tp.square(p["a"])), tp.sum(p["b"]))
        g = tp.grad(loss, p.tensors())
        p.accumulate_grad(g, 0.5)
        p.accumulate_grad([None, g[1]])
        self.assertEqual(p.grad(0).tolist(), [1.0, 1.0])
        self.assertEqual(p.grad(1).tolist(), [1.5, 1.5, 1.5])
        self.assertAlmostEqual(p.grad_norm(), math.sqrt(2 + 3 * 2.25), places=5)
        with self.assertRaises(mnas.ShapeError):
            p.accumulate_grad(g[:1])
        p.zero_grad()
        self.assertEqual(p.grad_norm(), 0.0)
        q = mnas.Params(self.ctx)
        q.add("a", 2, "zeros")
        q.add("b", 3, "zeros")
        q.copy_values(p)
        self.assertEqual(q["b"].tolist(), [1.0, 1.0, 1.0])
        r = mnas.Params(self.ctx)
        r.add("b", 3, "zeros")
        r.add("c", 1, "zeros")
        self.assertEqual(r.copy_matching(p), 1)
        self.assertEqual(r["b"].tolist(), [1.0, 1.0, 1.0])
        with self.assertRaises(mnas.ShapeError):
            q.copy_values(r)


class TestOptim(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context()
        self.p = mnas.Params(self.ctx)
        self.p.add("w", 2, "constant", 1.0)
        self.tape = mnas.Tape(self.ctx)

    def tearDown(self):
        self.ctx.close()

    def _grad(self, values):
        self.p.zero_grad()
        self.p.accumulate_grad([self.ctx.tensor(values)])

    def test_sgd_exact(self):
        opt = mnas.SGD(self.p, lr=0.1, momentum=0.5)
        self._grad([1.0, -2.0])
        opt.step()
        w = self.p[0].tolist()
        self.assertAlmostEqual(w[0], 0.9, places=6)
        self.assertAlmostEqual(w[1], 1.2, places=6)
        opt.step()  # b = 0.5 b + g = 1.5 g
        self.assertAlmostEqual(self.p[0].tolist()[0], 0.9 - 0.15, places=6)
        self.assertEqual(opt.steps, 2)

    def test_adam_first_step_moves_by_lr(self):
        opt = mnas.Adam(self.p, lr=0.01)
        self._grad([3.0, -0.5])
        opt.step()
        w = self.p[0].tolist()
        self.assertAlmostEqual(w[0], 1.0 - 0.01, places=5)
        self.assertAlmostEqual(w[1], 1.0 + 0.01, places=5)

    def test_refusals(self):
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Optimizer(self.p, "adam", lr=-1)
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Optimizer(self.p, "rmsprop")
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Optimizer(mnas.Params(self.ctx))
        opt = mnas.Adam(self.p)
        with self.assertRaises(mnas.InvalidArgument):
            opt.set_group_lr(16, 0.1)
        opt.set_group_lr(1, 0.1)
        self.p.zero_grad()
        self.p.grad(0).assign([float("inf"), 0.0])
        before = self.p[0].tolist()
        with self.assertRaises(mnas.NumericError):
            opt.step()
        self.assertEqual(self.p[0].tolist(), before)
        self.assertEqual(opt.steps, 0)


class TestMLP(unittest.TestCase):
    def test_forward_equals_the_composition(self):
        with mnas.Context(seed=4) as ctx:
            mlp = mnas.MLP(ctx, [3, 5, 2])
            self.assertEqual(mlp.num_params, 6)
            p = mnas.Params(ctx)
            self.assertEqual(mlp.add_params(p, "net."), 0)
            self.assertEqual(p.names(), ["net.l0.w", "net.l0.b", "net.l0.bn_g", "net.l0.bn_b",
                                         "net.l1.w", "net.l1.b"])
            x = ctx.randn((4, 3))
            tp = mnas.Tape(ctx)
            y = mlp(tp, x, p)
            self.assertEqual(y.shape, (4, 2))
            w = p.tensors()
            h = tp.batch_norm(tp.relu(tp.linear(x, w[0], w[1])), w[2], w[3], 1e-5)
            want = tp.linear(h, w[4], w[5])
            self.assertEqual(y.tolist(), want.tolist())  # bit for bit
            loss = tp.mean(tp.square(y))
            grads = tp.grad(loss, w)
            self.assertEqual([g.shape for g in grads], [t.shape for t in w])
            with self.assertRaises(mnas.ShapeError) as cm:
                mlp(tp, ctx.zeros((4, 5)), p)
            self.assertIn("mnas_linear", str(cm.exception))
            with self.assertRaises(mnas.ShapeError):
                mlp(tp, x, w[:5])
            with self.assertRaises(mnas.ShapeError):
                mlp(tp, x, list(reversed(w)))
            nobn = mnas.MLP(ctx, [3, 5, 2], batch_norm=False)
            self.assertEqual(nobn.num_params, 4)
            with self.assertRaises(mnas.InvalidArgument):
                mnas.MLP(ctx, [3])
            with self.assertRaises(mnas.InvalidArgument):
                mnas.MLP(ctx, [3, 0, 1])

    def test_training_a_small_regression_by_hand(self):
        # Fit y = 2x + 1 with an MLP without BN and Adam: the loss must drop.
        with mnas.Context(seed=1) as ctx:
            mlp = mnas.MLP(ctx, [1, 16, 1], batch_norm=False)
            p = mnas.Params(ctx)
            mlp.add_params(p)
            opt = mnas.Adam(p, lr=0.02)
            xs = [[i / 10.0] for i in range(-10, 11)]
            x = ctx.tensor(xs)
            y = ctx.tensor([[2 * v[0] + 1] for v in xs])
            tp = mnas.Tape(ctx)
            losses = []
            for _ in range(150):
                tp.reset()
                loss = tp.mse(mlp(tp, x, p), y)
                losses.append(loss.item())
                p.zero_grad()
                p.accumulate_grad(tp.grad(loss, p.tensors()))
                opt.step()
            self.assertLess(losses[-1], 0.05 * losses[0])


if __name__ == "__main__":
    unittest.main()
