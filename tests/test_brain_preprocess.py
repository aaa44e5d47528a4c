"""Tests for the brain-convert, brain-register and brain-dataset stages and brainmage_normalise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from test_registration import BRAIN_AXES, BRAIN_CENTRE, T1, T2, head_image

from medrepro.io.errors import InputError
from medrepro.preprocessing import brain_convert, brain_dataset, brain_register
from medrepro.preprocessing.brain_dataset import from_network, network_grid, to_network
from medrepro.preprocessing.intensity import brainmage_normalise
from medrepro.preprocessing.registration import rotation_deg

MODS = ("t1", "t1ce", "t2", "flair")
ATLAS_SIZE, ATLAS_SPACING = (44, 52, 38), (4.0, 4.0, 4.0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    yield
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def brain_mask_values(p: np.ndarray, _contrast=None) -> np.ndarray:
    return (np.sum(((p - BRAIN_CENTRE) / BRAIN_AXES) ** 2, -1) <= 1.0).astype(np.float32)


def to_ras(img: sitk.Image) -> sitk.Image:
    return sitk.DICOMOrient(img, "RAS")


def write_subject(root: Path, sid: str, motion: sitk.Transform | None) -> None:
    """Native subject: the analytic head moved by ``motion``, 3 mm voxels, stored RAS."""
    sdir = root / sid
    sdir.mkdir(parents=True)
    size, spacing = (50, 58, 42), (3.5, 3.5, 3.5)
    for mod in MODS:
        img = head_image(size, spacing, motion, T2 if mod in ("t2", "flair") else T1)
        sitk.WriteImage(to_ras(img), str(sdir / f"{sid}_{mod}.nii.gz"))
    mask = head_image(size, spacing, motion, values=brain_mask_values)
    sitk.WriteImage(to_ras(sitk.Cast(mask, sitk.sitkUInt8)), str(sdir / f"{sid}_mask.nii.gz"))


def write_cohort(root: Path, subjects: dict[str, sitk.Transform | None]) -> Path:
    rows = []
    for sid, motion in subjects.items():
        write_subject(root, sid, motion)
        row = {"subject_id": sid, "mask": f"{sid}/{sid}_mask.nii.gz"}
        row.update({m: f"{sid}/{sid}_{m}.nii.gz" for m in MODS})
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "subjects.csv", index=False)
    return root


def motion() -> sitk.Euler3DTransform:
    return sitk.Euler3DTransform(
        (0.0, 0.0, 0.0), *np.deg2rad([6.0, -4.0, 7.0]).tolist(), (5.0, -6.0, 4.0)
    )


@pytest.fixture(scope="module")
def atlas(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("atlas")
    sitk.WriteImage(head_image(ATLAS_SIZE, ATLAS_SPACING), str(d / "atlas_t1.nii.gz"))
    mask = head_image(ATLAS_SIZE, ATLAS_SPACING, values=brain_mask_values)
    sitk.WriteImage(sitk.Cast(mask, sitk.sitkUInt8), str(d / "atlas_mask.nii.gz"))
    return d / "atlas_t1.nii.gz", d / "atlas_mask.nii.gz"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("cohort"), {"s1": motion(), "s2": None})


@pytest.fixture(scope="module")
def registered(tmp_path_factory, cohort, atlas) -> Path:
    root = tmp_path_factory.mktemp("registered")
    native = tmp_path_factory.mktemp("native")
    for sid, min_dice in (("s1", 0.8), ("s2", 0.9999)):  # s2 fails QC on purpose
        assert (
            brain_convert.main(
                ["--cohort", str(cohort), "--subject", sid, "--out-dir", str(native / sid)]
            )
            == 0
        )
        argv = ["--native-dir", str(native / sid), "--subject", sid, "--atlas-t1", str(atlas[0])]
        argv += ["--atlas-mask", str(atlas[1]), "--out-dir", str(root / sid)]
        assert brain_register.main([*argv, "--qc-min-dice", str(min_dice)]) == 0
    return root


# ---------------------------------------------------------------------------- brain-convert


def test_convert_gives_lps_files_at_the_same_physical_positions(cohort, tmp_path):
    out = tmp_path / "native"
    assert (
        brain_convert.main(["--cohort", str(cohort), "--subject", "s1", "--out-dir", str(out)]) == 0
    )
    src = sitk.ReadImage(str(cohort / "s1" / "s1_t1ce.nii.gz"))
    dst = sitk.ReadImage(str(out / "s1_t1ce.nii.gz"))
    assert (
        sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(src.GetDirection()) == "RAS"
    )
    assert (
        sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(dst.GetDirection()) == "LPS"
    )
    assert dst.GetPixelID() == sitk.sitkFloat32
    # the same voxel value sits at the same physical point
    for idx in [(3, 5, 7), (20, 30, 10), (40, 1, 33)]:
        point = src.TransformIndexToPhysicalPoint(idx)
        idx_dst = dst.TransformPhysicalPointToIndex(point)
        assert src[idx] == pytest.approx(dst[idx_dst])
    mask = sitk.ReadImage(str(out / "s1_mask.nii.gz"))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetOrigin() == pytest.approx(dst.GetOrigin())
    record = json.loads((out / "convert.json").read_text())
    assert record["subject_id"] == "s1"
    assert set(record["sources"]) == set(MODS)
    assert record["formats"] == {m: "nifti" for m in MODS}
    assert record["orientation_in"] == {m: "RAS" for m in MODS}


@pytest.mark.parametrize("problem", ["empty_cell", "missing_file", "missing_column"])
def test_convert_missing_modality_names_table_subject_and_modality(cohort, tmp_path, problem):
    table = pd.read_csv(cohort / "subjects.csv", dtype=str)
    if problem == "empty_cell":
        table.loc[table.subject_id == "s1", "flair"] = ""
    elif problem == "missing_file":
        table.loc[table.subject_id == "s1", "flair"] = "s1/nowhere.nii.gz"
    else:
        table = table.drop(columns=["flair"])
    bad = tmp_path / "bad"
    bad.mkdir()
    for sid in ("s1", "s2"):
        (bad / sid).symlink_to(cohort / sid)
    table.to_csv(bad / "subjects.csv", index=False)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"subjects\.csv") as err:
        brain_convert.convert_subject(bad, "s1", out)
    assert "s1" in str(err.value) and "flair" in str(err.value)
    assert not out.exists()


def test_convert_rejects_unknown_subject_and_bad_mask(cohort, tmp_path):
    with pytest.raises(InputError, match="not listed"):
        brain_convert.convert_subject(cohort, "nobody", tmp_path / "o")
    # a mask off the t1ce grid
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "s1").mkdir()
    for m in MODS:
        (bad / "s1" / f"s1_{m}.nii.gz").symlink_to(cohort / "s1" / f"s1_{m}.nii.gz")
    mask = sitk.ReadImage(str(cohort / "s1" / "s1_mask.nii.gz"))
    shifted = sitk.Image(mask)
    shifted.SetOrigin(tuple(np.add(mask.GetOrigin(), (0.5, 0.0, 0.0))))
    sitk.WriteImage(shifted, str(bad / "s1" / "s1_mask.nii.gz"))
    (bad / "subjects.csv").write_text((cohort / "subjects.csv").read_text())
    with pytest.raises(InputError, match="not on the reference grid"):
        brain_convert.convert_subject(bad, "s1", tmp_path / "o")
    sitk.WriteImage(sitk.Cast(mask, sitk.sitkFloat32) * 2.0, str(bad / "s1" / "s1_mask.nii.gz"))
    with pytest.raises(InputError, match="binary"):
        brain_convert.convert_subject(bad, "s1", tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- brain-register


def test_register_brings_a_moved_subject_onto_the_atlas(registered, atlas):
    out = registered / "s1"
    qc = json.loads((out / "qc.json").read_text())
    assert qc["qc_pass"] is True and qc["reason"] == ""
    assert qc["mask_dice_vs_atlas"] > 0.9
    assert set(qc["metric_final"]) == set(MODS)
    atlas_img = sitk.ReadImage(str(atlas[0]))
    for m in MODS:
        img = sitk.ReadImage(str(out / f"s1_{m}.nii.gz"))
        assert img.GetSize() == atlas_img.GetSize() and img.GetPixelID() == sitk.sitkFloat32
        tx = sitk.ReadTransform(str(out / f"s1_{m}_to_atlas.tfm"))
        # the motion was 6/-4/7 degrees: the stored transform is about that rotation
        assert rotation_deg(tx) == pytest.approx(rotation_deg(motion()), abs=1.0)
        assert qc["rotation_deg"][m] == pytest.approx(rotation_deg(tx))
        # atlas -> native, and its inverse maps native points back (evaluation stage)
        p = (10.0, -20.0, 15.0)
        np.testing.assert_allclose(
            tx.GetInverse().TransformPoint(tx.TransformPoint(p)), p, atol=1e-6
        )
        np.testing.assert_allclose(tx.TransformPoint(p), motion().TransformPoint(p), atol=1.5)
    mask = sitk.ReadImage(str(out / "s1_mask.nii.gz"))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(mask))) == {0, 1}


def test_register_records_a_qc_failure_without_raising(registered):
    qc = json.loads((registered / "s2" / "qc.json").read_text())
    assert qc["qc_pass"] is False
    assert qc["mask_dice_vs_atlas"] > 0.9  # well registered, only the threshold is impossible
    assert "Dice" in qc["reason"]


# ---------------------------------------------------------------------------- intensity


def test_brainmage_normalise_hand_computed():
    arr = np.array([0.0, 0.0, 0.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0])
    # mean 25 -> voxels >= 25: [30, 40, 50, 100]
    # p1 = 2nd percentile = 30 + 0.06 * 10 = 30.6; p2 = 95th = 50 + 0.85 * 50 = 92.5
    p1, p2 = 30.6, 92.5
    expected = (np.minimum(arr, p2) - p1) / p2
    out = brainmage_normalise(arr)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.max() == pytest.approx((92.5 - 30.6) / 92.5)  # divides by p2, not p2 - p1
    assert arr[-1] == 100.0  # input untouched
    with pytest.raises(ValueError, match="95th percentile is 0"):
        brainmage_normalise(np.zeros((4, 4)))


# ---------------------------------------------------------------------------- brain-dataset


def test_network_round_trip_recovers_a_smooth_volume():
    img = head_image((60, 70, 50), (3.0, 3.0, 3.0))
    smooth = sitk.SmoothingRecursiveGaussian(img, 6.0)
    ref = network_grid(smooth, (32, 40, 24))
    assert ref.GetSize() == (32, 40, 24)
    # same field of view, edge to edge
    np.testing.assert_allclose(np.multiply(ref.GetSize(), ref.GetSpacing()), (180.0, 210.0, 150.0))
    net = to_network(smooth, (32, 40, 24))
    assert net.shape == (32, 40, 24) and net.dtype == np.float32
    back = sitk.GetArrayFromImage(from_network(net, smooth))
    orig = sitk.GetArrayFromImage(smooth)
    assert back.shape == orig.shape
    scale = orig.max() - orig.min()
    assert np.abs(back - orig).mean() < 0.01 * scale
    assert np.abs(back - orig).max() < 0.1 * scale


def test_dataset_keys_shapes_and_qc_exclusion(registered, atlas, tmp_path):
    out = tmp_path / "pre"
    argv = ["--registered-root", str(registered), "--subjects", "s1", "s2"]
    argv += ["--input-shape", "16", "20", "12", "--out-dir", str(out)]
    assert brain_dataset.main(argv) == 0
    data = np.load(out / "dataset.npz")
    keys = {"images", "masks", "case_id", "patient_id", "modality", "atlas_shape", "atlas_spacing"}
    assert set(data.files) == keys
    assert data["images"].shape == (4, 16, 20, 12) and data["images"].dtype == np.float32
    assert data["masks"].shape == (4, 16, 20, 12) and data["masks"].dtype == np.uint8
    assert data["case_id"].tolist() == [f"s1_{m}" for m in MODS]
    assert data["patient_id"].tolist() == ["s1"] * 4
    assert data["modality"].tolist() == list(MODS)
    assert data["atlas_shape"].tolist() == list(ATLAS_SIZE)
    np.testing.assert_allclose(data["atlas_spacing"], ATLAS_SPACING)
    # the registered mask, resized, matches the atlas brain mask resized the same way
    expected = brain_dataset.mask_to_network(sitk.ReadImage(str(atlas[1])), (16, 20, 12))
    assert expected.sum() > 0.1 * expected.size
    dice = 2 * np.sum(data["masks"][0] & expected) / (data["masks"][0].sum() + expected.sum())
    assert dice > 0.9
    # normalised: the 95th percentile of the upper half maps to 1 - p1/p2 < 1, background < 0
    assert data["images"].max() < 1.05 and data["images"][:, 0, 0, 0].max() < 0
    cases = pd.read_csv(out / "cases.csv")
    assert cases.columns.tolist() == ["case_id", "patient_id", "modality"] and len(cases) == 4
    qc = pd.read_csv(out / "qc.csv")
    assert qc.columns.tolist() == list(brain_dataset.QC_COLUMNS)
    assert qc.set_index("subject_id")["included"].to_dict() == {"s1": True, "s2": False}


def test_convert_reads_a_dicom_series(cohort, tmp_path):
    dicom = pytest.importorskip("medrepro.io.dicom")
    root = tmp_path / "c"
    (root / "s1").mkdir(parents=True)
    for m in MODS:
        (root / "s1" / f"s1_{m}.nii.gz").symlink_to(cohort / "s1" / f"s1_{m}.nii.gz")
    (root / "s1" / "s1_mask.nii.gz").symlink_to(cohort / "s1" / "s1_mask.nii.gz")
    t1ce = sitk.ReadImage(str(cohort / "s1" / "s1_t1ce.nii.gz"), sitk.sitkFloat32)
    dicom.write_dicom_series(t1ce, root / "s1" / "dicom_t1ce", seed_uid="test")
    table = pd.read_csv(cohort / "subjects.csv", dtype=str)
    table["t1ce"] = table["t1ce"].where(table.subject_id != "s1", "s1/dicom_t1ce")
    table.to_csv(root / "subjects.csv", index=False)
    record = brain_convert.convert_subject(root, "s1", tmp_path / "out")
    assert record["formats"]["t1ce"] == "dicom" and record["formats"]["t1"] == "nifti"
    out = sitk.ReadImage(str(tmp_path / "out" / "s1_t1ce.nii.gz"))
    ref = sitk.DICOMOrient(t1ce, "LPS")
    assert out.GetSize() == ref.GetSize()
    np.testing.assert_allclose(out.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    a, b = sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(ref)
    assert np.abs(a - b).max() < 1e-3 * np.abs(b).max() + 1.0  # DICOM stores rescaled integers
