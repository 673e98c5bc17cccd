"""The gradient of the loss with respect to all parameters, on a batch or a whole data set.

Conventions shared by every probe (:mod:`deepscope.probes.batches`): ``batch`` is one batch
(``(x, y)``, a dict or tuple of tensors) or an iterable / ``DataLoader`` of batches, re-iterated
per pass; the loss is ``loss_fn(output, target)`` (function or ``nn.Module``) or
``loss(model, batch)``, each the batch mean, and the loss over the data is the per-sample
mean L = Σ_b (n_b / N) L_b, so every derivative is the same weighted sum and memory is
bounded by one batch.

The gradient norm is ‖∇θL‖₂ = √(Σ_p Σ g_p²) over **all** parameters, weights and biases —
the original report used √(Σ_p ‖g_p‖⁴) and read it before ``backward()``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import grad

from ..params import Selection
from .batches import Data, Loss, start


def full_gradient(model: nn.Module, loss_fn: Loss, batch: Data,
                  dtype: torch.dtype | None = None, *, params: Selection = None,
                  mode: str = "eval") -> Tensor:
    """∇θL as a flat vector of shape ``(P,)`` (order of :mod:`deepscope.params`), one pass.

    ``params`` selects the parameters (a glob, names or a predicate,
    :func:`deepscope.params.select`; P is then their count), the others held fixed;
    ``mode``: the model runs in ``"eval"`` (default) or ``"train"`` mode, its own restored.
    """
    f, data, theta = start(model, loss_fn, batch, dtype, params, mode)
    total = None
    for b, w in data:
        g = grad(f)(theta, b) * w
        total = g if total is None else total + g
    return total


def grad_norm(model: nn.Module, loss_fn: Loss, batch: Data, *, params: Selection = None,
              mode: str = "eval") -> float:
    """‖∇θL‖₂ over all parameters (or the ``params`` selected), for the loss on ``batch``
    (any data of :mod:`.batches`); ``mode`` as in :func:`full_gradient`."""
    return float(full_gradient(model, loss_fn, batch, params=params, mode=mode).norm())
