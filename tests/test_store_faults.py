"""The store under attack: what a hostile or unlucky user does to a results directory.

Each class of fault has its rule (see ``deepscope.store``), and each rule its tests here:

1. the cache key names the data actually read, not the path it was named by;
2. nothing is written through a symbolic link planted in the store;
3. a cache piece (or result) is bound to its place: swapped files do not verify;
4. a pool's workers exit when the main process is killed;
5. the report tolerates runs being re-stored while it reads them;
6. anything in the store that deepscope did not write — the wrong JSON shape, a directory
   where a file belongs, a file where a directory belongs — is skipped by the report and
   recomputed by a run, each with one line;
7. total divergence is stored and drawn ("no finite values"), never a crash in the plots;
8. bad data is found before the first study runs;
9. a full disk is one line, and what was stored before stays whole;
10. an unreachable Ray cluster fails within a timeout, in one line;
11. an empty ``--out`` is refused.

A property test then damages a whole quick-scale store at random and checks that the report
never crashes and a re-run reproduces the reference bytes.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deepscope.store as store
from deepscope import STUDIES
from deepscope.cli import main
from deepscope.data.mnist import FILES, write_idx
from deepscope.errors import DamagedError, UsageError
from deepscope.plot import quiet_numpy, to_png
from deepscope.runner import plan_study
from deepscope.store import load_arrays, load_run, run_dir, save_arrays
from deepscope.studies import make_config

STUDY = "grad-norm"  # two pieces, two figures, MNIST: the store in miniature, in 0.5 s
QUICK = ["--scale", "quick", "--threads", "1", "--no-progress"]


def run(out: Path, *extra: str, study: str = STUDY) -> int:
    return main(["run", study, *QUICK, "--out", str(out), *extra])


def result_bytes(out: Path, study: str = STUDY) -> bytes:
    return (_run_path(out, study) / "result.npz").read_bytes()


def _run_path(out: Path, study: str = STUDY) -> Path:
    return run_dir(out, study, plan_study(study, "quick").config)


def no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A clean quick-scale store of STUDY (one thread, so its bytes are reproducible)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert run(out) == 0
    return out


@pytest.fixture
def store_copy(reference, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(reference, out, symlinks=True)
    return out


# --- 1. the cache key names the data actually read ----------------------------------------


def fake_mnist(folder: Path, seed: int) -> Path:
    """Four IDX files of a small MNIST look-alike (300 training and 1 000 test images)."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(300) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(1000) % 10).astype(np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in FILES.items():
        write_idx(folder / stem, arrays[key])
    return folder


def test_data_from_the_environment_is_part_of_the_cache_key(tmp_path, monkeypatch):
    a, b = fake_mnist(tmp_path / "A", 1), fake_mnist(tmp_path / "B", 2)
    monkeypatch.setenv("DEEPSCOPE_DATA", str(b))
    assert run(tmp_path / "only-b") == 0
    monkeypatch.setenv("DEEPSCOPE_DATA", str(a))
    assert run(tmp_path / "out") == 0
    from_a = load_run(_run_path(tmp_path / "out"))
    monkeypatch.setenv("DEEPSCOPE_DATA", str(b))
    assert run(tmp_path / "out") == 0
    from_b = load_run(_run_path(tmp_path / "out"))
    assert from_b.meta["pieces_from_cache"] == 0  # A's pieces are not served for B
    assert from_a.meta["data"]["mnist"] != from_b.meta["data"]["mnist"]
    assert result_bytes(tmp_path / "out") == result_bytes(tmp_path / "only-b")


def test_a_relative_data_dir_means_the_directory_it_names_from_here(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "one" / "data", 1)
    fake_mnist(tmp_path / "two" / "data", 2)
    out = tmp_path / "out"
    results = []
    for place in ("one", "two"):
        monkeypatch.chdir(tmp_path / place)
        assert run(out, "--data-dir", "data") == 0
        results.append(result_bytes(out))
        if place == "two":
            assert load_run(_run_path(out)).meta["pieces_from_cache"] == 0
    assert results[0] != results[1]


def test_the_same_contents_under_another_path_reuse_the_cache(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "A", 1)
    shutil.copytree(tmp_path / "A", tmp_path / "copy-of-A")
    out = tmp_path / "out"
    assert run(out, "--data-dir", str(tmp_path / "A")) == 0
    assert run(out, "--data-dir", str(tmp_path / "copy-of-A")) == 0
    assert load_run(_run_path(out)).meta["pieces_from_cache"] == 2


