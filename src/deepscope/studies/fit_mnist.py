"""Deep vs shallow at equal parameter count: training CNNs on an actual task.

Question: at the same number of parameters, how do convolutional networks of different depth
compare in training loss, training accuracy and test accuracy on MNIST (and Fashion-MNIST)?
Depth lets a convolutional net build features over a growing receptive field; a shallow net
with the same budget must spend it on many channels of one small receptive field (the
original report's two CNNs were not even matched: 40 630 vs 146 482 parameters).

Method (STUDIES.md, ``fit-mnist``): CNNs of 1, 2 and 4 conv blocks whose channel counts are
solved so each has ≈ ``params`` parameters (within 2 %, listed in the findings); the same
optimiser (Adam), learning rate and batch size for all; ``seeds`` initialisations per model,
each with its own batch order. After every epoch the mean loss and accuracy over the *full*
training subset and the test set are measured in eval mode with the same function, so train
and test numbers are comparable (never a running average or a sum of batch losses).

Why these defaults: a stratified 4 000-image training subset and 2 000 test images, 8 epochs
of Adam (lr 2e-3, batch 64), 10 000 parameters and 2 seeds keep both data sets inside the
suite's time budget on two CPU cores (the shallow net is the expensive one: its 100 channels
run at full 28×28 resolution) while the curves flatten. ``full`` uses all 60 000/10 000
images for 20 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..data.images import IMAGE_SETS
from ..errors import DataError
from ..models import cnn, cnn_channels, count_params
from ..train import train
from .base import DataNeed, Expectation, Study, field, require


@dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = field(
        ("mnist", "fashion-mnist"),
        "image sets; fashion-mnist is skipped (and said so) when its files are absent")
    depths: tuple[int, ...] = field((1, 2, 4), "numbers of conv blocks compared")
    params: int = field(10_000, "parameter budget every CNN is matched to (within 2 %)")
    subset: int = field(4000, "training images (stratified, seeded sample)")
    test_subset: int = field(2000, "test images (stratified, seeded sample)")
    epochs: int = field(8, "passes over the training subset")
    batch_size: int = field(64, "mini-batch size, reshuffled every epoch per member")
    lr: float = field(2e-3, "Adam learning rate, the same for every model")
    seeds: int = field(2, "independent initialisations (and batch orders) per model")

    def __post_init__(self):
        for d in self.datasets:
            require(d in IMAGE_SETS, f"unknown dataset {d!r}; choose from {list(IMAGE_SETS)}")
        require(len(self.depths) >= 1 and min(self.depths) >= 1, "depths must be ≥ 1")
        require(self.params >= 500, "params must be ≥ 500")
        for d in self.depths:  # every depth must be able to hit the budget within 2 %
            cnn_channels(d, self.params)
        require(self.subset >= 10 and self.test_subset >= 10, "subsets must be ≥ 10")
        require(self.epochs >= 1, "epochs must be ≥ 1")
        require(self.batch_size >= 1, "batch_size must be ≥ 1")
        require(self.lr > 0, "lr must be > 0")
        require(self.seeds >= 1, "seeds must be ≥ 1")


SCALES = {
    "quick": {"datasets": ("mnist",), "depths": (1, 2, 3), "params": 3000, "subset": 600,
              "test_subset": 300, "epochs": 2, "seeds": 2},
    "full": {"depths": (1, 2, 3, 4), "params": 50_000, "subset": 60_000, "test_subset": 10_000,
             "epochs": 20, "seeds": 3},
}

METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    """Train every (dataset, depth) ensemble and return its per-epoch curves."""
    available, skipped = [], []
    for name in cfg.datasets:
        try:
            ctx.load(name, subset=10, test_subset=10)
            available.append(name)
        except DataError as e:
            if name == "mnist":  # MNIST is the task itself: its absence is an error
                raise
            skipped.append(f"{name}: {e}")

    def fit(item: tuple[str, int]) -> dict[str, np.ndarray]:
        name, depth = item
        data = ctx.load(name, subset=cfg.subset, test_subset=cfg.test_subset, seed=0)
        models = [cnn(depth, cfg.params, seed=s).to(ctx.device) for s in range(cfg.seeds)]
        trace = train(models, data, optimizer="adam", lr=cfg.lr, epochs=cfg.epochs,
                      batch_size=cfg.batch_size, seed=depth, device=ctx.device, progress=False)
        return {**{k: getattr(trace, k) for k in METRICS}, "epoch": trace.epoch,
                "diverged_epoch": trace.diverged_epoch,
                "params": np.asarray(count_params(models[0]))}

    items = [(name, d) for name in available for d in cfg.depths]
    pieces = dict(zip(items, ctx.map(fit, items)))
    out: dict[str, np.ndarray] = {
        "depths": np.asarray(cfg.depths),
        "params": np.asarray([count_params(cnn(d, cfg.params)) for d in cfg.depths]),
        "channels": np.asarray([str(cnn_channels(d, cfg.params)) for d in cfg.depths]),
        "datasets": np.asarray(available),
        "skipped": np.asarray(skipped, dtype=str),
    }
    for name in available:
        ps = [pieces[(name, d)] for d in cfg.depths]
        out[f"{name}.epoch"] = ps[0]["epoch"]
        for k in (*METRICS, "diverged_epoch"):
            out[f"{name}.{k}"] = np.stack([p[k] for p in ps])  # (D, S, T) or (D, S)
    return out


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Per dataset: loss vs epoch and accuracy vs epoch (train solid, test dashed)."""
    figs = {}
    labels = [f"{d} block(s), {p} params" for d, p in zip(result["depths"], result["params"])]
    for name in result["datasets"]:
        fig, axes = P.figure(2, 1, width=5.2, height=3.6)
        ax_loss, ax_acc = axes[0]
        epoch = result[f"{name}.epoch"]
        for i, label in enumerate(labels):
            c = P.COLORS[i]
            P.band(ax_loss, epoch, result[f"{name}.train_loss"][i], label, c, log=True)
            P.band(ax_loss, epoch, result[f"{name}.test_loss"][i], "_", c, linestyle="--",
                   log=True)
            P.band(ax_acc, epoch, 100 * result[f"{name}.train_acc"][i], "_", c)
            P.band(ax_acc, epoch, 100 * result[f"{name}.test_acc"][i], "_", c, linestyle="--")
        ax_loss.set(yscale="log", xlabel="epoch", ylabel="cross-entropy (mean per sample)",
                    title=f"{name}: loss")
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{name}: accuracy")
        # Epoch 0 (initialisation, ≈10 %) would squash the interesting range.
        late = 100 * np.concatenate([result[f"{name}.test_acc"][..., 1:].ravel(),
                                     result[f"{name}.train_acc"][..., 1:].ravel()])
        if late.size and np.isfinite(late).any():
            ax_acc.set_ylim(max(0, np.nanmin(late) - 2), 100)
        # One legend under both panels: colour = model, line style = split.
        ax_loss.plot([], [], color="black", label="train (solid)")
        ax_loss.plot([], [], color="black", ls="--", label="test (dashed)")
        fig.legend(loc="outside lower center", ncol=3, fontsize=8,
                   title=f"mean and min–max band over {cfg.seeds} seeds", title_fontsize=8)
        figs[name] = fig
    return figs


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    """Parameter counts, final train/test metrics per depth (mean ± std), best by test acc."""
    depths, params = result["depths"], result["params"]
    lines = ["Models: " + "; ".join(f"{d} conv block(s), channels {c}, {p} parameters"
                                    for d, c, p in zip(depths, result["channels"], params))
             + f" (budget {cfg.params}, max deviation "
             f"{np.max(np.abs(params - cfg.params)) / cfg.params:.1%})."]
    for name in result["datasets"]:
        tr_l, te_a = result[f"{name}.train_loss"][..., -1], result[f"{name}.test_acc"][..., -1]
        tr_a = result[f"{name}.train_acc"][..., -1]
        parts = [f"depth {d}: train loss {tr_l[i].mean():.3f}, train acc "
                 f"{100 * tr_a[i].mean():.1f} %, test acc {100 * te_a[i].mean():.1f} ± "
                 f"{100 * te_a[i].std():.1f} %" for i, d in enumerate(depths)]
        order = np.argsort(-te_a.mean(1))
        best, second = order[0], order[min(1, len(order) - 1)]
        separated = te_a[best].min() > te_a[second].max()
        if len(order) < 2:
            verdict = f"depth {depths[best]} is the only model"
        elif te_a.shape[1] < 2:
            verdict = (f"depth {depths[best]} has the best test accuracy; with one seed the "
                       "seed spread is unknown")
        else:
            verdict = (f"depth {depths[best]} has the best test accuracy"
                       + (", and its worst seed beats the runner-up's best"
                          if separated else ", within the seed spread of the runner-up")
                       + f" (depth {depths[second]})")
        diverged = int((result[f"{name}.diverged_epoch"] >= 0).sum())
        tail = f" {diverged} run(s) diverged." if diverged else ""
        lines.append(f"{name} after {cfg.epochs} epochs on {cfg.subset} images: "
                     + "; ".join(parts) + f". {verdict}." + tail)
    for s in result["skipped"]:
        lines.append(f"Skipped {s}")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    claim = ("At equal parameter count deeper convolutional nets reach higher test accuracy "
             "than shallow ones")
    ref = "Urban et al., 2017, 'Do deep convolutional nets really need to be deep'"
    crit = ("on MNIST, the best depth > 1 beats depth 1 in test accuracy in every seed (its "
            "worst seed above depth 1's best)")
    depths = list(result["depths"])
    if "mnist" not in list(result["datasets"]) or 1 not in depths or len(depths) < 2:
        return Expectation(claim, ref, crit, None)
    acc = result["mnist.test_acc"][..., -1]
    shallow = acc[depths.index(1)]
    deep = max((acc[i] for i, d in enumerate(depths) if d > 1), key=lambda a: a.mean())
    return Expectation(claim, ref, crit, bool(deep.min() > shallow.max()))

def data(cfg: Config) -> tuple[DataNeed, ...]:
    """MNIST is the task; the other sets are skipped (and said so) when absent."""
    return tuple(DataNeed(d, cfg.subset, cfg.test_subset, optional=d != "mnist")
                 for d in cfg.datasets)


study = Study("fit-mnist", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature, data=data)
