"""Loss surfaces and interpolation lines against their forward-pass floor, in one run.

Run:  python benchmarks/landscape.py [--threads 1] [--rounds 3] [--resolution 31]

The model and data of issue 13's surface benchmark: a 784-256-256-10 tanh MLP (269 322
parameters) and 2 048 MNIST training images (plus 2 048 test images for the line).

1. A ``R × R`` surface (default 31 × 31 = 961 points) on a filter-normalised plane:
   * **floor**: the grid's forward passes one after another — ``model(x)`` and the loss at
     the model's own θ, ``R²`` times, nothing else; no method can do less work;
   * **loop**: what a user writes: θ = c + a·d1 + b·d2 copied into the model, then the loss;
   * **surface (default)**: ``probes.surface`` with its memory budget (``MEMORY``);
   * **surface, chunk=64**: the previous default (64 points per ``vmap`` call).
2. The line between two models at 61 values of α, train and test sets: floor (122 forward
   passes of 2 048 images), ``probes.interpolate`` at its default, and at the previous
   default (8 α per ``vmap`` call, 2 000 images per chunk).

Rounds are interleaved and medians reported, because this machine's speed drifts; the ratio
to the floor is what to read. Target (issue 13): ``surface`` within 1.3× of the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import deepscope as ds
from deepscope.ensemble import activation_bytes
from deepscope.params import get_theta
from deepscope.probes.landscape import MEMORY, interpolate, random_plane, steps, surface


def clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def table(title: str, times: dict[str, list[float]], floor: str = "floor") -> None:
    base = statistics.median(times[floor])
    print(title)
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"   {name:<34}{t:8.2f} s   {t / base:5.2f}× the floor")
    print()


def surfaces(model, x, y, resolution: int, rounds: int) -> None:
    d1, d2 = random_plane(model, seed=0)
    theta, params = get_theta(model), list(model.parameters())
    grid = torch.linspace(-1, 1, resolution)

    def floor():
        with torch.no_grad():
            for _ in range(resolution * resolution):
                F.cross_entropy(model(x), y)

    def loop():
        with torch.no_grad():
            for a in grid:
                for b in grid:
                    torch.nn.utils.vector_to_parameters(theta + a * d1 + b * d2, params)
                    F.cross_entropy(model(x), y)
            torch.nn.utils.vector_to_parameters(theta, params)

    cases = {
        "floor": floor,
        "loop (θ written into the model)": loop,
        "surface (default)": lambda: surface(model, F.cross_entropy, (x, y), (d1, d2),
                                             resolution=resolution),
        "surface, chunk=64 (old default)": lambda: surface(
            model, F.cross_entropy, (x, y), (d1, d2), resolution=resolution, chunk=64),
    }
    times = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            times[k].append(clock(fn))
    points, rows = steps(model, x)
    print(f"   activations {activation_bytes(model, x) * len(x) / 2**20:.1f} MiB per point; "
          f"budget {MEMORY / 2**20:.0f} MiB → {points} point(s) per step on {rows} rows")
    table(f"1. {resolution}×{resolution} surface, {len(x)} images (median of {rounds})", times)


def lines(model_a, model_b, data, rounds: int) -> None:
    alphas = np.linspace(-1, 2, 61)

    def floor():
        with torch.no_grad():
            for _ in alphas:
                for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
                    out = model_a(x)
                    F.cross_entropy(out, y), (out.argmax(1) == y).sum()

    cases = {
        "floor": floor,
        "interpolate (default)": lambda: interpolate(model_a, model_b, F.cross_entropy,
                                                     data, alphas),
        "interpolate, chunk=8 (old default)": lambda: interpolate(
            model_a, model_b, F.cross_entropy, data, alphas, chunk=8, batch_size=2000),
    }
    times = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            times[k].append(clock(fn))
    table(f"2. interpolation, 61 α × (train + test) (median of {rounds})", times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=31)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load "
          f"{os.getloadavg()[0]:.2f}\n")
    data = ds.load("mnist", subset=2048, test_subset=2048)
    x, y = data.x_train.reshape(len(data.x_train), -1), data.y_train
    model_a, model_b = (ds.mlp(784, 10, 2, width=256, activation="tanh", seed=s).eval()
                        for s in (0, 1))
    surfaces(model_a, x, y, args.resolution, args.rounds)
    lines(model_a, model_b, data, args.rounds)


if __name__ == "__main__":
    main()
