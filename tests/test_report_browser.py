"""The report of every study, opened in a real headless browser.

Builds ``quick`` runs of every study, writes the report, and loads it in Debian's Chromium
through Selenium and chromedriver (``.ci/run`` installs both): no console errors, every figure
decoded, every study's section and findings present, and no request leaves the page (the
browser's network log holds only the page itself and its inline ``data:`` images). A
screenshot of the top of the page is saved to ``test-output/report-top.png``.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

from deepscope import STUDIES
from deepscope.report import write_report
from deepscope.runner import run_study
from deepscope.store import config_hash, save_arrays

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for name in STUDIES:
        run_study(name, scale="quick", out=root, progress=False)
    return write_report(root)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    if not (CHROMIUM and DRIVER):
        pytest.skip("no system Chromium: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1600"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts,
                              service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def test_report_renders_in_a_browser(report, browser):
    browser.get(report.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    sizes = browser.execute_script(
        "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]);")
    assert sizes and all(done and width > 0 for _, done, width in sizes), sizes
    for name in STUDIES:
        section = browser.find_element("id", name)
        assert section.text == name
    text = browser.find_element("tag name", "body").text
    assert text.count("Findings") == len(STUDIES)
    assert text.count("What the literature expects") == len(STUDIES)
    urls = set()
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.add(msg["params"]["request"]["url"].split(":", 1)[0])
    assert urls <= {"file", "data"}, urls
    OUTPUT.mkdir(exist_ok=True)
    browser.save_screenshot(str(OUTPUT / "report-top.png"))
    assert (OUTPUT / "report-top.png").stat().st_size > 10_000


def test_html_in_a_stored_config_is_escaped(tmp_path):
    run = run_study("fit-function", scale="quick", out=tmp_path, progress=False,
                    overrides={"epochs": 3, "depths": (1, 2), "functions": ("square",)})
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    cfg_path = run.path / "config.json"
    stored = json.loads(cfg_path.read_text())
    stored["config"]["activation"] = evil
    cfg_path.write_text(json.dumps(stored))
    # The store binds a config and a result to their run directory (RUN_ID is the config's
    # hash): move them where this config belongs.
    moved = run.path.parent / config_hash("fit-function", stored["config"])
    run.path.rename(moved)
    save_arrays(moved / "result.npz", run.result)
    page = write_report(tmp_path).read_text()
    assert evil not in page and "<script>" not in page
    assert html.escape(evil) in page
