"""Loss surfaces against plain loops, filter norms against the model's, planes against PCA."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deepscope as ds
from deepscope.ensemble import activation_bytes
from deepscope.params import get_theta, set_theta
from deepscope.probes.landscape import (
    filter_normalized_direction,
    pca_plane,
    project,
    random_plane,
    steps,
    surface,
)


@pytest.fixture(scope="module")
def setup():
    model = ds.mlp(6, 3, depth=2, width=8, seed=0).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return model, (x, y)


def loop_loss(model, loss_fn, batch, theta):
    m = copy.deepcopy(model)
    set_theta(m, theta)
    with torch.no_grad():
        return float(loss_fn(m(batch[0]), batch[1]))


def test_surface_at_the_origin_is_the_loss(setup):
    model, (x, y) = setup
    d1, d2 = random_plane(model, seed=1)
    res = surface(model, F.cross_entropy, (x, y), (d1, d2), span=((-1, 1), (-0.5, 0.5)),
                  resolution=5)
    assert res.a.shape == (5,) and res.b.shape == (5,) and res.loss.shape == (5, 5)
    assert res.a[2] == 0.0 and res.b[2] == 0.0
    with torch.no_grad():
        expect = float(F.cross_entropy(model(x), y))
    assert res.loss[2, 2] == pytest.approx(expect, abs=1e-12)


def test_surface_along_d1_equals_a_plain_loop(setup):
    model, batch = setup
    d1, d2 = random_plane(model, seed=2)
    theta = get_theta(model)
    res = surface(model, F.cross_entropy, batch, (d1, d2), span=(-2, 2), resolution=9, chunk=4)
    j0 = 4
    assert res.b[j0] == 0.0
    for i, a in enumerate(res.a):
        assert res.loss[i, j0] == pytest.approx(
            loop_loss(model, F.cross_entropy, batch, theta + a * d1), abs=1e-10
        )


def test_whole_grid_with_a_center_equals_a_plain_loop(setup):
    model, batch = setup
    d1, d2 = random_plane(model, seed=3)
    center = get_theta(model) + 0.1 * filter_normalized_direction(model, seed=9)
    res = surface(model, F.cross_entropy, list(batch), (d1, d2), center=center,
                  span=((-1, 0.5), (0, 2)), resolution=(4, 3))
    assert res.loss.shape == (4, 3)
    for i, a in enumerate(res.a):
        for j, b in enumerate(res.b):
            expect = loop_loss(model, F.cross_entropy, batch, center + a * d1 + b * d2)
            assert res.loss[i, j] == pytest.approx(expect, abs=1e-10)


def test_chunk_size_does_not_change_the_result(setup):
    model, batch = setup
    d1, d2 = random_plane(model, seed=4)
    ref = surface(model, F.cross_entropy, batch, (d1, d2), resolution=7, chunk=1)
    for chunk in (5, 49, 1000):
        res = surface(model, F.cross_entropy, batch, (d1, d2), resolution=7, chunk=chunk)
        np.testing.assert_allclose(res.loss, ref.loss, rtol=1e-12, atol=1e-12)


def test_activation_bytes_counts_every_leaf_output_per_sample(setup):
    model, (x, _) = setup  # Flatten 6 → 8 → ReLU → 8 → ReLU → 3, in float64
    assert activation_bytes(model, x) == (6 + 8 + 8 + 8 + 8 + 3) * 8


def test_steps_fit_the_memory_budget(setup):
    model, (x, _) = setup  # 328 bytes per sample, 40 samples: 13 120 bytes per point
    per_point = activation_bytes(model, x) * len(x)
    assert steps(model, x, memory=10 * per_point) == (10, 40)
    assert steps(model, x, memory=per_point) == (1, 40)
    assert steps(model, x, memory=per_point // 4) == (1, 10)
    assert steps(model, x, memory=1) == (1, 1)
    with pytest.raises(ValueError, match="memory must be"):
        steps(model, x, memory=0)


@pytest.mark.parametrize("memory", [1, 2300, 13_120, 10**9])
def test_memory_budget_does_not_change_the_result(setup, memory):
    """Points one at a time, the data in slices of 1 or 7 samples, or the whole grid in one
    vmap call: the same surface as the plain loop's (test above), to rounding."""
    model, batch = setup
    d1, d2 = random_plane(model, seed=4)
    ref = surface(model, F.cross_entropy, batch, (d1, d2), resolution=7, chunk=1)
    res = surface(model, F.cross_entropy, batch, (d1, d2), resolution=7, memory=memory)
    np.testing.assert_allclose(res.loss, ref.loss, rtol=1e-12, atol=1e-12)


