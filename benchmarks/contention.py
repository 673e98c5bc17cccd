"""A busy machine: how much slower is deepscope when other processes want the CPU too?

Run:  python benchmarks/contention.py [--studies grad-norm min-ratio fit-function]
                                      [--burners N] [--rounds R] [-- EXTRA RUN ARGS]

For each study, ``deepscope run STUDY`` at its default scale and with its default settings
(no ``--threads``: what a user gets) runs into a fresh results directory (no cache), once on
the machine as it is and once beside ``N`` CPU-burning processes (default: one per core, a
``while True: pass`` loop each: an ordinary shared server, or a laptop compiling something).
Rounds alternate quiet and busy; the table gives the median wall time of each and their
ratio. Target (issue 13): ≤ 2.5× with as many burners as cores. Arguments after ``--`` go to
every ``deepscope run`` (e.g. ``-- --threads 2`` to see the old default).

A process beside N burners on C cores gets about C / (N + 1) of the machine if it can use
all cores, so 2.0× on 2 cores with 2 burners is what fair sharing gives; much more means the
process fights for the CPU in ways that waste it (threads spinning while they wait for each
other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BURN = "while True: pass"


def timed_run(study: str, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory(prefix="deepscope-contention-") as out:
        cmd = [sys.executable, "-m", "deepscope.cli", "run", study, "--no-progress",
               "--out", out, *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", nargs="+", default=["grad-norm", "min-ratio", "fit-function"])
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("extra", nargs=argparse.REMAINDER,
                    help="after --: arguments for every deepscope run")
    args = ap.parse_args()
    extra = [a for a in args.extra if a != "--"]
    print(f"{os.cpu_count()} cores, {args.burners} burners, load before: "
          f"{os.getloadavg()[0]:.2f}; deepscope run {' '.join(extra) or '(default settings)'}")
    print(f"{'study':<26}{'quiet (s)':>11}{'busy (s)':>11}{'busy/quiet':>12}")
    worst = 0.0
    for study in args.studies:
        quiet, busy = [], []
        for _ in range(args.rounds):
            quiet.append(timed_run(study, extra))
            burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(args.burners)]
            try:
                time.sleep(1)  # let the burners get going
                busy.append(timed_run(study, extra))
            finally:
                for b in burners:
                    b.kill()
                    b.wait()
        q, b = statistics.median(quiet), statistics.median(busy)
        worst = max(worst, b / q)
        print(f"{study:<26}{q:>11.1f}{b:>11.1f}{b / q:>11.2f}×")
    print(f"worst ratio {worst:.2f}× (target ≤ 2.5×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
