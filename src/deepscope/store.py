"""The results directory is the database.

```
deepscope-results/
  STUDY/RUN_ID/config.json  result.npz  meta.json  figures/*.png
  STUDY/failed.json         # the last attempt at STUDY failed, and why
  cache/HASH.npz            # ctx.map pieces, for resume
  report.html
```

``RUN_ID`` is a hash of (study, config), so the same configuration always lands in the same
place and a different one never overwrites it. The rules every file obeys:

* **Atomic writes.** A file is written to a temporary file in its directory, then renamed
  over the old one, so a run killed mid-write leaves the old file or the new one, never half.
* **Nothing is written through a link.** Below the results directory itself, every directory
  on the way to a file is checked: a symbolic link is refused with one line (a planted link
  must never make deepscope write outside ``--out``), and the lock is opened with
  ``O_NOFOLLOW``. A link at a file's own name is replaced by the rename, never followed.
* **One reading path that validates.** Files are read with ``O_NOFOLLOW``, only when they are
  regular files; arrays carry a SHA-256 over their contents *and their place in the store*
  (``RUN_ID/result.npz``, ``cache/KEY.npz``), so a damaged file, or a valid one moved or
  swapped to another place, is never used; JSON files must hold the fields of the right types.
  Anything that is not what deepscope wrote — damaged, the wrong shape, a directory where a
  file belongs or a file where a directory belongs — is recomputed by a run and skipped by the
  report, each with one line saying so. Files that appear or vanish while they are read (a run
  re-storing itself) are tolerated.
* **Failing writes are one line.** A full disk or a missing permission is a
  :class:`~deepscope.errors.StoreError` naming the file and the fix, not a traceback; what was
  stored before stays whole.
* Arrays are stored with ``np.savez`` and read back with ``allow_pickle=False``: a results
  directory can be shared without the risk of executing code on load.
* One run of a (study, config) at a time holds its lock (``flock``); a second one waits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DamagedError, StoreError, UsageError

DEFAULT_ROOT = Path("deepscope-results")
FAILED = "failed.json"


def config_hash(study: str, config: Mapping[str, Any]) -> str:
    """12 hex digits identifying ``(study, config)``; stable across processes and machines."""
    text = json.dumps({"study": study, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def say(message: str) -> None:
    """One line to the user on stderr (what the store skipped, replaced or waits for)."""
    print(f"deepscope: {message}", file=sys.stderr, flush=True)


# --- safe writes ---------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's own 0600 would hide results


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a file where a directory on the way should be
        return None


def _write_failure(path: Path, e: OSError) -> StoreError:
    """The one-line error for a write the operating system refused."""
    reason = e.strerror or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = ("free some disk space (or choose another --out) and re-run: what was stored "
               "before is whole, and finished pieces are reused")
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a writable --out"
    else:
        fix = "check the results directory, or choose another --out"
    return StoreError(f"cannot write {path}: {reason}; {fix}")


def _link_refused(path: Path) -> StoreError:
    return StoreError(f"{path} is a symbolic link; deepscope never writes through a link in "
                      "its results directory. Remove the link (or choose another --out)")


def _remove(path: Path) -> None:
    """Remove ``path``: a link is unlinked (never followed), a directory with what it holds."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _write_failure(path, e) from e


def discard(path: Path, why: str) -> None:
    """Remove ``path`` — something in the store deepscope did not write — saying so once."""
    say(f"{path} is {why}; removing it")
    _remove(path)


def results_root(out: str | Path | None) -> Path:
    """The results directory named by ``--out`` (default ``./deepscope-results``).

    Raises:
        UsageError: an empty path (it would silently mean the current directory).
    """
    if out is None:
        return DEFAULT_ROOT
    if not str(out).strip():
        raise UsageError("--out is empty; give the results directory, e.g. --out "
                         "deepscope-results")
    return Path(out)


def remove_file(path: Path) -> None:
    """Remove the file deepscope keeps at ``path``, if any (a directory squatting there is
    discarded with one line)."""
    st = _lstat(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        discard(path, "a directory where deepscope keeps a file")
    elif st is not None:
        _remove(path)


def safe_dir(root: Path, *parts: str) -> Path:
    """``root/parts…`` as a directory, created as needed, with no link anywhere below ``root``.

    ``root`` itself (the user's ``--out``) may be or lie under a link; below it a link is
    refused with :class:`StoreError`, and a file where a directory belongs is removed.
    """
    d = Path(root)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create results directory {d}: "
                         f"{e.strerror or type(e).__name__}; choose another with --out") from e
    for part in parts:
        d = d / part
        st = _lstat(d)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise _link_refused(d)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            discard(d, "a file where deepscope keeps a directory")
            st = None
        if st is None:
            try:
                d.mkdir(exist_ok=True)  # exist_ok: another run may create it first
            except OSError as e:
                raise _write_failure(d, e) from e
    return d


