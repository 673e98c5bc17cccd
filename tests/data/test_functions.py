"""The 1-D regression targets and their grids."""

import math

import pytest
import torch

from deepscope.data import load
from deepscope.data.functions import FUNCTIONS, grid, sign, sinc, square
from deepscope.errors import DataError

torch.set_num_threads(1)


def test_registry_names_callables_with_docstrings():
    assert set(FUNCTIONS) == {"sinc", "sign", "square"}
    for f in FUNCTIONS.values():
        assert callable(f) and f.__doc__


@pytest.mark.parametrize("n", [1, 7, 500])
def test_grid_is_evenly_spaced_on_half_open_unit_interval(n):
    x = grid(n)
    assert x.shape == (n, 1) and x.dtype == torch.float32
    assert x.min() > 0 and x.max() == 1
    expected = torch.arange(1, n + 1, dtype=torch.float64) / n
    torch.testing.assert_close(x[:, 0].double(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_grid_rejects_bad_sizes(n):
    with pytest.raises(DataError, match="positive integer"):
        grid(n)


def test_values_at_known_points():
    x = torch.tensor([0.1, 0.3, 0.5, 1.0])
    torch.testing.assert_close(square(x), torch.tensor([0.01, 0.09, 0.25, 1.0]))
    assert square(torch.tensor(0.5)).item() == 0.25
    # sin(5π·0.1) = 1, so sinc(0.1) = 1/(0.5π); sin(5π·0.3) = -1.
    torch.testing.assert_close(sinc(x[:2]), torch.tensor([2 / math.pi, -2 / (3 * math.pi)]))
    assert sinc(torch.tensor(1.0)).abs() < 1e-6  # sin(5π) = 0
    torch.testing.assert_close(sign(x), torch.tensor([1.0, -1.0, 1.0, 0.0]))


def test_sinc_is_finite_at_and_near_zero():
    x = torch.tensor([0.0, 1e-12, 1e-6, 1e-3])
    y = sinc(x)
    assert torch.isfinite(y).all()
    assert y[0] == 1 and (y[1:] - 1).abs().max() < 1e-4


def test_sign_takes_values_in_minus_one_zero_one_and_zero_at_crossings():
    x = grid(1000)
    y = sign(x)
    assert set(y.unique().tolist()) <= {-1.0, 0.0, 1.0}
    zeros = x[y == 0]
    torch.testing.assert_close(zeros, torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0]))
    # Between crossings the wave alternates: positive on (0, 0.2), negative on (0.2, 0.4).
    assert (y[x < 0.2] == 1).all() and (y[(x > 0.2) & (x < 0.4)] == -1).all()
    for dtype in (torch.float32, torch.float64):
        assert sign(torch.tensor([0.2, 0.4], dtype=dtype)).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", ["sinc", "sign", "square"])
def test_load_regression_target(name):
    data = load(name, n=50, n_test=200)
    assert data.task == "regression" and data.num_classes is None and data.name == name
    assert data.x_train.shape == data.y_train.shape == (50, 1)
    assert data.x_test.shape == data.y_test.shape == (200, 1)
    for x in (data.x_train, data.x_test):
        assert x.dtype == torch.float32 and x.min() > 0 and x.max() == 1
    torch.testing.assert_close(data.y_train, FUNCTIONS[name](data.x_train))
    torch.testing.assert_close(data.y_test, FUNCTIONS[name](data.x_test))
    assert data.input_shape == (1,) and data.n_train == 50 and data.n_test == 200


def test_load_regression_defaults_and_dtype():
    data = load("sinc")
    assert data.n_train == 500 and data.n_test == 1000
    wide = data.to(dtype=torch.float64)
    assert wide.x_train.dtype == wide.y_train.dtype == wide.y_test.dtype == torch.float64


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n_test": -1}, {"n": 10.0}])
def test_load_regression_rejects_bad_sizes(kwargs):
    with pytest.raises(DataError, match=f"{next(iter(kwargs))}="):
        load("sinc", **kwargs)


def test_load_regression_rejects_subset():
    with pytest.raises(DataError, match="n="):
        load("square", subset=10)
