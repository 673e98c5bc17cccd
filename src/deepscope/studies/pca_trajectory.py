"""Visualising the optimisation process: weight trajectories under PCA.

Question: what do the paths of training runs look like in weight space, for the whole model
and for one layer? Li et al. (2018, §7) found that a run's optimisation path lies in a very
low-dimensional subspace: the top two principal directions of the path (its θ snapshots)
explain most of its variation, which is why a 2-D picture of it is faithful.

Method (STUDIES.md, ``pca-trajectory``): ``runs`` **independent** initialisations of one MLP
(trained together, vectorised), the same hyper-parameters, on an MNIST subset; the full flat θ
(weights **and** biases) is recorded every ``every`` epochs, from epoch 0. The homework's
figure is **one joint PCA** over all snapshots of all runs — exact, on **centred** data — once
for the whole model and once for one hidden layer (its weight and bias).

The claim tested (Li et al., 2018, §7) is about **one run's own path**: so each run also gets
its own centred PCA, and the share of that run's variance in its top two directions is the
statistic. The verdict takes the median of that share over the runs with a 95 % bootstrap
interval (resampling runs): *agrees* when the whole interval lies above ``share_level``
(50 %: "most of the variance"), *disagrees* when it lies below, *inconclusive* otherwise.
The joint PCA is not the test: independent runs start in unrelated random directions, so
their joint spread is mostly initialisation (measured at the defaults: 28.4 % of the variance
in two joint components, where each run's own top two directions hold 97.4–97.8 % of its
variance).

What a high share means: any path made of small successive steps concentrates in its first
few components — a **random walk** with the same number of snapshots puts about 77 % of its
variance in two components (Antognini & Sohl-Dickstein, 2018). The study simulates that
baseline (Gaussian steps, the same number of snapshots, ``baseline_walks`` walks) and reports
it beside the measurement, so "low-dimensional" can be read against it; it is context, not
part of the verdict, which tests Li et al.'s claim as stated.

Why these defaults: 8 runs and a snapshot every 3 epochs for 30 epochs (11 snapshots per run)
as in the homework, on 3 000 images with a 784-64-64-10 MLP (55 k parameters) and Adam
(lr 1e-3, batch 100): the runs reach 92.8–93.7 % test accuracy and the study takes seconds.
Eight runs give the median share an interval of 97.5–97.7 % (measured), far from the 50 %
level, and above the random-walk baseline (77.7 % for 11 snapshots, 20 walks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..models import count_params, mlp
from ..probes.trajectory import layer_slice, pca
from ..train import train
from .base import TESTED, DataNeed, Expectation, Study, bootstrap_ci, require, row_median, verdict
from .fields import Checked, field

PARTS = (("model", "whole model"), ("layer", "layer"))


# The modules of the 784-w-w-10 MLP that hold weights: what `layer` may name.
LAYERS = tuple(sorted({k.split(".")[0] for k, _ in mlp(784, 10, 2, width=1).named_parameters()}))


@dataclass(frozen=True)
class Config(Checked):
    runs: int = field(8, "independent initialisations, trained together", role="seeds", lo=3,
                      why="a joint PCA of one run shows no spread, and the verdict's interval "
                          "is over runs")
    subset: int = field(3000, "MNIST training images", role="data", lo=10, hi=60_000,
                        hi_reason="MNIST has")
    width: int = field(64, "hidden width of the 784-w-w-10 MLP", role="model", lo=1)
    epochs: int = field(30, "training epochs", role="schedule", lo=1)
    every: int = field(3, "epochs between θ snapshots", role="measurement", lo=1)
    batch_size: int = field(100, "mini-batch size (reshuffled every epoch per run)",
                            role="optimiser", lo=1)
    lr: float = field(1e-3, "Adam learning rate", role="optimiser", lo=0, lo_open=True)
    layer: str = field("3", "module whose weight and bias form 'one layer' (3 = 2nd Linear)",
                       role="measurement", choices=LAYERS,
                       why="modules of the 784-w-w-10 MLP with weights")
    share_level: float = field(0.5, "share of a run's own variance its top two PCA directions "
                                    "must explain to count as 'most' (the verdict's level)",
                               role="measurement", lo=0, hi=1, lo_open=True, hi_open=True)
    baseline_walks: int = field(20, "simulated random walks for the baseline share",
                                role="measurement", lo=1)

    def check(self):
        require(self.every <= self.epochs, "1 ≤ every ≤ epochs is required")
        require(self.epochs // self.every >= 2,
                "a path needs ≥ 3 snapshots for two principal directions: epochs/every ≥ 2")


SCALES = {
    "quick": {"runs": 3, "subset": 300, "width": 16, "epochs": 6, "baseline_walks": 5},
    "full": {"subset": 60000, "width": 256, "epochs": 30, "lr": 1e-3},
}
WALK_DIM = 2000  # dimension of the simulated random walks (≫ snapshots, like θ)


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
            # Li et al.'s statistic: each run's own centred PCA, (runs, 2).
            out[f"{name}.own"] = np.stack([pca(s, k=2).explained_variance_ratio for s in snaps])
            # Distance between runs' θ at the start and at the end (in the full space).
            out[f"{name}.spread"] = np.array([_mean_pairwise(snaps[:, 0]),
                                              _mean_pairwise(snaps[:, -1])])
        # The baseline: random walks with as many snapshots as each run has.
        rng = np.random.default_rng(0)
        k = trace.snapshots.shape[1]
        out["walk.own"] = np.stack([
            pca(np.cumsum(rng.standard_normal((k, WALK_DIM)), 0), k=2).explained_variance_ratio
            for _ in range(cfg.baseline_walks)])
        return out

    (result,) = ctx.map(piece, ["trajectories"])
    return result


def _mean_pairwise(points: np.ndarray) -> float:
    x = points.astype(np.float64)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def _share(result: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Per run, the share of its own path's variance in its top two directions: (runs,)."""
    return np.asarray(result[f"{name}.own"], dtype=float).sum(-1)


