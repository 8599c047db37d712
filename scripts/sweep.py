#!/usr/bin/python3
"""Sweep settings of mnas_demo on validation tasks, over several seeds.

Every run trains one method with one setting and one seed and evaluates it
on validation tasks only (mnas_demo --test-tasks 0 --val-tasks N), so the
test tasks stay untouched until the chosen setting's final run. The table
gives, per setting, the mean over seeds of the averaged validation MSE with
a 95 % confidence interval over seeds (Student t), the per-family means, the
mean training time (wall clock, as mnas_demo reports it) and the mean CPU time
of a run (user + system, training and validation, from the run's rusage: on a
shared machine it is the fairer measure of what a setting costs).

    /usr/bin/python3 scripts/sweep.py --method mnas --seeds 1,2,3 \\
        --set "--outer-lr 0.001,0.005" --set "--lr-decay 0,0.3" \\
        --budget-minutes 60 --run-minutes 10 --jobs 2 -- --iterations 3000 --eval-iterations 800

--inner-lr-mode fixed,per-element adds learned inner rates (Meta-SGD) as a grid
axis, like --set "--inner-lr-mode fixed,per-element".

Each --set names one mnas_demo option and its comma-separated values; the
grid is their product. Arguments after "--" go to every run. Runs start in
grid order, seed by seed (all settings for the first seed first), so a
budget that runs out leaves every setting with the same seeds where
possible; settings with fewer seeds are marked. --run-minutes stops a run
that takes longer (it counts as failed, and is listed). After the table, the
best setting (lowest mean among the settings that finished on every seed)
and the settings whose interval overlaps its
interval. Standard library only.
"""

import argparse
import itertools
import math
import os
import re
import subprocess
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

FAMILIES = ["sinusoid", "linear", "quadratic", "harmonics"]
METHOD_NAMES = {"mnas": "M-NAS", "mnas-shared": "M-NAS-Shared", "mnas-nm": "M-NAS-NM", "maml": "MAML"}
# Two-sided 95 % Student t quantiles by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}
NUM = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?|nan|inf)"


def t95(df):
    if df <= 0:
        return float("nan")
    keys = sorted(k for k in T95 if k <= df)
    return T95[keys[-1]] if df <= 30 else 1.96


def parse_validation(stdout, method):
    """(averaged MSE, [family MSEs], train seconds) of the method's row in
    the Validation table, or None."""
    section = stdout.split("Validation:", 1)
    if len(section) < 2:
        return None
    name = METHOD_NAMES[method]
    for line in section[1].splitlines():
        if line.startswith(name + " "):
            pairs = re.findall(NUM + r" \+- " + NUM, line)
            tail = line.split()[-1]
            if len(pairs) != len(FAMILIES) + 1:
                return None
            means = [float(m) for m, _ in pairs]
            return means[-1], means[:-1], float(tail)
    return None


