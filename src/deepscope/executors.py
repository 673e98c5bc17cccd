"""Where ``ctx.map``'s pieces run: this process, a local process pool, or a Ray cluster.

The default, ``auto``, is a process pool of one single-threaded worker per core when the
thread budget is at least two and the study runs on the CPU, else this process. The
studies' models are small: torch's intra-op threads buy them little (a default-scale run on
2 cores used 105 % of the CPU with two threads), while pieces are independent, so running
them side by side uses the cores (``deepscope run all`` on a quiet 2-core machine: 18 min 14 s
in this process with 2 threads, 9 min 23 s on two 1-thread workers), and a worker that gets
less CPU on a busy machine slows down only in proportion.

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

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch

from .errors import DivergenceWarning, UsageError, suggest

EXECUTORS = ("auto", "local", "process", "ray")
RAY_TIMEOUT = 30.0  # seconds to reach a Ray cluster's head before giving up (--ray-timeout)
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
    others = {(str(w.message), w.category, w.filename, w.lineno): w for w in caught
              if not issubclass(w.category, DivergenceWarning)}
    for w in others.values():  # everything else is shown as usual, once per place and text
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


def full_precision() -> None:
    """Full float32 on CUDA, as on the CPU: no TF32 in matrix products or convolutions (cuDNN
    uses it by default on Ampere and later, keeping ~10 mantissa bits). Called in the main
    process and in every worker, so all executors compute the same numbers."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _exit_with(parent: int, every: float = 0.5) -> None:
    """Exit this worker as soon as its parent process is gone.

    A pool's workers otherwise outlive a main process that was killed (SIGKILL, SIGTERM, out
    of memory): blocked on their task queue, whose pipe they hold open themselves, they
    would wait forever, with ~350 MB each. When the parent dies the worker is handed to
    another process, so its parent pid changes; a daemon thread watches for that.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="deepscope-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Spawn workers with SIGINT blocked from their first instruction, and hold a Ctrl-C in
    this process back until the spawning is done.

    Ctrl-C in a terminal reaches the whole process group; the main process alone decides
    what happens (it terminates the pool), and a worker ignores SIGINT once its initializer
    has run. A worker still starting up (importing torch) would otherwise print a
    KeyboardInterrupt traceback. A blocked signal mask survives fork and exec, so the worker
    starts with SIGINT held back and its initializer unblocks it after ignoring it.

    The mask covers only the calling thread, and Python runs its SIGINT handler in the main
    thread whichever thread the kernel picked: a KeyboardInterrupt raised between starting a
    worker and writing its start-up data down the pipe left that worker reading a closed pipe
    ("EOFError: Ran out of input", a traceback; seen under load). So in the main thread the
    handler only records the Ctrl-C while workers are spawned, and it is raised again at once
    afterwards, through the handler that was there before.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    held: list[int] = []
    # (A handler installed outside Python reads as None and cannot be put back: left alone.)
    main = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not None)
    if main:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending one lands now
        if main:
            signal.signal(signal.SIGINT, previous)
            if held:
                signal.raise_signal(signal.SIGINT)  # to this thread only, not the workers


def _init_worker(threads: int, parent: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the main process alone decides
    # what happens (it terminates the pool), so workers do not each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # spawned with SIGINT blocked (_sigint_blocked)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with(parent)
    torch.set_num_threads(threads)


_FN_CACHE: dict[int, Callable] = {}


def _call_pickled(payload: bytes, item: Any, threads: int) -> tuple[Any, float]:
    """Run one piece in a worker: unpickle the function (once per map call), call it."""
    import cloudpickle

    torch.set_num_threads(threads)
    full_precision()
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
    deadlock the first time it multiplies matrices. If a worker dies (killed, out of memory),
    the pool cannot tell which piece it was running, so the pieces that were in flight are
    run again one at a time in a fresh one-worker pool: the innocent ones finish and the one
    that kills its worker is named.
    """

    name = "process"

    def __init__(self, workers: int | None = None, threads: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.threads = max(1, (threads or torch.get_num_threads()) // self.workers)
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.threads, os.getpid()))

    def run(self, fn: Callable, items: Sequence[Any]) -> Iterator[Outcome]:
        payload = _dumps(fn)
        if self._pool is None:
            self._pool = self._new_pool(self.workers)
        broken: list[int] = []
        finished = False
        try:  # from the first submit on: a Ctrl-C anywhere below must stop the workers
            with _sigint_blocked():  # submit() spawns the workers
                futures: dict[Future, int] = {
                    self._pool.submit(_call_pickled, payload, item, self.threads): i
                    for i, item in enumerate(items)}
            pending = set(futures)
            while pending:
                # A timeout, so this thread looks at signals twice a second: a Ctrl-C that
                # the kernel handed to another thread (while this one had SIGINT blocked to
                # spawn workers) would otherwise wait for a piece to finish.
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        piece, seconds = fut.result()
                    except BrokenProcessPool:
                        broken.append(futures[fut])
                    except Exception as e:
                        yield futures[fut], e, 0.0
                    else:
                        yield futures[fut], piece, seconds
            if broken:
                self._terminate()
                yield from self._isolate(payload, items, sorted(broken))
            finished = True
        finally:
            if not finished:  # interrupted (Ctrl-C) or abandoned: stop the workers now
                self._terminate()

    def _isolate(self, payload: bytes, items: Sequence[Any], idx: list[int]) -> Iterator[Outcome]:
        """Run the pieces a dead worker took down with it, one at a time."""
        for i in idx:
            pool = self._new_pool(1)
            try:
                with _sigint_blocked():
                    fut = pool.submit(_call_pickled, payload, items[i], self.threads)
                piece, seconds = fut.result()
            except BrokenProcessPool:
                yield i, RuntimeError("its worker process died while running it (killed, or "
                                      "out of memory?)"), 0.0
            except Exception as e:
                yield i, e, 0.0
            else:
                yield i, piece, seconds
            finally:
                pool.shutdown(wait=True)

    def _terminate(self) -> None:
        """Stop the pool at once: kill its workers, drop queued pieces."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)

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
                 address: str | None = None, device: torch.device | None = None,
                 timeout: float = RAY_TIMEOUT):
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
        if address is not None and not address.strip():
            raise UsageError("--address is empty; give the cluster's address, e.g. auto or "
                             "HEAD:6379, or leave it out for a local Ray")
        address = address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            hint = (" (a ray:// address needs the client: pip install 'ray[client]')"
                    if str(address).startswith("ray://") else "")
            if address is not None:
                _check_reachable(address, timeout, hint)
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False,
                                      "log_to_driver": False, "logging_level": "ERROR"}
            if address is None:  # a private local instance sized to the request
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except Exception as e:  # Ray raises ConnectionError, ValueError, RuntimeError ...
                raise UsageError(f"cannot start or reach Ray at {address or 'a local instance'}"
                                 f": {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                 f"{hint}; check --address (auto, or HEAD:6379 from a node of "
                                 "the cluster)") from None
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


def _check_reachable(address: str, timeout: float, hint: str = "") -> None:
    """Fail in one line, within ``timeout`` seconds, unless ``address``'s head node answers.

    Ray itself retries an unreachable head for many minutes, printing log lines as it goes;
    a plain TCP connection first turns a typo or a stopped cluster into one clear error.
    ``auto`` is resolved the way Ray resolves it (the newest cluster started on this node).
    """
    target = address.removeprefix("ray://")
    if address == "auto":
        try:  # Ray's own lookup; a private function, so any failure leaves the check to Ray
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto") or ""
        except Exception:
            return
        if not target:
            return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--address {address} is not HOST:PORT; give auto, HEAD:6379 from a "
                         f"node of the cluster, or ray://HEAD:10001{hint}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise UsageError(f"cannot start or reach Ray at {address}: {why} within {timeout:g} s"
                         f"{hint}; check that the cluster is running and --address (auto, or "
                         "HEAD:6379 from a node of the cluster), or raise --ray-timeout") from None


def _ray_cause(e: Exception) -> BaseException:
    """The exception a piece raised inside a Ray task (Ray wraps it)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


