"""What a study is, and how its configuration is built from scales and overrides.

A study is a module with a frozen ``Config`` dataclass (its defaults are the ``default``
scale), ``SCALES`` (overrides for ``quick`` and ``full``), and three functions:
``run(cfg, ctx) -> {name: array}`` (compute only), ``plot(result, cfg) -> {name: Figure}``
(no torch) and ``findings(result, cfg) -> [sentence]``. ``Study`` bundles them for the
registry.

Overrides arrive as strings from ``--set key=value`` or as Python values from
``deepscope.run(..., key=value)``; :func:`make_config` checks every key against the config's
fields ("did you mean ...?") and parses every value by the field's declared type; the
config's own construction then checks each value against the range its field declares
(:mod:`.fields`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, suggest
from .fields import field as field  # the declaration every study's Config uses

SCALE_NAMES = ("quick", "default", "full")
_UNIONS = (typing.Union, types.UnionType)
MAX_INT = 10_000_000  # no count in any study (epochs, widths, seeds, ...) comes near this


VERDICTS = ("agrees", "disagrees", "inconclusive", "not testable")
TESTED = {True: "agrees", False: "disagrees", None: "inconclusive"}
"""The verdict of a criterion that was evaluated, from :func:`verdict`'s True/False/None."""


@dataclass(frozen=True)
class Expectation:
    """What the literature expects, and whether the stored measurement agrees.

    ``agrees`` is computed from the result by the stated ``criterion``; it is never written by
    hand. ``None`` has two meanings that ``verdict`` tells apart: ``"not testable"`` (the
    criterion cannot be evaluated for this configuration, the default) and ``"inconclusive"``
    (it was evaluated, but the measurement's interval reaches both sides — see :func:`verdict`).
    ``measured`` optionally states the statistic with its interval, for the report.
    """

    claim: str
    reference: str
    criterion: str
    agrees: bool | None
    verdict: str = ""
    measured: str = ""

    def __post_init__(self) -> None:
        implied = {True: "agrees", False: "disagrees", None: "not testable"}[self.agrees]
        if not self.verdict:
            object.__setattr__(self, "verdict", implied)
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if (self.agrees is not None and self.verdict != implied) or (
                self.agrees is None and self.verdict in ("agrees", "disagrees")):
            raise ValueError(f"verdict {self.verdict!r} contradicts agrees={self.agrees}")


@dataclass(frozen=True)
class DataNeed:
    """A data set a study reads, and how many samples it draws from each split.

    The runner checks every need before any work starts (a missing or too small data set is
    exit 2, not a failure half-way through ``run all``) and keys the cache on the contents
    of what it found. An ``optional`` set that is absent is skipped by the study, which says so.
    """

    name: str
    train: int | None = None
    test: int | None = None
    optional: bool = False


@dataclass(frozen=True)
class Study:
    """A registered study: its name, config class, the functions and its scales.

    ``literature(result, cfg) -> Expectation`` compares the measurement with the published
    expectation for the report; ``data(cfg) -> (DataNeed, ...)`` names the data sets read.
    """

    name: str
    Config: type
    run: Callable[..., dict[str, np.ndarray]]
    plot: Callable[..., dict[str, Any]]
    findings: Callable[..., list[str]]
    scales: Mapping[str, Mapping[str, Any]]
    question: str = ""
    literature: Callable[..., Expectation] | None = None
    data: Callable[[Any], tuple[DataNeed, ...]] = lambda cfg: ()

    @property
    def summary(self) -> str:
        """First line of the study module's docstring."""
        return self.question.strip().splitlines()[0] if self.question else ""


def _parse(text: str, typ: Any, key: str) -> Any:
    """Parse ``text`` as ``typ`` (int, float, bool, str, tuple[T, ...], T | None)."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in _UNIONS:
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse(text, inner[0], key)
    if origin is tuple:
        parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(_parse(p, args[0], key) for p in parts)
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    return str(text)


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check (and lightly convert) a Python value given for field ``key`` of type ``typ``."""
    if isinstance(value, str) and typ is not str:
        return _parse(value, typ, key)
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in _UNIONS:
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = (value,)
        return tuple(_coerce(v, args[0], key) for v in value)
    if typ is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    if typ is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected {getattr(typ, '__name__', typ)}, got {value!r}")


