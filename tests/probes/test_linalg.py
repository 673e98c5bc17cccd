"""Matrix-free spectral linear algebra against exact answers on small float64 matrices."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from deepscope.probes import linalg as L

F64 = torch.float64


def planted(lams, seed: int = 0) -> torch.Tensor:
    """A symmetric matrix ``Q diag(lams) Qᵀ`` with a random orthogonal ``Q`` (QR of a seeded
    Gaussian), so its spectrum is ``lams`` (cast to float64)."""
    lams = torch.as_tensor(lams).to(F64)
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(lams), len(lams), generator=g, dtype=F64))
    A = Q @ torch.diag(lams) @ Q.T
    return (A + A.T) / 2


def mv(A: torch.Tensor):
    return lambda v: A @ v


def mixed_spectrum(n: int = 120) -> torch.Tensor:
    """Negative and positive eigenvalues, with clusters at both ends."""
    ends = torch.tensor([10.0, 9.99, 9.98, 9.5, -8.0, -7.99, -7.98, -7.5], dtype=F64)
    return torch.cat([ends, torch.linspace(-3.0, 5.0, n - len(ends), dtype=F64)])


# --- Lanczos ------------------------------------------------------------------------------------


def test_lanczos_basis_stays_orthonormal_after_n_steps():
    n = 100
    A = planted(mixed_spectrum(n), seed=1)
    res = L.lanczos(mv(A), n, steps=n, seed=3)
    assert res.Q.shape == (n, n) and res.alpha.shape == (n,) and res.beta.shape == (n - 1,)
    assert res.matvecs == n
    eye = torch.eye(n, dtype=F64)
    assert (res.Q.T @ res.Q - eye).abs().max() < 1e-10
    T = torch.diag(res.alpha) + torch.diag(res.beta, 1) + torch.diag(res.beta, -1)
    assert (res.Q.T @ A @ res.Q - T).abs().max() < 1e-10
    values, vectors = L.ritz(res)  # a full run is an exact similarity transform
    torch.testing.assert_close(values, torch.linalg.eigvalsh(A), rtol=0, atol=1e-10)
    assert (A @ vectors - vectors * values).norm(dim=0).max() < 1e-10


def test_lanczos_partial_run_satisfies_the_lanczos_relation():
    n, m = 80, 25
    A = planted(mixed_spectrum(n), seed=2)
    res = L.lanczos(mv(A), n, steps=m, seed=0)
    assert res.Q.shape == (n, m) and not res.breakdown
    assert (res.Q.T @ res.Q - torch.eye(m, dtype=F64)).abs().max() < 1e-12
    # A Q = Q T + β_m q_{m+1} e_mᵀ: everything but the last column is inside the basis.
    T = torch.diag(res.alpha) + torch.diag(res.beta, 1) + torch.diag(res.beta, -1)
    R = A @ res.Q - res.Q @ T
    assert R[:, :-1].abs().max() < 1e-12
    assert R[:, -1].norm().item() == pytest.approx(res.residual, rel=1e-8)


def test_lanczos_breaks_down_early_on_a_low_rank_matrix():
    n = 60
    lams = torch.zeros(n, dtype=F64)
    lams[:3] = torch.tensor([3.0, -2.0, 1.0])
    A = planted(lams, seed=4)
    res = L.lanczos(mv(A), n, steps=40, seed=0)
    # The Krylov space of a rank-3 matrix has dimension ≤ 4.
    assert res.breakdown and res.matvecs <= 4 and res.Q.shape[1] == res.matvecs
    assert torch.isfinite(res.Q).all() and torch.isfinite(res.alpha).all()
    values, vectors = L.ritz(res)
    assert torch.isfinite(values).all() and torch.isfinite(vectors).all()
    for lam in (3.0, -2.0, 1.0):
        assert (values - lam).abs().min() < 1e-12


def test_lanczos_on_the_zero_operator_and_given_v0():
    n = 10
    res = L.lanczos(lambda v: torch.zeros_like(v), n, steps=5)
    assert res.matvecs == 1 and res.breakdown and res.alpha.tolist() == [0.0]
    assert res.beta.shape == (0,) and torch.isfinite(res.Q).all()
    A = planted(torch.arange(1.0, n + 1, dtype=F64), seed=0)
    v0 = torch.ones(n, dtype=F64)
    res = L.lanczos(mv(A), n, steps=3, v0=v0)
    torch.testing.assert_close(res.Q[:, 0], v0 / v0.norm())
    with pytest.raises(ValueError, match="non-zero"):
        L.lanczos(mv(A), n, steps=3, v0=torch.zeros(n))


def test_seeds_and_generators_are_explicit():
    n = 40
    A = planted(mixed_spectrum(n), seed=0)
    state = torch.random.get_rng_state()
    a = L.lanczos(mv(A), n, steps=10, seed=7)
    b = L.lanczos(mv(A), n, steps=10, seed=7)
    c = L.lanczos(mv(A), n, steps=10, generator=torch.Generator().manual_seed(7))
    d = L.lanczos(mv(A), n, steps=10, seed=8)
    h1 = L.hutchinson(mv(A), n, samples=5, seed=1)
    h2 = L.hutchinson(mv(A), n, samples=5, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert torch.equal(a.Q, b.Q) and torch.equal(a.Q, c.Q) and not torch.equal(a.Q, d.Q)
    assert h1 == h2


def test_bad_inputs_are_rejected():
    A = planted(torch.arange(1.0, 11.0, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        L.lanczos(lambda v: torch.zeros(3, dtype=F64), 10, steps=3)
    with pytest.raises(ValueError, match="which"):
        L.eigsh(mv(A), 10, k=2, which="middle")
    with pytest.raises(ValueError, match="k must be"):
        L.eigsh(mv(A), 10, k=11)
    with pytest.raises(ValueError, match="max_steps"):
        L.eigsh(mv(A), 10, k=5, max_steps=3)
    with pytest.raises(ValueError, match="dist"):
        L.hutchinson(mv(A), 10, dist="uniform")
    with pytest.raises(ValueError, match="at least 3"):
        L.hutchpp(mv(A), 10, matvecs=2)


# --- eigsh --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_eigsh_matches_eigvalsh_at_both_ends(seed):
    n = 150
    A = planted(mixed_spectrum(n), seed=seed)
    exact = torch.linalg.eigvalsh(A)
    top = L.eigsh(mv(A), n, k=5, which="largest", seed=seed)
    bottom = L.eigsh(mv(A), n, k=5, which="smallest", seed=seed)
    for res, want in ((top, exact.flip(0)[:5]), (bottom, exact[:5])):
        assert res.converged and res.matvecs < n
        torch.testing.assert_close(res.values, want, rtol=1e-6, atol=0)
        assert res.vectors.shape == (n, 5)
        # Genuine eigenpairs: small true residual, orthonormal vectors.
        resid = (A @ res.vectors - res.vectors * res.values).norm(dim=0)
        assert resid.max() < 1e-5 * exact.abs().max()
        assert (res.vectors.T @ res.vectors - torch.eye(5, dtype=F64)).abs().max() < 1e-8
        assert (res.residuals <= 1e-6 * exact.abs().max()).all()
    assert (top.values.diff() <= 0).all() and (bottom.values.diff() >= 0).all()


def test_eigsh_smallest_finds_the_most_negative():
    n = 100
    lams = torch.cat([torch.tensor([-3.0, -1.0, -0.5], dtype=F64),
                      torch.linspace(0.1, 20.0, n - 3, dtype=F64)])
    A = planted(lams, seed=5)
    res = L.eigsh(mv(A), n, k=3, which="smallest")
    torch.testing.assert_close(res.values, torch.tensor([-3.0, -1.0, -0.5], dtype=F64),
                               rtol=1e-6, atol=0)
    # "largest" is algebraic, not by magnitude: the top of the positive part.
    top = L.eigsh(mv(A), n, k=2, which="largest")
    torch.testing.assert_close(top.values, lams.sort(descending=True).values[:2], rtol=1e-6,
                               atol=0)


def test_eigsh_both_ends():
    n = 120
    A = planted(mixed_spectrum(n), seed=3)
    exact = torch.linalg.eigvalsh(A)
    res = L.eigsh(mv(A), n, k=5, which="both_ends")
    want = torch.cat([exact[:2], exact[-3:]])
    torch.testing.assert_close(res.values, want, rtol=1e-6, atol=0)


def test_eigsh_is_exact_when_the_space_is_exhausted():
    n = 12
    A = planted(torch.linspace(-2.0, 3.0, n, dtype=F64), seed=6)
    res = L.eigsh(mv(A), n, k=n, which="smallest")
    assert res.converged and res.matvecs == n
    torch.testing.assert_close(res.values, torch.linalg.eigvalsh(A), rtol=0, atol=1e-12)


def test_eigsh_finds_repeated_eigenvalues_of_a_low_rank_operator():
    # Single-vector Krylov spaces see a repeated eigenvalue once; after each breakdown eigsh
    # continues from a fresh vector orthogonal to the basis, so all copies appear.
    n = 50
    lams = torch.zeros(n, dtype=F64)
    lams[:3] = 5.0
    lams[3] = -1.0
    A = planted(lams, seed=7)
    res = L.eigsh(mv(A), n, k=4, which="largest")
    assert torch.isfinite(res.values).all()
    torch.testing.assert_close(res.values, torch.tensor([5.0, 5.0, 5.0, 0.0], dtype=F64),
                               rtol=0, atol=1e-10)
    bottom = L.eigsh(mv(A), n, k=1, which="smallest")
    assert bottom.values.item() == pytest.approx(-1.0, abs=1e-10)


# --- power iteration ----------------------------------------------------------------------------


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_power_iteration_finds_top_k_by_magnitude(tol):
    n = 100
    want = torch.tensor([10.0, -7.0, 5.0], dtype=F64)
    A = planted(torch.cat([want, torch.linspace(-1.0, 1.0, n - 3, dtype=F64)]), seed=1)
    res = L.power_iteration(mv(A), n, k=3, tol=tol)
    assert res.converged
    assert ((res.values - want).abs() / want.abs()).max() < 10 * tol
    assert res.vectors.shape == (n, 3)


def test_power_iteration_needs_many_more_matvecs_than_lanczos_for_a_small_gap():
    n = 100
    top = torch.tensor([10.0, 9.9, 9.8], dtype=F64)
    A = planted(torch.cat([top, torch.linspace(0.0, 9.0, n - 3, dtype=F64)]), seed=2)
    power = L.power_iteration(mv(A), n, k=3, tol=1e-6, max_iters=5000)
    lanczos = L.eigsh(mv(A), n, k=3, tol=1e-6)
    assert lanczos.converged
    torch.testing.assert_close(lanczos.values, top, rtol=1e-10, atol=0)
    assert ((power.values - top).abs() / top).max() < 1e-3  # ... and is less accurate
    assert power.matvecs > 10 * lanczos.matvecs


# --- trace estimation ---------------------------------------------------------------------------


def _mean_abs_error(estimator, A, exact, seeds=range(8), **kw) -> float:
    n = A.shape[0]
    return statistics.mean(abs(estimator(mv(A), n, seed=s, **kw).estimate - exact)
                           for s in seeds)


def test_hutchinson_error_shrinks_and_is_within_three_standard_errors():
    n = 100
    A = planted(torch.linspace(-1.0, 3.0, n, dtype=F64), seed=8)
    exact = torch.trace(A).item()
    few = _mean_abs_error(L.hutchinson, A, exact, samples=10)
    many = _mean_abs_error(L.hutchinson, A, exact, samples=1000)
    assert many < few / 4  # ~√100 = 10 in expectation
    for seed in range(5):
        est = L.hutchinson(mv(A), n, samples=200, seed=seed)
        assert est.samples == est.matvecs == 200
        assert abs(est.estimate - exact) < 3 * est.std_error
    gauss = L.hutchinson(mv(A), n, samples=400, seed=0, dist="gaussian")
    assert abs(gauss.estimate - exact) < 3 * gauss.std_error


def test_hutchinson_is_exact_on_a_diagonal_matrix():
    d = torch.linspace(-2.0, 5.0, 30, dtype=F64)
    est = L.hutchinson(lambda v: d * v, 30, samples=3)  # Rademacher: zᵀ D z = tr(D)
    assert est.estimate == pytest.approx(d.sum().item(), rel=1e-12) and est.std_error < 1e-12


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum():
    n = 200
    lams = 1.0 / torch.arange(1, n + 1, dtype=F64) ** 2
    A = planted(lams, seed=3)
    exact = lams.sum().item()
    plain = _mean_abs_error(L.hutchinson, A, exact, samples=60)
    plus = _mean_abs_error(L.hutchpp, A, exact, matvecs=60)
    assert plus < plain / 10
    assert _mean_abs_error(L.hutchpp, A, exact, matvecs=300) < \
        _mean_abs_error(L.hutchpp, A, exact, matvecs=12) / 10
    for seed in range(5):
        est = L.hutchpp(mv(A), n, matvecs=99, seed=seed)
        assert est.matvecs == 99 and est.samples == 33
        assert abs(est.estimate - exact) < 3 * est.std_error


def test_hutchpp_is_exact_for_low_rank_and_full_sketches():
    n = 40
    lams = torch.zeros(n, dtype=F64)
    lams[:4] = torch.tensor([4.0, -2.0, 1.5, 0.5])
    A = planted(lams, seed=9)
    est = L.hutchpp(mv(A), n, matvecs=30, seed=0)  # sketch of 10 ⊇ the rank-4 range
    assert est.estimate == pytest.approx(4.0, abs=1e-10) and est.matvecs == 30
    B = planted(torch.linspace(1.0, 2.0, 10, dtype=F64), seed=1)
    # A Gaussian sketch of 10 columns spans all of R^10 (ten ±1 vectors may not).
    full = L.hutchpp(mv(B), 10, matvecs=30, dist="gaussian")
    assert full.estimate == pytest.approx(torch.trace(B).item(), abs=1e-12)
    assert full.std_error == 0.0 and full.matvecs == 20


# --- stochastic Lanczos quadrature --------------------------------------------------------------


def _slq_matrix(n: int = 150) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    bulk = torch.randn(n - 8, generator=g, dtype=F64) + 3.0
    outliers = torch.tensor([12.0, 11.0, -4.0, -5.0, 8.0, 8.1, 8.2, 0.0], dtype=F64)
    lams = torch.cat([bulk, outliers])
    return planted(lams, seed=4), lams


def test_slq_weights_density_and_moments():
    A, lams = _slq_matrix()
    n = len(lams)
    d = L.spectral_density(mv(A), n, steps=40, probes=64, seed=0)
    assert d.nodes.shape == d.weights.shape == (64, 40) and d.matvecs == 64 * 40
    torch.testing.assert_close(d.weights.sum(-1), torch.ones(64, dtype=F64), rtol=0, atol=1e-12)
    assert (d.weights >= 0).all() and (d.density >= 0).all()
    assert torch.trapezoid(d.density, d.grid).item() == pytest.approx(1.0, abs=1e-12)
    assert d.grid[0] < lams.min() and d.grid[-1] > lams.max()
    assert L.moments(d, 0) == pytest.approx(1.0, abs=1e-12)
    for p in (1, 2):
        exact = (lams**p).mean().item()  # tr(A^p) / n
        assert L.moments(d, p) == pytest.approx(exact, rel=0.03)
    # The density itself: close (in L1) to the exact spectrum smoothed with the same Gaussian.
    z = (d.grid[:, None] - lams[None, :]) / d.sigma
    exact = torch.exp(-0.5 * z**2).sum(1) / (n * d.sigma * math.sqrt(2 * math.pi))
    exact = exact / torch.trapezoid(exact, d.grid)
    assert torch.trapezoid((d.density - exact).abs(), d.grid) < 0.1


def test_slq_moments_improve_with_more_probes():
    A, lams = _slq_matrix()
    n = len(lams)

    def error(probes: int, p: int) -> float:
        exact = (lams**p).mean().item()
        return statistics.mean(
            abs(L.moments(L.spectral_density(mv(A), n, steps=20, probes=probes, seed=s), p)
                / exact - 1)
            for s in range(4))

    for p in (1, 2):
        assert error(64, p) < error(4, p)


def test_slq_quadrature_is_exact_per_probe_for_low_degree():
    # Gauss quadrature with m nodes integrates polynomials of degree ≤ 2m − 1 exactly:
    # Σ_i w_i θ_i^p = vᵀ A^p v for the probe's own unit vector v.
    n, steps = 50, 3
    A = planted(torch.linspace(-1.0, 2.0, n, dtype=F64), seed=2)
    d = L.spectral_density(mv(A), n, steps=steps, probes=1, seed=11)
    v = (torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(11)).to(F64) * 2 - 1)
    v = v / math.sqrt(n)
    for p in range(2 * steps):
        want = (v @ torch.linalg.matrix_power(A, p) @ v).item()
        assert L.moments(d, p) == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_slq_pads_early_breakdown_and_accepts_a_grid():
    n = 23
    lams = torch.zeros(n, dtype=F64)
    lams[:3] = torch.tensor([3.0, -2.0, 1.0])
    A = planted(lams, seed=0)
    grid = torch.linspace(-4.0, 5.0, 301, dtype=F64)
    d = L.spectral_density(mv(A), n, steps=60, probes=4, grid=grid, sigma=0.1)
    assert d.nodes.shape == (4, n)  # steps clamped to n
    assert d.matvecs < 4 * 5  # each probe breaks down after ≤ 4 steps
    assert torch.isfinite(d.nodes).all() and torch.isfinite(d.density).all()
    torch.testing.assert_close(d.weights.sum(-1), torch.ones(4, dtype=F64), rtol=0, atol=1e-12)
    assert torch.equal(d.grid, grid) and d.sigma == 0.1
    assert torch.trapezoid(d.density, grid).item() == pytest.approx(1.0, abs=1e-12)
    for p in (1, 2):
        assert torch.isfinite(torch.tensor(L.moments(d, p)))
