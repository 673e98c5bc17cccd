"""The vectorised trainer equals plain PyTorch training loops, member by member."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deepscope as ds
from deepscope.data import Data
from deepscope.errors import DivergenceWarning
from deepscope.train import batch_generator

torch.set_num_threads(1)


def _toy_classification(n_train=96, n_test=40, dim=5, classes=3, seed=0) -> Data:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, dim, generator=g, dtype=torch.float64)
    w = torch.randn(dim, classes, generator=g, dtype=torch.float64)
    y = (x @ w).argmax(1)
    return Data(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                name="toy", task="classification", num_classes=classes)


def _plain_loop(model, data, optimizer, lr, momentum, epochs, batch_size, seed, member):
    """The straightforward reference: torch.optim, one member, its own batch generator."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.Adam(trainable, lr=lr) if optimizer == "adam"
           else torch.optim.SGD(trainable, lr=lr, momentum=momentum))
    gen = batch_generator(seed, member)
    n = data.x_train.shape[0]
    losses, norms = [], []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen) if batch_size else torch.arange(n)
        for i in range(0, n, batch_size or n):
            idx = order[i : i + (batch_size or n)]
            opt.zero_grad()
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            norms.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()
                                    if p.requires_grad]).norm())
            losses.append(loss.item())
            opt.step()
    return np.array(losses), torch.stack(norms).numpy()


@pytest.mark.parametrize(
    ("optimizer", "momentum", "batch_size", "epochs"),
    [("adam", 0.0, 16, 9), ("sgd", 0.9, 16, 9), ("adam", 0.0, None, 50)],
)
def test_three_members_equal_three_plain_loops(optimizer, momentum, batch_size, epochs):
    """3 members, float64, same inits and batch orders, ≥50 steps: equal to 1e-8."""
    data = _toy_classification()
    members = [ds.mlp(5, 3, depth=2, width=8, seed=s).double() for s in range(3)]
    references = [copy.deepcopy(m) for m in members]
    trace = ds.train(members, data, optimizer=optimizer, lr=0.01, momentum=momentum,
                     epochs=epochs, batch_size=batch_size, seed=7, record_steps=True,
                     dtype=torch.float64)
    assert trace.step_loss.shape == (3, 54 if batch_size else 50)
    for m, (trained, ref) in enumerate(zip(members, references)):
        losses, norms = _plain_loop(ref, data, optimizer, 0.01, momentum, epochs, batch_size,
                                    seed=7, member=m)
        np.testing.assert_allclose(trace.step_loss[m], losses, rtol=0, atol=1e-8)
        np.testing.assert_allclose(trace.grad_norm[m], norms, rtol=0, atol=1e-8)
        for p, q in zip(trained.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-8)


def test_epoch_metrics_are_full_pass_means():
    data = _toy_classification()
    members = [ds.mlp(5, 3, depth=1, width=6, seed=s).double() for s in range(2)]
    trace = ds.train(members, data, epochs=3, batch_size=32, dtype=torch.float64)
    assert trace.epoch.tolist() == [0, 1, 2, 3]
    assert trace.train_loss.shape == trace.test_acc.shape == (2, 4)
    for m, model in enumerate(members):  # the final column is the trained model's full pass
        with torch.no_grad():
            out = model(data.x_test)
        assert trace.test_loss[m, -1] == pytest.approx(F.cross_entropy(out, data.y_test).item())
        acc = (out.argmax(1) == data.y_test).double().mean().item()
        assert trace.test_acc[m, -1] == pytest.approx(acc)


def test_snapshots_hold_theta_at_the_epochs():
    data = _toy_classification()
    members = [ds.mlp(5, 3, depth=1, width=4, seed=s) for s in range(2)]
    theta0 = torch.stack([ds.params.get_theta(m) for m in members]).numpy()
    trace = ds.train(members, data, epochs=6, snapshot_every=3)
    assert trace.snapshot_epoch.tolist() == [0, 3, 6]
    assert trace.snapshots.shape == (2, 3, ds.count_params(members[0]))
    np.testing.assert_array_equal(trace.snapshots[:, 0], theta0)
    np.testing.assert_allclose(trace.snapshots[1, -1], ds.params.get_theta(members[1]).numpy())


