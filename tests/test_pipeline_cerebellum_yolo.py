"""End to end: the ``cerebellum_yolo`` target at smoke scale through Snakemake in a temporary
directory (BMP/MAT phantoms, YOLO annotations, pre-training, the experiment grid with evaluated
checkpoints, the best model through OpenVINO FP32 and INT8, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from smoke_pipeline import report_files, smoke_workdir, snakemake

RESULTS = Path("results/cerebellum_yolo")
RUNS = ["yolo_s7", "yolo_s9", "yolo_s7_scratch", "tiny_m09_lr5em3"]  # config.yaml, smoke scale


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_workdir(tmp_path_factory, "yolo_smoke", "cerebellum_yolo")


@pytest.mark.integration
def test_report_claims_and_tables(smoke_run: Path) -> None:
    res = smoke_run / RESULTS
    claims = pd.read_csv(res / "claims.csv", keep_default_na=False)
    assert list(claims.columns[:4]) == ["claim", "paper", "measured", "holds"]
    assert set(claims["holds"]) <= {"yes", "no", "n/a"}
    assert len(claims) >= 6
    report = (res / "report.md").read_text()
    assert "84.8" in report or "0.848" in report  # the paper's best AP (S = 11), labelled
    for table in (res / "tables").glob("*.csv"):
        assert len(pd.read_csv(table)) > 0, table
    figures = sorted((res / "figures").glob("*.png"))
    assert len(figures) == 5
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_annotations_in_darknet_layout(smoke_run: Path) -> None:
    ann = smoke_run / RESULTS / "annotations"
    boxes = pd.read_csv(ann / "boxes.csv")
    test = (ann / "test.txt").read_text().split()
    assert len(test) == 4 and len((ann / "train.txt").read_text().split()) == len(boxes) - 4
    assert "classes=1" in (ann / "obj.data").read_text()
    for row in boxes.itertuples():
        lines = (ann / f"{row.image_id}.txt").read_text().split("\n")
        lines = [line for line in lines if line.strip()]
        assert len(lines) == (0 if row.empty else 1)
        if lines:
            cls, *box = lines[0].split()
            assert cls == "0" and all(0.0 <= float(v) <= 1.0 for v in box)


@pytest.mark.integration
def test_every_run_has_scored_checkpoints(smoke_run: Path) -> None:
    for run in RUNS:
        table = pd.read_csv(smoke_run / RESULTS / "models" / run / "checkpoints.csv")
        assert list(table["iteration"]) == [2, 4], run
        assert table["ap"].between(0, 1).all(), run
    best = json.loads((smoke_run / RESULTS / "models" / "best" / "best.json").read_text())
    assert best["run"] in {"yolo_s7", "yolo_s9", "yolo_s7_scratch"}  # 24-conv runs only


@pytest.mark.integration
def test_deployed_model_scored_with_every_runtime(smoke_run: Path) -> None:
    deployment = pd.read_csv(smoke_run / RESULTS / "models" / "best" / "deployment.csv")
    assert set(deployment["config"]) == {"pytorch_fp32", "openvino_fp32", "openvino_int8"}
    ap = deployment.set_index("config")["ap"]
    assert abs(ap["openvino_fp32"] - ap["pytorch_fp32"]) < 1e-3
    bench = pd.read_csv(smoke_run / RESULTS / "benchmark" / "best.csv")
    assert (bench["status"] == "ok").any()


@pytest.mark.integration
def test_figures_rerender_without_retraining(smoke_run: Path) -> None:
    model = smoke_run / RESULTS / "models" / "yolo_s7" / "model.pt"
    before = model.stat().st_mtime_ns
    (smoke_run / RESULTS / "report.md").unlink()
    result = snakemake(smoke_run, "cerebellum_yolo_figures")
    assert (smoke_run / RESULTS / "report.md").exists()
    assert model.stat().st_mtime_ns == before
    assert "yolo_train" not in result.stdout + result.stderr


@pytest.mark.integration
def test_html_report_holds_every_figure_and_table(smoke_run: Path) -> None:
    """`snakemake --report` (a self-contained zip) holds each figure, table and the claims."""
    res = smoke_run / "results/cerebellum_yolo"
    expected = {p.name for p in (res / "figures").glob("*.png")}
    expected |= {p.name for p in (res / "tables").glob("*.csv")} | {"claims.csv"}
    assert len(expected) >= 8
    assert expected <= report_files(smoke_run, "cerebellum_yolo")
