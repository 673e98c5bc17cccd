"""One training loop, vectorised over an ensemble.

Eight PCA runs, a hundred minimal-ratio runs and five seeds of a function fit are the same
computation repeated over members that differ only in their initialisation and batch order.
``train`` therefore always trains a stack of ``M`` members at once:

* each parameter of the architecture is one leaf tensor of shape ``(M, *shape)`` holding that
  parameter of every member (``torch.func.stack_module_state``);
* the per-member losses ``L_m`` come from ``vmap(functional_call)`` over the leading
  dimension, and one ``backward()`` of ``Σ_m L_m`` gives every member its own gradient at once,
  because the members share no parameters (∂/∂θ_m Σ_k L_k = ∇L_m);
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
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from .data import Data
from .errors import DivergenceWarning
from .params import flatten_batched, param_dict

LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss,
    "cross_entropy": F.cross_entropy,
}


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


def _stacked_leaf(params: list[Tensor], device: torch.device, dtype: torch.dtype,
                  channels_last: bool = False) -> Tensor:
    """Stack one parameter of every member into a leaf; matrices are stored transposed.

    A weight matrix ``W`` of shape (M, out, in) is kept as the contiguous leaf ``Wᵀ`` of shape
    (M, in, out) and handed to the model as the view ``Wᵀ.mT``. Under ``vmap``, ``linear``
    becomes ``x @ Wᵀ``, whose gradient with respect to ``Wᵀ`` is the contiguous product
    ``xᵀ @ ∂L/∂y``: it becomes ``.grad`` as it is. With the plain (M, out, in) leaf autograd
    would have to copy the transposed gradient into the leaf's layout every step (measured:
    12 % of a step for 8 members of a 784-256-256-10 MLP), and a fused optimiser needs
    contiguous leaves. Element-wise optimisers do not care which way round a matrix is.

    With ``channels_last``, 2-d convolution filters (M, out, in, kh, kw) are stored as
    (M, out, kh, kw, in), so every member's filter is a channels-last tensor: oneDNN then runs
    the whole net channels-last, and max-pooling in that layout is 15× faster on the CPU
    (measured with 32×28×28 maps; a 2-block CNN's training step 2.0×, its evaluation 3.9×).
    """
    stacked = torch.stack(params).to(device=device, dtype=dtype)
    if stacked.dim() == 3:  # matrices, and only matrices: see _as_params
        stacked = stacked.mT.contiguous()
    elif stacked.dim() == 5 and channels_last:
        stacked = _channels_last(stacked)
    return stacked.requires_grad_(True)


def _channels_last(t: Tensor) -> Tensor:
    """``t`` (..., C, H, W) copied into (..., H, W, C) storage and viewed back as (..., C, H, W).

    Unlike ``t.contiguous(memory_format=torch.channels_last)``, this also re-strides a
    single-channel tensor (stride 1 on C), which is what makes oneDNN choose channels-last for
    MNIST's one input channel.
    """
    n = t.dim()
    to_last = (*range(n - 3), n - 2, n - 1, n - 3)
    to_first = (*range(n - 3), n - 1, n - 3, n - 2)
    buf = t.new_empty([t.shape[i] for i in to_last])
    return buf.copy_(t.permute(to_last)).permute(to_first)


def _fixed_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    """Buffers and frozen parameters: passed to the model, never trained."""
    frozen = [(k, p.detach()) for k, p in model.named_parameters() if not p.requires_grad]
    return frozen + [(k, b) for k, b in model.named_buffers()]


def _as_params(leaves: dict[str, Tensor]) -> dict[str, Tensor]:
    """The stacked parameters ``{name: (M, *shape)}`` as views of the leaves."""
    return {k: v.mT if v.dim() == 3 else v for k, v in leaves.items()}


def _check_members(models: Sequence[nn.Module]) -> None:
    if not models:
        raise ValueError("train() needs at least one model")
    shapes = [[tuple(p.shape) for p in m.parameters()] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(
            "all members must share one architecture (a width sweep is a loop over ensembles)"
        )
    for m in models:
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm | nn.Dropout):
                raise ValueError(
                    f"{type(mod).__name__} is not supported by the vectorised trainer: its "
                    "buffers/randomness would be shared across members; remove it"
                )


def train(
    models: Sequence[nn.Module] | nn.Module,
    data: Data,
    *,
    optimizer: str = "adam",
    lr: float | Sequence[float] = 1e-3,
    epochs: int = 10,
    batch_size: int | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    loss: str | None = None,
    seed: int = 0,
    record_steps: bool = False,
    snapshot_every: int | None = None,
    eval_every: int = 1,
    until: tuple[str, float] | None = None,
    eval_batch_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    member_batching: str = "auto",
    progress: bool | None = None,
    desc: str = "train",
) -> Trace:
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
        until: a training criterion, ``("train_loss", target)`` (per-sample mean training
            loss ≤ target) or ``("train_acc", target)`` (training accuracy ≥ target), checked
            at every evaluation: a member that meets it is frozen from then on (its θ, so its
            later metrics, stay as they were) and its ``reached_epoch`` recorded; training
            ends early once no member is still training (the remaining evaluations and
            snapshots repeat the frozen values, exactly what continuing would record).
        eval_batch_size: samples per evaluation chunk; default the training batch size (the
            full set for full-batch training). Chunks much larger than the training batch
            would allocate buffers the training never needed: on Linux, buffers over 32 MB are
            fresh ``mmap`` pages each time, and evaluation in 1024-image chunks spent as much
            time in page faults as in arithmetic (measured: 12.4 s system time of 13.9 s).
        dtype: ``torch.float32`` or ``torch.float64`` for parameters and inputs.
        device: where to train; default the models' device.
        member_batching: ``"vmap"`` (one batched call for all members), ``"loop"`` (one call
            per member, same Θ, one backward) or ``"auto"``: loop for convolutional models on
            the CPU, where it is faster, vmap otherwise.
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        A :class:`Trace`. A member whose loss becomes NaN/inf stops updating from that step on;
        its ``diverged_epoch`` is set, its later metrics are NaN, and a warning names it.
    """
    n_members = 1 if isinstance(models, nn.Module) else len(models)
    lrs = [float(lr)] * n_members if isinstance(lr, int | float) else [float(v) for v in lr]
    models = [models] if isinstance(models, nn.Module) else list(models)
    _check_members(models)
    if epochs < 0 or eval_every < 0:
        raise ValueError(f"epochs and eval_every must be ≥ 0, got {epochs} and {eval_every}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 or None (full batch), got {batch_size}")
    if len(lrs) != n_members or not all(math.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lr must be a positive finite number or one per member "
                         f"({n_members}), got {lr}")
    if until is not None:
        if (not isinstance(until, tuple) or len(until) != 2
                or until[0] not in ("train_loss", "train_acc")):
            raise ValueError(f"until must be ('train_loss', target) or ('train_acc', target), "
                             f"got {until!r}")
        if not eval_every:
            raise ValueError("until is checked at evaluations: it needs eval_every ≥ 1")
    loss = loss or ("mse" if data.task == "regression" else "cross_entropy")
    loss_fn = LOSSES[loss]
    classify = data.task == "classification"
    device = torch.device(device) if device is not None else next(models[0].parameters()).device

    start = time.perf_counter()
    M = len(models)
    base = copy.deepcopy(models[0]).to("meta")
    if member_batching == "auto":
        has_conv = any(isinstance(mod, nn.modules.conv._ConvNd) for mod in base.modules())
        member_batching = "loop" if has_conv and device.type == "cpu" else "vmap"
    if member_batching not in ("vmap", "loop"):
        raise ValueError(f"member_batching must be 'auto', 'vmap' or 'loop', "
                         f"got {member_batching!r}")
    # Θ: one leaf per parameter holding it for all members, in module order (= flat θ order).
    store = {k: _stacked_leaf([param_dict(m)[k] for m in models], device, dtype,
                              channels_last=member_batching == "loop" and device.type == "cpu")
             for k in param_dict(models[0])}
    leaves = list(store.values())
    # Buffers (and frozen parameters) ride along unchanged, stacked like the parameters.
    fixed = {k: torch.stack([dict(_fixed_tensors(m))[k] for m in models]).to(
                 device=device, dtype=dtype if v.is_floating_point() else v.dtype)
             for k, v in _fixed_tensors(models[0])}

    def stacked() -> dict[str, Tensor]:
        return {**_as_params(store), **fixed}
    d = data.to(device=device, dtype=dtype)
    x_tr, y_tr, N = d.x_train, d.y_train, d.x_train.shape[0]

    def member_out(params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(base, params, (x,))

    def member_loss(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(member_out(params, x), y)

    def row(m: int) -> dict[str, Tensor]:
        return {k: v[m] for k, v in stacked().items()}

    full_batch = batch_size is None or batch_size >= N
    eval_batch_size = eval_batch_size or (N if full_batch else batch_size)
    if member_batching == "vmap":
        # Shared data (full batch) is broadcast to every member; per-member batches stacked.
        _vloss = vmap(member_loss, in_dims=(0, None, None) if full_batch else (0, 0, 0))
        _vout = vmap(member_out, in_dims=(0, None))

        def batched_loss(x: Tensor, y: Tensor) -> Tensor:
            return _vloss(stacked(), x, y)

        def batched_out(x: Tensor) -> Tensor:
            return _vout(stacked(), x)
    else:
        def layout(x: Tensor) -> Tensor:  # images channels-last like the filters
            return _channels_last(x) if x.dim() == 4 and device.type == "cpu" else x

        def batched_loss(x: Tensor, y: Tensor) -> Tensor:
            return torch.stack([member_loss(row(m), layout(x if full_batch else x[m]),
                                            y if full_batch else y[m]) for m in range(M)])

        def batched_out(x: Tensor) -> Tensor:
            x = layout(x)
            return torch.stack([member_out(row(m), x) for m in range(M)])

    @torch.no_grad()
    def evaluate(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample mean loss and accuracy of every member over the whole set: (M,), (M,)."""
        base.eval()
        tot_loss = torch.zeros(M, dtype=torch.float64, device=device)
        correct = torch.zeros(M, dtype=torch.float64, device=device)
        for i in range(0, x.shape[0], eval_batch_size):
            xb, yb = x[i : i + eval_batch_size], y[i : i + eval_batch_size]
            out = batched_out(xb)  # (M, B, C)
            per = vmap(loss_fn, in_dims=(0, None))(out, yb, reduction="none")
            tot_loss += per.reshape(M, -1).sum(1).double() / per[0].numel() * xb.shape[0]
            if classify:
                correct += (out.argmax(-1) == yb).sum(1).double()
        base.train()
        n = x.shape[0]
        acc = correct / n if classify else torch.full_like(correct, float("nan"))
        return tot_loss / n, acc

    # One rate for all: torch.optim as it is. Rates per member: the optimiser steps with the
    # largest and each member's step is scaled by its share — exact, since the Adam and SGD
    # (momentum) steps are linear in lr and their state does not depend on it.
    per_member = len(set(lrs)) > 1
    opt = _make_optimizer(optimizer, leaves, max(lrs), momentum, weight_decay)
    share = torch.tensor(lrs, dtype=dtype, device=device) / max(lrs)
    gens = [batch_generator(seed, m) for m in range(M)]
    alive = torch.ones(M, dtype=torch.bool, device=device)  # not diverged, not done
    diverged = np.full(M, -1)
    reached = np.full(M, -1)
    evals: list[tuple[int, Tensor, Tensor, Tensor, Tensor]] = []
    step_losses: list[Tensor] = []
    grad_norms: list[Tensor] = []
    snaps: list[Tensor] = []
    snap_epochs: list[int] = []

    def record(epoch: int) -> None:
        dead = torch.as_tensor(diverged >= 0, device=device)
        if bool(dead.all()):  # nothing left to evaluate: every metric is NaN
            nan = torch.full((M,), float("nan"), dtype=torch.float64, device=device)
            evals.append((epoch, nan, nan, nan, nan))
            return
        trl, tra = evaluate(x_tr, y_tr)
        tel, tea = evaluate(d.x_test, d.y_test)
        for t in (trl, tra, tel, tea):
            t[dead] = float("nan")
        evals.append((epoch, trl, tra, tel, tea))
        if until is not None:
            metric, target = until
            met = trl <= target if metric == "train_loss" else tra >= target
            for m in (alive & met.to(alive.device)).nonzero().flatten().tolist():
                reached[m] = epoch
            alive.logical_and_(~met.to(alive.device))

    def snapshot(epoch: int) -> None:
        snaps.append(flatten_batched(_as_params(store)).detach().to("cpu", torch.float32))
        snap_epochs.append(epoch)

    def epoch_batches():
        """This epoch's (x, y) batches: the full set, or per-member shuffled slices (M, B, ...)."""
        if full_batch:
            yield x_tr, y_tr
            return
        perms = torch.stack([torch.randperm(N, generator=g) for g in gens]).to(device)
        for i in range(0, N, batch_size):
            idx = perms[:, i : i + batch_size]
            yield x_tr[idx], y_tr[idx]

    def freeze_diverged(losses: Tensor, epoch: int) -> None:
        """Mark members whose loss is NaN/inf; from now on their θ stays as it is."""
        newly = alive & ~torch.isfinite(losses)
        for m in newly.nonzero().flatten().tolist():
            diverged[m] = epoch
            warnings.warn(f"member {m} diverged in epoch {epoch} (loss {losses[m].item():.3g});"
                          f" it stops training — lower lr (now {lrs[m]:g}) or check the data",
                          DivergenceWarning, stacklevel=3)
        alive.logical_and_(~newly)

    if eval_every:
        record(0)
    if snapshot_every:
        snapshot(0)
    base.train()
    bar = tqdm(range(1, epochs + 1), desc=desc, leave=False,
               disable=None if progress is None else not progress)
    any_frozen = False
    steps_per_epoch = 1 if full_batch else -(-N // batch_size)
    for epoch in bar:
        if until is not None and not record_steps and not bool(alive.any()):
            # Every member met the criterion (or diverged): frozen θ gives the same metrics
            # and snapshots at every later epoch, so they are repeated instead of recomputed.
            for later in range(epoch, epochs + 1):
                if eval_every and (later % eval_every == 0 or later == epochs):
                    evals.append((later, *evals[-1][1:]))
                if snapshot_every and later % snapshot_every == 0:
                    snapshot(later)
            break
        if not bool(alive.any()):
            # Every member has diverged: nothing is trained any more, but the trace keeps the
            # shape it would have had, so ensembles of one study stack (NaN from here on).
            if record_steps:
                nan = torch.full((M,), float("nan"), device=device)
                step_losses += [nan] * steps_per_epoch
                grad_norms += [nan] * steps_per_epoch
        else:
            for xb, yb in epoch_batches():
                opt.zero_grad(set_to_none=True)
                losses = batched_loss(xb, yb)  # (M,)
                losses.sum().backward()
                # One host sync per step; a non-finite loss is the divergence signal (a NaN/inf
                # gradient makes the next loss non-finite too).
                if not bool(torch.isfinite(losses[alive]).all()):
                    freeze_diverged(losses, epoch)
                any_frozen = any_frozen or not bool(alive.all())
                if per_member:  # each member's step scaled by its rate; frozen ones by 0
                    keep = [v.detach().clone() for v in leaves]
                    opt.step()
                    with torch.no_grad():
                        rate = torch.where(alive, share, torch.zeros_like(share))
                        for v, old in zip(leaves, keep):
                            v.copy_(old + rate.view(-1, *[1] * (v.dim() - 1)) * (v - old))
                elif any_frozen:  # rare path: frozen members keep their θ through the step
                    keep = [v.detach().clone() for v in leaves]
                    opt.step()
                    with torch.no_grad():
                        for v, old in zip(leaves, keep):
                            mask = alive.view(-1, *[1] * (v.dim() - 1))
                            v.copy_(torch.where(mask, v, old))
                else:
                    opt.step()
                if record_steps:
                    step_losses.append(losses.detach())
                    sq = sum(p.grad.detach().reshape(M, -1).pow(2).sum(1) for p in leaves)
                    grad_norms.append(sq.sqrt())
        if eval_every and (epoch % eval_every == 0 or epoch == epochs):
            record(epoch)
        if snapshot_every and epoch % snapshot_every == 0:
            snapshot(epoch)

    # The members leave holding their trained parameters.
    with torch.no_grad():
        for m, model in enumerate(models):
            own = dict(model.named_parameters())
            for k, v in _as_params(store).items():
                own[k].copy_(v[m].to(own[k].dtype))

    def stack(rows: list[Tensor]) -> np.ndarray:
        if not rows:
            return np.zeros((M, 0))
        return torch.stack(rows, 1).cpu().double().numpy()

    P = sum(v[0].numel() for v in leaves)
    return Trace(
        epoch=np.array([e[0] for e in evals], dtype=np.int64),
        train_loss=stack([e[1] for e in evals]),
        train_acc=stack([e[2] for e in evals]),
        test_loss=stack([e[3] for e in evals]),
        test_acc=stack([e[4] for e in evals]),
        step_loss=stack(step_losses),
        grad_norm=stack(grad_norms),
        snapshot_epoch=np.array(snap_epochs, dtype=np.int64),
        snapshots=torch.stack(snaps, 1).numpy() if snaps else np.zeros((M, 0, P), np.float32),
        diverged_epoch=diverged,
        reached_epoch=reached,
        seconds=time.perf_counter() - start,
    )
