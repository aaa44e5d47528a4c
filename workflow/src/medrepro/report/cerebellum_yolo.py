"""Stage ``yolo-report``: Tables 1-2, Figs. 4-10, transfer, deployment, claims, report.md.

Reproduces the evaluation of Ramos et al., "Deep learning approach for cerebellum localization
in prenatal ultrasound images" (SPIE 2020): best YOLOv1 checkpoint per grid size S (Table 1, Fig.
4), tiny YOLO over momentum x learning rate (Table 2, Fig. 10), predicted vs annotated boxes (Figs.
5-8); beyond the paper, transfer learning vs scratch and PyTorch vs OpenVINO FP32 / INT8.

Every number written here is computed from the pipeline's artefacts (``docs/cerebellum_yolo.md``);
the only typed-in numbers are the paper's, in :mod:`medrepro.report.published.cerebellum_yolo`,
always labelled "published". All inputs are read and validated (and the example predictions
computed) before anything is written, so a missing or malformed artefact raises
:class:`~medrepro.io.errors.InputError` and leaves no output behind.

Example:
    python -m medrepro yolo-report --results-dir results/cerebellum_yolo \\
        --runs yolo_s7 yolo_s9 yolo_s7_scratch tiny_m09_lr5em3 --config-json config.json --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from medrepro.io.atomic import write_csv
from medrepro.report.brain_extraction_claims import fmt
from medrepro.report.cerebellum_yolo_claims import build_claims
from medrepro.report.cerebellum_yolo_figures import (
    figure_ap_f1,
    figure_box_statistics,
    figure_false_positives,
    figure_predictions,
    figure_tiny_grid,
)
from medrepro.report.cerebellum_yolo_inputs import REFERENCE, ReportInputs, load_inputs
from medrepro.report.cerebellum_yolo_tables import (
    annotation_table,
    deployment_table,
    run_summaries,
    speed_rows,
    table1_yolo_best,
    table2_tiny_grid,
    transfer_table,
)
from medrepro.report.claims import Claim, claims_frame
from medrepro.report.document import (
    provenance_section,
    report_header,
    write_claims_provenance_report,
)
from medrepro.report.markdown import bullets, to_markdown
from medrepro.report.published import cerebellum_yolo as pub

__all__ = [
    "OUTPUTS",
    "FIGURES",
    "TABLES",
    "Tables",
    "compute_tables",
    "volume_leak",
    "render_report",
    "write_report",
    "build_parser",
    "main",
]

#: figure file -> caption in report.md
FIGURES: dict[str, str] = {
    "figures/fig4_ap_f1_iterations.png": "Fig. 4: AP and F1 on the test images vs iterations "
    "(batches) per grid size S; dotted: published best AP (Table 1).",
    "figures/fig10_false_positives.png": "Fig. 10: false positives on the test images vs "
    "iterations of the tiny YOLO runs, one panel per learning rate.",
    "figures/fig5_8_predictions.png": "Figs. 5-8: fixed test images with the predicted top box "
    "(red) and the annotation (green), one row per S (best checkpoint) and the deployed model.",
    "figures/tiny_grid.png": "Table 2 as curves: best AP and F1 vs momentum per learning rate "
    "(published dashed), and AP vs iterations of the tiny runs.",
    "figures/box_statistics.png": "Annotation boxes: size (fractions of W, H), centres, "
    "connected components per mask.",
}
#: table file -> attribute of :class:`Tables`
TABLES: dict[str, str] = {
    "tables/table1_yolo_best.csv": "table1",
    "tables/table2_tiny_grid.csv": "table2",
    "tables/transfer.csv": "transfer",
    "tables/deployment.csv": "deployment",
    "tables/annotations.csv": "annotations",
}
#: files the stage writes, relative to the output directory (for Snakemake ``output:``)
OUTPUTS: tuple[str, ...] = (*TABLES, *FIGURES, "claims.csv", "provenance.json", "report.md")


class Tables:
    """Every table and claim of the report, computed from validated inputs (nothing written)."""

    def __init__(self, inputs: ReportInputs) -> None:
        self.summary = run_summaries(inputs)
        self.table1 = table1_yolo_best(self.summary)
        self.table2 = table2_tiny_grid(self.summary)
        self.transfer = transfer_table(inputs, self.summary)
        self.speed = speed_rows(inputs.bench)
        self.deployment = deployment_table(inputs, self.speed)
        self.annotations = annotation_table(inputs.boxes)
        self.claims: list[Claim] = build_claims(
            inputs, self.summary, self.transfer, self.deployment
        )


def compute_tables(inputs: ReportInputs) -> Tables:
    """All tables and claims of the report."""
    return Tables(inputs)


def volume_leak(boxes: pd.DataFrame) -> tuple[int, int]:
    """``(test images whose volume also has training images, test images)``."""
    train = set(boxes.loc[boxes["split"] != "test", "volume_id"])
    test = boxes[boxes["split"] == "test"]
    return int(test["volume_id"].isin(train).sum()), len(test)


def _section_setup(inputs: ReportInputs, tables: Tables) -> list[str]:
    b = inputs.block
    synthetic = b.get("data_dir") in (None, "")
    leak, n_test = volume_leak(inputs.boxes)
    ann = tables.annotations[tables.annotations["split"] == "all"].iloc[0]
    training = b.get("training") if isinstance(b.get("training"), dict) else {}
    kwargs = b.get("arch_kwargs") if isinstance(b.get("arch_kwargs"), dict) else {}
    items = [
        f"Scale `{b.get('scale') or 'not recorded'}`, seed `{inputs.seed}`, runs: "
        + ", ".join(f"`{r}`" for r in inputs.runs)
        + ".",
        (
            "Data: **synthetic transcerebellar ultrasound phantoms** (`us-phantoms`), not patient "
            "data"
            if synthetic
            else f"Data: the user's cohort at `{b.get('data_dir')}`"
        )
        + f": {int(ann['n_images'])} images from {int(ann['n_volumes'])} volumes, "
        f"{int(ann['n_empty'])} empty masks, {int(ann['n_multi_component'])} masks with several "
        f"components (one union box). Published: {pub.SETUP['data']}.",
        f"Split `{b.get('split', 'not recorded')}`: {n_test} test images, {leak} of them from a "
        "volume that also has training images"
        + (" (the paper's random split leaks volumes the same way)." if leak else "."),
        f"Training per run: batch {training.get('batch_size', '?')}, "
        f"{training.get('iterations', '?')} batches, a checkpoint every "
        f"{training.get('checkpoint_every', '?')}, each evaluated on the **test** images (the "
        f"paper's protocol; best-checkpoint numbers are therefore optimistic). Published: "
        f"{pub.SETUP['training']}.",
        "Networks: "
        + "; ".join(
            f"{a} " + ", ".join(f"{k}={x}" for k, x in v.items())
            if isinstance(v, dict)
            else f"{a} {v}"
            for a, v in kwargs.items()
        )
        + f" (published: {pub.SETUP['inputs']}, full width). Confidence threshold "
        f"{inputs.options['conf_threshold']:g} for F1 and false positives; AP uses the top box "
        "regardless (an annotated image without a box counts IoU 0).",
        "Pre-training: a **synthetic stand-in source task** (`yolo-pretrain`), because ImageNet "
        "cannot be fetched; the paper used ImageNet-pretrained Darknet convolutions. "
        + "; ".join(
            f"{arch}: {int(h['iteration'].max())} iterations, final accuracy "
            f"{fmt(float(h['accuracy'].iloc[-1]), 3)}"
            for arch, h in inputs.pretrain.items()
        )
        + ".",
    ]
    return ["## Setup and data", "", bullets(items), ""]


def _section_table1(t1: pd.DataFrame) -> list[str]:
    cols = [
        "S", "cells", "status", "run", "best_ap", "published_ap", "best_iteration",
        "published_iteration", "f1_at_best", "final_ap", "iterations_to_near_peak",
    ]  # fmt: skip
    return [
        "## Table 1: best YOLOv1 checkpoint per grid size S",
        "",
        "AP = mean IoU of the top box over the annotated test images (fraction; the paper gives "
        "percent); iterations in batches; `iterations_to_near_peak`: first checkpoint within "
        f"the near-peak share of the run's best AP. Columns `published_*`: {pub.LABEL}.",
        "",
        to_markdown(
            t1[cols],
            {
                "best_ap": 4,
                "published_ap": 4,
                "f1_at_best": 3,
                "final_ap": 4,
                "S": 0,
                "cells": 0,
                "best_iteration": 0,
                "published_iteration": 0,
                "iterations_to_near_peak": 0,
            },  # fmt: skip
        ),
        "",
    ]


def _section_table2(t2: pd.DataFrame) -> list[str]:
    cols = [
        "momentum", "lr", "status", "run", "best_ap", "published_ap", "best_f1", "published_f1",
        "f1_at_best", "ap_std", "fp_std", "fp_first", "fp_last", "fp_decreasing",
        "published_fp_decreasing",
    ]  # fmt: skip
    df = t2[cols].copy()
    df["lr"] = [f"{v:g}" for v in df["lr"]]
    df["momentum"] = [f"{v:g}" for v in df["momentum"]]
    return [
        "## Table 2: tiny YOLO, momentum x learning rate",
        "",
        "`best_ap`: best AP over the checkpoints; `best_f1`: best F1 over the checkpoints (Table "
        "2 'best models'), `f1_at_best`: F1 of the best-AP checkpoint; `ap_std`, `fp_std`: "
        "standard deviation over the checkpoints (instability); FP decreasing: Spearman rho("
        "iteration, FP) below the threshold and fewer FP at the end (Fig. 10). Published: "
        f"{pub.STATEMENTS['tiny_unstable']}.",
        "",
        to_markdown(
            df,
            {
                "best_ap": 3,
                "published_ap": 2,
                "best_f1": 3,
                "published_f1": 2,
                "f1_at_best": 3,
                "ap_std": 3,
                "fp_std": 2,
                "fp_first": 0,
                "fp_last": 0,
            },
        ),  # fmt: skip
        "",
    ]


def _section_transfer(tr: pd.DataFrame) -> list[str]:
    out = [
        "## Transfer learning (beyond the paper's tables)",
        "",
        "Pre-trained encoder (synthetic stand-in task, not ImageNet) vs training from scratch, "
        "same S and schedule. The paper reports no from-scratch run.",
        "",
    ]
    if tr.empty:
        return [*out, "No from-scratch run was done.", ""]
    return [*out, to_markdown(tr, {"S": 0, "best_ap": 4, "first_ap": 4, "final_ap": 4,
                                   "mean_ap": 4, "pretrain_final_accuracy": 3,
                                   "pretrain_iterations": 0}), ""]  # fmt: skip


def _section_deployment(inputs: ReportInputs, dep: pd.DataFrame) -> list[str]:
    q = inputs.quantization
    best = inputs.best
    cols = [
        "config", "ap", "f1", "tp", "fp", "fn", "n_images", "ap_drop_vs_pytorch", "bench_status",
        "latency_median_ms", "speedup_vs_pytorch", "peak_rss_mb", "parity_max_abs_diff",
    ]  # fmt: skip
    df = dep[cols].copy()
    df["parity_max_abs_diff"] = [
        "–" if pd.isna(v) else f"{v:.1e}" for v in df["parity_max_abs_diff"]
    ]
    return [
        "## Deployment (beyond the paper): PyTorch vs OpenVINO FP32 vs INT8",
        "",
        f"Best YOLOv1 run `{best['run']}` (checkpoint {best['iteration']} batches, AP "
        f"{fmt(best['ap'], 4)} in `best.json`), exported to OpenVINO IR and quantized with NNCF "
        f"accuracy control (validation AP {fmt(float(q['metric_fp32']), 4)} -> "
        f"{fmt(float(q['metric_int8']), 4)}, drop {fmt(float(q['drop']), 4)}, max_drop "
        f"{inputs.options['max_drop']:g}). Scores on the test images; latency: median of the "
        "batch-1 sync benchmark (ms) at the largest thread count.",
        "",
        to_markdown(
            df,
            {
                "ap": 4,
                "f1": 3,
                "ap_drop_vs_pytorch": 4,
                "latency_median_ms": 2,
                "speedup_vs_pytorch": 2,
                "peak_rss_mb": 0,
            },
        ),  # fmt: skip
        "",
    ]


def _section_annotations(ann: pd.DataFrame) -> list[str]:
    return [
        "## Annotation boxes",
        "",
        "Mask -> half-open union box; sizes and centres as fractions of the image width W and "
        "height H.",
        "",
        to_markdown(ann, 3),
        "",
    ]


def _section_figures() -> list[str]:
    out = ["## Figures", ""]
    out += [f"- [{rel}]({rel}): {cap}" for rel, cap in FIGURES.items()]
    out += [""]
    for rel in FIGURES:
        out += [f"![{Path(rel).stem}]({rel})", ""]
    return out


def _section_caveats(inputs: ReportInputs) -> list[str]:
    synthetic = inputs.block.get("data_dir") in (None, "")
    items = [
        "Absolute AP and F1 come from "
        + ("synthetic phantoms" if synthetic else "the user's data")
        + f", not from the paper's {pub.N_IMAGES} INPER images; compare relations (S vs S, "
        "YOLOv1 vs tiny, momentum) rather than levels.",
        "Checkpoints are scored and selected on the test images, as in the paper; the best AP "
        "is an optimistic estimate.",
        "AP is the paper's mean IoU of the top box, not VOC average precision.",
        "The YOLOv1 here has batch normalisation after each convolution (a deviation from "
        "darknet's yolov1.cfg) and, at reduced scales, narrower layers and fewer batches.",
        "The stand-in pre-training transfers generic low-level features only; the transfer "
        "claim tests that mechanism, not ImageNet.",
    ]
    return ["## Caveats", "", bullets(items), ""]


def _section_system(inputs: ReportInputs) -> list[str]:
    s = inputs.sysinfo
    versions = s.get("versions") if isinstance(s.get("versions"), dict) else {}
    items = [
        f"CPU: {s.get('cpu_model', 'unknown')}; logical CPUs {s.get('logical_cpus', '?')}.",
        "Versions: " + (", ".join(f"{k} {v}" for k, v in versions.items() if v) or "n/a") + ".",
        f"Paper: {pub.SETUP['framework']}.",
    ]
    return ["## System", "", bullets(items), ""]


def render_report(inputs: ReportInputs, tables: Tables, prov: dict[str, Any]) -> str:
    """The Markdown report; every number comes from ``tables``, ``inputs`` or :mod:`pub`."""
    lines = report_header(
        "Cerebellum localisation with YOLO (paper 004) — reproduction report",
        pub.CITATION,
        "yolo-report",
        pub.LABEL,
    )
    lines += _section_setup(inputs, tables)
    lines += _section_table1(tables.table1)
    lines += _section_table2(tables.table2)
    lines += _section_transfer(tables.transfer)
    lines += _section_deployment(inputs, tables.deployment)
    lines += _section_annotations(tables.annotations)
    lines += ["## Claims", "", to_markdown(claims_frame(tables.claims)), ""]
    lines += _section_figures()
    lines += _section_caveats(inputs)
    lines += _section_system(inputs)
    lines += provenance_section(prov)
    return "\n".join(lines)


def write_report(inputs: ReportInputs, out_dir: Path | None = None) -> list[Path]:
    """Compute everything from validated inputs, then write :data:`OUTPUTS` (``report.md`` last).

    Args:
        inputs: validated inputs.
        out_dir: output directory (default: the results directory).

    Returns:
        The files written.
    """
    out = Path(out_dir) if out_dir is not None else inputs.results_dir
    tables = compute_tables(inputs)
    for rel, attr in TABLES.items():
        write_csv(getattr(tables, attr), out / rel, float_format="%.6g")
    conf = float(inputs.options["conf_threshold"])
    figure_ap_f1(inputs.runs, inputs.checkpoints, out / "figures/fig4_ap_f1_iterations.png")
    figure_false_positives(inputs.runs, inputs.checkpoints, out / "figures/fig10_false_positives.png")  # fmt: skip
    figure_predictions(inputs.examples, conf, out / "figures/fig5_8_predictions.png")
    figure_tiny_grid(tables.table2, inputs.runs, inputs.checkpoints, out / "figures/tiny_grid.png")
    figure_box_statistics(inputs.boxes, out / "figures/box_statistics.png")
    write_claims_provenance_report(
        out,
        tables.claims,
        inputs.config,
        inputs.seed,
        inputs.paths,
        report={
            "stage": "yolo-report",
            "runs": list(inputs.runs),
            "best": inputs.best,
            "options": inputs.options,
            "examples": [] if inputs.examples is None else inputs.examples.image_ids,
            "reference": REFERENCE,
        },
        render=lambda prov: render_report(inputs, tables, prov),
    )
    return [out / rel for rel in OUTPUTS]


def build_parser() -> argparse.ArgumentParser:
    """The stage's argument parser."""
    p = argparse.ArgumentParser(prog="medrepro yolo-report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", type=Path, default=Path("results/cerebellum_yolo"),
                   help="paper results directory (inputs)")  # fmt: skip
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where report.md, tables/, figures/ go (default: --results-dir)")  # fmt: skip
    p.add_argument("--runs", nargs="+", required=True,
                   help="experiment runs done (directories under models/, keys of experiments)")  # fmt: skip
    p.add_argument("--config-json", default=None,
                   help="the configuration (whole config or the cerebellum_yolo block, scale "
                   "merged or with scales): inline JSON or a path")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="the run's seed (provenance)")
    p.add_argument("--n-examples", type=int, default=3,
                   help="test images shown in Figs. 5-8 (evenly spaced by image_id)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads for the example predictions")  # fmt: skip
    p.add_argument("--noise-margin", type=float, default=0.05,
                   help="relative margin a speed-up must exceed to count as faster")  # fmt: skip
    p.add_argument("--identical-ap", type=float, default=1e-3,
                   help="largest |AP difference| that counts as keeping PyTorch's AP")  # fmt: skip
    p.add_argument("--far-margin", type=float, default=0.1,
                   help="median AP gap for 'tiny YOLO far lower than YOLOv1'")  # fmt: skip
    p.add_argument("--high-f1", type=float, default=0.9, help="smallest F1 counted as high")
    p.add_argument("--near-peak", type=float, default=0.95,
                   help="share of the best AP that counts as (nearly) peaked")  # fmt: skip
    p.add_argument("--fp-trend-rho", type=float, default=0.5,
                   help="FP decreasing when Spearman rho(iteration, FP) <= -this")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status (InputError propagates to the CLI, status 2)."""
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, int(args.threads)))
    inputs = load_inputs(args)
    written = write_report(inputs, args.out_dir)
    print(f"yolo-report: wrote {len(written)} files under {args.out_dir or inputs.results_dir}")
    return 0
