"""Probe your own model: curvature, landscape and sensitivity of any network on any data.

Question: what is the Hessian spectrum, trace and eigenvalue density, the ε-sharpness, the
loss surface around θ, the input sensitivity and the gradient norm of *this* model on *this*
data? ``deepscope probe MODEL --data DATA`` answers with the library's probes
(:mod:`deepscope.probes`) and stores the answer like a study: a run directory per
(model, data, settings) under ``OUT/probe/``, every piece cached (an interrupted probe
resumes), surface rows as independent pieces that ``--executor process|ray`` spreads, and a
section of the report per probed model.

Method. The model comes from a spec (:mod:`deepscope.specs`: ``module.path:factory``,
``torchvision:NAME``, ``timm:NAME``, ``hf:CONFIG_OR_DIR``), with ``--weights`` loaded strictly
from a state dict; the data from one of deepscope's sets or ``module.path:fn``, cut to
``samples`` samples. The loss is the per-sample mean over them: cross-entropy for integer
targets, mean squared error for real ones, ``model(**batch).loss`` for dict batches (the
HuggingFace convention), or as ``loss`` says. Curvature probes (Lanczos top-``k``
eigenvalues, Hutch++ trace, stochastic Lanczos quadrature density) run ``seeds`` times from
independent random starts and report mean ± sample standard deviation over them (the error
bars of the figures); they and the landscape probes act on the parameters ``params`` selects
(a glob on parameter names), the rest held fixed. Everything runs in the model's mode
``mode`` (``eval`` by default; ``train`` is refused for curvature when the model has batch
norm, whose loss would then depend on how the data is batched). A grey image is repeated to
three channels for a model whose first convolution takes three (torchvision's ResNets on
MNIST), and the findings say so.

Cost: each Hessian-vector product is one pass over the data (forward and double backward).
One batch in memory (``batch_size`` unset) keeps its gradient graph for all products;
``batch_size`` streams batches with memory of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import plot as P
from .. import specs
from ..context import Context
from ..errors import UsageError
from ..params import in_mode, select
from ..probes.batches import ModelLoss, batch_norms, model_loss
from ..probes.gradient import grad_norm
from ..probes.hessian import hessian_eigenvalues, hessian_trace, spectral_density
from ..probes.landscape import random_plane, surface
from ..probes.linalg import smooth
from ..probes.sensitivity import sensitivity
from ..probes.sharpness import sharpness
from .base import Study, require
from .fields import Checked, field

PROBES = ("hessian", "trace", "density", "sharpness", "surface", "sensitivity", "grad-norm")
CURVATURE = ("hessian", "trace", "density")
LOSSES = ("auto", "cross-entropy", "mse", "model")


@dataclass(frozen=True)
class Config(Checked):
    model: str = field("", "the model: module.path:factory, torchvision:NAME, timm:NAME or "
                       "hf:CONFIG_OR_DIR", role="model")
    weights: str | None = field(None, "state dict to load (.pt/.pth or .safetensors); None: "
                                "the model as built", role="model")
    data: str = field("mnist", "mnist, fashion-mnist, mnist1d or module.path:fn", role="data")
    samples: int = field(256, "samples of the data the loss is averaged over", role="data",
                         lo=1)
    batch_size: int | None = field(None, "samples per batch; None: one batch (its gradient "
                                   "graph reused by every product)", role="data", lo=1)
    loss: str = field("auto", "auto (cross-entropy for class targets, MSE for real ones, "
                      "model(**batch).loss for dict batches), cross-entropy, mse, model",
                      role="model", choices=LOSSES)
    mode: str = field("eval", "the model's mode during the probes", role="model",
                      choices=("eval", "train"))
    probes: tuple[str, ...] = field(PROBES, "what to measure", role="measurement",
                                    choices=PROBES, min_len=1)
    params: str | None = field(None, "glob of parameter names the curvature and landscape "
                               "probes act on (others fixed); None: all", role="measurement")
    k: int = field(5, "top Hessian eigenvalues", role="measurement", lo=1)
    tol: float = field(1e-3, "Lanczos stops when every one of the k has a residual below tol "
                       "× the largest", role="measurement", lo=0, lo_open=True)
    trace_products: int = field(30, "Hessian-vector products per Hutch++ trace",
                                role="measurement", lo=3)
    density_steps: int = field(30, "Lanczos steps per SLQ probe vector", role="measurement",
                               lo=2)
    density_probes: int = field(1, "SLQ probe vectors per run", role="measurement", lo=1)
    resolution: int = field(11, "surface grid points per axis (odd: the grid holds θ)",
                            role="measurement", lo=3)
    span: float = field(1.0, "surface covers [−span, span] along two filter-normalised "
                        "random directions", role="measurement", lo=0, lo_open=True)
    eps: float = field(1e-3, "ε of the ε-sharpness box (relative to |θ| + 1)",
                       role="measurement", lo=0, lo_open=True)
    seeds: int = field(3, "independent runs of each curvature probe (error bars)",
                       role="seeds", lo=1)
    seed: int = field(0, "first seed of probes, directions and data samples", role="seeds",
                      lo=0)

    def check(self):
        require(bool(self.model), "model is required: module.path:factory, torchvision:NAME, "
                "timm:NAME or hf:CONFIG_OR_DIR")
        require(self.resolution % 2 == 1,
                "resolution must be odd (so that the grid holds the model itself)")
        require(len(set(self.probes)) == len(self.probes), "probes must not repeat")


# --- the model and data of a run, resolved the same way at planning and in every piece ------


@dataclass
class Setup:
    """What every piece works on: the model (on the device, in float32), the data (batches
    on the device, inputs for the input-Jacobian), the loss, and what was adapted."""

    model: torch.nn.Module
    data: Any
    inputs: torch.Tensor | None
    loss: Any
    probed: list[str]
    pd: specs.ProbeData
    repeat: int | None
    built: specs.Built


def setup(cfg: Config, device: torch.device | str = "cpu", data_dir: Path | None = None,
          download: bool = False) -> Setup:
    """Resolve ``cfg``'s model, weights, data and loss, and check that they fit together
    (one forward pass on two samples).

    Raises:
        UsageError: anything about the specs, the weights or the fit of model and data.
    """
    device = torch.device(device)
    pd = specs.load_data(cfg.data, samples=cfg.samples, batch_size=cfg.batch_size,
                         seed=cfg.seed, data_dir=data_dir, download=download)
    torch.manual_seed(cfg.seed)  # a factory's random initialisation: the same θ every time
    built = specs.build_model(cfg.model, num_classes=pd.num_classes, in_channels=pd.channels)
    model = built.model
    if cfg.weights:
        specs.load_weights(model, cfg.weights)
    try:
        probed = select(model, cfg.params)
    except ValueError as e:
        raise UsageError(f"--params {cfg.params}: {e}") from None
    if cfg.mode == "train" and batch_norms(model) and set(cfg.probes) & {*CURVATURE,
                                                                        "sharpness"}:
        raise UsageError(f"--mode train with batch norm ({', '.join(batch_norms(model)[:3])}): "
                         "the loss would depend on how the data is batched, not be one "
                         "function of θ; probe curvature in eval mode (the default)")
    repeat = specs.fit_channels(model, pd.channels)
    data = specs.to_device(specs.repeat_channels(pd.data, repeat), device)
    inputs = pd.inputs
    if inputs is not None and repeat:
        inputs = inputs.expand(-1, repeat, *inputs.shape[2:])
    model.to(device)
    loss = _loss(cfg.loss, pd)
    _check_fit(model, data, loss, cfg)
    return Setup(model, data, None if inputs is None else inputs.to(device), loss, probed, pd,
                 repeat, built)


def _loss(name: str, pd: specs.ProbeData) -> Any:
    if name == "auto":
        name = ("model" if pd.inputs is None else
                "cross-entropy" if pd.num_classes is not None else "mse")
    if name == "model":
        return model_loss(_output_loss)
    return F.cross_entropy if name == "cross-entropy" else F.mse_loss


def _output_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """``model(**batch).loss`` for dict batches (HuggingFace), ``model(*batch).loss`` else."""
    out = model(**batch) if isinstance(batch, dict) else model(*batch)
    return out.loss if hasattr(out, "loss") else out["loss"]


def _check_fit(model: torch.nn.Module, data: Any, loss: Any, cfg: Config) -> None:
    first = data if isinstance(data, tuple | dict) else next(iter(data))
    two = specs.head(first, 2)
    try:
        with torch.no_grad(), in_mode(model, cfg.mode):
            value = (loss(model, two) if isinstance(loss, ModelLoss) else
                     loss(model(two[0]), two[1]))
    except Exception as e:
        raise UsageError(f"MODEL {cfg.model} does not take DATA {cfg.data} "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); give a "
                         "model for inputs of that shape, a data fn that returns what the "
                         "model takes, or --loss") from None
    if not torch.is_tensor(value) or value.numel() != 1:
        raise UsageError(f"the loss of MODEL {cfg.model} on DATA {cfg.data} is not a scalar; "
                         "choose --loss")


# --- the pieces ---------------------------------------------------------------------------


def run(cfg: Config, ctx: Context) -> dict[str, np.ndarray]:
    here = setup(cfg, "cpu", ctx.data_dir, ctx.download)
    # One piece per curvature run and per surface row, so that a pool spreads them.
    items: list[Any] = []
    for p in cfg.probes:
        if p in CURVATURE:
            items += [[p, cfg.seed + r] for r in range(cfg.seeds)]
        elif p == "surface":
            items += [["surface", i] for i in range(cfg.resolution)]
        elif p != "sensitivity" or here.inputs is not None:
            items.append(p)

    def piece(item: Any) -> dict[str, np.ndarray]:
        return _measure(item, setup(cfg, ctx.device, ctx.data_dir, ctx.download), cfg)

    runs: dict[str, list[dict[str, np.ndarray]]] = {}
    out: dict[str, np.ndarray] = {}
    for item, got in zip(items, ctx.map(piece, items, desc="probe")):
        if isinstance(item, list):
            runs.setdefault(item[0], []).append(got)
        else:
            out.update(got)
    if "hessian" in runs:
        out["hessian.values"] = np.stack([g["values"] for g in runs["hessian"]])  # (R, k)
    if "trace" in runs:
        out["trace.values"] = np.array([float(g["estimate"]) for g in runs["trace"]])
    if "density" in runs:  # every run smoothed on one grid, with one width
        nodes = np.stack([g["nodes"] for g in runs["density"]])  # (R, probes, m)
        weights = np.stack([g["weights"] for g in runs["density"]])
        grid, _, sigma = smooth(torch.as_tensor(nodes.reshape(-1, nodes.shape[-1])),
                                torch.as_tensor(weights.reshape(-1, nodes.shape[-1])))
        out["density.grid"] = grid.numpy()
        out["density.values"] = np.stack([smooth(torch.as_tensor(n), torch.as_tensor(w),
                                                 grid=grid, sigma=sigma)[1].numpy()
                                          for n, w in zip(nodes, weights)])
        out["density.nodes"], out["density.weights"] = nodes, weights
    if "surface" in runs:
        out["surface.loss"] = np.stack([g["row"] for g in runs["surface"]])  # row i at a_i
        out["surface.a"] = np.linspace(-cfg.span, cfg.span, cfg.resolution)
        out["surface.b"] = runs["surface"][0]["b"]
    named = dict(here.model.named_parameters())
    out.update({"params.total": np.asarray(sum(p.numel() for p in named.values())),
                "params.probed": np.asarray(sum(named[n].numel() for n in here.probed)),
                "data.samples": np.asarray(here.pd.samples),
                "data.batches": np.asarray(here.pd.batches),
                "data.repeat": np.asarray(here.repeat or 0)})
    return out


def _measure(item: Any, s: Setup, cfg: Config) -> dict[str, np.ndarray]:
    """One piece: one run of a curvature probe (``[name, seed]``), one row of the surface
    (``["surface", i]``), or one other probe."""
    m, loss, data, kw = s.model, s.loss, s.data, {"params": cfg.params, "mode": cfg.mode}
    name, arg = item if isinstance(item, list) else (item, None)
    if name == "surface":
        d1, d2 = random_plane(m, seed=cfg.seed, params=cfg.params)
        a = float(np.linspace(-cfg.span, cfg.span, cfg.resolution)[arg])
        r = surface(m, loss, data, (d1, d2), span=((a, a), (-cfg.span, cfg.span)),
                    resolution=(1, cfg.resolution), **kw)
        return {"row": r.loss[0], "b": r.b}
    if name == "hessian":
        r = hessian_eigenvalues(m, loss, data, k=cfg.k, tol=cfg.tol, seed=arg, **kw)
        return {"values": r.values.detach().cpu().double().numpy()}
    if name == "trace":
        r = hessian_trace(m, loss, data, samples=cfg.trace_products, seed=arg, **kw)
        return {"estimate": np.asarray(r.estimate)}
    if name == "density":
        r = spectral_density(m, loss, data, steps=cfg.density_steps, probes=cfg.density_probes,
                             seed=arg, **kw)
        return {"nodes": r.nodes.detach().cpu().double().numpy(),
                "weights": r.weights.detach().cpu().double().numpy()}
    if name == "sharpness":
        r = sharpness(m, loss, data, cfg.eps, seed=cfg.seed, **kw)
        return {"sharpness": np.asarray(r.value), "sharpness.loss": np.asarray(r.loss),
                "sharpness.max_loss": np.asarray(r.max_loss)}
    if name == "grad-norm":
        return {"grad_norm": np.asarray(grad_norm(m, loss, data, **kw))}
    if name == "sensitivity":
        with in_mode(m, cfg.mode):
            out = "softmax" if s.pd.num_classes is not None else "logits"
            return {"sensitivity": sensitivity(m, s.inputs, out).detach().cpu().double().numpy()}
    raise ValueError(f"unknown probe {item!r}")


# --- figures and findings -------------------------------------------------------------------


def _mean_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=float)
    sd = v.std(0, ddof=1) if len(v) > 1 else np.full(v.shape[1:], np.nan)
    return v.mean(0), sd


def plot(result: dict[str, np.ndarray], cfg: Config) -> dict[str, Any]:
    figs = {}
    if "hessian.values" in result:
        fig, ((ax,),) = P.figure(1, 1, width=5.0, height=3.4)
        mean, sd = _mean_sd(result["hessian.values"])
        runs = len(result["hessian.values"])
        idx = np.arange(1, len(mean) + 1)
        ax.bar(idx, mean, yerr=None if runs < 2 else sd, capsize=4, color=P.COLORS[0],
               label=f"mean ± sd over {runs} Lanczos start(s)" if runs > 1 else "one run")
        ax.set_xticks(idx, [f"λ{i}" for i in idx])
        ax.set_ylabel("Hessian eigenvalue")
        ax.set_title(f"top-{len(mean)} Hessian eigenvalues", fontsize=10)
        ax.legend(fontsize=8)
        figs["eigenvalues"] = fig
    if "density.values" in result:
        fig, ((ax,),) = P.figure(1, 1, width=5.6, height=3.4)
        grid, vals = result["density.grid"], np.maximum(result["density.values"], 1e-12)
        P.band(ax, grid, vals, f"SLQ density, {len(vals)} run(s)", P.COLORS[1], stat="mean")
        ax.set_yscale("log")
        ax.set_xlabel("Hessian eigenvalue")
        ax.set_ylabel("density")
        ax.set_title("eigenvalue density (" + P.STAT["mean"] + ")", fontsize=10)
        ax.legend(fontsize=8)
        figs["density"] = fig
    if "surface.loss" in result:
        fig, ((ax,),) = P.figure(1, 1, width=4.8, height=4.0)
        P.contour(ax, result["surface.a"], result["surface.b"], result["surface.loss"], fig,
                  "loss")
        ax.plot([0], [0], "r*", ms=10, label="θ (the model)")
        ax.set_xlabel("a (filter-normalised direction 1)")
        ax.set_ylabel("b (direction 2)")
        ax.legend(fontsize=8, loc="upper right")
        figs["surface"] = fig
    if "sensitivity" in result:
        fig, ((ax,),) = P.figure(1, 1, width=5.0, height=3.2)
        v = np.asarray(result["sensitivity"], float)
        ax.hist(v[np.isfinite(v)], bins=40, color=P.COLORS[2])
        ax.set_xlabel("‖∂f(x)/∂x‖_F per sample")
        ax.set_ylabel("samples")
        ax.set_title("input sensitivity", fontsize=10)
        figs["sensitivity"] = fig
    return figs


def _pm(values: np.ndarray) -> str:
    mean, sd = _mean_sd(np.atleast_1d(values))
    return f"{float(mean):.4g}" + (f" ± {float(sd):.2g}" if np.isfinite(sd) else "")


def findings(result: dict[str, np.ndarray], cfg: Config) -> list[str]:
    total, probed = int(result["params.total"]), int(result["params.probed"])
    sel = (f"; curvature and landscape of the {probed:,} parameters matching {cfg.params!r}"
           if cfg.params else "")
    rep = int(result["data.repeat"])
    lines = [f"Model {cfg.model}" + (f" with weights {cfg.weights}" if cfg.weights else
                                     " (as built, no weights loaded)")
             + f": {total:,} parameters{sel}; {cfg.mode} mode. Data {cfg.data}: "
             f"{int(result['data.samples'])} samples in {int(result['data.batches'])} "
             "batch(es)" + (f", the grey channel repeated to {rep} for the model's first "
                            "convolution" if rep else "") + "."]
    spread = f"mean ± sd over {cfg.seeds} runs" if cfg.seeds > 1 else "one run"
    if "hessian.values" in result:
        mean, sd = _mean_sd(result["hessian.values"])
        vals = ", ".join(f"{m:.4g}" + (f" ± {s:.2g}" if np.isfinite(s) else "")
                         for m, s in zip(mean, sd))
        lines.append(f"Top-{len(mean)} Hessian eigenvalues (Lanczos to a relative residual of "
                     f"{cfg.tol:g}, {spread} from independent start vectors): {vals}.")
    if "trace.values" in result:
        lines.append(f"Hessian trace (Hutch++, {cfg.trace_products} products, {spread}): "
                     f"{_pm(result['trace.values'])}.")
    if "density.values" in result:
        grid, vals = result["density.grid"], result["density.values"]
        peak = grid[np.argmax(vals.mean(0))]
        lines.append(f"Eigenvalue density (SLQ, {cfg.density_probes}×{cfg.density_steps} "
                     f"products per run, {spread}, Gaussian-smoothed): drawn from "
                     f"{grid.min():.3g} to {grid.max():.3g}, highest at {peak:.3g}.")
    if "sharpness" in result:
        lines.append(f"ε-sharpness (Keskar et al., ε = {cfg.eps:g}): "
                     f"{float(result['sharpness']):.4g} (loss {float(result['sharpness.loss']):.4g}"
                     f" → {float(result['sharpness.max_loss']):.4g} at the worst point found).")
    if "surface.loss" in result:
        L = result["surface.loss"]
        c = cfg.resolution // 2
        low = bool(np.nanargmin(L) == c * L.shape[1] + c) if np.isfinite(L).any() else False
        lines.append(f"Loss surface ({cfg.resolution}×{cfg.resolution}, ±{cfg.span:g} along "
                     f"two filter-normalised random directions, seed {cfg.seed}): "
                     f"{float(L[c, c]):.4g} at θ, from {np.nanmin(L):.4g} to "
                     f"{np.nanmax(L):.4g}; θ is {'' if low else 'not '}the lowest grid point.")
    if "sensitivity" in result:
        v = np.asarray(result["sensitivity"], float)
        lines.append(f"Input sensitivity ‖∂f/∂x‖_F (Novak et al., 2018): median "
                     f"{np.median(v):.4g}, 90th percentile {np.percentile(v, 90):.4g} over "
                     f"{len(v)} samples.")
    elif "sensitivity" in cfg.probes:
        lines.append("Input sensitivity: not measured — the batches are dicts, and the "
                     "input-Jacobian needs one input tensor.")
    if "grad_norm" in result:
        lines.append(f"Gradient norm ‖∇θL‖₂ over all parameters"
                     f"{' selected' if cfg.params else ''}: {float(result['grad_norm']):.4g}.")
    return lines


def title(cfg: Config) -> str:
    """How the report names a probed model."""
    return f"{cfg.model} on {cfg.data}" + (f" ({cfg.weights})" if cfg.weights else "")


study = Study("probe", Config, run, plot, findings, {"quick": {}, "full": {}},
              question=__doc__)
