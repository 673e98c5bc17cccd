"""Reliability: runs killed anywhere resume to the same bytes; concurrent runs; divergence.

The kill tests run ``deepscope run`` in a child process that SIGKILLs itself at a chosen
point — inside the n-th piece, or in the middle of the n-th file write (the temporary file
half written, not yet renamed) — for every write the run makes, plus one kill from outside
at an unplanned moment. After each kill a normal re-run must finish, take the finished pieces
from the cache, recompute the others, and store a ``result.npz`` byte-identical to that of an
uninterrupted run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepscope.cli import main
from deepscope.store import load_run

STUDY = "fit-function"
ARGS = ["run", STUDY, "--scale", "quick", "--set", "functions=(sinc,)", "--threads", "1",
        "--no-progress"]
PIECES = 3  # one per depth of the quick scale

# A child that runs the CLI and kills itself with SIGKILL at a planned point:
#   piece N  — inside the N-th piece, after its training, before it is returned and cached
#   write N  — during the N-th file write: the temporary file is cut to half, then SIGKILL
#   count 0  — no kill; prints how many files the run writes
#   slow S   — no kill; every piece sleeps S seconds first (to overlap two runs)
DRIVER = r"""
import os, signal, sys, time
import deepscope.studies.fit_function as study
from deepscope.cli import main

mode, n = sys.argv[1], float(sys.argv[2])
calls = {"piece": 0, "write": 0}
real_train, real_fsync = study.train, os.fsync

def train(*a, **k):
    calls["piece"] += 1
    if mode == "slow":
        time.sleep(n)
    out = real_train(*a, **k)
    if mode == "piece" and calls["piece"] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return out

