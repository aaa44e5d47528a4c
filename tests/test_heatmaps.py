"""Tests for medrepro.transforms.heatmaps: Gaussian targets and sub-voxel decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrepro.transforms.heatmaps import (
    decode_heatmaps,
    gaussian_heatmaps,
    heatmap_to_input,
    input_to_heatmap,
)


def _landmarks(
    rng: np.random.Generator,
    heatmap_shape: tuple[int, int, int],
    stride: int,
    n: int = 6,
    margin: int = 3,
) -> np.ndarray:
    """Random sub-voxel landmarks at least ``margin`` heatmap voxels inside the volume."""
    inp = np.asarray(heatmap_shape) * stride
    return rng.uniform(margin * stride, inp - 1 - margin * stride, size=(n, 4, 3))


def test_mapping_is_exact_inverse() -> None:
    v = np.array([0.0, 1.0, 0.5, 17.3])
    for s in (1, 2, 4):
        np.testing.assert_allclose(heatmap_to_input(input_to_heatmap(v, s), s), v)
    # stride 2: heatmap voxel h covers input voxels 2h, 2h + 1, centre 2h + 0.5
    assert heatmap_to_input(np.array(3.0), 2) == 6.5


def test_target_shape_dtype_and_peak() -> None:
    lm = np.array([[[4.5, 8.5, 2.5], [10.0, 3.0, 6.0]]])  # first one on a stride-2 voxel centre
    hm = gaussian_heatmaps(lm, (8, 8, 4), stride=2, sigma=2.0)
    assert hm.shape == (1, 2, 8, 8, 4) and hm.dtype == np.float32
    assert hm[0, 0, 2, 4, 1] == pytest.approx(1.0)
    assert hm[0, 0].max() == pytest.approx(1.0) and hm.max() <= 1.0
    assert hm[0, 0, 3, 4, 1] == pytest.approx(np.exp(-1 / 8))
    t = gaussian_heatmaps(torch.from_numpy(lm), (8, 8, 4), stride=2)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), hm)


def test_missing_landmark_gives_zero_channel() -> None:
    lm = np.array([[[np.nan, 1.0, 1.0], [2.0, 2.0, 2.0]]])
    hm = gaussian_heatmaps(lm, (4, 4, 4), stride=1)
    assert hm[0, 0].max() == 0.0 and hm[0, 1].max() == 1.0


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_round_trip_sub_voxel(stride: int, sigma: float) -> None:
    rng = np.random.default_rng(stride)
    shape = (24, 24, 20)
    # the intensity-weighted centroid needs a window of ~3 sigma to be unbiased
    window = int(np.ceil(3 * sigma))
    lm = _landmarks(rng, shape, stride, margin=window + 1)
    hm = gaussian_heatmaps(lm, shape, stride=stride, sigma=sigma)
    err = np.abs(decode_heatmaps(hm, stride=stride) - lm).max()
    assert err < 0.1, err  # default: gaussian fit, window 2
    err_c = np.abs(decode_heatmaps(hm, stride=stride, window=window, method="centroid") - lm).max()
    assert err_c < 0.1, err_c


def test_centroid_bias_with_small_window_is_documented() -> None:
    lm = np.array([[[10.4, 10.0, 10.0]]])
    hm = gaussian_heatmaps(lm, (21, 21, 21), stride=1, sigma=2.0)
    x = decode_heatmaps(hm, stride=1, window=2, method="centroid")[0, 0, 0]
    assert 0.15 < 10.4 - x < 0.3  # pulled towards the argmax voxel (module docstring table)
    assert decode_heatmaps(hm, stride=1, window=0)[0, 0, 0] == 10.0  # plain argmax


@pytest.mark.parametrize("stride", [1, 2])
def test_landmark_near_border(stride: int) -> None:
    shape = (16, 16, 8)
    inp = np.asarray(shape) * stride
    lm = np.array([[[0.2, inp[1] - 1.3, 0.0], [inp[0] - 1.0, 0.6, inp[2] - 1.4]]])
    hm = gaussian_heatmaps(lm, shape, stride=stride, sigma=2.0)
    err = np.abs(decode_heatmaps(hm, stride=stride) - lm).max()
    assert err < 0.1, err


def test_decode_torch_and_noise() -> None:
    rng = np.random.default_rng(0)
    shape = (16, 16, 12)
    lm = _landmarks(rng, shape, 2, n=4)
    hm = gaussian_heatmaps(torch.from_numpy(lm), shape, stride=2)
    out = decode_heatmaps(hm, stride=2)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 4, 3)
    noisy = hm + 0.01 * torch.from_numpy(rng.normal(size=hm.shape)).float()
    assert float((decode_heatmaps(noisy, stride=2) - torch.from_numpy(lm)).abs().max()) < 0.25


def test_decode_flat_heatmap_falls_back_to_argmax() -> None:
    hm = np.zeros((1, 1, 5, 5, 5), dtype=np.float32)
    np.testing.assert_allclose(decode_heatmaps(hm, stride=2), [[[0.5, 0.5, 0.5]]])
    with pytest.raises(ValueError, match="method"):
        decode_heatmaps(hm, method="softargmax")
