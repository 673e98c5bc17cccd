"""The data and the loss of every probe: one adapter.

**Data.** A probe's ``batch`` is any of

* one batch held in memory: an ``(x, y)`` pair of tensors, a tuple or list of tensors
  ``(x, y, w, ...)``, a dict of tensors (``{"input_ids": ..., "labels": ...}``) or one tensor;
* several batches: a list of batches, or any re-iterable such as a
  ``torch.utils.data.DataLoader``. It is iterated once per pass over the data — a gradient is
  one pass, a Hessian-vector product one pass, Lanczos one per step — and never turned into a
  list, so memory is bounded by one batch;
* a :class:`Batches` built from either, to say how a batch's size is read.

The loss over the data is the per-sample mean over all batches, L = Σ_b (n_b / N) L_b, with
L_b the batch's mean loss and n_b its size: by default the leading dimension of its first
tensor (``x`` of ``(x, y)``; of a dict, the first value in insertion order that is a tensor),
or ``Batches(data, size=fn)`` for another rule (e.g. tokens, not sequences).

**Loss.** Either ``loss_fn(output, target)`` — a function (``F.cross_entropy``) or an
``nn.Module`` (``nn.CrossEntropyLoss()``) — applied to ``model(x)`` and ``y`` of ``(x, y)``
batches; or ``loss(model, batch)``, which calls the model itself, for anything else
(``lambda m, b: m(**b).loss``). A loss is taken as ``loss(model, batch)`` when it is wrapped
by :func:`model_loss`, or when the batches are not ``(x, y)`` pairs of tensors (a dict, a
triple, one tensor), where ``loss_fn(output, target)`` could not apply. Both return the mean
over the batch's samples.

**Every pass must see the same data.** A loader that shuffles or augments at random gives
another data set, hence another loss, on every pass, and the products of a Lanczos run would
belong to different matrices. :class:`Batches` therefore reads the data once when it is built
(sizes, for the weights n_b / N, and a fingerprint per batch: shapes, dtypes, the sum and a
position-weighted sum of every tensor) and compares every later pass with that first one,
refusing a changed batch, order or count with an error naming the fix.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..params import Selection, check_mode, get_theta, theta_loss, theta_model_loss

Batch = Any
"""One batch: an ``(x, y)`` pair, a tuple/list of tensors, a dict of tensors or a tensor."""

Data = Any
"""What probes accept as ``batch``: one :data:`Batch`, a list or re-iterable (``DataLoader``)
of them, or a :class:`Batches`."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(output, target)``: the batch-mean loss of the model's output (function or module)."""


@dataclass(frozen=True)
class ModelLoss:
    """``loss(model, batch)``, the batch-mean loss of a model that the loss calls itself."""

    fn: Callable[[nn.Module, Batch], Tensor]

    def __call__(self, model: nn.Module, batch: Batch) -> Tensor:
        return self.fn(model, batch)


Loss = LossFn | nn.Module | ModelLoss
"""A probe's loss: ``loss_fn(output, target)``, or ``loss(model, batch)`` (see the module)."""


def model_loss(fn: Callable[[nn.Module, Batch], Tensor]) -> ModelLoss:
    """Mark ``fn`` as ``loss(model, batch)`` (needed only for ``(x, y)`` batches, where a plain
    function is taken as ``loss_fn(output, target)``)."""
    return fn if isinstance(fn, ModelLoss) else ModelLoss(fn)


# --- one batch ------------------------------------------------------------------------------


def is_batch(data: Data) -> bool:
    """Whether ``data`` is one batch (a tensor, a dict, or a tuple/list starting with a tensor)
    rather than a collection of batches."""
    if isinstance(data, Tensor | Mapping):
        return True
    return isinstance(data, tuple | list) and len(data) > 0 and isinstance(data[0], Tensor)


def is_pair(batch: Batch) -> bool:
    """Whether ``batch`` is an ``(x, y)`` pair of tensors (a 2-tuple or 2-list)."""
    return (isinstance(batch, tuple | list) and len(batch) == 2
            and all(isinstance(t, Tensor) for t in batch))


def tensors(batch: Batch) -> list[Tensor]:
    """The tensors of a batch, depth first, in order (dict values in insertion order)."""
    if isinstance(batch, Tensor):
        return [batch]
    if isinstance(batch, Mapping):
        return [t for v in batch.values() for t in tensors(v)]
    if isinstance(batch, tuple | list):
        return [t for v in batch for t in tensors(v)]
    return []


def batch_size(batch: Batch) -> int:
    """n_b: the leading dimension of the batch's first tensor (see :func:`tensors`)."""
    for t in tensors(batch):
        if t.dim() > 0:
            return t.shape[0]
    raise ValueError(f"cannot read the size of a batch of type {type(batch).__name__} with no "
                     "tensor of dimension ≥ 1; pass Batches(data, size=fn)")


