"""How the cost of a training step grows with the work: step time and achieved GFLOP/s
against batch size (hidden 1024) and against hidden width (batch 256), nnx beside its GEMM floor.

    python -m benchmarks.scaling [--backend numpy|cupy] [--out DIR]

Prints a markdown table and writes it, with a PNG plot, under benchmarks/results/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backends import get_backend
from benchmarks.common import GemmFloor, NnxStep, interleaved, machine, report_header, step_flops, write_report

RESULTS = Path(__file__).parent / "results"
BATCHES = [32, 64, 128, 256, 512, 1024, 2048, 4096]
WIDTHS = [256, 512, 1024, 2048, 4096]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    be = get_backend(args.backend)
    info = machine()
    cases = [("batch", b, [784, 1024, 1024, 10], b) for b in BATCHES]
    cases += [("width", w, [784, w, w, 10], 256) for w in WIDTHS]
    rows = []
    for sweep, value, widths, batch in cases:
        t = interleaved(
            {"floor": GemmFloor(widths, batch, be), "nnx": NnxStep(widths, batch, be)},
            be.synchronize,
            rounds=3,
            seconds=0.2,
        )
        flops = step_flops(widths, batch)
        rows.append((sweep, value, widths, batch, t["nnx"]["median"], t["floor"]["median"], flops))
        print(f"{sweep} {value}: nnx {t['nnx']['median'] * 1e3:.3f} ms, floor {t['floor']['median'] * 1e3:.3f} ms")
    lines = [
        *report_header(
            f"Step scaling on {args.backend}", info, f"python -m benchmarks.scaling --backend {args.backend}"
        ),
        "| sweep | network | batch | nnx ms | floor ms | nnx/floor | nnx GFLOP/s | floor GFLOP/s | samples/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sweep, _, widths, batch, t_nnx, t_floor, flops in rows:
        lines.append(
            f"| {sweep} | {'-'.join(map(str, widths))} | {batch} | {t_nnx * 1e3:.3f} | {t_floor * 1e3:.3f} | "
            f"{t_nnx / t_floor:.3f} | {flops / t_nnx / 1e9:.0f} | {flops / t_floor / 1e9:.0f} | "
            f"{batch / t_nnx:,.0f} |"
        )
    path = write_report(lines, args.out, f"scaling-{args.backend}-{info['date']}.md")
    plot(rows, path.with_suffix(".png"), args.backend)
    return 0


def plot(rows: list[tuple], path: Path, backend: str) -> None:
    try:
        from nnx.plots import require_matplotlib

        plt = require_matplotlib()
    except ImportError as exc:
        print(f"no plot: {exc}")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, sweep, label in (
        (axes[0], "batch", "batch size (784-1024-1024-10)"),
        (axes[1], "width", "hidden width (batch 256)"),
    ):
        sel = [r for r in rows if r[0] == sweep]
        xs = [r[1] for r in sel]
        ax.plot(xs, [r[6] / r[4] / 1e9 for r in sel], marker="o", label="nnx step")
        ax.plot(xs, [r[6] / r[5] / 1e9 for r in sel], marker="s", label="GEMM floor")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.set_ylabel("GFLOP/s (matrix products)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"nnx training step on {backend}: achieved GFLOP/s")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {path}")


if __name__ == "__main__":
    raise SystemExit(main())
