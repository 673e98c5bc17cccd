"""Deep vs shallow at equal parameter count: fitting a 1-D function.

Question: with the *same* number of parameters, does a deeper fully connected network fit a
non-linear function of one variable faster or better than a shallow one? Depth buys
expressivity per parameter for oscillating targets (Eldan & Shamir, 2016; Telgarsky, 2016);
for a smooth, easy target like x² the advantage should vanish.

Method (STUDIES.md, ``fit-function``): MLPs with 1, 2, 4 and 8 hidden ReLU layers whose widths
are solved so every model has ≈ ``params`` parameters (within 2 %, printed in the findings);
full-batch Adam on MSE, the same learning rate and number of epochs for all; ``seeds``
independent initialisations per model, trained together as one vectorised ensemble. Targets
``sinc`` = sin(5πx)/(5πx), ``sign`` = sgn(sin(5πx)) and ``square`` = x² on ``n_train`` evenly
spaced points in (0, 1]; predictions are recorded on a dense grid of ``n_test`` points.

Why these defaults: 400 parameters matches the original report's ≈390; 2000 full-batch epochs
at lr 3e-3 bring the best models to a plateau on all three targets while the whole study stays
well under a minute on two cores; 5 seeds make a min–max band that shows whether a gap
between depths is larger than the spread from initialisation alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..data.functions import FUNCTIONS
from ..models import ACTIVATIONS, count_params, mlp, mlp_widths
from ..train import train
from .base import Expectation, Study, field, require


@dataclass(frozen=True)
class Config:
    functions: tuple[str, ...] = field(("sinc", "sign", "square"), "1-D targets to fit")
    depths: tuple[int, ...] = field((1, 2, 4, 8), "numbers of hidden layers compared")
    params: int = field(400, "parameter budget every model is matched to (within 2 %)")
    n_train: int = field(256, "training points, evenly spaced on (0, 1]")
    n_test: int = field(1000, "dense grid on which fits are plotted and test loss measured")
    epochs: int = field(2000, "full-batch Adam epochs (= steps)")
    lr: float = field(3e-3, "Adam learning rate, the same for every model")
    seeds: int = field(5, "independent initialisations per model")
    activation: str = field("relu", "hidden activation: relu, tanh, gelu or sigmoid")
    threshold: float = field(0.01, "'fitted' when MSE < threshold × Var(target), i.e. R² > 0.99")
    eval_every: int = field(10, "epochs between recorded loss values")

    def __post_init__(self):
        for f in self.functions:
            require(f in FUNCTIONS, f"unknown function {f!r}; choose from {sorted(FUNCTIONS)}")
        require(len(self.depths) >= 1 and min(self.depths) >= 1, "depths must be ≥ 1")
        require(self.activation in ACTIVATIONS,
                f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        for d in self.depths:  # every depth must be able to hit the budget within 2 %
            mlp_widths(1, 1, d, self.params)
        require(self.n_train >= 2 and self.n_test >= 2, "n_train and n_test must be ≥ 2")
        require(self.epochs >= 1, "epochs must be ≥ 1")
        require(self.lr > 0, "lr must be > 0")
        require(self.seeds >= 1, "seeds must be ≥ 1")
        require(self.eval_every >= 1, "eval_every must be ≥ 1")
        require(0 < self.threshold < 1, "threshold must be in (0, 1)")


SCALES = {
    "quick": {"functions": ("sinc", "sign"), "depths": (1, 2, 4), "epochs": 150, "seeds": 2,
              "n_test": 200},
    "full": {"epochs": 20000, "seeds": 10, "eval_every": 20},
}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    """Train every (function, depth) ensemble; return curves and predictions per function."""

    def fit(item: tuple[str, int]) -> dict[str, np.ndarray]:
        fname, depth = item
        data = ctx.load(fname, n=cfg.n_train, n_test=cfg.n_test)
        models = [mlp(1, 1, depth, cfg.params, activation=cfg.activation, seed=s).to(ctx.device)
                  for s in range(cfg.seeds)]
        trace = train(models, data, optimizer="adam", lr=cfg.lr, epochs=cfg.epochs,
                      eval_every=cfg.eval_every, seed=depth, device=ctx.device, progress=False)
        preds = np.stack([m(data.x_test).detach().cpu().numpy()[:, 0] for m in models])
        return {"epoch": trace.epoch, "train_loss": trace.train_loss,
                "test_loss": trace.test_loss, "pred": preds,
                "diverged_epoch": trace.diverged_epoch,
                "params": np.asarray(count_params(models[0]))}

    items = [(f, d) for f in cfg.functions for d in cfg.depths]
    pieces = dict(zip(items, ctx.map(fit, items)))
    out: dict[str, np.ndarray] = {"depths": np.asarray(cfg.depths),
                                  "params": np.asarray([pieces[(cfg.functions[0], d)]["params"]
                                                        for d in cfg.depths])}
    for f in cfg.functions:
        data = ctx.load(f, n=cfg.n_train, n_test=cfg.n_test)
        ps = [pieces[(f, d)] for d in cfg.depths]
        out[f"{f}.epoch"] = ps[0]["epoch"]
        out[f"{f}.train_loss"] = np.stack([p["train_loss"] for p in ps])  # (D, S, T)
        out[f"{f}.test_loss"] = np.stack([p["test_loss"] for p in ps])
        out[f"{f}.pred"] = np.stack([p["pred"] for p in ps])  # (D, S, n_test)
        out[f"{f}.diverged_epoch"] = np.stack([p["diverged_epoch"] for p in ps])  # (D, S)
        out[f"{f}.x"] = data.x_test.cpu().numpy()[:, 0]
        out[f"{f}.y"] = data.y_test.cpu().numpy()[:, 0]
        out[f"{f}.var"] = np.asarray(float(data.y_train.var(unbiased=False)))
    out["widths"] = np.array([str(mlp_widths(1, 1, d, cfg.params)) for d in cfg.depths])
    return out


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Per function: training loss vs epoch (log-y, mean and min–max over seeds) and fits."""
    figs = {}
    labels = _labels(result)
    for f in cfg.functions:
        fig, axes = P.figure(2, 1, width=5.2, height=3.6)
        ax_loss, ax_fit = axes[0]
        epoch = result[f"{f}.epoch"]
        for i, label in enumerate(labels):
            P.band(ax_loss, epoch, result[f"{f}.train_loss"][i], label, P.COLORS[i], log=True)
        ax_loss.axhline(cfg.threshold * float(result[f"{f}.var"]), color="grey", lw=0.8,
                        ls=":", label=f"threshold ({cfg.threshold:g}·Var y)")
        ax_loss.set(yscale="log", xlabel="epoch", ylabel="training MSE (full batch)",
                    title=f"{f}: training loss")
        x = result[f"{f}.x"]
        ax_fit.plot(x, result[f"{f}.y"], color="black", lw=2.2, label="target", zorder=0)
        for i in range(len(labels)):
            P.band(ax_fit, x, result[f"{f}.pred"][i], "_", P.COLORS[i])
        ax_fit.set(xlabel="x", ylabel="f(x)", title=f"{f}: fits after {cfg.epochs} epochs")
        fig.legend(loc="outside lower center", ncol=3, fontsize=8,
                   title=f"mean and min–max band over {cfg.seeds} seeds", title_fontsize=8)
        figs[f] = fig
    return figs


