"""What happens when the gradient norm is almost zero: the minimal ratio at critical points.

Question: at points where ∇L ≈ 0, what share of the Hessian's curvature is positive (the
"minimal ratio": 1 at a minimum, < 1 at a saddle), and how does it relate to the loss there?
Random-matrix and spin-glass arguments predict that critical points of high loss are saddles
with many descent directions and that the share of negative eigenvalues shrinks as the loss
falls, so low-loss critical points are (nearly) minima (Bray & Dean, 2007; Dauphin et al.,
2014; Pennington & Bahri, 2017).

Method (STUDIES.md, ``min-ratio``), all runs of a group processed together:
1. ``runs`` small tanh MLPs (2 hidden layers of ``width``) are trained with full-batch Adam on
   the MSE of a 1-D target; ``init_runs`` more start the search at their initialisation, to
   sample the high-loss critical points that training leaves behind;
2. the critical-point search (:func:`~deepscope.probes.critical.find_critical_point`):
   saddle-free Newton descent on L (trained runs only), then Levenberg–Marquardt-damped Newton
   on ∇L = 0, until ‖∇L‖ < ``grad_tol`` (float64) or the step limits. Runs that miss the
   tolerance are flagged and kept out of every statistic (drawn as crosses), and so are none
   silently: "gradient-flat" non-converged points (> 50 % of ‖∇L‖² in the Hessian's near-null
   space, Frye et al., 2019) are counted separately;
3. the dense Hessian of the **original MSE on the full training set** with respect to **all**
   parameters (weights and biases), in float64, symmetrised, ``eigvalsh``;
4. for each τ = r·max|λ|, r in ``rel_tols``: #(λ > τ), #(λ < −τ) and #(|λ| ≤ τ); a point is a
   minimum when no eigenvalue lies below −τ; the minimal ratio is taken over the **non-null**
   eigenvalues, #(λ > τ) / #(|λ| > τ), so a minimum has ratio 1 at every τ.

Why these choices (measured on 2 CPU cores shared with other work, float64, 1 thread):
- **N ≫ P.** The old default (64 points, 141 parameters) made every Hessian singular: at its
  73 "critical" points a median 114 of 141 eigenvalues lay within ±τ (τ = 1e-6·max|λ|),
  capping the ratio near 0.2 — it measured the Hessian's rank — and its minima/saddle split
  went from 0/73 at τ = 1e-7·max|λ| to 73/0 at 1e-4 (its Spearman ρ(ratio, loss) from
  +0.46 to −0.28). Now N = 256 = 7.8 P with P = 33 (width 4). Keeping P = 141 would need
  N ≳ 600: 100 dense Hessians took 10 s at P = 141, N = 1024, against 0.34 s now, and the
  search takes one per Newton step.
- **The ratio over non-null eigenvalues.** N ≫ P removes the structural null space but not
  the sloppiness of these nets: at the default's critical points a median 21 of 33
  eigenvalues still lie within 1e-6·max|λ| (at the end of 3000 Adam epochs with N = 1024 and
  P = 141: 77 of 141), because the features of a 1-D input are nearly collinear. Dividing by P
  would again count them; dividing by the resolved ones does not, and a minimum has ratio 1.
- **The search.** From the end of training (20 runs of width 4, N = 512) none of Adam on
  ‖∇L‖² (3000 steps), Newton-MR (60 steps) or LM-damped Newton (150 steps) brought a run
  below ‖∇L‖ = 1e-5: the remaining gradient lies along eigenvalues ~1e-7–1e-5 of both signs,
  where the Newton step is 0.1–40 long and the quadratic model fails (L-BFGS lowered the
  loss a further 40–1500× over 13 000–19 000 iterations without ‖∇L‖ falling below 3e-6).
  Saddle-free Newton crosses those flat regions (median loss 2e-4 → 8e-8 in 90 steps); then
  the damped Newton phase converges. In the default run 84 of 100 trained runs reach
  ‖∇L‖ < 1e-6 (6 without the Newton phase, 0 at the end of training); ``grad_tol`` = 1e-6 is
  where most runs arrive — 1e-8 was reached by 1 of 50 in a trial. On the first 50 trained
  runs of the default: descent + LM 45 converged, descent + Newton-MR (``newton=pinv``, its
  backtracking shortens the sloppy and the stiff components of the step alike) 3, LM alone
  (``descent_steps=0``) 0.
- **Runs from initialisation.** Started there, Newton finds critical points of high loss
  (21 of 50 converge, loss ≈ the targets' variance: constant fits); in a trial 60 and 150
  Newton steps converged the same 19 of 50.
- **Inputs standardised** to mean 0, variance 1: at the end of training it lowers the number
  of eigenvalues within 1e-6·max|λ| from 11 to 5 (of 33, N = 512) and changes no function
  the net can represent (the first layer absorbs the affine map).
- **Cost**: 60 s for the default run vs 62 s for the old default, back to back on the same
  busy machine (the Hessians of 33-parameter nets are cheap; the search's ladder of damping
  values costs gradient evaluations, not Hessians).
- tanh keeps L smooth (ReLU nets have Hessians that jump and exactly-zero eigenvalues from
  dead units).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import plot as P
from ..context import Context
from ..data import load
from ..data.functions import FUNCTIONS
from ..models import ACTIVATIONS, count_params, mlp
from ..probes.critical import NEWTON_METHODS, find_critical_point, gradient_flat_share
from ..probes.hessian import curvature_signature, ensemble_hessians
from ..train import train
from .base import TESTED, Expectation, Study, require, spearman_ci, verdict
from .fields import Checked, field

# Fewest critical points for a correlation and its verdict: a percentile bootstrap of fewer
# pairs resamples the same few values (with 3 points the quick scale's "95 % interval" was
# −1.00 to −0.87 around ρ = −0.87, a verdict from three numbers).
MIN_POINTS = 10


@dataclass(frozen=True)
class Config(Checked):
    function: str = field("sinc", "1-D target", role="data", choices=sorted(FUNCTIONS))
    n_train: int = field(256, "training points (the Hessian is of the loss on all of them); "
                              "256 = 7.8 × the 33 parameters of width 4", role="data", lo=2)
    width: int = field(4, "hidden width of the 2-hidden-layer MLP (4 → 33 parameters)",
                       role="model", lo=1)
    standardize: bool = field(True, "shift and scale the inputs to mean 0, variance 1",
                              role="data")
    activation: str = field("tanh", "hidden activation (smooth: tanh)", role="model",
                            choices=sorted(ACTIVATIONS))
    runs: int = field(100, "trained runs: Adam, then the search from the end of training",
                      role="seeds", lo=0)
    init_runs: int = field(50, "runs whose Newton search starts at initialisation (untrained)",
                           role="seeds", lo=0)
    chunk: int = field(100, "runs per vectorised piece (a cached unit of work)",
                       role="execution", lo=1)
    train_epochs: int = field(1000, "full-batch Adam epochs before the search",
                              role="schedule", lo=0)
    lr: float = field(1e-2, "Adam learning rate of the training phase", role="optimiser",
                      lo=0, lo_open=True)
    crit_steps: int = field(0, "Adam steps on ‖∇L‖² first (0: measured to gain nothing here)",
                            role="measurement", lo=0)
    crit_lr: float = field(1e-3, "Adam learning rate on ‖∇L‖²", role="measurement", lo=0,
                           lo_open=True)
    descent_steps: int = field(100, "saddle-free Newton steps on L (trained runs only)",
                               role="measurement", lo=0)
    newton_steps: int = field(100, "Newton steps on ∇L = 0 after the descent",
                              role="measurement", lo=0)
    newton: str = field("lm", "Newton variant: lm (Levenberg–Marquardt) or pinv (Newton-MR)",
                        role="measurement", choices=NEWTON_METHODS)
    pinv_rtol: float = field(1e-10, "newton=pinv ignores eigenvalues below pinv_rtol · max|λ|",
                             role="measurement")
    grad_tol: float = field(1e-6, "‖∇L‖ below which a point counts as critical",
                            role="measurement", lo=0, lo_open=True)
    rel_tol: float = field(1e-6, "τ = rel_tol · max|λ| of the main figure and the verdict",
                           role="measurement", lo=0, hi=1, hi_open=True)
    rel_tols: tuple[float, ...] = field((1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3),
                                        "the τ/max|λ| swept to test the classification",
                                        role="measurement", lo=0, hi=1, hi_open=True)
    n_boot: int = field(2000, "bootstrap resamples for the correlation's 95 % interval",
                        role="measurement", lo=100)
    boot_seed: int = field(0, "seed of the bootstrap", role="measurement")

    def check(self):
        require(self.runs + self.init_runs >= 1, "at least one run is required "
                "(runs + init_runs ≥ 1)")
        require(self.rel_tol in self.rel_tols, "rel_tol must be one of rel_tols")


SCALES = {
    "quick": {"runs": 8, "init_runs": 4, "chunk": 8, "train_epochs": 150,
              "descent_steps": 10, "newton_steps": 10, "width": 3, "n_train": 96,
              "n_boot": 500},
    "full": {"runs": 400, "init_runs": 200, "train_epochs": 5000, "descent_steps": 300,
             "newton_steps": 300},
}


def _data(cfg: Config):
    """The float64 training set; inputs standardised when ``cfg.standardize``."""
    data = load(cfg.function, n=cfg.n_train, n_test=16).to(dtype=torch.float64)
    if cfg.standardize:
        mu, sd = data.x_train.mean(), data.x_train.std()
        data = dataclasses.replace(data, x_train=(data.x_train - mu) / sd,
                                   x_test=(data.x_test - mu) / sd)
    return data


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    """Train, search for critical points, take Hessian spectra; one piece per chunk of runs."""
    # On the CPU whatever --device says: 33-parameter nets in float64 with a dense Hessian per
    # Newton step are latency-bound, and a GPU would only add a host sync per step.
    data = _data(cfg)
    batch = (data.x_train, data.y_train)
    rel_tols = np.asarray(cfg.rel_tols, dtype=np.float64)

    def piece(item: list) -> dict[str, np.ndarray]:
        group, start = item
        n = cfg.runs if group == 0 else cfg.init_runs
        # Seeds of the from-init group follow the trained ones: no two runs share an init.
        seeds = range(start + group * cfg.runs, min(start + cfg.chunk, n) + group * cfg.runs)
        models = [mlp(1, 1, 2, width=cfg.width, activation=cfg.activation, seed=s).double()
                  for s in seeds]
        epochs = cfg.train_epochs if group == 0 else 0
        trace = train(models, data, optimizer="adam", lr=cfg.lr, epochs=epochs,
                      eval_every=max(epochs, 1), dtype=torch.float64, device="cpu",
                      progress=False, seed=seeds[0])
        # float64 asked for explicitly (the models are float64 too): ‖∇L‖ < grad_tol and the
        # counts of eigenvalues within τ = 1e-6·max|λ| of zero are below float32 rounding.
        cp = find_critical_point(models, F.mse_loss, batch, tol=cfg.grad_tol,
                                 max_steps=cfg.crit_steps, lr=cfg.crit_lr,
                                 descent_steps=cfg.descent_steps if group == 0 else 0,
                                 newton_steps=cfg.newton_steps, newton=cfg.newton,
                                 pinv_rtol=cfg.pinv_rtol, dtype=torch.float64)
        # (M, P, P) at the final points
        H = ensemble_hessians(models, F.mse_loss, batch, dtype=torch.float64)
        lam = torch.linalg.eigvalsh(H)
        sig = curvature_signature(lam.numpy(), rel_tols)  # counts (M, T)
        main = int(np.flatnonzero(rel_tols == cfg.rel_tol)[0])
        flat = gradient_flat_share(H, cp.grad, torch.as_tensor(sig.tau[:, main])).numpy()
        return {"group": np.full(len(models), group), "seed": np.asarray(list(seeds)),
                "trained_loss": trace.train_loss[:, -1], "loss": cp.loss,
                "grad_norm": cp.grad_norm, "converged": cp.converged,
                "phase_grad_norm": cp.phase_grad_norm, "phase_steps": cp.phase_steps,
                "eigenvalues": lam.numpy(), "tau": sig.tau, "positive": sig.positive,
                "negative": sig.negative, "flat_share": flat}

    items = ([[0, s] for s in range(0, cfg.runs, cfg.chunk)]
             + [[1, s] for s in range(0, cfg.init_runs, cfg.chunk)])
    pieces = ctx.map(piece, items)
    out = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    out["params"] = np.asarray(count_params(mlp(1, 1, 2, width=cfg.width)))
    out["rel_tols"] = rel_tols
    out["target_var"] = np.asarray(float(data.y_train.var(unbiased=False)))
    return out



# --- analysis (numpy only: used by plot, findings and literature) ----------------------------


def _groups(result: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks ``(M,)``: converged critical points, gradient-flat misses, other misses."""
    conv = result["converged"].astype(bool)
    flat = ~conv & (result["flat_share"] > 0.5)
    return conv, flat, ~conv & ~flat


