"""Checkpoints through the binding: save/load, exact resume via
Learner.from_checkpoint, damaged and mismatched files, the divergence
guard of train(checkpoint=...), parameter sets."""

import os
import shutil
import tempfile
import unittest

from mnas_test_util import mnas

OPTS = dict(seed=8, meta_batch=3, inner_steps=2, hidden=6, layers=3, inner_lr=0.01, outer_lr=0.01)


def values(learner):
    return [learner.params[i].tolist() for i in range(len(learner.params))]


class TestCheckpoint(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context()
        self.dir = tempfile.mkdtemp(prefix="mnas-py-ckpt-")

    def tearDown(self):
        self.ctx.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_exact_resume(self):
        for method in ("maml", "mnas"):
            straight = mnas.Learner(self.ctx, method, **OPTS)
            straight.train(4)
            first = mnas.Learner(self.ctx, method, **OPTS)
            first.train(2)
            first.save(self.path("half.ckpt"))
            ctx2 = mnas.Context()
            second = mnas.Learner.from_checkpoint(ctx2, self.path("half.ckpt"), threads=2)
            self.assertEqual(second.iteration, 2)
            self.assertEqual(second.options["threads"], 2)
            self.assertEqual(second.options["hidden"], 6)
            second.train(2)
            self.assertEqual(values(second), values(straight), method)
            second.close()
            ctx2.close()

    def test_set_lr(self):
        a = mnas.Learner(self.ctx, "mnas", **OPTS)
        for bad in [(float("nan"), 1e-4), (0.01, -1.0), (float("inf"), 0.0)]:
            with self.assertRaises(mnas.InvalidArgument) as cm:
                a.set_lr(*bad)
            self.assertIn("mnas_learner_set_lr", str(cm.exception))
        with self.assertRaises(mnas.ArgumentTypeError):
            a.set_lr("fast", 0.1)
        a.train(1)
        a.set_lr(0.0, 0.0)
        frozen = values(a)
        a.train(1)
        self.assertEqual(values(a), frozen)
        a.set_lr(0.002, 1e-5)
        a.save(self.path("rates.ckpt"))
        b = mnas.Learner(self.ctx, "mnas", **OPTS)  # other rates: still loads, takes the file's
        b.load(self.path("rates.ckpt"))
        a.train(2)
        b.train(2)
        self.assertEqual(values(a), values(b))

    def test_alpha_temperature(self):
        a = mnas.Learner(self.ctx, "mnas-shared", **OPTS)
        self.assertEqual(a.alpha_temperature, 1.0)
        for bad in (0.0, -1.0, float("nan"), 1e4):
            with self.assertRaises(mnas.InvalidArgument) as cm:
                a.alpha_temperature = bad
            self.assertIn("mnas_learner_set_alpha_temperature", str(cm.exception))
        self.assertEqual(a.alpha_temperature, 1.0)
        with self.assertRaises(mnas.ArgumentTypeError):
            a.alpha_temperature = "hot"
        a.alpha_temperature = 0.25
        a.train(1)
        a.save(self.path("temp.ckpt"))
        b = mnas.Learner(self.ctx, "mnas-shared", **OPTS)
        b.load(self.path("temp.ckpt"))
        self.assertEqual(b.alpha_temperature, 0.25)
        a.train(2)
        b.train(2)
        self.assertEqual(values(a), values(b))
        c = mnas.Learner(self.ctx, "mnas-shared", **OPTS)  # T = 1 throughout
        c.train(3)
        self.assertNotEqual(values(c), values(a))
        m = mnas.Learner(self.ctx, "maml", **OPTS)
        with self.assertRaises(mnas.StateError):
            m.alpha_temperature = 0.5
        ctl = mnas.Controller(self.ctx, 3, 4, 2, 5)
        self.assertEqual(ctl.temperature, 1.0)
        ctl.temperature = 0.5
        self.assertEqual(ctl.temperature, 0.5)
        with self.assertRaises(mnas.InvalidArgument):
            ctl.temperature = float("inf")
        self.assertEqual(ctl.temperature, 0.5)

    def test_damaged_and_mismatched_files(self):
        a = mnas.Learner(self.ctx, "maml", **OPTS)
        a.train(1)
        a.save(self.path("a.ckpt"))
        b = mnas.Learner(self.ctx, "maml", **OPTS)
        before = values(b)
        with open(self.path("a.ckpt"), "rb") as f:
            data = f.read()
        with open(self.path("cut.ckpt"), "wb") as f:
            f.write(data[:len(data) // 2])
        with self.assertRaises(mnas.FormatError) as cm:
            b.load(self.path("cut.ckpt"))
        self.assertIn("truncated", str(cm.exception))
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x10
        with open(self.path("flip.ckpt"), "wb") as f:
            f.write(flipped)
        with self.assertRaises(mnas.FormatError):
            b.load(self.path("flip.ckpt"))
        with self.assertRaises(mnas.FileError):
            b.load(self.path("missing.ckpt"))
        other = mnas.Learner(self.ctx, "maml", **dict(OPTS, inner_lr=0.5))
        with self.assertRaises(mnas.MismatchError) as cm:
            other.load(self.path("a.ckpt"))
        self.assertIn("inner_lr", str(cm.exception))
        self.assertEqual(values(b), before)
        self.assertEqual(b.iteration, 0)
        b.load(self.path("a.ckpt"))
        self.assertEqual(values(b), values(a))
        self.assertEqual(b.iteration, 1)

    def test_divergence_guard(self):
        path = self.path("guard.ckpt")

        def tasks(index):
            t = mnas.regression_task(self.ctx, 4, index)
            if index >= 3 * 3:  # iteration 3 on
                y = t.query_y.tolist()
                y[0][0] = 1e30  # finite, but its squared error overflows float
                return mnas.Task(self.ctx, t.support_x, t.support_y, t.query_x,
                                 mnas.tensor(self.ctx, y), t.family)
            return t

        l = mnas.Learner(self.ctx, "maml", **OPTS)
        with self.assertRaises(mnas.NumericError) as cm:
            l.train(6, tasks, checkpoint=path, every=2)
        self.assertIn("iteration 3", str(cm.exception))
        self.assertEqual(l.iteration, 3)
        back = mnas.Learner(self.ctx, "maml", **OPTS)
        back.load(path)
        self.assertEqual(back.iteration, 2)

    def test_params(self):
        p = mnas.Params(self.ctx)
        p.add("w", (2, 3), init="normal", arg=1.0)
        p.save(self.path("p.ckpt"))
        q = mnas.Params(self.ctx)
        q.add("w", (2, 3))
        q.load(self.path("p.ckpt"))
        self.assertEqual(q[0].tolist(), p[0].tolist())
        r = mnas.Params(self.ctx)
        r.add("w", (3, 2))
        with self.assertRaises(mnas.MismatchError):
            r.load(self.path("p.ckpt"))

    def _optim_run(self, kind, steps, opt=None, p=None):
        if p is None:
            p = mnas.Params(self.ctx)
            p.add("w", (2, 3), init="normal", arg=1.0)
            p.add("b", 3, init="normal", arg=1.0)
        if opt is None:
            opt = mnas.Optimizer(p, kind, lr=0.05, momentum=0.9)
        for _ in range(steps):
            p.zero_grad()
            # gradient of sum((w - 0.5)^2) / 2 plus a non-linear term: depends on the weights
            g = [[[x - 0.5 + 0.3 * x * x for x in row] for row in p[0].tolist()],
                 [x - 0.5 + 0.3 * x * x for x in p[1].tolist()]]
            p.accumulate_grad([mnas.tensor(self.ctx, g[0]), mnas.tensor(self.ctx, g[1])])
            opt.step()
        return p, opt

    def test_optimizer_exact_resume(self):
        for kind in ("sgd", "adam"):
            a, oa = self._optim_run(kind, 3)
            a.save(self.path("p.ckpt"))
            oa.save(self.path("o.ckpt"))
            self._optim_run(kind, 4, oa, a)
            b, ob = self._optim_run(kind, 2)  # other state, overwritten by the loads
            b.load(self.path("p.ckpt"))
            ob.load(self.path("o.ckpt"))
            self.assertEqual(ob.steps, 3)
            self._optim_run(kind, 4, ob, b)
            self.assertEqual(b[0].tolist(), a[0].tolist())
            self.assertEqual(b[1].tolist(), a[1].tolist())
            self.assertEqual(ob.steps, 7)

    def test_optimizer_refusals(self):
        _, sgd = self._optim_run("sgd", 2)
        sgd.save(self.path("sgd.ckpt"))
        p, adam = self._optim_run("adam", 1)
        adam.save(self.path("before.ckpt"))
        with self.assertRaises(mnas.MismatchError) as cm:
            adam.load(self.path("sgd.ckpt"))
        self.assertIn("optimiser kind", str(cm.exception))
        p.save(self.path("params.ckpt"))
        with self.assertRaises(mnas.FormatError) as cm:
            adam.load(self.path("params.ckpt"))
        self.assertIn("not an optimiser checkpoint", str(cm.exception))
        with open(self.path("before.ckpt"), "rb") as f:
            data = f.read()
        with open(self.path("cut.ckpt"), "wb") as f:
            f.write(data[:len(data) - 5])
        with self.assertRaises(mnas.FormatError):
            adam.load(self.path("cut.ckpt"))
        q = mnas.Params(self.ctx)
        q.add("w", (3, 2))
        q.add("b", 3)
        with self.assertRaises(mnas.MismatchError) as cm:
            mnas.Adam(q).load(self.path("before.ckpt"))
        self.assertIn("optim.m:w", str(cm.exception))
        with self.assertRaises(mnas.FileError):
            adam.load(self.path("missing.ckpt"))
        adam.save(self.path("after.ckpt"))
        with open(self.path("after.ckpt"), "rb") as f:
            self.assertEqual(f.read(), data)  # unchanged by the refused loads
        self.assertEqual(adam.steps, 1)


if __name__ == "__main__":
    unittest.main()