# --- 2. nothing is written through a link --------------------------------------------------


@pytest.mark.parametrize("where", ["lock", "cache", "study", "figures", "run"])
def test_a_planted_link_is_refused_and_its_target_untouched(where, tmp_path, capsys):
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("precious")
    path = _run_path(out)
    places = {"lock": store.run_lock(path), "cache": out / "cache", "study": out / STUDY,
              "figures": path / "figures", "run": path}
    link = places[where]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim if where == "lock" else outside)
    assert run(out) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and err.count("\n") == 1, err
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


def test_a_link_at_a_files_own_name_is_replaced_not_followed(store_copy, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("precious")
    for name in ("result.npz", "meta.json"):
        target = _run_path(store_copy) / name
        target.unlink()
        target.symlink_to(victim)
    assert main(["report", "--out", str(store_copy)]) == 0
    assert run(store_copy) == 0
    assert victim.read_text() == "precious"
    assert not (_run_path(store_copy) / "result.npz").is_symlink()


# --- 3. a stored array file is bound to its place ------------------------------------------


def test_swapped_cache_pieces_are_recomputed(store_copy, reference):
    first, second = sorted((store_copy / "cache").glob("*.npz"))
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    assert run(store_copy) == 0
    assert load_run(_run_path(store_copy)).meta["pieces_from_cache"] == 0
    assert result_bytes(store_copy) == result_bytes(reference)


def test_a_valid_file_moved_elsewhere_does_not_verify(tmp_path):
    save_arrays(tmp_path / "cache" / "aaaa.npz", {"x": np.arange(3)}, root=tmp_path)
    shutil.copy(tmp_path / "cache" / "aaaa.npz", tmp_path / "cache" / "bbbb.npz")
    assert load_arrays(tmp_path / "cache" / "aaaa.npz")["x"].tolist() == [0, 1, 2]
    with pytest.raises(DamagedError, match="was moved"):
        load_arrays(tmp_path / "cache" / "bbbb.npz")


# --- 4. workers exit when the main process dies --------------------------------------------


def _descendants(pid: int) -> set[int]:
    parents = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat_file.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_main_process_ends_its_workers(sig, tmp_path):
    cmd = [sys.executable, "-m", "deepscope.cli", "run", "fit-function", "--executor",
           "process", "--workers", "2", "--threads", "2", "--no-progress", "--out",
           str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while len(workers) < 3 and time.monotonic() < deadline:  # 2 workers + resource tracker
        time.sleep(0.2)
        workers = _descendants(proc.pid)
    assert len(workers) >= 3, "the pool never started"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 20
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for p in left:  # do not leak them into the rest of the test session either
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} worker process(es) outlived the main process"


# --- 5. the report reads a store that is being re-stored ----------------------------------


def test_report_tolerates_runs_being_restored_while_it_reads(store_copy):
    stop = threading.Event()

    def restore() -> None:
        code = (f"import torch; torch.set_num_threads(1)\n"
                f"from deepscope.runner import run_study\n"
                f"for _ in range(400):\n"
                f"    run_study({STUDY!r}, 'quick', {str(store_copy)!r}, progress=False)\n")
        with subprocess.Popen([sys.executable, "-c", code]) as writer:
            while writer.poll() is None and not stop.is_set():
                time.sleep(0.05)
            writer.kill()

    thread = threading.Thread(target=restore)
    thread.start()
    try:
        time.sleep(3)  # the writer has started re-storing
        for _ in range(60):
            store.latest_runs(store_copy)
            assert main(["report", "--out", str(store_copy)]) == 0
    finally:
        stop.set()
        thread.join()


# --- 6. what deepscope did not write is skipped or recomputed ------------------------------


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _meta_with(out: Path, **changes) -> bytes:
    meta = json.loads((_run_path(out) / "meta.json").read_text())
    return _json(meta | changes)


def _make_dir(path: Path) -> None:
    store.remove_file(path)
    (path / "inside").mkdir(parents=True)


def _make_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("not a directory")


DAMAGE = {
    "meta is a list": lambda out: (_run_path(out) / "meta.json").write_bytes(b"[1, 2]"),
    "meta is a string": lambda out: (_run_path(out) / "meta.json").write_bytes(b'"meta"'),
    "meta seconds is text": lambda out: (_run_path(out) / "meta.json").write_bytes(
        _meta_with(out, seconds="abc")),
    "meta findings are numbers": lambda out: (_run_path(out) / "meta.json").write_bytes(
        _meta_with(out, findings=[1, 2])),
    "config is a list": lambda out: (_run_path(out) / "config.json").write_bytes(b"[]"),
    "config of another run": lambda out: (_run_path(out) / "config.json").write_bytes(
        _json({"study": STUDY, "config": {"seeds": 99}})),
    "failed is a list": lambda out: (out / STUDY / store.FAILED).write_bytes(b"[1]"),
    "failed is not UTF-8": lambda out: (out / STUDY / store.FAILED).write_bytes(b"\xff\xfe"),
    "failed error is a number": lambda out: (out / STUDY / store.FAILED).write_bytes(
        _json({"error": 3, "scale": "quick", "when": "now"})),
    "cache piece is a directory": lambda out: _make_dir(sorted((out / "cache").iterdir())[0]),
    "result is a directory": lambda out: _make_dir(_run_path(out) / "result.npz"),
    "meta is a directory": lambda out: _make_dir(_run_path(out) / "meta.json"),
    "a figure is a directory": lambda out: _make_dir(
        sorted((_run_path(out) / "figures").iterdir())[0]),
    "lock is a directory": lambda out: _make_dir(store.run_lock(_run_path(out))),
    "report is a directory": lambda out: _make_dir(out / "report.html"),
    "cache is a file": lambda out: _make_file(out / "cache"),
    "figures is a file": lambda out: _make_file(_run_path(out) / "figures"),
    "study is a file": lambda out: _make_file(out / STUDY),
    "result is a pipe": lambda out: (store.remove_file(_run_path(out) / "result.npz"),
                                     os.mkfifo(_run_path(out) / "result.npz")),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_foreign_store_entries_are_skipped_then_recomputed(damage, store_copy, reference,
                                                           capsys):
    DAMAGE[damage](store_copy)
    assert main(["report", "--out", str(store_copy)]) == 0
    no_traceback(capsys.readouterr().err)
    assert run(store_copy) == 0
    no_traceback(capsys.readouterr().err)
    assert result_bytes(store_copy) == result_bytes(reference)
    assert main(["report", "--out", str(store_copy)]) == 0
    assert "<img" in (store_copy / "report.html").read_text()


# --- 7. total divergence is stored and drawn -----------------------------------------------

LR_KEYS = {name: [f.name for f in dataclasses.fields(s.Config)
                  if f.name in ("lr", "lrs") or f.name.endswith("_lr")]
           for name, s in STUDIES.items()}


@pytest.mark.parametrize("name", [n for n, keys in LR_KEYS.items() if keys and n != "min-ratio"])
def test_total_divergence_is_stored_and_exits_1(name, tmp_path, capsys):
    sets = [a for k in LR_KEYS[name] for a in ("--set", f"{k}=1e37")]
    assert run(tmp_path / "out", *sets, study=name) == 1
    captured = capsys.readouterr()
    no_traceback(captured.err)
    assert "DIVERGED" in captured.out
    (meta,) = (tmp_path / "out" / name).glob("*/meta.json")
    stored = load_run(meta.parent)
    assert stored.meta["diverged"] and stored.figures


def _every_float(result: dict[str, np.ndarray], value: float) -> dict[str, np.ndarray]:
    return {k: np.full_like(v, value) if v.dtype.kind == "f" else v for k, v in result.items()}


@pytest.fixture(scope="module")
def quick_store(tmp_path_factory) -> Path:
    """``deepscope run all --scale quick`` on one thread."""
    out = tmp_path_factory.mktemp("all-quick") / "out"
    assert main(["run", "all", *QUICK, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def quick_results(quick_store) -> dict[str, dict[str, np.ndarray]]:
    return {name: run.result for name, run in store.latest_runs(quick_store).items()}


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0, 1.0])
@pytest.mark.parametrize("name", list(STUDIES))
def test_every_figure_draws_whatever_its_data(name, value, quick_results):
    """Every float of a stored result replaced by NaN, inf, 0 or a constant: the figures
    still render (saying "no finite values" where there are none) and the findings are
    still sentences."""
    study = STUDIES[name]
    cfg = make_config(study, "quick")
    result = _every_float(quick_results[name], value)
    with quiet_numpy():
        for fig in study.plot(result, cfg).values():
            assert to_png(fig).startswith(b"\x89PNG")
        assert all(isinstance(s, str) for s in study.findings(result, cfg))


# --- 8. bad data is found before any study runs ---------------------------------------------


def test_unreadable_data_stops_run_all_before_the_first_study(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "train-images-idx3-ubyte").write_bytes(b"garbage")
    monkeypatch.setenv("DEEPSCOPE_DATA", str(tmp_path / "broken"))
    assert main(["run", "all", *QUICK, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds only part of mnist" in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_too_few_images_for_subset_is_exit_2_up_front(tmp_path, capsys):
    data = fake_mnist(tmp_path / "small", 1)
    assert main(["run", "sensitivity", *QUICK, "--set", "subset=301", "--data-dir", str(data),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "fewer than subset=301" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "cache").exists()


# --- 9. a full disk is one line -----------------------------------------------------------


def _writes(out: Path, monkeypatch) -> int:
    """How many files a re-run of STUDY into ``out`` writes (each write ends in fsync)."""
    count = [0]
    real = os.fsync

    def counting(fd):
        count[0] += 1
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    assert run(out) == 0
    monkeypatch.setattr(os, "fsync", real)
    return count[0]


def test_disk_full_at_every_write_is_one_line_and_loses_nothing(tmp_path, reference,
                                                               monkeypatch, capsys):
    """ENOSPC from the n-th write on, for every n: exit 2 with one line naming the fix; what
    was stored stays whole; a re-run with space again gives the reference bytes."""
    out = tmp_path / "out"
    writes = _writes(out, monkeypatch)
    shutil.rmtree(out)
    assert writes >= 6  # pieces, config, result, figures, meta, report
    real = os.fsync
    for n in range(1, writes + 1):
        shutil.rmtree(out, ignore_errors=True)
        count = [0]

        def full(fd, n=n, count=count):
            count[0] += 1
            if count[0] >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd)

        capsys.readouterr()
        monkeypatch.setattr(os, "fsync", full)
        assert run(out) == 2, n
        monkeypatch.setattr(os, "fsync", real)
        err = capsys.readouterr().err
        no_traceback(err)
        (line,) = [x for x in err.splitlines() if not x.endswith(_run_path(out).name)]
        assert "No space left on device" in line and "free some disk space" in line, err
        for piece in (out / "cache").glob("*.npz"):
            load_arrays(piece)  # every finished piece is whole
        assert not list(out.rglob(".*.tmp"))  # no temporary file left behind
        assert run(out) == 0  # space again: the run completes from what was kept
        assert result_bytes(out) == result_bytes(reference)
    assert result_bytes(out) == result_bytes(reference)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_really_full_disk(tmp_path, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        code = run(mount / "out")
        err = capsys.readouterr().err
        assert code == 2 and "No space left on device" in err, err
        assert err.count("deepscope: error") == 1
        no_traceback(err)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# --- 10. an unreachable Ray cluster ---------------------------------------------------------


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1:1", "Connection refused"),
    ("bad:host", "is not HOST:PORT"),
    ("127.0.0.1:99999", "is not HOST:PORT"),
])
def test_unreachable_ray_is_one_line_within_the_timeout(address, expected, tmp_path, capfd):
    pytest.importorskip("ray", reason="install the extra: pip install -e '.[test,ray]'")
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    start = time.monotonic()
    assert run(tmp_path / "out", "--executor", "ray", "--address", address,
               "--ray-timeout", "5") == 2
    assert time.monotonic() - start < 30
    err = capfd.readouterr().err
    assert expected in err and err.count("\n") == 1, err  # no line from Ray itself


def test_a_head_that_never_answers_times_out(monkeypatch):
    pytest.importorskip("ray", reason="install the extra: pip install -e '.[test,ray]'")
    from deepscope import executors

    def silent(address, timeout):
        raise TimeoutError("timed out")

    monkeypatch.setattr(executors.socket, "create_connection", silent)
    with pytest.raises(UsageError, match=r"no answer within 0\.5 s"):
        executors._check_reachable("10.0.0.1:6379", 0.5)


# --- 11. an empty --out ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["run", STUDY, "--out", ""], ["report", "--out", ""],
                                  ["run", STUDY, "--out", " "]])
def test_an_empty_out_is_refused(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "--out is empty" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# --- random damage to a whole store ---------------------------------------------------------


def _entries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name != "report.html" or p.parent == root)


KINDS = ["delete", "truncate", "flip", "garbage", "json-list", "json-wrong-type",
         "directory", "swap"]


@st.composite
def damages(draw):
    return draw(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2**32 - 1),
                                   st.floats(0, 1), st.floats(0, 1)),
                         min_size=1, max_size=4))


