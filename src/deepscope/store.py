"""The results directory is the database.

```
deepscope-results/
  STUDY/RUN_ID/config.json  result.npz  meta.json  figures/*.png
  cache/HASH.npz            # ctx.map pieces, for resume
  report.html
```

``RUN_ID`` is a hash of (study, config), so the same configuration always lands in the same
place and a different one never overwrites it. Every file is written atomically — to a
temporary file in the same directory, then ``os.replace`` — so a run killed mid-write leaves
either the old file or the new one, never half of one. Arrays are stored with ``np.savez``,
with a SHA-256 of their contents checked on every load, and read back with
``allow_pickle=False``: a damaged file is never used, and a results directory can be shared
without the risk of executing code on load. One run of a (study, config) at a time holds its
lock (``flock``); a second one waits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError

DEFAULT_ROOT = Path("deepscope-results")


def config_hash(study: str, config: Mapping[str, Any]) -> str:
    """12 hex digits identifying ``(study, config)``; stable across processes and machines."""
    text = json.dumps({"study": study, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- atomic writes -------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's own 0600 would hide results


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
                       .encode())


CHECKSUM = "__sha256__"  # member of every stored .npz: SHA-256 over all the other members


def _digest(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """SHA-256 of names, dtypes, shapes and bytes of ``arrays``, as a 0-d string array."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return np.asarray(h.hexdigest())


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Store a flat ``{name: array}`` as ``.npz`` (uncompressed, no pickled objects), with a
    SHA-256 of its contents that :func:`load_arrays` checks."""
    clean = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; results must be numeric or str")
        clean[k] = a
    buf = io.BytesIO()
    np.savez(buf, **clean, **{CHECKSUM: _digest(clean)})
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`save_arrays` (never unpickles).

    The zip format's CRC-32s cover each member's bytes but not the directory that lists the
    members, so a damaged file can lose a member and still open; the stored SHA-256 over
    every member catches that too. Any damage raises UsageError; nothing half-read is
    returned.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        stored = arrays.pop(CHECKSUM)
        if str(stored) != str(_digest(arrays)):
            raise ValueError("checksum mismatch")
    except Exception as e:  # zipfile/numpy raise many types on damaged input
        reason = "no checksum" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise UsageError(
            f"cannot read {path} ({reason}): the file is damaged or was not written by "
            "deepscope; delete it and re-run to recompute it"
        ) from e
    return arrays


@contextlib.contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` while the block runs.

    A second process asking for the same lock says who holds it and waits. ``flock`` locks
    belong to the open file, so the kernel releases them when the holder exits or is killed:
    a crashed run never leaves a stale lock. Where ``fcntl`` does not exist (Windows) nothing
    is locked; atomic writes still keep every file whole.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = Path(lock).resolve()
    if lock in _HELD:  # flock would wait for ourselves forever
        raise UsageError(f"{what} is already running in this process; a study cannot run "
                         "itself")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            print(f"deepscope: another process (pid {holder}) is running {what}; waiting for "
                  "it to finish, then reusing its cached pieces", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD.add(lock)
        try:
            yield
        finally:
            _HELD.discard(lock)
            fcntl.flock(f, fcntl.LOCK_UN)


_HELD: set[Path] = set()  # locks this process holds


def remove_stale_temporaries(directory: Path, older_than: float = 600.0) -> int:
    """Delete ``.*.tmp`` files under ``directory`` left by a killed write more than
    ``older_than`` seconds ago (a live write takes milliseconds); return how many."""
    removed = 0
    now = time.time()
    for tmp in Path(directory).rglob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed += 1
        except OSError:  # another process removed or renamed it first
            pass
    return removed


# --- runs ----------------------------------------------------------------------------------


@dataclass
class StoredRun:
    """One finished run as it lies on disk."""

    path: Path
    study: str
    config: dict[str, Any]
    result: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def figures(self) -> list[Path]:
        return sorted((self.path / "figures").glob("*.png"))


def run_dir(root: Path, study: str, config: Mapping[str, Any]) -> Path:
    return Path(root) / study / config_hash(study, config)


def run_lock(path: Path) -> Path:
    """The lock file of the run stored in ``path`` (beside it, so it never looks like a run)."""
    return path.parent / f".{path.name}.lock"


def load_run(path: Path) -> StoredRun:
    """Load the run stored in ``path`` (a ``STUDY/RUN_ID`` directory)."""
    path = Path(path)
    try:
        cfg = json.loads((path / "config.json").read_text())
        meta = json.loads((path / "meta.json").read_text())
        study, config = cfg["study"], dict(cfg["config"])
        if not isinstance(meta, dict):
            raise TypeError("meta.json does not hold an object")
    except (OSError, ValueError, KeyError, TypeError) as e:  # ValueError: bad JSON or UTF-8
        raise UsageError(f"{path} is not a complete run ({type(e).__name__}: {e}); re-run "
                         "the study") from e
    return StoredRun(path, study, config, load_arrays(path / "result.npz"), meta)


def latest_runs(root: Path) -> dict[str, StoredRun]:
    """The most recently finished, readable run of every study under ``root``.

    A run whose files are damaged (truncated, corrupt) is skipped with a message naming it,
    so one bad directory never hides the others.
    """
    runs: dict[str, StoredRun] = {}
    for meta in sorted(Path(root).glob("*/*/meta.json"), key=lambda p: p.stat().st_mtime):
        try:
            run = load_run(meta.parent)
        except UsageError as e:
            print(f"deepscope: skipping a damaged run: {e}", file=sys.stderr)
            continue
        runs[run.study] = run
    return runs
