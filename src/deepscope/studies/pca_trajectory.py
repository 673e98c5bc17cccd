"""Visualising the optimisation process: weight trajectories under PCA.

Question: what do the paths of training runs look like in weight space, for the whole model
and for one layer? Independent initialisations start far apart in random directions; PCA of
their joint trajectories shows whether they move along a few shared directions, how far they
travel, and whether they end near each other (Li et al., 2018, §7; Lorch, 2016).

Method (STUDIES.md, ``pca-trajectory``): ``runs`` **independent** initialisations of one MLP
(trained together, vectorised), the same hyper-parameters, on an MNIST subset; the full flat θ
(weights **and** biases) is recorded every ``every`` epochs, from epoch 0. **One joint PCA**
over all snapshots of all runs — exact, on **centred** data — once for the whole model and once
for one hidden layer (its weight and bias). The explained variance of the two components says
how much of the motion the pictures show.

Why these defaults: 8 runs and a snapshot every 3 epochs for 30 epochs as in the homework, on
3 000 images with a 784-64-64-10 MLP (55 k parameters) and Adam, so the study takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..models import count_params, mlp
from ..probes.trajectory import layer_slice, pca
from ..train import train
from .base import DataNeed, Expectation, Study, field, require


@dataclass(frozen=True)
class Config:
    runs: int = field(8, "independent initialisations, trained together")
    subset: int = field(3000, "MNIST training images")
    width: int = field(64, "hidden width of the 784-w-w-10 MLP")
    epochs: int = field(30, "training epochs")
    every: int = field(3, "epochs between θ snapshots")
    batch_size: int = field(100, "mini-batch size (reshuffled every epoch per run)")
    lr: float = field(1e-3, "Adam learning rate")
    layer: str = field("3", "module whose weight and bias form 'one layer' (3 = 2nd Linear)")

    def __post_init__(self):
        require(self.runs >= 2, "runs must be ≥ 2 (a joint PCA of one run shows no spread)")
        require(self.subset >= 10 and self.width >= 1 and self.batch_size >= 1,
                "subset ≥ 10, width ≥ 1 and batch_size ≥ 1 are required")
        require(self.epochs >= 1 and 1 <= self.every <= self.epochs,
                "epochs ≥ 1 and 1 ≤ every ≤ epochs are required")
        require(self.lr > 0, "lr must be > 0")
        names = sorted({k.split(".")[0] for k, _ in mlp(784, 10, 2, width=1).named_parameters()})
        require(self.layer in names, f"layer {self.layer!r} has no parameters; choose one of "
                f"{names} (modules of the 784-w-w-10 MLP with weights)")


SCALES = {
    "quick": {"runs": 3, "subset": 300, "width": 16, "epochs": 6},
    "full": {"subset": 60000, "width": 256, "epochs": 30, "lr": 1e-3},
}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def piece(_: str) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=1000)
        models = [mlp(784, 10, 2, width=cfg.width, seed=s).to(ctx.device)
                  for s in range(cfg.runs)]
        trace = train(models, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      snapshot_every=cfg.every, eval_every=cfg.every, device=ctx.device,
                      progress=False)
        sl = layer_slice(models[0], cfg.layer)
        out = {"epoch": trace.snapshot_epoch, "params": np.asarray(count_params(models[0])),
               "layer_params": np.asarray(sl.stop - sl.start),
               "train_loss": trace.train_loss, "test_acc": trace.test_acc,
               "eval_epoch": trace.epoch}
        for name, snaps in (("model", trace.snapshots), ("layer", trace.snapshots[..., sl])):
            res = pca(snaps, k=2)
            out[f"{name}.xy"] = res.projections  # (runs, K, 2)
            out[f"{name}.explained"] = res.explained_variance_ratio
            # Distance between runs' θ at the start and at the end (in the full space).
            out[f"{name}.spread"] = np.array([_mean_pairwise(snaps[:, 0]),
                                              _mean_pairwise(snaps[:, -1])])
        return out

    (result,) = ctx.map(piece, ["trajectories"])
    return result


def _mean_pairwise(points: np.ndarray) -> float:
    x = points.astype(np.float64)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Whole model and one layer: PC1 vs PC2, coloured by run, joined in order, annotated."""
    fig, axes = P.figure(2, 1, width=5.4, height=4.6)
    panels = ((axes[0][0], "model", f"whole model ({int(result['params'])} parameters)"),
              (axes[0][1], "layer",
               f"layer {cfg.layer} ({int(result['layer_params'])} parameters)"))
    for ax, name, title in panels:
        xy = result[f"{name}.xy"]
        for r in range(xy.shape[0]):
            c = P.COLORS[r % len(P.COLORS)]
            ax.plot(xy[r, :, 0], xy[r, :, 1], "-o", color=c, ms=3, lw=1, label=f"run {r}")
            ax.annotate("start", xy[r, 0], fontsize=6, color=c, xytext=(3, 3),
                        textcoords="offset points")
            acc = result["test_acc"][r, -1]
            ax.annotate(f"{100 * acc:.1f} %", xy[r, -1], fontsize=7, color=c, xytext=(3, -9),
                        textcoords="offset points")
        ev = result[f"{name}.explained"]
        ax.set(xlabel=f"PC1 ({100 * ev[0]:.1f} % of variance)",
               ylabel=f"PC2 ({100 * ev[1]:.1f} % of variance)",
               title=f"{title}: one joint PCA of {xy.shape[0]} runs")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center",
               ncol=min(8, result["model.xy"].shape[0]), fontsize=8,
               title=f"snapshot every {cfg.every} epochs; end labels: final test accuracy",
               title_fontsize=8)

    fig2, axes2 = P.figure(1, 1, width=6.0, height=3.2)
    ax = axes2[0][0]
    for r in range(result["train_loss"].shape[0]):
        ax.plot(result["eval_epoch"], result["train_loss"][r], "-o", ms=3,
                color=P.COLORS[r % len(P.COLORS)], label=f"run {r}")
    ax.set(yscale="log", xlabel="epoch", ylabel="training cross-entropy (full pass)",
           title="loss at the collected points")
    ax.legend(fontsize=7, ncol=4)
    return {"pca": fig, "loss": fig2}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    lines = []
    for name, label in (("model", "whole model"), ("layer", f"layer {cfg.layer}")):
        ev = result[f"{name}.explained"]
        s0, s1 = result[f"{name}.spread"]
        lines.append(f"{label}: the two components explain {100 * ev[0]:.1f} % + "
                     f"{100 * ev[1]:.1f} % = {100 * ev.sum():.1f} % of the variance of all "
                     f"snapshots; mean distance between runs {s0:.2f} at initialisation and "
                     f"{s1:.2f} at the end.")
    acc = 100 * result["test_acc"][:, -1]
    lines.append(f"Final test accuracy over the {len(acc)} runs: {acc.mean():.1f} ± "
                 f"{acc.std():.1f} % (min {acc.min():.1f}, max {acc.max():.1f}).")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    return Expectation(
        "Independently initialised runs do not converge to one point in weight space: they "
        "end in different places of a connected low-loss region",
        "Li et al., 2018, §7; Fort & Jastrzebski, 2019",
        "the mean distance between runs at the end exceeds the mean distance at "
        "initialisation (whole model)",
        bool(result["model.spread"][1] > result["model.spread"][0]))

study = Study("pca-trajectory", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, 1000),))
