"""Bonus: sharpness and curvature vs batch size (Keskar et al., 2017).

Question: at comparable training loss, do larger batches reach sharper minima? Keskar et al.
measured ε-sharpness — the largest relative rise of the loss within a box of half-width
ε(|θ_i|+1) around θ — and found it grows with batch size, with the generalisation gap. They
introduced it as an affordable stand-in for the large eigenvalues of the Hessian ∇²L, which
are measured here directly too: the top eigenvalue λ₁ and the trace.

Method (STUDIES.md, ``sharpness``): the very models of ``sensitivity`` — the batch-size sweep
of :mod:`.common`, each model trained to training cross-entropy ≤ ``target_loss`` — taken
from the cache when ``sensitivity`` (or ``interpolation``) trained them already. For every
converged model, on ``probe_subset`` images of its training subset (the same images for
every model): ε-sharpness for each ``eps`` by projected sign-gradient ascent with random
restarts; λ₁ by Lanczos (to relative tolerance 1e-3); the trace by Hutch++ — in float32.
A model whose training diverged is skipped (its values NaN).

Verdict: Spearman ρ(batch size, λ₁) over the converged models (every seed a point), with a
95 % percentile-bootstrap interval: agrees above 0, disagrees below, inconclusive when it
includes 0. λ₁ decides because it is what ε-sharpness stands in for, computed to a stated
tolerance, while ε-sharpness here is a lower bound from a short ascent — and, at the
smallest ε, mostly a gradient measure. Measured (default models, 2 048 probe images): with
30 ascent steps and 2 random starts instead of 10 and none, φ(1e-3) of a batch-1 024 model
rose from 9.4 to 15.5; at ε = 1e-4 the first-order term 100·ε·Σ|g_i|(|θ_i|+1)/(1+L) was
62–93 % of φ over the 25 models (7–47 % at ε = 1e-3), because the models stop at the
criterion, not at a minimum, and the small-batch ones stop with larger full-batch gradients
(‖g‖ 0.23 at batch 16, 0.08 at 4 096, seed 0) — so φ(1e-4) falls with batch size while λ₁
rises. The
study records that first-order part for every ε and reports its share. ε-sharpness and the
trace are reported with their intervals beside λ₁, and so is the trend of the final training
loss (a lower cross-entropy alone lowers the curvature).

Why these defaults: those of ``sensitivity`` (the same models, trained once). The probes run
on 2 048 of the 4 096 training images (the same for every model): 10 ascent steps from δ = 0
per ε (a random start changed φ(1e-3) in 1 of 5 models, by 6 %), Lanczos to tolerance 1e-3
(20 Hessian-vector products) and 30 for the Hutch++ trace: 52 s of CPU time for the 25
models (one thread).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad_and_value

from .. import plot as P
from ..context import Context
from ..params import objective
from ..probes.hessian import hessian_eigenvalues, hessian_trace
from ..probes.sharpness import sharpness
from . import common as C
from .base import DataNeed, Expectation, Study, verdict
from .fields import field


@dataclass(frozen=True)
class Config(C.SweepConfig):  # the sweep's training settings, then:
    batch_sizes: tuple[int, ...] = field((16, 64, 256, 1024, 4096), "batch sizes",
                                         role="optimiser", lo=1, min_len=2)
    probe_subset: int = field(2048, "training images the probes are computed on",
                              role="measurement", lo=1)
    eps: tuple[float, ...] = field((1e-4, 1e-3, 1e-2), "box sizes ε", role="measurement",
                                   lo=0, lo_open=True)
    ascent_steps: int = field(10, "sign-gradient ascent steps per start", role="measurement",
                              lo=1)
    restarts: int = field(0, "random starts in the box besides δ = 0", role="measurement",
                          lo=0)
    trace_samples: int = field(30, "Hessian-vector products for the Hutch++ trace",
                               role="measurement", lo=3)


SCALES = {  # the sweep's scales are shared with sensitivity, so the models are too
    "quick": {**C.SWEEP_SCALES["quick"], "probe_subset": 256, "ascent_steps": 4,
              "restarts": 0, "trace_samples": 9},
    "full": {**C.SWEEP_SCALES["full"], "probe_subset": 10000, "ascent_steps": 50,
             "restarts": 5, "trace_samples": 200},
}
MEASURES = ("top_eig", "trace")


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    sw = C.sweep(ctx, cfg)

    def probes(bs: int) -> dict[str, np.ndarray]:
        data = ctx.load("mnist", subset=cfg.subset, test_subset=cfg.test_subset)
        n = min(cfg.probe_subset, cfg.subset)
        pick = torch.randperm(cfg.subset, generator=torch.Generator().manual_seed(0))[:n]
        batch = (data.x_train[pick.to(data.x_train.device)],
                 data.y_train[pick.to(data.y_train.device)])
        nan = float("nan")
        rows = []
        for s, theta in enumerate(sw.thetas[bs]):
            # A member whose training diverged (recorded by the trainer, so the run exits 1)
            # has non-finite weights: its probes are skipped, their values NaN.
            if sw.dead[bs][s]:
                rows.append(([nan] * len(cfg.eps), nan, nan, nan, [nan] * len(cfg.eps)))
                continue
            m = C.build(sw.settings, theta, ctx.device)
            sharp = [sharpness(m, F.cross_entropy, batch, eps=e, steps=cfg.ascent_steps,
                               restarts=cfg.restarts, seed=s) for e in cfg.eps]
            # In the model's precision (the default): λ₁ to 1e-3 and a Hutch++ trace whose
            # sampling error is far above float32 rounding gain nothing from float64.
            top = hessian_eigenvalues(m, F.cross_entropy, batch, k=1, tol=1e-3)
            trace = hessian_trace(m, F.cross_entropy, batch, samples=cfg.trace_samples)
            # The first-order part of φ(ε): max of gᵀδ over the box, 100·ε·Σ|g_i|(|θ_i|+1)
            # / (1 + L). Where it is most of φ, ε-sharpness measures the gradient, not the
            # curvature (the models stop at the criterion, not at a minimum).
            f, th = objective(m, F.cross_entropy, batch)
            g, loss = grad_and_value(f)(th)
            l1 = float((g.abs() * (th.abs() + 1)).sum()) / (1 + float(loss))
            rows.append(([x.value for x in sharp], float(top.values[0]),
                         float(trace.estimate), float(loss), [100 * e * l1 for e in cfg.eps]))
        sharp, top, trace, loss, first = zip(*rows)
        return {"sharpness": np.array(sharp), "top_eig": np.array(top),  # (S, E), (S,)
                "trace": np.array(trace), "probe_loss": np.array(loss),
                "first_order": np.array(first)}  # (S, E)

    return C.sweep_result(sw, ctx.map(probes, sw.sizes, desc="sharpness"))


# --- statistics ------------------------------------------------------------------------------


def _measures(result, cfg) -> dict[str, np.ndarray]:
    """Every curvature measure as a (B, S) array, named for the findings."""
    out = {"top Hessian eigenvalue λ₁": result["top_eig"],
           "Hessian trace": result["trace"]}
    for j, e in enumerate(cfg.eps):
        if np.ndim(result["sharpness"]) == 3 and j < np.shape(result["sharpness"])[2]:
            out[f"ε-sharpness at ε = {e:g}"] = result["sharpness"][:, :, j]
    return out


def trend(result, values) -> tuple[float, float, float, int]:
    """Spearman ρ(batch size, values) with its 95 % bootstrap interval and n, over the
    converged models with finite values."""
    ok = C.converged(result)
    b = np.broadcast_to(np.asarray(result["batch_sizes"], float)[:, None], ok.shape)
    return C.spearman_over(ok, b, np.asarray(values, float))


# --- figures ---------------------------------------------------------------------------------


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict:
    b = np.asarray(result["batch_sizes"])
    order = np.argsort(b)
    r = {k: (v[order] if np.ndim(v) and len(v) == len(b) else v) for k, v in result.items()}
    b = b[order]
    ok = C.converged(r)
    bb = np.broadcast_to(b[:, None].astype(float), ok.shape)

    def masked(v):
        return np.where(ok, np.asarray(v, float), np.nan).T

    stat = f"{cfg.seeds} seeds: {P.STAT['median']}"
    fig, axes = P.figure(3, 1, width=4.3, height=3.7)
    ax_s, ax_h, ax_l = axes[0]
    for j, e in enumerate(cfg.eps):
        s = np.asarray(r["sharpness"], float)[:, :, j]
        P.band(ax_s, b, masked(s), f"ε = {e:g}", P.COLORS[j % len(P.COLORS)], stat="median")
        P.not_converged(ax_s, bb[~ok], s[~ok], **({} if j == 0 else {"label": None}))
    ax_s.set(xscale="log", yscale="log", xlabel="batch size", ylabel="ε-sharpness φ (%)",
             title="ε-sharpness (Keskar et al.)")
    ax_s.legend(fontsize=7, loc="center left", title=stat, title_fontsize=7)
    for j, (key, name) in enumerate((("top_eig", "top eigenvalue λ₁ (verdict)"),
                                     ("trace", "trace (Hutch++)"))):
        v = np.asarray(r[key], float)
        P.band(ax_h, b, masked(v), name, P.COLORS[3 + j], stat="median")
        P.not_converged(ax_h, bb[~ok], v[~ok], **({} if j == 0 else {"label": None}))
    ax_h.set(xscale="log", yscale="log", xlabel="batch size", ylabel="Hessian",
             title=f"curvature of the training loss ({cfg.probe_subset} images)")
    ax_h.legend(fontsize=7, title=stat, title_fontsize=7)
    for j, key in enumerate(("test_loss", "train_loss")):
        v = np.asarray(r[key], float)
        P.band(ax_l, b, masked(v), key.replace("_", " "), P.COLORS[1 - j], stat="median")
        P.not_converged(ax_l, bb[~ok], v[~ok], **({} if j == 0 else {"label": None}))
    ax_l.axhline(cfg.target_loss, color="grey", ls=":", lw=1, label="criterion")
    ax_l.set(xscale="log", yscale="log", xlabel="batch size", ylabel="cross-entropy",
             title="loss at the criterion")
    ax_l.legend(fontsize=7, title=stat, title_fontsize=7)
    for ax in (ax_s, ax_h, ax_l):
        P.label_batch_sizes(ax, b)
    fig.suptitle(f"each model trained to training cross-entropy ≤ {cfg.target_loss:g}; "
                 f"Spearman ρ(batch size, λ₁) {C.rho_text(trend(r, r['top_eig']))}", fontsize=9)
    return {"sharpness": fig}


# --- findings and verdict --------------------------------------------------------------------


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    b = np.asarray(result["batch_sizes"])
    ok = C.converged(result)
    lines = [C.describe_missed(result, cfg)]

    def med(v, i) -> str:
        v = np.asarray(v, float)[i][ok[i]]
        v = v[np.isfinite(v)]
        return format(float(np.median(v)), ".3g") if v.size else "undefined"

    for name, v in _measures(result, cfg).items():
        lines.append(f"{name}: " + ", ".join(f"batch {int(bs)}: {med(v, i)}"
                                             for i, bs in enumerate(b))
                     + f" (medians over converged seeds); Spearman with batch size "
                     f"{C.rho_text(trend(result, v))}.")
    share = np.asarray(result["first_order"], float) / np.asarray(result["sharpness"], float)
    lines.append("Share of ε-sharpness that its first-order (gradient) term 100·ε·Σ|g_i|"
                 "(|θ_i|+1)/(1+L) accounts for, median over converged models: " + ", ".join(
                     f"ε = {e:g}: {_pct(share[:, :, j][ok])}" for j, e in enumerate(cfg.eps)
                     if np.ndim(share) == 3 and j < share.shape[2])
                 + " — where it is large, φ(ε) measures the gradient left at the criterion, "
                 "not curvature.")
    lines.append(
        "Confounds checked over the same models: final training loss vs batch size "
        f"{C.rho_text(trend(result, result['train_loss']))}; generalisation gap (test − train "
        f"cross-entropy) vs batch size "
        f"{C.rho_text(trend(result, result['test_loss'] - result['train_loss']))}.")
    return lines


def _pct(v) -> str:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return f"{100 * float(np.median(v)):.0f} %" if v.size else "undefined"


def literature(result: dict[str, np.ndarray], cfg: Config) -> Expectation:
    rho, lo, hi, n = trend(result, result["top_eig"])
    agrees = verdict(lo, hi, expected_sign=1) if n >= C.MIN_MODELS else None
    return Expectation(
        "At comparable training loss, larger batches converge to sharper minima",
        "Keskar et al., 2017",
        f"95 % bootstrap interval of Spearman ρ(batch size, top Hessian eigenvalue λ₁) over "
        f"the models that met the criterion (training cross-entropy ≤ {cfg.target_loss:g}) "
        f"lies above 0; inconclusive if it includes 0; not testable with fewer than "
        f"{C.MIN_MODELS} such models (ε-sharpness and the trace are in the findings)",
        agrees, verdict=C.verdict_word(agrees, n, C.MIN_MODELS),
        measured=C.rho_text((rho, lo, hi, n)))


study = Study("sharpness", Config, run, plot, findings, SCALES,
              question=__doc__, literature=literature,
              data=lambda cfg: (DataNeed("mnist", cfg.subset, cfg.test_subset),))
