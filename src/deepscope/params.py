"""Parameters as one flat vector θ.

Every probe in deepscope is a function of the flat parameter vector θ ∈ R^P: the Hessian is
∇²_θ L(θ), an interpolation is L((1−α)θ₁ + αθ₂), a loss surface is L(θ + aδ + bη). This module
is the only place that converts between that vector and the ``{name: tensor}`` dictionaries
``torch.func.functional_call`` expects, so the order of parameters inside θ is defined once:
the order of ``model.named_parameters()``, each tensor flattened row-major.

Shapes: ``P`` is the number of parameters; an ensemble of ``M`` members stacks θ as ``(M, P)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

ParamDict = dict[str, Tensor]


def param_dict(model: nn.Module) -> ParamDict:
    """The model's trainable parameters, detached, as ``{name: tensor}`` in module order."""
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


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


def get_theta(model: nn.Module) -> Tensor:
    """The model's current θ, shape ``(P,)``, detached copy."""
    return flatten(param_dict(model)).clone()


def set_theta(model: nn.Module, theta: Tensor) -> None:
    """Write θ (shape ``(P,)``) into the model's parameters in place."""
    own = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in unflatten(theta, param_dict(model)).items():
            own[k].copy_(v)


def get_thetas(models: Sequence[nn.Module]) -> Tensor:
    """The flat θ of members of one architecture, stacked: ``(M, P)``, a detached copy."""
    return torch.stack([flatten(param_dict(m)) for m in models])


def theta_forward(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``out(θ, x) = model_θ(x)``: the model's output as a function of flat θ ``(P,)``.

    The one place a flat vector is called as a model. Buffers and frozen parameters are held
    at their current values; the model is evaluated in the mode it is in (call
    ``model.eval()`` first if it has dropout). ``torch.func`` transforms apply directly;
    ``vmap`` over θ ``(M, P)`` runs M parameter vectors of one architecture at once.
    """
    like = param_dict(model)
    fixed = {**dict(model.named_buffers()),
             **{k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}}

    def forward(theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(model, {**unflatten(theta, like), **fixed}, (x,))

    return forward


def theta_loss(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor]
               ) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``f(θ, x, y) = loss_fn(model_θ(x), y)`` (see :func:`theta_forward`)."""
    forward = theta_forward(model)

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


def theta_model_loss(model: nn.Module, loss: Callable[[nn.Module, Any], Tensor]
                     ) -> Callable[[Tensor, Any], Tensor]:
    """``f(θ, batch) = loss(model_θ, batch)`` for a loss that calls the model itself (dict
    batches, extra inputs: ``lambda m, b: m(**b).loss``).

    ``loss`` receives the user's own ``model`` object, its parameters replaced by θ ``(P,)``
    (``torch.func.functional_call``) while it runs, so attributes and methods work as usual
    and ``torch.func`` transforms apply. Buffers are held as in :func:`theta_forward`.
    """
    like = param_dict(model)
    fixed = {**dict(model.named_buffers()),
             **{k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}}
    bound = _Bound(model, loss)

    def f(theta: Tensor, batch: Any) -> Tensor:
        params = {**unflatten(theta, like), **fixed}
        return functional_call(bound, {f"model.{k}": v for k, v in params.items()}, (batch,))

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
