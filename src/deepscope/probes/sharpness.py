"""ε-sharpness (Keskar et al., 2017, "On large-batch training for deep learning").

How much can the loss rise within a small box around the parameters?

    φ(ε) = 100 · (max_{δ ∈ C_ε} L(θ + δ) − L(θ)) / (1 + L(θ)),
    C_ε = { δ : |δ_i| ≤ ε (|θ_i| + 1) }.

The box is scaled per parameter by |θ_i| + 1, so large weights may move more. Keskar et al.
maximise with L-BFGS-B on the box; here the maximisation is projected gradient ascent with
sign steps (the steepest ascent direction for a box, i.e. an ∞-norm ball), a step size that
shrinks linearly, and random restarts from uniform points in the box. The box constraint is
enforced by clipping after every step, so δ never leaves C_ε, and the result is the best
loss seen — at least the loss at every starting point tried.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import grad_and_value

from ..params import Selection, check_mode
from .batches import Data, Loss, refuse_batch_norm, start


@dataclass
class Sharpness:
    """ε-sharpness and what produced it.

    Attributes:
        value: φ(ε) in percent.
        loss: L(θ).
        max_loss: the largest L(θ + δ) found in the box.
        delta: the maximising δ, shape ``(P,)`` (P: the selected parameters).
        eps: ε.
    """

    value: float
    loss: float
    max_loss: float
    delta: Tensor
    eps: float


def sharpness(model: nn.Module, loss_fn: Loss, batch: Data, eps: float = 1e-3, *,
              steps: int = 20, restarts: int = 2, seed: int = 0, params: Selection = None,
              mode: str = "eval") -> Sharpness:
    """Keskar et al.'s ε-sharpness of the loss on ``batch`` (any data of :mod:`.batches`) at θ.

    ``steps`` sign-gradient ascent steps from δ = 0 and from each of ``restarts`` uniform
    random points of the box; the step starts at half the box and shrinks linearly.
    ``params``: only the selected parameters move (a glob, names or a predicate,
    :func:`deepscope.params.select`), the box is theirs. ``mode``: ``"eval"`` (default) or
    ``"train"``, the model's own mode restored; batch norm in train mode is refused.
    """
    if eps < 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}")
    refuse_batch_norm(model, check_mode(mode))
    f, data, theta = start(model, loss_fn, batch, None, params, mode)
    gv = grad_and_value(f)

    def g_and_v(t: Tensor) -> tuple[Tensor, Tensor]:
        """∇L and L, accumulated batch by batch in one pass (memory of one batch's graph)."""
        g, v = torch.zeros_like(t), torch.zeros((), dtype=t.dtype, device=t.device)
        for b, w in data:
            gc, vc = gv(t, b)
            g, v = g + w * gc, v + w * vc
        return g, v

    box = eps * (theta.abs() + 1)
    base = float(g_and_v(theta)[1])
    gen = torch.Generator(device="cpu").manual_seed(seed)
    best, best_delta = base, torch.zeros_like(theta)
    starts = [torch.zeros_like(theta)] + [
        ((torch.rand(theta.shape, generator=gen, dtype=theta.dtype) * 2 - 1)
         .to(theta.device) * box) for _ in range(restarts)]
    for delta in starts:
        for k in range(steps + 1):
            g, value = g_and_v(theta + delta)
            if float(value) > best:
                best, best_delta = float(value), delta.clone()
            if k == steps:
                break
            step = 0.5 * (1 - k / steps) * box
            delta = torch.clamp(delta + step * torch.sign(g), -box, box)
    return Sharpness(value=100 * (best - base) / (1 + base), loss=base, max_loss=best,
                     delta=best_delta, eps=eps)