def _damage(root: Path, kind: str, pick: int, at: float, other: float) -> None:
    entries = _entries(root)
    if not entries:
        return
    # Hypothesis favours boundary values (0, the maximum); a multiplicative hash spreads them
    # over the store, so the whole cache directory is not the target of every other example.
    path = entries[(pick * 2654435761 >> 7) % len(entries)]
    if not path.exists() and not path.is_symlink():
        return
    is_dir = path.is_dir() and not path.is_symlink()
    if kind == "delete":
        shutil.rmtree(path) if is_dir else path.unlink()
    elif kind == "directory":
        if is_dir:  # a file where a directory belongs
            shutil.rmtree(path)
            path.write_bytes(b"x")
        else:  # a directory where a file belongs
            path.unlink()
            (path / "x").mkdir(parents=True)
    elif is_dir:
        return
    elif kind in ("truncate", "flip", "garbage"):
        blob = bytearray(path.read_bytes())
        if kind == "truncate":
            blob = blob[: int(at * len(blob))]
        elif kind == "flip" and blob:
            blob[min(int(at * len(blob)), len(blob) - 1)] ^= 1 + int(other * 254)
        else:
            blob = bytearray(os.urandom(1 + int(at * 64)))
        path.write_bytes(bytes(blob))
    elif kind == "json-list":
        path.write_bytes(b"[1, 2, 3]")
    elif kind == "json-wrong-type" and path.suffix == ".json":
        obj = json.loads(path.read_text())
        keys = sorted(obj) if isinstance(obj, dict) else []
        if keys:
            obj[keys[min(int(at * len(keys)), len(keys) - 1)]] = [] if other < 0.5 else "x"
            path.write_text(json.dumps(obj))
    elif kind == "swap":
        same = [p for p in entries if p.suffix == path.suffix and p.is_file() and p != path]
        if same:
            twin = same[min(int(other * len(same)), len(same) - 1)]
            a, b = path.read_bytes(), twin.read_bytes()
            path.write_bytes(b)
            twin.write_bytes(a)


