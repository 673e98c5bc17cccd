"""Models whose size is a budget, not a width.

Comparing a deep and a shallow network is only fair when both have the same number of
parameters (the original report compared CNNs of 40 630 and 146 482 parameters). The builders
here take the budget ``params=N`` and solve for the widths that hit it:

* every hidden layer gets the same width ``w``, except the **last** hidden layer, whose width
  ``u`` is free. For a fixed ``w`` the count is linear in ``u`` with slope ≈ ``w``, so scanning
  ``(w, u)`` reaches the budget to within about ``w/2`` parameters; among the solutions
  within 2 % the most uniform is taken (tested over a grid of depths and budgets).

``mlp`` builds ``Flatten → [Linear → act] × depth → Linear``; ``cnn`` builds ``depth`` blocks of
``Conv3×3 → ReLU`` (the first three with 2×2 max-pooling), adaptive max-pooling to a
3×3 grid and a linear classifier on the flattened features — or, for sequences
(``input_shape=(C, L)``, e.g. MNIST-1D's (1, 40)), the same with kernel-3 1-D convolutions,
pooling by 2 and an adaptive pool to at most 3 positions; ``pooling="matched"`` gives every
depth the same three 2× pools instead (depth then is the only difference). Initialisation is
PyTorch's default, drawn from a seeded private RNG so the global random state is never touched.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


def count_params(model: nn.Module) -> int:
    """Number of trainable scalars (weights and biases) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- parameter counts in closed form, so width can be solved without building models -----


def mlp_param_count(in_dim: int, out_dim: int, widths: list[int]) -> int:
    """Parameters of an MLP with hidden ``widths``: Σ (fan_in + 1)·fan_out over the layers."""
    dims = [in_dim, *widths, out_dim]
    return sum((a + 1) * b for a, b in pairwise(dims))


MAX_DEPTH = 1000  # hidden layers; beyond this the width search itself gets slow
POOLED_SIDE = 3  # feature maps are max-pooled to at most 3 (×3) before the classifier
KERNEL = 3  # convolution kernel side
POOLED_BLOCKS = 3  # blocks followed by a max-pool halving every spatial side


def cnn_input_shape(in_channels: int | None = None, image_size: int | None = None,
                    input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """The ``(C, L)`` or ``(C, H, W)`` input of a :func:`cnn`, from either description.

    ``input_shape`` gives it whole: two entries for sequences (1-D convolutions), three for
    images (2-D convolutions). Otherwise images are square: ``(in_channels, image_size,
    image_size)``, by default ``(1, 28, 28)`` (MNIST).
    """
    if input_shape is None:
        side = 28 if image_size is None else image_size
        return (1 if in_channels is None else in_channels, side, side)
    if in_channels is not None or image_size is not None:
        raise ValueError("give input_shape=, or in_channels=/image_size=, not both")
    try:  # operator.index takes Python and numpy integers (and torch.Size), never floats
        shape = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, L) for sequences or (C, H, W) for images, "
                         f"positive integers, got {input_shape!r}")
    return shape


POOLINGS = ("adaptive", "matched")
"""How a :func:`cnn` pools: ``adaptive`` (a 2× pool after each of the first three blocks,
then an adaptive pool to at most 3 per axis) or ``matched`` (three 2× pools at the same
resolutions whatever the depth, and no adaptive pool)."""


