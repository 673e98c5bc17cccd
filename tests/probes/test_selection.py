"""Parameter selection (``params=``, ``by="module"``), explicit ``mode=`` and spreads over
seeds and data subsets (``seeds=``, ``subsets=``), against exact answers on tiny float64
problems: blocks of the full dense Hessian, ``eigvalsh`` of those blocks, closed-form
Hessians of least squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from deepscope.params import blocks, positions, select
from deepscope.probes import (
    Spread,
    full_gradient,
    grad_norm,
    hessian,
    hessian_eigenvalues,
    hessian_trace,
    hvp,
    interpolate,
    minimal_ratio,
    per_block,
    sharpness,
    spectral_density,
    surface,
)
from deepscope.probes.hessian import mse

TIGHT = {"rtol": 1e-10, "atol": 1e-10}


class Net(nn.Module):
    """body (3 → 4, tanh) → head (4 → 2): two blocks of 16 and 10 parameters."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body, self.head = nn.Linear(3, 4), nn.Linear(4, 2)
        self.double()

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def _data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=g, dtype=torch.float64),
            torch.randint(0, 2, (n,), generator=g))


def _block_hessian(model, names, x, y):
    """torch.autograd.functional.hessian of the loss in the named parameters only."""
    own = {k: v.detach() for k, v in model.named_parameters()}
    shapes = [own[k].shape for k in names]
    sizes = [own[k].numel() for k in names]

    def f(t):
        parts = dict(zip(names, (p.view(s) for p, s in zip(t.split(sizes), shapes))))
        return F.cross_entropy(functional_call(model, {**own, **parts}, (x,)), y)

    return torch.autograd.functional.hessian(f, torch.cat([own[k].reshape(-1) for k in names]))


HEAD = ["head.weight", "head.bias"]


def test_a_subset_hessian_is_the_block_of_the_full_one():
    model, (x, y) = Net(), _data()
    full = hessian(model, F.cross_entropy, (x, y))
    sub = hessian(model, F.cross_entropy, (x, y), params="head.*")
    at = positions(model, "head.*")
    assert sub.shape == (10, 10) and at.tolist() == list(range(16, 26))
    torch.testing.assert_close(sub, full[at][:, at], **TIGHT)
    torch.testing.assert_close(sub, _block_hessian(model, HEAD, x, y), **TIGHT)
    mixed = ["body.bias", "head.weight"]
    torch.testing.assert_close(hessian(model, F.cross_entropy, (x, y), params=mixed),
                               _block_hessian(model, mixed, x, y), **TIGHT)


def test_glob_list_and_predicate_select_the_same():
    model, batch = Net(), _data()
    by_glob = hessian(model, F.cross_entropy, batch, params="head.*")
    by_list = hessian(model, F.cross_entropy, batch, params=HEAD)
    by_pred = hessian(model, F.cross_entropy, batch, params=lambda n, p: n.startswith("head"))
    assert torch.equal(by_glob, by_list) and torch.equal(by_glob, by_pred)
    assert select(model, "*.bias") == ["body.bias", "head.bias"]
    assert select(model, ["head.bias", "body.weight"]) == ["body.weight", "head.bias"]


def test_selecting_nothing_or_an_unknown_name_is_refused_with_the_names():
    model, batch = Net(), _data()
    with pytest.raises(ValueError, match="top-level names are body, head"):
        hessian(model, F.cross_entropy, batch, params="layer4.*")
    with pytest.raises(ValueError, match=r"did you mean 'head\.weight'"):
        hessian_eigenvalues(model, F.cross_entropy, batch, params=["head.weigth"])
    with pytest.raises(ValueError, match="selects no trainable"):
        select(model, lambda n, p: False)


def test_a_subset_minimal_ratio_counts_the_blocks_eigenvalues():
    model, (x, y) = Net(), _data()
    block = _block_hessian(model, HEAD, x, y)
    lam = torch.linalg.eigvalsh((block + block.T) / 2)
    mr = minimal_ratio(model, F.cross_entropy, (x, y), params="head.*", tol=1e-8)
    assert mr.ratio[0] == pytest.approx(float((lam > 1e-8).double().mean()))


def test_a_subset_top_eigenvalue_is_that_of_the_block():
    model, batch = Net(), _data()
    block = hessian(model, F.cross_entropy, batch, params="body.*")
    got = hessian_eigenvalues(model, F.cross_entropy, batch, k=2, params="body.*")
    torch.testing.assert_close(got.values, torch.linalg.eigvalsh(block).flip(0)[:2], **TIGHT)


