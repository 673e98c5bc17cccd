r"""Matrix-free spectral linear algebra on any symmetric matrix-vector product.

Everything here sees a symmetric operator ``A`` of size ``n × n`` only through
``matvec(v) = A v`` (a vector of shape ``(n,)`` in, one of shape ``(n,)`` out) — in deepscope
usually a Hessian-vector product, in the tests a plain matrix. Nothing ever forms ``A``. Random
starting vectors come from an explicit ``torch.Generator`` (``generator=``) or a fresh one seeded
with ``seed=``; the global RNG is never touched, so the same call gives the same numbers.
Computation is in ``dtype`` (float64 by default); the output of ``matvec`` is detached and cast
to it.

**Lanczos** (Lanczos 1950). From a unit vector q₁ the three-term recurrence
``β_j q_{j+1} = A q_j − α_j q_j − β_{j−1} q_{j−1}`` builds an orthonormal basis
``Q_m = [q₁ … q_m]`` of the Krylov space span{q₁, A q₁, …, A^{m−1} q₁} in which ``A`` is the
tridiagonal ``T_m = tridiag(β, α, β)``:

    A Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ.

In floating point the q_j lose orthogonality as soon as a Ritz value converges (Paige 1972;
Parlett, *The Symmetric Eigenvalue Problem*, 1980), producing spurious copies ("ghosts") of
converged eigenvalues. We therefore re-orthogonalise every new vector against *all* previous
ones by classical Gram–Schmidt, repeated when a pass cancels most of the vector ("twice is
enough", Parlett/Kahan; the test of Daniel, Gragg, Kaufman & Stewart 1976): the basis stays
orthonormal to rounding, at O(n m) extra work per step. If ``β_j`` falls below
``eps · ‖A‖`` the Krylov space is invariant (breakdown): its Ritz values are exact eigenvalues.

**Ritz pairs.** With ``T_m = S diag(θ) Sᵀ`` the Ritz values θ_i approximate eigenvalues of ``A``,
extreme ones first, and the Ritz vectors ``y_i = Q_m s_i`` satisfy
``‖A y_i − θ_i y_i‖ = β_m |s_{m,i}|`` — the cheap residual bound :func:`eigsh` uses to decide
when the wanted pairs have converged (an eigenvalue of ``A`` lies within that distance of θ_i).

**Power iteration with deflation** is the baseline most tools use (e.g. PyHessian, Yao et al.
2020): it converges at the rate |λ₂/λ₁| per product, so a small spectral gap costs hundreds of
products where Lanczos needs tens (its rate depends on the square root of the gap).
:func:`power_iteration` is here for benchmarks and comparisons.

**Trace estimation.** For z with independent Rademacher (±1) entries E[zᵀ A z] = tr(A)
(Hutchinson 1989); the mean of ``s`` samples has variance 2‖A‖²_F − 2Σ A_ii² over ``s``.
Hutch++ (Meyer, Musco, Musco & Woodruff 2021, Algorithm 1) spends a third of the budget on a
sketch ``A S``, takes ``Q = orth(A S)``, computes the top part exactly as tr(Qᵀ A Q) and applies
Hutchinson only to the deflated remainder (I − QQᵀ) A (I − QQᵀ); for matrices with a decaying
spectrum its error falls like 1/m instead of 1/√m.

**Stochastic Lanczos quadrature** (Golub & Meurant, *Matrices, Moments and Quadrature*, 2010;
Ubaru, Chen & Saad 2017). For a unit vector v, ``vᵀ f(A) v = Σ_j (u_jᵀ v)² f(λ_j)`` is an
integral against a spectral measure; ``m`` Lanczos steps from v give its m-point Gauss
quadrature: nodes θ_i (Ritz values) and weights ``w_i = s_{1,i}²`` (squared first components
of the eigenvectors of T, summing to 1), exact for polynomials up to degree 2m−1. With
v = z/√n for Rademacher z, E[Σ_j (u_jᵀ v)² δ(x − λ_j)] = (1/n) Σ_j δ(x − λ_j), so averaging the
quadratures over a few probes and smoothing each node with a Gaussian estimates the eigenvalue
density of ``A``; Ghorbani, Krishnan & Xiao (2019) used exactly this for Hessians of neural
networks. The moments Σ w_i θ_i^p estimate tr(A^p)/n.

Shapes: ``n`` is the operator size, ``m`` the number of Lanczos steps actually taken, ``k`` the
number of eigenpairs asked for, ``G`` the number of grid points of a density.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Density",
    "EigResult",
    "LanczosResult",
    "Matvec",
    "TraceEstimate",
    "eigsh",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "moments",
    "power_iteration",
    "ritz",
    "spectral_density",
]

Matvec = Callable[[Tensor], Tensor]
"""A symmetric linear operator: ``v`` of shape ``(n,)`` → ``A v`` of shape ``(n,)``."""

_WHICH = ("largest", "smallest", "both_ends")
_BLOCK = 8  # Hutch++ projects this many draws at once (memory: _BLOCK vectors of size n)
_DGKS = 1 / math.sqrt(2)  # reorthogonalise again when a pass keeps less than this share of w
_DISTS = ("rademacher", "gaussian")


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LanczosResult:
    """The output of :func:`lanczos`.

    Attributes:
        alpha: diagonal of the tridiagonal ``T``, shape ``(m,)``.
        beta: off-diagonal of ``T``, shape ``(m-1,)``.
        Q: orthonormal Krylov basis, shape ``(n, m)``; ``Qᵀ A Q = T``.
        matvecs: number of ``matvec`` calls made (``m``).
        residual: ``β_m = ‖A q_m − Q T e_m‖``, the norm of the part of ``A q_m`` outside the
            basis; the residual of Ritz pair ``i`` is ``residual · |S[m-1, i]|``.
        breakdown: whether the run stopped early because the Krylov space became invariant
            (or ``m`` reached ``n``); the Ritz values are then exact eigenvalues.
    """

    alpha: Tensor
    beta: Tensor
    Q: Tensor
    matvecs: int
    residual: float
    breakdown: bool


@dataclass(frozen=True)
class EigResult:
    """Eigenpairs from :func:`eigsh` or :func:`power_iteration`.

    Attributes:
        values: eigenvalue estimates, shape ``(k,)`` (order: see the producing function).
        vectors: unit eigenvector estimates as columns, shape ``(n, k)``.
        matvecs: number of ``matvec`` calls made.
        converged: whether every pair met the tolerance (always true when exact).
        residuals: ``‖A v_i − λ_i v_i‖`` for each pair (for :func:`eigsh` the Lanczos bound,
            for :func:`power_iteration` measured on the deflated operator), shape ``(k,)``.
    """

    values: Tensor
    vectors: Tensor
    matvecs: int
    converged: bool
    residuals: Tensor


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic estimate of tr(A).

    Attributes:
        estimate: the estimate of tr(A).
        std_error: its estimated standard error (sample standard deviation of the random
            part over √samples; ``nan`` with a single sample, 0 when the estimate is exact).
        samples: number of random probe vectors in the stochastic part.
        matvecs: number of ``matvec`` calls made.
    """

    estimate: float
    std_error: float
    samples: int
    matvecs: int


