"""Verdicts of pca-trajectory, params-vs-generalization, random-labels, grad-norm and
error-surface on synthetic results: each can agree, disagree and be inconclusive, and says
what it measured."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.studies import STUDIES, make_config


def verdict_of(name: str, result: dict, **overrides) -> str:
    study = STUDIES[name]
    ex = study.literature(result, make_config(study, "default", overrides))
    assert ex.verdict in ("agrees", "disagrees", "inconclusive", "not testable")
    if ex.verdict != "not testable":
        assert ex.measured, f"{name}: a verdict without the measurement behind it"
    return ex.verdict


# --- pca-trajectory ---------------------------------------------------------------------


def pca_result(shares) -> dict:
    shares = np.asarray(shares, dtype=float)
    own = np.stack([shares * 0.8, shares * 0.2], 1)
    return {"model.own": own, "layer.own": own, "walk.own": np.tile([0.6, 0.17], (20, 1))}


def test_pca_trajectory_tests_each_runs_own_two_component_share():
    assert verdict_of("pca-trajectory", pca_result(np.full(8, 0.9) + 0.01 * np.arange(8))) \
        == "agrees"
    assert verdict_of("pca-trajectory", pca_result(np.full(8, 0.2) + 0.01 * np.arange(8))) \
        == "disagrees"
    straddle = [0.2, 0.3, 0.4, 0.45, 0.55, 0.6, 0.7, 0.8]
    assert verdict_of("pca-trajectory", pca_result(straddle)) == "inconclusive"
    # The level is the config's, not a constant.
    assert verdict_of("pca-trajectory", pca_result(np.full(8, 0.9)), share_level=0.95) \
        == "disagrees"


# --- grad-norm ----------------------------------------------------------------------------


def grad_result(exponents, steps: int = 400, fall: float = 20.0) -> dict:
    """Losses falling ``fall``× geometrically; each seed's gradient norm falls as
    loss**exponent (plus a little noise)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, steps)
    loss = np.stack([fall ** -t * np.exp(0.05 * rng.normal(size=steps)) for _ in exponents])
    g = np.stack([(fall ** -t) ** e * np.exp(0.05 * rng.normal(size=steps)) for e in exponents])
    return {"mnist.step_loss": loss, "mnist.grad_norm": g,
            "function.step_loss": loss, "function.grad_norm": g}


def test_grad_norm_compares_the_fall_exponent_with_a_noiseless_gradients():
    assert verdict_of("grad-norm", grad_result([0.0, 0.02, -0.01, 0.05, 0.0])) == "agrees"
    assert verdict_of("grad-norm", grad_result([1.0, 0.9, 1.1, 0.8, 1.0])) == "disagrees"
    assert verdict_of("grad-norm", grad_result([0.1, 0.3, 0.5, 0.7, 0.9])) == "inconclusive"
    # A loss that did not fall gives no exponent: nothing to test.
    assert verdict_of("grad-norm", grad_result([0.0] * 5, fall=1.2)) == "not testable"


# --- random-labels ------------------------------------------------------------------------


def labels_result(true_epochs, random_epochs, random_test_acc=0.1, cap: int = 150) -> dict:
    """Train accuracy steps from 0.5 to 1 at each seed's epoch (NaN epoch: never)."""
    ep = np.arange(cap + 1)

    def acc(epochs):
        return np.stack([np.where(ep >= (e if np.isfinite(e) else cap + 1), 1.0, 0.5)
                         for e in epochs])

    out = {}
    for lab, epochs in (("true", true_epochs), ("random", random_epochs)):
        a = acc(np.asarray(epochs, dtype=float))
        out |= {f"{lab}.epoch": ep, f"{lab}.train_acc": a,
                f"{lab}.test_acc": np.full_like(a, random_test_acc if lab == "random" else 0.9),
                f"{lab}.train_loss": 1 - a, f"{lab}.test_loss": np.ones_like(a),
                f"{lab}.params": np.asarray(1000)}
    return out


def test_random_labels_slowdown_and_fit_and_chance_each_decide():
    assert verdict_of("random-labels", labels_result([10, 11, 10, 12, 9], [30, 33, 35, 31, 29])) \
        == "agrees"
    # 20× slower: not a small factor.
    assert verdict_of("random-labels", labels_result([5, 5, 6, 5, 5],
                                                     [100, 110, 105, 98, 120])) == "disagrees"
    # Some random-label seeds never fit, and even the cap is > 10× the true-label time.
    assert verdict_of("random-labels", labels_result([5, 5, 6, 5, 5],
                                                     [40, np.nan, 45, np.nan, 50])) \
        == "disagrees"
    # ... but with the cap only 5× the true-label time, they might still have: inconclusive.
    assert verdict_of("random-labels", labels_result([30, 30, 31, 29, 30],
                                                     [60, np.nan, 70, np.nan, 65])) \
        == "inconclusive"
    # Slowdown around 1×: the interval straddles the "slower" bound.
    assert verdict_of("random-labels", labels_result([10, 12, 9, 11, 10], [9, 13, 10, 11, 12])) \
        == "inconclusive"
    # Test accuracy far above chance: the labels were not random after all.
    assert verdict_of("random-labels", labels_result([10, 11, 10, 12, 9], [30, 33, 35, 31, 29],
                                                     random_test_acc=0.5)) == "disagrees"