def _ratio(result: dict[str, np.ndarray]) -> np.ndarray:
    """``(M, T)`` minimal ratio over the non-null eigenvalues, #(λ > τ) / #(|λ| > τ)."""
    resolved = result["positive"] + result["negative"]
    return result["positive"] / np.maximum(resolved, 1)


def _main(result: dict[str, np.ndarray], cfg: Config) -> int:
    """Index of ``cfg.rel_tol`` in the stored sweep."""
    hits = np.flatnonzero(np.isclose(result["rel_tols"], cfg.rel_tol))
    return int(hits[0]) if hits.size else 0  # (a damaged sweep: show its first τ)


def _correlations(result: dict[str, np.ndarray], cfg: Config) -> np.ndarray:
    """``(T, 3)``: Spearman ρ(ratio, loss) over converged points and its 95 % bootstrap
    interval at each τ (NaN with fewer than :data:`MIN_POINTS` points or a constant ratio)."""
    conv = _groups(result)[0]
    ratio, loss = _ratio(result)[conv], result["loss"][conv]
    if conv.sum() < MIN_POINTS:
        return np.full((ratio.shape[1], 3), np.nan)
    return np.array([spearman_ci(ratio[:, j], loss, seed=cfg.boot_seed, n_boot=cfg.n_boot)
                     for j in range(ratio.shape[1])])


