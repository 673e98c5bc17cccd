"""Curvature of the loss: the Hessian, its products, spectrum, trace and density.

H(θ) = ∇²_θ L(θ) is a P×P symmetric matrix. Three ways to touch it, cheapest first:

* **Hessian-vector products** v ↦ Hv, never forming H (Pearlmutter, 1994). Two exact ways:
  *forward-over-reverse*, the directional derivative of the gradient, ``jvp(grad(L), θ, v)``,
  and *double backward*, ∂(gᵀv)/∂θ with the graph of g = ∇L built once and reused for every v.
  Both cost a small multiple of one gradient; ``benchmarks/curvature.py`` measures which is
  faster (double backward, 2.5× on a 269k-parameter MLP), and ``method="auto"`` uses it.
* **Matrix-free spectral estimates** on top of the products (:mod:`deepscope.probes.linalg`):
  the extreme eigenvalues by Lanczos, the trace by Hutchinson / Hutch++, the spectral density
  by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao, 2019).
* **The dense Hessian**, for small models (P up to a few thousand): symmetrised, and
  accumulated batch by batch so memory is bounded by one batch. For an ensemble of
  members of one architecture all Hessians come from one batched computation.

The **minimal ratio** of the optimisation study — the share of positive eigenvalues at a
critical point — is read off the dense spectrum with an explicit tolerance τ: eigenvalues in
[−τ, τ] are numerically zero and counted as not positive, and τ is returned with the answer.
Two versions: over all P eigenvalues, #(λ > τ)/P, which a singular or sloppy Hessian pushes
below 1 even at a minimum, and over the resolved ones, #(λ > τ)/#(|λ| > τ), which is 1 at
every minimum. :func:`curvature_signature` gives the counts for a whole range of τ at once.

**Precision.** Every probe here works in the model's dtype unless ``dtype=`` says otherwise,
as PyHessian, curvlinops and hessian-eigenthings do: a float32 model gives float32 products
and float32 Lanczos. What float64 buys, measured by ``benchmarks/peers.py`` (784-256-256-10
tanh MLP, 2 048 MNIST images, 1 thread, float32 model; medians of 3 rounds on a shared
2-core machine, load 2–5): the top-5 eigenvalues come out to 6.4e-6 relative error in
float32 (1.62 s) and 4.3e-14 in float64 (3.80 s, 2.35× the time), against float64 Lanczos
to 1e-10. A Hutch++ trace of 99 products differs between float32 and float64 by 1.2e-6
relative from the same draws, while its sampling error is 1.5e-2 (float64: 2.2× the time);
an SLQ density of 2 × 60 steps, by 2.6e-6 in L1 (float64: 2.2× the time). Float32 thus
costs nothing a stochastic estimate can see, and holds eigenvalues to about 1e-5 relative;
float64 buys digits beyond that.
Callers that need float64 ask for it: the minimal ratio (eigenvalues near zero are counted
against τ = 1e-6·max|λ|, below float32 rounding of the Hessian) and the critical-point search
(‖∇L‖ of 1e-8 is below float32 noise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap
from torch.func import hessian as func_hessian

from ..params import Selection, blocks, check_mode, get_theta, get_thetas
from . import linalg
from .batches import (
    Batch,
    Data,
    Loss,
    batches,
    refuse_batch_norm,
    start,
    subsets,
    theta_objective,
    twice_differentiable,
)

HVP_METHODS = ("fwd-rev", "rev-rev")
# benchmarks/curvature.py, 784-256-256-10 MLP, 2 048 MNIST images, 1 CPU thread, torch 2.13:
# double backward with the graph reused 37 ms per product, forward-over-reverse 92 ms.
DEFAULT_HVP = "rev-rev"


def _theta(model: nn.Module, dtype: torch.dtype | None, params: Selection = None) -> Tensor:
    """The flat θ ``(P,)`` of the ``params`` selected in ``dtype`` (None: the model's own)."""
    theta = get_theta(model, params)
    return theta.to(dtype) if dtype else theta


def mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error, ``F.mse_loss`` written out so forward-over-reverse works on it."""
    return (output - target).pow(2).mean()


# --- Hessian-vector products ----------------------------------------------------------------


def hvp(model: nn.Module, loss_fn: Loss, batch: Data, *, method: str = "auto",
        dtype: torch.dtype | None = None, params: Selection = None,
        mode: str = "eval") -> Callable[[Tensor], Tensor]:
    """The map ``v (P,) ↦ H v (P,)`` at the model's current θ (exact, no finite differences).

    ``params`` selects the parameters θ holds (a glob such as ``"layer4.*"``, a list of
    names or a predicate ``(name, param) -> bool``; :func:`deepscope.params.select`), the
    others held fixed: H is then that block of the full Hessian, P the selected count.
    ``mode``: the model runs in ``"eval"`` (default) or ``"train"`` mode during every
    product, its own mode restored after each; batch norm in train mode is refused (the loss
    would depend on the batch composition, not be one fixed function of θ). Dropout in train
    mode draws new masks whenever the loss is evaluated, so products of several batches (or
    of ``"fwd-rev"``) are not of one matrix either: curvature wants ``"eval"``.

    ``method``: ``"fwd-rev"`` (``jvp`` of ``grad``), ``"rev-rev"`` (double backward through a
    gradient graph), or ``"auto"`` (:data:`DEFAULT_HVP`, the one ``benchmarks/curvature.py``
    measured faster). In torch 2.13 ``F.mse_loss`` has no forward-mode rule for its backward,
    so ``"fwd-rev"`` needs :func:`mse` instead. ``dtype``: of θ, the inputs and the products
    (default None: the model's).

    Each product is one pass over the data. With one batch in memory, ``"rev-rev"`` builds its
    gradient graph once and reuses it for every product; with several batches it rebuilds
    each batch's graph per product and frees it, so memory stays that of one batch (keeping
    every batch's graph would grow with the data: ``benchmarks/memory.py``).
    """
    method = DEFAULT_HVP if method == "auto" else method
    if method not in HVP_METHODS:
        raise ValueError(f"unknown hvp method {method!r}; choose from {HVP_METHODS} or 'auto'")
    refuse_batch_norm(model, check_mode(mode))
    f, data, theta = start(model, loss_fn, batch, dtype, params, mode)
    f = twice_differentiable(f)
    if method == "fwd-rev":
        g = grad(f)

        def fwd_rev(v: Tensor) -> Tensor:
            v = v.to(theta.dtype)
            return sum(w * jvp(lambda t, b=b: g(t, b), (theta,), (v,))[1] for b, w in data)

        return fwd_rev
    leaf = theta.detach().requires_grad_(True)
    if not data.single:
        def streamed(v: Tensor) -> Tensor:
            v = v.to(leaf.dtype)
            return sum(w * torch.autograd.grad(_gradient_graph(f, leaf, b), leaf, v)[0]
                       for b, w in data).detach()

        return streamed
    ((only, _),) = data
    graph = _gradient_graph(f, leaf, only)

    def product(v: Tensor) -> Tensor:
        v = v.to(leaf.dtype)
        return torch.autograd.grad(graph, leaf, v, retain_graph=True)[0].detach()

    return product


def _gradient_graph(f: Callable[[Tensor, Batch], Tensor], leaf: Tensor, batch: Batch) -> Tensor:
    """∇f(θ, batch) at ``leaf`` with its graph kept, for a backward pass through it."""
    return torch.autograd.grad(f(leaf, batch), leaf, create_graph=True)[0]


# --- dense Hessians ---------------------------------------------------------------------------


def hessian(model: nn.Module | Sequence[nn.Module], loss_fn: Loss, batch: Data, *,
            dtype: torch.dtype | None = None, params: Selection = None, mode: str = "eval",
            by: str | None = None) -> Tensor | dict[str, Tensor]:
    """The dense, symmetrised Hessian ∇²_θ L: ``(P, P)``, or ``(M, P, P)`` for M members, in
    ``dtype`` (default: the model's).

    Accumulated chunk by chunk (memory of one chunk). With a sequence of members of one
    architecture, all M Hessians come from one batched computation (:func:`ensemble_hessians`).
    ``params``, ``mode``: as in :func:`hvp` (P the selected count; the block of the full
    Hessian). ``by="module"``: ``{module name: its block}`` (:func:`per_block`).
    """
    if by is not None:
        return per_block(hessian, model, loss_fn, batch, by=by, params=params, dtype=dtype,
                         mode=mode)
    if not isinstance(model, nn.Module):
        return ensemble_hessians(model, loss_fn, batch, dtype=dtype, params=params, mode=mode)
    refuse_batch_norm(model, check_mode(mode))
    f, data, theta = start(model, loss_fn, batch, dtype, params, mode)
    H = sum(w * func_hessian(twice_differentiable(f))(theta, b) for b, w in data)
    return (H + H.T) / 2


def ensemble_hessians(models: Sequence[nn.Module], loss_fn: Loss, batch: Data, *,
                      dtype: torch.dtype | None = None, theta: Tensor | None = None,
                      params: Selection = None, mode: str = "eval") -> Tensor:
    """Dense Hessians of M members of one architecture at once: ``(M, P, P)``, symmetrised.

    The members' losses are independent, so ∇ of Σ_m L_m is every member's gradient at once,
    and one more backward pass of its i-th column, Σ_m ∂_i L_m, gives row i of all M Hessians
    together: P backward passes for M·P rows, instead of M separate ``torch.func.hessian``
    calls (P is small wherever dense Hessians make sense). Measured for 100 tanh MLPs of 141
    parameters: 2–3 ms per Hessian, vs 6–16 ms for ``vmap`` of ``torch.func.hessian`` or of
    ``jacrev(jacrev)`` (``benchmarks/curvature.py``). ``theta`` (M, P) overrides the members'
    current parameters. ``dtype`` defaults to that of the parameters (or of ``theta``).
    ``params``, ``mode``: as in :func:`hvp` (``theta`` then holds the selected ones).
    """
    refuse_batch_norm(models[0], check_mode(mode))
    stacked = get_thetas(models, params) if theta is None else theta
    dtype = dtype or stacked.dtype
    leaf = stacked.to(dtype).detach().requires_grad_(True)
    M, P = leaf.shape
    data = batches(batch, dtype)
    f = twice_differentiable(theta_objective(models[0], loss_fn, data, params, mode))
    H = torch.zeros(M, P, P, dtype=dtype, device=leaf.device)
    for b, w in data:
        losses = vmap(f, in_dims=(0, None))(leaf, b)
        (g,) = torch.autograd.grad(losses.sum(), leaf, create_graph=True)  # (M, P)
        for i in range(P):
            (row,) = torch.autograd.grad(g[:, i].sum(), leaf, retain_graph=i < P - 1)
            H[:, i] += w * row
    return (H + H.transpose(1, 2)) / 2


# --- spectra ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """A probe repeated R times (probe seeds, data subsets): the values and their spread.

    Attributes:
        values: ``(R, ...)`` float64, one row per run — ``(R, k)`` eigenvalues, ``(R,)``
            traces, ``(R, G)`` densities on ``grid``; runs in the order subset by subset,
            seeds within a subset.
        mean: ``(...)`` the mean over the runs (axis 0).
        std: ``(...)`` their sample standard deviation (ddof=1, ``np.std(values, 0, ddof=1)``).
        grid: ``(G,)`` where a density is evaluated (the first run's grid and smoothing, used
            for every run); None for eigenvalues and traces.
    """

    mean: np.ndarray
    std: np.ndarray
    values: np.ndarray
    grid: np.ndarray | None = None


def spread(values: np.ndarray | Sequence, grid: np.ndarray | None = None) -> Spread:
    """:class:`Spread` of runs ``values`` ``(R, ...)``, R ≥ 2."""
    v = np.asarray(values, dtype=np.float64)
    return Spread(mean=v.mean(0), std=v.std(0, ddof=1), values=v, grid=grid)


def runs(batch: Data, seed: int, seeds: int | None, parts: int | None
         ) -> list[tuple[Data, int]]:
    """``(data, seed)`` of every run: ``parts`` disjoint subsets of the data (round-robin by
    batch, :func:`~.batches.subsets`) or the whole, each with seeds ``seed, seed + 1, ...,
    seed + seeds − 1`` (or ``seed`` alone)."""
    for name, k in (("seeds", seeds), ("subsets", parts)):
        if k is not None and k < 2:
            raise ValueError(f"{name} must be ≥ 2 (a spread needs two runs), got {k}")
    data = subsets(batch, parts) if parts else [batch]
    return [(d, s) for d in data for s in range(seed, seed + (seeds or 1))]


def per_block(probe: Callable[..., Any], model: nn.Module | Sequence[nn.Module],
              loss_fn: Loss, batch: Data, *, by: str = "module", params: Selection = None,
              **kwargs: Any) -> dict[str, Any]:
    """``{module name: probe(model, loss_fn, batch, params=its parameters, **kwargs)}`` for
    every module that owns selected trainable parameters directly (``""`` for the root):
    per-block spectra, traces or Hessians in one call, each block's own curvature with every
    other parameter held fixed (the diagonal blocks of the full Hessian). ``model`` may be
    members of one architecture where ``probe`` takes them (:func:`hessian`)."""
    if by != "module":
        raise ValueError(f"by must be 'module' (or None), got {by!r}")
    one = model if isinstance(model, nn.Module) else model[0]
    return {name: probe(model, loss_fn, batch, params=names, **kwargs)
            for name, names in blocks(one, params).items()}


def hessian_eigenvalues(model: nn.Module, loss_fn: Loss, batch: Data, *, k: int = 5,
                        which: str = "largest", tol: float = 1e-6, max_steps: int | None = None,
                        seed: int = 0, method: str = "auto", dtype: torch.dtype | None = None,
                        params: Selection = None, mode: str = "eval", by: str | None = None,
                        seeds: int | None = None, subsets: int | None = None
                        ) -> linalg.EigResult | Spread | dict[str, Any]:
    """The ``k`` largest (or smallest, most negative) Hessian eigenvalues by Lanczos with full
    reorthogonalisation on Hessian-vector products; see :func:`linalg.eigsh`.

    In ``dtype`` (default None: the model's). Float32 holds eigenvalues to about 1e-5
    relative (6.4e-6 on the module docstring's MLP), float64 to 1e-13 at 2.35× the time.

    ``params``, ``mode``: as in :func:`hvp`. ``by="module"``: ``{module name: result}`` per
    block (:func:`per_block`). ``seeds=R``: R Lanczos start vectors (seeds ``seed, ...,
    seed + R − 1``); ``subsets=S``: S disjoint subsets of the batches (round-robin); either
    returns a :class:`Spread` of the eigenvalues, ``values (R·S, k)``, instead of one result.
    """
    kw = dict(k=k, which=which, tol=tol, max_steps=max_steps, method=method, dtype=dtype,
              mode=mode)
    if by is not None:
        return per_block(hessian_eigenvalues, model, loss_fn, batch, by=by, params=params,
                         seed=seed, seeds=seeds, subsets=subsets, **kw)
    if seeds is not None or subsets is not None:
        return spread([hessian_eigenvalues(model, loss_fn, d, seed=s, params=params, **kw)
                       .values.detach().cpu().double().numpy()
                       for d, s in runs(batch, seed, seeds, subsets)])
    theta = _theta(model, dtype, params)
    mv = hvp(model, loss_fn, batch, method=method, dtype=dtype, params=params, mode=mode)
    return linalg.eigsh(mv, theta.numel(), k=k, which=which, tol=tol, max_steps=max_steps,
                        seed=seed, dtype=theta.dtype, device=theta.device)


def hessian_trace(model: nn.Module, loss_fn: Loss, batch: Data, *, samples: int = 100,
                  estimator: str = "hutch++", seed: int = 0, method: str = "auto",
                  dtype: torch.dtype | None = None, params: Selection = None,
                  mode: str = "eval", by: str | None = None, seeds: int | None = None,
                  subsets: int | None = None) -> linalg.TraceEstimate | Spread | dict[str, Any]:
    """tr(H) by Hutchinson (``estimator="hutchinson"``) or Hutch++ with ``samples`` products.

    In ``dtype`` (default None: the model's): float32 changes the estimate by ~1e-6
    relative, far below its sampling error (measured in the module docstring).
    ``params``, ``mode``, ``by``, ``seeds``, ``subsets``: as in :func:`hessian_eigenvalues`;
    a :class:`Spread` holds the estimates, ``values (R·S,)``.
    """
    kw = dict(samples=samples, estimator=estimator, method=method, dtype=dtype, mode=mode)
    if by is not None:
        return per_block(hessian_trace, model, loss_fn, batch, by=by, params=params,
                         seed=seed, seeds=seeds, subsets=subsets, **kw)
    if seeds is not None or subsets is not None:
        return spread([hessian_trace(model, loss_fn, d, seed=s, params=params, **kw).estimate
                       for d, s in runs(batch, seed, seeds, subsets)])
    if estimator not in ("hutchinson", "hutch++"):
        raise ValueError(f"unknown estimator {estimator!r}; choose 'hutchinson' or 'hutch++'")
    mv = hvp(model, loss_fn, batch, method=method, dtype=dtype, params=params, mode=mode)
    theta = _theta(model, dtype, params)
    n = theta.numel()
    if estimator == "hutchinson":
        return linalg.hutchinson(mv, n, samples=samples, seed=seed, dtype=theta.dtype,
                                 device=theta.device)
    return linalg.hutchpp(mv, n, matvecs=samples, seed=seed, dtype=theta.dtype,
                          device=theta.device)


def spectral_density(model: nn.Module, loss_fn: Loss, batch: Data, *, steps: int = 60,
                     probes: int = 8, seed: int = 0, method: str = "auto",
                     dtype: torch.dtype | None = None, params: Selection = None,
                     mode: str = "eval", by: str | None = None, seeds: int | None = None,
                     subsets: int | None = None, grid: Tensor | Sequence[float] | None = None,
                     sigma: float | None = None) -> linalg.Density | Spread | dict[str, Any]:
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature (weights sum to 1).

    In ``dtype`` (default None: the model's): float32 moves the density by ~1e-6 in L1,
    far below the probes' sampling noise (measured in the module docstring). ``grid``
    ``(G,)`` and ``sigma``: where and how smoothly the density is drawn
    (:func:`linalg.spectral_density`). ``params``, ``mode``, ``by``, ``seeds``, ``subsets``:
    as in :func:`hessian_eigenvalues`; a :class:`Spread` holds the densities, ``values
    (R·S, G)``, all on the first run's grid with its smoothing (``Spread.grid``).
    """
    kw = dict(steps=steps, probes=probes, method=method, dtype=dtype, mode=mode)
    if by is not None:
        return per_block(spectral_density, model, loss_fn, batch, by=by, params=params,
                         seed=seed, seeds=seeds, subsets=subsets, grid=grid, sigma=sigma, **kw)
    if seeds is not None or subsets is not None:
        out: list[linalg.Density] = []
        for d, s in runs(batch, seed, seeds, subsets):
            first = out[0] if out else None
            out.append(spectral_density(
                model, loss_fn, d, seed=s, params=params, **kw,
                grid=first.grid if first else grid, sigma=first.sigma if first else sigma))
        return spread([o.density.detach().cpu().double().numpy() for o in out],
                      grid=out[0].grid.detach().cpu().double().numpy())
    mv = hvp(model, loss_fn, batch, method=method, dtype=dtype, params=params, mode=mode)
    theta = _theta(model, dtype, params)
    return linalg.spectral_density(mv, theta.numel(), steps=steps, probes=probes, seed=seed,
                                   grid=grid, sigma=sigma, dtype=theta.dtype,
                                   device=theta.device)


# --- the minimal ratio ----------------------------------------------------------------------------


@dataclass
class MinimalRatio:
    """Share of positive Hessian eigenvalues. Arrays have a leading member axis ``(M,)``.

    Attributes:
        ratio: #(λ > τ) / P, eigenvalues within τ of zero counted as not positive.
        ratio_zero: #(λ > 0) / P, the same with τ = 0 (sensitive to rounding noise).
        ratio_resolved: #(λ > τ) / #(|λ| > τ), the share of positive curvature among the
            eigenvalues outside ±τ: 1 at any minimum, however many eigenvalues are near zero.
        negative: #(λ < −τ) / P, the share of descent directions (the index / P). A point is
            a minimum when it is 0 — with a singular Hessian (P > N, symmetries) the ratio
            stays below 1 even at a minimum, so minima are told apart by this, not by ratio 1.
        eigenvalues: ``(M, P)`` ascending, float64.
        tau: ``(M,)`` the tolerance used for each member.
    """

    ratio: np.ndarray
    ratio_zero: np.ndarray
    ratio_resolved: np.ndarray
    negative: np.ndarray
    eigenvalues: np.ndarray
    tau: np.ndarray


def ratio_from_eigenvalues(eigenvalues: np.ndarray | Tensor, *, tol: float | None = None,
                           rel_tol: float = 1e-6) -> MinimalRatio:
    """Minimal ratio of spectra ``(..., P)``; τ = ``tol`` or ``rel_tol · max|λ|`` per spectrum."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam2 = lam.reshape(-1, lam.shape[-1])
    tau = (np.full(len(lam2), tol) if tol is not None
           else rel_tol * np.abs(lam2).max(axis=1))
    positive, negative = (lam2 > tau[:, None]).sum(1), (lam2 < -tau[:, None]).sum(1)
    P = lam2.shape[1]
    return MinimalRatio(ratio=positive / P, ratio_zero=(lam2 > 0).mean(1),
                        ratio_resolved=positive / np.maximum(positive + negative, 1),
                        negative=negative / P, eigenvalues=lam2, tau=tau)


@dataclass
class Signature:
    """Eigenvalue counts of M spectra at T tolerances; every array is ``(M, T)``.

    Attributes:
        positive: #(λ > τ).
        negative: #(λ < −τ) — the index; a point is a minimum at this τ when it is 0.
        null: #(|λ| ≤ τ), numerically zero at this τ.
        tau: τ = ``rel_tol · max|λ|`` of each spectrum.
    """

    positive: np.ndarray
    negative: np.ndarray
    null: np.ndarray
    tau: np.ndarray

    @property
    def ratio_resolved(self) -> np.ndarray:
        """#(λ > τ) / #(|λ| > τ): the minimal ratio over the non-null eigenvalues, ``(M, T)``."""
        return self.positive / np.maximum(self.positive + self.negative, 1)


def curvature_signature(eigenvalues: np.ndarray | Tensor,
                        rel_tols: Sequence[float] | np.ndarray) -> Signature:
    """Counts of positive, negative and near-zero eigenvalues of spectra ``(M, P)`` (or one
    ``(P,)``) at each τ = ``rel_tol · max|λ|``, ``rel_tol`` in ``rel_tols`` ``(T,)``.

    Sweeping τ shows whether a classification (minimum: no λ < −τ) depends on the choice of
    τ; τ relative to max|λ| makes it independent of the loss's scale.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = lam.reshape(-1, lam.shape[-1])[:, None, :]  # (M, 1, P)
    tau = np.asarray(rel_tols, dtype=np.float64)[None, :] * np.abs(lam).max(-1)  # (M, T)
    positive = (lam > tau[..., None]).sum(-1)
    negative = (lam < -tau[..., None]).sum(-1)
    return Signature(positive=positive, negative=negative,
                     null=lam.shape[-1] - positive - negative, tau=tau)


def minimal_ratio(model: nn.Module | Sequence[nn.Module], loss_fn: Loss, batch: Data, *,
                  tol: float | None = None, rel_tol: float = 1e-6, params: Selection = None,
                  mode: str = "eval") -> MinimalRatio:
    """The minimal ratio #(λ > τ)/P of the dense float64 Hessian of the loss on ``batch``.

    Pass the **full training set** (one batch or a stream of batches) and the **original**
    loss: that is the Hessian whose signature classifies a critical point. ``τ`` is ``tol`` if
    given, else ``rel_tol · max|λ|``; both τ and the τ = 0 ratio are returned. ``params``,
    ``mode``: as in :func:`hvp` (the ratio of that block of the Hessian, P its size).
    """
    # float64 whatever the model's dtype: τ = 1e-6·max|λ| lies below float32 rounding of H.
    H = hessian(model, loss_fn, batch, dtype=torch.float64, params=params, mode=mode)
    return ratio_from_eigenvalues(torch.linalg.eigvalsh(H).cpu(), tol=tol, rel_tol=rel_tol)
