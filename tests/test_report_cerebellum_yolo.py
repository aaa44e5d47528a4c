"""Stage ``yolo-report`` on a small fabricated results tree with known numbers."""

from __future__ import annotations

import json
import math
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medrepro.nets.bundle as bundle_mod
from medrepro.benchmark.driver import COLUMNS
from medrepro.io.errors import InputError
from medrepro.report import cerebellum_yolo as rep
from medrepro.report import cerebellum_yolo_inputs as inp
from medrepro.report.cerebellum_yolo_claims import claim_ap_spread, claim_fp_trend
from medrepro.report.cerebellum_yolo_figures import box_iou
from medrepro.report.cerebellum_yolo_tables import spearman
from medrepro.report.claims import read_claims

EXPERIMENTS = {
    "yolo_s7": {"arch": "yolov1", "S": 7, "pretrained": True, "lr": 0.001, "momentum": 0.9},
    "yolo_s9": {"arch": "yolov1", "S": 9, "pretrained": True, "lr": 0.001, "momentum": 0.9},
    "yolo_s11": {"arch": "yolov1", "S": 11, "pretrained": True, "lr": 0.001, "momentum": 0.9},
    "yolo_s7_scratch": {
        "arch": "yolov1",
        "S": 7,
        "pretrained": False,
        "lr": 0.001,
        "momentum": 0.9,
    },  # fmt: skip
    "tiny_m03_lr5em4": {
        "arch": "tiny_yolov1",
        "S": 7,
        "pretrained": True,
        "lr": 5e-4,
        "momentum": 0.3,
    },  # fmt: skip
    "tiny_m09_lr5em4": {
        "arch": "tiny_yolov1",
        "S": 7,
        "pretrained": True,
        "lr": 5e-4,
        "momentum": 0.9,
    },  # fmt: skip
    "tiny_m05_lr5em3": {
        "arch": "tiny_yolov1",
        "S": 7,
        "pretrained": True,
        "lr": 5e-3,
        "momentum": 0.5,
    },  # fmt: skip
    "tiny_m07_lr5em3": {
        "arch": "tiny_yolov1",
        "S": 7,
        "pretrained": True,
        "lr": 5e-3,
        "momentum": 0.7,
    },  # fmt: skip
}
RUNS = [k for k in EXPERIMENTS if k != "tiny_m07_lr5em3"]  # one configured run not done
#: run -> (ap, f1, fp) at iterations 2, 4, 6
CURVES = {
    "yolo_s7": ([0.5, 0.82, 0.81], [0.5, 0.9, 0.9], [4, 1, 1]),
    "yolo_s9": ([0.6, 0.83, 0.83], [0.6, 0.95, 0.9], [3, 1, 1]),
    "yolo_s11": ([0.4, 0.7, 0.835], [0.4, 0.8, 0.97], [5, 2, 0]),
    "yolo_s7_scratch": ([0.3, 0.5, 0.6], [0.2, 0.4, 0.5], [6, 4, 3]),
    "tiny_m03_lr5em4": ([0.3, 0.4, 0.35], [0.95, 0.96, 0.97], [5, 3, 1]),
    "tiny_m09_lr5em4": ([0.1, 0.5, 0.2], [0.92, 0.99, 0.93], [2, 6, 3]),
    "tiny_m05_lr5em3": ([0.4, 0.45, 0.42], [0.94, 0.95, 0.96], [3, 3, 3]),
}
#: image_id -> (volume, split, empty, box)
IMAGES = {
    "v1_0": ("v1", "train", False, (0.6, 0.5, 0.3, 0.2)),
    "v1_1": ("v1", "test", False, (0.62, 0.5, 0.3, 0.22)),
    "v2_0": ("v2", "train", False, (0.65, 0.45, 0.25, 0.2)),
    "v2_1": ("v2", "test", True, (math.nan,) * 4),
    "v3_0": ("v3", "test", False, (0.7, 0.55, 0.2, 0.3)),
    "v3_1": ("v3", "test", False, (0.6, 0.6, 0.4, 0.3)),
}
DEPLOY = {"pytorch_fp32": 0.835, "openvino_fp32": 0.8352, "openvino_int8": 0.83}
LATENCY = {("pytorch", "f32"): 100.0, ("openvino", "f32"): 60.0, ("openvino", "int8"): 30.0}
CONFIG = {
    "scale": "smoke",
    "cerebellum_yolo": {
        "data_dir": None,
        "split": "random",
        "test_count": 4,
        "conf_threshold": 0.25,
        "experiments": EXPERIMENTS,
        "quantization": {"max_drop": 0.01},
        "scales": {
            "smoke": {
                "experiments": RUNS,
                "training": {"batch_size": 4, "iterations": 6, "checkpoint_every": 2},
                "arch_kwargs": {"yolov1": {"input_size": 16}},
            }
        },
    },
}


