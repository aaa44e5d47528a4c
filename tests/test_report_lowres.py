"""Stage ``lowres-report`` on a small fabricated results tree with known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medrepro.data.lowres_studies import Study, write_studies
from medrepro.io.errors import InputError
from medrepro.report import lowres as rep
from medrepro.report.claims import read_claims
from medrepro.report.lowres_claims import all_or_none
from medrepro.report.lowres_discussion import discussion
from medrepro.report.lowres_figures import crop_box
from medrepro.report.lowres_inputs import choose_example, load_inputs, lowres_block
from medrepro.report.lowres_tables import small_object_recall

DATASETS = ("luna16", "metastases")
MODELS = ("unet3d", "deepmedic", "mobilenetv2", "enet", "lowres")
RUNTIMES = ("torch", "openvino_fp32", "openvino_int8")
THREADS = 2
#: mean seconds per study, PyTorch at 2 threads
TIME = {"unet3d": 60.0, "deepmedic": 55.0, "mobilenetv2": 6.0, "enet": 0.5, "lowres": 1.5}
#: runtime -> factor on the PyTorch time
RUNTIME_FACTOR = {"torch": 1.0, "openvino_fp32": 0.7, "openvino_int8": 0.5}
#: thread count -> factor on the 2-thread time
THREAD_FACTOR = {1: 1.8, 2: 1.0, 8: 0.6}
RECALL = {"unet3d": 0.77, "deepmedic": 0.78, "mobilenetv2": 0.68, "enet": 0.62, "lowres": 0.80}
INT8_DROP = 0.01
SHAPE = (8, 16, 16)


def _studies(out: Path) -> None:
    """Three studies (train, val, test), one object each, excluded fourth study."""
    studies, rows, objs = [], [], []
    for i, split in enumerate(("train", "val", "test")):
        sid = f"s{i}"
        img = np.linspace(0, 1, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)
        mask = np.zeros(SHAPE, np.uint8)
        mask[3:6, 6:10, 6:10] = 1
        studies.append(Study(sid, img, mask, (2.0, 1.0, 1.0)))
        rows.append({"study_id": sid, "split": split, "group": "", "shape_z": 8, "shape_y": 16,
                     "shape_x": 16, "spacing_z": 2.0, "spacing_y": 1.0, "spacing_x": 1.0,
                     "n_objects": 1, "excluded": False, "reason": ""})  # fmt: skip
        objs.append({"study_id": sid, "split": split, "object": 1, "diameter_mm": 4.0 + 4 * i,
                     "volume_mm3": 96.0, "kind": "solid", "center_z": 4.0, "center_y": 7.5,
                     "center_x": 7.5, "inside_mask": True})  # fmt: skip
    rows.append({"study_id": "s9", "split": "test", "group": "", "shape_z": 8, "shape_y": 16,
                 "shape_x": 16, "spacing_z": 2.0, "spacing_y": 1.0, "spacing_x": 1.0,
                 "n_objects": 1, "excluded": True, "reason": "nodule outside the lungs"})  # fmt: skip
    objs.append({"study_id": "s9", "split": "test", "object": 1, "diameter_mm": 30.0,
                 "volume_mm3": 9.0, "kind": "solid", "center_z": 1.0, "center_y": 1.0,
                 "center_x": 1.0, "inside_mask": False})  # fmt: skip
    write_studies(out, studies, pd.DataFrame(rows), pd.DataFrame(objs))


def _json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _timing(d: Path, model: str, runtime: str, threads: int, mean: float) -> None:
    d.mkdir(parents=True, exist_ok=True)
    secs = [mean - 0.1 * mean, mean + 0.1 * mean]
    pd.DataFrame({"study_id": ["s2", "s2b"], "seconds": secs, "stage1_seconds": [0.2, 0.2],
                  "stage2_seconds": [0.1, 0.1], "n_components": [1, 2], "n_patches": [1, 1],
                  "voxels": [2048, 2048]}).to_csv(d / "times.csv", index=False)  # fmt: skip
    _json(d / "summary.json", {"model": model, "runtime": runtime, "threads": threads,
                               "n_studies": 2, "mean_s": mean, "sd_s": 0.1 * mean * math.sqrt(2),
                               "median_s": mean, "peak_rss_mb": 500.0, "ram_limit_mb": 16000,
                               "within_ram_limit": True, "warmup_s": mean, "patch": 64,
                               "stride": 60})  # fmt: skip


def make_tree(
    root: Path,
    time: dict[str, float] | None = None,
    recall: dict[str, float] | None = None,
    threads_list: tuple[int, ...] = (1, 2),
) -> Path:
    """A results tree in the documented formats; returns ``root``."""
    time = {**TIME, **(time or {})}
    recall = {**RECALL, **(recall or {})}
    for ds in DATASETS:
        ddir = root / ds
        _studies(ddir / "preprocessed")
        for model in MODELS:
            mdir = ddir / "models" / model
            mdir.mkdir(parents=True)
            phase = ["stage1", "stage2"] if model == "lowres" else ["main", "main"]
            pd.DataFrame({"step": [10, 20], "loss": [0.9, 0.5], "lr": [0.01, 0.001],
                          "seconds": [3.0, 4.0], "phase": phase}).to_csv(
                mdir / "history.csv", index=False)  # fmt: skip
            _json(mdir / "openvino" / "parity.json",
                  {"net": {"max_abs_diff": 1e-5, "tolerance": 1e-3, "ok": True}})  # fmt: skip
            _json(mdir / "openvino" / "quantization.json",
                  {"net": {"mode": "default", "subset_size": 4, "fake_quantize": 12,
                           "seconds": 1.0}})  # fmt: skip
            for runtime in RUNTIMES:
                base = time[model] * RUNTIME_FACTOR[runtime]
                pdir = ddir / "predictions" / model / runtime
                _timing(pdir, model, runtime, THREADS, base)
                if runtime == "torch":
                    prob = np.zeros(SHAPE, np.float16)
                    prob[3:6, 6:10, 6:9] = 0.9
                    np.savez_compressed(pdir / "probabilities.npz", s2=prob)
                for t in threads_list:
                    if t != THREADS:
                        tdir = ddir / "timing" / model / f"{runtime}_t{t}"
                        _timing(tdir, model, runtime, t, base * THREAD_FACTOR[t])
                r = recall[model] - (INT8_DROP if runtime == "openvino_int8" else 0.0)
                edir = ddir / "evaluation" / model / runtime
                _json(edir / "summary.json", {"avg_recall": r, "avg_recall_sd": 0.02,
                                              "object_dice_mean": 0.75, "object_dice_sd": 0.1,
                                              "image_dice_mean": 0.7, "n_studies": 1,
                                              "n_objects": 2, "n_found": 1,
                                              "fp_per_scan_at_05": 0.0})  # fmt: skip
                pd.DataFrame({"threshold": [0.5, 0.9], "fp_per_scan": [1.0, 0.0],
                              "recall": [r, r / 2], "n_tp": [2, 1], "n_fp": [1, 0]}).to_csv(
                    edir / "froc.csv", index=False)  # fmt: skip
                pd.DataFrame({"study_id": ["s2", "s2", "s2"], "kind": ["gt", "gt", "pred"],
                              "object": [1, 2, 1], "size_voxels": [48, 4, 36],
                              "diameter_mm": [8.0, 3.0, 7.0], "hit_dice": [0.8, 0.0, 0.8],
                              "hit_stat": [0.9, None, None],
                              "self_stat": [None, None, 0.9]}).to_csv(
                    edir / "objects.csv", index=False)  # fmt: skip
    return root


def _argv(root: Path, out: Path, threads_list=(1, 2), config: str | None = None) -> list[str]:
    argv = ["--results-dir", str(root), "--datasets", *DATASETS, "--models", *MODELS,
            "--runtimes", *RUNTIMES, "--threads", str(THREADS),
            "--threads-list", *map(str, threads_list), "--out-dir", str(out)]  # fmt: skip
    if config is not None:
        argv += ["--config-json", config]
    return argv


def _claims(out: Path) -> dict[str, bool | None]:
    return {c.claim: c.holds for c in read_claims(out / "claims.csv")}


def _compute(argv: list[str]) -> tuple[Any, rep.Tables]:
    """Inputs and tables without writing anything (fast: no figures)."""
    inputs = load_inputs(rep.build_parser().parse_args(argv))
    return inputs, rep.compute_tables(inputs)


def _verdicts(tables: rep.Tables) -> dict[str, bool | None]:
    return {c.claim: c.holds for c in tables.claims}


def _claim(claims: dict[str, bool | None], dataset: str, prefix: str) -> bool | None:
    (key,) = [k for k in claims if k.startswith(f"[{dataset}] {prefix}")]
    return claims[key]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tree(tmp_path_factory.mktemp("lowres"))
    out = root / "report"
    assert rep.main(_argv(root, out, config='{"scale": "quick", "lowres": {"seed": 3}}')) == 0
    return out


def test_every_output_exists(report_dir: Path) -> None:
    for rel in rep.OUTPUTS:
        assert (report_dir / rel).is_file(), rel
    assert not list(report_dir.parent.glob(".report.*"))  # no temporary directory left


def test_paper_tables(report_dir: Path) -> None:
    t1 = pd.read_csv(report_dir / "tables/table1_luna16.csv").set_index("model")
    assert list(t1.index) == list(MODELS)
    assert t1.loc["lowres", "time_t2_mean"] == pytest.approx(1.5)
    assert t1.loc["lowres", "time_t1_mean"] == pytest.approx(1.5 * 1.8)
    assert t1.loc["unet3d", "time_t2_sd"] == pytest.approx(6.0 * math.sqrt(2))
    assert t1.loc["deepmedic", "avg_recall"] == pytest.approx(0.78)
    assert t1.loc["deepmedic", "avg_recall_sd"] == pytest.approx(0.02)
    assert t1.loc["enet", "object_dice"] == pytest.approx(0.75)
    assert t1.loc["unet3d", "openvino_fp32_time_t2"] == pytest.approx(42.0)
    assert t1.loc["unet3d", "openvino_int8_avg_recall"] == pytest.approx(0.76)
    # published values from the paper's Tables 1 and 2
    assert t1.loc["unet3d", "published_time_t8_mean"] == 880
    assert t1.loc["lowres", "published_avg_recall"] == pytest.approx(0.80)
    t2 = pd.read_csv(report_dir / "tables/table2_metastases.csv").set_index("model")
    assert t2.loc["enet", "published_time_t4_mean"] == pytest.approx(3.2)
    assert t2.loc["lowres", "published_object_dice_sd"] == pytest.approx(0.22)


def test_long_tables_and_speedups(report_dir: Path) -> None:
    timing = pd.read_csv(report_dir / "tables/timing.csv")
    # 2 datasets x 5 models x 3 runtimes x 2 thread counts
    assert len(timing) == 60
    row = timing[(timing["dataset"] == "metastases") & (timing["model"] == "enet")
                 & (timing["runtime"] == "torch") & (timing["threads"] == 1)].iloc[0]  # fmt: skip
    assert row["mean_s"] == pytest.approx(0.9) and row["source"] == "timing"
    assert row["min_s"] == pytest.approx(0.81)
    quality = pd.read_csv(report_dir / "tables/quality.csv")
    assert len(quality) == 30
    q = quality.set_index(["dataset", "model", "runtime"])
    # metastases (5 mm): the 3 mm object is missed, the 8 mm one found; LUNA16 (10 mm): both small
    assert q.loc[("metastases", "enet", "torch"), "recall_small"] == 0.0
    assert q.loc[("metastases", "enet", "torch"), "recall_large"] == 1.0
    assert q.loc[("luna16", "enet", "torch"), "recall_small"] == 0.5
    assert q.loc[("luna16", "enet", "torch"), "n_large"] == 0
    sp = pd.read_csv(report_dir / "tables/speedups.csv")

    def one(**kw: Any) -> pd.Series:
        sel = sp
        for k, v in kw.items():
            sel = sel[sel[k] == v]
        assert len(sel) == 1
        return sel.iloc[0]

    r = one(dataset="luna16", comparison="vs_unet3d_torch", model="mobilenetv2", threads=2)
    assert r["speedup"] == pytest.approx(60.0 / 6.0)
    assert r["published_threads"] == 8 and r["published_speedup"] == pytest.approx(880 / 89)
    r = one(dataset="luna16", comparison="openvino_vs_torch", model="lowres",
            runtime="openvino_int8", threads=1)  # fmt: skip
    assert r["speedup"] == pytest.approx(2.0)
    r = one(dataset="metastases", comparison="lowres_vs_unet3d", runtime="openvino_fp32", threads=2)
    assert r["speedup"] == pytest.approx(40.0)


def test_claims_default(report_dir: Path) -> None:
    claims = _claims(report_dir)
    assert len(claims) == 22
    for ds in DATASETS:
        assert _claim(claims, ds, "LowRes at least 30x faster") is True  # 60 / 1.5 = 40x
        assert _claim(claims, ds, "LowRes avg recall within") is True
        assert _claim(claims, ds, "LowRes avg recall >=") is True
        assert _claim(claims, ds, "3D E-Net is the fastest") is True
        assert _claim(claims, ds, "3D MobileNetV2 ~10x") is True
        assert _claim(claims, ds, "LowRes segments a study within") is None  # quick scale
        assert _claim(claims, ds, "Time per study falls") is True
        assert _claim(claims, ds, "OpenVINO FP32 faster") is True
        assert _claim(claims, ds, "INT8 keeps avg recall") is True
        assert _claim(claims, ds, "Every model and runtime") is True
    rows = pd.read_csv(report_dir / "claims.csv", keep_default_na=False)
    assert list(rows.columns) == ["claim", "paper", "measured", "holds", "note"]
    note = rows[rows["claim"].str.contains("within 15 s")]["note"].iloc[0]
    assert "scale 'quick'" in note


def test_claims_flip(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        time={"unet3d": 30.0, "enet": 2.0},  # LowRes only 20x faster; E-Net slower than LowRes
        recall={"lowres": 0.70},  # 0.07 below U-Net
    )
    inputs, tables = _compute(_argv(root, tmp_path / "out"))
    claims = _verdicts(tables)
    assert _claim(claims, "luna16", "LowRes at least 30x faster") is False
    assert _claim(claims, "luna16", "LowRes avg recall within") is False
    assert _claim(claims, "luna16", "LowRes avg recall >=") is False
    assert _claim(claims, "luna16", "3D E-Net is the fastest") is False
    assert _claim(claims, "luna16", "3D MobileNetV2 ~10x") is True  # 30 / 6 = 5x, in [5, 20]
    text = " ".join(discussion(inputs, tables.timing, tables.claims, {"usable_cpus": 2}))
    assert "luna16, claims that did not hold: LowRes at least 30x" in text
    assert "Thread counts" not in text  # 1 and 2 threads fit the 2 CPUs


def test_paper_scale_15s_claim(tmp_path: Path) -> None:
    root = make_tree(tmp_path, time={"lowres": 20.0, "unet3d": 900.0}, threads_list=(2, 8))
    argv = _argv(root, tmp_path / "out", threads_list=(2, 8), config='{"scale": "paper"}')
    inputs, tables = _compute(argv)
    claims = _verdicts(tables)
    assert _claim(claims, "luna16", "LowRes segments a study within 15") is True  # 20 * 0.6 = 12
    text = " ".join(discussion(inputs, tables.timing, tables.claims, {"usable_cpus": 2}))
    assert "Thread counts [8] exceed the 2 usable CPUs" in text
    root2 = make_tree(tmp_path / "b", time={"lowres": 30.0}, threads_list=(2, 8))
    argv = _argv(root2, tmp_path / "out2", threads_list=(2, 8), config='{"scale": "paper"}')
    claims = _verdicts(_compute(argv)[1])
    assert _claim(claims, "luna16", "LowRes segments a study within 15") is False


def test_report_md(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text()
    for needle in ("## Table 1: luna16", "## Table 2: metastases", "published", "THIS machine",
                   "Xeon E5-2690 v4", "## Claims", "## Discussion", "fig1_time_vs_recall.png",
                   "LowRes avg recall 0-5 FP/scan", "## Provenance", "synthetic"):  # fmt: skip
        assert needle in text, needle
    prov = json.loads((report_dir / "provenance.json").read_text())
    assert prov["seed"] == 3
    assert prov["report"]["threads_list"] == [1, 2]
    assert any(k.endswith("studies.npz") for k in prov["report"]["large_inputs_not_checksummed"])


def test_missing_input_raises_and_writes_nothing(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    missing = root / "metastases" / "evaluation" / "enet" / "openvino_int8" / "froc.csv"
    missing.unlink()
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        rep.main(_argv(root, out))
    assert err.value.path == missing
    assert not out.exists()


def test_missing_torch_timing_and_optional_openvino(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    # OpenVINO at the other thread count is optional
    ov = root / "luna16" / "timing" / "lowres" / "openvino_int8_t1"
    for f in ov.iterdir():
        f.unlink()
    ov.rmdir()
    assert len(_compute(_argv(root, tmp_path / "ok"))[1].timing) == 59
    # PyTorch at every thread count is required
    t = root / "luna16" / "timing" / "unet3d" / "torch_t1" / "summary.json"
    t.unlink()
    with pytest.raises(InputError) as err:
        rep.main(_argv(root, tmp_path / "bad"))
    assert err.value.path == t


def test_thread_mismatch_is_malformed(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    p = root / "luna16" / "predictions" / "enet" / "torch" / "summary.json"
    obj = json.loads(p.read_text())
    obj["threads"] = 4
    p.write_text(json.dumps(obj))
    with pytest.raises(InputError, match="threads is 4, expected 2"):
        rep.main(_argv(root, tmp_path / "out"))


def test_helpers() -> None:
    assert all_or_none([True, True]) is True
    assert all_or_none([True, None]) is None
    assert all_or_none([None, False]) is False
    assert all_or_none([]) is None
    rows, cols = crop_box((100, 20), (5.0, 10.0), 16)
    assert (rows.start, rows.stop) == (0, 32) and (cols.start, cols.stop) == (0, 20)
    objects = pd.DataFrame({"study_id": ["a", "b", "c", "d"], "split": ["test"] * 3 + ["train"],
                            "object": [1, 1, 1, 1], "diameter_mm": [3.0, 9.0, 5.0, 6.0]})  # fmt: skip
    assert choose_example(objects, {"a", "b", "c", "d"})["study_id"] == "c"
    assert choose_example(objects, {"d"}) is None
    gt = pd.DataFrame({"kind": ["gt"] * 4 + ["pred"], "diameter_mm": [4, 6, 12, 20, 1],
                       "hit_dice": [0.5, 0.0, 0.9, np.nan, 0.3]})  # fmt: skip
    r = small_object_recall(gt, 10.0)
    assert (r["n_small"], r["recall_small"], r["n_large"], r["recall_large"]) == (2, 0.5, 2, 0.5)
    block = lowres_block({"scale": "quick", "lowres": {"a": {"x": 1, "y": 2}, "scales": {
        "quick": {"a": {"y": 3}, "b": 4}}}})  # fmt: skip
    assert block == {"a": {"x": 1, "y": 3}, "b": 4, "scale": "quick"}


def test_discussion_flags_high_recall_with_tiny_object_dice() -> None:
    """A model whose recall is high while its object Dice is tiny gets a sentence; others not."""
    from medrepro.report.lowres_discussion import _coarse_hits

    quality = pd.DataFrame(
        {
            "dataset": ["luna16", "luna16", "luna16"],
            "model": ["enet", "unet3d", "enet"],
            "runtime": ["torch", "torch", "openvino_fp32"],
            "avg_recall": [0.9, 0.9, 0.9],
            "object_dice_mean": [0.01, 0.7, 0.01],
        }
    )
    lines = _coarse_hits(quality)
    assert len(lines) == 1 and lines[0].startswith("luna16: enet") and "any overlap" in lines[0]
    assert _coarse_hits(None) == []
