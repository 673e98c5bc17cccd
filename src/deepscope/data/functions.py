"""One-dimensional regression targets on (0, 1].

The function-fitting studies (deep vs shallow networks with equal parameter counts) fit a
scalar function of one variable. Three targets of increasing difficulty for a ReLU network:

- ``square``: x², smooth and convex;
- ``sinc``: sin(5πx) / (5πx), smooth but oscillating, with decaying amplitude;
- ``sign``: sgn(sin(5πx)), a square wave with jumps at x = 0.2, 0.4, 0.6, 0.8.

Inputs live on (0, 1]: x = 0 is excluded so that sinc's removable singularity never appears in
the data (:func:`sinc` still returns the limit, 1, there). :func:`grid` gives the evenly spaced
inputs used both for the training points and for the dense test grid on which fits are plotted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from deepscope.errors import DataError


def square(x: torch.Tensor) -> torch.Tensor:
    """x², element-wise. Any shape in, the same shape out."""
    return x * x


def sinc(x: torch.Tensor) -> torch.Tensor:
    """sin(5πx) / (5πx), element-wise, with the limit 1 at x = 0 (finite everywhere).

    ``torch.sinc(t)`` is sin(πt)/(πt) with the removable singularity handled, so this is
    ``torch.sinc(5x)``. Any shape in, the same shape out.
    """
    return torch.sinc(5 * x)


def sign(x: torch.Tensor) -> torch.Tensor:
    """sgn(sin(5πx)), element-wise: a square wave with values in {-1, 0, 1}.

    The value is 0 exactly at the zero crossings x = k/5. Grid points such as 0.2 are not
    exactly representable in floating point, and sin(5πx) there is a rounding residue of
    either sign; values within a few units of rounding of zero are therefore mapped to 0, so
    that the nominal crossing points get the mathematical value instead of a random ±1.
    Any shape in, the same shape out.
    """
    s = torch.sin(5 * math.pi * x)
    # |d sin(5πx)/dx| <= 5π, and x <= 1 carries an absolute rounding error of at most eps.
    tol = 4 * 5 * math.pi * torch.finfo(s.dtype).eps
    return torch.where(s.abs() <= tol, torch.zeros_like(s), torch.sign(s))


FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sinc": sinc,
    "sign": sign,
    "square": square,
}
"""The regression targets by name, as used by ``deepscope.load(name)``."""


def grid(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` evenly spaced points i/n, i = 1..n, on (0, 1], as a column of shape (n, 1).

    The spacing is 1/n and the last point is exactly 1; 0 is never included.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"the number of points must be a positive integer, got {n!r}; "
                        "pass e.g. n=500")
    # i/n in float64, then one rounding: each point is the nearest representable value to i/n.
    return (torch.arange(1, n + 1, dtype=torch.float64) / n).to(dtype).unsqueeze(1)
