"""Input-Jacobian norms over the MNIST test set: four ways, side by side.

Run:  python benchmarks/sensitivity.py [--threads 1] [--loop-samples 500]

‖∂softmax(f(x))/∂x‖_F for all 10 000 MNIST test images on a 784-256-256-10 MLP:

* a per-sample loop (``torch.autograd.functional.jacobian`` of one image at a time) — timed on
  ``--loop-samples`` images and extrapolated to 10 000, as printed;
* one backward pass per output class over the whole set (C = 10 passes);
* full Jacobians by ``torch.func.vjp`` with the 10 one-hot output directions pulled back at
  once by ``vmap`` (``probes.sensitivity.input_jacobian``), per chunk of 1 000 images;
* ``deepscope.probes.sensitivity``: the same, but pulled back only to the first layer's
  pre-activation, then ‖J‖²_F = tr(G W₁W₁ᵀ Gᵀ) with the 256 × 256 Gram matrix W₁W₁ᵀ.

All four are checked to agree before timing. Rounds are interleaved; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import deepscope as ds
from deepscope.probes import sensitivity
from deepscope.probes.sensitivity import input_jacobian


def per_sample(model, x):
    def f(v):
        return torch.softmax(model(v), -1)

    return torch.stack([torch.autograd.functional.jacobian(f, x[n : n + 1]).norm()
                        for n in range(len(x))])


def per_class(model, x):
    x = x.clone().requires_grad_(True)
    out = torch.softmax(model(x), -1)
    sq = torch.zeros(len(x))
    for c in range(out.shape[1]):
        (g,) = torch.autograd.grad(out[:, c].sum(), x, retain_graph=c < out.shape[1] - 1)
        sq += g.flatten(1).pow(2).sum(1)
    return sq.sqrt()


def full_jacobians(model, x, chunk=1000):
    return torch.cat([input_jacobian(model, x[i : i + chunk]).flatten(1).norm(dim=1)
                      for i in range(0, len(x), chunk)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop-samples", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = ds.load("mnist", subset=10, test_subset=None)
    x = data.x_test
    model = ds.mlp(784, 10, 2, width=256, seed=0).eval()
    k = args.loop_samples
    ref = sensitivity(model, x)
    torch.testing.assert_close(per_class(model, x), ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(full_jacobians(model, x), ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(per_sample(model, x[:20]), ref[:20], rtol=1e-4, atol=1e-6)

    contenders = {
        f"per-sample loop ({k} timed, ×{len(x) / k:g})":
            lambda: per_sample(model, x[:k]),
        "one backward per class (10 passes)": lambda: per_class(model, x),
        "full Jacobians (vjp + vmap over classes)": lambda: full_jacobians(model, x),
        "deepscope (Gram of W1 + vmap'd vjp)": lambda: sensitivity(model, x),
    }
    times: dict[str, list[float]] = {n: [] for n in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(t) for n, t in times.items()}
    loop_name = next(iter(med))
    med[loop_name] *= len(x) / k
    ours = med["deepscope (Gram of W1 + vmap'd vjp)"]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {len(x)} MNIST test images, "
          f"784-256-256-10 MLP, median of {args.rounds} rounds\n")
    for name, t in med.items():
        print(f"   {name:<40}{t:8.2f} s   ours is {t / ours:6.1f}× faster")


if __name__ == "__main__":
    main()
