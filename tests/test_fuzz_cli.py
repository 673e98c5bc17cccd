"""Property-based bad-input corpus: no argument list and no ``--set`` value gives a traceback.

Every generated command line either is accepted (and would start running: the tests stop it
at ``run_study``) or is rejected with exit code 2 and a single line ``deepscope: error: ...``
that names the fix. The numbers of examples are quoted in the README's Reliability section.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deepscope.executors
import deepscope.runner
from deepscope.cli import main
from deepscope.errors import ConfigError
from deepscope.studies import STUDIES, make_config

ARGV_EXAMPLES = 400
SET_EXAMPLES = 600


class Reached(BaseException):
    """Raised instead of running a study: the input passed every check."""


WORDS = ["run", "show", "list", "report", "all", *STUDIES, "fit-fuction", "sharpnes", "",
         "--scale", "quick", "default", "full", "huge", "--set", "--out", "--device", "cpu",
         "cuda", "gpu", "cuda:7", "--threads", "0", "-1", "2", "x", "--executor", "local",
         "process", "ray", "thread", "--workers", "--address", "auto", "--data-dir", ".",
         "/nonexistent", "--no-progress", "--bogus", "-", "--", "=", "epochs=3", "lr=nan"]
FIELDS = sorted({f for s in STUDIES.values() for f in s.Config.__dataclass_fields__})
VALUES = ["", " ", "0", "-1", "1", "3", "1e309", "-inf", "nan", "NaN", "1e-3", "1_000", "0x10",
          "١٢", "True", "none", "(", ")", "()", "(,)", "(1,", "[1, 2]", "1,2,3", "(0, -5)",
          "sinc,sign", "(sinc, nope)", "mnist", "cifar", "relu", "swish", "'a'", "\x00", "é",
          "99999999999999999999", "4096", "60001", "2.5", "--1"]
values = st.one_of(st.sampled_from(VALUES), st.text(max_size=12),
                   st.integers(-10**6, 10**6).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
set_args = st.tuples(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), values).map(
    lambda kv: f"{kv[0]}={kv[1]}")
argv = st.lists(st.one_of(st.sampled_from(WORDS), set_args,
                          st.text(max_size=10)), max_size=8)


@pytest.fixture
def sandbox(monkeypatch):
    """Run the CLI in an empty directory, with the study run and Ray replaced by stops."""
    monkeypatch.chdir(tempfile.mkdtemp(prefix="ds-fuzz-"))

    def run_study(*args, **kwargs):
        raise Reached

    real = deepscope.executors.make_executor

    def make_executor(name="local", *args, **kwargs):
        # Validate as usual; never start a Ray instance from a fuzz example.
        return real("local" if name == "ray" else name, *args,
                    **{**kwargs, "address": None} if name == "ray" else kwargs)

    monkeypatch.setattr(deepscope.runner, "run_study", run_study)
    monkeypatch.setattr(deepscope.executors, "make_executor", make_executor)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # --threads N in an example must not leak into other tests


def _check(args: list[str], capsys) -> None:
    try:
        code = main(args)
    except Reached:  # accepted: it would have started running a study
        return
    except SystemExit as e:  # --help (argparse prints it and exits 0)
        assert e.code == 0, args
        return
    err = capsys.readouterr().err
    assert "Traceback" not in err, (args, err)
    assert code in (0, 2), (args, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("deepscope: error: "), (args, err)


@settings(max_examples=ARGV_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=argv)
def test_any_argument_list_is_accepted_or_one_line_exit_2(args, sandbox, capsys):
    _check(args, capsys)


@settings(max_examples=SET_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(study=st.sampled_from([*STUDIES, "all"]), scale=st.sampled_from(["quick", "default"]),
       sets=st.lists(set_args, min_size=1, max_size=3))
def test_any_set_value_is_accepted_or_one_line_exit_2(study, scale, sets, sandbox, capsys):
    args = ["run", study, "--scale", scale, "--no-progress"]
    for s in sets:
        args += ["--set", s]
    _check(args, capsys)


@settings(max_examples=SET_EXAMPLES, deadline=None)
@given(study=st.sampled_from(list(STUDIES)), data=st.data())
def test_make_config_raises_only_config_errors(study, data):
    fields = list(STUDIES[study].Config.__dataclass_fields__)
    key = data.draw(st.sampled_from(fields))
    value = data.draw(values)
    try:
        make_config(STUDIES[study], "quick", {key: value})
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "sensitivity", "--set", "batch_sizes=(0, 16)"], "≥ 1"),
    (["run", "fit-mnist", "--set", "batch_size=0"], "batch_size must be ≥ 1"),
    (["run", "fit-mnist", "--set", "epochs=-1"], "epochs must be ≥ 1"),
    (["run", "fit-mnist", "--set", "lrs=nan"], "must be finite"),
    (["run", "random-labels", "--set", "subset=70000"], "more than MNIST has (60000)"),
    (["run", "fit-mnist", "--set", "subset=70000"], "more than MNIST has (60000)"),
    (["run", "fit-mnist", "--set", "datasets=(cifar,)"], "cifar"),
    (["run", "fit-mnist", "--out", "/proc/deepscope-cannot-write"], "--out"),
])
def test_out_of_range_values_are_rejected_before_any_training(argv, expected, sandbox, capsys):
    try:
        code = main(argv)
    except Reached:
        pytest.fail(f"{argv} reached run_study")
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err


def test_data_dir_without_mnist_is_rejected_before_any_training(sandbox, capsys):
    empty = tempfile.mkdtemp(prefix="ds-nodata-")
    assert main(["run", "all", "--data-dir", empty]) == 2
    err = capsys.readouterr().err
    assert "holds no mnist data" in err and empty in err
    assert not os.path.exists("deepscope-results/fit-function")


def test_every_field_of_every_study_with_every_corpus_value():
    """Exhaustive, beside the random search: 11 studies × their fields × VALUES × 2 scales."""
    cases = 0
    for study in STUDIES.values():
        for key in study.Config.__dataclass_fields__:
            for value in VALUES:
                for scale in ("quick", "default"):
                    cases += 1
                    try:
                        make_config(study, scale, {key: value})
                    except ConfigError as e:
                        assert str(e) and "\n" not in str(e), (study.name, key, value)
    assert cases == 2 * len(VALUES) * sum(len(s.Config.__dataclass_fields__)
                                          for s in STUDIES.values())
