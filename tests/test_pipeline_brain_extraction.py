"""End to end: the ``brain_extraction`` target at smoke scale through Snakemake in a temporary
directory (phantoms, DICOM conversion, registration, training, export, both INT8 routes,
benchmarks, native-space evaluation, report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from smoke_pipeline import report_files, smoke_workdir, snakemake

RESULTS = Path("results/brain_extraction")
CONFIGS = {
    "pytorch_fp32",
    "onnxruntime_fp32",
    "openvino_fp32",
    "openvino_fp32_onnx",
    "openvino_int8",
    "openvino_int8_default",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_workdir(tmp_path_factory, "brain_smoke", "brain_extraction")


@pytest.mark.integration
def test_report_claims_and_tables(smoke_run: Path) -> None:
    res = smoke_run / RESULTS
    claims = pd.read_csv(res / "claims.csv", keep_default_na=False)
    assert list(claims.columns[:4]) == ["claim", "paper", "measured", "holds"]
    assert set(claims["holds"]) <= {"yes", "no", "n/a"}
    assert len(claims) >= 6
    assert json.loads((res / "provenance.json").read_text())["config"]
    report = (res / "report.md").read_text()
    assert "0.97198" in report  # the paper's PyTorch Dice, labelled as published
    for table in (res / "tables").glob("*.csv"):
        assert len(pd.read_csv(table)) > 0, table
    figures = sorted((res / "figures").glob("*.png"))
    assert len(figures) >= 5
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_every_config_scored_in_native_space(smoke_run: Path) -> None:
    res = smoke_run / RESULTS
    evaluation = pd.read_csv(res / "models" / "resunet" / "evaluation.csv")
    assert CONFIGS <= set(evaluation["config"])
    assert evaluation["dice"].between(0, 1).all()
    splits = pd.read_csv(res / "preprocessed" / "splits.csv")
    test_subjects = set(splits.loc[splits["split"] == "test", "patient_id"].astype(str))
    assert set(evaluation["subject_id"].astype(str)) == test_subjects
    # every predicted mask lies on the subject's native t1ce grid
    row = evaluation.iloc[0]
    native = sitk.ReadImage(
        str(res / "native" / row["subject_id"] / f"{row['subject_id']}_t1ce.nii.gz")
    )
    mask = sitk.ReadImage(
        str(
            res / "models" / "resunet" / "masks"
            / f"{row['subject_id']}_{row['modality']}_{row['config']}.nii.gz"
        )
    )  # fmt: skip
    assert mask.GetSize() == native.GetSize()
    assert np.allclose(mask.GetOrigin(), native.GetOrigin(), atol=1e-3)
    assert np.allclose(mask.GetDirection(), native.GetDirection(), atol=1e-5)


@pytest.mark.integration
def test_dicom_subjects_converted_and_registered(smoke_run: Path) -> None:
    cohort = smoke_run / "data" / "brain_extraction" / "synthetic"
    subjects = pd.read_csv(cohort / "subjects.csv")
    assert len(subjects) == 5
    res = smoke_run / RESULTS
    formats = [
        json.loads((res / "native" / s / "convert.json").read_text())["formats"]
        for s in subjects["subject_id"]
    ]
    assert any("dicom" in f.values() for f in formats)
    qc = pd.read_csv(res / "preprocessed" / "qc.csv")
    assert len(qc) == 5 and qc["mask_dice_vs_atlas"].between(0, 1).all()


@pytest.mark.integration
def test_deployment_artefacts(smoke_run: Path) -> None:
    res = smoke_run / RESULTS
    for mode in ("int8", "int8_default"):
        quant = json.loads((res / "models" / "resunet" / mode / "quantization.json").read_text())
        assert quant["mode"] == ("accuracy_control" if mode == "int8" else "default")
    bench = pd.read_csv(res / "benchmark" / "resunet.csv")
    assert (bench["status"] == "ok").any()
    scaling = pd.read_csv(res / "benchmark" / "scaling" / "resunet_t1.csv")
    assert set(scaling["mode"]) == {"sync"} and (scaling["threads"] == 1).all()


@pytest.mark.integration
def test_figures_rerender_without_retraining(smoke_run: Path) -> None:
    model = smoke_run / RESULTS / "models" / "resunet" / "model.pt"
    before = model.stat().st_mtime_ns
    (smoke_run / RESULTS / "report.md").unlink()
    result = snakemake(smoke_run, "brain_extraction_figures")
    assert (smoke_run / RESULTS / "report.md").exists()
    assert model.stat().st_mtime_ns == before
    assert "train_model" not in result.stdout + result.stderr


@pytest.mark.integration
def test_html_report_holds_every_figure_and_table(smoke_run: Path) -> None:
    """`snakemake --report` (a self-contained zip) holds each figure, table and the claims."""
    res = smoke_run / "results/brain_extraction"
    expected = {p.name for p in (res / "figures").glob("*.png")}
    expected |= {p.name for p in (res / "tables").glob("*.csv")} | {"claims.csv"}
    assert len(expected) >= 8
    assert expected <= report_files(smoke_run, "brain_extraction")
