"""Patch sampling for the LowRes target: shapes, object centring, padding, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from medrepro.transforms.patch_sampling import (
    crop_centered,
    object_center,
    object_voxels,
    sample_patch,
    uniform_center,
)


def _volume() -> tuple[np.ndarray, np.ndarray]:
    image = np.arange(40 * 30 * 20, dtype=np.float32).reshape(40, 30, 20) / 1e4
    mask = np.zeros(image.shape, np.uint8)
    mask[30:33, 5:8, 2:4] = 1  # one object near a corner
    return image, mask


def test_object_voxels_splits_components() -> None:
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[0, 0, 0] = 1
    mask[1, 1, 1] = 1  # diagonal neighbour: same object under 26-connectivity
    mask[4:6, 4:6, 4] = 1
    objects = object_voxels(mask)
    assert [len(o) for o in objects] == [2, 4]
    assert objects[0].tolist() == [[0, 0, 0], [1, 1, 1]]
    assert object_voxels(np.zeros((3, 3, 3))) == []


def test_shapes_same_size_and_valid_conv() -> None:
    image, mask = _volume()
    rng = np.random.default_rng(0)
    x, y = sample_patch(image, mask, rng, 16)
    assert x.shape == y.shape == (16, 16, 16) and x.dtype == np.float32
    x, y = sample_patch(image, mask, rng, (17, 17, 17), output_shape=9)  # margin 4
    assert x.shape == (17, 17, 17) and y.shape == (9, 9, 9) and y.dtype == np.uint8
    with pytest.raises(ValueError, match="margin"):
        sample_patch(image, mask, rng, 16, output_shape=9)


def test_object_patch_contains_the_object_and_boxes_share_the_centre() -> None:
    image, mask = _volume()
    objects = object_voxels(mask)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = sample_patch(image, mask, rng, 13, output_shape=7, object_prob=1.0, jitter=1.0)
        assert y.sum() > 0  # the chosen voxel is inside the output box
        # the output patch is the central crop of an input patch taken with the same centre
        center = object_center(objects, 7, np.random.default_rng(5), jitter=0.0)
        big = crop_centered(image, center, 13)
        small = crop_centered(image, center, 7)
        np.testing.assert_array_equal(big[3:10, 3:10, 3:10], small)


def test_zero_jitter_centres_on_an_object_voxel() -> None:
    _, mask = _volume()
    objects = object_voxels(mask)
    rng = np.random.default_rng(2)
    for _ in range(10):
        c = object_center(objects, 8, rng, jitter=0.0)
        assert mask[tuple(c)] == 1


def test_uniform_centre_keeps_the_output_box_inside() -> None:
    rng = np.random.default_rng(3)
    centres = np.array([uniform_center((40, 30, 20), (8, 8, 8), rng) for _ in range(500)])
    assert centres.min(axis=0).tolist() == [4, 4, 4]  # start = c - 4 >= 0
    assert centres.max(axis=0).tolist() == [36, 26, 16]  # stop = c + 4 <= side
    # an axis smaller than the box: the volume's middle
    assert uniform_center((40, 5, 20), (8, 8, 8), rng)[1] == 2


def test_small_volume_is_padded_with_zero() -> None:
    image = np.ones((4, 5, 6), np.float32)
    mask = np.ones((4, 5, 6), np.uint8)
    x, y = sample_patch(image, mask, np.random.default_rng(0), 8, object_prob=0.0)
    assert x.shape == (8, 8, 8)
    assert x.sum() == image.size and y.sum() == mask.size  # whole volume inside, rest zeros
    # centre (2, 2, 3) -> starts (-2, -2, -1): volume at [2:6, 2:7, 1:7]
    np.testing.assert_array_equal(x[2:6, 2:7, 1:7], image)


def test_crop_far_outside_is_all_padding() -> None:
    out = crop_centered(np.ones((3, 3, 3)), (100, 0, 0), 4, pad_value=0)
    assert out.shape == (4, 4, 4) and out.sum() == 0


def test_determinism_per_seed() -> None:
    image, mask = _volume()

    def draw(seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [sample_patch(image, mask, rng, 12, object_prob=0.5)[0] for _ in range(6)]

    a, b, c = draw(7), draw(7), draw(8)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


def test_object_prob_frequency() -> None:
    image, mask = _volume()
    rng = np.random.default_rng(4)
    hits = [
        sample_patch(image, mask, rng, 6, object_prob=0.9, jitter=0.0)[1].any() for _ in range(300)
    ]
    # object patches always contain the object; random 6^3 boxes rarely do (18 / 24000 voxels)
    assert 0.82 < np.mean(hits) < 0.97
