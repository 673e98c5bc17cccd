"""Run a study end to end: config → ``run`` → store → figures → meta.

This is what ``deepscope run STUDY`` and ``deepscope.run(STUDY)`` do. The order of writes is
chosen so that a directory holding ``meta.json`` always holds a complete run: config, result
and figures are written (each atomically) before ``meta.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .context import Context
from .errors import ConfigError
from .executors import Executor, full_precision, make_executor
from .plot import to_png
from .store import (
    DEFAULT_ROOT,
    StoredRun,
    atomic_write_bytes,
    atomic_write_json,
    exclusive,
    load_run,
    remove_stale_temporaries,
    run_dir,
    run_lock,
    save_arrays,
)
from .studies import STUDIES, Study, make_config, suggest
from .studies.base import quiet_numpy


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


def run_study(
    name: str,
    scale: str = "default",
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    address: str | None = None,
) -> StoredRun:
    """Run study ``name`` and store it under ``out``; return the stored run.

    ``executor`` is ``local`` | ``process`` | ``ray`` (sized by ``workers`` and, for Ray,
    ``address``) or an executor made by :func:`deepscope.executors.make_executor`, which the
    caller then owns and closes — ``deepscope run all`` shares one pool between studies.

    Raises:
        ConfigError: unknown study, scale or key, or a bad value (before any work starts).
    """
    study = get_study(name)
    cfg = make_config(study, scale, overrides)
    cfg_dict = dataclasses.asdict(cfg)
    root = Path(out) if out is not None else DEFAULT_ROOT
    path = run_dir(root, name, cfg_dict)
    dev = resolve_device(device)
    own = isinstance(executor, str)
    ex = make_executor(executor, workers, address=address, device=dev) if own else executor
    ctx = Context(study=name, config=cfg_dict, device=dev, cache_dir=root / "cache",
                  data_dir=Path(data_dir) if data_dir is not None else None, progress=progress,
                  executor=ex)
    try:
        # One run of a (study, config) at a time per results directory: a second one waits,
        # then finds every piece in the cache.
        with exclusive(run_lock(path), f"{name} into {root}"):
            for d in (root / "cache", path):  # leftovers of writes killed long ago
                remove_stale_temporaries(d)
            return _run_and_store(study, cfg, ctx, path, scale, overrides)
    finally:
        if own:
            ex.close()


def _run_and_store(study: Study, cfg: Any, ctx: Context, path: Path, scale: str,
                   overrides: Mapping[str, Any] | None) -> StoredRun:
    name, cfg_dict, ex = study.name, ctx.config, ctx.executor
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    result = study.run(cfg, ctx)
    seconds = time.perf_counter() - t0

    # meta.json goes first and comes back last: a directory holding one holds a whole run.
    (path / "meta.json").unlink(missing_ok=True)
    atomic_write_json(path / "config.json", {"study": name, "config": cfg_dict})
    save_arrays(path / "result.npz", result)
    with quiet_numpy():
        figures = study.plot(result, cfg)
        findings = study.findings(result, cfg)
    for key, fig in figures.items():
        atomic_write_bytes(path / "figures" / f"{key}.png", to_png(fig))
    meta = {
        "study": name,
        "scale": scale,
        "overrides": {k: str(v) for k, v in (overrides or {}).items()},
        "seconds": seconds,
        "seconds_per_piece": ctx.piece_seconds,
        "pieces_from_cache": ctx.pieces_cached,
        "started": started.isoformat(timespec="seconds"),
        "seeds": cfg_dict.get("seeds"),
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "executor": {"name": ex.name, "workers": ex.workers, "threads_per_worker": ex.threads},
        "versions": {"deepscope": _version(), "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count()},
        "git": _git_hash(),
        "findings": findings + [
            f"Diverged: {d}" for d in ctx.diverged],
        "diverged": ctx.diverged,
    }
    atomic_write_json(path / "meta.json", meta)
    return load_run(path)


def _version() -> str:
    from . import __version__

    return __version__
