"""Tests for medrepro.metrics.ced: the face landmark paper's ME, CED, AUC, FR and NME."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import trapezoid

from medrepro.metrics.ced import (
    ced_auc,
    ced_curve,
    failure_rate,
    image_errors,
    mean_error,
    normalised_mean_error,
    point_errors,
)

ERRORS = np.array([1.0, 2.0, 3.0, 4.0])


def test_point_and_image_errors_hand_case() -> None:
    truth = np.zeros((2, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 1.0]], [[-6.0, 8.0], [0.0, 0.0]]])
    np.testing.assert_allclose(point_errors(pred, truth), [[5.0, 1.0], [10.0, 0.0]])
    np.testing.assert_allclose(image_errors(pred, truth), [3.0, 5.0])
    visible = np.array([[True, False], [True, True]])
    np.testing.assert_allclose(image_errors(pred, truth, visible), [5.0, 5.0])
    assert mean_error(image_errors(pred, truth)) == pytest.approx(4.0)


def test_ced_curve_grid_and_values() -> None:
    t, f = ced_curve(ERRORS, 4.0)
    assert t.shape == f.shape == (1001,)
    assert t[0] == 0.0 and t[-1] == 4.0  # max_threshold included exactly (linspace)
    assert f[np.argmin(np.abs(t - 2.5))] == 0.5  # errors 1 and 2 are <= 2.5
    assert f[0] == 0.0 and f[-1] == 1.0  # the error 4 counts at t = 4 ("<=")
    assert f[np.flatnonzero(t == 2.0)[0]] == 0.5  # a tie counts as within the threshold
    assert np.all(np.diff(f) >= 0)
    # an awkward threshold that np.arange(0, a, a / 1000) would not reach
    t2, _ = ced_curve(ERRORS, 0.3, n_points=11)
    assert t2[-1] == 0.3 and len(t2) == 11


def test_ced_auc_hand_computed() -> None:
    # exact integral of the step CED on [0, 4]: sum_n (4 - e_n) / N = (3 + 2 + 1 + 0) / 4 = 1.5
    auc = ced_auc(ERRORS, 4.0)
    assert auc == pytest.approx(1.5 / 4.0, abs=1e-3)  # 0.375
    t, f = ced_curve(ERRORS, 4.0)
    assert abs(auc - trapezoid(f, x=t) / 4.0) < 1e-3  # Simpson vs trapezoid: 4th decimal
    assert ced_auc(np.zeros(5), 2.0) == pytest.approx(1.0, abs=1e-12)
    assert ced_auc(np.array([2.5, 3.0, 10.0]), 2.0) == 0.0
    # half of the images perfect, half failed: AUC 1/2
    assert ced_auc(np.array([0.0, 0.0, 9.0, 9.0]), 8.0) == pytest.approx(0.5, abs=1e-12)


def test_failure_rate_is_strict() -> None:
    assert failure_rate(ERRORS, 3.0) == 0.25  # 3.0 itself is not a failure
    assert failure_rate(ERRORS, 2.5) == 0.5
    assert failure_rate(ERRORS, 0.0) == 1.0 and failure_rate(ERRORS, 4.0) == 0.0
    t, f = ced_curve(ERRORS, 3.0)
    assert failure_rate(ERRORS, 3.0) == pytest.approx(1.0 - f[-1])  # FR_a = 1 - CED(a)


def test_normalised_mean_error_3_4_5_triangle() -> None:
    # truth: left eye corner (0, 0), right (3, 4): distance 5; errors 5 and 0 -> mean 2.5
    truth = np.array([[[0.0, 0.0], [3.0, 4.0]]])
    pred = np.array([[[3.0, 4.0], [3.0, 4.0]]])
    np.testing.assert_allclose(normalised_mean_error(pred, truth, 0, 1), [0.5])
    np.testing.assert_allclose(normalised_mean_error(pred, truth, 1, 0), [0.5])
    with pytest.raises(ValueError, match="zero normalising"):
        normalised_mean_error(pred, np.zeros((1, 2, 2)), 0, 1)
    with pytest.raises(ValueError, match="outside"):
        normalised_mean_error(pred, truth, 0, 2)


def test_invalid_input_raises() -> None:
    good = np.zeros((2, 3, 2))
    bad = good.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        point_errors(bad, good)
    with pytest.raises(ValueError, match="NaN"):
        image_errors(good, bad)
    with pytest.raises(ValueError, match="differ"):
        point_errors(good, np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        point_errors(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        ced_auc(np.array([1.0, np.nan]), 2.0)
    with pytest.raises(ValueError, match="non-negative"):
        failure_rate(np.array([1.0, -1.0]), 2.0)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        ced_curve(np.zeros((2, 2)), 2.0)
    with pytest.raises(ValueError, match="max_threshold"):
        ced_curve(ERRORS, 0.0)
    with pytest.raises(ValueError, match="n_points"):
        ced_curve(ERRORS, 1.0, n_points=1)
    with pytest.raises(ValueError, match="visible"):
        image_errors(good, good, np.ones((2, 3)))
    with pytest.raises(ValueError, match="no visible"):
        image_errors(good, good, np.zeros((2, 3), dtype=bool))
