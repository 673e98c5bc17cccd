"""deepscope: the empirical science of deep learning, as probes and studies.

The library face::

    import deepscope as ds
    data = ds.load("mnist", subset=10_000, seed=0)
    models = [ds.mlp(784, 10, depth=2, params=50_000, seed=s) for s in range(3)]
    trace = ds.train(models, data, optimizer="adam", lr=1e-3, epochs=5, batch_size=128)
    result = ds.run("fit-function", scale="quick")

See DESIGN.md for the architecture and STUDIES.md for what each study measures.
"""

from __future__ import annotations

import os

# Before torch loads its OpenMP runtime: threads waiting for work sleep instead of spinning.
# A spinning thread pool fights every other process for the CPU: beside other work (load 7
# on 2 cores) grad-norm took 228 s with two spinning threads, 31 s with two passive ones and
# 29 s with one (`deepscope run grad-norm`, measured). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import data, params
from .data import Data, load
from .models import cnn, count_params, mlp, resnet18
from .train import Trace, train
from .version import __version__


def run(study: str, scale: str = "default", out: str | None = None, *, device: str = "cpu",
        executor: str = "auto", workers: int | None = None, address: str | None = None,
        **overrides):
    """Run ``study`` at ``scale`` with config ``overrides``; store it and return the stored run.

    Same as ``deepscope run STUDY --scale SCALE --set k=v ... --device D --executor E
    --workers N --address A``; the result lands in ``out`` (default ``./deepscope-results``)
    and is returned as a :class:`deepscope.store.StoredRun`.
    """
    from .runner import run_study

    return run_study(study, scale=scale, out=out, overrides=overrides, device=device,
                     executor=executor, workers=workers, address=address)


def __getattr__(name: str):
    # The study registry imports matplotlib; load it only when asked for.
    if name == "STUDIES":
        from .studies import STUDIES

        return STUDIES
    raise AttributeError(f"module 'deepscope' has no attribute {name!r}")


__all__ = ["STUDIES", "Data", "Trace", "__version__", "cnn", "count_params", "data", "load",
           "mlp", "params", "resnet18", "run", "train"]