def make_config(study: Study, scale: str = "default", overrides: Mapping[str, Any] | None = None):
    """The study's config at ``scale`` with ``overrides`` applied, type-checked.

    Raises:
        ConfigError: unknown scale or key (with a suggestion), a value of the wrong type, or
            one outside its field's declared range.
    """
    if scale not in SCALE_NAMES:
        raise ConfigError(f"unknown scale {scale!r}; {suggest(scale, SCALE_NAMES)}")
    hints = typing.get_type_hints(study.Config)
    names = [f.name for f in dataclasses.fields(study.Config)]
    values: dict[str, Any] = dict(study.scales.get(scale, {}))
    for key, value in (overrides or {}).items():
        if key not in names:
            raise ConfigError(
                f"{study.name} has no config key {key!r}; {suggest(key, names)} "
                f"(see `deepscope show {study.name}`)"
            )
        values[key] = _coerce(value, hints[key], key)
    for key, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ConfigError(f"{key}: must be finite numbers, got {value}")
        if any(isinstance(v, int) and abs(v) > MAX_INT for v in items):
            raise ConfigError(f"{key}: {value} is implausibly large; use values up to "
                              f"{MAX_INT:,}")
        if isinstance(value, tuple) and not value:
            raise ConfigError(f"{key}: needs at least one value")
    try:
        return study.Config(**values)
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"{study.name}: {e}") from e


def stored_config(study: Study, config: Mapping[str, Any]):
    """The study's config as a run stored it in ``config.json``, rebuilt without re-reading
    scales or overrides: JSON lists become the tuples they were.

    Raises:
        TypeError, ValueError: the stored config does not fit this version's ``Config``.
    """
    return study.Config(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in config.items()})


def ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n−1 along the last axis, ties sharing their average rank: shape of ``a``."""
    a = np.asarray(a, dtype=float)
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    n = a.shape[-1]
    idx = np.broadcast_to(np.arange(n), a.shape)
    starts = np.ones(a.shape, dtype=bool)
    starts[..., 1:] = s[..., 1:] != s[..., :-1]
    ends = np.ones(a.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    # Every member of a run of equal values gets (first + last) / 2 of the run's positions.
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, n), -1), axis=-1), -1)
    out = np.empty(a.shape)
    np.put_along_axis(out, order, (first + last) / 2, axis=-1)
    return out


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of ``a`` and ``b`` ``(..., n)``; NaN if constant."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def spearman(x, y) -> float:
    """Spearman rank correlation of two 1-D sequences, ties at their average rank (NaN for
    fewer than 3 points or a constant sequence)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3:
        return float("nan")
    return float(_pearson_rows(ranks(x), ranks(y)))


def spearman_ci(x, y, *, seed: int = 0, n_boot: int = 2000,
                level: float = 0.95) -> tuple[float, float, float]:
    """Spearman ρ of paired samples with a percentile-bootstrap interval: ``(ρ, lo, hi)``.

    The ``n`` pairs (x_i, y_i) are resampled with replacement ``n_boot`` times (a seeded
    ``numpy`` generator, so the interval is reproducible), ρ is recomputed on each resample
    and the interval is its central ``level`` quantile range. Resamples in which x or y is
    constant have no ρ and are left out. All NaN for fewer than 3 pairs.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) < 3:
        return float("nan"), float("nan"), float("nan")
    rho = spearman(x, y)
    pick = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    boot = _pearson_rows(ranks(x[pick]), ranks(y[pick]))
    boot = boot[np.isfinite(boot)]
    if not len(boot):
        return rho, float("nan"), float("nan")
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return rho, float(lo), float(hi)


def bootstrap_ci(*samples, statistic: Callable[..., float], seed: int = 0,
                 n_boot: int = 2000, level: float = 0.95,
                 vectorized: bool = False) -> tuple[float, float, float]:
    """``statistic(*samples)`` with a percentile-bootstrap interval: ``(value, lo, hi)``.

    Each 1-D sample (e.g. the seeds of one model, or of two models being compared) is
    resampled with replacement, independently, ``n_boot`` times with a seeded generator;
    the interval is the central ``level`` range of the statistic over the resamples (those
    where it is not finite are left out). NaN samples (diverged seeds) are dropped first; all
    NaN when a sample is then empty. Example: the difference of two models' median losses,
    ``bootstrap_ci(a, b, statistic=lambda a, b: np.median(a) - np.median(b))``.

    ``vectorized``: the statistic reduces the last axis (``np.median(a, axis=-1)``), so all
    resamples go through one call with ``(n_boot, n)`` arrays instead of ``n_boot`` calls —
    the same resamples and, for order statistics such as the median, the same numbers; a
    report of the quick suite spent 6 of its 7 s in per-resample medians.
    """
    samples = [np.asarray(s, dtype=float) for s in samples]
    samples = [s[np.isfinite(s)] for s in samples]
    if any(len(s) == 0 for s in samples):
        return float("nan"), float("nan"), float("nan")
    value = float(statistic(*samples))
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, len(s), size=(n_boot, len(s))) for s in samples]
    if vectorized:
        boot = np.asarray(statistic(*(s[p] for s, p in zip(samples, picks))), dtype=float)
    else:
        boot = np.array([statistic(*(s[p[b]] for s, p in zip(samples, picks)))
                         for b in range(n_boot)], dtype=float)
    boot = boot[np.isfinite(boot)]
    if not len(boot):
        return value, float("nan"), float("nan")
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return value, float(lo), float(hi)


def row_median(a: np.ndarray) -> np.ndarray:
    """The median over the last axis: of one sample ``(n,)``, or of each of a batch of
    bootstrap resamples ``(n_boot, n)`` (a ``vectorized`` statistic for :func:`bootstrap_ci`)."""
    return np.median(a, axis=-1)


def verdict(lo: float, hi: float, expected_sign: int, threshold: float = 0.0) -> bool | None:
    """Does an interval ``[lo, hi]`` for a statistic agree with the expected sign?

    ``expected_sign`` is +1 (the literature expects the statistic above ``threshold``) or −1
    (below it). True when the whole interval lies on the expected side, False when it lies
    wholly on the other side, None ("inconclusive") when it straddles ``threshold`` or is
    undefined (NaN).
    """
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    lo_s, hi_s = sorted((expected_sign * (lo - threshold), expected_sign * (hi - threshold)))
    if lo_s > 0:
        return True
    if hi_s < 0:
        return False
    return None


def require(condition: bool, message: str) -> None:
    """Config validation helper: raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)




