"""The command line: ``deepscope list | show | run | report``.

Exit codes: 0 everything ran; 1 a study failed or a training run in it diverged (the others
still ran and everything finished is stored);
2 bad usage or input (unknown study, key, type, unreadable data), reported as one line that
names the fix, before any training starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from .errors import ConfigError, DeepscopeError, UsageError
from .version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors raise instead of printing, so every one is a single line."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r} (e.g. --set epochs=100)")
        out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="deepscope", description="Probes and classic studies of how neural "
                "networks fit, optimise and generalise.")
    p.add_argument("--version", action="version", version=f"deepscope {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the studies")
    show = sub.add_parser("show", help="config fields, defaults and scales of a study")
    show.add_argument("study")
    run = sub.add_parser("run", help="run a study (or all) and store its results")
    run.add_argument("study", help="study name, or 'all'")
    run.add_argument("--scale", default="default", help="quick | default | full")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field (repeatable)")
    run.add_argument("--out", default="deepscope-results", help="results directory")
    run.add_argument("--device", default="cpu", help="cpu | cuda")
    run.add_argument("--threads", type=int, default=None,
                     help="torch threads in all (default: all cores), shared among workers")
    run.add_argument("--executor", default="local",
                     help="where pieces run: local (this process) | process (a local pool) | "
                     "ray (needs deepscope[ray])")
    run.add_argument("--workers", type=int, default=None,
                     help="processes or Ray tasks at once (default: cores, or the cluster's CPUs)")
    run.add_argument("--address", default=None,
                     help="Ray cluster to use: auto, or HEAD:6379 from a node of the cluster "
                     "(default: start a private local Ray)")
    run.add_argument("--ray-timeout", type=float, default=None, metavar="SECONDS",
                     help="how long to wait for the Ray cluster at --address to answer "
                     "(default 30)")
    run.add_argument("--data-dir", default=None,
                     help="directory of MNIST IDX files (else $DEEPSCOPE_DATA, else shipped)")
    run.add_argument("--download", action="store_true",
                     help="fetch a missing data set from its public mirrors, SHA-256 verified "
                     "(deepscope never touches the network otherwise)")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bar (or, without a terminal, no progress lines)")
    rep = sub.add_parser("report", help="write OUT/report.html from the stored runs")
    rep.add_argument("--out", default="deepscope-results", help="results directory")
    return p


def _cmd_list() -> int:
    from .studies import STUDIES

    width = max(map(len, STUDIES))
    for name, study in STUDIES.items():
        print(f"{name:<{width}}  {study.summary}")
    return EXIT_OK


def _cmd_show(name: str) -> int:
    from .runner import get_study
    from .studies.base import config_fields

    study = get_study(name)
    print(f"{name}: {study.summary}\n")
    rows = config_fields(study)
    w = max(len(r[0]) for r in rows)
    t = max(len(r[1]) for r in rows)
    for fname, tname, default, doc in rows:
        print(f"  {fname:<{w}}  {tname:<{t}}  {default!s:<22} {doc}")
    print("\nscales (overrides of the defaults above):")
    for scale, over in study.scales.items():
        print(f"  {scale}: " + ", ".join(f"{k}={v}" for k, v in over.items()))
    return EXIT_OK


def _check_out(out: str) -> Path:
    """The results directory ``--out``, created and writable, or a one-line UsageError."""
    from .store import results_root, safe_dir

    root = results_root(out)
    safe_dir(root)
    if not os.access(root, os.W_OK):
        raise UsageError(f"results directory {root} is not writable; choose another with --out")
    return root


def _cmd_run(args) -> int:
    import torch

    from .context import Clock
    from .executors import make_executor
    from .report import write_report
    from .runner import get_study, plan_study, resolve_device, run_study
    from .store import record_failure
    from .studies import STUDIES

    names = list(STUDIES) if args.study == "all" else [get_study(args.study).name]
    sets = _parse_sets(args.sets)
    if args.threads is not None:
        most = 4 * (os.cpu_count() or 1)  # beyond this torch only slows down (and eats memory)
        if not 1 <= args.threads <= most:
            raise UsageError(f"--threads must be between 1 and {most} (4 × this machine's "
                             f"{os.cpu_count()} cores), got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a readable directory")
    per_study = _sets_per_study(names, sets)
    # Every study is checked — config and the data it reads — before the first one runs.
    plans = [plan_study(name, args.scale, per_study[name], args.data_dir, args.download)
             for name in names]
    out = _check_out(args.out)
    executor = make_executor(args.executor, args.workers, address=args.address, device=device,
                             **({} if args.ray_timeout is None else
                                {"timeout": args.ray_timeout}))

    failed, summary = [], []
    clock = Clock(studies=len(plans))
    try:
        for plan in plans:
            name = plan.study.name
            t0 = time.perf_counter()
            try:
                run = run_study(plan, out=out, device=device, executor=executor,
                                progress=False if args.no_progress else None, clock=clock)
            except UsageError:
                raise
            except Exception as e:  # one study failing must not stop the others
                if not isinstance(e, DeepscopeError):  # ours say all there is in one line
                    traceback.print_exc()
                print(f"deepscope: {name} failed: {e}", file=sys.stderr)
                record_failure(out, name, e, args.scale)
                failed.append(name)
                summary.append(f"FAILED  {name:<26} {time.perf_counter() - t0:7.1f} s  "
                               f"{type(e).__name__}: {e}")
                clock.done += 1
                continue
            print(f"{name}: stored in {run.path}", file=sys.stderr)
            if run.meta.get("diverged"):  # stored and reported, but not a clean run
                failed.append(name)
                summary.append(f"DIVERGED {name:<25} {run.meta['seconds']:7.1f} s  "
                               f"{len(run.meta['diverged'])} run(s): {run.meta['diverged'][0]}")
                clock.done += 1
                continue
            summary.append(f"ok      {name:<26} {run.meta['seconds']:7.1f} s  "
                           f"{_verdict(plan, run)}")
        clock.done += 1
    finally:
        executor.close()
    report = write_report(out)
    print("\n".join(summary))
    print(f"report: {report}")
    return EXIT_FAILED if failed else EXIT_OK


def _sets_per_study(names: list[str], sets: dict[str, str]) -> dict[str, dict[str, str]]:
    """The ``--set`` overrides of each study. With several studies (``run all``) a key must
    be one every study has: applied to only some, it would change a few studies silently."""
    from .studies import STUDIES
    from .studies.base import suggest

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


def _verdict(plan, run) -> str:
    """The study's verdict against the literature, with what it measured, for the summary."""
    from .studies.base import quiet_numpy

    if plan.study.literature is None:
        return _headline(run.meta["findings"])
    with quiet_numpy():
        ex = plan.study.literature(run.result, plan.cfg)
    return _headline([f"{ex.verdict}: {ex.reference}" + (f" ({ex.measured})" if ex.measured
                                                           else "")])


def _headline(findings: list[str], width: int = 100) -> str:
    """The first finding that is a result (not the model list), cut at a word boundary."""
    lines = [f for f in findings if not f.startswith("Models:")] or findings or [""]
    text = lines[0]
    return text if len(text) <= width else text[: width - 1].rsplit(" ", 1)[0] + " …"


def _cmd_report(args) -> int:
    from .report import write_report
    from .store import results_root
    from .studies import STUDIES

    root = results_root(args.out)
    # Anything of deepscope's — even a damaged run, which the report then names — is worth a
    # report; a directory with none of it is a mistyped --out, not an empty report.
    if not any(os.path.lexists(root / name) for name in (*STUDIES, "cache")):
        raise UsageError(f"{root} holds no deepscope results; run a study first (deepscope run "
                         f"all --out {root}), or point --out at a results directory")
    print(write_report(_check_out(args.out)))
    return EXIT_OK


def _one_line(text: str) -> str:
    """``text`` with control characters (echoed from the user's input) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deepscope`` command; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            return _cmd_list()
        if args.command == "show":
            return _cmd_show(args.study)
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_report(args)
    except UsageError as e:
        print(f"deepscope: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("deepscope: interrupted; finished pieces are cached, re-run to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
