"""What the batch-size studies share: one sweep of trained models, and how to judge them.

``sensitivity``, ``sharpness`` and ``interpolation`` all look at the same kind of model — a
784-w-w-10 MLP trained on an MNIST subset with Adam at one batch size, from the
initialisations ``mlp(..., seed=s)`` for ``s < seeds`` — each trained to a **common
criterion**: its per-sample mean training cross-entropy (full pass, eval mode) falls to
``target_loss``. A member is checked every ``CHECK_STEPS`` optimiser steps (or every epoch,
whichever is longer) and frozen once it meets the criterion; training stops at
``max_steps`` steps or ``max_epochs`` epochs, whichever comes first (the cap). A member that
never met the criterion is *not converged*: drawn as a red cross and left out of every
verdict.

The training is one piece function, :func:`train_sweep`, whose cache key is the training
settings (:func:`sweep_settings`) and the batch size — not the study — so
``deepscope run all`` trains each (settings, batch size) once and every study that asks
for it finds it in the cache (``Context.map(..., scope=...)``). A piece holds what the
studies need: the trained flat θ of every member (float32) and the per-evaluation metrics.
Because member ``s`` starts from ``mlp(..., seed=s)`` at every batch size and learning rate,
two pieces' members ``s`` share their initialisation — what ``interpolation`` needs.

This module is no study; studies import it, never each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..context import Context, Piece
from ..models import count_params, mlp
from ..params import get_theta, set_theta
from ..train import METRICS, train
from .base import TESTED, spearman_ci
from .fields import Checked, field

SWEEP = "batch-sweep"
"""The scope name of the sweep's pieces in the cache key."""

CHECK_STEPS = 16
"""The criterion is checked at least every this many optimiser steps: every epoch for
batches of up to N/16 images, every ⌈16/steps per epoch⌉ epochs for larger ones (a full
evaluation of train and test sets costs about half a full-batch step, so checking the
full-batch model every step would cost half as much again as training it)."""

SWEEP_SCALES = {
    "quick": {"batch_sizes": (16, 32, 64, 128, 256), "subset": 256, "test_subset": 200,
              "width": 16, "lr": 3e-3, "target_loss": 0.3, "max_steps": 160,
              "max_epochs": 40, "seeds": 2},
    "full": {"batch_sizes": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
             "subset": 60000, "test_subset": 10000, "width": 256, "max_steps": 40000,
             "max_epochs": 400, "seeds": 5},
}
"""Scale overrides of the sweep's training settings, shared by the studies that read its
models (so that they find each other's pieces at every scale)."""


@dataclass(frozen=True)
class SweepConfig(Checked):
    """The sweep's training settings, declared once: the ``Config`` of every study that reads
    the sweep's models extends this (and may re-declare a field to say what it means there)."""

    subset: int = field(4096, "training images", role="data", lo=10, hi=60_000,
                        hi_reason="MNIST has")
    test_subset: int = field(2000, "test images", role="data", lo=10, hi=10_000,
                             hi_reason="MNIST has")
    width: int = field(128, "hidden width of the 784-w-w-10 MLP", role="model", lo=1)
    lr: float = field(1e-3, "Adam learning rate, the same at every batch size",
                      role="optimiser", lo=0, lo_open=True)
    target_loss: float = field(0.05, "criterion: training cross-entropy at most this",
                               role="schedule", lo=0, lo_open=True)
    max_steps: int = field(4096, "cap: optimiser steps (or max_epochs, whichever is first)",
                           role="schedule", lo=1)
    max_epochs: int = field(320, "cap: epochs (or max_steps, whichever is first)",
                            role="schedule", lo=1)
    seeds: int = field(5, "initialisations per batch size", role="seeds", lo=1)


def sweep_settings(cfg: SweepConfig, *, lr: float | None = None) -> dict[str, Any]:
    """The training settings of a study's config that decide its models: the cache scope.

    ``lr`` overrides the config's rate (for ``interpolation``'s large-rate model). Two
    studies whose settings are equal share the trained models.
    """
    return {"data": "mnist", "subset": int(cfg.subset), "test_subset": int(cfg.test_subset),
            "model": "mlp", "depth": 2, "width": int(cfg.width), "optimizer": "adam",
            "lr": float(cfg.lr if lr is None else lr),
            "criterion": ["train_loss", float(cfg.target_loss)],
            "max_steps": int(cfg.max_steps), "max_epochs": int(cfg.max_epochs),
            "check_steps": CHECK_STEPS, "seeds": int(cfg.seeds)}


