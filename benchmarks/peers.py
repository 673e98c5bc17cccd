"""deepscope against its peers, on the same model and data, at matched budgets.

Run:  pip install -e '.[bench]'   (a separate venv; torch pinned, see the README's "Peers")
      python benchmarks/peers.py [--rounds 3] [--threads 1]

The problem: a 784-256-256-10 tanh MLP (269 322 parameters) after two epochs of Adam on 2 048
MNIST images, the cross-entropy on those 2 048 images, float32, one CPU thread. Every tool
gets the same model (a fresh copy per call), the same data as one batch, and is timed from
the model to the answer (building its operator included). Rounds are interleaved and medians
reported, because this machine's speed drifts. Each row prints the median time, the error
against a float64 reference, and the ratio of the fastest peer's time to ours.

Cases and budgets:

1. **Top-5 eigenvalues.** deepscope's Lanczos (``hessian_eigenvalues(k=5)``, defaults) vs
   PyHessian ``eigenvalues(top_n=5)`` (power iteration with deflation, its defaults),
   hessian-eigenthings ``lanczos(k=5, max_iter=30)`` and curvlinops ``HessianLinearOperator``
   + ``scipy.sparse.linalg.eigsh(k=5, which="LA")``. Error: max relative error of the five
   against float64 Lanczos to tol 1e-10 on a float64 copy of the model.
2. **Trace** at 99 Hessian-vector products each: our Hutch++ and Hutchinson vs PyHessian
   ``trace(maxIter=99, tol=0)`` (Hutchinson), curvlinops ``hutchpp_trace`` and
   ``hutchinson_trace``, eigenthings ``hutch_plus_plus``. Error against a float64 Hutch++
   with ``--ref-products`` products (its own standard error is printed: at 99 products the
   errors are mostly sampling noise, not precision).
3. **Density** by stochastic Lanczos quadrature, 2 probes × 60 steps each: ours vs PyHessian
   ``density(iter=60, n_v=2)`` and eigenthings ``spectral_density(num_runs=2,
   lanczos_steps=60)``. Error: ∫|ρ − ρ_ref| (the L1 distance, 0 to 2) of the Gaussian-smoothed
   densities on one grid with one σ, against float64 SLQ with 4 probes × 60 steps.
4. **A 31×31 loss surface** (961 forward passes on the 2 048 images): ``surface`` vs
   loss-landscapes ``random_plane(steps=31)``, and the floor: the same 961 forward passes one
   after another. The planes differ — ours are filter-normalised Gaussian directions,
   loss-landscapes draws uniform on [0, 1) — so only times compare; our error is against the
   same grid evaluated in float64.

Traps in the peers, each handled here (checked with torch 2.13 and the versions of the
``bench`` extra):

* PyHessian's ``hessian`` calls ``loss.backward(create_graph=True)`` in its constructor and
  reads the gradients from ``p.grad``. ``backward`` adds to ``p.grad``, so a second
  ``hessian`` object on the same model, made before the gradients are cleared, holds 2∇L and
  multiplies by 2H: this script measures the ratio of the two objects' top eigenvalue (printed
  as "PyHessian trap"). Every PyHessian call here clears the gradients first.
* PyHessian's ``density()`` calls ``torch.eig``, removed from torch. It is patched here for
  the call with ``torch.linalg.eigh`` of the (symmetric tridiagonal) Lanczos matrix, returned
  in ``torch.eig``'s layout (eigenvalues as a column of real parts beside zero imaginary parts).
* PyHessian takes one batch (``data=``), reusing the gradient graph for every product, or a
  dataloader (``dataloader=``, ``full_dataset``), rebuilding it per batch; both tools get the
  whole 2 048 images as one batch, so both reuse one graph. It defaults to ``cuda=True``
  (passed False) and puts the model in ``eval()`` mode.
* curvlinops checks by default that model and data are deterministic, with extra passes over
  the data at construction; that check is off here (``check_deterministic=False``).
* loss-landscapes' ``random_plane`` moves the model it is given unless ``deepcopy_model=True``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import functools
import importlib
import io
import math
import pstats
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import deepscope as ds
from deepscope.probes.hessian import hessian_eigenvalues, hessian_trace, spectral_density
from deepscope.probes.landscape import surface

PEERS = {"PyHessian": "pyhessian", "hessian-eigenthings": "hessian_eigenthings",
         "curvlinops": "curvlinops", "loss-landscapes": "loss_landscapes", "scipy": "scipy"}
TRACE_PRODUCTS = 99
SLQ_STEPS, SLQ_PROBES, REF_PROBES = 60, 2, 4
# Errors below this are at float32's resolution of the answer (≈ 100 eps): two such errors are
# equal accuracy. Measured: float32 Lanczos, ours and eigenthings', both land at 5–6e-6.
FLOAT32_FLOOR = 100 * torch.finfo(torch.float32).eps
GRID = 31
F64 = ", dtype=float64"  # the rows of our probes asked for float64 on the float32 model


@functools.cache
def peer(name: str):
    """The peer's module, or None after saying how to install it."""
    try:
        return importlib.import_module(PEERS[name])
    except ImportError:
        print(f"peer {name} not installed (pip install -e '.[bench]')")
        return None


