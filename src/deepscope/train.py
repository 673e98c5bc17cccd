"""One training loop, vectorised over an ensemble.

Eight PCA runs, a hundred minimal-ratio runs and five seeds of a function fit are the same
computation repeated over members that differ only in their initialisation and batch order.
``train`` therefore always trains a stack of ``M`` members at once, on the ensemble core
(:class:`deepscope.ensemble.Ensemble`, shared with the probes):

* each parameter of the architecture is one leaf tensor of shape ``(M, *shape)`` holding that
  parameter of every member (``torch.func.stack_module_state``, in a layout the optimiser
  steps fast: see :mod:`deepscope.ensemble`);
* the per-member losses ``L_m`` come from ``vmap(functional_call)`` over the leading
  dimension, and one ``backward()`` of ``Σ_m L_m`` gives every member its own gradient at once,
  because the members share no parameters (∂/∂θ_m Σ_k L_k = ∇L_m);
* MLPs (an ``nn.Sequential`` of ``nn.Linear`` and element-wise activations, as
  :func:`deepscope.mlp` builds) skip ``vmap`` and autograd's per-operation graph: their layers
  are batched matrix products with a hand-written backward, all of θ one ``(M, P)`` leaf that
  Adam steps in one fused kernel (``member_batching="mlp"``, chosen by ``"auto"``: 2.8× as
  fast as ``vmap(functional_call)`` + fused Adam for 100 members of 141 parameters, 1 thread,
  measured in ``benchmarks/ensemble.py``; the same numbers to rounding, tested in float64);
* ``torch.optim.Adam`` / ``SGD`` step the stacked leaves directly. Both update rules are
  element-wise, so stepping the stack is exactly stepping each member with its own optimiser —
  and it is done in a few fused kernels instead of ``M × layers`` small ones;
* for convolutional nets on the CPU, ``vmap`` turns each convolution into a grouped one, which
  oneDNN runs 1.2–1.9× slower than separate convolutions (measured on 2 cores, CNNs of 10k
  parameters, 2 members); there the losses are computed member by member instead
  (``member_batching="loop"``) from the same stacked leaves, with one backward and one
  optimiser step — the same numbers, another schedule.

Batch order: member ``m`` draws its permutation of the training set each epoch from its own
generator, :func:`batch_generator` ``(seed, m)``, so a plain loop can reproduce it exactly
(the test suite does, to 1e-8 in float64).

Everything the studies plot is recorded here and nothing else: per-epoch mean loss and
accuracy on the full train and test sets (eval mode, ``no_grad``, the same function for both),
optionally the loss and gradient norm of every step, and optionally θ snapshots (the flat
vector of :mod:`deepscope.params`). All other probes are applied to the trained models
afterwards.

The loop in :func:`train` is short; its pieces are named helpers below it: argument checks,
the epoch's batches, the evaluation, the optimiser step with per-member rates and frozen
members (:class:`_Stepper`), and the records with the divergence and ``until`` bookkeeping
(:class:`_Recorder`).

* ``until``: a member that meets the criterion at an evaluation is frozen from then on (its θ,
  so its later metrics, stay as they were) and its ``reached_epoch`` recorded; training ends
  early once no member is still training, and the remaining evaluations and snapshots repeat
  the frozen values — exactly what continuing would record.
* ``eval_batch_size`` defaults to the training batch size: chunks much larger than the
  training batch would allocate buffers the training never needed. On Linux, buffers over
  32 MB are fresh ``mmap`` pages each time, and evaluation in 1024-image chunks spent as much
  time in page faults as in arithmetic (measured: 12.4 s system time of 13.9 s).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import Data
from .ensemble import Ensemble, check_members
from .errors import DivergenceWarning

LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss,
    "cross_entropy": F.cross_entropy,
}


METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")
"""The names of the per-evaluation metrics a :class:`Trace` records, each ``(M, T)``."""


@dataclass
class Trace:
    """What ``train`` recorded, as NumPy arrays. ``M`` members, ``T`` evaluations, ``S`` steps,
    ``K`` snapshots, ``P`` parameters.

    Attributes:
        epoch: ``(T,)`` epoch after which each evaluation was taken (0 = at initialisation).
        train_loss, test_loss: ``(M, T)`` per-sample mean loss over the full train/test set.
        train_acc, test_acc: ``(M, T)`` accuracy in [0, 1]; NaN for regression.
        step_loss, grad_norm: ``(M, S)`` loss of each optimiser step's batch and ‖∇θL‖₂ of that
            step's gradient over all parameters (only if ``record_steps``; else ``(M, 0)``).
        snapshot_epoch: ``(K,)`` epochs of the θ snapshots.
        snapshots: ``(M, K, P)`` flat θ of each member at those epochs (float32).
        diverged_epoch: ``(M,)`` epoch in which a member's loss became NaN/inf, −1 if never.
        reached_epoch: ``(M,)`` epoch of the first evaluation at which a member met the
            ``until`` criterion (from then on it was frozen), −1 if never (or no criterion).
        seconds: wall time of the whole call.
    """

    epoch: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    step_loss: np.ndarray
    grad_norm: np.ndarray
    snapshot_epoch: np.ndarray
    snapshots: np.ndarray
    diverged_epoch: np.ndarray
    reached_epoch: np.ndarray
    seconds: float = 0.0


def batch_generator(seed: int, member: int) -> torch.Generator:
    """The generator that orders member ``member``'s batches in a run with ``seed``."""
    state = np.random.SeedSequence([seed, member]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def _make_optimizer(name: str, leaves: list[Tensor], lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(leaves, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(leaves, lr=lr, weight_decay=weight_decay, fused=True)
    raise ValueError(f"unknown optimizer {name!r}; choose 'sgd' or 'adam'")


# --- the loop ----------------------------------------------------------------------------


def train(models: Sequence[nn.Module] | nn.Module, data: Data, *, optimizer: str = "adam",
          lr: float | Sequence[float] = 1e-3, epochs: int = 10, batch_size: int | None = None,
          momentum: float = 0.0, weight_decay: float = 0.0, loss: str | None = None,
          seed: int = 0, record_steps: bool = False, snapshot_every: int | None = None,
          eval_every: int = 1, until: tuple[str, float] | None = None,
          eval_batch_size: int | None = None, dtype: torch.dtype = torch.float32,
          device: str | torch.device | None = None, member_batching: str = "auto",
          progress: bool | None = None, desc: str = "train") -> Trace:
    """Train ``M`` models of one architecture at once; they hold the trained θ afterwards.

    Args:
        models: the members (or one model). They must share an architecture; they may differ
            in initialisation. Their parameters are overwritten with the trained values.
        data: train/test tensors (:class:`deepscope.data.Data`).
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``), as in ``torch.optim``.
        lr: learning rate, or one per member (a learning-rate grid trains as one ensemble:
            each member steps as ``torch.optim`` would with its own rate).
        momentum, weight_decay: optimiser hyper-parameters.
        epochs: passes over the training set (the cap, with ``until``).
        batch_size: ``None`` for full batch; otherwise each member reshuffles the training set
            every epoch with its own generator (:func:`batch_generator`) and steps through it in
            batches of this size (the last one may be smaller).
        loss: ``"mse"`` or ``"cross_entropy"``; default from ``data.task``.
        seed: seeds the members' batch orders.
        record_steps: also record every step's batch loss and gradient norm ‖∇θL‖₂ (read after
            the backward pass, over all parameters).
        snapshot_every: record θ of every member every this many epochs (and at epoch 0).
        eval_every: evaluate the full train and test sets every this many epochs (and at
            initialisation and the last epoch); 0 never evaluates (for timing training alone).
        until: ``("train_loss", target)`` (per-sample mean training loss ≤ target) or
            ``("train_acc", target)`` (training accuracy ≥ target), checked at every
            evaluation; each member is frozen once it meets it (module docstring).
        eval_batch_size: samples per evaluation chunk; default the training batch size (the
            full set for full-batch training; see the module docstring).
        dtype: ``torch.float32`` or ``torch.float64`` for parameters and inputs.
        device: where to train; default the models' device.
        member_batching: ``"mlp"``, ``"vmap"``, ``"loop"`` or ``"auto"`` (mlp for plain MLPs,
            loop for convolutional models on the CPU, where each is fastest, else vmap):
            :class:`~deepscope.ensemble.Ensemble`.
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        A :class:`Trace`. A member whose loss becomes NaN/inf stops updating from that step on;
        its ``diverged_epoch`` is set, its later metrics are NaN, and a warning names it.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    lrs = _check_arguments(models, lr, epochs, eval_every, batch_size, until)
    loss_fn = LOSSES[loss or ("mse" if data.task == "regression" else "cross_entropy")]
    start = time.perf_counter()
    ens = Ensemble(models, loss_fn, dtype=dtype, device=device, batching=member_batching)
    d = data.to(device=ens.device, dtype=dtype)
    n = d.x_train.shape[0]
    full_batch = batch_size is None or batch_size >= n
    eval_batch_size = eval_batch_size or (n if full_batch else batch_size)
    log = _Recorder(ens, partial(_metrics, ens, d, eval_batch_size), until, lrs,
                    _Schedule(epochs, eval_every, snapshot_every))
    stepper = _Stepper(ens, optimizer, lrs, momentum, weight_decay)
    gens = [batch_generator(seed, m) for m in range(ens.M)]
    log.record(0)
    for epoch in tqdm(range(1, epochs + 1), desc=desc, leave=False,
                      disable=None if progress is None else not progress):
        if until is not None and not record_steps and not log.training():
            # Every member met the criterion (or diverged): frozen θ gives the same metrics
            # and snapshots at every later epoch, so they are repeated instead of recomputed.
            log.repeat_frozen(epoch)
            break
        if log.training():
            for xb, yb in _epoch_batches(d, None if full_batch else batch_size, gens):
                stepper.zero_grad()
                losses = ens.losses(xb, yb, shared=full_batch)  # (M,)
                losses.sum().backward()
                log.check_divergence(losses, epoch)
                stepper.step(log.alive)
                if record_steps:
                    log.step(losses, ens.grad_norm())
        else:  # all diverged (or done, recording steps): no step taken, the trace keeps its shape
            log.nan_steps(1 if full_batch else -(-n // batch_size), record_steps)
        log.record(epoch)
    ens.write_back(models)  # the members leave holding their trained parameters
    return log.trace(time.perf_counter() - start)


# --- the pieces of the loop -----------------------------------------------------------------


def _check_arguments(models: list[nn.Module], lr: float | Sequence[float], epochs: int,
                     eval_every: int, batch_size: int | None,
                     until: tuple[str, float] | None) -> list[float]:
    """Validate ``train``'s arguments; return the learning rate of each member."""
    lrs = [float(lr)] * len(models) if isinstance(lr, int | float) else [float(v) for v in lr]
    check_members(models)
    if epochs < 0 or eval_every < 0:
        raise ValueError(f"epochs and eval_every must be ≥ 0, got {epochs} and {eval_every}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 or None (full batch), got {batch_size}")
    if len(lrs) != len(models) or not all(math.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lr must be a positive finite number or one per member "
                         f"({len(models)}), got {lr}")
    if until is not None:
        if (not isinstance(until, tuple) or len(until) != 2
                or until[0] not in ("train_loss", "train_acc")):
            raise ValueError(f"until must be ('train_loss', target) or ('train_acc', target), "
                             f"got {until!r}")
        if not eval_every:
            raise ValueError("until is checked at evaluations: it needs eval_every ≥ 1")
    return lrs


def _epoch_batches(d: Data, batch_size: int | None,
                   gens: list[torch.Generator]) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch's batches: the full set ``(N, ...)`` (``batch_size`` None), or per-member
    shuffled slices ``(M, B, ...)``, each member's order from its own generator."""
    if batch_size is None:
        yield d.x_train, d.y_train
        return
    n = d.x_train.shape[0]
    perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(d.x_train.device)
    for i in range(0, n, batch_size):
        idx = perms[:, i : i + batch_size]
        yield d.x_train[idx], d.y_train[idx]


def _metrics(ens: Ensemble, d: Data, batch_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(train_loss, train_acc, test_loss, test_acc)``, each ``(M,)`` float64: full passes,
    the same function for both sets."""
    kw = {"batch_size": batch_size, "classify": d.task == "classification"}
    return (*ens.evaluate(d.x_train, d.y_train, **kw), *ens.evaluate(d.x_test, d.y_test, **kw))


class _Stepper:
    """The optimiser on the stacked leaves, with per-member rates and frozen members.

    One rate for all: ``torch.optim`` as it is. Rates per member: the optimiser steps with the
    largest and each member's step is scaled by its share — exact, since the Adam and SGD
    (momentum) steps are linear in lr and their state does not depend on it. A member that is
    no longer alive (diverged, or met ``until``) keeps its θ through every later step.
    """

    def __init__(self, ens: Ensemble, optimizer: str, lrs: list[float], momentum: float,
                 weight_decay: float) -> None:
        self.leaves = ens.leaves
        self.opt = _make_optimizer(optimizer, self.leaves, max(lrs), momentum, weight_decay)
        self.per_member = len(set(lrs)) > 1
        self.share = torch.tensor(lrs, dtype=self.leaves[0].dtype, device=ens.device) / max(lrs)
        self.any_frozen = False

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self, alive: Tensor) -> None:
        """One optimiser step of the members that are ``alive`` ``(M,)`` bool."""
        self.any_frozen = self.any_frozen or not bool(alive.all())
        if not (self.per_member or self.any_frozen):
            self.opt.step()
            return
        keep = [v.detach().clone() for v in self.leaves]
        self.opt.step()
        with torch.no_grad():
            if self.per_member:  # each member's step scaled by its rate; frozen ones by 0
                rate = torch.where(alive, self.share, torch.zeros_like(self.share))
                for v, old in zip(self.leaves, keep):
                    v.copy_(old + rate.view(-1, *[1] * (v.dim() - 1)) * (v - old))
            else:  # frozen members keep their θ through the step
                for v, old in zip(self.leaves, keep):
                    mask = alive.view(-1, *[1] * (v.dim() - 1))
                    v.copy_(torch.where(mask, v, old))


@dataclass(frozen=True)
class _Schedule:
    """When ``train`` evaluates and snapshots (epoch 0 is at initialisation)."""

    epochs: int
    eval_every: int
    snapshot_every: int | None

    def evaluates(self, epoch: int) -> bool:
        return bool(self.eval_every) and (epoch % self.eval_every == 0 or epoch == self.epochs)

    def snapshots(self, epoch: int) -> bool:
        return bool(self.snapshot_every) and epoch % self.snapshot_every == 0


class _Recorder:
    """What ``train`` records (the rows of the :class:`Trace`) and each member's state:
    ``alive`` ``(M,)`` — still training, i.e. neither diverged nor done with ``until``."""

    def __init__(self, ens: Ensemble,
                 metrics: Callable[[], tuple[Tensor, Tensor, Tensor, Tensor]],
                 until: tuple[str, float] | None, lrs: list[float], when: _Schedule) -> None:
        self.ens, self.metrics, self.until, self.lrs, self.when = ens, metrics, until, lrs, when
        self.alive = torch.ones(ens.M, dtype=torch.bool, device=ens.device)
        self.diverged, self.reached = np.full(ens.M, -1), np.full(ens.M, -1)
        self.evals: list[tuple[int, Tensor, Tensor, Tensor, Tensor]] = []
        self.step_losses: list[Tensor] = []
        self.grad_norms: list[Tensor] = []
        self.snaps: list[Tensor] = []
        self.snap_epochs: list[int] = []

    def training(self) -> bool:
        return bool(self.alive.any())

    def record(self, epoch: int) -> None:
        """The evaluation and snapshot due after ``epoch``, if any."""
        if self.when.evaluates(epoch):
            self.evaluate(epoch)
        if self.when.snapshots(epoch):
            self.snapshot(epoch)

    def evaluate(self, epoch: int) -> None:
        """Record the full-pass metrics after ``epoch`` (NaN for diverged members) and freeze
        the members that meet ``until``."""
        dead = torch.as_tensor(self.diverged >= 0, device=self.ens.device)
        if bool(dead.all()):  # nothing left to evaluate: every metric is NaN
            nan = torch.full((self.ens.M,), float("nan"), dtype=torch.float64,
                             device=self.ens.device)
            self.evals.append((epoch, nan, nan, nan, nan))
            return
        trl, tra, tel, tea = self.metrics()
        for t in (trl, tra, tel, tea):
            t[dead] = float("nan")
        self.evals.append((epoch, trl, tra, tel, tea))
        if self.until is not None:
            metric, target = self.until
            met = trl <= target if metric == "train_loss" else tra >= target
            for m in (self.alive & met.to(self.alive.device)).nonzero().flatten().tolist():
                self.reached[m] = epoch
            self.alive.logical_and_(~met.to(self.alive.device))

    def snapshot(self, epoch: int) -> None:
        self.snaps.append(self.ens.theta().to("cpu", torch.float32))
        self.snap_epochs.append(epoch)

    def step(self, losses: Tensor, grad_norm: Tensor) -> None:
        self.step_losses.append(losses.detach())
        self.grad_norms.append(grad_norm)

    def nan_steps(self, count: int, record_steps: bool) -> None:
        """Steps not taken because every member diverged, recorded as NaN."""
        if record_steps:
            nan = torch.full((self.ens.M,), float("nan"), device=self.ens.device)
            self.step_losses += [nan] * count
            self.grad_norms += [nan] * count

    def check_divergence(self, losses: Tensor, epoch: int) -> None:
        """Mark members whose loss is NaN/inf; from now on their θ stays as it is. One host
        sync per step; a NaN/inf gradient makes the next loss non-finite too. (All finite is
        tested first: it is the common case, and cheaper than selecting the alive members.)"""
        if bool(torch.isfinite(losses).all()) or bool(torch.isfinite(losses[self.alive]).all()):
            return
        newly = self.alive & ~torch.isfinite(losses)
        for m in newly.nonzero().flatten().tolist():
            self.diverged[m] = epoch
            warnings.warn(f"member {m} diverged in epoch {epoch} (loss {losses[m].item():.3g});"
                          f" it stops training — lower lr (now {self.lrs[m]:g}) or check the data",
                          DivergenceWarning, stacklevel=3)
        self.alive.logical_and_(~newly)

    def repeat_frozen(self, first: int) -> None:
        """The evaluations and snapshots of epochs ``first`` to the last, every member frozen:
        the last evaluation repeated, θ snapshotted as it is."""
        for epoch in range(first, self.when.epochs + 1):
            if self.when.evaluates(epoch):
                self.evals.append((epoch, *self.evals[-1][1:]))
            if self.when.snapshots(epoch):
                self.snapshot(epoch)

    def trace(self, seconds: float) -> Trace:
        M, P = self.ens.M, self.ens.P
        stack = partial(_by_member, M=M)
        return Trace(
            epoch=np.array([e[0] for e in self.evals], dtype=np.int64),
            train_loss=stack([e[1] for e in self.evals]),
            train_acc=stack([e[2] for e in self.evals]),
            test_loss=stack([e[3] for e in self.evals]),
            test_acc=stack([e[4] for e in self.evals]),
            step_loss=stack(self.step_losses),
            grad_norm=stack(self.grad_norms),
            snapshot_epoch=np.array(self.snap_epochs, dtype=np.int64),
            snapshots=(torch.stack(self.snaps, 1).numpy() if self.snaps
                       else np.zeros((M, 0, P), np.float32)),
            diverged_epoch=self.diverged,
            reached_epoch=self.reached,
            seconds=seconds,
        )


def _by_member(rows: list[Tensor], M: int) -> np.ndarray:
    """Rows of ``(M,)`` tensors as one ``(M, len(rows))`` float64 array."""
    return torch.stack(rows, 1).cpu().double().numpy() if rows else np.zeros((M, 0))
