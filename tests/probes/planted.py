"""Tiny models whose loss, gradient and Hessian are known in closed form (shared by tests)."""

from __future__ import annotations

import torch
from torch import nn


class Planted(nn.Module):
    """L(θ) = Σ_i c_i θ_i² (with the loss ``value`` below): Hessian diag(2c), known maximum
    over any box, a minimum or a saddle depending on the signs of c."""

    def __init__(self, coef, theta0):
        super().__init__()
        self.coef = torch.as_tensor(coef, dtype=torch.float64)
        self.theta = nn.Parameter(torch.as_tensor(theta0, dtype=torch.float64))

    def forward(self, x):
        return (self.coef * self.theta**2).sum() + 0 * x.sum()


def value(out, y):
    """The 'loss' of a Planted model: its output itself."""
    return out
