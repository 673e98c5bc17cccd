"""Bonus: visualising the error surface around a trained model.

Question: what does the loss look like on a 2-D slice of weight space through a trained model?
A random plane shows the local basin; the plane of the training trajectory shows the valley
the optimiser actually travelled (Goodfellow, Vinyals & Saxe, 2015; Li et al., 2018).

Method (STUDIES.md, ``error-surface``): train an MLP on an MNIST subset, recording θ every
epoch; then the training loss on a grid around the final θ in two planes:
(a) the top two PCA directions of the trajectory, with the trajectory drawn on it and the
share of its variance **off** the plane reported (the picture hides that share of the motion);
(b) two filter-normalised random directions (Li et al., 2018): Gaussian directions whose every
filter (row of a weight matrix) is rescaled to the norm of the model's filter, so that the
scale of the picture is comparable across layers and models; biases are held fixed.
Contours use log-spaced levels, since the loss spans orders of magnitude.

Why these defaults: 784-32-10 on 2 000 images for 20 epochs trains in seconds; a 31×31 grid on
the same images is 961 vectorised forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import LogNorm

from .. import plot as P
from ..context import Context
from ..models import count_params, mlp
from ..probes.landscape import pca_plane, random_plane, surface
from ..train import train
from .base import DataNeed, Expectation, Study, field, require


@dataclass(frozen=True)
class Config:
    subset: int = field(2000, "MNIST training images (the surface is their mean loss)")
    width: int = field(32, "hidden width of the 784-w-10 MLP")
    epochs: int = field(20, "training epochs (θ recorded after each)")
    batch_size: int = field(100, "mini-batch size")
    lr: float = field(1e-3, "Adam learning rate")
    resolution: int = field(31, "grid points per axis")
    pca_margin: float = field(0.25, "PCA plane: extra span beyond the trajectory, as a fraction")
    random_span: float = field(1.0, "random plane: grid covers [−span, span] in both directions")
    seed: int = field(0, "initialisation and random-direction seed")

    def __post_init__(self):
        require(self.subset >= 10 and self.width >= 1 and self.batch_size >= 1,
                "subset ≥ 10, width ≥ 1, batch_size ≥ 1 are required")
        require(self.epochs >= 2, "epochs must be ≥ 2 (a trajectory needs points)")
        require(self.resolution >= 3, "resolution must be ≥ 3")
        require(self.lr > 0 and self.pca_margin >= 0 and self.random_span > 0,
                "lr > 0, pca_margin ≥ 0 and random_span > 0 are required")


SCALES = {
    "quick": {"subset": 300, "width": 8, "epochs": 4, "resolution": 9},
    "full": {"subset": 10000, "width": 100, "epochs": 40, "resolution": 51},
}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def piece(_: str) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=1000)
        model = mlp(784, 10, 1, width=cfg.width, seed=cfg.seed).to(ctx.device)
        trace = train(model, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      snapshot_every=1, eval_every=cfg.epochs, device=ctx.device,
                      progress=False)
        batch = (data.x_train, data.y_train)
        snaps = trace.snapshots[0]  # (epochs + 1, P)
        d1, d2, info = pca_plane(snaps)
        xy = info["coords"]  # trajectory relative to the final θ
        lo, hi = xy.min(0), xy.max(0)
        pad = cfg.pca_margin * (hi - lo)
        pca_span = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
        s_pca = surface(model, F.cross_entropy, batch, (d1.to(ctx.device), d2.to(ctx.device)),
                        span=pca_span, resolution=cfg.resolution)
        r1, r2 = random_plane(model, seed=cfg.seed)
        s_rand = surface(model, F.cross_entropy, batch, (r1.to(ctx.device), r2.to(ctx.device)),
                         span=(-cfg.random_span, cfg.random_span), resolution=cfg.resolution)
        with torch.no_grad():
            final = float(F.cross_entropy(model(data.x_train), data.y_train))
        return {"pca.a": s_pca.a, "pca.b": s_pca.b, "pca.loss": s_pca.loss,
                "pca.trajectory": xy, "pca.explained": info["explained_variance_ratio"],
                "pca.off_plane": np.asarray(info["off_plane"]),
                "random.a": s_rand.a, "random.b": s_rand.b, "random.loss": s_rand.loss,
                "final_loss": np.asarray(final), "params": np.asarray(count_params(model)),
                "train_loss": trace.train_loss[0]}

    (result,) = ctx.map(piece, ["surface"])
    return result


def _contour(ax, a, b, loss, fig, label):
    """Filled contours of ``loss`` (shape (len(a), len(b))) on log-spaced levels. Grid points
    where the loss is not finite are left blank; a constant surface (every unit dead) is
    drawn as one colour and said so, since contour levels need a range."""
    finite = np.isfinite(loss)
    if not finite.any():
        return  # plot.mark_missing writes "no finite values" on the empty axes
    loss = np.where(finite, np.maximum(loss, 1e-12), np.nan)
    lo, hi = np.nanmin(loss), np.nanmax(loss)
    if not hi > lo * (1 + 1e-9):
        ax.pcolormesh(a, b, loss.T, cmap="viridis", shading="nearest")
        ax.text(0.5, 0.04, f"constant surface: {label} = {lo:.4g} at every grid point",
                transform=ax.transAxes, ha="center", fontsize=8, color="white")
        return
    levels = np.geomspace(lo, hi, 16)
    cs = ax.contourf(a, b, loss.T, levels=levels, norm=LogNorm(), cmap="viridis")
    ax.contour(a, b, loss.T, levels=levels, colors="white", linewidths=0.3, alpha=0.6)
    fig.colorbar(cs, ax=ax, label=f"{label} (log scale)", format="%.2g")


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    fig, axes = P.figure(2, 1, width=5.2, height=4.4)
    ax1, ax2 = axes[0]
    _contour(ax1, result["pca.a"], result["pca.b"], result["pca.loss"], fig,
             "training cross-entropy")
    xy = result["pca.trajectory"]
    ax1.plot(xy[:, 0], xy[:, 1], "-o", color="white", ms=3, lw=1.2, mec="black", mew=0.5)
    ax1.plot(*xy[0], "s", color="#D55E00", ms=7, label="initialisation")
    ax1.plot(0, 0, "*", color="#E69F00", ms=12, mec="black", label="final model")
    ev = result["pca.explained"]
    ax1.set(xlabel=f"PC1 ({100 * ev[0]:.1f} % of the trajectory's variance)",
            ylabel=f"PC2 ({100 * ev[1]:.1f} %)",
            title=f"(a) trajectory plane: {100 * float(result['pca.off_plane']):.1f} % of the "
                  "motion is off it")
    ax1.legend(fontsize=8, loc="upper right")
    _contour(ax2, result["random.a"], result["random.b"], result["random.loss"], fig,
             "training cross-entropy")
    ax2.plot(0, 0, "*", color="#E69F00", ms=12, mec="black")
    ax2.set(xlabel="filter-normalised direction 1", ylabel="filter-normalised direction 2",
            title="(b) random filter-normalised plane (Li et al., 2018)")
    return {"surface": fig}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    ev = result["pca.explained"]
    rl = result["random.loss"]
    c = int(np.argmin(np.abs(result["random.a"])))  # the grid point nearest the model
    edge = np.concatenate([rl[0], rl[-1], rl[:, 0], rl[:, -1]])
    pl = result["pca.loss"]
    i, j = np.unravel_index(np.argmin(pl), pl.shape)
    return [
        f"Model: 784-{cfg.width}-10 MLP, {int(result['params'])} parameters, final training "
        f"loss {float(result['final_loss']):.3f} after {cfg.epochs} epochs.",
        f"The trajectory's top two PCA directions hold {100 * ev[0]:.1f} % + {100 * ev[1]:.1f}"
        f" % of its variance; {100 * float(result['pca.off_plane']):.1f} % lies off the "
        f"plane drawn in (a). The lowest loss on that plane's grid is {pl.min():.3f} at "
        f"(PC1, PC2) = ({result['pca.a'][i]:.2f}, {result['pca.b'][j]:.2f}), vs "
        f"{float(result['final_loss']):.3f} at the model: "
        + ("training had not reached the valley floor along its own path."
           if pl.min() < float(result["final_loss"]) - 1e-6 else "the model sits lowest."),
        f"Random filter-normalised plane: loss {rl[c, c]:.3f} at the grid point nearest the "
        f"model (a = b = {result['random.a'][c]:.3g}) and "
        f"{np.median(edge):.2f} (median) at the border (distance {cfg.random_span:g} in units "
        f"of the filters' own norms); the lowest grid value is {rl.min():.3f}"
        + (" — at the centre." if rl.min() >= rl[c, c] - 1e-9 else " — off the centre: the "
           "trained model is not a minimum of this slice."),
    ]



def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    rl = result["random.loss"]
    c = int(np.argmin(np.abs(result["random.a"])))
    return Expectation(
        "On a filter-normalised random plane the loss around a trained net looks like a "
        "convex bowl with the model at the bottom",
        "Li et al., 2018",
        "the model's grid point has the lowest loss of the random-plane grid",
        bool(rl.min() >= rl[c, c] - 1e-9))

study = Study("error-surface", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, 1000),))
