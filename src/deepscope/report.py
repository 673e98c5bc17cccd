"""A self-contained HTML page of every stored study.

The report is rebuilt from the store alone: for each registered study it loads the latest
stored run, re-plots its figures from ``result.npz`` (so a figure change never retrains),
recomputes its findings, and inlines everything — PNGs as base64 — into one file that needs
no network to view. Every string that came from a config, a result or the user is escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .errors import UsageError
from .plot import to_png
from .store import atomic_write_bytes, latest_runs
from .studies import STUDIES, make_config

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #0072B2}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:2px 8px;
text-align:left}img{max-width:100%;height:auto;display:block;margin:1em 0}
.missing{color:#a00}.meta{color:#666;font-size:.85em}
@media print{h2{page-break-before:always}}
"""


def _section(name: str, run) -> str:
    e = html.escape
    study = STUDIES[name]
    parts = [f'<h2 id="{e(name)}">{e(name)}</h2>', f"<p>{e(study.summary)}</p>"]
    if run is None:
        parts.append('<p class="missing">Not run yet: <code>deepscope run '
                     f'{e(name)}</code></p>')
        return "\n".join(parts)
    try:
        cfg = make_config(study, "default", run.config)
    except UsageError as err:
        parts.append(f'<p class="missing">Stored config cannot be read: {e(str(err))}</p>')
        return "\n".join(parts)
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
                   for k, v in run.config.items())
    parts.append(f"<table>{rows}</table>")
    try:
        figures = study.plot(run.result, cfg)
        findings = study.findings(run.result, cfg)
    except Exception as err:  # e.g. a result stored by an older version of the study
        parts.append(f'<p class="missing">The stored result in <code>{e(str(run.path))}'
                     f"</code> cannot be re-plotted by this version ({e(type(err).__name__)}: "
                     f"{e(str(err))}); re-run <code>deepscope run {e(name)}</code>.</p>")
        return "\n".join(parts)
    for key, fig in figures.items():
        data = base64.b64encode(to_png(fig)).decode()
        parts.append(f'<img alt="{e(name)}: {e(key)}" src="data:image/png;base64,{data}">')
    items = "".join(f"<li>{e(s)}</li>" for s in findings)
    parts.append(f"<h3>Findings</h3><ul>{items}</ul>")
    meta = run.meta
    parts.append(f'<p class="meta">scale {e(str(meta.get("scale")))}, '
                 f'{float(meta.get("seconds", 0)):.1f} s on {e(str(meta.get("device")))} '
                 f'with {e(str(meta.get("threads")))} threads; torch '
                 f'{e(str(meta.get("versions", {}).get("torch")))}; raw data: '
                 f'<code>{e(str(run.path / "result.npz"))}</code>, '
                 f'<code>{e(str(run.path / "config.json"))}</code></p>')
    return "\n".join(parts)


def write_report(root: Path) -> Path:
    """Write ``root/report.html`` from the latest stored run of every study; return its path."""
    root = Path(root)
    runs = latest_runs(root) if root.exists() else {}
    toc = "".join(f'<li><a href="#{html.escape(n)}">{html.escape(n)}</a>'
                  f'{"" if n in runs else " (not run)"}</li>' for n in STUDIES)
    body = "\n".join(_section(n, runs.get(n)) for n in STUDIES)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>deepscope report</title><style>{STYLE}</style></head><body>"
            f"<h1>deepscope report</h1><ul>{toc}</ul>{body}</body></html>")
    path = root / "report.html"
    atomic_write_bytes(path, page.encode())
    return path
