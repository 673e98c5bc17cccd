"""Flatness vs generalisation, part 2: sensitivity vs batch size.

Question: does a network's sensitivity to its input — the Frobenius norm of the Jacobian of
its softmax output with respect to the input, ‖∂f(x)/∂x‖_F, averaged over test points —
track how badly it generalises? Novak et al. (2018) trained thousands of fully-connected nets
and found that this norm correlates with the generalisation gap, and that factors of poor
generalisation such as full-batch training give more sensitive functions; Keskar et al.
(2017) found that large batches generalise worse.

Method (STUDIES.md, ``sensitivity``): the batch-size sweep of :mod:`.common` — the same
784-w-w-10 MLP, Adam at one learning rate, trained at each of ``batch_sizes`` from
``seeds`` initialisations, every model to the same criterion (training cross-entropy ≤
``target_loss``, checked at least every 16 steps, with a cap) — then the mean sensitivity
over the test set and over the training subset (softmax output as in Novak et al.;
``output="logits"`` is an option), by batched vector-Jacobian products. Every converged
(batch size, seed) model is one point. The generalisation gap is test − train cross-entropy
(the quantity the models were trained on; the accuracy gap is reported too).

Verdict: Spearman ρ between test sensitivity and the gap over the converged models, with a
95 % percentile-bootstrap interval over models: agrees when the interval lies above 0,
disagrees when below, inconclusive when it includes 0. The batch-size trend of the
sensitivity and of the gap is reported with its interval as well. Here the models differ only
in batch size and seed, so the correlation tests Novak et al.'s claim on the differences
that batch size makes (their models also varied in width, depth, optimiser and more).

Why this design (measured on 2 CPU cores shared with other work, one thread, 5 seeds, width
128, 4 096 images):
- **Training to a criterion, at one learning rate.** At a fixed 10 epochs for every batch
  size (the old design) the batch-4 096 model took 10 steps and ended at 62 % training
  accuracy (the review of the old default run). An equal number of steps with the learning
  rate scaled does not make the models comparable either: 256 steps each with Adam's
  square-root rule (lr = 1e-3·√(batch/256); Malladi et al., 2022; Hoffer et al., 2017 for
  SGD) ended at training losses from 0.62 (batch 16, median) to 0.0007 (batch 4 096). To
  cross-entropy ≤ 0.05 at lr 1e-3 every model converged, in a median 1 792 (batch 16), 832,
  448, 272 and 160 steps (batch 4 096), at training losses 0.030–0.050 and training
  accuracies 98.9–99.5 % — like Keskar et al.'s comparison (one optimiser and rate, small and
  large batches, both fitting the training set).
- **5 batch sizes 16 … 4 096 on 4 096 images** (the largest is full-batch gradient descent),
  **5 seeds**: ``sharpness`` and ``interpolation`` reuse the sweep's models from the cache
  instead of training them again, and the three studies took 185 s of CPU time together
  (80 + 53 + 52 s in ``run all``'s order: interpolation, sensitivity, sharpness), inside
  their 3.5-minute share of the suite; with 3 seeds they took 123 s. The verdict was the same
  with 3 seeds (ρ = +0.97, interval +0.86 to +1.00, n = 15) as with 5.
- **Cap** 4 096 steps or 320 epochs, whichever comes first: twice what the slowest seed
  needed at the smallest batch (2 048 steps) and at the largest (160 epochs).
- **The gap in cross-entropy**: every converged model has training loss ≤ 0.05, so the gap
  is mostly the test loss, which rises with batch size (0.198 at batch 16 to 0.243 at
  4 096, medians); the accuracy gap (5.5 to 6.3 points) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..probes.sensitivity import OUTPUTS, sensitivity
from . import common as C
from .base import DataNeed, Expectation, Study, verdict
from .fields import field


@dataclass(frozen=True)
class Config(C.SweepConfig):  # the sweep's training settings, then:
    batch_sizes: tuple[int, ...] = field((16, 64, 256, 1024, 4096),
                                         "batch sizes (five or more, log-spaced)",
                                         role="optimiser", lo=1, min_len=2)
    output: str = field("softmax", "Jacobian of 'softmax' or 'logits'", role="measurement",
                        choices=OUTPUTS)


SCALES = {k: dict(v) for k, v in C.SWEEP_SCALES.items()}  # shared with sharpness


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    sw = C.sweep(ctx, cfg)

    def measure(bs: int) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
        out = {}
        for split in ("train", "test"):
            x = getattr(data, f"x_{split}")
            out[f"sens_{split}"] = np.array([
                np.nan if sw.dead[bs][s] else float(sensitivity(
                    C.build(sw.settings, theta, ctx.device), x, cfg.output).mean())
                for s, theta in enumerate(sw.thetas[bs])])
        return out  # sens_train, sens_test: (S,)

    return C.sweep_result(sw, ctx.map(measure, sw.sizes, desc="sensitivity"))


# --- the statistics ------------------------------------------------------------------------


def _gap(result) -> np.ndarray:
    return result["test_loss"] - result["train_loss"]


def _points(result, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``key`` and the gap at the converged models with finite values: (n,), (n,)."""
    x, y = np.asarray(result[key], float), _gap(result)
    ok = C.converged(result) & np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def statistics(result) -> dict[str, tuple[float, float, float, int]]:
    """Spearman ρ with its 95 % bootstrap interval and n, over the converged models:
    ``"sens-gap"`` (test sensitivity vs gap, the verdict), ``"batch-sens"`` and
    ``"batch-gap"`` (the batch-size trends)."""
    ok = C.converged(result)
    b = np.broadcast_to(np.asarray(result["batch_sizes"], float)[:, None], ok.shape)
    sens, gap = np.asarray(result["sens_test"], float), _gap(result)
    return {name: C.spearman_over(ok, x, y)
            for name, x, y in (("sens-gap", sens, gap), ("batch-sens", b, sens),
                               ("batch-gap", b, gap))}


