"""Task ``face_landmarks``, stages ``face-evaluate`` and ``face-select``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from medrepro import nets
from medrepro.io.errors import InputError
from medrepro.nets.bundle import save_bundle
from medrepro.preprocessing.face_dataset import network_input
from medrepro.tasks import face_landmarks_evaluate as fe
from medrepro.tasks import get_task
from medrepro.tasks.face_landmarks_select import main as select_main
from medrepro.transforms.heatmaps import gaussian_heatmaps_2d

torch.set_num_threads(1)

S, STRIDE, N = 64, 4, 6
NAMES = ["ex_r", "en_r", "en_l", "ex_l", "pg"]
ARCH = "test_face_truth_heatmaps"


class TruthHeatmaps(nn.Module):
    """Stand-in model: returns the stored heatmaps of the stored input nearest to each input."""

    def __init__(self, n_items: int, n_landmarks: int, size: int, stride: int = 4) -> None:
        super().__init__()
        self.register_buffer("inputs", torch.zeros(n_items, 3, size, size))
        h = size // stride
        self.register_buffer("heatmaps", torch.zeros(n_items, n_landmarks, h, h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = ((x[:, None] - self.inputs[None]) ** 2).flatten(2).sum(-1)
        return self.heatmaps[dist.argmin(dim=1)]


@pytest.fixture()
def data(tmp_path: Path) -> dict:
    """dataset.npz + splits.csv: cases 0..3 test, 4..5 train; eye corners 24 px apart."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, S, S, 3), dtype=np.uint8)
    landmarks = np.empty((N, len(NAMES), 2))
    landmarks[:, :, 0] = [18.0, 26.0, 34.0, 42.0, 30.0]
    landmarks[:, :, 1] = [24.0, 24.0, 24.0, 24.0, 44.0]
    landmarks += rng.uniform(-2, 2, landmarks.shape) * [1, 0]  # eyes stay level
    landmarks[:, 3, 0] = landmarks[:, 0, 0] + 24.0
    case_id = np.array([f"c{i}" for i in range(N)])
    np.savez(
        tmp_path / "dataset.npz", images=images, landmarks=landmarks,
        visible=np.ones((N, len(NAMES)), bool), case_id=case_id, scale=np.ones(N),
        landmark_names=np.array(NAMES), flip_pairs=np.array([[0, 3], [1, 2]]),
    )  # fmt: skip
    splits = pd.DataFrame(
        {
            "case_id": case_id,
            "split": ["test"] * 4 + ["train"] * 2,
            "budget_rank": [-1] * 4 + [1, 0],
        }
    )
    splits.to_csv(tmp_path / "splits.csv", index=False)
    return {"dir": tmp_path, "images": images, "landmarks": landmarks}


