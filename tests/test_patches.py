"""Patch-grid inference: exact stitching at several scales, valid convolutions, odd shapes."""

from __future__ import annotations

import numpy as np
import pytest

from medrepro.transforms.patches import patch_grid, predict_patched


def _volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_grid_covers_volume_with_static_patches() -> None:
    grid = patch_grid((10, 7, 5), patch=4, stride=3)
    # starts 0,3,6 along z (6 + 4 = 10), 0,3 along y (3 + 4 = 7), 0,3 along x (7 >= 5)
    assert grid.counts == (3, 2, 2)
    assert grid.padded_shape == (10, 7, 7)
    assert len(grid) == len(grid.starts) == 12
    assert grid.starts[:3] == [(0, 0, 0), (0, 0, 3), (0, 3, 0)]
    assert grid.coverage(0).tolist() == [1, 1, 1, 2, 1, 1, 2, 1, 1, 1]


def test_identity_reproduces_odd_volume() -> None:
    volume = _volume((13, 9, 11))
    shapes = []

    def identity(x: np.ndarray) -> list[np.ndarray]:
        shapes.append(x.shape)
        return [x * 1.0]

    (out,) = predict_patched(volume, identity, patch=(6, 4, 5), stride=(4, 3, 5))
    assert out.shape == (1, 13, 9, 11)
    np.testing.assert_allclose(out[0], volume, rtol=1e-6, atol=0)
    assert set(shapes) == {(1, 1, 6, 4, 5)}


def test_volume_smaller_than_patch_is_padded() -> None:
    volume = _volume((3, 5, 2))
    (out,) = predict_patched(volume, lambda x: [x], patch=8, stride=8)
    np.testing.assert_array_equal(out[0], volume)


def test_patch_mean_at_scale_8_and_identity_at_scale_1() -> None:
    """Non-overlapping 8-blocks: the scale-8 map is each patch's block means; overlap averages."""
    volume = _volume((16, 24, 8))

    def net(x: np.ndarray) -> list[np.ndarray]:
        blocks = x[0, 0].reshape(2, 8, 2, 8, 2, 8).mean(axis=(1, 3, 5))
        return [x, blocks[None, None]]

    full, low = predict_patched(volume, net, patch=16, stride=8, scales=(1, 8))
    np.testing.assert_allclose(full[0], volume, rtol=1e-6)
    # padded to (16, 24, 16): every 8-block's mean is the same from every patch covering it
    padded = np.pad(volume, [(0, 0), (0, 0), (0, 8)])
    expected = padded.reshape(2, 8, 3, 8, 2, 8).mean(axis=(1, 3, 5))
    assert low.shape == (1, 2, 3, 1)
    np.testing.assert_allclose(low[0], expected[:, :, :1], rtol=1e-5)


def test_overlap_is_averaged() -> None:
    """A net that outputs the patch's scalar mean: overlapped voxels get the mean of means."""
    volume = np.zeros((8, 4, 4), np.float32)
    volume[:4] = 1.0

    def mean_net(x: np.ndarray) -> list[np.ndarray]:
        return [np.full((1, 1, 1, 1, 1), x.mean(), np.float32)]

    # patches of 4 at stride 4 along z at scale 4: each 4-block is its own patch
    (out,) = predict_patched(volume, mean_net, patch=4, stride=4, scales=(4,))
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 0.0])
    # scale 1 with patch 4, stride 2: z starts 0, 2, 4 -> means 1, 0.5, 0
    (out,) = predict_patched(
        volume, lambda x: [np.full((1, 1, 4, 4, 4), x.mean(), np.float32)], patch=4, stride=2
    )
    np.testing.assert_allclose(out[0, :, 0, 0], [1, 1, 0.75, 0.75, 0.25, 0.25, 0, 0])


def test_valid_convolution_margin() -> None:
    """A 'valid' net that crops its input by the margin reproduces the volume; inputs are static."""
    margin = 3
    volume = _volume((11, 7, 9), seed=1)
    seen = set()

    def valid(x: np.ndarray) -> list[np.ndarray]:
        seen.add(x.shape)
        return [x[..., margin:-margin, margin:-margin, margin:-margin]]

    (out,) = predict_patched(volume, valid, patch=5, stride=4, margin=margin)
    np.testing.assert_allclose(out[0], volume, rtol=1e-6)
    assert seen == {(1, 1, 11, 11, 11)}


def test_margin_sees_zero_padding_at_the_border() -> None:
    volume = np.ones((4, 4, 4), np.float32)

    def border_sum(x: np.ndarray) -> list[np.ndarray]:
        return [x[..., :1, 1:-1, 1:-1] * 0 + x.sum()]  # (1, 1, 1, 4, 4)

    with pytest.raises(ValueError, match="expected"):
        predict_patched(volume, border_sum, patch=4, margin=1)
    (out,) = predict_patched(
        volume, lambda x: [x[..., 1:-1, 1:-1, 1:-1] * 0 + x.sum()], patch=4, margin=1
    )
    assert float(out.max()) == 64.0  # a (6,6,6) input window holds the 4^3 ones and zeros


@pytest.mark.parametrize(
    ("patch", "stride", "scales", "message"),
    [
        (12, 8, (1, 8), "multiples of every output scale"),
        (16, 12, (8,), "multiples of every output scale"),
        (8, 16, (1,), "must not exceed patch"),
        (0, 1, (1,), "positive"),
    ],
)
def test_incompatible_sizes_raise(patch: int, stride: int, scales: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predict_patched(np.zeros((16, 16, 16)), lambda x: [x], patch, stride, scales=scales)


def test_wrong_number_of_outputs_raises() -> None:
    with pytest.raises(ValueError, match="returned 1 outputs"):
        predict_patched(np.zeros((8, 8, 8)), lambda x: [x], 8, scales=(1, 8))