def test_surface_of_a_cnn_with_mse_regression():
    model = ds.cnn(2, channels=3, image_size=8, num_classes=2, seed=0).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    d1, d2 = random_plane(model, seed=0)
    res = surface(model, F.mse_loss, (x, y), (d1, d2), span=(-1, 1), resolution=3)
    theta = get_theta(model)
    for i, a in enumerate(res.a):
        for j, b in enumerate(res.b):
            expect = loop_loss(model, F.mse_loss, (x, y), theta + a * d1 + b * d2)
            assert res.loss[i, j] == pytest.approx(expect, abs=1e-10)


def test_surface_rejects_bad_shapes(setup):
    model, batch = setup
    d1, d2 = random_plane(model)
    with pytest.raises(ValueError, match="d2 must have shape"):
        surface(model, F.cross_entropy, batch, (d1, d2[:-1]))
    with pytest.raises(ValueError, match="span"):
        surface(model, F.cross_entropy, batch, (d1, d2), span=(0, 1, 2))
    with pytest.raises(ValueError, match="scalar"):
        surface(model, lambda o, t: F.cross_entropy(o, t, reduction="none"), batch, (d1, d2),
                resolution=2)


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)


@pytest.mark.parametrize(
    "model",
    [ds.mlp(5, 3, depth=2, width=7, seed=0), ds.cnn(2, channels=4, image_size=8, seed=0)],
    ids=["mlp", "cnn"],
)
def test_filter_normalized_direction_matches_filter_norms(model):
    params = dict(model.named_parameters())
    d = filter_normalized_direction(model, seed=0)
    assert d.shape == get_theta(model).shape and d.dtype == torch.float32
    offset, seen_conv = 0, False
    for p in params.values():
        part = d[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.dim() >= 2:
            seen_conv |= p.dim() == 4
            torch.testing.assert_close(filter_norms(part), filter_norms(p.detach()),
                                       rtol=1e-5, atol=0)
            assert not torch.allclose(part, p.detach())  # a random direction, not θ itself
        else:
            assert torch.all(part == 0)
    assert seen_conv == any(isinstance(m, torch.nn.Conv2d) for m in model.modules())

    with_bias = filter_normalized_direction(model, seed=0, ignore_bias=False)
    offset = 0
    for p in params.values():
        part, ref = with_bias[offset : offset + p.numel()], d[offset : offset + p.numel()]
        offset += p.numel()
        if p.dim() == 1:
            assert float(part.norm()) == pytest.approx(float(p.detach().norm()), rel=1e-5)
        else:
            torch.testing.assert_close(part, ref, rtol=0, atol=0)


def test_directions_are_seeded():
    model = ds.mlp(5, 3, depth=2, width=7, seed=0)
    state = torch.random.get_rng_state()
    a, b = filter_normalized_direction(model, seed=0), filter_normalized_direction(model, seed=0)
    c = filter_normalized_direction(model, seed=1)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    d1, d2 = random_plane(model, seed=0)
    assert torch.equal(d1, a) and not torch.allclose(d1, d2)
    e1, e2 = random_plane(model, seed=0)
    assert torch.equal(d1, e1) and torch.equal(d2, e2)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    # Same direction (to rounding) for a float64 copy of the model.
    torch.testing.assert_close(
        filter_normalized_direction(copy.deepcopy(model).double(), seed=0).float(), a
    )


def trajectory(dims: int, seed: int = 0, times: int = 30, p: int = 200):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((p, dims)))
    t = np.linspace(0, 1, times)
    coords = np.stack([np.cos(2 * np.pi * t), 0.7 * np.sin(2 * np.pi * t),
                       0.5 * np.sin(4 * np.pi * t)][:dims], axis=1)
    return rng.standard_normal(p) + coords @ q.T, q.T


