"""Number of parameters vs generalisation, with and without label noise.

Question: as a network gets wider, how do its training and test error change? Classical
statistics predicts a U-shaped test error; modern networks keep improving past the point where
they fit the training set, and with label noise the test error rises to a peak near that
*interpolation threshold* — the smallest model that fits the noisy training set — and falls
again beyond it ("double descent", Belkin et al., 2019; Nakkiran et al., 2019). Nakkiran et al.
find the peak at the threshold, and much weaker or absent without label noise.

Method (STUDIES.md, ``params-vs-generalization``): one-hidden-layer MLPs d-w-10 with
``widths`` geometrically spaced over more than two decades of parameters, on a stratified
MNIST subset average-pooled by ``pool`` (14×14, d = 196), each trained twice: on the clean
labels and with ``label_noise`` of the training labels moved to another class (the same
corrupted labels for every model; test labels clean). Training criterion: Adam until the
training accuracy is 100 % (checked every ``eval_every`` epochs; the member is frozen there) or
``epochs`` at most — models too small to interpolate train for the whole cap (the figure marks
them). The full training subset and the test set are evaluated at the end, ``seeds``
initialisations per width.

Interpolation threshold: the smallest width whose median training accuracy reaches
``fit_level`` (99 %, "~100 %"). Test error curve: the mean over seeds at each width; its peak
is defined below. The verdict, from 2 000 bootstrap resamples of the seeds (independently
per width and condition), tests three things: (1) with noise the peak lies **near** the
threshold, the 95 % interval of log₂(P_peak / P_threshold) within ±log₂(``near``); (2) it
is a **peak**: its prominence (the smaller of its rise over the lowest error at smaller
widths and its fall to the lowest error at larger ones; the peak is the interior width where
that is largest, 0 for a curve with no interior maximum) has a 95 % interval
above the resolution of the test set, 2·√(e(1−e)/n_test); (3) **noise amplifies it**: the
prominence with noise exceeds the one without (95 % interval of the difference above 0).
Agrees when all three hold, disagrees when any interval lies wholly on the wrong side,
inconclusive otherwise.

Why these defaults (measured on one thread; the exploratory runs used 3 seeds):

* *Inputs pooled to 14×14.* With 784 inputs every hidden unit brings 795 parameters and even
  4 units (3 190 parameters) fit 85 % of 1 000 images with 20 % noise (76–91 % over the
  seeds), so there was no under-parameterised regime: test error fell monotonically from 4
  units (47.1 %) to 256 (23.4 %), with no peak to find. With 196 inputs the threshold
  moves inside the width range.
* *Adam lr 3e-3, cap 300 epochs, batch 100.* At lr 1e-3 for 200 epochs (the old budget was 40
  epochs) no width below 64 fitted the noisy set and the small ones were far from their best
  fit (4 units: 74 % train accuracy, vs 85 % at lr 3e-3 and 300 epochs): the curve was
  shaped by under-training. Batch 200 halves the steps, but then 32 units reached only 97.8 %
  train accuracy and 128 units fitted the noisy set in 2 of 5 seeds within 300 epochs.
* *5 seeds.* With 3 the third part of the verdict was inconclusive (noisy-minus-clean
  prominence −0.6 to 5.0 points): the smallest clean models vary by seed (4 units: 21–30 %
  test error). 5 seeds cost 1.1× (32 units) and 1.2× (256 units) the CPU time of 3: the small
  models are bound by the number of steps, not by arithmetic.
* *Measured at these defaults* (5 seeds): with 20 % noise, test error 29.5 % at 1 252
  parameters, a peak of 32.6 % at 4 978 (0.75× the threshold, 6 634 parameters, where the
  median train accuracy reaches 99.0 %), 25.5 % at 53 002; without noise, 47.6 % → 9.9 %
  with no interior peak. Every width from 26 506 parameters fitted the noisy labels
  (epochs 130–205), from 2 494 the clean ones (epochs 25–165). The study takes 4.5–4.7× the CPU
  time of the old one (two back-to-back measurements).
* *The threshold's level is a convention* (Nakkiran et al. define it by a small training
  error ε, not exactly zero), and it matters: the median train accuracy passes 90 % at
  2 494 parameters, 99 % at 6 634 and 100 % at 26 506. The peak (4 978, where the models fit
  98.3 % of the noisy set) is 2×, 0.75× and 0.19× of those; with ``fit_level=1`` the
  verdict is inconclusive (peak at 0.094–0.25× the threshold, the edge of the 4× window),
  with 0.9 or 0.99 it agrees. The default 99 % is "~100 %" as the issue asks, the level
  random-labels also calls fitted; the findings report all three ratios.
* *The old default* (784-w-10, 2 000 images, 40 epochs, no noise) measured test loss flat
  from 16 k parameters on (0.329–0.335 from 15 910 to 407 050 parameters, while test error
  still fell from 10.1 % to 8.4 %) and had no label noise to make a peak.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from matplotlib.ticker import NullFormatter

from .. import plot as P
from ..context import Context
from ..data.labels import label_noise
from ..models import count_params, mlp
from ..plot import quiet_numpy
from ..train import METRICS, train
from .base import TESTED, DataNeed, Expectation, Study
from .fields import Checked, field


@dataclass(frozen=True)
class Config(Checked):
    widths: tuple[int, ...] = field((2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256),
                                    "hidden widths (≥ 10, geometrically spaced)", role="model",
                                    lo=1, min_len=3)
    subset: int = field(1000, "training images", role="data", lo=10, hi=60_000,
                        hi_reason="MNIST has")
    test_subset: int = field(2000, "test images (labels always clean)", role="data", lo=10,
                             hi=10_000, hi_reason="MNIST has")
    pool: int = field(2, "average-pool the 28×28 images by this factor (2: 14×14 inputs)",
                      role="data", choices=(1, 2, 4, 7, 14), why="pool must divide 28")
    epochs: int = field(300, "training cap in epochs (models stop at 100 % train accuracy)",
                        role="schedule", lo=1)
    eval_every: int = field(5, "epochs between checks of the 100 % criterion",
                            role="schedule", lo=1)
    batch_size: int = field(100, "mini-batch size", role="optimiser", lo=1)
    lr: float = field(3e-3, "Adam learning rate", role="optimiser", lo=0, lo_open=True)
    seeds: int = field(5, "initialisations per width and condition", role="seeds", lo=3,
                       why="the verdict's intervals are over seeds")
    label_noise: float = field(0.2, "share of training labels moved to another class in the "
                                    "noisy condition (0: clean labels only)", role="data",
                               lo=0, hi=1)
    fit_level: float = field(0.99, "train accuracy that defines the interpolation threshold",
                             role="measurement", lo=0, hi=1, lo_open=True)
    near: float = field(4.0, "'near the threshold': the peak's parameter count within this "
                             "factor of the threshold's", role="measurement", lo=1)


SCALES = {
    "quick": {"widths": (2, 8, 32), "subset": 200, "test_subset": 200, "epochs": 3,
              "eval_every": 1},
    "full": {"widths": (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                        1024), "subset": 4000, "test_subset": 10000, "epochs": 2000,
             "seeds": 5},
}
N_BOOT = 2000


def conditions(cfg: Config) -> tuple[str, ...]:
    return ("clean", "noisy") if cfg.label_noise > 0 else ("clean",)


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def width_run(item: list) -> dict[str, np.ndarray]:
        cond, w = item
        data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
        if cfg.pool > 1:
            data = dataclasses.replace(data, x_train=F.avg_pool2d(data.x_train, cfg.pool),
                                       x_test=F.avg_pool2d(data.x_test, cfg.pool))
        if cond == "noisy":
            data = label_noise(data, cfg.label_noise, seed=0)
        d_in = int(data.x_train[0].numel())
        models = [mlp(d_in, 10, 1, width=w, seed=s).to(ctx.device) for s in range(cfg.seeds)]
        tr = train(models, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                   eval_every=cfg.eval_every, until=("train_acc", 1.0), device=ctx.device,
                   progress=False)
        return {**{k: getattr(tr, k)[:, -1] for k in METRICS},
                "reached_epoch": tr.reached_epoch, "diverged_epoch": tr.diverged_epoch,
                "params": np.asarray(count_params(models[0]))}

    conds = conditions(cfg)
    items = [[c, w] for c in conds for w in cfg.widths]
    pieces = ctx.map(width_run, items)
    out: dict[str, np.ndarray] = {}
    for c in conds:
        mine = [p for (cond, _), p in zip(items, pieces) if cond == c]
        for k in (*METRICS, "reached_epoch", "diverged_epoch"):
            out[f"{c}.{k}"] = np.stack([p[k] for p in mine])  # (widths, seeds)
    out["params"] = np.array([int(p["params"]) for p in pieces[:len(cfg.widths)]])
    out["widths"] = np.asarray(cfg.widths)
    return out


# --- analysis ------------------------------------------------------------------------------


def _sorted(result: dict[str, np.ndarray], cond: str):
    """Parameters, test error, train accuracy and test loss, all in order of size."""
    order = np.argsort(result["params"], kind="stable")
    p = np.asarray(result["params"], dtype=float)[order]
    err = 1 - np.asarray(result[f"{cond}.test_acc"], dtype=float)[order]
    acc = np.asarray(result[f"{cond}.train_acc"], dtype=float)[order]
    loss = np.asarray(result[f"{cond}.test_loss"], dtype=float)[order]
    return p, err, acc, loss


def _peaks(err: np.ndarray, acc: np.ndarray, level: float):
    """For curves ``err`` (..., W) and median train accuracies ``acc`` (..., W): the index of
    the peak, its prominence and the index of the interpolation threshold (−1: none).

    The peak is the interior width that rises most above the lowest error on each side of it:
    prominence_i = min(err_i − min(err_<i), err_i − min(err_>i)), maximised over i; a curve
    with no interior local maximum has prominence 0 (then the index means nothing). NaN
    (diverged) points are ignored; a curve with no finite point has NaN prominence.
    """
    err = np.asarray(err, dtype=float)
    inf = np.full((*err.shape[:-1], 1), np.inf)
    left = np.concatenate([inf, np.fmin.accumulate(err, -1)[..., :-1]], -1)
    right = np.concatenate([np.flip(np.fmin.accumulate(np.flip(err, -1), -1), -1)[..., 1:],
                            inf], -1)
    with np.errstate(invalid="ignore"):
        prom = np.minimum(err - left, err - right)  # −inf at both ends, NaN at NaN points
        prom = np.where(np.isnan(prom), -np.inf, prom)
        i = np.argmax(prom, -1)
        best = np.take_along_axis(prom, i[..., None], -1)[..., 0]
        finite = np.isfinite(err).any(-1)
        prom = np.where(finite, np.maximum(np.where(np.isfinite(best), best, 0.0), 0.0),
                        np.nan)
        fitted = acc >= level
    thr = np.where(fitted.any(-1), np.argmax(fitted, -1), -1)
    return i, prom, thr


def analyse(result: dict[str, np.ndarray], cfg: Config, cond: str) -> dict[str, float]:
    """Peak, threshold, prominence and location of one condition, with 95 % bootstrap
    intervals over seeds (``*_lo``, ``*_hi``); NaN where undefined."""
    p, err, acc, _ = _sorted(result, cond)
    W, S = err.shape
    with quiet_numpy():  # diverged seeds are NaN: left out, and all-NaN widths stay NaN
        mean_err, med_acc = np.nanmean(err, 1), np.nanmedian(acc, 1)
        idx = np.random.default_rng(0).integers(0, S, size=(N_BOOT, W, S))
        err_b = np.nanmean(np.take_along_axis(np.broadcast_to(err, (N_BOOT, W, S)), idx, 2), 2)
        acc_b = np.nanmedian(np.take_along_axis(np.broadcast_to(acc, (N_BOOT, W, S)), idx, 2),
                             2)
    i, prom, thr = _peaks(mean_err, med_acc, cfg.fit_level)
    ib, prom_b, thr_b = _peaks(err_b, acc_b, cfg.fit_level)
    logp = np.log2(p)
    out = {"peak_index": float(i), "prominence": float(prom), "threshold_index": float(thr),
           "peak_error": float(mean_err[i]) if np.isfinite(mean_err[i]) else float("nan"),
           "peak_params": float(p[i]),
           "threshold_params": float(p[thr]) if thr >= 0 else float("nan")}
    out["location"] = float(logp[i] - logp[thr]) if thr >= 0 else float("nan")
    out["prominence_boot"] = prom_b
    loc_b = np.where(thr_b >= 0, logp[ib] - logp[np.maximum(thr_b, 0)], np.nan)
    for name, b in (("prominence", prom_b), ("location", loc_b)):
        b = b[np.isfinite(b)]
        lo, hi = np.quantile(b, [0.025, 0.975]) if len(b) else (np.nan, np.nan)
        out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    e = out["peak_error"]
    out["margin"] = float(2 * np.sqrt(e * (1 - e) / cfg.test_subset)) if np.isfinite(e) else (
        float("nan"))
    return out


def _side(lo: float, hi: float, low: float, high: float = np.inf) -> bool | None:
    """[lo, hi] wholly inside [low, high]: True; wholly outside: False; else (or NaN) None."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if lo > low and hi < high:
        return True
    if hi < low or lo > high:
        return False
    return None


