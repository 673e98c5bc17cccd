"""Declarative config fields: every field of every study declares its role, and every declared
range, choice and least length is enforced — at the command line, for a stored config and for a
library user's ``Config(...)`` alike — with a message that names the field."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest

from deepscope.cli import main
from deepscope.errors import ConfigError
from deepscope.report import _setup_rows
from deepscope.store import StoredRun
from deepscope.studies import STUDIES, make_config
from deepscope.studies.base import stored_config
from deepscope.studies.fields import ROLES, Checked, field, spec_of

# Being rewritten by another helper; the lead declares their fields after merging.
UNDECLARED: set[str] = set()  # studies whose fields are not declared yet: none


def _fields():
    for name, study in STUDIES.items():
        for f in dataclasses.fields(study.Config):
            marks = [pytest.mark.xfail(strict=True, reason="fields not declared yet")] \
                if name in UNDECLARED else []
            yield pytest.param(name, f, id=f"{name}.{f.name}", marks=marks)


@pytest.mark.parametrize(("name", "f"), list(_fields()))
def test_every_field_of_every_study_has_a_role(name, f):
    assert spec_of(f).role in ROLES


def _outside(lo_or_hi: float, open_: bool, below: bool, integer: bool) -> float:
    """The nearest value beyond a bound: the bound itself when it is open."""
    if open_:
        return lo_or_hi
    if integer:
        return lo_or_hi - 1 if below else lo_or_hi + 1
    return math.nextafter(lo_or_hi, -math.inf if below else math.inf)


def _bad_values():
    """(study, field, bad value) for every declared bound, choice list and least length."""
    for name, study in STUDIES.items():
        base = make_config(study, "quick")
        for f in dataclasses.fields(study.Config):
            spec, now = spec_of(f), getattr(base, f.name)
            many = isinstance(now, tuple)
            first = now[0] if many else now
            integer = isinstance(first, int)
            bad = []
            if spec.lo is not None:
                bad.append(_outside(spec.lo, spec.lo_open, True, integer))
            if spec.hi is not None:
                bad.append(_outside(spec.hi, spec.hi_open, False, integer))
            if spec.choices is not None:
                bad.append("no-such-choice" if isinstance(first, str) else max(spec.choices) + 1)
            for b in bad:  # a tuple gets the bad value in place of its first
                yield pytest.param(name, f.name, (b, *now[1:]) if many else b,
                                   id=f"{name}.{f.name}={b}")
            if spec.min_len:
                yield pytest.param(name, f.name, now[:spec.min_len - 1],
                                   id=f"{name}.{f.name}:short")


@pytest.mark.parametrize(("name", "key", "bad"), list(_bad_values()))
def test_a_value_just_outside_a_declared_range_is_rejected_naming_the_field(name, key, bad):
    with pytest.raises(ConfigError, match=key):
        make_config(STUDIES[name], "quick", {key: bad})


def test_every_declared_study_declares_ranges():
    """The parametrisation above is not empty for any declared study."""
    covered = {p.values[0] for p in _bad_values()}
    assert set(STUDIES) - UNDECLARED <= covered


def test_direct_and_stored_configs_are_checked_too():
    study = STUDIES["sharpness"]
    with pytest.raises(ValueError, match=r"eps must be > 0, got -1\.0"):
        study.Config(eps=(1e-3, -1.0))
    with pytest.raises(ValueError, match="lr must be > 0, got nan"):
        study.Config(lr=float("nan"))  # make_config refuses NaN earlier; a direct call here
    stored = dataclasses.asdict(make_config(study, "quick"))
    with pytest.raises(ValueError, match="test_subset=20000 is more than MNIST has"):
        stored_config(study, {**stored, "test_subset": 20000})


def test_cross_field_checks_still_run_after_the_field_checks():
    with pytest.raises(ConfigError, match="resolution must be odd"):
        make_config(STUDIES["error-surface"], "quick", {"resolution": 4})
    with pytest.raises(ConfigError, match="curve_directions must be between 1 and directions"):
        make_config(STUDIES["interpolation"], "quick", {"directions": 2, "curve_directions": 3})


def test_show_prints_every_fields_role_and_valid_values(capsys):
    assert main(["show", "sharpness"]) == 0
    out = capsys.readouterr().out
    assert "role" in out and "valid values" in out
    rows = {line.split()[0]: line for line in out.splitlines()[3:] if line.startswith("  ")}
    assert "[10, 60000]" in rows["subset"] and " data " in rows["subset"]
    assert "each ≥ 1; ≥ 2 values" in rows["batch_sizes"] and "optimiser" in rows["batch_sizes"]
    assert "each > 0" in rows["eps"] and "measurement" in rows["eps"]
    assert "≥ 3" in rows["trace_samples"]


@dataclass(frozen=True)
class _Toy(Checked):
    datasets: tuple[str, ...] = field(("mnist", "fashion-mnist"), "image sets", role="data")
    width: int = field(8, "hidden width", role="model", lo=1)
    lr: float = field(1e-3, "Adam learning rate", role="optimiser", lo=0, lo_open=True)
    epochs: int = field(3, "epochs", role="schedule", lo=1)
    seeds: int = field(2, "initialisations", role="seeds", lo=1)


def test_setup_rows_group_the_config_by_role_and_show_the_data_sets_used():
    run = StoredRun(path=None, study="toy", config=dataclasses.asdict(_Toy()),
                    result={"datasets": np.array(["mnist"]), "params": np.array([100, 200])},
                    meta={"scale": "quick"})
    rows = dict(_setup_rows(run, _Toy))
    assert rows["scale"] == "quick" and rows["parameters per model"] == "100, 200"
    assert rows["data"] == "datasets = mnist"  # fashion-mnist was asked for, not used
    assert rows["model"] == "width = 8"
    assert rows["optimiser"] == "Adam; lr = 0.001"
    assert rows[ROLES["schedule"]] == "epochs = 3"
    assert rows[ROLES["seeds"]] == "seeds = 2"
    assert list(rows) == ["scale", "parameters per model", "data", "model", "optimiser",
                          ROLES["schedule"], ROLES["seeds"]]


@dataclass(frozen=True)
class _Targets(Checked):
    functions: tuple[str, ...] = field(("sinc",), "1-D targets", role="data",
                                       choices=("sinc", "sign"))
    activation: str = field("relu", "hidden activation", role="model", choices=("relu", "tanh"))


def test_an_unknown_choice_is_named_with_its_field_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown function 'sine' in functions; choose one of "
                                         r"\['sinc', 'sign'\]"):
        _Targets(functions=("sinc", "sine"))
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of"):
        _Targets(activation="swish")


def test_an_unknown_role_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="role 'optimizer' is not one of"):
        field(1e-3, "learning rate", role="optimizer")
