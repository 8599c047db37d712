"""PNG figures through the binding, and the Figure-3 helper."""

import os
import tempfile
import unittest

from mnas_test_util import mnas

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class TestFigures(unittest.TestCase):
    def setUp(self):
        self.ctx = mnas.Context()

    def tearDown(self):
        self.ctx.close()

    def test_figure(self):
        fig = mnas.Figure(self.ctx, 200, 150, 1, 2)
        self.assertEqual(fig.panels, 2)
        fig.line(0, [0, 1, 2], [0, 1, 4], mnas.color(1), 2.0, "x^2")
        fig.points(1, [0, 1], [1, 0], label="pts")
        fig.title(0, "parabola")
        fig.axis_labels(0, "x", "y")
        fig.legend(0, "upper left")
        fig.range(1, xlim=(-1, 2), ylim=None)
        self.assertEqual(fig.get_range(1)[:2], (-1.0, 2.0))
        x0, y0, x1, y1 = fig.plot_area(0)
        self.assertTrue(0 <= x0 < x1 < 200 and 0 <= y0 < y1 < 150)
        px, py = fig.data_to_pixel(1, -1.0, 0.0)
        self.assertTrue(0 <= px < 200)
        w, h, rgb = fig.pixels()
        self.assertEqual((w, h, len(rgb)), (200, 150, 200 * 150 * 3))
        self.assertNotEqual(set(rgb), {255})  # something was drawn
        with self.assertRaises(mnas.InvalidArgument):
            fig.line(5, [0], [0])
        with self.assertRaises(mnas.ShapeError):
            fig.line(0, [0, 1], [0])
        with self.assertRaises(mnas.InvalidArgument):
            fig.legend(0, "middle")
        with self.assertRaises(mnas.InvalidArgument):
            mnas.Figure(self.ctx, 10, 10)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "f.png")
            fig.save_png(path)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), PNG_SIGNATURE)
            with self.assertRaises(mnas.FileError):
                fig.save_png(os.path.join(d, "no", "such", "dir.png"))
        fig.clear(0)

    def test_plot_regression(self):
        learner = mnas.Learner(self.ctx, meta_batch=2, hidden=8, layers=2)
        learner.train(1)
        test = mnas.regression_test_set(self.ctx, 3, 1)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "figure3.png")
            fig = mnas.plot_regression(path, learner, list(test), grid=50)
            self.assertEqual(fig.panels, 4)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), PNG_SIGNATURE)


if __name__ == "__main__":
    unittest.main()
