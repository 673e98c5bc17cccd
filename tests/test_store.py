"""The store writes atomically, never unpickles, and ctx.map caches pieces for resume."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest

from deepscope.context import Context
from deepscope.errors import DamagedError, UsageError
from deepscope.runner import run_study
from deepscope.store import (
    config_hash,
    exclusive,
    latest_runs,
    load_arrays,
    load_run,
    remove_stale_temporaries,
    save_arrays,
)


def test_arrays_round_trip(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "names": np.array(["x", "yz"]),
              "scalar": np.asarray(3)}
    save_arrays(tmp_path / "r.npz", arrays)
    back = load_arrays(tmp_path / "r.npz")
    assert set(back) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        save_arrays(tmp_path / "r.npz", {"bad": np.array([{"a": 1}], dtype=object)})


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r.npz"
    save_arrays(path, {"a": np.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(UsageError, match="delete it and re-run"):
        load_arrays(path)


def test_no_single_byte_flip_loads_wrong_data(tmp_path):
    """Every byte of a stored file, flipped in turn: the load fails with UsageError or gives
    exactly the stored arrays (a flip in zip metadata nobody reads). Zip CRC-32s alone let
    some directory damage through with members missing; the SHA-256 member catches it."""
    path = tmp_path / "r.npz"
    arrays = {"a": np.arange(5.0), "b": np.asarray(["diverged"]), "c": np.asarray(7)}
    save_arrays(path, arrays)
    blob = path.read_bytes()
    detected = 0
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            back = load_arrays(path)
        except UsageError:
            detected += 1
            continue
        assert set(back) == set(arrays), i
        for k in arrays:
            np.testing.assert_array_equal(back[k], arrays[k])
    assert detected > len(blob) // 2


def test_stored_files_follow_the_umask(tmp_path):
    path = tmp_path / "r.npz"
    save_arrays(path, {"a": np.ones(2)})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_damaged_run_files_are_skipped_with_a_reason(tmp_path, capsys):
    run = run_study("fit-function", scale="quick", out=tmp_path, progress=False,
                    overrides={"epochs": 3, "depths": (1,), "functions": ("square",)})
    good = (run.path / "config.json").read_bytes()
    for config, reason in ((b"\xff\xfe not utf-8", "not UTF-8 JSON"),
                           (b"{}", "lacks or mistypes 'study', 'config'"),
                           (b"[1, 2]", "holds a JSON list"),
                           (b'{"study": "s"}', "lacks or mistypes 'config'"),
                           (b'{"study": "fit-function", "config": {}}', "belongs to another")):
        (run.path / "config.json").write_bytes(config)
        with pytest.raises(DamagedError, match=reason):
            load_run(run.path)
        assert latest_runs(tmp_path) == {}  # skipped, not a crash
        assert reason in capsys.readouterr().err
    (run.path / "config.json").write_bytes(good)
    assert load_run(run.path).config == run.config


def test_lock_is_not_reentered_by_its_own_process(tmp_path):
    with (exclusive(tmp_path / "l.lock", "study x"), pytest.raises(UsageError, match="already"),
          exclusive(tmp_path / "l.lock", "study x")):
        pass
    with exclusive(tmp_path / "l.lock", "study x"):  # released: can be taken again
        pass


def test_only_stale_temporaries_are_removed(tmp_path):
    old, new = tmp_path / ".r.npz.1.tmp", tmp_path / ".r.npz.2.tmp"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temporaries(tmp_path) == 1
    assert not old.exists() and new.exists()


def test_config_hash_is_stable_and_distinguishes():
    assert config_hash("s", {"a": 1, "b": [1, 2]}) == config_hash("s", {"b": [1, 2], "a": 1})
    assert config_hash("s", {"a": 1}) != config_hash("s", {"a": 2})
    assert config_hash("s", {"a": 1}) != config_hash("t", {"a": 1})


def _square(item):
    _square.calls += 1
    return {"y": np.asarray(item) ** 2}


def test_map_caches_pieces_and_resumes(tmp_path):
    _square.calls = 0
    ctx = Context(study="s", config={"k": 1}, cache_dir=tmp_path, progress=False)
    first = ctx.map(_square, [1, 2, 3])
    assert _square.calls == 3
    ctx2 = Context(study="s", config={"k": 1}, cache_dir=tmp_path, progress=False)
    again = ctx2.map(_square, [1, 2, 3, 4])  # an "interrupted" run resumes: only 4 is new
    assert _square.calls == 4 and ctx2.pieces_cached == 3
    assert [int(p["y"]) for p in again] == [1, 4, 9, 16]
    assert [int(p["y"]) for p in first] == [1, 4, 9]
    other = Context(study="s", config={"k": 2}, cache_dir=tmp_path, progress=False)
    other.map(_square, [1])  # another config never reuses these pieces
    assert _square.calls == 5


def test_damaged_cache_piece_is_recomputed(tmp_path):
    _square.calls = 0
    ctx = Context(study="s", cache_dir=tmp_path, progress=False)
    ctx.map(_square, [5])
    (piece,) = tmp_path.glob("*.npz")
    piece.write_bytes(b"not a zip file")
    assert int(ctx.map(_square, [5])[0]["y"]) == 25
    assert _square.calls == 2
