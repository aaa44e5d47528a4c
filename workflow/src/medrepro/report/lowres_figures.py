"""Figures of the LowRes report (Agg backend, written atomically through report.figures).

- Fig. 1: time per study (log x) against average recall, one colour per model, one marker per
  runtime, one panel per dataset; published points at 8 threads as hollow diamonds.
- Fig. 2: diameter histograms per split and dataset, median and small-object threshold marked.
- Fig. 3: one axial slice per dataset through a test object: image, ground truth, each model.
- FROC curves per model and dataset; OpenVINO speed-up over PyTorch per model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D

from medrepro.data.lowres_studies import SPLITS
from medrepro.report import figures as fg
from medrepro.report.lowres_inputs import REFERENCE_RUNTIME, Example
from medrepro.report.lowres_tables import RUNTIME_NAMES, model_name
from medrepro.report.published import lowres as pub

__all__ = [
    "RECALL_LABEL",
    "RUNTIME_MARKERS",
    "figure_time_vs_recall",
    "figure_diameters",
    "figure_qualitative",
    "figure_froc",
    "figure_openvino_speedup",
    "crop_box",
]

#: the FROC variant of every recall axis (papers.md: label every plot with its variant)
RECALL_LABEL = "LowRes avg recall 0-5 FP/scan"
#: marker of each runtime in Fig. 1
RUNTIME_MARKERS: dict[str, str] = {"torch": "o", "openvino_fp32": "s", "openvino_int8": "^"}


def _model_colours(models: Sequence[str]) -> dict[str, str]:
    return {m: fg.color(i) for i, m in enumerate(models)}


def figure_time_vs_recall(
    timing: pd.DataFrame,
    quality: pd.DataFrame,
    datasets: Sequence[str],
    models: Sequence[str],
    runtimes: Sequence[str],
    threads: int,
    path: Path,
) -> None:
    """Fig. 1: mean seconds per study at ``threads`` (log x) vs average recall (SD error bars)."""
    fig, axes = fg.new_figure(1, len(datasets), panel_size=(4.6, 3.8))
    colours = _model_colours(models)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        t = timing[(timing["dataset"] == dataset) & (timing["threads"] == threads)]
        q = quality[quality["dataset"] == dataset]
        m = t.merge(q, on=["dataset", "model", "runtime"])
        for _, r in m.iterrows():
            if not (r["mean_s"] > 0) or pd.isna(r["avg_recall"]):
                continue
            ax.errorbar(
                r["mean_s"], r["avg_recall"],
                yerr=None if pd.isna(r["avg_recall_sd"]) else r["avg_recall_sd"],
                xerr=None if pd.isna(r["sd_s"]) else r["sd_s"],
                marker=RUNTIME_MARKERS.get(r["runtime"], "D"), color=colours[r["model"]],
                markersize=7, capsize=2, linestyle="none",
            )  # fmt: skip
            if r["runtime"] == REFERENCE_RUNTIME:
                ax.annotate(model_name(r["model"]), (r["mean_s"], r["avg_recall"]),
                            textcoords="offset points", xytext=(5, 4), fontsize=7)  # fmt: skip
        for model, p in pub.TABLES.get(dataset, {}).items():
            if model in colours:
                ax.scatter(p["time_t8_mean"], p["avg_recall"], marker="D", facecolors="none",
                           edgecolors=colours[model], s=40, zorder=4)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(f"s per study, {threads} threads (log)")
        ax.set_title(dataset)
    axes[0, 0].set_ylabel(RECALL_LABEL)
    fig.suptitle("Time per study on THIS machine vs average recall (error bars: SD)")
    handles = [
        Line2D([], [], color=colours[m], marker="o", linestyle="none", label=model_name(m))
        for m in models
    ]
    handles += [
        Line2D([], [], color="0.3", marker=RUNTIME_MARKERS.get(r, "D"), linestyle="none",
               label=RUNTIME_NAMES.get(r, r))
        for r in runtimes
    ]  # fmt: skip
    handles.append(
        Line2D([], [], color="0.3", marker="D", markerfacecolor="none", linestyle="none",
               label="published (8 threads, Xeon E5-2690 v4)")
    )  # fmt: skip
    fg.legend_outside(axes[0, -1], handles=handles)
    fg.savefig(fig, path)


def figure_diameters(
    objects: Mapping[str, pd.DataFrame], path: Path, bins: int = 20
) -> dict[str, dict[str, float]]:
    """Fig. 2: diameter (mm) histograms per split (rows: datasets), median (orange) and threshold.

    Returns:
        ``{dataset: {split: median diameter mm}}`` (NaN for an empty split).
    """
    names = list(objects)
    fig, axes = fg.new_figure(len(names), len(SPLITS), panel_size=(3.2, 2.5))
    medians: dict[str, dict[str, float]] = {}
    for row, name in enumerate(names):
        obj = objects[name]
        thr = pub.SMALL_OBJECT_MM.get(name)
        diam_all = obj["diameter_mm"].to_numpy(dtype=float)
        edges = np.histogram_bin_edges(diam_all, bins=bins) if diam_all.size else None
        medians[name] = {}
        for col, split in enumerate(SPLITS):
            ax = axes[row, col]
            d = obj.loc[obj["split"] == split, "diameter_mm"].to_numpy(dtype=float)
            if d.size == 0:
                fg.placeholder(ax, f"{name} {split}: no objects")
                medians[name][split] = math.nan
                continue
            med = float(np.median(d))
            medians[name][split] = med
            ax.hist(d, bins=edges, color=fg.color(0), alpha=0.8)
            ax.axvline(med, color="#E69F00", linewidth=2, label=f"median {med:.1f} mm")
            if thr is not None:
                ax.axvline(thr, color="k", linestyle="--", linewidth=1,
                           label=f"small < {thr:g} mm")  # fmt: skip
            ax.set_title(f"{name} {split} ({d.size} objects)")
            ax.set_xlabel("diameter (mm)")
            ax.set_ylabel("objects")
            ax.legend(frameon=False, fontsize=7)
    fg.savefig(fig, path)
    return medians


def crop_box(shape: tuple[int, int], center: tuple[float, float], half: int) -> tuple[slice, ...]:
    """``(rows, cols)`` slices of a ``2*half`` window around ``center``, shifted inside ``shape``."""
    out = []
    for n, c in zip(shape, center, strict=True):
        size = min(n, 2 * half)
        start = int(np.clip(round(c) - size // 2, 0, n - size))
        out.append(slice(start, start + size))
    return tuple(out)


def _contour(ax, mask: np.ndarray, colour: str, style: str = "solid") -> None:
    m = mask.astype(float)
    if m.max() > 0.5 and m.min() < 0.5:
        ax.contour(m, levels=[0.5], colors=[colour], linewidths=1.0, linestyles=style)


def figure_qualitative(
    examples: Mapping[str, Example | None], models: Sequence[str], path: Path
) -> dict[str, str]:
    """Fig. 3: per dataset (rows) the image, the ground truth and each model's PyTorch output.

    The slice is cropped to a window of at least 64 voxels (8 object radii) around the object.

    Returns:
        ``{dataset: one-line description}`` for the report.
    """
    names = list(examples)
    ncols = 2 + len(models)
    fig, axes = fg.new_figure(len(names), ncols, panel_size=(2.3, 2.4))
    notes: dict[str, str] = {}
    for row, name in enumerate(names):
        ex = examples[name]
        if ex is None:
            for ax in axes[row]:
                fg.placeholder(ax, f"{name}: no test object")
            notes[name] = "no test object"
            continue
        radius_vox = 0.5 * ex.diameter_mm / max(ex.spacing[1], ex.spacing[2])
        box = crop_box(ex.image.shape, ex.center_yx, max(32, int(math.ceil(4 * radius_vox))))
        aspect = ex.spacing[1] / ex.spacing[2]
        img, gt = ex.image[box], ex.gt[box]
        panels = [("image", None), ("ground truth", None)] + [(m, ex.probabilities[m][box])
                                                              for m in models]  # fmt: skip
        for col, (title, prob) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
            if title == "ground truth":
                ax.imshow(np.ma.masked_where(~gt, gt.astype(float)), cmap=ListedColormap(["#00C000"]),
                          alpha=0.35, aspect=aspect, interpolation="nearest")  # fmt: skip
                _contour(ax, gt, "#00C000")
            elif prob is not None:
                ax.imshow(np.ma.masked_where(prob <= 0.05, prob), cmap="autumn", vmin=0, vmax=1,
                          alpha=0.45, aspect=aspect, interpolation="nearest")  # fmt: skip
                _contour(ax, prob > 0.5, "#FF3030")
                _contour(ax, gt, "#00C000", "dashed")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_title(title if prob is None else model_name(title), fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{name}\n{ex.study_id}\nz={ex.z}", fontsize=7)
        notes[name] = (
            f"study `{ex.study_id}`, axial slice z={ex.z} through the median-diameter test object "
            f"({ex.diameter_mm:.1f} mm)"
        )
    fig.suptitle("green: ground truth (dashed on predictions); red: prediction p > 0.5 (PyTorch)")
    fg.savefig(fig, path)
    return notes


def figure_froc(
    froc: Mapping[tuple[str, str, str], pd.DataFrame],
    datasets: Sequence[str],
    models: Sequence[str],
    path: Path,
    fp_max: float = 5.0,
) -> None:
    """FROC curves (recall vs FP per scan) per model; PyTorch solid, OpenVINO dashed/dotted.

    Args:
        froc: ``(dataset, model, runtime)`` -> ``froc.csv``.
    """
    styles = {"torch": "-", "openvino_fp32": "--", "openvino_int8": ":"}
    colours = _model_colours(models)
    fig, axes = fg.new_figure(1, len(datasets), panel_size=(4.4, 3.6))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for (d, model, runtime), df in froc.items():
            if d != dataset:
                continue
            f = df.sort_values(["fp_per_scan", "recall"])
            fp, rec = f["fp_per_scan"].to_numpy(float), f["recall"].to_numpy(float)
            if fp.size and fp[-1] < fp_max:  # recall is held beyond the largest FP rate
                fp, rec = np.append(fp, fp_max), np.append(rec, rec[-1])
            ax.step(fp, rec, where="post", color=colours[model],
                    linestyle=styles.get(runtime, "-."), linewidth=1.5 if runtime == "torch" else 1,
                    label=f"{model_name(model)} {RUNTIME_NAMES.get(runtime, runtime)}")  # fmt: skip
        ax.axvspan(0, fp_max, color="0.9", zorder=0)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("false positives per scan (shaded: 0-5, averaged)")
        ax.set_ylabel("object recall")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{dataset}: FROC ({RECALL_LABEL})", fontsize=9)
    fg.legend_outside(axes[0, -1], fontsize=6)
    fg.savefig(fig, path)


def figure_openvino_speedup(
    speedups: pd.DataFrame, datasets: Sequence[str], threads: int, path: Path
) -> None:
    """Bars: OpenVINO FP32 / INT8 speed-up over PyTorch per model at ``threads``."""
    fig, axes = fg.new_figure(1, len(datasets), panel_size=(4.4, 3.4))
    sel_all = speedups[speedups["comparison"] == "openvino_vs_torch"]
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sel = sel_all[(sel_all["dataset"] == dataset) & (sel_all["threads"] == threads)]
        if sel.empty:
            fg.placeholder(ax, f"{dataset}: no OpenVINO runtime")
            continue
        models = list(dict.fromkeys(sel["model"]))
        runtimes = list(dict.fromkeys(sel["runtime"]))
        width = 0.8 / max(1, len(runtimes))
        x = np.arange(len(models))
        for i, runtime in enumerate(runtimes):
            r = sel[sel["runtime"] == runtime].set_index("model").reindex(models)
            ax.bar(x + (i - (len(runtimes) - 1) / 2) * width, r["speedup"], width,
                   color=fg.color(i + 1), label=RUNTIME_NAMES.get(runtime, runtime))  # fmt: skip
        ax.axhline(1.0, color="0.3", linewidth=0.8)
        ax.set_xticks(x, [model_name(m) for m in models], rotation=30, ha="right")
        ax.set_ylabel("speed-up over PyTorch FP32 (time ratio)")
        ax.set_title(f"{dataset}, {threads} threads (this machine)")
        top = np.nanmax(sel["speedup"].to_numpy(float))
        ax.set_ylim(0, 1.25 * max(1.0, top if np.isfinite(top) else 1.0))
        ax.legend(frameon=False, fontsize=7, loc="upper left", ncol=2)
    fg.savefig(fig, path)
