"""The whole suite's time budget: seconds per study, default executor beside one process.

Run:  python benchmarks/suite.py [--scales quick default]

Runs ``deepscope run all --scale S`` as a fresh command into an empty results directory (no
cache), once with the default executor (``auto``: one 1-thread worker per core on a
multi-core CPU) and once with ``--executor local`` (this process, all cores' threads), and
prints a table of each study's seconds (from its ``meta.json``) and the commands' wall times
(start-up, every study, figures and the report). Targets on 2 cores: quick suite ≤ 2 min,
default suite ≤ 15 min. It also compares the two runs' ``result.npz`` files: byte-identical
where the thread counts match (``tests/test_executors.py`` checks that), otherwise equal up to
floating-point summation order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepscope.studies import STUDIES

TARGET_S = {"quick": 120, "default": 900, "full": None}


def run_suite(scale: str, out: Path, extra: list[str]) -> tuple[float, dict[str, float], int]:
    """Wall seconds of ``deepscope run all``, seconds per study, exit code."""
    cmd = [sys.executable, "-m", "deepscope.cli", "run", "all", "--scale", scale,
           "--out", str(out), "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    per = {}
    for meta in out.glob("*/*/meta.json"):
        m = json.loads(meta.read_text())
        per[m["study"]] = m["seconds"]
    return wall, per, proc.returncode


def compare_results(a: Path, b: Path) -> str:
    """How many ``result.npz`` are byte-identical, and the largest relative difference."""
    files = sorted(p.relative_to(a) for p in a.glob("*/*/result.npz"))
    same = sum((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    worst = 0.0
    for f in files:
        with np.load(a / f) as za, np.load(b / f) as zb:
            for k in za.files:
                x, y = za[k], zb[k]
                if x.dtype.kind == "f" and x.shape == y.shape:
                    with np.errstate(all="ignore"):
                        d = np.abs(x - y) / np.maximum(np.abs(x), 1e-12)
                    worst = max(worst, float(np.nanmax(d, initial=0.0)))
    return f"{same}/{len(files)} byte-identical, largest relative difference {worst:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["quick", "default"])
    ap.add_argument("--keep", default=None, help="keep the results under this directory")
    args = ap.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ds-suite-"))
    print(f"{os.cpu_count()} CPUs; results under {root}\n")
    for scale in args.scales:
        setups = {"default": [], "local": ["--executor", "local"]}
        runs = {}
        for label, extra in setups.items():
            out = root / scale / label.split()[0]
            shutil.rmtree(out, ignore_errors=True)
            runs[label] = (*run_suite(scale, out, extra), out)
        studies = [s for s in STUDIES if any(s in r[1] for r in runs.values())]
        print(f"scale {scale}: seconds per study (from meta.json)")
        head = f"  {'study':<26}" + "".join(f"{label:>14}" for label in runs)
        print(head + "\n  " + "-" * (len(head) - 2))
        for s in studies:
            print(f"  {s:<26}" + "".join(f"{r[1].get(s, float('nan')):14.1f}"
                                        for r in runs.values()))
        print(f"  {'sum of studies':<26}" + "".join(f"{sum(r[1].values()):14.1f}"
                                                  for r in runs.values()))
        print(f"  {'wall (whole command)':<26}" + "".join(f"{r[0]:14.1f}" for r in runs.values()))
        target = TARGET_S.get(scale)
        if target:
            verdict = "; ".join(f"{label} {'meets' if r[0] <= target else 'MISSES'}"
                                for label, r in runs.items())
            print(f"  target ≤ {target} s wall: {verdict}")
        outs = [r[3] for r in runs.values()]
        print(f"  results, default vs local: {compare_results(*outs)} (identical bytes need "
              f"equal thread counts: local used {os.cpu_count()} threads, each worker one)")
        codes = {label: r[2] for label, r in runs.items()}
        if any(codes.values()):
            print(f"  exit codes: {codes} (1 = a study failed; see its failed.json)")
        print()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
