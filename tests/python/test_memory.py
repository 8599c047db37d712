"""Finalisers free memory: 10,000 create/drop cycles do not grow the
process (resident set size from /proc/self/statm), and close() frees now,
or as soon as nothing reads the memory any more."""

import array
import os
import unittest

from mnas_test_util import collect, mnas, rss_bytes

CYCLES = 10000
# Each cycle below allocates well over 16 KB in libmnas; a leak of a single
# object per cycle would grow the process by more than 160 MB.
BOUND = 8 << 20
# Under AddressSanitizer freed memory sits in a quarantine, so the RSS says
# nothing; the cycles still run (and ASan checks every access).
SANITIZED = bool(os.environ.get("MNAS_TEST_SANITIZER"))


@unittest.skipIf(rss_bytes() is None, "no /proc/self/statm")
class TestFinalisers(unittest.TestCase):
    def assertRssBelow(self, value, bound, msg=None):
        if not SANITIZED:
            self.assertLess(value, bound, msg)

    def assertRssAbove(self, value, bound):
        if not SANITIZED:
            self.assertGreater(value, bound)
    def measure(self, cycle, n=CYCLES, warmup=300):
        for i in range(warmup):
            cycle(i)
        collect()
        before = rss_bytes()
        for i in range(n):
            cycle(i)
        collect()
        return rss_bytes() - before

    def test_tensors_params_tasks(self):
        ctx = mnas.Context(seed=1)
        tape = mnas.Tape(ctx)
        data = array.array("f", range(64 * 64))

        def cycle(i):
            t = mnas.Tensor.from_buffer(ctx, data, (64, 64))   # 16 KB
            t.requires_grad = True
            y = tape.sum(tape.square(t))                         # pins t until reset
            tape.grad(y, t)
            tape.reset()
            p = mnas.Params(ctx)
            p.add("w", (64, 64))
            p[0].shape
            task = mnas.regression_task(ctx, 1, i, k_shot=500, k_query=500)
            task.support_x.shape

        growth = self.measure(cycle)
        self.assertRssBelow(growth, BOUND, "RSS grew by %d bytes over %d cycles" % (growth, CYCLES))
        ctx.close()

    def test_contexts_and_tapes(self):
        def cycle(i):
            ctx = mnas.Context()
            tp = mnas.Tape(ctx)
            x = ctx.zeros((128, 32))                               # 16 KB
            tp.add(x, x)                                           # the tape's arena: > 1 MB
            if i % 2:
                ctx.close()                                        # explicit close half the time

        growth = self.measure(cycle)
        self.assertRssBelow(growth, BOUND, "RSS grew by %d bytes over %d cycles" % (growth, CYCLES))

    def test_close_frees_now(self):
        ctx = mnas.Context()
        # Above glibc's largest mmap threshold (32 MB), so a free returns the
        # memory to the system at once and shows in the RSS.
        shape = (10, 1024, 1024)         # 40 MB
        drop = 20 << 20
        big = ctx.zeros(shape)
        collect()
        r0 = rss_bytes()
        big.close()
        collect()
        self.assertRssBelow(rss_bytes(), r0 - drop)
        # pinned by a recording: freed at the reset
        n = 10 * 1024 * 1024
        t = ctx.zeros(shape)
        t.assign(array.array("f", [1.0]) * n)
        s = ctx.tensor(2.0, requires_grad=True)
        tape = mnas.Tape(ctx)
        y = tape.sum(tape.mul(t, s))                      # its backward reads t
        t.close()                                         # postponed: the recording reads t
        self.assertTrue(t.closed)
        self.assertEqual(tape.grad(y, s).item(), n)       # d y / d s = sum(t), read safely
        r1 = rss_bytes()
        self.assertTrue(t._fin.alive)
        tape.reset()                                      # frees t
        self.assertFalse(t._fin.alive)
        self.assertRssBelow(rss_bytes(), r1 - drop)
        # exported through a memoryview: freed when the view is gone
        u = ctx.zeros(shape)
        mv = u.memoryview()
        r2 = rss_bytes()
        u.close()
        self.assertEqual(mv[0, 0, 0], 0.0)               # still readable
        self.assertRssAbove(rss_bytes(), r2 - drop)
        del u, mv
        collect()
        self.assertRssBelow(rss_bytes(), r2 - drop)
        ctx.close()

    def test_context_close_waits_for_views(self):
        ctx = mnas.Context()
        t = ctx.tensor([1.0, 2.0, 3.0])
        mv = t.memoryview()
        ctx.close()               # closes t for Python; the memory stays for the view
        self.assertTrue(t.closed)
        self.assertEqual(mv.tolist(), [1.0, 2.0, 3.0])
        del t
        collect()
        self.assertEqual(mv.tolist(), [1.0, 2.0, 3.0])
        del mv
        collect()                 # now the tensor and then the context are freed


if __name__ == "__main__":
    unittest.main()


class TestLiveCounts(unittest.TestCase):
    def test_live_tensors_and_allocations(self):
        ctx = mnas.Context(seed=1)
        self.assertEqual(ctx.live_tensors, 0)
        self.assertEqual(ctx.live_allocations, 0)
        t = ctx.zeros([2, 3])
        self.assertEqual(ctx.live_tensors, 1)
        self.assertGreaterEqual(ctx.live_allocations, 2)
        t.close()
        self.assertEqual(ctx.live_tensors, 0)
        self.assertEqual(ctx.live_allocations, 0)
        ctx.close()
