"""Two versions of nnx side by side: the training step of each against the GEMM floor, interleaved.

    git worktree add /tmp/before COMMIT
    (cd /tmp/before && python -c "from setuptools import setup; setup()" build_ext --inplace)
    python -m benchmarks.ab /tmp/before . [--rounds 10]

Each tree runs in its own worker process, with its own nnx, backends and compiled kernels.
The two take turns, round by round and network by network, and each reports its step over its
floor measured in the same turn, so that a machine that changes speed during the run moves both
alike. Prints a markdown table of the medians and ranges of step / floor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

NAMES = ["784-1024-1024-10 b256", "784-1024-1024-10 b1024", "784-256-256-10 b128"]
REPS = [7, 3, 41]  # timed calls per measurement, per network


def worker() -> None:
    """Serve requests "<network> <reps>" on stdin: floor, step, floor, step medians in ms."""
    from backends import get_backend
    from benchmarks.common import REFERENCE_STEPS, GemmFloor, NnxStep

    be = get_backend("numpy")
    pairs = [(NnxStep(w, b, be), GemmFloor(w, b, be)) for _, w, b in REFERENCE_STEPS]
    for fn in (f for pair in pairs for f in pair):
        for _ in range(3):
            fn()
    print("ready", flush=True)
    for line in sys.stdin:
        i, reps = map(int, line.split())
        step, floor = pairs[i]
        time.sleep(0.3)  # the other worker's BLAS threads stop spinning
        medians = []
        for fn in (floor, step, floor, step):
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            medians.append(np.median(times) * 1e3)
        print(" ".join(f"{m:.4f}" for m in medians), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the folder of one version of nnx")
    parser.add_argument("after", help="the folder of the other")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],  # this file, that tree's code
            cwd=tree,
            env={**os.environ, "PYTHONPATH": tree},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, tree in trees.items()
    }
    for proc in procs.values():
        assert proc.stdout.readline().strip() == "ready"
    ratios = {(name, i): [] for name in trees for i in range(len(NAMES))}
    for r in range(args.rounds):
        for i, reps in enumerate(REPS):
            for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                proc = procs[name]
                proc.stdin.write(f"{i} {reps}\n")
                proc.stdin.flush()
                f1, s1, f2, s2 = map(float, proc.stdout.readline().split())
                ratios[(name, i)] += [s1 / f1, s2 / f2]
    print("| network, batch | before: step / floor, median (range) | after: step / floor, median (range) |")
    print("|---|---|---|")
    for i, name in enumerate(NAMES):
        cells = [f"{np.median(v):.3f} ({min(v):.3f}–{max(v):.3f})" for v in (ratios["before", i], ratios["after", i])]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        raise SystemExit(main())
