"""Data-parallel scaling on one machine: one process with 2 BLAS threads against 2 MPI ranks with 1
thread each, the same global batch, side by side in one run.

    python -m benchmarks.distributed [--epochs 1] [--rounds 3] [--out DIR]   (needs the mpi extra)

Two workloads on random data of Fashion-MNIST's size (60,000 × 784, 10 classes): the
784-1024-1024-10 network with plain SGD at global batch 1024, and the default Fashion-MNIST recipe
(784-512-512-10, dropout 0.2, AdamW, batch 128). For each: the epoch time (best of the runs) and
the ranks' share of a step spent in the all-reduce (timed alone on a flat buffer of the same size),
and what is all-reduced (the weights after partial steps for plain SGD, else the gradients). The two
configurations alternate over several rounds (one, two, then two, one, ...) so that a slow spell of a
shared machine falls on both; the median of the rounds' ratios is the result. The report, with the
machine and the date, goes to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORKLOADS = {
    "784-1024-1024-10, SGD, batch 1024": dict(hidden=[1024, 1024], batch=1024, dropout=0.0, adamw=False),
    "Fashion-MNIST recipe: 784-512-512-10, dropout 0.2, AdamW, batch 128": dict(
        hidden=[512, 512], batch=128, dropout=0.2, adamw=True
    ),
}
RESULTS = Path(__file__).parent / "results"


def worker(epochs: int) -> None:
    """Train each workload for ``epochs`` epochs (after one warm-up epoch); rank 0 prints JSON."""
    import nnx
    from nnx.distributed import EXTRA_SLOTS, DataParallel

    dp = DataParallel() if os.environ.get("NNX_BENCH_RANKS") else None
    rng = np.random.default_rng(0)
    x, y = rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000)
    report = {}
    for name, w in WORKLOADS.items():
        layers, width = [], 784
        for h in w["hidden"]:
            layers += [nnx.Dense(width, h), nnx.ReLU()] + ([nnx.Dropout(w["dropout"])] if w["dropout"] else [])
            width = h
        model = nnx.Sequential(*layers, nnx.Dense(width, 10), backend="numpy", seed=0)
        optimizer = nnx.AdamW(1e-3) if w["adamw"] else nnx.SGD(0.01)

        def fit(n_epochs, model=model, optimizer=optimizer, w=w):
            return model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=optimizer, epochs=n_epochs,
                             batch_size=w["batch"], distributed=dp)  # fmt: skip

        fit(1)  # warm-up: buffers, pages, thread pools
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            fit(1)
            times.append(time.perf_counter() - start)
        entry = {"epoch_s": min(times), "steps": -(-60000 // w["batch"])}
        if dp is not None:
            flat = model.gradient_buffer(spare=EXTRA_SLOTS)
            reduce_times = []
            for _ in range(20):
                dp.comm.Barrier()
                start = time.perf_counter()
                dp.allreduce(flat, model.backend)
                reduce_times.append(time.perf_counter() - start)
            entry["allreduce_ms"] = float(np.median(reduce_times)) * 1e3
            entry["buffer_mb"] = flat.nbytes / 1e6
            entry["reduced"] = "weights" if optimizer.steps_add_up else "gradients"
        report[name] = entry
    if dp is None or dp.rank == 0:
        print(json.dumps(report))


def run(command: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def joined(values: list[float], digits: int) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per workload (best is kept)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two configurations")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
    me = [sys.executable, "-m", "benchmarks.distributed", "--worker", str(args.epochs)]

    def one() -> dict:
        return run(me, {"OPENBLAS_NUM_THREADS": "2"})

    def two() -> dict:
        return run([mpiexec, "-n", "2", *me], {"OPENBLAS_NUM_THREADS": "1", "NNX_BENCH_RANKS": "2"})

    rounds = []
    for r in range(args.rounds):
        first, second = (one, two) if r % 2 == 0 else (two, one)
        a, b = first(), second()
        rounds.append((a, b) if r % 2 == 0 else (b, a))
    from benchmarks.common import machine, report_header, write_report

    info = machine()
    lines = [
        *report_header(
            "Data-parallel scaling on numpy",
            info,
            f"python -m benchmarks.distributed --epochs {args.epochs} --rounds {args.rounds}",
            "(random data, 60,000 × 784; one warm-up epoch, then the best timed epoch; the configurations "
            "alternate over the rounds)",
        ),
        "| workload | 1 process × 2 threads: epoch s, per round | 2 ranks × 1 thread: epoch s, per round "
        "| throughput ratio (2 ranks / 1), per round | median ratio | all-reduce per step, ms (buffer MB) "
        "| all-reduce share of a step | all-reduced |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in WORKLOADS:
        singles = [a[name]["epoch_s"] for a, _ in rounds]
        ranks = [b[name] for _, b in rounds]
        ratios = [s / b["epoch_s"] for s, b in zip(singles, ranks, strict=True)]
        b = ranks[int(np.argsort(ratios)[len(ratios) // 2])]
        share = b["allreduce_ms"] / 1e3 / (b["epoch_s"] / b["steps"])
        lines.append(
            f"| {name} | {joined(singles, 2)} | {joined([r['epoch_s'] for r in ranks], 2)} "
            f"| {joined(ratios, 3)} | {float(np.median(ratios)):.3f} "
            f"| {b['allreduce_ms']:.2f} ({b['buffer_mb']:.1f}) | {share:.1%} | {b['reduced']} |"
        )
    write_report(lines, args.out, f"distributed-numpy-{info['date']}.md")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]))
    else:
        raise SystemExit(main())
