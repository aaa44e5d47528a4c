"""Stage ``face-report``: Table 1, Fig. 3, Fig. 5, budget sweep, deployment, claims, report.md.

Reproduces the evaluation of Fu et al., "Cross-Task Representation Learning for Anatomical
Landmark Detection" (MLMI 2020): mean error (ME, pixels), AUC of the CED curve and failure rate
(FR) of seven landmark detectors (HG, FE, FTP, FT, CTD-CD, CTD-ED, CTD-Com) at several label
budgets, plus OpenVINO FP32 and INT8 deployment of the best one.

Every number written is computed from the pipeline's artefacts (``docs/face_landmarks.md``);
the paper's numbers were lost in our copy of its text, so the published columns say "not in the
text" (:mod:`medrepro.report.published.face_landmarks`). All inputs are read and validated
first, and the whole report directory is written through one
:func:`~medrepro.io.atomic.atomic_dir`, so a failure leaves no partial report.

Example:
    python -m medrepro face-report --results-dir results/face_landmarks \\
        --methods hg fe ftp ft ctd_cd ctd_ed ctd_com --budgets 10 25 50 100 --full-budget 100 \\
        --threshold-px 5 --config-json config.json --out-dir results/face_landmarks/report
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
from medrepro.report.face_landmarks_claims import build_claims
from medrepro.report.face_landmarks_discussion import discussion, is_synthetic
from medrepro.report.face_landmarks_figures import (
    figure_budget_sweep,
    figure_ced,
    figure_deployment,
    figure_predictions,
)
from medrepro.report.face_landmarks_inputs import REFERENCE_RUNTIME, ReportInputs, load_inputs
from medrepro.report.face_landmarks_tables import (
    budget_sweep,
    deployment_table,
    landmark_errors,
    method_name,
    settings_table,
    table1_methods,
)
from medrepro.report.markdown import MISSING, bullets, format_value, to_markdown
from medrepro.report.provenance import cpu_info, file_sizes
from medrepro.report.published import face_landmarks as pub

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

#: table name -> file
TABLE_FILES: dict[str, str] = {
    "table1_methods": "tables/table1_methods.csv",
    "budget_sweep": "tables/budget_sweep.csv",
    "deployment": "tables/deployment.csv",
}

#: figure file -> caption in report.md
FIGURES: dict[str, str] = {
    "figures/fig5_ced.png": "Fig. 5: CED curves (fraction of test images whose mean landmark "
    "error is at most the threshold) per method at {full} % of the labels; legend: AUC.",
    "figures/fig3_predictions.png": "Fig. 3: test images at {fig_budget} % of the labels; per "
    "image, predictions (dots) over the truth (green circles), then the maximum over landmarks "
    "of each method's heatmaps.",
    "figures/budget_sweep.png": "ME against the label budget per method (error bars SD / "
    "sqrt(n_test)); not in the paper.",
    "figures/deployment.png": "Median latency (batch 1, sync, p90 as bar) and ME per runtime of "
    "the deployed model; not in the paper.",
}

#: files the stage writes, relative to ``--out-dir`` (for Snakemake ``output:``)
OUTPUTS: tuple[str, ...] = (
    *TABLE_FILES.values(),
    *FIGURES,
    "claims.csv",
    "provenance.json",
    "report.md",
)


class Tables:
    """Every table and claim of the report, computed from validated inputs (nothing written)."""

    def __init__(self, inputs: ReportInputs) -> None:
        self.table1 = table1_methods(inputs)
        self.sweep = budget_sweep(inputs)
        self.deployment = deployment_table(inputs)
        self.settings = settings_table(inputs)
        self.landmarks = landmark_errors(inputs)
        self.claims: list[Claim] = build_claims(inputs)


def compute_tables(inputs: ReportInputs) -> Tables:
    """All tables and claims of the report."""
    return Tables(inputs)


def _mean_sd(mean: Any, sd: Any, digits: int = 2) -> str:
    if pd.isna(mean):
        return MISSING
    return f"{format_value(float(mean), digits)} ({format_value(sd, digits)})"


def _published(value: Any, digits: int) -> str:
    return pub.NOT_IN_TEXT if value is None or pd.isna(value) else format_value(value, digits)


def _fig_budget(inputs: ReportInputs) -> Any:
    return inputs.evaluation("figure_budget") or inputs.full_budget


def _section_setup(inputs: ReportInputs, tables: Tables, cpu: dict[str, Any]) -> list[str]:
    data = "synthetic face phantoms" if is_synthetic(inputs.block) else "user data"
    items = [
        f"Scale `{inputs.scale or 'not recorded'}`, seed `{inputs.seed}`; data: {data}.",
        "Methods: " + ", ".join(f"{method_name(m)} (`{m}`)" for m in inputs.methods)
        + f"; label budgets {', '.join(f'{b} %' for b in inputs.budgets)} of the training split "
        f"(full budget {inputs.full_budget} %).",
        "ME = mean over test images of the per-image mean Euclidean landmark error in pixels of "
        f"the network input (the paper's un-normalised ME); AUC = area under the CED curve "
        f"from 0 to the failure threshold {inputs.threshold_px:g} px, divided by it; FR = share "
        f"of test images with error > {inputs.threshold_px:g} px; the CED curves are drawn to "
        f"{format_value(inputs.evaluation('ced_max_px'))} px.",
        f"Latencies are for THIS machine ({cpu.get('model', 'unknown CPU')}, "
        f"{cpu.get('usable_cpus', '?')} usable logical CPUs).",
    ]  # fmt: skip
    return [
        "## Setup",
        "",
        bullets(items),
        "",
        "Settings: ours (configuration and artefacts) beside the paper's; the paper's numbers "
        f"are {pub.NOT_IN_TEXT!r} where our copy of it lost them.",
        "",
        to_markdown(tables.settings),
        "",
    ]


def _section_table1(inputs: ReportInputs, t1: pd.DataFrame) -> list[str]:
    rows = [
        {
            "method": r["method_name"],
            "ME px (SD)": _mean_sd(r["me_px"], r["sd_px"]),
            "median px": r["median_px"],
            "AUC": r["auc"],
            "FR": r["fr"],
            "published ME": _published(r["published_me_px"], 2),
            "published AUC": _published(r["published_auc"], 3),
            "published FR": _published(r["published_fr"], 3),
        }
        for _, r in t1.iterrows()
    ]
    n_train = int(t1["n_train"].iloc[0]) if len(t1) else 0
    return [
        f"## Table 1: methods at {inputs.full_budget} % of the labels",
        "",
        f"PyTorch, {int(t1['n_test'].iloc[0]) if len(t1) else 0} test images, {n_train} "
        f"training images. CSV: [{TABLE_FILES['table1_methods']}]({TABLE_FILES['table1_methods']}).",
        "",
        to_markdown(pd.DataFrame(rows), {"median px": 2, "AUC": 3, "FR": 3}),
        "",
    ]


def _section_sweep(sweep: pd.DataFrame) -> list[str]:
    df = sweep.copy()
    df["cell"] = [
        f"{_mean_sd(r['me_px'], r['sd_px'])}; {format_value(r['auc'], 3)}; "
        f"{format_value(r['fr'], 3)}"
        for _, r in df.iterrows()
    ]
    piv = df.pivot_table(index="method_name", columns="budget", values="cell", aggfunc="first",
                         sort=False)  # fmt: skip
    piv.columns = [f"{b} % (n={int(n)})" for b, n in
                   zip(piv.columns, df.groupby("budget")["n_train"].first().reindex(piv.columns),
                       strict=True)]  # fmt: skip
    piv = piv.reset_index().rename(columns={"method_name": "method"})
    return [
        "## Label budget sweep",
        "",
        "ME px (SD); AUC; FR per method and budget (n = training images). Not in the paper, "
        f"which reports one budget. CSV: [{TABLE_FILES['budget_sweep']}]"
        f"({TABLE_FILES['budget_sweep']}).",
        "",
        to_markdown(piv),
        "",
    ]


def _section_landmarks(inputs: ReportInputs, lm: pd.DataFrame) -> list[str]:
    return [
        f"## Error per landmark at {inputs.full_budget} %",
        "",
        "Mean Euclidean error (px) over the test images, from evaluation/predictions.csv.",
        "",
        to_markdown(lm),
        "",
    ]


def _section_deployment(inputs: ReportInputs, dep: pd.DataFrame) -> list[str]:
    sel = inputs.selection
    df = pd.DataFrame(
        {
            "runtime": dep["runtime_name"],
            "threads": dep["threads"],
            "latency median ms": dep["latency_median_ms"],
            "latency p90 ms": dep["latency_p90_ms"],
            "peak RSS MB": dep["peak_rss_mb"],
            "ME px": dep["me_px"],
            "ΔME px vs PyTorch": dep["delta_me_px"],
            "AUC": dep["auc"],
            "FR": dep["fr"],
        }
    )
    par, q = inputs.parity, inputs.quantization
    ov = par.get("openvino_fp32")
    tol_ok = par.get("tolerance_ok", {})
    facts = [
        f"Selected: {method_name(str(sel.get('method')))} at {sel.get('budget')} % "
        f"(ME {format_value(sel.get('me_px'))} px; rule: {sel.get('rule', MISSING)}). The "
        "protocol has no validation split, so the choice is made on the test images and the "
        "deployed model's test ME is optimistic by that choice.",
        "INT8 (NNCF accuracy control) is calibrated and validated on training images; its "
        "metric below is the negative mean error (px) there.",
        f"Export parity (max |heatmap difference| vs PyTorch): OpenVINO FP32 "
        f"{format_value(ov, 2) if isinstance(ov, int | float) else MISSING} "
        f"(within tolerance: {format_value(tol_ok.get('openvino_fp32'))}), ONNX Runtime "
        f"{format_value(par.get('onnxruntime'), 2)}.",
        f"INT8 (NNCF {q.get('mode', '?')}): metric FP32 {format_value(q.get('metric_fp32'), 3)}, "
        f"INT8 {format_value(q.get('metric_int8'), 3)}, drop {format_value(q.get('drop'), 3)} "
        f"(max {format_value(q.get('max_drop'), 3)}); FakeQuantize kept "
        f"{q.get('fake_quantize_kept', MISSING)}/{q.get('fake_quantize_total', MISSING)}.",
    ]
    return [
        "## Deployment (not in the paper)",
        "",
        bullets(facts),
        "",
        f"Batch 1, sync (deploy/benchmark.csv); quality on the test split (deploy/evaluation). "
        f"CSV: [{TABLE_FILES['deployment']}]({TABLE_FILES['deployment']}).",
        "",
        to_markdown(
            df,
            {
                "latency median ms": 1,
                "latency p90 ms": 1,
                "peak RSS MB": 0,
                "ME px": 3,
                "ΔME px vs PyTorch": 3,
                "AUC": 3,
                "FR": 3,
            },
        ),  # fmt: skip
        "",
    ]


def _section_figures(inputs: ReportInputs) -> list[str]:
    out = ["## Figures", ""]
    fmt_args = {"full": inputs.full_budget, "fig_budget": _fig_budget(inputs)}
    out += [f"- [{rel}]({rel}): {cap.format(**fmt_args)}" for rel, cap in FIGURES.items()]
    out += [""]
    for rel in FIGURES:
        out += [f"![{Path(rel).stem}]({rel})", ""]
    return out


def render_report(
    inputs: ReportInputs, tables: Tables, cpu: dict[str, Any], prov: dict[str, Any]
) -> str:
    """The Markdown report; every number comes from ``tables`` or ``inputs``."""
    lines = report_header(
        "Cross-task representation learning for facial landmarks (paper 002) — reproduction report",
        pub.CITATION,
        "face-report",
        "published",
    )
    lines += [
        f"The paper's Table 1 numbers and settings are lost in our copy of its text "
        f"(looked for: {'; '.join(pub.SEARCHED)}); the published columns say "
        f"{pub.NOT_IN_TEXT!r} and the claims quote the paper's qualitative statements.",
        "",
    ]
    lines += _section_setup(inputs, tables, cpu)
    lines += _section_table1(inputs, tables.table1)
    lines += _section_sweep(tables.sweep)
    lines += _section_landmarks(inputs, tables.landmarks)
    lines += _section_deployment(inputs, tables.deployment)
    lines += ["## Claims", "", to_markdown(claims_frame(tables.claims)), ""]
    lines += _section_figures(inputs)
    lines += ["## Discussion", "", bullets(discussion(inputs, tables.claims, cpu)), ""]
    lines += provenance_section(prov)
    return "\n".join(lines)


def write_report(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """Compute everything, then write :data:`OUTPUTS` under ``out_dir`` in one atomic directory.

    Returns:
        The files written.
    """
    tables = compute_tables(inputs)
    cpu = cpu_info()
    ff = "%.6g"
    fig_budget = _fig_budget(inputs)
    with atomic_dir(out_dir) as out:
        write_csv(tables.table1, out / TABLE_FILES["table1_methods"], float_format=ff)
        write_csv(tables.sweep, out / TABLE_FILES["budget_sweep"], float_format=ff)
        write_csv(tables.deployment, out / TABLE_FILES["deployment"], float_format=ff)
        figure_ced(inputs.ced, inputs.summary, inputs.methods, inputs.full_budget,
                   inputs.threshold_px, out / "figures/fig5_ced.png")  # fmt: skip
        figure_predictions(inputs.figure3, inputs.methods, fig_budget,
                           out / "figures/fig3_predictions.png")  # fmt: skip
        figure_budget_sweep(tables.sweep, inputs.methods, out / "figures/budget_sweep.png")
        figure_deployment(tables.deployment, out / "figures/deployment.png")
        write_claims_provenance_report(
            out,
            tables.claims,
            inputs.config,
            inputs.seed,
            inputs.paths,
            report={
                "stage": "face-report",
                "methods": inputs.methods,
                "budgets": inputs.budgets,
                "full_budget": inputs.full_budget,
                "threshold_px": inputs.threshold_px,
                "reference_runtime": REFERENCE_RUNTIME,
                "figure_budget": fig_budget,
                "figure_cases": inputs.figure3.case_id,
                "selection": inputs.selection,
                "options": inputs.options,
                "published_values": "lost in the text extraction; see published/face_landmarks.py",
                "large_inputs_not_checksummed": file_sizes(inputs.large_paths),
            },
            render=lambda prov: render_report(inputs, tables, cpu, prov),
        )
    return [out_dir / rel for rel in OUTPUTS]


def build_parser() -> argparse.ArgumentParser:
    """The stage's argument parser."""
    p = argparse.ArgumentParser(prog="medrepro face-report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", type=Path, default=Path("results/face_landmarks"),
                   help="the target's results directory")  # fmt: skip
    p.add_argument("--out-dir", type=Path, default=None,
                   help="report directory, replaced as a whole (default: RESULTS_DIR/report)")  # fmt: skip
    p.add_argument("--methods", nargs="+",
                   default=["hg", "fe", "ftp", "ft", "ctd_cd", "ctd_ed", "ctd_com"])  # fmt: skip
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 25, 50, 100],
                   help="label budgets (per cent of the training split)")  # fmt: skip
    p.add_argument("--full-budget", type=int, default=100,
                   help="the budget of Table 1 and Fig. 5 (one of --budgets)")  # fmt: skip
    p.add_argument("--threshold-px", type=float, required=True,
                   help="failure threshold in pixels (must match evaluation/summary.csv)")  # fmt: skip
    p.add_argument("--config-json", default=None,
                   help="the run's configuration (whole config or the face_landmarks block): "
                   "inline JSON or a path")  # fmt: skip
    p.add_argument("--seed", type=int, default=None,
                   help="the run's seed (default: from the configuration)")  # fmt: skip
    p.add_argument("--similar-fraction", type=float, default=0.10,
                   help="CTD-Com is 'similar' to CTD-ED within this fraction of CTD-ED's ME")  # fmt: skip
    p.add_argument("--fp32-tolerance-px", type=float, default=0.05,
                   help="largest |ME(OpenVINO FP32) - ME(PyTorch)| in pixels")  # fmt: skip
    p.add_argument("--int8-tolerance-px", type=float, default=None,
                   help="largest |ME(OpenVINO INT8) - ME(PyTorch)| in pixels (default: the "
                   "configuration's quantization.max_drop, else 0.5)")  # fmt: skip
    p.add_argument("--n-bootstrap", type=int, default=2000,
                   help="paired bootstrap resamples of the test images")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status (InputError propagates to the CLI, status 2)."""
    args = build_parser().parse_args(argv)
    inputs = load_inputs(args)
    out_dir = Path(args.out_dir) if args.out_dir is not None else inputs.results_dir / "report"
    written = write_report(inputs, out_dir)
    print(f"face-report: wrote {len(written)} files under {out_dir}")
    return 0
