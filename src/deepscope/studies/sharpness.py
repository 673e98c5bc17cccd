"""Bonus: sharpness and curvature vs batch size (Keskar et al., 2017).

Question: are the minima found with large batches sharper? Keskar et al. measured
ε-sharpness — the largest relative rise of the loss within a box of half-width ε(|θ_i|+1)
around θ — and found it grows with batch size, together with the generalisation gap. The top
Hessian eigenvalue and the Hessian trace are the curvature behind it.

Method (STUDIES.md, ``sharpness``): the models of the ``sensitivity`` study (same config
fields, same seeds, trained the same way); for each, on its training subset: ε-sharpness for
each ``eps`` by projected sign-gradient ascent with random restarts; the largest Hessian
eigenvalue by Lanczos; the trace by Hutch++ — all in float32 on the full training subset.

Why these defaults: those of ``sensitivity`` (the same models), with 20 ascent steps and 2
restarts per ε, and 60 Hessian-vector products for the trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from .. import plot as P
from ..context import Context
from ..probes.hessian import hessian_eigenvalues, hessian_trace
from ..probes.sharpness import sharpness
from .base import DataNeed, Expectation, Study, field, require, spearman
from .sensitivity import SCALES as SENS_SCALES
from .sensitivity import train_at_batch


@dataclass(frozen=True)
class Config:
    batch_sizes: tuple[int, ...] = field((16, 64, 256, 1024, 4096), "batch sizes")
    subset: int = field(4096, "training images (sharpness is of the loss on all of them)")
    test_subset: int = field(2000, "test images")
    width: int = field(128, "hidden width of the 784-w-w-10 MLP")
    epochs: int = field(10, "epochs, the same for every batch size")
    lr: float = field(1e-3, "Adam learning rate")
    seeds: int = field(2, "initialisations per batch size")
    eps: tuple[float, ...] = field((1e-4, 1e-3, 1e-2), "box sizes ε")
    ascent_steps: int = field(20, "sign-gradient ascent steps per start")
    restarts: int = field(2, "random starts in the box besides δ = 0")
    trace_samples: int = field(60, "Hessian-vector products for the Hutch++ trace")

    def __post_init__(self):
        require(len(self.batch_sizes) >= 2 and min(self.batch_sizes) >= 1,
                "batch_sizes must be ≥ 1")
        require(self.subset >= 10 and self.test_subset >= 10, "subsets must be ≥ 10")
        require(min(self.width, self.epochs, self.seeds, self.ascent_steps) >= 1,
                "width, epochs, seeds and ascent_steps must be ≥ 1")
        require(self.lr > 0 and all(e > 0 for e in self.eps), "lr and eps must be > 0")
        require(self.restarts >= 0 and self.trace_samples >= 3,
                "restarts ≥ 0 and trace_samples ≥ 3")


SCALES = {
    "quick": {**SENS_SCALES["quick"], "ascent_steps": 5, "restarts": 1, "trace_samples": 9},
    "full": {**SENS_SCALES["full"], "ascent_steps": 50, "restarts": 5, "trace_samples": 200},
}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def at_batch(bs: int) -> dict[str, np.ndarray]:
        models, data, tr = train_at_batch(cfg, ctx, bs)
        batch = (data.x_train, data.y_train)

        def curvature(s: int, m) -> tuple[list[float], float, float]:
            # A member whose training diverged (recorded by the trainer, so the run exits 1)
            # has non-finite weights: its probes are skipped, their values NaN.
            if tr.diverged_epoch[s] >= 0:
                return [float("nan")] * len(cfg.eps), float("nan"), float("nan")
            sharp = [sharpness(m, F.cross_entropy, batch, eps=e, steps=cfg.ascent_steps,
                               restarts=cfg.restarts, seed=s).value for e in cfg.eps]
            top = float(hessian_eigenvalues(m, F.cross_entropy, batch, k=1, tol=1e-3,
                                            dtype=None).values[0])
            trace = hessian_trace(m, F.cross_entropy, batch, samples=cfg.trace_samples,
                                  dtype=None).estimate
            return sharp, top, float(trace)

        sharp, top, trace = zip(*(curvature(s, m) for s, m in enumerate(models)))
        return {"sharpness": np.array(sharp), "top_eig": np.array(top),  # (S, E), (S,), (S,)
                "trace": np.array(trace),
                "train_loss": tr.train_loss[:, -1], "test_loss": tr.test_loss[:, -1],
                "test_acc": tr.test_acc[:, -1], "train_acc": tr.train_acc[:, -1]}

    pieces = ctx.map(at_batch, list(cfg.batch_sizes))
    out = {k: np.stack([p[k] for p in pieces]) for k in pieces[0]}
    out["batch_sizes"] = np.asarray(cfg.batch_sizes)
    return out


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    order = np.argsort(result["batch_sizes"])
    b = result["batch_sizes"][order]
    fig, axes = P.figure(3, 1, width=4.3, height=3.6)
    ax_s, ax_h, ax_l = axes[0]
    for j, e in enumerate(cfg.eps):
        P.band(ax_s, b, result["sharpness"][order, :, j].T, f"ε = {e:g}", P.COLORS[j], log=True)
    ax_s.set(xscale="log", yscale="log", xlabel="batch size", ylabel="ε-sharpness φ (%)",
             title="ε-sharpness (Keskar et al.)")
    ax_s.legend(fontsize=8, loc="center left")  # the curves sit high and low: keep clear
    P.band(ax_h, b, result["top_eig"][order].T, "top eigenvalue λ₁", P.COLORS[3], log=True)
    P.band(ax_h, b, result["trace"][order].T, "trace (Hutch++)", P.COLORS[4], log=True)
    ax_h.set(xscale="log", yscale="log", xlabel="batch size", ylabel="Hessian",
             title="curvature of the training loss")
    ax_h.legend(fontsize=8)
    P.band(ax_l, b, result["test_loss"][order].T, "test loss", P.COLORS[1], log=True)
    P.band(ax_l, b, result["train_loss"][order].T, "train loss", P.COLORS[0], log=True)
    ax_l.set(xscale="log", yscale="log", xlabel="batch size", ylabel="cross-entropy",
             title=f"loss after {cfg.epochs} epochs")
    ax_l.legend(fontsize=8)
    for ax in (ax_s, ax_h, ax_l):
        P.label_batch_sizes(ax, b)
    fig.suptitle(f"mean and min–max over {cfg.seeds} seeds", fontsize=9)
    return {"sharpness": fig}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    b = result["batch_sizes"]
    lines = []
    for j, e in enumerate(cfg.eps):
        s = result["sharpness"][:, :, j]
        lines.append(f"ε = {e:g}: sharpness " + ", ".join(
            f"{bs}: {s[i].mean():.3g} ({s[i].min():.3g}–{s[i].max():.3g})"
            for i, bs in enumerate(b)) + f" (batch: mean (seed range)); Spearman with batch "
            f"size {spearman(b, s.mean(1)):+.2f}.")
    lines.append("Top Hessian eigenvalue " + ", ".join(
        f"{bs}: {v:.3g}" for bs, v in zip(b, result["top_eig"].mean(1)))
        + f" (Spearman {spearman(b, result['top_eig'].mean(1)):+.2f}); trace "
        + ", ".join(f"{bs}: {v:.3g}" for bs, v in zip(b, result["trace"].mean(1)))
        + f" (Spearman {spearman(b, result['trace'].mean(1)):+.2f}).")
    gap = (result["test_loss"] - result["train_loss"]).mean(1)
    lines.append(f"Generalisation gap (test − train loss) vs batch size: Spearman "
                 f"{spearman(b, gap):+.2f}; Keskar et al. expect sharpness and the gap to grow "
                 "with batch size.")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    b = result["batch_sizes"]
    eps = list(cfg.eps)
    j = eps.index(1e-3) if 1e-3 in eps else len(eps) // 2
    return Expectation(
        "ε-sharpness grows with batch size (large-batch training converges to sharp minima)",
        "Keskar et al., 2017",
        f"Spearman correlation of batch size with mean ε-sharpness at ε = {eps[j]:g} > 0",
        bool(spearman(b, result["sharpness"][:, :, j].mean(1)) > 0) if len(b) >= 3 else None)

study = Study("sharpness", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
