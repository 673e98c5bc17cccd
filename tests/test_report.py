"""The report is rebuilt from the store and survives a stored result it cannot re-plot."""

from __future__ import annotations

import numpy as np

from deepscope.report import write_report
from deepscope.runner import run_study
from deepscope.store import load_arrays, save_arrays


def test_report_inlines_figures_and_survives_a_stale_result(tmp_path):
    run = run_study("fit-function", scale="quick", out=tmp_path, progress=False,
                    overrides={"epochs": 5, "depths": (1, 2), "functions": ("square",)})
    page = write_report(tmp_path).read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "fit-mnist" in page and "not run</span>" in page
    assert "What the literature expects" in page
    # A result written by an older version (a key missing) is reported, not a crash.
    arrays = load_arrays(run.path / "result.npz")
    save_arrays(run.path / "result.npz", {k: v for k, v in arrays.items() if k != "depths"})
    page = write_report(tmp_path).read_text()
    assert "cannot be re-plotted by this version" in page
    assert np.all(arrays["depths"] == [1, 2])


def test_a_failed_study_is_listed_with_its_reason(tmp_path):
    from deepscope.store import record_failure

    record_failure(tmp_path, "min-ratio", RuntimeError("out of <memory>"), "default")
    page = write_report(tmp_path).read_text()
    assert 'class="status fail">failed' in page
    assert "RuntimeError: out of &lt;memory&gt;" in page