def atomic_write_bytes(path: Path, payload: bytes, root: Path | None = None) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one.

    ``root`` is the directory under which no link may be followed (default: ``path``'s own
    directory); the directories between them are created. A directory squatting on ``path``
    is removed first, a link there is replaced, not followed.

    Raises:
        StoreError: a link on the way, or the write failed (full disk, no permission).
    """
    path = Path(path)
    root = path.parent if root is None else Path(root)
    rel = path.relative_to(root)
    parent = safe_dir(root, *rel.parts[:-1])
    target = parent / rel.name
    st = _lstat(target)
    if st is not None and stat.S_ISDIR(st.st_mode):
        discard(target, "a directory where deepscope keeps a file")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise _write_failure(target, e) from e
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any, root: Path | None = None) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented, key-sorted JSON."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(path, text.encode(), root)


# --- the reading path ----------------------------------------------------------------------


def read_file(path: Path) -> bytes:
    """The bytes of the regular file ``path``, never through a link.

    Raises:
        FileNotFoundError: nothing is there (callers tell "missing" from "damaged").
        DamagedError: a link, a directory, a device or pipe, or unreadable.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        what = {errno.ELOOP: "a symbolic link", errno.EISDIR: "a directory"}.get(
            e.errno or 0, e.strerror or type(e).__name__)
        raise DamagedError(f"{path} is {what}, not a file deepscope wrote") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # a directory, or a pipe that would block a reader
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise DamagedError(f"{path} is {what}, not a file deepscope wrote")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise DamagedError(f"cannot read {path}: {e.strerror or e}") from e
    finally:
        os.close(fd)


Check = Callable[[Any], bool]


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_number(x) for x in v)


def _mapping(v: Any) -> bool:
    return isinstance(v, dict)


CONFIG_FIELDS: dict[str, Check] = {"study": _text, "config": _mapping}
META_FIELDS: dict[str, Check] = {
    "study": _text, "scale": _text, "seconds": _number, "seconds_per_piece": _numbers,
    "pieces_from_cache": _count, "started": _text, "device": _text, "threads": _count,
    "executor": _mapping, "versions": _mapping, "machine": _mapping, "findings": _texts,
    "diverged": _texts,
}
FAILURE_FIELDS: dict[str, Check] = {"error": _text, "scale": _text, "when": _text}


