"""Run a study end to end: plan → ``run`` → store → figures → meta.

This is what ``deepscope run STUDY`` and ``deepscope.run(STUDY)`` do. :func:`plan_study`
checks everything that can be wrong with the input — the study, scale, config and the data
it will read — before any work starts; ``deepscope run all`` plans every study before it runs
the first. The order of writes is chosen so that a directory holding ``meta.json`` always
holds a complete run: config, result and figures are written (each atomically) before
``meta.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .context import Clock, Context, code_hash
from .data import identify
from .data.mnist import resolve_data_dir
from .errors import ConfigError, DataError, DeepscopeError, UsageError
from .executors import RAY_TIMEOUT, Executor, check_executor, full_precision, make_executor
from .plot import quiet_numpy, to_png
from .store import (
    StoredRun,
    atomic_write_bytes,
    atomic_write_json,
    encode_arrays,
    exclusive,
    load_run,
    record_failure,
    remove_file,
    remove_stale_temporaries,
    results_root,
    run_dir,
    run_lock,
    safe_dir,
    sha256,
    stored_figures,
    write_figures,
)
from .studies import STUDIES, Study, make_config, suggest
from .version import __version__


def get_study(name: str) -> Study:
    """The registered study ``name``, or a ConfigError that suggests the closest name."""
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; {suggest(name, list(STUDIES))} "
                          "(see `deepscope list`)")
    return STUDIES[name]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``cpu`` (default) or ``cuda``; a clear error when CUDA is asked for but absent."""
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use cpu or cuda (or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}; use cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was given but no CUDA device is available to "
                              "torch; use --device cpu or install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device} does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s), cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1}")
        full_precision()  # no TF32: the same float32 numbers as on the CPU
    return dev


def _git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass(frozen=True)
class Plan:
    """One study, checked and ready to run: nothing in it can fail as bad input any more.

    ``data_dir`` is the data directory in effect (``--data-dir``, else ``DEEPSCOPE_DATA``),
    resolved to an absolute path so workers and later runs read the same files;
    ``data_identity`` fingerprints the contents of every data set the study reads, and is
    part of every cache key.
    """

    study: Study
    cfg: Any
    scale: str
    overrides: Mapping[str, Any]
    data_dir: Path | None
    data_identity: Mapping[str, str]
    download: bool = False

    @property
    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg)


def plan_study(name: str, scale: str = "default", overrides: Mapping[str, Any] | None = None,
               data_dir: str | Path | None = None, download: bool = False) -> Plan:
    """Check study ``name`` at ``scale`` with ``overrides`` and the data it will read
    (``download``: a missing data set may be fetched, verified; never by default).

    Raises:
        ConfigError: unknown study, scale or key, or a bad value.
        DataError: a data set the study needs is missing, unreadable or too small.
    """
    study = get_study(name)
    cfg = make_config(study, scale, overrides)
    folder, _ = resolve_data_dir(data_dir)
    identity = {}
    for need in study.data(cfg):
        try:
            identity[need.name] = identify(need.name, folder, train=need.train, test=need.test,
                                           download=download)
        except DataError:
            if not need.optional:
                raise
            identity[need.name] = "absent"
    return Plan(study, cfg, scale, dict(overrides or {}), folder, identity, download)


@dataclass(frozen=True)
class RunPlan:
    """A whole ``deepscope run`` command, checked: its studies, where results go, where and
    how the pieces run. :func:`plan_run` makes one or raises one UsageError; after that only a
    failing study (or a full disk) can stop the command."""

    plans: tuple[Plan, ...]
    out: Path
    device: torch.device
    executor: str = "auto"
    workers: int | None = None
    address: str | None = None
    ray_timeout: float = RAY_TIMEOUT
    threads: int | None = None


def plan_run(study: str, scale: str = "default", sets: Mapping[str, Any] | None = None, *,
             out: str | Path | None = None, device: str | None = "cpu",
             data_dir: str | Path | None = None, download: bool = False,
             executor: str = "auto", workers: int | None = None, address: str | None = None,
             ray_timeout: float | None = None, threads: int | None = None) -> RunPlan:
    """Check everything a ``deepscope run STUDY|all`` command was given, once, before any work:
    the study names, scale and ``--set`` keys of every study, the data each will read, the
    device, thread count, executor arguments and the results directory.

    Raises:
        UsageError: the first thing that is wrong, as one line naming the fix.
    """
    names = list(STUDIES) if study == "all" else [get_study(study).name]
    dev = _check_machine(threads, device, data_dir)
    per_study = sets_per_study(names, dict(sets or {}))
    plans = tuple(plan_study(n, scale, per_study[n], data_dir, download) for n in names)
    timeout = RAY_TIMEOUT if ray_timeout is None else ray_timeout
    check_executor(executor, workers, address, timeout)
    return RunPlan(plans, writable_root(out), dev, executor, workers, address, timeout, threads)


