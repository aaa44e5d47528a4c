"""End to end: the ``lowres`` target at smoke scale through Snakemake in a temporary directory
(LUNA16-layout chest CT and metastases MRI phantoms, preprocessing, the five networks trained,
exported to OpenVINO FP32 and INT8, whole-volume inference timed per study, object-wise FROC,
report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from smoke_pipeline import report_files, smoke_workdir, snakemake

RESULTS = Path("results/lowres")
DATASETS = ["luna16", "metastases"]
MODELS = ["unet3d", "deepmedic", "mobilenetv2", "enet", "lowres"]
RUNTIMES = ["torch", "openvino_fp32", "openvino_int8"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_workdir(tmp_path_factory, "lowres_smoke", "lowres")


@pytest.mark.integration
def test_luna16_layout_written_and_read(smoke_run: Path) -> None:
    data = smoke_run / "data/lowres/luna16"
    annotations = pd.read_csv(data / "annotations.csv")
    assert list(annotations.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
    scans = sorted(data.glob("subset*/*.mhd"))
    assert len(scans) == 10
    for scan in scans:
        assert scan.with_suffix(".raw").is_file()
        assert (data / "seg-lungs-LUNA16" / scan.name).is_file()
    table = pd.read_csv(smoke_run / RESULTS / "luna16/preprocessed/studies.csv")
    assert len(table) == len(scans)
    kept = table[~table["excluded"].astype(bool)]
    assert set(kept["split"]) <= {"train", "val", "test"} and (kept["split"] == "test").any()


@pytest.mark.integration
def test_every_model_and_runtime_predicted_and_scored(smoke_run: Path) -> None:
    for dataset in DATASETS:
        root = smoke_run / RESULTS / dataset
        table = pd.read_csv(root / "preprocessed/studies.csv")
        test_ids = set(table.loc[(table["split"] == "test") & ~table["excluded"], "study_id"])
        for model in MODELS:
            for runtime in RUNTIMES:
                pred = root / "predictions" / model / runtime
                with np.load(pred / "probabilities.npz") as probs:
                    assert set(probs.files) == test_ids
                    for key in probs.files:
                        p = probs[key].astype(np.float32)
                        assert np.all((p >= 0) & (p <= 1)), (dataset, model, runtime)
                summary = json.loads(
                    (root / "evaluation" / model / runtime / "summary.json").read_text()
                )
                assert 0.0 <= summary["avg_recall"] <= 1.0
                timing = json.loads((pred / "summary.json").read_text())
                assert timing["n_studies"] == len(test_ids) and timing["mean_s"] > 0


@pytest.mark.integration
def test_pytorch_and_openvino_fp32_agree(smoke_run: Path) -> None:
    """Same network, two runtimes: the probability maps of every test study match."""
    for dataset in DATASETS:
        root = smoke_run / RESULTS / dataset / "predictions"
        for model in MODELS:
            with (
                np.load(root / model / "torch/probabilities.npz") as a,
                np.load(root / model / "openvino_fp32/probabilities.npz") as b,
            ):
                for key in a.files:
                    diff = np.abs(a[key].astype(np.float32) - b[key].astype(np.float32))
                    assert diff.max() < 0.02, (dataset, model, key, float(diff.max()))


@pytest.mark.integration
def test_report_claims_and_tables(smoke_run: Path) -> None:
    res = smoke_run / RESULTS / "report"
    claims = pd.read_csv(res / "claims.csv", keep_default_na=False)
    assert list(claims.columns[:4]) == ["claim", "paper", "measured", "holds"]
    assert set(claims["holds"]) <= {"yes", "no", "n/a"}
    assert len(claims) >= 6
    report = (res / "report.md").read_text()
    assert "880" in report  # the paper's U-Net time at 8 threads (Table 1), labelled
    for name in ["table1_luna16", "table2_metastases"]:
        table = pd.read_csv(res / "tables" / f"{name}.csv")
        assert len(table) >= len(MODELS), name
    figures = sorted((res / "figures").glob("*.png"))
    assert len(figures) == 5
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_rerun_is_a_no_op(smoke_run: Path) -> None:
    result = snakemake(smoke_run, "lowres", "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.integration
def test_html_report_holds_every_figure_and_table(smoke_run: Path) -> None:
    """`snakemake --report` (a self-contained zip) holds each figure, table and the claims."""
    res = smoke_run / "results/lowres/report"
    expected = {p.name for p in (res / "figures").glob("*.png")}
    expected |= {p.name for p in (res / "tables").glob("*.csv")} | {"claims.csv"}
    assert len(expected) >= 8
    assert expected <= report_files(smoke_run, "lowres")