def _fmt_tol(r: float) -> str:
    if not (np.isfinite(r) and r > 0):
        return f"{r:g}"
    k = np.round(np.log10(r))
    return f"1e{int(k)}" if np.isclose(10**k, r) else f"{r:g}"


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Loss vs minimal ratio at the main τ; minima/saddles and ρ across τ; three spectra."""
    return {"loss_vs_ratio": _loss_vs_ratio(result, cfg), "tau_sweep": _tau_sweep(result, cfg),
            "spectra": _spectra(result, cfg)}


def _loss_vs_ratio(result: dict[str, np.ndarray], cfg: Config):
    """Scatter of loss vs ratio at the main τ, coloured by ‖∇L‖, excluded runs marked."""
    conv, flat, other = _groups(result)
    j0 = _main(result, cfg)
    ratio = _ratio(result)
    corr = _correlations(result, cfg)
    fig, axes = P.figure(1, 1, width=6.6, height=4.6)
    ax = axes[0][0]
    color = np.log10(np.maximum(result["grad_norm"], 1e-300))
    finite = color[np.isfinite(color)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    loss = np.maximum(result["loss"], 1e-300)
    sc = None
    init = result["group"] == 1
    for mask, marker, label in (
            (conv & ~init, "o", f"critical, trained (‖∇L‖ < {cfg.grad_tol:g})"),
            (conv & init, "^", "critical, searched from initialisation"),
            (flat, "s", "excluded: gradient-flat, not critical"),
            (other, "x", f"excluded: ‖∇L‖ ≥ {cfg.grad_tol:g}")):
        if mask.any():
            sc = ax.scatter(ratio[mask, j0], loss[mask], c=color[mask], marker=marker,
                            cmap="viridis", vmin=vmin, vmax=vmax, s=30, linewidths=1.2,
                            alpha=0.8, label=f"{label}: {mask.sum()}")
    rho, lo, hi = corr[j0]
    ax.set(yscale="log", xlabel=f"minimal ratio #(λ > τ)/#(|λ| > τ),  τ = "
           f"{_fmt_tol(cfg.rel_tol)}·max|λ|", ylabel="training MSE at the point",
           title=f"{len(loss)} runs, {int(result['params'])} parameters, N = {cfg.n_train}; "
                 f"Spearman ρ (critical points) = {rho:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    ax.title.set_fontsize(9)
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="log₁₀ ‖∇L‖ at the point")
    ax.legend(fontsize=8, loc="best")

    return fig


def _tau_sweep(result: dict[str, np.ndarray], cfg: Config):
    """Minima/saddles, ρ with its interval, and near-null counts, each across τ."""
    conv, _flat, _other = _groups(result)
    rel = result["rel_tols"]
    corr = _correlations(result, cfg)
    fig2, axes2 = P.figure(3, 1, width=4.2, height=3.6)
    a1, a2, a3 = axes2[0]
    minima = (result["negative"][conv] == 0).sum(0)
    a1.plot(rel, minima, "o-", color=P.COLORS[0], label="minima (no λ < −τ)")
    a1.plot(rel, conv.sum() - minima, "s-", color=P.COLORS[1], label="saddles (some λ < −τ)")
    a1.axvline(cfg.rel_tol, color="0.6", lw=0.8, ls=":")
    a1.set(xscale="log", xlabel="τ / max|λ|", ylabel=f"critical points (of {conv.sum()})",
           title="classification vs τ")
    a1.legend(fontsize=8)
    ok = np.isfinite(corr[:, 0])
    if ok.any():
        a2.errorbar(rel[ok], corr[ok, 0], yerr=[corr[ok, 0] - corr[ok, 1],
                                                corr[ok, 2] - corr[ok, 0]],
                    fmt="o-", color=P.COLORS[2], capsize=3,
                    label="Spearman ρ(ratio, loss), 95 % bootstrap interval")
        a2.legend(fontsize=7, loc="lower left")
    else:
        a2.text(0.5, 0.5, f"undefined: fewer than {MIN_POINTS} critical points\n"
                "or a constant ratio",
                ha="center", va="center", transform=a2.transAxes, fontsize=9)
    a2.axhline(0, color="0.4", lw=0.8)
    a2.set(xscale="log", xlabel="τ / max|λ|", ylabel="ρ", ylim=(-1.05, 1.05),
           title="ratio–loss correlation vs τ")
    null = (result["eigenvalues"].shape[1] - result["positive"] - result["negative"])
    if conv.any():
        P.band(a3, rel, null[conv], f"converged ({conv.sum()})", P.COLORS[0])
    if (~conv).any():
        P.band(a3, rel, null[~conv], f"excluded ({(~conv).sum()})", P.COLORS[1],
               linestyle="--")
    a3.set(xscale="log", xlabel="τ / max|λ|", ylabel=f"eigenvalues in ±τ (of "
           f"{result['eigenvalues'].shape[1]})", title="near-null eigenvalues vs τ")
    a3.legend(fontsize=7, title="mean, band min–max", title_fontsize=7)

    return fig2


def _spectra(result: dict[str, np.ndarray], cfg: Config):
    """Eigenvalue histograms of the lowest-, median- and highest-loss critical points."""
    conv, _flat, _other = _groups(result)
    j0 = _main(result, cfg)
    ratio = _ratio(result)
    fig3, axes3 = P.figure(1, 1, width=6.4, height=3.6)
    ax3 = axes3[0][0]
    pool = np.flatnonzero(conv) if conv.any() else np.arange(len(conv))
    order = pool[np.argsort(result["loss"][pool])]
    picks = [order[0], order[len(order) // 2], order[-1]] if len(order) >= 3 else order
    lam_all = result["eigenvalues"][picks]
    lam_all = lam_all[np.isfinite(lam_all)]
    lim = float(np.abs(lam_all).max()) if lam_all.size else 0.0
    floor = 10.0 ** np.floor(np.log10(max(lim, 1e-300)) - 12)
    if lim > 0:  # (no finite eigenvalue: plot.mark_missing says so)
        bins = np.concatenate([-np.logspace(np.log10(lim), np.log10(floor), 25), [0],
                               np.logspace(np.log10(floor), np.log10(lim), 25)])
        for i, r in enumerate(picks):
            ax3.hist(result["eigenvalues"][r], bins=bins, histtype="step", lw=1.5,
                     color=P.COLORS[i], label=f"run {r}: loss {result['loss'][r]:.1e}, "
                     f"ratio {ratio[r, j0]:.2f}, ‖∇L‖ {result['grad_norm'][r]:.0e}")
        ax3.set_xscale("symlog", linthresh=floor)
        top = int(np.ceil(np.log10(lim)))
        decades = [10.0**k for k in range(top, int(np.log10(floor)) - 1, -4)]
        ticks = [-d for d in decades] + [0.0] + decades[::-1]
        ax3.set_xticks(ticks, [f"{t:.0e}".replace("e+0", "e").replace("e-0", "e-") if t
                               else "0" for t in ticks], fontsize=8)
    ax3.set(xlabel=f"Hessian eigenvalue λ (symlog axis, linear within ±{floor:.0e})",
            ylabel="count", title="Hessian spectra of critical points: lowest-, median- and "
                                  "highest-loss")
    ax3.title.set_fontsize(9)
    if lim > 0:
        ax3.legend(fontsize=7)
    return fig3


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    """The search's success, the spectra across τ, and the ratio–loss correlation."""
    lines = _search_findings(result, cfg)
    if _groups(result)[0].any():
        lines += _spectrum_findings(result, cfg) + _correlation_findings(result, cfg)
    return lines


