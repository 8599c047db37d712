"""Image datasets and few-shot tasks through the bindings: PNG class
folders (written here with zlib, no imaging library), IDX files plain and
gzip, the decoded cache, class splits, the N-way K-shot sampler and
accuracy."""

import array
import gzip
import os
import struct
import tempfile
import unittest
import zlib

from mnas_test_util import mnas


def png_bytes(width, height, pixels):
    """An 8-bit grey PNG (pixels: row-major ints 0..255)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xffffffff)
    raw = b"".join(b"\0" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def idx_images(images, rows, cols):
    return struct.pack(">BBBBIII", 0, 0, 8, 3, len(images), rows, cols) + b"".join(bytes(i) for i in images)


def idx_labels(labels):
    return struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + bytes(labels)


class ImageTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.ctx = mnas.Context(seed=1)

    def tearDown(self):
        self.ctx.close()
        self.tmp.cleanup()

    def folder(self, classes=("b", "a", "c"), per_class=4, size=(6, 4)):
        root = os.path.join(self.dir, "ds")
        os.makedirs(root, exist_ok=True)
        w, h = size
        for k, name in enumerate(classes):
            os.makedirs(os.path.join(root, name), exist_ok=True)
            for i in range(per_class):
                px = [(k * 50 + i + p) % 256 for p in range(w * h)]
                with open(os.path.join(root, name, "%02d.png" % i), "wb") as f:
                    f.write(png_bytes(w, h, px))
        return root

    def test_load_folder(self):
        root = self.folder()
        ds = mnas.ImageDataset.load_folder(self.ctx, root)
        self.assertEqual(ds.class_names, ["a", "b", "c"])
        self.assertEqual(len(ds), 3)
        self.assertEqual(ds.num_images, 12)
        self.assertEqual(ds.shape, (1, 4, 6))
        self.assertEqual(ds.class_size("b"), 4)
        self.assertEqual(ds.find_class("zz"), -1)
        img = ds.image("b", 2)  # class index 0 in writing order = "b"
        self.assertEqual(img.shape, (1, 4, 6))
        self.assertAlmostEqual(img.tolist()[0][0][1], 3 / 255, places=6)
        self.assertFalse(ds.from_cache)
        rgb = mnas.ImageDataset.load_folder(self.ctx, root, channels=3, size=(8, 8), resize="bilinear")
        self.assertEqual(rgb.shape, (3, 8, 8))
        with self.assertRaises(IndexError):
            ds.image(5, 0)
        with self.assertRaises(mnas.InvalidArgument):
            ds.image(0, 99)

    def test_cache(self):
        root = self.folder()
        cache = os.path.join(self.dir, "cache.bin")
        a = mnas.ImageDataset.load_folder(self.ctx, root, cache=cache)
        self.assertFalse(a.from_cache)
        b = mnas.ImageDataset.load_folder(self.ctx, root, cache=cache)
        self.assertTrue(b.from_cache)
        self.assertEqual(a.image(1, 1).tolist(), b.image(1, 1).tolist())
        with open(cache, "r+b") as f:
            f.seek(-8, 2)
            f.write(b"\x01\x02\x03")
        c = mnas.ImageDataset.load_folder(self.ctx, root, cache=cache)
        self.assertFalse(c.from_cache)

    def test_broken_files(self):
        root = self.folder()
        bad = os.path.join(root, "a", "zz.png")
        with open(bad, "wb") as f:
            f.write(b"plain text, not an image")
        with self.assertRaises(mnas.FormatError) as cm:
            mnas.ImageDataset.load_folder(self.ctx, root)
        self.assertIn("not a PNG", str(cm.exception))
        self.assertIn("zz.png", str(cm.exception))
        good = png_bytes(4, 4, [1] * 16)
        with open(bad, "wb") as f:
            f.write(good[:len(good) // 2])
        with self.assertRaises(mnas.FormatError) as cm:
            mnas.ImageDataset.load_folder(self.ctx, root)
        self.assertIn("truncated", str(cm.exception))
        with self.assertRaises(mnas.FileError):
            mnas.ImageDataset.load_folder(self.ctx, os.path.join(self.dir, "missing"))
        with self.assertRaises(mnas.InvalidArgument):
            mnas.ImageDataset.load_folder(self.ctx, root, resize="cubic")

    def test_idx(self):
        images = [[(i + p) % 256 for p in range(12)] for i in range(9)]
        labels = [i % 3 for i in range(9)]
        ip, lp = os.path.join(self.dir, "i.gz"), os.path.join(self.dir, "l")
        with gzip.open(ip, "wb") as f:
            f.write(idx_images(images, 3, 4))
        with open(lp, "wb") as f:
            f.write(idx_labels(labels))
        ds = mnas.ImageDataset.load_idx(self.ctx, ip, lp)
        self.assertEqual(ds.class_names, ["0", "1", "2"])
        self.assertEqual(ds.shape, (1, 3, 4))
        self.assertAlmostEqual(ds.image(1, 1).tolist()[0][0][0], 4 / 255, places=6)
        with open(lp, "wb") as f:
            f.write(idx_labels(labels[:-1]))
        with self.assertRaises(mnas.FormatError) as cm:
            mnas.ImageDataset.load_idx(self.ctx, ip, lp)
        self.assertIn("count mismatch", str(cm.exception))
        with open(lp, "wb") as f:
            f.write(b"\x01" + idx_labels(labels)[1:])
        with self.assertRaises(mnas.FormatError) as cm:
            mnas.ImageDataset.load_idx(self.ctx, ip, lp)
        self.assertIn("magic", str(cm.exception))

    def synthetic(self, n_classes, per_class, tag=0.0):
        data = array.array("f")
        for c in range(n_classes):
            for j in range(per_class):
                data.extend([c * 1000 + j, tag, 0, 0])
        return mnas.ImageDataset.create(self.ctx, [per_class] * n_classes, data, (1, 2, 2),
                                        names=["k%02d" % c for c in range(n_classes)])

    def test_split(self):
        ds = self.synthetic(10, 3)
        tr, va, te = ds.split(seed=3)
        self.assertEqual((len(tr), len(va), len(te)), (6, 2, 2))
        self.assertEqual(sorted(tr.class_names + va.class_names + te.class_names), ds.class_names)
        tr2, _, _ = ds.split(seed=3)
        self.assertEqual(tr.class_names, tr2.class_names)
        others = {tuple(ds.split(seed=s, want=("train",))[0].class_names) for s in range(10, 16)}
        self.assertGreater(len(others), 1)
        lst = os.path.join(self.dir, "train.txt")
        with open(lst, "w") as f:
            f.write("k03\nk01\n")
        tr, va, te = ds.split(lists={"train": lst}, want=("train",))
        self.assertEqual(tr.class_names, ["k01", "k03"])
        self.assertIsNone(va)
        with open(lst, "w") as f:
            f.write("nope\n")
        with self.assertRaises(mnas.FormatError):
            ds.split(lists={"train": lst}, want=("train",))
        sub = ds.subset(["k05", 2])
        self.assertEqual(sub.class_names, ["k05", "k02"])

    def test_sampler(self):
        a = self.synthetic(8, 5, tag=0.0)
        b = self.synthetic(6, 5, tag=1.0)
        s = mnas.FewShotSampler(self.ctx, [a, b], way=3, shot=2, query=2)
        self.assertEqual(s.sizes, (3, 2, 2))
        t = s.task(seed=4, index=9)
        self.assertEqual(t.support_x.shape, (6, 1, 2, 2))
        self.assertEqual(t.query_y.shape, (6, 1))
        labels = sorted(v[0] for v in t.support_y.tolist())
        self.assertEqual(labels, [0, 0, 1, 1, 2, 2])
        again = s.task(seed=4, index=9)
        self.assertEqual(t.support_x.tolist(), again.support_x.tolist())
        self.assertEqual(t.query_y.tolist(), again.query_y.tolist())
        fams = {s.task(4, i).family for i in range(40)}
        self.assertEqual(fams, {0, 1})
        ts = s.test_set(seed=8, n_tasks=5)
        self.assertEqual(len(ts), 5)
        self.assertEqual(ts[2].support_x.tolist(), s.task(8, 2).support_x.tolist())
        with self.assertRaises(mnas.InvalidArgument):
            mnas.FewShotSampler(self.ctx, a, way=9)
        a.close()  # the sampler depends on it: closed too
        self.assertTrue(s.closed)

    def test_accuracy(self):
        logits = self.ctx.tensor([[1, 2], [3, 0], [0, 1]])
        labels = self.ctx.tensor([[1], [1], [1]])
        self.assertAlmostEqual(mnas.accuracy(logits, labels), 2 / 3)
        with self.assertRaises(mnas.ShapeError):
            mnas.accuracy(logits, self.ctx.tensor([[1], [0]]))


if __name__ == "__main__":
    unittest.main()
