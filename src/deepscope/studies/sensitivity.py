"""Flatness vs generalisation, part 2: sensitivity vs batch size.

Question: how do the loss, the accuracy and the sensitivity of a network — the Frobenius norm
of the Jacobian of its softmax output with respect to its input, ‖∂f(x)/∂x‖_F, averaged over
samples — change with the batch size it was trained with? Novak et al. (2018) found that
sensitivity on test points correlates with the generalisation gap; Keskar et al. (2017) that
large batches generalise worse.

Method (STUDIES.md, ``sensitivity``): the same 784-w-w-10 MLP trained with ``batch_sizes``
(log-spaced) for the same number of epochs (so large batches take fewer steps — stated in the
findings) with Adam, ``seeds`` initialisations each; per-epoch metrics; at the end the mean
sensitivity over the test set and over the training subset (softmax output, as in Novak et
al.; ``output="logits"`` is an option), by batched vector-Jacobian products.

Why these defaults: 5 batch sizes 16 … 4 096 on 4 096 images (the largest is full batch) for
10 epochs, 2 seeds, a 128-wide MLP: the whole sweep takes well under a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..models import count_params, mlp
from ..probes.sensitivity import OUTPUTS, sensitivity
from ..train import train
from .base import DataNeed, Expectation, Study, field, require, spearman


@dataclass(frozen=True)
class Config:
    batch_sizes: tuple[int, ...] = field((16, 64, 256, 1024, 4096), "batch sizes (≥ 5)")
    subset: int = field(4096, "training images")
    test_subset: int = field(2000, "test images")
    width: int = field(128, "hidden width of the 784-w-w-10 MLP")
    epochs: int = field(10, "epochs, the same for every batch size")
    lr: float = field(1e-3, "Adam learning rate")
    seeds: int = field(2, "initialisations per batch size")
    output: str = field("softmax", "Jacobian of 'softmax' or 'logits'")

    def __post_init__(self):
        require(len(self.batch_sizes) >= 2 and min(self.batch_sizes) >= 1,
                "batch_sizes must be ≥ 1 (five or more, log-spaced, for the study)")
        require(self.subset >= 10 and self.test_subset >= 10, "subsets must be ≥ 10")
        require(min(self.width, self.epochs, self.seeds) >= 1,
                "width, epochs and seeds must be ≥ 1")
        require(self.lr > 0, "lr must be > 0")
        require(self.output in OUTPUTS, f"output must be one of {OUTPUTS}")


SCALES = {
    "quick": {"batch_sizes": (16, 32, 64, 128, 300), "subset": 300, "test_subset": 200,
              "width": 16, "epochs": 2, "seeds": 1},
    "full": {"batch_sizes": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
             "subset": 60000, "test_subset": 10000, "width": 256, "epochs": 30, "seeds": 3},
}
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")


def train_at_batch(cfg, ctx: Context, batch_size: int):
    """The models of the batch-size sweep (shared with the ``sharpness`` study)."""
    data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
    models = [mlp(784, 10, 2, width=cfg.width, seed=s).to(ctx.device) for s in range(cfg.seeds)]
    trace = train(models, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=batch_size,
                  device=ctx.device, progress=False)
    for m in models:
        m.eval()
    return models, data, trace


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def at_batch(bs: int) -> dict[str, np.ndarray]:
        models, data, tr = train_at_batch(cfg, ctx, bs)
        sens = {split: np.array([float(sensitivity(m, getattr(data, f"x_{split}"),
                                                   cfg.output).mean()) for m in models])
                for split in ("train", "test")}
        return {**{k: getattr(tr, k) for k in METRICS}, "epoch": tr.epoch,
                "sens_train": sens["train"], "sens_test": sens["test"],
                "steps": np.asarray(cfg.epochs * -(-cfg.subset // bs)),
                "params": np.asarray(count_params(models[0]))}

    pieces = ctx.map(at_batch, list(cfg.batch_sizes))
    out = {k: np.stack([p[k] for p in pieces]) for k in (*METRICS, "sens_train", "sens_test",
                                                         "steps")}
    out["epoch"], out["batch_sizes"] = pieces[0]["epoch"], np.asarray(cfg.batch_sizes)
    out["params"] = pieces[0]["params"]
    return out


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Loss (left) and accuracy (right) vs batch size, sensitivity on a twin axis."""
    order = np.argsort(result["batch_sizes"])
    b = result["batch_sizes"][order]
    fig, axes = P.figure(2, 1, width=5.4, height=3.8)
    for ax, kind in ((axes[0][0], "loss"), (axes[0][1], "acc")):
        scale = 100 if kind == "acc" else 1
        for split, ls in (("train", "-"), ("test", "--")):
            P.band(ax, b, scale * result[f"{split}_{kind}"][order, :, -1].T,
                   f"{split} {'accuracy' if kind == 'acc' else 'loss'}",
                   P.COLORS[0], linestyle=ls, log=kind == "loss")
        twin = ax.twinx()
        for split, ls in (("train", "-"), ("test", "--")):
            P.band(twin, b, result[f"sens_{split}"][order].T, f"sensitivity ({split})",
                   P.COLORS[1], linestyle=ls)
        ax.set(xscale="log", xlabel="batch size",
               ylabel="cross-entropy" if kind == "loss" else "accuracy (%)")
        if kind == "loss":
            ax.set_yscale("log")
        twin.set_ylabel(f"mean ‖∂{cfg.output}/∂x‖_F", color=P.COLORS[1])
        ax.yaxis.label.set_color(P.COLORS[0])
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="best")
        name = "accuracy" if kind == "acc" else "loss"
        ax.set_title(f"{name} after {cfg.epochs} epochs and sensitivity vs batch size",
                     fontsize=9)
        P.label_batch_sizes(ax, b)
    fig.suptitle(f"{int(result['params'])}-parameter MLP, {cfg.subset} images; mean and "
                 f"min–max over {cfg.seeds} seeds", fontsize=9)
    return {"sensitivity": fig}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    b = result["batch_sizes"]
    st = result["sens_test"]
    te = 100 * result["test_acc"][:, :, -1]
    parts = [f"batch {bs} ({int(s)} steps): test acc {te[i].mean():.1f} %, test sensitivity "
             f"{st[i].mean():.3f} (seeds {st[i].min():.3f}–{st[i].max():.3f})"
             for i, (bs, s) in enumerate(zip(b, result["steps"]))]
    return [
        "; ".join(parts) + ".",
        f"Trend with batch size (Spearman over batch sizes, seed means): test sensitivity "
        f"{spearman(b, st.mean(1)):+.2f}, test accuracy {spearman(b, te.mean(1)):+.2f}, "
        f"generalisation gap (train − test acc) "
        f"{spearman(b, (100 * result['train_acc'][:, :, -1] - te).mean(1)):+.2f}.",
        "Same epochs for every batch size, so larger batches take fewer optimiser steps "
        "(listed above): part of any trend is under-training, not batch size alone.",
    ]



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    b = result["batch_sizes"]
    return Expectation(
        "Larger batches give functions that are more sensitive to their input, and "
        "sensitivity tracks worse generalisation",
        "Novak et al., 2018; Keskar et al., 2017",
        "Spearman correlation of batch size with mean test sensitivity > 0",
        bool(spearman(b, result["sens_test"].mean(1)) > 0) if len(b) >= 3 else None)

study = Study("sensitivity", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
