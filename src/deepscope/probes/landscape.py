"""The loss on a plane through parameter space (Li et al., 2018).

"Visualizing the Loss Landscape of Neural Nets" (Li, Xu, Taylor, Studer, Goldstein, NeurIPS
2018) draws ``L(θc + a·δ + b·η)`` over a grid of ``(a, b)`` for two directions ``δ, η`` through
a centre ``θc`` (usually the trained model). Two choices of plane are provided:

* **filter-normalised random directions** (:func:`filter_normalized_direction`,
  :func:`random_plane`): a Gaussian direction is rescaled filter by filter to the norms of the
  model's own filters. Networks with ReLUs are invariant to rescaling a filter's weights (and
  compensating in the next layer), so an un-normalised direction of fixed length is a huge step
  for a layer of small weights and a negligible one for a layer of large weights; after filter
  normalisation, ``a = 1`` means "a perturbation as large as the weights themselves" in every
  filter, and surfaces of different networks become comparable. Biases (and other 1-D
  parameters) get a zero direction, as in the paper.
* **the PCA plane of the training trajectory** (:func:`pca_plane`): random directions in high
  dimension are nearly orthogonal to the path the optimiser took, so a trajectory projected on
  a random plane shows nothing. The top two principal directions of the θ snapshots contain
  as much of the motion as any plane can; the share of the trajectory's variance *off* that
  plane says how faithful the drawing is.

:func:`surface` evaluates the grid vectorised: the loss is a pure function ``f(θ)`` of the flat
parameter vector (:func:`deepscope.params.objective`), and ``torch.vmap(f)`` evaluates a chunk
of grid points — a ``(chunk, P)`` stack of θ — in one batched forward pass, under
``torch.no_grad()``. :func:`project` gives the plane coordinates of other θ (a trajectory) so it
can be drawn on the surface.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..ensemble import activation_bytes, evaluate, stacked_forward
from ..params import (
    Selection,
    check_mode,
    flatten,
    get_theta,
    in_mode,
    param_dict,
    positions,
    theta_forward,
)
from .batches import (
    Batch,
    Batches,
    Data,
    Loss,
    batch_norms,
    batches,
    inputs,
    is_model_loss,
    theta_objective,
)
from .trajectory import PCAResult, pca

__all__ = [
    "SurfaceResult",
    "filter_normalized_direction",
    "pca_plane",
    "project",
    "random_plane",
    "steps",
    "surface",
]


# --- directions ---------------------------------------------------------------------------


def _filter_normalized(model: nn.Module, gen: torch.Generator, ignore_bias: bool,
                       params: Selection = None) -> Tensor:
    """One filter-normalised Gaussian direction drawn from ``gen`` (see the public function).

    Draws are float64 on the CPU whatever the model's dtype and device, so the same seed gives
    the same direction (to rounding) for a float32 and a float64 copy of a model. Every
    parameter consumes its draw, biases included, so ``ignore_bias`` changes only the bias part.
    """
    out = {}
    for name, p in param_dict(model, params).items():
        ref = p.to("cpu", torch.float64)
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if p.dim() >= 2:
            # A filter is a slice along dim 0: a row of a Linear weight, an output channel of a
            # Conv weight. Each gets the Frobenius norm of the model's filter.
            rows, drows = ref.reshape(p.shape[0], -1), d.reshape(p.shape[0], -1)
            d = (drows * (rows.norm(dim=1) / drows.norm(dim=1))[:, None]).reshape(p.shape)
        elif ignore_bias:
            d = torch.zeros_like(d)
        else:
            d = d * (ref.norm() / d.norm())
        out[name] = d.to(p.device, p.dtype)
    return flatten(out)


def filter_normalized_direction(
    model: nn.Module, seed: int = 0, *, ignore_bias: bool = True, params: Selection = None
) -> Tensor:
    """A filter-normalised random direction in flat θ space, shape ``(P,)``.

    A standard Gaussian direction (from ``torch.Generator().manual_seed(seed)``; the global RNG
    is not touched) in which, for every parameter with two or more dimensions, each filter —
    slice along dim 0 — is rescaled to the Frobenius norm of the model's corresponding filter.
    Parameters with fewer dimensions (biases) get 0, Li et al.'s choice; with
    ``ignore_bias=False`` each is rescaled as a whole vector to the norm of the model's one.
    The direction has the dtype and device of the model's parameters; with ``params``
    (:func:`deepscope.params.select`) it spans only the selected ones, shape ``(P_sel,)``.
    """
    return _filter_normalized(model, torch.Generator().manual_seed(seed), ignore_bias, params)


def random_plane(
    model: nn.Module, seed: int = 0, *, ignore_bias: bool = True, params: Selection = None
) -> tuple[Tensor, Tensor]:
    """Two filter-normalised random directions ``(d1, d2)``, each of shape ``(P,)``.

    Both are drawn one after the other from one generator seeded with ``seed``, so ``d1`` equals
    ``filter_normalized_direction(model, seed)`` and ``d2`` is an independent draw. They are not
    orthogonalised (in high dimension they are nearly orthogonal; :func:`project` handles any
    pair). ``params``: as in :func:`filter_normalized_direction`.
    """
    gen = torch.Generator().manual_seed(seed)
    return (_filter_normalized(model, gen, ignore_bias, params),
            _filter_normalized(model, gen, ignore_bias, params))


def pca_plane(
    snapshots: np.ndarray | Tensor, center: np.ndarray | Tensor | None = None
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """The plane of the top two principal directions of a θ trajectory.

    Args:
        snapshots: ``(..., P)`` θ snapshots (e.g. ``(times, P)`` of one run or
            ``(runs, times, P)``); one joint PCA over all of them (:func:`~.trajectory.pca`).
        center: the point the plane is anchored at, used for ``info["coords"]``; default the
            last snapshot (in row-major order of the leading dimensions), i.e. the final model
            of the last run — the centre Li et al. use, and the default centre of
            :func:`surface` when the model is that final model.

    Returns:
        ``(d1, d2, info)``: orthonormal directions as tensors of shape ``(P,)`` (dtype of the
        snapshots if floating, else float64), and ``info`` with

        * ``"explained_variance_ratio"``: ``(2,)`` shares of the trajectory's variance along
          ``d1`` and ``d2``;
        * ``"off_plane"``: the share of the variance off the plane, ``1 − Σ ratio`` (0 for a
          planar trajectory; a large value means the drawing hides much of the motion);
        * ``"center"``: the anchor as a ``(P,)`` tensor;
        * ``"coords"``: ``(..., 2)`` coordinates of every snapshot relative to the centre;
        * ``"pca"``: the full :class:`~.trajectory.PCAResult`.
    """
    res: PCAResult = pca(snapshots, k=2)
    if isinstance(snapshots, Tensor):
        dtype = snapshots.dtype if snapshots.is_floating_point() else torch.float64
        flat = snapshots.detach().reshape(-1, snapshots.shape[-1])
    else:
        arr = np.asarray(snapshots)
        dtype = {np.float16: torch.float16, np.float32: torch.float32}.get(
            arr.dtype.type, torch.float64
        )
        flat = torch.from_numpy(np.ascontiguousarray(arr.reshape(-1, arr.shape[-1])))
    c = flat[-1] if center is None else torch.as_tensor(center)
    c = c.to("cpu", torch.float64)
    coords = res.projections + (res.mean - c.numpy()) @ res.components.T
    ratio = res.explained_variance_ratio
    info = {
        "explained_variance_ratio": ratio,
        "off_plane": float(max(0.0, 1.0 - ratio.sum())),
        "center": c.to(dtype),
        "coords": coords,
        "pca": res,
    }
    d1, d2 = (torch.from_numpy(res.components[i].copy()).to(dtype) for i in range(2))
    return d1, d2, info


# --- the surface --------------------------------------------------------------------------


@dataclass(frozen=True)
class SurfaceResult:
    """Loss on a grid: ``loss[i, j] = L(θc + a[i]·d1 + b[j]·d2)`` (float64 NumPy arrays)."""

    a: np.ndarray
    b: np.ndarray
    loss: np.ndarray


def _spans(span) -> tuple[tuple[float, float], tuple[float, float]]:
    arr = np.asarray(span, dtype=np.float64)
    if arr.shape == (2,):
        arr = np.stack([arr, arr])
    if arr.shape != (2, 2):
        raise ValueError(f"span must be (lo, hi) or ((a0, a1), (b0, b1)), got {span!r}")
    return (arr[0, 0], arr[0, 1]), (arr[1, 0], arr[1, 1])


def _plane(model: nn.Module, directions: str | tuple[Tensor, Tensor],
           snapshots: np.ndarray | Tensor | None, seed: int, params: Selection
           ) -> tuple[Tensor, Tensor]:
    """The two directions ``(d1, d2)`` that ``surface``'s ``directions`` names, over the
    ``params`` selected (full-θ snapshots are cut to the selected columns)."""
    if not isinstance(directions, str):
        return directions
    if directions == "filter":
        return random_plane(model, seed=seed, params=params)
    if directions == "pca":
        if snapshots is None:
            raise ValueError('directions="pca" needs the trajectory: pass snapshots=')
        if params is not None and snapshots.shape[-1] == get_theta(model).numel():
            snapshots = snapshots[..., positions(model, params).numpy()]
        return pca_plane(snapshots)[:2]
    raise ValueError(f'directions must be "filter", "pca" or (d1, d2), got {directions!r}')


MEMORY = 16 * 2**20
"""Default activation budget of one evaluation step of :func:`surface` and
:func:`interpolate`, in bytes (16 MiB). Large enough that a small model's whole grid runs
in a few vectorised calls; small enough that a 784-256-256-10 MLP on 2 048 images (14 MiB of
module outputs per point) goes one point at a time, which runs at the forward-pass floor
(1.01× under load 9 on two cores, ``benchmarks/landscape.py``), while 64 points per ``vmap``
call (900 MiB) ran 1.05× under that load and 1.36× at load 6, and issue 13 measured 2.9×
on a quiet machine (page faults and cache misses of the large stacked activations)."""


def steps(model: nn.Module, x: Tensor, memory: int = MEMORY) -> tuple[int, int]:
    """``(points, rows)``: how many parameter points one step evaluates together (``vmap``)
    and on how many rows of ``x``, so that the step's activations stay within ``memory``.

    With ``a`` = :func:`~deepscope.ensemble.activation_bytes` per sample and ``N`` rows: as
    many points as fit (``memory // (a·N)``, at least 1) on all rows; when one point on all
    rows exceeds the budget, one point on ``memory // a`` rows at a time.
    """
    if memory < 1:
        raise ValueError(f"memory must be ≥ 1 byte, got {memory}")
    per_row = activation_bytes(model, x)
    n = x.shape[0]
    if per_row * n > memory:
        return 1, max(1, memory // per_row)
    return max(1, memory // (per_row * n)), n


@dataclass(frozen=True)
class _Points:
    """The grid's parameter points ``θ_i = c + ga[i]·d1 + gb[i]·d2``, built on demand."""

    c: Tensor
    ga: Tensor
    gb: Tensor
    d1: Tensor
    d2: Tensor

    def __len__(self) -> int:
        return self.ga.numel()

    def __getitem__(self, s: slice) -> Tensor:
        return self.c + self.ga[s, None] * self.d1 + self.gb[s, None] * self.d2


def _evaluate_points(f: Callable[[Tensor], Tensor], thetas: _Points, points: int) -> Tensor:
    """``f`` at every point, ``points`` per ``vmap`` call (a plain call when 1: ``vmap`` of
    one point only adds overhead)."""
    out = torch.empty(len(thetas), dtype=thetas.c.dtype, device=thetas.c.device)
    fv = torch.vmap(f)
    for s in range(0, len(thetas), points):
        e = min(s + points, len(thetas))
        vals = fv(thetas[s:e]) if points > 1 else f(thetas[s:e][0]).reshape(1)
        if vals.shape != (e - s,):
            raise ValueError(
                f"loss_fn must return a scalar, got shape {tuple(vals.shape[1:])} per point"
            )
        out[s:e] = vals
    return out


def _evaluate_sliced(f: Callable[[Tensor, Batch], Tensor], x: Tensor, y: Tensor,
                     thetas: _Points, rows: int) -> Tensor:
    """One point at a time on ``rows`` samples at a time: the loss is the size-weighted mean
    of the slices' batch-mean losses."""
    parts = [((x[i : i + rows], y[i : i + rows]), min(rows, x.shape[0] - i) / x.shape[0])
             for i in range(0, x.shape[0], rows)]
    out = torch.empty(len(thetas), dtype=thetas.c.dtype, device=thetas.c.device)
    for k in range(len(thetas)):
        theta = thetas[k : k + 1][0]
        out[k] = sum(f(theta, b) * w for b, w in parts)
    return out


def _surface_values(model: nn.Module, f: Callable[[Tensor, Batch], Tensor], data: Batches,
                    thetas: _Points, chunk: int | None, memory: int) -> Tensor:
    """The loss at every point of the grid, ``(len(thetas),)``, under ``no_grad``.

    One ``(x, y)`` batch in memory is split by :func:`steps` (points per ``vmap`` call, and
    rows when one point is over budget). A stream is one pass: each batch's losses at all
    points, weighted by n_b / N and summed; points per call from the budget on that batch
    for ``(x, y)`` batches, else one (a model called by ``loss(model, batch)`` need not
    support ``vmap``); a batch is never split, so memory is that of one batch.
    """
    with torch.no_grad():
        if data.single and data.pairs:
            ((batch, _),) = data
            x, y = batch
            points, rows = steps(model, x, memory) if chunk is None else (chunk, x.shape[0])
            if rows >= x.shape[0]:
                return _evaluate_points(lambda t: f(t, batch), thetas, points)
            return _evaluate_sliced(f, x, y, thetas, rows)
        out = torch.zeros(len(thetas), dtype=thetas.c.dtype, device=thetas.c.device)
        for b, w in data:
            points = chunk or (steps(model, inputs(b), memory)[0] if data.pairs else 1)
            out = out + w * _evaluate_points(lambda t, b=b: f(t, b), thetas, points)
        return out


def surface(
    model: nn.Module,
    loss_fn: Loss,
    batch: Data,
    directions: str | tuple[Tensor, Tensor] = "filter",
    *,
    snapshots: np.ndarray | Tensor | None = None,
    seed: int = 0,
    center: Tensor | np.ndarray | None = None,
    span=(-1.0, 1.0),
    resolution: int | tuple[int, int] = 21,
    chunk: int | None = None,
    memory: int = MEMORY,
    params: Selection = None,
    mode: str = "eval",
) -> SurfaceResult:
    """``L(θc + a·d1 + b·d2)`` on a regular grid of ``(a, b)``, in steps of bounded memory.

    Args:
        model, loss_fn, batch: the loss and the data set the surface should describe, in any
            form of :mod:`.batches` (``(x, y)``, a stream of batches, dict batches with
            ``loss(model, batch)``); a stream is read once for the whole grid.
        directions: the plane — ``"filter"``: two filter-normalised random directions drawn
            from ``seed`` (:func:`random_plane`, Li et al., 2018); ``"pca"``: the top two
            principal directions of the trajectory ``snapshots`` (:func:`pca_plane`); or two
            directions ``(d1, d2)`` of shape ``(P,)`` of your own.
        snapshots: ``(..., P)`` θ snapshots, needed for ``directions="pca"``.
        seed: seed of the random directions for ``directions="filter"``.
        center: θc, shape ``(P,)``; default the model's current θ.
        span: ``(lo, hi)`` for both axes, or ``((a0, a1), (b0, b1))``.
        resolution: points per axis, an int or ``(Ra, Rb)``; an odd count over a symmetric span
            includes 0, i.e. the centre itself.
        chunk: grid points per vectorised (``vmap``) call; default from ``memory`` (one for
            ``loss(model, batch)``).
        memory: the most bytes of activations one step may hold (:data:`MEMORY` by default);
            see :func:`steps`; a batch of a stream is never split. The loss must return the
            batch mean.
        params: the parameters the plane moves (a glob, names or a predicate,
            :func:`deepscope.params.select`), the others held fixed; ``center``, ``d1``,
            ``d2`` then have the selected count ``P`` (``snapshots`` may be full θ).
        mode: ``"eval"`` (default) or ``"train"``, the model's own mode restored after
            (with batch norm in train mode, one point at a time on batch statistics; the
            model's running statistics are not changed).

    Returns:
        :class:`SurfaceResult` with ``a (Ra,)``, ``b (Rb,)`` and ``loss (Ra, Rb)``,
        ``loss[i, j]`` at ``(a[i], b[j])``, computed in the dtype of the model.
    """
    d1, d2 = _plane(model, directions, snapshots, seed, params)
    data = batches(batch)
    f = theta_objective(model, loss_fn, data, params, check_mode(mode))
    theta = get_theta(model, params)
    if mode == "train" and batch_norms(model):
        chunk = 1  # batch norm's in-place statistics updates cannot be vmapped over points
    dtype, device = theta.dtype, theta.device
    p = theta.numel()
    c = theta if center is None else torch.as_tensor(center).to(device, dtype)
    d1 = torch.as_tensor(d1).to(device, dtype)
    d2 = torch.as_tensor(d2).to(device, dtype)
    for nm, v in (("center", c), ("d1", d1), ("d2", d2)):
        if v.shape != (p,):
            raise ValueError(f"{nm} must have shape ({p},) like θ, got {tuple(v.shape)}")
    ra, rb = (resolution, resolution) if isinstance(resolution, int) else resolution
    if ra < 1 or rb < 1 or (chunk is not None and chunk < 1):
        raise ValueError("resolution and chunk must be ≥ 1")
    (a0, a1), (b0, b1) = _spans(span)
    a, b = np.linspace(a0, a1, ra), np.linspace(b0, b1, rb)
    ga, gb = torch.meshgrid(
        torch.as_tensor(a, dtype=dtype, device=device),
        torch.as_tensor(b, dtype=dtype, device=device),
        indexing="ij",
    )
    thetas = _Points(c, ga.reshape(-1), gb.reshape(-1), d1, d2)
    out = _surface_values(model, f, data, thetas, chunk, memory)
    loss = out.reshape(ra, rb).to("cpu", torch.float64).numpy()
    return SurfaceResult(a=a, b=b, loss=loss)


def project(
    points: np.ndarray | Tensor,
    center: np.ndarray | Tensor,
    d1: np.ndarray | Tensor,
    d2: np.ndarray | Tensor,
) -> np.ndarray:
    """Plane coordinates ``(..., 2)`` of θ points ``(..., P)`` (e.g. ``(n, P)`` → ``(n, 2)``).

    The least-squares ``(a, b)`` minimising ``‖x − (center + a·d1 + b·d2)‖``, so ``d1`` and
    ``d2`` need not be orthogonal or of unit length (filter-normalised random directions are
    neither); a point on the plane gets its exact coordinates. Computed in float64.
    """

    def f64(v):
        if isinstance(v, Tensor):
            return v.detach().to("cpu", torch.float64).numpy()
        return np.asarray(v, dtype=np.float64)

    x, c = f64(points), f64(center)
    basis = np.stack([f64(d1), f64(d2)], axis=1)  # (P, 2)
    gram = basis.T @ basis
    if np.linalg.cond(gram) > 1e12:
        raise ValueError("d1 and d2 are (nearly) parallel; they do not span a plane")
    rhs = (x - c) @ basis  # (..., 2)
    return np.linalg.solve(gram, rhs.reshape(-1, 2).T).T.reshape(rhs.shape)


# --- interpolation between two models -----------------------------------------------------


@dataclass(frozen=True)
class Interpolation:
    """Metrics along θ(α) = (1 − α) θ_a + α θ_b; every array has shape ``(A,)``.

    ``train_acc``/``test_acc`` are NaN for regression data.
    """

    alphas: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray


def unreduced(loss_fn: Loss) -> Callable[..., Tensor]:
    """``loss_fn`` callable as ``loss_fn(output, target, reduction="none")``, the per-element
    losses :func:`~deepscope.ensemble.evaluate` sums: a function gets the keyword
    (``F.cross_entropy``, ``F.mse_loss``); a loss module (``nn.CrossEntropyLoss()``) is
    copied with its ``reduction`` attribute set to ``"none"``."""
    if not isinstance(loss_fn, nn.Module):
        return loss_fn
    if not hasattr(loss_fn, "reduction"):
        raise TypeError(f"{type(loss_fn).__name__} has no reduction attribute; interpolate "
                        "needs per-sample losses (a torch.nn loss module or a function that "
                        "accepts reduction='none')")
    none = copy.copy(loss_fn)  # a shallow copy: the user's module keeps its reduction
    none.reduction = "none"

    def per_element(output: Tensor, target: Tensor, reduction: str = "none") -> Tensor:
        return none(output, target)

    return per_element


def interpolate(model_a: nn.Module, model_b: nn.Module, loss_fn: Loss, data, alphas,
                *, test: Data | None = None, chunk: int | None = None,
                batch_size: int | None = None, memory: int = MEMORY,
                params: Selection = None, mode: str = "eval") -> Interpolation:
    """Mean loss and accuracy along the line θ(α) = (1 − α) θ_a + α θ_b (Goodfellow et al.,
    2015; Keskar et al., 2017, Fig. 3), on the full train and test sets.

    α = 0 is ``model_a``, α = 1 is ``model_b``. ``data`` is a data set with ``x_train``,
    ``y_train``, ``x_test``, ``y_test`` (:class:`deepscope.data.Data`; accuracy when its
    ``task`` is classification), or the training data in any form of :mod:`.batches` with
    the test data as ``test`` (or none: NaN). For these, accuracy is measured on ``(x, y)``
    batches with integer ``y`` (class labels) and is NaN otherwise, e.g. with a
    ``loss(model, batch)``, whose loss is the batch mean weighted by n_b / N.

    The α are evaluated ``chunk`` at a time (``vmap`` over stacked θ(α); a plain call for
    one), an in-memory ``(x, y)`` ``batch_size`` samples at a time, by the trainer's
    evaluation (:func:`deepscope.ensemble.evaluate`); both default to what keeps a step's
    activations within ``memory`` bytes (:func:`steps`). A stream is read once per data set,
    each batch whole. ``loss_fn(output, target)`` must accept ``reduction="none"``, as
    ``F.cross_entropy`` and ``F.mse_loss`` do, or be a loss module (:func:`unreduced`).

    ``params`` (a glob, names or a predicate, :func:`deepscope.params.select`): only the
    selected parameters move from ``model_a``'s to ``model_b``'s values, the others stay at
    ``model_a``'s. ``mode``: ``model_a`` is evaluated in ``"eval"`` (default) or ``"train"``
    mode, its own mode restored afterwards (with batch norm in train mode: a copy, one α at
    a time, so the model's running statistics stay as they are).
    """
    theta_a, theta_b = get_theta(model_a), get_theta(model_b)
    if theta_a.shape != theta_b.shape:
        raise ValueError("model_a and model_b must have the same architecture")
    if params is not None:  # move only the selected entries: θ_b is θ_a elsewhere
        at = positions(model_a, params)
        theta_b = theta_a.clone().index_copy_(0, at.to(theta_a.device), theta_b[at])
    model = model_a
    if check_mode(mode) == "train" and batch_norms(model_a):
        # a copy, whose running statistics batch norm may update in place, one α at a time
        # (those updates cannot be vmapped over α)
        model, chunk = copy.deepcopy(model_a), 1
    with in_mode(model, mode):
        return _interpolate(model, loss_fn, data, alphas, theta_a, theta_b, test,
                            (chunk, batch_size, memory))


def _interpolate(model: nn.Module, loss_fn: Loss, data, alphas, theta_a: Tensor,
                 theta_b: Tensor, test: Data | None, steps_: tuple) -> Interpolation:
    """:func:`interpolate` between two full θ ``(P,)``, the model already in its mode."""
    alphas_t = torch.as_tensor(np.asarray(alphas, dtype=np.float64), dtype=theta_a.dtype,
                               device=theta_a.device)
    line = _Line(model, loss_fn, theta_a, theta_b, alphas_t, *steps_)
    if hasattr(data, "x_train"):
        if test is not None:
            raise ValueError("test= is for training data given as batches; a data set with "
                             "x_train/x_test carries its own test set")
        classify = getattr(data, "task", "classification") == "classification"
        train_loss, train_acc = line.metrics(data.x_train, data.y_train, classify)
        test_loss, test_acc = line.metrics(data.x_test, data.y_test, classify)
    else:
        train_loss, train_acc = line.over(data)
        test_loss, test_acc = line.over(test)
    return Interpolation(np.asarray(alphas, dtype=np.float64), train_loss, train_acc,
                         test_loss, test_acc)


@dataclass(frozen=True)
class _Line:
    """The points θ(α) of :func:`interpolate` and their loss and accuracy on data."""

    model: nn.Module
    loss_fn: Loss
    theta_a: Tensor
    theta_b: Tensor
    alphas: Tensor
    chunk: int | None
    batch_size: int | None
    memory: int

    def thetas(self, s: int, points: int) -> Tensor:
        """θ(α) for ``points`` alphas from the ``s``-th: ``(points, P)``."""
        a = self.alphas[s : s + points, None]
        return (1 - a) * self.theta_a + a * self.theta_b

    def metrics(self, x: Tensor, y: Tensor, classify: bool) -> tuple[np.ndarray, np.ndarray]:
        """Loss and accuracy ``(A,)`` of every θ(α) on ``(x, y)``, a step at a time."""
        one, stacked = theta_forward(self.model), stacked_forward(self.model)
        points, rows = steps(self.model, x, self.memory)
        points, rows = self.chunk or points, self.batch_size or rows
        loss = torch.empty(len(self.alphas), dtype=torch.float64)
        acc = torch.empty_like(loss)
        for s in range(0, len(self.alphas), points):
            thetas = self.thetas(s, points)
            outputs = (partial(stacked, thetas) if len(thetas) > 1
                       else lambda xb, t=thetas[0]: one(t, xb)[None])
            loss[s : s + points], acc[s : s + points] = evaluate(
                outputs, unreduced(self.loss_fn), x, y, members=len(thetas), batch_size=rows,
                classify=classify)
        return loss.numpy(), acc.numpy()

    def losses(self, f: Callable[[Tensor, Batch], Tensor], batch: Batch) -> np.ndarray:
        """The batch-mean loss ``(A,)`` of every θ(α) on one batch, ``chunk`` α per call."""
        points = self.chunk or 1
        out = torch.empty(len(self.alphas), dtype=torch.float64)
        with torch.no_grad():
            for s in range(0, len(self.alphas), points):
                thetas = self.thetas(s, points)
                out[s : s + points] = (torch.vmap(lambda t: f(t, batch))(thetas)
                                       if len(thetas) > 1 else f(thetas[0], batch))
        return out.numpy()

    def over(self, data: Data | None) -> tuple[np.ndarray, np.ndarray]:
        """Loss and accuracy ``(A,)`` over any data of :mod:`.batches` in one pass (NaN for
        no data; accuracy NaN unless every batch is ``(x, y)`` with integer ``y``)."""
        nan = np.full(len(self.alphas), np.nan)
        if data is None:
            return nan, nan.copy()
        stream = batches(data)
        if is_model_loss(self.loss_fn, stream):
            f = theta_objective(self.model, self.loss_fn, stream)
            return sum(w * self.losses(f, b) for b, w in stream), nan
        if stream.single:
            ((x, y), _), = stream
            return self.metrics(x, y, not y.is_floating_point())
        loss, acc = np.zeros(len(self.alphas)), np.zeros(len(self.alphas))
        for (x, y), w in stream:
            lb, ab = self.metrics(x, y, not y.is_floating_point())
            loss, acc = loss + w * lb, acc + w * ab
        return loss, acc