def test_by_module_gives_every_block_spectrum():
    model, batch = Net(), _data()
    full = hessian(model, F.cross_entropy, batch)
    got = hessian_eigenvalues(model, F.cross_entropy, batch, k=3, by="module")
    assert list(got) == ["body", "head"] == list(blocks(model))
    for name in got:
        at = positions(model, f"{name}.*")
        want = torch.linalg.eigvalsh(full[at][:, at]).flip(0)[:3]
        torch.testing.assert_close(got[name].values, want, **TIGHT)
    dense = hessian(model, F.cross_entropy, batch, by="module")
    torch.testing.assert_close(dense["head"], full[16:, 16:], **TIGHT)
    members = hessian([model, Net(seed=1)], F.cross_entropy, batch, by="module")
    assert members["head"].shape == (2, 10, 10)
    torch.testing.assert_close(members["head"][0], full[16:, 16:], **TIGHT)
    traces = per_block(hessian_trace, model, F.cross_entropy, batch, samples=30, seed=1)
    assert set(traces) == {"body", "head"}
    with pytest.raises(ValueError, match="by must be 'module'"):
        hessian(model, F.cross_entropy, batch, by="layer")


def test_gradient_sharpness_surface_and_interpolate_move_only_the_selection():
    model, batch = Net(), _data()
    g = full_gradient(model, F.cross_entropy, batch)
    at = positions(model, "head.*")
    torch.testing.assert_close(full_gradient(model, F.cross_entropy, batch, params="head.*"),
                               g[at], **TIGHT)
    assert grad_norm(model, F.cross_entropy, batch, params=HEAD) == pytest.approx(
        float(g[at].norm()), rel=1e-12)
    assert sharpness(model, F.cross_entropy, batch, 1e-2, params="head.*").delta.shape == (10,)
    v = torch.randn(10, dtype=torch.float64)
    torch.testing.assert_close(hvp(model, F.cross_entropy, batch, params="head.*")(v),
                               hessian(model, F.cross_entropy, batch)[at][:, at] @ v, **TIGHT)
    d1, d2 = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    pad = [torch.zeros(26, dtype=torch.float64).index_copy(0, at, d) for d in (d1, d2)]
    sub = surface(model, F.cross_entropy, batch, (d1, d2), params="head.*", resolution=3)
    whole = surface(model, F.cross_entropy, batch, tuple(pad), resolution=3)
    np.testing.assert_allclose(sub.loss, whole.loss, **TIGHT)
    other, mixed = Net(seed=1), Net()
    mixed.head.load_state_dict(other.head.state_dict())
    line = interpolate(model, other, F.cross_entropy, batch, [0, 0.3, 1], params="head.*")
    want = interpolate(model, mixed, F.cross_entropy, batch, [0, 0.3, 1])
    np.testing.assert_allclose(line.train_loss, want.train_loss, **TIGHT)


def test_the_whole_selection_and_explicit_eval_equal_the_defaults():
    model, batch = Net(), _data()
    everything = ["body.weight", "body.bias", "head.weight", "head.bias"]
    for probe in (hessian, full_gradient):
        default = probe(model, F.cross_entropy, batch)
        assert torch.equal(default, probe(model, F.cross_entropy, batch, params=everything))
        assert torch.equal(default, probe(model, F.cross_entropy, batch, params=None,
                                          mode="eval"))
    a = hessian_eigenvalues(model, F.cross_entropy, batch, k=2)
    b = hessian_eigenvalues(model, F.cross_entropy, batch, k=2, params="*", mode="eval")
    assert torch.equal(a.values, b.values)


# --- mode ------------------------------------------------------------------------------------


def _bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 4 * 4, 3)).double()
    net[1].running_mean.copy_(torch.tensor([0.3, -0.2]))
    net[1].running_var.copy_(torch.tensor([2.0, 0.5]))
    g = torch.Generator().manual_seed(2)
    return net, (torch.randn(10, 1, 6, 6, generator=g, dtype=torch.float64),
                 torch.randint(0, 3, (10,), generator=g))


def _flags(net):
    return [m.training for m in net.modules()]


def test_batch_norm_net_in_eval_mode_works_and_its_mode_is_restored():
    net, batch = _bn_net()
    want = hessian_eigenvalues(net.eval(), F.cross_entropy, batch, k=2).values
    stats = net[1].running_mean.clone()
    net.train()
    net[3].eval()  # a mixed state, restored module by module
    before = _flags(net)
    got = hessian_eigenvalues(net, F.cross_entropy, batch, k=2, mode="eval").values
    torch.testing.assert_close(got, want, **TIGHT)
    assert _flags(net) == before and torch.equal(net[1].running_mean, stats)
    surface(net, F.cross_entropy, batch, resolution=3)
    interpolate(net, net, F.cross_entropy, batch, [0, 1])
    assert _flags(net) == before

    def broken(output, target):
        raise RuntimeError("boom")

    for probe in (hessian_eigenvalues, hessian, full_gradient, surface):
        with pytest.raises(RuntimeError, match="boom"):
            probe(net, broken, batch)
        assert _flags(net) == before


def test_batch_norm_in_train_mode_is_refused_for_curvature():
    net, batch = _bn_net()
    for probe in (hvp, hessian, hessian_eigenvalues, hessian_trace, spectral_density,
                  sharpness):
        with pytest.raises(ValueError, match=r"batch norm.*statistics of the batch.*"
                                             r"mode='eval'"):
            probe(net, F.cross_entropy, batch, mode="train")
    with pytest.raises(ValueError, match="mode must be"):
        hessian(Net(), F.cross_entropy, _data(), mode="training")


