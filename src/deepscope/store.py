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
either the old file or the new one, never half of one. Arrays are stored with ``np.savez``
and read back with ``allow_pickle=False``: a results directory can be shared without the risk
of executing code on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
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


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Store a flat ``{name: array}`` as ``.npz`` (uncompressed, no pickled objects)."""
    clean = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; results must be numeric or str")
        clean[k] = a
    buf = io.BytesIO()
    np.savez(buf, **clean)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`save_arrays` (never unpickles)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(
            f"cannot read {path}: {e}; delete the file and re-run to recompute it"
        ) from e


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
    lock = Path(lock)
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
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} is not a complete run ({e}); re-run the study") from e
    return StoredRun(path, cfg["study"], cfg["config"], load_arrays(path / "result.npz"), meta)


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
