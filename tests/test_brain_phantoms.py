"""Tests for the brain MRI phantoms (medrepro.phantoms.brain_mri, brain_mri_cli, brain_atlas)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medrepro.io.dicom import read_dicom_series
from medrepro.io.errors import InputError
from medrepro.io.images import read_image
from medrepro.phantoms import brain_atlas, brain_mri_cli
from medrepro.phantoms.brain_mri import (
    MODALITIES,
    TumourParams,
    render_subject,
    sample_subject,
)

SPACING = 4.0
N_SUBJECTS = 3
SEED = 0


def _cohort(out: Path, n: int, seed: int) -> Path:
    argv = ["--out-dir", str(out), "--n-subjects", str(n), "--spacing-mm", str(SPACING)]
    argv += ["--seed", str(seed), "--tumour-fraction", "0.5", "--dicom-fraction", "0.5"]
    assert brain_mri_cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cohort(tmp_path_factory.mktemp("brain") / "cohort", N_SUBJECTS, SEED)


def _read(root: Path, rel: str) -> sitk.Image:
    path = root / rel
    return read_dicom_series(path) if path.is_dir() else read_image(path)


def _same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def test_layout_files_exist_and_read_back(cohort: Path) -> None:
    subjects = pd.read_csv(cohort / "subjects.csv", dtype=str)
    truth = pd.read_csv(cohort / "phantom_truth.csv")
    assert list(subjects.columns) == ["subject_id", *MODALITIES, "mask"]
    assert list(truth.columns) == [
        "subject_id",
        "has_tumour",
        "tumour_radius_mm",
        "storage",
        "orientation",
        "slice_thickness_mm",
        "rotation_deg",
        "translation_mm",
        "seed",
    ]
    assert len(subjects) == N_SUBJECTS and list(truth.subject_id) == list(subjects.subject_id)
    assert set(truth.storage) == {"nifti", "dicom"} and truth.has_tumour.any()
    assert (truth.rotation_deg <= 15.0 + 1e-6).all()
    for _, row in subjects.iterrows():
        for modality in MODALITIES:
            img = _read(cohort, row[modality])
            assert img.GetDimension() == 3
            values = sitk.GetArrayViewFromImage(img)
            assert values.min() >= 0 and values.max() <= 4095 and values.max() > 1000
        mask = read_image(cohort / row["mask"], pixel_type=sitk.sitkUInt8)
        assert set(np.unique(sitk.GetArrayViewFromImage(mask))) == {0, 1}


def test_mask_is_on_t1ce_grid_and_covers_the_brain_not_the_skull(cohort: Path) -> None:
    subjects = pd.read_csv(cohort / "subjects.csv", dtype=str)
    for _, row in subjects.iterrows():
        t1ce = _read(cohort, row["t1ce"])
        mask = read_image(cohort / row["mask"], pixel_type=sitk.sitkUInt8)
        _same_grid(t1ce, mask)
        m = sitk.GetArrayFromImage(mask).astype(bool)
        volume_ml = m.sum() * SPACING**3 / 1000.0
        assert 1200.0 < volume_ml < 2600.0
        img = sitk.GetArrayFromImage(t1ce).astype(np.float64)
        shell = ndimage.binary_dilation(m) & ~m  # one voxel outside: CSF, dura, inner skull
        assert img[m].mean() > 1.6 * img[shell].mean()
        # the same test fails for a mask shifted by 4 voxels (the check has teeth)
        shifted = np.roll(m, 4, axis=2)
        ring = ndimage.binary_dilation(shifted) & ~shifted
        assert img[shifted].mean() < 1.6 * img[ring].mean()


def test_tumour_is_flair_bright_inside_the_mask() -> None:
    params = sample_subject(5, 0, has_tumour=True, dicom=False)
    assert params.tumour is not None
    # a medium tumour with a wide oedema, so the 4 mm test grid resolves it
    tumour = dataclasses.replace(params.tumour, radii_mm=np.full(3, 12.0), oedema_mm=12.0)
    with_tumour = dataclasses.replace(params, tumour=tumour)
    without = dataclasses.replace(params, tumour=None)

    def bright_ml(p: object) -> tuple[float, float]:
        images, mask, _ = render_subject(p, SPACING)
        flair = sitk.Resample(images["flair"], mask, sitk.Transform(), sitk.sitkLinear, 0.0)
        f = sitk.GetArrayFromImage(flair)
        m = sitk.GetArrayFromImage(mask).astype(bool)
        bright = f[m] > 1.5 * np.median(f[m])
        return bright.sum() * SPACING**3 / 1000.0, m.sum() * SPACING**3 / 1000.0

    bright_t, vol_t = bright_ml(with_tumour)
    bright_n, vol_n = bright_ml(without)
    assert bright_t > 8.0  # oedema + rim: tens of ml
    assert bright_t > 4.0 * max(bright_n, 1.0)
    assert vol_t >= vol_n - 5.0  # the mask includes tumour and oedema


def test_tumour_params_within_ranges() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        t = TumourParams.sample(rng)
        assert 2 * 5.0 * 0.8 - 1e-9 <= 2 * t.radii_mm.min() and 2 * t.radii_mm.max() <= 35 * 1.2
        assert 5.0 <= t.oedema_mm <= 20.0 and t.rim_mm <= 5.0


def test_same_seed_identical_other_seed_different(cohort: Path, tmp_path: Path) -> None:
    again = _cohort(tmp_path / "again", 2, SEED)  # subject k depends on (seed, k) only
    for sid in ("sub-001", "sub-002"):
        for f in sorted((cohort / sid).rglob("*")):
            if f.is_file():
                assert f.read_bytes() == (again / f.relative_to(cohort)).read_bytes(), f
    other = _cohort(tmp_path / "other", 1, SEED + 1)
    a = sitk.GetArrayFromImage(read_image(cohort / "sub-001" / "sub-001_mask.nii.gz"))
    b = sitk.GetArrayFromImage(read_image(other / "sub-001" / "sub-001_mask.nii.gz"))
    assert a.shape != b.shape or np.mean(a != b) > 0.01


def test_dicom_subject_reads_back_on_the_mask_grid(cohort: Path) -> None:
    truth = pd.read_csv(cohort / "phantom_truth.csv")
    sid = truth.loc[truth.storage == "dicom", "subject_id"].iloc[0]
    series = cohort / sid / "dicom_t1ce"
    assert len(list(series.glob("IM_*.dcm"))) > 10
    t1ce = read_dicom_series(series)
    mask = read_image(cohort / sid / f"{sid}_mask.nii.gz")
    _same_grid(t1ce, mask)


def test_nifti_to_sitk_converts_ras_to_lps() -> None:
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    affine = np.array([[0, -2.0, 0, 10], [1.5, 0, 0, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    img = brain_atlas.nifti_to_sitk(nib.Nifti1Image(data, affine))
    assert np.allclose(np.asarray(img.GetDirection()).reshape(3, 3), np.eye(3))  # reoriented
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    for ijk in [(0, 0, 0), (1, 2, 3), (1, 0, 2)]:
        ras = affine[:3, :3] @ np.asarray(ijk) + affine[:3, 3]
        lps = ras * np.array([-1.0, -1.0, 1.0])
        idx = img.TransformPhysicalPointToIndex(tuple(lps))
        assert arr[idx] == data[ijk]


@pytest.mark.parametrize("spacing", [1.0, 2.0])
def test_atlas_grid_is_sri24_like(spacing: float) -> None:
    grid = brain_atlas.sri24_like_grid(spacing, centre_mm=np.array([0.0, 17.0, 5.0]))
    np.testing.assert_allclose(grid.direction, np.eye(3))
    np.testing.assert_allclose(grid.spacing, spacing)
    np.testing.assert_allclose(grid.size * grid.spacing, (240.0, 240.0, 155.0), atol=spacing)
    centre = grid.origin + grid.spacing * (grid.size - 1) / 2
    np.testing.assert_allclose(centre, (0.0, 17.0, 5.0))
    if spacing == 1.0:
        assert grid.size.tolist() == [240, 240, 155]


def test_atlas_stage_writes_t1_with_skull_and_mask(tmp_path: Path) -> None:
    out = tmp_path / "atlas"
    assert brain_atlas.main(["--out-dir", str(out), "--spacing-mm", "4"]) == 0
    t1 = sitk.ReadImage(str(out / "atlas_t1.nii.gz"))
    mask = sitk.ReadImage(str(out / "atlas_mask.nii.gz"))
    assert t1.GetPixelID() == sitk.sitkFloat32 and mask.GetPixelID() == sitk.sitkUInt8
    _same_grid(t1, mask)
    assert t1.GetSize() == (60, 60, 39)
    m = sitk.GetArrayFromImage(mask).astype(bool)
    a = sitk.GetArrayFromImage(t1)
    assert 1600.0 < m.sum() * 64 / 1000 < 2100.0  # MNI152 brain, about 1.88 l
    # MNI centre of the brain mask lies at the grid centre
    centre = brain_atlas.mask_centre_mm(brain_atlas.load_mni152().mask)
    np.testing.assert_allclose(
        t1.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in t1.GetSize()]), centre
    )
    # skull and scalp: non-zero tissue outside the brain, bright scalp fat beyond a dark skull
    outer = ndimage.binary_dilation(m, iterations=5) & ~ndimage.binary_dilation(m, iterations=1)
    assert a[outer].max() > 0.5 and a[m].mean() > 0.4


def test_user_atlas_files(tmp_path: Path) -> None:
    mask = sitk.Image(40, 40, 30, sitk.sitkUInt8)
    mask.SetSpacing((2.0, 2.0, 2.0))
    mask[10:30, 12:28, 8:22] = 1
    t1 = sitk.Cast(mask, sitk.sitkFloat32) * 100.0
    sitk.WriteImage(t1, str(tmp_path / "t1.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    out_t1, out_mask = brain_atlas.atlas_from_files(
        tmp_path / "t1.nii.gz", tmp_path / "mask.nii.gz", 3.0
    )
    assert out_t1.GetSize() == (80, 80, 52)
    assert int(sitk.GetArrayViewFromImage(out_mask).sum()) * 27 == pytest.approx(
        40 * 32 * 28, rel=0.1
    )
    sitk.WriteImage(mask * 0, str(tmp_path / "empty.nii.gz"))
    with pytest.raises(InputError, match="empty"):
        brain_atlas.atlas_from_files(tmp_path / "t1.nii.gz", tmp_path / "empty.nii.gz", 3.0)
