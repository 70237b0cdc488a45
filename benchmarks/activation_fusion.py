"""Would fusing an activation into the Dense bias add pay? The training step of a 784-512-512-10
MLP with each activation, beside the bias-add passes that fusing would remove.

    python -m benchmarks.activation_fusion [--backend numpy] [--batch 128]

ReLU is fused (one pass: y = max(x·W + b, 0)); the other activations run as their own layer
after a separate bias add. Fusing one of them saves at most the bias-add passes over the hidden
outputs: one read and one write of each (batch, 512) array per step. The table gives the step
time with each activation and that bound as a share of it, all measured round-robin in one run.
"""

from __future__ import annotations

import argparse

import numpy as np

import nnx
from backends import get_backend
from benchmarks.common import interleaved, machine

ACTIVATIONS = {
    "ReLU (fused)": nnx.ReLU,
    "Tanh": nnx.Tanh,
    "Sigmoid": nnx.Sigmoid,
    "GELU": nnx.GELU,
    "GELU tanh": lambda: nnx.GELU("tanh"),
    "LeakyReLU": nnx.LeakyReLU,
}
WIDTHS = [784, 512, 512, 10]


def step_of(make_activation, batch: int, backend):
    layers = [nnx.Dense(WIDTHS[0], WIDTHS[1]), make_activation(), nnx.Dense(WIDTHS[1], WIDTHS[2]), make_activation()]
    model = nnx.Sequential(*layers, nnx.Dense(WIDTHS[2], WIDTHS[3]), backend=backend)
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random((batch, WIDTHS[0]), dtype=np.float32))
    y = backend.asarray(rng.integers(0, WIDTHS[-1], batch))
    loss, optimizer = nnx.SparseCategoricalCrossentropy(), nnx.SGD(1e-3)
    return lambda: nnx.train_step(model, x, y, loss, optimizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    backend = get_backend(args.backend)
    fns = {name: step_of(make, args.batch, backend) for name, make in ACTIVATIONS.items()}
    hidden = [backend.asarray(np.ones((args.batch, w), np.float32)) for w in WIDTHS[1:3]]
    biases = [backend.asarray(np.ones(w, np.float32)) for w in WIDTHS[1:3]]

    def bias_adds() -> None:
        for y, b in zip(hidden, biases, strict=True):
            backend.bias_add(y, b)

    fns["bias-add passes alone"] = bias_adds
    times = interleaved(fns, backend.synchronize)
    bound = times["bias-add passes alone"]["median"]
    info = machine()
    print(f"{info['date']}, {info['cpu']}, {info['cores']} cores, backend {backend.name}, batch {args.batch}, "
          f"`python -m benchmarks.activation_fusion`\n")  # fmt: skip
    print("| activation | step (ms, median) | spread (ms) | bias-add passes ÷ step: the most fusing saves |")
    print("|---|---|---|---|")
    for name in ACTIVATIONS:
        t = times[name]
        spread = f"{t['min'] * 1e3:.2f}–{t['max'] * 1e3:.2f}"
        print(f"| {name} | {t['median'] * 1e3:.2f} | {spread} | {bound / t['median']:.1%} |")
    print(f"| bias-add passes alone | {bound * 1e3:.3f} | | |")


if __name__ == "__main__":
    main()
