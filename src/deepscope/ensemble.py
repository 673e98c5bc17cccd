"""The ensemble core: M models of one architecture, their parameters stacked and run as one.

The trainer and the probes share this module. Shapes: ``M`` members, ``P`` parameters per
member, ``B`` samples in a batch, ``C`` outputs per sample.

* :class:`Ensemble` owns state that lives across calls — the stacked, trainable leaves of M
  members (in the layout the trainer steps fastest), their fixed buffers, a shape-only copy of
  the architecture, and the schedule of the batched forward: for plain MLPs batched matrix
  products with a hand-written backward (:mod:`deepscope.stacked_mlp`, θ one ``(M, P)`` leaf),
  otherwise ``vmap`` or a loop over members. The trainer builds one, runs ``losses`` /
  ``evaluate`` on it and writes θ back at the end.
* :func:`stacked_forward` is the batched forward of flat θ stacked ``(M, P)`` — the form the
  probes hold (points on a line between two models, perturbed θ): ``vmap`` of the one
  θ-function of :mod:`deepscope.params`.
* :func:`evaluate` is the one evaluation of stacked models: per-sample mean loss and accuracy
  over a whole data set, in chunks, under ``no_grad`` — used by both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .params import flatten, flatten_batched, param_dict, theta_forward
from .stacked_mlp import Buffers, StackedMLP, layers_of
from .stacked_mlp import forward as mlp_forward

LossFn = Callable[..., Tensor]


def check_members(models: Sequence[nn.Module]) -> None:
    """Refuse an empty ensemble, mixed architectures, and layers whose state members would share."""
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


class Ensemble:
    """M members of one architecture as one set of stacked leaves, run as one model.

    Args:
        models: the members (checked by :func:`check_members`); they are copied from, never
            changed, until :meth:`write_back`.
        loss_fn: ``loss_fn(output, target)``, the mean over samples; it must also accept
            ``reduction="none"`` for :meth:`evaluate`.
        dtype, device: of the leaves (default device: the members').
        batching: ``"mlp"`` (batched matrix products and a hand-written backward, for
            ``nn.Sequential`` MLPs: :mod:`deepscope.stacked_mlp`), ``"vmap"`` (one batched
            call for all members), ``"loop"`` (one call per member from the same leaves) or
            ``"auto"``: mlp for the MLPs it can run, loop for convolutional models on the
            CPU, where grouped convolutions are slower, vmap otherwise.

    Attributes:
        leaves: the trainable tensors, one per parameter in module order (= flat θ order), each
            holding that parameter of all members: ``(M, *shape)``, except weight matrices,
            stored transposed as ``(M, in, out)``, and, with ``"loop"`` on the CPU, 2-d
            convolution filters, stored channels-last as ``(M, out, kh, kw, in)``
            (see :func:`_stacked_leaf`). With ``"mlp"``, one leaf: θ ``(M, P)`` itself, in
            the order of :mod:`deepscope.params`, every parameter a view of it — the
            optimiser's step is then a few whole-matrix operations. Hand them to an
            optimiser; read ``.grad`` there.
        M, P: members, parameters per member.
        batching: ``"mlp"``, ``"vmap"`` or ``"loop"``, as resolved.
    """

    def __init__(self, models: Sequence[nn.Module], loss_fn: LossFn, *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                 batching: str = "auto") -> None:
        models = list(models)
        check_members(models)
        self.device = (torch.device(device) if device is not None
                       else next(models[0].parameters()).device)
        self.loss_fn, self.M = loss_fn, len(models)
        self.base = copy.deepcopy(models[0]).to("meta").train()  # shapes only, no data
        self.batching = batching = _resolve(batching, self.base, self.device)
        self.layers = layers_of(self.base) if batching == "mlp" else None
        self._channels_last = batching == "loop" and self.device.type == "cpu"
        own = [param_dict(m) for m in models]
        if batching == "mlp":  # one leaf θ (M, P); each parameter a view of it
            theta = torch.stack([flatten(p) for p in own]).to(device=self.device, dtype=dtype)
            self.leaves = [theta.requires_grad_(True)]
            self._store = _views(theta.detach(), own[0])
            self._buffers = Buffers()
        else:
            self._store = {k: _stacked_leaf([p[k] for p in own], self.device, dtype,
                                            channels_last=self._channels_last) for k in own[0]}
            self.leaves = list(self._store.values())
        self.P = sum(v[0].numel() for v in self._store.values())
        # Buffers (and frozen parameters) ride along unchanged, stacked like the parameters.
        fixed = [dict(_fixed_tensors(m)) for m in models]
        self._fixed = {k: torch.stack([f[k] for f in fixed]).to(
                           device=self.device, dtype=dtype if v.is_floating_point() else v.dtype)
                       for k, v in fixed[0].items()}
        self._vloss = {shared: vmap(self._member_loss, in_dims=(0, None, None) if shared
                                    else (0, 0, 0)) for shared in (True, False)}
        self._vout = vmap(self._member_out, in_dims=(0, None))
        self._vloss_out = {shared: vmap(loss_fn, in_dims=(0, None if shared else 0))
                           for shared in (True, False)}

    # --- the batched forward ----------------------------------------------------------------

    def params(self) -> dict[str, Tensor]:
        """The stacked parameters and buffers ``{name: (M, *shape)}``, as views of the leaves."""
        return {**self._stacked(), **self._fixed}

    def _stacked(self) -> dict[str, Tensor]:
        """The stacked parameters ``{name: (M, *shape)}``, views of the leaves (with ``"mlp"``,
        detached views of θ)."""
        return self._store if self.batching == "mlp" else _as_params(self._store)

    def _member_out(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.base, params, (x,))

    def _member_loss(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(self._member_out(params, x), y)

    def _layout(self, x: Tensor) -> Tensor:
        """Images channels-last like the filters (``"loop"`` on the CPU), else ``x``."""
        return _channels_last(x) if self._channels_last and x.dim() == 4 else x

    def losses(self, x: Tensor, y: Tensor, *, shared: bool) -> Tensor:
        """Each member's mean loss ``(M,)``, differentiable in the leaves.

        ``shared``: one batch ``x (B, ...)``, ``y (B, ...)`` for all members; else a batch per
        member, ``x (M, B, ...)``, ``y (M, B, ...)``.
        """
        if self.batching == "mlp":
            out = StackedMLP.apply(self.leaves[0], self.layers, self._store, x, shared,
                                   self._buffers)
            stacked = member_means(self.loss_fn, out, y)
            return self._vloss_out[shared](out, y) if stacked is None else stacked
        if self.batching == "vmap":
            return self._vloss[shared](self.params(), x, y)
        params = self.params()
        return torch.stack([
            self._member_loss({k: v[m] for k, v in params.items()},
                              self._layout(x if shared else x[m]), y if shared else y[m])
            for m in range(self.M)])

    def outputs(self, x: Tensor) -> Tensor:
        """Every member's output on the shared batch ``x (B, ...)``: ``(M, B, C)``."""
        if self.batching == "mlp":
            return mlp_forward(self.layers, self._store, x, shared=True)[0].mT
        if self.batching == "vmap":
            return self._vout(self.params(), x)
        params, x = self.params(), self._layout(x)
        return torch.stack([self._member_out({k: v[m] for k, v in params.items()}, x)
                            for m in range(self.M)])

    def evaluate(self, x: Tensor, y: Tensor, *, batch_size: int,
                 classify: bool) -> tuple[Tensor, Tensor]:
        """Per-sample mean loss and accuracy of every member over ``(x, y)`` in eval mode:
        ``(M,)``, ``(M,)`` float64 (see :func:`evaluate`)."""
        self.base.eval()
        try:
            return evaluate(self.outputs, self.loss_fn, x, y, members=self.M,
                            batch_size=batch_size, classify=classify)
        finally:
            self.base.train()

    # --- θ ---------------------------------------------------------------------------------------

    def theta(self) -> Tensor:
        """The members' flat θ ``(M, P)`` (order of :mod:`deepscope.params`), detached."""
        if self.batching == "mlp":
            return self.leaves[0].detach().clone()
        return flatten_batched(_as_params(self._store)).detach()

    def grad_norm(self) -> Tensor:
        """‖∇θ L_m‖₂ over all parameters of each member, ``(M,)``, from the leaves' ``.grad``."""
        sq = sum(p.grad.detach().reshape(self.M, -1).pow(2).sum(1) for p in self.leaves)
        return sq.sqrt()

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy each member's parameters into ``models[m]``, in the models' own layout/dtype."""
        with torch.no_grad():
            for m, model in enumerate(models):
                own = dict(model.named_parameters())
                for k, v in self._stacked().items():
                    own[k].copy_(v[m].to(own[k].dtype))


def member_means(loss_fn: LossFn, out: Tensor, y: Tensor) -> Tensor | None:
    """Each member's mean loss ``(M,)`` from the stacked outputs ``out`` ``(M, B, C)`` and
    targets ``y`` (``(B, ...)`` shared or ``(M, B, ...)``) in a few whole-stack operations,
    or ``None`` where this is not exactly ``vmap(loss_fn)``: only ``F.mse_loss`` with targets
    of the outputs' shape and ``F.cross_entropy`` with class indices are done here.

    ``vmap`` of the loss cost ~40 % of a forward pass of the fast path's small MLPs (measured,
    100 members, 256 samples). A label equal to ``ignore_index`` (−100) counts in neither
    the sum nor the number of samples, as in ``F.cross_entropy``'s mean.
    """
    if loss_fn is F.mse_loss and y.is_floating_point() and y.shape in (out.shape, out.shape[1:]):
        return F.mse_loss(out, y.expand_as(out), reduction="none").flatten(1).mean(1)
    if (loss_fn is F.cross_entropy and not y.is_floating_point()
            and y.shape in (out.shape[:2], out.shape[1:2])):
        y = y.expand(out.shape[:2])
        per = F.cross_entropy(out.mT, y, reduction="none")  # (M, B): classes in dimension 1
        return per.sum(1) / (y != -100).sum(1)
    return None


def stacked_forward(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``out(thetas, x)``: the outputs ``(M, B, C)`` of ``model``'s architecture at each of the
    flat parameter vectors ``thetas (M, P)`` on one batch ``x (B, ...)`` (``vmap``)."""
    return vmap(theta_forward(model), in_dims=(0, None))


