"""Flatness vs generalisation, part 1: the line between two differently trained models.

Question: take two networks trained from the **same initialisation** in different ways — small
vs large batches, or small vs large learning rate — and evaluate the loss and accuracy along
θ(α) = (1 − α) θ₁ + α θ₂ for α from −1 to 2. Keskar et al. (2017, Fig. 3) used this
parametric plot to argue that large-batch solutions sit in sharper basins than small-batch
ones. Starting both runs from the same θ₀ matters: two independent initialisations are
separated by a barrier that says nothing about flatness.

Method (STUDIES.md, ``interpolation``): the models of the batch-size sweep (:mod:`.common`) —
member ``s`` of every batch size and learning rate starts from ``mlp(..., seed=s)`` — each
trained to the common criterion (training cross-entropy ≤ ``target_loss``); pair ``s`` is
member ``s`` of two runs: batch ``small_batch`` vs ``large_batch`` at ``lr`` (found in the
cache when ``sensitivity`` ran), and lr ``lr`` vs ``large_lr`` at batch ``lr_pair_batch``.
Along the line: mean cross-entropy and accuracy on the full training subset and test set at
``alphas`` values of α in [−1, 2] (vectorised over α).

The control (Li et al., 2018): a direction of fixed length is a large step for a layer of
small weights and a negligible one for a layer of large weights, and ReLU nets can be
rescaled layer by layer without changing their function — so "this endpoint's loss rises
faster" can be an artefact of weight scale. Around each endpoint, ``directions``
filter-normalised random directions d (each filter of d rescaled to the norm of that
endpoint's filter, biases 0) give the curvature dᵀ∇²L d of the training loss (exact
Hessian-vector products); the mean over directions is the endpoint's filter-normalised
curvature, and the 1-D loss curves L(θ + t·d) are drawn for the first ``curve_directions``.
The second derivative is symmetric in d, so it does not confuse a slope with curvature —
the endpoints of a cross-entropy criterion are not minima (see the findings: the loss still
falls a little just beyond them along the line).

Verdict: per pair, the log-ratio of the large-batch to the small-batch endpoint's
filter-normalised curvature; its mean over pairs with a 95 % percentile-bootstrap interval:
agrees when the interval lies above 0 (the large-batch endpoint is sharper), disagrees when
below, inconclusive when it includes 0; pairs with an endpoint that missed the criterion are
left out. The learning-rate pair is reported the same way (larger rates are expected to find
flatter minima, Jastrzębski et al., 2018).

Why these defaults (measured on 2 busy CPU cores, one thread): the sweep's (``sensitivity``):
4 096 images, width 128, Adam at lr 1e-3, criterion 0.05, 5 seeds, so the batch pair and
the lr pair's model 1 come from the cache in ``deepscope run all``; batch 64 vs 1 024 as in
STUDIES.md; lr 1e-2 at batch 256 reached the criterion in 96 steps against 448 at lr 1e-3.
31 α values (steps of 0.1). 8 directions per endpoint: the curvature along single directions
varies with a coefficient of variation of 0.20–0.72 between directions, so the mean of 8 is
known to 7–26 % (relative standard error), against a factor of about 2 between the endpoints
of a pair (1.6–2.1 for the batch pair, 0.35–0.52 for the lr pair). The old design's
endpoints were not at the bottom of the line: the small-batch model (train loss 0.009) had
0.0055 at α = −0.2, 39 % lower. Trained to the common criterion, the lowest loss within 0.5
in α of an endpoint is 0–4 % below the endpoint's (medians over pairs), 0.1 beyond it: the
endpoints are near the bottom of the line but, stopped at a criterion rather than at a
minimum, still on a gentle slope — which is why the verdict rests on the symmetric second
derivative, not on the rise of the line beyond each endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import plot as P
from ..context import Context
from ..params import objective
from ..probes.hessian import hvp
from ..probes.landscape import filter_normalized_direction, interpolate
from . import common as C
from .base import DataNeed, Expectation, Study, bootstrap_ci, require, verdict
from .fields import field


@dataclass(frozen=True)
class Config(C.SweepConfig):  # the sweep's training settings (two re-declared), then:
    lr: float = field(1e-3, "Adam learning rate of the batch pair and of the lr pair's model 1",
                      role="optimiser", lo=0, lo_open=True)
    seeds: int = field(5, "pairs: shared initialisations", role="seeds", lo=1)
    small_batch: int = field(64, "batch size of model 1 in the batch pair", role="optimiser",
                             lo=1)
    large_batch: int = field(1024, "batch size of model 2 in the batch pair", role="optimiser",
                             lo=1)
    large_lr: float = field(1e-2, "learning rate of model 2 in the lr pair", role="optimiser",
                            lo=0, lo_open=True)
    lr_pair_batch: int = field(256, "batch size of the lr pair", role="optimiser", lo=1)
    alphas: int = field(31, "α values, evenly spaced in [−1, 2]", role="measurement", lo=31)
    directions: int = field(8, "filter-normalised directions per endpoint (curvature)",
                            role="measurement", lo=1)
    curve_directions: int = field(3, "of them, drawn as 1-D loss curves", role="measurement",
                                  lo=1)
    curve_points: int = field(11, "points of each 1-D curve, t evenly spaced in [−1, 1]",
                              role="measurement", lo=3)

    def check(self):
        require(self.curve_directions <= self.directions,
                "curve_directions must be between 1 and directions")


SCALES = {
    "quick": {**{k: v for k, v in C.SWEEP_SCALES["quick"].items() if k != "batch_sizes"},
              "small_batch": 16, "large_batch": 128, "lr_pair_batch": 64, "large_lr": 1e-2,
              "directions": 2, "curve_directions": 1, "curve_points": 5},
    "full": {**{k: v for k, v in C.SWEEP_SCALES["full"].items() if k != "batch_sizes"},
             "directions": 16},
}
MIN_PAIRS = 3  # fewer converged pairs: no interval, no verdict


def _pairs(cfg: Config) -> dict[str, tuple[tuple[int, float], tuple[int, float]]]:
    return {"batch": ((cfg.small_batch, cfg.lr), (cfg.large_batch, cfg.lr)),
            "lr": ((cfg.lr_pair_batch, cfg.lr), (cfg.lr_pair_batch, cfg.large_lr))}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    alphas = np.linspace(-1, 2, cfg.alphas)
    ts = np.linspace(-1, 1, cfg.curve_points)
    # The models: pieces of the batch-size sweep, shared with sensitivity and sharpness.
    trained: dict[tuple[int, float], dict[str, np.ndarray]] = {}
    for lr in sorted({lr for pair in _pairs(cfg).values() for _, lr in pair}):
        sizes = sorted({bs for pair in _pairs(cfg).values() for bs, r in pair if r == lr})
        for bs, piece in zip(sizes, C.train_sweep(ctx, C.sweep_settings(cfg, lr=lr), sizes)):
            trained[bs, lr] = piece
    settings = C.sweep_settings(cfg)

    def pair(name: str) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
        batch = (data.x_train, data.y_train)
        ends = [trained[key] for key in _pairs(cfg)[name]]
        out = {k: np.full((cfg.seeds, cfg.alphas), np.nan)
               for k in ("train_loss", "test_loss", "train_acc", "test_acc")}
        out["curvature"] = np.full((cfg.seeds, 2, cfg.directions), np.nan)
        out["curve"] = np.full((cfg.seeds, 2, cfg.curve_points), np.nan)
        for s in range(cfg.seeds):
            if any(e["diverged_epoch"][s] >= 0 for e in ends):
                continue  # non-finite weights: nothing to measure
            models = [C.build(settings, e["theta"][s], ctx.device) for e in ends]
            line = interpolate(models[0], models[1], F.cross_entropy, data, alphas)
            for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
                out[k][s] = getattr(line, k)
            for j, m in enumerate(models):
                # In the model's precision: the curvature dᵀHd along a few directions is
                # compared between minima, far above float32 rounding.
                mv = hvp(m, F.cross_entropy, batch)
                f, theta = objective(m, F.cross_entropy, batch)
                curves = []
                for k in range(cfg.directions):
                    d = filter_normalized_direction(m, seed=k)
                    out["curvature"][s, j, k] = float(d @ mv(d))
                    if k < cfg.curve_directions:
                        with torch.no_grad():
                            t = torch.as_tensor(ts, dtype=theta.dtype, device=theta.device)
                            curves.append(torch.vmap(f)(theta + t[:, None] * d).cpu().numpy())
                out["curve"][s, j] = np.mean(curves, axis=0)
        return out

    out: dict[str, np.ndarray] = {"alphas": alphas, "curve_t": ts}
    for name, piece in zip(("batch", "lr"), ctx.map(pair, ["batch", "lr"])):
        ends = [trained[key] for key in _pairs(cfg)[name]]
        piece["reached_step"] = np.stack(
            [np.where(e["reached_epoch"] >= 0, e["reached_epoch"] * int(e["steps_per_epoch"]),
                      -1) for e in ends], axis=1)  # (S, 2)
        piece["diverged"] = np.stack([e["diverged_epoch"] >= 0 for e in ends], axis=1)
        piece["end_train_loss"] = np.stack([e["train_loss"][:, -1] for e in ends], axis=1)
        out.update({f"{name}.{k}": v for k, v in piece.items()})
    out["params"] = np.asarray(int(next(iter(trained.values()))["params"]))
    return out


# --- statistics ------------------------------------------------------------------------------


def _ok(result, name: str) -> np.ndarray:
    """(S,) pairs whose both endpoints met the criterion and did not diverge."""
    return ((np.asarray(result[f"{name}.reached_step"]) >= 0).all(1)
            & ~np.asarray(result[f"{name}.diverged"], bool).any(1))


def log_ratios(result, name: str) -> np.ndarray:
    """Per converged pair: log(curvature of model 2 / curvature of model 1), filter-
    normalised curvature = mean of dᵀ∇²L d over the directions (NaN where not positive)."""
    c = np.asarray(result[f"{name}.curvature"], float).mean(-1)  # (S, 2)
    with np.errstate(all="ignore"):
        r = np.log(c[:, 1] / c[:, 0])
    r = np.where((c > 0).all(1), r, np.nan)
    return r[_ok(result, name)]


def ratio_ci(result, name: str) -> tuple[float, float, float, int]:
    """Mean log-ratio over pairs with its 95 % bootstrap interval, and the number of pairs."""
    r = log_ratios(result, name)
    r = r[np.isfinite(r)]
    if len(r) < MIN_PAIRS:
        return np.nan, np.nan, np.nan, len(r)
    return (*bootstrap_ci(r, statistic=np.mean, seed=0), len(r))


def _ratio_text(stat) -> str:
    m, lo, hi, n = stat
    if not np.isfinite(m):
        return f"undefined ({n} converged pairs, fewer than {MIN_PAIRS})"
    inner = (f"95 % interval ×{np.exp(lo):.2f} to ×{np.exp(hi):.2f}" if np.isfinite(lo)
             else "no interval")
    return f"×{np.exp(m):.2f} (geometric mean over pairs; {inner}; n = {n})"


def _word(stat, sign: int) -> str:
    _, lo, hi, n = stat
    return C.verdict_word(verdict(lo, hi, sign) if n >= MIN_PAIRS else None, n, MIN_PAIRS)


# --- figures ---------------------------------------------------------------------------------


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    figs = {}
    a = np.asarray(result["alphas"], float)
    stat = f"over {cfg.seeds} pairs: {P.STAT['median']}"
    for name, ((b1, l1), (b2, l2)) in _pairs(cfg).items():
        ok = _ok(result, name)
        fig, axes = P.figure(1, 1, width=6.4, height=4.0)
        ax = axes[0][0]
        acc_ax = ax.twinx()
        for split, ls in (("train", "-"), ("test", "--")):
            P.band(ax, a, np.asarray(result[f"{name}.{split}_loss"], float)[ok],
                   f"cross-entropy, {split}", P.COLORS[0], linestyle=ls, stat="median")
            P.band(acc_ax, a, 100 * np.asarray(result[f"{name}.{split}_acc"], float)[ok],
                   f"accuracy, {split}", P.COLORS[1], linestyle=ls, stat="median")
        bad = ~(np.asarray(result[f"{name}.reached_step"]) >= 0)  # (S, 2): at α = 0, 1
        P.not_converged(ax, np.nonzero(bad)[1].astype(float),
                        np.asarray(result[f"{name}.end_train_loss"], float)[bad])
        for x in (0, 1):
            ax.axvline(x, color="grey", lw=0.6, ls=":")
        ax.set(yscale="log", xlabel="α   (θ = (1 − α)·θ₁ + α·θ₂)",
               ylabel="cross-entropy (log)",
               title=f"model 1 (α=0): batch {b1}, lr {l1:g};  model 2 (α=1): batch {b2}, "
                     f"lr {l2:g}", )
        ax.yaxis.label.set_color(P.COLORS[0])
        acc_ax.set_ylabel("accuracy (%)", color=P.COLORS[1])
        acc_ax.set_ylim(0, 100)
        h1, l1_ = ax.get_legend_handles_labels()
        h2, l2_ = acc_ax.get_legend_handles_labels()
        fig.legend(h1 + h2, l1_ + l2_, loc="outside lower center", ncol=3, fontsize=8,
                   title=f"same initialisation, both trained to training cross-entropy ≤ "
                         f"{cfg.target_loss:g}; {stat}", title_fontsize=8)
        figs[name] = fig

    fig, axes = P.figure(2, 1, width=4.8, height=3.9)
    t = np.asarray(result["curve_t"], float)
    for ax, (name, ((b1, l1), (b2, l2))) in zip(axes[0], _pairs(cfg).items()):
        ok = _ok(result, name)
        curve = np.asarray(result[f"{name}.curve"], float)
        for j, (bs, lr) in enumerate(((b1, l1), (b2, l2))):
            rise = curve[ok, j] - curve[ok, j][:, [len(t) // 2]]
            P.band(ax, t, rise, f"model {j + 1}: batch {bs}, lr {lr:g}", P.COLORS[j],
                   stat="median")
        ax.set(xlabel="t   (θ + t·d, d filter-normalised)", ylabel="training loss − L(θ)",
               title=f"{name} pair: curvature ratio model 2 / model 1 "
                     f"{_ratio_text(ratio_ci(result, name)).split(' (')[0]}")
        ax.legend(fontsize=7, title=f"mean over {cfg.curve_directions} directions, {stat}"
                  f"\n({int(ok.sum())} of {len(ok)} pairs at the criterion; the rest left "
                  "out)", title_fontsize=7)
    fig.suptitle("loss along filter-normalised random directions around each endpoint "
                 "(Li et al., 2018)", fontsize=9)
    figs["filter-normalised"] = fig
    return figs


# --- findings and verdict --------------------------------------------------------------------


def _med(v) -> float:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _f(x: float, spec: str = ".4f") -> str:
    return format(x, spec) if np.isfinite(x) else "undefined"


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    a = np.asarray(result["alphas"], float)
    i0, i1 = int(np.argmin(np.abs(a))), int(np.argmin(np.abs(a - 1)))
    lines = []
    for name, ((b1, l1), (b2, l2)) in _pairs(cfg).items():
        ok = _ok(result, name)
        n_bad = int((~ok).sum())
        tl = np.asarray(result[f"{name}.train_loss"], float)[ok]
        te = 100 * np.asarray(result[f"{name}.test_acc"], float)[ok]
        steps = np.asarray(result[f"{name}.reached_step"], float)[ok]
        head = (f"{name} pair ({int(ok.sum())} of {len(ok)} pairs with both models at the "
                f"criterion" + (f"; {n_bad} left out" if n_bad else "") + "), medians: "
                f"model 1 (batch {b1}, lr {l1:g}) reached it in {_f(_med(steps[:, 0]), '.0f')}"
                f" steps, training loss {_f(_med(tl[:, i0]))}, test accuracy "
                f"{_f(_med(te[:, i0]), '.1f')} %; model 2 (batch {b2}, lr {l2:g}) in "
                f"{_f(_med(steps[:, 1]), '.0f')} steps, {_f(_med(tl[:, i1]))}, "
                f"{_f(_med(te[:, i1]), '.1f')} %.")
        # Are the endpoints minima along the line? The lowest loss within 0.5 of each.
        near = []
        for j, at in ((0, 0.0), (1, 1.0)):
            win = np.abs(a - at) <= 0.5 + 1e-9
            if tl.size and np.isfinite(tl[:, win]).any():
                lowest = np.nanmin(tl[:, win], axis=1)
                where = a[win][np.nanargmin(np.where(np.isfinite(tl[:, win]), tl[:, win],
                                                     np.inf), axis=1)]
                drop = 100 * (1 - lowest / tl[:, i0 if j == 0 else i1])
                at_alpha = round(_med(where), 6) + 0.0  # no "−0.0"
                near.append(f"model {j + 1}: lowest {_f(_med(lowest))} at α = "
                            f"{_f(at_alpha, '+.1f')} ({_f(_med(drop), '.1f')} % below the "
                            "endpoint)")
        mid = tl[:, (a > 0) & (a < 1)]
        barrier = (_med(np.nanmax(mid, 1) - np.maximum(tl[:, i0], tl[:, i1]))
                   if mid.size else float("nan"))
        lines.append(head + " Along the line (medians over pairs), within 0.5 in α of each "
                     "endpoint — " + ("; ".join(near) if near else "no finite values")
                     + f"; barrier between them {_f(barrier, '+.4f')}.")
        c = np.asarray(result[f"{name}.curvature"], float)[ok].mean(-1)
        expect = ("the large-batch model is expected sharper (Keskar et al., 2017)"
                  if name == "batch" else
                  "the large-rate model is expected flatter (Jastrzębski et al., 2018)")
        stat = ratio_ci(result, name)
        lines.append(
            f"{name} pair, filter-normalised curvature (mean dᵀ∇²L d over {cfg.directions} "
            f"directions), medians: model 1 {_f(_med(c[:, 0]), '.3g')}, model 2 "
            f"{_f(_med(c[:, 1]), '.3g')}; ratio model 2 / model 1 per pair "
            + (", ".join(f"×{np.exp(r):.2f}" for r in log_ratios(result, name)
                         if np.isfinite(r)) or "none")
            + f"; {_ratio_text(stat)} — {expect}: "
            f"{_word(stat, 1 if name == 'batch' else -1)}.")
    return lines


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    _, lo, hi, n = stat = ratio_ci(result, "batch")
    agrees = (verdict(lo, hi, expected_sign=1)
              if n >= MIN_PAIRS and cfg.large_batch > cfg.small_batch else None)
    word = (C.verdict_word(agrees, n, MIN_PAIRS) if cfg.large_batch > cfg.small_batch
            else "not testable")
    return Expectation(
        "The large-batch solution lies in a sharper basin than the small-batch one trained "
        "from the same initialisation, also when sharpness is measured along "
        "filter-normalised directions (so that weight scale cannot fake it)",
        "Keskar et al., 2017, Fig. 3; Li et al., 2018",
        f"batch pair ({cfg.small_batch} vs {cfg.large_batch}), both trained to training "
        f"cross-entropy ≤ {cfg.target_loss:g}: the 95 % bootstrap interval over pairs of the "
        f"mean log-ratio of filter-normalised curvature (large / small batch) lies above 0; "
        f"inconclusive if it includes 0; not testable with fewer than {MIN_PAIRS} pairs",
        agrees, verdict=word, measured=_ratio_text(stat))


study = Study("interpolation", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
