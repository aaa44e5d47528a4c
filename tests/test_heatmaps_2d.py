"""Tests for the 2D heatmaps of medrepro.transforms.heatmaps (face landmarks, stride 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrepro.transforms.heatmaps import (
    decode_heatmaps,
    decode_heatmaps_2d,
    gaussian_heatmaps,
    gaussian_heatmaps_2d,
)

STRIDE = 4
SHAPE = (16, 20)  # (h, w): 64 x 80 input pixels


def test_pixel_centre_convention_and_peak() -> None:
    # heatmap pixel (row 2, column 10) covers input pixels [8, 11] x [40, 43], centre (41.5, 9.5)
    hm = gaussian_heatmaps_2d(np.array([[[41.5, 9.5]]]), SHAPE, stride=STRIDE, sigma=2.0)
    assert hm.shape == (1, 1, 16, 20) and hm.dtype == np.float32
    assert hm[0, 0, 2, 10] == pytest.approx(1.0) and hm.max() == pytest.approx(1.0)
    assert hm[0, 0, 2, 11] == pytest.approx(np.exp(-1 / 8))  # one column right, sigma 2
    assert hm[0, 0, 4, 10] == pytest.approx(np.exp(-4 / 8))  # two rows down
    assert hm[0, 0, 3, 11] == pytest.approx(np.exp(-2 / 8))


def test_axis_order_rows_are_y_columns_are_x() -> None:
    # x = 40 (column), y = 8 (row) on a 64 x 64 input: peak in row 8 // 4 = 2, column 40 // 4 = 10
    hm = gaussian_heatmaps_2d(np.array([[[40.0, 8.0]]]), (16, 16), stride=4, sigma=1.0)
    r, c = np.unravel_index(np.argmax(hm[0, 0]), hm.shape[2:])
    assert (r, c) == (2, 10)
    assert hm[0, 0, 10, 2] < 1e-10  # the transposed position is far from the peak
    np.testing.assert_array_equal(np.argmax(hm[0, 0].sum(axis=1)), 2)  # rows: y
    np.testing.assert_allclose(decode_heatmaps_2d(hm, stride=4), [[[40.0, 8.0]]], atol=1e-6)


def test_anisotropic_sigma_is_x_then_y() -> None:
    hm = gaussian_heatmaps_2d(np.array([[[41.5, 41.5]]]), SHAPE, stride=4, sigma=(1.0, 3.0))
    # sigma_x = 1 along the columns, sigma_y = 3 along the rows
    assert hm[0, 0, 10, 11] == pytest.approx(np.exp(-1 / 2))
    assert hm[0, 0, 11, 10] == pytest.approx(np.exp(-1 / 18))


def test_matches_3d_encoder_on_a_flat_volume() -> None:
    """2D = the shared core with the axes reversed: compare with a one-slice 3D volume."""
    rng = np.random.default_rng(3)
    lm = rng.uniform(0, 63, size=(2, 3, 2))
    hm2 = gaussian_heatmaps_2d(lm, (16, 16), stride=4, sigma=1.5)
    # 3D with axes (row, column, z): coordinates (y, x, 1.5) on a 1-slice heatmap, z centre 1.5
    lm3 = np.concatenate([lm[..., ::-1], np.full(lm.shape[:2] + (1,), 1.5)], axis=-1)
    hm3 = gaussian_heatmaps(lm3, (16, 16, 1), stride=4, sigma=1.5)
    np.testing.assert_array_equal(hm2, hm3[..., 0])
    np.testing.assert_allclose(
        decode_heatmaps_2d(hm2, stride=4), decode_heatmaps(hm3, stride=4)[..., 1::-1], atol=1e-9
    )


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_round_trip_within_a_tenth_of_a_pixel(sigma: float) -> None:
    rng = np.random.default_rng(int(sigma * 10))
    h, w = SHAPE
    lm = np.stack(
        [rng.uniform(0, w * STRIDE - 1, (8, 5)), rng.uniform(0, h * STRIDE - 1, (8, 5))], axis=-1
    )
    # points near / on the border of the input (0 and the last pixel centre)
    lm[0, :4] = [[0.0, 0.0], [w * STRIDE - 1.0, h * STRIDE - 1.0], [0.3, 50.2], [77.6, 1.1]]
    hm = gaussian_heatmaps_2d(lm, SHAPE, stride=STRIDE, sigma=sigma)
    err = np.linalg.norm(decode_heatmaps_2d(hm, stride=STRIDE) - lm, axis=-1)
    assert err.max() < 0.1, err.max()
    # plain argmax is off by up to half a heatmap pixel per axis (2 input px): the fit matters
    err0 = np.linalg.norm(decode_heatmaps_2d(hm, stride=STRIDE, window=0) - lm, axis=-1)
    assert err0.max() > 0.5


def test_centroid_needs_a_wide_window() -> None:
    lm = np.array([[[30.7, 22.3]]])
    hm = gaussian_heatmaps_2d(lm, SHAPE, stride=4, sigma=2.0)
    wide = decode_heatmaps_2d(hm, stride=4, window=6, method="centroid")
    assert np.abs(wide - lm).max() < 0.1
    narrow = decode_heatmaps_2d(hm, stride=4, window=2, method="centroid")
    assert np.abs(narrow - lm).max() > 0.3  # biased towards the argmax pixel (module docstring)


def test_non_finite_landmark_gives_zero_channel() -> None:
    lm = np.array([[[np.nan, 10.0], [20.0, np.inf], [20.0, 10.0]]])
    hm = gaussian_heatmaps_2d(lm, SHAPE, stride=4)
    assert hm[0, 0].max() == 0.0 and hm[0, 1].max() == 0.0 and hm[0, 2].max() > 0.9


def test_tensor_in_tensor_out_and_noise() -> None:
    rng = np.random.default_rng(0)
    lm = rng.uniform(8, 56, size=(3, 4, 2))
    t = gaussian_heatmaps_2d(torch.from_numpy(lm), SHAPE, stride=4)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (3, 4, 16, 20)
    np.testing.assert_array_equal(t.numpy(), gaussian_heatmaps_2d(lm, SHAPE, stride=4))
    out = decode_heatmaps_2d(t, stride=4)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (3, 4, 2)
    noisy = t + 0.01 * torch.from_numpy(rng.normal(size=t.shape)).float()
    assert float((decode_heatmaps_2d(noisy) - torch.from_numpy(lm)).abs().max()) < 0.5
    arr = decode_heatmaps_2d(t.numpy())
    assert isinstance(arr, np.ndarray) and arr.flags.c_contiguous


def test_flat_heatmap_and_bad_input() -> None:
    hm = np.zeros((1, 1, 4, 6), dtype=np.float32)
    np.testing.assert_allclose(decode_heatmaps_2d(hm, stride=4), [[[1.5, 1.5]]])  # argmax (0, 0)
    with pytest.raises(ValueError, match="method"):
        decode_heatmaps_2d(hm, method="softargmax")
    with pytest.raises(ValueError, match=r"\(N, K, h, w\)"):
        decode_heatmaps_2d(hm[0])
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        gaussian_heatmaps_2d(np.zeros((1, 2, 3)), (4, 4))
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        gaussian_heatmaps_2d(np.zeros((1, 2, 2)), (4, 4, 4))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_heatmaps_2d(np.zeros((1, 2, 2)), (4, 4), sigma=0.0)
