"""Can the network fit random labels? (Zhang et al., 2017)

Question: does an over-parameterised network memorise training labels that carry no
information, and what happens to its test accuracy? Zhang et al. found that networks reach
zero training error on random labels, only a small constant factor more slowly than on the true
labels, while test accuracy stays at chance — so capacity alone cannot explain why the same
networks generalise on real labels.

Method (STUDIES.md, ``random-labels``): an MLP with P ≫ N on a stratified MNIST subset small
enough to memorise; the training labels replaced by uniform random labels (test set untouched),
and the same network trained on the true labels as the control; Adam, batches reshuffled every
epoch, ``seeds`` initialisations each; per-epoch mean loss and accuracy on the full training
subset and the test set, computed the same way (eval mode) for both.

Why these defaults: 1 000 images and a 784-256-256-10 MLP (269 k parameters, 269 per image)
memorise random labels within the 150 epochs of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..data.labels import random_labels
from ..models import count_params, mlp
from ..train import train
from .base import DataNeed, Expectation, Study, field, require


@dataclass(frozen=True)
class Config:
    subset: int = field(1000, "training images (stratified sample)")
    test_subset: int = field(2000, "test images")
    width: int = field(256, "hidden width of the 784-w-w-10 MLP")
    epochs: int = field(150, "training epochs")
    batch_size: int = field(128, "mini-batch size, reshuffled every epoch")
    lr: float = field(1e-3, "Adam learning rate")
    seeds: int = field(2, "initialisations per label condition")
    fit_level: float = field(0.99, "train accuracy that counts as 'fitted'")

    def __post_init__(self):
        require(self.subset >= 10 and self.test_subset >= 10, "subsets must be ≥ 10")
        require(self.width >= 1 and self.epochs >= 1 and self.batch_size >= 1
                and self.seeds >= 1, "width, epochs, batch_size and seeds must be ≥ 1")
        require(self.lr > 0 and 0 < self.fit_level <= 1, "lr > 0 and 0 < fit_level ≤ 1")


SCALES = {
    "quick": {"subset": 200, "test_subset": 200, "width": 64, "epochs": 8, "seeds": 1},
    "full": {"subset": 10000, "test_subset": 10000, "width": 1024, "epochs": 500},
}
LABELS = ("true", "random")


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def condition(labels: str) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
        if labels == "random":
            data = random_labels(data, 1.0, seed=0)
        models = [mlp(784, 10, 2, width=cfg.width, seed=s).to(ctx.device)
                  for s in range(cfg.seeds)]
        tr = train(models, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                   device=ctx.device, progress=False)
        return {"epoch": tr.epoch, "train_loss": tr.train_loss, "test_loss": tr.test_loss,
                "train_acc": tr.train_acc, "test_acc": tr.test_acc,
                "diverged_epoch": tr.diverged_epoch,
                "params": np.asarray(count_params(models[0]))}

    pieces = dict(zip(LABELS, ctx.map(condition, LABELS)))
    return {f"{lab}.{k}": v for lab, p in pieces.items() for k, v in p.items()}


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    fig, axes = P.figure(2, 1, width=5.2, height=3.6)
    ax_l, ax_a = axes[0]
    for i, lab in enumerate(LABELS):
        ep, c = result[f"{lab}.epoch"], P.COLORS[i]
        P.band(ax_l, ep, result[f"{lab}.train_loss"], f"{lab} labels", c, log=True)
        P.band(ax_l, ep, result[f"{lab}.test_loss"], "_", c, linestyle="--", log=True)
        P.band(ax_a, ep, 100 * result[f"{lab}.train_acc"], "_", c)
        P.band(ax_a, ep, 100 * result[f"{lab}.test_acc"], "_", c, linestyle="--")
    ax_a.axhline(10, color="grey", lw=0.8, ls=":", label="chance (10 %)")
    ax_l.set(yscale="log", xlabel="epoch", ylabel="cross-entropy (mean per sample)",
             title="loss")
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 101))
    ax_l.plot([], [], color="black", label="train (solid)")
    ax_l.plot([], [], color="black", ls="--", label="test (dashed)")
    fig.legend(loc="outside lower center", ncol=5, fontsize=8,
               title=f"{int(result['true.params'])} parameters, {cfg.subset} training images; "
                     f"mean and min–max over {cfg.seeds} seed(s)", title_fontsize=8)
    return {"random_labels": fig}


def _epoch_reaching(acc: np.ndarray, epoch: np.ndarray, level: float) -> float:
    hit = np.nonzero(acc >= level)[0]
    return float(epoch[hit[0]]) if hit.size else float("nan")


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    reach, hits = {}, {}
    lines = []
    level = f"{100 * cfg.fit_level:.0f} % train accuracy"
    for lab in LABELS:
        ep = result[f"{lab}.epoch"]
        r = np.array([_epoch_reaching(a, ep, cfg.fit_level) for a in result[f"{lab}.train_acc"]])
        hits[lab] = int(np.isfinite(r).sum())
        # Seeds that never got there count as the last epoch: a lower bound on their time.
        reach[lab] = float(np.median(np.where(np.isfinite(r), r, cfg.epochs)))
        fin_tr = 100 * result[f"{lab}.train_acc"][:, -1]
        fin_te = 100 * result[f"{lab}.test_acc"][:, -1]
        when = (f"reached {level} in {hits[lab]}/{len(r)} seeds (median epoch {reach[lab]:.0f})"
                if hits[lab] else f"did not reach {level} in {cfg.epochs} epochs")
        lines.append(f"{lab} labels: {when}; final train accuracy {fin_tr.mean():.1f} %, test "
                     f"accuracy {fin_te.mean():.1f} ± {fin_te.std():.1f} % (chance 10 %).")
    n = result["true.train_acc"].shape[0]
    if hits["true"] == n and reach["true"] > 0:
        bound = "" if hits["random"] == n else "at least "
        lines.append(f"Slowdown of random vs true labels: {bound}"
                     f"{reach['random'] / reach['true']:.1f}× the epochs to {level} (Zhang et al."
                     " report a small constant factor).")
    else:
        lines.append(f"Slowdown not measured: the true-label control did not reach {level} "
                     "in every seed.")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    ep = result["random.epoch"]
    r = [_epoch_reaching(a, ep, cfg.fit_level) for a in result["random.train_acc"]]
    t = [_epoch_reaching(a, ep, cfg.fit_level) for a in result["true.train_acc"]]
    chance = abs(100 * result["random.test_acc"][:, -1].mean() - 10) <= 5
    fitted = all(np.isfinite(r)) and all(np.isfinite(t))
    slow = fitted and np.median(r) / np.median(t) <= 10
    return Expectation(
        "Over-parameterised nets fit random labels to ~100 % training accuracy, a small "
        "constant factor slower than true labels, with test accuracy at chance",
        "Zhang et al., 2017",
        f"every seed reaches {100 * cfg.fit_level:.0f} % train accuracy on random and true "
        "labels, the slowdown is ≤ 10×, and random-label test accuracy is within 5 points of "
        "10 %",
        bool(fitted and slow and chance))

study = Study("random-labels", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
