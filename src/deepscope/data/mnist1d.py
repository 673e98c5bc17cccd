"""MNIST-1D: a small, procedurally generated sequence-classification set (Greydanus, 2020).

Sam Greydanus, "Scaling down deep learning", 2020 (arXiv:2011.14439), introduced MNIST-1D:
ten hand-made one-dimensional templates, one per digit, each turned into many samples by
random padding, stretching, scaling, translation, correlated and independent noise and
shear, then resampled to 40 points. It is cheap (5 000 sequences of length 40), yet linear
models and MLPs do clearly worse on it than CNNs, so it separates architectures the way
MNIST no longer does.

This module re-implements the generation procedure of the authors' ``mnist1d`` package
(version 0.0.2.post1, ``mnist1d.data.make_dataset`` with ``get_dataset_args()``), with numpy
only, so the data set exists on every machine without the network, pickles, scipy or the
package's global random state (the package's ``get_dataset`` would by default download a
pickle from GitHub; nothing of the kind happens here). It draws from a private
``np.random.RandomState(seed)`` in the same order as the package draws from numpy's global
generator; the legacy ``RandomState`` stream is frozen by numpy's compatibility policy, so
the same seed gives the same samples on every numpy version. The package's two scipy calls
are reproduced exactly:
``interp1d(kind="linear")`` on 1-D float64 data delegates to ``np.interp``, used here directly,
and ``gaussian_filter(noise, 2)`` is the symmetric 17-tap correlation written out in
:func:`_gaussian_filter` (same kernel, same reflection at the edges, same order of additions).
The arrays equal the package's bit for bit under the same numpy (checked with numpy 2.4.6
and scipy 1.17.1 for the defaults and five other argument sets, and by an optional test when
the package is installed); under numpy 1.24, 1.26 and 2.0 they differ from those by at most
4.4e-16, from other rounding in numpy's ``exp`` and sums, which :func:`checksum` absorbs.

:func:`generate` makes the arrays for any arguments; :func:`load_arrays` returns the
canonical set (the defaults, seed 42), verified against :data:`SHA256` and cached per process.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from deepscope.errors import DataError

NAME = "mnist1d"
NUM_CLASSES = 10
SEQUENCE_LENGTH = 40
"""Length of every canonical sequence (``final_seq_length``)."""

DEFAULTS: dict[str, object] = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": (36, 60),
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": SEQUENCE_LENGTH,
    "seed": 42,
}
"""The package's ``get_dataset_args()`` (without its download URL): the canonical set."""

CHECKSUM_DECIMALS = 3
"""Inputs are rounded to this many decimals before hashing (see :func:`checksum`)."""

SHA256 = "00d99fc14732c98b5d363c490b5611642dd84af2fbda8febefc31f6130799a43"
""":func:`checksum` of the canonical arrays, ``generate()`` with the defaults."""


class SequenceArrays(NamedTuple):
    """MNIST-1D as numpy arrays: ``x_*`` float64 of shape (N, L), ``y_*`` int64 of shape (N,).

    The canonical set has L = 40, 4 000 training and 1 000 test samples; its inputs are
    standardised over all 5 000 sequences together (mean 0, standard deviation 1).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def templates() -> np.ndarray:
    """The ten digit templates, float64 of shape (10, 12); row ``d`` draws digit ``d``.

    Each hand-drawn outline is standardised (zero mean, unit standard deviation), shifted so
    it starts and ends at 0, and divided by 6.
    """
    drawn = np.asarray([
        [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
        [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
        [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
        [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
        [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
        [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
        [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
        [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
    ])
    # In place and in this order, as the package does, so the float64 values are identical.
    drawn -= drawn.mean(1, keepdims=True)
    drawn /= drawn.std(1, keepdims=True)
    drawn -= drawn[:, :1]
    return drawn / 6.0


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of ``x`` (shape (L,)) from L to ``n`` evenly spaced points on
    [0, 1]: what ``scipy.interpolate.interp1d(kind="linear")`` computes, through the same
    ``np.interp`` it delegates to for 1-D float64 data."""
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(x)), x)


