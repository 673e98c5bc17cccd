"""Declarative config fields: a field's meaning, its role and its valid values in one place.

A study's ``Config`` declares every field with :func:`field`: a default, a one-line meaning,
the field's *role* in the experiment (what the report groups it under) and, where it has
them, its valid values — an interval ``lo … hi`` (inclusive unless ``lo_open``/``hi_open``),
a set of ``choices``, a least number of values for a tuple. A ``Config`` that derives from
:class:`Checked` is checked against these declarations on construction, in
:func:`check_fields` — the one place plain ranges are checked, whether the config comes from
the command line, from a stored ``config.json`` or from a library user's ``Config(...)``.
Checks that tie several fields together stay in the config's own :meth:`Checked.check`.

The same declarations feed ``deepscope show`` (:func:`config_fields`) and the report's setup
table (rows by role, in the order of :data:`ROLES`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

# The roles a field can play, in the order the report's setup table lists them, with the
# row title each gets there.
ROLES = {
    "data": "data",
    "model": "model",
    "optimiser": "optimiser",
    "schedule": "schedule (epochs, steps, stopping)",
    "seeds": "seeds / runs",
    "measurement": "measurement",
    "execution": "execution",
}


@dataclass(frozen=True)
class Spec:
    """What a config field declares besides its default.

    ``lo``/``hi`` bound a number (every value of a tuple), inclusive unless ``lo_open`` /
    ``hi_open``; ``hi_reason`` names what sets ``hi`` (e.g. ``"MNIST has"``, read as "…
    is more than MNIST has (60000)"); ``choices`` are the allowed values (of every value of a
    tuple); ``min_len`` the least number of values of a tuple; ``why`` a reason added to
    every message about this field.
    """

    doc: str
    role: str | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    hi_reason: str = ""
    choices: tuple[Any, ...] | None = None
    min_len: int = 0
    why: str = ""

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {list(ROLES)}")

    def interval(self) -> str:
        """The valid numbers as text: ``≥ 1``, ``> 0``, ``[10, 60000]``, ``(0, 1]``; or ``""``."""
        lo = None if self.lo is None else f"{'>' if self.lo_open else '≥'} {self.lo}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '≤'} {self.hi}"
        if lo and hi:
            return (f"{'(' if self.lo_open else '['}{self.lo}, "
                    f"{self.hi}{')' if self.hi_open else ']'}")
        return lo or hi or ""

    def describe(self, many: bool = False) -> str:
        """The valid values as ``deepscope show`` prints them (``many``: of a tuple field);
        ``"any"`` when none are declared, ``"—"`` for a field declared without a role (its
        study has not declared its values)."""
        parts = [self.interval()] if self.interval() else []
        if self.choices is not None:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        if many:
            parts = [f"each {'in ' if p[0] in '([' else ''}{p}" for p in parts]
        if self.min_len:
            parts.append(f"≥ {self.min_len} values")
        return "; ".join(parts) or ("any" if self.role else "—")


def field(default: Any, doc: str, *, role: str | None = None, lo: float | None = None,
          hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
          hi_reason: str = "", choices: Iterable[Any] | None = None, min_len: int = 0,
          why: str = "") -> Any:
    """A config field with a default, a one-line meaning (shown by ``deepscope show``), its
    role in the report and its valid values (see :class:`Spec`)."""
    spec = Spec(doc, role, lo, hi, lo_open, hi_open, hi_reason,
                None if choices is None else tuple(choices), min_len, why)
    return dataclasses.field(default=default, metadata={"doc": doc, "spec": spec})


def spec_of(f: dataclasses.Field) -> Spec:
    """The :class:`Spec` of a dataclass field (a bare one for a field declared without it)."""
    return f.metadata.get("spec") or Spec(f.metadata.get("doc", ""))


def _range_error(name: str, value: Any, spec: Spec) -> str | None:
    """Why the number ``value`` of field ``name`` lies outside ``spec``'s interval, or None."""
    # Written as "not inside" so that NaN, which compares false, lies outside every bound.
    below = spec.lo is not None and not (value > spec.lo if spec.lo_open else value >= spec.lo)
    above = spec.hi is not None and not (value < spec.hi if spec.hi_open else value <= spec.hi)
    if above and spec.hi_reason:
        return (f"{name}={value} is more than {spec.hi_reason} ({spec.hi}); "
                f"use at most {spec.hi}")
    if not (below or above):
        return None
    # With a hi_reason the upper limit has its own message (above): name only the lower one.
    valid = (dataclasses.replace(spec, hi=None) if spec.hi_reason else spec).interval()
    lie = "lie in " if valid[0] in "([" else "be "
    return f"{name} must {lie}{valid}, got {value!r}"


def _value_error(name: str, value: Any, spec: Spec, many: bool) -> str | None:
    """Why one value of field ``name`` (one of several if ``many``) is not valid, or None."""
    if spec.choices is not None and value not in spec.choices:
        # one of several: "unknown function 'sine' in functions"
        what = f"{name.removesuffix('s')} {value!r} in {name}" if many else f"{name} {value!r}"
        return f"unknown {what}; choose one of {list(spec.choices)}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _range_error(name, value, spec)
    return None


def check_fields(cfg: Any) -> None:
    """Check every field of the dataclass instance ``cfg`` against its declared values.

    Raises:
        ValueError: the first field whose value is not valid, naming the field, the valid
            values and the declared reason.
    """
    for f in dataclasses.fields(cfg):
        spec, value = spec_of(f), getattr(cfg, f.name)
        many = isinstance(value, tuple)
        problem = None
        if many and len(value) < spec.min_len:
            problem = f"{f.name} needs at least {spec.min_len} values, got {len(value)}"
        for v in value if many else (value,):
            problem = problem or _value_error(f.name, v, spec, many)
        if problem:
            raise ValueError(f"{problem} ({spec.why})" if spec.why else problem)


class Checked:
    """Mixin for a frozen ``Config`` dataclass: construction checks every field against its
    declaration (:func:`check_fields`), then the config's own cross-field :meth:`check`."""

    def __post_init__(self) -> None:
        check_fields(self)
        self.check()

    def check(self) -> None:
        """Checks that tie fields together (plain ranges belong in the fields); none here."""


class FieldRow(NamedTuple):
    """One config field as ``deepscope show`` lists it."""

    name: str
    type: str
    default: Any
    role: str
    valid: str
    doc: str


def config_fields(config_class: type) -> list[FieldRow]:
    """Every field of a ``Config`` class: name, type, default, role, valid values, meaning."""
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        typ, spec = hints[f.name], spec_of(f)
        tname = getattr(typ, "__name__", None) or str(typ).replace("typing.", "")
        many = typing.get_origin(typ) is tuple
        if many:
            tname = f"tuple[{typing.get_args(typ)[0].__name__}, ...]"
        out.append(FieldRow(f.name, tname, f.default, spec.role or "—", spec.describe(many),
                            spec.doc))
    return out


def roles(config_class: type) -> dict[str, str | None]:
    """``{field name: role}`` of a ``Config`` class, in declaration order."""
    return {f.name: spec_of(f).role for f in dataclasses.fields(config_class)}
