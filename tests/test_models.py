"""Parameter budgets are hit, counts are exact, and initialisation is seeded privately."""

from __future__ import annotations

import pytest
import torch

import deepscope as ds
from deepscope.models import cnn_param_count, mlp_param_count, mlp_widths

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
