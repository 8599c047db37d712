#!/usr/bin/python3
"""Smoke test of the example programs (ctest `examples_smoke`).

Runs examples/mnas_demo and examples/maml_regression on tiny budgets and
checks what a user relies on: the Table-1 layout with one row per requested
method and finite numbers, the figure (a PNG of the documented size) and the
genotype DOT files, bit-identical tables with 1 and 2 threads and on a rerun
(same seed), and a clean refusal (exit status 2, a message naming the
option) of bad options.

Under the sanitizers (MNAS_TEST_SANITIZED, set by a build with
MNAS_SANITIZE) the comparisons between runs (1 vs 2 threads, reruns, option
effects, validation with and without a test evaluation) and the sweep
driver are left to the plain build: they add run time, not code paths.

usage: examples_smoke.py MNAS_DEMO MAML_REGRESSION [FEWSHOT_IMAGES]
"""
import math
import os
import re
import struct
import subprocess
import sys
import tempfile

DEMO, MAML = sys.argv[1], sys.argv[2]
FEWSHOT = sys.argv[3] if len(sys.argv) > 3 else None
FAMILIES = 4
SANITIZED = bool(os.environ.get("MNAS_TEST_SANITIZED"))
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


def table(text, first_col_names):
    """The Table-1 rows: name -> list of (mean, ci) for the families and the average."""
    rows = {}
    for line in text.splitlines():
        for name in first_col_names:
            if line.startswith(name + " ") and "+-" in line:
                pairs = re.findall(r"(-?[0-9.]+(?:e[-+]?[0-9]+)?|nan|inf) \+- (-?[0-9.]+(?:e[-+]?[0-9]+)?|nan|inf)", line)
                rows[name] = [(float(a), float(b)) for a, b in pairs]
    return rows


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


methods = ["M-NAS", "M-NAS-Shared", "M-NAS-NM", "MAML"]
tiny = ["--iterations", "12", "--eval-iterations", "6", "--maml-iterations", "12", "--meta-batch", "5",
        "--test-tasks", "8"]
