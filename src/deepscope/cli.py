"""The command line: ``deepscope list | show | run | probe | report``.

Exit codes: 0 everything ran; 1 a study failed or a training run in it diverged (the others
still ran and everything finished is stored);
2 bad usage or input (unknown study, key, type, unreadable data), reported as one line that
names the fix, before any training starts.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import ConfigError, UsageError
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
    _execution(run)
    probe = sub.add_parser("probe", help="probe your own model: Hessian spectrum, trace, "
                           "density, sharpness, loss surface, sensitivity, gradient norm")
    probe.add_argument("model", metavar="MODEL", help="module.path:factory, torchvision:NAME, "
                       "timm:NAME or hf:CONFIG_OR_DIR")
    probe.add_argument("--data", default=None, metavar="DATA",
                       help="mnist (default), fashion-mnist, mnist1d, or module.path:fn "
                       "returning a Data, an (x, y) pair, a Dataset or a DataLoader")
    probe.add_argument("--weights", default=None, metavar="FILE",
                       help="state dict to load: .pt/.pth (weights_only) or .safetensors")
    probe.add_argument("--probe", dest="probes", default=None, metavar="LIST",
                       help="comma-separated, default all: hessian,trace,density,sharpness,"
                       "surface,sensitivity,grad-norm")
    probe.add_argument("--params", default=None, metavar="GLOB",
                       help="parameters the curvature and landscape probes act on, e.g. "
                       "'layer4.*' (default all)")
    probe.add_argument("--samples", default=None, metavar="N",
                       help="samples the loss averages over (default 256)")
    probe.add_argument("--batch-size", default=None, metavar="B",
                       help="stream batches of B samples (memory of one batch); default one "
                       "batch")
    probe.add_argument("--seeds", default=None, metavar="R",
                       help="runs of each curvature probe, for error bars (default 3)")
    probe.add_argument("--mode", default=None, help="eval (default) | train")
    probe.add_argument("--loss", default=None,
                       help="auto (default) | cross-entropy | mse | model (model(**batch).loss)")
    probe.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                       help="any other setting (see `deepscope show probe`), e.g. --set k=10")
    _execution(probe)
    rep = sub.add_parser("report", help="write OUT/report.html from the stored runs")
    rep.add_argument("--out", default="deepscope-results", help="results directory")
    return p


def _execution(p: argparse.ArgumentParser) -> None:
    """The options of where and how a command's pieces run, shared by ``run`` and ``probe``."""
    p.add_argument("--out", default="deepscope-results", help="results directory")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in all (default: all cores), shared among workers")
    p.add_argument("--executor", default="auto",
                   help="where pieces run: auto (default: a 1-thread worker per core on a "
                   "multi-core CPU, else this process) | local (this process) | process (a "
                   "local pool) | ray (needs deepscope[ray])")
    p.add_argument("--workers", type=int, default=None,
                   help="processes or Ray tasks at once (default: cores, or the cluster's CPUs)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to use: auto, or HEAD:6379 from a node of the cluster "
                   "(default: start a private local Ray)")
    p.add_argument("--ray-timeout", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for the Ray cluster at --address to answer "
                   "(default 30)")
    p.add_argument("--data-dir", default=None,
                   help="directory of MNIST IDX files (else $DEEPSCOPE_DATA, else shipped)")
    p.add_argument("--download", action="store_true",
                   help="fetch a missing data set from its public mirrors, SHA-256 verified "
                   "(deepscope never touches the network otherwise)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (or, without a terminal, no progress lines)")


def _cmd_list() -> int:
    from .studies import STUDIES

    width = max(map(len, STUDIES))
    for name, study in STUDIES.items():
        print(f"{name:<{width}}  {study.summary}")
    return EXIT_OK