def _bundle(path: Path, data: dict, shift=(0.0, 0.0), k: int | None = None, monkeypatch=None):
    """Save a TruthHeatmaps bundle whose heatmaps are the truth moved by ``shift`` pixels."""
    monkeypatch.setitem(nets.MODELS, ARCH, TruthHeatmaps)
    lm = data["landmarks"] + np.asarray(shift)
    k = k or len(NAMES)
    if k > len(NAMES):
        lm = np.concatenate([lm, lm[:, : k - len(NAMES)]], axis=1)
    model = TruthHeatmaps(N, k, S, STRIDE)
    model.inputs.copy_(torch.from_numpy(network_input(data["images"])))
    model.heatmaps.copy_(torch.from_numpy(gaussian_heatmaps_2d(lm, (S // 4, S // 4), STRIDE, 2.0)))
    save_bundle(path, model, arch=ARCH, kwargs={"n_items": N, "n_landmarks": k, "size": S},
                input_shape=[1, 3, S, S], output_kind="heatmaps",
                extra={"heatmap_stride": STRIDE, "n_train": 2, "landmark_names": NAMES[:k]})  # fmt: skip
    return path


def _evaluate(data: dict, models: list[str], out: str = "eval", threshold: float = 8.0) -> Path:
    root = data["dir"]
    argv = ["--dataset", str(root / "dataset.npz"), "--splits", str(root / "splits.csv"),
            "--threshold-px", str(threshold), "--ced-max-px", "10", "--ced-points", "101",
            "--figure-budget", "100", "--n-figure", "3", "--threads", "1", "--batch", "3",
            "--out-dir", str(root / out)]  # fmt: skip
    for m in models:
        argv += ["--model", m]
    assert fe.main(argv) == 0
    return root / out


def test_task_load_and_validate(data: dict, monkeypatch) -> None:
    task = get_task("face_landmarks")
    root = data["dir"]
    items = task.load_items(root / "dataset.npz", root / "splits.csv", "test")
    assert items.case_id == ["c0", "c1", "c2", "c3"] and items.inputs.shape == (4, 3, S, S)
    np.testing.assert_array_equal(items.extra["landmarks"], data["landmarks"][:4])
    lm = data["landmarks"][:4] + [3.0, 4.0]  # 5 px off everywhere
    hm = gaussian_heatmaps_2d(lm, (S // 4, S // 4), STRIDE, 2.0)
    metric, per_item = task.validate([hm[i : i + 1] for i in (1, 3)], items, [1, 3], {})
    assert metric == pytest.approx(-5.0, abs=1e-3)
    assert per_item == pytest.approx([-5.0, -5.0], abs=1e-3)
    with pytest.raises(InputError, match="no split 'val'.*validation-split train"):
        task.load_items(root / "dataset.npz", root / "splits.csv", "val")
    first = task.load_items(root / "dataset.npz", root / "splits.csv", "train@1")
    assert first.case_id == ["c5"]  # the lowest budget_rank
    assert task.load_items(root / "dataset.npz", root / "splits.csv", "test@2").case_id == [
        "c0",
        "c1",
    ]
    with pytest.raises(InputError, match="integer >= 1"):
        task.load_items(root / "dataset.npz", root / "splits.csv", "train@0")


def test_perfect_and_shifted_models(data: dict, monkeypatch) -> None:
    root = data["dir"]
    perfect = _bundle(root / "perfect.pt", data, monkeypatch=monkeypatch)
    shifted = _bundle(root / "shifted.pt", data, shift=(4.0, 0.0), monkeypatch=monkeypatch)
    out = _evaluate(data, [f"ft,100,torch,{perfect}", f"fe,100,torch,{shifted}",
                           f"ft,50,torch,{shifted}"])  # fmt: skip
    summary = pd.read_csv(out / "summary.csv")
    assert summary.columns.tolist() == fe.SUMMARY_COLUMNS
    assert summary[["method", "budget", "runtime"]].values.tolist() == [
        ["ft", 100, "torch"], ["fe", 100, "torch"], ["ft", 50, "torch"]]  # fmt: skip
    best, off = summary.iloc[0], summary.iloc[1]
    assert best.me_px < 0.1 and best.auc > 0.99 and best.fr == 0.0 and best.nme < 0.01
    assert off.me_px == pytest.approx(4.0, abs=1e-3) and off.sd_px == pytest.approx(0, abs=1e-3)
    assert off.auc == pytest.approx(0.5, abs=0.01)  # CED steps 0 -> 1 at 4 px of 8
    assert off.nme == pytest.approx(4.0 / 24.0, abs=1e-4)  # outer eye corners 24 px apart
    assert off.n_train == 2 and off.n_test == 4 and off.threshold_px == 8.0
    pred = pd.read_csv(out / "predictions.csv")
    assert pred.columns.tolist() == fe.PREDICTION_COLUMNS and len(pred) == 3 * 4 * len(NAMES)
    rows = pred[(pred.method == "fe")]
    np.testing.assert_allclose(rows.x_pred - rows.x_true, 4.0, atol=1e-3)
    assert rows.landmark.tolist()[: len(NAMES)] == NAMES
    per_image = pd.read_csv(out / "per_image.csv")
    assert per_image.columns.tolist() == fe.PER_IMAGE_COLUMNS and len(per_image) == 12
    ced = pd.read_csv(out / "ced.csv")
    assert ced.columns.tolist() == fe.CED_COLUMNS and len(ced) == 3 * 101
    fe_ced = ced[ced.method == "fe"]
    assert fe_ced.loc[fe_ced.threshold_px < 3.9, "fraction"].eq(0).all()
    assert fe_ced.loc[fe_ced.threshold_px > 4.1, "fraction"].eq(1).all()
    hm = np.load(out / "heatmaps.npz")
    assert hm["keys"].tolist() == ["ft", "fe"]  # budget 100 only
    assert hm["case_id"].tolist() == ["c0", "c1", "c2"]
    assert hm["images"].shape == (3, S, S, 3) and hm["truth"].shape == (3, len(NAMES), 2)
    assert hm["fe/heatmaps"].dtype == np.float16 and hm["fe/heatmaps"].shape == (3, 5, 16, 16)
    np.testing.assert_allclose(hm["fe/pred"], data["landmarks"][:3] + [4.0, 0.0], atol=1e-3)


def test_failure_rate_is_strict(data: dict, monkeypatch) -> None:
    shifted = _bundle(data["dir"] / "s.pt", data, shift=(3.0, 4.0), monkeypatch=monkeypatch)
    out = _evaluate(data, [f"ft,100,torch,{shifted}"], threshold=4.99)
    assert pd.read_csv(out / "summary.csv").fr.iloc[0] == 1.0
    out = _evaluate(data, [f"ft,100,torch,{shifted}"], out="b", threshold=5.01)
    assert pd.read_csv(out / "summary.csv").fr.iloc[0] == 0.0


def test_nme_nan_without_eye_corners(data: dict, monkeypatch) -> None:
    root = data["dir"]
    arrays = dict(np.load(root / "dataset.npz"))
    arrays["landmark_names"] = np.array(["a", "b", "c", "d", "e"])
    np.savez(root / "dataset.npz", **arrays)
    model = _bundle(root / "m.pt", data, monkeypatch=monkeypatch)
    payload = torch.load(model, weights_only=True)
    payload["extra"].pop("landmark_names")
    torch.save(payload, model)
    out = _evaluate(data, [f"ft,100,torch,{model}"])
    assert pd.read_csv(out / "summary.csv").nme.isna().all()
    assert pd.read_csv(out / "per_image.csv").nme.isna().all()


def test_bad_models_name_the_file(data: dict, monkeypatch) -> None:
    root = data["dir"]
    wrong_k = _bundle(root / "k6.pt", data, k=len(NAMES) + 1, monkeypatch=monkeypatch)
    payload = torch.load(wrong_k, weights_only=True)
    payload["extra"].pop("landmark_names")  # reach the output check
    torch.save(payload, wrong_k)
    good = _bundle(root / "good.pt", data, monkeypatch=monkeypatch)
    for model, words in ((root / "missing.pt", "not found"), (wrong_k, "5 heatmaps")):
        with pytest.raises(InputError, match=words) as err:
            _evaluate(data, [f"ft,100,torch,{good}", f"fe,100,torch,{model}"])
        assert err.value.path == model
        assert not (root / "eval").exists()
    ir = root / "model.xml"
    ir.write_text("<net/>")
    with pytest.raises(InputError, match="needs its bundle"):
        _evaluate(data, [f"ft,100,openvino_fp32,{ir}"])


def _summary(tmp_path: Path, rows: list[tuple]) -> Path:
    table = pd.DataFrame(rows, columns=["method", "budget", "runtime", "me_px"])
    table.to_csv(tmp_path / "summary.csv", index=False)
    for method, budget, *_ in rows:
        model = tmp_path / "models" / method / str(budget) / "model.pt"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(f"{method}-{budget}".encode())
    return tmp_path / "summary.csv"


def _select(tmp_path: Path, summary: Path, *extra: str) -> dict:
    out = tmp_path / "best"
    argv = ["--summary", str(summary), "--models-root", str(tmp_path / "models"),
            "--budget", "100", "--out-dir", str(out), *extra]  # fmt: skip
    assert select_main(argv) == 0
    return json.loads((out / "selection.json").read_text()) | {
        "copied": (out / "model.pt").read_bytes().decode()
    }


def test_select_lowest_me_at_budget(tmp_path: Path) -> None:
    summary = _summary(tmp_path, [
        ("hg", 100, "torch", 1.0), ("ft", 100, "torch", 2.5), ("ctd_ed", 100, "torch", 2.0),
        ("ctd_cd", 100, "torch", 2.0), ("ctd_com", 50, "torch", 0.5),
        ("fe", 100, "openvino_fp32", 0.1),
    ])  # fmt: skip
    choice = _select(tmp_path, summary, "--exclude", "hg")
    assert choice["method"] == "ctd_ed" and choice["copied"] == "ctd_ed-100"  # tie: first row
    assert choice["budget"] == 100 and choice["me_px"] == 2.0 and "hg" in choice["rule"]
    assert _select(tmp_path, summary)["method"] == "hg"


def test_select_errors(tmp_path: Path) -> None:
    summary = _summary(tmp_path, [("ft", 50, "torch", 1.0)])
    with pytest.raises(InputError, match="budget 100") as err:
        _select(tmp_path, summary)
    assert err.value.path == summary
    summary = _summary(tmp_path, [("ft", 100, "torch", 1.0)])
    (tmp_path / "models" / "ft" / "100" / "model.pt").unlink()
    with pytest.raises(InputError, match="not found"):
        _select(tmp_path, summary)
    assert not (tmp_path / "best" / "selection.json").exists()
