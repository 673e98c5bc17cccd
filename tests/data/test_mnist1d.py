"""MNIST-1D: generated offline, verified by checksum, equal to the ``mnist1d`` package's data."""

import builtins
import inspect
import random
import socket

import numpy as np
import pytest
import torch

from deepscope.data import NAMES, load, mnist1d, stratified_indices
from deepscope.errors import DataError

torch.set_num_threads(1)

# Class counts of the canonical split (the samples are shuffled before the 4 000 / 1 000 cut).
TRAIN_COUNTS = np.array([398, 396, 411, 394, 394, 402, 401, 404, 402, 398])
TEST_COUNTS = np.array([102, 104, 89, 106, 106, 98, 99, 96, 98, 102])


@pytest.fixture(scope="module")
def canonical() -> mnist1d.SequenceArrays:
    return mnist1d.load_arrays()


def test_load_gives_one_channel_sequences_and_int_labels():
    data = load("mnist1d")
    assert data.name == "mnist1d" and data.task == "classification" and data.num_classes == 10
    assert data.x_train.shape == (4000, 1, 40) and data.x_test.shape == (1000, 1, 40)
    assert data.input_shape == (1, 40)
    assert data.x_train.dtype == data.x_test.dtype == torch.float32
    assert data.y_train.dtype == data.y_test.dtype == torch.int64
    assert np.bincount(data.y_train.numpy()).tolist() == TRAIN_COUNTS.tolist()
    assert np.bincount(data.y_test.numpy()).tolist() == TEST_COUNTS.tolist()
    # Standardised over all 5 000 sequences together, as the package does.
    x = torch.cat([data.x_train, data.x_test]).double()
    assert abs(x.mean().item()) < 1e-6 and abs(x.std(correction=0).item() - 1) < 1e-6
    assert "mnist1d" in NAMES


def test_generation_is_deterministic_and_the_cache_is_protected(canonical):
    again = mnist1d.generate()
    for a, b in zip(canonical, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not canonical.x_train.flags.writeable
    first = load("mnist1d")
    first.x_train[0] += 1  # a writable copy: the next load is unaffected
    assert torch.equal(load("mnist1d").x_train[0, 0],
                       torch.from_numpy(canonical.x_train[0].astype(np.float32)))


def test_generation_matches_its_checksum(canonical):
    assert mnist1d.checksum(canonical) == mnist1d.SHA256
    mnist1d.verify(mnist1d.generate())  # fresh arrays, not only the cached ones


def test_checksum_ignores_rounding_noise_but_not_real_changes(canonical):
    x = canonical.x_train.copy()
    x *= 1 + 1e-13  # far more than machine-to-machine differences in exp/sum (≈ 1e-16)
    nudged = canonical._replace(x_train=x)
    assert mnist1d.checksum(nudged) == mnist1d.SHA256
    x = canonical.x_train.copy()
    x[17, 5] += 0.01
    with pytest.raises(DataError, match=r"differs from the canonical set.*Fix: reinstall"):
        mnist1d.verify(canonical._replace(x_train=x))
    y = canonical.y_test.copy()
    y[0] = (y[0] + 1) % 10  # one wrong label
    assert mnist1d.checksum(canonical._replace(y_test=y)) != mnist1d.SHA256


def test_checksum_margin(canonical):
    """No input lies near a rounding boundary of the checksum, so float noise of another CPU
    or numpy build (≈ 1e-15) cannot flip a rounded value."""
    x = np.concatenate([canonical.x_train, canonical.x_test]).ravel()
    scaled = x * 10.0**mnist1d.CHECKSUM_DECIMALS
    margin = np.abs(scaled - np.floor(scaled) - 0.5).min() / 10.0**mnist1d.CHECKSUM_DECIMALS
    assert margin > 2e-9


def test_a_wrong_checksum_is_a_data_error_naming_the_fix(monkeypatch):
    monkeypatch.setattr(mnist1d, "SHA256", "0" * 64)
    mnist1d._canonical.cache_clear()
    try:
        with pytest.raises(DataError, match=r"expected 0{64}.*Fix:"):
            load("mnist1d")
    finally:
        mnist1d._canonical.cache_clear()  # the next caller regenerates the verified set


def test_no_network_and_no_files(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("MNIST-1D generation tried to open a socket or a file")

    mnist1d._canonical.cache_clear()
    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    data = load("mnist1d", data_dir="/nonexistent", download=True)  # both ignored
    assert data.n_train == 4000


@pytest.mark.parametrize("k", [10, 123, 1000])
def test_subset_is_stratified_and_seeded(canonical, k):
    data = load("mnist1d", subset=k, test_subset=200, seed=3)
    assert data.n_train == k and data.n_test == 200
    counts = np.bincount(data.y_train.numpy(), minlength=10)
    assert np.all(np.abs(counts - k * TRAIN_COUNTS / 4000) < 1)
    counts = np.bincount(data.y_test.numpy(), minlength=10)
    assert np.all(np.abs(counts - 200 * TEST_COUNTS / 1000) < 1)
    index = stratified_indices(canonical.y_train, k, seed=[3, 0])
    torch.testing.assert_close(data.x_train[:, 0],
                               torch.from_numpy(canonical.x_train[index].astype(np.float32)))
    assert torch.equal(data.y_train, torch.from_numpy(canonical.y_train[index]))
    again, other = load("mnist1d", subset=k, seed=3), load("mnist1d", subset=k, seed=4)
    assert torch.equal(again.x_train, data.x_train)
    assert not torch.equal(other.x_train, data.x_train)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"subset": 4001}, "from 1 to 4000.*Fix"), ({"subset": 0}, "from 1 to 4000.*Fix"),
    ({"subset": 2.5}, "from 1 to 4000"), ({"test_subset": 1001}, "from 1 to 1000.*Fix"),
    ({"seed": -1}, "seed"), ({"seed": "0"}, "seed"),
])
def test_bad_arguments_are_data_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        load("mnist1d", **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_samples": 5}, "num_samples.*Fix"), ({"num_samples": 100.0}, "num_samples"),
    ({"train_split": 1.0}, "train_split.*Fix"), ({"train_split": 0.0001}, "train_split"),
    ({"padding": (60, 36)}, "padding.*Fix"), ({"max_translation": 0}, "max_translation.*Fix"),
])
def test_bad_generation_arguments_are_data_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        mnist1d.generate(**kwargs)


