"""Tests for the LowRes LUNA16 preprocessing (lung_mask and the lowres-luna16-dataset stage)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medrepro.data.lowres_studies import read_objects, read_studies, read_study_arrays
from medrepro.io.errors import InputError
from medrepro.io.luna16 import LABEL_PIXEL, write_mhd
from medrepro.phantoms.chest_ct import generate_cohort
from medrepro.preprocessing import lowres_luna16
from medrepro.preprocessing.lowres_luna16 import hu_window, sphere_labels
from medrepro.preprocessing.lung_mask import (
    binary_closing_ball,
    binary_dilation_ball,
    bounding_box,
    crop_mask,
    lungs_from_labels,
)


def _ball(radius: int) -> np.ndarray:
    g = np.mgrid[(slice(-radius, radius + 1),) * 3]
    return (g**2).sum(0) <= radius**2


def test_hu_window_known_values() -> None:
    out = hu_window(np.array([-2000, -1000, -350, 300, 1000]))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(hu_window(np.array([0.0]), -1000, 400), [1000 / 1400], atol=1e-6)
    with pytest.raises(ValueError):
        hu_window(np.zeros(2), 300, -1000)


def test_distance_morphology_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    mask = ndimage.gaussian_filter(rng.random((18, 20, 22)), 1.5) > 0.52
    mask[:2] = False
    for radius in (1, 2, 3):
        ball = _ball(radius)
        expected = ndimage.binary_dilation(mask, ball)
        np.testing.assert_array_equal(binary_dilation_ball(mask, radius), expected)
        pad = radius + 1
        closed = ndimage.binary_closing(np.pad(mask, pad), ball)[pad:-pad, pad:-pad, pad:-pad]
        np.testing.assert_array_equal(binary_closing_ball(mask, radius), closed)


def test_lungs_drop_trachea_and_box_has_margin() -> None:
    labels = np.zeros((10, 12, 14), dtype=np.uint8)
    labels[2:5, 3:6, 2:4] = 3
    labels[2:5, 3:6, 9:11] = 4
    labels[0:8, 4, 6] = 5
    lungs = lungs_from_labels(labels)
    assert lungs.sum() == 2 * 18 and not lungs[labels == 5].any()
    assert bounding_box(lungs, 0) == (slice(2, 5), slice(3, 6), slice(2, 11))
    assert bounding_box(lungs, 3) == (slice(0, 8), slice(0, 9), slice(0, 14))
    # two slabs 5 voxels apart (x 4..8): a ball of radius 2 fits in the gap, one of radius 4 not
    slabs = np.zeros((10, 12, 14), dtype=np.uint8)
    slabs[:, :, 2:4], slabs[:, :, 9:11] = 3, 4
    assert not crop_mask(slabs, closing_radius=2, dilation_radius=0)[0][5, 6, 6]
    mask, box = crop_mask(slabs, closing_radius=4, dilation_radius=1, margin=0)
    assert mask[5, 6, 4:9].all() and mask[:, :, 1].all() and not mask[:, :, 0].any()
    assert box == (slice(0, 10), slice(0, 12), slice(1, 12))
    with pytest.raises(ValueError):
        crop_mask(np.zeros((4, 4, 4), np.uint8))


def test_sphere_labels_volume() -> None:
    labels = sphere_labels(
        (30, 30, 30), (1.0, 1.0, 1.0), np.array([[15.0, 15, 15], [5, 5, 5]]), [10, 2]
    )
    assert abs(np.count_nonzero(labels == 1) - 4 / 3 * np.pi * 125) < 0.05 * 4 / 3 * np.pi * 125
    assert labels[5, 5, 5] == 2 and labels.max() == 2


UID_A, UID_B = "1.3.6.1.4.1.14519.5.2.1.6279.6001.11", "1.3.6.1.4.1.14519.5.2.1.6279.6001.22"


def _image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin((-10.0, -20.0, -30.0))
    img.SetSpacing((1.0, 1.0, 2.0))
    return img


def _hand_dataset(root: Path, annotations: list[str]) -> None:
    """Two 12x16x20 (z, y, x) scans (subsets 0 and 1) with two lung blocks and a trachea."""
    for subset, uid in enumerate((UID_A, UID_B)):
        hu = np.full((12, 16, 20), 40, dtype=np.int16)
        labels = np.zeros(hu.shape, dtype=np.uint8)
        labels[2:10, 3:13, 2:8] = 3
        labels[2:10, 3:13, 12:18] = 4
        labels[0:12, 7:9, 9:11] = 5
        hu[labels > 0] = -850
        write_mhd(_image(hu), root / f"subset{subset}" / f"{uid}.mhd")
        write_mhd(_image(labels), root / "seg-lungs-LUNA16" / f"{uid}.mhd", pixel_type=LABEL_PIXEL)
    (root / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "\n".join(annotations) + "\n"
    )


def _run(root: Path, out: Path, *extra: str) -> int:
    return lowres_luna16.main(
        ["--data-dir", str(root), "--out-dir", str(out), "--train-subsets", "0",
         "--val-subsets", "--test-subsets", "1", "--closing-radius", "2", *extra]
    )  # fmt: skip


def test_nodule_outside_lung_is_excluded(tmp_path: Path) -> None:
    # world x = -10 + i, y = -20 + j, z = -30 + 2 k: A's nodule at (i, j, k) = (4, 8, 5) in the
    # right lung; B's at (10, 1, 5): outside the lungs (dilated by 3, not reaching j = 1... x = 10
    # lies between the lungs, y = 1 above them)
    _hand_dataset(tmp_path / "d", [f"{UID_A},-6,-12,-20,4", f"{UID_B},0,-19,-20,3"])
    assert _run(tmp_path / "d", tmp_path / "out", "--dilation-radius", "1") == 0
    table = read_studies(tmp_path / "out" / "studies.csv").set_index("study_id")
    assert not table.loc[UID_A, "excluded"] and table.loc[UID_A, "split"] == "train"
    assert table.loc[UID_B, "excluded"] and "outside the lung mask" in table.loc[UID_B, "reason"]
    assert table.loc[UID_B, "split"] == "test" and table.loc[UID_B, "group"] == "1"
    objects = read_objects(tmp_path / "out" / "objects.csv")
    assert objects["study_id"].tolist() == [UID_A]
    # crop = lungs (z 2:10, y 3:13, x 2:18) closed, dilated by 1, + 5 margin, clipped
    assert tuple(table.loc[UID_A, ["shape_z", "shape_y", "shape_x"]]) == (12, 16, 20)
    image, mask = read_study_arrays(tmp_path / "out" / "studies.npz", [UID_A])[UID_A]
    assert image[0, 0, 0] == 0.0  # outside the dilated lungs: -1000 HU -> 0
    np.testing.assert_allclose(image[5, 8, 4], (-850 + 1000) / 1300, atol=1e-3)
    obj = objects.iloc[0]
    centre = np.rint(obj[["center_z", "center_y", "center_x"]].to_numpy(float)).astype(int)
    np.testing.assert_array_equal(centre, [5, 8, 4])
    assert mask[tuple(centre)] == 1 and obj["kind"] == "unknown" and obj["inside_mask"]
    # a 4 mm sphere at 1 x 1 x 2 mm: 13 voxels in the centre slice (dy^2 + dx^2 <= 4), 1 above
    # and 1 below (dz = 2 mm)
    assert mask.sum() == obj["volume_mm3"] / 2.0 == 15


def test_bad_study_error_or_exclude(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _hand_dataset(root, [f"{UID_A},-6,-12,-20,4"])
    (root / "seg-lungs-LUNA16" / f"{UID_B}.raw").unlink()
    with pytest.raises(InputError, match="file not found") as err:
        _run(root, tmp_path / "out")
    assert err.value.path.name == f"{UID_B}.raw"
    assert not (tmp_path / "out").exists()
    assert _run(root, tmp_path / "out", "--on-bad-study", "exclude") == 0
    table = read_studies(tmp_path / "out" / "studies.csv").set_index("study_id")
    assert table.loc[UID_B, "excluded"] and f"{UID_B}.raw" in table.loc[UID_B, "reason"]
    # an annotation of an unknown series: error names annotations.csv and the uid
    (root / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n9.9.9,0,0,0,5\n"
    )
    with pytest.raises(InputError, match="unknown seriesuid 9.9.9") as err:
        _run(root, tmp_path / "out2")
    assert err.value.path.name == "annotations.csv"


def test_end_to_end_on_phantoms(tmp_path: Path) -> None:
    data = tmp_path / "luna"
    data.mkdir()
    cases = generate_cohort(
        data, n_subsets=2, per_subset=1, seed=3, shape_xyz=(64, 64, 48),
        spacing_xyz=(5.0, 5.0, 5.0), nodules_per_scan=(2, 2), outside_lung_scans=1,
    )  # fmt: skip
    assert _run(data, tmp_path / "pre", "--closing-radius", "3") == 0
    table = read_studies(tmp_path / "pre" / "studies.csv").set_index("study_id")
    kept, dropped = cases["seriesuid"]
    assert not table.loc[kept, "excluded"]
    assert table.loc[dropped, "excluded"] and "object 3" in table.loc[dropped, "reason"]
    image, mask = read_study_arrays(tmp_path / "pre" / "studies.npz", [kept])[kept]
    assert image.shape == tuple(table.loc[kept, ["shape_z", "shape_y", "shape_x"]])
    assert image.min() == 0.0 and 0.9 < image.max() <= 1.0 and mask.any()
    objects = read_objects(tmp_path / "pre" / "objects.csv")
    assert len(objects) == 2 and set(objects["kind"]) <= {"solid", "ground_glass", "part_solid"}
    # nodule masks instead of spheres, and resampling to 10 mm
    shutil.rmtree(data / "nodule-masks")
    assert _run(data, tmp_path / "pre10", "--spacing-mm", "10", "--closing-radius", "1") == 0
    table = read_studies(tmp_path / "pre10" / "studies.csv").set_index("study_id")
    assert table.loc[kept, ["spacing_z", "spacing_y", "spacing_x"]].tolist() == [10.0] * 3
    assert table.loc[kept, "shape_x"] <= 32


def test_annotation_outside_the_volume(tmp_path: Path) -> None:
    """An annotation whose centre lies outside its scan: an error naming the problem, or with
    `--on-bad-study exclude` the scan listed as excluded with that reason; no partial output."""
    root = tmp_path / "d"
    _hand_dataset(root, [f"{UID_A},900,900,900,4"])
    with pytest.raises(InputError, match="outside the volume"):
        _run(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _run(root, tmp_path / "out", "--on-bad-study", "exclude") == 0
    table = read_studies(tmp_path / "out" / "studies.csv").set_index("study_id")
    assert table.loc[UID_A, "excluded"] and "outside the volume" in table.loc[UID_A, "reason"]
