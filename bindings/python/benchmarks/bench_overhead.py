"""Per-call cost of the binding for a small op, next to the C figure.

The same measurement as bench/bench_ops's first line: mnas_add of two
persistent 10x50 tensors that require gradients, recorded on a tape that is
reset every 1000 ops; here through ``tape.add`` (and the ``a + b`` operator,
and the raw ctypes function for comparison). Best of 5 runs of 100,000 calls.

    PYTHONPATH=bindings/python /usr/bin/python3 bindings/python/benchmarks/bench_overhead.py
"""

import sys
import timeit

import mnas
from mnas._lib import C

N = 100_000
RESET = 1000


def main():
    ctx = mnas.Context(seed=1)
    a = ctx.randn((10, 50))
    b = ctx.randn((10, 50))
    a.requires_grad = True
    b.requires_grad = True
    tape = mnas.Tape(ctx)

    def binding():
        add, reset = tape.add, tape.reset
        for _ in range(N // RESET):
            for _ in range(RESET):
                add(a, b)
            reset()

    def operator():
        reset = tape.reset
        with tape.active():
            for _ in range(N // RESET):
                for _ in range(RESET):
                    a + b
                reset()

    tp, ap, bp = tape._ptr, a._ptr, b._ptr

    def raw_ctypes():
        add, reset = C.mnas_add, C.mnas_tape_reset
        for _ in range(N // RESET):
            for _ in range(RESET):
                add(tp, ap, bp)
            reset(tp)
        tape._gen += N // RESET  # keep the Python side's generation in step

    def python_loop():
        for _ in range(N // RESET):
            for _ in range(RESET):
                pass

    print("libmnas %s from %s; Python %s" % (mnas.version(), mnas.loaded_path(),
                                             sys.version.split()[0]))
    base = min(timeit.repeat(python_loop, number=1, repeat=5)) / N * 1e9
    for name, f in (("raw ctypes call (C.mnas_add)", raw_ctypes),
                    ("tape.add(a, b)", binding),
                    ("a + b (active tape)", operator)):
        best = min(timeit.repeat(f, number=1, repeat=5)) / N * 1e9
        print("%-30s %7.0f ns per call (loop overhead %.0f ns subtracted)" % (name, best - base, base))
    print("C figure for comparison: bench/bench_ops, 'mnas_add recorded' (~100 ns)")
    ctx.close()


if __name__ == "__main__":
    main()
