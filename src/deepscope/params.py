"""Parameters as one flat vector θ.

Every probe in deepscope is a function of the flat parameter vector θ ∈ R^P: the Hessian is
∇²_θ L(θ), an interpolation is L((1−α)θ₁ + αθ₂), a loss surface is L(θ + aδ + bη). This module
is the only place that converts between that vector and the ``{name: tensor}`` dictionaries
``torch.func.functional_call`` expects, so the order of parameters inside θ is defined once:
the order of ``model.named_parameters()``, each tensor flattened row-major.

Shapes: ``P`` is the number of parameters; an ensemble of ``M`` members stacks θ as ``(M, P)``.

**A subset of the parameters.** Every function here takes ``params=`` (:data:`Selection`): a
glob on parameter names (``"layer4.*"``, :mod:`fnmatch` semantics on the names of
``named_parameters()``), a list of names, or a predicate ``(name, param) -> bool``. θ is then
the flat vector of the selected trainable parameters only, in module order, and the rest are
held fixed at their current values; None (the default) selects every trainable parameter.
:func:`select` resolves a selection once, for everything downstream.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .errors import suggest

ParamDict = dict[str, Tensor]

Selection = str | Sequence[str] | Callable[[str, Tensor], bool] | None
"""Which parameters θ holds: a glob (``"layer4.*"``), a list of names, a predicate
``(name, param) -> bool``, or None for every trainable parameter."""

MODES = ("eval", "train")


def select(model: nn.Module, params: Selection = None) -> list[str]:
    """The names of the trainable parameters ``params`` selects, in module order.

    Raises ValueError for a glob or a predicate that selects nothing and for a name the model
    does not have, naming the model's top-level names (or the closest name) to choose from.
    """
    trainable = [k for k, v in model.named_parameters() if v.requires_grad]
    if params is None:
        return trainable
    if isinstance(params, str):
        chosen = [k for k in trainable if fnmatch.fnmatchcase(k, params)]
        what = f"the glob {params!r}"
    elif callable(params):
        own = dict(model.named_parameters())
        chosen = [k for k in trainable if params(k, own[k])]
        what = "the predicate"
    else:
        wanted = set(params)
        for name in params:
            if name not in trainable:
                raise ValueError(f"the model has no trainable parameter {name!r}; "
                                 + suggest(name, trainable))
        chosen = [k for k in trainable if k in wanted]
        what = "the list"
    if not chosen:
        top = list(dict.fromkeys(k.split(".")[0] for k in trainable))
        raise ValueError(f"{what} selects no trainable parameter; the model's top-level names "
                         f"are {', '.join(top)} (e.g. params={top[0] + '.*'!r})")
    return chosen


def blocks(model: nn.Module, params: Selection = None) -> dict[str, list[str]]:
    """``{module name: its selected parameter names}`` for every module that owns selected
    trainable parameters directly (not through a submodule), in module order; the root
    module's name is ``""``."""
    chosen = set(select(model, params))
    out = {}
    for name, module in model.named_modules():
        own = [f"{name}.{k}" if name else k for k, _ in module.named_parameters(recurse=False)]
        own = [k for k in own if k in chosen]
        if own:
            out[name] = own
    return out


def check_mode(mode: str | None) -> str | None:
    """``mode`` itself if it is ``"eval"``, ``"train"`` or None, else a ValueError."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    return mode


@contextmanager
def in_mode(model: nn.Module, mode: str | None) -> Iterator[None]:
    """Run the block with the model in ``"eval"`` or ``"train"`` mode (None: as it is), and
    restore every submodule's own ``training`` flag afterwards, also on an exception."""
    if check_mode(mode) is None:
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def param_dict(model: nn.Module, params: Selection = None) -> ParamDict:
    """The model's selected trainable parameters (default all), detached, as
    ``{name: tensor}`` in module order."""
    if params is None:
        return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    own = dict(model.named_parameters())
    return {k: own[k].detach() for k in select(model, params)}


def fixed_tensors(model: nn.Module, like: ParamDict, mode: str | None = None) -> ParamDict:
    """What a θ function holds fixed: the buffers and every parameter not in ``like``,
    detached. In train mode the buffers are copies, so that batch norm's running statistics
    (updated in place in train mode) of the model itself are never changed by a probe."""
    buffers = dict(model.named_buffers())
    if mode == "train":
        buffers = {k: b.clone() for k, b in buffers.items()}
    return {**buffers,
            **{k: p.detach() for k, p in model.named_parameters() if k not in like}}


def flatten(params: ParamDict) -> Tensor:
    """Concatenate ``params`` into θ of shape ``(P,)``."""
    return torch.cat([p.reshape(-1) for p in params.values()])


def flatten_batched(params: ParamDict) -> Tensor:
    """Stacked parameters ``{name: (M, *shape)}`` → θ of shape ``(M, P)``."""
    return torch.cat([p.reshape(p.shape[0], -1) for p in params.values()], dim=1)