def _bench_row(backend: str, precision: str, lat: float) -> dict[str, object]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        {"model": "best", "backend": backend, "precision": precision, "mode": "sync", "batch": 1,
         "threads": 2, "nreq": 1, "status": "ok", "latency_median_ms": lat,
         "latency_p90_ms": lat, "latency_mean_ms": lat, "latency_min_ms": lat,
         "total_time_s": 1.0, "samples": 4, "fps": 1000.0 / lat, "peak_rss_mb": 300.0,
         "compile_time_s": 0.1, "first_inference_ms": lat, "repeats": 1}
    )  # fmt: skip
    return row


def make_results(root: Path, int8_ap: float = DEPLOY["openvino_int8"]) -> Path:
    """Write a complete tiny results tree under ``root``; return ``root``."""
    mdir = root / "models"
    for run, (ap, f1, fp) in CURVES.items():
        (mdir / run).mkdir(parents=True)
        pd.DataFrame(
            {"iteration": [2, 4, 6], "loss": [3.0, 2.0, 1.0], "ap": ap, "f1": f1, "tp": [2, 3, 3],
             "fp": fp, "fn": [1, 0, 0], "n_images": 4}
        ).to_csv(mdir / run / "checkpoints.csv", index=False)  # fmt: skip
        (mdir / run / "model.pt").write_bytes(b"stand-in bundle")
    for arch, acc in (("yolov1", 0.7), ("tiny_yolov1", 0.6)):
        (mdir / f"pretrained_{arch}").mkdir()
        pd.DataFrame({"iteration": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.3, acc]}).to_csv(
            mdir / f"pretrained_{arch}" / "history.csv", index=False
        )
    best = mdir / "best"
    (best / "int8").mkdir(parents=True)
    (best / "export").mkdir()
    (best / "best.json").write_text(json.dumps({"run": "yolo_s11", "iteration": 6, "ap": 0.835}))
    ap = dict(DEPLOY, openvino_int8=int8_ap)
    pd.DataFrame(
        [{"config": c, "ap": a, "f1": 0.9, "tp": 3, "fp": 0, "fn": 0, "n_images": 4}
         for c, a in ap.items()]
    ).to_csv(best / "deployment.csv", index=False)  # fmt: skip
    preds = []
    for config in ("pytorch_fp32", "openvino_int8"):
        for iid, (_, split, empty, box) in IMAGES.items():
            if split == "test":
                preds.append(
                    {"config": config, "image_id": iid, "cx": 0.6, "cy": 0.5, "w": 0.3, "h": 0.2,
                     "conf": 0.8, "gt_cx": box[0], "gt_cy": box[1], "gt_w": box[2],
                     "gt_h": box[3], "iou": math.nan if empty else 0.7}
                )  # fmt: skip
    pd.DataFrame(preds).to_csv(best / "predictions.csv", index=False)
    (best / "int8" / "quantization.json").write_text(
        json.dumps({"metric_fp32": 0.84, "metric_int8": 0.835, "drop": 0.005, "max_drop": 0.01})
    )
    (best / "export" / "parity.json").write_text(json.dumps({"openvino_fp32": 2e-5}))
    bdir = root / "benchmark"
    bdir.mkdir()
    rows = [_bench_row(b, p, lat) for (b, p), lat in LATENCY.items()]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(bdir / "best.csv", index=False)
    (bdir / "best_sysinfo.json").write_text(
        json.dumps({"cpu_model": "Test CPU", "logical_cpus": 2, "versions": {"torch": "2.13"}})
    )
    (root / "annotations").mkdir()
    pd.DataFrame(
        [{"image_id": k, "volume_id": v, "split": s, "n_components": 0 if e else 1 + (k == "v3_1"),
          "cx": b[0], "cy": b[1], "w": b[2], "h": b[3], "empty": e}
         for k, (v, s, e, b) in IMAGES.items()]
    ).to_csv(root / "annotations" / "boxes.csv", index=False)  # fmt: skip
    (root / "preprocessed").mkdir()
    rng = np.random.default_rng(0)
    np.savez(
        root / "preprocessed" / "dataset.npz",
        images=rng.integers(0, 255, (len(IMAGES), 16, 16, 3), dtype=np.uint8),
        image_id=np.array(list(IMAGES)),
    )
    return root


def _argv(root: Path, out: Path | None = None) -> list[str]:
    argv = ["--results-dir", str(root), "--runs", *RUNS, "--config-json", json.dumps(CONFIG),
            "--seed", "0"]  # fmt: skip
    return argv + (["--out-dir", str(out)] if out else [])


