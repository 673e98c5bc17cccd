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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..ensemble import activation_bytes, evaluate, stacked_forward
from ..params import flatten, get_theta, objective, param_dict, theta_forward
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


def _filter_normalized(model: nn.Module, gen: torch.Generator, ignore_bias: bool) -> Tensor:
    """One filter-normalised Gaussian direction drawn from ``gen`` (see the public function).

    Draws are float64 on the CPU whatever the model's dtype and device, so the same seed gives
    the same direction (to rounding) for a float32 and a float64 copy of a model. Every
    parameter consumes its draw, biases included, so ``ignore_bias`` changes only the bias part.
    """
    out = {}
    for name, p in param_dict(model).items():
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
    model: nn.Module, seed: int = 0, *, ignore_bias: bool = True
) -> Tensor:
    """A filter-normalised random direction in flat θ space, shape ``(P,)``.

    A standard Gaussian direction (from ``torch.Generator().manual_seed(seed)``; the global RNG
    is not touched) in which, for every parameter with two or more dimensions, each filter —
    slice along dim 0 — is rescaled to the Frobenius norm of the model's corresponding filter.
    Parameters with fewer dimensions (biases) get 0, Li et al.'s choice; with
    ``ignore_bias=False`` each is rescaled as a whole vector to the norm of the model's one.
    The direction has the dtype and device of the model's parameters.
    """
    return _filter_normalized(model, torch.Generator().manual_seed(seed), ignore_bias)


def random_plane(
    model: nn.Module, seed: int = 0, *, ignore_bias: bool = True
) -> tuple[Tensor, Tensor]:
    """Two filter-normalised random directions ``(d1, d2)``, each of shape ``(P,)``.

    Both are drawn one after the other from one generator seeded with ``seed``, so ``d1`` equals
    ``filter_normalized_direction(model, seed)`` and ``d2`` is an independent draw. They are not
    orthogonalised (in high dimension they are nearly orthogonal; :func:`project` handles any
    pair).
    """
    gen = torch.Generator().manual_seed(seed)
    return _filter_normalized(model, gen, ignore_bias), _filter_normalized(model, gen, ignore_bias)


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
           snapshots: np.ndarray | Tensor | None, seed: int) -> tuple[Tensor, Tensor]:
    """The two directions ``(d1, d2)`` that ``surface``'s ``directions`` names."""
    if not isinstance(directions, str):
        return directions
    if directions == "filter":
        return random_plane(model, seed=seed)
    if directions == "pca":
        if snapshots is None:
            raise ValueError('directions="pca" needs the trajectory: pass snapshots=')
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


def _evaluate_sliced(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                     y: Tensor, thetas: _Points, rows: int) -> Tensor:
    """One point at a time on ``rows`` samples at a time: the loss is the size-weighted mean
    of the slices' batch-mean losses."""
    parts = [(objective(model, loss_fn, (x[i : i + rows], y[i : i + rows]))[0],
              min(rows, x.shape[0] - i) / x.shape[0]) for i in range(0, x.shape[0], rows)]
    out = torch.empty(len(thetas), dtype=thetas.c.dtype, device=thetas.c.device)
    for k in range(len(thetas)):
        theta = thetas[k : k + 1][0]
        out[k] = sum(f(theta) * w for f, w in parts)
    return out


def surface(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch: Sequence[Tensor],
    directions: str | tuple[Tensor, Tensor] = "filter",
    *,
    snapshots: np.ndarray | Tensor | None = None,
    seed: int = 0,
    center: Tensor | np.ndarray | None = None,
    span=(-1.0, 1.0),
    resolution: int | tuple[int, int] = 21,
    chunk: int | None = None,
    memory: int = MEMORY,
) -> SurfaceResult:
    """``L(θc + a·d1 + b·d2)`` on a regular grid of ``(a, b)``, in steps of bounded memory.

    Args:
        model, loss_fn, batch: the loss ``loss_fn(model(x), y)`` on ``batch = (x, y)`` — the
            whole batch at once, so pass the data set the surface should describe. The model
            is evaluated as it is (call ``model.eval()`` first if it has dropout or batch norm).
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
        chunk: grid points per vectorised (``vmap``) call; default from ``memory``.
        memory: the most bytes of activations one step may hold (:data:`MEMORY` by default);
            see :func:`steps`. ``loss_fn`` must return the batch mean when the data is split.

    Returns:
        :class:`SurfaceResult` with ``a (Ra,)``, ``b (Rb,)`` and ``loss (Ra, Rb)``,
        ``loss[i, j]`` at ``(a[i], b[j])``, computed in the dtype of the model.
    """
    d1, d2 = _plane(model, directions, snapshots, seed)
    f, theta = objective(model, loss_fn, tuple(batch))
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
    x, y = batch
    points, rows = steps(model, x, memory) if chunk is None else (chunk, x.shape[0])
    with torch.no_grad():
        out = _evaluate_points(f, thetas, points) if rows >= x.shape[0] else (
            _evaluate_sliced(model, loss_fn, x, y, thetas, rows))
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


def interpolate(model_a: nn.Module, model_b: nn.Module,
                loss_fn: Callable[[Tensor, Tensor], Tensor], data, alphas,
                *, chunk: int | None = None, batch_size: int | None = None,
                memory: int = MEMORY) -> Interpolation:
    """Mean loss and accuracy on the full train and test sets of ``data`` along the line
    θ(α) = (1 − α) θ_a + α θ_b (Goodfellow et al., 2015; Keskar et al., 2017, Fig. 3).

    α = 0 is ``model_a``, α = 1 is ``model_b``. The α are evaluated ``chunk`` at a time
    (``vmap`` over stacked θ(α); a plain call for one), the data ``batch_size`` samples at a
    time, by the trainer's evaluation (:func:`deepscope.ensemble.evaluate`); both default to
    what keeps a step's activations within ``memory`` bytes (:func:`steps`). ``loss_fn`` must
    accept ``reduction="none"`` (as ``F.cross_entropy`` and ``F.mse_loss`` do).
    """
    theta_a, theta_b = get_theta(model_a), get_theta(model_b)
    if theta_a.shape != theta_b.shape:
        raise ValueError("model_a and model_b must have the same architecture")
    alphas_t = torch.as_tensor(np.asarray(alphas, dtype=np.float64), dtype=theta_a.dtype,
                               device=theta_a.device)
    classify = getattr(data, "task", "classification") == "classification"
    one, stacked = theta_forward(model_a), stacked_forward(model_a)

    def metrics(x: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Loss and accuracy ``(A,)`` of every θ(α) on ``(x, y)``, a step at a time."""
        points, rows = steps(model_a, x, memory)
        points, rows = chunk or points, batch_size or rows
        loss = torch.empty(len(alphas_t), dtype=torch.float64)
        acc = torch.empty_like(loss)
        for s in range(0, len(alphas_t), points):
            a = alphas_t[s : s + points, None]
            thetas = (1 - a) * theta_a + a * theta_b  # (points, P)
            outputs = (partial(stacked, thetas) if len(a) > 1
                       else lambda xb, t=thetas[0]: one(t, xb)[None])
            loss[s : s + points], acc[s : s + points] = evaluate(
                outputs, loss_fn, x, y, members=len(a), batch_size=rows, classify=classify)
        return loss.numpy(), acc.numpy()

    train_loss, train_acc = metrics(data.x_train, data.y_train)
    test_loss, test_acc = metrics(data.x_test, data.y_test)
    return Interpolation(np.asarray(alphas, dtype=np.float64), train_loss, train_acc,
                         test_loss, test_acc)
