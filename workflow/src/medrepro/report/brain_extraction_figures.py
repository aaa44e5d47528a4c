"""Figures of the brain extraction report (Agg backend, written atomically).

Fig. 4 (qualitative slices), Fig. 5 (core scaling), registration QC, Dice/HD95 per
configuration, speed-up and memory per configuration. Published values are drawn as black
markers labelled "published".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap

from medrepro.report import figures as fg
from medrepro.report.brain_extraction_inputs import Example
from medrepro.report.brain_extraction_tables import BENCH_OF_CONFIG
from medrepro.report.published import brain_extraction as pub

__all__ = [
    "CONFIG_NAMES",
    "VIEWS",
    "plane",
    "brain_centre",
    "figure_qualitative",
    "figure_core_scaling",
    "figure_qc",
    "figure_dice",
    "figure_speed_memory",
]

#: short names of the configurations (the paper's Fig. 4 labels where it has one)
CONFIG_NAMES: dict[str, str] = {
    "pytorch_fp32": "PT-FP32",
    "onnxruntime_fp32": "ORT-FP32",
    "openvino_fp32": "OV-FP32",
    "openvino_fp32_onnx": "OV-FP32 (ONNX route)",
    "openvino_bf16": "OV-BF16",
    "openvino_int8": "OV-INT8",
    "openvino_int8_default": "OV-INT8 (plain PTQ)",
}
#: (slice axis, title, vertical axis points up) of the three orthogonal views; the plane shown
#: is ``np.take(vol, i, axis).T`` (rows: the later remaining axis)
VIEWS: tuple[tuple[int, str, bool], ...] = (
    (2, "axial z={}", False),
    (1, "coronal y={}", True),
    (0, "sagittal x={}", True),
)
_CONFIG_OF_BENCH = {v: k for k, v in BENCH_OF_CONFIG.items()}


def plane(vol: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The slice ``index`` along ``axis`` of an ``(X, Y, Z)`` volume, rows = later axis.

    Axial (axis 2): rows y, columns x; coronal (axis 1): rows z, columns x; sagittal (axis 0):
    rows z, columns y.
    """
    return np.take(vol, int(index), axis=axis).T