def read_json(path: Path, fields: Mapping[str, Check]) -> dict[str, Any]:
    """The JSON object in ``path``, with every one of ``fields`` present and well-typed.

    Raises:
        FileNotFoundError: nothing is there.
        DamagedError: not UTF-8, not JSON, not an object, or a field missing or mistyped.
    """
    blob = read_file(path)
    try:
        obj = json.loads(blob.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DamagedError(f"{path} is not UTF-8 JSON ({type(e).__name__})") from e
    if not isinstance(obj, dict):
        raise DamagedError(f"{path} holds a JSON {type(obj).__name__}, not an object")
    bad = [k for k, ok in fields.items() if k not in obj or not ok(obj[k])]
    if bad:
        raise DamagedError(f"{path} lacks or mistypes {', '.join(map(repr, bad))}")
    return obj


# --- arrays --------------------------------------------------------------------------------

CHECKSUM = "__sha256__"  # member of every stored .npz: SHA-256 over all the others and place


def _place(path: Path) -> str:
    """Where a file sits in the store, as far as its checksum is concerned: its directory's
    name and its own (``RUN_ID/result.npz``, ``cache/KEY.npz``), so a valid file moved or
    swapped to another place does not verify there."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _digest(arrays: Mapping[str, np.ndarray], place: str) -> np.ndarray:
    """SHA-256 of ``place`` and the names, dtypes, shapes and bytes of ``arrays``, as a 0-d
    string array."""
    h = hashlib.sha256(f"{place}\0".encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return np.asarray(h.hexdigest())


def encode_arrays(arrays: Mapping[str, np.ndarray], path: Path) -> bytes:
    """The ``.npz`` bytes :func:`save_arrays` stores at ``path``: no pickled objects, and a
    SHA-256 of the contents and place that :func:`decode_arrays` checks."""
    clean = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; results must be numeric or str")
        clean[k] = a
    buf = io.BytesIO()
    np.savez(buf, **clean, **{CHECKSUM: _digest(clean, _place(path))})
    return buf.getvalue()


def decode_arrays(blob: bytes, path: Path) -> dict[str, np.ndarray]:
    """The arrays in ``blob``, read from ``path``, if their checksum holds there.

    The zip format's CRC-32s cover each member's bytes but not the directory that lists the
    members, so a damaged file can lose a member and still open; the stored SHA-256 over
    every member catches that too, and a file moved from another place fails it. Nothing
    half-read is returned; nothing is unpickled.

    Raises:
        DamagedError: damaged, moved, or not written by deepscope.
    """
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        stored = arrays.pop(CHECKSUM)
        if str(stored) != str(_digest(arrays, _place(path))):
            raise ValueError("checksum mismatch")
    except Exception as e:  # zipfile/numpy raise many types on damaged input
        reason = "no checksum" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise DamagedError(
            f"cannot read {path} ({reason}): the file is damaged, was moved, or was not "
            "written by deepscope; delete it and re-run to recompute it") from e
    return arrays


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray], root: Path | None = None) -> None:
    """Store a flat ``{name: array}`` as ``.npz`` at ``path`` (:func:`encode_arrays`);
    ``root`` as in :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, encode_arrays(arrays, path), root)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`save_arrays` at this place (:func:`decode_arrays`).

    Raises:
        FileNotFoundError: nothing is there.
        DamagedError: damaged, moved, not written by deepscope, or not a regular file.
    """
    return decode_arrays(read_file(path), path)


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# --- the run lock --------------------------------------------------------------------------


def _open_lock(lock: Path) -> int:
    """A descriptor of the regular file ``lock``, created if need be, never through a link."""
    flags = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    for _ in range(2):
        try:
            fd = os.open(lock, flags, FILE_MODE)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _link_refused(lock) from e
            if e.errno != errno.EISDIR:
                raise _write_failure(lock, e) from e
            discard(lock, "a directory where deepscope keeps its lock file")
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        discard(lock, "not a regular file, where deepscope keeps its lock file")
    raise StoreError(f"cannot create the lock file {lock}; remove what is there and re-run")


@contextlib.contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` while the block runs.

    A second process asking for the same lock says who holds it and waits. ``flock`` locks
    belong to the open file, so the kernel releases them when the holder exits or is killed:
    a crashed run never leaves a stale lock. The lock file is opened with ``O_NOFOLLOW``: a
    link planted there is refused, never truncated through. Where ``fcntl`` does not exist
    (Windows) nothing is locked; atomic writes still keep every file whole.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = Path(lock).absolute()
    if lock in _HELD:  # flock would wait for ourselves forever
        raise UsageError(f"{what} is already running in this process; a study cannot run "
                         "itself")
    with os.fdopen(_open_lock(lock), "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read(32).strip() or "?"
            say(f"another process (pid {holder}) is running {what}; waiting for it to "
                "finish, then reusing its cached pieces")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
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
    for tmp in Path(directory).rglob(".*.tmp"):  # rglob does not descend into links
        try:
            st = os.lstat(tmp)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than:
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
    result_sha256: str = ""  # of the stored result.npz's bytes

    @property
    def figures(self) -> list[Path]:
        return sorted((self.path / "figures").glob("*.png"))


FIGURE_INDEX = "index.json"  # in figures/: what drew the figures, from which result
INDEX_FIELDS: dict[str, Check] = {"code": _text, "result_sha256": _text, "figures": _mapping}


def write_figures(root: Path, path: Path, pngs: Mapping[str, bytes], code: str,
                  result_sha256: str) -> None:
    """Store the PNG figures of the run in ``path`` with their provenance.

    ``figures/index.json`` records the source (``code``, a hash of deepscope's source), the
    result they were drawn from and each file's SHA-256; it is removed before the figures
    are replaced and written after them, so it never vouches for a figure it did not see.
    """
    figures = path / "figures"
    remove_file(figures / FIGURE_INDEX)
    for key, png in pngs.items():
        atomic_write_bytes(figures / f"{key}.png", png, root)
    atomic_write_json(figures / FIGURE_INDEX, {
        "code": code, "result_sha256": result_sha256,
        "figures": {key: sha256(png) for key, png in pngs.items()}}, root)


def stored_figures(path: Path, code: str, result_sha256: str) -> dict[str, bytes] | None:
    """The PNG figures stored in the run directory ``path``, if they are exactly what this
    code would draw from the result whose bytes hash to ``result_sha256``.

    Figures are a pure function of the result and the plotting code, so when their index
    says they were drawn from that very result by the same source and every file still has
    its recorded SHA-256, re-drawing them would give the same bytes; otherwise (None) they
    must be re-drawn. They live beside the result, not in ``meta.json``: a run re-stored
    after its meta or config was lost keeps them.
    """
    try:
        index = read_json(path / "figures" / FIGURE_INDEX, INDEX_FIELDS)
    except (FileNotFoundError, DamagedError):
        return None
    listed = index["figures"]
    if index["code"] != code or index["result_sha256"] != result_sha256 or not listed:
        return None
    figures = {}
    for key, digest in listed.items():
        if not re.fullmatch(r"[\w-]+", key):  # a name, never a path
            return None
        try:
            blob = read_file(path / "figures" / f"{key}.png")
        except (FileNotFoundError, DamagedError):
            return None
        if sha256(blob) != digest:
            return None
        figures[key] = blob
    return figures


def run_dir(root: Path, study: str, config: Mapping[str, Any]) -> Path:
    return Path(root) / study / config_hash(study, config)


def run_lock(path: Path) -> Path:
    """The lock file of the run stored in ``path`` (beside it, so it never looks like a run)."""
    return path.parent / f".{path.name}.lock"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    st = _lstat(path)
    return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)


def load_run(path: Path) -> StoredRun:
    """Load and check the run stored in ``path`` (a ``STUDY/RUN_ID`` directory).

    ``meta.json`` is written last by a run and removed first when the run is re-stored, so
    it is read first and checked again at the end: a run that changed while being read is
    read again.

    Raises:
        FileNotFoundError: no complete run is there (or it is being re-stored right now).
        DamagedError: a file is damaged, of the wrong shape, or belongs to another run.
    """
    path = Path(path)
    for _ in range(3):
        before = _stamp(path / "meta.json")
        if before is None:
            raise FileNotFoundError(path / "meta.json")
        meta = read_json(path / "meta.json", META_FIELDS)
        cfg = read_json(path / "config.json", CONFIG_FIELDS)
        study, config = cfg["study"], dict(cfg["config"])
        if study != path.parent.name or config_hash(study, config) != path.name:
            raise DamagedError(f"{path / 'config.json'} belongs to another run, not "
                               f"{path.parent.name}/{path.name}")
        if meta["study"] != study:
            raise DamagedError(f"{path / 'meta.json'} belongs to study {meta['study']!r}, "
                               f"not {study!r}")
        blob = read_file(path / "result.npz")
        result = decode_arrays(blob, path / "result.npz")
        if _stamp(path / "meta.json") == before:
            return StoredRun(path, study, config, result, meta, sha256(blob))
    raise FileNotFoundError(f"{path} kept changing while it was read (a run storing itself)")


def _subdirs(path: Path) -> list[Path]:
    """The real sub-directories of ``path`` (no links); none if it is not a directory."""
    try:
        with os.scandir(path) as it:
            return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def latest_runs(root: Path) -> dict[str, StoredRun]:
    """The most recently finished, readable run of every study under ``root``.

    A run whose files are damaged (truncated, corrupt, the wrong shape) is skipped with one
    line naming it, so one bad directory never hides the others; a run that vanishes or is
    being re-stored while the store is read is left out silently.
    """
    return {run.study: run for run in _finished(
        path for study_dir in _subdirs(Path(root)) for path in _subdirs(study_dir))}


def study_runs(root: Path, study: str) -> list[StoredRun]:
    """Every finished, readable run of ``study`` under ``root`` (one per configuration: a
    probed model each for ``probe``), oldest first; damaged runs skipped as by
    :func:`latest_runs`."""
    return [run for run in _finished(_subdirs(Path(root) / study)) if run.study == study]


def _finished(paths: Iterable[Path]) -> list[StoredRun]:
    """The runs in ``paths`` that hold a ``meta.json``, loaded, in the order they finished."""
    found = []
    for path in paths:
        st = _lstat(path / "meta.json")
        if st is not None:
            found.append((st.st_mtime_ns, str(path)))
    runs = []
    for _, path in sorted(found):
        try:
            runs.append(load_run(Path(path)))
        except FileNotFoundError:
            continue
        except DamagedError as e:
            say(f"skipping a damaged run: {e}")
    return runs


# --- failure records -----------------------------------------------------------------------


def record_failure(root: Path, study: str, error: BaseException, scale: str) -> None:
    """Store that the last attempt at ``study`` failed, and why (shown by the report)."""
    atomic_write_json(Path(root) / study / FAILED, {
        "error": f"{type(error).__name__}: {error}", "scale": scale,
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}, root)


def latest_failure(root: Path, study: str, run: StoredRun | None) -> dict[str, Any] | None:
    """The stored failure of ``study`` if it is newer than its latest successful ``run``.

    A failure record that is damaged or of the wrong shape is skipped with one line.
    """
    path = Path(root) / study / FAILED
    failed_at = _stamp(path)
    if failed_at is None:
        return None
    done_at = _stamp(run.path / "meta.json") if run is not None else None
    if done_at is not None and done_at[1] > failed_at[1]:
        return None
    try:
        return read_json(path, FAILURE_FIELDS)
    except FileNotFoundError:
        return None
    except DamagedError as e:
        say(f"skipping a damaged failure record: {e}")
        return None