with tempfile.TemporaryDirectory() as tmp:
    out1, out2 = os.path.join(tmp, "t1"), os.path.join(tmp, "t2")
    # Sanitized: one run, on the worker pool; the 1-vs-2-thread comparison
    # is the plain build's.
    p1 = run([DEMO] + tiny + ["--threads", "2" if SANITIZED else "1", "--out", out1])
    p2 = p1 if SANITIZED else run([DEMO] + tiny + ["--threads", "2", "--out", out2])
    t1, t2 = table(p1.stdout, methods), table(p2.stdout, methods)
    check(sorted(t1) == sorted(methods), "mnas_demo prints one Table-1 row per method: %s" % sorted(t1))
    for name, cells in t1.items():
        check(len(cells) == FAMILIES + 1, "%s row has %d mean +- CI cells" % (name, len(cells)))
        check(all(math.isfinite(m) and m >= 0 and math.isfinite(c) and c >= 0 for m, c in cells),
              "%s row holds finite, non-negative numbers: %s" % (name, cells))
    check(t1 == t2, "mnas_demo: Table 1 identical with 1 and 2 threads")
    check(p1.stdout.count("distinct over the test tasks") == 2 and "shared: " in p1.stdout,
          "mnas_demo lists the genotypes of M-NAS, M-NAS-NM and M-NAS-Shared")
    for g in re.findall(r"(?:most frequent|shared): (\S+)", p1.stdout):
        check(re.fullmatch(r"(?:[a-z_]+@\d+,[a-z_]+@\d+;){2}[a-z_]+@\d+,[a-z_]+@\d+", g) is not None,
              "genotype %r has 3 nodes of 2 op@input edges" % g)
    check(png_size(os.path.join(out1, "figure3.png")) is not None, "figure3.png is a PNG")
    for flag in ["mnas", "mnas-shared", "mnas-nm"]:
        f6 = os.path.join(out1, "figure6-%s.png" % flag)
        check(png_size(f6) == (900, 800), "figure6-%s.png (t-SNE of z) is a 900x800 PNG" % flag)
        if not SANITIZED:
            with open(f6, "rb") as a, open(os.path.join(out2, "figure6-%s.png" % flag), "rb") as b:
                check(a.read() == b.read(), "figure6-%s.png identical with 1 and 2 threads" % flag)
    check(not os.path.exists(os.path.join(out1, "figure6-maml.png")), "MAML has no task encoder: no figure 6")
    # With the figure, how well z separates the families: a share of the 4 x 8
    # test tasks (a whole number of them), against chance 4 * 8 * 7 / (32 * 31).
    sep = re.findall(r"figure 6: z's nearest neighbour is of the same group for ([0-9.]+) % of (\d+) tasks "
                     r"\(chance ([0-9.]+) %\); z's spread \(RMS distance to its mean\) ([0-9.e+-]+)", p1.stdout)
    check(len(sep) == 3, "mnas_demo prints figure 6's separation for each M-NAS variant: %r" % sep)
    for same, n, chance, spread in sep:
        k = float(same) * 32 / 100
        check(n == "32" and chance == "22.6" and abs(k - round(k)) < 0.02 and float(spread) > 0,
              "separation %s %% of %s tasks, chance %s %%, spread %s" % (same, n, chance, spread))
    for flag in ["mnas", "mnas-shared", "mnas-nm"]:
        path = os.path.join(out1, "genotype-%s.dot" % flag)
        ok = os.path.exists(path)
        check(ok, "%s written" % path)
        if ok:
            with open(path) as f:
                dot = f.read()
            check(dot.startswith("digraph") and dot.rstrip().endswith("}") and dot.count("->") >= 6,
                  "%s is a DOT digraph with the 6 chosen edges and more" % path)
    if not SANITIZED:
        # The same seed again: the same table, bit for bit.
        p3 = run([DEMO] + tiny + ["--threads", "2", "--out", out2])
        check(table(p3.stdout, methods) == t2, "mnas_demo: a rerun with the same seed prints the same table")
        # One method only, and a different seed changes the numbers.
        p4 = run([DEMO] + tiny + ["--method", "mnas", "--seed", "7", "--out", out2])
        t4 = table(p4.stdout, methods)
        check(sorted(t4) == ["M-NAS"], "--method mnas prints only M-NAS: %s" % sorted(t4))
        check(t4.get("M-NAS") != t1.get("M-NAS"), "--seed changes the M-NAS row")
        # --maml-outer-lr applies to MAML only.
        p5 = run([DEMO] + tiny + ["--maml-outer-lr", "0.01", "--out", out2])
        t5 = table(p5.stdout, methods)
        check(t5.get("MAML") != t1.get("MAML") and all(t5.get(m) == t1.get(m) for m in methods[:3]),
              "--maml-outer-lr changes the MAML row and nothing else")
        # --mnas-shared-outer-lr and --mnas-nm-outer-lr apply to their method only.
        for flag, name in (("--mnas-shared-outer-lr", "M-NAS-Shared"), ("--mnas-nm-outer-lr", "M-NAS-NM")):
            tm = table(run([DEMO] + tiny + [flag, "0.01", "--out", out2]).stdout, methods)
            check(tm.get(name) != t1.get(name) and all(tm.get(m) == t1.get(m) for m in methods if m != name),
                  "%s changes the %s row and nothing else" % (flag, name))
        # --lr-decay changes the training of every method.
        p6 = run([DEMO] + tiny + ["--lr-decay", "0.5", "--out", out2])
        t6 = table(p6.stdout, methods)
        check(sorted(t6) == sorted(methods) and all(t6[m] != t1[m] for m in methods),
              "--lr-decay 0.5 changes every row")
        # --eval-reinit 1 changes the M-NAS variants (their evaluation phase
        # starts afresh), not MAML.
        p8 = run([DEMO] + tiny + ["--eval-reinit", "1", "--out", out2])
        t8 = table(p8.stdout, methods)
        check(t8.get("MAML") == t1.get("MAML") and all(t8.get(m) != t1.get(m) for m in methods[:3]),
              "--eval-reinit 1 changes the M-NAS rows and not MAML's")
        # --alpha-temperature: T = 1 is the default's bits; annealing 2 -> 0.2
        # changes the three M-NAS rows and not MAML's (no alpha); the header
        # says the schedule.
        p9 = run([DEMO] + tiny + ["--alpha-temperature", "1", "--out", out2])
        check(table(p9.stdout, methods) == t1, "--alpha-temperature 1 gives the default's table")
        p9 = run([DEMO] + tiny + ["--alpha-temperature", "2:0.2", "--out", out2])
        t9 = table(p9.stdout, methods)
        check(t9.get("MAML") == t1.get("MAML") and all(t9.get(m) != t1.get(m) for m in methods[:3]),
              "--alpha-temperature 2:0.2 changes the M-NAS rows and not MAML's")
        check("alpha temperature 2 -> 0.2" in p9.stdout.splitlines()[0], "the header names the schedule")
        # --hidden 50 is the default's bits; another width changes every row
        # (the searched cell's nodes and MAML's layers both use it).
        check(table(run([DEMO] + tiny + ["--hidden", "50", "--out", out2]).stdout, methods) == t1,
              "--hidden 50 gives the default's table")
        th = table(run([DEMO] + tiny + ["--hidden", "20", "--out", out2]).stdout, methods)
        check(sorted(th) == sorted(methods) and all(th[m] != t1[m] for m in methods), "--hidden 20 changes every row")
        # --mnas-hidden sets the M-NAS variants' width apart from MAML's.
        tw = table(run([DEMO] + tiny + ["--mnas-hidden", "20", "--out", out2]).stdout, methods)
        check(tw.get("MAML") == t1.get("MAML") and all(tw.get(m) == th.get(m) for m in methods[:3]),
              "--mnas-hidden 20 gives the M-NAS rows of --hidden 20 and MAML's of the default")
        # --maml-inner-lr-mode applies to MAML only.
        p7 = run([DEMO] + tiny + ["--maml-inner-lr-mode", "per-element", "--out", out2])
        t7 = table(p7.stdout, methods)
        check(t7.get("MAML") != t1.get("MAML") and all(t7.get(m) == t1.get(m) for m in methods[:3]),
              "--maml-inner-lr-mode changes the MAML row and nothing else")
        # A method that fails (here the M-NAS variants diverge at once with
        # an absurd outer rate) gets a row saying why; the others still run
        # and print theirs, and the exit status is 1.
        pf = run([DEMO] + tiny + ["--outer-lr", "50", "--maml-outer-lr", "0.001", "--out", out2], expect=1)
        tf = table(pf.stdout, methods)
        failed_rows = [l for l in pf.stdout.splitlines() if " failed: " in l]
        check(sorted(tf) == ["MAML"] and tf.get("MAML") == t1.get("MAML"),
              "a failed method leaves the other rows as they were: %s" % sorted(tf))
        check(len(failed_rows) == 3 and all("non-finite" in l for l in failed_rows)
              and all(any(l.startswith(m + " ") for l in failed_rows) for m in methods[:3]),
              "each failed method's row names the failure: %r" % failed_rows)
        check("3 methods failed" in pf.stderr and "figure3.png" in pf.stdout,
              "the demo says how many failed and still writes figure 3: %r" % pf.stderr[-300:])

    # --preset validated sets the validated rates, schedule, budgets and
    # MAML's learned rates; any other option overrides it, before or after.
    VALIDATED_LRS = "outer lr 0.01 (M-NAS-Shared 0.005, M-NAS-NM 0.01, MAML 0.004)"
    def header(args):
        p = run([DEMO, "--method", "maml", "--maml-iterations", "1", "--test-tasks", "0", "--val-tasks", "1",
                 "--threads", "1", "--out", out2] + args)
        return p.stdout.splitlines()[0] if p.stdout else ""
    h0, h1 = header([]), header(["--preset", "validated"])
    check("(fixed)" in h0 and "outer lr 0.001 (M-NAS-Shared 0.001, M-NAS-NM 0.001, MAML 0.001)" in h0 and "lr decay 0," in h0,
          "the default preset is the paper's: %r" % h0)
    check("(fixed; MAML per-element)" in h1 and VALIDATED_LRS in h1 and "lr decay 0.3," in h1,
          "--preset validated: %r" % h1)
    for args in (["--outer-lr", "0.02", "--preset", "validated"], ["--preset", "validated", "--outer-lr", "0.02"]):
        h = header(args)
        check(VALIDATED_LRS.replace("outer lr 0.01 ", "outer lr 0.02 ") in h,
              "%s: the explicit option wins: %r" % (args, h))
    h = header(["--mnas-nm-outer-lr", "0.03", "--preset", "validated", "--mnas-shared-outer-lr", "0.02"])
    check("outer lr 0.01 (M-NAS-Shared 0.02, M-NAS-NM 0.03, MAML 0.004)" in h,
          "explicit per-method outer rates win over the preset: %r" % h)
    h = header(["--maml-inner-lr-mode", "fixed", "--preset", "validated"])
    check("(fixed; MAML fixed)" in h, "an explicit --maml-inner-lr-mode wins over the preset: %r" % h)
    # (header() gives --maml-iterations 1, which wins over any preset)
    check("meta-updates 1600 + 400 (M-NAS variants), 1 (MAML)" in h1, "--preset validated's budgets: %r" % h1)
    hl = header(["--preset", "validated-long"])
    check(VALIDATED_LRS.replace("MAML 0.004", "MAML 0.002") in hl and "lr decay 0.3," in hl
          and "(fixed; MAML per-element)" in hl and "meta-updates 6400 + 1600 (M-NAS variants), 1 (MAML)" in hl,
          "--preset validated-long: 4x the budgets, MAML at 0.002: %r" % hl)
    pl = run([DEMO, "--method", "mnas", "--preset", "validated-long", "--iterations", "1", "--eval-iterations", "1",
              "--test-tasks", "0", "--val-tasks", "1", "--threads", "1", "--out", out2])
    hl = pl.stdout.splitlines()[0] if pl.stdout else ""
    check("meta-updates 1 + 1 (M-NAS variants), 40000 (MAML)" in hl,
          "validated-long's MAML budget is 40000; explicit budgets win: %r" % hl)
    hw = header(["--preset", "validated-wide"])
    check(VALIDATED_LRS in hw and "meta-updates 1600 + 400 (M-NAS variants)" in hw and
          "width 100 (M-NAS variants), 50 (MAML)" in hw, "--preset validated-wide: %r" % hw)
    check("width 50 (M-NAS variants), 50 (MAML)" in h1, "--preset validated keeps the width: %r" % h1)
    h = header(["--hidden", "70", "--preset", "validated-wide"])
    check("width 70 (M-NAS variants), 70 (MAML)" in h, "an explicit --hidden wins over validated-wide: %r" % h)
    h = header(["--preset", "validated-wide", "--mnas-hidden", "30", "--hidden", "70"])
    check("width 30 (M-NAS variants), 70 (MAML)" in h, "--mnas-hidden sets the M-NAS variants' width: %r" % h)
    h = header(["--preset", "validated", "--preset", "paper"])
    check("(fixed)" in h and "outer lr 0.001 (M-NAS-Shared 0.001, M-NAS-NM 0.001, MAML 0.001)" in h,
          "the last --preset wins: %r" % h)

    h = header(["--train-families", "harmonics,linear"])
    check(", training on linear harmonics," in h, "--train-families is named in the header: %r" % h)
    check("training on" not in header(["--train-families", "all"]), "--train-families all is the default")
    if not SANITIZED:
        # Narrowing the training families changes the run; the test table
        # keeps all four families; "all" is the default, bit for bit.
        maml_only = tiny + ["--method", "maml", "--threads", "1", "--out", out2]
        ta = table(run([DEMO] + maml_only + ["--train-families", "all"]).stdout, ["MAML"])
        th = table(run([DEMO] + maml_only + ["--train-families", "harmonics"]).stdout, ["MAML"])
        check(ta.get("MAML") == t1.get("MAML"), "--train-families all gives the default run's MAML row")
        check(len(th.get("MAML", [])) == FAMILIES + 1 and th.get("MAML") != ta.get("MAML"),
              "--train-families harmonics: a different run, tested on all four families: %r" % th)
        # --eval-steps 0: the table after adaptation is the one before it;
        # more steps than training's 5 change it.
        e0 = run([DEMO] + maml_only + ["--eval-steps", "0"]).stdout
        avg0 = table(e0, ["MAML"]).get("MAML", [(None, None)])[-1]
        before = re.search(r"Before adaptation \(averaged\): MAML (\S+) \+- (\S+)", e0)
        check(before is not None and (float(before.group(1)), float(before.group(2))) == avg0
              and "adaptation steps in evaluation 0 (M-NAS variants), 0 (MAML)" in e0.splitlines()[0],
              "--eval-steps 0: after adaptation == before: %r vs %r" % (avg0, before and before.groups()))
        e9 = table(run([DEMO] + maml_only + ["--eval-steps", "9"]).stdout, ["MAML"])
        check(e9.get("MAML") not in (None, ta.get("MAML")), "--eval-steps 9 changes the table: %r" % e9)
        # --mnas-eval-steps: the M-NAS variants' own; MAML keeps its steps.
        both = tiny + ["--method", "mnas", "--method", "maml", "--threads", "1", "--out", out2]
        pm = run([DEMO] + both + ["--mnas-eval-steps", "0"]).stdout
        tm = table(pm, ["M-NAS", "MAML"])
        bm = re.search(r"Before adaptation \(averaged\): M-NAS ([0-9.]+) \+- ([0-9.]+)", pm)
        check(bm is not None and tm.get("M-NAS", [(None, None)])[-1] == (float(bm.group(1)), float(bm.group(2))),
              "--mnas-eval-steps 0: M-NAS after adaptation == before: %r" % ((bm and bm.groups()),))
        check(tm.get("MAML") == t1.get("MAML") and tm.get("M-NAS") != t1.get("M-NAS"),
              "--mnas-eval-steps changes M-NAS's rows only")
    for args, want in [(["--preset", "validated-adapt"], "evaluation 500 (M-NAS variants), 5 (MAML)"),
                       (["--eval-steps", "7", "--preset", "validated-adapt"], "evaluation 7 (M-NAS variants), 7 (MAML)"),
                       (["--preset", "validated-adapt", "--eval-steps", "7", "--mnas-eval-steps", "9"],
                        "evaluation 9 (M-NAS variants), 7 (MAML)"),
                       (["--mnas-eval-steps", "3"], "evaluation 3 (M-NAS variants), 5 (MAML)")]:
        h = header(args)
        check(("adaptation steps in " + want) in h, "%s: %r" % (args, h))
    ha = header(["--preset", "validated-adapt"])
    check(VALIDATED_LRS in ha and "width 100 (M-NAS variants), 50 (MAML)" in ha,
          "--preset validated-adapt is validated-wide plus the evaluation steps: %r" % ha)
    check("adaptation steps" not in h1, "--preset validated keeps the training's steps in evaluation: %r" % h1)
    for bad, needle in [(["--eval-steps", "-1"], "--eval-steps"), (["--mnas-eval-steps", "1001"], "--mnas-eval-steps"), (["--eval-steps", "1001"], "--eval-steps"),
                        (["--train-families", "harmonics,cubic"], "cubic"),
                        (["--train-families", "harmonics,"], "--train-families"),
                        (["--method", "darts"], "darts"), (["--iterations", "-3"], "--iterations"),
                        (["--path-dropout", "1.5"], "--path-dropout"), (["--inner-lr", "nan"], "--inner-lr"),
                        (["--maml-outer-lr", "x"], "--maml-outer-lr"),
                        (["--mnas-shared-outer-lr", "-1"], "--mnas-shared-outer-lr"),
                        (["--mnas-nm-outer-lr", "inf"], "--mnas-nm-outer-lr"), (["--lr-decay", "2"], "--lr-decay"),
                        (["--inner-lr-mode", "fast"], "--inner-lr-mode"), (["--no-such-option", "1"], "--no-such-option"),
                        (["--preset", "tuned"], "--preset"), (["--eval-reinit", "2"], "--eval-reinit"),
                        (["--encoder-input-scale", "2"], "--encoder-input-scale"), (["--maml-inner-lr-mode", "fast"], "--maml-inner-lr-mode"),
                        (["--alpha-temperature", "0:1"], "--alpha-temperature"),
                        (["--alpha-temperature", "1:"], "--alpha-temperature"),
                        (["--alpha-temperature", "nan"], "--alpha-temperature"),
                        (["--hidden", "0"], "--hidden"), (["--mnas-hidden", "5000"], "--mnas-hidden"),
                        (["--threads"], "--threads")]:
        p = run([DEMO] + bad + ["--out", out2], expect=2)
        check(needle in p.stderr, "mnas_demo %s: the message names %s: %r" % (bad, needle, p.stderr[:200]))
    check("usage: mnas_demo" in run([DEMO, "--help"]).stdout, "mnas_demo --help prints the usage")

    # Validation tasks: a table of their own, from a stream apart from the
    # test tasks; with --test-tasks 0 the test set is never drawn.
    # Sanitized: the validation-only run alone.
    pv = None if SANITIZED else run([DEMO] + tiny + ["--val-tasks", "6", "--out", out2])
    pv0 = run([DEMO] + tiny + ["--val-tasks", "6", "--test-tasks", "0", "--out", out2])
    val_rows = lambda text: table(text.split("Validation:", 1)[1].split("Table 1:", 1)[0], methods)
    if pv is not None:
        check("Validation:" in pv.stdout and "Table 1:" in pv.stdout, "--val-tasks prints a validation table and Table 1")
    check("Validation:" in pv0.stdout and "Table 1:" not in pv0.stdout and "Figure" not in pv0.stdout,
          "--test-tasks 0 prints the validation table only, no test table or figures")
    if SANITIZED and "Validation:" in pv0.stdout:
        check(sorted(val_rows(pv0.stdout)) == sorted(methods), "one validation row per method")
    if pv is not None and "Validation:" in pv.stdout and "Validation:" in pv0.stdout:
        v1, v0 = val_rows(pv.stdout), val_rows(pv0.stdout)
        check(sorted(v1) == sorted(methods) and v1 == v0,
              "validation rows are the same with and without a test evaluation")
        check(v1 != table(pv.stdout.split("Table 1:", 1)[1], methods),
              "validation and test tasks differ (their tables do)")

    if not SANITIZED:
        # The sweep driver: a 2-setting grid over 2 seeds, on validation tasks.
        sweep = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "sweep.py")
        ps = run([sys.executable, sweep, "--demo", DEMO, "--method", "mnas-nm", "--seeds", "1,2", "--val-tasks", "4",
                  "--set", "--outer-lr 0.001,0.01", "--", "--iterations", "6", "--eval-iterations", "2",
                  "--meta-batch", "3"])
        srows = re.findall(r"^--outer-lr (\S+)\s+(\d+)\s+" + r"([0-9.]+) \+- ([0-9.]+|nan)", ps.stdout, re.M)
        check(sorted(r[0] for r in srows) == ["0.001", "0.01"] and all(r[1] == "2" for r in srows),
              "sweep.py: one row per setting, each over 2 seeds: %r" % ps.stdout[-600:])
        pb = run([sys.executable, sweep, "--demo", DEMO, "--method", "mnas", "--seeds", "x"], expect=2)
        check("--seeds" in pb.stderr, "sweep.py refuses bad seeds naming the option")

    m1 = run([MAML, "--iterations", "10", "--meta-batch", "5", "--test-tasks", "8", "--threads", "1"])
    m2 = m1 if SANITIZED else run([MAML, "--iterations", "10", "--meta-batch", "5", "--test-tasks", "8", "--threads", "2"])
    tm1, tm2 = table(m1.stdout, ["MAML"]), table(m2.stdout, ["MAML"])
    check(len(tm1.get("MAML", [])) == FAMILIES + 1, "maml_regression prints a MAML row: %r" % m1.stdout[-500:])
    check(tm1 == tm2, "maml_regression: Table 1 identical with 1 and 2 threads")
    p = run([MAML, "--shots", "0"], expect=2)
    check("--shots" in p.stderr, "maml_regression --shots 0 is refused with a message: %r" % p.stderr[:200])

