"""Vectorised ensemble training vs a Python loop of separate models and optimisers.

Run:  python benchmarks/ensemble.py [--repeats 3] [--threads 2]

Two cases from the foundation issue, timed in the same process. The machines this runs on are
shared and their speed drifts by 2× within minutes, so the contenders are interleaved: every
round times each of them once, and the speed-up quoted is the median over rounds of that
round's ratio (the seconds shown are medians too).

A. 100 members of a 141-parameter MLP (1 → 10 → 10 → 1) on ``sinc``, 1 000 full-batch Adam
   steps. Five ways: a loop over 100 ``nn.Module`` + ``torch.optim.Adam`` (the baseline);
   "plain vmap" — ``vmap(grad(f))`` over stacked parameter dicts with a per-tensor Adam;
   the standard recipe of PyTorch's model-ensembling tutorial — ``stack_module_state``,
   ``vmap(functional_call)``, one ``backward()`` of the sum of the members' mean losses and
   ``torch.optim.Adam(fused=True)`` (or ``foreach=True``) on the stacked parameters; and
   ``deepscope.train`` — for an MLP the ensemble core's fast path
   (:mod:`deepscope.stacked_mlp`): θ one (M, P) leaf, each layer of all members one batched
   matrix product on activations kept (M, features, B), a hand-written backward, and one fused
   Adam kernel on θ. Its ratio to the fused-Adam recipe is printed on its own line.
B. 8 members of a 784-256-256-10 MLP on MNIST mini-batches (batch 128, per-member shuffles):
   the loop vs ``deepscope.train``. Both are bound by matrix-multiply throughput here.

Only training is timed: ``deepscope.train`` runs with ``eval_every=0`` (no evaluation passes),
and model construction happens outside the timed region on both sides.

Measured (2-core AMD EPYC VM shared with other jobs; ``uptime`` load before → after the run):

``python benchmarks/ensemble.py --repeats 5 --threads 1`` (load 2.14 → 2.74)::

    A. 100 members × 141-parameter MLP, 1000 full-batch Adam steps
       loop of modules + torch.optim            82.50 s    1.00×
       plain vmap(grad) + per-tensor Adam       10.63 s    8.34×
       recipe: vmap + Adam(fused=True)           9.09 s    8.59×
       recipe: vmap + Adam(foreach=True)         8.79 s    8.99×
       deepscope.train                           3.37 s   20.31×
       deepscope.train is 2.76× as fast as the fused-Adam recipe (target ≥ 1.3×)

    B. 8 members × 784-256-256-10 MLP (269322 parameters), 1 epoch of 8 192 MNIST images,
       batch 128 (64 steps)
       loop of modules + torch.optim             3.40 s    1.00×
       deepscope.train                           2.41 s    1.37×
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

import deepscope as ds


def race(contenders: dict, make_models, rounds: int) -> dict[str, list[float]]:
    """``{name: seconds of each round}``.

    Each round runs every contender once on fresh models (built outside the timed region).
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, train_fn in contenders.items():
            models = make_models()
            t0 = time.perf_counter()
            train_fn(models)
            times[name].append(time.perf_counter() - t0)
    return times


def speedup(base: list[float], times: list[float]) -> float:
    """The median over rounds of that round's ratio ``base / times``."""
    return statistics.median(b / t for b, t in zip(base, times))


def show(times: dict[str, list[float]]) -> None:
    """Median seconds of each contender and its speed-up over the first."""
    base = next(iter(times.values()))
    for name, t in times.items():
        print(f"   {name:<38}{statistics.median(t):8.2f} s  {speedup(base, t):6.2f}×")


# --- baselines ---------------------------------------------------------------------------


def loop_train(models, data, steps_or_epochs, batch_size=None, seed=0):
    """Each member on its own: nn.Module + torch.optim.Adam, as a user would write it."""
    loss_fn = F.mse_loss if data.task == "regression" else F.cross_entropy
    n = data.x_train.shape[0]
    for m, model in enumerate(models):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(seed + m)
        for _ in range(steps_or_epochs):
            order = torch.randperm(n, generator=gen) if batch_size else None
            for i in range(0, n, batch_size or n):
                idx = order[i : i + batch_size] if batch_size else slice(None)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(data.x_train[idx]), data.y_train[idx]).backward()
                opt.step()