@dataclass(frozen=True)
class Density:
    """An eigenvalue density by stochastic Lanczos quadrature (:func:`spectral_density`).

    Attributes:
        nodes: Gauss quadrature nodes (Ritz values) per probe, shape ``(probes, steps)``.
        weights: their weights, shape ``(probes, steps)``; each row sums to 1. A probe whose
            Lanczos run broke down early is padded with copies of its last node at weight 0.
        grid: points where the density is evaluated, shape ``(G,)``.
        density: the smoothed density on ``grid``, shape ``(G,)``; integrates to 1 on the grid
            (trapezoid rule).
        sigma: standard deviation of the Gaussian that smooths each node.
        matvecs: number of ``matvec`` calls made.
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor
    density: Tensor
    sigma: float
    matvecs: int


# --- helpers ------------------------------------------------------------------------------------


def _device(device: torch.device | str | None, like: Tensor | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if like is not None:
        return like.device
    return torch.empty(()).device  # the current default device


def _generator(seed: int, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(seed)


def _random(n: int, gen: torch.Generator, dist: str, dtype: torch.dtype,
            device: torch.device) -> Tensor:
    """A random vector of shape ``(n,)``, drawn on the generator's device, then moved."""
    if dist == "rademacher":
        z = torch.randint(0, 2, (n,), generator=gen, device=gen.device).to(dtype) * 2 - 1
    elif dist == "gaussian":
        z = torch.randn(n, generator=gen, device=gen.device, dtype=dtype)
    else:
        raise ValueError(f"unknown dist {dist!r}; choose one of {_DISTS}")
    return z.to(device)


