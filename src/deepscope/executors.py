"""Where ``ctx.map``'s pieces run: this process, a local process pool, or a Ray cluster.

An executor takes a piece function and a list of items and yields ``(index, outcome,
seconds)`` as each piece finishes, in completion order; ``outcome`` is the piece or the
exception it raised. The caller (:meth:`deepscope.context.Context.map`) caches a piece the
moment it arrives, so a piece that fails — or a worker that dies — never loses the others.

Piece functions are closures inside a study's ``run`` (they capture the config and the
context), which the standard pickle cannot send to another process, so they travel as
cloudpickle bytes; pieces come back as dicts of numpy arrays. Pickle is used only on this
channel between our own processes, never for files.

Threads: every worker gets ``threads // workers`` torch threads (at least one), so the pool
never asks for more threads than the budget (``--threads``, default all cores). Torch with
more threads than free cores slows down many-fold.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch

from .errors import DivergenceWarning, UsageError

EXECUTORS = ("local", "process", "ray")
Outcome = tuple[int, Any, float]  # (item index, piece dict or exception, seconds)


DIVERGED = "_diverged"  # piece key under which its divergence warnings travel


def _timed(fn: Callable, item: Any) -> tuple[Any, float]:
    """``fn(item)`` and its seconds; divergence warnings are caught where the piece runs (a
    worker's warnings would not reach this process) and returned inside the piece."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        piece = dict(fn(item))
    seconds = time.perf_counter() - start
    diverged = [str(w.message) for w in caught if issubclass(w.category, DivergenceWarning)]
    for w in caught:  # everything else is shown as usual
        if not issubclass(w.category, DivergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if diverged:
        piece[DIVERGED] = np.asarray(diverged, dtype=str)
    return piece, seconds


class LocalExecutor:
    """Pieces one after another in this process (the default; no extra processes)."""

    name = "local"

    def __init__(self, threads: int | None = None):
        self.workers = 1
        self.threads = threads or torch.get_num_threads()

    def run(self, fn: Callable, items: Sequence[Any]) -> Iterator[Outcome]:
        for i, item in enumerate(items):
            try:
                piece, seconds = _timed(fn, item)
            except Exception as e:  # reported by Context.map once the other pieces are done
                yield i, e, 0.0
            else:
                yield i, piece, seconds

    def close(self) -> None:
        pass


# --- local process pool --------------------------------------------------------------------


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


_FN_CACHE: dict[int, Callable] = {}


def _call_pickled(payload: bytes, item: Any, threads: int) -> tuple[Any, float]:
    """Run one piece in a worker: unpickle the function (once per map call), call it."""
    import cloudpickle

    torch.set_num_threads(threads)
    key = hash(payload)
    if key not in _FN_CACHE:
        _FN_CACHE.clear()  # one function at a time: a study's captured data is freed after it
        _FN_CACHE[key] = cloudpickle.loads(payload)
    return _timed(_FN_CACHE[key], item)


def _dumps(fn: Callable) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle is a core dependency
        raise UsageError("--executor process needs cloudpickle: pip install cloudpickle") from None
    return cloudpickle.dumps(fn)


class ProcessExecutor:
    """A pool of ``workers`` spawned processes, kept alive across ``map`` calls.

    ``spawn``, not ``fork``: a forked child of a process whose OpenMP pool is running can
    deadlock the first time it multiplies matrices.
    """

    name = "process"

    def __init__(self, workers: int | None = None, threads: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.threads = max(1, (threads or torch.get_num_threads()) // self.workers)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.threads,))
        return self._pool

    def run(self, fn: Callable, items: Sequence[Any]) -> Iterator[Outcome]:
        payload = _dumps(fn)
        pool = self._get_pool()
        futures: dict[Future, int] = {
            pool.submit(_call_pickled, payload, item, self.threads): i
            for i, item in enumerate(items)}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        piece, seconds = fut.result()
                    except BrokenProcessPool as e:  # a worker died (killed, out of memory)
                        self._pool = None
                        yield futures[fut], RuntimeError(
                            f"a worker process died ({e}); was it killed or out of memory?"), 0.0
                    except Exception as e:
                        yield futures[fut], e, 0.0
                    else:
                        yield futures[fut], piece, seconds
        finally:  # interrupted (Ctrl-C, or the caller stopped): drop what has not started
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# --- Ray -----------------------------------------------------------------------------------


class RayExecutor:
    """Pieces as Ray tasks, on a local Ray instance or the cluster at ``address``.

    At most ``workers`` pieces are in flight (default: the cluster's CPUs); each task asks Ray
    for one CPU (and a share of a GPU when the study runs on CUDA). Every node needs
    deepscope installed; the piece function itself is shipped with the task.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 address: str | None = None, device: torch.device | None = None):
        try:
            import ray
        except ImportError:
            raise UsageError("--executor ray needs Ray, which is not installed; "
                             "pip install 'deepscope[ray]' (or use --executor process)") from None
        if device is not None and device.type == "cuda" and device.index:
            # Ray shows each task only the GPU it assigned, as cuda:0.
            raise UsageError(f"--device {device} cannot be used with --executor ray, which "
                             "assigns GPUs itself; use --device cuda")
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False,
                                      "log_to_driver": False}
            if address is None:  # a private local instance sized to the request
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except ConnectionError as e:
                raise UsageError(f"cannot reach the Ray cluster at {address!r} ({e}); check "
                                 "--address (e.g. ray://HOST:10001 or auto)") from None
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or cpus
        total = threads or torch.get_num_threads()
        self.threads = max(1, total // self.workers) if address is None else 1
        gpu = device is not None and device.type == "cuda"
        self._options = {"num_cpus": 1, "num_gpus": 1 / self.workers if gpu else 0,
                         "max_retries": 0}

    def run(self, fn: Callable, items: Sequence[Any]) -> Iterator[Outcome]:
        ray = self._ray
        task = ray.remote(**self._options)(_call_pickled)
        payload = ray.put(_dumps(fn))
        queue = list(enumerate(items))[::-1]
        inflight: dict[Any, int] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < self.workers:
                    i, item = queue.pop()
                    inflight[task.remote(payload, item, self.threads)] = i
                done, _ = ray.wait(list(inflight), num_returns=1)
                i = inflight.pop(done[0])
                try:
                    piece, seconds = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:  # the piece raised: report its error
                    yield i, _ray_cause(e), 0.0
                except ray.exceptions.RayError as e:  # the worker or node died
                    yield i, RuntimeError(f"Ray worker failed: {e}"), 0.0
                else:
                    yield i, piece, seconds
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def _ray_cause(e: Exception) -> BaseException:
    """The exception a piece raised inside a Ray task (Ray wraps it)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


Executor = LocalExecutor | ProcessExecutor | RayExecutor


def make_executor(name: str = "local", workers: int | None = None, threads: int | None = None,
                  address: str | None = None, device: torch.device | None = None) -> Executor:
    """The executor ``name`` (``local`` | ``process`` | ``ray``), sized to ``workers`` and a
    thread budget of ``threads`` (default: torch's current thread count)."""
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be ≥ 1, got {workers}")
    most = 4 * (os.cpu_count() or 1)
    if name == "process" and workers is not None and workers > most:
        raise UsageError(f"--workers {workers} would start more processes than 4 × this "
                         f"machine's {os.cpu_count()} cores; use at most {most}, or Ray for a "
                         "cluster")
    if address is not None and name != "ray":
        raise UsageError("--address is for --executor ray; add --executor ray or drop it")
    if name == "local":
        return LocalExecutor(threads)
    if name == "process":
        return ProcessExecutor(workers, threads)
    if name == "ray":
        return RayExecutor(workers, threads, address, device)
    from .studies.base import suggest

    raise UsageError(f"unknown executor {name!r}; {suggest(name, list(EXECUTORS))}")
