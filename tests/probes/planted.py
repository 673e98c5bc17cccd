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


class PlantedRegression(nn.Module):
    """A regression model whose MSE has a planted critical point at θ = 0 with N > P samples.

    f(x; θ) = x · (√d ⊙ θ) + ½ Σ_j b_j θ_j²  for inputs x of shape (N, P). With inputs whose
    columns are orthonormal (XᵀX = I) and targets y ⊥ columns of X with s = Σ_i y_i > 0, the
    mean squared error L = mean((f − y)²) has ∇L(0) = −(2/N) √d ⊙ Xᵀy = 0 and the Hessian
    H(0) = (2/N) (diag(d) − s·diag(b)): diagonal, with any eigenvalues one chooses
    (:func:`planted_regression`). Away from 0, L is a quartic in θ with more critical points.
    """

    def __init__(self, d, b, theta0):
        super().__init__()
        self.register_buffer("sqrt_d", torch.as_tensor(d, dtype=torch.float64).sqrt())
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float64))
        self.theta = nn.Parameter(torch.as_tensor(theta0, dtype=torch.float64))

    def forward(self, x):
        return (x @ (self.sqrt_d * self.theta))[:, None] + 0.5 * (self.b * self.theta**2).sum()


def planted_regression(eigenvalues, n: int = 40, seed: int = 0, theta0=None):
    """``(model, (x, y))`` whose MSE Hessian at θ = 0 (a critical point) is diag(eigenvalues).

    ``n`` samples (more than P = len(eigenvalues)); θ starts at ``theta0`` (default 0).
    """
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    P = len(lam)
    g = torch.Generator().manual_seed(seed)
    x, _ = torch.linalg.qr(torch.randn(n, P, generator=g, dtype=torch.float64))  # XᵀX = I
    ones = torch.ones(n, dtype=torch.float64)
    y = ones - x @ (x.T @ ones)  # orthogonal to the columns of x
    s = y.sum()
    d = n / 2 * lam.clamp_min(0)
    b = n / (2 * s) * (-lam).clamp_min(0)
    start = torch.zeros(P, dtype=torch.float64) if theta0 is None else theta0
    return PlantedRegression(d, b, start), (x, y[:, None])