# --- figures -------------------------------------------------------------------------------


def _masked(result, key: str, scale: float = 1.0) -> np.ndarray:
    """(S, B) values of the converged models, NaN elsewhere (for the median bands)."""
    v = scale * np.asarray(result[key], float)
    return np.where(C.converged(result), v, np.nan).T


def _crosses(ax, result, key: str, scale: float = 1.0, label: bool = True) -> None:
    bad = ~C.converged(result)
    b = np.broadcast_to(np.asarray(result["batch_sizes"], float)[:, None], bad.shape)
    P.not_converged(ax, b[bad], scale * np.asarray(result[key], float)[bad],
                    **({} if label else {"label": None}))


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Loss and accuracy vs batch size with sensitivity on a twin axis; the gap against the
    sensitivity, model by model; the training curves to the criterion."""
    b = np.asarray(result["batch_sizes"])
    order = np.argsort(b)
    r = {k: (v[order] if k != "params" and np.ndim(v) and len(v) == len(b) else v)
         for k, v in result.items()}
    b = b[order]
    stat = f"{cfg.seeds} seeds: {P.STAT['median']}"
    fig, axes = P.figure(2, 1, width=5.4, height=3.9)
    for ax, kind in ((axes[0][0], "loss"), (axes[0][1], "acc")):
        scale = 100 if kind == "acc" else 1
        for split, ls in (("train", "-"), ("test", "--")):
            P.band(ax, b, _masked(r, f"{split}_{kind}", scale),
                   f"{split} {'accuracy' if kind == 'acc' else 'loss'}", P.COLORS[0],
                   linestyle=ls, stat="median")
            _crosses(ax, r, f"{split}_{kind}", scale, label=split == "train")
        twin = ax.twinx()
        for split, ls in (("train", "-"), ("test", "--")):
            P.band(twin, b, _masked(r, f"sens_{split}"), f"sensitivity ({split})",
                   P.COLORS[1], linestyle=ls, stat="median")
        _crosses(twin, r, "sens_test", label=False)
        ax.set(xscale="log", xlabel="batch size",
               ylabel="cross-entropy" if kind == "loss" else "accuracy (%)")
        if kind == "loss":
            ax.set_yscale("log")
        twin.set_ylabel(f"mean ‖∂{cfg.output}/∂x‖_F", color=P.COLORS[1])
        ax.yaxis.label.set_color(P.COLORS[0])
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="best", title=stat, title_fontsize=7)
        name = "accuracy" if kind == "acc" else "loss"
        ax.set_title(f"{name} and sensitivity at the criterion vs batch size", fontsize=9)
        P.label_batch_sizes(ax, b)
    fig.suptitle(f"{int(result['params'])}-parameter MLP, {cfg.subset} images, each model "
                 f"trained to training cross-entropy ≤ {cfg.target_loss:g}", fontsize=9)
    figs = {"sensitivity": fig}

    fig, axes = P.figure(2, 1, width=4.8, height=3.8)
    ax = axes[0][0]
    ok = C.converged(r)
    sens, gap = np.asarray(r["sens_test"], float), _gap(r)
    for i, bs in enumerate(b):
        ax.scatter(sens[i][ok[i]], gap[i][ok[i]], color=P.COLORS[i % len(P.COLORS)],
                   label=f"batch {int(bs)}", s=28)
    P.not_converged(ax, sens[~ok], gap[~ok])
    st = statistics(r)
    ax.set(xlabel=f"test sensitivity, mean ‖∂{cfg.output}/∂x‖_F",
           ylabel="generalisation gap: test − train cross-entropy",
           title="gap vs sensitivity, one point per model")
    ax.legend(fontsize=7, title=f"Spearman {C.rho_text(st['sens-gap'])}".replace(" (", "\n("),
              title_fontsize=7)
    ax = axes[0][1]
    step = np.asarray(r["curve_step"], float)
    step = np.where(step > 0, step, np.nan)  # step 0 (initialisation) has no place on log-x
    for i, bs in enumerate(b):
        P.band(ax, step[i], r["curve_train_loss"][i], f"batch {int(bs)}",
               P.COLORS[i % len(P.COLORS)], stat="median")
    ax.axhline(cfg.target_loss, color="grey", ls=":", lw=1, label="criterion")
    bad = ~ok
    if bad.any():
        last = np.nanmax(np.where(np.isfinite(step), step, np.nan), axis=1)
        P.not_converged(ax, np.broadcast_to(last[:, None], bad.shape)[bad],
                        np.asarray(r["train_loss"], float)[bad])
    ax.set(xscale="log", yscale="log", xlabel="optimiser steps",
           ylabel="training cross-entropy (full pass)", title="training to the criterion")
    ax.legend(fontsize=7, title=stat, title_fontsize=7)
    figs["gap"] = fig
    return figs


# --- findings and verdict --------------------------------------------------------------------


def _num(x: float, spec: str = ".3f") -> str:
    return format(x, spec) if np.isfinite(x) else "undefined"


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    b = np.asarray(result["batch_sizes"])
    ok = C.converged(result)
    lines = [C.describe_missed(result, cfg)]

    def med(key: str, i: int, scale: float = 1.0) -> float:
        v = scale * np.asarray(result[key], float)[i][ok[i]]
        v = v[np.isfinite(v)]
        return float(np.median(v)) if v.size else float("nan")

    lines.append("Per batch size, medians over converged seeds — " + "; ".join(
        f"batch {int(bs)}: {_num(med('reached_step', i), '.0f') if ok[i].any() else 'no'} "
        f"steps to the criterion, training loss {_num(med('train_loss', i), '.3f')}, test "
        f"loss {_num(med('test_loss', i), '.3f')}, test accuracy "
        f"{_num(med('test_acc', i, 100), '.1f')} %, train − test accuracy "
        f"{_num(med('train_acc', i, 100) - med('test_acc', i, 100), '.1f')} points, test "
        f"sensitivity {_num(med('sens_test', i), '.3f')}"
        for i, bs in enumerate(b)) + ".")
    st = statistics(result)
    lines.append(f"Test sensitivity vs generalisation gap (test − train cross-entropy) over "
                 f"the converged models: Spearman {C.rho_text(st['sens-gap'])}.")
    lines.append(f"Batch-size trends over the same models: test sensitivity "
                 f"{C.rho_text(st['batch-sens'])}; gap {C.rho_text(st['batch-gap'])}.")
    return lines


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    stat = statistics(result)["sens-gap"]
    _, lo, hi, n = stat
    agrees = verdict(lo, hi, expected_sign=1) if n >= C.MIN_MODELS else None
    return Expectation(
        "Across models, the input–output Jacobian norm (sensitivity, on test points) "
        "correlates positively with the generalisation gap",
        "Novak et al., 2018",
        f"95 % bootstrap interval of Spearman ρ(test sensitivity, test − train "
        f"cross-entropy) over the models that met the criterion (training cross-entropy ≤ "
        f"{cfg.target_loss:g}) lies above 0; inconclusive if it includes 0; not testable "
        f"with fewer than {C.MIN_MODELS} such models",
        agrees, verdict=C.verdict_word(agrees, n, C.MIN_MODELS),
        measured=C.rho_text(stat))


study = Study("sensitivity", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
