"""The MLP fast path of the ensemble core computes what the vmap path and the members
compute: losses, gradients and trained θ, in float64; other architectures fall back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

import deepscope as ds
from deepscope.data import Data
from deepscope.ensemble import Ensemble, member_means
from deepscope.params import get_thetas
from deepscope.stacked_mlp import layers_of

torch.set_num_threads(1)

# (in, out, activation): 1-d input and output take the outer-product route of stacked_mlp
SHAPES = [(4, 3, "relu"), (1, 1, "tanh"), (5, 2, "gelu"), (3, 1, "sigmoid")]


def _members(d_in, d_out, act, M=3):
    return [ds.mlp(d_in, d_out, depth=2, width=6, activation=act, seed=s).double()
            for s in range(M)]


def _batch(d_in, d_out, loss, shape=(), n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, n, d_in, generator=g, dtype=torch.float64)
    if loss is F.cross_entropy:
        return x, torch.randint(0, d_out, (*shape, n), generator=g)
    return x, torch.randn(*shape, n, d_out, generator=g, dtype=torch.float64)


def _member_grads(models, x, y, loss, shared):
    """Each member's loss and flat gradient (θ order), from its own nn.Module."""
    losses, grads = [], []
    for m, model in enumerate(models):
        model.zero_grad()
        value = loss(model(x if shared else x[m]), y if shared else y[m])
        value.backward()
        losses.append(value.detach())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(losses), torch.stack(grads)


def _ensemble_grads(ens: Ensemble) -> torch.Tensor:
    """``(M, P)`` gradient in θ order from the leaves (vmap stores matrices transposed)."""
    return torch.cat([(v.grad.mT if v.dim() == 3 and ens.batching != "mlp" else v.grad)
                      .reshape(ens.M, -1) for v in ens.leaves], 1)


# Cross-entropy needs two classes at least: one output is a regression shape only.
LOSS_CASES = [pytest.param(*shape, loss, id=f"{shape[2]}-{name}") for shape in SHAPES
              for loss, name in ((F.mse_loss, "mse"), (F.cross_entropy, "ce"))
              if not (loss is F.cross_entropy and shape[1] == 1)]


@pytest.mark.parametrize(("d_in", "d_out", "act", "loss"), LOSS_CASES)
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-member"])
def test_fast_path_losses_and_gradients_equal_vmap_and_members(d_in, d_out, act, loss, shared):
    models = _members(d_in, d_out, act)
    x, y = _batch(d_in, d_out, loss, shape=() if shared else (3,))
    ref_losses, ref_grads = _member_grads(models, x, y, loss, shared)
    for batching in ("mlp", "vmap"):
        ens = Ensemble(models, loss, dtype=torch.float64, batching=batching)
        assert ens.batching == batching
        losses = ens.losses(x, y, shared=shared)
        losses.sum().backward()
        torch.testing.assert_close(losses, ref_losses, rtol=0, atol=1e-12)
        torch.testing.assert_close(_ensemble_grads(ens), ref_grads, rtol=0, atol=1e-12)
        torch.testing.assert_close(ens.grad_norm(), ref_grads.norm(dim=1), rtol=0, atol=1e-12)
        assert torch.equal(ens.theta(), get_thetas(models))
        if shared:
            with torch.no_grad():
                ref_out = torch.stack([model(x) for model in models])
            torch.testing.assert_close(ens.outputs(x), ref_out, rtol=0, atol=1e-12)


def _data(d_in, d_out, task, seed=0):
    x, y = _batch(d_in, d_out, F.cross_entropy if task == "classification" else F.mse_loss,
                  n=40, seed=seed)
    return Data(x[:30], y[:30], x[30:], y[30:], name="toy", task=task,
                num_classes=d_out if task == "classification" else None)


@pytest.mark.parametrize(("d_in", "d_out", "act", "task"),
                         [(*SHAPES[0], "regression"), (*SHAPES[0], "classification"),
                          (*SHAPES[1], "regression")])
