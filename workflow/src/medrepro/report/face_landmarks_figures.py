"""Figures of the ``face-report`` stage (Agg backend, written atomically through report.figures).

- Fig. 5: CED curves (fraction of test images against the per-image error threshold, pixels)
  per method at the full budget, AUC in the legend;
- Fig. 3: test images x (ground truth + each method): predictions over the truth, and below each
  image the maximum over the landmarks of the predicted heatmaps;
- budget sweep: ME (error bars SD / sqrt(n)) against the label budget per method;
- deployment: median latency (batch 1, sync) and ME per runtime of the selected model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.report import figures as fg
from medrepro.report.face_landmarks_inputs import CTD_METHODS, Figure3Data
from medrepro.report.face_landmarks_tables import method_name, metric

__all__ = [
    "METHOD_STYLES",
    "method_colours",
    "heatmap_extent",
    "figure_ced",
    "figure_predictions",
    "figure_budget_sweep",
    "figure_deployment",
]

#: CTD variants solid, the baselines dashed
METHOD_STYLES: dict[str, str] = {m: "-" for m in CTD_METHODS}


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, in order."""
    return {m: fg.color(i) for i, m in enumerate(methods)}


def heatmap_extent(image_size: int, heatmap_width: int) -> tuple[float, float, float, float]:
    """``imshow`` extent placing heatmap pixel ``j`` over input pixels ``[s j, s j + s - 1]``.

    Input pixel centres are integers, so heatmap pixel 0 spans ``[-0.5, s - 0.5]``
    (``s = image_size / heatmap_width``, its centre at ``(s - 1) / 2``).

    Returns:
        ``(left, right, bottom, top)`` for an image axis (y down).
    """
    s = image_size / heatmap_width
    edge = heatmap_width * s - 0.5
    return (-0.5, edge, edge, -0.5)


def figure_ced(
    ced: pd.DataFrame,
    summary: pd.DataFrame,
    methods: Sequence[str],
    budget: int,
    threshold_px: float,
    path: Path,
) -> None:
    """Fig. 5: CED per method at ``budget``; the FR threshold dotted; legend with the AUC."""
    fig, axes = fg.new_figure(1, 1, panel_size=(5.6, 3.8))
    ax = axes[0, 0]
    colours = method_colours(methods)
    xmax = 0.0
    for m in methods:
        c = ced[(ced["method"] == m) & (ced["budget"] == budget)].sort_values("threshold_px")
        auc = metric(summary, m, budget, "auc")
        label = (
            f"{method_name(m)} (AUC@{threshold_px:g} px {auc:.3f})"
            if auc is not None
            else method_name(m)
        )
        ax.plot(c["threshold_px"], c["fraction"], color=colours[m],
                linestyle=METHOD_STYLES.get(m, "--"), label=label)  # fmt: skip
        xmax = max(xmax, float(c["threshold_px"].max()))
    ax.axvline(threshold_px, color="0.5", linestyle=":", linewidth=1,
               label=f"FR threshold {threshold_px:g} px")  # fmt: skip
    ax.set_xlim(0, xmax or threshold_px)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("error threshold (px, per-image mean over landmarks)")
    ax.set_ylabel("fraction of test images")
    ax.set_title(f"CED at {budget} % of the labels (PyTorch)")
    fg.legend_outside(ax)
    fg.savefig(fig, path)


def _points(ax, xy: np.ndarray, colour: str, truth: np.ndarray | None) -> None:  # noqa: ANN001
    if truth is not None:
        ax.scatter(truth[:, 0], truth[:, 1], s=14, facecolors="none", edgecolors="lime",
                   linewidths=0.8)  # fmt: skip
    ax.scatter(xy[:, 0], xy[:, 1], s=6, c=colour, linewidths=0)


