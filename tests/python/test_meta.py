"""Tasks, task sets, statistics and the meta-learner through the binding."""

import io
import math
import os
import tempfile
import unittest
from unittest import mock

from mnas_test_util import mnas
from mnas import meta


def _flat(v):
    return [x for item in v for x in _flat(item)] if isinstance(v, list) else [v]


class TestData(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context()

    def tearDown(self):
        self.ctx.close()

    def test_regression_tasks(self):
        t = mnas.regression_task(self.ctx, seed=5, index=7)
        same = mnas.regression_task(self.ctx, seed=5, index=7)
        self.assertEqual(t.support_x.tolist(), same.support_x.tolist())  # pure function
        self.assertEqual(t.support_x.shape, (10, 1))
        self.assertEqual(t.query_y.shape, (10, 1))
        self.assertIn(t.family_name, mnas.FAMILIES)
        self.assertEqual(len(t.params), {0: 3, 1: 2, 2: 3, 3: 5}[t.family])
        xs = [row[0] for row in t.support_x.tolist()]
        ys = [row[0] for row in t.support_y.tolist()]
        for x, y, f in zip(xs, ys, t.eval(xs)):
            self.assertAlmostEqual(y, f, delta=1e-4 * (1 + abs(f)))
        q = mnas.regression_task(self.ctx, 5, 7, family="quadratic", k_shot=3, k_query=4)
        self.assertEqual(q.family, mnas.FAMILIES.index("quadratic"))
        self.assertEqual(q.support_x.shape, (3, 1))
        self.assertEqual(q.query_x.shape, (4, 1))
        lin = mnas.regression_task(self.ctx, 5, 8, families=["linear"])
        self.assertEqual(lin.family_name, "linear")
        self.assertEqual(mnas.family_name(3), "harmonics")
        self.assertEqual(mnas.family_name(9), "unknown")

    def test_task_from_tensors_and_sets(self):
        x = self.ctx.tensor([[0.0], [1.0], [2.0]])
        y = self.ctx.tensor([[1.0], [3.0], [5.0]])
        t = mnas.Task(self.ctx, x, y, x, y, family=1)
        self.assertEqual(t.family, 1)
        self.assertEqual(t.params, [])
        self.assertTrue(math.isnan(t.eval(0.5)))
        x.close()  # the task holds copies
        self.assertEqual(t.support_x.tolist(), [[0.0], [1.0], [2.0]])
        with self.assertRaises(mnas.ShapeError):
            mnas.Task(self.ctx, y, self.ctx.zeros((2, 1)), y, y)
        with self.assertRaises(mnas.NumericError):
            mnas.Task(self.ctx, y, self.ctx.tensor([[1.0], [float("nan")], [0.0]]), y, y)

        s = mnas.TaskSet(self.ctx)
        sx = t.support_x
        s.add(t)
        self.assertEqual(len(s), 1)
        self.assertIs(s[0], t)
        self.assertEqual(sx.tolist(), [[0.0], [1.0], [2.0]])  # still valid: the set owns it
        with self.assertRaises(mnas.StateError):
            s.add(t)
        with self.assertRaises(IndexError):
            s[1]
        s.close()
        self.assertTrue(t.closed)
        with self.assertRaises(mnas.ClosedHandleError):
            sx.tolist()

        ts = mnas.regression_test_set(self.ctx, seed=11, n_per_family=3, families=["sinusoid", "harmonics"])
        self.assertEqual(len(ts), 6)
        self.assertEqual(ts.families(), [0, 0, 0, 3, 3, 3])
        self.assertEqual([t.family for t in ts], [0, 0, 0, 3, 3, 3])
        self.assertEqual(ts[-1].family, 3)
        self.assertEqual(len(ts[1:3]), 2)
        # task f*n + i of the seed, family forced
        self.assertEqual(ts[4].support_x.tolist(),
                         mnas.regression_task(self.ctx, 11, 3 * 3 + 1, family=3).support_x.tolist())

    def test_mean_ci95(self):
        m, ci = mnas.mean_ci95([1.0, 2.0, 3.0, 4.0])
        self.assertAlmostEqual(m, 2.5)
        sd = math.sqrt(sum((v - 2.5) ** 2 for v in (1, 2, 3, 4)) / 3)
        self.assertAlmostEqual(ci, 1.96 * sd / 2)
        self.assertEqual(mnas.mean_ci95([7.0]), (7.0, 0.0))


class TestLearner(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context()

    def tearDown(self):
        self.ctx.close()

    def small(self, method="maml", **kw):
        opts = dict(meta_batch=4, threads=2, seed=3, hidden=16, layers=3)
        opts.update(kw)
        return mnas.Learner(self.ctx, method, **opts)

    def test_maml_train_evaluate_predict(self):
        learner = self.small()
        self.assertEqual(learner.method, "MAML")
        self.assertEqual(learner.options["meta_batch"], 4)
        self.assertEqual(learner.options["inner_steps"], 5)
        self.assertEqual(learner.options["z_dim"], 32)
        self.assertEqual(len(learner.params), 4 * 2 + 2)
        seen = []
        losses = learner.train(4, progress=lambda it, total, loss: seen.append((it, total)))
        self.assertEqual(len(losses), 4)
        self.assertEqual(seen, [(1, 4), (2, 4), (3, 4), (4, 4)])
        self.assertTrue(all(math.isfinite(v) and v > 0 for v in losses))
        self.assertEqual(learner.iteration, 4)
        # early stop from the progress callback
        learner.train(10, progress=lambda it, total, loss: it >= 2)
        self.assertEqual(learner.iteration, 6)
        test = mnas.regression_test_set(self.ctx, 99, 4)
        ev = learner.evaluate(test)
        self.assertEqual(len(ev.before), 16)
        self.assertTrue(all(math.isfinite(v) and v >= 0 for v in ev.before + ev.after))
        stats = ev.stats()
        self.assertEqual(set(stats), set(mnas.FAMILIES) | {"average"})
        table = ev.table()
        self.assertIn("MAML (before adapt.)", table)
        self.assertIn("Averaged", table)
        self.assertIn("5 FCs", str(ev))
        self.assertEqual(len(learner.evaluate(test, steps=0).after), 16)
        ev0 = learner.evaluate(test, steps=0)
        for b, a in zip(ev0.before, ev0.after):
            self.assertAlmostEqual(a, b, places=4)  # no adaptation: same loss
        y = learner.adapt_predict(test[0], [-1.0, 0.0, 1.0])
        self.assertEqual(len(y), 3)
        self.assertTrue(all(math.isfinite(v) for v in y))
        self.assertEqual(len(learner.adapt_predict(test[0], 0.5, steps=1)), 1)
        self.assertIsNone(learner.genotype(test[0]))
        with self.assertRaises(mnas.StateError):
            learner.discretize()
        obj = learner.task_objective(test[0], stream=1, want_grad=True)
        self.assertTrue(math.isfinite(obj))
        self.assertGreater(learner.params.grad_norm(), 0.0)

    def test_same_seed_same_parameters_any_threads(self):
        a = self.small(threads=1)
        b = self.small(threads=3)
        a.train(2)
        b.train(2)
        self.assertEqual(a.params[0].tolist(), b.params[0].tolist())

    def test_learner_over_a_given_space(self):
        opts = dict(meta_batch=2, inner_steps=1, hidden=8, nodes=2, z_dim=4, f_dim=4,
                    controller_hidden=4, seed=3, threads=2)
        space = mnas.SearchSpace.mlp(self.ctx)
        preset = meta.Learner(self.ctx, "mnas", **opts)
        given = meta.Learner(self.ctx, "mnas", space=space, **opts)
        preset.train(2)
        given.train(2)
        # the preset takes the same path over its own space: same bits
        for p, q in zip(preset.params, given.params):
            self.assertEqual(p.tolist(), q.tolist())
        with self.assertRaises(mnas.ArgumentTypeError):
            meta.Learner(self.ctx, "mnas", space="mlp", **opts)
        with self.assertRaises(mnas.InvalidArgument) as e:
            meta.Learner(self.ctx, "maml", space=space)
        self.assertIn("MAML", str(e.exception))
        space.close()  # closes the learner over it first
        self.assertTrue(given.closed)
        self.assertFalse(preset.closed)

    def test_step_and_custom_task_source(self):
        learner = self.small()
        tasks = [mnas.regression_task(self.ctx, 1, i) for i in range(3)]
        loss = learner.step(tasks)
        self.assertTrue(math.isfinite(loss))
        self.assertFalse(tasks[0].closed)  # step only reads them
        with self.assertRaises(mnas.InvalidArgument):
            learner.step([])
        calls = []

        def source(index):
            calls.append(index)
            return mnas.regression_task(self.ctx, 77, index, family="linear")

        learner.train(2, tasks=source)
        # continues the stream after the step; worker threads call the source,
        # so the order of the calls is not fixed, only the set of indices
        self.assertEqual(sorted(calls), list(range(4, 12)))
        given = []

        def fresh(index):
            given.append(mnas.regression_task(self.ctx, 1, index))
            return given[-1]

        learner.train(1, tasks=fresh)  # the learner takes the tasks
        self.assertEqual(len(given), 4)
        self.assertTrue(all(t.closed for t in given))
        again = mnas.regression_task(self.ctx, 1, 1)
        with self.assertRaises(mnas.ClosedHandleError):  # taken by the first call
            learner.train(1, tasks=lambda i: again)
        test = mnas.regression_test_set(self.ctx, 2, 1)
        keep = test[0]
        learner.train(1, tasks=lambda i: keep)  # in a set: copied, not taken
        self.assertFalse(keep.closed)

    def test_progress_printing(self):
        learner = self.small()
        out = io.StringIO()
        with mock.patch("sys.stdout", out):
            learner.train(3, progress=True)
        text = out.getvalue()
        self.assertIn("MAML meta-train: iteration 3/3", text)
        self.assertIn("tasks/s", text)

    def test_options(self):
        learner = self.small(inner_mode="first_order", inner_lr=0.01, clip_norm=1.0)
        self.assertEqual(learner.options["inner_mode"], meta.INNER_FIRST_ORDER)
        self.assertEqual(learner.options["inner_lr"], 0.01)
        self.small(inner_mode="recompute").train(1)
        # issue 14's per-cell checkpointing: the same losses as recompute,
        # also after an update (so the same meta-gradient)
        cells = self.small("mnas", inner_mode="recompute_cells")
        self.assertEqual(cells.options["inner_mode"], meta.INNER_RECOMPUTE_CELLS)
        self.assertEqual(cells.train(2), self.small("mnas", inner_mode="recompute").train(2))
        with self.assertRaises(TypeError):
            self.small(bogus=1)
        with self.assertRaises(mnas.InvalidArgument):
            self.small(inner_mode="third_order")
        self.assertEqual(mnas.method_name("mnas-shared"), "M-NAS-Shared")
        # issue 17's modulator forms: by name or number, saved in the options
        mod = self.small("mnas", modulator_form="one_plus_tanh", modulator_bias=0.0)
        self.assertEqual(mod.options["modulator_form"], meta.MODULATOR_ONE_PLUS_TANH)
        mod.train(1)
        self.assertEqual(self.small("mnas", modulator_form=1).options["modulator_form"],
                         meta.MODULATOR_TWO_SIGMOID)
        film = self.small("mnas", modulator_form="film")
        self.assertEqual(film.options["modulator_form"], meta.MODULATOR_FILM)
        film.train(1)
        with self.assertRaises(mnas.InvalidArgument):
            self.small("mnas", modulator_form="affine")
        with self.assertRaises(mnas.InvalidArgument):
            self.small("mnas", modulator_form=9)
        # issue 14's sampled edges: a keyword option, range-checked by the library
        sampled = self.small("mnas", sample_ops=1)
        self.assertEqual(sampled.options["sample_ops"], 1)
        sampled.train(1)
        with self.assertRaises(mnas.InvalidArgument):
            self.small("mnas", sample_ops=-1)
        with self.assertRaises(mnas.InvalidArgument):
            self.small("maml", sample_ops=1)
        # issue 14's stem stride: the conv supernet's, so images and M-NAS only
        self.assertEqual(self.small("mnas").options["stem_stride"], 1)
        with self.assertRaises(mnas.InvalidArgument):
            self.small("mnas", stem_stride=2)  # regression: no conv stem
        img = self.small("mnas", classes=3, image_size=8, channels=2, nodes=1, stem_stride=4)
        self.assertEqual(img.options["stem_stride"], 4)
        with self.assertRaises(mnas.InvalidArgument):
            self.small("mnas", classes=3, image_size=8, channels=2, nodes=1, stem_stride=3)

    def test_learned_inner_rates(self):
        # issue 17's learned inner rates (Meta-SGD): by name (either spelling)
        # or number; an "lr." parameter per network weight
        # (its log rate, 0 at the start) moved by training; saved in checkpoints; recompute and bad modes refused
        fixed = self.small("mnas", inner_lr=0.01)
        self.assertEqual(fixed.options["inner_lr_mode"], meta.INNER_LR_FIXED)
        learner = self.small("mnas", inner_lr=0.01, inner_lr_mode="per_element")
        self.assertEqual(learner.options["inner_lr_mode"], meta.INNER_LR_PER_ELEMENT)
        self.assertEqual(self.small(inner_lr_mode="per-tensor").options["inner_lr_mode"],
                         meta.INNER_LR_PER_TENSOR)
        names = learner.params.names()
        nets = [n for n in names if n.startswith("net.")]
        rates = [n for n in names if n.startswith("lr.")]
        self.assertEqual(rates, ["lr." + n for n in nets])
        self.assertEqual(len(names), len(fixed.params.names()) + len(nets))
        first = names.index(rates[0])
        before = [t.tolist() for t in learner.params.tensors()[first:]]
        self.assertTrue(all(v == 0 for r in before for v in _flat(r)))  # log rates: inner_lr * exp(0)
        learner.train(2)
        after = [t.tolist() for t in learner.params.tensors()[first:]]
        self.assertNotEqual(before, after)
        with self.assertRaises(mnas.InvalidArgument):
            self.small(inner_lr_mode="per_layer")
        with self.assertRaises(mnas.Error) as e:
            self.small(inner_lr_mode="per_element", inner_mode="recompute")
        self.assertIn("inner_lr_mode", str(e.exception))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "rates.ckpt")
            learner.save(path)
            again = meta.Learner.from_checkpoint(self.ctx, path)
            self.assertEqual(again.options["inner_lr_mode"], meta.INNER_LR_PER_ELEMENT)
            self.assertEqual([t.tolist() for t in again.params.tensors()[first:]], after)
            with self.assertRaises(mnas.MismatchError):
                fixed.load(path)

    def test_learned_inner_rates_bound(self):
        # inner_lr_max bounds the learned rates: kept in the options and in
        # checkpoints; refused with the fixed rate or at or below inner_lr
        bounded = self.small("mnas", inner_lr=0.01, inner_lr_mode="per_tensor", inner_lr_max=0.05)
        self.assertAlmostEqual(bounded.options["inner_lr_max"], 0.05)
        self.assertEqual(self.small(inner_lr=0.01, inner_lr_mode="per_tensor").options["inner_lr_max"], 0.0)
        for bad in ({"inner_lr_max": 0.05},  # the fixed rate
                    {"inner_lr_max": 0.01, "inner_lr_mode": "per_tensor"},
                    {"inner_lr_max": -1.0, "inner_lr_mode": "per_tensor"}):
            with self.assertRaises(mnas.Error) as e:
                self.small("mnas", inner_lr=0.01, **bad)
            self.assertIn("inner_lr_max", str(e.exception))
        bounded.train(1)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bounded.ckpt")
            bounded.save(path)
            again = meta.Learner.from_checkpoint(self.ctx, path)
            self.assertAlmostEqual(again.options["inner_lr_max"], 0.05)
            other = self.small("mnas", inner_lr=0.01, inner_lr_mode="per_tensor", inner_lr_max=0.02)
            with self.assertRaises(mnas.MismatchError) as e:
                other.load(path)
            self.assertIn("inner_lr_max", str(e.exception))

    def test_encoder_input_scale(self):
        # the task encoder's input scale: kept in the options, refused outside [0, 1]
        scaled = self.small("mnas", encoder_input_scale=0.25)
        self.assertEqual(scaled.options["encoder_input_scale"], 0.25)
        self.assertEqual(self.small("mnas").options["encoder_input_scale"], 0.0)
        with self.assertRaises(mnas.Error) as e:
            self.small("mnas", encoder_input_scale=1.5)
        self.assertIn("encoder_input_scale", str(e.exception))

    def test_mnas_methods(self):
        test = mnas.regression_test_set(self.ctx, 5, 2)
        evaluations = []
        for method in ("mnas", "mnas-shared", "mnas-nm"):
            learner = self.small(method, meta_batch=2, z_dim=8, f_dim=8, controller_hidden=8)
            losses = learner.train(2)
            self.assertTrue(all(math.isfinite(v) for v in losses))
            g = learner.genotype(test[0])
            self.assertIsInstance(g, mnas.Genotype)
            self.assertEqual(g.num_nodes, 3)
            self.assertFalse(learner.is_discrete)
            learner.discretize()
            self.assertTrue(learner.is_discrete)
            learner.train(1)
            ev = learner.evaluate(test)
            self.assertTrue(math.isfinite(ev.mean_mse))
            self.assertEqual(ev.archs, "Cell")
            evaluations.append(ev)
            learner.close()
            self.assertTrue(g.closed)  # the genotype refers to the learner's search space
        table = mnas.results_table(evaluations)
        self.assertIn("M-NAS-Shared", table)
        self.assertEqual(len(table.splitlines()), 4)


if __name__ == "__main__":
    unittest.main()
