"""Tensors: round trips of data through buffers, queries, copies, random tensors."""

import array
import math
import struct
import unittest

from mnas_test_util import mnas


class TestBuffers(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context(seed=3)

    def tearDown(self):
        self.ctx.close()

    def test_array_round_trip(self):
        vals = array.array("f", [0.5 * i - 3.25 for i in range(24)])
        t = mnas.Tensor.from_buffer(self.ctx, vals, (2, 3, 4))
        self.assertEqual(t.shape, (2, 3, 4))
        self.assertEqual(t.ndim, 3)
        self.assertEqual(t.size, 24)
        self.assertEqual(t.to_array(), vals)
        self.assertEqual(t.to_bytes(), vals.tobytes())
        nested = t.tolist()
        self.assertEqual(len(nested), 2)
        self.assertEqual(nested[1][2], list(vals[20:24]))
        # the tensor holds a copy: changing the source does not change it
        vals[0] = 100.0
        self.assertEqual(t.tolist()[0][0][0], -3.25)

    def test_shape_defaults_to_the_buffer(self):
        t = self.ctx.tensor(array.array("f", [1, 2, 3]))
        self.assertEqual(t.shape, (3,))
        mv = memoryview(array.array("f", range(6))).cast("B").cast("f", [2, 3])
        t2 = self.ctx.tensor(mv)
        self.assertEqual(t2.shape, (2, 3))
        self.assertEqual(t2.tolist(), [[0, 1, 2], [3, 4, 5]])

    def test_bytes_and_bytearray(self):
        raw = struct.pack("=4f", 1.0, -2.0, 3.5, 1e-3)
        t = mnas.Tensor.from_buffer(self.ctx, raw, (2, 2))
        self.assertEqual(t.to_bytes(), raw)
        t2 = self.ctx.tensor(bytearray(raw))
        self.assertEqual(t2.shape, (4,))
        self.assertEqual(t2.to_bytes(), raw)
        t3 = self.ctx.tensor(memoryview(raw))  # read-only buffer
        self.assertEqual(t3.to_bytes(), raw)

    def test_nested_lists_and_numbers(self):
        t = self.ctx.tensor([[1, 2], [3, 4], [5, 6]])
        self.assertEqual(t.shape, (3, 2))
        self.assertEqual(t.tolist(), [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        s = self.ctx.tensor(2.5)
        self.assertEqual(s.shape, ())
        self.assertEqual(s.ndim, 0)
        self.assertEqual(s.item(), 2.5)
        self.assertEqual(float(s), 2.5)
        self.assertEqual(s.tolist(), 2.5)
        r = self.ctx.tensor([1, 2, 3, 4], shape=(2, 2))
        self.assertEqual(r.tolist(), [[1, 2], [3, 4]])

    def test_memoryview_is_zero_copy_and_writable(self):
        t = self.ctx.zeros((2, 3))
        mv = t.memoryview()
        self.assertEqual(mv.shape, (2, 3))
        self.assertEqual(mv.format, "f")
        mv[1, 2] = 7.0
        self.assertEqual(t.tolist()[1][2], 7.0)
        t2 = self.ctx.tensor([1.0, 2.0])
        t2.memoryview()[0] = -1.0
        self.assertEqual(t2.tolist(), [-1.0, 2.0])
        s = self.ctx.tensor(4.0).memoryview()
        self.assertEqual(s.shape, ())
        self.assertEqual(s[()], 4.0)

    def test_special_values_survive(self):
        vals = array.array("f", [math.inf, -math.inf, 0.0, -0.0, 1e-38, 3.4e38])
        t = self.ctx.tensor(vals)
        out = t.to_array()
        self.assertEqual(out[0], math.inf)
        self.assertEqual(out[1], -math.inf)
        self.assertEqual(math.copysign(1, out[3]), -1.0)
        n = self.ctx.tensor(array.array("f", [math.nan]))
        self.assertTrue(math.isnan(n.item()))

    def test_bad_buffers(self):
        with self.assertRaises(mnas.ShapeError):
            mnas.Tensor.from_buffer(self.ctx, array.array("f", [1, 2, 3]), (2, 2))
        with self.assertRaises(mnas.ShapeError):
            self.ctx.tensor(array.array("f", range(8)), shape=(2, 2))
        with self.assertRaises(TypeError):
            self.ctx.tensor(array.array("d", [1, 2]))
        with self.assertRaises(TypeError):
            self.ctx.tensor(array.array("i", [1, 2]))
        with self.assertRaises(mnas.InvalidArgument):  # not contiguous
            self.ctx.tensor(memoryview(array.array("f", range(8)))[::2])
        with self.assertRaises(mnas.ShapeError):
            self.ctx.tensor(b"abc")  # not a whole number of floats
        with self.assertRaises(mnas.ShapeError):
            self.ctx.tensor([[1, 2], [3]])
        with self.assertRaises(mnas.ShapeError):
            self.ctx.tensor([])
        with self.assertRaises(mnas.ShapeError):
            self.ctx.tensor([[[[[1.0]]]]])  # 5 axes
        with self.assertRaises(TypeError):
            self.ctx.tensor("1234")
        with self.assertRaises(TypeError):
            self.ctx.tensor([1, "x"])
        with self.assertRaises(TypeError):
            mnas.Tensor()

    def test_bad_shapes(self):
        with self.assertRaises(mnas.ShapeError):
            self.ctx.zeros((1, 2, 3, 4, 5))
        with self.assertRaises(mnas.ShapeError) as cm:
            self.ctx.zeros((3, 0))
        self.assertIn("mnas_tensor_zeros", str(cm.exception))
        with self.assertRaises(mnas.ShapeError):
            self.ctx.zeros(-1)
        with self.assertRaises(TypeError):
            self.ctx.zeros((2.5, 1))
        with self.assertRaises(TypeError):
            self.ctx.zeros("ab")
        with self.assertRaises(mnas.InvalidArgument):
            self.ctx.zeros((1 << 70,))

    def test_copy_assign_reshape(self):
        a = self.ctx.tensor([[1, 2, 3], [4, 5, 6]])
        b = a.copy()
        self.assertEqual(b.tolist(), a.tolist())
        b.memoryview()[0, 0] = 9
        self.assertEqual(a.tolist()[0][0], 1.0)
        a.reshape_((3, 2))
        self.assertEqual(a.shape, (3, 2))
        self.assertEqual(a.tolist(), [[1, 2], [3, 4], [5, 6]])
        with self.assertRaises(mnas.ShapeError):
            a.reshape_((4, 2))
        c = self.ctx.zeros(6)
        c.assign(a)
        self.assertEqual(c.tolist(), [1, 2, 3, 4, 5, 6])
        c.assign(array.array("f", [6, 5, 4, 3, 2, 1]))
        self.assertEqual(c.tolist(), [6, 5, 4, 3, 2, 1])
        with self.assertRaises(mnas.ShapeError):
            c.assign([1.0, 2.0])
        with self.assertRaises(mnas.ShapeError):
            c.assign(self.ctx.zeros(5))
        t2 = mnas.tensor(self.ctx, a, shape=(6,))
        self.assertEqual(t2.shape, (6,))

    def test_requires_grad_flag(self):
        t = self.ctx.zeros((2,))
        self.assertFalse(t.requires_grad)
        t.requires_grad = True
        self.assertTrue(t.requires_grad)
        self.assertTrue(self.ctx.zeros(3, requires_grad=True).requires_grad)
        self.assertFalse(t.is_tape_owned)

    def test_item_needs_one_element(self):
        with self.assertRaises(mnas.ShapeError):
            self.ctx.zeros((2,)).item()

    def test_random_tensors_follow_the_seed(self):
        self.ctx.seed(42)
        a = self.ctx.randn((100,), mean=1.0, std=2.0).tolist()
        self.ctx.seed(42)
        b = self.ctx.randn((100,), mean=1.0, std=2.0).tolist()
        self.assertEqual(a, b)
        m = sum(a) / len(a)
        self.assertLess(abs(m - 1.0), 1.0)
        u = self.ctx.rand((1000,), lo=-1, hi=3).tolist()
        self.assertTrue(all(-1 <= v < 3 for v in u))
        r1 = mnas.Rng(self.ctx, seed=5, stream=2)
        r2 = mnas.Rng(self.ctx, seed=5, stream=2)
        self.assertEqual(self.ctx.randn(10, rng=r1).tolist(), self.ctx.randn(10, rng=r2).tolist())
        with self.assertRaises(TypeError):
            self.ctx.randn(3, rng="nope")


class TestRng(unittest.TestCase):
    def test_streams_and_state(self):
        with mnas.Context() as ctx:
            r = mnas.Rng(ctx, 7, 0)
            first = [r.u64() for _ in range(3)]
            r.seed(7, 0)
            self.assertEqual([r.u64() for _ in range(3)], first)
            state = r.state
            self.assertEqual(len(state), 6)
            xs = [r.uniform() for _ in range(5)] + [r.normal() for _ in range(3)]
            r.state = state
            self.assertEqual([r.uniform() for _ in range(5)] + [r.normal() for _ in range(3)], xs)
            self.assertTrue(all(0 <= x < 1 for x in xs[:5]))
            self.assertEqual(r.below(0), 0)
            self.assertTrue(all(r.below(10) < 10 for _ in range(100)))
            other = mnas.Rng(ctx, 7, 1)
            self.assertNotEqual(other.u64(), first[0])
            with self.assertRaises(mnas.InvalidArgument):
                r.state = (1, 2, 3)
            with self.assertRaises(mnas.InvalidArgument):
                r.below(-1)
            ctx.rng.uniform()  # the context's own generator


if __name__ == "__main__":
    unittest.main()
