"""NumPy interoperability (skipped when NumPy is not installed): float32
arrays in, zero-copy views out through __array_interface__."""

import gc
import unittest

from mnas_test_util import HAVE_NUMPY, collect, mnas, numpy as np


@unittest.skipUnless(HAVE_NUMPY, "NumPy is not installed (apt-get install python3-numpy)")
class TestNumpy(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=8)

    def tearDown(self):
        self.ctx.close()

    def test_arrays_in(self):
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        t = self.ctx.tensor(a)
        self.assertEqual(t.shape, (3, 4))
        self.assertEqual(t.tolist(), a.tolist())
        s = self.ctx.tensor(np.float32(2.5) * np.ones((), dtype=np.float32))
        self.assertEqual(s.shape, ())
        ro = a.copy()
        ro.setflags(write=False)
        self.assertEqual(self.ctx.tensor(ro).tolist(), a.tolist())
        with self.assertRaises(TypeError):
            self.ctx.tensor(a.astype(np.float64))
        with self.assertRaises(TypeError):
            self.ctx.tensor(np.arange(3))  # integers
        with self.assertRaises(mnas.InvalidArgument):
            self.ctx.tensor(a[:, ::2])  # not contiguous
        with self.assertRaises(mnas.InvalidArgument):
            self.ctx.tensor(a.T)  # Fortran order
        self.assertEqual(self.ctx.tensor(np.ascontiguousarray(a.T)).shape, (4, 3))
        with self.assertRaises(TypeError):
            self.ctx.tensor(a.astype(">f4"))  # big-endian

    def test_zero_copy_view(self):
        t = self.ctx.zeros((2, 3))
        v = np.asarray(t)
        self.assertEqual(v.dtype, np.float32)
        self.assertEqual(v.shape, (2, 3))
        v[1, 2] = 5.0
        self.assertEqual(t.tolist()[1][2], 5.0)  # same memory
        tape = mnas.Tape(self.ctx)
        y = tape.add_scalar(t, 1.0)
        self.assertEqual(np.asarray(y)[1, 2], 6.0)
        self.assertEqual(np.asarray(self.ctx.tensor(3.0)).shape, ())

    def test_view_keeps_the_owner_alive(self):
        def make():
            ctx = mnas.Context()
            return np.asarray(ctx.tensor(np.full((50, 50), 7.0, dtype=np.float32)))

        v = make()
        collect()
        for _ in range(3):
            mnas.Context().zeros((50, 50))  # would reuse freed memory
        collect()
        self.assertTrue((v == 7.0).all())
        self.assertIsInstance(v.base, mnas.Tensor)
        t = v.base
        t.close()  # closed for Python, memory kept for the view
        self.assertTrue((v == 7.0).all())
        with self.assertRaises(mnas.ClosedHandleError):
            t.tolist()
        del t, v
        collect()

    def test_gradients_to_numpy(self):
        x = self.ctx.tensor(np.linspace(-1, 1, 5, dtype=np.float32), requires_grad=True)
        tape = mnas.Tape(self.ctx)
        g = tape.grad(tape.sum(tape.pow(x, 3.0)), x)
        np.testing.assert_allclose(np.asarray(g), 3 * np.asarray(x) ** 2, rtol=1e-6)

    def test_learner_with_numpy_inputs(self):
        learner = mnas.Learner(self.ctx, meta_batch=2, hidden=8, layers=2)
        task = mnas.regression_task(self.ctx, 3, 0)
        xs = np.linspace(-5, 5, 7, dtype=np.float32)
        y = learner.adapt_predict(task, xs)
        self.assertEqual(len(y), 7)
        sx = np.asarray(task.support_x)
        self.assertEqual(sx.shape, (10, 1))
        gc.collect()


if __name__ == "__main__":
    unittest.main()
