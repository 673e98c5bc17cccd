"""Every registered study runs at quick scale, and its stored result reloads identically."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepscope import STUDIES
from deepscope.context import Context
from deepscope.runner import run_study
from deepscope.studies import make_config


@pytest.mark.parametrize("name", list(STUDIES))
def test_quick_run_is_stored_and_reloads_identically(name, tmp_path):
    stored = run_study(name, scale="quick", out=tmp_path, progress=False)
    study = STUDIES[name]
    cfg = make_config(study, "quick")
    assert stored.config == dataclasses.asdict(cfg) | {
        k: list(v) for k, v in dataclasses.asdict(cfg).items() if isinstance(v, tuple)}
    # The same computation again, uncached, in memory: identical to what was stored.
    fresh = study.run(cfg, Context(study=name, config=stored.config, progress=False))
    assert set(fresh) == set(stored.result)
    for key, value in fresh.items():
        np.testing.assert_array_equal(stored.result[key], value, err_msg=key)
    assert stored.meta["findings"] == study.findings(stored.result, cfg)
    assert stored.figures, "no figures written"
    for line in stored.meta["findings"]:
        assert line and "nan" not in line.lower()


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_config_field_is_documented_and_every_scale_is_valid(name):
    study = STUDIES[name]
    for f in dataclasses.fields(study.Config):
        assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"
    for scale in ("quick", "default", "full"):
        make_config(study, scale)


def test_same_config_and_seed_give_byte_identical_results(tmp_path):
    """Determinism: two uncached runs of one config write the same result.npz, byte for byte."""
    overrides = {"epochs": 20, "depths": (1, 2), "functions": ("sinc",)}
    a = run_study("fit-function", scale="quick", out=tmp_path / "a", overrides=overrides,
                  progress=False)
    b = run_study("fit-function", scale="quick", out=tmp_path / "b", overrides=overrides,
                  progress=False)
    assert (a.path / "result.npz").read_bytes() == (b.path / "result.npz").read_bytes()


def test_fit_mnist_uses_mnist1d_when_fashion_mnist_is_absent(tmp_path, monkeypatch):
    """A machine without Fashion-MNIST still runs both data sets: MNIST-1D takes its place,
    the stored ``datasets`` lists only what was used, and the findings say so."""
    from deepscope.data import mnist

    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIR", tmp_path / "no-fashion")
    monkeypatch.delenv("DEEPSCOPE_DATA", raising=False)
    monkeypatch.setenv("DEEPSCOPE_CACHE", str(tmp_path / "cache"))
    tiny = {"datasets": ("mnist", "fashion-mnist"), "depths": (1, 2), "params": 3000,
            "subset": 100, "test_subset": 50, "epochs": 1, "seeds": 1, "lrs": (1e-3,)}
    stored = run_study("fit-mnist", scale="quick", out=tmp_path / "out", overrides=tiny,
                       progress=False)
    assert list(stored.result["datasets"]) == ["mnist", "mnist1d"]
    assert stored.result["mnist1d.test_acc"].shape == (2, 1, 1, 2)  # (D, L, S, T)
    assert set(stored.meta["data"]) == {"mnist", "fashion-mnist", "mnist1d"}
    assert stored.meta["data"]["fashion-mnist"] == "absent"
    assert any("MNIST-1D" in line and "in its place" in line
               for line in stored.meta["findings"])