def _labels(result) -> list[str]:
    return [f"{d} hidden ({p} params)" for d, p in zip(result["depths"], result["params"])]


def _epochs_to(curve: np.ndarray, epoch: np.ndarray, level: float) -> float:
    """First recorded epoch at which ``curve`` < ``level`` (NaN if never)."""
    hit = np.nonzero(curve < level)[0]
    return float(epoch[hit[0]]) if hit.size else float("nan")


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    """Final loss per depth (mean ± std), epochs to the threshold, best model vs seed spread."""
    depths, params, widths = result["depths"], result["params"], result["widths"]
    lines = ["Models: " + "; ".join(f"{d} hidden layer(s), widths {w}, {p} parameters"
                                    for d, w, p in zip(depths, widths, params))
             + f" (budget {cfg.params}, max deviation "
             f"{np.max(np.abs(params - cfg.params)) / cfg.params:.1%})."]
    for f in cfg.functions:
        final = result[f"{f}.train_loss"][:, :, -1]  # (D, S)
        level = cfg.threshold * float(result[f"{f}.var"])
        epoch = result[f"{f}.epoch"]
        parts = []
        for i, d in enumerate(depths):
            reach = [_epochs_to(c, epoch, level) for c in result[f"{f}.train_loss"][i]]
            ok = [r for r in reach if np.isfinite(r)]
            when = (f"reached the threshold in {len(ok)}/{len(reach)} seeds "
                    f"(median epoch {np.median(ok):.0f})" if ok else "never reached the threshold")
            parts.append(f"depth {d}: final MSE {final[i].mean():.2e} ± {final[i].std():.1e}, "
                         f"{when}")
        order = np.argsort(final.mean(1))
        best, second = order[0], order[1] if len(order) > 1 else order[0]
        separated = final[best].max() < final[second].min()
        if len(order) < 2:
            verdict = f"depth {depths[best]} is the only model"
        elif final.shape[1] < 2:
            verdict = (f"depth {depths[best]} has the lowest final loss; with one seed the "
                       "seed spread is unknown")
        elif separated:
            verdict = (f"depth {depths[best]} is best; its worst seed beats the best seed of "
                       f"the runner-up (depth {depths[second]}), so the gap exceeds the seed "
                       "spread")
        else:
            verdict = (f"depth {depths[best]} has the lowest mean, but its seed range overlaps "
                       f"the runner-up (depth {depths[second]}): the difference is within seed "
                       "spread")
        # A deep, narrow ReLU net can "die" at initialisation and output a constant
        # (Lu et al., 2019, "Dying ReLU and initialization"); say so instead of hiding it in
        # the mean. Constant = prediction spread below 1 % of the target's.
        spread = result[f"{f}.pred"].std(-1) < 0.01 * float(np.sqrt(result[f"{f}.var"]))
        dead = [f"{int(spread[i].sum())}/{spread.shape[1]} seeds of depth {d}"
                for i, d in enumerate(depths) if spread[i].any()]
        diverged = int((result[f"{f}.diverged_epoch"] >= 0).sum())
        tail = (f" Collapsed to a constant function (dying ReLU): {', '.join(dead)}."
                if dead else "") + (f" {diverged} run(s) diverged." if diverged else "")
        lines.append(f"{f} (threshold MSE < {level:.2e}): " + "; ".join(parts) + f". {verdict}."
                     + tail)
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    claim = ("At equal parameter count a deeper net fits an oscillating target better than a "
             "one-hidden-layer net")
    ref = "Eldan & Shamir, 2016; Telgarsky, 2016"
    crit = ("on sinc, the best depth > 1 has a lower final MSE than depth 1 in every seed "
            "(its worst seed below depth 1's best)")
    depths = list(result["depths"])
    if "sinc" not in cfg.functions or 1 not in depths or len(depths) < 2:
        return Expectation(claim, ref, crit, None)
    final = result["sinc.train_loss"][:, :, -1]
    shallow = final[depths.index(1)]
    deep = min((final[i] for i, d in enumerate(depths) if d > 1), key=lambda f: f.mean())
    return Expectation(claim, ref, crit, bool(deep.max() < shallow.min()))

study = Study("fit-function", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature)