# --- error-surface ------------------------------------------------------------------------


def surface_result(centres) -> dict:
    """Bowls ``(a − a0)² + (b − b0)²`` on a 31×31 grid, one per (model, plane)."""
    g = np.linspace(-1, 1, 31)
    a, b = np.meshgrid(g, g, indexing="ij")
    loss = np.array([[0.2 + (a - a0) ** 2 + (b - b0) ** 2 for a0, b0 in planes]
                     for planes in centres])
    return {"random.a": g, "random.b": g, "random.loss": loss}


def test_error_surface_counts_the_planes_where_the_model_sits_lowest():
    at_model, off = (0.0, 0.0), (0.5, -0.4)
    assert verdict_of("error-surface", surface_result([[at_model] * 2] * 3)) == "agrees"
    assert verdict_of("error-surface", surface_result([[off] * 2] * 3)) == "disagrees"
    assert verdict_of("error-surface", surface_result([[at_model, off]] * 3)) == "inconclusive"


def test_wilson_interval_brackets_the_share():
    from deepscope.studies.error_surface import convex_share, wilson

    lo, hi = wilson(6, 6)
    assert 0.5 < lo < 1 and hi == 1
    lo, hi = wilson(0, 6)
    assert lo == 0 and 0 < hi < 0.5
    g = np.linspace(-1, 1, 11)
    a, b = np.meshgrid(g, g, indexing="ij")
    assert convex_share(a**2 + b**2) == 1.0
    assert convex_share(a**2 - b**2) == 0.0


# --- params-vs-generalization -------------------------------------------------------------


def pvg_result(noisy_err, clean_err, noisy_fit, clean_fit, seeds: int = 3,
               spread: float = 0.003) -> dict:
    """Test error curves (per width) with a little seed spread; train accuracy 1 from the
    width index ``*_fit`` on, 0.8 before it."""
    rng = np.random.default_rng(1)
    W = len(noisy_err)
    params = np.round(400 * 2.0 ** np.arange(W)).astype(int)
    out = {"params": params, "widths": np.arange(1, W + 1)}
    for cond, err, fit in (("noisy", noisy_err, noisy_fit), ("clean", clean_err, clean_fit)):
        err = np.asarray(err, dtype=float)[:, None] + spread * rng.normal(size=(W, seeds))
        acc = np.where(np.arange(W)[:, None] >= fit, 1.0, 0.8) * np.ones((W, seeds))
        out |= {f"{cond}.test_acc": 1 - err, f"{cond}.train_acc": acc,
                f"{cond}.test_loss": 3 * err, f"{cond}.train_loss": 1 - acc,
                f"{cond}.reached_epoch": np.where(acc >= 1, 100, -1),
                f"{cond}.diverged_epoch": np.full((W, seeds), -1)}
    return out


CLEAN = [0.5, 0.3, 0.2, 0.15, 0.12, 0.11, 0.10, 0.09, 0.085, 0.08]


def test_params_vs_generalization_finds_the_peak_at_the_threshold():
    peaked = [0.6, 0.4, 0.3, 0.33, 0.38, 0.34, 0.30, 0.27, 0.26, 0.25]  # peak at index 4
    assert verdict_of("params-vs-generalization", pvg_result(peaked, CLEAN, 4, 3)) == "agrees"
    # The same peak, but the threshold 16× (4 widths) larger: not "near".
    assert verdict_of("params-vs-generalization", pvg_result(peaked, CLEAN, 8, 3)) \
        == "disagrees"
    # Without noise a larger peak: noise did not amplify it.
    taller = [0.6, 0.4, 0.3, 0.36, 0.45, 0.36, 0.30, 0.27, 0.26, 0.25]
    assert verdict_of("params-vs-generalization", pvg_result(peaked, taller, 4, 4)) \
        == "disagrees"
    # ... the same peak: no evidence either way that noise amplifies it.
    assert verdict_of("params-vs-generalization", pvg_result(peaked, peaked, 4, 4)) \
        == "inconclusive"
    # A monotone curve: the "peak" is the smallest model, with no prominence.
    assert verdict_of("params-vs-generalization", pvg_result(CLEAN, CLEAN, 4, 3)) \
        == "disagrees"
    # Flat beyond the first descent: bumps of seed noise are below the test set's resolution.
    flat = [0.6, 0.4, 0.3, 0.3, 0.302, 0.3, 0.298, 0.3, 0.299, 0.3]
    assert verdict_of("params-vs-generalization",
                      pvg_result(flat, CLEAN, 4, 3, spread=0.01)) == "disagrees"
    # A 3-point bump with seeds 1 point apart: its interval straddles the resolution.
    bump = [0.6, 0.4, 0.3, 0.315, 0.33, 0.315, 0.3, 0.29, 0.28, 0.28]
    assert verdict_of("params-vs-generalization",
                      pvg_result(bump, CLEAN, 4, 3, spread=0.01)) == "inconclusive"


