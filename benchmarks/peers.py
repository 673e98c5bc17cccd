"""deepscope against its peers, on the same model and data, at matched budgets.

Run:  pip install -e '.[bench]'   (a separate venv; torch pinned, see the README's "Peers")
      python benchmarks/peers.py [--rounds 3] [--threads 1]
                                 [--cases top5,trace,density,surface,cnn]

The problem of cases 1–4: a 784-256-256-10 tanh MLP (269 322 parameters) after two epochs
of Adam on 2 048 MNIST images, the cross-entropy on those 2 048 images, float32, one CPU
thread. Every tool gets the same model (a fresh copy per call), the same data as one batch,
and is timed from the model to the answer (building its operator included). Rounds are
interleaved and medians reported, because this machine's speed drifts. Each row prints the
median time, the error against a float64 reference, and the ratio of the fastest peer's time
to ours.

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
5. **A CNN with batch norm on streamed data** (``--cases cnn``), time *and peak memory*: see
   below.

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

**Case 5: a CNN with batch norm, streamed data.** conv 1→8 3×3, BN, ReLU, max-pool 2, conv
8→16 3×3, BN, ReLU, max-pool 2, 784→32, ReLU, 32→10 (26 746 parameters), two epochs of Adam
(batches of 128, batch norm in train mode) on 2 048 MNIST images, then ``eval()``. The loss
is the cross-entropy on the first 256 of those images, *streamed*: a re-iterable that hands
out 8 batches of 32 anew on every pass (``--cnn-batches``, ``--cnn-batch-size``), given to
every tool as its data — deepscope's ``batch``, PyHessian's ``dataloader=`` (its
full-dataset mode), eigenthings' ``HessianOperator`` dataloader, curvlinops' ``data`` — so
every Hessian-vector product is one pass over the 8 batches, rebuilding each batch's graph
(except curvlinops' trace, which multiplies many vectors per pass, below). The sizes are
smaller than the MLP's because a streamed product over 2 048 images (8 × 256) with conv
1→16→32 took 3 s here, and the group is to fit in about 5 minutes. Two tasks:

* the **top eigenvalue**: deepscope ``hessian_eigenvalues(k=1)`` (defaults: Lanczos to tol
  1e-6), PyHessian ``eigenvalues(top_n=1)`` (defaults: power iteration to a relative change
  of 1e-3), eigenthings ``lanczos(k=1, max_iter=20, which="LA")`` (its default
  ``max_iter`` is 2k, two steps) and curvlinops ``HessianLinearOperator`` + scipy
  ``eigsh(k=1, which="LA")``; error relative to float64 Lanczos to tol 1e-10;
* the **trace at 30 products**: our Hutch++, PyHessian ``trace(maxIter=30, tol=0)``
  (Hutchinson), curvlinops ``hutchpp_trace`` and eigenthings ``hutch_plus_plus``; error
  relative to a float64 Hutch++ of ``--cnn-ref-products`` (150) products (its standard error
  is printed: at 30 products every estimate is mostly sampling noise).

Every run of every tool is a **fresh subprocess** (rounds interleaved, medians and the range
over rounds printed), given the model and images through an ``.npz`` file. The time is from
the model to the answer; the **peak** is the growth of the resident set over the resident
set just before the call: ``VmHWM`` (reset by writing 5 to ``/proc/self/clear_refs``) minus
``VmRSS`` after ``malloc_trim``. Before the baseline, a warm-up with plain torch on one batch
— a forward pass, a double-backward product and two forward-over-reverse products under
``vmap`` — makes the one-time costs (the autograd engine's start, kernels' code and scratch)
resident for every tool, and the peer is imported. Two traps of the measurement itself:

* ``ru_maxrss`` of a child starts at the *parent's* high-water mark (Linux carries it across
  ``exec``): a parent holding 1 GiB started a child whose ``ru_maxrss`` read 1 035 MiB while
  its ``VmHWM`` read 11 MiB. "ru_maxrss − resident set" is then the parent's size whenever
  the parent is the larger (here it holds MNIST and the float64 references), hence VmHWM.
* Without the warm-up (a one-round trial that only ran a forward pass first) every tool's
  peak read 65–72 MiB (curvlinops 118 and 303 MiB): the first backward's one-time costs, not
  the tools'. With it the tools that multiply one vector per pass read 21–36 MiB.

Each child also checks that the model is still in eval mode and batch norm's running
statistics unchanged after the call (a line starting with ``!`` if not; none was printed).
Batch norm in the peers, measured by the script on the same stream with vᵀHv for one fixed v
(each tool handed the model in ``train()`` mode, over the same tool in ``eval()``):

* **PyHessian** calls ``model.eval()`` in its constructor: the eval-mode Hessian (ratio
  1.0000) whatever the caller's mode, and a model handed over in train mode comes back in
  eval mode. In dataloader mode it calls ``loss.backward(create_graph=True)`` into ``p.grad``
  per batch (torch warns of a reference cycle), clearing the gradients before each batch, so
  the doubling trap above does not arise there. Its power iteration stops after 9 products at
  error 3.1e-4: the fastest row, two orders less accurate than the Lanczos rows.
* **hessian-eigenthings** runs the model in whatever mode it is handed. In train mode batch
  norm uses each batch's own statistics: vᵀHv is 2.91× the eval-mode value — another
  function's Hessian, silently — and every product moves the running statistics, changing
  the model's eval-mode function afterwards. It also averages the batches with equal weights
  1/K, not by size: with a last batch of 16 among batches of 48, its vᵀHv is 0.918 of the
  per-sample mean's (ours, PyHessian and curvlinops agree to 4 digits). Here the model is
  handed over in eval mode and the batches are equal, so it computes the same Hessian.
* **curvlinops** in train mode fails (``RuntimeError``: batch norm's in-place update of its
  running statistics inside a ``torch.func`` transform), so it cannot silently give a
  train-mode Hessian. Its trace estimators multiply all the vectors of one stage at once
  (``vmap`` over the columns, one pass over the data for many products): ``hutchpp_trace``
  at 30 products makes 3 passes of 10 columns, and its peak is 6–7× ours (193–200 MiB).
  ``hutchinson_trace`` puts all its columns in one ``vmap`` (from its source; not measured
  here). ``eigsh`` asks for one vector per call.
* **deepscope** (``mode="eval"``, the default) runs batch norm in eval mode for every product
  and restores the caller's mode afterwards; ``mode="train"`` with batch norm is refused.

Measured 3 Dec 2026, 13:30–13:35 UTC, on the shared 2-core machine (``uptime`` load average
0.89 before, 1.06 after), ``python benchmarks/peers.py --cases cnn`` (4 min 27 s in all)::

    CNN with batch norm (eval mode): 26746 parameters, 256 MNIST images streamed
    as 8 batches of 32, float32, 1 thread(s), median of 3 interleaved rounds, each run in a
    fresh process; load 0.98
    float64 references (50 s): λ₁ = 48.91414 (20 products),
      tr(H) = 217.44 ± 4.8 (Hutch++, 150 products)

    Batch norm: each tool handed the model in train() mode; vᵀHv for one fixed v, over
    the same tool's vᵀHv in eval mode
      deepscope hvp (mode='eval')          1.0000; left in train mode; running statistics unchanged
      PyHessian dataloader_hv_product      1.0000; left in eval mode; running statistics unchanged
      eigenthings HessianOperator.matvec   2.9103; left in train mode; running statistics MOVED
      curvlinops HessianLinearOperator @ v  fails; left in train mode; running statistics unchanged
        RuntimeError: During a grad (vjp, jvp, grad, etc) transform, the function provid...
      deepscope hvp(mode='train')          refused: mode='train' with batch norm (1, 5): in train...
    Uneven batches: the 256 images in batches of 48, the last of 16; eval mode;
    vᵀHv over ours (the per-sample mean)
      deepscope hvp (mode='eval')          1.0000
      PyHessian dataloader_hv_product      1.0000
      eigenthings HessianOperator.matvec   0.9182
      curvlinops HessianLinearOperator @ v 1.0000

    CNN top Hessian eigenvalue (error: relative, vs float64 Lanczos)
      tool                         time s   (range)   error peak MiB (range) passes t/ours p/ours
      deepscope Lanczos              2.88 2.74–3.66 2.5e-06     25.1   23–26     20  1.00×  1.00×
      PyHessian power iteration      1.15 1.13–1.35 3.1e-04     24.4   23–27      9  0.40×  0.97×
      eigenthings lanczos, 20 its    3.02 2.63–4.15 1.5e-06     24.5   22–25     20  1.05×  0.97×
      curvlinops + scipy eigsh       6.77 5.67–9.12 1.8e-08     35.9   34–36     31  2.35×  1.43×

    CNN trace at 30 products (error: relative, vs float64 Hutch++ with 150 products, ± 2.2%)
      tool                         time s   (range)   error peak MiB (range) passes t/ours p/ours
      deepscope hutch++              4.77 4.30–6.49 1.1e-01     32.0   28–32     30  1.00×  1.00×
      PyHessian trace (Hutchinson)   4.70 4.21–5.08 9.3e-02     25.2   25–25     30  0.98×  0.79×
      curvlinops hutchpp             4.40 3.89–4.53 9.0e-02    193.3 193–202      3  0.92×  6.04×
      eigenthings hutch++            4.63 4.11–4.82 1.1e-01     28.7   28–29     30  0.97×  0.90×
      cnn group: 264 s; load 1.06 after

An earlier run of the same code (13:18–13:23 UTC, load 2.74 before, 3.05 after; only the
printing has changed since) measured: top eigenvalue, ours 3.47 s, PyHessian 1.13 s,
eigenthings 2.74 s (0.79× ours), curvlinops + ``eigsh`` 5.63 s; trace, ours 4.67 s,
PyHessian 3.79 s, curvlinops 3.95 s, eigenthings 3.95 s (0.81–0.85× ours); peaks 23.8, 23.8,
25.4, 33.9 MiB and 29.1, 25.0, 199.7, 26.8 MiB; the same errors (but curvlinops + ``eigsh``
3.9e-8) and the same batch-norm checks.

On this problem deepscope is **not** faster than its peers: a product streams 8 batches of
32 images, each tool rebuilding each batch's graph, and the time is the tools' common
double-backward work. At 20 products our Lanczos and eigenthings' take the same time within
the rounds' ranges (1.05× and 0.79× ours in the two runs), to the same accuracy (1.5–2.5e-6,
float32's resolution); PyHessian's power iteration is 2.5–3.1× faster because it stops after 9
products, at 3.1e-4; curvlinops + ``eigsh`` reaches 2–4e-8 at 1.6–2.4× our time (21 and 31
products: ARPACK starts from a random vector). The trace rows take 0.81–0.98× our time at
the same 30 products; their errors (9–11 %) are the sampling noise of 30 products. Memory:
every tool that multiplies one vector per pass peaks at 24–36 MiB (medians) — one batch's graph, not
the data's (``benchmarks/memory.py``) — ours 25.1 and 23.8 MiB for the eigenvalue, 32.0 and
29.1 MiB for the trace (4–7 MiB above PyHessian's Hutchinson there); curvlinops' vectorised
Hutch++ peaks at 193–200 MiB, 6–7× ours.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import ctypes
import functools
import gc
import importlib
import io
import json
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import deepscope as ds
from deepscope.probes.hessian import hessian_eigenvalues, hessian_trace, hvp, spectral_density
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


# --- the convolutional case: batch norm, streamed data, time and memory per process -------------

CNN_PRODUCTS = 30  # the trace budget; divisible by 3 for curvlinops' Hutch++
CNN_LANCZOS_STEPS = 20  # eigenthings' lanczos defaults to max_iter = 2k (2 steps for k = 1)


def cnn(seed: int = 0) -> nn.Sequential:
    """conv 1→8 3×3, BN, ReLU, max-pool, conv 8→16, BN, ReLU, max-pool, 784→32→10 (26 746
    parameters)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))


