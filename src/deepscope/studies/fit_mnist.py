"""Deep vs shallow at equal parameter count: training CNNs on an actual task.

Question: at the same number of parameters, how do convolutional networks of different depth
compare in training loss, training accuracy and test accuracy on MNIST (and a second data
set)? Depth lets a convolutional net build features over a growing receptive field; a shallow
net with the same budget must spend it on many channels of one small receptive field (the
original report's two CNNs were not even matched: 40 630 vs 146 482 parameters).

Method (STUDIES.md, ``fit-mnist``): CNNs of 1, 2 and 4 conv blocks whose channel counts are
solved so each has ≈ ``params`` parameters (within 2 %, listed in the findings), with
**matched pooling** (``models.cnn(pooling="matched")``): every depth max-pools by 2 at the
same resolutions (28 → 14 → 7 → 3) and its classifier sees the same 3×3 map, so depth is the
only difference (the default CNN pools adaptively, 14×14 → 3×3 in one coarse step for one
block but 7×7 → 3×3 for two). Adam with mini-batches, the same number of epochs for every
depth; ``seeds`` initialisations (each with its own batch order) per rate of the grid
``lrs``, all seeds × rates of one (data set, depth) trained as one ensemble with per-member
rates. Each depth uses the rate with the lowest median final *training* loss over its seeds
(the whole training subset is used for training, none held out, so that every depth is
tuned by the same rule on the data it fits). Every ``eval_every`` epochs the mean loss and
accuracy over the *full* training subset and the test set are measured in eval mode with the
same function, so train and test numbers are comparable.

Second data set: Fashion-MNIST when it is on the machine; when it is absent, MNIST-1D
(Greydanus, 2020; 4 000 / 1 000 sequences of length 40, generated offline and checked against
a checksum) takes its place, with 1-D CNNs of the same budget and matched pooling
(40 → 20 → 10 → 5), and the findings say so. The stored ``datasets`` lists only the data sets
used.

Statistics and verdict: medians with interquartile bands over seeds; the findings give median
[interquartile range] per depth and how much the median test accuracy still changed over the
last quarter of the epochs (flat curves: well under a point). The verdict on MNIST: the 95 %
bootstrap interval of the median test accuracy of the best depth > 1 minus that of depth 1
(seeds resampled within each depth) agrees if wholly above 0, disagrees if wholly below,
inconclusive if it includes 0.

Why these defaults (measured with ``deepscope run fit-mnist`` on 2 cores shared with other
work, load average 4–5; Fashion-MNIST absent, so MNIST and MNIST-1D): 5 000 parameters,
2 000 training and 1 000 test samples, batch 64, 20 epochs, 3 seeds × the rates {1e-2, 3e-2}
is what the suite can afford with a grid. Two earlier settings did not converge: 10 epochs at
10 000 parameters (rates {1e-3, 3e-3}) left MNIST-1D's median test accuracy rising by 3–10
points over the last quarter and took 520 s; 16 epochs at 5 000 parameters (rates {3e-3,
1e-2}) still rose by 1–2 points on MNIST-1D, and 3e-3 lost to 1e-2 at every depth on both
data sets. Chosen rates: 1e-2 at every depth on MNIST (at 3e-2 the 4-block net stays at
chance in 2 of 3 seeds); on MNIST-1D 3e-2 for depth 1 and 1e-2 for depths 2 and 4.

Measured at the defaults (``deepscope run all`` on a quiet 2-core machine, the default
executor: one 1-thread worker per core): on MNIST the median test accuracy is 95.5 % for
depth 1 and 95.4 % for the best deep net (depth 2), a difference of −0.1 points (95 %
interval −0.8 to +1.4): inconclusive. Depth 1's curve still rises by +0.9 points over the
last quarter, the others are flat. The old design (adaptive pooling, 10 000 parameters, one
rate 2e-3, 8 epochs on 4 000 images, 2 seeds) gave depth 2 +3.7 points over depth 1
(interval +3.4 to +4.0 with 2 seeds): with matched pooling and a tuned rate, this budget and
this subset, that advantage is gone. On MNIST-1D depth helps clearly: depth 2 beats depth 1
by +6.6 points (+5.3 to +8.0), though the deep nets' curves still rise (+1.2 and +2.6 points
over the last quarter; depth 1 −0.8), which the findings say. The convolutions' summation
order depends on the thread count, and mini-batch training amplifies the rounding: the same
run in one process with two threads gave MNIST +0.0 points for the best deep net (depth 4
there, −0.7 to +1.5, inconclusive) and MNIST-1D +5.3 (+4.1 to +7.7) — the verdicts hold, the
exact numbers move within their intervals. Cost: 110 s of the suite's 9 min 23 s on two
workers (255 s in one process with two threads); the old study took 114 s in one process at
load 2.6 where this one took 323 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..data import mnist1d
from ..data.images import IMAGE_SETS
from ..errors import DataError
from ..models import POOLINGS, cnn, cnn_channels, count_params
from ..train import METRICS, train
from .base import (
    TESTED,
    DataNeed,
    Expectation,
    Study,
    chosen,
    chosen_lrs,
    compare_best,
    median_choice,
    verdict,
)
from .fields import Checked, field

SUBSTITUTE = "mnist1d"
"""The second data set used when Fashion-MNIST is absent: generated offline, on every machine."""
SEQUENCE_SHAPE = (1, mnist1d.SEQUENCE_LENGTH)
MNIST1D_SIZES = (4000, 1000)  # training and test sequences of the canonical MNIST-1D


@dataclass(frozen=True)
class Config(Checked):
    datasets: tuple[str, ...] = field(
        ("mnist", "fashion-mnist"),
        "data sets; when fashion-mnist is absent, MNIST-1D is used in its place (and said so)",
        role="data", choices=(*IMAGE_SETS, SUBSTITUTE), min_len=1)
    depths: tuple[int, ...] = field((1, 2, 4), "numbers of conv blocks compared", role="model",
                                    lo=1, min_len=1)
    params: int = field(5000, "parameter budget every CNN is matched to (within 2 %)",
                        role="model", lo=500)
    pooling: str = field("matched", "CNN pooling: matched (the same at every depth) or adaptive",
                         role="model", choices=POOLINGS)
    subset: int = field(2000, "training samples (stratified, seeded sample)", role="data",
                        lo=10, hi=60_000, hi_reason="MNIST has")
    test_subset: int = field(1000, "test samples (stratified, seeded sample)", role="data",
                             lo=10, hi=10_000, hi_reason="MNIST has")
    epochs: int = field(20, "passes over the training subset, the same for every depth",
                        role="schedule", lo=1)
    eval_every: int = field(5, "epochs between evaluations of the full train and test subsets",
                            role="measurement", lo=1)
    batch_size: int = field(64, "mini-batch size, reshuffled every epoch per member",
                            role="optimiser", lo=1)
    lrs: tuple[float, ...] = field(
        (1e-2, 3e-2),
        "Adam learning-rate grid; each depth uses the rate with the lowest median final "
        "training loss", role="optimiser", lo=0, lo_open=True, min_len=1)
    seeds: int = field(3, "independent initialisations (and batch orders) per model and rate",
                       role="seeds", lo=1)

    def check(self) -> None:
        for d in self.depths:  # every depth must be able to hit the budget within 2 %
            cnn_channels(d, self.params, pooling=self.pooling)


SCALES = {
    "quick": {"datasets": ("mnist",), "depths": (1, 2, 3), "params": 2000, "subset": 300,
              "lrs": (1e-3, 3e-3), "test_subset": 200, "epochs": 2, "eval_every": 1, "seeds": 2},
    "full": {"depths": (1, 2, 3, 4), "params": 50_000, "subset": 60_000, "test_subset": 10_000,
             "epochs": 20, "eval_every": 1, "seeds": 3},
}


def sizes(name: str, cfg: Config) -> tuple[int, int]:
    """Training and test samples drawn from ``name``: the configured subsets, at most all of
    MNIST-1D's 4 000 / 1 000 sequences."""
    if name == SUBSTITUTE:
        return min(cfg.subset, MNIST1D_SIZES[0]), min(cfg.test_subset, MNIST1D_SIZES[1])
    return cfg.subset, cfg.test_subset


