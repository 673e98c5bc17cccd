"""What happens when the gradient norm is almost zero: the minimal ratio at critical points.

Question: at points where ∇L ≈ 0, what share of the Hessian's eigenvalues is positive (the
"minimal ratio": 1 at a minimum, < 1 at a saddle), and how does it relate to the loss there?
Random-matrix and spin-glass arguments predict that critical points of high loss are saddles
with many descent directions and that the share of negative eigenvalues shrinks as the loss
falls, so low-loss critical points are (nearly) minima (Bray & Dean, 2007; Dauphin et al.,
2014; Pennington & Bahri, 2017).

Method (STUDIES.md, ``min-ratio``), for ``runs`` independent initialisations at once:
1. train a small tanh MLP (≈ 141 parameters) on a 1-D target with full-batch Adam to a plateau;
2. minimise ‖∇θL‖² by double backprop (Adam), then Newton-MR steps on ∇L = 0 (pseudo-inverse
   of H restricted to eigenvalues above ``pinv_rtol``·max|λ|, backtracking line search) until
   ‖∇L‖ < ``grad_tol`` or the step limits;
3. the dense Hessian of the **original MSE on the full training set** with respect to **all**
   parameters (weights and biases), in float64, symmetrised, ``eigvalsh``;
4. minimal ratio = #(λ > τ)/P with τ = ``rel_tol`` · max|λ| (also reported with τ = 0); a
   point is a minimum when no eigenvalue lies below −τ (with a singular Hessian the ratio of a
   minimum is below 1, so "ratio = 1" would miss degenerate minima).
Runs that miss the gradient tolerance are flagged, and so are "gradient-flat" points whose
remaining gradient lies mostly (> 50 %) in the Hessian's near-null space (|λ| ≤ τ; Frye et al.,
2019): neither is mixed into the statistics of critical points.

Why these defaults: a gradient tolerance of 1e-4, not 1e-6: in float64, with Adam and
Newton-MR, none of 20 trial runs got below 1e-6 and the best two reached about 1e-5 — the
remaining gradient lies along Hessian eigenvalues 10⁶–10⁷ times smaller than the largest, the
slow directions that make critical points of neural nets hard to reach (Frye et al., 2019).
tanh keeps L smooth (ReLU nets have Hessians that jump and exactly-zero eigenvalues from dead
units); 141 parameters make 100 dense Hessians cheap; with 64 training points (P > N) the net
can interpolate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import plot as P
from ..context import Context
from ..data import load
from ..data.functions import FUNCTIONS
from ..models import ACTIVATIONS, count_params, mlp
from ..probes.critical import find_critical_point, gradient_flat_share
from ..probes.gradient import full_gradient
from ..probes.hessian import ensemble_hessians, ratio_from_eigenvalues
from ..train import train
from .base import Expectation, Study, field, require, spearman


@dataclass(frozen=True)
class Config:
    function: str = field("sinc", "1-D target: sinc, sign or square")
    n_train: int = field(64, "training points on (0, 1] (the Hessian is of the loss on all)")
    width: int = field(10, "hidden width of the 2-hidden-layer MLP (10 → 141 parameters)")
    activation: str = field("tanh", "hidden activation (smooth: tanh)")
    runs: int = field(100, "independent initialisations, all processed together")
    chunk: int = field(100, "runs per vectorised piece (a cached unit of work)")
    train_epochs: int = field(3000, "full-batch Adam epochs before the critical-point search")
    lr: float = field(1e-2, "Adam learning rate of the training phase")
    crit_steps: int = field(500, "Adam steps on ‖∇L‖²")
    crit_lr: float = field(1e-3, "Adam learning rate on ‖∇L‖²")
    newton_steps: int = field(30, "Newton-MR steps (pseudo-inverse, line search) after Adam")
    pinv_rtol: float = field(1e-3, "Newton steps ignore eigenvalues below pinv_rtol · max|λ|")
    grad_tol: float = field(1e-4, "‖∇L‖ below which a point counts as critical")
    rel_tol: float = field(1e-6, "τ = rel_tol · max|λ|: eigenvalues within τ of 0 are zero")

    def __post_init__(self):
        require(self.function in FUNCTIONS, f"unknown function {self.function!r}; choose from "
                f"{sorted(FUNCTIONS)}")
        require(self.n_train >= 2 and self.width >= 1 and self.runs >= 1 and self.chunk >= 1,
                "n_train ≥ 2, width ≥ 1, runs ≥ 1 and chunk ≥ 1 are required")
        require(self.train_epochs >= 0 and self.crit_steps >= 0 and self.newton_steps >= 0,
                "step counts must be ≥ 0")
        require(self.lr > 0 and self.crit_lr > 0, "learning rates must be > 0")
        require(self.grad_tol > 0 and self.rel_tol >= 0, "grad_tol > 0 and rel_tol ≥ 0")
        require(self.activation in ACTIVATIONS,
                f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")


SCALES = {
    "quick": {"runs": 12, "chunk": 12, "train_epochs": 300, "crit_steps": 100,
              "newton_steps": 5, "width": 6},
    "full": {"runs": 400, "train_epochs": 20000, "crit_steps": 5000, "newton_steps": 100},
}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    """Train, search for critical points, take Hessian spectra; ``runs`` members per chunk."""
    # On the CPU whatever --device says: 141-parameter nets in float64 with a dense Hessian per
    # Newton step are latency-bound, and a GPU would only add a host sync per step.
    data = load(cfg.function, n=cfg.n_train, n_test=16).to(dtype=torch.float64)
    batch = (data.x_train, data.y_train)

    def piece(start: int) -> dict[str, np.ndarray]:
        seeds = range(start, min(start + cfg.chunk, cfg.runs))
        models = [mlp(1, 1, 2, width=cfg.width, activation=cfg.activation, seed=s).double()
                  for s in seeds]
        trace = train(models, data, optimizer="adam", lr=cfg.lr,
                      epochs=cfg.train_epochs, eval_every=max(cfg.train_epochs, 1),
                      dtype=torch.float64, device="cpu", progress=False, seed=start)
        cp = find_critical_point(models, F.mse_loss, batch, tol=cfg.grad_tol,
                                 max_steps=cfg.crit_steps, lr=cfg.crit_lr,
                                 newton_steps=cfg.newton_steps, pinv_rtol=cfg.pinv_rtol)
        H = ensemble_hessians(models, F.mse_loss, batch)
        lam, _ = torch.linalg.eigh(H)
        mr = ratio_from_eigenvalues(lam.numpy(), rel_tol=cfg.rel_tol)
        g = torch.stack([_grad(m, batch) for m in models])
        flat = gradient_flat_share(H, g, torch.as_tensor(mr.tau)).numpy()
        return {"trained_loss": trace.train_loss[:, -1], "loss": cp.loss,
                "grad_norm": cp.grad_norm, "converged": cp.converged, "steps": cp.steps,
                "eigenvalues": mr.eigenvalues, "ratio": mr.ratio, "ratio_zero": mr.ratio_zero,
                "negative": mr.negative, "tau": mr.tau, "flat_share": flat}

    pieces = ctx.map(piece, list(range(0, cfg.runs, cfg.chunk)))
    out = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    out["params"] = np.asarray(count_params(mlp(1, 1, 2, width=cfg.width)))
    return out


def _grad(model, batch) -> torch.Tensor:
    return full_gradient(model, F.mse_loss, batch, dtype=torch.float64)


def _classes(result, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks: converged critical points, gradient-flat non-converged points, the rest."""
    conv = result["converged"].astype(bool)
    flat = ~conv & (result["flat_share"] > 0.5)
    return conv, flat, ~conv & ~flat


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Loss vs minimal ratio, coloured by final ‖∇L‖; eigenvalue histograms of a few runs."""
    conv, flat, other = _classes(result, cfg)
    fig, axes = P.figure(1, 1, width=6.4, height=4.4)
    ax = axes[0][0]
    color = np.log10(np.maximum(result["grad_norm"], 1e-300))
    finite = color[np.isfinite(color)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    loss = np.maximum(result["loss"], 1e-300)
    sc = None
    for mask, marker, label in ((conv, "o", f"critical (‖∇L‖ < {cfg.grad_tol:g})"),
                                (flat, "s", "gradient-flat (not critical)"),
                                (other, "x", "did not converge")):
        if mask.any():
            sc = ax.scatter(result["ratio"][mask], loss[mask], c=color[mask], marker=marker,
                            cmap="viridis", vmin=vmin, vmax=vmax, label=f"{label}: {mask.sum()}",
                            s=28, linewidths=1.2)
    ax.set(yscale="log", xlabel=f"minimal ratio  #(λ > τ)/P,  τ = {cfg.rel_tol:g}·max|λ|",
           ylabel="training MSE at the point",
           title=f"{len(loss)} runs, {int(result['params'])} parameters, {cfg.function}")
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="log₁₀ ‖∇L‖ at the point")
    ax.legend(fontsize=8, loc="best")

    fig2, axes2 = P.figure(1, 1, width=6.4, height=3.6)
    ax2 = axes2[0][0]
    order = np.argsort(result["loss"])
    picks = [order[0], order[len(order) // 2], order[-1]] if len(order) >= 3 else order
    lam_all = result["eigenvalues"][picks]
    lam_all = lam_all[np.isfinite(lam_all)]
    lim = max(float(np.abs(lam_all).max()) if lam_all.size else 0.0, 1e-7)
    bins = np.concatenate([-np.logspace(np.log10(lim), -8, 25), [0],
                           np.logspace(-8, np.log10(lim), 25)])
    for i, r in enumerate(picks):
        ax2.hist(result["eigenvalues"][r], bins=bins, histtype="step", lw=1.5, color=P.COLORS[i],
                 label=f"run {r}: loss {result['loss'][r]:.1e}, ratio {result['ratio'][r]:.2f}")
    ax2.set_xscale("symlog", linthresh=1e-8)
    top = int(np.ceil(np.log10(lim)))
    decades = [10.0**k for k in range(top, -9, -3)]  # every third decade: labels must not touch
    ticks = [-d for d in decades] + [0.0] + decades[::-1]
    ax2.set_xticks(ticks, [f"{t:.0e}".replace("e+0", "e").replace("e-0", "e-") if t else "0"
                           for t in ticks], fontsize=8)
    ax2.set(xlabel="Hessian eigenvalue λ (symlog axis, linear within ±1e-8)", ylabel="count",
            title="Hessian spectra: lowest-, median- and highest-loss runs")
    ax2.legend(fontsize=8)
    return {"loss_vs_ratio": fig, "spectra": fig2}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    conv, flat, other = _classes(result, cfg)
    n = len(conv)
    lines = [f"{conv.sum()}/{n} runs reached ‖∇L‖ < {cfg.grad_tol:g} (median "
             f"{np.median(result['steps']):.0f} steps); {flat.sum()} stalled at gradient-flat "
             f"points and {other.sum()} otherwise missed the tolerance — both are excluded "
             "below."]
    if conv.any():
        ratio, loss = result["ratio"][conv], result["loss"][conv]
        minima = result["negative"][conv] == 0
        rho = spearman(ratio, loss)
        zero = 1 - ratio - result["negative"][conv]
        lines.append(
            f"Of the {conv.sum()} critical points, {minima.sum()} are minima (no eigenvalue "
            f"below −τ) and {(~minima).sum()} saddles; τ = {cfg.rel_tol:g}·max|λ| (median τ "
            f"{np.median(result['tau'][conv]):.1e}). Minimal ratio: median "
            f"{np.median(ratio):.3f} (range {ratio.min():.3f}–{ratio.max():.3f}); a median "
            f"{100 * np.median(zero):.0f} % of eigenvalues lie within ±τ of zero"
            + (", so even a minimum has a ratio below 1 here." if np.median(zero) > 0 else "."))
        lines.append(f"Spearman correlation between minimal ratio and loss over critical "
                     f"points: {rho:+.2f} — "
                     + ("lower loss goes with a larger share of positive curvature, as expected "
                        "(Dauphin et al., 2014)." if rho < -0.1 else
                        "not the negative correlation Dauphin et al. (2014) predict."
                        if rho > 0.1 else "no clear relation."))
        if minima.any() and (~minima).any():
            neg = np.median(result["negative"][conv][~minima])
            lines.append(f"Median loss at minima {np.median(loss[minima]):.2e} vs at saddles "
                         f"{np.median(loss[~minima]):.2e} (median share of negative "
                         f"eigenvalues at saddles {neg:.3f}).")
        same = (result["ratio"] == result["ratio_zero"])[conv].mean()
        lines.append(f"With τ = 0 instead, {100 * (1 - same):.0f} % of the critical points "
                     "change ratio: near-zero eigenvalues decide their sign by rounding.")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    conv = result["converged"].astype(bool)
    claim = ("Critical points of lower loss have a larger share of positive Hessian "
             "eigenvalues (saddles of high loss, minima of low loss)")
    ref = "Dauphin et al., 2014; Pennington & Bahri, 2017"
    crit = "Spearman correlation of minimal ratio with loss over converged points < −0.1"
    if conv.sum() < 3:
        return Expectation(claim, ref, crit, None)
    return Expectation(claim, ref, crit,
                       bool(spearman(result["ratio"][conv], result["loss"][conv]) < -0.1))

study = Study("min-ratio", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature)
