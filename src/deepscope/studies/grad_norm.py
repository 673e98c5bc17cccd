"""Observing the gradient norm during training.

Question: how does ‖∇θL‖₂ evolve over training, next to the loss? For full-batch training on
a smooth target it should shrink towards zero as the iterates approach a minimum; with
mini-batches it cannot: each step's gradient carries sampling noise whose size does not vanish
at a minimum of the full loss, so the mini-batch gradient norm levels off while the loss keeps
falling (the noise-dominated phase of SGD; e.g. Shwartz-Ziv & Tishby, 2017).

Method (STUDIES.md, ``grad-norm``): ‖∇θL‖₂ = √(Σ_p Σ g²) over **all** parameters, read after
``backward()`` at every optimiser step, with that step's loss, for (a) an MLP fitting
sin(5πx)/(5πx) full-batch and (b) an MLP on an MNIST subset with mini-batches; ``seeds``
initialisations each, shown as mean and min–max band.

Why these defaults: 2 000 full-batch steps bring the function fit to its plateau; 20 epochs of
batch 100 on 2 000 MNIST images (400 steps) show the noise floor; both take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import plot as P
from ..context import Context
from ..data.functions import FUNCTIONS
from ..models import count_params, mlp
from ..train import train
from .base import DataNeed, Expectation, Study, field, require


@dataclass(frozen=True)
class Config:
    function: str = field("sinc", "1-D target of task (a)")
    fn_width: int = field(16, "hidden width of the 2-hidden-layer MLP of task (a)")
    fn_steps: int = field(2000, "full-batch Adam steps of task (a)")
    fn_lr: float = field(3e-3, "Adam learning rate of task (a)")
    subset: int = field(2000, "MNIST training images of task (b)")
    mnist_width: int = field(64, "hidden width of the 784-w-w-10 MLP of task (b)")
    mnist_epochs: int = field(20, "epochs of task (b)")
    batch_size: int = field(100, "mini-batch size of task (b)")
    mnist_lr: float = field(1e-3, "Adam learning rate of task (b)")
    seeds: int = field(3, "initialisations per task")

    def __post_init__(self):
        require(self.function in FUNCTIONS, f"unknown function {self.function!r}")
        require(min(self.fn_width, self.mnist_width, self.seeds, self.batch_size) >= 1,
                "widths, seeds and batch_size must be ≥ 1")
        require(self.fn_steps >= 1 and self.mnist_epochs >= 1, "steps/epochs must be ≥ 1")
        require(self.subset >= 10, "subset must be ≥ 10")
        require(self.fn_lr > 0 and self.mnist_lr > 0, "learning rates must be > 0")


SCALES = {
    "quick": {"fn_steps": 200, "subset": 300, "mnist_epochs": 3, "seeds": 2, "mnist_width": 16},
    "full": {"fn_steps": 20000, "subset": 60000, "mnist_epochs": 30, "seeds": 5,
             "mnist_width": 256},
}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def task(name: str) -> dict[str, np.ndarray]:
        if name == "function":
            data = ctx.load(cfg.function, n=256, n_test=64)
            models = [mlp(1, 1, 2, width=cfg.fn_width, seed=s).to(ctx.device)
                      for s in range(cfg.seeds)]
            trace = train(models, data, lr=cfg.fn_lr, epochs=cfg.fn_steps, record_steps=True,
                          eval_every=cfg.fn_steps, device=ctx.device, progress=False)
        else:
            data = ctx.load("mnist", subset=cfg.subset, test_subset=1000)
            models = [mlp(784, 10, 2, width=cfg.mnist_width, seed=s).to(ctx.device)
                      for s in range(cfg.seeds)]
            trace = train(models, data, lr=cfg.mnist_lr, epochs=cfg.mnist_epochs,
                          batch_size=cfg.batch_size, record_steps=True, eval_every=0,
                          device=ctx.device, progress=False)
        return {"step_loss": trace.step_loss, "grad_norm": trace.grad_norm,
                "params": np.asarray(count_params(models[0]))}

    fn, mn = ctx.map(task, ["function", "mnist"])
    return {**{f"function.{k}": v for k, v in fn.items()},
            **{f"mnist.{k}": v for k, v in mn.items()}}


TITLES = {"function": "{f}, full batch", "mnist": "MNIST, mini-batches of {b}"}


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    """Per task: loss (top) and gradient norm (bottom) vs iteration, sharing the x axis."""
    figs = {}
    for i, task in enumerate(("function", "mnist")):
        fig, axes = P.figure(1, 2, width=6.4, height=2.6)
        ax_l, ax_g = axes[0][0], axes[1][0]
        ax_g.sharex(ax_l)
        loss, g = result[f"{task}.step_loss"], result[f"{task}.grad_norm"]
        it = np.arange(1, loss.shape[1] + 1)
        P.band(ax_l, it, loss, "loss of the step's batch", P.COLORS[i], log=True)
        P.band(ax_g, it, g, "‖∇θL‖₂ after backward()", P.COLORS[i + 2], log=True)
        title = TITLES[task].format(f=cfg.function, b=cfg.batch_size)
        ax_l.set(yscale="log", ylabel="loss",
                 title=f"{title}\n{int(result[f'{task}.params'])} parameters, {cfg.seeds} "
                 "seeds: mean and min–max band")
        ax_g.set(yscale="log", ylabel="gradient norm", xlabel="iteration (optimiser step)")
        ax_l.tick_params(labelbottom=False)
        for ax in (ax_l, ax_g):
            ax.legend(fontsize=8, loc="upper right")
        figs[task] = fig
    return figs


def _change(before: float, after: float) -> str:
    """'12× lower' / '3.0× higher' / 'unchanged'."""
    if np.isclose(before, after, rtol=0.05):
        return "unchanged within 5 %"
    ratio = max(before, after) / max(min(before, after), 1e-300)
    return f"{ratio:.3g}× {'lower' if after < before else 'higher'}"


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    lines = []
    for task in ("function", "mnist"):
        loss, g = result[f"{task}.step_loss"], result[f"{task}.grad_norm"]
        k = max(1, loss.shape[1] // 10)
        l0, l1 = np.median(loss[:, :k]), np.median(loss[:, -k:])
        g0, g1 = np.median(g[:, :k]), np.median(g[:, -k:])
        gmax = np.median(g.max(1))
        with np.errstate(divide="ignore"):
            rho = np.corrcoef(np.log(loss).ravel(), np.log(g).ravel())[0, 1]
        name = TITLES[task].format(f=cfg.function, b=cfg.batch_size)
        lines.append(
            f"{name}: over the first vs last 10 % of steps the loss went from {l0:.2e} to "
            f"{l1:.2e} ({_change(l0, l1)}) and the gradient norm from {g0:.2e} to {g1:.2e} "
            f"({_change(g0, g1)}; peak {gmax:.2e}); correlation of log loss and log ‖∇L‖ "
            f"over all steps {rho:+.2f}.")
    return lines



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    loss, g = result["mnist.step_loss"], result["mnist.grad_norm"]
    k = max(1, loss.shape[1] // 10)
    fell = np.median(loss[:, :k]) / np.median(loss[:, -k:])
    g_ratio = np.median(g[:, :k]) / np.median(g[:, -k:])
    return Expectation(
        "With mini-batches the gradient norm does not go to zero as the loss falls: sampling "
        "noise keeps the stochastic gradient at a floor",
        "Bottou, Curtis & Nocedal, 2018, §4",
        "on MNIST the loss falls ≥ 3× from the first to the last 10 % of steps while the "
        "mini-batch gradient norm falls < 3×",
        bool(fell >= 3 and g_ratio < 3))

study = Study("grad-norm", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, 1000),))
