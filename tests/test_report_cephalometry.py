"""Stage ``ceph-report`` on a small synthetic results directory."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medrepro.io.errors import InputError
from medrepro.report import cephalometry as ceph
from medrepro.report.markdown import format_value, to_markdown

LABELS = ["Or-L", "Or-R", "Po-L", "Po-R"]
CASES = ["c0", "c1", "c2", "c3"]  # c0 train, c1-c3 test
TEST = ["c1", "c2", "c3"]
SHAPE = (8, 8, 4)
SPACING = np.array([1.25, 1.25, 1.55])
#: (model, role) radial error of every test landmark, per backend (mm)
ERR = {
    "vgg": {"pytorch_fp32": 5.0, "openvino_fp32": 5.0, "openvino_int8": 5.3},
    "hourglass": {"pytorch_fp32": 1.0, "openvino_fp32": 1.0, "openvino_int8": 1.05},
    "vgg_bn": {"pytorch_fp32": 4.0, "openvino_fp32": 4.0, "openvino_int8": 4.05},
    "hourglass_deconv": {"pytorch_fp32": 1.5, "openvino_fp32": 1.5, "openvino_int8": 1.5},
}
#: batch-1 FPS (PyTorch f32 sync, OpenVINO f32 sync, OpenVINO f32 async, OpenVINO int8 sync)
FPS = {
    "vgg": (5.0, 20.0, 24.0, 30.0),
    "hourglass": (0.5, 1.0, 1.2, 1.1),
    "vgg_bn": (5.0, 20.0, 24.0, 40.0),
    "hourglass_deconv": (0.5, 1.5, 1.8, 1.6),
}


def _origin(i: int) -> np.ndarray:
    return np.array([-5.0 + i, -4.0, -3.0])


def _landmarks_mm(i: int) -> np.ndarray:
    vox = np.array([[2.0, 3.0, 1.0], [5.0, 3.0, 1.0], [1.0, 6.0, 2.0], [6.0, 6.0, 2.0]]) + 0.1 * i
    return _origin(i) + vox * SPACING


def _bench_row(
    model: str,
    backend: str,
    precision: str,
    mode: str,
    batch: int,
    fps: float | None,
    nreq: int = 1,
    status: str = "ok",
) -> dict[str, object]:
    """One row of ``benchmark/<model>.csv``; numbers empty unless ``status`` is ok."""
    ok = status == "ok" and fps is not None
    values = {
        "latency_median_ms": 1000 * batch / fps if ok else "",
        "latency_p90_ms": 1100 * batch / fps if ok else "",
        "latency_mean_ms": 1000 * batch / fps if ok else "",
        "latency_min_ms": 900 * batch / fps if ok else "",
        "total_time_s": 32 / fps if ok else "",
        "samples": 32 if ok else "",
        "fps": fps if ok else "",
        "peak_rss_mb": 500.0 if ok else "",
        "compile_time_s": 0.5 if ok else "",
        "first_inference_ms": 100.0 if ok else "",
        "repeats": 3 if ok else "",
    }
    return {
        "model": model,
        "backend": backend,
        "precision": precision,
        "mode": mode,
        "batch": batch,
        "threads": 2,
        "nreq": nreq,
        "status": status,
        **values,
    }


def make_results(root: Path, models: tuple[str, ...] = ("vgg", "hourglass")) -> dict[str, Path]:
    """Write a complete, tiny results directory; return the paths of dataset and splits."""
    pre = root / "preprocessed"
    pre.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lm_mm = np.stack([_landmarks_mm(i) for i in range(len(CASES))])
    np.savez(
        pre / "dataset.npz",
        images=rng.normal(size=(len(CASES), *SHAPE)).astype(np.float32),
        landmarks_vox=(lm_mm - np.stack([_origin(i) for i in range(len(CASES))])[:, None])
        / SPACING,
        landmarks_mm=lm_mm,
        origin=np.stack([_origin(i) for i in range(len(CASES))]),
        spacing=np.tile(SPACING, (len(CASES), 1)),
        direction=np.tile(np.eye(3), (len(CASES), 1, 1)),
        case_id=np.array(CASES),
        patient_id=np.array(["p0", "p1", "p2", "p3"]),
        labels=np.array(LABELS),
    )
    pd.DataFrame(
        {
            "case_id": CASES,
            "patient_id": ["p0", "p1", "p2", "p3"],
            "split": ["train", "test", "test", "test"],
        }
    ).to_csv(pre / "splits.csv", index=False)
    bench = root / "benchmark"
    bench.mkdir()
    for model in models:
        (bench / f"{model}_sysinfo.json").write_text(
            json.dumps(
                {
                    "cpu": {
                        "model": "Test CPU",
                        "flags": ["sse2", "avx2", "avx512f", "avx512_vnni"],
                    },
                    "versions": {"torch": "2.13.0", "openvino": "2026.4.1"},
                    "openvino_capabilities": ["FP32", "INT8", "BF16"],
                }
            )
        )
    for model in models:
        mdir = root / "models" / model
        (mdir / "export").mkdir(parents=True)
        (mdir / "int8").mkdir()
        rows = []
        for i, case in enumerate(CASES):
            for backend, err in ERR[model].items():
                for k, lab in enumerate(LABELS):
                    gt = lm_mm[i, k]
                    pred = gt + np.array([0.0, err * 0.6, err * 0.8])  # |offset| = err
                    rows.append(
                        {
                            "case_id": case,
                            "patient_id": f"p{i}",
                            "backend": backend,
                            "landmark": lab,
                            "pred_x": pred[0],
                            "pred_y": pred[1],
                            "pred_z": pred[2],
                            "gt_x": gt[0],
                            "gt_y": gt[1],
                            "gt_z": gt[2],
                            "error_mm": err,
                        }
                    )
        pd.DataFrame(rows).to_csv(mdir / "predictions.csv", index=False)
        pd.DataFrame(
            {
                "epoch": [1, 2, 3],
                "train_loss": [1.0, 0.5, 0.25],
                "val_loss": [1.2, 0.6, 0.4],
                "val_metric": [-8.0, -6.0, -5.0],
                "seconds": [10.0, 10.0, 10.0],
            }
        ).to_csv(mdir / "history.csv", index=False)
        ov_diff = 3e-4 if model == "hourglass" else 2e-6  # hourglass exceeds its tolerance
        routes = {
            "onnxruntime": 1e-6,
            "openvino_fp32": ov_diff,
            "openvino_fp16": 1e-3,
            "openvino_from_onnx": 2e-6,
        }
        (mdir / "export" / "parity.json").write_text(
            json.dumps(
                {
                    **routes,
                    "max_abs_reference": 1.0,
                    "tolerance": {k: 1e-4 if k != "openvino_fp16" else 1e-2 for k in routes},
                    "tolerance_ok": {k: True for k in routes},
                    "opset": 17,
                }
            )
        )
        (mdir / "export" / "model.onnx").write_bytes(b"x" * 1000)
        (mdir / "int8" / "quantization.json").write_text(
            json.dumps(
                {
                    "metric_fp32": -ERR[model]["openvino_fp32"],
                    "metric_int8": -ERR[model]["openvino_int8"],
                    "drop": 0.1,
                    "max_drop": 0.5,
                    "fake_quantize_total": 10,
                    "fake_quantize_kept": 9,
                    "reverted": 1,
                    "seconds": 12.0,
                }
            )
        )
        pt, ov, ova, i8 = FPS[model]
        brows = []

        brows.append(_bench_row(model, "pytorch", "f32", "sync", 1, pt))
        brows.append(_bench_row(model, "pytorch", "f32", "sync", 2, pt * 1.1))
        brows.append(_bench_row(model, "pytorch", "f32", "sync", 4, None, status="oom"))
        brows.append(_bench_row(model, "openvino", "f32", "sync", 1, ov))
        brows.append(_bench_row(model, "openvino", "f32", "sync", 2, ov * 0.95))
        brows.append(_bench_row(model, "openvino", "f32", "sync", 4, ov * 0.9))
        brows.append(_bench_row(model, "openvino", "f32", "async", 1, ova, nreq=4))
        brows.append(_bench_row(model, "openvino", "f32", "async", 2, ova * 0.97, nreq=4))
        brows.append(
            _bench_row(model, "openvino", "f32", "async", 4, None, nreq=4, status="timeout")
        )
        brows.append(_bench_row(model, "openvino", "int8", "sync", 1, i8))
        brows.append(_bench_row(model, "openvino", "bf16", "sync", 1, ov * 1.2))
        pd.DataFrame(brows).to_csv(bench / f"{model}.csv", index=False)
        node = "Interpolate" if model.startswith("hourglass") else "MVN"
        pd.DataFrame(
            {
                "precision": ["f32", "f32", "f32", "int8", "int8"],
                "node_type": ["Convolution", node, "Reorder", "Convolution", node],
                "time_ms": [30.0, 15.0, 5.0, 10.0, 10.0],
                "share": [0.6, 0.3, 0.1, 0.5, 0.5],
            }
        ).to_csv(bench / f"{model}_perf_counters.csv", index=False)
    return {"dataset": pre / "dataset.npz", "splits": pre / "splits.csv"}


def _argv(
    root: Path, paths: dict[str, Path], models: tuple[str, ...] = ("vgg", "hourglass")
) -> list[str]:
    return [
        "--results-dir",
        str(root),
        "--models",
        *models,
        "--paper-models",
        "vgg",
        "hourglass",
        "--config-json",
        '{"scale": "smoke", "seed": 7}',
        "--seed",
        "7",
        "--dataset",
        str(paths["dataset"]),
        "--splits",
        str(paths["splits"]),
    ]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ceph") / "results"
    paths = make_results(root)
    # hourglass_deconv and vgg_bn are listed but absent -> must raise; so list only those run
    assert ceph.main(_argv(root, paths)) == 0
    return root


def _claims(root: Path) -> dict[str, dict[str, str]]:
    with (root / "claims.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames is not None
        assert reader.fieldnames[:4] == ["claim", "paper", "measured", "holds"]
        assert reader.fieldnames in (
            ["claim", "paper", "measured", "holds"],
            ["claim", "paper", "measured", "holds", "note"],
        )
        return {row["claim"]: row for row in reader}


def test_every_output_exists_and_parses(report_dir: Path) -> None:
    for rel in ceph.OUTPUTS:
        path = report_dir / rel
        assert path.is_file(), rel
        assert path.stat().st_size > 0, rel
        if rel.endswith(".csv"):
            pd.read_csv(path, keep_default_na=False)
        elif rel.endswith(".png"):
            with Image.open(path) as img:
                assert img.size[0] > 100 and img.size[1] > 100
        elif rel.endswith(".json"):
            json.loads(path.read_text())
    assert not list(report_dir.rglob(".*.tmp*")), "temporary files left behind"


def test_table1_values(report_dir: Path) -> None:
    t1 = pd.read_csv(report_dir / "tables" / "table1_rmse.csv")
    assert list(t1.columns[:8]) == ["model", "backend", *LABELS, "total", "mre"]
    row = t1[(t1.model == "vgg") & (t1.backend == "pytorch_fp32")].iloc[0]
    for lab in LABELS:
        assert row[lab] == pytest.approx(5.0)
    assert row["total"] == pytest.approx(5.0)
    assert row["n_cases"] == 3  # the training case is excluded
    assert len(t1) == 6  # 2 models x 3 backends


def test_table2_values(report_dir: Path) -> None:
    t2 = pd.read_csv(report_dir / "tables" / "table2_sdr.csv")
    assert list(t2.columns[:5]) == ["model", "backend", "2 mm", "3 mm", "4 mm"]
    hg = t2[(t2.model == "hourglass") & (t2.backend == "pytorch_fp32")].iloc[0]
    vgg = t2[(t2.model == "vgg") & (t2.backend == "pytorch_fp32")].iloc[0]
    assert (hg["2 mm"], hg["4 mm"]) == (1.0, 1.0)
    assert (vgg["2 mm"], vgg["4 mm"]) == (0.0, 0.0)


def test_speed_table(report_dir: Path) -> None:
    t = pd.read_csv(report_dir / "tables" / "table3_5_speed.csv")
    assert (t["batch"] == 1).all()
    ov = t[
        (t.model == "vgg")
        & (t.backend == "openvino")
        & (t.precision == "f32")
        & (t["mode"] == "sync")
    ].iloc[0]
    assert ov["speedup_vs_pytorch"] == pytest.approx(4.0)
    assert ov["latency_median_s"] == pytest.approx(0.05)
    assert ov["framework_mode"] == "OpenVINO f32 sync"
    assert "OpenVINO f32 async (4 requests)" in set(t["framework_mode"])


def test_batch_table_marks_failures(report_dir: Path) -> None:
    t = pd.read_csv(report_dir / "tables" / "table4_6_batch.csv", keep_default_na=False, dtype=str)
    row = t[(t.model == "vgg") & (t.batch == "4")].iloc[0]
    assert row["pytorch_total_s"] == "–" and row["pytorch_fps"] == "–"
    assert row["pytorch_status"] == "oom"
    assert row["ov_async_status"] == "timeout" and row["ov_async_fps"] == "–"
    assert float(row["ov_sync_fps"]) == pytest.approx(18.0)


def test_deployment_and_perf_tables(report_dir: Path) -> None:
    d = pd.read_csv(report_dir / "tables" / "deployment.csv")
    vgg = d[d.model == "vgg"].iloc[0]
    assert vgg["parity_openvino_fp32"] == pytest.approx(2e-6)
    assert vgg["parity_tolerance_openvino_fp32"] == pytest.approx(1e-4)
    assert "parity_opset" not in d.columns
    assert vgg["int8_rmse_change_mm"] == pytest.approx(0.3)
    assert vgg["fq_kept"] == 9 and vgg["fq_total"] == 10
    assert vgg["onnx_mb"] == pytest.approx(0.001)
    p = pd.read_csv(report_dir / "tables" / "perf_counters.csv")
    assert set(p["model"]) == {"vgg", "hourglass"}
    assert p.groupby(["model", "precision"])["share_calc"].sum().to_numpy() == pytest.approx(1.0)


def test_claims(report_dir: Path) -> None:
    claims = _claims(report_dir)
    assert {row["holds"] for row in claims.values()} <= {"yes", "no", "n/a"}
    assert (
        claims["Hourglass is more accurate than direct regression (total RMSE)"]["holds"] == "yes"
    )
    assert claims["Hourglass puts ≥ 0.95 of landmarks within 4 mm"]["holds"] == "yes"
    assert (
        claims["OpenVINO is faster than PyTorch for both models (sync, batch 1)"]["holds"] == "yes"
    )
    assert claims["OpenVINO async (4 requests) beats sync"]["holds"] == "yes"
    assert claims["A larger batch does not raise OpenVINO throughput"]["holds"] == "yes"
    dr = next(v for k, v in claims.items() if k.startswith("Best OpenVINO ≥ 13.8×"))
    assert dr["holds"] == "no"  # best is 6× (int8) sync
    assert "6.00×" in dr["measured"]
    assert claims["OpenVINO FP32 reproduces PyTorch (max abs diff): vgg"]["holds"] == "yes"
    assert claims["OpenVINO FP32 reproduces PyTorch (max abs diff): hourglass"]["holds"] == "no"
    assert claims["INT8 within 0.1 mm RMSE of FP32: vgg"]["holds"] == "no"  # +0.3 mm
    assert claims["INT8 within 0.1 mm RMSE of FP32: hourglass"]["holds"] == "yes"  # +0.05 mm
    # vgg_bn and hourglass_deconv were not run -> n/a
    deconv = next(v for k, v in claims.items() if k.startswith("Deconvolution replacement"))
    bn = next(v for k, v in claims.items() if k.startswith("Folding normalisation"))
    assert deconv["holds"] == "n/a" and bn["holds"] == "n/a"


def test_report_md_contents(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text()
    assert "published (Vasiliev et al. 2020, i7-8700, OpenVINO 2020.3, PyTorch 1.5.1)" in text
    for published in (
        "4.58",
        "1.72",
        "0.95",
        "0.61",
        "13.752",
        "16.797",
        "3.518",
        "3.828",
        "375.814",
        "90.904",
    ):
        assert published in text, published
    assert "synthetic" in text.lower()
    # our numbers: vgg RMSE 5.00 mm, hourglass 1.00 mm, vgg OpenVINO f32 sync speed-up 4.00
    assert "| ours | vgg | pytorch_fp32 | 5.00 | 5.00 | 5.00 | 5.00 | 5.00 | 5.00 |" in text
    assert "| ours | hourglass | pytorch_fp32 | 1.00 |" in text
    assert "4.00" in text
    for rel in ceph.OUTPUTS:
        if rel.startswith("figures/"):
            assert f"({rel})" in text
    assert "## Claims" in text and "## Discussion" in text and "provenance.json" in text


def test_provenance(report_dir: Path) -> None:
    prov = json.loads((report_dir / "provenance.json").read_text())
    assert prov["seed"] == 7
    assert prov["config"] == {"scale": "smoke", "seed": 7}
    assert {"python", "torch", "openvino", "nncf", "onnxruntime", "SimpleITK", "snakemake"} <= set(
        prov["versions"]
    )
    assert prov["cpu"]["model"]
    assert isinstance(prov["cpu"]["flags"], list)
    assert prov["git_commit"]
    assert prov["created_utc"].endswith("+00:00")
    assert any(p.endswith("predictions.csv") for p in prov["inputs"])


def test_missing_predictions_raises_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "results"
    paths = make_results(root)
    missing = root / "models" / "hourglass" / "predictions.csv"
    missing.unlink()
    with pytest.raises(InputError) as info:
        ceph.main(_argv(root, paths))
    assert info.value.path == missing
    assert "predictions.csv" in str(info.value)
    assert not (root / "report.md").exists()
    assert not (root / "claims.csv").exists()
    assert not (root / "tables").exists()


def test_unrun_model_in_models_raises(tmp_path: Path) -> None:
    root = tmp_path / "results"
    paths = make_results(root)
    with pytest.raises(InputError, match="vgg_bn"):
        ceph.main(_argv(root, paths, models=("vgg", "vgg_bn", "hourglass")))


def test_cli_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medrepro.cli import main as cli_main

    root = tmp_path / "results"
    paths = make_results(root)
    (root / "benchmark" / "vgg_sysinfo.json").unlink()
    assert cli_main(["ceph-report", *_argv(root, paths)]) == 2
    assert "sysinfo.json" in capsys.readouterr().err


def test_single_model_and_config_file(tmp_path: Path) -> None:
    root = tmp_path / "results"
    paths = make_results(root, models=("hourglass",))
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"scale": "tiny"}))
    argv = _argv(root, paths, models=("hourglass",))
    argv[argv.index("--config-json") + 1] = str(cfg)
    assert ceph.main(argv) == 0
    claims = _claims(root)
    assert (
        claims["Hourglass is more accurate than direct regression (total RMSE)"]["holds"] == "n/a"
    )
    assert claims["Hourglass puts ≥ 0.95 of landmarks within 4 mm"]["holds"] == "yes"
    assert "`tiny`" in (root / "report.md").read_text()


def test_inconsistent_error_column_raises(tmp_path: Path) -> None:
    root = tmp_path / "results"
    paths = make_results(root)
    path = root / "models" / "vgg" / "predictions.csv"
    df = pd.read_csv(path)
    df.loc[0, "error_mm"] = 99.0
    df.to_csv(path, index=False)
    with pytest.raises(InputError, match="error_mm"):
        ceph.main(_argv(root, paths))


def test_mm_to_voxel_inverts_grid() -> None:
    rng = np.random.default_rng(1)
    direction, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    origin, spacing = rng.normal(size=3), np.array([1.25, 1.25, 1.55])
    idx = rng.uniform(0, 10, size=(5, 3))
    mm = origin + idx @ (direction * spacing).T
    np.testing.assert_allclose(ceph.mm_to_voxel(mm, origin, spacing, direction), idx, atol=1e-9)


def test_markdown_helpers() -> None:
    df = pd.DataFrame({"name": ["a|b", "c"], "x": [1.23456, math.nan], "n": [3, 4]})
    md = to_markdown(df, digits={"x": 3})
    lines = md.splitlines()
    assert lines[0] == "| name | x | n |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2] == "| a\\|b | 1.235 | 3 |"
    assert lines[3] == "| c | – | 4 |"
    assert format_value(True) == "yes"
    assert format_value(1e-7, 3) == "1.0e-07"


def test_variant_claims_with_all_four_models(tmp_path: Path) -> None:
    models = ("vgg", "vgg_bn", "hourglass", "hourglass_deconv")
    root = tmp_path / "results"
    paths = make_results(root, models=models)
    assert ceph.main(_argv(root, paths, models=models)) == 0
    claims = _claims(root)
    deconv = next(v for k, v in claims.items() if k.startswith("Deconvolution replacement"))
    bn = next(v for k, v in claims.items() if k.startswith("Folding normalisation"))
    assert deconv["holds"] == "yes" and "1.50×" in deconv["measured"]
    assert bn["holds"] == "yes" and "2.00×" in bn["measured"] and "1.50×" in bn["measured"]
    t1 = pd.read_csv(root / "tables" / "table1_rmse.csv")
    assert list(dict.fromkeys(t1["model"])) == list(models)
    assert set(t1.loc[t1.paper_role.notna(), "model"]) == {"vgg", "hourglass"}


def test_provenance_helpers(tmp_path: Path) -> None:
    from medrepro.report.provenance import cpu_info, file_digest, git_commit, provenance

    assert git_commit(tmp_path) == "unknown"  # not a checkout
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Fancy CPU\nflags\t\t: sse2 avx2\nmodel name\t: Fancy CPU\n")
    info = cpu_info(cpuinfo)
    assert info["model"] == "Fancy CPU" and info["flags"] == ["avx2", "sse2"]
    f = tmp_path / "x.txt"
    f.write_text("abc")
    assert file_digest(f)["bytes"] == 3
    assert file_digest(tmp_path / "nope") == {"missing": True}
    prov = provenance({"a": 1}, 3, inputs=[f], argv=["medrepro", "ceph-report"])
    assert prov["command"] == "medrepro ceph-report"
    json.dumps(prov)  # serialisable


def test_degraded_artefacts_give_n_a(tmp_path: Path) -> None:
    """Failed OpenVINO runs, no INT8 predictions, no perf counters: report still written."""
    root = tmp_path / "results"
    paths = make_results(root)
    for model in ("vgg", "hourglass"):
        bench = root / "benchmark" / f"{model}.csv"
        df = pd.read_csv(bench)
        ov = df["backend"] == "openvino"
        df.loc[ov, "status"] = "error"
        df.loc[ov, ["fps", "total_time_s", "latency_median_ms", "latency_p90_ms"]] = np.nan
        df.to_csv(bench, index=False)
        perf = root / "benchmark" / f"{model}_perf_counters.csv"
        perf.write_text("precision,node_type,time_ms,share\n")
        pred_path = root / "models" / model / "predictions.csv"
        pred = pd.read_csv(pred_path)
        pred[pred["backend"] != "openvino_int8"].to_csv(pred_path, index=False)
    assert ceph.main(_argv(root, paths)) == 0
    claims = _claims(root)
    assert (
        claims["OpenVINO is faster than PyTorch for both models (sync, batch 1)"]["holds"] == "n/a"
    )
    assert claims["INT8 within 0.1 mm RMSE of FP32: vgg"]["holds"] == "n/a"
    assert (
        claims["Hourglass is more accurate than direct regression (total RMSE)"]["holds"] == "yes"
    )
    batch = pd.read_csv(root / "tables" / "table4_6_batch.csv", keep_default_na=False, dtype=str)
    assert set(batch["ov_sync_status"]) == {"error"}
    assert (root / "figures" / "perf_counters.png").is_file()
    assert "No performance counters were recorded." in (root / "report.md").read_text()
