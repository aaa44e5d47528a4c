"""Figures of the cephalometry report (Agg backend, written atomically)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.preprocessing.geometry import Grid, mm_to_index
from medrepro.report import figures as fg
from medrepro.report.cephalometry_inputs import SDR_RADII, ReportInputs
from medrepro.report.cephalometry_tables import config_label, main_threads, sort_configs
from medrepro.report.published import cephalometry as pub

__all__ = [
    "figure_speedup",
    "figure_batch",
    "figure_error_cdf",
    "figure_training",
    "figure_perf",
    "mm_to_voxel",
    "example_case",
    "figure_landmarks",
]


def _published_speedups(role: str | None) -> dict[str, float]:
    if role is None:
        return {}
    t = pub.TABLE3_5_SPEED[role]
    return {
        "sync": float(t["OpenVINO sync"]["speedup"]),
        "async": float(t["OpenVINO async (4 requests)"]["speedup"]),
    }


def figure_speedup(inputs: ReportInputs, speed: pd.DataFrame, path: Path) -> None:
    """Bars: batch-1 speed-up over PyTorch per configuration and model, published marks."""
    fig, axes = fg.new_figure(1, 1, panel_size=(8.5, 4.0))
    ax = axes[0, 0]
    data = speed[
        (speed["status"] == "ok")
        & ~((speed["backend"] == "pytorch") & (speed["precision"] == "f32"))
    ]
    if data.empty:
        fg.placeholder(ax, "no batch-1 benchmark results")
        fg.savefig(fig, path)
        return
    configs = list(dict.fromkeys(data["framework_mode"]))
    models = list(dict.fromkeys(data["model"]))
    width = 0.8 / len(configs)
    for j, cfg in enumerate(configs):
        xs, ys = [], []
        for i, model in enumerate(models):
            sel = data[(data["model"] == model) & (data["framework_mode"] == cfg)]
            if not sel.empty:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(float(sel["speedup_vs_pytorch"].iloc[0]))
        ax.bar(xs, ys, width=width * 0.95, color=fg.color(j), label=cfg)
    labelled: set[str] = set()
    for i, model in enumerate(models):
        for mode, value in _published_speedups(inputs.models[model].role).items():
            label = None if mode in labelled else f"published {mode} (Tables 3, 5)"
            labelled.add(mode)
            style = "--" if mode == "sync" else ":"
            ax.hlines(
                value, i - 0.45, i + 0.45, colors="k", linestyles=style, linewidth=1.2, label=label
            )
            ax.text(i + 0.46, value, f"{value:.1f}×", va="center", fontsize=7)
    ax.axhline(1.0, color="0.3", linewidth=0.8)
    ax.set_xticks(
        range(len(models)),
        [
            f"{m}\n({pub.ROLES[inputs.models[m].role]})" if inputs.models[m].role else m
            for m in models
        ],
    )
    ax.set_ylabel("speed-up over PyTorch f32 (FPS ratio, batch 1)")
    ax.set_title("OpenVINO vs PyTorch, batch 1 (published marks: Tables 3 and 5)")
    fg.legend_outside(ax)
    fg.savefig(fig, path)


def figure_batch(inputs: ReportInputs, path: Path) -> None:
    """FPS vs batch per framework and model; failed (OOM/timeout) points omitted and marked ×."""
    models = list(inputs.models.values())
    n = max(1, len(models))
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    fig, axes = fg.new_figure(nrows, ncols, panel_size=(4.6, 3.4))
    flat = list(axes.ravel())
    for ax in flat[len(models) :]:
        ax.set_visible(False)
    if not models:
        flat[0].set_visible(True)
        fg.placeholder(flat[0], "no models")
    for ax, m in zip(flat, models, strict=False):
        threads = main_threads(m.bench)
        bench = m.bench[m.bench["threads"] == threads]
        combos = (
            bench[["backend", "precision", "mode"]]
            .drop_duplicates()
            .pipe(sort_configs)
            .itertuples(index=False, name=None)
        )
        any_line = False
        failed_any = False
        for c, (backend, precision, mode) in enumerate(combos):
            sub = bench[
                (bench["backend"] == backend)
                & (bench["precision"] == precision)
                & (bench["mode"] == mode)
            ]
            if sub["batch"].nunique() < 2:
                continue
            if mode == "async":
                nreq = 4 if (sub["nreq"] == 4).any() else sub["nreq"].max()
                sub = sub[sub["nreq"] == nreq]
            ok = sub[sub["status"] == "ok"].sort_values("batch")
            bad = sub[(sub["status"] != "ok") & ~sub["batch"].isin(ok["batch"])]
            label = config_label(
                backend, precision, mode, sub["nreq"].iloc[0] if mode == "async" else None
            )
            col = fg.color(c)
            ax.plot(ok["batch"], ok["fps"], marker="o", color=col, label=label)
            any_line = True
            if not bad.empty:
                failed_any = True
                ax.scatter(
                    bad["batch"],
                    [0.03 + 0.04 * c] * len(bad),
                    marker="x",
                    color=col,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                    zorder=5,
                )
        if not any_line:
            fg.placeholder(ax, f"{m.name}: no batch sweep")
            continue
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("throughput (FPS)")
        ax.set_title(f"{m.name}, {threads} threads" + ("  (× = OOM/timeout)" if failed_any else ""))
        ax.legend(frameon=False, fontsize=7)
    fg.savefig(fig, path)


def figure_error_cdf(
    inputs: ReportInputs, errors: dict[tuple[str, str], np.ndarray], path: Path
) -> None:
    """Cumulative share of landmarks within r mm per model and backend, published SDR marks."""
    fig, axes = fg.new_figure(1, 1, panel_size=(7.0, 4.2))
    ax = axes[0, 0]
    if not errors:
        fg.placeholder(ax, "no predictions")
        fg.savefig(fig, path)
        return
    styles = {"pytorch_fp32": "-", "openvino_fp32": "--", "openvino_int8": ":"}
    models = list(inputs.models)
    rmax = max(6.0, max(float(e.max()) for e in errors.values()) * 1.05)
    for (model, backend), e in errors.items():
        v = np.sort(e.ravel())
        y = np.arange(1, v.size + 1) / v.size
        ax.step(
            np.r_[0.0, v, rmax],
            np.r_[0.0, y, 1.0],
            where="post",
            color=fg.color(models.index(model)),
            linestyle=styles.get(backend, "-"),
            label=f"{model} {backend}",
        )
    for i, model in enumerate(models):
        role = inputs.models[model].role
        if role:
            radii = list(pub.TABLE2_SDR[role])
            ax.scatter(
                radii,
                [pub.TABLE2_SDR[role][r] for r in radii],
                marker="D",
                facecolors="none",
                edgecolors=fg.color(i),
                zorder=5,
                label=f"published {pub.ROLES[role]} (Table 2)",
            )
    for r in SDR_RADII:
        ax.axvline(r, color="0.5", linewidth=0.8, linestyle="-.")
    ax.set_xlim(0, rmax)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("radial error r (mm)")
    ax.set_ylabel("share of landmarks with error ≤ r")
    ax.set_title("Success detection rate vs radius (test cases)")
    fg.legend_outside(ax)
    fg.savefig(fig, path)


def figure_training(inputs: ReportInputs, path: Path) -> None:
    """Training and validation loss, and the validation metric, per epoch."""
    fig, axes = fg.new_figure(1, 2, panel_size=(4.6, 3.4))
    ax_loss, ax_metric = axes[0]
    for i, m in enumerate(inputs.models.values()):
        h = m.history.sort_values("epoch")
        ax_loss.plot(h["epoch"], h["train_loss"], color=fg.color(i), label=f"{m.name} train")
        ax_loss.plot(
            h["epoch"], h["val_loss"], color=fg.color(i), linestyle="--", label=f"{m.name} val"
        )
        ax_metric.plot(h["epoch"], h["val_metric"], color=fg.color(i), marker=".", label=m.name)
    losses = (
        pd.concat([m.history[["train_loss", "val_loss"]] for m in inputs.models.values()])
        if inputs.models
        else pd.DataFrame()
    )
    if not losses.empty and (losses.to_numpy() > 0).all():
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss (solid: train, dashed: validation)")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("validation metric (higher is better)")
    ax_metric.set_title("validation metric")
    if inputs.models:
        ax_loss.legend(frameon=False, fontsize=7)
        ax_metric.legend(frameon=False, fontsize=7)
    fg.savefig(fig, path)


def figure_perf(perf: pd.DataFrame, path: Path, top: int = 8) -> None:
    """Stacked bars of the OpenVINO time share per node type, per model and precision."""
    fig, axes = fg.new_figure(
        1, 1, panel_size=(8.0, 0.5 + 0.45 * max(2, perf.groupby(["model", "precision"]).ngroups))
    )
    ax = axes[0, 0]
    if perf.empty:
        fg.placeholder(ax, "no OpenVINO performance counters")
        fg.savefig(fig, path)
        return
    totals = perf.groupby("node_type")["share_calc"].sum().sort_values(ascending=False)
    keep = list(totals.index[:top])
    groups = list(perf.groupby(["model", "precision"], sort=False))
    for y, (_key, g) in enumerate(groups):
        left = 0.0
        shares = {k: float(g.loc[g["node_type"] == k, "share_calc"].sum()) for k in keep}
        shares["other"] = max(0.0, float(g["share_calc"].sum()) - sum(shares.values()))
        for j, (k, v) in enumerate(shares.items()):
            ax.barh(
                y,
                v,
                left=left,
                color=fg.color(j) if k != "other" else "0.75",
                label=k if y == 0 else None,
            )
            left += v
    ax.set_yticks(range(len(groups)), [f"{m} {p}" for (m, p), _ in groups])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of OpenVINO inference time")
    ax.set_title("OpenVINO time per node type (performance counters)")
    fg.legend_outside(ax)
    fg.savefig(fig, path)


def mm_to_voxel(
    mm: np.ndarray, origin: np.ndarray, spacing: np.ndarray, direction: np.ndarray
) -> np.ndarray:
    """Continuous voxel indices of LPS points, inverting ``mm = origin + direction @ (spacing * index)``.

    Args:
        mm: ``(..., 3)`` points in mm.
        origin: ``(3,)`` mm.
        spacing: ``(3,)`` mm.
        direction: ``(3, 3)``, columns are the voxel axes.

    Returns:
        ``(..., 3)`` continuous indices ``(i, j, k)``.
    """
    return mm_to_index(Grid(origin, spacing, direction, size=(1, 1, 1)), mm)


def example_case(inputs: ReportInputs, table1: pd.DataFrame) -> tuple[str, str, str] | None:
    """``(model, backend, case_id)``: the most accurate model and its median-error test case."""
    if table1.empty:
        return None
    pt = table1[table1["backend"] == "pytorch_fp32"]
    best = (pt if not pt.empty else table1).sort_values("total").iloc[0]
    model, backend = str(best["model"]), str(best["backend"])
    pred = inputs.models[model].predictions
    per_case = (
        pred[pred["backend"] == backend].groupby("case_id")["error_calc"].mean().sort_values()
    )
    case = str(per_case.index[(len(per_case) - 1) // 2])
    return model, backend, case


def figure_landmarks(inputs: ReportInputs, table1: pd.DataFrame, path: Path) -> str:
    """Three orthogonal slices through the ground-truth landmarks' centroid, GT and predictions.

    Returns:
        A one-line description of what is shown (for the report).
    """
    fig, axes = fg.new_figure(1, 3, panel_size=(3.6, 3.6))
    choice = example_case(inputs, table1)
    if choice is None:
        fg.placeholder(axes[0, 0], "no predictions")
        fg.savefig(fig, path)
        return "no predictions"
    model, backend, case = choice
    ds = inputs.dataset
    idx = int(np.flatnonzero(ds["case_id"] == case)[0])
    img = ds["images"][idx]
    grid = (ds["origin"][idx], ds["spacing"][idx], ds["direction"][idx])
    pred = inputs.models[model].predictions
    sub = pred[(pred["backend"] == backend) & (pred["case_id"] == case)].set_index("landmark")
    names = [lab for lab in inputs.labels if lab in sub.index]
    gt_v = mm_to_voxel(sub.loc[names, ["gt_x", "gt_y", "gt_z"]].to_numpy(), *grid)
    pr_v = mm_to_voxel(sub.loc[names, ["pred_x", "pred_y", "pred_z"]].to_numpy(), *grid)
    centre = np.clip(np.round(gt_v.mean(axis=0)).astype(int), 0, np.array(img.shape) - 1)
    sp = grid[1]
    # (slice axis, horizontal axis, vertical axis, title, vertical axis points up?)
    views = (
        (2, 0, 1, "axial (z = {})", False),
        (1, 0, 2, "coronal (y = {})", True),
        (0, 1, 2, "sagittal (x = {})", True),
    )
    vmin, vmax = np.percentile(img, [1, 99.5])
    for ax, (s, h, v, title, up) in zip(axes[0], views, strict=True):
        plane = np.take(img, centre[s], axis=s)
        # after removing axis s the remaining axes keep their order; put v on rows, h on columns
        plane = plane.T if h < v else plane
        ax.imshow(
            plane,
            cmap="gray",
            vmin=vmin,
            vmax=vmax,
            origin="lower" if up else "upper",
            aspect=sp[v] / sp[h],
            interpolation="nearest",
        )
        ax.scatter(
            gt_v[:, h],
            gt_v[:, v],
            s=36,
            facecolors="none",
            edgecolors="#00FF00",
            linewidths=1.4,
            label="ground truth",
        )
        ax.scatter(
            pr_v[:, h],
            pr_v[:, v],
            s=36,
            marker="x",
            color="#FF3030",
            linewidths=1.4,
            label=f"{model} ({backend})",
        )
        for name, (x, y) in zip(names, gt_v[:, [h, v]], strict=True):
            ax.annotate(
                name, (x, y), xytext=(4, 4), textcoords="offset points", color="yellow", fontsize=7
            )
        ax.set_title(title.format(centre[s]))
        ax.set_xlabel("xyz"[h] + " (voxel)")
        ax.set_ylabel("xyz"[v] + " (voxel)")
        ax.grid(False)
    axes[0, 0].legend(loc="lower left", fontsize=7, framealpha=0.7)
    fig.suptitle(f"test case {case}: landmarks projected onto slices through their centroid")
    fg.savefig(fig, path)
    return f"test case `{case}` (median per-case error of {model}, {backend})"
