"""M multilayer perceptrons at once as batched matrix products, with a hand-written backward.

The ensemble core's fast path (:class:`deepscope.ensemble.Ensemble`, ``batching="mlp"``).
For the small nets of the function-fitting and minimal-ratio studies (a hundred members of
~140 parameters) a training step is a few dozen tiny operations, and ``vmap(functional_call)``
plus the autograd graph of its batched operations costs several times the arithmetic. An MLP
needs neither: layer ``k`` of all members is one ``baddbmm`` on the stacked weights, and its
backward is two more products and a sum, written out below; θ is one ``(M, P)`` leaf whose
gradient is assembled in one piece, so the optimiser steps one tensor.

Shapes: ``M`` members, ``B`` samples, ``d`` inputs, ``C`` outputs. Activations are kept
*feature-major*, ``(M, features, B)``: ``z = b + W h`` with ``W`` as ``nn.Linear`` stores it,
``(M, out, in)``. On the CPU batched products of this orientation were 2–7× faster than the
sample-major ``h Wᵀ`` (measured, 1 thread, 100 members, 256 samples, 10×10 weights: forward
160 µs vs 920 µs, ∂L/∂W 300 µs vs 640 µs, ∂L/∂h 160 µs vs 1 210 µs).

The net is read by :func:`layers_of` from a (possibly nested) ``nn.Sequential`` of
``nn.Linear`` and element-wise activations (what :func:`deepscope.models.mlp` builds); any
other architecture returns ``None`` and the ensemble uses ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# activation -> (forward z ↦ a, backward (∂L/∂a, z, a, out) ↦ ∂L/∂z written into out), with
# the backward kernels autograd itself uses, so gradients agree with the vmap path to rounding
# (the tests hold them to 1e-12 in float64). ReLU, tanh and sigmoid run in place (z is then
# a): their backward needs only a, and every full-size tensor not allocated is one less pass
# through memory — at 100 members × 256 samples × 10 units a pass is 1 MB.
_aten = torch.ops.aten
Activation = tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]]
ACTIVATIONS: dict[type, Callable[[nn.Module], Activation]] = {
    nn.ReLU: lambda _: (torch.relu_, lambda g, z, a, out: _aten.threshold_backward.grad_input(
        g, a, 0, grad_input=out)),
    nn.Tanh: lambda _: (torch.tanh_, lambda g, z, a, out: _aten.tanh_backward.grad_input(
        g, a, grad_input=out)),
    nn.Sigmoid: lambda _: (torch.sigmoid_, lambda g, z, a, out: _aten.sigmoid_backward.grad_input(
        g, a, grad_input=out)),
    nn.GELU: lambda mod: (lambda z: F.gelu(z, approximate=mod.approximate),
                          lambda g, z, a, out: _aten.gelu_backward.grad_input(
                              g, z, approximate=mod.approximate, grad_input=out)),
}


@dataclass(frozen=True)
class Layer:
    """``h ↦ act(b + W h)``: the names of its weight ``(out, in)`` and bias ``(out,)`` (None if
    it has none) among the net's parameters, and the activations applied after it, in order."""

    weight: str
    bias: str | None
    activations: tuple[Activation, ...] = ()


def layers_of(model: nn.Module) -> list[Layer] | None:
    """The layers of ``model`` if it is an MLP this module can run, else ``None``.

    It must be an ``nn.Sequential`` (nested ones are read through) of ``nn.Linear``, the
    activations in :data:`ACTIVATIONS` and ``nn.Identity``, optionally starting with a plain
    ``nn.Flatten()``; exact types only (a subclass may compute something else), no buffers, no
    frozen parameters, no hooks.
    """
    if type(model) is not nn.Sequential or any(True for _ in model.buffers()):
        return None
    if not all(p.requires_grad for p in model.parameters()):
        return None
    layers: list[Layer] = []
    for name, mod in model.named_modules():
        if mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks:
            return None
        kind = type(mod)
        if kind in (nn.Sequential, nn.Identity):
            continue
        if kind is nn.Linear:
            layers.append(Layer(f"{name}.weight", None if mod.bias is None else f"{name}.bias"))
        elif kind in ACTIVATIONS and layers:
            last = layers[-1]
            layers[-1] = Layer(last.weight, last.bias,
                               (*last.activations, ACTIVATIONS[kind](mod)))
        elif not (kind is nn.Flatten and not layers and mod.start_dim == 1
                  and mod.end_dim == -1):
            return None
    return layers or None


class Buffers:
    """Full-size activation buffers handed from one training step to the next.

    A fresh tensor of a megabyte is new memory from the operating system on every step (glibc
    returns freed blocks of that size), and touching it for the first time cost as much as the
    operation writing it (measured: 150 of 180 µs for 100 × 10 × 256 floats). So the forward
    pass writes its hidden activations, and the backward pass its ``∂L/∂h``, into buffers that
    the previous backward pass handed back once it no longer needed them.
    """

    def __init__(self, most: int = 64) -> None:
        self.free: list[Tensor] = []
        self.most = most  # kept at most; shapes change only at an epoch's last, short batch

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A buffer of ``shape`` with ``like``'s dtype and device: a free one or a new one."""
        for i, t in enumerate(self.free):
            if t.shape == shape and t.dtype == like.dtype and t.device == like.device:
                return self.free.pop(i)
        return like.new_empty(shape)

    def give(self, tensors: list[Tensor]) -> None:
        """Hand back buffers nothing reads any more."""
        self.free = (self.free + tensors)[-self.most:]


