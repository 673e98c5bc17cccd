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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import vjp, vmap

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


def sensitivity(model: nn.Module, x: Tensor, output: str = "softmax",
                chunk: int = 1000) -> Tensor:
    """‖∂f(x_n)/∂x_n‖_F for every sample: shape ``(N,)`` (Novak et al., 2018).

    Args:
        model: evaluated as it is (call ``model.eval()`` first if it has dropout/batch norm).
        x: inputs ``(N, *shape)``.
        output: ``"softmax"`` (probabilities, the default, as in Novak et al.) or ``"logits"``.
        chunk: samples per vectorised pass (memory ≈ chunk × C × input size).
    """
    norms = []
    for i in range(0, x.shape[0], chunk):
        J = input_jacobian(model, x[i : i + chunk], output)
        norms.append(J.detach().flatten(1).norm(dim=1))
    return torch.cat(norms)