@torch.no_grad()
def evaluate(outputs: Callable[[Tensor], Tensor], loss_fn: LossFn, x: Tensor, y: Tensor, *,
             members: int, batch_size: int, classify: bool) -> tuple[Tensor, Tensor]:
    """Per-sample mean loss and accuracy of ``members`` stacked models over a whole data set.

    Args:
        outputs: ``xb (B, ...) -> (M, B, C)``, the stacked models' outputs on a chunk.
        loss_fn: called as ``loss_fn(out, y, reduction="none")`` per member (``vmap``).
        x, y: the data set, ``(N, ...)``; evaluated ``batch_size`` samples at a time.
        members: ``M``.
        classify: count ``argmax == y`` for the accuracy; else it is NaN.

    Returns:
        ``(loss, acc)``, each ``(M,)`` float64 on ``x``'s device: Σ over chunks of
        (chunk's per-element loss sum / elements per sample) / N, and #correct / N.
    """
    tot_loss = torch.zeros(members, dtype=torch.float64, device=x.device)
    correct = torch.zeros(members, dtype=torch.float64, device=x.device)
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        out = outputs(xb)  # (M, B, C)
        per = vmap(loss_fn, in_dims=(0, None))(out, yb, reduction="none")
        tot_loss += per.reshape(members, -1).sum(1).double() / per[0].numel() * xb.shape[0]
        if classify:
            correct += (out.argmax(-1) == yb).sum(1).double()
    n = x.shape[0]
    acc = correct / n if classify else torch.full_like(correct, float("nan"))
    return tot_loss / n, acc