def test_train_mode_without_batch_norm_or_dropout_equals_eval():
    model, batch = Net(), _data()
    for probe in (hessian, full_gradient):
        assert torch.equal(probe(model, F.cross_entropy, batch, mode="train"),
                           probe(model, F.cross_entropy, batch))
    model.eval()
    assert torch.equal(hessian_eigenvalues(model, F.cross_entropy, batch, mode="train").values,
                       hessian_eigenvalues(model, F.cross_entropy, batch).values)
    assert not model.training


def test_train_mode_uses_dropout_and_leaves_batch_statistics_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2)).double().eval()
    batch = _data()
    torch.manual_seed(1)
    train = full_gradient(net, F.cross_entropy, batch, mode="train")
    assert not torch.equal(train, full_gradient(net, F.cross_entropy, batch))
    bn, xy = _bn_net()
    stats = bn[1].running_mean.clone()
    full_gradient(bn, F.cross_entropy, xy, mode="train")
    assert torch.equal(bn[1].running_mean, stats) and bn.training
    bn.eval()  # landscapes may use batch statistics: one point at a time, statistics kept
    centre = surface(bn, F.cross_entropy, xy, resolution=3, mode="train").loss[1, 1]
    line = interpolate(bn, bn, F.cross_entropy, xy, [0, 1], mode="train").train_loss
    assert torch.equal(bn[1].running_mean, stats) and not bn.training
    batch_stats = F.cross_entropy(bn.train()(xy[0]), xy[1]).item()
    bn[1].running_mean.copy_(stats)
    bn.eval()
    np.testing.assert_allclose([centre, *line], batch_stats, **TIGHT)
    assert centre != pytest.approx(surface(bn, F.cross_entropy, xy, resolution=3).loss[1, 1])


# --- spreads over seeds and subsets ----------------------------------------------------------


def test_seeds_give_k_values_with_numpy_mean_and_std():
    model, batch = Net(), _data()
    got = hessian_trace(model, F.cross_entropy, batch, samples=10, estimator="hutchinson",
                        seed=5, seeds=3)
    assert isinstance(got, Spread) and got.values.shape == (3,)
    singles = [hessian_trace(model, F.cross_entropy, batch, samples=10,
                             estimator="hutchinson", seed=s).estimate for s in (5, 6, 7)]
    np.testing.assert_array_equal(got.values, singles)
    assert got.mean == pytest.approx(np.mean(singles), rel=1e-14)
    assert got.std == pytest.approx(np.std(singles, ddof=1), rel=1e-14) and got.std > 0
    dens = spectral_density(model, F.cross_entropy, batch, steps=8, probes=2, seeds=3)
    assert dens.values.shape == (3, len(dens.grid)) and dens.mean.shape == dens.grid.shape
    np.testing.assert_allclose(dens.std, np.std(dens.values, 0, ddof=1), **TIGHT)
    with pytest.raises(ValueError, match="seeds must be ≥ 2"):
        hessian_trace(model, F.cross_entropy, batch, seeds=1)


def test_lanczos_start_vectors_agree_where_lanczos_is_exact():
    model, batch = Net(), _data()
    got = hessian_eigenvalues(model, F.cross_entropy, batch, k=3, params="head.*", seeds=4)
    assert got.values.shape == (4, 3) and got.mean.shape == got.std.shape == (3,)
    block = hessian(model, F.cross_entropy, batch, params="head.*")
    np.testing.assert_allclose(got.mean, torch.linalg.eigvalsh(block).flip(0)[:3].numpy(),
                               **TIGHT)
    assert np.all(got.std < 1e-10)
    per = hessian_eigenvalues(model, F.cross_entropy, batch, k=1, by="module", seeds=2)
    assert all(isinstance(v, Spread) and v.values.shape == (2, 1) for v in per.values())


def test_subsets_are_disjoint_round_robin_batches():
    """Least squares on y = 0: H = 2 XᵀX / n of each subset's samples, known exactly."""
    model = nn.Linear(2, 1, bias=False).double()
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(4, 2, generator=g, dtype=torch.float64) * (1 + i) for i in range(4)]
    data = [(x, torch.zeros(4, 1, dtype=torch.float64)) for x in xs]
    got = hessian_eigenvalues(model, mse, data, k=2, subsets=2)
    assert got.values.shape == (2, 2)
    for j, rows in enumerate((torch.cat([xs[0], xs[2]]), torch.cat([xs[1], xs[3]]))):
        want = torch.linalg.eigvalsh(2 * rows.T @ rows / len(rows)).flip(0)
        np.testing.assert_allclose(got.values[j], want.numpy(), **TIGHT)
    np.testing.assert_allclose(got.std, np.std(got.values, 0, ddof=1), **TIGHT)
    both = hessian_trace(model, mse, data, samples=6, subsets=2, seeds=2)
    assert both.values.shape == (4,)
    with pytest.raises(ValueError, match="at least k batches"):
        hessian_trace(model, mse, data[0], subsets=2)
