"""Trajectory PCA against exact answers: planted planes, a direct SVD, and named parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepscope as ds
from deepscope.params import get_theta
from deepscope.probes.trajectory import layer_slice, pca

P = 500


def orthonormal(rng: np.random.Generator, p: int, k: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((p, k)))
    return q.T  # (k, p)


def planted(seed: int = 0, runs: int = 3, times: int = 20, noise: float = 1e-6):
    """Points mean + a(t)·u1 + b(t)·u2 + noise, shape (runs, times, P)."""
    rng = np.random.default_rng(seed)
    u = orthonormal(rng, P, 2)
    mean = rng.standard_normal(P)
    t = np.linspace(0, 1, times)
    a = np.stack([3 * np.exp(-3 * t) * (r + 1) for r in range(runs)])  # (runs, times)
    b = np.stack([np.sin(4 * t + r) for r in range(runs)])
    x = mean + a[..., None] * u[0] + b[..., None] * u[1]
    return x + noise * rng.standard_normal(x.shape), u


def svd(x: np.ndarray):
    """Reference SVD (torch's: it obeys the 1-thread test setting; numpy's BLAS does not)."""
    u, s, vt = torch.linalg.svd(torch.from_numpy(x), full_matrices=False)
    return u.numpy(), s.numpy(), vt.numpy()


def principal_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the row spaces of orthonormal a and b."""
    return np.linalg.svd(a @ b.T, compute_uv=False)


def test_recovers_a_planted_plane():
    x, u = planted()
    res = pca(x, k=2)
    np.testing.assert_allclose(principal_cosines(res.components, u), 1.0, atol=1e-10)
    assert res.explained_variance_ratio.sum() > 0.999
    np.testing.assert_allclose(res.components @ res.components.T, np.eye(2), atol=1e-12)
    assert res.projections.shape == (3, 20, 2)
    assert res.mean.shape == (P,)


@pytest.mark.parametrize("method", ["svd", "gram", "auto"])
def test_matches_a_direct_svd_of_the_centred_data(method):
    x, _ = planted(noise=1e-2)
    flat = x.reshape(-1, P)
    n = len(flat)
    xc = flat - flat.mean(0)
    _, s, vt = svd(xc)
    res = pca(x, k=3, method=method)
    # Same directions up to sign, and the sign rule: largest-|.| entry positive.
    for i in range(3):
        assert abs(res.components[i] @ vt[i]) == pytest.approx(1.0, abs=1e-9)
        assert res.components[i][np.argmax(np.abs(res.components[i]))] > 0
    np.testing.assert_allclose(res.explained_variance, s[:3] ** 2 / (n - 1), rtol=1e-10)
    total = xc.var(axis=0, ddof=1).sum()
    assert res.total_variance == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(res.explained_variance_ratio, s[:3] ** 2 / (s**2).sum(),
                               rtol=1e-10)
    np.testing.assert_allclose(res.projections.reshape(n, 3), xc @ res.components.T,
                               atol=1e-12)


def test_gram_path_equals_direct_path():
    x, _ = planted(noise=1e-3)
    g, d = pca(x, k=2, method="gram"), pca(x, k=2, method="svd")
    np.testing.assert_allclose(g.components, d.components, atol=1e-9)
    np.testing.assert_allclose(g.projections, d.projections, atol=1e-9)
    np.testing.assert_allclose(g.explained_variance, d.explained_variance, rtol=1e-10)
    assert g.total_variance == pytest.approx(d.total_variance, rel=1e-12)


def test_few_dimensions_many_points_uses_the_direct_path_and_agrees():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    res = pca(x, k=5)  # auto → svd (P < n)
    np.testing.assert_allclose(np.abs(res.components), np.eye(5), atol=0.1)
    assert res.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-12)
    g = pca(x, k=5, method="gram")
    np.testing.assert_allclose(g.components, res.components, atol=1e-9)


def test_projections_keep_the_leading_shape_and_accept_tensors():
    x, _ = planted()
    res = pca(torch.from_numpy(x), k=2)
    assert res.projections.shape == (3, 20, 2)
    np.testing.assert_allclose(res.projections, pca(x, k=2).projections, atol=1e-12)
    np.testing.assert_allclose(res.transform(x), res.projections, atol=1e-12)
    assert pca(torch.from_numpy(x[0]).float(), k=1).projections.shape == (20, 1)


def test_centring_makes_the_answer_invariant_to_an_offset():
    x, u = planted()
    offset = 100.0 * np.random.default_rng(5).standard_normal(P)
    a, b = pca(x, k=2), pca(x + offset, k=2)
    np.testing.assert_allclose(b.components, a.components, atol=1e-9)
    np.testing.assert_allclose(b.projections, a.projections, atol=1e-8)
    np.testing.assert_allclose(b.mean, a.mean + offset, atol=1e-10)
    # The uncentred SVD (the original report's mistake) points its first "component" at the
    # offset, not along the motion.
    _, _, vt = svd((x + offset).reshape(-1, P))
    mean_dir = (x + offset).reshape(-1, P).mean(0)
    assert abs(vt[0] @ mean_dir) / np.linalg.norm(mean_dir) > 0.99
    assert principal_cosines(vt[:2], u).min() < 0.5


def test_rank_deficient_data_gets_an_orthonormal_completion():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 50))  # 3 points: centred rank 2
    for method in ("gram", "svd"):
        res = pca(x, k=3, method=method)
        np.testing.assert_allclose(res.components @ res.components.T, np.eye(3), atol=1e-12)
        assert res.explained_variance[2] == 0.0
        assert res.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-12)
    one = pca(x[:1], k=1)
    assert one.total_variance == 0.0 and one.explained_variance_ratio[0] == 0.0


def test_bad_k_and_method_are_rejected():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="k must"):
        pca(x, k=4)
    with pytest.raises(ValueError, match="k must"):
        pca(x, k=0)
    with pytest.raises(ValueError, match="method"):
        pca(x, k=1, method="randomized")


def test_layer_slice_picks_the_named_parameters():
    model = ds.mlp(4, 3, depth=5, width=5, seed=0)  # Linear layers at 1, 3, 5, 7, 9, 11
    theta = get_theta(model)
    params = dict(model.named_parameters())
    for name, p in params.items():
        torch.testing.assert_close(theta[layer_slice(model, name)], p.detach().reshape(-1))
    for idx in ("1", "3", "11"):
        sl = layer_slice(model, idx)
        expect = torch.cat([params[f"{idx}.weight"].detach().reshape(-1),
                            params[f"{idx}.bias"].detach().reshape(-1)])
        torch.testing.assert_close(theta[sl], expect)
    # "1" is a module prefix, not a string prefix: it must not swallow "11.*".
    assert layer_slice(model, "1") == slice(0, 4 * 5 + 5)
    assert layer_slice(model, "11").stop == theta.numel()
    with pytest.raises(KeyError, match="no parameter"):
        layer_slice(model, "2")


def test_layer_slice_on_nested_modules_and_snapshots():
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    )
    sl = layer_slice(model, "1")
    assert sl == slice(9, 9 + 16 + 5)
    assert layer_slice(model, "1.0.bias") == slice(9 + 12, 9 + 16)
    snaps = np.random.default_rng(0).standard_normal((2, 6, 30))
    assert pca(snaps[..., sl], k=2).components.shape == (2, 21)