class Stream:
    """A re-iterable of the batches ``(x[i·B:(i+1)·B], y[...])``, handed out anew on every
    pass (views, no copies)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.size = x, y, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.size)

    def __iter__(self):
        for i in range(0, len(self.x), self.size):
            yield self.x[i:i + self.size], self.y[i:i + self.size]


def cnn_problem(batches: int, batch_size: int):
    """``(model, x, y)``: the CNN after two epochs of Adam (batch norm in train mode, batches of
    128) on 2 048 MNIST images, then put in ``eval()``; ``x, y`` the first ``batches ×
    batch_size`` of those images."""
    data = ds.load("mnist", subset=2048, test_subset=10)
    x, y = data.x_train, data.y_train
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        for idx in torch.randperm(len(x), generator=g).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    n = batches * batch_size
    return model.eval(), x[:n].contiguous(), y[:n].contiguous()


def cnn_references(model: nn.Module, x, y, batch_size: int, ref_products: int) -> dict:
    """λ₁ (Lanczos to tol 1e-10) and the trace (Hutch++) by deepscope in float64, streamed."""
    m64 = copy.deepcopy(model).double()
    data = Stream(x.double(), y, batch_size)
    t0 = time.perf_counter()
    top = hessian_eigenvalues(m64, F.cross_entropy, data, k=1, tol=1e-10)
    tr = hessian_trace(m64, F.cross_entropy, data, samples=ref_products, seed=12345)
    print(f"float64 references ({time.perf_counter() - t0:.0f} s): λ₁ = {float(top.values[0]):.7g}"
          f" ({top.matvecs} products),\n  tr(H) = {tr.estimate:.5g} ± {tr.std_error:.2g} "
          f"(Hutch++, {tr.matvecs} products)")
    return {"top1": float(top.values[0]), "trace": float(tr.estimate), "se": tr.std_error}


def cnn_tools() -> dict:
    """``{label: (task, run)}``, ``run(model, stream) -> float``: λ₁ or tr(H) by each tool at
    its defaults (eigenthings: ``max_iter`` :data:`CNN_LANCZOS_STEPS`), the trace at
    :data:`CNN_PRODUCTS` products, every tool given the stream of batches."""
    n, ce = CNN_PRODUCTS, F.cross_entropy

    def pyhessian(m, s):
        return importlib.import_module("pyhessian").hessian(m, ce, dataloader=s, cuda=False)

    def eigenthings_op(m, s):
        et = importlib.import_module("hessian_eigenthings")
        return et.HessianOperator(m, s, et.supervised_loss(ce))

    def curvlinops_op(m, s):
        return importlib.import_module("curvlinops").HessianLinearOperator(
            m, nn.CrossEntropyLoss(), list(m.parameters()), s, check_deterministic=False)

    def eigsh_top(m, s):
        from scipy.sparse.linalg import eigsh
        return float(eigsh(curvlinops_op(m, s).to_scipy(), k=1, which="LA")[0][0])

    def et(name):
        return getattr(importlib.import_module("hessian_eigenthings"), name)

    return {
        "deepscope Lanczos": ("top1", lambda m, s: float(
            hessian_eigenvalues(m, ce, s, k=1).values[0])),
        "PyHessian power iteration": ("top1", lambda m, s: pyhessian(m, s).eigenvalues(
            top_n=1)[0][0]),
        f"eigenthings lanczos, {CNN_LANCZOS_STEPS} its": ("top1", lambda m, s: float(
            et("lanczos")(eigenthings_op(m, s), k=1, max_iter=CNN_LANCZOS_STEPS, which="LA",
                          seed=0).eigenvalues[0])),
        "curvlinops + scipy eigsh": ("top1", eigsh_top),
        "deepscope hutch++": ("trace", lambda m, s: float(
            hessian_trace(m, ce, s, samples=n, seed=1).estimate)),
        "PyHessian trace (Hutchinson)": ("trace", lambda m, s: statistics.fmean(
            pyhessian(m, s).trace(maxIter=n, tol=0.0))),
        "curvlinops hutchpp": ("trace", lambda m, s: float(
            importlib.import_module("curvlinops").hutchpp_trace(curvlinops_op(m, s), n))),
        "eigenthings hutch++": ("trace", lambda m, s: float(et("hutch_plus_plus")(
            eigenthings_op(m, s), num_matvecs=n, seed=1).estimate)),
    }


TRAIN_MODE = "deepscope hvp(mode='train')"
CNN_PEER = {"PyHessian": "PyHessian", "eigenthings": "hessian-eigenthings",
            "curvlinops": "curvlinops"}


def status_mib(key: str) -> float:
    """``VmRSS``, ``VmHWM``, ... of this process from /proc/self/status (Linux), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak() -> bool:
    """Reset this process's resident high-water mark (``VmHWM``) to its resident set now,
    by writing 5 to /proc/self/clear_refs (Linux ≥ 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def warm_up(model: nn.Module, batch) -> None:
    """One-time costs before the baseline, with plain torch on one batch: a forward pass, a
    double-backward product, and two forward-over-reverse products under ``vmap`` (the
    autograd engine, the kernels' code and scratch are then resident for every tool)."""
    x, y = batch
    params = {k: p.detach() for k, p in model.named_parameters()}

    def loss(p):
        return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    g = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()),
                            create_graph=True)
    torch.autograd.grad(g, list(model.parameters()), [torch.ones_like(t) for t in g])
    tangents = {k: torch.ones(2, *p.shape) for k, p in params.items()}
    torch.func.vmap(lambda t: torch.func.jvp(torch.func.grad(loss), (params,), (t,))[1])(
        tangents)