def shape(name: str) -> tuple[int, ...] | None:
    """The CNN's input shape: MNIST-1D's sequences, or the default 28×28 images."""
    return SEQUENCE_SHAPE if name == SUBSTITUTE else None


def datasets_used(cfg: Config, ctx: Context) -> tuple[list[str], list[str]]:
    """The data sets this run reads, and a sentence for each one skipped or substituted.

    MNIST is the task itself: its absence is an error. An absent Fashion-MNIST is replaced by
    MNIST-1D (unless that is already listed); any other absent set is skipped.
    """
    used, notes = [], []
    for name in cfg.datasets:
        try:
            ctx.load(name, subset=10, test_subset=10)
            used.append(name)
        except DataError as e:
            if name == "mnist":
                raise
            notes.append(f"{name}: {e}")
            if name == "fashion-mnist" and SUBSTITUTE not in cfg.datasets:
                used.append(SUBSTITUTE)
                notes[-1] = (f"fashion-mnist is absent on this machine, so MNIST-1D "
                             f"(Greydanus, 2020; generated offline) is used in its place. "
                             f"({notes[-1].split(': ', 1)[1]})")
    return used, notes


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    """Train every (data set, depth) ensemble over the learning-rate grid; return the grid's
    per-epoch curves and each depth's chosen rate.

    Per data set ``name`` (D depths, L rates, S seeds, T evaluations): ``name.train_loss``
    … ``name.test_acc`` (D, L, S, T); ``name.diverged_epoch`` (D, L, S); ``name.lr_index``
    (D,); ``name.params`` (D,) and ``name.channels`` (D,) of its CNNs.
    """
    available, skipped = datasets_used(cfg, ctx)
    L, S = len(cfg.lrs), cfg.seeds

    def fit(item: tuple[str, int]) -> dict[str, np.ndarray]:
        name, depth = item
        n, n_test = sizes(name, cfg)
        data = ctx.load(name, subset=n, test_subset=n_test, seed=0)
        # Member l·S + s: initialisation s at rate lrs[l]
        models = [cnn(depth, cfg.params, input_shape=shape(name), pooling=cfg.pooling,
                      seed=s).to(ctx.device) for _ in cfg.lrs for s in range(S)]
        trace = train(models, data, optimizer="adam", lr=[lr for lr in cfg.lrs for _ in range(S)],
                      epochs=cfg.epochs, batch_size=cfg.batch_size, eval_every=cfg.eval_every,
                      seed=depth,
                      device=ctx.device, progress=False)
        return {**{k: getattr(trace, k).reshape(L, S, -1) for k in METRICS},
                "epoch": trace.epoch, "diverged_epoch": trace.diverged_epoch.reshape(L, S),
                "params": np.asarray(count_params(models[0]))}

    items = [(name, d) for name in available for d in cfg.depths]
    pieces = dict(zip(items, ctx.map(fit, items)))
    out: dict[str, np.ndarray] = {
        "depths": np.asarray(cfg.depths), "lrs": np.asarray(cfg.lrs, dtype=float),
        "datasets": np.asarray(available), "skipped": np.asarray(skipped, dtype=str),
        # the image CNNs (MNIST's), for the report's setup table
        "params": np.asarray([count_params(cnn(d, cfg.params, pooling=cfg.pooling))
                              for d in cfg.depths]),
    }
    for name in available:
        ps = [pieces[(name, d)] for d in cfg.depths]
        out[f"{name}.epoch"] = ps[0]["epoch"]
        for k in (*METRICS, "diverged_epoch"):
            out[f"{name}.{k}"] = np.stack([p[k] for p in ps])
        out[f"{name}.lr_index"] = median_choice(out[f"{name}.train_loss"][..., -1])
        out[f"{name}.params"] = np.asarray([p["params"] for p in ps])
        out[f"{name}.channels"] = np.asarray([str(cnn_channels(
            d, cfg.params, input_shape=shape(name), pooling=cfg.pooling)) for d in cfg.depths])
    return out


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Per data set, at each depth's chosen rate: loss and accuracy vs epoch (train solid, test
    dashed; median and interquartile band over seeds)."""
    figs = {}
    for name in result["datasets"]:
        labels = [f"{d} block(s), {p} params, lr {lr:g}" for d, p, lr in zip(
            result["depths"], result[f"{name}.params"], chosen_lrs(result, name))]
        fig, axes = P.figure(2, 1, width=5.2, height=3.6)
        ax_loss, ax_acc = axes[0]
        epoch = result[f"{name}.epoch"]
        curves = {k: chosen(result, name, k) for k in METRICS}
        for i, label in enumerate(labels):
            c = P.COLORS[i]
            P.band(ax_loss, epoch, curves["train_loss"][i], label, c, stat="median")
            P.band(ax_loss, epoch, curves["test_loss"][i], "_", c, linestyle="--",
                   stat="median")
            P.band(ax_acc, epoch, 100 * curves["train_acc"][i], "_", c, stat="median")
            P.band(ax_acc, epoch, 100 * curves["test_acc"][i], "_", c, linestyle="--",
                   stat="median")
        ax_loss.set(yscale="log", xlabel="epoch", ylabel="cross-entropy (mean per sample)",
                    title=f"{name}: loss")
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{name}: accuracy")
        # Epoch 0 (initialisation, ≈10 %) would squash the interesting range.
        late = 100 * np.concatenate([curves["test_acc"][..., 1:].ravel(),
                                     curves["train_acc"][..., 1:].ravel()])
        if late.size and np.isfinite(late).any():
            ax_acc.set_ylim(max(0, np.nanmin(late) - 2), 100)
        # One legend under both panels: colour = model, line style = split.
        ax_loss.plot([], [], color="black", label="train (solid)")
        ax_loss.plot([], [], color="black", ls="--", label="test (dashed)")
        grid = "{" + ", ".join(f"{lr:g}" for lr in result["lrs"]) + "}"
        fig.legend(loc="outside lower center", ncol=3, fontsize=8,
                   title=f"{P.STAT['median']} over {curves['test_acc'].shape[1]} seeds; each "
                         f"depth at its learning rate from {grid}", title_fontsize=8)
        figs[name] = fig
    return figs


def _iqr(v: np.ndarray) -> str:
    """``median [q25–q75]`` of the finite values of ``v`` (fractions), in per cent."""
    v = 100 * v[np.isfinite(v)]
    if not v.size:
        return "no finite value"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{q2:.1f} [{q1:.1f}–{q3:.1f}] %"


FLAT_POINTS = 0.5
"""A curve counts as flat when its median test accuracy changes by less than this many
percentage points over the last quarter of the epochs."""


def flattening(result: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Per depth (D,): the change of median test accuracy, in points, over the last quarter
    of the epochs at the chosen rate — small when the curves have flattened."""
    acc, epoch = chosen(result, name, "test_acc"), result[f"{name}.epoch"]
    # the last evaluation at or before three quarters of the epochs
    start = int(np.searchsorted(epoch, epoch[-1] - (epoch[-1] - epoch[0]) / 4, "right")) - 1
    return 100 * (np.median(acc[:, :, -1], 1) - np.median(acc[:, :, start], 1))


