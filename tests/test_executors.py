"""Executors: the same numbers in-process, on a process pool and on Ray; failures keep the rest.

Ray is exercised on a local instance started by the test (``.ci/run`` installs the extra).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepscope.context import Context
from deepscope.errors import PieceError, UsageError
from deepscope.executors import LocalExecutor, ProcessExecutor, choose_executor, make_executor
from deepscope.report import write_report
from deepscope.runner import run_study

STUDY = "fit-function"
SETS = {"functions": "(sinc,)", "seeds": "2"}


def _flaky(bad):
    """A piece function that raises on item ``bad`` (a closure, as studies' pieces are)."""

    def piece(i: int) -> dict[str, np.ndarray]:
        if i == bad:
            raise ValueError(f"planted failure at {i}")
        return {"square": np.asarray(i * i)}

    return piece


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray", reason="install the extra: pip install -e '.[test,ray]'")
    ex = make_executor("ray", workers=2)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def pool():
    ex = ProcessExecutor(workers=2, threads=2)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def local_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return run_study(STUDY, "quick", out, SETS, progress=False)


@pytest.mark.parametrize("name", ["process", "ray"])
def test_same_result_bytes_on_every_executor(name, local_result, tmp_path, request):
    ex = request.getfixturevalue("pool" if name == "process" else "ray_executor")
    run = run_study(STUDY, "quick", tmp_path, SETS, progress=False, executor=ex)
    assert run.meta["executor"]["name"] == name
    assert run.meta["pieces_from_cache"] == 0
    assert (run.path / "result.npz").read_bytes() == \
        (local_result.path / "result.npz").read_bytes()
    assert f"pieces on the {name} executor (2 workers" in write_report(tmp_path).read_text()


@pytest.mark.parametrize("name", ["local", "process", "ray"])
def test_failing_piece_names_item_and_keeps_the_others(name, tmp_path, request):
    ex = {"local": LocalExecutor, "process": lambda: request.getfixturevalue("pool"),
          "ray": lambda: request.getfixturevalue("ray_executor")}[name]()
    ctx = Context(study="t", cache_dir=tmp_path, executor=ex, progress=False)
    with pytest.raises(PieceError, match=r"1 of 6 pieces of t failed.*item 3.*ValueError.*"
                       r"planted failure at 3.*5 finished pieces are cached") as info:
        ctx.map(_flaky(3), range(6))
    assert isinstance(info.value.__cause__, ValueError)
    assert len(list(tmp_path.glob("*.npz"))) == 5
    # Fixed and re-run: only the failed piece is computed, the rest come from the cache.
    ctx = Context(study="t", cache_dir=tmp_path, executor=ex, progress=False)
    out = ctx.map(_flaky(None), range(6))
    assert [int(p["square"]) for p in out] == [i * i for i in range(6)]
    assert ctx.pieces_cached == 5 and len(ctx.piece_seconds) == 1


def test_dead_worker_names_its_piece_and_spares_the_others(tmp_path):
    """A worker killed under a piece (OOM killer, kill -9) breaks the whole pool; the pieces
    in flight are re-run one by one, so only the guilty one is reported."""
    ex = ProcessExecutor(workers=2, threads=1)
    try:
        def dies(i):
            if i == 3:
                os._exit(3)
            return {"i": np.asarray(i)}

        ctx = Context(study="t", cache_dir=tmp_path, executor=ex, progress=False)
        with pytest.raises(PieceError, match=r"1 of 6 pieces .* item 3, raised RuntimeError: "
                           r"its worker process died"):
            ctx.map(dies, range(6))
        assert len(list(tmp_path.glob("*.npz"))) == 5
        out = Context(study="t", executor=ex, progress=False).map(_flaky(None), [2, 3])
        assert [int(p["square"]) for p in out] == [4, 9]  # the pool works again
    finally:
        ex.close()


CTRL_C = """
import pathlib, sys, time
import numpy as np
from deepscope.context import Context
from deepscope.executors import ProcessExecutor

def slow(i):
    pathlib.Path(sys.argv[1], f"piece-{i}").touch()  # this worker is up and in its piece
    time.sleep(60)
    return {"i": np.asarray(i)}

ex = ProcessExecutor(workers=2, threads=1)
try:
    print("started", flush=True)
    Context(study="t", executor=ex, progress=False).map(slow, range(4))
except KeyboardInterrupt:
    ex.close()
    sys.exit(130)
"""


@pytest.mark.parametrize("when", ["in the pieces", "while workers start"])
def test_ctrl_c_stops_the_pool_at_once(when, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the run stops within
    seconds (not after the running pieces), with no worker left behind and no traceback —
    also when it comes while the workers are still starting up (importing torch)."""
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 120
    if when == "in the pieces":
        # Both workers inside their pieces, however slowly they start on a busy machine (a
        # fixed sleep once sent SIGINT to a worker still importing torch).
        while len(list(tmp_path.glob("piece-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    children = _children(proc.pid)
    assert len(children) >= 2
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err  # workers ignore SIGINT: no traceback from each of them
    deadline = time.monotonic() + 10
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(children), _alive(children)


def _children(pid: int) -> dict[int, str]:
    """Child pids of ``pid`` and their command lines."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return {int(line.split(None, 1)[0]): line.split(None, 1)[1]
            for line in out.strip().splitlines()}


def _alive(pids) -> list[str]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except OSError:
            continue
        if state != "Z":
            out.append(f"{pid} ({state}): {pids[pid]}")
    return out


def test_threads_are_shared_among_workers():
    assert ProcessExecutor(workers=2, threads=2).threads == 1
    assert ProcessExecutor(workers=4, threads=2).threads == 1
    assert ProcessExecutor(workers=2, threads=8).threads == 4


def test_auto_is_one_single_threaded_worker_per_core_on_a_multicore_cpu(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_executor("auto", threads=4, device=cpu) == "process"
    assert choose_executor("auto", threads=1, device=cpu) == "local"  # tests, --threads 1
    assert choose_executor("auto", threads=8, device=cuda) == "local"  # one CUDA context
    assert choose_executor("auto", workers=2, threads=1) == "process"  # --workers asks for one
    assert choose_executor("ray", threads=1) == "ray"  # a named executor is taken as it is
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert choose_executor("auto", threads=4, device=cpu) == "local"  # one core: no pool
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    ex = make_executor("auto", threads=2)
    assert (ex.name, ex.workers, ex.threads) == ("process", 2, 1)  # the pool starts lazily
    ex = make_executor("auto", threads=8)
    assert (ex.name, ex.workers, ex.threads) == ("process", 4, 2)  # at most one per core
    assert make_executor("auto", threads=1).name == "local"


def test_bad_executor_arguments_name_the_fix():
    with pytest.raises(UsageError, match="did you mean 'process'"):
        make_executor("procss")
    with pytest.raises(UsageError, match="--workers must be ≥ 1"):
        make_executor("process", workers=0)
    with pytest.raises(UsageError, match="more than this machine's"):
        make_executor("process", workers=(os.cpu_count() or 1) + 1)
    with pytest.raises(UsageError, match="--workers is for --executor process or ray"):
        make_executor("local", workers=2)
    with pytest.raises(UsageError, match="more than this machine's"):
        make_executor("auto", workers=(os.cpu_count() or 1) + 1)
    with pytest.raises(UsageError, match="--address is for --executor ray"):
        make_executor("process", address="auto")


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'deepscope\[ray\]'"):
        make_executor("ray")
