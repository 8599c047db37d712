#!/usr/bin/env python3
"""The three examples under mpirun give what one process gives.

usage: mpi_examples.py MPIEXEC MNAS_DEMO MAML_REGRESSION FEWSHOT_IMAGES

mnas_demo, maml_regression and fewshot_images (on a small synthetic IDX
dataset) run on tiny budgets as one plain process and under
`mpirun -np 2` and `-np 3`: the result tables (every number, the genotypes)
and the files rank 0 writes (figures 3 and 6, DOT files) are identical, the
other ranks write nothing of their own, and --minutes is refused under
mpirun with a message naming it.
"""
import os
import random
import re
import struct
import subprocess
import sys
import tempfile

MPIEXEC, DEMO, MAML, FEWSHOT = sys.argv[1:5]
MPIRUN = [MPIEXEC, "--oversubscribe", "--allow-run-as-root"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(args, expect=0):
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    check(p.returncode == expect,
          "%s exited %d, expected %d\nstderr: %s" % (" ".join(args), p.returncode, expect, p.stderr[-2000:]))
    return p


def results(text, out=None):
    """What must not depend on the number of processes: the table rows'
    mean +- CI pairs (not the seconds), genotypes and the other lines, with
    the output folder's name and wall-clock times taken out."""
    keep = []
    for line in text.splitlines():
        if out:
            line = line.replace(out, "OUT")
        if "+-" in line:
            line = line.split()[0] + " " + " ".join(re.findall(r"\S+ \+- \S+", line))
        line = re.sub(r"[0-9.]+ s\b|[0-9]+:[0-9]{2}:[0-9]{2}", "T", line)
        keep.append(line)
    return "\n".join(keep)


def files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith((".png", ".dot")):
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = f.read()
    return out


def write_idx(folder, classes=12, per_class=6, side=16, seed=5):
    rng = random.Random(seed)
    os.makedirs(folder)
    images, labels = [], []
    for c in range(classes):
        pattern = [rng.randrange(256) for _ in range(side * side)]
        for _ in range(per_class):
            images.append(bytes(min(255, max(0, v + rng.randrange(-30, 31))) for v in pattern))
            labels.append(c)
    with open(os.path.join(folder, "train-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, len(images), side, side) + b"".join(images))
    with open(os.path.join(folder, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + bytes(labels))


with tempfile.TemporaryDirectory() as tmp:
    # mnas_demo: all four methods, with the validation table
    demo = ["--iterations", "8", "--eval-iterations", "4", "--maml-iterations", "8", "--meta-batch", "5",
            "--test-tasks", "6", "--val-tasks", "3", "--threads", "1"]
    ref_out = os.path.join(tmp, "demo-1")
    ref = run([DEMO] + demo + ["--out", ref_out])
    check("Table 1" in ref.stdout and "M-NAS-Shared" in ref.stdout, "mnas_demo prints Table 1")
    for np_ in (2, 3):
        out = os.path.join(tmp, "demo-%d" % np_)
        p = run(MPIRUN + ["-np", str(np_), DEMO] + demo + ["--out", out])
        check(results(p.stdout, out) == results(ref.stdout, ref_out),
              "mnas_demo: the output of %d ranks equals one process's\n--- 1:\n%s\n--- %d:\n%s"
              % (np_, results(ref.stdout, ref_out)[-1500:], np_, results(p.stdout, out)[-1500:]))
        check(files(out) == files(ref_out) and len(files(out)) >= 7,
              "mnas_demo: %d ranks write the same figures and DOT files (%s vs %s)"
              % (np_, sorted(files(out)), sorted(files(ref_out))))
        check(not [n for n in os.listdir(out) if n.endswith(".tmp")], "mnas_demo: no temporary files left")
        check(p.stderr.count("shared by %d processes" % np_) == 4,
              "mnas_demo: each of the 4 learners is distributed over %d processes (said once, by rank 0)" % np_)
    # a checkpoint written under mpirun resumes in one process
    ck = os.path.join(tmp, "demo.ckpt")
    run(MPIRUN + ["-np", "2", DEMO, "--method", "maml", "--maml-iterations", "6", "--meta-batch", "5",
                  "--test-tasks", "4", "--save", ck, "--out", os.path.join(tmp, "ck")])
    check(os.path.exists(ck + ".maml") or os.path.exists(ck), "mnas_demo under mpirun: rank 0 wrote the checkpoint")

    # maml_regression
    maml = ["--iterations", "10", "--meta-batch", "5", "--test-tasks", "8", "--threads", "1"]
    m1 = run([MAML] + maml)
    m3 = run(MPIRUN + ["-np", "3", MAML] + maml)
    check("shared by 3 processes" in m3.stderr and "shared by" not in m1.stderr,
          "maml_regression: distributed under mpirun only")
    check("MAML" in m1.stdout and results(m3.stdout) == results(m1.stdout),
          "maml_regression: 3 ranks equal one process\n%s\n%s" % (m1.stdout[-800:], m3.stdout[-800:]))

    # fewshot_images on a synthetic IDX dataset
    data = os.path.join(tmp, "glyphs")
    write_idx(data)
    few = ["--dataset", data, "--image-size", "16", "--iterations", "3", "--meta-batch", "4", "--way", "3",
           "--query", "2", "--eval-tasks", "6", "--eval-steps", "2", "--supernet-channels", "4",
           "--filters", "4", "--train-fraction", "0.5", "--val-fraction", "0.25", "--threads", "1"]
    f_out1 = os.path.join(tmp, "few-1")
    f1 = run([FEWSHOT] + few + ["--out", f_out1])
    f_out2 = os.path.join(tmp, "few-2")
    f2 = run(MPIRUN + ["-np", "2", FEWSHOT] + few + ["--out", f_out2])
    check("| M-NAS |" in f1.stdout and results(f2.stdout, f_out2) == results(f1.stdout, f_out1),
          "fewshot_images: 2 ranks equal one process\n%s\n%s" % (f1.stdout[-1200:], f2.stdout[-1200:]))
    check(files(f_out2) == files(f_out1) and files(f_out1), "fewshot_images: the same DOT files and figures")
    # --recompute-cells reaches the learner (the mode's results are checked in test_recompute_cells)
    f3 = run([FEWSHOT] + few + ["--recompute-cells", "--method", "mnas", "--out", os.path.join(tmp, "few-3")])
    check(f3.stdout.count("second order, cells recomputed") == 1 and "| M-NAS |" in f3.stdout,
          "fewshot_images --recompute-cells trains M-NAS in that mode\n%s" % f3.stdout[-1200:])
    p = run(MPIRUN + ["-np", "2", FEWSHOT] + few + ["--minutes", "1", "--out", f_out2], expect=2)
    check("--minutes" in p.stderr, "fewshot_images --minutes under mpirun is refused, naming the option")

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("mpi_examples: all checks passed")