def _check(n: int, dtype: torch.dtype) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (the operator size), got {n!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")


def _apply(matvec: Matvec, v: Tensor) -> Tensor:
    """``matvec(v)`` detached, checked for shape, in ``v``'s dtype and device."""
    w = matvec(v)
    if not isinstance(w, Tensor) or w.shape != v.shape:
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"matvec must map a vector of shape {tuple(v.shape)} to one of the same "
                         f"shape, got {shape}")
    return w.detach().to(dtype=v.dtype, device=v.device)


def _tridiag(alpha: Tensor, beta: Tensor) -> Tensor:
    """The symmetric tridiagonal matrix with diagonal ``alpha`` (m,) and off-diagonal ``beta``."""
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


class _Krylov:
    """Lanczos with full reorthogonalisation that can be extended and, after a breakdown,
    restarted with a fresh vector orthogonal to the basis (``T`` then has a zero off-diagonal
    entry and stays a valid projection ``Qᵀ A Q``)."""

    def __init__(self, matvec: Matvec, n: int, dtype: torch.dtype, device: torch.device,
                 breakdown_tol: float | None, capacity: int = 32) -> None:
        self.matvec, self.n, self.dtype, self.device = matvec, n, dtype, device
        eps = torch.finfo(dtype).eps
        self.tol = 10 * math.sqrt(n) * eps if breakdown_tol is None else breakdown_tol
        self.exhausted_tol = 100 * math.sqrt(n) * eps
        # rows q_j; grown geometrically past ``capacity`` (a copy of the whole basis)
        self.basis = torch.empty(min(n, capacity), n, dtype=dtype, device=device)
        self.m = 0
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.next_q: Tensor | None = None
        self.next_beta = 0.0
        self.residual = 0.0
        self.scale = 0.0  # running max ‖A q_j‖ ≈ ‖A‖
        self.matvecs = 0
        self.breakdown = False

    def _orth(self, w: Tensor) -> Tensor:
        """``w`` minus its projection on the basis by classical Gram–Schmidt, with the second
        pass only when the first removed most of ``w`` (‖w'‖ < ‖w‖/√2: Daniel, Gragg, Kaufman
        & Stewart, 1976). Otherwise one pass is orthogonal to rounding already, and the
        second would cost as much as the first: 2.0 of 15.5 s of an SLQ density on a 269k-
        parameter MLP were these passes (``benchmarks/peers.py``'s profile)."""
        if self.m == 0:
            return w
        Q = self.basis[: self.m]
        before = torch.linalg.vector_norm(w)
        w = w - (Q @ w) @ Q
        if torch.linalg.vector_norm(w) < before * _DGKS:
            w = w - (Q @ w) @ Q
        return w

    def start(self, v: Tensor) -> bool:
        """Begin a new block at ``v`` (orthogonalised against the basis). False if nothing new
        is left (``m == n`` or ``v`` lies in the span of the basis)."""
        if self.m >= self.n:
            return False
        before = float(torch.linalg.vector_norm(v))
        v = self._orth(v)
        norm = float(torch.linalg.vector_norm(v))
        if before == 0 or not math.isfinite(norm) or norm <= self.exhausted_tol * before:
            return False
        self.next_q, self.next_beta, self.breakdown = v / norm, 0.0, False
        return True

    def step(self) -> None:
        """One Lanczos step: append ``next_q`` to the basis and compute the next one."""
        q = self.next_q
        assert q is not None, "step() after breakdown without start()"
        if self.m == self.basis.shape[0]:  # grow the buffer geometrically
            grown = torch.empty(min(self.n, 2 * self.m), self.n, dtype=self.dtype,
                                device=self.device)
            grown[: self.m] = self.basis[: self.m]
            self.basis = grown
        self.basis[self.m] = q
        w = _apply(self.matvec, q)
        self.matvecs += 1
        self.scale = max(self.scale, float(torch.linalg.vector_norm(w)))
        a = float(q @ w)
        w = w - a * q
        if self.m > 0:
            self.beta.append(self.next_beta)
            if self.next_beta != 0.0:
                w = w - self.next_beta * self.basis[self.m - 1]
        self.alpha.append(a)
        self.m += 1
        w = self._orth(w)
        b = float(torch.linalg.vector_norm(w))
        if not math.isfinite(b):
            raise FloatingPointError("matvec returned a non-finite vector during Lanczos")
        self.residual = b
        if self.m >= self.n or b <= self.tol * self.scale:
            self.next_q, self.breakdown = None, True
        else:
            self.next_q, self.next_beta = w / b, b

    def tridiagonal(self) -> tuple[Tensor, Tensor]:
        kw = {"dtype": self.dtype, "device": self.device}
        return torch.tensor(self.alpha, **kw), torch.tensor(self.beta, **kw)

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values θ (m,) ascending and the eigenvectors S (m, m) of T."""
        return torch.linalg.eigh(_tridiag(*self.tridiagonal()))


# --- Lanczos ------------------------------------------------------------------------------------


def lanczos(matvec: Matvec, n: int, *, steps: int, v0: Tensor | None = None, seed: int = 0,
            generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
            device: torch.device | str | None = None,
            breakdown_tol: float | None = None) -> LanczosResult:
    """Lanczos tridiagonalisation with full reorthogonalisation.

    Runs ``m ≤ min(steps, n)`` steps from ``v0`` (normalised; default a Gaussian vector from
    ``generator`` or ``seed``). Every new basis vector is re-orthogonalised against all previous
    ones (a second pass when the first cancels most of it), so ``Q`` stays orthonormal to
    rounding even after ``n`` steps. Stops early on breakdown, when
    ``β_j ≤ breakdown_tol · max_j ‖A q_j‖`` (default tolerance ``10 √n · eps(dtype)``): the
    Krylov space is then invariant and ``T``'s eigenvalues are exact eigenvalues of ``A``.

    Args:
        matvec: the symmetric operator, ``(n,) → (n,)``.
        n: operator size.
        steps: maximum number of steps (= matvec calls); clamped to ``n``.
        v0: starting vector, shape ``(n,)``; need not be normalised, must be non-zero.

    Returns:
        :class:`LanczosResult` with ``alpha (m,)``, ``beta (m-1,)``, ``Q (n, m)``; pass it to
        :func:`ritz` for eigenpair estimates.
    """
    _check(n, dtype)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    dev = _device(device, v0)
    if v0 is None:
        v0 = _random(n, _generator(seed, generator), "gaussian", dtype, dev)
    else:
        v0 = torch.as_tensor(v0).detach().to(dtype=dtype, device=dev).reshape(-1)
        if v0.numel() != n:
            raise ValueError(f"v0 has {v0.numel()} entries but n = {n}")
    kr = _Krylov(matvec, n, dtype, dev, breakdown_tol)
    if not kr.start(v0):
        raise ValueError("v0 must be a non-zero, finite vector")
    while kr.m < min(steps, n) and kr.next_q is not None:
        kr.step()
    alpha, beta = kr.tridiagonal()
    Q = kr.basis[: kr.m].clone().T
    return LanczosResult(alpha=alpha, beta=beta, Q=Q, matvecs=kr.matvecs, residual=kr.residual,
                         breakdown=kr.breakdown)


def ritz(result: LanczosResult) -> tuple[Tensor, Tensor]:
    """Ritz values ``(m,)`` in ascending order and Ritz vectors ``(n, m)`` (columns, unit norm)
    of a Lanczos run: the eigendecomposition ``T = S diag(θ) Sᵀ`` mapped back by ``Q S``."""
    values, S = torch.linalg.eigh(_tridiag(result.alpha, result.beta))
    return values, result.Q @ S


# --- eigenvalues --------------------------------------------------------------------------------


def _wanted(m: int, k: int, which: str) -> list[int]:
    """Indices into ascending Ritz values, in the order they are returned."""
    if which == "largest":
        return list(range(m - 1, m - 1 - k, -1))
    if which == "smallest":
        return list(range(k))
    return list(range(k // 2)) + list(range(m - (k + 1) // 2, m))


def eigsh(matvec: Matvec, n: int, k: int = 5, which: str = "largest", *, tol: float = 1e-6,
          max_steps: int | None = None, v0: Tensor | None = None, seed: int = 0,
          generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
          device: torch.device | str | None = None) -> EigResult:
    """The ``k`` extreme eigenpairs of a symmetric operator by Lanczos with full
    reorthogonalisation, growing the Krylov space until they converge.

    Starts with ``m = max(2k + 10, 20)`` steps and extends the same run (no implicit
    restarts, nothing recomputed) by half again until every wanted Ritz pair has the residual bound
    ``β_m |s_{m,i}| ≤ tol · max|θ|``, or ``max_steps`` products are spent. If the Krylov space
    becomes invariant before that, Lanczos continues from a random vector orthogonal to it, so
    the space keeps growing (and repeated eigenvalues can be found); once ``m`` reaches ``n``
    the result is exact up to rounding. As with any single-vector Krylov method, an eigenvalue
    of exact multiplicity is seen only once until such a restart.

    Args:
        matvec: the symmetric operator, ``(n,) → (n,)``.
        n: operator size.
        k: number of eigenpairs.
        which: ``"largest"`` (algebraically largest, returned descending), ``"smallest"``
            (most negative, returned ascending) or ``"both_ends"`` (``⌈k/2⌉`` largest and
            ``⌊k/2⌋`` smallest, returned ascending, as ARPACK's ``"BE"``).
        tol: relative residual tolerance.
        max_steps: most matvec calls (default and cap ``n``); must be at least ``k``.
        v0: starting vector ``(n,)``; default Gaussian from ``generator`` or ``seed``.

    Returns:
        :class:`EigResult` with ``values (k,)``, ``vectors (n, k)`` and the residual bounds.
    """
    _check(n, dtype)
    if which not in _WHICH:
        raise ValueError(f"unknown which={which!r}; choose one of {_WHICH}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n = {n}, got {k}")
    max_steps = n if max_steps is None else min(max_steps, n)
    if max_steps < k:
        raise ValueError(f"max_steps = {max_steps} is fewer than k = {k}; raise max_steps")
    dev = _device(device, v0)
    gen = _generator(seed, generator)
    if v0 is None:
        v0 = _random(n, gen, "gaussian", dtype, dev)
    v0 = torch.as_tensor(v0).detach().to(dtype=dtype, device=dev).reshape(-1)
    kr = _Krylov(matvec, n, dtype, dev, None)
    if not kr.start(v0):
        raise ValueError("v0 must be a non-zero, finite vector")
    exhausted = False
    m = min(max_steps, max(2 * k + 10, 20))
    while True:
        while kr.m < m:
            if kr.next_q is None and not kr.start(_random(n, gen, "gaussian", dtype, dev)):
                exhausted = True
                break
            kr.step()
        exhausted = exhausted or kr.m >= n
        theta, S = kr.ritz()
        idx = _wanted(kr.m, k, which)
        bounds = kr.residual * S[-1, idx].abs()
        converged = exhausted or bool((bounds <= tol * theta.abs().max()).all())
        if converged or kr.m >= max_steps:
            break
        m = min(max_steps, kr.m + max(10, kr.m // 2))
    vectors = kr.basis[: kr.m].T @ S[:, idx]
    return EigResult(values=theta[idx], vectors=vectors, matvecs=kr.matvecs,
                     converged=converged, residuals=bounds)


def power_iteration(matvec: Matvec, n: int, k: int = 5, *, tol: float = 1e-3,
                    max_iters: int = 1000, seed: int = 0,
                    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> EigResult:
    """The baseline: power iteration with deflation, as in most Hessian tools (e.g. PyHessian).

    For each of ``k`` eigenpairs in turn: start from a random unit vector orthogonal to those
    found, iterate ``v ← B v / ‖B v‖`` on the deflated operator ``B = A − Σ_j λ_j v_j v_jᵀ``
    with the Rayleigh quotient ``λ = vᵀ B v`` as estimate, and stop when its relative change
    ``|λ_new − λ_old| ≤ tol · |λ_new|`` (or after ``max_iters`` products). Converges to the
    eigenvalue of largest *magnitude* at rate |λ₂/λ₁| — slowly when the gap is small, and the
    stopping rule then stops early while the estimate is still off. Use :func:`eigsh` for real
    work; this exists to benchmark against.

    Returns:
        :class:`EigResult` with values ``(k,)`` in the order found (descending magnitude),
        vectors ``(n, k)``, and residuals ``‖B v − λ v‖`` of the last iterate.
    """
    _check(n, dtype)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n = {n}, got {k}")
    dev = _device(device)
    gen = _generator(seed, generator)
    values: list[float] = []
    vectors: list[Tensor] = []
    residuals: list[float] = []
    matvecs, all_converged = 0, True

    def deflated(v: Tensor) -> Tensor:
        w = _apply(matvec, v)
        for lam_j, v_j in zip(values, vectors):
            w = w - lam_j * (v_j @ v) * v_j
        return w

    for _ in range(k):
        v = _random(n, gen, "gaussian", dtype, dev)
        for _ in range(2):
            for v_j in vectors:
                v = v - (v_j @ v) * v_j
        v = v / torch.linalg.vector_norm(v)
        lam: float | None = None
        converged, res = False, math.inf
        for _ in range(max_iters):
            w = deflated(v)
            matvecs += 1
            lam_new = float(v @ w)
            res = float(torch.linalg.vector_norm(w - lam_new * v))
            norm = float(torch.linalg.vector_norm(w))
            if norm == 0.0:  # v is in the null space of the deflated operator
                lam, converged = 0.0, True
                break
            done = lam is not None and abs(lam_new - lam) <= tol * abs(lam_new)
            lam = lam_new
            if done:
                converged = True
                break
            v = w / norm
        values.append(float(lam) if lam is not None else 0.0)
        vectors.append(v)
        residuals.append(res)
        all_converged = all_converged and converged
    kw = {"dtype": dtype, "device": dev}
    return EigResult(values=torch.tensor(values, **kw), vectors=torch.stack(vectors, dim=1),
                     matvecs=matvecs, converged=all_converged,
                     residuals=torch.tensor(residuals, **kw))


# --- trace --------------------------------------------------------------------------------------


def _mean_and_error(samples: list[float]) -> tuple[float, float]:
    x = torch.tensor(samples, dtype=torch.float64)
    if x.numel() == 1:
        return float(x[0]), math.nan
    return float(x.mean()), float(x.std(correction=1)) / math.sqrt(x.numel())


def hutchinson(matvec: Matvec, n: int, *, samples: int = 100, seed: int = 0,
               generator: torch.Generator | None = None, dist: str = "rademacher",
               dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> TraceEstimate:
    """Hutchinson's estimator: tr(A) ≈ mean over ``samples`` random z of ``zᵀ A z``.

    ``dist="rademacher"`` (±1 entries, the minimum-variance choice) or ``"gaussian"``.
    ``std_error`` is the sample standard deviation of ``zᵀ A z`` over √samples.
    """
    _check(n, dtype)
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if dist not in _DISTS:
        raise ValueError(f"unknown dist {dist!r}; choose one of {_DISTS}")
    dev = _device(device)
    gen = _generator(seed, generator)
    quad = []
    for _ in range(samples):
        z = _random(n, gen, dist, dtype, dev)
        quad.append(float(z @ _apply(matvec, z)))
    est, err = _mean_and_error(quad)
    return TraceEstimate(estimate=est, std_error=err, samples=samples, matvecs=samples)


def hutchpp(matvec: Matvec, n: int, *, matvecs: int = 99, seed: int = 0,
            generator: torch.Generator | None = None, dist: str = "rademacher",
            dtype: torch.dtype = torch.float64,
            device: torch.device | str | None = None) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021, Algorithm 1) with a budget of ``matvecs``.

    Splits the budget in thirds: a random sketch ``S`` of ``s = matvecs // 3`` columns gives
    ``Q = orth(A S)`` (rank-revealing: directions below rounding are dropped); ``tr(Qᵀ A Q)``
    (``r ≤ s`` products) is the exact trace on that subspace; the remaining
    ``matvecs − s − r`` products estimate ``tr((I − QQᵀ) A (I − QQᵀ))`` by Hutchinson. If
    ``Q`` spans all of R^n the estimate is exact and the last part is skipped.
    ``std_error`` is that of the Hutchinson part.
    """
    _check(n, dtype)
    if matvecs < 3:
        raise ValueError(f"Hutch++ needs a budget of at least 3 matvecs, got {matvecs}")
    if dist not in _DISTS:
        raise ValueError(f"unknown dist {dist!r}; choose one of {_DISTS}")
    dev = _device(device)
    gen = _generator(seed, generator)
    s = matvecs // 3
    AS = torch.stack([_apply(matvec, _random(n, gen, dist, dtype, dev)) for _ in range(s)], 1)
    used = s
    U, sv, _ = torch.linalg.svd(AS, full_matrices=False)
    keep = sv > torch.finfo(dtype).eps * max(n, s) * sv[0] if sv[0] > 0 else sv > 0
    # Q as rows (r, n): each product gets a contiguous vector (a strided column made a
    # Hessian-vector product 10 % slower, benchmarks/peers.py's problem).
    Qt = U[:, keep].T.contiguous()
    top = 0.0
    for q in Qt:
        top += float(q @ _apply(matvec, q))
        used += 1
    if Qt.shape[0] >= n:
        return TraceEstimate(estimate=top, std_error=0.0, samples=0, matvecs=used)
    g = matvecs - used
    quad = []
    for start in range(0, g, _BLOCK):
        # (I − QQᵀ) z for a block of draws at once: two matrix products instead of 2·block
        # matrix-vector products, each of which reads all of Q.
        Z = torch.stack([_random(n, gen, dist, dtype, dev) for _ in range(min(_BLOCK, g - start))])
        for y in Z - (Z @ Qt.T) @ Qt:
            quad.append(float(y @ _apply(matvec, y)))
    used += g
    rest, err = _mean_and_error(quad)
    return TraceEstimate(estimate=top + rest, std_error=err, samples=g, matvecs=used)


# --- spectral density ---------------------------------------------------------------------------


def spectral_density(matvec: Matvec, n: int, *, steps: int = 60, probes: int = 8,
                     seed: int = 0, generator: torch.Generator | None = None,
                     grid: Tensor | Sequence[float] | None = None, sigma: float | None = None,
                     points: int = 1000, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> Density:
    """The eigenvalue density of ``A`` by stochastic Lanczos quadrature.

    For each of ``probes`` normalised Rademacher vectors v, ``min(steps, n)`` Lanczos steps
    (full reorthogonalisation, stopping at breakdown) give Gauss quadrature nodes θ_i (Ritz
    values) and weights w_i (squared first components of T's eigenvectors; they sum to 1).
    The density is the probe average of ``Σ_i w_i N(x; θ_i, sigma²)``, evaluated on ``grid``
    and normalised to integrate to 1 there (trapezoid rule).

    Args:
        steps: Lanczos steps per probe (quadrature nodes); exact for moments up to 2·steps−1.
        probes: number of random probe vectors (total cost ``probes · steps`` products).
        grid: where to evaluate the density, shape ``(G,)``; default ``points`` evenly spaced
            points from ``min θ − 5 sigma`` to ``max θ + 5 sigma``.
        sigma: Gaussian smoothing width; default 1% of the range of the nodes.

    Returns:
        :class:`Density` with ``nodes`` and ``weights`` of shape ``(probes, min(steps, n))``.
    """
    _check(n, dtype)
    if steps < 1 or probes < 1:
        raise ValueError(f"steps and probes must be at least 1, got {steps} and {probes}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    dev = _device(device)
    gen = _generator(seed, generator)
    m = min(steps, n)
    kw = {"dtype": dtype, "device": dev}
    nodes = torch.zeros(probes, m, **kw)
    weights = torch.zeros(probes, m, **kw)
    used = 0
    for p in range(probes):
        v = _random(n, gen, "rademacher", dtype, dev) / math.sqrt(n)
        kr = _Krylov(matvec, n, dtype, dev, None, capacity=m)
        kr.start(v)
        while kr.m < m and kr.next_q is not None:
            kr.step()
        used += kr.matvecs
        theta, S = kr.ritz()
        j = theta.numel()
        nodes[p, :j], nodes[p, j:] = theta, theta[-1]
        weights[p, :j] = S[0] ** 2
    grid_t, density, sigma = smooth(nodes, weights, grid=grid, sigma=sigma, points=points)
    return Density(nodes=nodes, weights=weights, grid=grid_t, density=density, sigma=sigma,
                   matvecs=used)


def smooth(nodes: Tensor, weights: Tensor, *, grid: Tensor | Sequence[float] | None = None,
           sigma: float | None = None, points: int = 1000) -> tuple[Tensor, Tensor, float]:
    """The probe average of ``Σ_i w_i N(x; θ_i, sigma²)`` on ``grid``, normalised to integrate
    to 1 there: ``(grid (G,), density (G,), sigma)``.

    ``nodes``, ``weights``: ``(probes, m)`` quadrature nodes and weights (of one or several
    runs: rows are averaged). Defaults as in :func:`spectral_density`: ``sigma`` 1 % of the
    nodes' range, ``grid`` ``points`` even steps from ``min θ − 5 sigma`` to ``max θ + 5
    sigma``.
    """
    kw = {"dtype": nodes.dtype, "device": nodes.device}
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        span = hi - lo
        sigma = 0.01 * (span if span > 0 else max(abs(lo), abs(hi), 1.0))
    if grid is None:
        if points < 2:
            raise ValueError(f"points must be at least 2, got {points}")
        grid_t = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, points, **kw)
    else:
        grid_t = torch.as_tensor(grid).to(**kw).reshape(-1)
    z = (grid_t[:, None] - nodes.reshape(1, -1)) / sigma  # (G, probes · m)
    kernel = torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = kernel @ weights.reshape(-1) / nodes.shape[0]
    if grid_t.numel() > 1:
        area = float(torch.trapezoid(density, grid_t))
        if area > 0:
            density = density / area
    return grid_t, density, sigma


def moments(density: Density, p: int) -> float:
    """The probe average of ``Σ_i w_i θ_i^p``: an unbiased estimate of ``tr(A^p) / n``
    (exact per probe for ``p ≤ 2·steps − 1``)."""
    return float((density.weights * density.nodes**p).sum(-1).mean())