# Issue 15 asks for at least 200 examples. Each costs about 2.6 s of CPU (the damaged studies
# re-run); 200 took 897 s at load 4 on 2 cores (2026-12-03). DS_EX=N runs another number.
@settings(max_examples=int(os.environ.get("DS_EX", 200)), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(plan=damages())
def test_random_store_damage_never_crashes_and_reruns_to_the_same_bytes(plan, quick_store,
                                                                        tmp_path_factory,
                                                                        capsys):
    out = tmp_path_factory.mktemp("damaged") / "out"
    shutil.copytree(quick_store, out, symlinks=True)
    reference = {n: result_bytes(quick_store, n) for n in STUDIES}
    for step in plan:
        _damage(out, *step)
    capsys.readouterr()
    assert main(["report", "--out", str(out)]) == 0
    assert main(["run", "all", *QUICK, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    no_traceback(err)
    for name, blob in reference.items():
        assert result_bytes(out, name) == blob, name
    shutil.rmtree(out.parent)


def test_band_draws_the_statistic_it_names():
    from deepscope import plot as P

    _fig, axes = P.figure()
    ys = np.array([[1.0, 2.0], [2.0, 4.0], [9.0, 100.0], [np.nan, np.nan]])
    P.band(axes[0][0], np.arange(2), ys, "median", "C0", stat="median")
    np.testing.assert_allclose(axes[0][0].lines[0].get_ydata(), [2.0, 4.0])
    P.band(axes[0][0], np.arange(2), ys, "mean", "C1", stat="mean")
    np.testing.assert_allclose(axes[0][0].lines[1].get_ydata(), [4.0, 106 / 3])
    assert "interquartile" in P.STAT["median"] and "min–max" in P.STAT["mean"]
    with pytest.raises(ValueError, match="stat must be"):
        P.band(axes[0][0], np.arange(2), ys, "x", "C2", stat="mode")