def plan_probe(settings: Mapping[str, Any], *, out: str | Path | None = None,
               device: str | None = "cpu", data_dir: str | Path | None = None,
               download: bool = False, executor: str = "auto", workers: int | None = None,
               address: str | None = None, ray_timeout: float | None = None,
               threads: int | None = None) -> RunPlan:
    """Check a ``deepscope probe`` command before any work: its settings (the config keys of
    :mod:`deepscope.studies.probe`), the model, weights and data they name and that the
    model takes the data (one forward pass), and the rest as in :func:`plan_run`.

    The model (code, module tree, every parameter after the weights are loaded) and the
    data (every tensor read) are fingerprinted into the plan's ``data_identity``, part of
    every cache key: a changed factory, weights file or data set is never served from the
    cache.

    Raises:
        UsageError: the first thing that is wrong, as one line naming the fix.
    """
    from . import specs
    from .studies.probe import setup
    from .studies.probe import study as probe

    dev = _check_machine(threads, device, data_dir)
    cfg = make_config(probe, "default", settings)
    folder, _ = resolve_data_dir(data_dir)
    s = setup(cfg, "cpu", folder, download)
    identity = {"model": specs.model_identity(s.built), "data": specs.data_identity(s.pd)}
    plan = Plan(probe, cfg, "default", dict(settings), folder, identity, download)
    timeout = RAY_TIMEOUT if ray_timeout is None else ray_timeout
    check_executor(executor, workers, address, timeout)
    return RunPlan((plan,), writable_root(out), dev, executor, workers, address, timeout,
                   threads)


def _check_machine(threads: int | None, device: str | None,
                   data_dir: str | Path | None) -> torch.device:
    """The device, after checking ``--threads`` and ``--data-dir``."""
    if threads is not None:
        most = 4 * (os.cpu_count() or 1)  # beyond this torch only slows down (and eats memory)
        if not 1 <= threads <= most:
            raise UsageError(f"--threads must be between 1 and {most} (4 × this machine's "
                             f"{os.cpu_count()} cores), got {threads}")
    dev = resolve_device(device)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a readable directory")
    return dev