def _stub_predict(bundle: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in for the bundle: a fixed box per image, confidence by run (known values)."""
    k = images.shape[0]
    conf = 0.9 if "s11" in str(bundle) else 0.1
    return np.tile([0.6, 0.5, 0.3, 0.2], (k, 1)), np.full(k, conf)


@pytest.fixture()
def stub_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inp, "predict_top_boxes", _stub_predict)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_results(tmp_path_factory.mktemp("yolo") / "results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inp, "predict_top_boxes", _stub_predict)
        assert rep.main(_argv(root)) == 0
    return root


def test_writes_every_output(report_dir: Path) -> None:
    for rel in rep.OUTPUTS:
        assert (report_dir / rel).is_file(), rel
    text = (report_dir / "report.md").read_text()
    assert "synthetic stand-in source task" in text
    assert "published (Ramos et al. 2020" in text
    prov = json.loads((report_dir / "provenance.json").read_text())
    # evenly spaced annotated test images (v2_1 is empty and skipped)
    assert prov["report"]["examples"] == ["v1_1", "v3_0", "v3_1"]


def test_table1_values(report_dir: Path) -> None:
    t1 = pd.read_csv(report_dir / "tables/table1_yolo_best.csv").set_index("S")
    assert list(t1.index) == [7, 9, 11, 13]
    assert t1.loc[11, "best_ap"] == pytest.approx(0.835)
    assert t1.loc[11, "best_iteration"] == 6
    assert t1.loc[11, "published_ap"] == pytest.approx(0.848)
    assert t1.loc[11, "ap_minus_published"] == pytest.approx(0.835 - 0.848)
    assert t1.loc[9, "best_iteration"] == 4  # tie 0.83 at 4 and 6: the earlier
    assert t1.loc[7, "run"] == "yolo_s7"  # not the scratch run
    assert t1.loc[7, "f1_at_best"] == pytest.approx(0.9)
    assert t1.loc[13, "status"] == "not run" and math.isnan(t1.loc[13, "best_ap"])
    assert t1.loc[13, "published_iteration"] == 900


def test_table2_values(report_dir: Path) -> None:
    t2 = pd.read_csv(report_dir / "tables/table2_tiny_grid.csv")
    assert len(t2) == 8  # the published grid; three cells run
    row = t2[(t2["momentum"] == 0.3) & np.isclose(t2["lr"], 5e-4)].iloc[0]
    assert row["best_ap"] == pytest.approx(0.4)
    assert row["best_f1"] == pytest.approx(0.97)
    assert row["f1_at_best"] == pytest.approx(0.96)
    assert row["published_ap"] == pytest.approx(0.45) and row["published_f1"] == pytest.approx(0.96)
    assert bool(row["fp_decreasing"]) is True
    assert row["ap_std"] == pytest.approx(np.std([0.3, 0.4, 0.35], ddof=1))
    m9 = t2[(t2["momentum"] == 0.9) & np.isclose(t2["lr"], 5e-3)].iloc[0]
    assert m9["status"] == "not run" and m9["published_ap"] == pytest.approx(0.66)


def test_transfer_and_deployment(report_dir: Path) -> None:
    tr = pd.read_csv(report_dir / "tables/transfer.csv")
    assert list(tr["run"]) == ["yolo_s7", "yolo_s7_scratch"]
    assert list(tr["best_ap"]) == pytest.approx([0.82, 0.6])
    assert tr.loc[0, "pretrain_final_accuracy"] == pytest.approx(0.7)
    dep = pd.read_csv(report_dir / "tables/deployment.csv").set_index("config")
    assert dep.loc["openvino_int8", "ap_drop_vs_pytorch"] == pytest.approx(0.005)
    assert dep.loc["openvino_int8", "speedup_vs_pytorch"] == pytest.approx(100 / 30, rel=1e-5)
    ann = pd.read_csv(report_dir / "tables/annotations.csv").set_index("split")
    assert ann.loc["all", "n_empty"] == 1 and ann.loc["all", "n_multi_component"] == 1
    assert ann.loc["test", "w_max"] == pytest.approx(0.4)


def test_claim_verdicts(report_dir: Path) -> None:
    claims = {c.claim: c for c in read_claims(report_dir / "claims.csv")}
    expected = {
        "YOLOv1 best AP above 0.8 for every S": True,
        "Best AP differs little across S (spread < 0.02)": True,  # 0.835 - 0.82
        "S = 11 (121 cells) gives the best AP": True,
        "Larger S needs more training to peak": True,  # batches 4, 4, 6
        "Tiny YOLO's AP is far lower than YOLOv1's": True,
        "Tiny YOLO's F1 is high despite its low AP": True,
        "Higher momentum makes training less stable": True,
        "The best tiny YOLO AP comes with the highest momentum": True,
        "FP decrease with iterations for only part of the tiny runs": True,  # 1 of 3
        "Transfer learning beats training from scratch (S = 7)": True,
        "OpenVINO FP32 keeps PyTorch's AP": True,
        "INT8 AP drop within the configured max_drop": True,
        "INT8 is faster than PyTorch FP32": True,
        "OpenVINO FP32 is faster than PyTorch FP32": True,
    }
    assert {k: claims[k].holds for k in expected} == expected
    assert "2 of 3 grid cells" in claims["FP decrease with iterations for only part of the tiny runs"].measured  # fmt: skip


def test_int8_claim_fails_on_large_drop(tmp_path: Path, stub_models: None) -> None:
    root = make_results(tmp_path / "r", int8_ap=0.80)
    assert rep.main(_argv(root)) == 0
    claims = {c.claim: c for c in read_claims(root / "claims.csv")}
    assert claims["INT8 AP drop within the configured max_drop"].holds is False


def test_constructed_claims() -> None:
    base = {"arch": "yolov1", "pretrained": True}
    summary = pd.DataFrame(
        [base | {"run": "a", "S": 7, "best_ap": 0.70}, base | {"run": "b", "S": 9, "best_ap": 0.75}]
    )
    assert claim_ap_spread(summary).holds is False  # spread 0.05
    assert claim_ap_spread(summary.iloc[:1]).holds is None  # one S: n/a
    tiny = pd.DataFrame(
        [{"run": f"t{m}", "arch": "tiny_yolov1", "momentum": m, "lr": 5e-4, "fp_decreasing": True}
         for m in (0.3, 0.5)]
    )  # fmt: skip
    assert claim_fp_trend(tiny, 0.5).holds is False  # all decrease: not "only part"


def test_missing_input_writes_nothing(tmp_path: Path, stub_models: None) -> None:
    root = make_results(tmp_path / "r")
    (root / "benchmark" / "best.csv").unlink()
    with pytest.raises(InputError) as err:
        rep.main(_argv(root))
    assert err.value.path == root / "benchmark" / "best.csv"
    for rel in rep.OUTPUTS:
        assert not (root / rel).exists(), rel


def test_malformed_inputs_raise(tmp_path: Path, stub_models: None) -> None:
    root = make_results(tmp_path / "r")
    ck = root / "models" / "yolo_s9" / "checkpoints.csv"
    df = pd.read_csv(ck)
    df.loc[1, "ap"] = 1.5
    df.to_csv(ck, index=False)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="ap"):
        rep.main(_argv(root, out))
    assert not out.exists()
    shutil.rmtree(root)
    root = make_results(tmp_path / "r")
    argv = _argv(root)
    argv[argv.index("--runs") + 1] = "yolo_s15"
    with pytest.raises(InputError, match="yolo_s15"):
        rep.main(argv)


def test_predict_top_boxes_wiring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, torch.Tensor] = {}

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen["x"] = x
            return torch.zeros(x.shape[0], 2, 2, 11)

    def fake_load(path: Path) -> tuple[torch.nn.Module, dict[str, object]]:
        return Net(), {"input_shape": [1, 3, 8, 8], "extra": {"S": 2, "B": 2, "C": 1}}

    def fake_decode(raw: np.ndarray, B: int) -> tuple[np.ndarray, np.ndarray]:
        assert raw.shape == (2, 2, 2, 11) and B == 2
        return np.full((raw.shape[0], 4), 0.5), np.arange(raw.shape[0], dtype=float)

    grid = types.ModuleType("medrepro.transforms.yolo_grid")
    grid.decode_top_box = fake_decode  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "medrepro.transforms.yolo_grid", grid)
    monkeypatch.setattr(bundle_mod, "load_bundle", fake_load)
    images = np.full((2, 16, 16, 3), 255, dtype=np.uint8)
    boxes, conf = inp.predict_top_boxes(tmp_path / "model.pt", images)
    assert seen["x"].shape == (2, 3, 8, 8)  # resized to the bundle's input
    assert float(seen["x"].max()) == pytest.approx(1.0)  # uint8 -> [0, 1]
    assert boxes.shape == (2, 4) and list(conf) == [0.0, 1.0]

    def broken(path: Path) -> None:
        raise RuntimeError("bad file")

    monkeypatch.setattr(bundle_mod, "load_bundle", broken)
    with pytest.raises(InputError, match="cannot load"):
        inp.predict_top_boxes(tmp_path / "model.pt", images)


def test_helpers() -> None:
    assert box_iou((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2)) == pytest.approx(1.0)
    assert box_iou((0.25, 0.5, 0.5, 1.0), (0.5, 0.5, 0.5, 1.0)) == pytest.approx(1 / 3)
    assert math.isnan(box_iou((math.nan,) * 4, (0.5, 0.5, 0.1, 0.1)))
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [2, 2, 2]))
    block = inp.paper_block(CONFIG)
    assert isinstance(block["experiments"], dict) and block["experiments_run"] == RUNS
