"""Figures of the cerebellum YOLO report (Agg backend, written atomically).

Fig. 4 (AP and F1 vs iterations per S), Fig. 10 (false positives vs iterations of the tiny grid),
Figs. 5-8 (fixed test images with predicted and annotated boxes, one row per S), the tiny grid
summary and the annotation box statistics. Published values are black markers labelled
"published".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from medrepro.metrics.detection import iou
from medrepro.report import figures as fg
from medrepro.report.cerebellum_yolo_inputs import TINY_ARCH, YOLO_ARCH, Examples, RunSpec
from medrepro.report.published import cerebellum_yolo as pub

__all__ = [
    "box_iou",
    "figure_ap_f1",
    "figure_false_positives",
    "figure_predictions",
    "figure_tiny_grid",
    "figure_box_statistics",
]

_GT_COLOUR = "#00E000"
_PRED_COLOUR = "#FF3030"


def box_iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """IoU of two normalised ``(cx, cy, w, h)`` boxes; NaN if either is missing (NaN)."""
    return float(iou(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))


def figure_ap_f1(
    runs: dict[str, RunSpec], checkpoints: dict[str, pd.DataFrame], path: Path
) -> None:
    """Fig. 4: AP (left) and F1 (right) vs iterations for each YOLOv1 run (scratch dashed).

    Dotted lines: the published best AP per S (Table 1; its batch in the legend, the x axis is
    this run's schedule, which may be shorter than the paper's 1000 batches).
    """
    fig, axes = fg.new_figure(1, 2, panel_size=(4.6, 3.6))
    ax_ap, ax_f1 = axes[0]
    yolo = sorted((r for r in runs.values() if r.arch == YOLO_ARCH), key=lambda r: (r.S, not r.pretrained))  # fmt: skip
    if not yolo:
        fg.placeholder(ax_ap, "no YOLOv1 run")
        fg.placeholder(ax_f1, "no YOLOv1 run")
        fg.savefig(fig, path)
        return
    s_values = sorted({r.S for r in yolo})
    for r in yolo:
        ck = checkpoints[r.name]
        c = fg.color(s_values.index(r.S))
        style = "-" if r.pretrained else "--"
        label = f"S={r.S}" + ("" if r.pretrained else " scratch")
        ax_ap.plot(ck["iteration"], ck["ap"], style, marker="o", color=c, label=label)
        ax_f1.plot(ck["iteration"], ck["f1"], style, marker="o", color=c, label=label)
    for s in s_values:
        if s in pub.TABLE1:
            p = pub.TABLE1[s]
            ax_ap.axhline(p["ap"], color=fg.color(s_values.index(s)), linestyle=":", linewidth=1.0,
                          label=f"S={s} published best ({int(p['iteration'])} batches)")  # fmt: skip
    for ax, name in ((ax_ap, "AP (mean IoU of the top box)"), (ax_f1, "F1 (IoU >= 0.5)")):
        ax.set_xlabel("iterations (batches)")
        ax.set_ylabel(name)
        ax.set_ylim(-0.02, 1.02)
    ax_ap.set_title("AP vs iterations (test images)")
    ax_f1.set_title("F1 vs iterations (test images)")
    ax_ap.legend(frameon=False, fontsize=7, loc="lower right")
    fg.savefig(fig, path)


def _tiny_by_lr(runs: dict[str, RunSpec]) -> list[tuple[float, list[RunSpec]]]:
    tiny = [r for r in runs.values() if r.arch == TINY_ARCH]
    lrs = sorted({r.lr for r in tiny})
    return [(lr, sorted((r for r in tiny if r.lr == lr), key=lambda r: r.momentum)) for lr in lrs]


def figure_false_positives(
    runs: dict[str, RunSpec], checkpoints: dict[str, pd.DataFrame], path: Path
) -> None:
    """Fig. 10: false positives (count over the test images) vs iterations, one panel per lr."""
    groups = _tiny_by_lr(runs)
    fig, axes = fg.new_figure(1, max(1, len(groups)), panel_size=(4.2, 3.4))
    if not groups:
        fg.placeholder(axes[0, 0], "no tiny YOLO run")
        fg.savefig(fig, path)
        return
    momenta = sorted({r.momentum for _, g in groups for r in g})
    for ax, (lr, g) in zip(axes[0], groups, strict=True):
        for r in g:
            ck = checkpoints[r.name]
            ax.plot(ck["iteration"], ck["fp"], marker="o", color=fg.color(momenta.index(r.momentum)),
                    label=f"momentum {r.momentum:g}")  # fmt: skip
        ax.set_xlabel("iterations (batches)")
        ax.set_ylabel("false positives (test images)")
        ax.set_title(f"tiny YOLO, lr {lr:g}")
        ax.legend(frameon=False, fontsize=7)
    fg.savefig(fig, path)


def _draw_box(
    ax: object, box: np.ndarray, size: tuple[int, int], colour: str, dashed: bool
) -> None:
    """Draw a normalised ``(cx, cy, w, h)`` box on an image of ``size = (H, W)`` pixels."""
    if not np.isfinite(box).all():
        return
    h, w = size
    x0, y0 = (box[0] - box[2] / 2) * w, (box[1] - box[3] / 2) * h
    ax.add_patch(  # type: ignore[attr-defined]
        Rectangle((x0 - 0.5, y0 - 0.5), box[2] * w, box[3] * h, fill=False, edgecolor=colour,
                  linewidth=1.4, linestyle="--" if dashed else "-")
    )  # fmt: skip


def figure_predictions(examples: Examples | None, conf_threshold: float, path: Path) -> None:
    """Figs. 5-8: fixed test images, predicted (red) and annotated (green) boxes, one row per S.

    The last row is the deployed best model from ``predictions.csv``. Predicted boxes below the
    confidence threshold are dashed. Panel titles: IoU and confidence.
    """
    if examples is None or not examples.predictions:
        fig, axes = fg.new_figure(1, 1)
        fg.placeholder(axes[0, 0], "no annotated test image or no prediction to show")
        fg.savefig(fig, path)
        return
    rows = list(examples.predictions)
    k = len(examples.image_ids)
    fig, axes = fg.new_figure(len(rows), k, panel_size=(2.6, 2.6))
    size = examples.images.shape[1:3]
    for i, label in enumerate(rows):
        boxes, conf = examples.predictions[label]
        for j in range(k):
            ax = axes[i, j]
            ax.imshow(examples.images[j], interpolation="nearest")
            _draw_box(ax, examples.gt[j], size, _GT_COLOUR, False)
            c = float(conf[j])
            _draw_box(ax, boxes[j], size, _PRED_COLOUR, not (c >= conf_threshold))
            iou = box_iou(boxes[j], examples.gt[j])
            ax.set_title(f"{examples.image_ids[j]}\nIoU {iou:.2f}, conf {c:.2f}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if j == 0:
                it = examples.iterations.get(label)
                ax.set_ylabel(label + (f"\n{it} batches" if it is not None else ""), fontsize=7)
    fig.suptitle(
        f"predicted top box: red (dashed: conf < {conf_threshold:g})\nannotation: green",
        fontsize=9,
    )
    fg.savefig(fig, path)


def figure_tiny_grid(t2: pd.DataFrame, runs: dict[str, RunSpec], checkpoints: dict[str, pd.DataFrame], path: Path) -> None:  # fmt: skip
    """Tiny YOLO grid: best AP and best F1 vs momentum per lr (published dashed), AP curves.

    Top: best AP (left) and best F1 over checkpoints (right) vs momentum, ours solid, published
    (Table 2) dashed with black markers. Bottom: AP vs iterations per lr.
    """
    groups = _tiny_by_lr(runs)
    ncols = max(2, len(groups))
    fig, axes = fg.new_figure(2, ncols, panel_size=(4.0, 3.2))
    ok = t2[t2["status"] == "ok"]
    for ax, col, pcol, name in (
        (axes[0, 0], "best_ap", "published_ap", "best AP (mean IoU)"),
        (axes[0, 1], "best_f1", "published_f1", "best F1"),
    ):
        for i, lr in enumerate(pub.LEARNING_RATES):
            p = t2[np.isclose(t2["lr"].astype(float), lr)].drop_duplicates("momentum")
            ax.plot(p["momentum"], p[pcol], "--", marker="D", color="k", alpha=0.4 + 0.4 * i,
                    label=f"published lr {lr:g}")  # fmt: skip
        for i, (lr, g) in enumerate(ok.groupby("lr")):
            g = g.sort_values("momentum")
            ax.plot(g["momentum"], g[col], "-", marker="o", color=fg.color(i), label=f"ours lr {lr:g}")  # fmt: skip
        ax.set_xlabel("momentum")
        ax.set_ylabel(name)
        ax.set_ylim(-0.02, 1.05)
        ax.legend(frameon=False, fontsize=6)
    axes[0, 0].set_title("Table 2: best AP")
    axes[0, 1].set_title("Table 2: best F1")
    for j in range(2, ncols):
        axes[0, j].set_visible(False)
    if not groups:
        fg.placeholder(axes[1, 0], "no tiny YOLO run")
        for j in range(1, ncols):
            axes[1, j].set_visible(False)
    momenta = sorted({r.momentum for _, g in groups for r in g})
    for j, (lr, g) in enumerate(groups):
        ax = axes[1, j]
        for r in g:
            ck = checkpoints[r.name]
            ax.plot(ck["iteration"], ck["ap"], marker="o", markersize=3,
                    color=fg.color(momenta.index(r.momentum)), label=f"momentum {r.momentum:g}")  # fmt: skip
        ax.set_xlabel("iterations (batches)")
        ax.set_ylabel("AP (mean IoU)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"AP vs iterations, lr {lr:g}")
        ax.legend(frameon=False, fontsize=6)
    for j in range(len(groups), ncols):
        if groups:
            axes[1, j].set_visible(False)
    fg.savefig(fig, path)


def figure_box_statistics(boxes: pd.DataFrame, path: Path) -> None:
    """Annotation boxes: width/height histograms, centre scatter, components per mask."""
    fig, axes = fg.new_figure(1, 3, panel_size=(3.6, 3.2))
    ax_wh, ax_c, ax_n = axes[0]
    full = boxes[~boxes["empty"]]
    if full.empty:
        fg.placeholder(ax_wh, "no annotated box")
        fg.placeholder(ax_c, "no annotated box")
    else:
        bins = np.linspace(0, max(0.05, float(max(full["w"].max(), full["h"].max()))) * 1.05, 20)
        ax_wh.hist(full["w"], bins=bins, alpha=0.6, color=fg.color(0), label="width w / W")
        ax_wh.hist(full["h"], bins=bins, alpha=0.6, color=fg.color(1), label="height h / H")
        ax_wh.set_xlabel("box size (fraction of image width / height)")
        ax_wh.set_ylabel("images")
        ax_wh.legend(frameon=False, fontsize=7)
        for i, (split, g) in enumerate(full.groupby("split")):
            ax_c.scatter(g["cx"], g["cy"], s=8, color=fg.color(i), label=split, alpha=0.7)
        ax_c.set_xlim(0, 1)
        ax_c.set_ylim(1, 0)
        ax_c.set_xlabel("box centre cx (fraction of W)")
        ax_c.set_ylabel("box centre cy (fraction of H, down)")
        ax_c.legend(frameon=False, fontsize=7)
    counts = boxes["n_components"].astype(int).where(~boxes["empty"], 0).value_counts().sort_index()
    ax_n.bar([str(i) if i else "empty" for i in counts.index], counts.to_numpy(), color=fg.color(2))
    ax_n.set_xlabel("connected components per mask")
    ax_n.set_ylabel("images")
    ax_wh.set_title("box size")
    ax_c.set_title("box centres")
    ax_n.set_title(f"{int(boxes['empty'].sum())} empty of {len(boxes)} masks")
    fg.savefig(fig, path)