def _median_ci(values: np.ndarray) -> tuple[float, float, float]:
    return bootstrap_ci(values, statistic=row_median, seed=0, n_boot=2000, vectorized=True)


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Whole model and one layer: PC1 vs PC2, coloured by run, joined in order, annotated;
    the loss at the collected points; each run's own two-component share."""
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

    fig2, axes2 = P.figure(2, 1, width=5.0, height=3.4)
    ax = axes2[0][0]
    for r in range(result["train_loss"].shape[0]):
        ax.plot(result["eval_epoch"], result["train_loss"][r], "-o", ms=3,
                color=P.COLORS[r % len(P.COLORS)], label=f"run {r}")
    ax.set(yscale="log", xlabel="epoch", ylabel="training cross-entropy (full pass)",
           title="loss at the collected points (each run)")
    ax.legend(fontsize=7, ncol=4)
    ax = axes2[0][1]
    walk = 100 * _share(result, "walk")
    for i, (name, label) in enumerate(PARTS):
        share = 100 * _share(result, name)
        x = i + np.linspace(-0.15, 0.15, len(share))
        ax.plot(x, share, "o", color=P.COLORS[i], ms=5, label=f"{label}: each run")
        med, lo, hi = (100 * v for v in _median_ci(share / 100))
        err = np.nan_to_num(np.clip([[med - lo], [hi - med]], 0, None), posinf=0.0)
        ax.errorbar([i + 0.3], [med], yerr=err, fmt="s", color="black",
                    ms=5, capsize=3, label="median, 95 % bootstrap interval" if i == 0 else "_")
    ax.axhline(100 * cfg.share_level, color="#C00000", lw=1, ls="--",
               label=f"verdict level ({100 * cfg.share_level:.0f} %)")
    ax.axhline(np.median(walk), color="grey", lw=1, ls=":",
               label=f"random walk, same snapshots (median of {len(walk)})")
    ax.set_xticks([0, 1], ["whole model", f"layer {cfg.layer}"])
    ax.set(ylabel="variance in the run's own top two PCs (%)", ylim=(0, 101),
           title="Li et al. (2018): one path, own PCA")
    ax.legend(fontsize=7, loc="lower left")
    return {"pca": fig, "loss": fig2}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    lines = []
    walk = 100 * np.median(_share(result, "walk"))
    k = result["model.xy"].shape[1]
    for name, label in (("model", "whole model"), ("layer", f"layer {cfg.layer}")):
        share = _share(result, name)
        med, lo, hi = (100 * v for v in _median_ci(share))
        lines.append(f"{label}, each run's own PCA: its top two directions explain "
                     f"{100 * share.min():.1f}–{100 * share.max():.1f} % of its path's variance "
                     f"(median {med:.1f} %, 95 % interval {lo:.1f}–{hi:.1f} % over "
                     f"{len(share)} runs); a random walk of {k} snapshots puts {walk:.1f} % in "
                     "two directions.")
    for name, label in (("model", "whole model"), ("layer", f"layer {cfg.layer}")):
        ev = result[f"{name}.explained"]
        s0, s1 = result[f"{name}.spread"]
        lines.append(f"{label}, one joint PCA of all runs (the figure): the two components "
                     f"explain {100 * ev[0]:.1f} % + {100 * ev[1]:.1f} % = "
                     f"{100 * ev.sum():.1f} % of the variance of all snapshots; mean distance "
                     f"between runs {s0:.2f} at initialisation and {s1:.2f} at the end.")
    acc = 100 * result["test_acc"][:, -1]
    lines.append(f"Final test accuracy over the {len(acc)} runs: {acc.mean():.1f} ± "
                 f"{acc.std():.1f} % (mean ± std; min {acc.min():.1f}, max {acc.max():.1f}).")
    return lines


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    claim = ("A training run's optimisation path lies in a very low-dimensional subspace: the "
             "top two PCA directions of its own trajectory explain most of its variation")
    ref = "Li et al., 2018, §7"
    crit = (f"95 % bootstrap interval (over runs) of the median share of a run's own "
            f"variance in its top two PCA directions (whole model) above "
            f"{100 * cfg.share_level:.0f} %; inconclusive if it includes "
            f"{100 * cfg.share_level:.0f} %")
    share = _share(result, "model")
    med, lo, hi = _median_ci(share)
    if not np.isfinite(med):
        return Expectation(claim, ref, crit, None)
    v = verdict(lo, hi, expected_sign=+1, threshold=cfg.share_level)
    walk = np.median(_share(result, "walk"))
    return Expectation(claim, ref, crit, v,
                       verdict=TESTED[v],
                       measured=f"median {100 * med:.1f} %, 95 % interval {100 * lo:.1f}–"
                                f"{100 * hi:.1f} %, {np.isfinite(share).sum()} runs; random-walk"
                                f" baseline {100 * walk:.1f} %")


study = Study("pca-trajectory", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, 1000),))
