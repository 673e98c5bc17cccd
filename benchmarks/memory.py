"""Peak memory of a Hessian eigenvalue on streamed data: bounded by one batch (issue 14).

Run:  python benchmarks/memory.py [--batches 4] [--batch-size 512] [--steps 6] [--keep]

``hessian_eigenvalues(k=1)`` with a fixed number of Lanczos steps (``tol=0``,
``max_steps=--steps``) of a 784-256-256-10 tanh MLP (269 322 parameters, float32, one
thread) on 1×, 4× and 16× the data: ``--batches`` batches of ``--batch-size`` random
images for 1×, streamed by a re-iterable that draws batch i from seed i on every pass, so
the data itself never takes more memory than one batch and only the probe's memory is seen.

Each size runs in a fresh subprocess. Peak memory is the growth of the resident set: the
process's high-water mark (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after the probe,
minus its resident set just before it (after the imports, the model and one forward pass).
``tracemalloc`` cannot see it: torch's CPU allocator is not Python's.

``--keep`` adds the earlier double-backward product for comparison, which built every
batch's gradient graph once and kept all of them alive for all products (faster per
product, memory growing with the data).

Target: the 4× and 16× peaks within 10 % of the 1× peak; time linear in the data.

Measured on the 2-core shared machine, defaults (4 batches of 512 at 1×, 6 Lanczos products,
each a pass over the data, after the one scan pass that reads sizes and fingerprints), two
runs one after the other. Run 1, ``uptime`` load 2.04 before, 3.02 after:

    data   batches     peak MiB   vs 1×     time s   ms per batch·product   mode
     1×          4         88.2    1.00       1.70          70.6          streamed
     4×         16         87.6    0.99       5.04          52.5          streamed
    16×         64         89.3    1.01      23.35          60.8          streamed
     1×          4        104.7    1.00       1.85          77.1          graphs kept
     4×         16        233.5    2.23       5.19          54.0          graphs kept
    16×         64        806.9    7.71      19.45          50.6          graphs kept

Run 2, load 3.02 before, 3.33 after:

    data   batches     peak MiB   vs 1×     time s   ms per batch·product   mode
     1×          4         84.3    1.00       2.64         110.1          streamed
     4×         16         86.7    1.03       8.53          88.8          streamed
    16×         64         91.4    1.08      25.90          67.5          streamed
     1×          4        106.9    1.00       1.69          70.2          graphs kept
     4×         16        233.6    2.19       4.69          48.8          graphs kept
    16×         64        811.0    7.58      16.03          41.7          graphs kept

Streamed, the 4× and 16× peaks are within 1–8 % of the 1× peak (the ~85 MiB are the
Lanczos basis, θ-sized vectors and one batch's graph); the time grows with the data (16×
the data: 13.7× and 9.8× the time; the 1× run carries fixed costs, and the load moved
between sizes). Keeping every batch's graph grows the peak with the data (7.6–7.7× at
16×) and saved 0–40 % of the time per product under this load, which is why one batch in
memory still keeps its graph.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import deepscope as ds
from deepscope.probes import hessian_eigenvalues, linalg
from deepscope.probes.batches import start

SIZES = (1, 4, 16)


class Stream:
    """``n`` batches of random 28×28 images and labels; batch i drawn from seed i on every
    pass, so the data is the same each pass and never held beyond one batch."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size

    def __iter__(self):
        for i in range(self.n):
            g = torch.Generator().manual_seed(i)
            yield (torch.rand(self.size, 784, generator=g),
                   torch.randint(0, 10, (self.size,), generator=g))


def rss_mib() -> float:
    """The resident set now, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def kept_graphs_top(model, data, steps: int) -> float:
    """The earlier product: every batch's gradient graph built once and kept."""
    f, stream, theta = start(model, F.cross_entropy, data)
    leaf = theta.detach().requires_grad_(True)
    graphs = [(torch.autograd.grad(f(leaf, b), leaf, create_graph=True)[0], w)
              for b, w in stream]

    def product(v):
        return sum(w * torch.autograd.grad(g, leaf, v, retain_graph=True)[0]
                   for g, w in graphs).detach()

    res = linalg.eigsh(product, theta.numel(), k=1, tol=0.0, max_steps=steps,
                       dtype=theta.dtype)
    return float(res.values[0])


def child(batches: int, batch_size: int, steps: int, mode: str) -> dict:
    """One measurement, in this (fresh) process."""
    torch.set_num_threads(1)
    model = ds.mlp(784, 10, depth=3, width=256, activation="tanh", seed=0)
    data = Stream(batches, batch_size)
    with torch.no_grad():
        model(next(iter(data))[0])
    base = rss_mib()
    t0 = time.perf_counter()
    if mode == "streamed":
        top = float(hessian_eigenvalues(model, F.cross_entropy, data, k=1, tol=0.0,
                                        max_steps=steps).values[0])
    else:
        top = kept_graphs_top(model, data, steps)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"peak": peak - base, "seconds": seconds, "top": top}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=4, help="batches at 1× (default 4)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6, help="Lanczos products (default 6)")
    ap.add_argument("--keep", action="store_true", help="also the kept-graphs product")
    ap.add_argument("--child", nargs=2, metavar=("BATCHES", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.batch_size, args.steps, args.child[1])))
        return
    print(f"load {os.getloadavg()[0]:.2f}; 784-256-256-10 MLP, {args.steps} Lanczos products")
    print("data   batches     peak MiB   vs 1×     time s   ms per batch·product   mode")
    for mode in ("streamed", "graphs kept") if args.keep else ("streamed",):
        first = None
        for size in SIZES:
            n = args.batches * size
            cmd = [sys.executable, __file__, "--batch-size", str(args.batch_size), "--steps",
                   str(args.steps), "--child", str(n), mode.split()[0]]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                          text=True).stdout)
            first = first or r["peak"]
            print(f"{size:>3}×  {n:>8}   {r['peak']:10.1f}   {r['peak'] / first:5.2f}   "
                  f"{r['seconds']:8.2f}    {1e3 * r['seconds'] / (n * args.steps):10.1f}"
                  f"          {mode}   (top eigenvalue {r['top']:.5g})")
    print(f"load {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
