"""One self-contained HTML page of every study.

The report is rebuilt from the store alone: for each registered study it loads the latest
stored run, re-plots its figures from ``result.npz`` (so changing a figure never retrains;
the stored PNGs are used instead when they were drawn from this very result by this very
code, since re-drawing would give the same bytes),
recomputes its findings and its comparison with the literature, and inlines everything —
figures as base64 PNG — into one file that needs no network to view and prints cleanly.
Studies that were not run, whose last attempt failed, or whose stored result this version
cannot re-plot are listed as such, with the reason. Every string that comes from a config,
a result, an error or the user is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import platform
from pathlib import Path
from typing import Any

import numpy as np

from .context import code_hash
from .errors import UsageError
from .plot import quiet_numpy, to_png
from .store import (
    StoredRun,
    atomic_write_bytes,
    latest_failure,
    latest_runs,
    stored_figures,
    study_runs,
)
from .studies import STUDIES
from .studies.base import Study, stored_config
from .studies.fields import ROLES, roles
from .studies.probe import study as probe
from .studies.probe import title as probe_title

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1120px;margin:2em auto;
padding:0 1.2em;color:#222;line-height:1.5}
h1{border-bottom:3px solid #0072B2;padding-bottom:.2em}
h2{margin-top:2.2em;border-bottom:1px solid #bbb;padding-bottom:.1em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#f4f6f8;font-weight:600}
img{max-width:100%;height:auto;display:block;margin:1em auto}
.status{font-size:.8em;padding:1px 6px;border-radius:4px;margin-left:.4em}
.ok{background:#e3f4ea;color:#17633a}.fail{background:#fbe4e4;color:#8a1c1c}
.none{background:#eee;color:#555}.agree{color:#17633a}.disagree{color:#8a1c1c}
.inconclusive{color:#8a5a00}
.note{color:#555;font-size:.88em}.question{font-style:italic}
code{font-size:.88em;background:#f4f4f4;padding:0 3px}
details{margin:.5em 0}
@media print{h2{break-before:page}h2#contents{break-before:auto}img{break-inside:avoid}
body{max-width:none}}
"""

_e = html.escape


def _fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _setup_rows(run: StoredRun, config_class: type) -> list[tuple[str, str]]:
    """The setup as a reader looks for it: the scale, the models' sizes, then the stored
    config's fields grouped by the role each declares (in the order of ``ROLES``).

    A data field that the result records too is shown as the result has it — what was used,
    not what was asked for (fit-mnist stores the image sets it could read).
    """
    cfg, res = run.config, run.result
    rows = [("scale", str(run.meta.get("scale", "?")))]
    params = next((res[k] for k in res if k == "params" or k.endswith(".params")), None)
    if params is not None:
        p = np.atleast_1d(params)
        label = ", ".join(f"{int(x):,}" for x in p[:14]) + (" …" if len(p) > 14 else "")
        rows.append(("parameters per model", label))
    role_of = roles(config_class)
    for role, title in {**ROLES, None: "other"}.items():
        shown = []
        for k in (k for k in cfg if role_of.get(k) == role):
            used = role == "data" and k in res  # the result's record of what was used wins
            shown.append(f"{k} = {_fmt(res[k].tolist() if used else cfg[k])}")
        if role == "optimiser":  # every study trains with Adam unless its config says
            shown.insert(0, str(cfg.get("optimizer", "Adam")))
        if shown:
            rows.append((title, "; ".join(shown)))
    return rows


def _literature(study, result, cfg) -> str:
    if study.literature is None:
        return ""
    ex = study.literature(result, cfg)
    verdict = {"agrees": '<b class="agree">agrees</b>',
               "disagrees": '<b class="disagree">disagrees</b>',
               "inconclusive": '<b class="inconclusive">is inconclusive</b> (its interval '
                               "reaches both sides)",
               "not testable": "<b>cannot be tested with this configuration</b>"}[ex.verdict]
    measured = f" ({_e(ex.measured)})" if ex.measured else ""
    return (f"<p><b>What the literature expects:</b> {_e(ex.claim)} ({_e(ex.reference)}). "
            f"<b>Criterion:</b> {_e(ex.criterion)} — our measurement{measured} {verdict}.</p>")


