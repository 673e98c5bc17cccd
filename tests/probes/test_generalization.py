"""Generalisation probes against exact answers: sensitivity, interpolation, sharpness, labels."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from planted import Planted, value

import deepscope as ds
from deepscope.data import Data, label_noise, random_labels
from deepscope.errors import DataError
from deepscope.params import get_theta, set_theta
from deepscope.probes import interpolate, sensitivity, sharpness


def _images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g, dtype=torch.float64)


def _net(seed=0):
    return ds.mlp(16, 3, 2, width=6, activation="tanh", seed=seed).double().eval()


@pytest.mark.parametrize("output", ["softmax", "logits"])
def test_sensitivity_equals_finite_differences_and_a_per_sample_loop(output):
    model, x = _net(), _images(7)
    got = sensitivity(model, x, output=output, chunk=3)

    def f(v):
        out = model(v)
        return torch.softmax(out, -1) if output == "softmax" else out

    loop = torch.stack([torch.autograd.functional.jacobian(f, x[n : n + 1]).norm()
                        for n in range(len(x))])
    torch.testing.assert_close(got, loop)
    h, fd = 1e-6, []
    for n in range(len(x)):
        cols = []
        for d in range(16):
            e = torch.zeros_like(x[n : n + 1]).reshape(-1)
            e[d] = h
            e = e.reshape(x[n : n + 1].shape)
            cols.append((f(x[n : n + 1] + e) - f(x[n : n + 1] - e)) / (2 * h))
        fd.append(torch.stack(cols).norm())
    torch.testing.assert_close(got, torch.stack(fd), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("output", ["softmax", "logits"])
def test_both_sensitivity_routes_agree_with_the_full_jacobian(output):
    """The Gram route (a first Linear layer that narrows, 16 → 6) and the plain route (a
    widening first layer, 16 → 24; a CNN) both equal the norm of the full Jacobian."""
    from deepscope.probes.sensitivity import input_jacobian, leading_linear

    x = _images(9)
    narrow = _net()
    wide = ds.mlp(16, 3, 2, width=24, activation="tanh", seed=1).double().eval()
    conv = ds.cnn(1, channels=2, in_channels=1, image_size=4, num_classes=3,
                  seed=2).double().eval()
    assert leading_linear(narrow, x) is not None
    assert leading_linear(wide, x) is None and leading_linear(conv, x) is None
    for model in (narrow, wide, conv):
        full = input_jacobian(model, x, output).flatten(1).norm(dim=1)
        torch.testing.assert_close(sensitivity(model, x, output, chunk=4), full,
                                   rtol=1e-12, atol=1e-14)


def _classification(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(60, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    return Data(x[:40], y[:40], x[40:], y[40:], name="toy", task="classification",
                num_classes=3)


@pytest.mark.parametrize("memory", [1, 500, 10**9])
def test_interpolation_memory_budget_does_not_change_the_result(memory):
    data = _classification()
    a, b = _net(1), _net(2)
    alphas = np.linspace(-1, 2, 13)
    ref = interpolate(a, b, F.cross_entropy, data, alphas, chunk=4, batch_size=7)
    res = interpolate(a, b, F.cross_entropy, data, alphas, memory=memory)
    for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_allclose(getattr(res, k), getattr(ref, k), rtol=1e-12, atol=1e-12)


def test_interpolation_endpoints_reproduce_both_models():
    data = _classification()
    a, b = _net(1), _net(2)
    res = interpolate(a, b, F.cross_entropy, data, np.linspace(-1, 2, 31), chunk=4,
                      batch_size=7)
    for model, i in ((a, 10), (b, 20)):  # α = 0 and α = 1
        with torch.no_grad():
            for split in ("train", "test"):
                x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
                out = model(x)
                assert getattr(res, f"{split}_loss")[i] == pytest.approx(
                    F.cross_entropy(out, y).item(), rel=1e-12)
                assert getattr(res, f"{split}_acc")[i] == pytest.approx(
                    (out.argmax(1) == y).double().mean().item())
    mid = copy.deepcopy(a)  # and an interior point equals a model built by hand
    set_theta(mid, 0.3 * get_theta(a) + 0.7 * get_theta(b))
    k = int(np.argmin(np.abs(res.alphas - 0.7)))
    with torch.no_grad():
        assert res.train_loss[k] == pytest.approx(
            F.cross_entropy(mid(data.x_train), data.y_train).item(), rel=1e-10)


def test_sharpness_stays_in_the_box_and_beats_random_points():
    data = _classification()
    model = _net(3)
    batch = (data.x_train, data.y_train)
    eps = 1e-2
    s = sharpness(model, F.cross_entropy, batch, eps=eps, steps=15, restarts=2)
    theta = get_theta(model)
    box = eps * (theta.abs() + 1)
    assert (s.delta.abs() <= box + 1e-15).all()
    g = torch.Generator().manual_seed(5)
    probe = copy.deepcopy(model)
    best_random = -np.inf
    for _ in range(200):
        set_theta(probe, theta + (torch.rand(theta.shape, generator=g, dtype=theta.dtype)
                                  * 2 - 1) * box)
        with torch.no_grad():
            best_random = max(best_random, F.cross_entropy(probe(batch[0]), batch[1]).item())
    assert s.max_loss >= best_random
    assert s.value == pytest.approx(100 * (s.max_loss - s.loss) / (1 + s.loss))


def test_sharpness_closed_form_for_a_quadratic_and_zero_for_a_constant():
    x = torch.zeros(1, 1, dtype=torch.float64)
    coef, theta0, eps = [1.0, 3.0, 0.5], [0.2, -1.0, 2.0], 1e-2
    q = Planted(coef, theta0)
    s = sharpness(q, value, (x, x), eps=eps)
    t = np.abs(np.array(theta0))
    top = float(np.sum(np.array(coef) * (t + eps * (t + 1)) ** 2))
    base = float(np.sum(np.array(coef) * t**2))
    assert s.max_loss == pytest.approx(top, rel=1e-12)
    assert s.value == pytest.approx(100 * (top - base) / (1 + base), rel=1e-10)
    flat = Planted([0.0, 0.0, 0.0], theta0)
    assert sharpness(flat, value, (x, x), eps=eps).value == pytest.approx(0.0)


def test_random_labels_and_label_noise():
    data = _classification()
    r1, r2 = random_labels(data, 1.0, seed=4), random_labels(data, 1.0, seed=4)
    assert torch.equal(r1.y_train, r2.y_train)
    assert not torch.equal(random_labels(data, 1.0, seed=5).y_train, r1.y_train)
    assert r1.x_test is data.x_test and r1.y_test is data.y_test
    assert torch.equal(r1.x_train, data.x_train)
    noisy = label_noise(data, 0.25, seed=0)
    assert (noisy.y_train != data.y_train).sum().item() == 10
    assert torch.equal(random_labels(data, 0.0).y_train, data.y_train)
    with pytest.raises(DataError, match="fraction"):
        label_noise(data, 1.5)
    with pytest.raises(DataError, match="classification"):
        random_labels(ds.load("sinc", n=8, n_test=4))


def test_sharpness_on_chunks_equals_the_full_batch():
    data = _classification()
    model = _net(4)
    x, y = data.x_train, data.y_train
    full = sharpness(model, F.cross_entropy, (x, y), eps=1e-3, steps=5, restarts=1)
    parts = [(x[i : i + 16], y[i : i + 16]) for i in range(0, len(x), 16)]
    chunked = sharpness(model, F.cross_entropy, parts, eps=1e-3, steps=5, restarts=1)
    assert chunked.value == pytest.approx(full.value, rel=1e-9)
