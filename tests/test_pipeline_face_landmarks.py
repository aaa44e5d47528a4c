"""End to end: the ``face_landmarks`` target at smoke scale through Snakemake in a temporary
directory (synthetic faces and iBUG .pts, the source ResNet on identities, every method at every
label budget, evaluation, the best model in OpenVINO FP32 and INT8, report); then the same rules
on a copy of the data with one broken .pts file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from smoke_pipeline import report_files, smoke_workdir, snakemake

RESULTS = Path("results/face_landmarks")
METHODS = ["hg", "fe", "ftp", "ft", "ctd_cd", "ctd_ed", "ctd_com"]
SMOKE_BUDGETS = [25, 100]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_workdir(tmp_path_factory, "face_smoke", "face_landmarks")


@pytest.mark.integration
def test_ibug_layout_written_and_split(smoke_run: Path) -> None:
    target = smoke_run / "data/face_landmarks/target"
    names = json.loads((target / "landmarks.json").read_text())["names"]
    images = sorted(target.glob("*.png"))
    assert len(images) >= 10
    for image in images:
        lines = image.with_suffix(".pts").read_text().splitlines()
        assert lines[:3] == ["version: 1", f"n_points: {len(names)}", "{"]
    splits = pd.read_csv(smoke_run / RESULTS / "preprocessed/splits.csv")
    assert len(splits) == len(images)
    n_test = int((splits["split"] == "test").sum())
    assert 0 < n_test < len(splits) and abs(n_test / len(splits) - 0.2) < 0.1
    ranks = splits.loc[splits["split"] == "train", "budget_rank"]
    assert sorted(ranks) == list(range(len(ranks)))


@pytest.mark.integration
def test_every_method_and_budget_trained_and_scored(smoke_run: Path) -> None:
    summary = pd.read_csv(smoke_run / RESULTS / "evaluation/summary.csv")
    got = {(m, int(b)) for m, b in zip(summary["method"], summary["budget"], strict=True)}
    assert got == {(m, b) for m in METHODS for b in SMOKE_BUDGETS}
    assert (summary["me_px"] > 0).all() and summary["auc"].between(0, 1).all()
    n_train = summary.groupby("budget")["n_train"].first()
    assert n_train[25] < n_train[100]
    for m in METHODS:
        for b in SMOKE_BUDGETS:
            assert (smoke_run / RESULTS / f"models/{m}/{b}/history.csv").is_file()


@pytest.mark.integration
def test_deployed_model_agrees_across_runtimes(smoke_run: Path) -> None:
    """The selected model: PyTorch and OpenVINO FP32 give the same landmarks."""
    deploy = smoke_run / RESULTS / "deploy"
    selection = json.loads((deploy / "best/selection.json").read_text())
    assert selection["method"] in METHODS
    pred = pd.read_csv(deploy / "evaluation/predictions.csv")
    torch_xy = pred[pred["runtime"] == "torch"][["x_pred", "y_pred"]].to_numpy()
    ov_xy = pred[pred["runtime"] == "openvino_fp32"][["x_pred", "y_pred"]].to_numpy()
    assert torch_xy.shape == ov_xy.shape and len(torch_xy) > 0
    np.testing.assert_allclose(torch_xy, ov_xy, atol=0.05)
    bench = pd.read_csv(deploy / "benchmark.csv")
    assert {"f32", "int8"} <= set(bench["precision"])


@pytest.mark.integration
def test_report_claims_tables_and_figures(smoke_run: Path) -> None:
    res = smoke_run / RESULTS / "report"
    claims = pd.read_csv(res / "claims.csv", keep_default_na=False)
    assert list(claims.columns[:4]) == ["claim", "paper", "measured", "holds"]
    assert set(claims["holds"]) <= {"yes", "no", "n/a"} and len(claims) >= 5
    table1 = pd.read_csv(res / "tables/table1_methods.csv")
    assert len(table1) == len(METHODS)
    figures = sorted((res / "figures").glob("*.png"))
    assert len(figures) == 4
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((res / "provenance.json").read_text())


@pytest.mark.integration
def test_rerun_is_a_no_op(smoke_run: Path) -> None:
    result = snakemake(smoke_run, "face_landmarks", "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.integration
def test_html_report_holds_every_figure_and_table(smoke_run: Path) -> None:
    res = smoke_run / RESULTS / "report"
    expected = {p.name for p in (res / "figures").glob("*.png")}
    expected |= {p.name for p in (res / "tables").glob("*.csv")} | {"claims.csv"}
    assert len(expected) >= 7
    assert expected <= report_files(smoke_run, "face_landmarks")


@pytest.mark.integration
def test_real_data_dir_with_a_bad_pts_fails_cleanly(smoke_run: Path, tmp_path: Path) -> None:
    """A user's directory where one .pts has a point too few: the dataset rule stops with the
    file's name and leaves no output."""
    user = tmp_path / "faces"
    shutil.copytree(smoke_run / "data/face_landmarks/target", user)
    broken = sorted(user.glob("*.pts"))[0]
    lines = broken.read_text().splitlines()
    k = int(lines[1].split(":")[1])
    broken.write_text("\n".join([lines[0], f"n_points: {k - 1}", "{", *lines[3 : 3 + k - 1], "}"]))
    work = tmp_path / "work"
    work.mkdir()
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    config["face_landmarks"]["data_dir"] = str(user)
    config["face_landmarks"]["source_dir"] = str(smoke_run / "data/face_landmarks/source")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(work, str(RESULTS / "preprocessed/dataset.npz"), check=False)
    assert result.returncode != 0
    log = (work / "logs/face_landmarks/dataset.log").read_text()
    assert broken.name in log
    assert not (work / RESULTS / "preprocessed").exists() or not any(
        (work / RESULTS / "preprocessed").iterdir()
    )
