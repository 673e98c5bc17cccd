"""Flatness vs generalisation, part 1: the line between two differently trained models.

Question: take two networks trained from the **same initialisation** in different ways — small
vs large batches, or small vs large learning rate — and evaluate the loss and accuracy along
θ(α) = (1 − α) θ₁ + α θ₂ for α from −1 to 2. Keskar et al. (2017, Fig. 3) used this parametric
plot to show that large-batch solutions sit in sharper basins than small-batch ones: the loss
rises more steeply on the large-batch side. Starting both runs from the same θ₀ matters: two
independent initialisations are separated by a barrier that says nothing about flatness.

Method (STUDIES.md, ``interpolation``): one 784-w-w-10 MLP initialisation, trained twice per
pair with the same number of epochs (Adam): batch 64 vs 1024 at lr 1e-3, and lr 1e-3 vs 1e-2 at
batch 256; ``alphas`` points in [−1, 2]; mean cross-entropy and accuracy on the full training
subset and the test set at every α (vectorised over α).

Why these defaults: 5 000 images, 20 epochs and a 128-wide MLP train all four models in
seconds; 61 values of α resolve the shape of the curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from .. import plot as P
from ..context import Context
from ..models import count_params, mlp
from ..probes.landscape import interpolate
from ..train import train
from .base import DataNeed, Expectation, Study, field, require


@dataclass(frozen=True)
class Config:
    subset: int = field(5000, "training images")
    test_subset: int = field(2000, "test images")
    width: int = field(128, "hidden width of the 784-w-w-10 MLP")
    epochs: int = field(20, "epochs, the same for both models of a pair")
    small_batch: int = field(64, "batch size of model 1 in the batch pair")
    large_batch: int = field(1024, "batch size of model 2 in the batch pair")
    batch_pair_lr: float = field(1e-3, "learning rate of the batch pair")
    small_lr: float = field(1e-3, "learning rate of model 1 in the lr pair")
    large_lr: float = field(1e-2, "learning rate of model 2 in the lr pair")
    lr_pair_batch: int = field(256, "batch size of the lr pair")
    alphas: int = field(61, "α values, evenly spaced in [−1, 2]")
    seed: int = field(0, "the shared initialisation")

    def __post_init__(self):
        require(self.subset >= 10 and self.test_subset >= 10, "subsets must be ≥ 10")
        require(min(self.width, self.epochs, self.small_batch, self.large_batch,
                    self.lr_pair_batch) >= 1, "width, epochs and batch sizes must be ≥ 1")
        require(min(self.batch_pair_lr, self.small_lr, self.large_lr) > 0,
                "learning rates must be > 0")
        require(self.alphas >= 31, "alphas must be ≥ 31")


SCALES = {
    "quick": {"subset": 300, "test_subset": 200, "width": 16, "epochs": 2, "alphas": 31},
    "full": {"subset": 60000, "test_subset": 10000, "width": 512, "epochs": 50},
}


def _pairs(cfg: Config) -> dict[str, tuple[tuple[int, float], tuple[int, float]]]:
    return {"batch": ((cfg.small_batch, cfg.batch_pair_lr), (cfg.large_batch, cfg.batch_pair_lr)),
            "lr": ((cfg.lr_pair_batch, cfg.small_lr), (cfg.lr_pair_batch, cfg.large_lr))}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    alphas = np.linspace(-1, 2, cfg.alphas)

    def pair(name: str) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
        models = []
        for bs, lr in _pairs(cfg)[name]:
            model = mlp(784, 10, 2, width=cfg.width, seed=cfg.seed).to(ctx.device)
            train(model, data, lr=lr, epochs=cfg.epochs, batch_size=bs, eval_every=0,
                  device=ctx.device, progress=False)
            models.append(model)
        res = interpolate(models[0], models[1], F.cross_entropy, data, alphas)
        return {"train_loss": res.train_loss, "test_loss": res.test_loss,
                "train_acc": res.train_acc, "test_acc": res.test_acc,
                "params": np.asarray(count_params(models[0]))}

    out: dict[str, np.ndarray] = {"alphas": alphas}
    for name, piece in zip(("batch", "lr"), ctx.map(pair, ["batch", "lr"])):
        out.update({f"{name}.{k}": v for k, v in piece.items()})
    return out


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    figs = {}
    a = result["alphas"]
    for name, ((b1, l1), (b2, l2)) in _pairs(cfg).items():
        fig, axes = P.figure(1, 1, width=6.4, height=3.8)
        ax = axes[0][0]
        acc_ax = ax.twinx()
        ax.plot(a, result[f"{name}.train_loss"], color=P.COLORS[0], label="cross-entropy, train")
        ax.plot(a, result[f"{name}.test_loss"], color=P.COLORS[0], ls="--",
                label="cross-entropy, test")
        acc_ax.plot(a, 100 * result[f"{name}.train_acc"], color=P.COLORS[1],
                    label="accuracy, train")
        acc_ax.plot(a, 100 * result[f"{name}.test_acc"], color=P.COLORS[1], ls="--",
                    label="accuracy, test")
        for x in (0, 1):
            ax.axvline(x, color="grey", lw=0.6, ls=":")
        ax.set(yscale="log", xlabel="α   (θ = (1 − α)·θ₁ + α·θ₂)",
               ylabel="cross-entropy (log)",
               title=f"model 1 (α=0): batch {b1}, lr {l1:g};  model 2 (α=1): batch {b2}, "
                     f"lr {l2:g}")
        ax.yaxis.label.set_color(P.COLORS[0])
        acc_ax.set_ylabel("accuracy (%)", color=P.COLORS[1])
        acc_ax.set_ylim(0, 100)
        h1, l1_ = ax.get_legend_handles_labels()
        h2, l2_ = acc_ax.get_legend_handles_labels()
        fig.legend(h1 + h2, l1_ + l2_, loc="outside lower center", ncol=4, fontsize=8)
        figs[name] = fig
    return figs


def _outer_rise(loss: np.ndarray, a: np.ndarray, at: float, away: float) -> float:
    """Rise of the loss from α = at to α = at + away, on the side facing away from the other
    model (so the barrier between the two does not count as sharpness)."""
    i, j = int(np.argmin(np.abs(a - at))), int(np.argmin(np.abs(a - (at + away))))
    return float(loss[j] - loss[i])


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    a = result["alphas"]
    i0, i1 = int(np.argmin(np.abs(a))), int(np.argmin(np.abs(a - 1)))
    lines = []
    for name, ((b1, l1), (b2, l2)) in _pairs(cfg).items():
        tl, te = result[f"{name}.train_loss"], 100 * result[f"{name}.test_acc"]
        mid = tl[(a > 0) & (a < 1)]
        barrier = float(mid.max() - max(tl[i0], tl[i1])) if mid.size else float("nan")
        s1, s2 = _outer_rise(tl, a, 0.0, -0.25), _outer_rise(tl, a, 1.0, 0.25)
        if abs(s1 - s2) <= 0.1 * max(abs(s1), abs(s2), 1e-12) or max(s1, s2) <= 1e-6:
            which = "the two are indistinguishable by this measure (within 10 %)"
        else:
            which = f"model {1 if s1 > s2 else 2} sits in the sharper neighbourhood"
        lines.append(
            f"{name} pair — model 1 (batch {b1}, lr {l1:g}): train loss {tl[i0]:.3f}, test acc "
            f"{te[i0]:.1f} %; model 2 (batch {b2}, lr {l2:g}): train loss {tl[i1]:.3f}, test acc"
            f" {te[i1]:.1f} %. Barrier between them {barrier:+.3f}; loss rise 0.25 in α beyond "
            f"each model, away from the other: {s1:+.3f} at model 1 vs {s2:+.3f} at model 2 — "
            f"{which} along this line.")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    a, tl = result["alphas"], result["batch.train_loss"]
    s1, s2 = _outer_rise(tl, a, 0.0, -0.25), _outer_rise(tl, a, 1.0, 0.25)
    return Expectation(
        "The large-batch solution lies in a sharper basin: along the line the training loss "
        "rises faster beyond it than beyond the small-batch solution",
        "Keskar et al., 2017, Fig. 3",
        "batch pair: the loss rise 0.25 in α beyond the large-batch model exceeds the rise "
        "beyond the small-batch model by more than 10 %",
        bool(s2 > 1.1 * s1) if cfg.large_batch > cfg.small_batch else None)

study = Study("interpolation", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
