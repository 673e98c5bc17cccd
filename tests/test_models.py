"""Parameter budgets are hit, counts are exact, and initialisation is seeded privately."""

from __future__ import annotations

import pytest
import torch

import deepscope as ds
from deepscope.models import cnn_channels, cnn_param_count, mlp_param_count, mlp_widths

# Budgets at least 2× the smallest model and, for one hidden layer, at least 25 units wide
# (below that one unit of a 784-input layer is more than 2 % of the budget).
MLP_CASES = [(i, o, d, b) for i, o in [(1, 1), (784, 10)] for d in (1, 2, 3, 4, 6, 8)
             for b in (300, 400, 1000, 5000, 20_000, 200_000)
             if b >= 2 * mlp_param_count(i, o, [1] * d) and b >= 25 * (i + o + 1)]
CNN_CASES = [(d, b) for d in (1, 2, 3, 4, 5) for b in (3000, 10_000, 20_000, 50_000, 100_000)]


@pytest.mark.parametrize(("in_dim", "out_dim", "depth", "budget"), MLP_CASES)
def test_mlp_hits_the_budget_within_2_percent(in_dim, out_dim, depth, budget):
    model = ds.mlp(in_dim, out_dim, depth, params=budget)
    n = ds.count_params(model)
    assert abs(n - budget) <= 0.02 * budget
    assert n == mlp_param_count(in_dim, out_dim, mlp_widths(in_dim, out_dim, depth, budget))
    assert sum(isinstance(m, torch.nn.Linear) for m in model) == depth + 1


@pytest.mark.parametrize(("depth", "budget"), CNN_CASES)
def test_cnn_hits_the_budget_within_2_percent(depth, budget):
    model = ds.cnn(depth, params=budget)
    n = ds.count_params(model)
    assert abs(n - budget) <= 0.02 * budget
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model) == depth
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_closed_form_counts_match_modules():
    assert ds.count_params(ds.mlp(3, 2, 2, width=5)) == mlp_param_count(3, 2, [5, 5]) == 62
    assert ds.count_params(ds.cnn(2, channels=4)) == cnn_param_count([4, 4])


def test_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = ds.mlp(4, 2, 2, width=8, seed=5)
    after = torch.rand(3)
    b = ds.mlp(4, 2, 2, width=8, seed=5)
    c = ds.mlp(4, 2, 2, width=8, seed=6)
    assert torch.equal(before, after)
    assert torch.equal(ds.params.get_theta(a), ds.params.get_theta(b))
    assert not torch.equal(ds.params.get_theta(a), ds.params.get_theta(c))


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="below the smallest"):
        ds.mlp(784, 10, 3, params=100)
    with pytest.raises(ValueError, match="nearest counts are 4780 and 5575"):
        ds.mlp(784, 10, 1, params=5000)


# --- 1-D inputs (sequences such as MNIST-1D, shape (N, 1, 40)) -------------------------------

SEQUENCE_CASES = [(d, b) for d in (1, 2, 3, 4, 5) for b in (3000, 10_000, 50_000)]


@pytest.mark.parametrize(("depth", "budget"), SEQUENCE_CASES)
def test_1d_cnn_hits_the_budget_within_2_percent(depth, budget):
    model = ds.cnn(depth, params=budget, input_shape=(1, 40))
    n = ds.count_params(model)
    assert abs(n - budget) <= 0.02 * budget
    assert n == cnn_param_count(cnn_channels(depth, budget, input_shape=(1, 40)),
                                input_shape=(1, 40))
    assert sum(isinstance(m, torch.nn.Conv1d) for m in model) == depth
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model)
    assert model(torch.zeros(2, 1, 40)).shape == (2, 10)


def test_1d_cnn_layout_and_count():
    model = ds.cnn(2, channels=4, input_shape=(1, 40), num_classes=3)
    # 40 → pool 20 → pool 10 → adaptive max-pool to 3 positions; kernel-3 convs with bias.
    assert [type(m).__name__ for m in model] == [
        "Conv1d", "MaxPool1d", "ReLU", "Conv1d", "MaxPool1d", "ReLU",
        "AdaptiveMaxPool1d", "Flatten", "Linear"]
    expected = (3 * 1 + 1) * 4 + (3 * 4 + 1) * 4 + (4 * 3 + 1) * 3
    assert ds.count_params(model) == expected == cnn_param_count([4, 4], num_classes=3,
                                                                 input_shape=(1, 40))
    assert model(torch.zeros(5, 1, 40)).shape == (5, 3)