def problem():
    """``(model, (x, y))``: the float32 MLP after two epochs, and its 2 048 training images."""
    data = ds.load("mnist", subset=2048, test_subset=10)
    model = ds.mlp(784, 10, 2, width=256, activation="tanh", seed=0)
    ds.train(model, data, epochs=2, batch_size=128, eval_every=0, progress=False)
    return model, (data.x_train.reshape(len(data.x_train), -1), data.y_train)


def fresh(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    m.zero_grad(set_to_none=True)
    return m


def rel_err(found, ref) -> float:
    found = torch.as_tensor(found, dtype=torch.float64).flatten().sort(descending=True).values
    ref = torch.as_tensor(ref, dtype=torch.float64).flatten().sort(descending=True).values
    return float(((found[: len(ref)] - ref).abs() / ref.abs()).max())


# --- the float64 references -------------------------------------------------------------------


def references(model: nn.Module, batch, ref_products: int) -> dict:
    """Top-5 (Lanczos, tol 1e-10), trace (Hutch++) and SLQ density, all in float64."""
    m64 = copy.deepcopy(model).double()
    b64 = (batch[0].double(), batch[1])
    t0 = time.perf_counter()
    top = hessian_eigenvalues(m64, F.cross_entropy, b64, k=5, tol=1e-10, dtype=torch.float64)
    tr = hessian_trace(m64, F.cross_entropy, b64, samples=ref_products, seed=12345,
                       dtype=torch.float64)
    dens = spectral_density(m64, F.cross_entropy, b64, steps=SLQ_STEPS, probes=REF_PROBES,
                            seed=999, dtype=torch.float64)
    print(f"float64 references ({time.perf_counter() - t0:.0f} s): "
          f"λ₁..λ₅ = {', '.join(f'{v:.6g}' for v in top.values.tolist())} "
          f"({top.matvecs} products); tr(H) = {tr.estimate:.5g} ± {tr.std_error:.2g} "
          f"(Hutch++, {tr.matvecs} products)")
    lo, hi = float(dens.nodes.min()), float(dens.nodes.max())
    pad = 0.05 * (hi - lo)
    grid = torch.linspace(lo - pad, hi + pad, 2000, dtype=torch.float64)
    sigma = (hi - lo) / 200
    return {"top5": top.values, "trace": tr.estimate, "grid": grid, "sigma": sigma,
            "density": smooth(dens.nodes, dens.weights, grid, sigma)}


def smooth(nodes, weights, grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """The SLQ density Σ w·N(λ, σ²) on ``grid``, averaged over probes (rows)."""
    nodes = torch.as_tensor(nodes, dtype=torch.float64).reshape(-1, 1)
    weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1, 1)
    probes = max(1, round(float(weights.sum())))
    k = torch.exp(-0.5 * ((grid[None] - nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return (weights * k).sum(0) / probes


def l1(rho: torch.Tensor, ref: dict) -> float:
    return float(torch.trapezoid((rho - ref["density"]).abs(), ref["grid"]))


# --- the cases: (label, run, error of its output) ------------------------------------------------


def top5_cases(model: nn.Module, batch, ref: dict) -> list:
    err = lambda vals: rel_err(vals, ref["top5"])  # noqa: E731
    cases = [(f"deepscope Lanczos{tag}", lambda dt=dt: hessian_eigenvalues(
        fresh(model), F.cross_entropy, batch, k=5, dtype=dt).values, err)
        for tag, dt in (("", None), (F64, torch.float64))]
    if pyhessian := peer("PyHessian"):
        cases.append(("PyHessian power iteration", lambda: pyhessian.hessian(
            fresh(model), F.cross_entropy, data=batch, cuda=False).eigenvalues(top_n=5)[0],
            err))
    if eigenthings := peer("hessian-eigenthings"):
        def eigenthings_top5():
            op = eigenthings.HessianOperator(fresh(model), [batch],
                                             eigenthings.supervised_loss(F.cross_entropy))
            return eigenthings.lanczos(op, k=5, max_iter=30, which="LA", seed=0).eigenvalues
        cases.append(("eigenthings lanczos, 30 its", eigenthings_top5, err))
    curvlinops, scipy = peer("curvlinops"), peer("scipy")
    if curvlinops and scipy:
        from scipy.sparse.linalg import eigsh

        def curvlinops_top5():
            m = fresh(model)
            H = curvlinops.HessianLinearOperator(m, nn.CrossEntropyLoss(), list(m.parameters()),
                                                 [batch], check_deterministic=False)
            return eigsh(H.to_scipy(), k=5, which="LA")[0]
        cases.append(("curvlinops + scipy eigsh", curvlinops_top5, err))
    return cases


def trace_cases(model: nn.Module, batch, ref: dict) -> list:
    n = TRACE_PRODUCTS
    err = lambda t: abs(trace_value(t) - ref["trace"]) / abs(ref["trace"])  # noqa: E731
    cases = [(f"deepscope {est}{tag}", lambda est=est, dt=dt: hessian_trace(
        fresh(model), F.cross_entropy, batch, samples=n, estimator=est, seed=1,
        dtype=dt), err)
        for est, tag, dt in (("hutch++", "", None), ("hutch++", F64, torch.float64),
                             ("hutchinson", "", None))]
    if pyhessian := peer("PyHessian"):
        cases.append(("PyHessian trace (Hutchinson)", lambda: pyhessian.hessian(
            fresh(model), F.cross_entropy, data=batch, cuda=False).trace(maxIter=n, tol=0.0),
            err))
    if curvlinops := peer("curvlinops"):
        for label, estimator in (("hutchpp", curvlinops.hutchpp_trace),
                                 ("hutchinson", curvlinops.hutchinson_trace)):
            def run(estimator=estimator):
                m = fresh(model)
                H = curvlinops.HessianLinearOperator(
                    m, nn.CrossEntropyLoss(), list(m.parameters()), [batch],
                    check_deterministic=False)
                return estimator(H, n)
            cases.append((f"curvlinops {label}", run, err))
    if eigenthings := peer("hessian-eigenthings"):
        cases.append(("eigenthings hutch++", lambda: eigenthings.hutch_plus_plus(
            eigenthings.HessianOperator(fresh(model), [batch],
                                        eigenthings.supervised_loss(F.cross_entropy)),
            num_matvecs=n, seed=1).estimate, err))
    return cases


def trace_value(out) -> float:
    """The estimate from any tool's trace output: ours (a ``TraceEstimate``), PyHessian's (its
    list of the ``zᵀHz`` samples) or a number."""
    if hasattr(out, "estimate"):
        return float(out.estimate)
    return statistics.fmean(out) if isinstance(out, list) else float(out)


def trace_at_equal_accuracy(rows: dict, outs: dict) -> dict:
    """Each trace row's time to reach the standard error of our Hutch++ at its budget.

    Hutchinson's variance falls as 1/products, so a Hutchinson estimator needs
    ``TRACE_PRODUCTS · (se_hutchinson / se_hutch++)²`` products to match Hutch++: its time
    scales by that factor (at its own measured cost per product). ``se_hutchinson`` is the
    sample standard error of our Hutchinson run (the same Rademacher draws as every
    Hutchinson row), checked against PyHessian's own samples; Hutch++ rows of the peers run
    the same algorithm at the same budget and keep their times.
    """
    se_pp = outs["deepscope hutch++"].std_error
    se_h = outs["deepscope hutchinson"].std_error
    factor = (se_h / se_pp) ** 2
    check = ""
    if isinstance(samples := outs.get("PyHessian trace (Hutchinson)"), list):
        check = f" (PyHessian's own samples: {statistics.stdev(samples) / len(samples) ** .5:.2g})"
    print(f"  equal accuracy: standard error at {TRACE_PRODUCTS} products, Hutchinson "
          f"{se_h:.2g}{check}, our Hutch++ {se_pp:.2g}; a Hutchinson estimator needs "
          f"{factor:.1f}× the products ({TRACE_PRODUCTS * factor:.0f}) to match")
    scaled = {label: (t * factor if "utchinson" in label else t, e)
              for label, (t, e) in rows.items()}
    for label, (t, _) in scaled.items():
        if not label.startswith("deepscope") and "utchinson" in label:
            print(f"    {label:30s} {t:7.2f} s at equal accuracy  "
                  f"{t / rows['deepscope hutch++'][0]:6.2f}× ours")
    return scaled


@contextlib.contextmanager
def torch_eig_from_eigh():
    """``torch.eig`` (removed from torch) for PyHessian's ``density()``: ``eigh`` of its
    symmetric tridiagonal matrix, in ``torch.eig``'s layout ``((n, 2) [real, imag], V)``."""
    had, old = hasattr(torch, "eig"), getattr(torch, "eig", None)

    def eig(T, eigenvectors=True):
        lam, V = torch.linalg.eigh(T)
        return torch.stack([lam, torch.zeros_like(lam)], 1), V

    torch.eig = eig
    try:
        yield
    finally:
        if had:
            torch.eig = old
        else:
            del torch.eig


def density_cases(model: nn.Module, batch, ref: dict) -> list:
    def err(nodes_weights):
        return l1(smooth(*nodes_weights, ref["grid"], ref["sigma"]), ref)

    def ours(dtype=None):
        d = spectral_density(fresh(model), F.cross_entropy, batch, steps=SLQ_STEPS,
                             probes=SLQ_PROBES, seed=3, dtype=dtype)
        return d.nodes, d.weights

    cases = [("deepscope SLQ", ours, err),
             (f"deepscope SLQ{F64}", lambda: ours(torch.float64), err)]
    if pyhessian := peer("PyHessian"):
        def pyhessian_density():
            h = pyhessian.hessian(fresh(model), F.cross_entropy, data=batch, cuda=False)
            with torch_eig_from_eigh():
                return h.density(iter=SLQ_STEPS, n_v=SLQ_PROBES)
        cases.append(("PyHessian density", pyhessian_density, err))
    if eigenthings := peer("hessian-eigenthings"):
        def eigenthings_density():
            op = eigenthings.HessianOperator(fresh(model), [batch],
                                             eigenthings.supervised_loss(F.cross_entropy))
            d = eigenthings.spectral_density(op, num_runs=SLQ_PROBES, lanczos_steps=SLQ_STEPS,
                                             seed=3)
            return d.raw_eigenvalues, d.raw_weights
        cases.append(("eigenthings spectral_density", eigenthings_density, err))
    return cases


def surface_cases(model: nn.Module, batch, ref: dict) -> list:
    x, y = batch

    def err(loss):
        return float((torch.as_tensor(loss, dtype=torch.float64) - ref["surface"]).abs().max()
                     / ref["surface"].abs().max())

    cases = [("deepscope surface", lambda: surface(
        fresh(model), F.cross_entropy, batch, resolution=GRID).loss, err)]

    def floor():
        m = fresh(model)
        with torch.no_grad():
            for _ in range(GRID * GRID):
                F.cross_entropy(m(x), y)
    cases.append(("floor: 961 forward passes", floor, None))
    if landscapes := peer("loss-landscapes"):
        from loss_landscapes.metrics import Loss

        cases.append(("loss-landscapes random_plane", lambda: landscapes.random_plane(
            fresh(model), Loss(F.cross_entropy, x, y), distance=1, steps=GRID,
            normalization="filter", deepcopy_model=True), None))
    return cases


# --- timing, the table, the targets -------------------------------------------------------------


def measure(cases: list, rounds: int) -> dict:
    """``({label: (median seconds, error of the last output or None)}, {label: output})``,
    rounds interleaved."""
    times = {label: [] for label, _, _ in cases}
    outs = {}
    for _ in range(rounds):
        for label, run, _ in cases:
            t0 = time.perf_counter()
            outs[label] = run()
            times[label].append(time.perf_counter() - t0)
    return {label: (statistics.median(times[label]), err(outs[label]) if err else None)
            for label, _, err in cases}, outs


def table(title: str, rows: dict, ours: str) -> None:
    print(f"\n{title}")
    t_ours = rows[ours][0]
    for label, (t, e) in rows.items():
        err = "" if e is None else f"{e:9.1e}"
        ratio = "" if label == ours else f"{t / t_ours:6.2f}× ours"
        print(f"  {label:32s} {t:7.2f} s  {err:>9s}  {ratio}")


def verdict(name: str, rows: dict, ours: str, speedup: float, accuracy: bool) -> bool:
    """Print whether ours is ``speedup``× as fast as the fastest peer (with ``accuracy``: and
    our error no worse than that peer's, up to 10 % slack or :data:`FLOAT32_FLOOR`)."""
    t, e = rows[ours]
    rivals = [p for p in rows if rows[p][1] is not None and not p.startswith("deepscope")]
    if not rivals:
        print(f"  target {name}: no peer installed")
        return True
    best = min(rivals, key=lambda p: rows[p][0])
    basis = (" at equal or better accuracy" if accuracy else
             ", times scaled to equal standard error" if "accuracy" in name else
             ", same number of products")
    ratio = rows[best][0] / t
    met = ratio >= speedup and (not accuracy or e <= max(1.1 * rows[best][1], FLOAT32_FLOOR))
    print(f"  target {name}: ≥ {speedup:g}× the fastest peer ({best}"
          f"{basis}): "
          f"{ratio:.2f}× at error {e:.1e} vs {rows[best][1]:.1e} -> "
          f"{'MET' if met else 'MISSED'}")
    return met


def profile(label: str, run) -> None:
    """Where our time goes: cProfile's top entries by internal time."""
    pr = cProfile.Profile()
    pr.enable()
    run()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
    body = [ln for ln in s.getvalue().splitlines() if ln.strip()][-9:]
    print(f"  profile of {label} (top 8 by own time):\n    " + "\n    ".join(body))


def precision(key: str, out32, out64, t32: float, t64: float, ref: dict) -> None:
    """What float64 buys: float32 vs float64 from the same random draws (rounding only)."""
    if key == "top5":
        diff = rel_err(out32, out64)
    elif key == "trace":
        diff = abs(trace_value(out32) - trace_value(out64)) / abs(trace_value(out64))
    else:
        diff = l1(smooth(*out32, ref["grid"], ref["sigma"]),
                  {**ref, "density": smooth(*out64, ref["grid"], ref["sigma"])})
    print(f"  float32 vs float64, same draws: difference {diff:.1e}; float64 takes "
          f"{t64 / t32:.2f}× the time")


def pyhessian_trap(model: nn.Module, batch) -> None:
    """Measure the doubling: the top eigenvalue from a second PyHessian object made before
    the gradients are cleared, over the first object's."""
    if not (pyhessian := peer("PyHessian")):
        return
    m = fresh(model)
    first = pyhessian.hessian(m, F.cross_entropy, data=batch, cuda=False)
    second = pyhessian.hessian(m, F.cross_entropy, data=batch, cuda=False)
    torch.manual_seed(0)
    a = first.eigenvalues(top_n=1)[0][0]
    torch.manual_seed(0)
    b = second.eigenvalues(top_n=1)[0][0]
    print(f"PyHessian trap: a second hessian object on the same model gives λ₁ = {b:.5g}, "
          f"the first {a:.5g} (ratio {b / a:.3f}); cleared gradients avoid it here")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ref-products", type=int, default=600,
                    help="Hessian-vector products of the float64 Hutch++ trace reference")
    ap.add_argument("--cases", default="top5,trace,density,surface")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in PEERS:
        peer(name)
    model, batch = problem()
    print(f"{ds.count_params(model)} parameters, {len(batch[0])} images, float32, "
          f"{args.threads} thread(s), median of {args.rounds} interleaved rounds")
    ref = references(model, batch, args.ref_products)
    pyhessian_trap(model, batch)
    wanted = args.cases.split(",")
    groups = [("top5", "Top-5 Hessian eigenvalues (error: max relative, vs float64 Lanczos)",
               top5_cases, "deepscope Lanczos", 1.5, True),
              ("trace", f"Trace at {TRACE_PRODUCTS} products (error: relative, vs float64 "
               "Hutch++)", trace_cases, "deepscope hutch++", 1.0, False),
              ("density", f"SLQ density, {SLQ_PROBES}×{SLQ_STEPS} products (error: L1 vs "
               f"float64 SLQ {REF_PROBES}×{SLQ_STEPS})", density_cases, "deepscope SLQ",
               1.0, False),
              ("surface", f"{GRID}×{GRID} loss surface (error: max relative, vs the same grid "
               "in float64; the planes differ from loss-landscapes')", surface_cases,
               "deepscope surface", None, False)]
    if "surface" in wanted:
        m64 = copy.deepcopy(model).double()
        ref["surface"] = torch.as_tensor(surface(m64, F.cross_entropy, (batch[0].double(),
                                                 batch[1]), resolution=GRID).loss)
    for key, title, make, ours, speedup, accuracy in groups:
        if key not in wanted:
            continue
        cases = make(model, batch, ref)
        rows, outs = measure(cases, args.rounds)
        table(title, rows, ours)
        if ours + F64 in outs:
            precision(key, outs[ours], outs[ours + F64], rows[ours][0], rows[ours + F64][0],
                      ref)
        if key == "trace":  # the target is at equal accuracy; equal products shown first
            verdict("trace at equal products", rows, ours, speedup, False)
            rows = trace_at_equal_accuracy(rows, outs)
            key = "trace at equal accuracy"
        if speedup is not None and not verdict(key, rows, ours, speedup, accuracy):
            profile(ours, next(run for label, run, _ in cases if label == ours))


if __name__ == "__main__":
    main()