# The small ends every example shares: --help on stdout with exit 0 and every
# option explained, --version, progress on stderr (stdout holds the
# results), no output folder left by a run that fails before training, and
# a resume error printed once.
OPTION = re.compile(r'"(--[a-z][a-z-]*)"')
src_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
with open(os.path.join(src_dir, "example_util.h")) as f:
    util_opts = set(OPTION.findall(f.read()))
for prog in [p for p in (DEMO, MAML, FEWSHOT) if p]:
    name = os.path.basename(prog)
    h = run([prog, "--help"])
    check(h.stdout.startswith("usage: " + name) and h.stderr == "", "%s --help: usage on stdout only" % name)
    with open(os.path.join(src_dir, name + ".c")) as f:
        parsed = set(OPTION.findall(f.read())) | util_opts
    missing = sorted(o for o in parsed if not re.search(re.escape(o) + r"\b", h.stdout))
    check(not missing, "%s --help explains every option; missing: %r" % (name, missing))
    v = run([prog, "--version"])
    check(re.fullmatch(name + r" \(libmnas \d+\.\d+\.\d+, headers \d+\.\d+\.\d+\)\n", v.stdout) is not None,
          "%s --version: %r" % (name, v.stdout))
    run([prog, "--no-such-option", "1"], expect=2)

