"""Exceptions, never crashes: wrong shapes, wrong types, closed handles,
stale tensors, mixed contexts, exceptions inside callbacks."""

import array
import unittest

from mnas_test_util import collect, mnas
from mnas import errors


class TestStatusMapping(unittest.TestCase):
    def test_every_status_has_a_class(self):
        expected = {
            -1: mnas.InvalidArgument, -2: mnas.ShapeError, -3: mnas.OutOfMemory,
            -4: mnas.StaleTensor, -5: mnas.NumericError, -6: mnas.FileError,
            -7: mnas.FormatError, -8: mnas.StateError, -9: mnas.Unsupported,
            -10: mnas.InternalError, -11: mnas.MismatchError,
        }
        for status, cls in expected.items():
            e = errors.make_error(status, "msg %d" % status)
            self.assertIs(type(e), cls)
            self.assertIsInstance(e, mnas.Error)
            self.assertEqual(e.status, status)
            self.assertEqual(e.message, "msg %d" % status)
            self.assertNotEqual(mnas.status_str(status), "unknown status")
        self.assertIsInstance(errors.make_error(-99, "x"), mnas.InternalError)
        # built-in bases, for generic handlers
        self.assertTrue(issubclass(mnas.ShapeError, ValueError))
        self.assertTrue(issubclass(mnas.OutOfMemory, MemoryError))
        self.assertTrue(issubclass(mnas.FileError, OSError))
        self.assertTrue(issubclass(mnas.Unsupported, NotImplementedError))
        self.assertTrue(issubclass(mnas.ArgumentTypeError, TypeError))
        self.assertTrue(issubclass(mnas.ClosedHandleError, mnas.StateError))