def _section(name: str, run: StoredRun | None, failure: dict[str, Any] | None,
             study: Study | None = None, heading: str | None = None) -> str:
    """A study's section; with ``study`` and ``heading``, a probed model's (``name`` is then
    its anchor)."""
    study = study or STUDIES[name]
    parts = [f'<h2 id="{_e(name)}">{_e(heading or name)}</h2>',
             f'<p class="question">{_e(study.summary)}</p>']
    if failure is not None:
        parts.append(f'<p class="missing"><span class="status fail">failed</span> The last '
                     f"attempt ({_e(str(failure.get('when')))}, scale "
                     f"{_e(str(failure.get('scale')))}) failed: "
                     f"<code>{_e(str(failure.get('error')))}</code>"
                     + (" — the last successful run is shown below." if run else "") + "</p>")
    if run is None:
        if failure is None:
            parts.append('<p><span class="status none">not run</span> Run it with '
                         f"<code>deepscope run {_e(name)}</code>.</p>")
        return "\n".join(parts)
    try:
        cfg = stored_config(study, run.config)
        with quiet_numpy():
            findings = study.findings(run.result, cfg)
            literature = _literature(study, run.result, cfg)
            pngs = stored_figures(run.path, code_hash(), run.result_sha256) or {
                key: to_png(fig) for key, fig in study.plot(run.result, cfg).items()}
    except (UsageError, Exception) as err:  # e.g. a result stored by an older version
        parts.append(f'<p><span class="status fail">cannot be shown</span> The stored run in '
                     f"<code>{_e(str(run.path))}</code> cannot be re-plotted by this version "
                     f"({_e(type(err).__name__)}: {_e(str(err))}); re-run "
                     f"<code>deepscope {_e('probe' if heading else 'run ' + name)}</code>.</p>")
        return "\n".join(parts)
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                   for k, v in _setup_rows(run, study.Config))
    parts.append(f"<h3>Setup</h3><table>{rows}</table>")
    full = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>"
                   for k, v in run.config.items())
    parts.append(f"<details><summary>full configuration</summary><table>{full}</table>"
                 "</details>")
    for key, png in pngs.items():
        data = base64.b64encode(png).decode()
        parts.append(f'<img alt="{_e(name)}: {_e(key)}" src="data:image/png;base64,{data}">')
    items = "".join(f"<li>{_e(s)}</li>" for s in findings)
    parts.append(f"<h3>Findings</h3><ul>{items}</ul>{literature}")
    meta = run.meta
    if meta.get("diverged"):
        lines = "".join(f"<li>{_e(str(d))}</li>" for d in meta["diverged"])
        parts.append(f'<p class="missing"><span class="status fail">diverged</span> '
                     f'{len(meta["diverged"])} training run(s) diverged (loss NaN/inf) and '
                     f"stopped there; the others finished. Their later metrics are NaN.</p>"
                     f"<ul>{lines}</ul>")
    parts.append(
        f'<p class="note">Ran in {float(meta.get("seconds", 0)):.1f} s on '
        f'{_e(str(meta.get("device")))} with {_e(str(meta.get("threads")))} thread(s)'
        f"{_e(_executor(meta))}, "
        f'started {_e(str(meta.get("started")))}. Raw data: '
        f'<code>{_e(str(run.path / "result.npz"))}</code>, '
        f'<code>{_e(str(run.path / "config.json"))}</code>.</p>')
    return "\n".join(parts)