def activation_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes of the module outputs that one sample of ``x`` creates in a forward pass.

    Measured, not estimated: every leaf module's output tensors on the first two samples of
    ``x`` (two, so batch norm in train mode can run), summed and halved. It is what a forward
    pass of ``B`` samples holds at once, ≈ ``B ×`` this, and what :func:`surface
    <deepscope.probes.landscape.surface>` and :func:`interpolate
    <deepscope.probes.landscape.interpolate>` budget their steps by.
    """
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        outs = output if isinstance(output, tuple | list) else (output,)
        total += sum(o.numel() * o.element_size() for o in outs if isinstance(o, Tensor))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(x[:2])
    finally:
        for h in hooks:
            h.remove()
    return max(1, total // min(2, x.shape[0]))


# --- the leaf layout ----------------------------------------------------------------------


def _resolve(batching: str, base: nn.Module, device: torch.device) -> str:
    """``"auto"`` resolved (see :class:`Ensemble`); a choice ``base`` cannot take refused."""
    if batching not in ("auto", "mlp", "vmap", "loop"):
        raise ValueError(f"member_batching must be 'auto', 'mlp', 'vmap' or 'loop', "
                         f"got {batching!r}")
    mlp = layers_of(base) is not None
    if batching == "mlp" and not mlp:
        raise ValueError("member_batching='mlp' needs an nn.Sequential of nn.Linear and "
                         "element-wise activations (deepscope.mlp builds one); use 'auto'")
    if batching != "auto":
        return batching
    if mlp:
        return "mlp"
    has_conv = any(isinstance(mod, nn.modules.conv._ConvNd) for mod in base.modules())
    return "loop" if has_conv and device.type == "cpu" else "vmap"


def _views(theta: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{name: (M, *shape)}``: each member's row of ``theta`` ``(M, P)`` cut into the
    parameters of ``like`` (the order of :mod:`deepscope.params`), as views."""
    views, i = {}, 0
    for k, p in like.items():
        views[k] = theta[:, i : i + p.numel()].view(-1, *p.shape)
        i += p.numel()
    return views


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