@pytest.mark.parametrize("name", ["pca-trajectory", "params-vs-generalization",
                                  "random-labels", "grad-norm", "error-surface"])
def test_defaults_use_at_least_three_seeds(name):
    cfg = make_config(STUDIES[name], "default")
    n = {"pca-trajectory": "runs", "error-surface": "models"}.get(name, "seeds")
    assert getattr(cfg, n) >= 3


# --- fit-function and fit-mnist: each depth at its chosen learning rate --------------------


def fit_function_result(final_by_depth_and_rate, seeds: int = 5) -> dict:
    """A sinc result whose final training MSE of depth i at rate l is ``final[i][l]`` times
    a seed factor (spread ×2 either way); the curve falls linearly in log from 1."""
    final = np.asarray(final_by_depth_and_rate, dtype=float)  # (D, L)
    spread = np.geomspace(0.5, 2.0, seeds)
    last = final[..., None] * spread  # (D, L, S)
    curve = np.exp(np.linspace(0, 1, 11) * np.log(last)[..., None])  # (D, L, S, 11)
    return {"depths": np.array([1, 2, 4]), "lrs": np.array([1e-3, 3e-3, 1e-2]),
            "sinc.train_loss": curve, "sinc.epoch": np.arange(11) * 10,
            "sinc.lr_index": np.argmin(final, 1)}


def test_fit_function_chooses_each_depths_rate_and_compares_the_best_deep_net():
    from deepscope.studies.base import chosen, chosen_lrs, median_choice

    grid = [[1e-2, 1e-3, 2e-3], [5e-3, 5e-3, 1e-4], [1e-2, 1e-2, 1e-2]]
    r = fit_function_result(grid)
    # the stored choice is the one median_choice makes on the final losses
    assert median_choice(r["sinc.train_loss"][..., -1]).tolist() == [1, 2, 0]
    assert chosen_lrs(r, "sinc").tolist() == [3e-3, 1e-2, 1e-3]
    np.testing.assert_allclose(np.median(chosen(r, "sinc", "train_loss")[..., -1], 1),
                               [1e-3, 1e-4, 1e-2])
    assert verdict_of("fit-function", r) == "agrees"  # depth 2 at 1e-4 vs depth 1 at 1e-3
    assert verdict_of("fit-function", fit_function_result(
        [[1e-3, 1e-4, 1e-3], [1e-2, 1e-2, 1e-2], [1e-2, 1e-2, 1e-2]])) == "disagrees"
    assert verdict_of("fit-function", fit_function_result(
        [[1e-3, 1e-3, 1e-3], [1.2e-3, 1.1e-3, 1.1e-3], [1e-2, 1e-2, 1e-2]])) == "inconclusive"


def fit_mnist_result(acc_by_depth, seeds: int = 3, spread: float = 0.005) -> dict:
    acc = np.asarray(acc_by_depth, dtype=float)[:, None, None, None] + np.linspace(
        -spread, spread, seeds)[None, None, :, None]
    curve = np.concatenate([np.full(acc.shape, 0.1), acc], -1)  # (D, L=1, S, T=2)
    return {"depths": np.array([1, 2, 4]), "lrs": np.array([1e-3]),
            "datasets": np.array(["mnist"]), "mnist.test_acc": curve,
            "mnist.lr_index": np.zeros(3, dtype=int)}


def test_fit_mnist_verdict_on_the_best_deep_net_minus_depth_1():
    assert verdict_of("fit-mnist", fit_mnist_result([0.95, 0.97, 0.96])) == "agrees"
    assert verdict_of("fit-mnist", fit_mnist_result([0.97, 0.95, 0.94])) == "disagrees"
    assert verdict_of("fit-mnist", fit_mnist_result([0.96, 0.965, 0.95])) == "inconclusive"