def test_divergence_stops_only_the_affected_member():
    data = _toy_classification()
    members = [ds.mlp(5, 3, depth=1, width=4, seed=s).double() for s in range(2)]
    with torch.no_grad():  # member 1 starts at a point where the loss overflows
        members[1][-1].weight.fill_(float("inf"))
    with pytest.warns(DivergenceWarning, match="member 1 diverged in epoch 1"):
        trace = ds.train(members, data, epochs=4, dtype=torch.float64)
    assert trace.diverged_epoch.tolist() == [-1, 1]
    assert np.isfinite(trace.train_loss[0]).all()
    assert np.isnan(trace.train_loss[1, 1:]).all()


def test_a_fully_diverged_ensemble_keeps_the_trace_shape():
    """When every member diverges, training stops but the trace has the shape it would have
    had (NaN from then on), so the pieces of a study still stack."""
    data = _toy_classification()
    members = [ds.mlp(5, 3, depth=1, width=4, seed=s).double() for s in range(2)]
    with torch.no_grad():
        for m in members:
            m[-1].weight.fill_(float("inf"))
    with pytest.warns(DivergenceWarning):
        trace = ds.train(members, data, epochs=4, batch_size=32, record_steps=True,
                         snapshot_every=2, dtype=torch.float64)
    assert trace.diverged_epoch.tolist() == [1, 1]
    assert trace.epoch.tolist() == [0, 1, 2, 3, 4]
    assert trace.train_loss.shape == (2, 5) and np.isnan(trace.train_loss[:, 1:]).all()
    assert trace.step_loss.shape == (2, 4 * 3)  # 96 images in batches of 32
    assert trace.snapshot_epoch.tolist() == [0, 2, 4]


def test_regression_full_batch_reduces_loss():
    data = ds.load("sinc", n=64, n_test=32)
    model = ds.mlp(1, 1, depth=2, params=150)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = ds.train(model, data, lr=1e-2, epochs=200)
    assert np.isnan(trace.train_acc).all()
    assert trace.train_loss[0, -1] < 0.5 * trace.train_loss[0, 0]


def test_mismatched_architectures_are_rejected():
    data = _toy_classification()
    with pytest.raises(ValueError, match="one architecture"):
        ds.train([ds.mlp(5, 3, 1, width=4), ds.mlp(5, 3, 1, width=5)], data)


def test_member_loop_and_vmap_schedules_agree():
    """The two ways of evaluating member losses give the same training (CNNs use 'loop')."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(48, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (48,), generator=g)
    data = Data(x[:32], y[:32], x[32:], y[32:], name="img", task="classification",
                num_classes=10)
    traces, trained = [], []
    for schedule in ("vmap", "loop"):  # 'loop' keeps filters and images channels-last
        members = [ds.cnn(2, channels=3, seed=s).double() for s in range(2)]
        traces.append(ds.train(members, data, epochs=2, batch_size=8, record_steps=True,
                               dtype=torch.float64, member_batching=schedule))
        trained.append(members)
    np.testing.assert_allclose(traces[0].step_loss, traces[1].step_loss, rtol=0, atol=1e-10)
    np.testing.assert_allclose(traces[0].test_loss, traces[1].test_loss, rtol=0, atol=1e-10)
    for a, b in zip(*trained):  # the trained weights are written back in the models' layout
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, rtol=0, atol=1e-10)
            assert pb.is_contiguous()


class WithBuffer(torch.nn.Module):
    """A model with a buffer and a frozen parameter: both must be used, neither trained."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.frozen = torch.nn.Parameter(torch.full((3,), 0.5, dtype=torch.float64),
                                         requires_grad=False)
        self.lin = torch.nn.Linear(5, 3).double()
        self.register_buffer("shift", torch.arange(3, dtype=torch.float64))

    def forward(self, x):
        return self.lin(x) * self.frozen + self.shift


