"""The gradient of the loss with respect to all parameters, on a batch or a whole data set.

Conventions shared by every probe:

* ``loss_fn(output, target)`` returns the **mean** loss over the samples it is given
  (``F.mse_loss``, ``F.cross_entropy`` with their default reduction);
* ``batch`` is either one ``(x, y)`` pair or an iterable of ``(x, y)`` chunks that together
  form the data set. With chunks, the loss is the per-sample mean over all of them,
  L = Σ_c (n_c / N) L_c, so every derivative is the same weighted sum and memory is bounded
  by one chunk.

The gradient norm is ‖∇θL‖₂ = √(Σ_p Σ g_p²) over **all** parameters, weights and biases —
the original report used √(Σ_p ‖g_p‖⁴) and read it before ``backward()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.func import grad

from ..params import objective

Batch = tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]]
LossFn = Callable[[Tensor, Tensor], Tensor]


def chunks(batch: Batch, dtype: torch.dtype | None = None) -> list[tuple[Tensor, Tensor, float]]:
    """``[(x_c, y_c, n_c / N)]`` for one ``(x, y)`` pair or an iterable of chunks.

    With ``dtype``, ``x`` and a floating-point ``y`` are cast to it (class labels stay).
    """
    if isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[0], Tensor):
        parts, total = [(batch[0], batch[1])], None
    else:
        parts = [(x, y) for x, y in batch]
        if not parts:
            raise ValueError("batch is empty: give (x, y) or a non-empty iterable of (x, y)")
        total = sum(len(x) for x, _ in parts)
    if dtype is not None:
        parts = [(x.to(dtype), y.to(dtype) if y.is_floating_point() else y) for x, y in parts]
    return [(x, y, 1.0 if total is None else len(x) / total) for x, y in parts]


def full_gradient(model: nn.Module, loss_fn: LossFn, batch: Batch,
                  dtype: torch.dtype | None = None) -> Tensor:
    """∇θL as a flat vector of shape ``(P,)`` (order of :mod:`deepscope.params`)."""
    total = None
    for x, y, w in chunks(batch):
        f, theta = objective(model, loss_fn, (x.to(dtype) if dtype else x, y))
        g = grad(f)(theta.to(dtype) if dtype else theta) * w
        total = g if total is None else total + g
    return total


def grad_norm(model: nn.Module, loss_fn: LossFn, batch: Batch) -> float:
    """‖∇θL‖₂ over all parameters, for the loss on ``batch`` (one pair or chunks)."""
    return float(full_gradient(model, loss_fn, batch).norm())