def _gaussian_filter(x: np.ndarray, sigma: float = 2.0, truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing along the last axis, exactly as ``scipy.ndimage.gaussian_filter``
    does it for 1-D input with its defaults (``mode="reflect"``, ``truncate=4``).

    The kernel has radius ⌊truncate·σ + ½⌋ (8 for σ = 2) and weights exp(−x²/2σ²) divided by
    their sum; the input is extended by mirroring about its ends (d c b a | a b c d | d c b a),
    and each output is w₀·x_i + Σ_{j=r..1} w_j·(x_{i−j} + x_{i+j}), summed in that order
    (scipy's loop for symmetric kernels), so results agree to the last bit. ``x`` has shape
    (..., L) with L > radius; the result has its shape.
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * offsets**2)
    weights = weights / weights.sum()
    length = x.shape[-1]
    pad = [(0, 0)] * (x.ndim - 1) + [(radius, radius)]
    padded = np.pad(x, pad, mode="symmetric")  # numpy's "symmetric" is scipy's "reflect"

    def window(j: int) -> np.ndarray:
        return padded[..., radius + j: radius + j + length]

    out = window(0) * weights[radius]
    for j in range(radius, 0, -1):
        out = out + (window(-j) + window(j)) * weights[radius + j]
    return out


class _Draws(NamedTuple):
    """The random numbers of S samples, in the order the package draws them per sample."""

    pad: np.ndarray  # (S,) uniform [0, 1): length of the zero padding
    scale: np.ndarray  # (S,) uniform: amplitude factor
    shift: np.ndarray  # (S,) int in [0, max_translation): circular translation
    corr: np.ndarray  # (S, L) standard normal: correlated noise before smoothing
    iid: np.ndarray  # (S, L) standard normal: white noise
    shear: np.ndarray  # (S,) uniform: slope of the linear trend


def _draw(rs: np.random.RandomState, samples: int, length: int,
          max_translation: int) -> _Draws:
    """Draw every sample's random numbers from ``rs``, one sample after another, in the
    package's order: padding, scale, translation, correlated noise, white noise, shear.

    Drawing sample by sample keeps the stream identical to the package's interleaved calls
    (the legacy normal generator works in pairs and the bounded integers reject some draws,
    so batched draws would land on other numbers); the arithmetic is then vectorised.
    """
    pad, scale, shift, shear = (np.empty(samples) for _ in range(4))
    corr, iid = np.empty((samples, length)), np.empty((samples, length))
    for i in range(samples):
        pad[i] = rs.rand()
        scale[i] = rs.rand()
        # The package's np.random.choice(max_translation) is randint(0, max_translation).
        shift[i] = rs.randint(0, max_translation)
        corr[i] = rs.randn(length)
        iid[i] = rs.randn(length)
        shear[i] = rs.rand()
    return _Draws(pad, scale, shift.astype(np.int64), corr, iid, shear)


def _transform(digits: np.ndarray, draws: _Draws, *, template_len: int,
               padding: Sequence[int], scale_coeff: float, corr_noise_scale: float,
               iid_noise_scale: float, shear_scale: float,
               final_seq_length: int) -> np.ndarray:
    """Samples of the templates ``digits`` (shape (S,)) under ``draws``: float64 (S, L_final).

    Every operation is the package's, element for element, so the values are bit-identical.
    """
    low, high = padding
    length = template_len + high
    shapes = templates()
    # Pad with n zeros (the epsilon keeps the signal itself non-zero, so the noise mask below
    # can tell them apart) and stretch to a fixed length. Only 10 × (high − low + 1) distinct
    # results exist, so each is computed once.
    n_pad = low + (draws.pad * (high - low + 1)).astype(np.int64)
    keys, which = np.unique(np.stack([digits, n_pad], 1), axis=0, return_inverse=True)
    stretched = np.stack([_resample(np.concatenate([shapes[d] + 1e-8, np.zeros(n)]), length)
                          for d, n in keys])
    x = stretched[which.ravel()]
    x = x * (1 + scale_coeff * (draws.scale - 0.5))[:, None]
    # Translate circularly: position i takes the value from i − shift.
    x = np.take_along_axis(x, (np.arange(length) - draws.shift[:, None]) % length, axis=1)
    # Correlated noise only where there is no signal, then white noise everywhere.
    corr = _gaussian_filter(corr_noise_scale * draws.corr)
    x = np.where(x != 0, x, corr)
    x = x + iid_noise_scale * draws.iid
    # Shear: add a random linear trend, then resample to the final length.
    trend = (shear_scale * (draws.shear - 0.5))[:, None] * np.linspace(-0.5, 0.5, length)
    x = x - trend
    grid, positions = np.linspace(0, 1, final_seq_length), np.linspace(0, 1, length)
    return np.stack([np.interp(grid, positions, row) for row in x])


def generate(*, num_samples: int = 5000, train_split: float = 0.8, template_len: int = 12,
             padding: Sequence[int] = (36, 60), scale_coeff: float = 0.4,
             max_translation: int = 48, corr_noise_scale: float = 0.25,
             iid_noise_scale: float = 2e-2, shear_scale: float = 0.75,
             shuffle_seq: bool = False, final_seq_length: int = SEQUENCE_LENGTH,
             seed: int = 42) -> SequenceArrays:
    """Generate MNIST-1D with the ``mnist1d`` package's procedure; defaults give the canonical set.

    ``num_samples // 10`` samples are drawn per digit from its template: zero padding of a
    random length in ``padding``, stretching to ``template_len + padding[1]`` points, a
    random amplitude factor in 1 ± ``scale_coeff``/2, a circular shift by fewer than
    ``max_translation`` points, smoothed Gaussian noise of scale ``corr_noise_scale`` where
    the signal is zero, white noise of scale ``iid_noise_scale``, a linear trend of slope up
    to ±``shear_scale``/2, and resampling to ``final_seq_length`` points. The samples are
    then shuffled, optionally the positions too (``shuffle_seq``: one permutation for all
    sequences, which destroys locality), all inputs are standardised together, and the first
    ``int(num_samples·train_split)`` form the training set. Returns unverified arrays (x
    float64 of shape (N, final_seq_length), y int64 of shape (N,)); :func:`load_arrays` gives
    the verified canonical set. Deterministic: a private ``np.random.RandomState(seed)``
    supplies every random number.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 10:
        raise DataError(f"num_samples={num_samples!r}: MNIST-1D needs an integer ≥ 10 (one "
                        "sample per digit at least). Fix: pass e.g. num_samples=5000")
    if not 0 < train_split < 1 or not 1 <= int(num_samples * train_split) < num_samples:
        raise DataError(f"train_split={train_split!r} leaves no training or no test samples "
                        f"of {num_samples}. Fix: pass a fraction in (0, 1), e.g. 0.8")
    if len(padding) != 2 or not 0 <= padding[0] <= padding[1]:
        raise DataError(f"padding={tuple(padding)!r} must be (low, high) with "
                        "0 ≤ low ≤ high. Fix: pass e.g. padding=(36, 60)")
    if template_len + padding[1] <= 8 or max_translation < 1 or final_seq_length < 2:
        raise DataError("template_len + padding[1] must exceed 8 (the noise filter's radius), "
                        "max_translation be ≥ 1 and final_seq_length ≥ 2. Fix: use the "
                        "defaults, e.g. max_translation=48 and final_seq_length=40")
    rs = np.random.RandomState(seed)
    per_class = num_samples // NUM_CLASSES
    digits = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), per_class)
    draws = _draw(rs, len(digits), template_len + padding[1], max_translation)
    xs = _transform(digits, draws, template_len=template_len, padding=padding,
                    scale_coeff=scale_coeff, corr_noise_scale=corr_noise_scale,
                    iid_noise_scale=iid_noise_scale, shear_scale=shear_scale,
                    final_seq_length=final_seq_length)
    order = rs.permutation(len(digits))
    xs, ys = xs[order], digits[order]
    if shuffle_seq:
        xs = xs[:, rs.permutation(final_seq_length)]
    xs = (xs - xs.mean()) / xs.std()
    split = int(len(ys) * train_split)
    return SequenceArrays(xs[:split], ys[:split], xs[split:], ys[split:])


def checksum(arrays: SequenceArrays, decimals: int = CHECKSUM_DECIMALS) -> str:
    """SHA-256 (hex) of the arrays, with inputs rounded to ``decimals`` decimal places.

    Hashed: each array's shape, then its values as little-endian int64, the inputs as
    ``rint(x·10^decimals)``. Rounding makes the digest a property of the data rather than of
    the floating-point unit: generation involves ``exp``, interpolation and a standardisation
    over 200 000 values, which other CPUs, SIMD paths or numpy versions compute a few units
    in the last place differently (measured: up to 4.4e-16 between numpy 1.24 and 2.4), and
    float64 or float32 bytes would change with them. A value moves to another rounding step
    only if it lies within that error of a half-step; the canonical inputs lie at least
    2.6e-9 from one (``test_checksum_margin`` checks it), over a million times the error,
    while any real change to the procedure (another draw, template or scale) moves values
    by far more than the step of 1e-3.
    """
    digest = hashlib.sha256(b"deepscope mnist1d v1")
    for array in arrays:
        values = np.rint(array * 10.0**decimals) if array.dtype.kind == "f" else array
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(values, dtype="<i8").tobytes())
    return digest.hexdigest()


def verify(arrays: SequenceArrays, expected: str | None = None) -> None:
    """Raise :class:`DataError` unless ``arrays`` have the :func:`checksum` ``expected``
    (default :data:`SHA256`, the canonical set's)."""
    expected = SHA256 if expected is None else expected
    actual = checksum(arrays)
    if actual != expected:
        raise DataError(
            f"the generated MNIST-1D differs from the canonical set: SHA-256 {actual}, "
            f"expected {expected}. The generator in {__name__} or numpy's legacy RandomState "
            "no longer reproduces Greydanus's data. Fix: reinstall deepscope and numpy "
            "(pip install --force-reinstall deepscope numpy); if it persists, report it with "
            "both digests and `python -c 'import numpy; numpy.show_runtime()'`")


def load_arrays() -> SequenceArrays:
    """The canonical MNIST-1D (:func:`generate` with the defaults), verified against
    :data:`SHA256`, cached per process and read-only. Never touches the network or disk."""
    return _canonical()


@functools.lru_cache(maxsize=1)
def _canonical() -> SequenceArrays:
    arrays = generate()
    verify(arrays)
    for array in arrays:
        # The arrays live in a per-process cache shared by every caller.
        array.flags.writeable = False
    return arrays
