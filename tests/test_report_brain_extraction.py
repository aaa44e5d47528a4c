"""Stage ``brain-report`` on a small fabricated results tree with known numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medrepro.benchmark.driver import COLUMNS
from medrepro.io.errors import InputError
from medrepro.io.images import array_to_image, write_image
from medrepro.report import brain_extraction as rep
from medrepro.report.brain_extraction_figures import brain_centre, plane
from medrepro.report.brain_extraction_inputs import choose_example
from medrepro.report.brain_extraction_tables import mean_sd

MODEL = "resunet"
SUBJECTS = ("s1", "s2", "s3")
MODALITIES = ("t1ce", "flair")
#: PyTorch FP32 Dice per (subject, modality); t1ce median is s2
PT_DICE = {
    ("s1", "t1ce"): 0.95,
    ("s2", "t1ce"): 0.96,
    ("s3", "t1ce"): 0.97,
    ("s1", "flair"): 0.94,
    ("s2", "flair"): 0.93,
    ("s3", "flair"): 0.92,
}
#: config -> (framework, precision, route, Dice offset vs PyTorch)
CONFIGS = {
    "pytorch_fp32": ("pytorch", "fp32", "eager", 0.0),
    "onnxruntime_fp32": ("onnxruntime", "fp32", "onnx", 0.0),
    "openvino_fp32": ("openvino", "fp32", "direct", 0.0),
    "openvino_fp32_onnx": ("openvino", "fp32", "onnx", 0.0),
    "openvino_int8": ("openvino", "int8", "direct", -0.0004),
    "openvino_int8_default": ("openvino", "int8", "direct", -0.01),
}
#: batch-1 sync latency (ms) and peak RSS (MB) of the main benchmark
BENCH = {
    ("pytorch", "f32"): (1000.0, 1000.0),
    ("onnxruntime", "f32"): (800.0, 1100.0),
    ("openvino", "f32"): (500.0, 1300.0),
    ("openvino", "int8"): (150.0, 900.0),
}
#: core scaling: latency (ms) per thread count
SCALING = {
    1: {("pytorch", "f32"): 2000.0, ("openvino", "f32"): 1000.0, ("openvino", "int8"): 300.0},
    2: {("pytorch", "f32"): 1000.0, ("openvino", "f32"): 500.0, ("openvino", "int8"): 150.0},
}
SHAPE = (12, 12, 10)
SPACING = (1.0, 1.0, 1.5)


def _hd95(sid: str, config: str) -> float:
    return {"s1": 2.0, "s2": 3.0, "s3": 4.0}[sid] + (0.5 if "int8" in config else 0.0)


def _bench_row(backend: str, precision: str, lat: float | None, rss: float | None, threads: int,
               status: str = "ok") -> dict[str, object]:  # fmt: skip
    ok = status == "ok"
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        {
            "model": MODEL,
            "backend": backend,
            "precision": precision,
            "mode": "sync",
            "batch": 1,
            "threads": threads,
            "nreq": 1,
            "status": status,
        }
    )
    if ok:
        row.update(
            {
                "latency_median_ms": lat,
                "latency_p90_ms": lat * 1.1,
                "latency_mean_ms": lat,
                "latency_min_ms": lat * 0.9,
                "total_time_s": lat / 100,
                "samples": 10,
                "fps": 1000.0 / lat,
                "peak_rss_mb": rss,
                "compile_time_s": 0.1,
                "first_inference_ms": lat,
                "repeats": 1,
            }
        )
    return row


def _sphere(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    idx = np.indices(SHAPE).astype(float)
    d2 = sum((idx[a] - centre[a]) ** 2 for a in range(3))
    return (d2 <= radius**2).astype(np.uint8)


def _write_nii(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(array_to_image(arr, (0.0, 0.0, 0.0), SPACING, np.eye(3)), path)


def make_results(root: Path, onnx_offset: float = 0.0, int8_latency: float = 150.0) -> Path:
    """Write a complete tiny results tree under ``root``; return ``root``."""
    mdir = root / "models" / MODEL
    rows = []
    for (sid, mod), pt in PT_DICE.items():
        for config, (fw, prec, route, off) in CONFIGS.items():
            off = off + (onnx_offset if config == "openvino_fp32_onnx" else 0.0)
            empty_pred = config == "openvino_int8_default" and (sid, mod) == ("s1", "flair")
            rows.append(
                {
                    "subject_id": sid,
                    "modality": mod,
                    "config": config,
                    "framework": fw,
                    "precision": prec,
                    "route": route,
                    "dice": 0.0 if empty_pred else pt + off,
                    "hd95_mm": math.nan if empty_pred else _hd95(sid, config),
                    "hd95_max_mm": math.nan if empty_pred else _hd95(sid, config) + 1,
                    "empty_pred": empty_pred,
                    "empty_gt": False,
                    "pred_volume_ml": 0.0 if empty_pred else 1.2,
                    "gt_volume_ml": 1.2,
                    "seconds": 0.5,
                }
            )
    mdir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(mdir / "evaluation.csv", index=False)
    pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [0.5, 0.3],
            "val_loss": [0.4, 0.3],
            "val_metric": [0.8, 0.9],
            "seconds": [10.0, 11.0],
        }
    ).to_csv(mdir / "history.csv", index=False)
    (mdir / "export").mkdir()
    keys = ("onnxruntime", "openvino_fp32", "openvino_fp16", "openvino_from_onnx")
    diffs = dict(zip(keys, (2e-6, 3e-6, 4e-3, 5e-6), strict=True))
    (mdir / "export" / "parity.json").write_text(
        json.dumps(
            {
                **diffs,
                "tolerance": {k: 2e-4 if k != "openvino_fp16" else 2e-2 for k in keys},
                "tolerance_ok": dict.fromkeys(keys, True),
                "opset": 17,
            }
        )
    )
    for sub, mode, kept, drop in (("int8", "accuracy_control", 40, 0.0003), ("int8_default", "default", 50, 0.008)):  # fmt: skip
        (mdir / sub).mkdir()
        (mdir / sub / "quantization.json").write_text(
            json.dumps(
                {
                    "mode": mode,
                    "metric_fp32": 0.9,
                    "metric_int8": 0.9 - drop,
                    "drop": drop,
                    "max_drop": 0.005,
                    "target_reached": True,
                    "fake_quantize_total": 50,
                    "fake_quantize_kept": kept,
                    "reverted": 50 - kept,
                    "float_operations": [{"name": "a", "type": "Convolution"}] * (50 - kept),
                    "seconds": 12.0,
                }
            )
        )
    # masks of the Fig. 4 subject only (s2, t1ce): the loader must pick it
    gt = _sphere((6, 6, 5), 3.5)
    _write_nii((gt * 100 + 20).astype(np.float32), root / "native" / "s2" / "s2_t1ce.nii.gz")
    _write_nii(gt, root / "native" / "s2" / "s2_mask.nii.gz")
    for config, radius in (("pytorch_fp32", 3.4), ("openvino_fp32", 3.4), ("openvino_int8", 3.2)):
        _write_nii(_sphere((6, 6, 5), radius), mdir / "masks" / f"s2_t1ce_{config}.nii.gz")
    bdir = root / "benchmark"
    (bdir / "scaling").mkdir(parents=True)
    bench = [_bench_row(b, p, *v, threads=2) for (b, p), v in BENCH.items()]
    bench[-1] = _bench_row("openvino", "int8", int8_latency, 900.0, threads=2)
    bench.append(_bench_row("openvino", "bf16", None, None, threads=2, status="unsupported"))
    pd.DataFrame(bench, columns=COLUMNS).to_csv(bdir / f"{MODEL}.csv", index=False)
    for k, lat in SCALING.items():
        rows_k = [_bench_row(b, p, v, 800.0, threads=k) for (b, p), v in lat.items()]
        pd.DataFrame(rows_k, columns=COLUMNS).to_csv(bdir / "scaling" / f"{MODEL}_t{k}.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {
            "precision": ["f32", "f32", "int8"],
            "node_type": ["Convolution", "MVN", "Convolution"],
            "time_ms": [300.0, 100.0, 80.0],
            "share": [0.75, 0.25, 1.0],
        }
    ).to_csv(bdir / f"{MODEL}_perf_counters.csv", index=False)
    (bdir / f"{MODEL}_sysinfo.json").write_text(
        json.dumps(
            {
                "cpu_model": "Test CPU",
                "cpu_flags": ["avx2", "fma"],
                "logical_cpus": 2,
                "versions": {"torch": "2.13.0", "openvino": "2026.1", "onnxruntime": "1.22"},
            }
        )
    )
    pre = root / "preprocessed"
    pre.mkdir()
    pd.DataFrame(
        {
            "subject_id": ["s1", "s2", "s3", "s4"],
            "mask_dice_vs_atlas": [0.93, 0.95, 0.91, 0.70],
            "rotation_deg_t1ce": [3.0, 5.0, 2.0, 25.0],
            "translation_mm_t1ce": [4.0, 1.0, 2.0, 30.0],
            "qc_pass": [True, True, True, False],
            "reason": ["", "", "", "mask Dice 0.70 < 0.85"],
            "included": [True, True, True, False],
        }
    ).to_csv(pre / "qc.csv", index=False)
    return root


CONFIG = {
    "scale": "smoke",
    "seed": 0,
    "brain_extraction": {
        "data_dir": None,
        "qc_min_dice": 0.85,
        "threshold": 0.9,
        "quantization": {"max_drop": 0.005},
        "scales": {"smoke": {"input_shape": [32, 32, 32]}},
    },
}


def _argv(root: Path, threads: tuple[int, ...] = (1, 2)) -> list[str]:
    return [
        "--results-dir",
        str(root),
        "--model",
        MODEL,
        "--scaling-threads",
        *map(str, threads),
        "--config-json",
        json.dumps(CONFIG),
        "--seed",
        "0",
    ]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_results(tmp_path_factory.mktemp("brain") / "results")
    assert rep.main(_argv(root)) == 0
    return root


def _claims(root: Path) -> dict[str, str]:
    with (root / "claims.csv").open(newline="") as fh:
        return {row["claim"]: row["holds"] for row in csv.DictReader(fh)}


def _holds(claims: dict[str, str], prefix: str) -> str:
    hits = [v for k, v in claims.items() if k.startswith(prefix)]
    assert len(hits) == 1, (prefix, list(claims))
    return hits[0]


def test_every_output_exists(report_dir: Path) -> None:
    for rel in rep.OUTPUTS:
        path = report_dir / rel
        assert path.is_file() and path.stat().st_size > 0, rel
        if rel.endswith(".png"):
            with Image.open(path) as img:
                assert min(img.size) > 100
    assert not list(report_dir.rglob(".*.tmp*"))


def test_table4_speed_and_memory_normalisation(report_dir: Path) -> None:
    t4 = pd.read_csv(report_dir / "tables" / "table4_summary.csv").set_index("config")
    # speed-up = 1000 ms / latency; memory = RSS / 1000 MB
    assert t4.loc["pytorch_fp32", "speedup"] == pytest.approx(1.0)
    assert t4.loc["openvino_fp32", "speedup"] == pytest.approx(2.0)
    assert t4.loc["openvino_int8", "speedup"] == pytest.approx(1000 / 150, rel=1e-5)
    assert t4.loc["onnxruntime_fp32", "speedup"] == pytest.approx(1.25)
    assert t4.loc["openvino_fp32", "memory_norm"] == pytest.approx(1.3)
    assert t4.loc["openvino_int8", "memory_norm"] == pytest.approx(0.9)
    assert math.isnan(t4.loc["openvino_fp32_onnx", "speedup"])  # not benchmarked
    # accuracy: means over 6 items, published beside
    assert t4.loc["pytorch_fp32", "dice_mean"] == pytest.approx(np.mean(list(PT_DICE.values())))
    assert t4.loc["openvino_int8", "dice_mean"] == pytest.approx(
        np.mean(list(PT_DICE.values())) - 0.0004
    )
    assert t4.loc["openvino_int8", "published_dice"] == pytest.approx(0.97118)
    assert t4.loc["openvino_int8", "published_speedup_vs_pt190"] == pytest.approx(6.2)
    assert t4.loc["pytorch_fp32", "version"] == "2.13.0"


def test_hd95_nan_excluded_and_counted(report_dir: Path) -> None:
    t4 = pd.read_csv(report_dir / "tables" / "table4_summary.csv").set_index("config")
    assert t4.loc["openvino_int8_default", "hd95_excluded"] == 1
    assert t4.loc["pytorch_fp32", "hd95_excluded"] == 0
    # remaining five items: s2, s3 flair and s1..s3 t1ce, each +0.5 mm for INT8
    expected = np.mean([3.0, 4.0, 2.0, 3.0, 4.0]) + 0.5
    assert t4.loc["openvino_int8_default", "hd95_mean"] == pytest.approx(expected)
    assert t4.loc["openvino_int8_default", "n_items"] == 6  # Dice keeps every item
    per_mod = pd.read_csv(report_dir / "tables" / "per_modality.csv")
    row = per_mod[(per_mod.config == "openvino_int8_default") & (per_mod.modality == "flair")]
    assert int(row["hd95_excluded"].iloc[0]) == 1
    assert row["hd95_mean"].iloc[0] == pytest.approx(np.mean([3.0, 4.0]) + 0.5)
    assert "(1 excl.)" in (report_dir / "report.md").read_text()


def test_routes_quantization_scaling_qc(report_dir: Path) -> None:
    routes = pd.read_csv(report_dir / "tables" / "routes.csv").set_index("route")
    assert routes.loc["onnx", "parity_max_abs_diff"] == pytest.approx(5e-6)
    assert routes.loc["onnx", "dice_diff_mean"] == pytest.approx(0.0)
    assert routes.loc["direct_fp16", "n_items"] == 0
    quant = pd.read_csv(report_dir / "tables" / "quantization.csv").set_index("mode")
    assert quant.loc["accuracy_control", "fake_quantize_kept_share"] == pytest.approx(0.8)
    assert quant.loc["accuracy_control", "test_dice_drop_vs_pytorch_fp32"] == pytest.approx(0.0004)
    assert quant.loc["default", "float_operations"] == 0
    sc = pd.read_csv(report_dir / "tables" / "core_scaling.csv")
    int8_2 = sc[(sc.precision == "int8") & (sc.threads == 2)].iloc[0]
    assert int8_2["speedup_vs_pytorch_min_threads"] == pytest.approx(2000 / 150, rel=1e-5)
    assert int8_2["speedup_vs_pytorch_same_threads"] == pytest.approx(1000 / 150, rel=1e-5)
    assert int8_2["scaling_vs_own_min_threads"] == pytest.approx(2.0)
    qc = pd.read_csv(report_dir / "tables" / "qc.csv").set_index("subject_id")
    assert bool(qc.loc["s4", "below_threshold"]) and not bool(qc.loc["s1", "below_threshold"])
    assert not bool(qc.loc["s4", "in_test_set"])


def test_claims(report_dir: Path) -> None:
    c = _claims(report_dir)
    assert _holds(c, "OpenVINO FP32 keeps PyTorch's Dice") == "yes"
    assert _holds(c, "INT8 (accuracy control) loses <") == "yes"  # 0.0004 < 0.001
    assert _holds(c, "INT8 (accuracy control) Dice drop within") == "yes"
    assert _holds(c, "OpenVINO INT8 is the fastest") == "yes"
    assert _holds(c, "OpenVINO FP32 is faster than PyTorch") == "yes"
    assert _holds(c, "INT8 >= 6.2×") == "yes"  # 6.67x, drop 0.0004, 900 <= 1000 MB
    assert _holds(c, "INT8 uses less memory") == "yes"
    assert _holds(c, "Speed grows") == "yes"
    assert _holds(c, "Speed drops slightly") == "n/a"  # physical cores unknown
    assert _holds(c, "The ONNX route loses") == "no"  # same Dice as the direct route
    assert _holds(c, "About 99.4 %") == "n/a"


def test_report_md(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text()
    assert "synthetic" in text.lower() and "MNI152" in text
    for heading in ("Table 4", "Conversion routes", "INT8 quantization", "Core scaling",
                    "Dice per input modality", "Claims", "Discussion", "registration QC"):  # fmt: skip
        assert heading in text, heading
    assert "0.97198" in text and "published" in text
    assert "s4" in text  # the QC failure is listed
    assert "no VNNI or AMX-INT8" not in text  # INT8 met the target
    prov = json.loads((report_dir / "provenance.json").read_text())
    assert prov["seed"] == 0 and prov["report"]["example"].startswith("test subject `s2`")
    assert any(p.endswith("evaluation.csv") for p in prov["inputs"])


def test_constructed_failures(tmp_path: Path) -> None:
    """ONNX route 0.01 Dice worse, INT8 at 400 ms (2.5x): those verdicts flip; one thread count."""
    root = make_results(tmp_path / "r", onnx_offset=-0.01, int8_latency=400.0)
    assert rep.main(_argv(root, threads=(1,))) == 0
    c = _claims(root)
    assert _holds(c, "The ONNX route loses") == "yes"
    assert _holds(c, "INT8 >= 6.2×") == "no"
    assert _holds(c, "OpenVINO INT8 is the fastest") == "yes"  # 400 < 500 ms
    assert _holds(c, "Speed grows") == "n/a"  # one thread count only
    text = (root / "report.md").read_text()
    assert "no VNNI or AMX-INT8" in text  # sysinfo flags: avx2, fma


def test_missing_input_raises_and_writes_nothing(tmp_path: Path) -> None:
    root = make_results(tmp_path / "r")
    missing = root / "models" / MODEL / "int8_default" / "quantization.json"
    missing.unlink()
    with pytest.raises(InputError) as info:
        rep.main(_argv(root))
    assert info.value.path == missing
    assert not (root / "report.md").exists() and not (root / "tables").exists()
    assert not (root / "figures").exists() and not (root / "claims.csv").exists()


def test_missing_scaling_file_and_fig4_mask(tmp_path: Path) -> None:
    root = make_results(tmp_path / "r")
    with pytest.raises(InputError, match="_t4.csv"):
        rep.main(_argv(root, threads=(1, 4)))
    (root / "models" / MODEL / "masks" / "s2_t1ce_openvino_int8.nii.gz").unlink()
    with pytest.raises(InputError, match="openvino_int8"):
        rep.main(_argv(root))
    assert not (root / "report.md").exists()


def test_nan_hd95_without_flag_is_malformed(tmp_path: Path) -> None:
    root = make_results(tmp_path / "r")
    path = root / "models" / MODEL / "evaluation.csv"
    ev = pd.read_csv(path)
    ev.loc[0, "hd95_mm"] = np.nan
    ev.to_csv(path, index=False)
    with pytest.raises(InputError, match="hd95_mm missing"):
        rep.main(_argv(root))


def test_cli_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medrepro.cli import main as cli_main

    root = make_results(tmp_path / "r")
    (root / "preprocessed" / "qc.csv").unlink()
    assert cli_main(["brain-report", *_argv(root)]) == 2
    assert "qc.csv" in capsys.readouterr().err


def test_helpers() -> None:
    mean, sd, n, excluded = mean_sd([1.0, np.nan, 3.0])
    assert (mean, n, excluded) == (2.0, 2, 1) and sd == pytest.approx(math.sqrt(2.0))
    vol = np.zeros((4, 5, 6))
    vol[1, 2, 3] = 1
    assert plane(vol, 2, 3).shape == (5, 4) and plane(vol, 2, 3)[2, 1] == 1  # rows y, cols x
    assert plane(vol, 0, 1).shape == (6, 5) and plane(vol, 0, 1)[3, 2] == 1  # rows z, cols y
    assert tuple(brain_centre(vol > 0)) == (1, 2, 3)
    ev = pd.DataFrame(
        {
            "subject_id": ["a", "b", "c", "d", "a"],
            "modality": ["t1ce", "t1ce", "t1ce", "t1ce", "t1"],
            "config": ["pytorch_fp32"] * 5,
            "dice": [0.9, 0.8, 0.95, 0.85, 0.1],
        }
    )
    assert choose_example(ev) == ("d", "t1ce", ["pytorch_fp32"])  # sorted 0.8, 0.85, 0.9, 0.95


def test_degraded_artefacts_give_n_a(tmp_path: Path) -> None:
    """Only PyTorch and OpenVINO FP32 evaluated, no INT8 benchmark, no scaling: verdicts n/a."""
    root = make_results(tmp_path / "r")
    path = root / "models" / MODEL / "evaluation.csv"
    ev = pd.read_csv(path)
    ev[ev.config.isin(["pytorch_fp32", "openvino_fp32"])].to_csv(path, index=False)
    bench = pd.read_csv(root / "benchmark" / f"{MODEL}.csv")
    bench = bench[bench.precision != "int8"]
    bench.to_csv(root / "benchmark" / f"{MODEL}.csv", index=False)
    assert rep.main(_argv(root, threads=())) == 0
    c = _claims(root)
    assert _holds(c, "OpenVINO FP32 keeps PyTorch's Dice") == "yes"
    for prefix in ("INT8 (accuracy control) loses", "OpenVINO INT8 is the fastest", "INT8 >= 6.2×",
                   "INT8 uses less memory", "Speed grows", "The ONNX route loses"):  # fmt: skip
        assert _holds(c, prefix) == "n/a", prefix
    t4 = pd.read_csv(root / "tables" / "table4_summary.csv")
    assert list(t4["config"]) == ["pytorch_fp32", "openvino_fp32"]
    assert pd.read_csv(root / "tables" / "core_scaling.csv").empty
