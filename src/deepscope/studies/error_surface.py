"""Bonus: visualising the error surface around trained models.

Question: what does the loss look like on a 2-D slice of weight space through a trained model?
A random plane shows the local basin; the plane of the training trajectory shows the valley
the optimiser actually travelled (Goodfellow, Vinyals & Saxe, 2015; Li et al., 2018). Li et al.
report that, on filter-normalised random planes, the loss of a trained (shallow or residual)
network looks like a convex bowl with the model at its bottom.

Method (STUDIES.md, ``error-surface``): ``models`` independently initialised MLPs (trained
together, vectorised) on an MNIST subset, recording θ every epoch; then the training loss on
grids around each final θ:
(a) for the first model, the plane of the top two PCA directions of its trajectory, with the
trajectory drawn on it and the share of its variance **off** the plane reported (the picture
hides that share of the motion; the share is reported for every model);
(b) for every model, ``planes`` planes of two filter-normalised random directions (Li et al.,
2018): Gaussian directions whose every filter (row of a weight matrix) is rescaled to the norm
of the model's filter, so that the scale of the picture is comparable across layers and
models; biases are held fixed. Contours use log-spaced levels, since the loss spans orders of
magnitude.

The verdict counts the random planes in which the model's own grid point (the centre) has the
lowest loss of the grid: the claim agrees when the 95 % Wilson interval of that share lies
above ½ ("the model sits at the bottom" in most planes), disagrees when it lies below ½, and is
inconclusive otherwise. Planes of one model share that model, so the interval, which treats
the planes as independent, is optimistic; with every plane agreeing (or none) it does not
matter. The findings add how bowl-like each plane is: the share of grid points at which the
2-D surface is locally convex (both eigenvalues of its finite-difference Hessian ≥ 0).

Why these defaults: 784-32-10 on 2 000 images for 20 epochs trains in seconds (train loss
0.211–0.216 over the 3 models, measured); 3 models × 2 planes (6 planes) on a 31×31 grid on
the same images are 5 766 vectorised forward passes, plus 961 for the PCA plane: the study
took 2.1–2.2× the CPU time of the old one-model, one-plane version (two back-to-back
measurements). At
these defaults the model sat lowest in 6 of 6 planes (Wilson interval 61–100 %) and every
interior grid point of every plane was locally convex.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import plot as P
from ..context import Context
from ..models import count_params, mlp
from ..probes.landscape import pca_plane, random_plane, surface
from ..train import train
from .base import TESTED, DataNeed, Expectation, Study, require, verdict
from .fields import Checked, field


@dataclass(frozen=True)
class Config(Checked):
    subset: int = field(2000, "MNIST training images (the surface is their mean loss)",
                        role="data", lo=10, hi=60_000, hi_reason="MNIST has")
    width: int = field(32, "hidden width of the 784-w-10 MLP", role="model", lo=1)
    epochs: int = field(20, "training epochs (θ recorded after each)", role="schedule", lo=2,
                        why="a trajectory needs points")
    batch_size: int = field(100, "mini-batch size", role="optimiser", lo=1)
    lr: float = field(1e-3, "Adam learning rate", role="optimiser", lo=0, lo_open=True)
    resolution: int = field(31, "grid points per axis (odd)", role="measurement", lo=3,
                            why="so that the grid holds the model itself")
    pca_margin: float = field(0.25, "PCA plane: extra span beyond the trajectory, as a fraction",
                              role="measurement", lo=0)
    random_span: float = field(1.0, "random plane: grid covers [−span, span] in both directions",
                               role="measurement", lo=0, lo_open=True)
    models: int = field(3, "independently initialised models (trained together)", role="seeds",
                        lo=3, why="the verdict is over independently trained models")
    planes: int = field(2, "filter-normalised random planes per model", role="measurement",
                        lo=1)
    seed: int = field(0, "first initialisation seed; model m uses seed + m", role="seeds")

    def check(self):
        require(self.resolution % 2 == 1,
                "resolution must be odd (so that the grid holds the model itself)")


SCALES = {
    "quick": {"subset": 300, "width": 8, "epochs": 4, "resolution": 9},
    "full": {"subset": 10000, "width": 100, "epochs": 40, "resolution": 51, "models": 5},
}


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    def piece(_: str) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=1000)
        models = [mlp(784, 10, 1, width=cfg.width, seed=cfg.seed + m).to(ctx.device)
                  for m in range(cfg.models)]
        trace = train(models, data, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      snapshot_every=1, eval_every=cfg.epochs, device=ctx.device,
                      progress=False)
        batch = (data.x_train, data.y_train)
        snaps = trace.snapshots[0]  # (epochs + 1, P) of the first model
        d1, d2, info = pca_plane(snaps)
        xy = info["coords"]  # trajectory relative to the final θ
        lo, hi = xy.min(0), xy.max(0)
        pad = cfg.pca_margin * (hi - lo)
        pca_span = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
        s_pca = surface(models[0], F.cross_entropy, batch,
                        (d1.to(ctx.device), d2.to(ctx.device)), span=pca_span,
                        resolution=cfg.resolution)
        rand = np.empty((cfg.models, cfg.planes, cfg.resolution, cfg.resolution))
        for m, model in enumerate(models):
            for p in range(cfg.planes):
                r1, r2 = random_plane(model, seed=1000 * (cfg.seed + m) + p)
                s = surface(model, F.cross_entropy, batch,
                            (r1.to(ctx.device), r2.to(ctx.device)),
                            span=(-cfg.random_span, cfg.random_span),
                            resolution=cfg.resolution)
                rand[m, p] = s.loss
        with torch.no_grad():
            final = np.array([float(F.cross_entropy(m(data.x_train), data.y_train))
                              for m in models])
        off = np.array([pca_plane(trace.snapshots[m])[2]["off_plane"]
                        for m in range(cfg.models)])
        return {"pca.a": s_pca.a, "pca.b": s_pca.b, "pca.loss": s_pca.loss,
                "pca.trajectory": xy, "pca.explained": info["explained_variance_ratio"],
                "pca.off_plane": off,
                "random.a": s.a, "random.b": s.b, "random.loss": rand,
                "final_loss": final, "params": np.asarray(count_params(models[0])),
                "train_loss": trace.train_loss}

    (result,) = ctx.map(piece, ["surface"])
    return result


def _centre(result: dict[str, np.ndarray]) -> int:
    return int(np.argmin(np.abs(result["random.a"])))  # the grid point nearest the model


def lowest_at_model(result: dict[str, np.ndarray]) -> np.ndarray:
    """Per (model, plane): is the model's grid point the lowest of the random-plane grid?
    False where the surface has no finite value. Shape (models, planes)."""
    rl = np.asarray(result["random.loss"], dtype=float)
    c = _centre(result)
    flat = rl.reshape(*rl.shape[:2], -1)
    with np.errstate(invalid="ignore"):
        low = np.where(np.isfinite(flat), flat, np.inf).min(-1)
        return np.isfinite(rl[:, :, c, c]) & (low >= rl[:, :, c, c] - 1e-9)


def convex_share(loss: np.ndarray) -> float:
    """Share of interior grid points where the surface is locally convex: both eigenvalues
    of its central-difference 2×2 Hessian ≥ 0 (NaN if no finite point)."""
    f = np.asarray(loss, dtype=float)
    faa = f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]
    fbb = f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / 4
    with np.errstate(invalid="ignore"):
        convex = (faa >= 0) & (fbb >= 0) & (faa * fbb - fab**2 >= 0)
        ok = np.isfinite(faa) & np.isfinite(fbb) & np.isfinite(fab)
    return float(convex[ok].mean()) if ok.any() else float("nan")


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a share of ``k`` successes in ``n`` trials."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    fig, axes = P.figure(2, 1, width=5.2, height=4.4)
    ax1, ax2 = axes[0]
    P.contour(ax1, result["pca.a"], result["pca.b"], result["pca.loss"], fig,
             "training cross-entropy")
    xy = result["pca.trajectory"]
    ax1.plot(xy[:, 0], xy[:, 1], "-o", color="white", ms=3, lw=1.2, mec="black", mew=0.5)
    ax1.plot(*xy[0], "s", color="#D55E00", ms=7, label="initialisation")
    ax1.plot(0, 0, "*", color="#E69F00", ms=12, mec="black", label="final model")
    ev = result["pca.explained"]
    ax1.set(xlabel=f"PC1 ({100 * ev[0]:.1f} % of the trajectory's variance)",
            ylabel=f"PC2 ({100 * ev[1]:.1f} %)",
            title=f"(a) model 0, trajectory plane\n"
                  f"{100 * float(result['pca.off_plane'][0]):.1f} % of the motion is off it")
    ax1.legend(fontsize=8, loc="upper right")
    rl = result["random.loss"]
    P.contour(ax2, result["random.a"], result["random.b"], rl[0, 0], fig,
             "training cross-entropy")
    ax2.plot(0, 0, "*", color="#E69F00", ms=12, mec="black")
    ax2.set(xlabel="filter-normalised direction 1", ylabel="filter-normalised direction 2",
            title="(b) model 0, random filter-normalised plane\n(Li et al., 2018)")

    n_m, n_p = rl.shape[:2]
    fig2, axes2 = P.figure(n_m, n_p, width=2.6, height=2.4)
    low = lowest_at_model(result)
    for m in range(n_m):
        for p in range(n_p):
            ax = axes2[p][m]
            P.contour(ax, result["random.a"], result["random.b"], rl[m, p], fig2, "loss",
                     colorbar=False)
            ax.plot(0, 0, "*", color="#E69F00", ms=9, mec="black")
            ax.set_title(f"model {m}, plane {p}: "
                         + ("model lowest" if low[m, p] else "lower point off centre"),
                         fontsize=8)
            ax.tick_params(labelsize=7)
    fig2.suptitle(f"Every random filter-normalised plane: {n_m} models × {n_p} planes\n"
                  "training loss, log-spaced contours (each panel its own levels); star: the "
                  "model", fontsize=9)
    return {"surface": fig, "random_planes": fig2}


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    ev = result["pca.explained"]
    rl = result["random.loss"]
    c = _centre(result)
    final = np.asarray(result["final_loss"], dtype=float)
    pl = result["pca.loss"]
    i, j = np.unravel_index(np.nanargmin(np.where(np.isfinite(pl), pl, np.inf)), pl.shape)
    low = lowest_at_model(result)
    n_m, n_p = low.shape
    lo, hi = wilson(int(low.sum()), low.size)
    edge = np.concatenate([rl[:, :, 0], rl[:, :, -1], rl[:, :, :, 0], rl[:, :, :, -1]], -1)
    convex = np.array([[convex_share(rl[m, p]) for p in range(n_p)] for m in range(n_m)])
    off = 100 * np.asarray(result["pca.off_plane"], dtype=float)
    return [
        f"Models: {n_m} × 784-{cfg.width}-10 MLP, {int(result['params'])} parameters, final "
        f"training loss {np.min(final):.3f}–{np.max(final):.3f} after {cfg.epochs} epochs.",
        f"Model 0's trajectory: its top two PCA directions hold {100 * ev[0]:.1f} % + "
        f"{100 * ev[1]:.1f} % of its variance; {off[0]:.1f} % lies off the plane drawn in (a) "
        f"({np.min(off):.1f}–{np.max(off):.1f} % over the {n_m} models). The lowest loss on "
        f"that plane's grid is {pl[i, j]:.3f} at (PC1, PC2) = ({result['pca.a'][i]:.2f}, "
        f"{result['pca.b'][j]:.2f}), vs {final[0]:.3f} at the model: "
        + ("training had not reached the valley floor along its own path."
           if pl[i, j] < final[0] - 1e-6 else "the model sits lowest."),
        f"Random filter-normalised planes: the model's grid point is the lowest of the grid in "
        f"{int(low.sum())} of {low.size} planes ({n_m} models × {n_p} planes; 95 % Wilson "
        f"interval of the share {100 * lo:.0f}–{100 * hi:.0f} %). Loss at the model "
        f"{np.nanmin(rl[:, :, c, c]):.3f}–{np.nanmax(rl[:, :, c, c]):.3f}, median at the border "
        f"{np.nanmedian(edge):.2f} (distance {cfg.random_span:g} in units of the filters' own "
        f"norms); the surface is locally convex at {100 * np.nanmin(convex):.0f}–"
        f"{100 * np.nanmax(convex):.0f} % of the interior grid points.",
    ]


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    claim = ("On a filter-normalised random plane the loss around a trained net looks like a "
             "convex bowl with the model at the bottom")
    ref = "Li et al., 2018"
    crit = ("95 % Wilson interval of the share of random planes (over all models) in which the "
            "model's grid point has the lowest loss of the grid lies above ½; inconclusive if "
            "it includes ½")
    low = lowest_at_model(result)
    if not np.isfinite(np.asarray(result["random.loss"], dtype=float)).any():
        return Expectation(claim, ref, crit, None)
    lo, hi = wilson(int(low.sum()), low.size)
    v = verdict(lo, hi, expected_sign=+1, threshold=0.5)
    return Expectation(claim, ref, crit, v,
                       verdict=TESTED[v],
                       measured=f"model lowest in {int(low.sum())} of {low.size} planes "
                                f"({low.shape[0]} models × {low.shape[1]} planes), 95 % "
                                f"interval {100 * lo:.0f}–{100 * hi:.0f} %")


study = Study("error-surface", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, 1000),))