# --- figures and findings ----------------------------------------------------------------


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    fig, axes = P.figure(2, 1, width=5.4, height=3.9)
    ax_e, ax_l = axes[0]
    for k, cond in enumerate(conditions(cfg)):
        c = P.COLORS[k]
        p, err, acc, loss = _sorted(result, cond)
        tr_loss = np.asarray(result[f"{cond}.train_loss"], float)[np.argsort(result["params"],
                                                                              kind="stable")]
        name = (f"{100 * cfg.label_noise:.0f} % noisy labels" if cond == "noisy"
                else "clean labels")
        P.band(ax_e, p, 100 * err.T, f"{name}: test", c, stat="mean")
        P.band(ax_e, p, 100 * (1 - acc.T), f"{name}: train", c, linestyle="--", stat="mean")
        P.band(ax_l, p, loss.T, f"{name}: test", c, stat="median")
        P.band(ax_l, p, tr_loss.T, f"{name}: train", c, linestyle="--", stat="median")
        a = analyse(result, cfg, cond)
        if a["threshold_index"] >= 0:
            for ax in (ax_e, ax_l):
                ax.axvline(a["threshold_params"], color=c, lw=0.9, ls=":",
                           label=f"{name}: threshold ({100 * cfg.fit_level:.0f} % train acc.)")
        if np.isfinite(a["peak_error"]) and a["prominence"] > 0:
            ax_e.plot([a["peak_params"]], [100 * a["peak_error"]], "v", color=c, ms=8,
                      mec="black", label=f"{name}: test-error peak (prominence "
                            f"{100 * a['prominence']:.1f} points)")
        reached = np.asarray(result[f"{cond}.reached_epoch"])[
            np.argsort(result["params"], kind="stable")]
        missed = (reached < 0).any(1)
        ax_e.scatter(p[missed], 100 * np.nanmean(1 - acc[missed], 1), marker="o",
                     facecolors="none", edgecolors=c, s=40, zorder=4,
                     label=f"{name}: not at 100 % train acc. after {cfg.epochs} epochs "
                           "(any seed)")
    ax_e.set(xscale="log", xlabel="parameters", ylabel="error (%)",
             title=f"error vs parameters ({P.STAT['mean']} over {cfg.seeds} seeds)")
    ax_l.set(xscale="log", yscale="log", xlabel="parameters", ylabel="cross-entropy",
             title=f"loss vs parameters ({P.STAT['median']})")
    for ax in (ax_e, ax_l):
        ax.xaxis.set_minor_formatter(NullFormatter())
    handles = dict(zip(*reversed(ax_e.get_legend_handles_labels())))
    handles.update(zip(*reversed(ax_l.get_legend_handles_labels())))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=2,
               fontsize=7)
    side = 28 // cfg.pool
    fig.suptitle(f"{side * side}-w-10 MLPs ({side}×{side} MNIST) on {cfg.subset} images, Adam "
                 f"until 100 % train accuracy or {cfg.epochs} epochs; train dashed, test solid",
                 fontsize=9)
    return {"params_vs_generalization": fig}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    p = np.sort(np.asarray(result["params"]))
    lines = [f"{len(p)} widths from {p.min()} to {p.max()} parameters "
             f"({np.log10(p.max() / p.min()):.1f} decades); {cfg.seeds} seeds each; test error "
             f"is the mean over seeds."]
    for cond in conditions(cfg):
        name = (f"With {100 * cfg.label_noise:.0f} % label noise" if cond == "noisy"
                else "Clean labels")
        ps, err, _, loss = _sorted(result, cond)
        reached = np.asarray(result[f"{cond}.reached_epoch"])[np.argsort(result["params"],
                                                                         kind="stable")]
        full = (reached >= 0).all(1)
        a = analyse(result, cfg, cond)
        me = 100 * np.nanmean(err, 1)
        fit = (f"every seed of the widths from {int(ps[np.argmax(full)])} parameters reached "
               f"100 % train accuracy (epochs {int(reached[full].min())}–"
               f"{int(reached[full].max())})" if full.any() and full[np.argmax(full):].all()
               else f"{int(full.sum())} of {len(full)} widths reached 100 % train accuracy "
                    f"in every seed")
        if a["threshold_index"] >= 0:
            t = int(a["threshold_index"])
            thr = (f"interpolation threshold ({100 * cfg.fit_level:.0f} % train accuracy) at "
                   f"{int(ps[t])} parameters")
        else:
            thr = f"no width reached {100 * cfg.fit_level:.0f} % train accuracy"
        i = int(a["peak_index"])
        interval = (f"95 % interval {100 * a['prominence_lo']:.1f}–"
                    f"{100 * a['prominence_hi']:.1f} points; the test set resolves "
                    f"{100 * a['margin']:.1f}")
        if a["prominence"] > 0:
            peak = (f"it rises from {np.nanmin(me[:i]):.1f} % to a peak of {me[i]:.1f} % at "
                    f"{int(ps[i])} parameters (prominence {100 * a['prominence']:.1f} points, "
                    f"{interval})"
                    + (f", {2 ** a['location']:.2g}× the threshold's parameters (95 % interval "
                       f"{2 ** a['location_lo']:.2g}–{2 ** a['location_hi']:.2g}×)"
                       if np.isfinite(a["location"]) else ""))
            with quiet_numpy():
                acc = np.nanmedian(_sorted(result, cond)[2], 1)
            ratios = []
            for level in sorted({0.9, cfg.fit_level, 1.0}):
                hit = np.nonzero(acc >= level)[0]
                if hit.size:
                    ratios.append(f"{ps[i] / ps[hit[0]]:.2g}× at {100 * level:.0f} %")
            peak += (f"; at the peak the median train accuracy is {100 * acc[i]:.1f} %, and "
                     "the peak's parameters are, by the level that defines the threshold, "
                     + ", ".join(ratios) + " of the threshold's" if ratios else "")
        else:
            peak = f"it has no interior peak (prominence 0, {interval})"
        lines.append(f"{name}: {fit}; {thr}. Test error {me[0]:.1f} % at {int(ps[0])} "
                     f"parameters and {me[-1]:.1f} % at {int(ps[-1])}; {peak}.")
        ml = np.nanmedian(loss, 1)
        if np.isfinite(ml).any():
            j = int(np.argmin(np.where(np.isfinite(ml), ml, np.inf)))
            k = j + int(np.argmax(np.where(np.isfinite(ml[j:]), ml[j:], -np.inf)))
            flat = [q for q in range(len(ml)) if np.all(ml[q:] <= 1.1 * ml[j])]
            lines.append(
                f"{name}: median test loss {ml[0]:.3f} at {int(ps[0])} parameters and "
                f"{ml[-1]:.3f} at {int(ps[-1])}, lowest {ml[j]:.3f} at {int(ps[j])}"
                + (f", then up to {ml[k]:.3f} at {int(ps[k])} (a test-loss peak)"
                   if ml[k] > 1.1 * ml[j] else "")
                + (f"; within 10 % of its lowest value from {int(ps[flat[0]])} parameters on."
                   if flat else "."))
    return lines


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    claim = ("With label noise, test error peaks at an intermediate size near the "
             "interpolation threshold and falls again beyond it (double descent); without "
             "noise the peak is much weaker or absent")
    ref = "Belkin et al., 2019; Nakkiran et al., 2019"
    crit = (f"95 % bootstrap intervals over seeds: with noise, the test-error peak within "
            f"{cfg.near:g}× of the threshold's parameter count (smallest width at "
            f"{100 * cfg.fit_level:.0f} % train accuracy) and its prominence above the test "
            "set's resolution 2·√(e(1−e)/n); the prominence with noise above the one without; "
            "disagrees if any interval lies wholly on the wrong side")
    if "noisy" not in conditions(cfg):
        return Expectation(claim, ref, crit, None)
    n, c = analyse(result, cfg, "noisy"), analyse(result, cfg, "clean")
    if not np.isfinite(n["prominence"]):
        return Expectation(claim, ref, crit, None)
    span = np.log2(cfg.near)
    near = _side(n["location_lo"], n["location_hi"], -span - 1e-9, span + 1e-9)
    peak = _side(n["prominence_lo"], n["prominence_hi"], n["margin"])
    diff = n["prominence_boot"] - c["prominence_boot"]
    diff = diff[np.isfinite(diff)]
    d_lo, d_hi = np.quantile(diff, [0.025, 0.975]) if len(diff) else (np.nan, np.nan)
    amplified = _side(d_lo, d_hi, 0.0)
    parts = (near, peak, amplified)
    v = False if False in parts else (True if all(x is True for x in parts) else None)
    loc = (f"peak at {2 ** n['location']:.2g}× the threshold's parameters "
           f"({2 ** n['location_lo']:.2g}–{2 ** n['location_hi']:.2g}×)"
           if np.isfinite(n["location"]) else "no threshold: no width fitted the noisy labels")
    return Expectation(
        claim, ref, crit, v,
        verdict=TESTED[v],
        measured=f"with noise: {loc}, prominence {100 * n['prominence']:.1f} points "
                 f"({100 * n['prominence_lo']:.1f}–{100 * n['prominence_hi']:.1f}; "
                 f"resolution {100 * n['margin']:.1f}); without: prominence "
                 f"{100 * c['prominence']:.1f} points; difference 95 % interval "
                 f"{100 * d_lo:.1f}–{100 * d_hi:.1f} points")


study = Study("params-vs-generalization", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