def run_measured(cmd, timeout):
    """Run cmd: (exit status or None if stopped at the timeout, stdout,
    stderr, CPU seconds of the run: user + system, from its own rusage)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        start = time.time()
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            if timeout is not None and time.time() - start > timeout:
                p.kill()
                os.wait4(p.pid, 0)
                return None, "", "", 0.0
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        fo.seek(0)
        fe.seek(0)
        return p.returncode, fo.read(), fe.read(), ru.ru_utime + ru.ru_stime


def mean_ci(values):
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, float("nan")
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, t95(n - 1) * sd / math.sqrt(n)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", default=os.path.join(here, "..", "build", "default", "examples", "mnas_demo"),
                    help="the mnas_demo binary (default: build/default/examples/mnas_demo)")
    ap.add_argument("--method", required=True, choices=sorted(METHOD_NAMES))
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    ap.add_argument("--set", action="append", default=[], metavar='"--option v1,v2,..."',
                    help="one mnas_demo option and its values; repeat for a grid")
    ap.add_argument("--val-tasks", type=int, default=250, help="validation tasks per family (default 250)")
    ap.add_argument("--threads", type=int, default=1, help="threads of each run (default 1)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    ap.add_argument("--budget-minutes", type=float, default=0, help="start no run after this (0: no limit)")
    ap.add_argument("--run-minutes", type=float, default=0,
                    help="wall-time limit of each run: a longer run is stopped and counts as failed (0: no limit)")
    ap.add_argument("--inner-lr-mode", metavar="M1,M2,...",
                    help="learned inner rates to compare: comma-separated fixed, per-tensor, per-element "
                         "(a grid axis, the same as --set \"--inner-lr-mode M1,M2\")")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: arguments for every run")
    a = ap.parse_args(argv)
    extra = a.extra[1:] if a.extra[:1] == ["--"] else a.extra
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s]
    except ValueError:
        ap.error("--seeds: comma-separated integers expected, got %r" % a.seeds)
    if not seeds:
        ap.error("--seeds: at least one seed")
    if a.val_tasks < 2 or a.jobs < 1 or a.threads < 1:
        ap.error("--val-tasks must be >= 2, --jobs and --threads >= 1")
    if not (a.run_minutes >= 0 and a.budget_minutes >= 0) or math.isinf(a.run_minutes + a.budget_minutes):
        ap.error("--run-minutes and --budget-minutes must be finite and >= 0")
    axes = []
    if a.inner_lr_mode is not None:
        modes = [m for m in a.inner_lr_mode.split(",") if m]
        bad = [m for m in modes if m not in ("fixed", "per-tensor", "per-element")]
        if not modes or bad:
            ap.error("--inner-lr-mode: fixed, per-tensor or per-element expected, got %r" % a.inner_lr_mode)
        a.set = ["--inner-lr-mode " + ",".join(modes)] + a.set
    for spec in a.set:
        parts = spec.split(None, 1)
        if len(parts) != 2 or not parts[0].startswith("--"):
            ap.error('--set expects "--option v1,v2,...", got %r' % spec)
        axes.append([(parts[0], v) for v in parts[1].split(",") if v != ""])
    settings = [tuple(c) for c in itertools.product(*axes)] if axes else [()]
    if not a.dry_run and not os.access(a.demo, os.X_OK):
        ap.error("no mnas_demo at %s (build it, or pass --demo)" % a.demo)

    def command(setting, seed):
        cmd = [a.demo, "--method", a.method, "--seed", str(seed), "--threads", str(a.threads), "--test-tasks", "0",
               "--val-tasks", str(a.val_tasks), "--out", outdir]
        for opt, val in setting:
            cmd += [opt, val]
        return cmd + extra

    # Without test tasks mnas_demo writes no figures; it still wants a folder.
    outdir = tempfile.mkdtemp(prefix="mnas-sweep-")
    try:
        return sweep(a, seeds, settings, command)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def sweep(a, seeds, settings, command):
    runs = [(s, seed) for seed in seeds for s in settings]
    if a.dry_run:
        for s, seed in runs:
            print(" ".join(command(s, seed)))
        return 0
    start = time.time()
    results = {s: [] for s in settings}
    failures = []

    def run(s, seed):
        if a.budget_minutes and time.time() - start > 60 * a.budget_minutes:
            return s, seed, "skipped", None
        code, out, err, cpu = run_measured(command(s, seed), 60 * a.run_minutes if a.run_minutes else None)
        if code is None:
            return s, seed, "stopped after the %g-minute limit of a run" % a.run_minutes, None
        if code != 0:
            return s, seed, "failed: " + (err.strip().splitlines() or ["exit %d" % code])[-1], None
        r = parse_validation(out, a.method)
        return s, seed, "ok" if r else "no validation row", r + (cpu,) if r else None

    skipped = 0
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(run, s, seed) for s, seed in runs]
        for f in as_completed(futures):
            s, seed, status, r = f.result()
            label = " ".join("%s %s" % kv for kv in s) or "(defaults)"
            if status == "ok":
                results[s].append(r)
                print("  seed %d  %-40s validation MSE %.4f  (%s; train %.0f s, CPU %.0f s)"
                      % (seed, label, r[0], " ".join("%.4f" % v for v in r[1]), r[2], r[3]), file=sys.stderr)
            elif status == "skipped":
                skipped += 1
            else:
                failures.append("seed %d, %s: %s" % (seed, label, status))
    rows = []
    for s in settings:
        rs = results[s]
        if not rs:
            continue
        m, ci = mean_ci([r[0] for r in rs])
        fam = [sum(r[1][k] for r in rs) / len(rs) for k in range(len(FAMILIES))]
        secs = sum(r[2] for r in rs) / len(rs)
        cpu = sum(r[3] for r in rs) / len(rs)
        rows.append((m, ci, s, len(rs), fam, secs, cpu))
    rows.sort(key=lambda r: (r[0] if math.isfinite(r[0]) else float("inf")))
    print("\n%s: averaged validation MSE over seeds (mean +- 95%% CI, Student t), %d validation tasks per family"
          % (METHOD_NAMES[a.method], a.val_tasks))
    # the setting column fits the longest label (a grid of several options
    # must not be cut to look like one setting)
    width = max([44] + [len(" ".join("%s %s" % kv for kv in r[2])) for r in rows])
    print("%-*s %5s %-20s %s %8s %8s" % (width, "setting", "seeds", "validation MSE",
                                          " ".join("%-9s" % f[:9] for f in FAMILIES), "train s", "CPU s"))
    for m, ci, s, n, fam, secs, cpu in rows:
        label = " ".join("%s %s" % kv for kv in s) or "(defaults)"
        mark = "" if n == len(seeds) else " *"
        print("%-*s %5d %8.4f +- %-8.4f %s %8.1f %8.1f%s" % (width, label, n, m, ci, " ".join("%-9.4f" % v for v in fam),
                                                             secs, cpu, mark))
    # Per family: mean +- 95 % CI over seeds (a family can rank settings
    # differently from the average).
    print("\nper family: validation MSE over seeds (mean +- 95% CI, Student t)")
    print("%-*s %s" % (width, "setting", " ".join("%-19s" % f for f in FAMILIES)))
    for m, ci, s, n, fam, secs, cpu in rows:
        label = " ".join("%s %s" % kv for kv in s) or "(defaults)"
        cells = []
        for k in range(len(FAMILIES)):
            fm, fci = mean_ci([r[1][k] for r in results[s]])
            cells.append("%-19s" % ("%.4f +- %.4f" % (fm, fci)))
        print("%-*s %s" % (width, label, " ".join(cells)))
    # The best is the lowest mean among the settings that finished on every
    # seed: a setting that fails one run in three is not a choice, whatever
    # the mean of the runs it finished.
    complete = [r for r in rows if r[3] == len(seeds)]
    if rows and not complete:
        print("best: none (no setting finished on every seed; rows marked * did not)")
    if complete:
        rows = complete + [r for r in rows if r[3] != len(seeds)]
        m, ci, s, n = rows[0][:4]
        label = " ".join("%s %s" % kv for kv in s) or "(defaults)"
        print("best: %s  validation MSE %.4f +- %.4f over %d seed%s" % (label, m, ci, n, "" if n == 1 else "s"))
        # Within noise of the best: intervals that overlap its interval.
        close = [" ".join("%s %s" % kv for kv in r[2]) or "(defaults)" for r in rows[1:]
                 if not (r[0] - r[1] > m + ci or r[0] + r[1] < m - ci)]
        if close:
            print("overlapping the best's interval: " + "; ".join(close))
    if any(r[3] != len(seeds) for r in rows):
        print("* fewer seeds than asked (budget or failures)")
    if skipped:
        print("%d runs not started: the %.0f-minute budget ran out" % (skipped, a.budget_minutes))
    for f in failures:
        print("failed: " + f)
    return 1 if failures and not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
