"""Curvature probes side by side: each against the straightforward way, in one run.

Run:  python benchmarks/curvature.py [--threads 1]

1. Hessian-vector products on a 784-256-256-10 MLP (269 322 parameters) and 2 048 MNIST
   images: forward-over-reverse (``jvp`` of ``grad``) vs double backward with the gradient
   graph built once and reused; median seconds per product.
2. Top-5 Hessian eigenvalues of the same model: our Lanczos (full reorthogonalisation) vs power
   iteration with deflation (what most tools do), as Hessian-vector products and seconds until
   every one of the five is within 1e-3 relative error of a tightly converged reference.
3. The critical-point search of ``min-ratio`` (100 tanh MLPs of 141 parameters, 200 Adam steps
   on ‖∇L‖²): all members at once vs one model at a time with a plain PyTorch loop (timed on
   10 models and scaled by 10, as stated in the output).
4. 100 dense Hessians + ``eigvalsh`` of those models: :func:`ensemble_hessians` vs
   ``torch.func.hessian`` one model at a time vs ``vmap`` of ``torch.func.hessian``.

Rounds are interleaved and medians reported, because this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import hessian as func_hessian
from torch.func import vmap

import deepscope as ds
from deepscope.params import get_thetas, objective, theta_loss
from deepscope.probes import linalg
from deepscope.probes.critical import find_critical_point
from deepscope.probes.hessian import ensemble_hessians, hvp


def clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rel_err(found, ref) -> float:
    found = torch.as_tensor(found, dtype=torch.float64)[:5]
    return float(((found - ref).abs() / ref.abs()).max())


def hvp_and_eigen(rounds: int) -> None:
    data = ds.load("mnist", subset=2048, test_subset=10)
    model = ds.mlp(784, 10, 2, width=256, seed=0)
    ds.train(model, ds.load("mnist", subset=2048, test_subset=10), epochs=2, batch_size=128,
             eval_every=0, progress=False)
    batch = (data.x_train, data.y_train)
    P = ds.count_params(model)
    v = torch.randn(P, generator=torch.Generator().manual_seed(0))
    products = {m: hvp(model, F.cross_entropy, batch, method=m, dtype=None)
                for m in ("fwd-rev", "rev-rev")}
    times = {m: [] for m in products}
    for _ in range(rounds):
        for m, mv in products.items():
            times[m].append(clock(lambda mv=mv: mv(v)))
    fr, rr = (statistics.median(times[m]) for m in ("fwd-rev", "rev-rev"))
    print(f"1. Hessian-vector product, {P} parameters, 2 048 images (median of {rounds})")
    print(f"   forward-over-reverse            {fr * 1e3:8.1f} ms")
    print(f"   double backward, graph reused   {rr * 1e3:8.1f} ms   "
          f"(forward-over-reverse is {rr / fr:.2f}× as fast)\n")

    mv = products["fwd-rev" if fr <= rr else "rev-rev"]
    ref = linalg.eigsh(mv, P, k=5, which="largest", tol=1e-9, dtype=torch.float32).values
    ref = torch.as_tensor(ref, dtype=torch.float64)
    t0 = time.perf_counter()
    lz = linalg.eigsh(mv, P, k=5, which="largest", tol=1e-4, dtype=torch.float32)
    t_l = time.perf_counter() - t0
    t0 = time.perf_counter()
    pw = linalg.power_iteration(mv, P, k=5, tol=1e-5, max_iters=2000, dtype=torch.float32)
    t_p = time.perf_counter() - t0
    print("2. Top-5 Hessian eigenvalues, same model (reference: Lanczos to 1e-9)")
    print(f"   reference λ₁..λ₅ = {', '.join(f'{x:.4g}' for x in ref.tolist())}")
    print(f"   Lanczos (full reorth.)   {lz.matvecs:5d} HVPs {t_l:7.1f} s   max rel. error "
          f"{rel_err(lz.values, ref):.1e}")
    pv = torch.as_tensor(pw.values, dtype=torch.float64).sort(descending=True).values
    print(f"   power iteration + defl.  {pw.matvecs:5d} HVPs {t_p:7.1f} s   max rel. error "
          f"{rel_err(pv, ref):.1e}")
    print(f"   Lanczos takes {t_l / t_p:.2f} of the power-iteration time "
          f"({pw.matvecs / lz.matvecs:.1f}× fewer products)\n")


def critical_and_hessians(rounds: int) -> None:
    data = ds.load("sinc", n=64, n_test=16).to(dtype=torch.float64)
    batch = (data.x_train, data.y_train)

    def members(n=100):
        return [ds.mlp(1, 1, 2, width=10, activation="tanh", seed=s).double() for s in range(n)]

    steps = 200

    def one_at_a_time(ms):
        for m in ms:  # the straightforward loop: Adam on ‖∇L‖² by double backprop
            opt = torch.optim.Adam(m.parameters(), lr=1e-3)
            for _ in range(steps):
                loss = F.mse_loss(m(batch[0]), batch[1])
                g = torch.autograd.grad(loss, list(m.parameters()), create_graph=True)
                opt.zero_grad()
                sum(gi.pow(2).sum() for gi in g).backward()
                opt.step()

    t_vec, t_loop = [], []
    for _ in range(rounds):
        ms = members()
        t_vec.append(clock(lambda ms=ms: find_critical_point(ms, F.mse_loss, batch, tol=0.0,
                                                            max_steps=steps, lr=1e-3)))
        ms = members(10)
        t_loop.append(10 * clock(lambda ms=ms: one_at_a_time(ms)))
    tv, tl = statistics.median(t_vec), statistics.median(t_loop)
    print(f"3. Critical-point search, 100 runs × {steps} Adam steps on ‖∇L‖² (141 parameters)")
    print(f"   one model at a time (10 timed, ×10)   {tl:7.2f} s")
    print(f"   all members at once                   {tv:7.2f} s   {tl / tv:5.1f}×\n")

    ms = members()
    stacked = get_thetas(ms).to(torch.float64)
    loss = theta_loss(ms[0], F.mse_loss)

    def f(theta):
        return loss(theta, *batch)

    def ours():
        torch.linalg.eigvalsh(ensemble_hessians(ms, F.mse_loss, batch))

    def each():
        for m in ms:
            fm, th = objective(m, F.mse_loss, batch)
            torch.linalg.eigvalsh(func_hessian(fm)(th))

    def naive_vmap():
        torch.linalg.eigvalsh(vmap(func_hessian(f))(stacked))

    res = {"ensemble_hessians": [], "func.hessian each": [], "vmap(func.hessian)": []}
    for _ in range(rounds):
        for name, fn in zip(res, (ours, each, naive_vmap)):
            res[name].append(clock(fn))
    base = statistics.median(res["func.hessian each"])
    print("4. 100 dense Hessians (141 × 141) + eigvalsh")
    for name, ts in res.items():
        t = statistics.median(ts)
        print(f"   {name:<22} {t * 1e3 / 100:7.2f} ms per model   {base / t:5.1f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
    hvp_and_eigen(args.rounds)
    critical_and_hessians(args.rounds)


if __name__ == "__main__":
    main()
