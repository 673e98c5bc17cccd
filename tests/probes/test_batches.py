"""Every probe on every form of data and loss (probes/batches.py), against the in-memory
``(x, y)`` + ``loss_fn`` answer, on tiny float64 problems."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import deepscope as ds
from deepscope.params import get_theta
from deepscope.probes import (
    Batches,
    batch_size,
    ensemble_hessians,
    find_critical_point,
    full_gradient,
    hessian,
    hessian_eigenvalues,
    hessian_trace,
    hvp,
    interpolate,
    model_loss,
    sensitivity,
    sharpness,
    spectral_density,
    surface,
)
from deepscope.probes.hessian import mse

TIGHT = {"rtol": 1e-10, "atol": 1e-10}
G = torch.Generator


def _regression():
    """An MLP, F.mse_loss-compatible ``mse`` and 40 samples: (model, loss, x, y)."""
    g = G().manual_seed(0)
    x = torch.rand(40, 1, generator=g, dtype=torch.float64)
    return ds.mlp(1, 1, depth=2, width=5, activation="tanh", seed=0).double(), mse, x, \
        torch.sin(4 * x)


def _convnet(seed=0):
    """A conv net with batch norm in eval mode (running statistics far from 0 and 1)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3 * 4 * 4, 3)).double()
    bn = net[1]
    bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1]))
    bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    return net.eval()


def _classification():
    g = G().manual_seed(1)
    x = torch.randn(40, 1, 6, 6, generator=g, dtype=torch.float64)
    return _convnet(), F.cross_entropy, x, torch.randint(0, 3, (40,), generator=g)


PROBLEMS = {"mlp-mse": _regression, "cnn-bn-ce": _classification}


def _loader(x, y, batch=16, shuffle=False):
    """Batches of 16, 16 and 8: the uneven last batch checks the n_b / N weights."""
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=shuffle)


class _Dicts(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"inputs": self.x[i], "labels": self.y[i]}


def _results(model, loss, data):
    """Every probe's answer on ``data``, as tensors."""
    theta = get_theta(model)
    v = torch.randn(theta.numel(), generator=G().manual_seed(2), dtype=theta.dtype)
    d1 = torch.randn(theta.numel(), generator=G().manual_seed(3), dtype=theta.dtype)
    d2 = torch.randn(theta.numel(), generator=G().manual_seed(4), dtype=theta.dtype)
    sharp = sharpness(model, loss, data, eps=1e-2, steps=3, restarts=1)
    return {
        "gradient": full_gradient(model, loss, data),
        "hvp": hvp(model, loss, data)(v),
        "hvp fwd-rev": hvp(model, loss, data, method="fwd-rev")(v),
        "eigenvalues": hessian_eigenvalues(model, loss, data, k=2, tol=1e-12).values,
        "trace": torch.tensor(hessian_trace(model, loss, data, samples=12, seed=5).estimate),
        "density": spectral_density(model, loss, data, steps=8, probes=2, seed=6).weights,
        "sharpness": torch.tensor([sharp.loss, sharp.max_loss]),
        "surface": torch.as_tensor(surface(model, loss, data, (d1, d2), span=(-0.1, 0.1),
                                           resolution=3, chunk=2).loss),
        "hessian": hessian(model, loss, data),
    }


def _assert_all_close(got, want, **tol):
    for k in want:
        torch.testing.assert_close(got[k], want[k], **(tol or TIGHT), msg=k)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_a_streamed_loader_equals_the_tensors_in_memory(problem):
    model, loss, x, y = PROBLEMS[problem]()
    _assert_all_close(_results(model, loss, _loader(x, y)), _results(model, loss, (x, y)))


@pytest.mark.parametrize("problem", PROBLEMS)
def test_dict_batches_with_a_model_loss_equal_the_pair_form(problem):
    model, loss, x, y = PROBLEMS[problem]()

    def dict_loss(m, b):
        return loss(m(b["inputs"]), b["labels"])

    want = _results(model, loss, (x, y))
    _assert_all_close(_results(model, dict_loss, {"inputs": x, "labels": y}), want)
    _assert_all_close(_results(model, dict_loss, DataLoader(_Dicts(x, y), batch_size=16)), want)
    # (x, y) batches with loss(model, batch) need the marker: a plain function there is
    # loss_fn(output, target).
    marked = model_loss(lambda m, b: loss(m(b[0]), b[1]))
    _assert_all_close(_results(model, marked, _loader(x, y)), want)


def test_a_loss_module_is_accepted_everywhere_and_equals_the_function():
    model, _, x, y = _classification()
    module = _results(model, nn.CrossEntropyLoss(), _loader(x, y))
    _assert_all_close(module, _results(model, F.cross_entropy, _loader(x, y)), rtol=0, atol=0)
    other = _convnet(seed=1)
    data = ds.data.Data(x, y, x[:10], y[:10], "toy", "classification", 3)
    a = interpolate(model, other, nn.CrossEntropyLoss(), data, [0.0, 0.5, 1.0])
    b = interpolate(model, other, F.cross_entropy, data, [0.0, 0.5, 1.0])
    assert (a.train_loss == b.train_loss).all() and (a.test_acc == b.test_acc).all()


