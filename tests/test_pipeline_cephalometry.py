"""End to end: the ``cephalometry`` target at smoke scale through Snakemake in a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from smoke_pipeline import report_files, smoke_workdir, snakemake

RESULTS = Path("results/cephalometry")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_workdir(tmp_path_factory, "smoke", "cephalometry")


@pytest.mark.integration
def test_every_output_exists_and_parses(smoke_run: Path) -> None:
    res = smoke_run / RESULTS
    claims = pd.read_csv(res / "claims.csv", keep_default_na=False)
    assert list(claims.columns[:4]) == ["claim", "paper", "measured", "holds"]
    assert set(claims["holds"]) <= {"yes", "no", "n/a"}
    assert len(claims) >= 5
    provenance = json.loads((res / "provenance.json").read_text())
    assert provenance["config"]["scale"] == "smoke"
    report = (res / "report.md").read_text()
    assert "4.58" in report and "1.72" in report  # the paper's published totals, labelled
    for table in (res / "tables").glob("*.csv"):
        assert len(pd.read_csv(table)) > 0, table
    figures = list((res / "figures").glob("*.png"))
    assert len(figures) >= 6
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table1 = pd.read_csv(res / "tables" / "table1_rmse.csv")
    assert np.isfinite(table1.select_dtypes("number").to_numpy()).all()


@pytest.mark.integration
def test_models_exported_and_checked(smoke_run: Path) -> None:
    for model in ["vgg", "vgg_bn", "hourglass", "hourglass_deconv"]:
        parity = json.loads(
            (smoke_run / RESULTS / "models" / model / "export" / "parity.json").read_text()
        )
        assert parity, model
        quant = json.loads(
            (smoke_run / RESULTS / "models" / model / "int8" / "quantization.json").read_text()
        )
        assert "drop" in quant
        bench = pd.read_csv(smoke_run / RESULTS / "benchmark" / f"{model}.csv")
        assert (bench["status"] == "ok").any()


@pytest.mark.integration
def test_figures_rerender_without_retraining(smoke_run: Path) -> None:
    model = smoke_run / RESULTS / "models" / "vgg" / "model.pt"
    before = model.stat().st_mtime_ns
    (smoke_run / RESULTS / "report.md").unlink()
    result = snakemake(smoke_run, "cephalometry_figures")
    assert (smoke_run / RESULTS / "report.md").exists()
    assert model.stat().st_mtime_ns == before
    assert "train_model" not in result.stdout + result.stderr


@pytest.mark.integration
def test_html_report_holds_every_figure_and_table(smoke_run: Path) -> None:
    """`snakemake --report` (a self-contained zip) holds each figure, table and the claims."""
    res = smoke_run / "results/cephalometry"
    expected = {p.name for p in (res / "figures").glob("*.png")}
    expected |= {p.name for p in (res / "tables").glob("*.csv")} | {"claims.csv"}
    assert len(expected) >= 8
    assert expected <= report_files(smoke_run, "cephalometry")