def _cmd_show(name: str) -> int:
    from .runner import get_study
    from .studies.fields import config_fields
    from .studies.probe import study as probe

    study = probe if name == probe.name else get_study(name)
    print(f"{name}: {study.summary}\n")
    rows = config_fields(study.Config)
    head = ("field", "type", "default", "role", "valid values", "meaning")
    cells = [head, *[(r.name, r.type, str(r.default), r.role, r.valid, r.doc)
                     for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head) - 1)]
    for c in cells:
        print("  " + "  ".join(f"{x:<{w}}" for x, w in zip(c, widths)) + "  " + c[-1])
    print("\nscales (overrides of the defaults above):")
    for scale, over in study.scales.items():
        print(f"  {scale}: " + ", ".join(f"{k}={v}" for k, v in over.items()))
    return EXIT_OK


def _cmd_run(args) -> int:
    from .report import write_report
    from .runner import plan_run, run_plan

    plan = plan_run(args.study, args.scale, _parse_sets(args.sets), out=args.out,
                    device=args.device, data_dir=args.data_dir, download=args.download,
                    executor=args.executor, workers=args.workers, address=args.address,
                    ray_timeout=args.ray_timeout, threads=args.threads)
    summary, clean = [], True
    for o in run_plan(plan, progress=False if args.no_progress else None):
        name = o.plan.study.name
        if o.run is None:
            print(f"deepscope: {name} failed: {o.error}", file=sys.stderr)
            line = f"FAILED  {name:<26} {o.seconds:7.1f} s  {type(o.error).__name__}: {o.error}"
        else:
            print(f"{name}: stored in {o.run.path}", file=sys.stderr)
            diverged = o.run.meta.get("diverged")  # stored and reported, not a clean run
            line = (f"DIVERGED {name:<25} {o.seconds:7.1f} s  {len(diverged)} run(s): "
                    f"{diverged[0]}" if diverged else
                    f"ok      {name:<26} {o.seconds:7.1f} s  {_verdict(o.plan, o.run)}")
        clean = clean and line.startswith("ok")
        summary.append(line)
    report = write_report(plan.out)
    print("\n".join(summary))
    print(f"report: {report}")
    return EXIT_OK if clean else EXIT_FAILED


def _cmd_probe(args) -> int:
    from .report import write_report
    from .runner import plan_probe, run_plan

    given = {"model": args.model, "data": args.data, "weights": args.weights,
             "probes": args.probes, "params": args.params, "samples": args.samples,
             "batch_size": args.batch_size, "seeds": args.seeds, "mode": args.mode,
             "loss": args.loss}
    settings = {k: v for k, v in given.items() if v is not None}
    for key, value in _parse_sets(args.sets).items():
        if key in settings:
            raise UsageError(f"--set {key}=… repeats an option given already; use one of them")
        settings[key] = value
    plan = plan_probe(settings, out=args.out, device=args.device, data_dir=args.data_dir,
                      download=args.download, executor=args.executor, workers=args.workers,
                      address=args.address, ray_timeout=args.ray_timeout, threads=args.threads)
    (o,) = run_plan(plan, progress=False if args.no_progress else None)
    report = write_report(plan.out)
    if o.run is None:
        print(f"deepscope: probe failed: {o.error}", file=sys.stderr)
        print(f"report: {report}")
        return EXIT_FAILED
    print("\n".join(o.run.meta["findings"]))
    print(f"stored in {o.run.path}\nreport: {report}")
    return EXIT_OK


def _verdict(plan, run) -> str:
    """The study's verdict against the literature, with what it measured, for the summary."""
    from .plot import quiet_numpy

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
    from .runner import writable_root
    from .store import results_root
    from .studies import STUDIES

    root = results_root(args.out)
    # Anything of deepscope's — even a damaged run, which the report then names — is worth a
    # report; a directory with none of it is a mistyped --out, not an empty report.
    if not any(os.path.lexists(root / name) for name in (*STUDIES, "probe", "cache")):
        raise UsageError(f"{root} holds no deepscope results; run a study first (deepscope run "
                         f"all --out {root}), or point --out at a results directory")
    print(write_report(writable_root(args.out)))
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
        if args.command == "probe":
            return _cmd_probe(args)
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
