"""Tests for stage ``lowres-metastases-dataset`` (medrepro.preprocessing.lowres_metastases)."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from medrepro.data.lowres_studies import (
    OBJECT_COLUMNS,
    STUDY_COLUMNS,
    read_objects,
    read_studies,
    read_study_arrays,
)
from medrepro.io.errors import InputError
from medrepro.preprocessing import lowres_metastases as lm

SHAPE_XYZ = (24, 28, 20)
SPACING = (1.0, 1.2, 1.5)  # x, y, z mm


def _subject_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, z)`` arrays in LPS voxel order: image, brain ellipsoid, two lesion spheres."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE_XYZ), indexing="ij")
    brain = ((x - 12) / 8) ** 2 + ((y - 14) / 10) ** 2 + ((z - 10) / 7) ** 2 <= 1.0
    labels = np.zeros(SHAPE_XYZ, dtype=np.uint8)
    labels[(x - 9) ** 2 + (y - 12) ** 2 + (z - 9) ** 2 <= 4] = 1
    labels[(x - 15) ** 2 + (y - 18) ** 2 + (z - 11) ** 2 <= 2] = 2
    image = np.where(brain, 800.0 + 20.0 * x, 50.0) + rng.normal(0, 5, SHAPE_XYZ)
    image[labels > 0] = 1500.0
    return image.astype(np.int16), brain.astype(np.uint8), labels


def _lps_affine(origin: tuple[float, float, float] = (-10.0, 20.0, 5.0)) -> np.ndarray:
    """nibabel (RAS) affine of an LPS-ordered array with :data:`SPACING`."""
    lps = np.eye(4)
    lps[:3, :3] = np.diag(SPACING)
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _save(arr: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def _write_subject(root: Path, sid: str, storage: str = "LPS", seed: int = 0) -> None:
    """Write one subject, stored in ``storage`` ("LPS" or "RAS": x and y flipped)."""
    arrays = _subject_arrays(seed)
    affine = _lps_affine()
    if storage == "RAS":
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:3, 3] = [SHAPE_XYZ[0] - 1, SHAPE_XYZ[1] - 1, 0]  # voxel i -> n-1-i
        affine = affine @ flip
        arrays = tuple(a[::-1, ::-1, :].copy() for a in arrays)
    for key, arr in zip(("image", "brainmask", "lesions"), arrays, strict=True):
        _save(arr, affine, lm.subject_paths(root, sid)[key])


def _dataset(root: Path, ids: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k, sid in enumerate(ids):
        _write_subject(root, sid, "RAS" if k % 2 else "LPS", seed=k)
    pd.DataFrame({"subject_id": ids}).to_csv(root / "subjects.csv", index=False)
    return root


def test_scale_percentiles_known_answer() -> None:
    image = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    mask = np.ones_like(image, dtype=np.uint8)
    mask[0, 0, :5] = 0  # values 0..4 are outside the brain
    inside = image[mask > 0].astype(np.float64)
    lo, hi = np.percentile(inside, [0.5, 99.5])
    assert lo == pytest.approx(5 + 0.005 * 994) and hi == pytest.approx(5 + 0.995 * 994)
    out = lm.scale_percentiles(image, mask)
    assert out.dtype == np.float32
    assert out[5, 0, 0] == pytest.approx((500 - lo) / (hi - lo), abs=1e-6)
    assert out[0, 0, 5] == 0.0 and out[9, 9, 9] == 1.0  # clipped at both ends
    assert np.all(out[0, 0, :5] == 0.0)  # outside the brain
    with pytest.raises(ValueError, match="constant"):
        lm.scale_percentiles(np.ones((4, 4, 4)), np.ones((4, 4, 4)))


def test_equivalent_diameter_and_centre_of_voxelised_sphere() -> None:
    spacing_zyx = (0.5, 1.0, 0.8)
    shape = (100, 50, 60)
    axes = (np.arange(n) * s for n, s in zip(shape, spacing_zyx, strict=True))
    z, y, x = np.meshgrid(*axes, indexing="ij")
    centre = np.array([24.5, 25.0, 23.2])  # mm
    ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= 10.0**2
    labels = np.zeros(shape, dtype=np.uint16)
    labels[ball] = 3
    mask = np.ones(shape, dtype=np.uint8)
    mask[:40] = 0  # z < 20 mm outside; the centroid (z = 24.5 mm, voxel 49) inside
    table = lm.lesion_objects(labels, mask, spacing_zyx)
    assert len(table) == 1 and int(table["object"].iloc[0]) == 3
    row = table.iloc[0]
    assert row["volume_mm3"] == pytest.approx(4.0 / 3.0 * math.pi * 1000, rel=0.01)
    assert row["diameter_mm"] == pytest.approx(20.0, abs=0.1)
    got = np.array([row["center_z"], row["center_y"], row["center_x"]]) * spacing_zyx
    np.testing.assert_allclose(got, centre, atol=0.05)
    assert bool(row["inside_mask"])
    mask[:] = 0
    assert not bool(lm.lesion_objects(labels, mask, spacing_zyx)["inside_mask"].iloc[0])


def test_split_fractions_and_determinism() -> None:
    ids = [f"s{k:03d}" for k in range(100)]
    splits = lm.assign_splits(ids, (0.64, 0.21, 0.15), seed=3, source="x.csv")
    counts = pd.Series(splits).value_counts().to_dict()
    assert counts == {"train": 64, "val": 21, "test": 15}
    assert splits == lm.assign_splits(list(reversed(ids)), (0.64, 0.21, 0.15), 3, "x.csv")
    other = lm.assign_splits(ids, (0.64, 0.21, 0.15), seed=4, source="x.csv")
    assert other != splits and pd.Series(other).value_counts().to_dict() == counts


def test_ras_and_lps_storage_give_the_same_arrays(tmp_path: Path) -> None:
    _write_subject(tmp_path, "lps", "LPS")
    _write_subject(tmp_path, "ras", "RAS")
    ras = lm.read_subject(tmp_path, "ras")
    assert nib.aff2axcodes(nib.load(lm.subject_paths(tmp_path, "ras")["image"]).affine) == (
        "R",
        "A",
        "S",
    )
    assert sitk.GetArrayViewFromImage(ras.image)[0, 0, 0] != 0  # really stored differently
    a = lm.preprocess_subject(lm.read_subject(tmp_path, "lps"))
    b = lm.preprocess_subject(ras)
    for left, right in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(left, right)
    assert a[3] == b[3] == (1.5, 1.2, 1.0)
    # expected crop: brain bbox + 5 voxels, clipped: z 3..17 -> 0..20, y 4..24 -> 0..28, x 4..20
    image, labels, mask, _ = a
    assert image.shape == (20, 28, 24)
    assert image.min() == 0.0 and image.max() == 1.0 and np.all(image[mask == 0] == 0)
    assert set(np.unique(labels)) == {0, 1, 2}


def test_resampling_option_changes_spacing_and_keeps_lesions(tmp_path: Path) -> None:
    _write_subject(tmp_path, "s", "RAS")
    image, labels, mask, spacing = lm.preprocess_subject(
        lm.read_subject(tmp_path, "s"), spacing_mm=(2.0, 2.0, 2.0), margin=0
    )
    assert spacing == (2.0, 2.0, 2.0)
    assert image.shape == labels.shape == mask.shape
    assert image.shape[2] <= 9 and 1 in np.unique(labels)  # brain 17 mm wide in x -> <= 9 voxels


def test_missing_lesion_file_and_grid_mismatch(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", ["a", "b", "c", "d"])
    missing = lm.subject_paths(root, "b")["lesions"]
    missing.unlink()
    with pytest.raises(InputError) as err:
        lm.build_dataset(root, tmp_path / "out")
    assert err.value.path == missing and "not found" in err.value.problem
    assert not (tmp_path / "out").exists()
    # exclude mode: listed with its reason, not in the container
    table, _ = lm.build_dataset(root, tmp_path / "out", on_bad_study="exclude")
    row = table.set_index("study_id").loc["b"]
    assert bool(row["excluded"]) and "not found" in row["reason"]
    arrays = np.load(tmp_path / "out" / "studies.npz")
    assert "image/b" not in arrays.files and "image/a" in arrays.files
    # grid mismatch names the mask file
    path = lm.subject_paths(root, "c")["brainmask"]
    arr = np.asarray(nib.load(path).dataobj)
    _save(arr, _lps_affine(origin=(0.0, 0.0, 0.0)), path)
    with pytest.raises(InputError) as err:
        lm.read_subject(root, "c")
    assert err.value.path == path and "grid differs" in err.value.problem


def test_stage_end_to_end(tmp_path: Path) -> None:
    ids = ["m1", "m2", "m3", "m4", "m5"]
    root = _dataset(tmp_path / "data", ids)
    out = tmp_path / "pre"
    argv = ["--data-dir", str(root), "--out-dir", str(out), "--seed", "1"]
    assert lm.main([*argv, "--split-fractions", "0.6", "0.2", "0.2"]) == 0
    studies = read_studies(out / "studies.csv")
    objects = read_objects(out / "objects.csv")
    assert list(studies.columns) == STUDY_COLUMNS and list(objects.columns) == OBJECT_COLUMNS
    assert sorted(studies["study_id"]) == ids and set(studies["group"]) == {""}
    assert studies["split"].value_counts().to_dict() == {"train": 3, "val": 1, "test": 1}
    assert (studies["n_objects"] == 2).all() and not studies["excluded"].any()
    assert len(objects) == 10 and set(objects["kind"]) == {"metastasis"}
    assert objects["inside_mask"].astype(bool).all()
    arrays = read_study_arrays(out / "studies.npz", ids)
    for sid, (image, mask) in arrays.items():
        row = studies.set_index("study_id").loc[sid]
        assert image.shape == (row["shape_z"], row["shape_y"], row["shape_x"])
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        # every object centre falls on the union mask
        for _, obj in objects[objects["study_id"] == sid].iterrows():
            c = np.rint([obj["center_z"], obj["center_y"], obj["center_x"]]).astype(int)
            assert mask[tuple(c)] == 1
    # deterministic: a second run gives the same split
    assert lm.main([*argv, "--split-fractions", "0.6", "0.2", "0.2"]) == 0
    again = read_studies(out / "studies.csv")
    assert list(again["split"]) == list(studies["split"])
    with pytest.raises(SystemExit):
        lm.main([*argv, "--split-fractions", "0.6", "0.2", "0.3"])