def _executor(meta: dict[str, Any]) -> str:
    ex = meta.get("executor") or {}
    if not ex or ex.get("name") == "local":
        return ""
    return (f", pieces on the {ex.get('name')} executor ({ex.get('workers')} workers × "
            f"{ex.get('threads_per_worker')} thread(s))")


def _probed(root: Path) -> tuple[str, list[str]]:
    """The sections of every model probed into ``root`` (``deepscope probe``), newest last,
    and their contents entries; a failed last probe is named first."""
    runs = study_runs(root, probe.name) if root.exists() else []
    failure = latest_failure(root, probe.name, runs[-1] if runs else None)
    if not runs and failure is None:
        return "", []
    parts = ['<h2 id="probed">Probed models</h2>']
    if failure is not None:
        parts.append(f'<p class="missing"><span class="status fail">failed</span> The last '
                     f"probe ({_e(str(failure.get('when')))}) failed: "
                     f"<code>{_e(str(failure.get('error')))}</code></p>")
    toc = []
    for run in runs:
        anchor = f"probe-{run.path.name}"
        try:
            heading = f"probe: {probe_title(stored_config(probe, run.config))}"
        except (TypeError, ValueError):
            heading = f"probe {run.path.name}"
        parts.append(_section(anchor, run, None, study=probe, heading=heading))
        secs = float(run.meta.get("seconds", 0))
        toc.append(f'<li><a href="#{_e(anchor)}">{_e(heading)}</a>'
                   f'<span class="status ok">{secs:.1f} s</span></li>')
    return "\n".join(parts), toc


def write_report(root: Path) -> Path:
    """Write ``root/report.html`` from the latest stored run of every study; return its path."""
    root = Path(root)
    runs = {n: r for n, r in (latest_runs(root) if root.exists() else {}).items()
            if n in STUDIES}
    failures = {n: latest_failure(root, n, runs.get(n)) for n in STUDIES}
    toc = []
    for n in STUDIES:
        if failures[n]:
            badge = '<span class="status fail">failed</span>'
        elif n in runs:
            secs = float(runs[n].meta.get("seconds", 0))
            badge = (f'<span class="status ok">{secs:.1f} s, '
                     f'{_e(str(runs[n].meta.get("scale")))}</span>')
            if runs[n].meta.get("diverged"):
                badge += (f'<span class="status fail">{len(runs[n].meta["diverged"])} '
                          "diverged</span>")
        else:
            badge = '<span class="status none">not run</span>'
        toc.append(f'<li><a href="#{_e(n)}">{_e(n)}</a>{badge} — {_e(STUDIES[n].summary)}'
                   "</li>")
    any_meta = next(iter(runs.values())).meta if runs else {}
    versions = any_meta.get("versions", {})
    machine = any_meta.get("machine", {})
    header = (
        f'<p class="note">Generated {dt.datetime.now().strftime("%Y-%m-%d %H:%M")} from '
        f"<code>{_e(str(root.resolve()))}</code>. deepscope {_e(str(versions.get('deepscope')))}"
        f", torch {_e(str(versions.get('torch')))}, numpy {_e(str(versions.get('numpy')))}, "
        f"Python {_e(str(versions.get('python', platform.python_version())))}; "
        f"{_e(str(machine.get('platform', platform.platform())))}, "
        f"{_e(str(machine.get('cpus', '?')))} CPUs. {len(runs)} of {len(STUDIES)} studies "
        "stored. Figures are re-drawn from the stored results; every number in the findings "
        "is computed from them.</p>")
    body = "\n".join(_section(n, runs.get(n), failures[n]) for n in STUDIES)
    probed, probe_toc = _probed(root)
    toc += probe_toc
    body += probed
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>deepscope report</title><style>{STYLE}</style></head><body>"
            f"<h1>deepscope report</h1>{header}<h2 id=\"contents\">Contents</h2><ol>"
            f"{''.join(toc)}</ol>{body}</body></html>")
    path = root / "report.html"
    atomic_write_bytes(path, page.encode(), root)
    return path
