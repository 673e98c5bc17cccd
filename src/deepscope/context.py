"""The context a study runs in: device, threads, data location, and ``map``.

A study's ``run(cfg, ctx)`` is a straight line of code. Whatever it can split into independent
pieces — seeds, depths, widths, batch sizes — it hands to ``ctx.map(fn, items)``, which

* caches each finished piece in ``cache/HASH.npz`` under a hash of (study, config, function,
  item), so an interrupted run resumes without recomputing what was done — or, with
  ``scope=``, of (scope, function, item), so pieces that several studies need (the models of
  one training sweep) are computed once and found by every study that names the same scope;
* runs them on the context's executor — in this process, a local process pool or a Ray
  cluster (:mod:`deepscope.executors`) — with one progress bar over the pieces;
* records the seconds each piece took, for ``meta.json``.

A piece returns a flat ``{name: np.ndarray}`` — exactly what can be stored without pickle.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data as data_mod
from .errors import DamagedError, PieceError
from .executors import DIVERGED, Executor, LocalExecutor
from .store import discard, load_arrays, save_arrays

Piece = dict[str, np.ndarray]


@functools.cache
def _source_hash(module: str) -> str:
    """SHA-256 of deepscope's own source and of ``module``'s file (if it has one).

    All of deepscope, not only the study's module: a piece's result depends on the trainer and
    the probes too, and a fixed bug must never be served from the cache.
    """
    h = hashlib.sha256()
    own = sorted(Path(__file__).parent.rglob("*.py"))
    path = getattr(sys.modules.get(module), "__file__", None)
    for f in [*own, *([Path(path)] if path else [])]:
        h.update(f.read_bytes())
    return h.hexdigest()


def code_hash() -> str:
    """SHA-256 of deepscope's own source: what produced a stored result or figure."""
    return _source_hash(__package__ or "deepscope")


@dataclass
class Clock:
    """Where a command stands, for progress lines that work without a terminal.

    ``studies`` is how many studies the command runs and ``done`` how many have finished;
    ``current`` is the share of the running study's pieces that are done.
    """

    studies: int = 1
    done: int = 0
    current: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def line(self, study: str, done: int, total: int, study_started: float) -> str:
        """``fit-function 3/12 pieces, 14 s, ETA 42 s · suite 1/11 studies, 1 m 10 s, ETA ~8 m``.

        ETAs assume the remaining pieces (and studies) take as long as the finished ones on
        average; the suite's is rough, since studies differ in length.
        """
        now = time.perf_counter()
        spent = now - study_started
        eta = spent / done * (total - done) if done else float("nan")
        self.current = done / total if total else 1.0
        text = f"{study} {done}/{total} pieces, {_duration(spent)}, ETA {_duration(eta)}"
        if self.studies > 1:
            progress = self.done + self.current
            suite = now - self.started
            rest = suite / progress * (self.studies - progress) if progress else float("nan")
            text += (f" · suite {self.done}/{self.studies} studies, {_duration(suite)}, "
                     f"ETA ~{_duration(rest)}")
        return text


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"