def _search_findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    """How many runs the search brought to ‖∇L‖ < tol, in how many steps, and how far."""
    conv, flat, _ = _groups(result)
    n = len(conv)
    init = result["group"] == 1
    trained = ~init
    gn, pg, ps = result["grad_norm"], result["phase_grad_norm"], result["phase_steps"]
    tol = cfg.grad_tol
    lines = [f"{conv.sum()}/{n} runs reached ‖∇L‖ < {tol:g} (float64): "
             f"{(conv & trained).sum()}/{trained.sum()} trained runs and "
             f"{(conv & init).sum()}/{init.sum()} searched from initialisation."]
    if trained.any():
        # Phase 2 ends the saddle-free descent: what the search achieves without Newton.
        lines[0] += (f" Without the Newton phase {(pg[trained, 2] < tol).sum()} trained runs "
                     f"would have (at the end of training: {(pg[trained, 0] < tol).sum()}, "
                     f"median ‖∇L‖ {np.median(pg[trained, 0]):.1e}).")
    if conv.any():
        rest = (f"stopped at a median ‖∇L‖ {np.median(gn[~conv]):.1e} ({flat.sum()} of them "
                "gradient-flat: > 50 % of ‖∇L‖² along |λ| ≤ τ)" if (~conv).any() else
                "are none")
        steps = []
        if (conv & trained).any():
            steps.append(f"trained runs {np.median(ps[conv & trained, 1]):.0f} descent + "
                         f"{np.median(ps[conv & trained, 2]):.0f} Newton")
        if (conv & init).any():
            steps.append(f"runs from initialisation {np.median(ps[conv & init, 2]):.0f} Newton")
        lines.append(f"Steps to convergence (medians): {'; '.join(steps)}. Converged runs "
                     f"reached a median ‖∇L‖ {np.median(gn[conv]):.1e} (best "
                     f"{gn[conv].min():.1e}); the {(~conv).sum()} excluded runs {rest}.")
    return lines