def depth_gap(result: dict[str, np.ndarray], name: str):
    """Median final test accuracy of the best depth > 1 minus that of depth 1 (fractions) at
    the chosen rates, with a 95 % bootstrap interval over seeds: a
    :class:`~.base.Comparison`, or None without depth 1 and a deeper net."""
    depths = list(result["depths"])
    if 1 not in depths or len(depths) < 2:
        return None
    acc = chosen(result, name, "test_acc")[..., -1]
    return compare_best(acc, [i for i, d in enumerate(depths) if d > 1], depths.index(1),
                        lower_is_better=False)


def _dataset_line(result: dict[str, np.ndarray], cfg: Config, name: str) -> str:
    depths = result["depths"]
    tr_l = chosen(result, name, "train_loss")[..., -1]
    tr_a, te_a = (chosen(result, name, k)[..., -1] for k in ("train_acc", "test_acc"))
    lrs, flat = chosen_lrs(result, name), flattening(result, name)
    parts = [f"depth {d} (lr {lrs[i]:g}): train loss {np.median(tr_l[i]):.3f}, train acc "
             f"{_iqr(tr_a[i])}, test acc {_iqr(te_a[i])}, change over the last quarter of "
             f"training {flat[i]:+.1f} points" for i, d in enumerate(depths)]
    gap = depth_gap(result, name)
    if gap is None:
        verdict_text = ""
    else:
        side = verdict(gap.lo, gap.hi, expected_sign=1)
        word = {True: "deeper is better", False: "depth 1 is better",
                None: "not separable from the seed spread"}[side]
        verdict_text = (f" Best deep net (depth {depths[gap.best]}) minus depth 1 in median "
                        f"test accuracy: {100 * gap.value:+.2f} points (95 % bootstrap interval "
                        f"{100 * gap.lo:+.2f} to {100 * gap.hi:+.2f}): {word}.")
    n, _ = sizes(name, cfg)
    diverged = int((chosen(result, name, "diverged_epoch") >= 0).sum())
    rising = [str(d) for d, f in zip(depths, flat) if not abs(f) < FLAT_POINTS]
    flat_text = (f" Not yet flat (median test accuracy changed by {FLAT_POINTS:g} points or "
                 f"more over the last quarter): depth {', '.join(rising)}." if rising else
                 f" Every depth's curve is flat (change under {FLAT_POINTS:g} points over the "
                 "last quarter).")
    return (f"{name} after {cfg.epochs} epochs on {n} training samples, median "
            f"[interquartile range] over {tr_a.shape[1]} seeds at each depth's chosen rate: "
            + "; ".join(parts) + "." + flat_text + verdict_text
            + (f" {diverged} run(s) diverged." if diverged else ""))


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    """The models and how the rate was chosen; per data set the final metrics per depth
    (median [IQR]), the flattening of the curves and the best deep net against depth 1."""
    depths = result["depths"]
    lines = []
    for name in result["datasets"]:
        params = result[f"{name}.params"]
        lines.append(
            f"Models on {name}: " + "; ".join(
                f"{d} conv block(s), channels {c}, {p} parameters"
                for d, c, p in zip(depths, result[f"{name}.channels"], params))
            + f" (budget {cfg.params}, max deviation "
            f"{np.max(np.abs(params - cfg.params)) / cfg.params:.1%}; pooling "
            f"{cfg.pooling}).")
    grid = ", ".join(f"{lr:g}" for lr in result["lrs"])
    lines.append(f"Every depth trains for the same {cfg.epochs} epochs (batch "
                 f"{cfg.batch_size}) at the learning rate from {{{grid}}} with the lowest "
                 "median final training loss over its seeds.")
    lines += [_dataset_line(result, cfg, name) for name in result["datasets"]]
    lines += [f"Skipped {s}" if not s.startswith("fashion-mnist is absent") else s
              for s in result["skipped"]]
    return lines


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    claim = ("At equal parameter count deeper convolutional nets reach higher test accuracy "
             "than shallow ones")
    ref = "Urban et al., 2017, 'Do deep convolutional nets really need to be deep'"
    crit = ("on MNIST, each depth at its best learning rate: the 95 % bootstrap interval of "
            "the median test accuracy of the best depth > 1 minus that of depth 1 (seeds "
            "resampled within each depth) lies above 0; disagrees if it lies below 0, "
            "inconclusive if it includes 0")
    gap = depth_gap(result, "mnist") if "mnist" in list(result["datasets"]) else None
    if gap is None or not np.isfinite(gap.value):
        return Expectation(claim, ref, crit, None)
    agrees = verdict(gap.lo, gap.hi, expected_sign=1)
    return Expectation(
        claim, ref, crit, agrees,
        verdict=TESTED[agrees],
        measured=f"depth {result['depths'][gap.best]} − depth 1: {100 * gap.value:+.2f} "
                 f"points ({100 * gap.lo:+.2f} to {100 * gap.hi:+.2f})")


def data(cfg: Config) -> tuple[DataNeed, ...]:
    """MNIST is the task; the other sets are skipped (and said so) when absent, and MNIST-1D,
    generated offline, stands in for an absent Fashion-MNIST."""
    needs = [DataNeed(d, *sizes(d, cfg), optional=d != "mnist") for d in cfg.datasets]
    if "fashion-mnist" in cfg.datasets and SUBSTITUTE not in cfg.datasets:
        needs.append(DataNeed(SUBSTITUTE, *sizes(SUBSTITUTE, cfg), optional=True))
    return tuple(needs)


study = Study("fit-mnist", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature, data=data)
