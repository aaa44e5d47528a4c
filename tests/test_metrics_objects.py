"""Object-wise metrics of the LowRes paper against hand-computed answers and a brute force."""

from __future__ import annotations

import math
from collections import deque
from itertools import product

import numpy as np
import pandas as pd
import pytest

from medrepro.metrics.objects import (
    FROC_COLUMNS,
    GT_COLUMNS,
    PRED_COLUMNS,
    THRESHOLDS,
    average_recall,
    bootstrap_average_recall,
    components,
    froc,
    image_dice,
    object_dice,
    object_records,
)

SPACING = (1.0, 0.5, 2.0)  # 1 mm^3 per voxel


@pytest.fixture()
def scene() -> tuple[np.ndarray, np.ndarray]:
    """Two GT cubes; one found by a slab (and a stray voxel), one missed; one FP component.

    GT A: 4x4x4 = 64 voxels at [2:6, 2:6, 2:6]; GT B: 3x3x3 = 27 voxels at [10:13, 2:5, 2:5].
    Predicted: slab [2:4, 2:6, 2:6] (32 voxels, p = 0.75) inside A -> Dice 64/96; single voxel
    (5, 3, 3) inside A (p = 0.99) -> Dice 2/65; FP cube [14:16, 10:12, 10:12] (8 voxels, p = 0.625,
    one voxel 0.875; all exact in float32) away from any GT.
    """
    gt = np.zeros((20, 16, 16), dtype=bool)
    gt[2:6, 2:6, 2:6] = True
    gt[10:13, 2:5, 2:5] = True
    prob = np.full(gt.shape, 0.1, dtype=np.float32)
    prob[2:4, 2:6, 2:6] = 0.75
    prob[5, 3, 3] = 0.99
    prob[14:16, 10:12, 10:12] = 0.625
    prob[15, 11, 11] = 0.875
    return prob, gt


def test_records_of_hand_built_scene(scene) -> None:
    prob, gt = scene
    gt_rec, pred_rec = object_records(prob, gt, SPACING)
    assert list(gt_rec.columns) == GT_COLUMNS and list(pred_rec.columns) == PRED_COLUMNS
    assert gt_rec["object"].tolist() == [1, 2]
    assert gt_rec["size_voxels"].tolist() == [64, 27]
    np.testing.assert_allclose(
        gt_rec["diameter_mm"], [np.cbrt(6 * 64 / math.pi), np.cbrt(6 * 27 / math.pi)]
    )
    # the best hit is the slab (Dice 2/3), so hit_stat is the slab's 0.75, not the stray 0.99
    np.testing.assert_allclose(gt_rec["hit_dice"], [64 / 96, 0.0])
    np.testing.assert_array_equal(gt_rec["hit_stat"], [0.75, 0.0])
    assert pred_rec["size_voxels"].tolist() == [32, 1, 8]
    np.testing.assert_allclose(pred_rec["hit_dice"], [64 / 96, 2 / 65, 0.0])
    np.testing.assert_allclose(pred_rec["self_stat"], [0.75, 0.99, 0.875], rtol=1e-6)


