"""One training loop, vectorised over an ensemble.

Eight PCA runs, a hundred minimal-ratio runs and five seeds of a function fit are the same
computation repeated over members that differ only in their initialisation and batch order.
``train`` therefore always trains a stack of ``M`` members at once:

* the members' parameters are stacked into one matrix Θ of shape ``(M, P)`` (row ``m`` is the
  flat θ of member ``m``, in the order of :mod:`deepscope.params`);
* the per-member losses ``L_m(θ_m)`` come from ``vmap(functional_call)`` over the rows, and
  one ``backward()`` of ``Σ_m L_m`` gives every member's own gradient at once, because the
  members share no parameters (∂/∂θ_m Σ_k L_k = ∇L_m);
* for convolutional nets on the CPU, ``vmap`` turns each convolution into a grouped one, which
  oneDNN runs 1.2–1.9× slower than separate convolutions (measured on 2 cores, CNNs of 10k
  parameters, 2 members); there the losses are computed member by member instead
  (``member_batching="loop"``), still from the same Θ, with one backward and one optimiser
  step — the results are the same, only the schedule differs;
* the optimiser (SGD with momentum, or Adam, exactly as ``torch.optim`` defines them) updates
  Θ with a handful of whole-matrix operations instead of ``M × layers`` small ones.

Batch order: member ``m`` draws its permutation of the training set each epoch from its own
generator, :func:`batch_generator` ``(seed, m)``, so a plain loop can reproduce it exactly
(the test suite does, to 1e-8 in float64).

Everything the studies plot is recorded here and nothing else: per-epoch mean loss and
accuracy on the full train and test sets (eval mode, ``no_grad``, the same function for both),
optionally the loss and gradient norm of every step, and optionally θ snapshots. All other
probes are applied to the trained models afterwards.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from .data import Data
from .params import flatten_batched, param_dict, unflatten

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
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """All arrays under ``prefix + name``, ready to store (``seconds`` as a 0-d array)."""
        out = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        out["seconds"] = np.asarray(self.seconds)
        return {prefix + k: v for k, v in out.items()}


def batch_generator(seed: int, member: int) -> torch.Generator:
    """The generator that orders member ``member``'s batches in a run with ``seed``."""
    state = np.random.SeedSequence([seed, member]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


# --- optimisers on the stacked parameter matrix Θ (M, P) ---------------------------------
# Same update rules as torch.optim.SGD / torch.optim.Adam (PyTorch docs, "Algorithm"), so a
# member trained here equals one trained with torch.optim to rounding.


@dataclass
class _SGD:
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    buf: Tensor | None = None

    def step(self, theta: Tensor, g: Tensor) -> None:
        if self.weight_decay:
            g = g.add(theta, alpha=self.weight_decay)
        if self.momentum:
            self.buf = g.clone() if self.buf is None else self.buf.mul_(self.momentum).add_(g)
            g = self.buf
        theta.sub_(self.lr * g)


@dataclass
class _Adam:
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    t: int = 0
    m: Tensor | None = None
    v: Tensor | None = None

    def step(self, theta: Tensor, g: Tensor) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            g = g.add(theta, alpha=self.weight_decay)
        if self.m is None:
            self.m, self.v = torch.zeros_like(theta), torch.zeros_like(theta)
        self.t += 1
        self.m.lerp_(g, 1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        step_size = self.lr / (1 - b1**self.t)
        denom = (self.v.sqrt() / math.sqrt(1 - b2**self.t)).add_(self.eps)
        theta.addcdiv_(self.m, denom, value=-step_size)


def _make_optimizer(name: str, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return _SGD(lr, momentum, weight_decay)
    if name == "adam":
        return _Adam(lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'sgd' or 'adam'")


# --- the loop ----------------------------------------------------------------------------


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
    lr: float = 1e-3,
    epochs: int = 10,
    batch_size: int | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    loss: str | None = None,
    seed: int = 0,
    record_steps: bool = False,
    snapshot_every: int | None = None,
    eval_every: int = 1,
    eval_batch_size: int = 1024,
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
        lr, momentum, weight_decay: optimiser hyper-parameters.
        epochs: passes over the training set.
        batch_size: ``None`` for full batch; otherwise each member reshuffles the training set
            every epoch with its own generator (:func:`batch_generator`) and steps through it in
            batches of this size (the last one may be smaller).
        loss: ``"mse"`` or ``"cross_entropy"``; default from ``data.task``.
        seed: seeds the members' batch orders.
        record_steps: also record every step's batch loss and gradient norm ‖∇θL‖₂ (read after
            the backward pass, over all parameters).
        snapshot_every: record θ of every member every this many epochs (and at epoch 0).
        eval_every: evaluate the full train and test sets every this many epochs (and at the
            first and last epoch).
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
    models = [models] if isinstance(models, nn.Module) else list(models)
    _check_members(models)
    if epochs < 0:
        raise ValueError(f"epochs must be ≥ 0, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 or None (full batch), got {batch_size}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    loss = loss or ("mse" if data.task == "regression" else "cross_entropy")
    loss_fn = LOSSES[loss]
    classify = data.task == "classification"
    device = torch.device(device) if device is not None else next(models[0].parameters()).device

    start = time.perf_counter()
    M = len(models)
    like = param_dict(models[0])
    base = copy.deepcopy(models[0]).to("meta")
    theta = flatten_batched(
        {k: torch.stack([param_dict(m)[k] for m in models]) for k in like}
    ).to(device=device, dtype=dtype)
    like = {k: v.to(device=device, dtype=dtype) for k, v in like.items()}
    d = data.to(device=device, dtype=dtype)
    x_tr, y_tr, N = d.x_train, d.y_train, d.x_train.shape[0]

    def member_out(th: Tensor, x: Tensor) -> Tensor:
        return functional_call(base, unflatten(th, like), (x,))

    def member_loss(th: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(member_out(th, x), y)

    full_batch = batch_size is None or batch_size >= N
    if member_batching == "auto":
        has_conv = any(isinstance(mod, nn.modules.conv._ConvNd) for mod in base.modules())
        member_batching = "loop" if has_conv and device.type == "cpu" else "vmap"
    if member_batching == "vmap":
        # Shared data (full batch) is broadcast to every member; per-member batches stacked.
        batched_loss = vmap(member_loss, in_dims=(0, None, None) if full_batch else (0, 0, 0))
    elif member_batching == "loop":
        def batched_loss(th: Tensor, x: Tensor, y: Tensor) -> Tensor:
            return torch.stack([member_loss(th[m], x if full_batch else x[m],
                                            y if full_batch else y[m]) for m in range(M)])
    else:
        raise ValueError(f"member_batching must be 'auto', 'vmap' or 'loop', "
                         f"got {member_batching!r}")

    @torch.no_grad()
    def evaluate(th: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample mean loss and accuracy of every member over the whole set: (M,), (M,)."""
        base.eval()
        tot_loss = torch.zeros(M, dtype=torch.float64, device=device)
        correct = torch.zeros(M, dtype=torch.float64, device=device)
        for i in range(0, x.shape[0], eval_batch_size):
            xb, yb = x[i : i + eval_batch_size], y[i : i + eval_batch_size]
            out = (vmap(member_out, in_dims=(0, None))(th, xb) if member_batching == "vmap"
                   else torch.stack([member_out(th[m], xb) for m in range(M)]))  # (M, B, C)
            per = vmap(lambda o: loss_fn(o, yb, reduction="none"))(out)
            tot_loss += per.reshape(M, -1).sum(1).double() / per[0].numel() * xb.shape[0]
            if classify:
                correct += (out.argmax(-1) == yb).sum(1).double()
        base.train()
        n = x.shape[0]
        acc = correct / n if classify else torch.full_like(correct, float("nan"))
        return tot_loss / n, acc

    opt = _make_optimizer(optimizer, lr, momentum, weight_decay)
    gens = [batch_generator(seed, m) for m in range(M)]
    alive = torch.ones(M, dtype=torch.bool, device=device)
    diverged = np.full(M, -1)
    evals: list[tuple[int, Tensor, Tensor, Tensor, Tensor]] = []
    step_losses: list[Tensor] = []
    grad_norms: list[Tensor] = []
    snaps: list[Tensor] = []
    snap_epochs: list[int] = []

    def record(epoch: int) -> None:
        trl, tra = evaluate(theta, x_tr, y_tr)
        tel, tea = evaluate(theta, d.x_test, d.y_test)
        dead = ~alive
        for t in (trl, tra, tel, tea):
            t[dead] = float("nan")
        evals.append((epoch, trl, tra, tel, tea))

    def snapshot(epoch: int) -> None:
        snaps.append(theta.detach().to("cpu", torch.float32).clone())
        snap_epochs.append(epoch)

    record(0)
    if snapshot_every:
        snapshot(0)
    def epoch_batches():
        """This epoch's (x, y) batches: the full set, or per-member shuffled slices (M, B, ...)."""
        if full_batch:
            yield x_tr, y_tr
            return
        perms = torch.stack([torch.randperm(N, generator=g) for g in gens]).to(device)
        for i in range(0, N, batch_size):
            idx = perms[:, i : i + batch_size]
            yield x_tr[idx], y_tr[idx]

    base.train()
    bar = tqdm(range(1, epochs + 1), desc=desc, leave=False,
               disable=None if progress is None else not progress)
    for epoch in bar:
        for xb, yb in epoch_batches():
            th = theta.detach().requires_grad_(True)
            losses = batched_loss(th, xb, yb)  # (M,)
            (g,) = torch.autograd.grad(losses.sum(), th)
            finite = torch.isfinite(losses) & torch.isfinite(g).all(1)
            if not bool(finite[alive].all()):
                newly = alive & ~finite
                for m in newly.nonzero().flatten().tolist():
                    diverged[m] = epoch
                    warnings.warn(
                        f"member {m} diverged in epoch {epoch} (loss "
                        f"{losses[m].item():.3g}); it stops training — lower lr "
                        f"(now {lr:g}) or check the data",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                alive &= finite
            # A diverged member keeps its last θ: its gradient is zeroed and its row restored
            # after the step (optimiser state of a frozen row is never used again).
            g = torch.where(alive[:, None], g, torch.zeros_like(g))
            before = None if bool(alive.all()) else theta.clone()
            with torch.no_grad():
                opt.step(theta, g)
                if before is not None:
                    theta.copy_(torch.where(alive[:, None], theta, before))
            if record_steps:
                step_losses.append(losses.detach())
                grad_norms.append(g.norm(dim=1))
        if not bool(alive.any()):
            record(epoch)
            break
        if epoch % eval_every == 0 or epoch == epochs:
            record(epoch)
        if snapshot_every and epoch % snapshot_every == 0:
            snapshot(epoch)

    # The members leave holding their trained parameters.
    with torch.no_grad():
        for m, model in enumerate(models):
            for p, v in zip(model.parameters(), unflatten(theta[m], like).values()):
                p.copy_(v.to(p.dtype))

    def stack(rows: list[Tensor], width: int = 0) -> np.ndarray:
        if not rows:
            return np.zeros((M, width))
        return torch.stack(rows, 1).cpu().double().numpy()

    return Trace(
        epoch=np.array([e[0] for e in evals]),
        train_loss=stack([e[1] for e in evals]),
        train_acc=stack([e[2] for e in evals]),
        test_loss=stack([e[3] for e in evals]),
        test_acc=stack([e[4] for e in evals]),
        step_loss=stack(step_losses),
        grad_norm=stack(grad_norms),
        snapshot_epoch=np.array(snap_epochs, dtype=np.int64),
        snapshots=(
            torch.stack(snaps, 1).numpy() if snaps else np.zeros((M, 0, theta.shape[1]),
                                                                 np.float32)
        ),
        diverged_epoch=diverged,
        seconds=time.perf_counter() - start,
    )
