"""Corrupted training labels: random labels (Zhang et al., 2017) and label noise.

Both return a new :class:`~deepscope.data.Data` whose **training** labels are changed and
whose test set is untouched (the same tensors), drawn from an explicit generator seeded with
``seed`` so the corruption is reproducible.

* :func:`random_labels` replaces a ``fraction`` of the training labels by labels drawn
  uniformly from all classes (so about 1/C of them land on the true class by chance) — Zhang
  et al.'s "random labels" at ``fraction=1``.
* :func:`label_noise` changes exactly ``round(fraction · N)`` training labels to a *different*
  class, uniformly among the other C − 1 — the noise of Nakkiran et al. (2019) under which
  test error shows double descent in model size.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import DataError


def _check(data, fraction: float) -> None:
    if data.task != "classification":
        raise DataError(f"label corruption needs a classification data set, got {data.task}")
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"fraction must lie in [0, 1], got {fraction}")


def _chosen(n: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Indices of ``round(fraction · n)`` distinct training samples."""
    return torch.randperm(n, generator=gen)[: round(fraction * n)]


def random_labels(data, fraction: float = 1.0, seed: int = 0):
    """``data`` with a ``fraction`` of its training labels replaced by uniform random labels."""
    _check(data, fraction)
    gen = torch.Generator().manual_seed(seed)
    y = data.y_train.clone().cpu()
    idx = _chosen(len(y), fraction, gen)
    y[idx] = torch.randint(0, data.num_classes, (len(idx),), generator=gen)
    return replace(data, y_train=y.to(data.y_train.device))


def label_noise(data, fraction: float = 0.15, seed: int = 0):
    """``data`` with exactly ``round(fraction · N)`` training labels moved to another class."""
    _check(data, fraction)
    gen = torch.Generator().manual_seed(seed)
    y = data.y_train.clone().cpu()
    idx = _chosen(len(y), fraction, gen)
    shift = torch.randint(1, data.num_classes, (len(idx),), generator=gen)
    y[idx] = (y[idx] + shift) % data.num_classes
    return replace(data, y_train=y.to(data.y_train.device))
