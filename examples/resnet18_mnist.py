"""Probe your own model from Python: a ResNet-18 (random initialisation) on MNIST.

Run:  python examples/resnet18_mnist.py [--samples 128] [--width 64]

What it shows, with deepscope's library API (the command-line equivalent is
``deepscope probe deepscope.models:resnet18 --data mnist``):

* the data as a ``DataLoader`` (``shuffle=False``): every probe re-reads it on each pass and
  never holds more than one batch;
* batch norm in eval mode (the probes' default; train mode is refused for curvature);
* the top Hessian eigenvalues of the last stage alone (``params="layer4.*"``), with error bars
  over three Lanczos start vectors (``seeds=3``);
* the Hessian trace of every block of that stage in one call (``by="module"``);
* the loss along a filter-normalised random direction through θ.
"""

from __future__ import annotations

import argparse
import time

import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import deepscope as ds
from deepscope import probes
from deepscope.models import resnet18


def main(samples: int = 128, width: int = 64, batch_size: int = 64, products: int = 30) -> dict:
    data = ds.load("mnist", subset=samples, test_subset=10)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch_size)
    model = resnet18(num_classes=10, in_channels=1, width=width)
    print(f"ResNet-18 (width {width}): {ds.count_params(model):,} parameters, "
          f"{samples} MNIST images in batches of {batch_size}")

    t0 = time.perf_counter()
    top = probes.hessian_eigenvalues(model, F.cross_entropy, loader, k=3, params="layer4.*",
                                     seeds=3)
    print("top-3 eigenvalues of layer4's block: "
          + ", ".join(f"{m:.4g} ± {s:.2g}" for m, s in zip(top.mean, top.std))
          + f" (mean ± sd over 3 start vectors, {time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    traces = probes.hessian_trace(model, F.cross_entropy, loader, samples=products,
                                  params="layer4.*", by="module")
    for name, est in traces.items():
        print(f"  trace of {name}'s own block: {est.estimate:.4g} ± {est.std_error:.2g}")
    print(f"  ({time.perf_counter() - t0:.0f} s)")

    d1, _ = probes.random_plane(model, seed=0)
    line = probes.surface(model, F.cross_entropy, loader, (d1, d1), span=((-1, 1), (0, 0)),
                          resolution=(5, 1))
    print("loss along a filter-normalised direction, a = -1 … 1: "
          + " ".join(f"{v:.4g}" for v in line.loss[:, 0]))
    return {"top": top, "traces": traces, "line": line}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--width", type=int, default=64, help="first stage's channels (64: ResNet-18)")
    args = ap.parse_args()
    main(args.samples, args.width)