@dataclass
class Context:
    """Where and how a study runs.

    Attributes:
        study: name of the running study (part of every cache key without a ``scope``).
        config: the study's config as a dict (part of every cache key without a ``scope``).
        device: torch device for data, models and probes.
        cache_dir: where pieces are cached; ``None`` disables caching.
        data_dir: directory of IDX files (``--data-dir``), else the default search order.
        data_identity: ``{data set: fingerprint of its contents}`` for the data this study
            reads (set by the runner); part of every cache key, so pieces computed on one
            copy of the data are never served for another.
        progress: show progress (``None``: a bar when stderr is a terminal, else one line
            per finished piece with elapsed time and ETA; ``False``: nothing).
        download: allow a verified download of a missing data set (never by default).
        clock: the command's progress across studies (``deepscope run all``).
        executor: where ``map`` runs pieces (:mod:`deepscope.executors`; default in-process).
    """

    study: str = "adhoc"
    config: Mapping[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path | None = None
    data_dir: Path | None = None
    data_identity: Mapping[str, str] = field(default_factory=dict)
    progress: bool | None = None
    download: bool = False
    clock: Clock = field(default_factory=Clock)
    executor: Executor = field(default_factory=LocalExecutor)
    started: float = field(default_factory=time.perf_counter)
    piece_seconds: list[float] = field(default_factory=list)
    pieces_cached: int = 0
    diverged: list[str] = field(default_factory=list)

    def __getstate__(self) -> dict[str, Any]:
        # A context travels to workers inside piece closures; its executor (a pool, a Ray
        # handle) stays here, and anything the worker maps runs in the worker itself.
        state = dict(self.__dict__)
        state.update(executor=LocalExecutor(), piece_seconds=[], pieces_cached=0, diverged=[],
                     clock=Clock(), progress=False)
        return state

    def load(self, name: str, **kwargs: Any) -> data_mod.Data:
        """``deepscope.load`` with this context's data directory, on this context's device."""
        kwargs.setdefault("download", self.download)
        return data_mod.load(name, data_dir=self.data_dir, **kwargs).to(device=self.device)

    def _key(self, fn: Callable, item: Any, scope: Any = None) -> str:
        """Hash of everything a piece's result depends on: study and config (or, instead of
        both, the ``scope`` the caller names), the function, the source code (a fixed bug is
        never served from the cache), the item, the contents of the data it reads (not the
        path it was named by) and the device."""
        owner = ({"study": self.study, "config": dict(self.config)} if scope is None
                 else {"scope": scope})
        text = json.dumps(
            {**owner, "fn": f"{fn.__module__}.{fn.__qualname__}",
             "code": _source_hash(fn.__module__), "item": item,
             "data": dict(self.data_identity), "device": str(self.device)},
            sort_keys=True, default=repr,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def map(self, fn: Callable[[Any], Piece], items: Iterable[Any], desc: str = "",
            scope: Any = None) -> list[Piece]:
        """``[fn(item) for item in items]``, each piece cached, run on this context's executor.

        ``fn`` must be a pure function of its item (and the study config): the cache key is
        built from its qualified name, the source code (deepscope's and its module's) and the
        item's JSON form. ``scope`` (any JSON-able value, e.g. ``("batch-sweep", {training
        settings})``) replaces the study and its config in the key: ``fn`` must then be a
        pure function of its item and the scope alone, and every study that maps the same
        function over the same items with an equal scope shares the pieces — ``deepscope run
        all`` computes them once. Pieces found in the cache are loaded (a damaged one is
        recomputed); the rest go to the executor and are cached as each one finishes, so an
        interrupted or failing run keeps every finished piece. Members that diverged inside a piece
        (:class:`~deepscope.errors.DivergenceWarning`) are listed in ``self.diverged``,
        whichever executor ran the piece, and also when the piece comes from the cache.

        Raises:
            PieceError: a piece raised — after all other pieces have finished and been cached.
        """
        items = list(items)
        out: list[Piece | None] = [None] * len(items)
        paths = [self.cache_dir / f"{self._key(fn, item, scope)}.npz" if self.cache_dir else None
                 for item in items]
        for i, path in enumerate(paths):
            if path is None:
                continue
            try:
                out[i] = load_arrays(path)
                self.pieces_cached += 1
            except FileNotFoundError:
                pass
            except DamagedError:  # recomputed, never trusted
                discard(path, "not a sound cache piece (damaged, moved or not written by "
                        "deepscope); it is recomputed")
        todo = [i for i, piece in enumerate(out) if piece is None]
        tty = sys.stderr.isatty()
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc or self.study,
                   unit="piece", leave=False,
                   disable=not tty if self.progress is None else not self.progress)
        lines = self.progress is None and not tty  # a log, CI, a pipe: one line per piece
        failures: list[tuple[Any, BaseException]] = []
        done = len(items) - len(todo)
        if lines and done:
            print(f"deepscope: {desc or self.study}: {done} of {len(items)} pieces from the "
                  "cache", file=sys.stderr, flush=True)
        with bar:
            for j, outcome, seconds in self.executor.run(fn, [items[i] for i in todo]):
                i = todo[j]
                bar.update()
                done += 1
                if lines:
                    line = self.clock.line(desc or self.study, done, len(items), self.started)
                    print(f"deepscope: {line}", file=sys.stderr, flush=True)
                if isinstance(outcome, BaseException):
                    failures.append((items[i], outcome))
                    continue
                piece = {k: np.asarray(v) for k, v in outcome.items()}
                self.piece_seconds.append(seconds)
                if paths[i] is not None:
                    save_arrays(paths[i], piece, root=self.cache_dir)
                out[i] = piece
        for item, piece in zip(items, out):  # divergence stays recorded in cached pieces too
            if piece is not None and DIVERGED in piece:
                self.diverged += [f"piece {item!r}: {msg}" for msg in piece.pop(DIVERGED)]
        if failures:
            item, err = failures[0]
            raise PieceError(
                f"{len(failures)} of {len(items)} pieces of {self.study} failed on the "
                f"{self.executor.name} executor; the first, item {item!r}, raised "
                f"{type(err).__name__}: {err}. The {len(items) - len(failures)} finished pieces "
                "are cached: fix the cause and re-run to compute only the failed ones"
            ) from err
        return out  # type: ignore[return-value]