@pytest.mark.parametrize("name", ["mnist-1d", "MNIST1D", "mnist_1d"])
def test_near_names_suggest_mnist1d(name):
    with pytest.raises(DataError, match="did you mean 'mnist1d'"):
        load(name)


def test_generate_defaults_are_the_packages_arguments():
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(mnist1d.generate).parameters.items()}
    assert defaults == mnist1d.DEFAULTS


def test_other_arguments_give_other_data():
    small = mnist1d.generate(num_samples=200, seed=0, shuffle_seq=True)
    assert small.x_train.shape == (160, 40) and small.x_test.shape == (40, 40)
    assert np.bincount(np.concatenate([small.y_train, small.y_test])).tolist() == [20] * 10
    longer = mnist1d.generate(num_samples=100, final_seq_length=64, seed=1)
    assert longer.x_train.shape == (80, 64)


@pytest.mark.parametrize("kwargs", [{}, {"seed": 7, "shuffle_seq": True, "num_samples": 600}])
def test_equals_the_mnist1d_package(kwargs):
    """Our arrays equal those of Greydanus's package (mnist1d 0.0.2.post1), generated with
    ``make_dataset`` (never its download), when that package is installed."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # absent, or its dependencies (scipy, requests, matplotlib) are
        pytest.skip(f"the mnist1d package is not installed ({e}); "
                    "pip install mnist1d==0.0.2.post1 to compare")
    args = get_dataset_args()
    for key, value in kwargs.items():
        setattr(args, key, value)
    # The package seeds and draws from the global generators; leave them as they were.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        theirs = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    ours = mnist1d.generate(**kwargs)
    for mine, key in zip(ours, ("x", "y", "x_test", "y_test"), strict=True):
        assert mine.shape == theirs[key].shape
        np.testing.assert_allclose(mine, theirs[key], rtol=0, atol=1e-12)