def test_buffers_and_frozen_parameters_are_used_and_left_alone():
    data = _toy_classification()
    members = [WithBuffer(s) for s in range(2)]
    refs = [copy.deepcopy(m) for m in members]
    trace = ds.train(members, data, optimizer="sgd", lr=0.1, epochs=3, batch_size=16, seed=1,
                     record_steps=True, dtype=torch.float64)
    for m, (trained, ref) in enumerate(zip(members, refs)):
        losses, _ = _plain_loop(ref, data, "sgd", 0.1, 0.0, 3, 16, seed=1, member=m)
        np.testing.assert_allclose(trace.step_loss[m], losses, rtol=0, atol=1e-10)
        assert torch.equal(trained.frozen, torch.full((3,), 0.5, dtype=torch.float64))
        torch.testing.assert_close(trained.lin.weight, ref.lin.weight)


@pytest.mark.parametrize(("optimizer", "momentum"), [("adam", 0.0), ("sgd", 0.9)])
def test_one_learning_rate_per_member_equals_plain_loops(optimizer, momentum):
    """A learning-rate grid as one ensemble: each member equals its own plain torch.optim loop
    with its own rate (float64, 36 mini-batch steps, to 1e-8)."""
    data = _toy_classification()
    rates = [0.003, 0.01, 0.05]
    members = [ds.mlp(5, 3, depth=2, width=8, seed=s).double() for s in range(3)]
    references = [copy.deepcopy(m) for m in members]
    trace = ds.train(members, data, optimizer=optimizer, lr=rates, momentum=momentum,
                     epochs=6, batch_size=16, seed=3, record_steps=True, dtype=torch.float64)
    for m, (trained, ref) in enumerate(zip(members, references)):
        losses, _ = _plain_loop(ref, data, optimizer, rates[m], momentum, 6, 16, seed=3,
                                member=m)
        np.testing.assert_allclose(trace.step_loss[m], losses, rtol=0, atol=1e-8)
        for p, q in zip(trained.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-8)


def test_until_freezes_each_member_at_its_criterion_and_stops_early():
    """Members stop when an evaluation shows train accuracy ≥ 0.9; each one's θ and metrics
    then equal a plain run of exactly that many epochs; the trace keeps its full shape."""
    data = _toy_classification()
    rates = [0.003, 0.03]  # the fast member gets there first
    members = [ds.mlp(5, 3, depth=1, width=8, seed=s).double() for s in range(2)]
    inits = [copy.deepcopy(m) for m in members]
    trace = ds.train(members, data, lr=rates, epochs=300, until=("train_acc", 0.9),
                     dtype=torch.float64)
    assert trace.epoch.tolist() == list(range(301))
    reached = trace.reached_epoch
    assert 0 < reached[1] < reached[0] < 300, reached
    for m in range(2):
        acc = trace.train_acc[m]
        assert acc[reached[m]] >= 0.9 and (acc[: reached[m]] < 0.9).all()
        assert (trace.train_loss[m, reached[m]:] == trace.train_loss[m, reached[m]]).all()
        alone = copy.deepcopy(inits[m])  # full batch: no batch order to match
        plain = ds.train([alone], data, lr=rates[m], epochs=int(reached[m]),
                         dtype=torch.float64)
        assert plain.train_loss[0, -1] == pytest.approx(trace.train_loss[m, -1], abs=1e-10)
        for p, q in zip(members[m].parameters(), alone.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


def test_until_never_met_leaves_reached_at_minus_one():
    data = _toy_classification()
    members = [ds.mlp(5, 3, depth=1, width=4, seed=0).double()]
    trace = ds.train(members, data, lr=1e-5, epochs=3, until=("train_loss", 1e-6),
                     dtype=torch.float64)
    assert trace.reached_epoch.tolist() == [-1]
    with pytest.raises(ValueError, match="until must be"):
        ds.train(members, data, epochs=1, until=("test_acc", 0.5))
    with pytest.raises(ValueError, match="one per member"):
        ds.train(members, data, epochs=1, lr=[0.1, 0.2])
