"""LowRes assembly: component boxes from hand-made stage-1 maps, detail insertion, upsampling."""

from __future__ import annotations

import numpy as np
import pytest

from medrepro.transforms.lowres_components import (
    ComponentBox,
    assemble_lowres,
    component_boxes,
    upsample_nearest,
)


def _features(prob8: np.ndarray) -> dict[int, np.ndarray]:
    """Features whose value encodes the low-res voxel they belong to (for crop checks)."""
    out = {}
    for scale, channels in ((2, 1), (4, 2), (8, 4)):
        k = 8 // scale
        code = np.arange(prob8.size, dtype=np.float32).reshape(prob8.shape)
        up = code.repeat(k, 0).repeat(k, 1).repeat(k, 2)
        out[scale] = np.repeat(up[None], channels, axis=0)
    return out


def test_boxes_with_margin_and_clipping() -> None:
    prob8 = np.zeros((6, 5, 4), np.float32)
    prob8[2:4, 1, 1] = 0.9  # one component
    prob8[5, 4, 3] = 0.7  # in the corner: margin clipped
    prob8[0, 4, 0] = 0.5  # exactly 0.5 is not foreground
    boxes = component_boxes(prob8)
    assert [b.low for b in boxes] == [((1, 5), (0, 3), (0, 3)), ((4, 6), (3, 5), (2, 4))]
    assert boxes[0].full == (slice(8, 40), slice(0, 24), slice(0, 24))
    assert boxes[0].slices(2) == (slice(4, 20), slice(0, 12), slice(0, 12))
    assert boxes[0].shape == (32, 24, 24)


def test_diagonal_voxels_form_one_component() -> None:
    prob8 = np.zeros((4, 4, 4), np.float32)
    prob8[0, 0, 0] = prob8[1, 1, 1] = 1.0  # 26-connected only
    boxes = component_boxes(prob8, margin=0)
    assert [b.low for b in boxes] == [((0, 2), (0, 2), (0, 2))]


def test_upsample_nearest_crops() -> None:
    low = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    up = upsample_nearest(low, 8, (9, 16, 3))
    assert up.shape == (9, 16, 3)
    assert up[7, 7, 2] == 0 and up[8, 0, 0] == 4 and up[0, 8, 0] == 2
    with pytest.raises(ValueError, match="does not cover"):
        upsample_nearest(low, 8, (17, 8, 8))


def test_assembly_inserts_detail_in_boxes_only() -> None:
    # image (20, 16, 12) -> stage-1 grid (3, 2, 2), padded image (24, 16, 16)
    image = np.random.default_rng(0).random((20, 16, 12), dtype=np.float32)
    prob8 = np.full((3, 2, 2), 0.25, np.float32)
    prob8[2, 1, 1] = 0.8  # box low ((1,3),(0,2),(0,2)) -> full z 8:24 (cropped to 20)
    features = _features(prob8)
    calls = []

    def detail(x, f2, f4, f8):  # noqa: ANN001, ANN202
        calls.append((x.shape, f2.shape, f4.shape, f8.shape))
        # the crops are aligned: f8 holds the low-res codes of the box
        np.testing.assert_array_equal(
            f8[0, 0], np.array([4, 5, 6, 7, 8, 9, 10, 11]).reshape(2, 2, 2)
        )
        np.testing.assert_array_equal(f2[0, 0, ::4, ::4, ::4], f8[0, 0])
        return np.full(x.shape, 0.875, np.float32) + x * 0  # constant detail probability

    prob, boxes = assemble_lowres(image, prob8, features, detail)
    assert len(boxes) == 1
    assert calls == [((1, 1, 16, 16, 16), (1, 1, 8, 8, 8), (1, 2, 4, 4, 4), (1, 4, 2, 2, 2))]
    assert prob.shape == image.shape and prob.dtype == np.float32
    np.testing.assert_array_equal(prob[8:], 0.875)
    np.testing.assert_array_equal(prob[:8], 0.25)


def test_detail_sees_zero_padded_image() -> None:
    image = np.ones((12, 8, 8), np.float32)
    prob8 = np.array([[[0.1]], [[0.9]]], np.float32)  # (2, 1, 1), box z 0:16 with margin
    seen = {}

    def detail(x, f2, f4, f8):  # noqa: ANN001, ANN202
        seen["x"] = x.copy()
        return x  # probability = the image itself

    prob, _ = assemble_lowres(image, prob8, _features(prob8), detail)
    assert seen["x"].shape == (1, 1, 16, 8, 8)
    assert seen["x"][0, 0, 12:].max() == 0.0 and seen["x"][0, 0, :12].min() == 1.0
    np.testing.assert_array_equal(prob, 1.0)


def test_overlapping_boxes_take_maximum() -> None:
    image = np.zeros((32, 8, 8), np.float32)
    prob8 = np.array([0.9, 0.1, 0.1, 0.9], np.float32).reshape(4, 1, 1)
    values = iter([0.25, 0.75])

    def detail(x, f2, f4, f8):  # noqa: ANN001, ANN202
        return np.full(x.shape, next(values), np.float32)

    prob, boxes = assemble_lowres(image, prob8, _features(prob8), detail)
    # boxes z 0:16 (first) and 16:32 (second) with margin 1: low (0,2) and (2,4) -> disjoint
    assert [b.low[0] for b in boxes] == [(0, 2), (2, 4)]
    np.testing.assert_array_equal(prob[:16, 0, 0], 0.25)
    np.testing.assert_array_equal(prob[16:, 0, 0], 0.75)

    prob8 = np.array([0.9, 0.1, 0.9, 0.1], np.float32).reshape(4, 1, 1)
    values = iter([0.75, 0.25])
    prob, boxes = assemble_lowres(image, prob8, _features(prob8), detail)
    assert [b.low[0] for b in boxes] == [(0, 2), (1, 4)]
    np.testing.assert_array_equal(prob[:16, 0, 0], 0.75)  # z 8:16 overlaps: max(0.75, 0.25)
    np.testing.assert_array_equal(prob[16:, 0, 0], 0.25)


def test_no_component_is_upsampled_stage1() -> None:
    prob8 = np.random.default_rng(1).random((2, 3, 1)).astype(np.float32) * 0.5
    prob, boxes = assemble_lowres(np.zeros((16, 20, 8)), prob8, _features(prob8), None)  # type: ignore[arg-type]
    assert boxes == []
    np.testing.assert_array_equal(prob, upsample_nearest(prob8, 8, (16, 20, 8)))


def test_mismatched_shapes_raise() -> None:
    prob8 = np.zeros((2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="1/8 grid"):
        assemble_lowres(np.zeros((24, 16, 16)), prob8, _features(prob8), None)  # type: ignore[arg-type]
    features = _features(prob8)
    features[4] = features[4][:, :-1]
    with pytest.raises(ValueError, match="f4"):
        assemble_lowres(np.zeros((16, 16, 16)), prob8, features, None)  # type: ignore[arg-type]


def test_box_scale_must_divide_factor() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        ComponentBox(((0, 1), (0, 1), (0, 1))).slices(3)