def cast(batch: Batch, dtype: torch.dtype | None) -> Batch:
    """The batch with its floating-point tensors in ``dtype`` (integer ones, e.g. class labels
    or token ids, stay); the batch itself when ``dtype`` is None."""
    if dtype is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(dtype) if batch.is_floating_point() else batch
    if isinstance(batch, Mapping):
        return {k: cast(v, dtype) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(cast(v, dtype) for v in batch)
    return batch


def fingerprint(batch: Batch) -> tuple:
    """A cheap summary that changes when a batch's content or the order of its samples does:
    per tensor its shape, dtype, sum, and the sum of per-sample sums weighted by position."""
    out = []
    for t in tensors(batch):
        d = t.detach().double().reshape(max(1, t.shape[0] if t.dim() else 1), -1).sum(1)
        pos = torch.arange(1, len(d) + 1, dtype=d.dtype, device=d.device)
        out.append((tuple(t.shape), t.dtype, float(d.sum()), float((d * pos).sum())))
    return tuple(out)


# --- the data -------------------------------------------------------------------------------


CHANGED = ("use shuffle=False (or a fixed sampler) and no random augmentation: probes iterate "
           "the data once per pass and need the same batches in the same order every pass")


class Batches:
    """The data of a probe: one batch or a re-iterable stream of batches, with weights.

    Iterating gives ``(batch, n_b / N)`` for every batch, in order, with floating tensors in
    ``dtype``; a stream is re-iterated for each pass and checked against the first pass.

    Args:
        data: see :data:`Data` (a :class:`Batches` is re-wrapped with its rule unless ``size``).
        size: ``size(batch) -> n_b``; default :func:`batch_size`.
        dtype: of the floating-point tensors handed out (default None: as they are).

    Attributes:
        single: one batch in memory (no passes to check; weight 1).
        sizes: ``n_b`` per batch; ``total`` N = Σ n_b; ``pairs``: every batch is ``(x, y)``.
    """

    def __init__(self, data: Data, *, size: Callable[[Batch], int] | None = None,
                 dtype: torch.dtype | None = None) -> None:
        if isinstance(data, Batches):
            size, data = size or data.size, data.data
        self.data, self.size, self.dtype = data, size or batch_size, dtype
        self.single = is_batch(data)
        if self.single:
            self.sizes, self.prints, self.pairs = [size(data) if size else 1], [], is_pair(data)
            self.weights = [1.0]
            self._cast = cast(data, dtype)  # cast once: every pass hands out the same batch
        else:
            self._scan()
        self.total = sum(self.sizes)

    def _scan(self) -> None:
        """The first pass: sizes, weights and fingerprints, no model involved."""
        if not isinstance(self.data, Iterable):
            raise TypeError(f"batch must be a batch or an iterable of batches, got "
                            f"{type(self.data).__name__}")
        self.sizes, self.prints, self.pairs = [], [], True
        for b in self.data:
            self.sizes.append(self.size(b))
            self.prints.append(fingerprint(b))
            self.pairs &= is_pair(b)
        if not self.sizes:
            raise ValueError("batch is empty: give (x, y) or a non-empty iterable of batches")
        total = sum(self.sizes)
        self.weights = [n / total for n in self.sizes]

    def __len__(self) -> int:
        return len(self.sizes)

    def cast(self, dtype: torch.dtype | None) -> Batches:
        """The same data handed out in ``dtype`` (no new scan); ``self`` when None."""
        if dtype is None or dtype == self.dtype:
            return self
        out = copy.copy(self)
        out.dtype = dtype
        if self.single:
            out._cast = cast(self.data, dtype)
        return out

    def __iter__(self) -> Iterator[tuple[Batch, float]]:
        if self.single:
            yield self._cast, 1.0
            return
        seen = 0
        for i, b in enumerate(self.data):
            if i >= len(self.prints) or fingerprint(b) != self.prints[i]:
                raise ValueError(f"the data changed between passes (batch {i} differs from "
                                 f"the first pass): {CHANGED}")
            seen += 1
            yield cast(b, self.dtype), self.weights[i]
        if seen != len(self.prints):
            raise ValueError(f"a pass gave {seen} batches, the first gave {len(self.prints)}: "
                             "a one-shot iterator (generator) cannot be re-iterated; pass a "
                             f"list or a DataLoader. Otherwise {CHANGED}")


def batches(data: Data, dtype: torch.dtype | None = None) -> Batches:
    """``data`` as :class:`Batches` in ``dtype`` (scanned once; a :class:`Batches` is reused)."""
    if isinstance(data, Batches):
        return data.cast(dtype)
    return Batches(data, dtype=dtype)


# --- the loss as a function of θ -----------------------------------------------------------


def is_model_loss(loss: Loss, data: Batches) -> bool:
    """Whether ``loss`` is called as ``loss(model, batch)`` on ``data`` (see the module)."""
    if isinstance(loss, ModelLoss):
        return True
    if data.pairs:
        return False
    if isinstance(loss, nn.Module):
        raise TypeError(f"the loss module {type(loss).__name__} is loss_fn(output, target), "
                        "which needs (x, y) batches; for other batches pass "
                        "loss(model, batch), e.g. lambda m, b: m(**b).loss")
    return True


def theta_objective(model: nn.Module, loss: Loss, data: Batches, params: Selection = None,
                    mode: str | None = None) -> Callable[[Tensor, Batch], Tensor]:
    """``f(θ, batch)``: the batch-mean loss at flat θ ``(P,)`` of the ``params`` selected
    (:func:`deepscope.params.select`), the model run in ``mode`` (None: as it is), a pure
    function for ``torch.func`` (``grad``, ``jvp``, ``vmap`` over θ, the batch unbatched)."""
    if is_model_loss(loss, data):
        return theta_model_loss(model, loss, params, mode)
    f = theta_loss(model, loss, params, mode)

    def pair(theta: Tensor, batch: Batch) -> Tensor:
        x, y = batch
        return f(theta, x, y)

    return pair


def twice_differentiable(f: Callable[[Tensor, Batch], Tensor]
                         ) -> Callable[[Tensor, Batch], Tensor]:
    """``f`` with ``F.scaled_dot_product_attention`` on its math backend, for probes that
    differentiate the loss twice (Hessian products, dense Hessians). The fused CPU and CUDA
    attention kernels, which HuggingFace models and ``nn.MultiheadAttention`` pick by default,
    have a backward pass with no derivative of its own ("derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"); the math
    backend is plain matrix products and a softmax, the same function of θ."""

    def f2(theta: Tensor, batch: Batch) -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return f(theta, batch)

    return f2


def start(model: nn.Module, loss: Loss, data: Data, dtype: torch.dtype | None = None,
          params: Selection = None, mode: str | None = "eval"
          ) -> tuple[Callable[[Tensor, Batch], Tensor], Batches, Tensor]:
    """What every probe starts from: ``(f, batches, θ)`` — the loss ``f(θ, batch)`` with the
    model in ``mode``, the data as :class:`Batches` in ``dtype``, and the model's θ ``(P,)``
    of the ``params`` selected, in ``dtype`` (default: the model's own)."""
    check_mode(mode)
    data = batches(data, dtype)
    theta = get_theta(model, params)
    f = theta_objective(model, loss, data, params, mode)
    return f, data, theta.to(dtype) if dtype else theta


BATCH_NORM = nn.modules.batchnorm._BatchNorm


def batch_norms(model: nn.Module) -> list[str]:
    """The names of the model's batch-norm modules (any ``_BatchNorm``)."""
    return [n or type(m).__name__ for n, m in model.named_modules() if isinstance(m, BATCH_NORM)]


def refuse_batch_norm(model: nn.Module, mode: str | None) -> None:
    """Refuse curvature of a model with batch norm in train mode, naming why and the fix."""
    norms = batch_norms(model) if mode == "train" else []
    if norms:
        raise ValueError(
            f"mode='train' with batch norm ({', '.join(norms[:3])}): in train mode batch norm "
            "normalises with the statistics of the batch itself, so the loss depends on how "
            "the data is split into batches and Hessian products are not those of one fixed "
            "function of θ; use mode='eval' (the running statistics, held fixed)")


def subsets(data: Data, k: int) -> list[Batches]:
    """The data split into ``k`` disjoint subsets, round-robin by batch: subset j holds
    batches j, j + k, j + 2k, ... (each re-iterated from the data per pass, never listed, so
    a pass over one subset reads the whole stream and keeps its share; the model sees only
    that share). Needs at least ``k`` batches; a single batch in memory cannot be split."""
    whole = batches(data)
    if k < 2 or whole.single or len(whole) < k:
        n = 1 if whole.single else len(whole)
        raise ValueError(f"subsets={k} needs k ≥ 2 and at least k batches, the data has {n}; "
                         "pass a list of batches or a DataLoader (subsets are whole batches)")
    return [Batches(RoundRobin(whole.data, k, j), size=whole.size, dtype=whole.dtype)
            for j in range(k)]


@dataclass(frozen=True)
class RoundRobin:
    """Batches ``j, j + k, ...`` of ``data``, re-iterable as ``data`` is."""

    data: Iterable
    k: int
    j: int

    def __iter__(self) -> Iterator[Batch]:
        for i, b in enumerate(self.data):
            if i % self.k == self.j:
                yield b


def inputs(batch: Batch) -> Tensor:
    """The model input of a batch: the tensor itself, or the first element of a tuple/list
    (``x`` of ``(x, y)``); a dict has no single input."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, tuple | list) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"this probe needs the model input as a tensor (x or (x, y) batches), "
                    f"got {type(batch).__name__}")