def forward(layers: list[Layer], params: dict[str, Tensor], x: Tensor, *, shared: bool,
            buffers: Buffers | None = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The members' outputs and what :func:`backward` needs.

    Args:
        layers: from :func:`layers_of`.
        params: ``{name: (M, *shape)}``, the stacked parameters.
        x: with ``shared``, one batch for all members ``(B, ...)``; else one per member
            ``(M, B, ...)``. ``...`` flattens to the ``d`` inputs.
        buffers: where the hidden activations are written, if given (else fresh tensors).

    Returns:
        ``out`` ``(M, C, B)`` (feature-major: ``out.mT`` is the usual ``(M, B, C)``); the
        saved tensors: per layer its input ``h``, then each activation's input and output; and
        the hidden tensors among them (taken from ``buffers``: no output, no input), once each.
        A shared batch enters as ``xᵀ`` expanded over the members (stride 0, no copy).
    """
    M, _, d = params[layers[0].weight].shape
    h = x.reshape(-1, d).T.expand(M, d, -1) if shared else x.reshape(M, -1, d).mT
    saved: list[Tensor] = []
    hidden: list[Tensor] = []
    for k, layer in enumerate(layers):
        saved.append(h)
        W = params[layer.weight]
        out = (buffers.take((M, W.shape[1], h.shape[2]), W)
               if buffers is not None and k < len(layers) - 1 else None)
        b = params[layer.bias].unsqueeze(2) if layer.bias is not None else None
        h = product(W, h, b, out=out)
        for act, _ in layer.activations:
            z, h = h, act(h)
            saved += [z, h]
        if out is not None:  # activations in place keep to the buffer; GELU's is fresh
            hidden += [out] if h is out else [out, h]
    return h, saved, hidden


def backward(layers: list[Layer], params: dict[str, Tensor], saved: list[Tensor],
             g: Tensor, buffers: Buffers | None = None) -> tuple[dict[str, Tensor], list[Tensor]]:
    """``{name: ∂L/∂param (M, *shape)}`` from ``g = ∂L/∂out`` ``(M, C, B)`` and
    :func:`forward`'s saved tensors, and the ``∂L/∂h`` it took from ``buffers``, spent.

    Per layer, with ``δ = ∂L/∂z``: ``∂L/∂W = δ hᵀ``, ``∂L/∂b = Σ_B δ``, and ``∂L/∂h = Wᵀ δ``
    for the layer below.
    """
    grads: dict[str, Tensor] = {}
    spent: list[Tensor] = []
    saved = list(saved)  # popped from the end, layer by layer
    ours = False  # whether g is a tensor of ours, to be overwritten in place
    for k in reversed(range(len(layers))):
        layer = layers[k]
        for _, back in reversed(layer.activations):
            a, z = saved.pop(), saved.pop()
            g, ours = back(g, z, a, g if ours else torch.empty_like(g)), True
        h = saved.pop()
        # A shared batch: Σ_b δ[m, :, b] x[b]ᵀ is one (M·out, B) × (B, d) product.
        grads[layer.weight] = torch.matmul(g, h[0].T) if h.stride(0) == 0 else torch.bmm(g, h.mT)
        if layer.bias is not None:
            grads[layer.bias] = g.sum(2)
        if k:
            Wt = params[layer.weight].mT
            out = None if buffers is None else buffers.take((g.shape[0], Wt.shape[1],
                                                             g.shape[2]), g)
            g, ours = product(Wt, g, out=out), True
            spent += [] if out is None else [out]
    return grads, spent


def product(A: Tensor, B: Tensor, c: Tensor | None = None, *,
            out: Tensor | None = None) -> Tensor:
    """``c + A B`` (``c`` broadcast; none if None) for stacks ``A`` ``(M, r, k)``, ``B``
    ``(M, k, n)``, into ``out`` if given. With ``k = 1`` (a 1-d input, a single output) it is
    an outer product, done as a broadcast multiply: ``bmm`` took 4–10× longer for these
    shapes (measured)."""
    if A.shape[-1] == 1:
        return torch.mul(A, B, out=out) if c is None else torch.addcmul(c, A, B, out=out)
    return torch.bmm(A, B, out=out) if c is None else torch.baddbmm(c, A, B, out=out)


class StackedMLP(torch.autograd.Function):
    """``StackedMLP.apply(theta, layers, params, x, shared, buffers)``: the outputs
    ``(M, B, C)`` of the members whose parameters ``params`` (``{name: (M, *shape)}``) are
    views of the leaf ``theta`` ``(M, P)``; its backward gives ``∂L/∂theta`` ``(M, P)`` in one
    piece, the parameters' gradients laid out as ``params`` lies in ``theta``, and hands the
    hidden activations back to ``buffers`` (:class:`Buffers`): it runs once per forward."""

    @staticmethod
    def forward(ctx, theta: Tensor, layers: list[Layer], params: dict[str, Tensor],
                x: Tensor, shared: bool, buffers: Buffers) -> Tensor:
        out, ctx.saved, ctx.hidden = forward(layers, params, x, shared=shared, buffers=buffers)
        ctx.layers, ctx.params, ctx.buffers = layers, params, buffers
        return out.mT

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.saved is None:
            raise RuntimeError("the stacked MLP's backward runs once per forward pass: its "
                               "buffers are reused after it (no retain_graph)")
        grads, spent = backward(ctx.layers, ctx.params, ctx.saved, g.mT, ctx.buffers)
        ctx.buffers.give(ctx.hidden + spent)
        ctx.saved = ctx.hidden = None
        M = g.shape[0]
        theta_grad = torch.cat([grads[k].reshape(M, -1) for k in ctx.params], 1)
        return theta_grad, None, None, None, None, None