@pytest.mark.parametrize("batch_size", [None, 8], ids=["full-batch", "mini-batch"])
def test_fast_path_trains_what_vmap_trains(d_in, d_out, act, task, batch_size):
    data = _data(d_in, d_out, task)
    traces, thetas = [], []
    for batching in ("mlp", "vmap"):
        models = _members(d_in, d_out, act)
        traces.append(ds.train(models, data, lr=[0.01, 0.02, 0.03], epochs=6,
                               batch_size=batch_size, record_steps=True, snapshot_every=2,
                               dtype=torch.float64, member_batching=batching, seed=1))
        thetas.append(get_thetas(models))
    fast, ref = traces
    for field in ("step_loss", "grad_norm", "train_loss", "test_loss", "train_acc"):
        np.testing.assert_allclose(getattr(fast, field), getattr(ref, field), rtol=0,
                                   atol=1e-12, err_msg=field)
    np.testing.assert_allclose(fast.snapshots, ref.snapshots, rtol=0, atol=1e-6)  # float32
    torch.testing.assert_close(thetas[0], thetas[1], rtol=0, atol=1e-12)


class _Scaled(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: ds.cnn(1, channels=2, in_channels=1, image_size=6, num_classes=3), "loop"),
    (lambda: nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.ReLU(), nn.Linear(5, 3)),
     "vmap"),
    (lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), _Scaled(5, 3)), "vmap"),
    (lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(5, 3)), "vmap"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 5), nn.Tanh()),
                           nn.Identity(), nn.Linear(5, 3, bias=False)), "mlp"),
])
def test_only_plain_mlps_take_the_fast_path(make, expected):
    models = [make().double() for _ in range(2)]
    ens = Ensemble(models, F.cross_entropy, dtype=torch.float64)
    assert ens.batching == expected
    assert (layers_of(models[0]) is not None) == (expected == "mlp")
    if expected != "mlp":
        with pytest.raises(ValueError, match="member_batching='mlp'"):
            Ensemble(models, F.cross_entropy, batching="mlp")


def test_nested_mlp_without_bias_equals_its_members():
    def make(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 5), nn.Tanh()),
                             nn.Identity(), nn.Linear(5, 3, bias=False)).double()

    models = [make(s) for s in range(3)]
    x, y = _batch(4, 3, F.cross_entropy, shape=(3,))
    x = x.reshape(3, 9, 2, 2)  # flattened by the net's nn.Flatten
    ref_losses, ref_grads = _member_grads(models, x, y, F.cross_entropy, shared=False)
    ens = Ensemble(models, F.cross_entropy, dtype=torch.float64)
    losses = ens.losses(x, y, shared=False)
    losses.sum().backward()
    torch.testing.assert_close(losses, ref_losses, rtol=0, atol=1e-12)
    torch.testing.assert_close(_ensemble_grads(ens), ref_grads, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-member"])
def test_whole_stack_losses_equal_vmap_of_the_loss(shared):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    shape = (7,) if shared else (3, 7)
    labels = torch.randint(0, 4, shape, generator=g)
    labels[..., 2] = -100  # ignore_index: out of both the sum and the count
    targets = torch.randn(*shape, 4, generator=g, dtype=torch.float64)
    dims = (0, None if shared else 0)
    for loss, y in ((F.cross_entropy, labels), (F.mse_loss, targets)):
        torch.testing.assert_close(member_means(loss, out, y), vmap(loss, in_dims=dims)(out, y),
                                   rtol=0, atol=1e-12)
    assert member_means(F.mse_loss, out, targets[..., :1]) is None  # broadcasting: vmap's job
    assert member_means(F.l1_loss, out, targets) is None


def test_fast_path_backward_runs_once_per_forward():
    """Its hidden activations are reused by the next forward pass once the backward is done,
    so a second backward through the same graph is refused, not computed from reused memory."""
    models = _members(4, 3, "relu")
    x, y = _batch(4, 3, F.cross_entropy)
    ens = Ensemble(models, F.cross_entropy, dtype=torch.float64)
    first = ens.losses(x, y, shared=True)
    second = ens.losses(x, y, shared=True)  # both graphs alive at once: separate buffers
    second.sum().backward(retain_graph=True)
    g2 = ens.leaves[0].grad.clone()
    ens.leaves[0].grad = None
    ens.losses(2 * x, y, shared=True)  # reuses the buffers second handed back
    first.sum().backward()
    torch.testing.assert_close(ens.leaves[0].grad, g2, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="once per forward"):
        second.sum().backward()