def plain_vmap_train(models, data, steps):
    """The textbook recipe: vmap(grad) over stacked parameter dicts, Adam per tensor."""
    params, _ = stack_module_state(models)
    base = models[0]

    def loss(p, x, y):
        return F.mse_loss(functional_call(base, p, (x,)), y)

    g_fn = vmap(grad(loss), in_dims=(0, None, None))
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}
    for t in range(1, steps + 1):
        grads = g_fn(params, data.x_train, data.y_train)
        with torch.no_grad():
            for k in params:
                m[k].mul_(0.9).add_(grads[k], alpha=0.1)
                v2[k].mul_(0.999).addcmul_(grads[k], grads[k], value=0.001)
                denom = (v2[k] / (1 - 0.999**t)).sqrt_().add_(1e-8)
                params[k].addcdiv_(m[k], denom, value=-1e-3 / (1 - 0.9**t))


def recipe_train(models, data, steps, **adam):
    """The standard recipe (PyTorch's model-ensembling tutorial): ``stack_module_state``,
    ``vmap(functional_call)`` for the losses, one ``backward()`` of the sum of the members'
    mean losses, and ``torch.optim.Adam(**adam)`` (``fused=True`` or ``foreach=True``) on the
    stacked parameters."""
    params, _ = stack_module_state(models)  # leaves (M, *shape), requires_grad
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p, x, y):
        return F.mse_loss(functional_call(base, p, (x,)), y)

    losses = vmap(loss, in_dims=(0, None, None))
    opt = torch.optim.Adam(params.values(), lr=1e-3, **adam)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        losses(params, data.x_train, data.y_train).sum().backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds (each runs every contender)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=1000, help="case A full-batch steps")
    ap.add_argument("--cases", default="AB", help="which cases to run, e.g. A")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} "
          "interleaved rounds\n")

    if "A" in args.cases:
        case_a(args)
    if "B" in args.cases:
        case_b(args)


def case_a(args: argparse.Namespace) -> None:
    sinc = ds.load("sinc", n=256, n_test=16)
    members = lambda: [ds.mlp(1, 1, depth=2, params=141, seed=s) for s in range(100)]  # noqa: E731
    steps = args.steps
    print(f"A. 100 members × {ds.count_params(members()[0])}-parameter MLP, {steps} full-batch "
          "Adam steps")
    times = race({
        "loop of modules + torch.optim": lambda ms: loop_train(ms, sinc, steps),
        "plain vmap(grad) + per-tensor Adam": lambda ms: plain_vmap_train(ms, sinc, steps),
        "recipe: vmap + Adam(fused=True)": lambda ms: recipe_train(ms, sinc, steps, fused=True),
        "recipe: vmap + Adam(foreach=True)": lambda ms: recipe_train(ms, sinc, steps,
                                                                     foreach=True),
        "deepscope.train": lambda ms: ds.train(ms, sinc, lr=1e-3, epochs=steps, eval_every=0,
                                               progress=False),
    }, members, args.repeats)
    show(times)
    ratio = speedup(times["recipe: vmap + Adam(fused=True)"], times["deepscope.train"])
    print(f"   deepscope.train is {ratio:.2f}× as fast as the fused-Adam recipe (target ≥ 1.3×)")


def case_b(args: argparse.Namespace) -> None:
    mnist = ds.load("mnist", subset=8192, test_subset=256)
    big = lambda: [ds.mlp(784, 10, depth=2, width=256, seed=s) for s in range(8)]  # noqa: E731
    print(f"\nB. 8 members × 784-256-256-10 MLP ({ds.count_params(big()[0])} parameters), "
          "1 epoch of 8 192 MNIST images, batch 128 (64 steps)")
    show(race({
        "loop of modules + torch.optim": lambda ms: loop_train(ms, mnist, 1, batch_size=128),
        "deepscope.train": lambda ms: ds.train(ms, mnist, epochs=1, batch_size=128,
                                               eval_every=0, progress=False),
    }, big, args.repeats))


if __name__ == "__main__":
    main()
