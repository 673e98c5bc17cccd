"""The command line: bad input is one line with a suggestion and exit code 2."""

from __future__ import annotations

import pytest

from deepscope.cli import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "fit-fuction"], "did you mean 'fit-function'?"),
        (["show", "fit-mnst"], "did you mean 'fit-mnist'?"),
        (["run", "fit-function", "--set", "epoch=5"], "did you mean 'epochs'?"),
        (["run", "fit-function", "--set", "epochs=five"], "epochs: expected an integer"),
        (["run", "fit-function", "--set", "lrs=fast"], "lrs: expected a number"),
        (["run", "fit-function", "--set", "epochs=-3"], "epochs must be ≥ 1"),
        (["run", "fit-function", "--set", "lrs=nan"], "lrs: must be finite"),
        (["run", "fit-function", "--set", "functions=sinc,sine"], "unknown function 'sine'"),
        (["run", "fit-function", "--set", "epochs"], "--set expects key=value"),
        (["run", "fit-function", "--scale", "huge"], "unknown scale 'huge'"),
        (["run", "all", "--set", "nonsense=1"], "but no study has it"),
        (["run", "all", "--set", "seed=3"], "but only error-surface has it"),
        (["report", "--out", "/nonexistent/results"], "holds no deepscope results"),
        (["run", "fit-mnist", "--data-dir", "/nonexistent/dir"], "not a readable directory"),
        (["frobnicate"], "invalid choice"),
        (["run", "fit-function", "--device", "gpu"], "unknown device 'gpu'"),
        (["run", "fit-function", "--set", "params=20"], "nearest counts are 19 and 22"),
        (["run", "fit-function", "--set", "functions="], "needs at least one value"),
        (["run", "fit-function", "--set", "activation=swish"], "unknown activation"),
        (["run", "pca-trajectory", "--set", "layer=foo"], "choose one of ['1', '3', '5']"),
        (["run", "sharpness", "--set", "eps=1e-3,inf"], "must be finite"),
        (["report", "--out", "/proc/no/such/dir"], "holds no deepscope results"),
        (["run", "sensitivity", "--set", "test_subset=20000"], "more than MNIST has (10000)"),
        (["run", "fit-function", "--executor", "procs"], "did you mean 'process'?"),
        (["run", "fit-function", "--executor", "process", "--workers", "0"], "--workers must"),
        (["run", "fit-function", "--address", "auto"], "--address is for --executor ray"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_fix(argv, expected, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*/*/meta.json"))  # nothing ran


def test_list_and_show(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fit-function" in out and "fit-mnist" in out
    assert main(["show", "fit-function"]) == 0
    out = capsys.readouterr().out
    assert "epochs" in out and "quick:" in out


def test_run_writes_store_and_report(tmp_path, capsys):
    code = main(["run", "fit-function", "--scale", "quick", "--out", str(tmp_path),
                 "--set", "epochs=20", "--set", "depths=1,2", "--no-progress"])
    assert code == 0
    (meta,) = tmp_path.glob("fit-function/*/meta.json")
    assert (meta.parent / "result.npz").exists() and (meta.parent / "figures/sinc.png").exists()
    assert (tmp_path / "report.html").exists()
    assert "ok      fit-function" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    from deepscope import __version__

    assert capsys.readouterr().out.strip() == f"deepscope {__version__}"


def test_without_a_terminal_progress_is_one_line_per_piece(tmp_path):
    """Under CI or in a log file (no TTY) each finished piece is a line with elapsed time and
    an ETA, for the study and the suite; the summary gives each study's verdict."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "deepscope.cli", "run", "fit-function",
                           "--scale", "quick", "--set", "functions=sinc", "--threads", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if " pieces, " in x]
    assert len(lines) == 3, proc.stderr  # one per depth
    assert lines[-1].startswith("deepscope: fit-function 3/3 pieces, ") and "ETA 0 s" in lines[-1]
    assert "\r" not in proc.stderr  # no progress bar redrawing itself
    (summary,) = [x for x in proc.stdout.splitlines() if x.startswith("ok")]
    assert any(v in summary for v in ("agrees", "disagrees", "inconclusive", "not testable"))


def test_an_empty_results_directory_is_not_reported(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "holds no deepscope results" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_the_suite_clock_estimates_what_is_left():
    import time

    from deepscope.context import Clock

    now = time.perf_counter()
    clock = Clock(studies=4, done=1, started=now - 100)
    line = clock.line("x", 1, 2, study_started=now - 10)
    # half of study 2 done after 100 s: 1.5 of 4 studies, so about 167 s remain
    assert line.startswith("x 1/2 pieces, 10 s, ETA 10 s · suite 1/4 studies, 1 m 40 s, ")
    assert line.endswith("ETA ~2 m 46 s")
    assert Clock().line("y", 0, 3, study_started=now).endswith("ETA ?")


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_threads_wait_passively_unless_the_user_says_otherwise(given, expected):
    """Set before torch starts OpenMP, so idle threads sleep instead of spinning (a spinning
    pool made a study 7× slower beside other work); a user's own setting is kept."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, deepscope; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == expected
