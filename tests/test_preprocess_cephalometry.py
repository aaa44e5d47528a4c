"""Tests for the ceph-preprocess stage (dataset.npz) and the split / select-inputs stages on top of it."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from medrepro.data import select_inputs, split
from medrepro.io.errors import InputError
from medrepro.io.images import write_image
from medrepro.io.markups import write_markups
from medrepro.preprocessing import cephalometry
from medrepro.preprocessing.cephalometry import build_dataset
from medrepro.preprocessing.geometry import Grid, index_to_mm

LABELS = ("Or-L", "Or-R", "Po-L", "Po-R")
SPACING = (6.0, 6.0, 7.0)  # mm: a coarse stand-in for 1.25 x 1.25 x 1.55
SHAPE = (8, 8, 6)  # voxels: a tiny stand-in for 128 x 128 x 64
WINDOW = (-1000.0, 2000.0)
KW = {"labels": LABELS, "spacing": SPACING, "shape": SHAPE, "hu_window": WINDOW}
# (case_id, patient_id, storage direction): patient p1 has two timepoints
CASES = [
    ("p0_t0", "p0", np.eye(3)),
    ("p1_t0", "p1", np.diag([-1.0, -1.0, 1.0])),  # RAS
    ("p1_t1", "p1", np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])),  # PIR
    ("p2_t0", "p2", np.eye(3)),
]
NPZ_KEYS = {
    "images",
    "landmarks_vox",
    "landmarks_mm",
    "origin",
    "spacing",
    "direction",
    "case_id",
    "patient_id",
    "labels",
}


def _landmarks(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = {
        "Or-L": (15.0, -20.0, 0.0),
        "Or-R": (-15.0, -20.0, 0.0),
        "Po-L": (18.0, 10.0, 2.0),
        "Po-R": (-18.0, 10.0, 2.0),
    }
    return {k: np.asarray(v) + rng.uniform(-2, 2, 3) for k, v in base.items()}


def _write_cohort(root: Path) -> Path:
    """Tiny cohort: 18 x 16 x 12 voxels of 4 x 4 x 5 mm, HU noise, stored in several orientations."""
    rows = []
    rng = np.random.default_rng(0)
    size, spacing = np.array([18, 16, 12]), np.array([4.0, 4.0, 5.0])
    for n, (case_id, patient_id, direction) in enumerate(CASES):
        img = sitk.GetImageFromArray(rng.normal(0.0, 300.0, size[::-1]).astype(np.float32))
        img.SetSpacing(spacing.tolist())
        img.SetDirection(direction.ravel().tolist())
        img.SetOrigin(
            (np.array([1.0, -2.0, 3.0]) - direction @ (spacing * (size - 1) / 2)).tolist()
        )
        write_image(img, root / "images" / f"{case_id}.nii.gz")
        write_markups(root / "images" / f"{case_id}.mrk.json", _landmarks(n))
        rows.append(
            (
                case_id,
                patient_id,
                case_id[-1],
                f"images/{case_id}.nii.gz",
                f"images/{case_id}.mrk.json",
            )
        )
    cases = pd.DataFrame(rows, columns=["case_id", "patient_id", "timepoint", "image", "landmarks"])
    cases.to_csv(root / "cases.csv", index=False)
    return root / "cases.csv"


def _assert_dataset(
    path: Path, n: int, labels: tuple[str, ...], shape: tuple[int, int, int]
) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    k = len(labels)
    assert set(data) == NPZ_KEYS
    assert data["images"].shape == (n, *shape) and data["images"].dtype == np.float32
    for key, tail in [
        ("landmarks_vox", (k, 3)),
        ("landmarks_mm", (k, 3)),
        ("origin", (3,)),
        ("spacing", (3,)),
        ("direction", (3, 3)),
    ]:
        assert data[key].shape == (n, *tail) and data[key].dtype == np.float64, key
    for key in ("case_id", "patient_id"):
        assert data[key].shape == (n,) and data[key].dtype.kind == "U", key
    assert data["labels"].tolist() == list(labels)
    for i in range(n):
        grid = Grid(data["origin"][i], data["spacing"][i], data["direction"][i], shape)
        np.testing.assert_allclose(
            index_to_mm(grid, data["landmarks_vox"][i]), data["landmarks_mm"][i], atol=1e-6
        )
        assert np.all(data["landmarks_vox"][i] >= -0.5) and np.all(
            data["landmarks_vox"][i] <= np.array(shape) - 0.5
        )
        assert (
            abs(float(data["images"][i].mean())) < 1e-4
            and abs(float(data["images"][i].std()) - 1) < 1e-4
        )
    return data


def _only(root: Path, *names: str) -> None:
    """No temporary leftovers: the directory holds exactly ``names`` (plus the cohort)."""
    produced = {p.name for p in root.iterdir()} - {"cases.csv", "images"}
    assert produced == set(names), produced


def test_build_dataset_layout(tmp_path: Path) -> None:
    cases_csv = _write_cohort(tmp_path)
    out = tmp_path / "dataset.npz"
    build_dataset(cases_csv, out, **KW)
    data = _assert_dataset(out, len(CASES), LABELS, SHAPE)
    _only(tmp_path, "dataset.npz")
    assert data["case_id"].tolist() == [c[0] for c in CASES]
    assert data["patient_id"].tolist() == [c[1] for c in CASES]
    for n in range(len(CASES)):
        np.testing.assert_allclose(
            data["landmarks_mm"][n], np.stack(list(_landmarks(n).values())), atol=1e-9
        )
        np.testing.assert_allclose(data["spacing"][n], SPACING)
        np.testing.assert_allclose(data["direction"][n], np.eye(3))
        centre = index_to_mm(
            Grid(data["origin"][n], data["spacing"][n], data["direction"][n], SHAPE),
            (np.array(SHAPE) - 1) / 2,
        )
        np.testing.assert_allclose(centre, [1.0, -2.0, 3.0], atol=1e-9)  # grid centred on the image


def test_output_name_without_npz_suffix(tmp_path: Path) -> None:
    cases_csv = _write_cohort(tmp_path)
    build_dataset(cases_csv, tmp_path / "dataset.bin", **KW)
    _only(tmp_path, "dataset.bin")
    _assert_dataset(tmp_path / "dataset.bin", len(CASES), LABELS, SHAPE)


def test_missing_landmark_file(tmp_path: Path) -> None:
    cases_csv = _write_cohort(tmp_path)
    (tmp_path / "images" / "p1_t1.mrk.json").unlink()
    with pytest.raises(InputError, match="p1_t1.mrk.json") as err:
        build_dataset(cases_csv, tmp_path / "dataset.npz", **KW)
    assert err.value.path == cases_csv
    _only(tmp_path)


def test_nan_image(tmp_path: Path) -> None:
    cases_csv = _write_cohort(tmp_path)
    bad = tmp_path / "images" / "p2_t0.nii.gz"
    img = sitk.ReadImage(str(bad))
    img[3, 4, 5] = float("nan")
    sitk.WriteImage(img, str(bad))
    with pytest.raises(InputError, match="p2_t0.nii.gz") as err:
        build_dataset(cases_csv, tmp_path / "dataset.npz", **KW)
    assert err.value.path == bad
    _only(tmp_path)


def test_bad_table_and_landmark_outside(tmp_path: Path) -> None:
    cases_csv = _write_cohort(tmp_path)
    pd.read_csv(cases_csv).drop(columns="landmarks").to_csv(tmp_path / "nolm.csv", index=False)
    with pytest.raises(InputError, match="landmarks") as err:
        build_dataset(tmp_path / "nolm.csv", tmp_path / "dataset.npz", **KW)
    assert err.value.path == tmp_path / "nolm.csv"
    far = _landmarks(0) | {"Po-R": np.array([-60.0, 10.0, 2.0])}
    write_markups(tmp_path / "images" / "p0_t0.mrk.json", far)
    with pytest.raises(InputError, match="Po-R") as err:
        build_dataset(cases_csv, tmp_path / "dataset.npz", **KW)
    assert err.value.path == tmp_path / "images" / "p0_t0.mrk.json"
    assert not (tmp_path / "dataset.npz").exists()


def test_cli_split_and_select_inputs(tmp_path: Path) -> None:
    cases_csv = _write_cohort(tmp_path)
    out = tmp_path / "pre" / "dataset.npz"
    argv = [
        "--cases",
        str(cases_csv),
        "--out",
        str(out),
        "--spacing",
        *map(str, SPACING),
        "--shape",
        *map(str, SHAPE),
    ]
    assert cephalometry.main([*argv, "--hu-window", "-1000", "2000", "--labels", *LABELS]) == 0
    splits_csv = tmp_path / "pre" / "splits.csv"
    assert split.main(["--cases", str(cases_csv), "--out", str(splits_csv), "--seed", "0"]) == 0
    splits = pd.read_csv(splits_csv, dtype=str)
    for name in ("train", "val", "test"):
        target = tmp_path / "pre" / f"inputs_{name}.npz"
        assert (
            select_inputs.main(
                [
                    "--dataset",
                    str(out),
                    "--splits",
                    str(splits_csv),
                    "--split",
                    name,
                    "--out",
                    str(target),
                ]
            )
            == 0
        )
        with np.load(target, allow_pickle=False) as npz:
            assert set(npz.files) == {"inputs", "case_id"}
            expected = [
                c
                for c in splits["case_id"]
                if c in set(splits.loc[splits["split"] == name, "case_id"])
            ]
            assert npz["case_id"].tolist() == expected
            assert (
                npz["inputs"].shape == (len(expected), 1, *SHAPE)
                and npz["inputs"].dtype == np.float32
            )
    with pytest.raises(InputError, match="splits.csv"):
        select_inputs.select_inputs(
            np.zeros((1, *SHAPE)), ["other"], splits, "test", source=splits_csv
        )


def test_phantom_cohort(tmp_path: Path) -> None:
    head_ct = pytest.importorskip("medrepro.phantoms.head_ct")
    kwargs = {"n_patients": 3, "seed": 0}
    if "spacing_mm" in inspect.signature(head_ct.generate_cohort).parameters:
        kwargs["spacing_mm"] = 3.0
    cases = head_ct.generate_cohort(tmp_path / "cohort", **kwargs)
    out = tmp_path / "dataset.npz"
    # the paper's field of view (128 x 1.25, 128 x 1.25, 64 x 1.55 mm) at 4x coarser voxels
    shape, spacing = (32, 32, 16), (5.0, 5.0, 6.2)
    build_dataset(
        tmp_path / "cohort" / "cases.csv",
        out,
        labels=head_ct.LANDMARKS,
        spacing=spacing,
        shape=shape,
        hu_window=WINDOW,
    )
    data = _assert_dataset(out, len(cases), tuple(head_ct.LANDMARKS), shape)
    assert data["case_id"].tolist() == cases["case_id"].astype(str).tolist()