def _spectrum_findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    """Near-null eigenvalues and the minima/saddles split across τ (critical points only)."""
    conv, P_ = _groups(result)[0], result["eigenvalues"].shape[1]
    init = result["group"] == 1
    trained = ~init
    lines: list[str] = []
    j0 = _main(result, cfg)
    rel = result["rel_tols"]
    null = P_ - result["positive"] - result["negative"]
    j8 = int(np.argmin(np.abs(np.log10(np.maximum(rel, 1e-300)) + 8)))
    lines.append(
        f"With N = {cfg.n_train} = {cfg.n_train / P_:.1f} P training points, a median "
        f"{np.median(null[conv, j0]):.0f} of {P_} eigenvalues (range {null[conv, j0].min()}–"
        f"{null[conv, j0].max()}) lie within ±τ at τ = {_fmt_tol(cfg.rel_tol)}·max|λ| and "
        f"{np.median(null[conv, j8]):.0f} at {_fmt_tol(rel[j8])}·max|λ|: the spectrum is sloppy "
        "rather than singular, which is why the ratio is taken over the eigenvalues outside ±τ.")
    minima = result["negative"][conv] == 0  # (C, T)
    counts = "; ".join(f"{_fmt_tol(r)}: {m}/{conv.sum() - m}"
                       for r, m in zip(rel, minima.sum(0), strict=True))
    switched = (minima != minima[:, :1]).any(1)
    changes = (minima[:, 1:] != minima[:, :-1]).sum(0)  # per step between adjacent τ
    stable_from = len(rel) - 1
    while stable_from > 0 and changes[stable_from - 1] == 0:
        stable_from -= 1
    # The smallest eigenvalue relative to max|λ| says at which τ a point changes class.
    which, name = ((conv & trained, "trained critical points") if (conv & trained).any()
                   else (conv, "critical points"))
    lam = result["eigenvalues"][which]
    lowest = lam[:, 0] / np.abs(lam).max(1)
    lines.append(
        f"Minima/saddles among the {conv.sum()} critical points, by τ/max|λ|: {counts}. "
        f"At the {which.sum()} {name} the smallest eigenvalue is a median "
        f"{np.median(lowest):+.0e}·max|λ| (range {lowest.min():+.0e} to "
        f"{lowest.max():+.0e}). "
        + ("The classification is the same at every τ." if not switched.any() else
           f"{switched.sum()} points change class across the range, so the classification is "
           "not stable in τ" + (f"; it is unchanged for τ ≥ {_fmt_tol(rel[stable_from])}·max|λ|."
                                if stable_from < len(rel) - 1 else ".")))
    return lines


