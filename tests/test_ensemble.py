"""The ensemble core: stacked θ, batched forward, one evaluation, write-back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deepscope as ds
from deepscope.data import Data
from deepscope.ensemble import Ensemble, evaluate, stacked_forward
from deepscope.params import get_thetas
from deepscope.probes import interpolate

torch.set_num_threads(1)


def _members(kind: str):
    if kind == "mlp":
        return [ds.mlp(6, 3, depth=2, width=5, seed=s).double() for s in range(3)]
    return [ds.cnn(1, channels=2, in_channels=1, image_size=6, num_classes=3, seed=s).double()
            for s in range(3)]


def _inputs(kind: str, n: int = 11):
    g = torch.Generator().manual_seed(0)
    shape = (n, 6) if kind == "mlp" else (n, 1, 6, 6)
    return torch.randn(*shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,),
                                                                                generator=g)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_stacked_members_compute_what_each_model_computes(kind, batching):
    members = _members(kind)
    x, y = _inputs(kind)
    ens = Ensemble(members, F.cross_entropy, dtype=torch.float64, batching=batching)
    assert ens.M == 3 and ds.count_params(members[0]) == ens.P
    assert torch.equal(ens.theta(), get_thetas(members))  # the flat θ order of params.py
    out = ens.outputs(x)
    losses = ens.losses(x, y, shared=True)
    per_member = ens.losses(x.expand(3, *x.shape), y.expand(3, -1), shared=False)
    for m, model in enumerate(members):
        with torch.no_grad():
            ref = model(x)
        torch.testing.assert_close(out[m], ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(losses[m], F.cross_entropy(ref, y), rtol=0, atol=1e-12)
        torch.testing.assert_close(per_member[m], losses[m], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_write_back_gives_each_model_its_member(kind):
    members = _members(kind)
    ens = Ensemble(members, F.cross_entropy, dtype=torch.float64)
    with torch.no_grad():
        for v in ens.leaves:
            v.mul_(2)
    before = get_thetas(members)
    ens.write_back(members)
    assert torch.equal(get_thetas(members), 2 * before)
    assert all(p.is_contiguous() for m in members for p in m.parameters())


def test_evaluate_is_the_per_sample_mean_over_uneven_chunks():
    members = _members("mlp")
    x, y = _inputs("mlp", n=11)
    thetas = get_thetas(members)
    loss, acc = evaluate(lambda xb: stacked_forward(members[0])(thetas, xb), F.cross_entropy,
                         x, y, members=3, batch_size=4, classify=True)  # chunks 4, 4, 3
    for m, model in enumerate(members):
        with torch.no_grad():
            out = model(x)
        assert loss[m].item() == pytest.approx(F.cross_entropy(out, y).item(), abs=1e-14)
        assert acc[m].item() == (out.argmax(1) == y).double().mean().item()
    _, no_acc = evaluate(lambda xb: stacked_forward(members[0])(thetas, xb), F.cross_entropy,
                         x, y, members=3, batch_size=4, classify=False)
    assert torch.isnan(no_acc).all()


def test_trainer_and_interpolation_share_one_evaluation():
    """The trained members' last evaluation equals the interpolation's endpoints."""
    x, y = _inputs("mlp", n=40)
    data = Data(x[:28], y[:28], x[28:], y[28:], name="toy", task="classification",
                num_classes=3)
    members = _members("mlp")[:2]
    trace = ds.train(members, data, epochs=3, batch_size=7, dtype=torch.float64)
    line = interpolate(members[0], members[1], F.cross_entropy, data, [0.0, 1.0],
                       batch_size=7)
    np.testing.assert_allclose(line.train_loss, trace.train_loss[:, -1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(line.test_acc, trace.test_acc[:, -1], rtol=0, atol=0)