def _image_axis(ax, image: np.ndarray, cmap: str | None = None) -> None:  # noqa: ANN001
    """The image, with the axis held to it (points that fall outside are clipped, not shown)."""
    ax.imshow(image, interpolation="nearest", cmap=cmap)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def figure_predictions(data: Figure3Data, methods: Sequence[str], budget: int | None,
                       path: Path) -> None:  # fmt: skip
    """Fig. 3: per test image a prediction row and a heatmap row; columns truth + methods.

    Prediction row: the image, the method's points (filled) and the truth (green circles).
    Heatmap row: the image with the maximum over landmarks of the method's heatmaps overlaid
    (the ground-truth column shows the image alone).
    """
    m = len(data.case_id)
    cols = 1 + len(methods)
    fig, axes = fg.new_figure(2 * m, cols, panel_size=(1.7, 1.7))
    colours = method_colours(methods)
    size = data.images.shape[1]
    for i in range(m):
        img = data.images[i]
        grey = img.astype(np.float32).mean(axis=2)
        top, bottom = axes[2 * i], axes[2 * i + 1]
        _image_axis(top[0], img)
        _points(top[0], data.truth[i], "lime", None)
        _image_axis(bottom[0], img)
        top[0].set_ylabel(data.case_id[i], fontsize=7)
        if i == 0:
            top[0].set_title("ground truth", fontsize=8)
        for j, meth in enumerate(methods, start=1):
            _image_axis(top[j], img)
            _points(top[j], data.pred[meth][i], colours[meth], data.truth[i])
            hm = data.heatmaps[meth][i].max(axis=0)
            _image_axis(bottom[j], grey, cmap="gray")
            bottom[j].imshow(np.clip(hm, 0, None), cmap="inferno", alpha=0.6,
                             extent=heatmap_extent(size, hm.shape[1]), interpolation="bilinear")  # fmt: skip
            bottom[j].set_xlim(-0.5, size - 0.5)  # the heatmap's extent reset the limits
            bottom[j].set_ylim(size - 0.5, -0.5)
            if i == 0:
                top[j].set_title(method_name(meth), fontsize=8)
    when = f"{budget} % of the labels" if budget is not None else "figure budget"
    fig.suptitle(f"Test images, {when}: predictions (dots) over truth (green circles); "
                 "max-over-landmarks heatmaps below", fontsize=8)  # fmt: skip
    fg.savefig(fig, path)


def figure_budget_sweep(sweep: pd.DataFrame, methods: Sequence[str], path: Path) -> None:
    """ME (pixels, error bars SD / sqrt(n_test)) against the label budget (log x) per method."""
    fig, axes = fg.new_figure(1, 1, panel_size=(5.6, 3.8))
    ax = axes[0, 0]
    colours = method_colours(methods)
    budgets = sorted(set(int(b) for b in sweep["budget"]))
    for k, m in enumerate(methods):
        s = sweep[sweep["method"] == m].sort_values("budget")
        jitter = 1 + 0.012 * (k - (len(methods) - 1) / 2)  # separate overlapping error bars
        ax.errorbar(s["budget"] * jitter, s["me_px"], yerr=s["se_px"], color=colours[m],
                    linestyle=METHOD_STYLES.get(m, "--"), marker="o", capsize=2,
                    label=method_name(m))  # fmt: skip
    if len(budgets) > 1:
        ax.set_xscale("log")
    ax.set_xticks(budgets)
    ax.set_xticklabels([f"{b} %" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("label budget (% of the training split, log scale)")
    ax.set_ylabel("ME (px)")
    ax.set_title("Mean error against label budget (PyTorch)")
    fg.legend_outside(ax)
    fg.savefig(fig, path)


def figure_deployment(table: pd.DataFrame, path: Path) -> None:
    """Median latency (batch 1, sync; p90 as error bar) and ME (SE error bars) per runtime."""
    fig, axes = fg.new_figure(1, 2, panel_size=(3.8, 3.2))
    ax_l, ax_m = axes[0]
    x = np.arange(len(table))
    labels = list(table["runtime_name"])
    colours = [fg.color(i) for i in range(len(table))]
    lat = table["latency_median_ms"].to_numpy(float)
    if np.isfinite(lat).any():
        p90 = table["latency_p90_ms"].to_numpy(float)
        err = np.where(np.isfinite(p90), np.clip(p90 - lat, 0, None), 0)
        ax_l.bar(x, np.nan_to_num(lat), yerr=[np.zeros_like(err), err], color=colours, capsize=3)
        ax_l.set_ylabel("median latency (ms), batch 1")
        threads = table["threads"].dropna()
        ax_l.set_title(f"Latency ({int(threads.iloc[0])} threads)" if len(threads) else "Latency")
    else:
        fg.placeholder(ax_l, "no benchmark results")
    me = table["me_px"].to_numpy(float)
    se = (table["sd_px"] / np.sqrt(table["n_test"].astype(float))).to_numpy(float)
    ax_m.bar(x, np.nan_to_num(me), yerr=np.nan_to_num(se), color=colours, capsize=3)
    ax_m.set_ylabel("ME (px)")
    ax_m.set_title("Mean error (test split)")
    for ax in (ax_l, ax_m):
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right")
    sel = table.iloc[0]
    fig.suptitle(f"Deployed model: {method_name(str(sel['method']))} at {sel['budget']} %",
                 fontsize=9)  # fmt: skip
    fg.savefig(fig, path)
