"""Benchmark stage: driver + workers on a tiny model; statuses, columns, OOM watchdog."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from medrepro.benchmark.driver import COLUMNS, aggregate, main, plan_configs

SHAPE = [1, 1, 32, 32, 32]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from medrepro.deployment.export import export_ir, export_onnx
    from medrepro.nets import build_model, save_bundle

    tmp = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = build_model("vgg_regressor", base_width=2).eval()
    save_bundle(tmp / "model.pt", model, arch="vgg_regressor", kwargs={"base_width": 2},
                input_shape=SHAPE, output_kind="coordinates")  # fmt: skip
    example = torch.randn(SHAPE)
    export_onnx(model, example, tmp / "model.onnx")
    export_ir(model, example, tmp / "model_fp32.xml", compress_to_fp16=False)
    return tmp


def test_plan_configs(tmp_path):
    m = {
        "bundle": tmp_path / "b.pt",
        "onnx": tmp_path / "m.onnx",
        "ir_fp32": tmp_path / "f.xml",
        "ir_int8": tmp_path / "i.xml",
    }
    configs = plan_configs(m, [1, 2, 4], iterations=5, samples=8)
    assert len(configs) == 8 + 2 * 3
    assert len({(c.backend, c.precision, c.mode, c.batch) for c in configs}) == len(configs)
    assert {c.precision for c in configs if c.perf_counters} == {"f32", "bf16", "int8"}
    sweep = [c for c in configs if c.batch == 4 and c.mode == "sync"]
    assert all(c.count == ("iterations", 2) for c in sweep)
    assert len(plan_configs({"bundle": m["bundle"]}, [1, 2], 5, 8)) == 2


def test_plan_configs_sync_only_for_core_scaling(tmp_path):
    m = {"bundle": tmp_path / "b.pt", "onnx": tmp_path / "m.onnx", "ir_fp32": tmp_path / "f.xml",
         "ir_int8": tmp_path / "i.xml"}  # fmt: skip
    configs = plan_configs(m, [1], iterations=5, samples=8, modes=["sync"])
    labels = {(c.backend, c.precision) for c in configs}
    assert {c.mode for c in configs} == {"sync"}
    assert labels == {("pytorch", "f32"), ("onnxruntime", "f32"), ("openvino", "f32"),
                      ("openvino", "bf16"), ("openvino", "int8")}  # fmt: skip


def test_driver_runs_every_configuration(models, tmp_path):
    # the INT8 slot gets the FP32 IR: this tests the plumbing, not quantization
    argv = ["--model-name", "tiny", "--bundle", str(models / "model.pt"), "--onnx", str(models / "model.onnx"),
            "--ir-fp32", str(models / "model_fp32.xml"), "--ir-int8", str(models / "model_fp32.xml"),
            "--shape", *map(str, SHAPE), "--threads", "1", "--batches", "1", "2", "--samples", "2",
            "--warmup", "1", "--iterations", "2", "--repeats", "1", "--nreq", "2", "--timeout-s", "120",
            "--out", str(tmp_path / "tiny.csv"), "--raw-out", str(tmp_path / "tiny_raw.csv"),
            "--perf-counters-out", str(tmp_path / "pc.csv"), "--sysinfo-out", str(tmp_path / "sysinfo.json")]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "tiny.csv")
    assert list(table.columns) == COLUMNS
    assert len(table) == 11
    statuses = dict(
        zip(
            table["backend"]
            + "/"
            + table["precision"]
            + "/"
            + table["mode"]
            + "/"
            + table["batch"].astype(str),
            table["status"],
            strict=True,
        )
    )
    for key, status in statuses.items():
        assert status == "ok" or (status == "unsupported" and "bf16" in key), (key, status)
    ok = table[table["status"] == "ok"]
    assert (ok["fps"] > 0).all() and (ok["peak_rss_mb"] > 0).all() and (ok["repeats"] == 1).all()
    assert (ok["samples"] == 2).all()  # b=1: 2 iterations; b=2: ceil(2 samples / 2) iterations
    raw = pd.read_csv(tmp_path / "tiny_raw.csv")
    assert list(raw.columns[: len(COLUMNS)]) == COLUMNS and len(raw) == 11
    perf = pd.read_csv(tmp_path / "pc.csv")
    assert list(perf.columns) == ["precision", "node_type", "time_ms", "share"]
    assert "f32" in set(perf["precision"]) and "Convolution" in set(perf["node_type"])
    info = json.loads((tmp_path / "sysinfo.json").read_text())
    assert {"cpu_model", "cpu_flags", "versions", "openvino_optimization_capabilities"} <= set(info)


def test_memory_limit_gives_oom(models, tmp_path):
    argv = ["--model-name", "tiny", "--bundle", str(models / "model.pt"), "--shape", *map(str, SHAPE),
            "--threads", "1", "--iterations", "2", "--warmup", "1", "--repeats", "1", "--mem-limit-mb", "40",
            "--out", str(tmp_path / "oom.csv"), "--raw-out", str(tmp_path / "oom_raw.csv")]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "oom.csv")
    assert list(table.columns) == COLUMNS
    assert table["status"].tolist() == ["oom"]
    assert table[COLUMNS[8:18]].isna().all(axis=None)


def test_worker_reports_unsupported(models, tmp_path):
    cmd = [sys.executable, "-m", "medrepro", "benchmark-worker", "--backend", "onnxruntime", "--mode", "async",
           "--model", str(models / "model.onnx"), "--shape", *map(str, SHAPE), "--out", str(tmp_path / "w.json")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "w.json").read_text())["status"] == "unsupported"


def test_aggregate_median_and_status():
    base = {c: None for c in COLUMNS} | {"model": "m", "backend": "openvino", "precision": "f32", "mode": "sync",
                                        "batch": 1, "threads": 2, "nreq": None}  # fmt: skip
    raw = pd.DataFrame([
        base | {"status": "ok", "latency_median_ms": 1.0, "fps": 10.0},
        base | {"status": "ok", "latency_median_ms": 3.0, "fps": 30.0},
        base | {"status": "timeout"},
        base | {"precision": "bf16", "status": "oom"},
    ])  # fmt: skip
    table = aggregate(raw)
    assert list(table.columns) == COLUMNS
    f32, bf16 = table.iloc[0], table.iloc[1]
    assert f32["status"] == "ok" and f32["latency_median_ms"] == 2.0 and f32["repeats"] == 2
    assert bf16["status"] == "oom" and pd.isna(bf16["fps"]) and bf16["repeats"] == 0
