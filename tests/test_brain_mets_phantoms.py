"""Tests for the brain metastases phantoms (medrepro.phantoms.brain_mets, brain_mets_cli)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medrepro.io.images import read_image
from medrepro.phantoms import brain_mets, brain_mets_cli
from medrepro.preprocessing.geometry import Grid, index_to_mm

SPACING = 4.0
N_SUBJECTS = 3
SEED = 1


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mets") / "cohort"
    argv = ["--out-dir", str(out), "--n-subjects", str(N_SUBJECTS), "--seed", str(SEED)]
    argv += ["--spacing-mm", str(SPACING), "--lesions", "4", "8"]
    assert brain_mets_cli.main(argv) == 0
    return out


def _read(cohort: Path, sid: str, kind: str) -> sitk.Image:
    pixel = sitk.sitkFloat32 if kind == "t1c" else sitk.sitkUInt16
    return read_image(cohort / f"{sid}_{kind}.nii.gz", pixel_type=pixel)


def test_layout_orientations_and_headers(cohort: Path) -> None:
    subjects = pd.read_csv(cohort / "subjects.csv", dtype=str)
    truth = pd.read_csv(cohort / "phantom_truth.csv")
    lesions = pd.read_csv(cohort / "lesions.csv")
    assert list(subjects.columns) == ["subject_id"] and len(subjects) == N_SUBJECTS
    assert list(lesions.columns) == brain_mets.LESION_COLUMNS
    expected = [brain_mets.STORAGE_ORIENTATIONS[(k + SEED) % 5] for k in range(N_SUBJECTS)]
    assert list(truth["orientation"]) == expected  # LPS, LAS, RPI for seed 1
    for sid, code in zip(subjects["subject_id"], expected, strict=True):
        kinds = ("t1c", "brainmask", "lesions")
        headers = [nib.load(cohort / f"{sid}_{kind}.nii.gz") for kind in kinds]
        for nii, dtype in zip(headers, (np.int16, np.uint8, np.uint8), strict=True):
            assert "".join(nib.aff2axcodes(nii.affine)) == code
            assert int(nii.header["qform_code"]) == 1 and int(nii.header["sform_code"]) == 1
            np.testing.assert_allclose(nii.get_qform(), nii.get_sform(), atol=1e-5)
            np.testing.assert_allclose(nii.header.get_zooms(), [SPACING] * 3, atol=1e-6)
            assert nii.get_data_dtype() == dtype
        values = np.asarray(headers[0].dataobj)
        assert values.min() >= 0 and 2000 < values.max() <= 4095
        n = int((lesions["subject_id"] == sid).sum())
        assert 1 <= n <= 8 and n == int(truth.set_index("subject_id").loc[sid, "n_lesions"])


def test_lesions_inside_brain_separate_and_at_their_centres(cohort: Path) -> None:
    lesions = pd.read_csv(cohort / "lesions.csv")
    for sid, rows in lesions.groupby("subject_id"):
        labels = _read(cohort, sid, "lesions")
        mask = sitk.GetArrayFromImage(_read(cohort, sid, "brainmask"))
        lab = sitk.GetArrayFromImage(labels)
        assert set(np.unique(lab)) == {0, *rows["lesion"]}  # every lesion has voxels
        assert np.all(mask[lab > 0] == 1)  # inside the brain
        # lesion labels never touch each other (26-connectivity)
        for k in rows["lesion"]:
            grown = sitk.GetArrayFromImage(sitk.BinaryDilate(labels == int(k), [1, 1, 1]))
            assert set(np.unique(lab[grown > 0])) <= {0, int(k)}
        # world centre (LPS mm) matches the label centroid for lesions of >= 3 voxels across,
        # and their labels have no holes (no dip of the lesion fraction at the centre)
        grid = Grid.of(labels)
        for _, row in rows[rows["diameter_mm"] >= 3 * SPACING].iterrows():
            one = lab == row["lesion"]
            np.testing.assert_array_equal(ndimage.binary_fill_holes(one), one)
            idx = np.argwhere(lab == row["lesion"]).mean(axis=0)[::-1]
            centroid = index_to_mm(grid, idx)
            want = row[["center_x", "center_y", "center_z"]].to_numpy(float)
            assert np.linalg.norm(centroid - want) < 0.5 * SPACING
        # lesions of >= 3 voxels across enhance: their brightest voxel is above 90 % of the brain
        image = sitk.GetArrayFromImage(_read(cohort, sid, "t1c"))
        p90 = np.percentile(image[mask > 0], 90)
        for k in rows.loc[rows["diameter_mm"] >= 3 * SPACING, "lesion"]:
            assert image[lab == k].max() > p90


def test_lesion_sites_respect_depth_and_gap() -> None:
    rng = np.random.default_rng(0)
    grid = Grid(origin=np.zeros(3), spacing=np.full(3, 2.0), direction=np.eye(3), size=[40] * 3)
    z, y, x = np.indices((40, 40, 40)) * 2.0
    depth = np.clip(30.0 - np.sqrt((x - 78) ** 2 + (y - 78) ** 2 + (z - 78) ** 2), 0, None)
    lesions = tuple(brain_mets.sample_lesion(rng, d) for d in (20.0, 12.0, 8.0, 6.0, 4.0, 3.0))
    centres = brain_mets.lesion_sites(
        depth, np.zeros_like(depth, bool), np.ones_like(depth, bool), grid, lesions
    )
    reach = [float(np.max(lesion.shape.radii_mm)) for lesion in lesions]
    assert all(c is not None for c in centres)
    for a in range(len(lesions)):
        d = 30.0 - np.linalg.norm(centres[a] - 78.0)
        assert d >= reach[a] + 2.0 - 1e-9
        for b in range(a):
            gap = np.linalg.norm(centres[a] - centres[b]) - reach[a] - reach[b]
            assert gap >= brain_mets.LESION_GAP_MM - 1e-9
    # a brain with room for one large lesion only: the second one gets no site
    small = np.clip(14.0 - np.sqrt((x - 78) ** 2 + (y - 78) ** 2 + (z - 78) ** 2), 0, None)
    two = (brain_mets.sample_lesion(rng, 20.0), brain_mets.sample_lesion(rng, 19.0))
    sites = brain_mets.lesion_sites(small, small > 0, small > 0, grid, two)
    assert sum(c is not None for c in sites) == 1


def test_diameter_distribution_and_enhancement_pattern() -> None:
    d = brain_mets.sample_diameters(np.random.default_rng(0), 20000)
    p5, p50, p95 = np.percentile(d, [5, 50, 95])
    assert 2.7 < p5 < 3.3 and 6.5 < p50 < 8.5 and 21.0 < p95 < 28.0
    assert d.min() >= 2.5 and d.max() <= 40.0
    rng = np.random.default_rng(1)
    large = [brain_mets.sample_lesion(rng, 25.0) for _ in range(20)]
    small = [brain_mets.sample_lesion(rng, 6.0) for _ in range(20)]
    assert all(s.ring and s.shape.rim_mm < s.shape.radii_mm.min() for s in large)
    assert not any(s.ring for s in small)
    assert all(s.shape.rim_mm > s.shape.radii_mm.max() for s in small)  # no necrotic core
    for s in large + small:  # ellipsoid volume = the equivalent sphere's
        assert np.prod(s.shape.radii_mm) == pytest.approx((s.diameter_mm / 2) ** 3)


def test_determinism_and_anisotropic_spacing() -> None:
    a = brain_mets.sample_subject(5, 2, n_lesions=(3, 6))
    b = brain_mets.sample_subject(5, 2, n_lesions=(3, 6))
    c = brain_mets.sample_subject(6, 2, n_lesions=(3, 6))
    assert [x.diameter_mm for x in a.lesions] == [x.diameter_mm for x in b.lesions]
    assert a.noise_seed == b.noise_seed and a.noise_seed != c.noise_seed
    assert 3 <= len(a.lesions) <= 6
    subject = brain_mets.render_subject(a, (4.0, 4.0, 5.0))
    np.testing.assert_allclose(subject.image.GetSpacing(), (4.0, 4.0, 5.0))
    assert subject.image.GetSize() == subject.lesions.GetSize() == subject.brainmask.GetSize()
    assert len(subject.table) >= 1


def test_to_nifti_round_trip(tmp_path: Path) -> None:
    img = sitk.GetImageFromArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    img.SetSpacing((0.94, 0.94, 1.0))
    img.SetOrigin((10.0, -20.0, 30.0))
    img = sitk.DICOMOrient(img, "PIR")
    path = tmp_path / "x.nii.gz"
    nib.save(brain_mets.to_nifti(img), path)
    back = sitk.ReadImage(str(path))
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert "".join(nib.aff2axcodes(nib.load(path).affine)) == "PIR"


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    base = ["--out-dir", str(tmp_path / "x"), "--n-subjects", "1", "--seed", "0"]
    for extra in (
        ["--spacing-mm", "4", "--lesions", "5", "2"],
        ["--spacing-mm", "4", "4"],
        ["--spacing-mm", "0"],
        ["--spacing-mm", "4", "--orientations", "LPX"],
    ):
        with pytest.raises(SystemExit):
            brain_mets_cli.main(base + extra)
    assert not (tmp_path / "x").exists()
