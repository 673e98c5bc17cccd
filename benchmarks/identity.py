"""Does a change alter any number? The quick suite's results, fingerprinted and compared.

Run:  python benchmarks/identity.py --save before.json      (on the commit before a change)
      python benchmarks/identity.py --against before.json   (after it)

Runs ``deepscope run all --scale quick --threads 1`` into a fresh directory (no cache) and
records the SHA-256 of every study's ``result.npz``; with ``--against`` it prints, per study,
whether the bytes are identical to the saved run and exits 1 if any differ. A refactor that
"changes no number" must pass this at equal thread counts (the results are deterministic for
a given machine, torch build and thread count; they are not across machines).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def fingerprints(scale: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="deepscope-identity-") as tmp:
        cmd = [sys.executable, "-m", "deepscope.cli", "run", "all", "--scale", scale,
               "--threads", "1", "--no-progress", "--out", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        return {p.parent.parent.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(Path(tmp).glob("*/*/result.npz"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="quick")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path, help="write the fingerprints to this JSON file")
    group.add_argument("--against", type=Path, help="compare with fingerprints saved before")
    args = ap.parse_args()
    now = fingerprints(args.scale)
    if args.save:
        args.save.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
        print(f"{len(now)} studies fingerprinted into {args.save}")
        return 0
    before = json.loads(args.against.read_text())
    differ = 0
    for study in sorted(set(before) | set(now)):
        same = before.get(study) == now.get(study)
        differ += not same
        print(f"{'identical' if same else 'DIFFERENT':<10} {study}")
    print(f"{len(now) - differ} of {len(set(before) | set(now))} result.npz byte-identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
