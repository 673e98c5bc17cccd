"""The batch-size studies (sensitivity, sharpness, interpolation): the shared sweep is trained
once and found by every study through a cache scope; models that miss the training criterion
are left out of the verdicts and drawn as such; each verdict agrees, disagrees or is
inconclusive as the synthetic data say."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope import STUDIES
from deepscope.context import Context
from deepscope.plot import quiet_numpy, to_png
from deepscope.runner import run_study
from deepscope.studies import common, make_config
from deepscope.studies import interpolation as interp
from deepscope.studies import sensitivity as sens
from deepscope.studies import sharpness as sharp

CALLS: list[int] = []


def _piece(item: int) -> dict[str, np.ndarray]:
    CALLS.append(item)
    return {"value": np.asarray(10 * item)}


# --- the cache scope ---------------------------------------------------------------------------


def test_equal_scopes_share_pieces_across_studies_and_unequal_scopes_do_not(tmp_path):
    CALLS.clear()
    a = Context(study="sensitivity", config={"eps": 1}, cache_dir=tmp_path, progress=False)
    b = Context(study="sharpness", config={"eps": 2}, cache_dir=tmp_path, progress=False)
    scope = (common.SWEEP, {"lr": 1e-3, "seeds": 3})
    assert [int(p["value"]) for p in a.map(_piece, [1, 2], scope=scope)] == [10, 20]
    assert CALLS == [1, 2]
    # Another study, another config, the same scope: every piece comes from the cache.
    assert [int(p["value"]) for p in b.map(_piece, [1, 2], scope=scope)] == [10, 20]
    assert CALLS == [1, 2] and b.pieces_cached == 2
    # An unequal scope is other work: computed again.
    b.map(_piece, [1, 2], scope=(common.SWEEP, {"lr": 1e-2, "seeds": 3}))
    assert CALLS == [1, 2, 1, 2]
    # Without a scope the key is (study, config): two studies never share.
    a.map(_piece, [1])
    b.map(_piece, [1])
    assert CALLS == [1, 2, 1, 2, 1, 1]


@pytest.mark.parametrize("scale", ["quick", "default", "full"])
def test_the_three_studies_train_the_same_sweep_at_every_scale(scale):
    cfgs = {n: make_config(STUDIES[n], scale) for n in ("sensitivity", "sharpness",
                                                        "interpolation")}
    settings = {n: common.sweep_settings(c) for n, c in cfgs.items()}
    assert settings["sensitivity"] == settings["sharpness"] == settings["interpolation"]
    sizes = set(cfgs["sensitivity"].batch_sizes)
    i = cfgs["interpolation"]
    assert {i.small_batch, i.large_batch, i.lr_pair_batch} <= sizes  # the pairs reuse them


def test_run_all_trains_the_sweep_once(tmp_path, monkeypatch):
    trained = []
    real = common.train

    def counting(models, *args, **kwargs):
        trained.append(kwargs.get("batch_size"))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(common, "train", counting)
    run_study("sensitivity", scale="quick", out=tmp_path, progress=False)
    n = len(trained)
    assert n == len(make_config(STUDIES["sensitivity"], "quick").batch_sizes)
    run_study("sharpness", scale="quick", out=tmp_path, progress=False)
    assert len(trained) == n  # every model found in the cache
    run_study("interpolation", scale="quick", out=tmp_path, progress=False)
    assert len(trained) == n + 1  # only the large-rate model of the lr pair is new


def test_schedule_caps_steps_and_epochs_and_checks_every_16_steps():
    s = {"subset": 4096, "max_steps": 4096, "max_epochs": 320, "check_steps": 16}
    assert common.schedule(s, 16) == (256, 16, 1)
    assert common.schedule(s, 1024) == (4, 320, 4)
    assert common.schedule(s, 4096) == (1, 320, 16)
    assert common.schedule(s, 10_000) == (1, 320, 16)  # larger than the set: full batch


# --- synthetic results -------------------------------------------------------------------------

B = np.array([16, 64, 256, 1024, 4096])
S = 3


def _sweep(rng, missed=()) -> dict[str, np.ndarray]:
    """A sweep result: every model converged except the (batch index, seed) in ``missed``."""
    reached = np.full((len(B), S), 200)
    for i, s in missed:
        reached[i, s] = -1
    train = np.full((len(B), S), 0.045)
    return {"batch_sizes": B, "train_loss": train, "test_loss": train + 0.2,
            "train_acc": np.full((len(B), S), 0.99), "test_acc": np.full((len(B), S), 0.93),
            "reached_step": reached, "diverged": np.zeros((len(B), S), bool),
            "curve_step": np.tile(np.arange(5.0) * 50, (len(B), 1)),
            "curve_train_loss": np.tile(np.linspace(2.3, 0.04, 5), (len(B), S, 1)),
            "params": np.asarray(1000)}


def _sensitivity(kind: str, missed=()) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    r = _sweep(rng, missed)
    s = 0.3 + 0.05 * np.arange(len(B) * S).reshape(len(B), S) + rng.uniform(0, 0.01, (len(B), S))
    gap = {"agrees": 0.1 + s, "disagrees": 1.0 - s,
           "inconclusive": 0.2 + rng.permutation(s.ravel()).reshape(s.shape)}[kind]
    if kind == "inconclusive":  # a weak, noisy relation: the interval must straddle 0
        gap = 0.2 + rng.normal(0, 1, s.shape)
    r["test_loss"] = r["train_loss"] + gap
    return r | {"sens_test": s, "sens_train": 0.8 * s}


@pytest.mark.parametrize("kind", ["agrees", "disagrees", "inconclusive"])
def test_sensitivity_verdict(kind):
    cfg = make_config(STUDIES["sensitivity"], "default")
    r = _sensitivity(kind)
    assert sens.literature(r, cfg).verdict == kind


def test_sharpness_verdict_follows_the_top_eigenvalue():
    cfg = make_config(STUDIES["sharpness"], "default")
    for kind, eig in (("agrees", lambda b, n: np.log(b) + n),
                      ("disagrees", lambda b, n: -np.log(b) + n),
                      ("inconclusive", lambda b, n: 5 * n)):
        rng = np.random.default_rng(1)
        r = _sweep(rng)
        noise = rng.normal(0, 0.3, (len(B), S))
        r["top_eig"] = 10 + eig(B[:, None].astype(float), noise)
        r["trace"] = 10 * r["top_eig"]
        r["sharpness"] = np.repeat(r["top_eig"][:, :, None], len(cfg.eps), 2)
        r["probe_loss"] = r["train_loss"]
        r["first_order"] = 0.1 * r["sharpness"]
        assert sharp.literature(r, cfg).verdict == kind, kind
        assert all(isinstance(line, str) for line in sharp.findings(r, cfg))


def _interpolation(ratios, missed=()) -> dict[str, np.ndarray]:
    cfg = make_config(STUDIES["interpolation"], "default")
    n = len(ratios)
    a = np.linspace(-1, 2, cfg.alphas)
    r = {"alphas": a, "curve_t": np.linspace(-1, 1, cfg.curve_points), "params": np.asarray(9)}
    for name in ("batch", "lr"):
        line = 0.04 + 0.5 * (a - 0.5) ** 2
        for k in ("train_loss", "test_loss"):
            r[f"{name}.{k}"] = np.tile(line, (n, 1))
        for k in ("train_acc", "test_acc"):
            r[f"{name}.{k}"] = np.full((n, cfg.alphas), 0.95)
        curv = np.ones((n, 2, cfg.directions))
        curv[:, 1] *= np.asarray(ratios, float)[:, None]
        r[f"{name}.curvature"] = curv
        r[f"{name}.curve"] = np.tile(r["curve_t"] ** 2, (n, 2, 1))
        reached = np.full((n, 2), 100)
        for s in missed:
            reached[s, 1] = -1
        r[f"{name}.reached_step"] = reached
        r[f"{name}.diverged"] = np.zeros((n, 2), bool)
        r[f"{name}.end_train_loss"] = np.full((n, 2), 0.045)
    return r


@pytest.mark.parametrize("ratios, kind", [
    ((1.9, 2.1, 1.7), "agrees"),
    ((0.5, 0.6, 0.55), "disagrees"),
    ((1.5, 0.6, 1.1), "inconclusive"),
    ((1.5, 1.6), "not testable"),
])
def test_interpolation_verdict(ratios, kind):
    cfg = make_config(STUDIES["interpolation"], "default")
    assert interp.literature(_interpolation(ratios), cfg).verdict == kind


# --- the criterion -------------------------------------------------------------------------------


def _cross_count(figs) -> int:
    """Points drawn with the 'not converged' label, over every axis of every figure."""
    n = 0
    for fig in figs.values():
        for ax in fig.axes:
            for c in ax.collections:
                if c.get_label().startswith("not converged"):
                    n += len(c.get_offsets())
    return n


def test_a_model_that_misses_the_criterion_is_left_out_and_drawn_as_such():
    cfg = make_config(STUDIES["sensitivity"], "default")
    r = _sensitivity("agrees", missed=[(4, 0), (4, 1), (4, 2)])
    # The unconverged (batch 4096) models would turn the relation round: they are excluded.
    r["test_loss"][4] = r["train_loss"][4] - 1.0
    ex = sens.literature(r, cfg)
    assert ex.verdict == "agrees" and "n = 12" in ex.measured
    lines = sens.findings(r, cfg)
    assert any("batch 4096 seed 2" in line and "left out" in line for line in lines)
    with quiet_numpy():
        figs = sens.plot(r, cfg)
        assert _cross_count(figs) >= 3 * 3  # loss, accuracy and the gap scatter
        for fig in figs.values():
            assert to_png(fig).startswith(b"\x89PNG")
    r["reached_step"][4] = 200  # had they counted, the verdict would not be "agrees"
    assert sens.literature(r, cfg).verdict == "inconclusive"


def test_unconverged_models_are_left_out_of_the_sharpness_and_interpolation_verdicts():
    cfg = make_config(STUDIES["sharpness"], "default")
    rng = np.random.default_rng(2)
    r = _sweep(rng, missed=[(0, 0), (0, 1), (0, 2)])
    r["top_eig"] = np.log(B[:, None]) + rng.normal(0, 0.1, (len(B), S))
    r["top_eig"][0] = 100.0  # batch 16 missed the criterion: it would say "disagrees"
    r["trace"], r["probe_loss"] = r["top_eig"], r["train_loss"]
    r["sharpness"] = np.repeat(r["top_eig"][:, :, None], len(cfg.eps), 2)
    r["first_order"] = 0.1 * r["sharpness"]
    ex = sharp.literature(r, cfg)
    assert ex.verdict == "agrees" and "n = 12" in ex.measured
    with quiet_numpy():
        assert _cross_count(sharp.plot(r, cfg)) >= 3
    icfg = make_config(STUDIES["interpolation"], "default")
    ri = _interpolation((1.9, 2.1, 1.7, 0.1), missed=[3])
    assert interp.literature(ri, icfg).verdict == "agrees"
    assert "n = 3" in interp.literature(ri, icfg).measured
    with quiet_numpy():
        assert _cross_count(interp.plot(ri, icfg)) >= 1
