"""Shared figure helpers.

Figures are plain ``matplotlib.figure.Figure`` objects rendered with the Agg canvas: no pyplot
state machine, so plotting is safe in worker processes and tests and never opens a window.
Every curve over seeds is drawn by :func:`band` — a statistic as a line, the spread over seeds
as a band, and :data:`STAT` to name both in the legend — so the spread that decides whether a
difference is real is always visible; :func:`not_converged` marks models left out of a
verdict.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
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


STAT = {"mean": "mean, band min–max", "median": "median, band interquartile range",
        "geomean": "geometric mean, band min–max"}
"""How a legend names what :func:`band` draws, by its ``stat``."""


def band(ax, x: np.ndarray, ys: np.ndarray, label: str, color: str, *, linestyle: str = "-",
         stat: str | None = None, log: bool = False) -> None:
    """A statistic over seeds of ``ys`` (shape ``(seeds, len(x))``) as a line, with a band.

    ``stat`` is ``"median"`` (median line, interquartile band: for heavy-tailed or bimodal
    losses, where one seed would drag a mean), ``"mean"`` (mean line, min–max band) or
    ``"geomean"`` (geometric mean, min–max band); :data:`STAT` words each for a legend. The
    old ``log=True`` means ``"geomean"``. NaN seeds (diverged) are left out.
    """
    stat = stat or ("geomean" if log else "mean")
    ys = np.asarray(ys, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: drawn as gaps
        if stat == "median":
            centre = np.nanmedian(ys, 0)
            lo, hi = np.nanpercentile(ys, 25, 0), np.nanpercentile(ys, 75, 0)
        elif stat in ("mean", "geomean"):
            centre = np.exp(np.nanmean(np.log(ys), 0)) if stat == "geomean" else np.nanmean(ys, 0)
            lo, hi = np.nanmin(ys, 0), np.nanmax(ys, 0)
        else:
            raise ValueError(f"stat must be one of {sorted(STAT)}, got {stat!r}")
    ax.plot(x, centre, color=color, linestyle=linestyle, label=label, lw=1.6)
    if ys.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def not_converged(ax, x, y, label: str = "not converged (left out of the verdict)") -> None:
    """Mark points (models) that missed the study's training criterion: red crosses over the
    data, one legend entry. Nothing is drawn for no points."""
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    if x.size:
        ax.scatter(x, y, marker="x", s=70, linewidths=2, color="#C00000", zorder=5,
                   label=label)


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


@contextlib.contextmanager
def quiet_numpy() -> Iterator[None]:
    """Silence numpy's NaN/overflow warnings while figures and findings are made.

    Runs that diverged leave NaN (or huge) values by design; the findings and the report say
    so in words, so "Mean of empty slice" and "overflow encountered" would only be noise.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # matplotlib's note on a log axis of nothing positive: mark_missing handles it
        warnings.filterwarnings("ignore", "Data has no positive values", UserWarning)
        yield


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes (after :func:`mark_missing`)."""
    mark_missing(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def contour(ax, a, b, loss, fig, label: str, colorbar: bool = True) -> None:
    """Filled contours of ``loss`` (shape (len(a), len(b))) on log-spaced levels. Grid points
    where the loss is not finite are left blank; a constant surface (every unit dead) is
    drawn as one colour and said so, since contour levels need a range."""
    finite = np.isfinite(loss)
    if not finite.any():
        return  # plot.mark_missing writes "no finite values" on the empty axes
    loss = np.where(finite, np.maximum(loss, 1e-12), np.nan)
    lo, hi = np.nanmin(loss), np.nanmax(loss)
    if not hi > lo * (1 + 1e-9):
        ax.pcolormesh(a, b, loss.T, cmap="viridis", shading="nearest")
        ax.text(0.5, 0.04, f"constant surface: {label} = {lo:.4g} at every grid point",
                transform=ax.transAxes, ha="center", fontsize=8, color="white")
        return
    levels = np.geomspace(lo, hi, 16)
    cs = ax.contourf(a, b, loss.T, levels=levels, norm=LogNorm(), cmap="viridis")
    ax.contour(a, b, loss.T, levels=levels, colors="white", linewidths=0.3, alpha=0.6)
    if colorbar:
        fig.colorbar(cs, ax=ax, label=f"{label} (log scale)", format="%.2g")
