"""Number of parameters vs generalisation.

Question: as a network gets wider, how do its training and test loss and accuracy change?
Classical statistics predicts a U-shaped test error; modern networks keep improving past the
point where they fit the training set, and with label noise the test error can rise near that
interpolation threshold and fall again ("double descent", Belkin et al., 2019; Nakkiran et al.,
2019).

Method (STUDIES.md, ``params-vs-generalization``): one-hidden-layer MLPs 784-w-10 with
``widths`` geometrically spaced over more than two decades of parameters, all trained the same
way (Adam, the same fixed budget of epochs) on a stratified MNIST subset small enough to
over-fit; the full training subset and the test set evaluated afterwards; ``seeds`` per width.
``label_noise`` corrupts that share of the training labels (to another class) to look for
double descent.

Why these defaults: 13 widths from 2 to 512 units (1.6 k–407 k parameters, 2.4 decades) on
2 000 images for 40 epochs: the widest nets reach ~100 % training accuracy within the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..data.labels import label_noise
from ..models import count_params, mlp
from ..train import train
from .base import DataNeed, Expectation, Study, field, require, spearman


@dataclass(frozen=True)
class Config:
    widths: tuple[int, ...] = field((2, 3, 5, 8, 13, 20, 32, 51, 81, 128, 203, 322, 512),
                                    "hidden widths (≥ 10, geometrically spaced)")
    subset: int = field(2000, "training images")
    test_subset: int = field(2000, "test images")
    epochs: int = field(40, "training epochs (the same for every width)")
    batch_size: int = field(128, "mini-batch size")
    lr: float = field(1e-3, "Adam learning rate")
    seeds: int = field(2, "initialisations per width")
    label_noise: float = field(0.0, "share of training labels moved to another class")

    def __post_init__(self):
        require(len(self.widths) >= 2 and min(self.widths) >= 1, "widths must be ≥ 1")
        require(self.subset >= 10 and self.test_subset >= 10, "subsets must be ≥ 10")
        require(min(self.epochs, self.batch_size, self.seeds) >= 1,
                "epochs, batch_size and seeds must be ≥ 1")
        require(self.lr > 0 and 0 <= self.label_noise <= 1,
                "lr > 0 and 0 ≤ label_noise ≤ 1 are required")


SCALES = {
    "quick": {"widths": (2, 8, 32), "subset": 200, "test_subset": 200, "epochs": 3,
              "seeds": 1},
    "full": {"widths": (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                        1024, 2048), "subset": 4000, "epochs": 400, "seeds": 3},
}
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def width_run(w: int) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
        if cfg.label_noise:
            data = label_noise(data, cfg.label_noise, seed=0)
        models = [mlp(784, 10, 1, width=w, seed=s).to(ctx.device) for s in range(cfg.seeds)]
        tr = train(models, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                   eval_every=cfg.epochs, device=ctx.device, progress=False)
        return {**{k: getattr(tr, k)[:, -1] for k in METRICS},
                "diverged_epoch": tr.diverged_epoch,
                "params": np.asarray(count_params(models[0]))}

    pieces = ctx.map(width_run, list(cfg.widths))
    out = {k: np.stack([p[k] for p in pieces]) for k in (*METRICS, "diverged_epoch")}
    out["params"] = np.array([int(p["params"]) for p in pieces])
    out["widths"] = np.asarray(cfg.widths)
    return out


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    fig, axes = P.figure(2, 1, width=5.2, height=3.6)
    ax_l, ax_a = axes[0]
    p = result["params"]
    for split, c in (("train", P.COLORS[0]), ("test", P.COLORS[1])):
        P.band(ax_l, p, result[f"{split}_loss"].T, split, c, log=True)
        P.band(ax_a, p, 100 * result[f"{split}_acc"].T, split, c)
        ax_l.plot(p, np.exp(np.log(result[f"{split}_loss"]).mean(1)), "o", color=c, ms=3)
        ax_a.plot(p, 100 * result[f"{split}_acc"].mean(1), "o", color=c, ms=3)
    ax_l.axvline(cfg.subset * 10, color="grey", lw=0.8, ls=":",
                 label=f"P = N·C = {cfg.subset * 10}")
    ax_l.set(xscale="log", yscale="log", xlabel="parameters", ylabel="cross-entropy",
             title="loss vs parameters")
    ax_a.set(xscale="log", xlabel="parameters", ylabel="accuracy (%)",
             title="accuracy vs parameters")
    noise = f", {100 * cfg.label_noise:.0f} % label noise" if cfg.label_noise else ""
    ax_l.legend(fontsize=8)
    ax_a.legend(fontsize=8)
    fig.suptitle(f"784-w-10 MLPs, {cfg.epochs} epochs on {cfg.subset} images{noise}; "
                 f"mean and min–max over {cfg.seeds} seeds", fontsize=9)
    return {"params_vs_generalization": fig}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    order = np.argsort(result["params"])  # in order of size, whatever the config order
    p = result["params"][order]
    tl_seeds = result["test_loss"][order]
    trl, tel = result["train_loss"][order].mean(1), tl_seeds.mean(1)
    tra, tea = 100 * result["train_acc"][order].mean(1), 100 * result["test_acc"][order].mean(1)
    rho = np.corrcoef(np.log(p), np.log(trl))[0, 1]
    best = int(np.argmax(tea))
    trend = "falls" if trl[-1] < trl[0] else "rises"
    lines = [
        f"{len(p)} widths from {p.min()} to {p.max()} parameters "
        f"({np.log10(p.max() / p.min()):.1f} decades).",
        f"Training loss {trend} from {trl[0]:.3f} to {trl[-1]:.3f} between the smallest and "
        f"the largest model (correlation of log loss with log parameters {rho:+.2f}); training "
        f"accuracy {tra[0]:.1f} % → {tra[-1]:.1f} %.",
        f"Test accuracy {tea[0]:.1f} % → {tea[-1]:.1f} %, best {tea[best]:.1f} % at {p[best]} "
        f"parameters; test loss {tel[0]:.3f} → {tel[-1]:.3f} (minimum {tel.min():.3f} at "
        f"{p[int(np.argmin(tel))]} parameters).",
    ]
    # A bump counts only if every seed there is above every seed at both neighbours.
    bumps = [i for i in range(1, len(p) - 1)
             if tl_seeds[i].min() > max(tl_seeds[i - 1].max(), tl_seeds[i + 1].max())]
    lines.append("Test loss has a local maximum beyond the seed spread (a bump, as in double "
                 "descent) at " + ", ".join(f"{p[i]}" for i in bumps) + " parameters."
                 if bumps else "No bump in test loss exceeds the seed spread.")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    order = np.argsort(result["params"])
    p = result["params"][order]
    rho = spearman(np.log(p), result["train_loss"][order].mean(1))
    best = int(np.argmax(result["test_acc"][order].mean(1)))
    return Expectation(
        "Wider nets fit the training set better and, past the interpolation threshold, keep "
        "generalising better rather than over-fitting",
        "Neyshabur et al., 2015 and 2019; Belkin et al., 2019; Nakkiran et al., 2019",
        "Spearman(parameters, train loss) < −0.8 and the best test accuracy is at one of the "
        "three largest widths",
        bool(rho < -0.8 and best >= len(p) - 3))

study = Study("params-vs-generalization", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