class TestErrors(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=1)
        self.tape = mnas.Tape(self.ctx)

    def tearDown(self):
        self.ctx.close()

    # ---- wrong shapes ------------------------------------------------------------

    def test_wrong_shapes_carry_the_library_message(self):
        tp = self.tape
        a, b = self.ctx.zeros((3, 4)), self.ctx.zeros((4, 3))
        with self.assertRaises(mnas.ShapeError) as cm:
            tp.add(a, b)
        self.assertIn("mnas_add", str(cm.exception))
        self.assertIn("[3, 4]", str(cm.exception))
        self.assertEqual(cm.exception.status, -2)
        with self.assertRaises(mnas.ShapeError):
            tp.matmul(a, a)
        with self.assertRaises(mnas.ShapeError):
            tp.linear(a, self.ctx.zeros((2, 5)))
        with self.assertRaises(mnas.ShapeError):
            tp.mse(a, b)
        with self.assertRaises(mnas.ShapeError):
            tp.grad(tp.add(a, a), [a])  # y is not a scalar
        with self.assertRaises(mnas.ShapeError):
            tp.reshape(a, (5, 5))
        # after an error the tape keeps working
        self.assertEqual(tp.status, 0)
        self.assertEqual(tp.add(a, a).shape, (3, 4))

    def test_bad_arguments(self):
        tp = self.tape
        a = self.ctx.zeros((2, 3))
        with self.assertRaises(mnas.InvalidArgument):
            tp.sum(a, axis=5)
        with self.assertRaises(mnas.InvalidArgument):
            tp.slice(a, 0, 1, 5)
        with self.assertRaises(mnas.InvalidArgument):
            tp.gather_rows(a, [7])
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Learner(self.ctx, meta_batch=0)
        with self.assertRaises(mnas.InvalidArgument) as cm:
            mnas.Learner(self.ctx, threads=1000)
        self.assertIn("threads", str(cm.exception))
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Learner(self.ctx, method="nope")
        with self.assertRaises(mnas.InvalidArgument):
            mnas.regression_task(self.ctx, 1, 0, family="cubic")
        with self.assertRaises(mnas.InvalidArgument):
            mnas.regression_task(self.ctx, 1, 0, k_shot=0)
        with self.assertRaises(mnas.InvalidArgument):
            mnas.regression_task(self.ctx, -1, 0)

    def test_learner_options_are_named_keywords(self):
        # a misspelt option or a positional one is refused by Python itself
        with self.assertRaises(TypeError):
            mnas.Learner(self.ctx, "maml", meta_btach=3)
        with self.assertRaises(TypeError):
            mnas.Learner(self.ctx, "maml", 3)
        # None keeps the library's default; a set option reaches C
        l = mnas.Learner(self.ctx, "maml", meta_batch=None, hidden=7, layers=2, seed=3)
        self.assertEqual(l.params.numel, 1 * 7 + 7 + 7 + 7 + 7 * 1 + 1)
        l.close()

    def test_numeric_errors(self):
        p = mnas.Params(self.ctx)
        p.add("w", (2,))
        nan = self.ctx.tensor(array.array("f", [float("nan"), 0.0]))
        with self.assertRaises(mnas.NumericError):
            p.accumulate_grad([nan])
        with self.assertRaises(mnas.NumericError):
            mnas.mean_ci95([1.0, float("inf")])
        with self.assertRaises(mnas.InvalidArgument):
            mnas.mean_ci95([])

    # ---- wrong types ----------------------------------------------------------------

    def test_wrong_types(self):
        tp = self.tape
        a = self.ctx.zeros((2,))
        for bad in (1, 2.0, "x", None, [1.0, 2.0], array.array("f", [1, 2]), self.ctx, tp):
            with self.assertRaises(TypeError):
                tp.add(a, bad)
            with self.assertRaises(mnas.Error):
                tp.relu(bad)
        with self.assertRaises(TypeError):
            tp.scale(a, "2")
        with self.assertRaises(TypeError):
            tp.grad(tp.sum(a), ["x"])
        with self.assertRaises(TypeError):
            mnas.Tape("not a context")
        with self.assertRaises(TypeError):
            mnas.Tensor.zeros(None, (2,))
        with self.assertRaises(TypeError):
            mnas.Params(self.ctx).add(5, (2,))
        with self.assertRaises(TypeError):
            mnas.Task(self.ctx, a, a, a, "y")
        with self.assertRaises(TypeError):
            mnas.Learner(self.ctx, meta_batch=2.5)
        with self.assertRaises(TypeError):
            mnas.Learner(self.ctx, meta_batch=True)
        with self.assertRaises(TypeError):
            mnas.Optimizer("params")
        mlp = mnas.MLP(self.ctx, [1, 4, 1])
        with self.assertRaises(TypeError):
            mlp(tp, a, "weights")
        with self.assertRaises(mnas.ShapeError):  # too few weights: never read past them
            mlp(tp, self.ctx.zeros((3, 1)), [a])
        learner = mnas.Learner(self.ctx, meta_batch=1, layers=2, hidden=4)
        with self.assertRaises(TypeError):
            learner.step(["task"])
        with self.assertRaises(TypeError):
            learner.evaluate([1, 2])
        with self.assertRaises(TypeError):
            learner.train(1, tasks=42)
        with self.assertRaises(TypeError):
            learner.train(1, tasks=lambda i: "not a task")

    # ---- closed handles ---------------------------------------------------------------

    def test_closed_tensor(self):
        tp = self.tape
        a = self.ctx.zeros((2,))
        a.close()
        a.close()  # idempotent
        self.assertTrue(a.closed)
        for f in (lambda: a.shape, lambda: a.tolist(), lambda: tp.add(a, a), lambda: a.copy(),
                  lambda: a.memoryview(), lambda: a.__array_interface__, lambda: tp.grad(a, [a])):
            with self.assertRaises(mnas.ClosedHandleError):
                f()
        self.assertIn("closed", repr(a))

    def test_closing_the_context_closes_everything(self):
        ctx = mnas.Context()
        t = ctx.zeros((2,))
        tp = mnas.Tape(ctx)
        y = tp.add(t, t)
        p = mnas.Params(ctx)
        p.add("w", (3,))
        w = p[0]
        opt = mnas.Adam(p)
        mlp = mnas.MLP(ctx, [1, 2, 1])
        task = mnas.regression_task(ctx, 1, 0)
        sx = task.support_x
        ts = mnas.regression_test_set(ctx, 1, 2)
        t0 = ts[0]
        learner = mnas.Learner(ctx, meta_batch=1, layers=2, hidden=4)
        lp = learner.params[0]
        rng = mnas.Rng(ctx, 1)
        with ctx:
            pass
        for h in (ctx, t, tp, y, p, w, opt, mlp, task, sx, ts, t0, learner, lp, rng):
            self.assertTrue(h.closed, h)
        for f in (lambda: ctx.zeros(2), lambda: t.tolist(), lambda: y.tolist(), lambda: tp.reset(),
                  lambda: p.add("v", 2), lambda: w.tolist(), lambda: opt.step(),
                  lambda: mlp.add_params(p), lambda: task.family, lambda: sx.shape, lambda: len(ts),
                  lambda: t0.query_x, lambda: learner.train(1), lambda: lp.tolist(),
                  lambda: rng.u64(), lambda: ctx.last_error, lambda: mnas.Tape(ctx)):
            with self.assertRaises(mnas.ClosedHandleError):
                f()

    def test_closed_owner_closes_borrowed_handles(self):
        p = mnas.Params(self.ctx)
        p.add("w", (2, 2))
        w, g = p["w"], p.grad(0)
        opt = mnas.Optimizer(p, "sgd", lr=0.1)
        p.close()
        self.assertTrue(w.closed and g.closed and opt.closed)
        with self.assertRaises(mnas.ClosedHandleError):
            self.tape.add(w, w)
        task = mnas.regression_task(self.ctx, 2, 3)
        qy = task.query_y
        task.close()
        with self.assertRaises(mnas.ClosedHandleError):
            qy.tolist()

    def test_closed_tape(self):
        tp = mnas.Tape(self.ctx)
        a = self.ctx.tensor([1.0, 2.0], requires_grad=True)
        y = tp.sum(tp.square(a))
        tp.close()
        with self.assertRaises(mnas.ClosedHandleError):
            y.tolist()
        with self.assertRaises(mnas.ClosedHandleError):
            self.tape.add(y, a)
        with self.assertRaises(mnas.ClosedHandleError):
            tp.add(a, a)
        self.assertEqual(a.tolist(), [1.0, 2.0])  # the persistent input is untouched

    # ---- stale tensors ------------------------------------------------------------------

    def test_stale_tensor_detected_by_the_library(self):
        tp = self.tape
        a = self.ctx.tensor([1.0, 2.0])
        y = tp.add(a, a)
        tp.reset()
        with self.assertRaises(mnas.StaleTensor) as cm:
            tp.add(y, a)
        self.assertIn("mnas_add", str(cm.exception))  # the library's own message
        self.assertEqual(cm.exception.status, -4)
        with self.assertRaises(mnas.StaleTensor):
            y.tolist()
        with self.assertRaises(mnas.StaleTensor):
            y.shape
        with self.assertRaises(mnas.StaleTensor):
            y.copy()
        self.assertEqual(tp.add(a, a).tolist(), [2.0, 4.0])

    def test_older_stale_tensors_are_refused_before_c(self):
        tp = self.tape
        a = self.ctx.tensor([1.0, 2.0])
        y = tp.add(a, a)
        tp.reset()
        tp.add(a, a)
        tp.reset()
        z = tp.add(a, a)  # may reuse y's memory
        for f in (lambda: tp.add(y, a), lambda: y.tolist(), lambda: y.__array_interface__,
                  lambda: tp.grad(y, [a])):
            with self.assertRaises(mnas.StaleTensor):
                f()
        self.assertEqual(z.tolist(), [2.0, 4.0])
        self.assertIn("stale", repr(y))

    # ---- mixed objects ---------------------------------------------------------------------

    def test_mixed_contexts_and_tapes(self):
        with mnas.Context() as other:
            b = other.zeros((2,))
            with self.assertRaises(mnas.MismatchError):
                self.tape.add(self.ctx.zeros((2,)), b)
            t2 = mnas.Tape(self.ctx)
            y = t2.add(self.ctx.zeros((2,)), self.ctx.zeros((2,)))
            with self.assertRaises(mnas.MismatchError):
                self.tape.add(y, y)
            task = mnas.regression_task(other, 1, 1)
            s = mnas.TaskSet(self.ctx)
            with self.assertRaises(mnas.MismatchError):
                s.add(task)
            self.assertFalse(task.closed)  # refused before C could take it

    # ---- exceptions inside callbacks -------------------------------------------------------

    def test_exceptions_in_callbacks_propagate(self):
        learner = mnas.Learner(self.ctx, meta_batch=2, layers=2, hidden=8)

        def progress(it, total, loss):
            if it == 2:
                raise RuntimeError("stop here")

        with self.assertRaises(RuntimeError):
            learner.train(5, progress=progress)
        self.assertEqual(learner.iteration, 2)

        def bad_source(index):
            if index >= 3:
                raise KeyError(index)
            return mnas.regression_task(self.ctx, 9, index)

        with self.assertRaises(KeyError):
            learner.train(5, tasks=bad_source)

        def interrupt(it, total, loss):
            raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            learner.train(3, progress=interrupt)

        x = self.ctx.tensor([1.0], requires_grad=True)
        with self.assertRaises(ZeroDivisionError):
            mnas.gradcheck(self.ctx, lambda tp, xs: 1 / 0, [x])
        with self.assertRaises(TypeError):
            mnas.gradcheck(self.ctx, lambda tp, xs: 3.0, [x])

        def bad_loss(tape, w, extra):
            raise ValueError("bad loss")

        with self.assertRaises(ValueError):
            mnas.inner_loop(self.tape, bad_loss, [x], steps=2)
        # a callback that escapes its tape cannot be used afterwards
        leaked = []

        def leaky(tape, xs):
            y = tape.sum(tape.square(xs[0]))
            leaked.append(y)
            return y

        mnas.gradcheck(self.ctx, leaky, [x])
        with self.assertRaises(mnas.ClosedHandleError):
            leaked[0].tolist()

    def test_recompute_callback_error_surfaces_in_grad(self):
        w = self.ctx.tensor([1.0], requires_grad=True)
        calls = []

        def loss(tape, ws, extra):
            calls.append(1)
            if len(calls) > 1:
                raise ArithmeticError("fails when recomputed")
            return tape.sum(tape.square(ws[0]))

        fast = mnas.inner_loop(self.tape, loss, [w], steps=1, lr=0.1, mode="recompute")
        with self.assertRaises(ArithmeticError):
            self.tape.grad(self.tape.sum(fast[0]), [w])

    def test_log_callback(self):
        got = []
        with mnas.Context(log=lambda level, msg: got.append((level, msg)), log_level="info") as ctx:
            ctx.log("info", "hello")
            ctx.log("debug", "dropped")  # above the level
            self.assertEqual(got, [(mnas.LOG_INFO, "hello")])

        def bad(level, msg):
            raise RuntimeError("log callback failure")

        import contextlib
        import io
        err = io.StringIO()
        with contextlib.redirect_stderr(err), mnas.Context(log=bad) as ctx:
            ctx.log("error", "x")  # reported on stderr, never unwinds into C
        self.assertIn("log callback", err.getvalue())
        with self.assertRaises(TypeError):
            mnas.Context(log=42)
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Context(log_level="loud")

    def test_no_crash_after_garbage_collection_of_parents(self):
        # Children keep their parents alive: dropping every name but the child is safe.
        def make():
            ctx = mnas.Context()
            tp = mnas.Tape(ctx)
            x = ctx.tensor([3.0], requires_grad=True)
            return tp.grad(tp.sum(tp.square(x)), x)

        g = make()
        collect()
        self.assertEqual(g.tolist(), [6.0])
        p = mnas.Learner(mnas.Context(), meta_batch=1, layers=2, hidden=3).params
        collect()
        self.assertEqual(len(p), 6)  # 2 layers with batch-norm: w, b, bn_g, bn_b, w, b
        self.assertEqual(len(p.tensors()[0].tolist()), 3)


if __name__ == "__main__":
    unittest.main()