def _correlation_findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    """Spearman ρ(ratio, loss) with its interval, and the two groups of critical points."""
    conv, P_ = _groups(result)[0], result["eigenvalues"].shape[1]
    init = result["group"] == 1
    trained = ~init
    rel = result["rel_tols"]
    j0 = _main(result, cfg)
    minima = result["negative"][conv] == 0  # (C, T)
    lines: list[str] = []
    corr = _correlations(result, cfg)
    rho, lo, hi = corr[j0]
    v = verdict(lo, hi, expected_sign=-1)
    decided = int((np.isfinite(corr[:, 0]) & ((corr[:, 2] < 0) | (corr[:, 1] > 0))).sum())
    if np.isfinite(rho):
        lines.append(
            f"Spearman ρ(ratio, loss) over the critical points at τ = {_fmt_tol(cfg.rel_tol)}·"
            f"max|λ|: {rho:+.2f} (95 % bootstrap interval {lo:+.2f} to {hi:+.2f}, "
            f"{cfg.n_boot} resamples) — "
            + {True: "below 0: lower loss goes with a larger share of positive curvature, as "
                     "Dauphin et al. (2014) predict.",
               False: "above 0: the opposite of the negative correlation Dauphin et al. "
                      "(2014) predict.",
               None: "the interval includes 0, so the sign is inconclusive."}[v]
            + f" Across τ, ρ ranges {np.nanmin(corr[:, 0]):+.2f} to "
            f"{np.nanmax(corr[:, 0]):+.2f} and its interval excludes 0 at {decided} of "
            f"{len(rel)} τ values.")
    elif conv.sum() < MIN_POINTS:
        lines.append(f"Only {conv.sum()} critical points: too few (< {MIN_POINTS}) for a "
                     "correlation with a bootstrap interval.")
    else:
        lines.append(f"At τ = {_fmt_tol(cfg.rel_tol)}·max|λ| the ratio is the same at every "
                     "critical point, so its correlation with the loss is undefined.")
    m0 = minima[:, j0]
    loss = result["loss"][conv]
    if m0.any() and (~m0).any():
        neg = result["negative"][conv, j0][~m0]
        lines.append(f"Median loss at minima {np.median(loss[m0]):.2e} vs at saddles "
                     f"{np.median(loss[~m0]):.2e} (saddles have a median {np.median(neg):.0f} of "
                     f"{P_} eigenvalues below −τ).")
    if (conv & init).any() and (conv & trained).any():
        within = conv & trained
        r_t = _ratio(result)[within, j0]
        rho_t, lo_t, hi_t = (spearman_ci(r_t, result["loss"][within], seed=cfg.boot_seed,
                                         n_boot=cfg.n_boot) if len(r_t) >= MIN_POINTS
                             else (np.nan,) * 3)
        var = float(result["target_var"])
        init_loss = np.median(result["loss"][conv & init])
        lines.append(
            f"The two groups are far apart: critical points found from initialisation have a "
            f"median loss {init_loss:.2e}, {100 * init_loss / var:.0f} % of the targets' "
            f"variance {var:.2e} (the loss of the best constant), those from the end of "
            f"training {np.median(result['loss'][within]):.2e}. Within the "
            "trained runs alone " + _within(r_t, rho_t, lo_t, hi_t, np.isfinite(rho)))
    return lines




