"""Zero-copy tensor input: Tensor.from_buffer(..., copy=False) over the
caller's buffer (mnas_tensor_wrap): writes visible both ways, the buffer
kept alive by the tensor, and the buffers it must refuse."""

import array
import unittest
import weakref

from mnas_test_util import HAVE_NUMPY, collect, mnas, numpy as np


class TestZeroCopyStdlib(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=3)

    def tearDown(self):
        self.ctx.close()

    def test_array_both_ways(self):
        buf = array.array("f", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        t = mnas.Tensor.from_buffer(self.ctx, buf, (2, 3), copy=False)
        self.assertEqual(t.shape, (2, 3))
        buf[4] = 50.0
        self.assertEqual(t.tolist(), [[1.0, 2.0, 3.0], [4.0, 50.0, 6.0]])
        t.assign([0.5] * 6)
        self.assertEqual(buf.tolist(), [0.5] * 6)
        # the default still copies
        c = mnas.Tensor.from_buffer(self.ctx, buf, (2, 3))
        buf[0] = 9.0
        self.assertEqual(c.tolist()[0][0], 0.5)
        self.assertEqual(t.tolist()[0][0], 9.0)

    def test_bytearray_kept_and_pinned(self):
        raw = bytearray(array.array("f", [1.0, 2.0, 3.0, 4.0]).tobytes())
        t = mnas.Tensor.from_buffer(self.ctx, raw, copy=False)
        self.assertEqual(t.shape, (4,))
        # the tensor holds an export: the bytearray cannot move under it
        with self.assertRaises(BufferError):
            raw.extend(b"\0" * 4096)
        del raw
        collect()
        self.assertEqual(t.tolist(), [1.0, 2.0, 3.0, 4.0])
        t.close()

    def test_refusals(self):
        ctx = self.ctx
        good = array.array("f", [1.0, 2.0])
        with self.assertRaises(ValueError) as cm:  # read-only
            mnas.Tensor.from_buffer(ctx, good.tobytes(), copy=False)
        self.assertIn("read-only", str(cm.exception))
        with self.assertRaises(TypeError) as cm:  # wrong element type
            mnas.Tensor.from_buffer(ctx, array.array("d", [1.0, 2.0]), copy=False)
        self.assertIn("float32", str(cm.exception))
        with self.assertRaises(TypeError):  # not a buffer
            mnas.Tensor.from_buffer(ctx, [1.0, 2.0], copy=False)
        with self.assertRaises(ValueError) as cm:  # wrong size
            mnas.Tensor.from_buffer(ctx, good, (3,), copy=False)
        self.assertIn("needs 3 values", str(cm.exception))
        with self.assertRaises(ValueError):  # not whole float32 values
            mnas.Tensor.from_buffer(ctx, bytearray(7), copy=False)
        with self.assertRaises(ValueError):  # strided view
            mnas.Tensor.from_buffer(ctx, memoryview(array.array("f", [1, 2, 3, 4]))[::2], copy=False)
        # float32 values at an odd address: refused by libmnas, naming the
        # alignment, and the refused buffer is not left exported (release()
        # fails while a view of it is alive)
        ba = bytearray(4 * 4 + 1)
        odd = memoryview(ba)[1:]
        with self.assertRaises(ValueError) as cm:
            mnas.Tensor.from_buffer(ctx, odd, copy=False)
        self.assertIn("aligned to 4 bytes", str(cm.exception))
        del cm
        odd.release()
        ba.extend(b"\0" * 64)
        # a refusal leaves the buffer free to change and the context usable
        good.append(3.0)
        self.assertEqual(mnas.Tensor.from_buffer(ctx, good, copy=False).shape, (3,))


@unittest.skipUnless(HAVE_NUMPY, "NumPy is not installed (apt-get install python3-numpy)")
class TestZeroCopyNumpy(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=4)

    def tearDown(self):
        self.ctx.close()

    def test_writes_both_ways_and_ops(self):
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        t = mnas.Tensor.from_buffer(self.ctx, a, copy=False, requires_grad=True)
        self.assertEqual(t.shape, (2, 3))
        a[1, 2] = 42.0
        self.assertEqual(t.tolist()[1][2], 42.0)
        np.asarray(t)[0, 0] = -1.0  # through the tensor's own view
        self.assertEqual(a[0, 0], -1.0)
        with self.ctx.tape() as tp:
            y = tp.sum(tp.mul(t, t))
            (g,) = tp.grad(y, [t])
            np.testing.assert_array_equal(np.asarray(g), 2 * a)
            self.assertAlmostEqual(y.item(), float((a.astype(np.float64) ** 2).sum()), places=3)

    def test_lifetime(self):
        a = np.linspace(-1, 1, 8, dtype=np.float32)
        ref = weakref.ref(a)
        t = mnas.Tensor.from_buffer(self.ctx, a, (2, 4), copy=False)
        expect = a.reshape(2, 4).tolist()
        del a
        collect()
        self.assertIsNotNone(ref())  # the tensor keeps the array alive
        self.assertEqual(t.tolist(), expect)
        t.close()
        del t
        collect()
        self.assertIsNone(ref())  # and lets it go with the tensor

    def test_refusals(self):
        ctx = self.ctx
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        ro = a.copy()
        ro.setflags(write=False)
        with self.assertRaises(ValueError):
            mnas.Tensor.from_buffer(ctx, ro, copy=False)
        with self.assertRaises(TypeError):
            mnas.Tensor.from_buffer(ctx, a.astype(np.float64), copy=False)
        with self.assertRaises(TypeError):
            mnas.Tensor.from_buffer(ctx, a.astype(">f4"), copy=False)
        with self.assertRaises(ValueError) as cm:
            mnas.Tensor.from_buffer(ctx, a[:, ::2], copy=False)
        self.assertIn("contiguous", str(cm.exception))
        with self.assertRaises(ValueError):
            mnas.Tensor.from_buffer(ctx, a.T, copy=False)
        with self.assertRaises(ValueError):
            mnas.Tensor.from_buffer(ctx, a, (5,), copy=False)
        # float32 values one byte off their alignment: libmnas refuses them
        raw = np.zeros(4 * 4 + 1, dtype=np.uint8)
        odd = raw[1:].view(np.float32)
        with self.assertRaises(ValueError) as cm:
            mnas.Tensor.from_buffer(ctx, odd, copy=False)
        self.assertIn("aligned", str(cm.exception))
        # nothing above left a tensor behind
        collect()
        self.assertEqual(ctx.live_tensors, 0)


if __name__ == "__main__":
    unittest.main()
