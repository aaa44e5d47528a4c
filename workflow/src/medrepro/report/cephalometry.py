"""Stage ``ceph-report``: tables, figures, claims, ``report.md`` and ``provenance.json`` for paper 000.

Reproduces the evaluation of Vasiliev, Lachinov & Getmanskaya, "DL-inferencing for 3D
Cephalometric Landmarks Regression task using OpenVINO" (GraphiCon 2020): landmark accuracy
(Tables 1-2), batch-1 speed of PyTorch vs OpenVINO sync/async (Tables 3, 5) and batch sweeps
(Tables 4, 6), plus this project's deployment checks (parity, INT8, per-node profile).

Every number written here is computed from the pipeline's artefacts (see ``docs/architecture.md``);
the only typed-in numbers are the paper's, in :mod:`medrepro.report.published.cephalometry`, and
they are always labelled "published". All inputs are read and validated before anything is
written, so a missing or malformed artefact raises :class:`~medrepro.io.errors.InputError` and
leaves no partial report behind.

Example:
    python -m medrepro ceph-report --results-dir results/cephalometry \\
        --models vgg vgg_bn hourglass hourglass_deconv --paper-models vgg hourglass \\
        --config-json config.json --seed 0 \\
        --dataset results/cephalometry/preprocessed/dataset.npz \\
        --splits results/cephalometry/preprocessed/splits.csv
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.atomic import write_csv
from medrepro.report.cephalometry_claims import build_claims
from medrepro.report.cephalometry_discussion import discussion
from medrepro.report.cephalometry_figures import (
    figure_batch,
    figure_error_cdf,
    figure_landmarks,
    figure_perf,
    figure_speedup,
    figure_training,
    mm_to_voxel,
)
from medrepro.report.cephalometry_inputs import (
    BACKENDS,
    SDR_RADII,
    ModelArtefacts,
    ReportInputs,
    load_inputs,
)
from medrepro.report.cephalometry_tables import (
    accuracy_tables,
    batch_table,
    deployment_table,
    format_deployment_cell,
    perf_counter_table,
    speed_table,
)
from medrepro.report.claims import Claim, claims_frame
from medrepro.report.document import (
    provenance_section,
    report_header,
    write_claims_provenance_report,
)
from medrepro.report.markdown import bullets, to_markdown
from medrepro.report.published import cephalometry as pub

__all__ = [
    "OUTPUTS",
    "CPU_FLAGS_OF_INTEREST",
    "render_report",
    "write_report",
    "build_parser",
    "main",
    # re-exported for tests and other reports
    "BACKENDS",
    "SDR_RADII",
    "ModelArtefacts",
    "ReportInputs",
    "load_inputs",
    "accuracy_tables",
    "speed_table",
    "batch_table",
    "deployment_table",
    "perf_counter_table",
    "build_claims",
    "mm_to_voxel",
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

#: files the stage writes, relative to the results directory (for Snakemake ``output:``)
OUTPUTS: tuple[str, ...] = (
    "tables/table1_rmse.csv",
    "tables/table2_sdr.csv",
    "tables/table3_5_speed.csv",
    "tables/table4_6_batch.csv",
    "tables/deployment.csv",
    "tables/perf_counters.csv",
    "figures/speedup.png",
    "figures/batch_fps.png",
    "figures/error_cdf.png",
    "figures/training_curves.png",
    "figures/perf_counters.png",
    "figures/landmarks_example.png",
    "claims.csv",
    "provenance.json",
    "report.md",
)


def _transpose_deployment(deploy: pd.DataFrame) -> pd.DataFrame:
    """One row per quantity, one column per model, cells pre-formatted."""
    rows = []
    for col in deploy.columns:
        if col == "model":
            continue
        row = {"quantity": col}
        for _, r in deploy.iterrows():
            row[str(r["model"])] = format_deployment_cell(col, r[col])
        rows.append(row)
    return pd.DataFrame(rows)


def _published_table1(labels: Sequence[str]) -> pd.DataFrame:
    rows = []
    for role, values in pub.TABLE1_RMSE.items():
        row: dict[str, Any] = {"source": pub.LABEL, "model": pub.ROLES[role], "backend": "PyTorch"}
        for i, lab in enumerate(labels):
            key = lab if lab in values else (pub.LANDMARKS[i] if i < len(pub.LANDMARKS) else None)
            row[lab] = values.get(key) if key else None
        row["total"] = values["total"]
        row["mre"] = None
        rows.append(row)
    return pd.DataFrame(rows)


def _ours(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = df[list(columns)].copy()
    out.insert(0, "source", "ours")
    return out


def _sysinfo_lines(sysinfo: dict[str, Any], prefix: str = "", depth: int = 0) -> list[str]:
    lines = []
    for key, value in sysinfo.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 1:
            lines += _sysinfo_lines(value, f"{name}.", depth + 1)
            continue
        if "flag" in key.lower() and isinstance(value, (list, str)):
            flags = value.split() if isinstance(value, str) else [str(v) for v in value]
            present = [f for f in CPU_FLAGS_OF_INTEREST if f in flags]
            text = f"{len(flags)} flags; of interest: {', '.join(present) or 'none'}"
        elif isinstance(value, (list, tuple)):
            text = ", ".join(map(str, value[:12])) + (
                f", … ({len(value)} in all)" if len(value) > 12 else ""
            )
        else:
            text = json.dumps(value) if isinstance(value, dict) else str(value)
        if len(text) > 200:
            text = text[:197] + "…"
        lines.append(f"`{name}`: {text}")
    return lines


def _models_table(inputs: ReportInputs) -> pd.DataFrame:
    """Parameters and training summary per model (from ``model.pt`` and ``history.csv``)."""

    def millions(v: Any) -> str | None:
        return None if v is None or pd.isna(v) else f"{v / 1e6:.2f} M"

    rows = []
    for m in inputs.models.values():
        h = m.history.sort_values("epoch")
        last = h.iloc[-1] if not h.empty else None
        rows.append(
            {
                "model": m.name,
                "paper role": pub.ROLES.get(m.role or "", ""),
                "parameters (ours)": millions(m.n_params),
                "parameters (published)": millions(pub.MODEL_SIZE[m.role]["params"])
                if m.role
                else None,
                "epochs": None if last is None else int(h["epoch"].max()),
                "final train loss": None if last is None else float(last["train_loss"]),
                "final val loss": None if last is None else float(last["val_loss"]),
                "best val metric": None if last is None else float(h["val_metric"].max()),
                "training time (s)": None if last is None else float(h["seconds"].sum()),
            }
        )
    return pd.DataFrame(rows)


def _section_run(inputs: ReportInputs, table1: pd.DataFrame) -> list[str]:
    ds, labels = inputs.dataset, inputs.labels
    shape = "×".join(str(int(s)) for s in ds["images"].shape[1:])
    spacing = "×".join(f"{s:.2f}" for s in np.median(ds["spacing"], axis=0))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(inputs.splits["split"].value_counts().items()))
    n_test = int(table1["n_cases"].max()) if not table1.empty else 0
    models = ", ".join(
        f"`{m.name}`" + (f" (paper: {pub.ROLES[m.role]})" if m.role else "")
        for m in inputs.models.values()
    )
    items = [
        f"Scale: `{inputs.config.get('scale', 'not recorded')}`; seed: `{inputs.seed}`.",
        "Data: **synthetic head-CT phantoms** (generated by `ceph-phantoms`; not patient data): "
        f"{len(ds['case_id'])} volumes ({counts} by patient-level split), network grid {shape} "
        f"voxels at {spacing} mm (published: 20 patient CTs resampled to 128×128×64 at "
        "1.25×1.25×1.55 mm).",
        f"Landmarks ({len(labels)}): {', '.join(labels)}. Accuracy is measured on {n_test} test "
        "cases, in mm in each image's original physical space.",
        f"Models: {models}.",
    ]
    digits = {
        "final train loss": 4,
        "final val loss": 4,
        "best val metric": 3,
        "training time (s)": 0,
    }
    return [
        "## What was run",
        "",
        bullets(items),
        "",
        to_markdown(_models_table(inputs), digits),
        "",
    ]


def _section_accuracy(
    inputs: ReportInputs, table1: pd.DataFrame, table2: pd.DataFrame
) -> list[str]:
    labels = inputs.labels
    t1 = pd.concat(
        [_ours(table1, ["model", "backend", *labels, "total", "mre"]), _published_table1(labels)],
        ignore_index=True,
    )
    sdr_cols = [f"{r:g} mm" for r in SDR_RADII]
    pub2 = pd.DataFrame(
        [
            {"source": pub.LABEL, "model": pub.ROLES[role], "backend": "PyTorch"}
            | {f"{r:g} mm": v for r, v in vals.items()}
            for role, vals in pub.TABLE2_SDR.items()
        ]
    )
    t2 = pd.concat([_ours(table2, ["model", "backend", *sdr_cols]), pub2], ignore_index=True)
    return [
        "## Accuracy (paper Tables 1 and 2)",
        "",
        'RMSE per landmark, pooled total `sqrt(mean_k RMSE_k²)` (the paper\'s "Total") and mean '
        "radial error (mre), mm, on the test cases:",
        "",
        to_markdown(t1, digits=2),
        "",
        "Share of landmarks within 2, 3 and 4 mm (success detection rate):",
        "",
        to_markdown(t2, digits=2),
        "",
    ]


def _section_speed(speed: pd.DataFrame) -> list[str]:
    cols = [
        "model",
        "framework_mode",
        "latency_median_s",
        "latency_p90_s",
        "total_time_s",
        "fps",
        "speedup_vs_pytorch",
        "peak_rss_mb",
        "samples",
        "status",
    ]
    digits = {
        "latency_median_s": 4,
        "latency_p90_s": 4,
        "total_time_s": 2,
        "fps": 2,
        "speedup_vs_pytorch": 2,
        "peak_rss_mb": 0,
        "samples": 0,
    }
    out = [
        "## Speed at batch 1 (paper Tables 3 and 5)",
        "",
        "Latency is the median (and 90th percentile) per inference call; the speed-up is the FPS "
        "ratio over PyTorch f32 sync at the same thread count, as in the paper.",
        "",
        to_markdown(speed[cols], digits),
        "",
    ]
    for role, cfgs in pub.TABLE3_5_SPEED.items():
        table = "Table 3" if role == "direct_regression" else "Table 5"
        df = pd.DataFrame([{"framework_mode": k, **v} for k, v in cfgs.items()])
        out += [
            f"{pub.LABEL}, {table} ({pub.ROLES[role]}, {pub.BENCHMARK_INPUTS[role]} generated inputs):",
            "",
            to_markdown(df, digits=3),
            "",
        ]
    return out


def _section_batch(batch: pd.DataFrame) -> list[str]:
    cols = [
        "model",
        "batch",
        "pytorch_total_s",
        "pytorch_fps",
        "ov_sync_total_s",
        "ov_sync_fps",
        "ov_async_total_s",
        "ov_async_fps",
    ]
    out = [
        "## Throughput over batch sizes (paper Tables 4 and 6)",
        "",
        "Total time (s) and FPS per framework (f32); `–` = out of memory, timeout or error (the "
        "status columns of `tables/table4_6_batch.csv` say which), empty = not run.",
        "",
        to_markdown(batch[cols].fillna(""), digits=2),
        "",
    ]
    for role, rows in pub.TABLE4_6_BATCH.items():
        table = "Table 4" if role == "direct_regression" else "Table 6"
        df = pd.DataFrame([{"batch": b, **v} for b, v in rows.items()])
        out += [f"{pub.LABEL}, {table} ({pub.ROLES[role]}; – = out of memory):", ""]
        out += [to_markdown(df, digits=3), ""]
    return out


def _section_deployment(deploy: pd.DataFrame, perf: pd.DataFrame) -> list[str]:
    out = [
        "## Deployment: parity, INT8 quantization, sizes",
        "",
        "Not in the paper. Parity is the max abs difference of raw outputs against PyTorch on "
        "held-out inputs; RMSEs in mm on the test cases; NNCF metrics as reported by "
        "accuracy-aware quantization; FQ = FakeQuantize nodes; sizes in MB.",
        "",
    ]
    if not deploy.empty:
        out += [to_markdown(_transpose_deployment(deploy)), ""]
    out += ["## OpenVINO profile", ""]
    if perf.empty:
        return [*out, "No performance counters were recorded.", ""]
    # perf_counter_table sorts by model, precision, then time (descending)
    top = perf.groupby(["model", "precision"], sort=False).head(3)
    top = top[["model", "precision", "node_type", "time_ms", "share_calc"]]
    return [
        *out,
        "The three most expensive node types per model and precision (share of OpenVINO "
        "inference time):",
        "",
        to_markdown(top.rename(columns={"share_calc": "share"}), {"time_ms": 2, "share": 3}),
        "",
    ]


#: figure -> caption (``{example}`` is filled with the example case)
FIGURE_CAPTIONS: dict[str, str] = {
    "figures/speedup.png": "Batch-1 speed-up over PyTorch per configuration; dashed/dotted "
    "marks: published sync/async speed-ups.",
    "figures/batch_fps.png": "Throughput vs batch size; × marks configurations that ran out of "
    "memory or timed out.",
    "figures/error_cdf.png": "Share of landmarks within r mm per model and backend; diamonds: "
    "published Table 2.",
    "figures/training_curves.png": "Training and validation loss and validation metric per epoch.",
    "figures/perf_counters.png": "OpenVINO time per node type.",
    "figures/landmarks_example.png": "Ground truth (circles) and predictions (crosses) for {example}.",
}


def _section_figures(example: str) -> list[str]:
    out = ["## Figures", ""]
    out += [
        f"- [{rel}]({rel}): {cap.format(example=example)}" for rel, cap in FIGURE_CAPTIONS.items()
    ]
    out += ["", "![speed-up](figures/speedup.png)", "", "![error CDF](figures/error_cdf.png)", ""]
    out += ["![example](figures/landmarks_example.png)", ""]
    return out


def _section_system(inputs: ReportInputs) -> list[str]:
    paper = "; ".join(f"{k}: {v}" for k, v in pub.SETUP.items())
    return [
        "## System",
        "",
        "Benchmark machine (`benchmark/sysinfo.json`):",
        "",
        bullets(_sysinfo_lines(inputs.sysinfo)) or "- (empty)",
        "",
        f"Paper, {pub.LABEL}: {paper}.",
        "",
    ]


def render_report(
    inputs: ReportInputs,
    table1: pd.DataFrame,
    table2: pd.DataFrame,
    speed: pd.DataFrame,
    batch: pd.DataFrame,
    deploy: pd.DataFrame,
    perf: pd.DataFrame,
    claims: list[Claim],
    example: str,
    prov: dict[str, Any],
) -> str:
    """The Markdown report; every number comes from the tables passed in or from :mod:`pub`."""
    lines = report_header(
        "Cephalometry (paper 000): 3D landmark regression and OpenVINO inference — "
        "reproduction report",
        pub.CITATION,
        "ceph-report",
        pub.LABEL,
    )
    lines += _section_run(inputs, table1)
    lines += _section_accuracy(inputs, table1, table2)
    lines += _section_speed(speed)
    lines += _section_batch(batch)
    lines += _section_deployment(deploy, perf)
    lines += ["## Claims", "", to_markdown(claims_frame(claims)), ""]
    lines += _section_figures(example)
    lines += _section_system(inputs)
    lines += [
        "## Discussion",
        "",
        bullets(discussion(inputs, claims, perf, prov.get("versions", {}))),
        "",
    ]
    lines += provenance_section(prov)
    return "\n".join(lines)


def write_report(inputs: ReportInputs) -> list[Path]:
    """Compute everything from validated inputs and write :data:`OUTPUTS` (``report.md`` last).

    Returns:
        The files written.
    """
    out = inputs.results_dir
    table1, table2, errors = accuracy_tables(inputs)
    speed = speed_table(inputs)
    batch = batch_table(inputs)
    deploy = deployment_table(inputs, table1)
    perf = perf_counter_table(inputs)
    claims = build_claims(inputs, table1, table2, perf)

    write_csv(table1, out / "tables/table1_rmse.csv", float_format="%.6g")
    write_csv(table2, out / "tables/table2_sdr.csv", float_format="%.6g")
    write_csv(speed, out / "tables/table3_5_speed.csv", float_format="%.6g")
    write_csv(batch, out / "tables/table4_6_batch.csv", float_format="%.6g")
    write_csv(deploy, out / "tables/deployment.csv", float_format="%.6g")
    write_csv(perf, out / "tables/perf_counters.csv", float_format="%.6g")

    figure_speedup(inputs, speed, out / "figures/speedup.png")
    figure_batch(inputs, out / "figures/batch_fps.png")
    figure_error_cdf(inputs, errors, out / "figures/error_cdf.png")
    figure_training(inputs, out / "figures/training_curves.png")
    figure_perf(perf, out / "figures/perf_counters.png")
    example = figure_landmarks(inputs, table1, out / "figures/landmarks_example.png")

    write_claims_provenance_report(
        out,
        claims,
        inputs.config,
        inputs.seed,
        inputs.paths,
        report={"stage": "ceph-report", "models": list(inputs.models), "options": inputs.options},
        render=lambda prov: render_report(
            inputs, table1, table2, speed, batch, deploy, perf, claims, example, prov
        ),
    )
    return [out / rel for rel in OUTPUTS]


def build_parser() -> argparse.ArgumentParser:
    """The stage's argument parser."""
    p = argparse.ArgumentParser(prog="medrepro ceph-report", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results/cephalometry"),
        help="paper results directory (inputs and outputs)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["vgg", "vgg_bn", "hourglass", "hourglass_deconv"],
        help="models to report",
    )
    p.add_argument(
        "--paper-models",
        nargs=2,
        default=["vgg", "hourglass"],
        metavar=("DIRECT_REGRESSION", "HOURGLASS"),
        help="which models are the paper's Direct Regression and Hourglass",
    )
    p.add_argument(
        "--config-json",
        default=None,
        help="the run's configuration: inline JSON object or a path to a JSON file",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="the run's random seed (recorded in provenance)"
    )
    p.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="preprocessed dataset.npz (default: <results-dir>/preprocessed/dataset.npz)",
    )
    p.add_argument(
        "--splits",
        type=Path,
        default=None,
        help="splits.csv (default: <results-dir>/preprocessed/splits.csv)",
    )
    p.add_argument(
        "--deconv-pair",
        nargs=2,
        default=["hourglass", "hourglass_deconv"],
        metavar=("TRILINEAR", "DECONV"),
        help="models compared for the deconvolution claim",
    )
    p.add_argument(
        "--bn-pair",
        nargs=2,
        default=["vgg", "vgg_bn"],
        metavar=("UNFOLDED", "FOLDED"),
        help="models compared for the INT8/normalisation claim",
    )
    p.add_argument(
        "--parity-tolerance",
        type=float,
        default=1e-3,
        help="max abs output difference for OpenVINO FP32 parity when parity.json has no tolerance",
    )
    p.add_argument(
        "--int8-tolerance-mm",
        type=float,
        default=0.1,
        help="allowed INT8 RMSE increase over FP32 (mm)",
    )
    p.add_argument(
        "--noise-margin",
        type=float,
        default=0.05,
        help="relative margin a speed ratio must exceed to count as faster",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status (InputError propagates to the CLI, status 2)."""
    args = build_parser().parse_args(argv)
    if args.dataset is None:
        args.dataset = args.results_dir / "preprocessed" / "dataset.npz"
    if args.splits is None:
        args.splits = args.results_dir / "preprocessed" / "splits.csv"
    inputs = load_inputs(args)
    written = write_report(inputs)
    print(f"ceph-report: wrote {len(written)} files under {args.results_dir}")
    return 0