def epoch_reaching(curve: np.ndarray, epoch: np.ndarray, level: float, *, above: bool) -> float:
    """The first recorded epoch at which ``curve`` ``(T,)`` crosses ``level``: reaches at
    least ``level`` when ``above`` (an accuracy), falls below it otherwise (a loss); NaN if
    it never does. ``epoch`` ``(T,)`` holds the epoch of each recorded value."""
    hit = np.nonzero(curve >= level if above else curve < level)[0]
    return float(epoch[hit[0]]) if hit.size else float("nan")


def median_choice(values: np.ndarray, *, lower_is_better: bool = True) -> np.ndarray:
    """Per row, the index of the setting whose median over seeds is best.

    ``values`` ``(..., K, S)``: a measurement of K settings (e.g. a learning-rate grid) in S
    seeds each; returns ``(...)`` indices into K. A NaN seed (diverged) counts as the worst
    possible value, so a setting that diverges in half its seeds is not chosen for the other
    half; ties go to the first setting.
    """
    v = np.asarray(values, dtype=float)
    worst = np.inf if lower_is_better else -np.inf
    med = np.median(np.where(np.isnan(v), worst, v), axis=-1)
    return np.argmin(med, axis=-1) if lower_is_better else np.argmax(med, axis=-1)


def chosen(result: dict[str, np.ndarray], prefix: str, key: str) -> np.ndarray:
    """``prefix.key`` at each row's chosen setting (``prefix.lr_index``, from
    :func:`median_choice`): ``(D, S, ...)`` from a grid ``(D, L, S, ...)``."""
    grid, pick = result[f"{prefix}.{key}"], result[f"{prefix}.lr_index"]
    return np.stack([grid[i, pick[i]] for i in range(len(pick))])


def chosen_lrs(result: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """The learning rate (of ``result["lrs"]``) chosen for each row of ``prefix``: ``(D,)``."""
    return result["lrs"][result[f"{prefix}.lr_index"]]


@dataclass(frozen=True)
class Comparison:
    """The best of some candidates against a reference, with a bootstrap interval.

    ``best`` and ``reference`` index the rows of the compared values; ``value`` is the
    statistic ``f(median of best) − f(median of reference)`` (``f`` = log10 or the identity)
    and ``[lo, hi]`` its 95 % percentile-bootstrap interval, seeds resampled within each row.
    """

    best: int
    reference: int
    value: float
    lo: float
    hi: float


def compare_best(values: np.ndarray, candidates, reference: int, *,
                 lower_is_better: bool = True, log: bool = False, seed: int = 0,
                 n_boot: int = 2000) -> Comparison:
    """The candidate row of ``values`` ``(D, S)`` with the best median over seeds, compared
    with row ``reference`` (:class:`Comparison`); NaN entries (diverged, not converged) are
    left out of both. Example: the best deep net against the shallow one
    (``candidates`` = the deep rows), or the best depth against the runner-up.

    The best candidate is picked once, on the measured medians; the interval is that of the
    difference for this pair, so it says whether *this* gap exceeds the seed spread.
    """
    v = np.asarray(values, dtype=float)
    med = np.array([np.nanmedian(v[i]) if np.isfinite(v[i]).any() else np.nan
                    for i in candidates])
    key = np.where(np.isnan(med), np.inf, med if lower_is_better else -med)
    best = int(list(candidates)[int(np.argmin(key))])
    f = np.log10 if log else (lambda x: x)
    value, lo, hi = bootstrap_ci(
        v[best], v[reference], seed=seed, n_boot=n_boot, vectorized=True,
        statistic=lambda a, b: f(np.median(a, axis=-1)) - f(np.median(b, axis=-1)))
    return Comparison(best, int(reference), value, lo, hi)