Executor = LocalExecutor | ProcessExecutor | RayExecutor


def choose_executor(name: str = "auto", workers: int | None = None,
                    threads: int | None = None, device: torch.device | None = None) -> str:
    """The executor ``auto`` stands for: ``process`` (one 1-thread worker per thread of the
    budget, at most one per core) when the pieces run on the CPU and the budget ``threads``
    (default: torch's thread count) is at least two or ``workers`` are asked for, else
    ``local``. Any other name is returned as it is."""
    if name != "auto":
        return name
    if device is not None and device.type != "cpu":
        return "local"  # one process keeps the GPU; workers would each hold a CUDA context
    if workers is not None:
        return "process"
    budget = threads or torch.get_num_threads()
    return "process" if min(budget, os.cpu_count() or 1) >= 2 else "local"


def check_executor(name: str = "auto", workers: int | None = None,
                   address: str | None = None, timeout: float = RAY_TIMEOUT) -> None:
    """Raise a one-line UsageError unless ``(name, workers, address, timeout)`` can make an
    executor; starts nothing (a pool or Ray is started by :func:`make_executor`)."""
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {name!r}; {suggest(name, list(EXECUTORS))}")
    cores = os.cpu_count() or 1
    if workers is not None:
        if workers < 1:
            raise UsageError(f"--workers must be ≥ 1, got {workers}")
        if name == "local":
            raise UsageError("--workers is for --executor process or ray (or the default, "
                             "auto); drop --executor local or --workers")
        # workers × threads ≤ cores: more CPU-bound workers than cores only slow each other.
        if workers > cores and (name == "process" or address is None):
            raise UsageError(f"--workers {workers} is more than this machine's {cores} cores; "
                             f"use at most {cores}" + (", or --address for a Ray cluster"
                                                       if name == "ray" else ""))
    if address is not None and name != "ray":
        raise UsageError("--address is for --executor ray; add --executor ray or drop it")
    if not timeout > 0:
        raise UsageError(f"--ray-timeout must be a positive number of seconds, got {timeout}")


def make_executor(name: str = "auto", workers: int | None = None, threads: int | None = None,
                  address: str | None = None, device: torch.device | None = None,
                  timeout: float = RAY_TIMEOUT) -> Executor:
    """The executor ``name`` (``auto`` | ``local`` | ``process`` | ``ray``), sized to
    ``workers`` and a thread budget of ``threads`` (default: torch's current thread count); a
    Ray cluster at ``address`` must answer within ``timeout`` seconds (:func:`check_executor`
    first). ``auto`` is resolved by :func:`choose_executor`."""
    check_executor(name, workers, address, timeout)
    name = choose_executor(name, workers, threads, device)
    if name == "process":
        budget = threads or torch.get_num_threads()
        return ProcessExecutor(workers or min(budget, os.cpu_count() or 1), threads)
    if name == "ray":
        return RayExecutor(workers, threads, address, device, timeout)
    return LocalExecutor(threads)
