"""Dice and HD95 against hand-derived answers, medpy and a brute-force implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy.spatial.distance import cdist

from medrepro.metrics.segmentation import (
    boundary,
    dice,
    hd95,
    mean_excluding_nan,
    score_masks,
    surface_distances,
)

ANISO = (0.8, 1.1, 2.5)


def _ellipsoid(shape: tuple[int, int, int], centre_mm, radii_mm, spacing) -> np.ndarray:
    idx = np.indices(shape).astype(float)
    mm = [idx[a] * spacing[a] for a in range(3)]
    return sum(((mm[a] - centre_mm[a]) / radii_mm[a]) ** 2 for a in range(3)) <= 1.0


def _brute_boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with at least one of the 6 face neighbours outside (or off the array)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    all_in = np.ones_like(mask)
    for axis in range(3):
        for step in (-1, 1):
            all_in &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return inner & ~all_in


def _brute_directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Min distance (mm) from each boundary voxel of ``a`` to the boundary voxels of ``b``."""
    pa = np.argwhere(_brute_boundary(a)) * np.asarray(spacing)
    pb = np.argwhere(_brute_boundary(b)) * np.asarray(spacing)
    return cdist(pa, pb).min(axis=1)


@pytest.fixture(scope="module")
def spheres() -> tuple[np.ndarray, np.ndarray]:
    shape = (40, 30, 16)
    a = _ellipsoid(shape, (15.0, 16.0, 18.0), (9.0, 10.0, 12.0), ANISO)
    b = _ellipsoid(shape, (18.5, 14.0, 21.0), (10.0, 8.0, 14.0), ANISO)
    assert a.sum() > 100 and b.sum() > 100 and (a & b).any() and (a ^ b).any()
    return a, b


