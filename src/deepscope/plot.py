"""Shared figure helpers.

Figures are plain ``matplotlib.figure.Figure`` objects rendered with the Agg canvas: no pyplot
state machine, so plotting is safe in worker processes and tests and never opens a window.
Every curve over seeds is drawn the same way — the mean as a line, the min–max over seeds as
a band — so the spread that decides whether a difference is real is always visible.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

# A colour-blind-safe cycle (Okabe & Ito, 2008), used in order for models/settings.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
          "#000000"]


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    """A new Figure with an ``nrows × ncols`` grid of axes (each ``width × height`` inches)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def band(ax, x: np.ndarray, ys: np.ndarray, label: str, color: str, *, linestyle: str = "-",
         log: bool = False) -> None:
    """Mean of ``ys`` (shape ``(seeds, len(x))``) as a line, min–max over seeds as a band.

    With ``log=True`` the centre line is the geometric mean, which is what a log axis shows
    as "the middle".
    """
    ys = np.asarray(ys, dtype=float)
    with np.errstate(all="ignore"):
        centre = np.exp(np.nanmean(np.log(ys), 0)) if log else np.nanmean(ys, 0)
        lo, hi = np.nanmin(ys, 0), np.nanmax(ys, 0)
    ax.plot(x, centre, color=color, linestyle=linestyle, label=label, lw=1.6)
    if ys.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def label_batch_sizes(ax, sizes: np.ndarray) -> None:
    """Label a log-x axis at exactly the batch sizes used (instead of only 10², 10³)."""
    ax.set_xticks(list(sizes), [str(int(v)) for v in sizes])
    ax.xaxis.set_minor_locator(NullLocator())


NO_DATA = "no finite values\n(every run diverged, or nothing was measured)"


def mark_missing(fig: Figure) -> None:
    """Make ``fig`` drawable whatever its data: a log axis with no positive finite value
    becomes linear, and axes with no finite data at all say so in their middle.

    Runs that diverged leave NaN or ±inf by design; a figure of them must still be stored
    and shown (matplotlib refuses to place log ticks on nothing). Called by :func:`to_png`,
    so every figure of every study gets it.
    """
    noted: set[tuple[float, ...]] = set()
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        lim = ax.dataLim
        for i, axis in enumerate("xy"):
            if getattr(ax, f"get_{axis}scale")() == "log" and not np.isfinite(lim.minpos[i]):
                getattr(ax, f"set_{axis}scale")("linear")
        empty = not np.all(np.isfinite(lim.get_points())) and not ax.images
        where = tuple(np.round(ax.get_position().bounds, 3))
        if empty and where not in noted:  # a twin axis shares its host's place: one note
            noted.add(where)
            ax.text(0.5, 0.5, NO_DATA, transform=ax.transAxes, ha="center", va="center",
                    fontsize=9, color="#8a1c1c")


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes (after :func:`mark_missing`)."""
    mark_missing(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