with tempfile.TemporaryDirectory() as tmp:
    bad = os.path.join(tmp, "bad.ckpt")
    with open(bad, "wb") as f:
        f.write(b"garbage!")
    with open(bad + ".maml", "wb") as f:
        f.write(b"garbage!")
    out = os.path.join(tmp, "demo-out")
    p = run([DEMO, "--method", "maml", "--resume", bad, "--out", out, "--maml-iterations", "2"], expect=1)
    check(len(re.findall(r"^error:", p.stderr, re.M)) == 1, "mnas_demo: a bad --resume is reported once: %r" % p.stderr)
    check(not os.path.exists(out), "mnas_demo: no output folder after a failure before training")
    p = run([MAML, "--resume", bad, "--iterations", "2"], expect=1)
    check(len(re.findall(r"^error:", p.stderr, re.M)) == 1, "maml_regression: a bad --resume is reported once: %r" % p.stderr)
    p = run([MAML, "--iterations", "3", "--meta-batch", "2", "--test-tasks", "2", "--threads", "1"])
    check("meta-train:" not in p.stdout and "meta-train: iteration 3/3" in p.stderr,
          "maml_regression: progress on stderr, not stdout")
    if FEWSHOT:
        out = os.path.join(tmp, "fewshot-out")
        p = run([FEWSHOT, "--dataset", os.path.join(tmp, "missing"), "--out", out], expect=1)
        check(len(re.findall(r"^error:", p.stderr, re.M)) == 1, "fewshot_images: a missing dataset is reported once: %r" % p.stderr)
        check(not os.path.exists(out), "fewshot_images: no output folder after a failure before training")

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("examples_smoke: all checks passed")