def test_pca_plane_of_a_planar_trajectory():
    snaps, basis = trajectory(2)
    d1, d2, info = pca_plane(torch.from_numpy(snaps))
    assert d1.dtype == torch.float64 and d1.shape == (200,)
    assert info["off_plane"] == pytest.approx(0.0, abs=1e-10)
    assert info["explained_variance_ratio"].sum() == pytest.approx(1.0, abs=1e-10)
    plane = torch.stack([d1, d2]).numpy()
    np.testing.assert_allclose(plane @ plane.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.linalg.svd(plane @ basis.T, compute_uv=False), 1.0,
                               atol=1e-10)
    # Default centre: the last snapshot, which therefore sits at (0, 0).
    torch.testing.assert_close(info["center"], torch.from_numpy(snaps[-1]))
    np.testing.assert_allclose(info["coords"][-1], 0.0, atol=1e-12)
    np.testing.assert_allclose(info["coords"], project(snaps, info["center"], d1, d2),
                               atol=1e-10)


def test_pca_plane_of_a_3d_trajectory_reports_the_variance_off_the_plane():
    snaps, _ = trajectory(3)
    _, _, info = pca_plane(snaps.astype(np.float32), center=snaps.mean(0))
    xc = snaps - snaps.mean(0)
    s = torch.linalg.svdvals(torch.from_numpy(xc)).numpy()
    expect = (s[2:] ** 2).sum() / (s**2).sum()
    assert expect > 0.05
    assert info["off_plane"] == pytest.approx(expect, rel=1e-4)
    assert info["center"].dtype == torch.float32
    np.testing.assert_allclose(info["coords"], info["pca"].projections, atol=1e-4)


def test_project_recovers_known_coordinates():
    rng = np.random.default_rng(0)
    p = 300
    center = rng.standard_normal(p)
    d1 = rng.standard_normal(p)
    d2 = 0.6 * d1 + rng.standard_normal(p)  # far from orthogonal, not unit length
    coords = rng.standard_normal((25, 2))
    on_plane = center + coords[:, :1] * d1 + coords[:, 1:] * d2
    np.testing.assert_allclose(project(on_plane, center, d1, d2), coords, atol=1e-10)
    # Adding a component orthogonal to the plane changes nothing (least squares).
    basis, _ = np.linalg.qr(np.stack([d1, d2], 1))
    off = rng.standard_normal(p)
    off -= basis @ (basis.T @ off)
    got = project(torch.from_numpy(on_plane + off), torch.from_numpy(center),
                  torch.from_numpy(d1), torch.from_numpy(d2))
    np.testing.assert_allclose(got, coords, atol=1e-10)
    assert project(on_plane.reshape(5, 5, p), center, d1, d2).shape == (5, 5, 2)
    with pytest.raises(ValueError, match="parallel"):
        project(on_plane, center, d1, 2 * d1)


def test_named_directions_are_the_planes_of_the_helpers(setup):
    """directions="filter" / "pca" (DESIGN.md's API) give the surface of random_plane(seed)
    and of pca_plane(snapshots)."""
    model, batch = setup
    theta = get_theta(model)
    g = torch.Generator().manual_seed(5)
    snaps = theta + 0.1 * torch.randn(6, theta.numel(), generator=g, dtype=theta.dtype)
    kw = {"span": (-0.5, 0.5), "resolution": 3}
    r1, r2 = random_plane(model, seed=3)
    p1, p2, _ = pca_plane(snaps)
    for named, pair in ((dict(directions="filter", seed=3), (r1, r2)),
                        (dict(directions="pca", snapshots=snaps), (p1, p2))):
        a = surface(model, F.cross_entropy, batch, **named, **kw)
        b = surface(model, F.cross_entropy, batch, pair, **kw)
        np.testing.assert_array_equal(a.loss, b.loss)
    with pytest.raises(ValueError, match="needs the trajectory"):
        surface(model, F.cross_entropy, batch, "pca")
    with pytest.raises(ValueError, match='"filter", "pca" or'):
        surface(model, F.cross_entropy, batch, "random")