def _cnn_spatial(depth: int, spatial: Sequence[int],
                 pooling: str = "adaptive") -> tuple[int, ...]:
    """Size of the feature map the classifier sees, per spatial axis: pooling by 2 after each
    of the first three blocks, then adaptive max-pooling to at most ``POOLED_SIDE``; or, for
    ``pooling="matched"``, three halvings (floor) at every depth."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
    halvings = POOLED_BLOCKS if pooling == "matched" else min(depth, POOLED_BLOCKS)
    if min(spatial) < 2**halvings:
        raise ValueError(f"an input of spatial size {tuple(spatial)} is too small for "
                         f"{halvings} max-pooling(s) by 2; it needs at least {2**halvings} per "
                         "axis. Fix: use fewer blocks or a larger input")
    if pooling == "matched":
        return tuple(s // 2**halvings for s in spatial)
    return tuple(min(s // 2**halvings, POOLED_SIDE) for s in spatial)


def cnn_param_count(
    channels: list[int], in_channels: int | None = None, num_classes: int = 10,
    image_size: int | None = None, *, input_shape: Sequence[int] | None = None,
    pooling: str = "adaptive",
) -> int:
    """Parameters of :func:`cnn` with per-block ``channels``: the convolutions (3×3 for
    images, 3 for sequences, each with a bias) plus a linear head on the pooled features.
    The input and ``pooling`` are described as for :func:`cnn` (default ``(1, 28, 28)``)."""
    shape = cnn_input_shape(in_channels, image_size, input_shape)
    taps = KERNEL ** (len(shape) - 1)
    conv = sum((taps * a + 1) * b for a, b in pairwise([shape[0], *channels]))
    features = channels[-1] * math.prod(_cnn_spatial(len(channels), shape[1:], pooling))
    return conv + (features + 1) * num_classes


def _solve_widths(depth: int, budget: int, count: Callable[[list[int]], int]) -> list[int]:
    """Widths ``[w]*(depth-1) + [u]`` whose parameter count is within 1.9 % of ``budget``.

    Among the solutions within tolerance the most uniform one (smallest ``|u−w|/w``) wins, so a
    deep net is not turned into a bottleneck or a bulge. If none is within tolerance (a wide
    input makes every unit of a one-layer net cost ``in_dim + out_dim + 1`` parameters), a
    ValueError names the nearest reachable counts.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
    if budget < count([1] * depth):
        raise ValueError(
            f"a budget of {budget} parameters is below the smallest depth-{depth} model "
            f"({count([1] * depth)}); raise params or lower depth"
        )
    candidates: list[tuple[int, list[int]]] = []
    for w in range(1, budget + 1) if depth > 1 else [1]:
        if depth > 1 and count([w] * depth) > 2 * budget:
            break
        # The count is affine in u for fixed w: solve for u, then take the two integers.
        c1, c2 = count([w] * (depth - 1) + [1]), count([w] * (depth - 1) + [2])
        u_star = 1 + (budget - c1) / (c2 - c1)
        for u in {max(1, math.floor(u_star)), max(1, math.ceil(u_star))}:
            widths = [w] * (depth - 1) + [u]
            candidates.append((abs(count(widths) - budget), widths))
    close = [c for c in candidates if c[0] <= 0.019 * budget]
    if not close:
        below = max((count(w) for _, w in candidates if count(w) < budget), default=None)
        above = min((count(w) for _, w in candidates if count(w) > budget), default=None)
        raise ValueError(
            f"no depth-{depth} model has {budget} ± 2 % parameters (the nearest counts are "
            f"{below} and {above}); choose a budget near one of them, or give the width"
        )
    return min(close, key=lambda c: (abs(c[1][-1] - c[1][0]) / c[1][0], c[0]))[1]


def mlp_widths(in_dim: int, out_dim: int, depth: int, params: int) -> list[int]:
    """Hidden widths of a depth-``depth`` MLP with ≈ ``params`` parameters."""
    return _solve_widths(depth, params, lambda ws: mlp_param_count(in_dim, out_dim, ws))


def cnn_channels(depth: int, params: int, in_channels: int | None = None,
                 num_classes: int = 10, image_size: int | None = None, *,
                 input_shape: Sequence[int] | None = None,
                 pooling: str = "adaptive") -> list[int]:
    """Channels per block of a depth-``depth`` CNN with ≈ ``params`` parameters (input and
    ``pooling`` as for :func:`cnn`, default ``(1, 28, 28)``)."""
    shape = cnn_input_shape(in_channels, image_size, input_shape)
    _cnn_spatial(depth, shape[1:], pooling)  # a clear error for inputs too small
    return _solve_widths(
        depth, params, lambda cs: cnn_param_count(cs, num_classes=num_classes,
                                                  input_shape=shape, pooling=pooling)
    )


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with PyTorch's default init drawn from RNG state ``seed``, restoring the
    caller's global RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def mlp(
    in_dim: int,
    out_dim: int,
    depth: int,
    params: int | None = None,
    *,
    width: int | None = None,
    activation: str = "relu",
    seed: int = 0,
) -> nn.Sequential:
    """A fully connected network with ``depth`` hidden layers.

    Give either ``params`` (the width is solved so the count lands within 2 % of it) or a fixed
    ``width`` for every hidden layer. Inputs of any shape ``(N, *s)`` with ``prod(s) == in_dim``
    are flattened; the output has shape ``(N, out_dim)``.
    """
    if (params is None) == (width is None):
        raise ValueError("give exactly one of params= or width=")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    widths = [width] * depth if width is not None else mlp_widths(in_dim, out_dim, depth, params)
    dims = [in_dim, *widths]

    def build() -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in pairwise(dims):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(dims[-1], out_dim))
        return nn.Sequential(*layers)

    return _seeded(build, seed)