def sets_per_study(names: list[str], sets: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``--set`` overrides of each study. With several studies (``run all``) a key must
    be one every study has: applied to only some, it would change a few studies silently."""
    if len(names) == 1:
        return {names[0]: dict(sets)}
    fields = {n: set(STUDIES[n].Config.__dataclass_fields__) for n in names}
    common = sorted(set.intersection(*fields.values()))
    for key in sets:
        having = [n for n in names if key in fields[n]]
        if len(having) == len(names):
            continue
        hint = (f"only {', '.join(having)} {'has' if len(having) == 1 else 'have'} it; run "
                f"{'it' if len(having) == 1 else 'them'} by name (deepscope run {having[0]} "
                f"--set {key}=…)" if having else suggest(key, common) if common else
                "no study has it")
        raise ConfigError(f"--set {key}=… with `run all` must apply to every study, but {hint}"
                          " (see `deepscope show STUDY`)")
    return {n: dict(sets) for n in names}


def writable_root(out: str | Path | None) -> Path:
    """The results directory ``--out``, created and writable, or a one-line UsageError."""
    root = results_root(out)
    safe_dir(root)
    if not os.access(root, os.W_OK):
        raise UsageError(f"results directory {root} is not writable; choose another with --out")
    return root


@dataclass(frozen=True)
class Outcome:
    """How one study of a command ended: its stored run, or the error that stopped it."""

    plan: Plan
    run: StoredRun | None
    error: Exception | None
    seconds: float


def run_plan(plan: RunPlan, progress: bool | None = None) -> Iterator[Outcome]:
    """Run the studies of ``plan`` one after another on one executor, yielding each outcome.

    A study that fails does not stop the others: its error is recorded in the store (the
    report shows it) and yielded. A UsageError (a link in the store, a full disk) stops the
    command. The executor's workers are shut down at the end, however it ends.
    """
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    executor = make_executor(plan.executor, plan.workers, address=plan.address,
                             device=plan.device, timeout=plan.ray_timeout)
    clock = Clock(studies=len(plan.plans))
    try:
        for p in plan.plans:
            t0 = time.perf_counter()
            try:
                run = run_study(p, out=plan.out, device=plan.device, executor=executor,
                                progress=progress, clock=clock)
            except UsageError:
                raise
            except Exception as e:  # one study failing must not stop the others
                if not isinstance(e, DeepscopeError):  # ours say all there is in one line
                    traceback.print_exc()
                record_failure(plan.out, p.study.name, e, p.scale)
                yield Outcome(p, None, e, time.perf_counter() - t0)
            else:
                yield Outcome(p, run, None, run.meta["seconds"])
            finally:
                clock.done += 1
    finally:
        executor.close()


def run_study(
    name: str | Plan,
    scale: str = "default",
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
    executor: str | Executor = "auto",
    workers: int | None = None,
    address: str | None = None,
    clock: Clock | None = None,
) -> StoredRun:
    """Run study ``name`` (or a checked :class:`Plan`) and store it under ``out``; return the
    stored run. ``clock`` carries a multi-study command's progress (``run all``).

    ``executor`` is ``auto`` | ``local`` | ``process`` | ``ray`` (sized by ``workers`` and,
    for Ray, ``address``; ``auto`` is a 1-thread worker per core on a multi-core CPU, see
    :func:`deepscope.executors.choose_executor`) or an executor made by
    :func:`deepscope.executors.make_executor`, which the caller then owns and
    closes — ``deepscope run all`` shares one pool between studies.

    Raises:
        UsageError: unknown study, scale or key, a bad value, missing data (before any work
            starts), or a results directory that cannot be written.
    """
    plan = name if isinstance(name, Plan) else plan_study(name, scale, overrides, data_dir)
    study, cfg_dict = plan.study, plan.config
    root = results_root(out)
    dev = resolve_device(device)
    cache = safe_dir(root, "cache")
    path = run_dir(root, study.name, cfg_dict)
    safe_dir(root, study.name)
    own = isinstance(executor, str)
    ex = make_executor(executor, workers, address=address, device=dev) if own else executor
    ctx = Context(study=study.name, config=cfg_dict, device=dev, cache_dir=cache,
                  data_dir=plan.data_dir, data_identity=plan.data_identity, progress=progress,
                  download=plan.download, clock=clock or Clock(), executor=ex)
    try:
        # One run of a (study, config) at a time per results directory: a second one waits,
        # then finds every piece in the cache.
        with exclusive(run_lock(path), f"{study.name} into {root}"):
            for d in (cache, path):  # leftovers of writes killed long ago
                remove_stale_temporaries(d)
            return _run_and_store(plan, ctx, root, path)
    finally:
        if own:
            ex.close()


def _run_and_store(plan: Plan, ctx: Context, root: Path, path: Path) -> StoredRun:
    study, cfg, name = plan.study, plan.cfg, plan.study.name
    cfg_dict, ex = ctx.config, ctx.executor
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    result = study.run(cfg, ctx)
    seconds = time.perf_counter() - t0

    # Figures are drawn anew unless those stored here were drawn from exactly this result by
    # this code (re-drawing would give the same bytes; it is most of a cached run's time).
    blob = encode_arrays(result, path / "result.npz")
    code, digest = code_hash(), sha256(blob)
    pngs = stored_figures(path, code, digest)
    # meta.json goes first and comes back last: a directory holding one holds a whole run.
    remove_file(path / "meta.json")
    atomic_write_json(path / "config.json", {"study": name, "config": cfg_dict}, root)
    atomic_write_bytes(path / "result.npz", blob, root)
    with quiet_numpy():
        if pngs is None:
            pngs = {key: to_png(fig) for key, fig in study.plot(result, cfg).items()}
            write_figures(root, path, pngs, code, digest)
        findings = study.findings(result, cfg)
    meta = {
        "study": name,
        "scale": plan.scale,
        "overrides": {k: str(v) for k, v in plan.overrides.items()},
        "seconds": seconds,
        "seconds_per_piece": ctx.piece_seconds,
        "pieces_from_cache": ctx.pieces_cached,
        "started": started.isoformat(timespec="seconds"),
        "seeds": cfg_dict.get("seeds"),
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "executor": {"name": ex.name, "workers": ex.workers, "threads_per_worker": ex.threads},
        "versions": {"deepscope": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count()},
        "git": _git_hash(),
        "data": dict(plan.data_identity),
        "code": code,
        "result_sha256": digest,
        "findings": findings + [
            f"Diverged: {d}" for d in ctx.diverged],
        "diverged": ctx.diverged,
    }
    atomic_write_json(path / "meta.json", meta, root)
    return load_run(path)


