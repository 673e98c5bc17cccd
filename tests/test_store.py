"""The store writes atomically, never unpickles, and ctx.map caches pieces for resume."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.context import Context
from deepscope.errors import UsageError
from deepscope.store import config_hash, load_arrays, save_arrays


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
    with pytest.raises(UsageError, match="delete the file and re-run"):
        load_arrays(path)


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
