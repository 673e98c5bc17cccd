"""Finding critical points: where the gradient (almost) vanishes.

A critical point is a θ with ∇L(θ) = 0; "reaching" one numerically means driving ‖∇L‖ below a
stated tolerance. Three phases, each optional, all members of an ensemble at once:

1. **Adam on φ = ‖∇L‖²** (``max_steps``). ∇φ = 2 H ∇L needs a Hessian-vector product, obtained
   by differentiating the gradient again ("double backprop"). φ is zero at critical points of
   every index, so it samples saddles as well as minima (Pennington & Bahri, 2017), but as a
   first-order method on an ill-conditioned φ it is slow.
2. **Saddle-free Newton descent on L** (``descent_steps``): δ = −(|H| + μ)⁻¹ ∇L in H's
   eigenbasis (Dauphin et al., 2014). Dividing by |λ| rather than λ moves *down* along
   negative curvature, and moves far along flat directions, so it crosses the wide, nearly flat
   regions where Adam crawls. It only descends, so it heads for minima.
3. **Newton on ∇L = 0** (``newton_steps``), converging quadratically to the nearby critical
   point whatever its index. ``newton="lm"``: Levenberg–Marquardt on ½‖∇L‖², whose Gauss–Newton
   matrix is H², so δ = −(H² + μ)⁻¹ H ∇L — plain Newton as μ → 0, a short gradient step on φ as
   μ grows; ``newton="pinv"``: the minimum-norm step −H⁺∇L with eigenvalues below
   ``pinv_rtol``·max|λ| left out (Newton-MR, Roosta et al., 2018) and a backtracking line search.

Phases 2 and 3 use dense Hessians (small models: :func:`~deepscope.probes.hessian.
ensemble_hessians`), one per step and active member, and then try a ladder of damping values
μ = (r·max|λ|)ᵖ, r in :data:`DAMPING_LADDER`, each costing one more loss or gradient
evaluation, and keep the best trial — the damping adapts per member and per step without
extra Hessians. Trial steps longer than ``max_step``·(1 + ‖θ‖) are skipped: in the flat
directions an undamped Newton step can be 10⁴ long, and there tanh units saturate, which
fakes ‖∇L‖ = 0. A member whose ‖∇L‖ falls below ``tol`` is frozen there.

Minimising φ can stall where ∇L is non-zero but lies in the near-null space of H ("gradient-
flat" points, Frye et al., 2019): :func:`gradient_flat_share` measures how much of ∇L lies
there, so such points are flagged rather than mixed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from ..params import get_thetas, set_theta
from .batches import Data, Loss, batches, theta_objective, twice_differentiable
from .hessian import ensemble_hessians

# Damping rungs r, relative to each member's largest |λ|, tried at every Newton-type step; 0 is
# the undamped step that gives quadratic convergence near a non-degenerate critical point.
DAMPING_LADDER = (0.0, 1e-8, 1e-6, 1e-4, 1e-2, 1.0)
NEWTON_METHODS = ("lm", "pinv")
PHASES = ("start", "adam", "descent", "newton")


@dataclass
class CriticalPoints:
    """The outcome per member (arrays of shape ``(M,)`` unless stated).

    Attributes:
        grad_norm: final ‖∇L‖₂.
        loss: final loss.
        steps: optimiser steps taken in all phases until convergence or the step limits.
        converged: ``grad_norm < tol``.
        theta: ``(M, P)`` float64, the final parameters (also written back into the models).
        phase_grad_norm: ``(M, 4)`` ‖∇L‖ at the start and after each phase (:data:`PHASES`:
            start, Adam on ‖∇L‖², saddle-free descent, Newton), to tell what each phase did.
        phase_steps: ``(M, 3)`` steps taken in each of the three phases.
        grad: ``(M, P)`` the final gradients ∇L.
    """

    grad_norm: np.ndarray
    loss: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    theta: Tensor
    phase_grad_norm: np.ndarray
    phase_steps: np.ndarray
    grad: Tensor


def _loss_and_grad(f, theta: Tensor, parts, create_graph: bool) -> tuple[Tensor, Tensor]:
    """Per-member losses ``(M,)`` and gradients ``(M, P)`` of the full-batch loss."""
    losses = sum(w * vmap(f, in_dims=(0, None))(theta, b) for b, w in parts)
    (g,) = torch.autograd.grad(losses.sum(), theta, create_graph=create_graph)
    return losses, g


def _eval(f, theta: Tensor, parts) -> tuple[Tensor, Tensor]:
    """Losses ``(M,)`` and gradients ``(M, P)`` at ``theta`` without keeping a graph."""
    losses, g = _loss_and_grad(f, theta.detach().requires_grad_(True), parts, False)
    return losses.detach(), g


def _losses(f, theta: Tensor, parts) -> Tensor:
    with torch.no_grad():
        return sum(w * vmap(f, in_dims=(0, None))(theta, b) for b, w in parts)


def find_critical_point(models: nn.Module | Sequence[nn.Module], loss_fn: Loss, batch: Data,
                        *, tol: float = 1e-4, max_steps: int = 2000, lr: float = 1e-3,
                        descent_steps: int = 0, newton_steps: int = 0, newton: str = "lm",
                        pinv_rtol: float = 1e-10, max_step: float = 0.5,
                        dtype: torch.dtype = torch.float64) -> CriticalPoints:
    """Drive ‖∇L‖ below ``tol`` for every member (the three phases of the module docstring).

    Args:
        models: one model or members of one architecture; they receive the final θ.
        loss_fn, batch: the loss and the data (one batch or a stream, :mod:`.batches`),
            usually the full training set.
        tol: target gradient norm; members below it are frozen.
        max_steps: Adam steps on ‖∇L‖² (learning rate ``lr``).
        descent_steps: saddle-free Newton steps on L (dense Hessians: small models only).
        newton_steps: Newton steps on ∇L = 0 afterwards (dense Hessians), by ``newton``:
            ``"lm"`` (Levenberg–Marquardt on ½‖∇L‖²) or ``"pinv"`` (pseudo-inverse with
            eigenvalues below ``pinv_rtol · max|λ|`` left out, backtracking line search).
        max_step: trial steps longer than ``max_step · (1 + ‖θ‖)`` are not taken.
        dtype: arithmetic precision (float64 by default: ‖∇L‖ of 1e-8 is below float32 noise).
    """
    if newton not in NEWTON_METHODS:
        raise ValueError(f"unknown newton method {newton!r}; choose from {NEWTON_METHODS}")
    models = [models] if isinstance(models, nn.Module) else list(models)
    stacked = get_thetas(models).to(dtype)
    parts = batches(batch, dtype)  # read once; every loss or gradient below is one pass
    f = twice_differentiable(theta_objective(models[0], loss_fn, parts))
    M = stacked.shape[0]
    device = stacked.device
    phase_steps = torch.zeros(M, 3, dtype=torch.long, device=device)
    phase_gn = torch.zeros(M, 4, dtype=dtype, device=device)
    _, g = _eval(f, stacked, parts)
    phase_gn[:, 0] = g.norm(dim=1)
    done = phase_gn[:, 0] < tol

    theta = _adam_phase(f, parts, stacked, done, phase_steps[:, 0], lr=lr, steps=max_steps,
                        tol=tol)
    _, g = _eval(f, theta, parts)
    phase_gn[:, 1] = g.norm(dim=1)
    done |= phase_gn[:, 1] < tol

    # Phases 2 and 3: one Hessian per step and active member, then a ladder of damped steps.
    for phase, n_steps in ((1, descent_steps), (2, newton_steps)):
        for _ in range(n_steps):
            active = (~done).nonzero()[:, 0]
            if not len(active):
                break
            th, ga = theta[active], g[active]
            H = ensemble_hessians(models[:1] * len(active), loss_fn, parts, dtype=dtype,
                                  theta=th)
            lam, V = torch.linalg.eigh(H)
            gk = (V.mT @ ga[..., None])[..., 0]  # ∇L in H's eigenbasis, (A, P)
            if phase == 1:
                th = _descent_step(f, parts, th, lam, V, gk, max_step)
            elif newton == "lm":
                th = _lm_step(f, parts, th, ga, lam, V, gk, max_step)
            else:
                th = _pinv_step(f, parts, th, ga, lam, V, gk, pinv_rtol)
            theta = theta.index_copy(0, active, th)
            _, g_new = _eval(f, th, parts)
            g = g.index_copy(0, active, g_new)
            phase_steps[active, phase] += 1
            done = done.index_copy(0, active, g_new.norm(dim=1) < tol)
        phase_gn[:, phase + 1] = g.norm(dim=1)

    losses, g = _eval(f, theta, parts)
    gnorm = g.norm(dim=1)
    for m, model in enumerate(models):
        set_theta(model, theta[m].to(next(model.parameters()).dtype))
    return CriticalPoints(grad_norm=gnorm.cpu().numpy(), loss=losses.cpu().numpy(),
                          steps=phase_steps.sum(1).cpu().numpy(),
                          converged=(gnorm < tol).cpu().numpy(), theta=theta,
                          phase_grad_norm=phase_gn.cpu().numpy(),
                          phase_steps=phase_steps.cpu().numpy(), grad=g)


def _adam_phase(f, parts, theta: Tensor, done: Tensor, counts: Tensor, *, lr: float,
                steps: int, tol: float) -> Tensor:
    """Phase 1: Adam on φ = ‖∇L‖² from ``theta`` ``(M, P)``, every member at once; converged
    members are frozen. Updates ``done`` ``(M,)`` and the step ``counts`` ``(M,)`` in place;
    returns the final θ ``(M, P)``, detached."""
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        _, g = _loss_and_grad(f, theta, parts, create_graph=True)
        done |= g.detach().norm(dim=1) < tol
        if bool(done.all()):
            break
        opt.zero_grad(set_to_none=True)
        (g.pow(2).sum(1) * ~done).sum().backward()
        keep = theta.detach().clone()
        opt.step()
        with torch.no_grad():
            theta.copy_(torch.where(done[:, None], keep, theta))
        counts += ~done
    return theta.detach()


def _too_long(delta: Tensor, theta: Tensor, max_step: float) -> Tensor:
    """``(A,)``: steps longer than ``max_step · (1 + ‖θ‖)`` (saturating, untrustworthy)."""
    return delta.norm(dim=1) > max_step * (1 + theta.norm(dim=1))


def _descent_step(f, parts, theta: Tensor, lam: Tensor, V: Tensor, gk: Tensor,
                  max_step: float) -> Tensor:
    """One saddle-free Newton step per member, δ = −V (|λ| + r·max|λ|)⁻¹ Vᵀ∇L: the trial
    (over the damping ladder and step lengths 1 and 0.3) with the lowest loss, if lower."""
    scale = lam.abs().amax(1, keepdim=True)
    best_loss, best = _losses(f, theta, parts), theta
    for r in DAMPING_LADDER:
        delta = -(V @ (gk / (lam.abs() + max(r, 1e-12) * scale))[..., None])[..., 0]
        for alpha in (1.0, 0.3):
            trial = theta + alpha * delta
            loss = _losses(f, trial, parts)
            take = torch.isfinite(loss) & (loss < best_loss) & ~_too_long(alpha * delta, theta,
                                                                          max_step)
            best_loss = torch.where(take, loss, best_loss)
            best = torch.where(take[:, None], trial, best)
    return best


def _lm_step(f, parts, theta: Tensor, g: Tensor, lam: Tensor, V: Tensor, gk: Tensor,
             max_step: float) -> Tensor:
    """One Levenberg–Marquardt step on ½‖∇L‖² per member, δ = −V λ/(λ² + (r·max|λ|)²) Vᵀ∇L:
    the rung of the damping ladder with the smallest ‖∇L‖ after the step, if smaller."""
    scale = lam.abs().amax(1, keepdim=True)
    tiny = torch.finfo(lam.dtype).eps * scale  # r = 0: pseudo-inverse at rounding level
    best_norm, best = g.norm(dim=1), theta
    for r in DAMPING_LADDER:
        if r == 0:
            coef = torch.where(lam.abs() > tiny, 1 / torch.where(lam.abs() > tiny, lam, 1.0),
                               0.0)
        else:
            coef = lam / (lam**2 + (r * scale) ** 2)
        delta = -(V @ (coef * gk)[..., None])[..., 0]
        trial = theta + delta
        _, g_new = _eval(f, trial, parts)
        norm = g_new.norm(dim=1)
        take = torch.isfinite(norm) & (norm < best_norm) & ~_too_long(delta, theta, max_step)
        best_norm = torch.where(take, norm, best_norm)
        best = torch.where(take[:, None], trial, best)
    return best


def _pinv_step(f, parts, theta: Tensor, g: Tensor, lam: Tensor, V: Tensor, gk: Tensor,
               pinv_rtol: float) -> Tensor:
    """One Newton-MR step per member: δ = −H⁺∇L over eigenvalues above ``pinv_rtol``·max|λ|,
    with the largest step length 2⁻ⁱ that lowers ‖∇L‖ (no step if none does)."""
    keep = lam.abs() > pinv_rtol * lam.abs().amax(1, keepdim=True)
    inv = torch.where(keep, 1 / torch.where(keep, lam, torch.ones_like(lam)), 0.0)
    delta = -(V @ (inv * gk)[..., None])[..., 0]
    step = torch.zeros(len(theta), dtype=theta.dtype, device=theta.device)
    best = g.norm(dim=1)
    for alpha in (2.0**-i for i in range(12)):  # largest step that lowers ‖∇L‖
        _, g_new = _eval(f, theta + alpha * delta, parts)
        n_new = g_new.norm(dim=1)
        take = (step == 0) & (n_new < best) & torch.isfinite(n_new)
        step = torch.where(take, torch.full_like(step, alpha), step)
        best = torch.where(take, n_new, best)
        if bool((step > 0).all()):
            break
    return theta + step[:, None] * delta


def gradient_flat_share(H: Tensor, g: Tensor, tau: Tensor | float) -> Tensor:
    """Share of ‖g‖² in the eigenvectors of H with |λ| ≤ τ: ``(M,)`` for H ``(M, P, P)``.

    Near 1, the point is "gradient-flat" (Frye et al., 2019): the gradient is not small, but
    the curvature along it vanishes, so minimising ‖∇L‖² stalls there without reaching a
    critical point.
    """
    lam, V = torch.linalg.eigh(H)
    coeff = (V.transpose(-1, -2) @ g[..., None])[..., 0] ** 2  # (M, P)
    tau = torch.as_tensor(tau, dtype=lam.dtype, device=lam.device).reshape(-1, 1)
    flat = (lam.abs() <= tau).to(coeff.dtype)
    return (coeff * flat).sum(-1) / coeff.sum(-1).clamp_min(torch.finfo(coeff.dtype).tiny)
