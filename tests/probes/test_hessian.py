"""Curvature probes against exact answers on tiny float64 problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from planted import Planted, planted_regression, value
from torch import nn

import deepscope as ds
from deepscope.params import get_theta, objective
from deepscope.probes.critical import find_critical_point, gradient_flat_share
from deepscope.probes.gradient import grad_norm
from deepscope.probes.hessian import (
    curvature_signature,
    ensemble_hessians,
    hessian,
    hessian_eigenvalues,
    hessian_trace,
    hvp,
    minimal_ratio,
    mse,
    spectral_density,
)


def _regression(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g, dtype=torch.float64)
    return x, torch.sin(4 * x)


def _mlp(seed=0):
    return ds.mlp(1, 1, depth=2, width=5, activation="tanh", seed=seed).double()


def test_hessian_matches_autograd_functional():
    model, batch = _mlp(), _regression()
    f, theta = objective(model, F.mse_loss, batch)
    exact = torch.autograd.functional.hessian(f, theta)
    torch.testing.assert_close(hessian(model, F.mse_loss, batch, dtype=torch.float64), exact,
                               rtol=1e-10, atol=1e-12)


def test_hessian_matches_least_squares_closed_form():
    """L = mean((Xw + b − y)²) has H = (2/N) [X 1]ᵀ [X 1] (weights first, then bias)."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randn(30, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1).double()
    A = torch.cat([X, torch.ones(30, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(hessian(model, F.mse_loss, (X, y)), 2 / 30 * A.T @ A)


def test_chunked_hessian_equals_full_batch_and_ensemble_equals_members():
    x, y = _regression(48)
    model = _mlp()
    full = hessian(model, F.mse_loss, (x, y))
    parts = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    torch.testing.assert_close(hessian(model, F.mse_loss, parts), full)
    members = [_mlp(s) for s in range(3)]
    H = ensemble_hessians(members, F.mse_loss, parts)
    for m, member in enumerate(members):
        torch.testing.assert_close(H[m], hessian(member, F.mse_loss, (x, y)))


# fwd-rev with F.mse_loss is absent on purpose: torch 2.13 has no forward-mode rule for its
# backward (deepscope's `mse` is the same loss, written so that both methods work).
@pytest.mark.parametrize(("method", "loss_fn"), [("fwd-rev", mse), ("rev-rev", mse),
                                                 ("auto", mse), ("rev-rev", F.mse_loss),
                                                 ("auto", F.mse_loss)])
def test_hvp_equals_dense_product(method, loss_fn):
    model, batch = _mlp(), _regression()
    H = hessian(model, loss_fn, batch)
    v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(hvp(model, loss_fn, batch, method=method, dtype=torch.float64)(v),
                               H @ v)


def test_lanczos_eigenvalues_match_eigvalsh():
    model, batch = _mlp(), _regression()
    exact = torch.linalg.eigvalsh(hessian(model, F.mse_loss, batch))
    top = hessian_eigenvalues(model, F.mse_loss, batch, k=5, which="largest", dtype=torch.float64)
    bottom = hessian_eigenvalues(model, F.mse_loss, batch, k=5, which="smallest",
                                 dtype=torch.float64)
    torch.testing.assert_close(torch.as_tensor(top.values), exact.flip(0)[:5], rtol=1e-6,
                               atol=1e-9)
    torch.testing.assert_close(torch.as_tensor(bottom.values), exact[:5], rtol=1e-6, atol=1e-9)


def test_trace_and_density_agree_with_the_exact_spectrum():
    model, batch = _mlp(), _regression()
    lam = torch.linalg.eigvalsh(hessian(model, F.mse_loss, batch))
    est = hessian_trace(model, F.mse_loss, batch, samples=300, estimator="hutchinson",
                        dtype=torch.float64)
    assert abs(est.estimate - lam.sum().item()) < 3 * est.std_error
    dens = spectral_density(model, F.mse_loss, batch, steps=lam.numel(), probes=4,
                            dtype=torch.float64)
    np.testing.assert_allclose(np.asarray(dens.weights).sum(-1), 1.0, atol=1e-10)


def test_curvature_follows_the_models_dtype_unless_told():
    """A float32 model gives float32 work that agrees with float64; ``dtype=`` overrides."""
    x, y = _regression()
    model64 = _mlp()
    model32 = _mlp().float()
    batch32 = (x.float(), y.float())
    v = torch.randn(ds.count_params(model32), generator=torch.Generator().manual_seed(1))
    Hv32 = hvp(model32, F.mse_loss, batch32)(v)
    Hv64 = hvp(model64, F.mse_loss, (x, y))(v.double())
    assert Hv32.dtype == torch.float32 and Hv64.dtype == torch.float64
    torch.testing.assert_close(Hv32.double(), Hv64, rtol=1e-4, atol=1e-5)
    assert hessian(model32, F.mse_loss, batch32).dtype == torch.float32

    top32 = hessian_eigenvalues(model32, F.mse_loss, batch32, k=3)
    top64 = hessian_eigenvalues(model64, F.mse_loss, (x, y), k=3)
    assert top32.values.dtype == torch.float32 and top32.vectors.dtype == torch.float32
    np.testing.assert_allclose(top32.values.double(), top64.values, rtol=1e-4)
    over = hessian_eigenvalues(model32, F.mse_loss, batch32, k=3, dtype=torch.float64)
    assert over.values.dtype == torch.float64
    np.testing.assert_allclose(over.values, top64.values, rtol=1e-9)

    tr32 = hessian_trace(model32, F.mse_loss, batch32, samples=40, estimator="hutchinson")
    tr64 = hessian_trace(model32, F.mse_loss, batch32, samples=40, estimator="hutchinson",
                         dtype=torch.float64)
    assert tr32.estimate == pytest.approx(tr64.estimate, rel=1e-4)
    d32 = spectral_density(model32, F.mse_loss, batch32, steps=10, probes=2)
    d64 = spectral_density(model32, F.mse_loss, batch32, steps=10, probes=2, dtype=torch.float64)
    assert d32.nodes.dtype == torch.float32 and d64.nodes.dtype == torch.float64


def test_minimal_ratio_reads_a_planted_saddle_and_a_convex_minimum():
    x = torch.zeros(1, 1, dtype=torch.float64)
    saddle = Planted([1.0, 2.0, -1.0, -3.0], [0.0, 0.0, 0.0, 0.0])
    r = minimal_ratio(saddle, value, (x, x))
    assert r.ratio[0] == 0.5 and sorted(r.eigenvalues[0]) == [-6.0, -2.0, 2.0, 4.0]
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lin = nn.Linear(3, 1).double()
    assert minimal_ratio(lin, F.mse_loss, (X, X[:, :1] * 2)).ratio[0] == 1.0


def test_minimal_ratio_counts_near_zero_eigenvalues_as_not_positive():
    x = torch.zeros(1, 1, dtype=torch.float64)
    flat = Planted([1.0, 1e-12, 0.0], [0.0, 0.0, 0.0])
    r = minimal_ratio(flat, value, (x, x))
    assert r.ratio_zero[0] == pytest.approx(2 / 3)  # the 2e-12 eigenvalue is "positive" at τ=0
    assert r.ratio[0] == pytest.approx(1 / 3) and r.tau[0] == pytest.approx(2e-6)


class DoubleWell(nn.Module):
    """L = (θ₀² − 1)² + θ₁²: critical points (−1, 0), (0, 0) (a saddle) and (1, 0)."""

    def __init__(self, theta0):
        super().__init__()
        self.theta = nn.Parameter(torch.as_tensor(theta0, dtype=torch.float64))

    def forward(self, x):
        t = self.theta
        return (t[0] ** 2 - 1) ** 2 + t[1] ** 2 + 0 * x.sum()


@pytest.mark.parametrize("newton_steps", [0, 20])
def test_find_critical_point_reaches_known_critical_points(newton_steps):
    x = torch.zeros(1, 1, dtype=torch.float64)
    starts = [[0.3, 0.5], [-0.8, 0.1], [1.4, -0.3], [0.05, 0.2]]
    members = [DoubleWell(s) for s in starts]
    cp = find_critical_point(members, value, (x, x), tol=1e-6, max_steps=3000, lr=1e-2,
                             newton_steps=newton_steps)
    assert cp.converged.all() and (cp.grad_norm < 1e-6).all()
    for m in members:
        t = get_theta(m).numpy()
        assert min(np.abs(t - c).max() for c in ([-1, 0], [0, 0], [1, 0])) < 1e-5
        assert grad_norm(m, value, (x, x)) < 1e-6


def test_gradient_flat_share():
    H = torch.diag(torch.tensor([2.0, 0.0], dtype=torch.float64))[None]
    g = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # all of it in the null space
    assert gradient_flat_share(H, g, 1e-8).item() == pytest.approx(1.0)
    assert gradient_flat_share(H, torch.tensor([[1.0, 0.0]], dtype=torch.float64),
                               1e-8).item() == pytest.approx(0.0)


REL_TOLS = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


@pytest.mark.parametrize("planted", [[3.0, 1.0, 0.2, 0.05, 0.01],        # a minimum
                                     [3.0, 1.0, -0.2, 0.05, -0.01],      # index 2
                                     [-3.0, 1.0, 0.2, -0.05, 0.01, 0.5]])  # index 2, P = 6
def test_planted_signature_with_more_samples_than_parameters_at_every_tau(planted):
    """The MSE Hessian of a planted critical point (N = 40 > P) read by the study's route —
    batched dense Hessian, eigvalsh, counts per τ — classifies it correctly at every τ."""
    model, batch = planted_regression(planted)
    assert grad_norm(model, F.mse_loss, batch) < 1e-14  # θ = 0 is a critical point
    H = ensemble_hessians([model], F.mse_loss, batch)
    lam = torch.linalg.eigvalsh(H)
    np.testing.assert_allclose(lam[0].numpy(), sorted(planted), atol=1e-12)
    sig = curvature_signature(lam.numpy(), REL_TOLS)
    n_neg = sum(v < 0 for v in planted)
    assert (sig.negative == n_neg).all() and (sig.null == 0).all()
    assert (sig.positive == len(planted) - n_neg).all()
    np.testing.assert_allclose(sig.ratio_resolved, 1 - n_neg / len(planted))
    np.testing.assert_allclose(sig.tau[0], np.asarray(REL_TOLS) * max(map(abs, planted)))
    mr = minimal_ratio(model, F.mse_loss, batch, rel_tol=1e-6)
    assert mr.ratio_resolved[0] == pytest.approx(1 - n_neg / len(planted))


def test_signature_counts_tiny_eigenvalues_as_null_only_above_their_size():
    lam = np.array([[-1e-7, 1e-12, 0.5, 1.0]])
    sig = curvature_signature(lam, (1e-13, 1e-9, 1e-6))
    np.testing.assert_array_equal(sig.negative, [[1, 1, 0]])  # −1e-7 is null once τ > 1e-7
    np.testing.assert_array_equal(sig.null, [[0, 1, 2]])
    np.testing.assert_array_equal(sig.ratio_resolved, [[3 / 4, 2 / 3, 1.0]])


@pytest.mark.parametrize("newton", ["lm", "pinv"])
def test_newton_phase_converges_quadratically_to_a_planted_saddle(newton):
    """From 1e-2 away, Newton on ∇L = 0 reaches the planted index-1 saddle at θ = 0."""
    start = 1e-2 * torch.randn(5, generator=torch.Generator().manual_seed(2),
                               dtype=torch.float64)
    model, batch = planted_regression([2.0, 1.0, -0.5, 0.3, 0.1], theta0=start)
    cp = find_critical_point(model, F.mse_loss, batch, tol=1e-12, max_steps=0,
                             newton_steps=12, newton=newton)
    assert cp.converged.all() and cp.grad_norm[0] < 1e-12
    assert cp.phase_steps[0, 2] <= 8  # quadratic convergence: a handful of steps
    assert cp.phase_grad_norm[0, 0] > 1e-3 and cp.phase_grad_norm[0, 3] < 1e-12
    assert get_theta(model).abs().max() < 1e-10  # it is the planted point, written back


def test_saddle_free_descent_leaves_the_saddle_for_a_minimum():
    """From the same start, the descent phase goes down the negative direction instead, and
    the Newton phase then finishes at a minimum (no negative eigenvalue)."""
    start = 1e-2 * torch.randn(5, generator=torch.Generator().manual_seed(2),
                               dtype=torch.float64)
    model, batch = planted_regression([2.0, 1.0, -0.5, 0.3, 0.1], theta0=start)
    loss0 = F.mse_loss(model(batch[0]), batch[1]).item()
    cp = find_critical_point(model, F.mse_loss, batch, tol=1e-10, max_steps=0,
                             descent_steps=40, newton_steps=20)
    assert cp.converged.all() and cp.loss[0] < loss0
    lam = torch.linalg.eigvalsh(hessian(model, F.mse_loss, batch))
    assert lam[0] > 1e-6 * lam.abs().max()  # a minimum
