"""Finding critical points: where the gradient (almost) vanishes.

Gradient descent on L slows down near saddles but is attracted to minima, so to sample critical
points of every index one minimises the squared gradient norm instead,

    φ(θ) = ‖∇L(θ)‖²,   ∇φ = 2 H ∇L,

whose zeros are all critical points of L (Pennington & Bahri, 2017; Frye et al., 2019). ∇φ
needs a Hessian-vector product, obtained by differentiating the gradient again ("double
backprop"). Two phases:

1. Adam on φ until ‖∇L‖ < ``tol`` or ``max_steps``;
2. optionally, for small models, Newton's method on ∇L = 0: δ = −H⁺∇L with the pseudo-inverse
   H⁺ (the minimum-norm least-squares step, "Newton-MR", Roosta et al., 2018), and a
   backtracking line search on ‖∇L‖. Near a non-degenerate critical point it converges
   quadratically, whatever the point's index.

Both phases run all members of an ensemble at once: the members' losses are independent, so
one backward pass of Σ_m φ_m gives every member its own ∇φ_m, and the Hessians of the finish
come from :func:`~deepscope.probes.hessian.ensemble_hessians`. A member that reaches the
tolerance is frozen there. Minimising φ can stall where ∇L is non-zero but lies in the
near-null space of H ("gradient-flat" points, Frye et al., 2019): :func:`gradient_flat_share`
measures how much of ∇L lies there, so such points are flagged rather than mixed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from ..params import set_theta
from .gradient import Batch, LossFn, chunks
from .hessian import _cast, _member_loss, _stacked_theta, ensemble_hessians


@dataclass
class CriticalPoints:
    """The outcome per member (arrays of shape ``(M,)``; ``theta`` is ``(M, P)`` float64).

    Attributes:
        grad_norm: final ‖∇L‖₂.
        loss: final loss.
        steps: optimiser steps taken (Adam plus Newton) until convergence or the
            step limit.
        converged: ``grad_norm < tol``.
        theta: the final parameters (also written back into the models).
    """

    grad_norm: np.ndarray
    loss: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    theta: Tensor


def _loss_and_grad(f, theta: Tensor, parts, create_graph: bool) -> tuple[Tensor, Tensor]:
    """Per-member losses ``(M,)`` and gradients ``(M, P)`` of the full-batch loss."""
    losses = sum(w * vmap(f, in_dims=(0, None, None))(theta, x, y) for x, y, w in parts)
    (g,) = torch.autograd.grad(losses.sum(), theta, create_graph=create_graph)
    return losses, g


def find_critical_point(
    models: nn.Module | Sequence[nn.Module],
    loss_fn: LossFn,
    batch: Batch,
    *,
    tol: float = 1e-4,
    max_steps: int = 2000,
    lr: float = 1e-3,
    newton_steps: int = 0,
    pinv_rtol: float = 1e-10,
    dtype: torch.dtype = torch.float64,
) -> CriticalPoints:
    """Drive ‖∇L‖ below ``tol`` for every member by minimising ‖∇L‖² (see module docstring).

    Args:
        models: one model or members of one architecture; they receive the final θ.
        loss_fn, batch: the loss and the data (one ``(x, y)`` or chunks), usually the full
            training set.
        tol: target gradient norm.
        max_steps: Adam steps on ‖∇L‖² (lr ``lr``).
        newton_steps: Newton steps afterwards (dense Hessians: small models only).
        pinv_rtol: eigenvalues below ``pinv_rtol · max|λ|`` are left out of the Newton step.
        dtype: arithmetic precision (float64 by default: ‖∇L‖ of 1e-8 is below float32 noise).
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    stacked, like = _stacked_theta(models, dtype)
    f = _member_loss(models[0], loss_fn, like)
    parts = [(*_cast(x, y, dtype), w) for x, y, w in chunks(batch)]
    M = stacked.shape[0]
    theta = stacked.clone().requires_grad_(True)
    steps = torch.zeros(M, dtype=torch.long, device=theta.device)
    done = torch.zeros(M, dtype=torch.bool, device=theta.device)
    opt = torch.optim.Adam([theta], lr=lr)

    # Phase 1: Adam on φ = ‖∇L‖², every member at once; converged members are frozen.
    for _ in range(max_steps):
        _, g = _loss_and_grad(f, theta, parts, create_graph=True)
        gnorm = g.detach().norm(dim=1)
        done |= gnorm < tol
        if bool(done.all()):
            break
        opt.zero_grad(set_to_none=True)
        (g.pow(2).sum(1) * ~done).sum().backward()
        keep = theta.detach().clone()
        opt.step()
        with torch.no_grad():
            theta.copy_(torch.where(done[:, None], keep, theta))
        steps += ~done

    # Phase 2: Newton's method on ∇L = 0 with the pseudo-inverse (Newton-MR: the minimum-norm
    # least-squares step, well defined where H is singular) and a backtracking line search
    # on ‖∇L‖, all members at once.
    theta = theta.detach()
    for _ in range(newton_steps):
        _, g = _loss_and_grad(f, theta.clone().requires_grad_(True), parts, False)
        gnorm = g.norm(dim=1)
        done |= gnorm < tol
        if bool(done.all()):
            break
        H = ensemble_hessians(models, loss_fn, batch, dtype=dtype, theta=theta)
        lam, V = torch.linalg.eigh(H)
        keep = lam.abs() > pinv_rtol * lam.abs().amax(1, keepdim=True)
        inv = torch.where(keep, 1 / torch.where(keep, lam, torch.ones_like(lam)), 0.0)
        delta = -(V @ (inv[..., None] * (V.mT @ g[..., None])))[..., 0]
        step = torch.zeros(M, dtype=dtype, device=theta.device)
        best = gnorm.clone()
        for alpha in (2.0**-i for i in range(12)):  # largest step that lowers ‖∇L‖
            trial = (theta + alpha * delta).requires_grad_(True)
            _, g_new = _loss_and_grad(f, trial, parts, False)
            n_new = g_new.norm(dim=1)
            take = (step == 0) & (n_new < best) & ~done & torch.isfinite(n_new)
            step = torch.where(take, torch.full_like(step, alpha), step)
            best = torch.where(take, n_new, best)
            if bool((step > 0).all()):
                break
        theta = theta + step[:, None] * delta
        steps += ~done

    theta = theta.detach().requires_grad_(True)
    losses, g = _loss_and_grad(f, theta, parts, create_graph=False)
    gnorm = g.norm(dim=1)
    for m, model in enumerate(models):
        set_theta(model, theta[m].detach().to(next(model.parameters()).dtype))
    return CriticalPoints(grad_norm=gnorm.cpu().numpy(), loss=losses.detach().cpu().numpy(),
                          steps=steps.cpu().numpy(), converged=(gnorm < tol).cpu().numpy(),
                          theta=theta.detach())


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
