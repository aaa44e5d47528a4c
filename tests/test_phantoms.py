"""Tests for the synthetic head CT phantom (medrepro.phantoms.head_ct) and its CLI stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medrepro.io.images import image_to_array, read_image
from medrepro.io.markups import read_markups
from medrepro.phantoms import head_ct_cli
from medrepro.phantoms.head_ct import (
    LANDMARKS,
    PRIORS_MM,
    HeadParams,
    canonical_landmarks,
    canonical_pose,
    generate_cohort,
    post_operative,
    render_head_ct,
    sample_head,
)

SPACING = 3.0
SEEDS = (0, 1, 2)


def _head(seed: int) -> HeadParams:
    return sample_head(np.random.default_rng(seed))


def _render(params: HeadParams, spacing: float = SPACING, **kwargs: object) -> tuple:
    return render_head_ct(params, spacing_mm=spacing, rng=np.random.default_rng(0), **kwargs)


def _sample(img: sitk.Image, point: np.ndarray) -> float:
    """Trilinear HU at a physical point (mm)."""
    arr = image_to_array(img).astype(np.float32)
    idx = np.asarray(img.TransformPhysicalPointToContinuousIndex(tuple(map(float, point))))
    return float(ndimage.map_coordinates(arr, idx.reshape(3, 1), order=1)[0])


def _distances(lm: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        "Po-Po": float(np.linalg.norm(lm["Po-L"] - lm["Po-R"])),
        "Or-Or": float(np.linalg.norm(lm["Or-L"] - lm["Or-R"])),
        "Po-Or AP L": float(lm["Po-L"][1] - lm["Or-L"][1]),
        "Po-Or AP R": float(lm["Po-R"][1] - lm["Or-R"][1]),
    }


def test_priors_hold_for_many_heads() -> None:
    rng = np.random.default_rng(123)
    for _ in range(300):
        params = sample_head(rng)
        for head in (params, post_operative(params, rng)):
            lm = canonical_landmarks(head)
            for name, value in _distances(lm).items():
                lo, hi = PRIORS_MM[name[:8]]
                assert lo <= value <= hi, (name, value)
            assert abs(lm["Or-L"][2] - lm["Po-L"][2]) < 10.0  # Frankfort horizontal


@pytest.mark.parametrize("seed", SEEDS)
def test_hu_ranges(seed: int) -> None:
    params = _head(seed)
    img, lm = _render(canonical_pose(params))
    arr = image_to_array(img)
    assert img.GetPixelID() == sitk.sitkInt16
    assert arr[:3, :3, -3:].mean() < -900  # air outside the head (top corner)
    assert arr.max() > 1000  # cortical bone
    head = canonical_landmarks(params)
    po = (head["Po-L"] + head["Po-R"]) / 2
    centre = np.array([0.0, po[1] + 35.0, po[2] + 30.0])  # a brain point in the head frame
    offset = np.mean(list(lm.values()), axis=0) - np.mean(list(head.values()), axis=0)
    idx = np.round(img.TransformPhysicalPointToContinuousIndex(tuple(centre + offset))).astype(int)
    block = arr[idx[0] - 3 : idx[0] + 4, idx[1] - 3 : idx[1] + 4, idx[2] - 3 : idx[2] + 4]
    assert 20.0 <= block.mean() <= 50.0


@pytest.mark.parametrize("seed", SEEDS)
def test_landmarks_inside_central_box(seed: int) -> None:
    params = _head(seed)
    for head in (params, post_operative(params, np.random.default_rng(seed))):
        img, lm = _render(head, orientation="RAS" if seed == 1 else "LPS")
        size = np.asarray(img.GetSize())
        centre = np.asarray(img.TransformContinuousIndexToPhysicalPoint((size - 1) / 2))
        for label in LANDMARKS:
            index = np.asarray(img.TransformPhysicalPointToContinuousIndex(tuple(lm[label])))
            assert np.all(index >= 0) and np.all(index <= size - 1), label
            assert np.all(np.abs(lm[label] - centre) <= [80.0, 80.0, 49.5]), label


def test_rendered_landmarks_follow_pose() -> None:
    params = _head(4)
    _, posed = _render(params)
    _, canonical = _render(canonical_pose(params))
    head = canonical_landmarks(params)
    for label in LANDMARKS:
        np.testing.assert_allclose(canonical[label], head[label])
    for a in LANDMARKS:  # rigid: distances are preserved
        for b in LANDMARKS:
            assert np.linalg.norm(posed[a] - posed[b]) == pytest.approx(
                np.linalg.norm(canonical[a] - canonical[b])
            )
    assert not np.allclose(posed["Or-L"], canonical["Or-L"])


@pytest.mark.parametrize("seed", SEEDS)
def test_anatomy_at_orbitale(seed: int) -> None:
    params = _head(seed)
    img, lm = _render(canonical_pose(params))
    up = np.array([0.0, 0.0, 1.0])
    for side in "LR":
        orbitale = lm[f"Or-{side}"]
        assert _sample(img, orbitale - 4.0 * up) > 300.0  # the inferior rim (bone)
        assert _sample(img, orbitale + 6.0 * up) < 150.0  # the orbit (fat, eye), not bone
        assert _sample(img, orbitale - [0.0, 8.0, -6.0]) < 100.0  # open in front (no bone)


@pytest.mark.parametrize("seed", SEEDS)
def test_anatomy_at_porion(seed: int) -> None:
    params = _head(seed)
    img, lm = _render(canonical_pose(params))
    r = params.canal_radius_mm
    for side, sign in (("L", 1.0), ("R", -1.0)):
        porion = lm[f"Po-{side}"]
        medial, up = np.array([-sign, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
        assert _sample(img, porion + 4.0 * medial - r * up) < -300.0  # canal air below porion
        assert _sample(img, porion + 4.0 * medial + 4.0 * up) > 300.0  # temporal bone above
        assert _sample(img, porion - 4.0 * medial + 4.0 * up) < 200.0  # outside the opening
        assert _sample(img, porion - 8.0 * medial - r * up) < -300.0  # canal opens outwards


@pytest.mark.parametrize("orientation", ["RAS", "PIR", "LAS"])
def test_orientation_keeps_anatomy(orientation: str) -> None:
    params = _head(5)
    ref, lm_ref = _render(params)
    img, lm = _render(params, orientation=orientation)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())
    assert code == orientation
    assert sorted(img.GetSize()) == sorted(ref.GetSize())
    for label in LANDMARKS:
        np.testing.assert_allclose(lm[label], lm_ref[label])
        for offset in ([0, 0, 0], [0, 0, -4], [3, 2, 5]):
            point = tuple(map(float, lm[label] + offset))
            assert img[img.TransformPhysicalPointToIndex(point)] == pytest.approx(
                ref[ref.TransformPhysicalPointToIndex(point)]
            )
    np.testing.assert_array_equal(image_to_array(sitk.DICOMOrient(img, "LPS")), image_to_array(ref))


def test_bad_orientation() -> None:
    with pytest.raises(ValueError, match="orientation"):
        _render(_head(0), orientation="LPX")


def test_post_operative_differs() -> None:
    rng = np.random.default_rng(9)
    pre = sample_head(rng)
    post = post_operative(pre, rng)
    assert post.plates and not pre.plates
    shift_pre = np.abs(np.asarray(pre.shift_mm)).sum()
    shift_post = np.abs(np.asarray(post.shift_mm)).sum()
    assert 0 < shift_post < shift_pre  # deformity partly corrected
    assert post.hu == pre.hu and post.skull_semi_axes_mm == pre.skull_semi_axes_mm
    img, _ = _render(canonical_pose(post), spacing=1.5, fov_mm=(160.0, 160.0, 100.0))
    assert image_to_array(img).max() > 2000  # metal


def test_cohort_is_deterministic(tmp_path: Path) -> None:
    kwargs = {"n_patients": 2, "spacing_mm": 5.0, "seed": 11}
    table = generate_cohort(tmp_path / "a", **kwargs)
    generate_cohort(tmp_path / "b", **kwargs)
    assert list(table.columns) == ["case_id", "patient_id", "timepoint", "image", "landmarks"]
    assert list(table.case_id) == ["P000_pre", "P000_post", "P001_pre", "P001_post"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "cases.csv"), table)
    codes = set()
    for row in table.itertuples():
        img_a = read_image(tmp_path / "a" / row.image, pixel_type=sitk.sitkInt16)
        img_b = read_image(tmp_path / "b" / row.image, pixel_type=sitk.sitkInt16)
        np.testing.assert_array_equal(image_to_array(img_a), image_to_array(img_b))
        assert img_a.GetDirection() == img_b.GetDirection()
        lm_a = read_markups(tmp_path / "a" / row.landmarks, LANDMARKS)
        lm_b = read_markups(tmp_path / "b" / row.landmarks, LANDMARKS)
        for label in LANDMARKS:
            np.testing.assert_array_equal(lm_a[label], lm_b[label])
        codes.add(
            sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img_a.GetDirection())
        )
    assert "LPS" in codes and len(codes) >= 2
    pre = read_markups(tmp_path / "a" / "P000_pre.mrk.json", LANDMARKS)
    post = read_markups(tmp_path / "a" / "P000_post.mrk.json", LANDMARKS)
    assert not np.allclose(pre["Or-L"], post["Or-L"])
    other = generate_cohort(tmp_path / "c", n_patients=1, spacing_mm=5.0, seed=12)
    assert len(other) == 2
    first = read_markups(tmp_path / "c" / "P000_pre.mrk.json", LANDMARKS)
    assert not np.allclose(first["Po-L"], pre["Po-L"])


def test_cli_writes_cohort(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    argv = ["--out-dir", str(out), "--n-patients", "1", "--spacing-mm", "6", "--seed", "3"]
    assert head_ct_cli.main([*argv, "--fov-mm", "180", "180", "120"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "P000_post.mrk.json",
        "P000_post.nii.gz",
        "P000_pre.mrk.json",
        "P000_pre.nii.gz",
        "cases.csv",
    ]
    assert read_image(out / "P000_pre.nii.gz").GetSize()[0] in (20, 30)


def test_cli_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(out_dir: Path, **kwargs: object) -> None:
        (Path(out_dir) / "P000_pre.nii.gz").write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(head_ct_cli, "generate_cohort", boom)
    out = tmp_path / "cohort"
    with pytest.raises(RuntimeError):
        head_ct_cli.main(
            ["--out-dir", str(out), "--n-patients", "1", "--spacing-mm", "6", "--seed", "0"]
        )
    assert list(tmp_path.iterdir()) == []
