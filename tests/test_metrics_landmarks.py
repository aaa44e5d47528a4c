"""Landmark metrics against hand-computed cases and the paper's Table 1 arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medrepro.metrics.landmarks import (
    combine_rmse,
    mean_radial_error,
    pooled_rmse,
    radial_errors,
    rmse_per_landmark,
    success_detection_rate,
)

ERRORS = np.array([[3.0, 4.0], [0.0, 5.0]])


def test_radial_errors_hand_case() -> None:
    pred = np.array([[[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]]])
    gt = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 3.0]]])
    np.testing.assert_allclose(radial_errors(pred, gt), [[5.0, 2.0]])


def test_rmse_per_landmark_hand_case() -> None:
    # landmark 0: sqrt((9 + 0) / 2); landmark 1: sqrt((16 + 25) / 2)
    np.testing.assert_allclose(rmse_per_landmark(ERRORS), [math.sqrt(4.5), math.sqrt(20.5)])


def test_pooled_rmse_hand_case() -> None:
    # sqrt(mean(4.5, 20.5)) = sqrt(12.5) = sqrt(mean of all squared errors)
    assert pooled_rmse(ERRORS) == pytest.approx(math.sqrt(12.5))
    assert pooled_rmse(ERRORS) == pytest.approx(math.sqrt(np.mean(ERRORS**2)))


def test_mean_radial_error_hand_case() -> None:
    assert mean_radial_error(ERRORS) == pytest.approx(3.0)
    np.testing.assert_allclose(mean_radial_error(ERRORS, per_landmark=True), [1.5, 4.5])


def test_sdr_hand_case() -> None:
    sdr = success_detection_rate(ERRORS, radii=(2, 3, 4, 5))
    assert list(sdr) == [2.0, 3.0, 4.0, 5.0]
    # errors 0, 3, 4, 5: e <= r counts the boundary as a success
    assert sdr == {2.0: 0.25, 3.0: 0.5, 4.0: 0.75, 5.0: 1.0}


def test_sdr_default_radii() -> None:
    assert list(success_detection_rate(ERRORS)) == [2.0, 3.0, 4.0]


def test_paper_total_is_pooled_not_arithmetic_mean() -> None:
    # Vasiliev et al. 2020, Table 1: Direct Regression 4.14/3.78/5.03/5.22 -> Total 4.58
    rmse = [4.14, 3.78, 5.03, 5.22]
    assert round(combine_rmse(rmse), 2) == 4.58
    assert round(float(np.mean(rmse)), 2) == 4.54
    # Hourglass 1.66/1.24/1.91/1.97 -> Total 1.72 (arithmetic mean 1.695, i.e. about 1.70)
    hg = [1.66, 1.24, 1.91, 1.97]
    assert round(combine_rmse(hg), 2) == 1.72
    assert float(np.mean(hg)) == pytest.approx(1.695)


def test_pooled_equals_combined_per_landmark() -> None:
    rng = np.random.default_rng(0)
    e = rng.gamma(2.0, 1.5, size=(7, 4))
    assert pooled_rmse(e) == pytest.approx(combine_rmse(rmse_per_landmark(e)))


@pytest.mark.parametrize(
    ("pred_shape", "gt_shape"),
    [((2, 4, 3), (2, 4, 2)), ((2, 4), (2, 4)), ((1, 4, 3), (2, 4, 3))],
)
def test_radial_errors_shape_mismatch(
    pred_shape: tuple[int, ...], gt_shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError):
        radial_errors(np.zeros(pred_shape), np.zeros(gt_shape))


@pytest.mark.parametrize(
    "func", [rmse_per_landmark, pooled_rmse, mean_radial_error, success_detection_rate]
)
def test_nan_raises(func) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="NaN"):
        func(np.array([[1.0, np.nan]]))


def test_nan_in_coordinates_raises() -> None:
    pred = np.zeros((1, 2, 3))
    pred[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        radial_errors(pred, np.zeros((1, 2, 3)))


@pytest.mark.parametrize(
    "bad", [np.zeros(3), np.zeros((2, 2, 2)), np.zeros((0, 4)), -np.ones((2, 2))]
)
def test_invalid_error_matrices(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        rmse_per_landmark(bad)


def test_negative_radius_raises() -> None:
    with pytest.raises(ValueError):
        success_detection_rate(ERRORS, radii=(-1.0,))