def schedule(settings: Mapping[str, Any], batch_size: int) -> tuple[int, int, int]:
    """``(steps per epoch, epoch cap, epochs between criterion checks)`` at ``batch_size``."""
    n = settings["subset"]
    per_epoch = math.ceil(n / min(batch_size, n))
    cap = max(1, min(settings["max_epochs"], settings["max_steps"] // per_epoch))
    every = max(1, math.ceil(settings["check_steps"] / per_epoch))
    return per_epoch, cap, every


def build(settings: Mapping[str, Any], theta: np.ndarray | None = None,
          device: torch.device | str = "cpu", seed: int = 0) -> nn.Module:
    """The sweep's architecture: initialised from ``seed``, or holding the flat ``theta``."""
    model = mlp(784, 10, settings["depth"], width=settings["width"], seed=seed).to(device)
    if theta is not None:
        set_theta(model, torch.as_tensor(np.asarray(theta), dtype=torch.float32,
                                          device=device))
    return model.eval()


def train_sweep(ctx: Context, settings: Mapping[str, Any],
                batch_sizes: Iterable[int]) -> list[Piece]:
    """The members of the sweep trained at each batch size (one cached piece per size).

    A piece: ``theta`` (M, P) float32, the trained flat θ of each member; ``epoch`` (T,) the
    epochs of the evaluations; ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``
    (M, T) per-sample means over the full sets at those epochs (after a member met the
    criterion they repeat its frozen values); ``reached_epoch`` (M,) the evaluation at
    which it met the criterion, −1 if never; ``diverged_epoch`` (M,) −1 if never;
    ``steps_per_epoch``, ``cap_epochs``, ``params``: scalars.
    """
    settings = dict(settings)

    def trained(batch_size: int) -> Piece:
        data = ctx.load(settings["data"], subset=settings["subset"],
                        test_subset=settings["test_subset"])
        per_epoch, cap, every = schedule(settings, batch_size)
        models = [build(settings, device=ctx.device, seed=s) for s in range(settings["seeds"])]
        bs = None if batch_size >= settings["subset"] else batch_size
        # Evaluation in chunks of at least 512 images: chunks of a 16-image training batch
        # would make the evaluation of 6 000 images 375 small calls.
        tr = train(models, data, optimizer=settings["optimizer"], lr=settings["lr"],
                   epochs=cap, batch_size=bs, until=tuple(settings["criterion"]),
                   eval_every=every, eval_batch_size=max(batch_size, 512) if bs else None,
                   device=ctx.device, progress=False)
        theta = np.stack([get_theta(m).to("cpu", torch.float32).numpy() for m in models])
        return {"theta": theta, "epoch": tr.epoch,
                **{k: getattr(tr, k) for k in METRICS},
                "reached_epoch": tr.reached_epoch, "diverged_epoch": tr.diverged_epoch,
                "steps_per_epoch": np.asarray(per_epoch), "cap_epochs": np.asarray(cap),
                "params": np.asarray(count_params(models[0]))}

    return ctx.map(trained, [int(b) for b in batch_sizes], desc="batch-size sweep",
                   scope=(SWEEP, settings))


class Sweep(NamedTuple):
    """The sweep trained at a study's batch sizes: what its measurements start from."""

    settings: dict[str, Any]  # sweep_settings(cfg)
    sizes: list[int]  # the config's batch sizes, B of them
    pieces: list[Piece]  # train_sweep's piece per batch size
    thetas: dict[int, np.ndarray]  # batch size -> (S, P) trained flat θ
    dead: dict[int, np.ndarray]  # batch size -> (S,) bool, the member diverged


def sweep(ctx: Context, cfg: Any) -> Sweep:
    """The members of the sweep at ``cfg.batch_sizes`` (a :class:`SweepConfig` with them),
    trained or found in the cache."""
    settings = sweep_settings(cfg)
    sizes = list(cfg.batch_sizes)
    pieces = train_sweep(ctx, settings, sizes)
    return Sweep(settings, sizes, pieces, {bs: p["theta"] for bs, p in zip(sizes, pieces)},
                 {bs: p["diverged_epoch"] >= 0 for bs, p in zip(sizes, pieces)})


def sweep_result(sw: Sweep, measured: Sequence[Piece]) -> dict[str, np.ndarray]:
    """The study's result: the sweep's arrays (:func:`stack_sweep`), each measured array
    stacked over batch sizes (B, ...) in the order the measurement wrote them, and
    ``batch_sizes`` (B,)."""
    out = stack_sweep(sw.pieces)
    for k in measured[0]:
        out[k] = np.stack([p[k] for p in measured])
    out["batch_sizes"] = np.asarray(sw.sizes)
    return out


def stack_sweep(pieces: Sequence[Piece]) -> dict[str, np.ndarray]:
    """The sweep's pieces as study result arrays, batch sizes first (B batch sizes, S seeds).

    Final metrics ``train_loss`` … ``test_acc`` (B, S): at the last evaluation, i.e. where
    each member met the criterion (or the cap). ``reached_step`` (B, S): optimiser steps to
    the criterion, −1 if never; ``diverged`` (B, S) bool. Curves for the training figure:
    ``curve_step`` (B, T) optimiser steps of each evaluation (NaN-padded to the longest
    trace), ``curve_train_loss`` (B, S, T).
    """
    spe = np.array([int(p["steps_per_epoch"]) for p in pieces])
    out = {k: np.stack([p[k][:, -1] for p in pieces]) for k in METRICS}
    reached = np.stack([p["reached_epoch"] for p in pieces])
    out["reached_step"] = np.where(reached >= 0, reached * spe[:, None], -1)
    out["diverged"] = np.stack([p["diverged_epoch"] >= 0 for p in pieces])
    T = max(len(p["epoch"]) for p in pieces)
    S = pieces[0]["train_loss"].shape[0]
    step = np.full((len(pieces), T), np.nan)
    curve = np.full((len(pieces), S, T), np.nan)
    for i, p in enumerate(pieces):
        t = len(p["epoch"])
        step[i, :t] = p["epoch"] * spe[i]
        # after the criterion the trace repeats frozen values: cut it where the last member
        # stopped, so the curves end where training did
        last = p["reached_epoch"].max() if (p["reached_epoch"] >= 0).all() else p["epoch"][-1]
        keep = p["epoch"] <= last
        curve[i, :, :t] = np.where(keep, p["train_loss"], np.nan)
    out["curve_step"], out["curve_train_loss"] = step, curve
    out["params"] = np.asarray(int(pieces[0]["params"]))
    return out


def converged(result: Mapping[str, np.ndarray], prefix: str = "") -> np.ndarray:
    """(B, S) mask of models that met the criterion and did not diverge."""
    return (np.asarray(result[f"{prefix}reached_step"]) >= 0) & ~np.asarray(
        result[f"{prefix}diverged"], dtype=bool)


def describe_missed(result: Mapping[str, np.ndarray], cfg: Any) -> str:
    """A sentence naming the models that missed the criterion, and why (or that none did)."""
    ok = converged(result)
    b = np.asarray(result["batch_sizes"])
    div = np.asarray(result["diverged"], dtype=bool)
    loss = np.asarray(result["train_loss"], dtype=float)
    rule = (f"training cross-entropy ≤ {cfg.target_loss:g} within {cfg.max_steps} steps or "
            f"{cfg.max_epochs} epochs")
    if ok.all():
        return f"Every model met the criterion ({rule}); none is left out."
    names = [f"batch {int(b[i])} seed {s} ("
             + ("diverged" if div[i, s] else f"final training loss {loss[i, s]:.3g}") + ")"
             for i, s in zip(*np.nonzero(~ok))]
    return (f"{len(names)} of {ok.size} models missed the criterion ({rule}) and are left "
            f"out of the verdict, drawn as red crosses: {', '.join(names)}.")


MIN_MODELS = 5
"""Fewer converged models with finite values than this: no correlation, no verdict."""


def spearman_over(ok: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, int]:
    """Spearman ρ(x, y) with its 95 % bootstrap interval and n, over the models where ``ok``
    and both values are finite (arrays of one shape, e.g. (B, S)); NaN for fewer than
    :data:`MIN_MODELS`."""
    keep = ok & np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < MIN_MODELS:
        return np.nan, np.nan, np.nan, n
    return (*spearman_ci(x[keep], y[keep], seed=0), n)


def rho_text(stat: tuple[float, float, float, int]) -> str:
    """``ρ = +0.52 (95 % interval … , n = …)`` for the findings, or why there is none."""
    rho, lo, hi, n = stat
    if not np.isfinite(rho):
        return f"undefined ({n} converged models with finite values, fewer than {MIN_MODELS})"
    interval = (f"95 % interval {lo:+.2f} to {hi:+.2f}" if np.isfinite(lo)
                else "no interval (constant values)")
    return f"ρ = {rho:+.2f} ({interval}, n = {n})"


def verdict_word(agrees: bool | None, n: int, minimum: int) -> str:
    """The verdict for :class:`~.base.Expectation`: not testable below ``minimum`` points."""
    if n < minimum:
        return "not testable"
    return TESTED[agrees]
