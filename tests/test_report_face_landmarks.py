"""Stage ``face-report`` on a small fabricated results tree with known numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medrepro.io.errors import InputError
from medrepro.report import face_landmarks as rep
from medrepro.report.claims import read_claims
from medrepro.report.face_landmarks_figures import heatmap_extent
from medrepro.report.face_landmarks_inputs import benchmark_row, face_block
from medrepro.report.face_landmarks_tables import paired_bootstrap

METHODS = ("hg", "fe", "ftp", "ft", "ctd_cd", "ctd_ed", "ctd_com")
BUDGETS = (25, 100)
THRESHOLD = 5.0
CED_MAX = 10.0
NAMES = ("ex_r", "en_r", "pg")
N_TRAIN, N_TEST = 32, 8
#: per-image error offsets (mean 0); each method gets its own permutation
OFFSETS = np.array([-1.5, -1.0, -0.5, -0.2, 0.2, 0.5, 1.0, 1.5])
#: planted ME (px) per budget and method: CTD better, CTD-ED best, gain larger at 25 %
ME = {
    100: {"hg": 4.0, "fe": 5.0, "ftp": 4.5, "ft": 4.2, "ctd_cd": 3.4, "ctd_ed": 3.2,
          "ctd_com": 3.25},
    25: {"hg": 7.0, "fe": 7.5, "ftp": 7.2, "ft": 7.0, "ctd_cd": 5.5, "ctd_ed": 5.3,
         "ctd_com": 5.4},
}  # fmt: skip
DEPLOY_ME = {"torch": 3.2, "openvino_fp32": 3.21, "openvino_int8": 3.4}
#: (backend, precision) -> median latency ms, batch 1 sync
LATENCY = {("pytorch", "f32"): 20.0, ("openvino", "f32"): 10.0, ("openvino", "int8"): 6.0}
CASES = [f"t{i}" for i in range(N_TEST)]


def _errors(method: str, me: float) -> np.ndarray:
    perm = np.random.default_rng(METHODS.index(method)).permutation(len(OFFSETS))
    return me + OFFSETS[perm]


def _stats(e: np.ndarray) -> dict[str, float]:
    t = np.linspace(0, CED_MAX, 101)
    frac = (e[None, :] <= t[:, None]).mean(axis=1)
    auc = float(np.sum((frac[1:] + frac[:-1]) / 2 * np.diff(t)) / CED_MAX)
    return {"me_px": float(e.mean()), "sd_px": float(e.std(ddof=1)),
            "median_px": float(np.median(e)), "auc": auc,
            "fr": float((e > THRESHOLD).mean())}  # fmt: skip


def _ced_rows(method: str, budget: int, runtime: str, e: np.ndarray) -> list[dict[str, Any]]:
    t = np.linspace(0, CED_MAX, 11)
    return [{"method": method, "budget": budget, "runtime": runtime, "threshold_px": x,
             "fraction": float((e <= x).mean())} for x in t]  # fmt: skip


def _json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def make_tree(
    root: Path,
    me: dict[int, dict[str, float]] | None = None,
    deploy_me: dict[str, float] | None = None,
    latency: dict[tuple[str, str], float] | None = None,
) -> Path:
    """A results tree in the documented formats; returns ``root``."""
    me = {b: {**ME[b], **((me or {}).get(b, {}))} for b in BUDGETS}
    deploy_me = {**DEPLOY_ME, **(deploy_me or {})}
    latency = {**LATENCY, **(latency or {})}
    ev = root / "evaluation"
    summary, per_image, ced, preds = [], [], [], []
    for b in BUDGETS:
        for m in METHODS:
            e = _errors(m, me[b][m])
            n_train = max(1, round(b / 100 * N_TRAIN))
            summary.append({"method": m, "budget": b, "runtime": "torch", "n_train": n_train,
                            "n_test": N_TEST, **_stats(e), "threshold_px": THRESHOLD,
                            "nme": 0.1})  # fmt: skip
            per_image += [{"method": m, "budget": b, "runtime": "torch", "case_id": c,
                           "error_px": x, "nme": x / 20} for c, x in zip(CASES, e, strict=True)]  # fmt: skip
            ced += _ced_rows(m, b, "torch", e)
            if b == 100:
                for c, x in zip(CASES, e, strict=True):
                    for k in range(len(NAMES)):  # landmark as an index
                        preds.append({"method": m, "budget": b, "runtime": "torch",
                                      "case_id": c, "landmark": k, "x_true": 5.0,
                                      "y_true": 5.0, "x_pred": 5.0 + x, "y_pred": 5.0,
                                      "error_px": x + k})  # fmt: skip
    _csv(ev / "summary.csv", summary)
    _csv(ev / "per_image.csv", per_image)
    _csv(ev / "ced.csv", ced)
    _csv(ev / "predictions.csv", preds)
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {
        "case_id": np.array(CASES[:2]),
        "images": rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8),
        "truth": np.full((2, len(NAMES), 2), 6.0),
    }
    for m in METHODS:
        arrays[f"{m}/heatmaps"] = rng.random((2, len(NAMES), 4, 4)).astype(np.float16)
        arrays[f"{m}/pred"] = np.full((2, len(NAMES), 2), 7.0)
    np.savez(ev / "heatmaps.npz", **arrays)
    _json(root / "source" / "metrics.json", {"val_accuracy": 0.9, "train_accuracy": 0.95,
                                             "n_identities": 8, "n_train": 24, "n_val": 8,
                                             "seconds": 3.0})  # fmt: skip
    pre = root / "preprocessed"
    splits = [{"case_id": f"r{i}", "split": "train", "budget_rank": i} for i in range(N_TRAIN)]
    splits += [{"case_id": c, "split": "test", "budget_rank": -1} for c in CASES]
    _csv(pre / "splits.csv", splits)
    np.savez(pre / "dataset.npz", landmark_names=np.array(NAMES),
             images=np.zeros((1, 4, 4, 3), np.uint8))  # fmt: skip
    dep = root / "deploy"
    _json(dep / "best" / "selection.json",
          {"method": "ctd_ed", "budget": 100, "me_px": me[100]["ctd_ed"], "rule": "lowest ME"})  # fmt: skip
    _json(dep / "best" / "export" / "parity.json",
          {"onnxruntime": 1e-6, "openvino_fp32": 2e-6,
           "tolerance_ok": {"onnxruntime": True, "openvino_fp32": True}})  # fmt: skip
    _json(dep / "best" / "int8" / "quantization.json",
          {"mode": "accuracy_control", "metric_fp32": -3.2, "metric_int8": -3.4, "drop": 0.2,
           "max_drop": 0.5, "fake_quantize_kept": 40, "fake_quantize_total": 41})  # fmt: skip
    bench = [{"model": "best", "backend": be, "precision": pr, "mode": "sync", "batch": 1,
              "threads": 2, "nreq": "", "status": "ok", "latency_median_ms": lat,
              "latency_p90_ms": lat * 1.1, "fps": 1000 / lat, "peak_rss_mb": 300.0}
             for (be, pr), lat in latency.items()]  # fmt: skip
    bench.append({"model": "best", "backend": "openvino", "precision": "int8", "mode": "async",
                  "batch": 1, "threads": 2, "nreq": 4, "status": "ok",
                  "latency_median_ms": 1.0, "latency_p90_ms": 1.0, "fps": 1000.0,
                  "peak_rss_mb": 300.0})  # fmt: skip
    _csv(dep / "benchmark.csv", bench)
    dsum, dced = [], []
    for r, v in deploy_me.items():
        e = _errors("ctd_ed", v)
        dsum.append({"method": "ctd_ed", "budget": 100, "runtime": r, "n_train": N_TRAIN,
                     "n_test": N_TEST, **_stats(e), "threshold_px": THRESHOLD, "nme": 0.1})  # fmt: skip
        dced += _ced_rows("ctd_ed", 100, r, e)
    _csv(dep / "evaluation" / "summary.csv", dsum)
    _csv(dep / "evaluation" / "ced.csv", dced)
    return root


CONFIG = {
    "scale": "smoke",
    "seed": 3,
    "face_landmarks": {
        "data_dir": None, "image_size": 256, "sigma": 2.0,
        "regularisation": {"lambda_cd": 1.0, "lambda_ed": 1.0, "temperature": 4.0},
        "target": {"steps": 3000, "batch_size": 32, "lr": 0.001},
        "evaluation": {"threshold_px": 10.0, "ced_max_px": 20.0, "figure_budget": 100},
        "quantization": {"max_drop": 0.5},
        "scales": {"smoke": {"image_size": 16, "evaluation": {"threshold_px": 5.0,
                                                                "ced_max_px": 10.0}}},
    },
}  # fmt: skip


def _argv(root: Path, out: Path, tmp: Path, **extra: Any) -> list[str]:
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    argv = ["--results-dir", str(root), "--methods", *METHODS, "--budgets", "25", "100",
            "--full-budget", "100", "--threshold-px", str(THRESHOLD), "--config-json", str(cfg),
            "--out-dir", str(out), "--n-bootstrap", "300"]  # fmt: skip
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("face_report")
    root = make_tree(tmp / "results")
    out = tmp / "report"
    assert rep.main(_argv(root, out, tmp)) == 0
    return out


def _verdicts(out: Path) -> dict[str, Any]:
    return {c.claim: c for c in read_claims(out / "claims.csv")}


def _find(claims: dict[str, Any], text: str) -> Any:
    hits = [c for k, c in claims.items() if text in k]
    assert len(hits) == 1, (text, list(claims))
    return hits[0]


def test_every_output_written(report: Path) -> None:
    for rel in rep.OUTPUTS:
        assert (report / rel).is_file(), rel
    assert not list(report.parent.glob(".report.*"))  # no temporary directory left
    md = (report / "report.md").read_text()
    assert "not in the text" in md and "CTD-ED" in md
    prov = json.loads((report / "provenance.json").read_text())
    assert prov["seed"] == 3 and prov["report"]["full_budget"] == 100


def test_table1_equals_summary(report: Path, tmp_path: Path) -> None:
    t1 = pd.read_csv(report / "tables" / "table1_methods.csv")
    assert list(t1["method"]) == list(METHODS)
    for _, r in t1.iterrows():
        e = _errors(r["method"], ME[100][r["method"]])
        s = _stats(e)
        assert r["me_px"] == pytest.approx(s["me_px"], abs=1e-5)
        assert r["auc"] == pytest.approx(s["auc"], abs=1e-5)
        assert r["fr"] == pytest.approx(s["fr"], abs=1e-5)
    assert t1[["published_me_px", "published_auc", "published_fr"]].isna().all().all()
    sweep = pd.read_csv(report / "tables" / "budget_sweep.csv")
    assert len(sweep) == len(METHODS) * len(BUDGETS)
    row = sweep[(sweep["method"] == "ft") & (sweep["budget"] == 25)].iloc[0]
    assert row["me_px"] == pytest.approx(7.0, abs=1e-5)
    assert row["se_px"] == pytest.approx(row["sd_px"] / np.sqrt(N_TEST), rel=1e-5)
    dep = pd.read_csv(report / "tables" / "deployment.csv")
    assert list(dep["runtime"]) == ["torch", "openvino_fp32", "openvino_int8"]
    assert list(dep["latency_median_ms"]) == pytest.approx([20.0, 10.0, 6.0])
    assert dep["delta_me_px"].iloc[2] == pytest.approx(0.2, abs=1e-5)


def test_claims_follow_planted_numbers(report: Path) -> None:
    claims = _verdicts(report)
    assert all(c.holds is True for c in claims.values()), [
        (c.claim, c.holds, c.note) for c in claims.values() if c.holds is not True
    ]
    assert len(claims) == 10
    few = _find(claims, "[fewest labels, 25 %]")
    assert "CTD-CD 5.50" in few.measured and "FT 7.00" in few.measured
    gain = _find(claims, "gain over FT")
    assert "gain 1.70 px at 25 %" in gain.measured and "1.00 px at 100 %" in gain.measured


def test_claims_fail_when_planted_worse(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "results",
        me={100: {"ctd_cd": 4.3, "ctd_com": 3.6}},
        deploy_me={"openvino_fp32": 3.3, "openvino_int8": 4.0},
        latency={("openvino", "int8"): 12.0},
    )
    out = tmp_path / "report"
    rep.main(_argv(root, out, tmp_path))
    claims = _verdicts(out)
    full = _find(claims, "[full budget, 100 %]")
    assert full.holds is False and "CTD-CD - FT" in full.note
    assert _find(claims, "[fewest labels, 25 %]").holds is True
    assert _find(claims, "CTD-ED: ME <=").holds is True
    assert _find(claims, "CTD-Com's ME within 10%").holds is False  # |3.6 - 3.2| > 0.32
    assert _find(claims, "OpenVINO FP32 ME within").holds is False
    assert _find(claims, "OpenVINO INT8 ME within 0.5 px").holds is False
    assert _find(claims, "INT8 is faster").holds is False


def test_small_difference_is_reported_as_noise(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "results", me={100: {"ctd_cd": 4.25}})
    out = tmp_path / "report"
    rep.main(_argv(root, out, tmp_path))
    full = _find(_verdicts(out), "[full budget, 100 %]")
    assert full.holds is False and "noise" in full.note


@pytest.mark.parametrize(
    "rel",
    ["evaluation/summary.csv", "evaluation/heatmaps.npz", "deploy/benchmark.csv",
     "deploy/best/selection.json", "preprocessed/dataset.npz"],
)  # fmt: skip
def test_missing_input_names_file_and_writes_nothing(tmp_path: Path, rel: str) -> None:
    root = make_tree(tmp_path / "results")
    (root / rel).unlink()
    out = tmp_path / "report"
    with pytest.raises(InputError) as err:
        rep.main(_argv(root, out, tmp_path))
    assert err.value.path == root / rel
    assert not out.exists()


def test_missing_method_rows_and_threshold_mismatch(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "results")
    s = pd.read_csv(root / "evaluation" / "summary.csv")
    s[~((s["method"] == "fe") & (s["budget"] == 25))].to_csv(
        root / "evaluation" / "summary.csv", index=False
    )
    with pytest.raises(InputError, match="fe/25"):
        rep.main(_argv(root, tmp_path / "r1", tmp_path))
    root2 = make_tree(tmp_path / "results2")
    argv = _argv(root2, tmp_path / "r2", tmp_path)
    argv[argv.index("--threshold-px") + 1] = "4.0"
    with pytest.raises(InputError, match="threshold_px"):
        rep.main(argv)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_figures_are_valid_pngs(report: Path) -> None:
    for rel in rep.FIGURES:
        data = (report / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", rel
        with Image.open(report / rel) as im:
            im.verify()
        with Image.open(report / rel) as im:
            assert im.size[0] > 200 and im.size[1] > 150


def test_paired_bootstrap_known_answers() -> None:
    a = np.array([3.0, 4.0, 5.0, 6.0])
    mean, lo, hi = paired_bootstrap(a, a + 0.5, n_boot=200, seed=1)
    assert (mean, lo, hi) == pytest.approx((-0.5, -0.5, -0.5))
    mean, lo, hi = paired_bootstrap(np.array([1.0, -1.0] * 20), np.zeros(40), 500, 0)
    assert mean == pytest.approx(0.0) and lo < 0 < hi


def test_helpers() -> None:
    # heatmap pixel j covers input pixels [4j, 4j + 3]: a 4-wide map spans pixels -0.5..15.5
    assert heatmap_extent(16, 4) == (-0.5, 15.5, 15.5, -0.5)
    block = face_block(CONFIG)
    assert block["scale"] == "smoke" and block["image_size"] == 16
    assert block["evaluation"] == {"threshold_px": 5.0, "ced_max_px": 10.0, "figure_budget": 100}
    bench = pd.DataFrame(
        {"backend": ["openvino"] * 3, "precision": ["int8"] * 3, "mode": ["sync"] * 3,
         "batch": [1, 1, 1], "threads": [1, 2, 2], "status": ["ok", "ok", "ok"],
         "latency_median_ms": [9.0, 4.0, 6.0], "peak_rss_mb": [1.0, 2.0, 3.0]}
    )  # fmt: skip
    row = benchmark_row(bench, "openvino_int8")
    assert row is not None and row["threads"] == 2 and row["latency_median_ms"] == 5.0
    assert benchmark_row(bench, "torch") is None