def cnn_child(spec: dict) -> dict:
    """One tool on one task, in this (fresh) process: the seconds from model to answer and the
    peak growth of the resident set over the resident set just before the call."""
    torch.set_num_threads(spec["threads"])
    _, run = cnn_tools()[spec["label"]]
    for short, name in CNN_PEER.items():
        if short in spec["label"]:
            peer(name)  # imported before the baseline: its import is not the call's memory
            if name == "curvlinops":
                importlib.import_module("scipy.sparse.linalg")
    arrays = np.load(spec["file"], allow_pickle=False)
    model = cnn()
    model.load_state_dict({k[2:]: torch.from_numpy(arrays[k]) for k in arrays.files
                           if k.startswith("m.")})
    model.eval()
    stream = Stream(torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]),
                    spec["batch_size"])
    forwards = [0]
    model.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    warm_up(model, next(iter(stream)))
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    forwards[0] = 0
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap back to the system: a true baseline
    hwm = reset_peak()
    base = status_mib("VmRSS")
    torch.manual_seed(0)  # PyHessian draws from torch's global generator
    t0 = time.perf_counter()
    value = run(model, stream)
    seconds = time.perf_counter() - t0
    peak = status_mib("VmHWM") if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    moved = any(not torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    return {"value": float(value), "seconds": seconds, "peak": peak - base, "base": base,
            "hwm_reset": hwm, "passes": forwards[0] / len(stream),
            "training_after": any(m.training for m in model.modules()),
            "bn_stats_moved": moved}


def cnn_measure(model: nn.Module, x, y, args, ref: dict) -> dict:
    """Every tool, ``--rounds`` interleaved rounds, each run in a fresh subprocess:
    ``{label: row}`` with median time, error, median peak growth and passes."""
    tools = cnn_tools()
    labels = [label for label in tools
              if not any(short in label and not peer(name) for short, name in CNN_PEER.items())]
    runs = {label: [] for label in labels}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cnn.npz")
        np.savez(path, x=x.numpy(), y=y.numpy(),
                 **{f"m.{k}": v.numpy() for k, v in model.state_dict().items()})
        for _ in range(args.rounds):
            for label in labels:
                spec = {"label": label, "file": path, "batch_size": args.cnn_batch_size,
                        "threads": args.threads}
                out = subprocess.run([sys.executable, __file__, "--cnn-child", json.dumps(spec)],
                                     capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"{label} failed:\n{out.stderr[-3000:]}")
                runs[label].append(json.loads(out.stdout.splitlines()[-1]))
    rows = {}
    for label, rs in runs.items():
        task = tools[label][0]
        want = ref["top1"] if task == "top1" else ref["trace"]
        rows[label] = {"task": task, "seconds": statistics.median(r["seconds"] for r in rs),
                       "peak": statistics.median(r["peak"] for r in rs),
                       "peaks": [r["peak"] for r in rs], "times": [r["seconds"] for r in rs],
                       "passes": rs[-1]["passes"],
                       "error": abs(rs[-1]["value"] - want) / abs(want), "last": rs[-1]}
    return rows


def cnn_table(title: str, rows: dict, ours: str) -> None:
    """Time, error, peak memory and passes of each tool, and their ratios to ours (medians;
    the range over the rounds beside them)."""
    print(f"\n{title}")
    print(f"  {'tool':28s} {'time s':>6s} {'(range)':>9s} {'error':>7s} {'peak MiB':>8s} "
          f"{'(range)':>7s} {'passes':>6s} {'t/ours':>6s} {'p/ours':>6s}")
    t, p = rows[ours]["seconds"], rows[ours]["peak"]
    for label, r in rows.items():
        times, peaks = r["times"], r["peaks"]
        rng = f"{min(peaks):.0f}–{max(peaks):.0f}"
        print(f"  {label:28s} {r['seconds']:6.2f} {min(times):4.2f}–{max(times):<4.2f} "
              f"{r['error']:7.1e} {r['peak']:8.1f} {rng:>7s} {r['passes']:6.0f} "
              f"{r['seconds'] / t:5.2f}× {r['peak'] / p:5.2f}×")
    for label, r in rows.items():
        last = r["last"]
        if last["training_after"] or last["bn_stats_moved"] or not last["hwm_reset"]:
            print(f"  ! {label}: left a module in train mode {last['training_after']}, moved "
                  f"the running statistics {last['bn_stats_moved']}, peak from "
                  f"{'VmHWM' if last['hwm_reset'] else 'ru_maxrss'}")


def cnn_products(model: nn.Module, v: torch.Tensor) -> dict:
    """``{label: product(model, data) -> H v}``: one Hessian-vector product by each tool's own
    route, on whatever model and data it is handed."""
    ce = F.cross_entropy

    def split(m):
        return [c.reshape(p.shape) for c, p in zip(
            v.split([p.numel() for p in m.parameters()]), m.parameters(), strict=True)]

    out = {"deepscope hvp (mode='eval')": lambda m, d: hvp(m, ce, d)(v)}
    if pyhessian := peer("PyHessian"):
        out["PyHessian dataloader_hv_product"] = lambda m, d: torch.cat([h.flatten() for h in (
            pyhessian.hessian(m, ce, dataloader=d, cuda=False).dataloader_hv_product(
                split(m))[1])])
    if eigenthings := peer("hessian-eigenthings"):
        out["eigenthings HessianOperator.matvec"] = lambda m, d: eigenthings.HessianOperator(
            m, d, eigenthings.supervised_loss(ce)).matvec(v)
    if curvlinops := peer("curvlinops"):
        out["curvlinops HessianLinearOperator @ v"] = lambda m, d: (
            curvlinops.HessianLinearOperator(m, nn.CrossEntropyLoss(), list(m.parameters()), d,
                                             check_deterministic=False) @ v)
    return out


def cnn_mode_traps(model: nn.Module, x, y, batch_size: int) -> None:
    """Two checks of vᵀHv for one fixed v, each tool against itself or against ours:
    handed the model in ``train()`` mode (over the same tool in ``eval()``; also whether it
    changed the model's mode and whether batch norm's running statistics moved, i.e. batch norm
    ran in train mode), and handed a stream whose last batch is smaller (over ours: the
    per-sample mean over all images)."""
    v = torch.randn(ds.count_params(model), generator=torch.Generator().manual_seed(7))
    data = Stream(x, y, batch_size)
    products = cnn_products(model, v)
    print("\nBatch norm: each tool handed the model in train() mode; vᵀHv for one fixed v, over\n"
          "the same tool's vᵀHv in eval mode")
    with warnings.catch_warnings():  # PyHessian's backward(create_graph=True) into p.grad
        warnings.filterwarnings("ignore", "Using backward.. with create_graph=True")
        for label, product in products.items():
            ref = float(v @ product(fresh(model).eval(), data).detach())
            m = fresh(model).train()
            stats = copy.deepcopy([b for k, b in m.state_dict().items() if "running" in k])
            error = ""
            try:
                ratio = f"{float(v @ product(m, data).detach()) / ref:.4f}"
            except Exception as e:  # the peer's own failure is the finding
                first = str(e).splitlines()[0]
                ratio, error = "fails", f"\n    {type(e).__name__}: {first[:66]}..."
            moved = any(not torch.equal(a, b) for a, b in zip(
                stats, [b for k, b in m.state_dict().items() if "running" in k], strict=True))
            print(f"  {label:36s} {ratio:>6s}; left in {'train' if m.training else 'eval'} "
                  f"mode; running statistics {'MOVED' if moved else 'unchanged'}{error}")
        try:
            hvp(fresh(model).train(), F.cross_entropy, data, mode="train")
            print(f"  {TRAIN_MODE:36s} ran")
        except ValueError as e:
            print(f"  {TRAIN_MODE:36s} refused: {str(e)[:45]}...")
        uneven = Stream(x, y, batch_size + batch_size // 2)
        sizes = [len(b[0]) for b in uneven]
        print(f"Uneven batches: the {len(x)} images in batches of {sizes[0]}, the last of "
              f"{sizes[-1]}; eval mode;\nvᵀHv over ours (the per-sample mean)")
        ours = None
        for label, product in products.items():
            q = float(v @ product(fresh(model), uneven).detach())
            ours = ours or q
            print(f"  {label:36s} {q / ours:.4f}")


def cnn_main(args) -> None:
    """The convolutional case: problem, references, the tools in fresh processes, traps."""
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    model, x, y = cnn_problem(args.cnn_batches, args.cnn_batch_size)
    print(f"\nCNN with batch norm (eval mode): {ds.count_params(model)} parameters, "
          f"{len(x)} MNIST images streamed\nas {args.cnn_batches} batches of "
          f"{args.cnn_batch_size}, float32, {args.threads} thread(s), median of {args.rounds} "
          f"interleaved rounds, each run in a\nfresh process; load {load:.2f}")
    ref = cnn_references(model, x, y, args.cnn_batch_size, args.cnn_ref_products)
    cnn_mode_traps(model, x, y, args.cnn_batch_size)
    rows = cnn_measure(model, x, y, args, ref)
    cnn_table("CNN top Hessian eigenvalue (error: relative, vs float64 Lanczos)",
              {k: r for k, r in rows.items() if r["task"] == "top1"}, "deepscope Lanczos")
    cnn_table(f"CNN trace at {CNN_PRODUCTS} products (error: relative, vs float64 Hutch++ with "
              f"{args.cnn_ref_products} products, ± {ref['se'] / abs(ref['trace']):.1%})",
              {k: r for k, r in rows.items() if r["task"] == "trace"}, "deepscope hutch++")
    print(f"  cnn group: {time.perf_counter() - t0:.0f} s; load {os.getloadavg()[0]:.2f} after")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ref-products", type=int, default=600,
                    help="Hessian-vector products of the float64 Hutch++ trace reference")
    ap.add_argument("--cases", default="top5,trace,density,surface,cnn")
    ap.add_argument("--cnn-batches", type=int, default=8, help="batches streamed (cnn)")
    ap.add_argument("--cnn-batch-size", type=int, default=32)
    ap.add_argument("--cnn-ref-products", type=int, default=150,
                    help="products of the float64 Hutch++ trace reference (cnn)")
    ap.add_argument("--cnn-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cnn_child:
        print(json.dumps(cnn_child(json.loads(args.cnn_child))))
        return
    torch.set_num_threads(args.threads)
    for name in PEERS:
        peer(name)
    wanted = args.cases.split(",")
    if set(wanted) - {"cnn"}:
        mlp_main(args, wanted)
    if "cnn" in wanted:
        cnn_main(args)


def mlp_main(args, wanted: list) -> None:
    """The MLP cases: one batch in memory, timed in this process."""
    model, batch = problem()
    print(f"{ds.count_params(model)} parameters, {len(batch[0])} images, float32, "
          f"{args.threads} thread(s), median of {args.rounds} interleaved rounds")
    ref = references(model, batch, args.ref_products)
    pyhessian_trap(model, batch)
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
