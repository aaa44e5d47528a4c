"""Tests for medrepro.preprocessing.intensity: HU clipping and z-score."""

from __future__ import annotations

import numpy as np
import pytest

from medrepro.preprocessing.intensity import clip_window, zscore


def test_clip_window_bounds_and_dtype() -> None:
    arr = np.array([-3000.0, -1000.0, 0.0, 1500.0, 4000.0], dtype=np.float32)
    out = clip_window(arr, -1000, 2000)
    np.testing.assert_array_equal(out, [-1000, -1000, 0, 1500, 2000])
    assert out.dtype == np.float32
    assert arr[0] == -3000.0  # input untouched
    with pytest.raises(ValueError):
        clip_window(arr, 10, 10)
    with pytest.raises(ValueError):
        clip_window(arr, -np.inf, 0)


def test_zscore_whole_volume() -> None:
    arr = np.random.default_rng(0).normal(300.0, 40.0, size=(6, 5, 4))
    out = zscore(arr)
    assert out.dtype == np.float32 and out.shape == arr.shape
    assert abs(float(out.mean())) < 1e-5
    assert abs(float(out.std()) - 1.0) < 1e-5


def test_zscore_mask() -> None:
    rng = np.random.default_rng(1)
    arr = np.full((8, 8, 8), -1000.0)
    mask = np.zeros(arr.shape, dtype=bool)
    mask[2:6, 2:6, 2:6] = True
    arr[mask] = rng.normal(40.0, 10.0, size=mask.sum())
    out = zscore(arr, mask)
    assert abs(float(out[mask].mean())) < 1e-5
    assert abs(float(out[mask].std()) - 1.0) < 1e-5
    assert np.all(out[~mask] < -50)  # outside normalised with the mask's statistics
    with pytest.raises(ValueError):
        zscore(arr, np.zeros(arr.shape, dtype=bool))
    with pytest.raises(ValueError):
        zscore(arr, mask[:4])


def test_zscore_constant_is_finite() -> None:
    out = zscore(np.full((3, 3, 3), 7.0))
    assert np.all(np.isfinite(out)) and np.all(out == 0)