def _within(ratio: np.ndarray, rho: float, lo: float, hi: float, pooled: bool) -> str:
    """The end of the sentence on the trained group's own correlation."""
    if len(ratio) < MIN_POINTS:
        return f"there are too few points ({len(ratio)}) for a correlation."
    if np.isfinite(lo):
        return f"ρ = {rho:+.2f} (95 % interval {lo:+.2f} to {hi:+.2f})."
    return (f"the ratio is {ratio[0]:.2f} at every point"
            + (", so the correlation above comes from the contrast between the groups."
               if pooled else "."))


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    claim = ("Critical points of lower loss have a larger share of positive Hessian "
             "eigenvalues (saddles of high loss, minima of low loss)")
    ref = "Dauphin et al., 2014; Pennington & Bahri, 2017"
    crit = (f"95 % bootstrap interval of Spearman ρ(minimal ratio, loss) over converged "
            f"critical points (‖∇L‖ < {cfg.grad_tol:g}, τ = {_fmt_tol(cfg.rel_tol)}·max|λ|) "
            "below 0; inconclusive if it includes 0")
    rho, lo, hi = _correlations(result, cfg)[_main(result, cfg)]
    if not np.isfinite(lo):
        return Expectation(claim, ref, crit, None)
    v = verdict(lo, hi, expected_sign=-1)
    return Expectation(claim, ref, crit, v,
                       verdict=TESTED[v],
                       measured=f"ρ = {rho:+.2f}, 95 % interval {lo:+.2f} to {hi:+.2f}, "
                                f"n = {int(_groups(result)[0].sum())}")


study = Study("min-ratio", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature)
