"""Principal components of weight trajectories.

Training moves θ ∈ R^P along a path; snapshots of that path (for several runs, at several
times) are points in R^P. :func:`pca` finds the directions along which those points vary most,
so a trajectory of a 200 000-parameter network can be drawn in two dimensions, together with
the share of its variance that the drawing shows.

**One joint PCA.** All snapshots of all runs go into one PCA (``snapshots`` of shape
``(runs, times, P)`` is flattened to ``runs·times`` points), so every run is drawn in the same
coordinates and runs can be compared with each other.

**Centring matters.** PCA is an eigen-decomposition of the *covariance* of the points, i.e. of
``X − mean``. Without centring, the SVD of the raw snapshot matrix answers another question:
its first right singular vector points (almost) at the mean θ, because every snapshot sits
at distance ‖θ‖ ≈ ‖mean‖ from the origin while the trajectory moves only a small distance
around the mean. The first "component" then shows how far the weights are from *zero*, not how
they move; the second is forced orthogonal to the mean and mixes the real first and second
directions of motion; and the explained-variance ratios are meaningless (they are shares of
Σ‖θ‖², dominated by ‖mean‖²). Translating every snapshot by the same vector — which changes
nothing about the motion — changes the uncentred answer completely, but not the centred one.

**Exact, not randomised.** The original report used ``torch.pca_lowrank(A, q=2)`` — a
randomised approximation with no oversampling (``q`` equal to the number of components kept)
and two power iterations — on uncentred data, and reported no explained variance. The centred,
exact decomposition costs O(n²P) for ``n`` snapshots, which for the few hundred snapshots of a
trajectory is milliseconds to seconds, so there is no reason to approximate. When ``P ≫ n``
the decomposition goes through the ``n × n`` Gram matrix ``X Xᵀ`` (its eigenvectors are the
left singular vectors of ``X``), which needs no ``P × P`` or ``n × P`` factor besides ``X``.

:func:`layer_slice` gives the part of flat θ that one layer occupies, so "the PCA of one layer"
is ``pca(snapshots[..., layer_slice(model, "3")])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..params import param_dict

__all__ = ["PCAResult", "layer_slice", "pca"]


@dataclass(frozen=True)
class PCAResult:
    """A PCA of ``n`` points in R^P (float64 NumPy arrays).

    Attributes:
        mean: ``(P,)`` the mean of all points (the centre of the PCA).
        components: ``(k, P)`` orthonormal principal directions, by decreasing variance; the
            sign of each is fixed so that its entry of largest magnitude is positive.
        projections: ``(..., k)`` coordinates ``(x − mean) · components[i]`` of every input
            point, with the leading shape of the input.
        explained_variance: ``(k,)`` variance of the points along each component
            (``s²/(n−1)`` for singular values ``s`` of the centred data).
        explained_variance_ratio: ``(k,)`` ``explained_variance / total_variance``.
        total_variance: Σ over all P coordinates of the variance of the points (``ddof=1``).
    """

    mean: np.ndarray
    components: np.ndarray
    projections: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    total_variance: float

    def transform(self, points: np.ndarray | Tensor) -> np.ndarray:
        """Coordinates ``(..., k)`` of other points ``(..., P)`` in this PCA's frame."""
        x = _as_float64(points)
        return (x - self.mean) @ self.components.T


def _as_float64(x: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, np.float64)


def _as_tensor64(x: np.ndarray | Tensor) -> tuple[Tensor, bool]:
    """``x`` as a float64 tensor, and whether that tensor is a fresh copy (safe to modify)."""
    if isinstance(x, Tensor):
        t = x.detach().to(torch.float64)
        return t, t.data_ptr() != x.data_ptr()
    a = np.asarray(x, np.float64)
    return torch.from_numpy(a), not np.may_share_memory(a, x)


def _fix_signs(components: np.ndarray) -> np.ndarray:
    """Flip each row so that its entry of largest magnitude (first one on ties) is positive."""
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), idx])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def _complete(components: np.ndarray, keep: int) -> np.ndarray:
    """Replace rows ``keep:`` by unit vectors orthogonal to all previous rows.

    Directions of zero variance are not determined by the data; any orthonormal completion is
    a valid answer. This one is deterministic: Gram–Schmidt on the standard basis vectors.
    """
    k, p = components.shape
    out = components.copy()
    j = 0
    for i in range(keep, k):
        while True:
            v = np.zeros(p)
            v[j] = 1.0
            j += 1
            for _ in range(2):  # twice is enough for orthogonality to machine precision
                v -= out[:i].T @ (out[:i] @ v)
            norm = np.linalg.norm(v)
            if norm > 1e-6:
                out[i] = v / norm
                break
    return out


