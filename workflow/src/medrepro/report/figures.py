"""Figure helpers: the Agg backend, one consistent style, atomic saving.

Every report figure is made with :func:`new_figure` and written with :func:`savefig`, which
writes atomically and always closes the figure (no leaked figures in long runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from medrepro.io.atomic import atomic_path  # noqa: E402

__all__ = ["STYLE", "COLORS", "color", "new_figure", "placeholder", "legend_outside", "savefig"]

#: rcParams applied to every report figure
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
    "lines.markersize": 5,
}

#: colour cycle shared by all figures (colour-blind friendly, Okabe-Ito)
COLORS: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)


def color(i: int) -> str:
    """The ``i``-th colour of :data:`COLORS` (cycled)."""
    return COLORS[i % len(COLORS)]


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    panel_size: tuple[float, float] = (4.0, 3.2),
    squeeze: bool = False,
    **kwargs: Any,
) -> tuple[Figure, Any]:
    """Create a figure in the report style.

    Args:
        nrows: panel rows.
        ncols: panel columns.
        panel_size: width and height of one panel in inches.
        squeeze: passed to :func:`matplotlib.pyplot.subplots` (default: always a 2D array).
        **kwargs: more :func:`~matplotlib.pyplot.subplots` arguments.

    Returns:
        ``(fig, axes)``.
    """
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
            squeeze=squeeze,
            layout="constrained",
            **kwargs,
        )
    for ax in fig.axes:
        ax.set_prop_cycle(color=list(COLORS))
    return fig, axes


def placeholder(ax: Axes, text: str) -> None:
    """Mark a panel that has nothing to show (e.g. a configuration that was not run)."""
    ax.text(
        0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def savefig(fig: Figure, path: str | Path, dpi: float | None = None, **kwargs: Any) -> None:
    """Save ``fig`` atomically (format from the suffix) and close it.

    Args:
        fig: the figure.
        path: output file, e.g. ``figures/speedup.png``.
        dpi: resolution; the style's ``savefig.dpi`` by default.
        **kwargs: more :meth:`~matplotlib.figure.Figure.savefig` arguments.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    try:
        with plt.rc_context(STYLE), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi or STYLE["savefig.dpi"], **kwargs)
    finally:
        plt.close(fig)


def legend_outside(ax: Axes, handles: Sequence[Any] | None = None, **kwargs: Any) -> None:
    """Place the legend to the right of ``ax`` (keeps data visible)."""
    kwargs.setdefault("loc", "upper left")
    kwargs.setdefault("bbox_to_anchor", (1.02, 1.0))
    kwargs.setdefault("frameon", False)
    if handles is None:
        ax.legend(**kwargs)
    else:
        ax.legend(handles=handles, **kwargs)