def brain_centre(mask: np.ndarray) -> np.ndarray:
    """Voxel index ``(i, j, k)`` of the mask's centroid (the volume centre if the mask is empty)."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return np.array(mask.shape) // 2
    return np.clip(np.round(idx.mean(axis=0)).astype(int), 0, np.array(mask.shape) - 1)


def _aspect(spacing: np.ndarray, axis: int) -> float:
    """Display aspect (row spacing / column spacing) of the plane normal to ``axis``."""
    h, v = [a for a in range(3) if a != axis]
    return float(spacing[v] / spacing[h])


def figure_qualitative(example: Example | None, path: Path) -> str:
    """Fig. 4: t1ce slices through the brain centre with the GT and predicted masks overlaid.

    Returns:
        A one-line description of the subject shown (for the report).
    """
    if example is None:
        fig, axes = fg.new_figure(1, 1)
        fg.placeholder(axes[0, 0], "no PyTorch FP32 test item")
        fg.savefig(fig, path)
        return "no test item"
    panels = [
        ("GT", example.gt, None),
        *[(CONFIG_NAMES.get(c, c), m, example.dice.get(c)) for c, m in example.masks.items()],
    ]
    fig, axes = fg.new_figure(3, len(panels), panel_size=(2.6, 2.6))
    centre = brain_centre(example.gt)
    img = example.image
    vmin, vmax = np.percentile(img, [1, 99.5])
    for row, (axis, title, up) in enumerate(VIEWS):
        base = plane(img, axis, centre[axis])
        for col, (name, mask, dice) in enumerate(panels):
            ax = axes[row, col]
            m = plane(mask, axis, centre[axis]).astype(float)
            origin = "lower" if up else "upper"
            aspect = _aspect(example.spacing, axis)
            ax.imshow(base, cmap="gray", vmin=vmin, vmax=vmax, origin=origin, aspect=aspect)
            colour = "#00C000" if name == "GT" else "#FF4040"
            ax.imshow(
                np.ma.masked_where(m < 0.5, m),
                cmap=ListedColormap([colour]),
                alpha=0.3,
                origin=origin,
                aspect=aspect,
                interpolation="nearest",
            )
            if m.max() > 0.5 and m.min() < 0.5:
                ax.contour(m, levels=[0.5], colors=[colour], linewidths=0.8, origin=origin)
            if name != "GT":
                g = plane(example.gt, axis, centre[axis]).astype(float)
                if g.max() > 0.5 and g.min() < 0.5:
                    ax.contour(
                        g, levels=[0.5], colors=["#00C000"], linewidths=0.6, origin=origin,
                        linestyles="dashed",
                    )  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if row == 0:
                label = name if dice is None else f"{name}\nDice {dice:.4f}"
                ax.set_title(label)
            if col == 0:
                ax.set_ylabel(title.format(centre[axis]))
    fig.suptitle(
        f"{example.subject_id}: native t1ce, masks from the {example.modality} input "
        "(green: ground truth; red: prediction; dashed: GT contour)"
    )
    fg.savefig(fig, path)
    return (
        f"test subject `{example.subject_id}` (median PyTorch FP32 Dice among the "
        f"{example.modality} items), slices through the ground-truth brain centre voxel "
        f"{tuple(int(c) for c in centre)}"
    )


def figure_core_scaling(scaling: pd.DataFrame, physical_cores: int | None, path: Path) -> None:
    """Fig. 5: latency (ms) and speed-up over PyTorch at the fewest threads, vs thread count."""
    fig, axes = fg.new_figure(1, 2, panel_size=(4.6, 3.6))
    ax_lat, ax_sp = axes[0]
    ok = scaling[scaling["status"] == "ok"] if not scaling.empty else scaling
    if ok.empty:
        fg.placeholder(ax_lat, "no core-scaling benchmark")
        fg.placeholder(ax_sp, "no core-scaling benchmark")
        fg.savefig(fig, path)
        return
    kmin = int(ok["reference_threads"].iloc[0])
    for i, (label, g) in enumerate(ok.groupby("label", sort=False)):
        g = g.sort_values("threads")
        ax_lat.plot(
            g["threads"], g["latency_median_ms"], marker="o", color=fg.color(i), label=label
        )
        ax_sp.plot(
            g["threads"], g["speedup_vs_pytorch_min_threads"], marker="o", color=fg.color(i),
            label=label,
        )  # fmt: skip
    threads = sorted({int(t) for t in ok["threads"]})
    for ax in (ax_lat, ax_sp):
        ax.set_xticks(threads)
        ax.set_xlabel("inference threads")
        if physical_cores:
            ax.axvline(physical_cores, color="0.4", linestyle=":", linewidth=1.0)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("median latency (ms, batch 1, log scale)")
    ax_lat.set_title("latency vs threads")
    ax_sp.axhline(1.0, color="0.3", linewidth=0.8)
    ax_sp.set_ylabel(f"speed-up over PyTorch f32 at {kmin} thread(s)")
    ax_sp.set_title("speed-up vs threads" + (" (dotted: physical cores)" if physical_cores else ""))
    ax_sp.legend(frameon=False, fontsize=7)
    fg.savefig(fig, path)


def figure_qc(qc: pd.DataFrame, path: Path) -> None:
    """Registration QC: Dice of the registered mask with the atlas mask per subject, threshold."""
    fig, axes = fg.new_figure(1, 1, panel_size=(max(6.5, 0.22 * len(qc) + 4.0), 3.4))
    ax = axes[0, 0]
    qc = qc.sort_values("subject_id").reset_index(drop=True)
    x = np.arange(len(qc))
    passed = qc["qc_pass"].astype(bool).to_numpy()
    included = qc["included"].astype(bool).to_numpy()
    ax.scatter(x[passed], qc.loc[passed, "mask_dice_vs_atlas"], color=fg.color(0), label="pass")
    ax.scatter(
        x[~passed], qc.loc[~passed, "mask_dice_vs_atlas"], color=fg.color(3), marker="x", s=50,
        label="fail",
    )  # fmt: skip
    excl = ~included
    if excl.any():
        ax.scatter(
            x[excl], qc.loc[excl, "mask_dice_vs_atlas"], facecolors="none", edgecolors="k", s=110,
            label="excluded from the dataset",
        )  # fmt: skip
    threshold = qc["qc_min_dice"].iloc[0] if "qc_min_dice" in qc and len(qc) else math.nan
    if not pd.isna(threshold):
        ax.axhline(
            threshold, color="k", linestyle="--", linewidth=1.0, label=f"qc_min_dice {threshold:g}"
        )
    ax.set_xticks(x, qc["subject_id"], rotation=90, fontsize=6)
    ax.set_xlim(-0.7, len(qc) - 0.3)
    ax.set_ylabel("Dice(registered mask, atlas mask)")
    ax.set_title(f"Registration QC: {int(passed.sum())} of {len(qc)} subjects pass")
    fg.legend_outside(ax)
    fg.savefig(fig, path)


def _published_dice() -> dict[str, float]:
    return {c: float(pub.TABLE4[r]["dice"]) for c, r in pub.CONFIG_TO_ROW.items()}


def figure_dice(evaluation: pd.DataFrame, configs: list[str], path: Path) -> None:
    """Per-item Dice and HD95 (mm) per configuration; published Table 4 means as diamonds."""
    fig, axes = fg.new_figure(1, 2, panel_size=(0.6 * len(configs) + 1.8, 3.8))
    ax_d, ax_h = axes[0]
    pub_dice = _published_dice()
    pub_hd = {c: float(pub.TABLE4[r]["hd95_mean"]) for c, r in pub.CONFIG_TO_ROW.items()}
    labelled = False
    for i, config in enumerate(configs):
        sub = evaluation[evaluation["config"] == config]
        n = len(sub)
        offsets = np.linspace(-0.25, 0.25, n) if n > 1 else np.zeros(n)
        ax_d.boxplot(sub["dice"], positions=[i], widths=0.6, showfliers=False)
        ax_d.scatter(i + offsets, sub["dice"], s=8, color=fg.color(i), alpha=0.7, zorder=3)
        hd = sub["hd95_mm"].to_numpy(dtype=float)
        finite = hd[np.isfinite(hd)]
        if finite.size:
            ax_h.boxplot(finite, positions=[i], widths=0.6, showfliers=False)
            fo = offsets[np.isfinite(hd)]
            ax_h.scatter(i + fo, finite, s=8, color=fg.color(i), alpha=0.7, zorder=3)
        excluded = int(hd.size - finite.size)
        if excluded:
            ax_h.annotate(
                f"{excluded} excl.", (i, 1.0), xycoords=("data", "axes fraction"), ha="center",
                va="top", fontsize=7, color=fg.color(3),
            )  # fmt: skip
        if config in pub_dice:
            label = None if labelled else "published mean (Table 4)"
            labelled = True
            ax_d.scatter(i, pub_dice[config], marker="D", color="k", zorder=5, label=label)
            ax_h.scatter(i, pub_hd[config], marker="D", color="k", zorder=5, label=label)
    names = [CONFIG_NAMES.get(c, c) for c in configs]
    for ax in (ax_d, ax_h):
        ax.set_xticks(range(len(configs)), names, rotation=30, ha="right")
        ax.set_xlim(-0.7, len(configs) - 0.3)
    ax_d.set_ylabel("Dice (native t1ce grid)")
    ax_d.set_title("Dice per test item")
    ax_h.set_ylabel("HD95 (mm, pooled)")
    ax_h.set_title("HD95 per test item (one-empty-mask items excluded)")
    if labelled:
        ax_d.legend(frameon=False, fontsize=7, loc="lower left")
    fg.savefig(fig, path)


def figure_speed_memory(speed: pd.DataFrame, path: Path) -> None:
    """Bars: speed-up and peak memory over PyTorch f32 (batch 1 sync); published markers."""
    fig, axes = fg.new_figure(1, 2, panel_size=(4.4, 3.6))
    ax_s, ax_m = axes[0]
    ok = speed[speed["status"] == "ok"].reset_index(drop=True)
    if ok.empty:
        fg.placeholder(ax_s, "no benchmark results")
        fg.placeholder(ax_m, "no benchmark results")
        fg.savefig(fig, path)
        return
    x = np.arange(len(ok))
    colours = [fg.color(i) for i in range(len(ok))]
    ax_s.bar(x, ok["speedup"], color=colours)
    ax_m.bar(x, ok["memory_norm"], color=colours)
    seen: set[str] = set()
    for i, r in ok.iterrows():
        config = _CONFIG_OF_BENCH.get((r["backend"], r["precision"]))
        if config in pub.SPEEDUP_VS_PT190:
            lab = "published vs PyTorch 1.9.0 (text)"
            ax_s.scatter(i, pub.SPEEDUP_VS_PT190[config], marker="D", color="k", zorder=5,
                         label=None if lab in seen else lab)  # fmt: skip
            seen.add(lab)
        row = pub.CONFIG_TO_ROW.get(config or "")
        if row:
            lab = "published / PyTorch 1.5.1 (Table 4)"
            ax_m.scatter(i, pub.TABLE4[row]["memory_norm"], marker="D", color="k", zorder=5,
                         label=None if lab in seen else lab)  # fmt: skip
            seen.add(lab)
    for ax in (ax_s, ax_m):
        ax.set_xticks(x, ok["label"], rotation=30, ha="right")
        ax.axhline(1.0, color="0.3", linewidth=0.8)
        ax.legend(frameon=False, fontsize=7)
    threads = int(ok["threads"].iloc[0])
    ax_s.set_ylabel("speed-up over PyTorch f32 (latency ratio)")
    ax_s.set_title(f"latency speed-up, batch 1, {threads} threads")
    ax_m.set_ylabel("peak RSS / PyTorch f32 peak RSS")
    ax_m.set_title("memory (normalised)")
    fg.savefig(fig, path)
