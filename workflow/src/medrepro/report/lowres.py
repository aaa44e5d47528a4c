"""Stage ``lowres-report``: Tables 1-2, speed-ups, time vs recall, diameters, claims, report.md.

Reproduces the evaluation of Shirokikh et al., "Accelerating 3D Medical Image Segmentation by
Adaptive Small-Scale Target Localization" (J. Imaging 2021): time per study at several thread
counts, average object recall over 0-5 FP per scan and object Dice of 3D U-Net, DeepMedic, 3D
MobileNetV2, 3D E-Net and LowRes on LUNA16 and brain metastases, plus OpenVINO FP32 and INT8.

Every number written is computed from the pipeline's artefacts (``docs/lowres.md``); the only
typed-in numbers are the paper's, in :mod:`medrepro.report.published.lowres`, always labelled
"published". All inputs are read and validated first, and the whole report directory is written
through one :func:`~medrepro.io.atomic.atomic_dir`, so a failure leaves no partial report.

Example:
    python -m medrepro lowres-report --results-dir results/lowres --datasets luna16 metastases \\
        --models unet3d deepmedic mobilenetv2 enet lowres \\
        --runtimes torch openvino_fp32 openvino_int8 --threads 2 --threads-list 1 2 \\
        --config-json config.json --out-dir results/lowres/report
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from medrepro.io.atomic import atomic_dir, write_csv
from medrepro.report.claims import Claim, claims_frame
from medrepro.report.document import (
    provenance_section,
    report_header,
    write_claims_provenance_report,
)
from medrepro.report.lowres_claims import build_claims
from medrepro.report.lowres_discussion import discussion, is_synthetic
from medrepro.report.lowres_figures import (
    RECALL_LABEL,
    figure_diameters,
    figure_froc,
    figure_openvino_speedup,
    figure_qualitative,
    figure_time_vs_recall,
)
from medrepro.report.lowres_inputs import REFERENCE_RUNTIME, ReportInputs, load_inputs
from medrepro.report.lowres_tables import (
    RUNTIME_NAMES,
    model_name,
    paper_table,
    quality_table,
    speedups_table,
    timing_table,
)
from medrepro.report.markdown import MISSING, bullets, format_value, to_markdown
from medrepro.report.provenance import cpu_info, file_sizes
from medrepro.report.published import lowres as pub

__all__ = [
    "TABLE_FILES",
    "FIGURES",
    "OUTPUTS",
    "Tables",
    "compute_tables",
    "render_report",
    "write_report",
    "build_parser",
    "main",
]

#: dataset -> its paper table's file
TABLE_FILES: dict[str, str] = {
    "luna16": "tables/table1_luna16.csv",
    "metastases": "tables/table2_metastases.csv",
}

#: figure file -> caption in report.md
FIGURES: dict[str, str] = {
    "figures/fig1_time_vs_recall.png": "Fig. 1: mean seconds per study at {threads} threads on "
    f"this machine (log scale) against {RECALL_LABEL}; markers: runtime; hollow diamonds: "
    "published (8 threads, Xeon E5-2690 v4).",
    "figures/fig2_diameters.png": "Fig. 2: object diameters (mm) per split; orange: median; "
    "dashed: small-object threshold (10 mm LUNA16, 5 mm metastases).",
    "figures/fig3_qualitative.png": "Fig. 3: one axial slice per dataset through a test object: "
    "image, ground truth, each model's PyTorch prediction.",
    "figures/froc.png": "FROC curves per model and runtime; shaded: the 0-5 FP/scan range "
    "averaged.",
    "figures/openvino_speedup.png": "OpenVINO FP32 and INT8 speed-up over PyTorch per model at "
    "{threads} threads.",
}

#: files the stage writes, relative to ``--out-dir`` (for Snakemake ``output:``)
OUTPUTS: tuple[str, ...] = (
    *TABLE_FILES.values(),
    "tables/timing.csv",
    "tables/quality.csv",
    "tables/speedups.csv",
    *FIGURES,
    "claims.csv",
    "provenance.json",
    "report.md",
)


class Tables:
    """Every table and claim of the report, computed from validated inputs (nothing written)."""

    def __init__(self, inputs: ReportInputs) -> None:
        self.timing = timing_table(inputs)
        self.quality = quality_table(inputs)
        self.papers = {
            name: paper_table(inputs, name, self.timing, self.quality) for name in inputs.datasets
        }
        self.speedups = speedups_table(inputs, self.timing)
        self.claims: list[Claim] = build_claims(inputs, self.timing, self.quality)


def compute_tables(inputs: ReportInputs) -> Tables:
    """All tables and claims of the report."""
    return Tables(inputs)


def _table_file(name: str) -> str:
    return TABLE_FILES.get(name, f"tables/table_{name}.csv")


def _mean_sd(mean: Any, sd: Any, digits: int = 2) -> str:
    if pd.isna(mean):
        return MISSING
    return f"{format_value(float(mean), digits)} ({format_value(sd, digits)})"


def _seconds_digits(x: Any) -> int:
    """Decimals for a time in s: 0 from 100 s, 1 from 10 s, else 2."""
    x = abs(float(x))
    return 0 if x >= 100 else 1 if x >= 10 else 2


def _section_setup(inputs: ReportInputs, cpu: dict[str, Any]) -> list[str]:
    data = ", ".join(
        f"{n} ({'synthetic phantoms' if is_synthetic(inputs.block, n) else 'user data'})"
        for n in inputs.datasets
    )
    items = [
        f"Scale `{inputs.scale or 'not recorded'}`, seed `{inputs.seed}`; datasets: {data}.",
        "Models: "
        + ", ".join(f"{model_name(m)} (`{m}`)" for m in inputs.models)
        + "; runtimes: "
        + ", ".join(RUNTIME_NAMES.get(r, r) for r in inputs.runtimes)
        + ".",
        f"**Times are for THIS machine** ({cpu.get('model', 'unknown CPU')}, "
        f"{cpu.get('usable_cpus', '?')} usable logical CPUs) at "
        f"{', '.join(map(str, inputs.threads_list))} threads (pipeline threads "
        f"{inputs.threads}); the paper timed on an {pub.SETUP['cpu']} at "
        f"{pub.SETUP['threads']}. Seconds are not comparable across machines; ratios are.",
        f"Quality: {RECALL_LABEL} (FROC recall averaged over 0, 0.01, ..., 5 FP per scan, "
        "bootstrap SD over studies), object Dice over the objects found at p > 0.5 (mean, SD).",
    ]
    return ["## Setup", "", bullets(items), ""]


def _time_cell(row: pd.Series, threads: list[int], prefix: str = "") -> str:
    cells = []
    for t in threads:
        mean, sd = row.get(f"{prefix}time_t{t}_mean"), row.get(f"{prefix}time_t{t}_sd")
        if not pd.isna(mean):
            cells.append(f"{t}: {_mean_sd(mean, sd, _seconds_digits(mean))}")
    return "; ".join(cells) or MISSING


def _section_paper_table(inputs: ReportInputs, name: str, table: pd.DataFrame) -> list[str]:
    rows = []
    for _, r in table.iterrows():
        rows.append(
            {
                "model": r["model_name"],
                "source": "ours",
                "time s per study, threads: mean (SD)": _time_cell(r, inputs.threads_list),
                "avg recall (SD)": _mean_sd(r["avg_recall"], r["avg_recall_sd"], 3),
                "object Dice (SD)": _mean_sd(r["object_dice"], r["object_dice_sd"], 3),
            }
        )
        rows.append(
            {
                "model": r["model_name"],
                "source": "published",
                "time s per study, threads: mean (SD)": _time_cell(
                    r, list(pub.THREADS), "published_"
                ),
                "avg recall (SD)": _mean_sd(
                    r["published_avg_recall"], r["published_avg_recall_sd"]
                ),
                "object Dice (SD)": _mean_sd(
                    r["published_object_dice"], r["published_object_dice_sd"]
                ),
            }
        )
    number = pub.TABLE_NUMBERS.get(name, "?")
    out = [
        f"## Table {number}: {name}",
        "",
        f"Ours: PyTorch FP32, times on this machine; published: Table {number} of the paper "
        f"({pub.SETUP['cpu']}, {pub.SETUP['timing']}). CSV: [{_table_file(name)}]({_table_file(name)}).",
        "",
        to_markdown(pd.DataFrame(rows)),
        "",
    ]
    ov = inputs.openvino_runtimes
    if ov:
        t0 = inputs.threads
        df = pd.DataFrame({"model": table["model_name"]})
        for r in ov:
            label = RUNTIME_NAMES.get(r, r)
            df[f"{label} s ({t0} thr.)"] = table[f"{r}_time_t{t0}"]
            df[f"{label} avg recall"] = table[f"{r}_avg_recall"]
            df[f"{label} object Dice"] = table[f"{r}_object_dice"]
        out += ["OpenVINO (not in the paper):", "", to_markdown(df, 3), ""]
    return out


def _section_speedups(inputs: ReportInputs, speedups: pd.DataFrame) -> list[str]:
    t0 = inputs.threads
    sel = speedups[(speedups["threads"] == t0)]
    vs = sel[sel["comparison"] == "vs_unet3d_torch"]
    ov = sel[sel["comparison"] == "openvino_vs_torch"]
    df = pd.DataFrame(
        {
            "dataset": vs["dataset"],
            "model": [model_name(m) for m in vs["model"]],
            "s per study": vs["time_s"],
            "U-Net time / model time": vs["speedup"],
            "published ratio": vs["published_speedup"],
            "published threads": vs["published_threads"].astype("Int64"),
        }
    )
    out = [
        "## Speed-ups",
        "",
        f"Ratios of mean seconds per study at {t0} threads (PyTorch FP32); the published ratio "
        f"is at the same thread count when the paper has it, else at 8 threads. All thread "
        "counts: [tables/speedups.csv](tables/speedups.csv).",
        "",
        to_markdown(df, {"s per study": 3, "U-Net time / model time": 2, "published ratio": 1}),
        "",
    ]
    if not ov.empty:
        piv = ov.pivot_table(
            index=["dataset", "model"], columns="runtime", values="speedup", sort=False
        ).reset_index()
        piv["model"] = [model_name(m) for m in piv["model"]]
        piv.columns = [RUNTIME_NAMES.get(c, c) + " / PyTorch" if c in RUNTIME_NAMES else c
                       for c in piv.columns]  # fmt: skip
        out += [f"OpenVINO speed-up over PyTorch (time ratio, {t0} threads):", "",
                to_markdown(piv, 2), ""]  # fmt: skip
    return out


def _section_models(inputs: ReportInputs) -> list[str]:
    rows = []
    for name, data in inputs.datasets.items():
        for model in inputs.models:
            h = data.history[model]
            phases = ", ".join(
                f"{p} {int(g['step'].max())} steps, loss {format_value(g['loss'].iloc[-1], 3)}"
                for p, g in h.groupby("phase", sort=False)
            )
            parity = data.parity.get(model, {})
            quant = data.quantization.get(model, {})
            rows.append(
                {
                    "dataset": name,
                    "model": model_name(model),
                    "training": phases,
                    "train s": float(h["seconds"].sum()),
                    "parity max|diff| (ok)": "; ".join(
                        f"{p}: {float(v['max_abs_diff']):.1e} ({format_value(v.get('ok'))})"
                        for p, v in parity.items()
                    )
                    or MISSING,
                    "INT8 FakeQuantize": "; ".join(
                        f"{p}: {format_value(v.get('fake_quantize'))}" for p, v in quant.items()
                    )
                    or MISSING,
                }
            )
    return [
        "## Training and deployment",
        "",
        "Training history (last step and loss per phase, seconds summed over the history rows), "
        "OpenVINO FP32 parity against PyTorch on a test patch and the INT8 FakeQuantize count "
        "(plain `nncf.quantize`).",
        "",
        to_markdown(pd.DataFrame(rows), {"train s": 0}),
        "",
    ]


def _section_figures(inputs: ReportInputs, notes: dict[str, str]) -> list[str]:
    out = ["## Figures", ""]
    out += [
        f"- [{rel}]({rel}): {cap.format(threads=inputs.threads)}" for rel, cap in FIGURES.items()
    ]
    out += [f"- Fig. 3, {name}: {note}." for name, note in notes.items()]
    out += [""]
    for rel in FIGURES:
        out += [f"![{Path(rel).stem}]({rel})", ""]
    return out


def render_report(
    inputs: ReportInputs,
    tables: Tables,
    notes: dict[str, str],
    cpu: dict[str, Any],
    prov: dict[str, Any],
) -> str:
    """The Markdown report; every number comes from ``tables``, ``inputs`` or :mod:`pub`."""
    lines = report_header(
        "LowRes (paper 003): two-stage 3D segmentation on CPU — reproduction report",
        pub.CITATION,
        "lowres-report",
        "published",
    )
    lines += _section_setup(inputs, cpu)
    for name, table in tables.papers.items():
        lines += _section_paper_table(inputs, name, table)
    lines += _section_speedups(inputs, tables.speedups)
    lines += ["## Claims", "", to_markdown(claims_frame(tables.claims)), ""]
    lines += _section_figures(inputs, notes)
    lines += _section_models(inputs)
    lines += [
        "## Discussion",
        "",
        bullets(discussion(inputs, tables.timing, tables.claims, cpu, tables.quality)),
        "",
    ]
    lines += provenance_section(prov)
    return "\n".join(lines)


def write_report(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """Compute everything, then write :data:`OUTPUTS` under ``out_dir`` in one atomic directory.

    Returns:
        The files written.
    """
    tables = compute_tables(inputs)
    cpu = cpu_info()
    names = list(inputs.datasets)
    ff = "%.6g"
    with atomic_dir(out_dir) as out:
        for name, table in tables.papers.items():
            write_csv(table, out / _table_file(name), float_format=ff)
        write_csv(tables.timing, out / "tables/timing.csv", float_format=ff)
        write_csv(tables.quality, out / "tables/quality.csv", float_format=ff)
        write_csv(tables.speedups, out / "tables/speedups.csv", float_format=ff)
        figure_time_vs_recall(tables.timing, tables.quality, names, inputs.models,
                              inputs.runtimes, inputs.threads,
                              out / "figures/fig1_time_vs_recall.png")  # fmt: skip
        medians = figure_diameters(
            {n: d.objects for n, d in inputs.datasets.items()}, out / "figures/fig2_diameters.png"
        )
        notes = figure_qualitative(
            {n: d.example for n, d in inputs.datasets.items()},
            inputs.models,
            out / "figures/fig3_qualitative.png",
        )
        froc = {(n, m, r): run.froc for n, d in inputs.datasets.items()
                for (m, r), run in d.runs.items()}  # fmt: skip
        figure_froc(froc, names, inputs.models, out / "figures/froc.png")
        figure_openvino_speedup(
            tables.speedups, names, inputs.threads, out / "figures/openvino_speedup.png"
        )
        write_claims_provenance_report(
            out,
            tables.claims,
            inputs.config,
            inputs.seed,
            inputs.paths,
            report={
                "stage": "lowres-report",
                "datasets": names,
                "models": inputs.models,
                "runtimes": inputs.runtimes,
                "threads": inputs.threads,
                "threads_list": inputs.threads_list,
                "reference_runtime": REFERENCE_RUNTIME,
                "options": inputs.options,
                "diameter_medians_mm": medians,
                "fig3": notes,
                "large_inputs_not_checksummed": file_sizes(inputs.large_paths),
            },
            render=lambda prov: render_report(inputs, tables, notes, cpu, prov),
        )
    return [out_dir / rel for rel in _outputs(names)]


def _outputs(names: list[str]) -> list[str]:
    return [_table_file(n) for n in names] + [o for o in OUTPUTS if o not in TABLE_FILES.values()]


def build_parser() -> argparse.ArgumentParser:
    """The stage's argument parser."""
    p = argparse.ArgumentParser(prog="medrepro lowres-report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", type=Path, default=Path("results/lowres"),
                   help="the target's results directory (inputs under {dataset}/)")  # fmt: skip
    p.add_argument("--out-dir", type=Path, default=None,
                   help="report directory, replaced as a whole (default: RESULTS_DIR/report)")  # fmt: skip
    p.add_argument("--datasets", nargs="+", default=["luna16", "metastases"])
    p.add_argument("--models", nargs="+",
                   default=["unet3d", "deepmedic", "mobilenetv2", "enet", "lowres"])  # fmt: skip
    p.add_argument("--runtimes", nargs="+", default=["torch", "openvino_fp32", "openvino_int8"],
                   help="runtimes reported; torch is required (the reference)")  # fmt: skip
    p.add_argument("--threads", type=int, required=True,
                   help="the pipeline's inference threads (predictions/)")  # fmt: skip
    p.add_argument("--threads-list", type=int, nargs="*", default=[],
                   help="every thread count timed (timing/{model}/{runtime}_t{T}/ for T != "
                   "--threads)")  # fmt: skip
    p.add_argument("--config-json", default=None,
                   help="the run's configuration (whole config or the lowres block): inline "
                   "JSON or a path")  # fmt: skip
    p.add_argument("--seed", type=int, default=None,
                   help="the run's seed (default: from the configuration)")  # fmt: skip
    p.add_argument("--target-speedup", type=float, default=30.0,
                   help="LowRes over 3D U-Net speed-up target (the project's, x)")  # fmt: skip
    p.add_argument("--recall-margin", type=float, default=0.03,
                   help="LowRes avg recall may be this much below U-Net's")  # fmt: skip
    p.add_argument("--int8-recall-margin", type=float, default=0.02,
                   help="largest INT8 avg recall drop against FP32")  # fmt: skip
    p.add_argument("--speed-margin", type=float, default=0.05,
                   help="relative margin a time ratio must exceed to count as faster (scaling)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=pub.MAX_SECONDS,
                   help="LowRes seconds per study of the 15 s claim (paper scale only)")  # fmt: skip
    p.add_argument("--max-seconds-threads", type=int, default=8,
                   help="thread count of the 15 s claim")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status (InputError propagates to the CLI, status 2)."""
    args = build_parser().parse_args(argv)
    inputs = load_inputs(args)
    out_dir = Path(args.out_dir) if args.out_dir is not None else inputs.results_dir / "report"
    written = write_report(inputs, out_dir)
    print(f"lowres-report: wrote {len(written)} files under {out_dir}")
    return 0