def cnn(
    depth: int,
    params: int | None = None,
    *,
    channels: int | None = None,
    in_channels: int | None = None,
    num_classes: int = 10,
    image_size: int | None = None,
    input_shape: Sequence[int] | None = None,
    pooling: str = "adaptive",
    seed: int = 0,
) -> nn.Sequential:
    """A convolutional classifier with ``depth`` conv blocks, for images or sequences.

    Images ``(N, C, H, W)`` (the default, ``(1, 28, 28)``; or ``in_channels``/``image_size``
    for square images, or ``input_shape=(C, H, W)``): each block is ``Conv2d(3×3,
    padding=1) → ReLU``, the first three with a 2×2 max-pool (applied before the ReLU, which
    is the same function and cheaper); the maps are then max-pooled to at most 3×3 and a
    linear layer maps the flattened features to ``num_classes`` logits.

    Sequences ``(N, C, L)``, chosen by ``input_shape=(C, L)`` (MNIST-1D: ``(1, 40)``): the
    same with ``Conv1d(3, padding=1)``, max-pools of 2 and an adaptive max-pool to at most 3
    positions. Give ``params`` (channels solved to within 2 %) or a fixed ``channels`` per
    block.

    ``pooling="matched"`` gives every depth the same pooling schedule, so that depth is the
    only difference between nets of one budget: three 2× max-pools at the same resolutions
    (28 → 14 → 7 → 3 for MNIST, 40 → 20 → 10 → 5 for MNIST-1D), the first after block 1, the
    second after block 2 (or straight after the last block, if the net is shallower), and so
    on, and no adaptive pool, so the classifier always sees the same map (3×3 for MNIST). The
    default, ``"adaptive"``, pools after the first three blocks and then adaptively to at
    most 3 per axis: a 1-block net pools 14×14 to 3×3 in one coarse step, a 2-block net
    7×7 to 3×3 — a pooling that differs with depth.
    """
    if (params is None) == (channels is None):
        raise ValueError("give exactly one of params= or channels=")
    shape = cnn_input_shape(in_channels, image_size, input_shape)
    pooled = _cnn_spatial(depth, shape[1:], pooling)
    chans = (
        [channels] * depth
        if channels is not None
        else cnn_channels(depth, params, num_classes=num_classes, input_shape=shape,
                          pooling=pooling)
    )
    conv, pool, adaptive = ((nn.Conv1d, nn.MaxPool1d, nn.AdaptiveMaxPool1d) if len(shape) == 2
                            else (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d))

    def build() -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip([shape[0], *chans[:-1]], chans)):
            layers.append(conv(a, b, KERNEL, padding=KERNEL // 2))
            # Max-pooling before the ReLU computes the same function (ReLU is monotone, so
            # max∘ReLU = ReLU∘max) with the ReLU on a quarter of the activations: measured 1.2×
            # faster training steps for the 100-channel one-block net on CPU.
            if i < POOLED_BLOCKS:
                layers.append(pool(2))
            layers.append(nn.ReLU())
        if pooling == "matched":  # the pools a shallow net has no block for, at once
            layers += [pool(2) for _ in range(depth, POOLED_BLOCKS)]
            layers += [nn.Flatten(), nn.Linear(chans[-1] * math.prod(pooled), num_classes)]
            return nn.Sequential(*layers)
        # Pooling to a small fixed grid keeps the classifier from dominating the budget of a
        # shallow net (a 14×14 map would put 98 % of its parameters in the last layer).
        # One number when every axis agrees (square images, all sequences): the module
        # prints as it always has.
        size = pooled[0] if len(set(pooled)) == 1 else pooled
        layers += [adaptive(size), nn.Flatten(),
                   nn.Linear(chans[-1] * math.prod(pooled), num_classes)]
        return nn.Sequential(*layers)

    return _seeded(build, seed)


# --- a residual network, for probing a real architecture -------------------------------------


class BasicBlock(nn.Module):
    """He et al. (2016)'s basic residual block: two 3×3 convolutions with batch norm, and a
    1×1 projection on the shortcut where the shape changes."""

    def __init__(self, a: int, b: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(a, b, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(b)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(b, b, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(b)
        self.downsample = (nn.Sequential(nn.Conv2d(a, b, 1, stride, bias=False),
                                         nn.BatchNorm2d(b))
                           if stride != 1 or a != b else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet-18/34 (He et al., 2016) laid out as ``torchvision.models.resnet18``/``34``:
    the same modules under the same names (``conv1``, ``bn1``, ``layer1`` … ``layer4``,
    ``fc``), so a glob such as ``"layer4.*"`` and a torchvision state dict of the same
    shapes apply. ``blocks`` per stage ((2, 2, 2, 2) for ResNet-18), ``width`` of the first
    stage (64; the stages double it). Input ``(N, in_channels, H, W)``, output
    ``(N, num_classes)``."""

    def __init__(self, blocks: Sequence[int], num_classes: int, in_channels: int,
                 width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, a = (width, 2 * width, 4 * width, 8 * width), width
        for i, (b, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(a if j == 0 else b, b, stride if j == 0 else 1)
                      for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            a = b
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10, in_channels: int = 1, seed: int = 0, width: int = 64
             ) -> ResNet:
    """ResNet-18 (He et al., 2016), random initialisation from ``seed``: 11 689 512
    parameters for 1 000 classes and 3 channels (torchvision's count), 11 175 370 for
    MNIST's 10 classes and 1 channel (the defaults). ``deepscope probe
    deepscope.models:resnet18`` probes it."""
    return _seeded(lambda: ResNet((2, 2, 2, 2), num_classes, in_channels, width), seed)