def test_2d_cnn_is_unchanged_by_the_1d_path():
    """The MNIST CNNs keep their channels, counts and modules: (1, 28, 28) given explicitly,
    as in_channels/image_size, or by default are the same model."""
    assert cnn_channels(2, 10_000) == [28, 28] and cnn_channels(1, 10_000) == [100]
    assert cnn_channels(4, 50_000) == [41, 41, 41, 41]
    assert cnn_param_count([28, 28]) == 9894
    default = ds.cnn(3, params=10_000, seed=1)
    explicit = ds.cnn(3, params=10_000, input_shape=(1, 28, 28), seed=1)
    legacy = ds.cnn(3, params=10_000, in_channels=1, image_size=28, seed=1)
    assert repr(default) == repr(explicit) == repr(legacy)
    assert "AdaptiveMaxPool2d(output_size=3)" in repr(default)
    assert torch.equal(ds.params.get_theta(default), ds.params.get_theta(explicit))


def test_cnn_input_errors():
    with pytest.raises(ValueError, match="not both"):
        ds.cnn(2, channels=4, input_shape=(1, 40), in_channels=1)
    with pytest.raises(ValueError, match=r"\(C, L\) for sequences or \(C, H, W\)"):
        ds.cnn(2, channels=4, input_shape=(40,))
    with pytest.raises(ValueError, match="positive integers"):
        ds.cnn(2, channels=4, input_shape=(1, 40.0))
    assert ds.count_params(ds.cnn(1, channels=2, input_shape=torch.Size([1, 40]))) == 78
    with pytest.raises(ValueError, match="too small"):
        ds.cnn(4, params=3000, input_shape=(1, 6))


@pytest.mark.parametrize("budget", [3000, 10_000, 50_000])
def test_matched_pooling_gives_every_depth_the_same_pools_and_final_map(budget):
    """pooling="matched": three 2× pools and no adaptive pool at every depth, so the head sees
    the same 3×3 map (MNIST) or 5 positions (MNIST-1D); budgets still hit within 2 %."""
    for shape, final in (((1, 28, 28), (3, 3)), ((1, 40), (5,))):
        maps = set()
        for depth in (1, 2, 3, 4, 5):
            model = ds.cnn(depth, params=budget, input_shape=shape, pooling="matched")
            assert abs(ds.count_params(model) - budget) <= 0.02 * budget
            assert ds.count_params(model) == cnn_param_count(
                cnn_channels(depth, budget, input_shape=shape, pooling="matched"),
                input_shape=shape, pooling="matched")
            pools = [m for m in model if isinstance(m, torch.nn.MaxPool1d | torch.nn.MaxPool2d)]
            assert len(pools) == 3 and not any("Adaptive" in type(m).__name__ for m in model)
            x = torch.zeros(2, *shape)
            body = torch.nn.Sequential(*list(model)[:-2])  # everything before Flatten, Linear
            maps.add(tuple(body(x).shape[2:]))
            assert model(x).shape == (2, 10)
        assert maps == {final}


def test_default_pooling_is_unchanged_by_the_matched_option():
    for depth in (1, 2, 4):
        default = ds.cnn(depth, params=10_000, seed=3)
        adaptive = ds.cnn(depth, params=10_000, pooling="adaptive", seed=3)
        assert repr(default) == repr(adaptive)
        assert torch.equal(ds.params.get_theta(default), ds.params.get_theta(adaptive))
    # the 1-block default pools 14×14 adaptively to 3×3; matched pools 28→14→7→3 by twos
    assert "AdaptiveMaxPool2d(output_size=3)" in repr(ds.cnn(1, params=10_000))
    assert cnn_channels(1, 10_000, pooling="matched") == [100]
    with pytest.raises(ValueError, match="unknown pooling"):
        ds.cnn(2, params=10_000, pooling="global")