def test_dice_hand_case() -> None:
    pred = np.zeros((4, 4, 4), bool)
    gt = np.zeros((4, 4, 4), bool)
    pred[0, 0, :3] = True  # 3 voxels
    gt[0, 0, 1:] = True  # 3 voxels, 2 shared
    assert dice(pred, gt) == pytest.approx((2 * 2 + 1e-7) / (6 + 1e-7))
    assert dice(pred, gt) == pytest.approx(4 / 6, abs=1e-8)
    assert dice(pred, np.zeros_like(gt)) == pytest.approx(1e-7 / (3 + 1e-7))
    assert dice(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_boundary_matches_brute_force(spheres) -> None:
    a, _ = spheres
    assert np.array_equal(boundary(a), _brute_boundary(a))
    # a mask touching the array border: border voxels are boundary (background outside)
    full = np.ones((3, 3, 3), bool)
    expected = np.ones((3, 3, 3), bool)
    expected[1, 1, 1] = False
    assert np.array_equal(boundary(full), expected)


def test_surface_distances_brute_force(spheres) -> None:
    a, b = spheres
    np.testing.assert_allclose(
        np.sort(surface_distances(a, b, ANISO)), np.sort(_brute_directed(a, b, ANISO)), atol=1e-9
    )
    np.testing.assert_allclose(
        np.sort(surface_distances(b, a, ANISO)), np.sort(_brute_directed(b, a, ANISO)), atol=1e-9
    )


def test_hd95_pooled_matches_medpy(spheres) -> None:
    a, b = spheres
    expected = medpy_binary.hd95(a, b, voxelspacing=ANISO)
    assert hd95(a, b, ANISO, mode="pooled") == pytest.approx(expected, rel=1e-12)
    # medpy without spacing works in voxels: our function with unit spacing agrees
    assert hd95(a, b, (1, 1, 1)) == pytest.approx(medpy_binary.hd95(a, b), rel=1e-12)


def test_hd95_both_modes_brute_force(spheres) -> None:
    a, b = spheres
    d_ab, d_ba = _brute_directed(a, b, ANISO), _brute_directed(b, a, ANISO)
    pooled = np.percentile(np.concatenate([d_ab, d_ba]), 95)
    max_directed = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert hd95(a, b, ANISO, mode="pooled") == pytest.approx(pooled, rel=1e-12)
    assert hd95(a, b, ANISO, mode="max_directed") == pytest.approx(max_directed, rel=1e-12)
    # the two conventions really differ here (the test would not tell them apart otherwise)
    assert abs(pooled - max_directed) > 0.1
    # symmetric in its arguments
    assert hd95(b, a, ANISO, mode="max_directed") == pytest.approx(max_directed, rel=1e-12)


def test_shifted_cube_exact_distances() -> None:
    """Cube of n=6 voxels, copy shifted by k=2 along x, spacing (0.5, 1, 2) mm.

    Boundary of A: 6^3 - 4^3 = 152 voxels. With k*sx = 1 mm <= sy, sz and k <= n-1-k:
    - side-face voxels (y or z on a face), x in 2..5: also boundary of B -> 0 (4 x 20 = 80);
    - side-face voxels at x = 1: nearest B boundary is (2, y, z) -> 1 * sx = 0.5 mm (20);
    - side-face voxels at x = 0: 2 * sx = 1.0 mm (20);
    - interior of face x = 0 (4 x 4 = 16): the face x = 2 of B -> 1.0 mm;
    - interior of face x = 5 (16): min(k sx, (n-1-k) sx, distances to the side faces of B >= sy)
      = 1.0 mm.
    B -> A is the mirror image, same multiset.
    """
    n, k, spacing = 6, 2, (0.5, 1.0, 2.0)
    a = np.zeros((n + k + 2, n + 2, n + 2), bool)
    b = np.zeros_like(a)
    a[1 : 1 + n, 1 : 1 + n, 1 : 1 + n] = True
    b[1 + k : 1 + k + n, 1 : 1 + n, 1 : 1 + n] = True
    expected = np.array([0.0] * 80 + [0.5] * 20 + [1.0] * 52)
    for d in (surface_distances(a, b, spacing), surface_distances(b, a, spacing)):
        np.testing.assert_allclose(np.sort(d), expected, atol=1e-12)
    assert hd95(a, b, spacing, mode="pooled") == pytest.approx(1.0)
    assert hd95(a, b, spacing, mode="max_directed") == pytest.approx(1.0)
    assert hd95(a, b, spacing, percentile=50) == pytest.approx(0.0)
    # 80/152 = 53% of the distances are 0, the next 13% are 0.5 -> the 60th percentile is 0.5 mm
    assert hd95(a, b, spacing, percentile=60) == pytest.approx(0.5)
    assert dice(a, b) == pytest.approx(2 * (n - k) / (2 * n), abs=1e-8)


def test_identical_masks(spheres) -> None:
    a, _ = spheres
    scores = score_masks(a, a, ANISO)
    assert scores["dice"] == 1.0
    assert scores["hd95_mm"] == 0.0 and scores["hd95_max_mm"] == 0.0
    assert scores["empty_pred"] is False and scores["empty_gt"] is False
    assert scores["pred_volume_ml"] == pytest.approx(a.sum() * np.prod(ANISO) / 1000)


def test_empty_policies(spheres) -> None:
    a, _ = spheres
    empty = np.zeros_like(a)
    assert hd95(empty, empty, ANISO) == 0.0
    assert hd95(empty, empty, ANISO, mode="max_directed") == 0.0
    assert math.isnan(hd95(empty, a, ANISO))
    assert math.isnan(hd95(a, empty, ANISO, mode="max_directed"))
    s = score_masks(empty, a, ANISO)
    assert s["empty_pred"] is True and s["empty_gt"] is False
    assert math.isnan(s["hd95_mm"]) and math.isnan(s["hd95_max_mm"])
    assert s["dice"] == pytest.approx(0.0, abs=1e-9) and s["pred_volume_ml"] == 0.0
    s = score_masks(empty, empty, ANISO)
    assert s["dice"] == 1.0 and s["hd95_mm"] == 0.0 and s["empty_gt"] is True
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(empty, a, ANISO)


def test_score_masks_agrees_with_hd95(spheres) -> None:
    a, b = spheres
    s = score_masks(a, b, ANISO)
    assert s["hd95_mm"] == pytest.approx(hd95(a, b, ANISO, "pooled"))
    assert s["hd95_max_mm"] == pytest.approx(hd95(a, b, ANISO, "max_directed"))
    assert s["dice"] == pytest.approx(dice(a, b))
    assert s["gt_volume_ml"] == pytest.approx(b.sum() * 0.8 * 1.1 * 2.5 / 1000)


def test_bad_arguments(spheres) -> None:
    a, b = spheres
    with pytest.raises(ValueError, match="shapes differ"):
        hd95(a, b[:-1], ANISO)
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, b, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, b, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="mode"):
        hd95(a, b, ANISO, mode="mean")


def test_mean_excluding_nan() -> None:
    mean, sd, excluded = mean_excluding_nan([1.0, math.nan, 3.0])
    assert (mean, excluded) == (2.0, 1)
    assert sd == pytest.approx(math.sqrt(2.0))
    mean, sd, excluded = mean_excluding_nan([math.nan])
    assert math.isnan(mean) and excluded == 1
