"""BrainMaGe post-processing on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from medrepro.transforms.postprocess import (
    brainmage_postprocess,
    fill_holes_slicewise,
    largest_component,
    threshold,
)


def _ring_stack() -> np.ndarray:
    """Axial rings (hole at the centre of every z slice) in a (9, 9, 4) volume."""
    m = np.zeros((9, 9, 4), bool)
    m[2:7, 2:7, :] = True
    m[4, 4, :] = False
    return m


def test_threshold_inclusive() -> None:
    prob = np.array([0.0, 0.5, 0.89999, 0.9, 1.0]).reshape(1, 1, 5)
    assert threshold(prob, 0.9).ravel().tolist() == [False, False, False, True, True]


def test_ring_filled_axially() -> None:
    ring = _ring_stack()
    filled = fill_holes_slicewise(ring, axis=2)
    expected = np.zeros_like(ring)
    expected[2:7, 2:7, :] = True
    assert np.array_equal(filled, expected)


def test_hole_open_in_z_slices_is_not_filled_along_other_axes() -> None:
    """A tube along z: each axial slice is a ring (filled), each sagittal slice is two bars (not)."""
    ring = _ring_stack()
    along_x = fill_holes_slicewise(ring, axis=0)
    # in the x = 4 slice the hole column (y = 4) runs through all z and reaches the slice
    # border, so it is not a hole there and stays empty
    assert not along_x[4, 4, :].any()
    assert np.array_equal(along_x, ring)


def test_3d_cavity_is_filled_only_where_a_slice_encloses_it() -> None:
    """A closed box with a hollow inside: the top and bottom slices are full, the others rings."""
    m = np.zeros((7, 7, 5), bool)
    m[1:6, 1:6, :] = True
    m[2:5, 2:5, 1:4] = False
    out = fill_holes_slicewise(m)
    expected = np.zeros_like(m)
    expected[1:6, 1:6, :] = True
    assert np.array_equal(out, expected)


def test_two_blobs_keep_larger() -> None:
    m = np.zeros((12, 8, 8), bool)
    m[1:4, 1:4, 1:4] = True  # 27 voxels
    m[6:10, 2:6, 2:6] = True  # 64 voxels
    out = largest_component(m)
    assert out.sum() == 64 and out[6:10, 2:6, 2:6].all() and not out[1:4, 1:4, 1:4].any()


def test_connectivity_diagonal_neighbours() -> None:
    """Two cubes touching at one corner: one component with 26-connectivity, two with 6."""
    m = np.zeros((8, 8, 8), bool)
    m[0:2, 0:2, 0:2] = True  # 8 voxels
    m[2:5, 2:5, 2:5] = True  # 27 voxels, corner (2,2,2) touches (1,1,1)
    assert largest_component(m, connectivity=3).sum() == 35  # BrainMaGe's default
    assert largest_component(m, connectivity=1).sum() == 27
    assert largest_component(m, connectivity=2).sum() == 27  # edges are not enough


def test_empty_stays_empty() -> None:
    empty = np.zeros((5, 5, 5), bool)
    assert not fill_holes_slicewise(empty).any()
    assert not largest_component(empty).any()
    out = brainmage_postprocess(np.zeros((5, 5, 5), np.float32))
    assert out.dtype == np.uint8 and out.shape == (5, 5, 5) and not out.any()


def test_brainmage_postprocess_composition() -> None:
    """Ring of probability 0.95 with a 0.5 centre, plus a small 0.99 speck far away."""
    prob = np.zeros((12, 9, 4), np.float32)
    prob[2:7, 2:7, :] = 0.95
    prob[4, 4, :] = 0.5  # below 0.9: a hole after thresholding, filled slice-wise
    prob[10, 7, 1] = 0.99  # separate component, removed
    out = brainmage_postprocess(prob, threshold=0.9)
    expected = np.zeros(prob.shape, np.uint8)
    expected[2:7, 2:7, :] = 1
    assert out.dtype == np.uint8
    assert np.array_equal(out, expected)
    # at 0.96 only the speck is above the threshold: it is then the largest component
    assert brainmage_postprocess(prob, threshold=0.96).sum() == 1


def test_rejects_non_3d() -> None:
    with pytest.raises(ValueError, match="3D"):
        largest_component(np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="3D"):
        brainmage_postprocess(np.ones((3, 3)))