def unflatten(theta: Tensor, like: ParamDict) -> ParamDict:
    """θ of shape ``(P,)`` → ``{name: tensor}`` with the shapes of ``like``."""
    out, i = {}, 0
    for name, p in like.items():
        n = p.numel()
        out[name] = theta[i : i + n].view_as(p)
        i += n
    if i != theta.numel():
        raise ValueError(f"θ has {theta.numel()} entries but the model has {i} parameters")
    return out


def get_theta(model: nn.Module, params: Selection = None) -> Tensor:
    """The model's current θ of the selected parameters, shape ``(P,)``, detached copy."""
    return flatten(param_dict(model, params)).clone()


def set_theta(model: nn.Module, theta: Tensor, params: Selection = None) -> None:
    """Write θ (shape ``(P,)``) into the model's selected parameters in place; the others
    are left as they are."""
    own = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in unflatten(theta, param_dict(model, params)).items():
            own[k].copy_(v)


def get_thetas(models: Sequence[nn.Module], params: Selection = None) -> Tensor:
    """The flat θ of members of one architecture, stacked: ``(M, P)``, a detached copy."""
    return torch.stack([flatten(param_dict(m, params)) for m in models])


def positions(model: nn.Module, params: Selection = None) -> Tensor:
    """Where the selected parameters sit in the full θ: indices ``(P_sel,)`` into ``(P,)``,
    so ``get_theta(model)[positions(model, s)]`` equals ``get_theta(model, s)``."""
    chosen, out, i = set(select(model, params)), [], 0
    for k, p in param_dict(model).items():
        if k in chosen:
            out.append(torch.arange(i, i + p.numel()))
        i += p.numel()
    return torch.cat(out)


def theta_forward(model: nn.Module, params: Selection = None, mode: str | None = None
                  ) -> Callable[[Tensor, Tensor], Tensor]:
    """``out(θ, x) = model_θ(x)``: the model's output as a function of flat θ ``(P,)``.

    The one place a flat vector is called as a model. θ holds the ``params`` selected
    (default all trainable ones); buffers and the other parameters are held at their current
    values. Each call runs the model in ``mode`` (:func:`in_mode`; None: the mode it is in),
    restoring its own mode afterwards. ``torch.func`` transforms apply directly; ``vmap``
    over θ ``(M, P)`` runs M parameter vectors of one architecture at once.
    """
    like = param_dict(model, params)
    fixed = fixed_tensors(model, like)

    def forward(theta: Tensor, x: Tensor) -> Tensor:
        held = fixed_tensors(model, like, mode) if mode == "train" else fixed
        with in_mode(model, mode):
            return functional_call(model, {**unflatten(theta, like), **held}, (x,))

    return forward


def theta_loss(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
               params: Selection = None, mode: str | None = None
               ) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``f(θ, x, y) = loss_fn(model_θ(x), y)`` (see :func:`theta_forward`)."""
    forward = theta_forward(model, params, mode)

    def f(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(forward(theta, x), y)

    return f


class _Bound(nn.Module):
    """``loss(model, batch)`` as a module holding ``model`` as its submodule ``model``, so that
    ``functional_call`` can swap the model's parameters for the duration of the call."""

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module, Any], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.loss = (loss,)  # in a tuple: an nn.Module loss must not become a submodule

    def forward(self, batch: Any) -> Tensor:
        return self.loss[0](self.model, batch)


def theta_model_loss(model: nn.Module, loss: Callable[[nn.Module, Any], Tensor],
                     params: Selection = None, mode: str | None = None
                     ) -> Callable[[Tensor, Any], Tensor]:
    """``f(θ, batch) = loss(model_θ, batch)`` for a loss that calls the model itself (dict
    batches, extra inputs: ``lambda m, b: m(**b).loss``).

    ``loss`` receives the user's own ``model`` object, its parameters replaced by θ ``(P,)``
    (``torch.func.functional_call``) while it runs, so attributes and methods work as usual
    and ``torch.func`` transforms apply. ``params``, ``mode``, buffers: as in
    :func:`theta_forward`.
    """
    like = param_dict(model, params)
    fixed = fixed_tensors(model, like)
    bound = _Bound(model, loss)

    def f(theta: Tensor, batch: Any) -> Tensor:
        held = fixed_tensors(model, like, mode) if mode == "train" else fixed
        tensors = {**unflatten(theta, like), **held}
        with in_mode(model, mode):
            return functional_call(bound, {f"model.{k}": v for k, v in tensors.items()},
                                   (batch,))

    return f


def objective(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch: tuple[Tensor, Tensor],
) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """Turn ``(model, loss_fn, batch)`` into ``f(θ) = loss_fn(model_θ(x), y)`` and the current θ.

    ``f`` is a pure function of the flat vector, so every ``torch.func`` transform (``grad``,
    ``hessian``, ``jvp``, ``vmap``) applies to it directly. Buffers (e.g. batch-norm statistics)
    are held fixed at their current values; the model is evaluated as it is (call
    ``model.eval()`` first if it has dropout).
    """
    loss = theta_loss(model, loss_fn)
    x, y = batch

    def f(theta: Tensor) -> Tensor:
        return loss(theta, x, y)

    return f, get_theta(model)