def pca(snapshots: np.ndarray | Tensor, k: int = 2, *, method: str = "auto") -> PCAResult:
    """Joint, centred, exact PCA of θ snapshots.

    Args:
        snapshots: ``(..., P)`` points, e.g. ``(runs, times, P)`` from ``Trace.snapshots``; all
            leading dimensions are flattened into ``n`` points for one PCA. NumPy array or
            tensor, any float dtype (computed in float64).
        k: number of components, ``1 ≤ k ≤ min(n, P)``.
        method: ``"svd"`` (SVD of the centred ``n × P`` matrix), ``"gram"`` (eigen-decomposition
            of the ``n × n`` Gram matrix; faster and leaner when ``P ≫ n``) or ``"auto"``
            (``"gram"`` when ``P > n``). Both give the same answer to rounding.

    Returns:
        a :class:`PCAResult`; components beyond the rank of the centred data (zero variance)
        are completed to an orthonormal set deterministically.
    """
    x, owned = _as_tensor64(snapshots)
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"snapshots must have shape (..., P) with P ≥ 1, got {tuple(x.shape)}")
    lead, p = tuple(x.shape[:-1]), x.shape[-1]
    x = x.reshape(-1, p)
    n = x.shape[0]
    if n == 0:
        raise ValueError("snapshots holds no points")
    if not 1 <= k <= min(n, p):
        raise ValueError(f"k must be between 1 and min(n, P) = {min(n, p)}, got {k}")
    if method == "auto":
        method = "gram" if p > n else "svd"
    if method not in ("svd", "gram"):
        raise ValueError(f"method must be 'auto', 'svd' or 'gram', got {method!r}")

    # torch, not numpy, does the heavy algebra: it obeys torch.set_num_threads (--threads),
    # and runs on the snapshots' device.
    mean = x.mean(dim=0)
    x = x.sub_(mean) if owned else x - mean  # centre in place when x is already a copy
    dof = max(n - 1, 1)
    sumsq = float(torch.linalg.vector_norm(x)) ** 2

    if method == "svd":
        _, s, vt = torch.linalg.svd(x, full_matrices=False)
        sq = (s[:k] ** 2).cpu().numpy()
        components = vt[:k].cpu().numpy()
        # Singular vectors of (numerically) zero singular values are arbitrary; use the same
        # deterministic completion as the Gram path so both paths agree.
        rank = int(np.sum(sq > _null_tol(float(s[0]) ** 2, n, p)))
    else:
        w, v = torch.linalg.eigh(x @ x.T)
        w, v = w.flip(0)[:k].clamp(min=0.0), v.flip(1)[:, :k]
        sq = w.cpu().numpy()
        rank = int(np.sum(sq > _null_tol(float(sq[0]), n, p)))
        components = np.zeros((k, p))
        components[:rank] = (x.T @ (v[:, :rank] / w[:rank].sqrt())).T.cpu().numpy()
    sq = np.where(np.arange(k) < rank, sq, 0.0)
    components = _fix_signs(_complete(components, rank))

    explained = sq / dof
    total = sumsq / dof
    ratio = explained / total if total > 0 else np.zeros(k)
    comp_t = torch.from_numpy(components).to(x.device)
    projections = (x @ comp_t.T).cpu().numpy().reshape(*lead, k)
    return PCAResult(
        mean=mean.cpu().numpy(),
        components=components,
        projections=projections,
        explained_variance=explained,
        explained_variance_ratio=ratio,
        total_variance=total,
    )


def _null_tol(largest_sq: float, n: int, p: int) -> float:
    """Squared singular values at or below this are rounding noise (relative to the largest)."""
    return largest_sq * max(n, p) * np.finfo(np.float64).eps * 10


def layer_slice(model: nn.Module, name: str) -> slice:
    """The slice of flat θ occupied by parameter ``name`` or by all parameters under prefix
    ``name``.

    θ is ordered as in :mod:`deepscope.params`: ``model.named_parameters()`` (trainable ones),
    each flattened row-major. ``name`` is either a full parameter name (``"3.weight"``) or a
    submodule prefix (``"3"`` covers ``"3.weight"`` and ``"3.bias"``, but not ``"31.weight"``).

    Example — PCA of one layer out of whole-model snapshots::

        sl = layer_slice(model, "3")
        result = pca(trace.snapshots[..., sl])
    """
    start, stop, offset = None, None, 0
    params = param_dict(model)
    for pname, prm in params.items():
        n = prm.numel()
        if pname == name or pname.startswith(name + "."):
            if stop is not None and stop != offset:
                raise ValueError(f"the parameters under {name!r} are not contiguous in θ")
            start = offset if start is None else start
            stop = offset + n
        offset += n
    if start is None:
        raise KeyError(f"no parameter or submodule {name!r}; parameters are {list(params)}")
    return slice(start, stop)
