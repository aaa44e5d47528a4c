"""Stage ``lowres-evaluate`` end to end on a tiny written container, with hand-computed scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medrepro.cli import main as cli_main
from medrepro.data.lowres_studies import OBJECT_COLUMNS, STUDY_COLUMNS, Study, write_studies
from medrepro.io.errors import InputError
from medrepro.tasks.lowres_evaluate import SUMMARY_KEYS, evaluate

SPACING = (1.0, 0.5, 2.0)  # 1 mm^3 per voxel
SHAPE = (20, 16, 16)


def _scene_a() -> tuple[np.ndarray, np.ndarray]:
    """GT cubes of 64 and 27 voxels; a slab (p 0.75) finds the first with Dice 2/3, a stray voxel
    (p 0.99) touches it too, the second is missed; one FP cube (p 0.625, max 0.875)."""
    gt = np.zeros(SHAPE, dtype=bool)
    gt[2:6, 2:6, 2:6] = True
    gt[10:13, 2:5, 2:5] = True
    prob = np.full(SHAPE, 0.1, dtype=np.float32)
    prob[2:4, 2:6, 2:6] = 0.75
    prob[5, 3, 3] = 0.99
    prob[14:16, 10:12, 10:12] = 0.625
    prob[15, 11, 11] = 0.875
    return prob, gt


def _scene_b() -> tuple[np.ndarray, np.ndarray]:
    """One GT cube of 8 voxels predicted exactly (p 1), nothing else."""
    gt = np.zeros((8, 8, 8), dtype=bool)
    gt[2:4, 2:4, 2:4] = True
    return gt.astype(np.float32), gt


def _row(sid: str, split: str, shape, n_objects: int, excluded: bool = False) -> dict:
    return {
        "study_id": sid, "split": split, "group": "8",
        "shape_z": shape[0], "shape_y": shape[1], "shape_x": shape[2],
        "spacing_z": SPACING[0], "spacing_y": SPACING[1], "spacing_x": SPACING[2],
        "n_objects": n_objects, "excluded": excluded, "reason": "bad" if excluded else "",
    }  # fmt: skip


def _objects(counts: dict[str, int]) -> pd.DataFrame:
    rows = [
        {
            "study_id": sid,
            "split": "test",
            "object": k + 1,
            "diameter_mm": 4.0,
            "volume_mm3": 30.0,
            "kind": "solid",
            "center_z": 1.0,
            "center_y": 1.0,
            "center_x": 1.0,
            "inside_mask": True,
        }  # fmt: skip
        for sid, n in counts.items()
        for k in range(n)
    ]
    return pd.DataFrame(rows, columns=OBJECT_COLUMNS)


@pytest.fixture()
def world(tmp_path: Path) -> dict:
    prob_a, gt_a = _scene_a()
    prob_b, gt_b = _scene_b()
    rng = np.random.default_rng(0)
    studies = [
        Study("a", rng.random(SHAPE), gt_a, SPACING),
        Study("b", rng.random((8, 8, 8)), gt_b, SPACING),
        Study("t", rng.random((8, 8, 8)), gt_b, SPACING),  # training study: not scored
    ]
    table = pd.DataFrame(
        [
            _row("a", "test", SHAPE, 2),
            _row("b", "test", (8, 8, 8), 1),
            _row("t", "train", (8, 8, 8), 1),
            _row("x", "test", (8, 8, 8), 0, excluded=True),
        ],
        columns=STUDY_COLUMNS,
    )
    pre = tmp_path / "preprocessed"
    write_studies(pre, studies, table, _objects({"a": 2, "b": 1, "t": 1}))
    probs = tmp_path / "probabilities.npz"
    np.savez(probs, a=prob_a.astype(np.float16), b=prob_b.astype(np.float16))
    return {
        "npz": pre / "studies.npz",
        "table": pre / "studies.csv",
        "objects": pre / "objects.csv",
        "probs": probs,
        "out": tmp_path / "evaluation",
        "tmp": tmp_path,
    }


def _argv(w: dict, probs: Path | None = None) -> list[str]:
    return [
        "lowres-evaluate",
        "--probabilities", str(probs or w["probs"]),
        "--studies", str(w["npz"]),
        "--table", str(w["table"]),
        "--objects", str(w["objects"]),
        "--split", "test",
        "--n-bootstrap", "50",
        "--seed", "5",
        "--out-dir", str(w["out"]),
    ]  # fmt: skip


def test_end_to_end_hand_computed(world: dict) -> None:
    assert cli_main(_argv(world)) == 0
    out = world["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "froc.csv", "objects.csv", "studies.csv", "summary.json",
    ]  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == SUMMARY_KEYS
    assert summary["n_studies"] == 2 and summary["n_objects"] == 3 and summary["n_found"] == 2
    assert summary["object_dice_mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["object_dice_sd"] == pytest.approx(np.std([2 / 3, 1.0]))
    assert summary["image_dice_mean"] == pytest.approx((66 / 132 + 1.0) / 2)
    assert summary["fp_per_scan_at_05"] == pytest.approx(0.5)
    # recall 2/3 while theta <= 0.75 (x <= 1.0), then 1/3; 1 FP while theta < 0.875 (x <= 1.9):
    # curve (0, 1/3), (0.5, 2/3) -> (51/3 + 2/3 * 12.75 + 450 * 2/3) / 501
    assert summary["avg_recall"] == pytest.approx(325.5 / 501)
    assert summary["avg_recall_sd"] > 0

    froc = pd.read_csv(out / "froc.csv")
    assert list(froc.columns) == ["threshold", "fp_per_scan", "recall", "n_tp", "n_fp"]
    assert len(froc) == 51
    assert froc["n_tp"].tolist() == [2] * 11 + [1] * 40
    assert froc["n_fp"].tolist() == [1] * 20 + [0] * 31

    studies = pd.read_csv(out / "studies.csv", dtype={"study_id": str})
    assert studies.to_dict("list") == {
        "study_id": ["a", "b"], "image_dice": [0.5, 1.0], "n_gt": [2, 1], "n_pred": [3, 1],
    }  # fmt: skip

    objects = pd.read_csv(out / "objects.csv", dtype={"study_id": str})
    assert list(objects.columns) == [
        "study_id", "kind", "object", "size_voxels", "diameter_mm", "hit_dice", "hit_stat",
        "self_stat",
    ]  # fmt: skip
    assert objects["kind"].tolist() == ["gt", "gt", "pred", "pred", "pred", "gt", "pred"]
    assert objects["size_voxels"].tolist() == [64, 27, 32, 1, 8, 8, 8]
    assert objects["diameter_mm"].iloc[0] == pytest.approx(np.cbrt(6 * 64 / math.pi))
    gt_rows, pred_rows = objects[objects["kind"] == "gt"], objects[objects["kind"] == "pred"]
    assert gt_rows["self_stat"].isna().all() and pred_rows["hit_stat"].isna().all()
    np.testing.assert_allclose(pred_rows["hit_dice"], [2 / 3, 2 / 65, 0.0, 1.0])
    np.testing.assert_allclose(pred_rows["self_stat"], [0.75, 0.99, 0.875, 1.0], atol=1e-3)


def test_bootstrap_is_seeded(world: dict, tmp_path: Path) -> None:
    kwargs = dict(n_bootstrap=40, objects=None)
    s1 = evaluate(world["probs"], world["npz"], world["table"], tmp_path / "e1", seed=1, **kwargs)
    s2 = evaluate(world["probs"], world["npz"], world["table"], tmp_path / "e2", seed=1, **kwargs)
    s3 = evaluate(world["probs"], world["npz"], world["table"], tmp_path / "e3", seed=2, **kwargs)
    assert s1["avg_recall_sd"] == s2["avg_recall_sd"] != s3["avg_recall_sd"]
    none = evaluate(world["probs"], world["npz"], world["table"], tmp_path / "e4", n_bootstrap=0)
    assert none["avg_recall_sd"] is None  # undefined -> null in summary.json


def test_object_count_mismatch_is_reported(world: dict, capsys) -> None:
    objects = world["tmp"] / "objects_other.csv"
    _objects({"a": 2, "b": 2}).to_csv(objects, index=False)
    evaluate(
        world["probs"], world["npz"], world["table"], world["out"], n_bootstrap=2, objects=objects
    )
    err = capsys.readouterr().err
    assert "1 studies" in err and ": b" in err


def test_missing_study_names_the_file(world: dict, capsys) -> None:
    probs = world["tmp"] / "partial.npz"
    prob_a, _ = _scene_a()
    np.savez(probs, a=prob_a.astype(np.float16))
    with pytest.raises(InputError, match=r"partial\.npz.*'b'"):
        evaluate(probs, world["npz"], world["table"], world["out"])
    assert not world["out"].exists()  # no partial output
    assert cli_main(_argv(world, probs)) == 2
    assert "partial.npz" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arrays", "problem"),
    [
        ({"b": np.zeros((8, 8, 7), np.float16)}, "vs ground truth"),
        ({"b": np.full((8, 8, 8), 1.5, np.float16)}, "outside"),
        ({"b": np.full((8, 8, 8), np.nan, np.float16)}, "outside"),
    ],
)
def test_bad_probabilities_name_the_file(world: dict, arrays: dict, problem: str) -> None:
    probs = world["tmp"] / "bad.npz"
    np.savez(probs, a=_scene_a()[0].astype(np.float16), **arrays)
    with pytest.raises(InputError, match=rf"bad\.npz.*{problem}"):
        evaluate(probs, world["npz"], world["table"], world["out"])
    with pytest.raises(InputError, match="nothere.npz"):
        evaluate(world["tmp"] / "nothere.npz", world["npz"], world["table"], world["out"])