def fsync(fd):
    calls["write"] += 1
    if mode == "write" and calls["write"] == n:
        os.ftruncate(fd, os.fstat(fd).st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_fsync(fd)

study.train, os.fsync = train, fsync
code = main(sys.argv[3:])
if mode == "count":
    print("writes", calls["write"])
sys.exit(code)
"""


def _child(tmp: Path, mode: str, n: float, out: Path, **kw) -> subprocess.Popen:
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(script), mode, str(n), *ARGS, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _run_dir(out: Path) -> Path:
    (path,) = (out / STUDY).glob("*/")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[bytes, int]:
    """An uninterrupted run: its result bytes, and how many files such a run writes."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = _child(tmp, "count", 0, tmp / "out")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    writes = int(stdout.split("writes")[-1])
    return (_run_dir(tmp / "out") / "result.npz").read_bytes(), writes


def _resume_and_check(out: Path, reference: bytes) -> None:
    """What a kill left must be sound; a plain re-run must finish with the reference bytes."""
    cache = out / "cache"
    cached = 0
    for piece in cache.glob("*.npz") if cache.exists() else []:
        try:  # a cache file is the whole piece or absent, never half of one
            np.load(piece, allow_pickle=False)
            cached += 1
        except Exception as e:  # pragma: no cover - this is the failure being tested for
            pytest.fail(f"killed run left a damaged cache file {piece}: {e}")
    run_dirs = list((out / STUDY).glob("*/")) if (out / STUDY).exists() else []
    for d in run_dirs:
        if (d / "meta.json").exists():  # a run directory with meta.json is complete
            load_run(d)
    assert main([*ARGS, "--out", str(out)]) == 0
    run = load_run(_run_dir(out))
    assert (run.path / "result.npz").read_bytes() == reference
    assert run.meta["pieces_from_cache"] == cached  # only unfinished pieces were recomputed
    assert len(run.meta["seconds_per_piece"]) == PIECES - cached


@pytest.mark.parametrize("piece", range(1, PIECES + 1))
def test_killed_inside_a_piece_resumes_to_identical_result(piece, reference, tmp_path):
    proc = _child(tmp_path, "piece", piece, tmp_path / "out")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    _resume_and_check(tmp_path / "out", reference[0])


def test_killed_during_every_write_resumes_to_identical_result(reference, tmp_path):
    """Every file the run writes — cache pieces, config, result, figures, meta, report —
    is a kill point."""
    writes = reference[1]
    assert writes >= PIECES + 4  # pieces, config.json, result.npz, a figure, meta.json, ...
    for n in range(1, writes + 1):
        out = tmp_path / f"write{n}"
        proc = _child(tmp_path, "write", n, out)
        proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, f"write {n} was not reached"
        _resume_and_check(out, reference[0])


def test_killed_from_outside_resumes_to_identical_result(reference, tmp_path):
    out = tmp_path / "out"
    proc = _child(tmp_path, "slow", 0.5, out)
    deadline = time.monotonic() + 120
    while not list((out / "cache").glob("*.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _resume_and_check(out, reference[0])


def test_truncated_result_or_cache_is_detected_and_recomputed(reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*ARGS, "--out", str(out)]) == 0
    result = _run_dir(out) / "result.npz"
    result.write_bytes(result.read_bytes()[:-100])  # a truncated result ...
    piece = sorted((out / "cache").glob("*.npz"))[0]
    blob = bytearray(piece.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # ... and a flipped bit in a cache piece (zip CRC-32)
    piece.write_bytes(bytes(blob))
    assert main(["report", "--out", str(out)]) == 0  # the report skips the damaged run
    assert "skipping a damaged run" in capsys.readouterr().err
    assert main([*ARGS, "--out", str(out)]) == 0
    run = load_run(_run_dir(out))
    assert run.meta["pieces_from_cache"] == PIECES - 1
    assert (run.path / "result.npz").read_bytes() == reference[0]


def test_concurrent_runs_wait_and_reuse_pieces(reference, tmp_path):
    out = tmp_path / "out"
    first = _child(tmp_path, "slow", 2.0, out)  # holds the lock for 6 s or more
    lock = out / STUDY
    deadline = time.monotonic() + 120
    while not list(lock.glob(".*.lock")) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = _child(tmp_path, "count", 0, out)
    (_, err1), (_, err2) = first.communicate(timeout=300), second.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert f"(pid {first.pid}) is running {STUDY}" in err2 and "waiting" in err2
    run = load_run(_run_dir(out))
    assert run.meta["pieces_from_cache"] == PIECES  # the second run computed nothing
    assert (run.path / "result.npz").read_bytes() == reference[0]


def test_divergence_is_stored_reported_and_exits_1(tmp_path, capsys):
    """lr = 1e4 makes some members overflow; they stop, the others finish."""
    out = tmp_path / "out"
    argv = [*ARGS, "--set", "lrs=1e4", "--out", str(out)]
    assert main(argv) == 1
    summary = capsys.readouterr().out
    assert "DIVERGED" in summary
    run = load_run(_run_dir(out))
    epochs = run.result["sinc.diverged_epoch"]  # (depths, rates, seeds); -1 = not diverged
    assert (epochs >= 1).any() and (epochs == -1).any()  # only the affected runs
    assert len(run.meta["diverged"]) == int((epochs >= 0).sum())
    assert all("diverged in epoch" in d for d in run.meta["diverged"])
    assert any(f.startswith("Diverged: ") for f in run.meta["findings"])
    dead = epochs >= 0
    loss = run.result["sinc.train_loss"][..., -1]
    assert np.isnan(loss[dead]).all() and np.isfinite(loss[~dead]).all()
    html = (out / "report.html").read_text()
    assert "diverged</span>" in html and "diverged in epoch" in html
    # Resumed from the cache, the divergence is still known and still exits 1.
    assert main(argv) == 1
    assert json.loads((run.path / "meta.json").read_text())["pieces_from_cache"] == PIECES


def test_no_file_is_unpickled_or_torch_loaded():
    """Files are read with ``allow_pickle=False``; the one ``torch.load`` (a user's ``--weights``
    for ``deepscope probe``) is ``weights_only=True``, tensors only; the only unpickling is of
    piece functions sent by our own process to its workers."""
    src = Path(__file__).resolve().parents[1] / "src" / "deepscope"
    texts = {p.name: p.read_text() for p in src.rglob("*.py")}
    assert not [n for n, t in texts.items() if "allow_pickle=True" in t]
    loads = [(n, ln) for n, t in texts.items() for ln in t.splitlines() if "torch.load(" in ln]
    assert {n for n, _ in loads} == {"specs.py"}
    assert all("weights_only=True" in ln for _, ln in loads), loads
    assert [n for n, t in texts.items() if "pickle.load" in t] == ["executors.py"]
    assert "allow_pickle=False" in texts["store.py"]


def test_the_network_guard_is_active():
    """conftest blocks every non-loopback connection, so the whole suite runs offline."""
    import socket

    with pytest.raises(AssertionError, match="reach the network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
