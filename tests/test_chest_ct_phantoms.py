"""Tests for the synthetic chest CT phantom (medrepro.phantoms.chest_ct) and its CLI stage."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from medrepro.io.luna16 import find_scans, read_annotations, read_mhd, world_to_voxel
from medrepro.phantoms import chest_ct_cli
from medrepro.phantoms.chest_ct import ChestScan, render_chest_ct, sample_diameters

SHAPE = (128, 96, 72)  # x, y, z voxels
SPACING = (2.5, 2.5, 3.5)  # mm


@cache
def _scan(seed: int, nonsolid: float) -> ChestScan:
    return render_chest_ct(
        np.random.default_rng(seed),
        shape_xyz=SHAPE,
        spacing_xyz=SPACING,
        nodules_per_scan=(3, 3),
        nonsolid_fraction=nonsolid,
    )


def _centre_hu(scan: ChestScan, k: int) -> float:
    img = sitk.GetImageFromArray(scan.ct)
    img.SetOrigin(tuple(scan.origin))
    img.SetSpacing(tuple(scan.spacing))
    z, y, x = np.rint(world_to_voxel(img, scan.nodules[k].centre_mm)).astype(int)
    return float(scan.ct[z, y, x])


def test_diameters_follow_lidc_quantiles() -> None:
    d = sample_diameters(np.random.default_rng(0), 40000)
    np.testing.assert_allclose(np.percentile(d, [5, 50, 95]), [4.3, 7.1, 20.5], rtol=0.03)
    assert d.min() >= 3.0 and d.max() <= 32.0


def test_render_is_deterministic_per_seed() -> None:
    a = _scan(5, 0.18)
    b = render_chest_ct(
        np.random.default_rng(5), shape_xyz=SHAPE, spacing_xyz=SPACING, nodules_per_scan=(3, 3)
    )
    assert a.seriesuid == b.seriesuid
    assert re.fullmatch(r"1\.3\.6\.1\.4\.1\.14519\.5\.2\.1\.6279\.6001\.[1-9]\d{29}", a.seriesuid)
    np.testing.assert_array_equal(a.ct, b.ct)
    np.testing.assert_array_equal(a.nodule_mask, b.nodule_mask)
    np.testing.assert_array_equal(a.origin, b.origin)
    assert _scan(6, 0.18).seriesuid != a.seriesuid


def test_anatomy_hu_and_labels() -> None:
    scan = _scan(1, 0.0)
    assert scan.ct.dtype == np.int16 and scan.ct.shape == SHAPE[::-1]
    lung = np.isin(scan.lungs, (3, 4)) & (scan.nodule_mask == 0)
    assert 0.05 < lung.mean() < 0.4
    assert -870 <= np.median(scan.ct[lung]) <= -780
    # the vessel tree: a few per cent of the lung is soft tissue, but far from all of it
    dense = np.mean(scan.ct[lung] > -300)
    assert 0.005 < dense < 0.15, dense
    # right lung (label 3) on the -x side, left (4) on +x, airways (5) in between
    xs = {k: np.nonzero(scan.lungs == k)[2].mean() for k in (3, 4, 5)}
    assert xs[3] < xs[5] < xs[4]
    assert np.median(scan.ct[scan.lungs == 5]) < -850  # air in the trachea
    assert scan.ct.max() > 700  # bone


def test_nodule_hu_by_kind() -> None:
    # centre HU of nodules of at least 8 mm (3+ voxels: no partial volume at the centre)
    solid = _scan(2, 0.0)
    assert len(solid.nodules) == 3 and all(n.kind == "solid" for n in solid.nodules)
    assert all(0 <= n.hu <= 100 for n in solid.nodules)
    large = [k for k, n in enumerate(solid.nodules) if n.diameter_mm >= 8]
    assert large
    for k in large:
        assert -60 <= _centre_hu(solid, k) <= 160
    nonsolid = _scan(3, 1.0)
    assert {n.kind for n in nonsolid.nodules} <= {"ground_glass", "part_solid"}
    assert all(-700 <= n.hu <= -300 for n in nonsolid.nodules)
    large = [k for k, n in enumerate(nonsolid.nodules) if n.diameter_mm >= 8]
    assert large and nonsolid.nodules[large[0]].kind == "ground_glass"
    for k in large:
        assert -760 <= _centre_hu(nonsolid, k) <= -240


def test_nodule_labels_follow_annotation_rows() -> None:
    scan = _scan(4, 0.18)
    for k, nod in enumerate(scan.nodules, start=1):
        assert nod.voxels == np.count_nonzero(scan.nodule_mask == k) > 0
        assert 3.0 <= nod.diameter_mm <= 32.0
    assert scan.nodule_mask.max() == len(scan.nodules)


def test_cli_writes_luna16_layout(tmp_path: Path) -> None:
    argv = ["--n-subsets", "2", "--per-subset", "1", "--seed", "7", "--spacing-mm", "5",
            "--slice-mm", "5", "--shape", "64", "64", "48",
            "--nodules-per-scan", "2", "3"]  # fmt: skip
    assert chest_ct_cli.main(["--out-dir", str(tmp_path / "a"), *argv]) == 0
    assert chest_ct_cli.main(["--out-dir", str(tmp_path / "b"), *argv]) == 0
    root = tmp_path / "a"
    scans = find_scans(root)
    assert sorted(s.subset for s in scans.values()) == [0, 1]
    table = read_annotations(root / "annotations.csv", scans)
    nodules = pd.read_csv(root / "nodules.csv", dtype={"seriesuid": str})
    assert table["seriesuid"].tolist() == nodules["seriesuid"].tolist()
    for uid, scan in scans.items():
        ct = read_mhd(scan.path)
        assert ct.GetPixelID() == sitk.sitkInt16
        mask = read_mhd(root / "nodule-masks" / f"{uid}.mhd")
        lungs = read_mhd(root / "seg-lungs-LUNA16" / f"{uid}.mhd")
        assert mask.GetPixelID() == lungs.GetPixelID() == sitk.sitkUInt8
        labels = sitk.GetArrayFromImage(mask)
        rows = table[table["seriesuid"] == uid]
        assert 2 <= len(rows) <= 3
        # the voxel at the k-th annotation's centre carries label k
        centres = world_to_voxel(ct, rows[["coordX", "coordY", "coordZ"]].to_numpy())
        for k, centre in zip(rows["object"], np.rint(centres).astype(int), strict=True):
            assert labels[tuple(centre)] == k
        raw = scan.path.with_suffix(".raw").read_bytes()
        assert (
            raw == (tmp_path / "b" / scan.path.relative_to(root)).with_suffix(".raw").read_bytes()
        )


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        chest_ct_cli.main(["--out-dir", str(tmp_path / "x"), "--per-subset", "1", "--seed", "0",
                           "--spacing-mm", "0", "--slice-mm", "5",
                           "--shape", "64", "64", "48"])  # fmt: skip
    assert not (tmp_path / "x").exists()
