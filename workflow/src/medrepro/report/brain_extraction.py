"""Stage ``brain-report``: Table 4, routes, quantization, core scaling, figures, claims, report.md.

Reproduces the evaluation of Thakur et al., "Optimization of Deep Learning Based Brain
Extraction in MRI for Low Resource Environments" (BrainLes 2021): Dice and HD95 of PyTorch vs
OpenVINO FP32 vs INT8, memory and latency normalised to PyTorch (Table 4), qualitative slices
(Fig. 4), core scaling (Fig. 5), plus the conversion routes (ONNX -> IR vs direct), both NNCF
quantization modes, registration QC and Dice per modality.

Every number written here is computed from the pipeline's artefacts (``docs/brain_extraction.md``);
the only typed-in numbers are the paper's, in :mod:`medrepro.report.published.brain_extraction`,
always labelled "published". All inputs are read and validated before anything is written, so a
missing or malformed artefact raises :class:`~medrepro.io.errors.InputError` and leaves no
partial report behind.

Example:
    python -m medrepro brain-report --results-dir results/brain_extraction --model resunet \\
        --scaling-threads 1 2 --config-json config.json --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from medrepro.io.atomic import write_csv
from medrepro.report.brain_extraction_claims import build_claims
from medrepro.report.brain_extraction_discussion import cpu_flags, discussion
from medrepro.report.brain_extraction_figures import (
    CONFIG_NAMES,
    figure_core_scaling,
    figure_dice,
    figure_qc,
    figure_qualitative,
    figure_speed_memory,
)
from medrepro.report.brain_extraction_inputs import REFERENCE, ReportInputs, load_inputs
from medrepro.report.brain_extraction_tables import (
    accuracy_summary,
    core_scaling_table,
    per_modality_table,
    qc_table,
    quantization_table,
    routes_table,
    speed_rows,
    table4_summary,
)
from medrepro.report.cephalometry_tables import BACKEND_NAMES
from medrepro.report.claims import Claim, claims_frame
from medrepro.report.document import (
    provenance_section,
    report_header,
    write_claims_provenance_report,
)
from medrepro.report.markdown import bullets, format_value, to_markdown
from medrepro.report.published import brain_extraction as pub

__all__ = [
    "OUTPUTS",
    "FIGURES",
    "CPU_FLAGS_OF_INTEREST",
    "Tables",
    "compute_tables",
    "render_report",
    "write_report",
    "build_parser",
    "main",
]

#: CPU flags named in the system summary
CPU_FLAGS_OF_INTEREST = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

#: figure file -> caption in report.md
FIGURES: dict[str, str] = {
    "figures/fig4_qualitative.png": "Fig. 4: native t1ce slices with ground truth and the "
    "PyTorch FP32, OpenVINO FP32 and INT8 masks ({example}).",
    "figures/fig5_core_scaling.png": "Fig. 5: batch-1 latency (ms) and speed-up over PyTorch f32 "
    "at the fewest threads, vs inference threads.",
    "figures/qc_registration.png": "Registration QC: Dice of each subject's registered mask with "
    "the atlas mask; threshold dashed; failures ×.",
    "figures/dice_by_config.png": "Dice and HD95 (mm) per test item and configuration; diamonds: "
    "published Table 4 means.",
    "figures/speed_memory.png": "Latency speed-up and peak memory over PyTorch f32 (batch 1 "
    "sync); diamonds: published values.",
}

#: files the stage writes, relative to the results directory (for Snakemake ``output:``)
OUTPUTS: tuple[str, ...] = (
    "tables/table4_summary.csv",
    "tables/routes.csv",
    "tables/quantization.csv",
    "tables/core_scaling.csv",
    "tables/qc.csv",
    "tables/per_modality.csv",
    *FIGURES,
    "claims.csv",
    "provenance.json",
    "report.md",
)


class Tables:
    """Every table of the report, computed from validated inputs (no file is written)."""

    def __init__(self, inputs: ReportInputs) -> None:
        self.accuracy = accuracy_summary(inputs)
        self.speed = speed_rows(inputs.bench)
        self.table4 = table4_summary(inputs, self.accuracy, self.speed)
        self.routes = routes_table(inputs, self.accuracy)
        self.quantization = quantization_table(inputs, self.accuracy)
        self.scaling = core_scaling_table(inputs)
        self.qc = qc_table(inputs)
        self.per_modality = per_modality_table(inputs)
        self.claims: list[Claim] = build_claims(
            inputs, self.table4, self.speed, self.routes, self.scaling
        )


def compute_tables(inputs: ReportInputs) -> Tables:
    """All tables and claims of the report."""
    return Tables(inputs)


def _hd95_cell(mean: Any, sd: Any, excluded: Any) -> str:
    text = f"{format_value(mean, 3)} ± {format_value(sd, 2)}"
    return text + (f" ({int(excluded)} excl.)" if excluded and not pd.isna(excluded) else "")


def _section_setup(inputs: ReportInputs) -> list[str]:
    b, ev = inputs.block, inputs.evaluation
    synthetic = b.get("data_dir") in (None, "")
    subjects = ev["subject_id"].nunique()
    mods = ", ".join(sorted(set(ev["modality"])))
    h = inputs.history.sort_values("epoch")
    shape = b.get("input_shape")
    items = [
        f"Scale `{b.get('scale') or 'not recorded'}`, seed `{inputs.seed}`, model "
        f"`{inputs.model}`.",
        (
            "Data: **synthetic multi-contrast MRI phantoms built on the MNI152 2009 template** "
            "(nilearn), with a synthetic skull, tumour and acquisition changes; not patient data."
            if synthetic
            else f"Data: the user's cohort at `{b.get('data_dir')}`."
        )
        + f" Published: {pub.N_TEST_IMAGES} TCGA-GBM test images (SRI24 space, 1 mm).",
        f"Test set: {subjects} subjects × modalities ({mods}), {len(ev[ev['config'] == REFERENCE])} "
        "items per configuration; metrics in each subject's native t1ce grid.",
        f"Network input {shape if shape else 'not recorded'} (published "
        f"{'×'.join(map(str, pub.INPUT_SHAPE[2:]))}); threshold "
        f"{format_value(inputs.options.get('threshold'), 2)} on the sigmoid output.",
    ]
    if not h.empty:
        items.append(
            f"Training: {int(h['epoch'].max())} epochs, final validation Dice "
            f"{format_value(h['val_metric'].iloc[-1], 4)} (best "
            f"{format_value(h['val_metric'].max(), 4)}), {format_value(h['seconds'].sum(), 0)} s."
        )
    return ["## Setup and data", "", bullets(items), ""]


def _section_qc(inputs: ReportInputs, qc: pd.DataFrame) -> list[str]:
    thr = inputs.options.get("qc_min_dice")
    failed = qc[~qc["qc_pass"]]
    excluded = qc[~qc["included"]]
    lines = [
        "## Preprocessing and registration QC",
        "",
        "BraTS protocol: LPS, rigid registration of t1ce to the atlas (N4 only to drive it), the "
        "other modalities co-registered to t1ce, one resampling. QC: Dice of the registered "
        f"ground-truth mask with the atlas mask, threshold {format_value(thr, 2)}.",
        "",
        f"{int(qc['qc_pass'].sum())} of {len(qc)} subjects pass; mask Dice vs atlas "
        f"{format_value(qc['mask_dice_vs_atlas'].min(), 3)}–"
        f"{format_value(qc['mask_dice_vs_atlas'].max(), 3)}.",
        "",
    ]
    if not failed.empty or not excluded.empty:
        cols = ["subject_id", "mask_dice_vs_atlas", "qc_pass", "included", "reason"]
        lines += [
            "Subjects failing QC or excluded:",
            "",
            to_markdown(pd.concat([failed, excluded]).drop_duplicates("subject_id")[cols], 3),
            "",
        ]
    else:
        lines += ["No subject failed QC or was excluded.", ""]
    return lines


def _section_table4(t4: pd.DataFrame) -> list[str]:
    ours = pd.DataFrame(
        {
            "source": "ours",
            "configuration": [CONFIG_NAMES.get(c, c) for c in t4["config"]],
            "framework": [
                f"{BACKEND_NAMES.get(f, f)} {v}".strip()
                for f, v in zip(t4["framework"], t4["version"], strict=True)
            ],
            "precision": t4["precision"],
            "items": t4["n_items"],
            "Dice": t4["dice_mean"],
            "HD95 (mm)": [
                _hd95_cell(m, s, e)
                for m, s, e in zip(t4["hd95_mean"], t4["hd95_sd"], t4["hd95_excluded"], strict=True)
            ],
            "memory (norm.)": t4["memory_norm"],
            "speed-up": t4["speedup"],
            "latency (ms)": t4["latency_median_ms"],
        }
    )
    published = pd.DataFrame(
        [
            {
                "source": "published",
                "configuration": pub.TABLE4_LABELS[key],
                "framework": f"{r['framework']} {r['version']}",
                "precision": r["precision"],
                "items": pub.N_TEST_IMAGES,
                "Dice": r["dice"],
                "HD95 (mm)": f"{r['hd95_mean']} ± {r['hd95_sd']}",
                "memory (norm.)": r["memory_norm"],
                "speed-up": r["speedup"],
                "latency (ms)": None,
            }
            for key, r in pub.TABLE4.items()
        ]
    )
    table = pd.concat([ours, published], ignore_index=True)
    return [
        "## Table 4: accuracy, memory, latency",
        "",
        "Ours: mean ± SD over the test items; HD95 (pooled, mm) excludes items where exactly one "
        "mask is empty (count shown as `excl.`); memory = peak RSS of the batch-1 sync benchmark "
        "process / PyTorch f32's; speed-up = PyTorch f32 median latency / the configuration's "
        "(same threads). Published memory and speed-up are normalised to **PyTorch 1.5.1**; the "
        f"text gives {pub.SPEEDUP_VS_PT190['openvino_fp32']}× (OpenVINO FP32) and "
        f"{pub.SPEEDUP_VS_PT190['openvino_int8']}× (INT8) against PyTorch 1.9.0.",
        "",
        to_markdown(
            table, {"Dice": 5, "memory (norm.)": 3, "speed-up": 2, "latency (ms)": 1, "items": 0}
        ),
        "",
    ]


def _section_routes(routes: pd.DataFrame) -> list[str]:
    cols = [
        "route",
        "description",
        "parity_max_abs_diff",
        "parity_tolerance",
        "dice_mean",
        "dice_diff_mean",
        "dice_absdiff_max",
        "hd95_mean",
        "hd95_diff_mean",
        "n_items",
    ]
    df = routes[cols].copy()
    for c in ("parity_max_abs_diff", "parity_tolerance", "dice_diff_mean", "dice_absdiff_max"):
        df[c] = [format_value(v, 2) if pd.isna(v) else f"{v:.1e}" for v in df[c]]
    return [
        "## Conversion routes",
        "",
        "Parity: max abs difference of the network's sigmoid output against PyTorch on held-out "
        "inputs (`export/parity.json`). Dice/HD95 (mm): test items after post-processing; "
        "differences are paired per item, route minus PyTorch FP32. "
        f"Published: {pub.STATEMENTS['onnx_route']}.",
        "",
        to_markdown(df, {"dice_mean": 5, "hd95_mean": 3, "hd95_diff_mean": 4, "n_items": 0}),
        "",
    ]


def _section_quantization(quant: pd.DataFrame) -> list[str]:
    return [
        "## INT8 quantization",
        "",
        "`accuracy_control`: `nncf.quantize_with_accuracy_control` (successor of the paper's POT "
        "AccuracyAware); `default`: plain `nncf.quantize`. Metric: mean Dice on the validation "
        "split at network resolution; FQ = activation FakeQuantize nodes (total: fully "
        "quantized model). Test Dice drops are on the native-space test items. Published: INT8 "
        f"Dice {pub.TABLE4['ov_int8']['dice']} vs FP32 {pub.TABLE4['ov_fp32']['dice']}; "
        f"{100 * pub.INT8_IOP_SHARE:.1f} % of operations integer (Section 4).",
        "",
        to_markdown(
            quant.drop(columns=["config"]),
            {
                "metric_fp32": 5,
                "metric_int8": 5,
                "drop": 5,
                "max_drop": 4,
                "fake_quantize_kept_share": 3,
                "seconds": 1,
                "test_dice_int8": 5,
                "test_dice_drop_vs_openvino_fp32": 5,
                "test_dice_drop_vs_pytorch_fp32": 5,
            },
        ),
        "",
    ]


def _section_scaling(scaling: pd.DataFrame, cores: int | None) -> list[str]:
    out = [
        "## Core scaling (Fig. 5)",
        "",
        "Batch-1 sync latency per thread count (one benchmark run per count, "
        "`benchmark/scaling/`); physical cores of the benchmark machine: "
        f"{cores if cores else 'unknown'}. Published: {pub.STATEMENTS['core_scaling']}.",
        "",
    ]
    if scaling.empty:
        return [*out, "No core-scaling benchmark was run.", ""]
    cols = [
        "threads",
        "label",
        "status",
        "latency_median_ms",
        "speedup_vs_pytorch_min_threads",
        "speedup_vs_pytorch_same_threads",
        "scaling_vs_own_min_threads",
        "peak_rss_mb",
    ]
    digits = {"latency_median_ms": 1, "peak_rss_mb": 0, "threads": 0}
    return [*out, to_markdown(scaling[cols], digits), ""]


def _section_modality(per_mod: pd.DataFrame) -> list[str]:
    df = per_mod.copy()
    df["HD95 (mm)"] = [
        _hd95_cell(m, s, e)
        for m, s, e in zip(df["hd95_mean"], df["hd95_sd"], df["hd95_excluded"], strict=True)
    ]
    df["configuration"] = [CONFIG_NAMES.get(c, c) for c in df["config"]]
    cols = ["configuration", "modality", "n_items", "dice_mean", "dice_sd", "HD95 (mm)"]
    return [
        "## Dice per input modality",
        "",
        "The model is modality-agnostic (one network for t1, t1ce, t2, flair); masks are compared "
        "in the native t1ce grid.",
        "",
        to_markdown(df[cols], {"dice_mean": 5, "dice_sd": 4, "n_items": 0}),
        "",
    ]


def _section_figures(example: str) -> list[str]:
    out = ["## Figures", ""]
    out += [f"- [{rel}]({rel}): {cap.format(example=example)}" for rel, cap in FIGURES.items()]
    out += ["", "![Fig. 4](figures/fig4_qualitative.png)", ""]
    out += ["![speed and memory](figures/speed_memory.png)", ""]
    out += ["![Fig. 5](figures/fig5_core_scaling.png)", ""]
    return out


def _section_system(inputs: ReportInputs) -> list[str]:
    s = inputs.sysinfo
    flags = cpu_flags(s)
    present = [f for f in CPU_FLAGS_OF_INTEREST if f in flags]
    versions = s.get("versions") if isinstance(s.get("versions"), dict) else {}
    items = [
        f"CPU: {s.get('cpu_model', 'unknown')}; logical CPUs {s.get('logical_cpus', '?')}; "
        f"flags of interest: {', '.join(present) or 'none'}.",
        f"OpenVINO capabilities: {', '.join(map(str, s.get('openvino_optimization_capabilities', []))) or 'n/a'}; "
        f"default precision hint {s.get('openvino_default_inference_precision', 'n/a')}.",
        "Versions: " + (", ".join(f"{k} {v}" for k, v in versions.items() if v) or "n/a") + ".",
        f"Paper, {pub.LABEL}: " + "; ".join(f"{k}: {v}" for k, v in pub.SETUP.items()) + ".",
    ]
    return ["## System", "", bullets(items), ""]


def render_report(inputs: ReportInputs, tables: Tables, example: str, prov: dict[str, Any]) -> str:
    """The Markdown report; every number comes from ``tables``, ``inputs`` or :mod:`pub`."""
    lines = report_header(
        "Brain extraction (paper 001): BrainMaGe with PyTorch, OpenVINO FP32 and INT8 — "
        "reproduction report",
        pub.CITATION,
        "brain-report",
        pub.LABEL,
    )
    lines += _section_setup(inputs)
    lines += _section_qc(inputs, tables.qc)
    lines += _section_table4(tables.table4)
    lines += _section_routes(tables.routes)
    lines += _section_quantization(tables.quantization)
    lines += _section_scaling(tables.scaling, inputs.options.get("physical_cores"))
    lines += _section_modality(tables.per_modality)
    lines += ["## Claims", "", to_markdown(claims_frame(tables.claims)), ""]
    lines += _section_figures(example)
    lines += _section_system(inputs)
    lines += ["## Discussion", "", bullets(discussion(inputs, tables.table4, tables.claims)), ""]
    lines += provenance_section(prov)
    return "\n".join(lines)


def write_report(inputs: ReportInputs) -> list[Path]:
    """Compute everything from validated inputs, then write :data:`OUTPUTS` (``report.md`` last).

    Returns:
        The files written.
    """
    out = inputs.results_dir
    tables = compute_tables(inputs)
    ff = "%.6g"
    write_csv(tables.table4, out / "tables/table4_summary.csv", float_format=ff)
    write_csv(tables.routes, out / "tables/routes.csv", float_format=ff)
    write_csv(tables.quantization, out / "tables/quantization.csv", float_format=ff)
    write_csv(tables.scaling, out / "tables/core_scaling.csv", float_format=ff)
    write_csv(tables.qc, out / "tables/qc.csv", float_format=ff)
    write_csv(tables.per_modality, out / "tables/per_modality.csv", float_format=ff)

    example = figure_qualitative(inputs.example, out / "figures/fig4_qualitative.png")
    figure_core_scaling(
        tables.scaling, inputs.options.get("physical_cores"), out / "figures/fig5_core_scaling.png"
    )
    figure_qc(tables.qc, out / "figures/qc_registration.png")
    figure_dice(inputs.evaluation, inputs.configs, out / "figures/dice_by_config.png")
    figure_speed_memory(tables.speed, out / "figures/speed_memory.png")

    write_claims_provenance_report(
        out,
        tables.claims,
        inputs.config,
        inputs.seed,
        inputs.paths,
        report={
            "stage": "brain-report",
            "model": inputs.model,
            "options": inputs.options,
            "example": example,
        },
        render=lambda prov: render_report(inputs, tables, example, prov),
    )
    return [out / rel for rel in OUTPUTS]


def build_parser() -> argparse.ArgumentParser:
    """The stage's argument parser."""
    p = argparse.ArgumentParser(prog="medrepro brain-report", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results/brain_extraction"),
        help="paper results directory (inputs)",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where report.md, tables/, figures/ go (default: --results-dir)",
    )
    p.add_argument("--model", default="resunet", help="model name (directory under models/)")
    p.add_argument(
        "--scaling-threads",
        type=int,
        nargs="*",
        default=[],
        help="thread counts k of benchmark/scaling/<model>_t<k>.csv (Fig. 5)",
    )
    p.add_argument(
        "--config-json",
        default=None,
        help="the run's configuration (whole config or the brain_extraction block): inline JSON "
        "or a path",
    )
    p.add_argument("--seed", type=int, default=None, help="the run's seed (provenance)")
    p.add_argument(
        "--physical-cores",
        type=int,
        default=None,
        help="physical cores of the benchmark machine (default: from sysinfo, else unknown)",
    )
    p.add_argument(
        "--noise-margin",
        type=float,
        default=0.05,
        help="relative margin a speed ratio must exceed to count as faster",
    )
    p.add_argument(
        "--identical-dice",
        type=float,
        default=1e-4,
        help="largest |mean Dice difference| that counts as identical (OpenVINO FP32 vs PyTorch)",
    )
    p.add_argument(
        "--negligible-dice",
        type=float,
        default=pub.NEGLIGIBLE_INT8_DICE_DROP,
        help="Dice drop below which a loss is negligible (INT8 claim, ONNX-route claim)",
    )
    p.add_argument(
        "--target-speedup",
        type=float,
        default=pub.SPEEDUP_VS_PT190["openvino_int8"],
        help="speed target of INT8 over PyTorch FP32 (default: the paper's 6.2x vs PyTorch 1.9)",
    )
    p.add_argument(
        "--target-dice-drop",
        type=float,
        default=0.005,
        help="largest INT8 Dice drop allowed by the speed target",
    )
    p.add_argument(
        "--parity-tolerance",
        type=float,
        default=1e-3,
        help="max abs output difference treated as parity when parity.json has no tolerance",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status (InputError propagates to the CLI, status 2)."""
    args = build_parser().parse_args(argv)
    inputs = load_inputs(args)
    if args.out_dir is not None:
        inputs.results_dir = Path(args.out_dir)
    written = write_report(inputs)
    print(f"brain-report: wrote {len(written)} files under {inputs.results_dir}")
    return 0