@pytest.mark.parametrize("problem", PROBLEMS)
def test_interpolation_on_a_stream_and_on_dicts_equals_the_data_set(problem):
    model, loss, x, y = PROBLEMS[problem]()
    loss = F.mse_loss if loss is mse else loss  # interpolate needs reduction="none"
    other = _convnet(seed=1) if problem == "cnn-bn-ce" else ds.mlp(
        1, 1, depth=2, width=5, activation="tanh", seed=1).double()
    task = "classification" if problem == "cnn-bn-ce" else "regression"
    data = ds.data.Data(x, y, x[:8], y[:8], "toy", task, 3 if task == "classification" else None)
    alphas = [0.0, 0.25, 1.0]
    want = interpolate(model, other, loss, data, alphas)
    streamed = interpolate(model, other, loss, _loader(x, y), alphas, test=(x[:8], y[:8]),
                           chunk=2)
    dicts = interpolate(model, other, lambda m, b: loss(m(b["inputs"]), b["labels"]),
                        DataLoader(_Dicts(x, y), batch_size=16), alphas, chunk=2)
    for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
        torch.testing.assert_close(getattr(streamed, k), getattr(want, k), **TIGHT,
                                   equal_nan=True)
    torch.testing.assert_close(dicts.train_loss, want.train_loss, **TIGHT)
    assert torch.isnan(torch.as_tensor(dicts.train_acc)).all()
    assert torch.isnan(torch.as_tensor(dicts.test_loss)).all()


def test_the_dense_hessian_of_a_stream_matches_autograd_functional():
    model, loss, x, y = _classification()
    theta = get_theta(model)
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def f(t):
        parts, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            parts[k] = t[i : i + s.numel()].view(s)
            i += s.numel()
        return loss(torch.func.functional_call(model, parts, (x,)), y)

    exact = torch.autograd.functional.hessian(f, theta)
    torch.testing.assert_close(hessian(model, loss, _loader(x, y)), exact, **TIGHT)
    torch.testing.assert_close(hessian(model, lambda m, b: loss(m(b["inputs"]), b["labels"]),
                                       DataLoader(_Dicts(x, y), batch_size=7)), exact, **TIGHT)
    members = [model, _convnet(seed=1)]
    torch.testing.assert_close(ensemble_hessians(members, loss, _loader(x, y))[0], exact,
                               **TIGHT)


def test_critical_point_search_and_sensitivity_on_a_stream():
    _, loss, x, y = _regression()
    runs = [find_critical_point(ds.mlp(1, 1, depth=2, width=3, activation="tanh",
                                       seed=0).double(), loss, data, max_steps=5)
            for data in ((x, y), _loader(x, y))]
    torch.testing.assert_close(runs[1].theta, runs[0].theta, **TIGHT)
    net, _, xc, yc = _classification()
    torch.testing.assert_close(sensitivity(net, _loader(xc, yc)), sensitivity(net, xc), **TIGHT)


class _Noisy(Dataset):
    """Random augmentation: a fresh draw of noise on every access."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 1e-3 * torch.randn_like(self.x[i]), self.y[i]


def test_data_that_changes_between_passes_is_refused_with_the_fix():
    model, loss, x, y = _regression()
    shuffled = _loader(x, y, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        full_gradient(model, loss, shuffled)
    with pytest.raises(ValueError, match="shuffle=False"):
        hessian_eigenvalues(model, loss, DataLoader(_Noisy(x, y), batch_size=16), k=1)
    # a batch of the same samples in another order has the same sum, not the same fingerprint
    swapped = [(x[:20], y[:20]), (x[20:], y[20:])]
    data = Batches(swapped)
    swapped[0] = (x[:20].flip(0), y[:20].flip(0))
    with pytest.raises(ValueError, match="differs from the first pass"):
        full_gradient(model, loss, data)
    with pytest.raises(ValueError, match="one-shot iterator"):
        full_gradient(model, loss, ((x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)))


def test_batch_size_is_the_first_tensors_leading_dimension_or_the_override():
    x, y = torch.zeros(5, 3), torch.zeros(5)
    assert batch_size({"mask": torch.ones(5, 7), "x": torch.zeros(2)}) == 5
    assert batch_size((x, y)) == 5 and batch_size(x) == 5
    data = Batches([{"ids": x[:2]}, {"ids": x[2:]}])
    assert data.sizes == [2, 3] and data.weights == [0.4, 0.6]
    tokens = Batches(data, size=lambda b: 10 * len(b["ids"]))
    assert tokens.total == 50 and tokens.weights == [0.4, 0.6]
    with pytest.raises(ValueError, match="empty"):
        Batches([])


def test_the_batch_size_override_sets_the_weights():
    """Weighting by a custom size is the weighted mean of the batch losses."""
    model, loss, x, y = _regression()
    parts = [(x[:10], y[:10]), (x[10:], y[10:])]
    grads = [full_gradient(model, loss, p) for p in parts]
    got = full_gradient(model, loss, Batches(parts, size=lambda b: 1))  # equal weights
    torch.testing.assert_close(got, (grads[0] + grads[1]) / 2, **TIGHT)


def test_a_loss_module_needs_pair_batches():
    model, _, x, y = _classification()
    with pytest.raises(TypeError, match="loss\\(model, batch\\)"):
        full_gradient(model, nn.CrossEntropyLoss(), {"inputs": x, "labels": y})


def test_probes_that_need_tensors_say_so():
    model, loss, x, y = _classification()
    with pytest.raises(TypeError, match="model input as a tensor"):
        sensitivity(model, [{"inputs": x, "labels": y}])
    data = ds.data.Data(x, y, x, y, "toy", "classification", 3)
    with pytest.raises(ValueError, match="carries its own test set"):
        interpolate(model, _convnet(seed=1), loss, data, [0.0], test=(x, y))