def test_froc_counts_at_chosen_thresholds(scene) -> None:
    prob, gt = scene
    study = object_records(prob, gt, SPACING)
    table = froc([study], [0.5, 0.75, 0.8, 0.875, 0.95])
    assert list(table.columns) == FROC_COLUMNS
    # TP: hit_stat 0.75 >= theta (equal counts); FP: only the away component, 0.875 > theta
    # (strict: equal does not count)
    assert table["n_tp"].tolist() == [1, 1, 0, 0, 0]
    assert table["n_fp"].tolist() == [1, 1, 1, 0, 0]
    np.testing.assert_allclose(table["recall"], [0.5, 0.5, 0, 0, 0])
    np.testing.assert_allclose(table["fp_per_scan"], [1, 1, 1, 0, 0])
    # an empty second study halves the FP rate and leaves the recall
    empty = object_records(np.zeros((4, 4, 4)), np.zeros((4, 4, 4), bool), SPACING)
    table2 = froc({"a": study, "b": empty}, [0.5, 0.75, 0.8, 0.875, 0.95])
    np.testing.assert_allclose(table2["fp_per_scan"], [0.5, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(table2["recall"], table["recall"])


def test_paper_thresholds() -> None:
    assert THRESHOLDS.shape == (51,)
    assert THRESHOLDS[0] == 0.5
    assert THRESHOLDS[-1] == pytest.approx(1 / (1 + math.exp(-5)))
    assert np.all(np.diff(THRESHOLDS) > 0)


def _curve(points: list[tuple[float, float]]) -> pd.DataFrame:
    fp, rec = zip(*points, strict=True)
    return pd.DataFrame({"fp_per_scan": fp, "recall": rec})


def test_average_recall_hand_integrals() -> None:
    # linear 0.5 -> 1.0 over [0, 1] FP (101 grid points, sum 75.75), then held at 1 (400 points)
    assert average_recall(_curve([(0, 0.5), (1, 1.0)])) == pytest.approx(475.75 / 501)
    # step: 0.5 up to 0.99 FP (100 points), 1.0 from 1 FP (401 points)
    step = _curve([(2, 1.0), (0.99, 0.5), (1, 1.0), (0, 0.5)])
    assert average_recall(step) == pytest.approx(451 / 501)
    # held at the first value below the smallest FP: 0.4 on [0, 0.5] (51 points), linear to
    # 0.8 at 1 FP (50 points, sum 30.2), then 0.8 (400 points)
    assert average_recall(_curve([(1.0, 0.8), (0.5, 0.4)])) == pytest.approx(370.6 / 501)
    # straight line from (0, 0) to (5, 1): the mean is exactly 0.5
    assert average_recall(_curve([(0, 0), (5, 1)])) == pytest.approx(0.5)


def test_average_recall_ties_take_the_max_whatever_the_order() -> None:
    points = [(1, 0.2), (0, 0.1), (1, 0.6)]  # -> (0, 0.1), (1, 0.6)
    expected = (101 * 0.1 + 0.5 * 50.5 + 400 * 0.6) / 501
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        assert average_recall(_curve([points[i] for i in order])) == pytest.approx(expected)
    with pytest.raises(ValueError):
        average_recall(_curve(points), fp_max=0)


def test_empty_prediction_and_no_ground_truth() -> None:
    gt = np.zeros((6, 6, 6), bool)
    gt[1:3, 1:3, 1:3] = True
    study = object_records(np.zeros(gt.shape, np.float32), gt, SPACING)
    table = froc([study])
    assert (table["recall"] == 0).all() and (table["fp_per_scan"] == 0).all()
    assert average_recall(table) == 0.0
    assert math.isnan(object_dice([study])[0]) and object_dice([study])[2] == 0
    assert image_dice(np.zeros(gt.shape), gt) == 0.0
    assert image_dice(np.zeros(gt.shape), np.zeros(gt.shape)) == 1.0
    # no GT object anywhere: recall undefined, not 0
    none = object_records(np.zeros(gt.shape), np.zeros(gt.shape, bool), SPACING)
    assert np.isnan(froc([none])["recall"]).all()
    assert math.isnan(average_recall(froc([none])))


def test_image_and_object_dice_hand_values(scene) -> None:
    prob, gt = scene
    # |P| = 32 + 1 + 8 = 41, |G| = 91, |P & G| = 33
    assert image_dice(prob > 0.5, gt) == pytest.approx(66 / 132)
    gt2 = np.zeros((6, 6, 6), bool)
    gt2[0:2, 0:2, 0:2] = True  # 8 voxels, predicted exactly -> Dice 1
    prob2 = gt2.astype(np.float32)
    mean, sd, n = object_dice(
        [object_records(prob, gt, SPACING), object_records(prob2, gt2, SPACING)]
    )
    assert n == 2
    assert mean == pytest.approx((2 / 3 + 1) / 2)
    assert sd == pytest.approx(np.std([2 / 3, 1.0]))


def test_diagonal_voxels_are_one_object() -> None:
    gt = np.zeros((5, 5, 5), bool)
    gt[1, 1, 1] = gt[2, 2, 2] = gt[3, 3, 3] = True  # corner-touching only
    assert components(gt)[1] == 1
    prob = np.zeros(gt.shape, np.float32)
    prob[1, 1, 1] = prob[2, 2, 2] = 0.9
    gt_rec, pred_rec = object_records(prob, gt, SPACING)
    assert len(gt_rec) == 1 and len(pred_rec) == 1
    assert gt_rec["size_voxels"].iloc[0] == 3
    assert gt_rec["hit_dice"].iloc[0] == pytest.approx(4 / 5)
    # two voxels two apart are two objects
    gt[2, 2, 2] = False
    assert components(gt)[1] == 2


# ---------------------------------------------------------------- brute force, written otherwise


def _flood_components(mask: np.ndarray) -> list[set[tuple[int, int, int]]]:
    """26-connected components as voxel sets, by breadth-first search."""
    seen: set[tuple[int, int, int]] = set()
    out = []
    steps = [d for d in product((-1, 0, 1), repeat=3) if d != (0, 0, 0)]
    for start in map(tuple, np.argwhere(mask)):
        if start in seen:
            continue
        comp, queue = {start}, deque([start])
        seen.add(start)
        while queue:
            v = queue.popleft()
            for d in steps:
                w = (v[0] + d[0], v[1] + d[1], v[2] + d[2])
                if all(0 <= w[a] < mask.shape[a] for a in range(3)) and mask[w] and w not in seen:
                    seen.add(w)
                    comp.add(w)
                    queue.append(w)
        out.append(comp)
    return out


def _brute_froc(studies: list[tuple[np.ndarray, np.ndarray]], thresholds) -> pd.DataFrame:
    rows = []
    per_study = []
    for prob, gt in studies:
        gts = _flood_components(gt)
        preds = _flood_components(prob > 0.5)
        per_study.append((prob, gts, preds))
    n_gt = sum(len(g) for _, g, _ in per_study)
    for theta in thresholds:
        tp = fp = 0
        for prob, gts, preds in per_study:
            for g in gts:
                best_dice, best_max = 0.0, 0.0
                for p in preds:
                    inter = len(g & p)
                    if inter == 0:
                        continue
                    d = 2 * inter / (len(g) + len(p))
                    if d > best_dice:
                        best_dice, best_max = d, max(float(prob[v]) for v in p)
                if best_dice > 0 and best_max >= theta:
                    tp += 1
            for p in preds:
                if not any(p & g for g in gts) and max(float(prob[v]) for v in p) > theta:
                    fp += 1
        rows.append((theta, fp / len(studies), tp / n_gt, tp, fp))
    return pd.DataFrame(rows, columns=FROC_COLUMNS)


def test_froc_matches_brute_force_on_random_cases() -> None:
    rng = np.random.default_rng(7)
    studies = []
    for _ in range(5):
        gt = rng.random((9, 8, 7)) < 0.12
        prob = rng.random((9, 8, 7)).astype(np.float32) ** 2
        prob[gt] = np.maximum(prob[gt], rng.random(int(gt.sum())).astype(np.float32))
        studies.append((prob, gt))
    fast = froc([object_records(p, g, SPACING) for p, g in studies], THRESHOLDS)
    slow = _brute_froc(studies, THRESHOLDS)
    assert slow["n_fp"].max() > 0 and slow["n_tp"].max() > 0  # both branches exercised
    assert slow["n_tp"].iloc[0] > slow["n_tp"].iloc[-1]
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)


def test_bootstrap_matches_a_direct_resampling(scene) -> None:
    prob, gt = scene
    rng = np.random.default_rng(3)
    studies = [object_records(prob, gt, SPACING)]
    for _ in range(5):
        g = rng.random((6, 6, 6)) < 0.15
        p = rng.random((6, 6, 6)).astype(np.float32)
        studies.append(object_records(p, g, SPACING))
    sd = bootstrap_average_recall(studies, n=30, seed=11)
    draw = np.random.default_rng(11)
    values = []
    for _ in range(30):
        idx = draw.integers(0, len(studies), size=len(studies))
        values.append(average_recall(froc([studies[i] for i in idx])))
    assert sd == pytest.approx(np.std(values, ddof=1))
    assert sd > 0
    assert bootstrap_average_recall(studies, n=30, seed=11) == sd  # seeded
    # identical studies: every resample gives the same curve
    assert bootstrap_average_recall([studies[0]] * 4, n=20, seed=0) == pytest.approx(0.0)
    assert math.isnan(bootstrap_average_recall(studies, n=1, seed=0))
