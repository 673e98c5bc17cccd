"""Sensitivity: how much the output moves when the input moves.

Novak et al. (2018, "Sensitivity and generalization in neural networks") measure the
Frobenius norm of the input–output Jacobian, ‖∂f(x)/∂x‖_F, per test sample, with f the
network's softmax output (or its logits), and find it correlates with generalisation. It is a
derivative of the **model output** with respect to the **input** — not of the loss, and not
with respect to the parameters (the original report measured the parameter gradient of the
last mini-batch instead).

Computation: for a chunk of B samples, one forward pass and its vector-Jacobian product
function (``torch.func.vjp``), then the C output directions (one-hot cotangents) pulled back
all at once with ``vmap``: every sample's full C × D Jacobian from one forward and one batched
backward, instead of B per-sample passes or C sequential backward passes. Samples do not
interact in eval mode, so row n of ∂(Σ_n f(x_n))/∂x is exactly sample n's Jacobian.

When the network starts with a Linear layer that narrows its input (an MLP on images: 784 → 256),
the last and most expensive pull-back, through W₁, is not needed: with a₁ = W₁x + b the first
pre-activation and G = ∂f/∂a₁ (C × H per sample), J = G W₁ and

    ‖J‖²_F = tr(G W₁ W₁ᵀ Gᵀ) = Σ_c g_c K g_cᵀ,   K = W₁ W₁ᵀ (H × H, computed once),

which costs C·H² per sample instead of C·H·D. Measured on the 784-256-256-10 MLP and 10 000
MNIST images (one thread): 0.36 s instead of 0.73 s, equal to 4e-7 relative in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import vjp, vmap

from .batches import Data, batches, inputs

OUTPUTS = ("softmax", "logits")


def _head(model: nn.Module, output: str):
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "softmax":
        return lambda x: torch.softmax(model(x), dim=-1)
    return model


def input_jacobian(model: nn.Module, x: Tensor, output: str = "softmax") -> Tensor:
    """Per-sample Jacobians ∂f(x_n)/∂x_n: shape ``(N, C, *x.shape[1:])``."""
    f = _head(model, output)
    out, pull = vjp(f, x)
    C = out.shape[-1]
    basis = torch.eye(C, dtype=out.dtype, device=out.device)[:, None, :].expand(C, *out.shape)
    (J,) = vmap(pull)(basis)  # (C, N, *x.shape[1:])
    return J.movedim(0, 1)


def leading_linear(model: nn.Module, x: Tensor) -> tuple[nn.Linear, nn.Module] | None:
    """``(W₁ layer, rest of the model)`` when ``model`` is ``[Flatten,] Linear, ...`` on
    inputs it flattens and the Linear narrows them — where the Gram route pays — else None."""
    if not isinstance(model, nn.Sequential) or len(model) < 2:
        return None
    mods = list(model)
    flat = isinstance(mods[0], nn.Flatten)
    if flat and (mods[0].start_dim, mods[0].end_dim) != (1, -1):
        return None
    if not flat and x.dim() != 2:  # a Linear on the last axis of a >2-d input is no matrix
        return None
    first = mods[int(flat)]
    if not isinstance(first, nn.Linear) or first.out_features >= first.in_features:
        return None
    return first, nn.Sequential(*mods[int(flat) + 1 :])


def sensitivity(model: nn.Module, x: Tensor | Data, output: str = "softmax",
                chunk: int = 1000) -> Tensor:
    """‖∂f(x_n)/∂x_n‖_F for every sample: shape ``(N,)`` (Novak et al., 2018).

    Args:
        model: evaluated as it is (call ``model.eval()`` first if it has dropout/batch norm).
        x: inputs ``(N, *shape)``, or data of :mod:`.batches` whose batches are inputs or
            ``(x, y, ...)`` tuples (a ``DataLoader``: one pass, in order); the model input
            must be one tensor, so dict batches do not apply.
        output: ``"softmax"`` (probabilities, the default, as in Novak et al.) or ``"logits"``.
        chunk: samples per vectorised pass (memory ≈ chunk × C × input size).
    """
    if not isinstance(x, Tensor):
        return torch.cat([sensitivity(model, inputs(b), output, chunk) for b, _ in batches(x)])
    split = leading_linear(model, x)
    if split is not None:
        first, rest = split
        W = first.weight.detach()
        K = W @ W.T
    norms = []
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk]
        if split is None:
            J = input_jacobian(model, xb, output)
            norms.append(J.detach().flatten(1).norm(dim=1))
            continue
        with torch.no_grad():
            a1 = first(xb.flatten(1))
        G = input_jacobian(rest, a1, output).detach()  # (B, C, H)
        sq = ((G @ K) * G).sum((1, 2))
        norms.append(sq.clamp_min(0).sqrt())  # ≥ 0 in exact arithmetic
    return torch.cat(norms)
