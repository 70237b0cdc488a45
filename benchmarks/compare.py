"""Side-by-side comparison: the GEMM floor, the nnx training step and a PyTorch eager step.

    python -m benchmarks.compare [--backend numpy|cupy] [--quick] [--out DIR]

Measures everything round-robin in one run and prints a markdown table of medians,
spreads and ratios (nnx/floor, nnx/PyTorch, achieved GFLOP/s), plus the fused loss
against the plain composition and a one-epoch ``fit`` against PyTorch; the report,
with the machine and the date, goes to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import nnx
from backends import Backend, get_backend
from benchmarks.common import (
    GPU_STEPS,
    REFERENCE_STEPS,
    GemmFloor,
    NnxStep,
    interleaved,
    machine,
    mlp,
    report_header,
    step_flops,
    write_report,
)

RESULTS = Path(__file__).parent / "results"


def torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


class TorchStep:
    """A PyTorch eager step of the same network: nn.Linear/nn.ReLU, CrossEntropyLoss, optim.SGD."""

    def __init__(self, torch: Any, widths: list[int], batch: int, device: str = "cpu") -> None:
        layers: list[Any] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(torch.nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers).to(device)
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, widths[0], generator=gen).to(device)
        self.y = torch.randint(0, widths[-1], (batch,), generator=gen).to(device)
        self.loss = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3)

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.x), self.y).backward()
        self.opt.step()


def plain_numpy_loss(xp: Any, z: Any, y: Any) -> tuple[Any, Any]:
    """The textbook composition: max, subtract, exp, sum, log, gather, subtract one-hot, scale."""
    n = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    e = xp.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = (xp.log(s[:, 0]) - shifted[xp.arange(n), y]).mean()
    d = e / s
    d[xp.arange(n), y] -= 1
    return loss, d / n


def step_table(be: Backend, torch: Any, quick: bool) -> tuple[list[str], list[dict[str, Any]]]:
    rows, raw = [], []
    device = "cuda" if be.name == "cupy" else "cpu"
    sync = (
        be.synchronize if torch is None or device == "cpu" else (lambda: (be.synchronize(), torch.cuda.synchronize()))
    )
    for name, widths, batch in GPU_STEPS if be.name == "cupy" else REFERENCE_STEPS:
        fns = {"floor": GemmFloor(widths, batch, be), "nnx": NnxStep(widths, batch, be)}
        if torch is not None:
            fns["torch"] = TorchStep(torch, widths, batch, device)
        t = interleaved(fns, sync, rounds=3 if quick else 7, seconds=0.15 if quick else 0.4)
        flops = step_flops(widths, batch)
        nnx_t, floor_t = t["nnx"]["median"], t["floor"]["median"]
        torch_t = t.get("torch", {}).get("median")
        rows.append(
            f"| {name} | {batch} | {floor_t * 1e3:.3f} | {nnx_t * 1e3:.3f} "
            f"({t['nnx']['min'] * 1e3:.3f}–{t['nnx']['max'] * 1e3:.3f}) | "
            + (f"{torch_t * 1e3:.3f} | " if torch_t else "– | ")
            + f"{nnx_t / floor_t:.3f} | "
            + (f"{nnx_t / torch_t:.3f} | " if torch_t else "– | ")
            + f"{flops / nnx_t / 1e9:.0f} | {flops / floor_t / 1e9:.0f} |"
        )
        raw.append({"net": name, "batch": batch, **{k: v["median"] for k, v in t.items()}})
    return rows, raw


def loss_table(be: Backend, torch: Any, quick: bool) -> list[str]:
    rng = np.random.default_rng(0)
    n, c = (4096, 1000) if be.name == "numpy" else (65536, 1024)
    z = be.asarray(rng.standard_normal((n, c)).astype(np.float32) * 3)
    y = be.asarray(rng.integers(0, c, n))
    d = be.empty((n, c), np.float32)
    ws = be.loss_workspace(n, c, np.float32)
    fused_value = float(be.softmax_cross_entropy(z, y, d, ws))
    plain_value, plain_d = plain_numpy_loss(be.xp, z, y)
    diff = float(abs(be.xp.asarray(plain_d) - d).max())
    fns = {"fused": lambda: be.softmax_cross_entropy(z, y, d, ws), "plain": lambda: plain_numpy_loss(be.xp, z, y)}
    if be.name == "cupy":
        src, dst = be.xp.empty(n * c * 2, np.float32), be.xp.empty(n * c * 2, np.float32)
        fns["copy"] = lambda: dst.__setitem__(slice(None), src)
        if torch is not None:
            tz = torch.as_tensor(be.to_numpy(z), device="cuda").requires_grad_()
            ty = torch.as_tensor(be.to_numpy(y), device="cuda")
            fns["torch"] = lambda: torch.autograd.grad(torch.nn.functional.cross_entropy(tz, ty), tz)
    sync = be.synchronize if "torch" not in fns else (lambda: (be.synchronize(), torch.cuda.synchronize()))
    t = interleaved(fns, sync, rounds=3 if quick else 7, seconds=0.15 if quick else 0.4)
    moved = n * c * 4 * 2 + n * 8  # logits read, dlogits written, labels read
    lines = [
        f"Fused loss, N={n}, C={c}, float32 (loss {fused_value:.6f} vs plain {float(plain_value):.6f}; "
        f"max |dlogits difference| {diff:.2e}):",
        "",
        "| kernel | median ms (min–max) | GB/s | plain / this |",
        "|---|---|---|---|",
    ]
    for name, v in t.items():
        bytes_moved = n * c * 2 * 4 * 2 if name == "copy" else moved
        lines.append(
            f"| {name} | {v['median'] * 1e3:.3f} ({v['min'] * 1e3:.3f}–{v['max'] * 1e3:.3f}) | "
            f"{bytes_moved / v['median'] / 1e9:.1f} | {t['plain']['median'] / v['median']:.2f} |"
        )
    return lines


def fit_table(be: Backend, torch: Any, quick: bool) -> list[str]:
    """One epoch of fit on Fashion-MNIST-sized random data, [784, 256, 256, 10], batch 128."""
    rng = np.random.default_rng(0)
    n = 12000 if quick else 60000
    x, y = rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)
    model = mlp([784, 256, 256, 10], be)

    def fit() -> None:
        model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(1e-3), epochs=1, batch_size=128)

    times = {"nnx": [], "torch": []}
    if torch is not None:
        device = "cuda" if be.name == "cupy" else "cpu"
        tx, ty = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)
        step = TorchStep(torch, [784, 256, 256, 10], 128, device)

        def torch_fit() -> None:
            order = torch.randperm(n, device=device)
            for lo in range(0, n, 128):
                idx = order[lo : lo + 128]
                step.x, step.y = tx[idx], ty[idx]
                step()
            if device == "cuda":
                torch.cuda.synchronize()

    for _ in range(1 if quick else 3):
        for name in times:
            if name == "torch" and torch is None:
                continue
            start = time.perf_counter()
            fit() if name == "nnx" else torch_fit()
            times[name].append(time.perf_counter() - start)
    nnx_t = min(times["nnx"])
    line = f"One epoch of fit, {n} × 784 → [256, 256] → 10, batch 128: nnx {nnx_t:.2f} s ({n / nnx_t:,.0f} samples/s)"
    if times["torch"]:
        torch_t = min(times["torch"])
        line += f", PyTorch {torch_t:.2f} s ({n / torch_t:,.0f} samples/s); nnx/PyTorch {nnx_t / torch_t:.3f}"
    return [line + " (best of the runs)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for a smoke test)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the report")
    parser.add_argument("--tag", default="", help="added to the report's file name")
    args = parser.parse_args(argv)
    be = get_backend(args.backend)
    torch = torch_or_none()
    if torch is not None and be.name == "numpy":
        torch.set_num_threads(2)
    info = machine()
    if torch is not None:
        info["torch"] = torch.__version__
    if be.name == "cupy":
        import cupy

        info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        info["cupy"] = cupy.__version__
    rows, _ = step_table(be, torch, args.quick)
    command = " ".join(["python -m benchmarks.compare", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        *report_header(f"nnx comparison on {args.backend}", info, command),
        "Training step, float32 (ms, median of rounds; nnx min–max; GFLOP/s counts only the matrix products):",
        "",
        "| network | batch | GEMM floor | nnx | PyTorch | nnx/floor | nnx/PyTorch | nnx GFLOP/s | floor GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *loss_table(be, torch, args.quick),
        "",
        *fit_table(be, torch, args.quick),
    ]
    name = f"compare-{args.backend}-{info['date']}{'-' + args.tag if args.tag else ''}.md"
    path = write_report(lines, args.out, name)
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
