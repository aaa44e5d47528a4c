"""Tests for the transcerebellar fetal ultrasound phantom (medrepro.phantoms.fetal_us) and its CLI."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from medrepro.io.bmp_mat import read_bmp, read_mask_mat
from medrepro.phantoms import fetal_us_cli
from medrepro.phantoms.fetal_us import (
    ECHO_DB,
    IMAGE_COLUMNS,
    TRUTH_COLUMNS,
    cerebellum_mask_mm,
    echogenicity_db,
    generate_cohort,
    has_cerebellum,
    head_semi_axes,
    render_slice,
    render_volume,
    sample_volume,
    scan_geometry,
)
from medrepro.transforms.yolo_boxes import box_to_pixels, mask_to_box

H, W = 176, 256


def _volume(k: int, seed: int = 0, n_slices: int = 15):
    rng = np.random.default_rng([seed, k])
    return sample_volume(rng, height=H, width=W, n_slices=n_slices), rng


def _perimeter(a: float, b: float) -> float:
    value, _ = integrate.quad(
        lambda t: math.hypot(a * math.sin(t), b * math.cos(t)), 0, 2 * math.pi
    )
    return value


@pytest.mark.parametrize("hc, ratio", [(175.0, 0.75), (280.0, 0.8), (230.0, 0.78)])
def test_head_axes_give_the_circumference(hc: float, ratio: float) -> None:
    a, b = head_semi_axes(hc, ratio)
    assert b / a == pytest.approx(ratio)
    assert _perimeter(a, b) == pytest.approx(hc, rel=1e-4)


def test_sampled_anatomy_follows_gestational_age() -> None:
    rng = np.random.default_rng(7)
    params = [sample_volume(rng) for _ in range(400)]
    ga = np.array([p.ga_weeks for p in params])
    hc = np.array([p.hc_mm for p in params])
    tcd = np.array([p.tcd_mm for p in params])
    assert ga.min() >= 18 and ga.max() <= 34
    # HC ~ 175 mm at 20 weeks, ~ 280 mm at 30 weeks (+-4 %)
    assert np.all(np.abs(hc / (175 + 10.5 * (ga - 20)) - 1) <= 0.04 + 1e-9)
    assert np.abs(tcd - ga).mean() < 1.2  # TCD (mm) ~ GA (weeks)
    for p in params:
        a, b = p.semi_axes_mm
        assert 0.75 <= b / a <= 0.8
        assert 2.0 <= p.skull_mm <= 3.0 and 2.0 <= p.cisterna_mm <= 10.0
        assert 60.0 <= 2 * p.half_opening_deg <= 75.0
        assert 50.0 <= p.dynamic_range_db <= 60.0
        # the head fits the image: OFD within the width, BPD within the height
        assert 2 * a / p.pixel_mm < 0.86 * W and 2 * b / p.pixel_mm <= 0.92 * H + 1e-6


def test_empty_masks_are_rare_but_occur() -> None:
    rng = np.random.default_rng(11)
    flags = [
        has_cerebellum(p, w)
        for p in (sample_volume(rng) for _ in range(1000))
        for w in p.slice_offsets_mm
    ]
    empty = 1.0 - np.mean(flags)
    assert 0.002 < empty < 0.05
    # only the outermost slices miss: the central one always has it
    rng = np.random.default_rng(12)
    for p in (sample_volume(rng) for _ in range(200)):
        assert has_cerebellum(p, p.slice_offsets_mm[7])


def test_central_slice_cerebellum_size_position_and_contrast() -> None:
    for k in range(3):
        params, rng = _volume(k)
        geometry = scan_geometry(params, H, W)
        image, mask = render_slice(params, params.slice_offsets_mm[7], rng, geometry)
        assert image.shape == mask.shape == (H, W)
        assert image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 1}
        box = mask_to_box(mask)
        assert box is not None
        cx, cy, w, h = box
        assert cx > 0.6, "the cerebellum is on the right"
        assert 0.2 < cy < 0.8
        # the box's height is the transverse cerebellar diameter (midline tilt <= 10 deg)
        x0, y0, x1, y1 = box_to_pixels(box, H, W)
        tcd_px = params.tcd_mm / params.pixel_mm
        assert 0.9 * tcd_px <= y1 - y0 <= 1.1 * tcd_px + 2
        assert w < h  # taller than wide: TCD runs across the midline
        # rendered contrast: hypoechoic hemispheres < brain < echogenic skull; black outside
        labels, skull = echogenicity_db(
            geometry.pixel_u_mm, geometry.pixel_v_mm, params.slice_offsets_mm[7], params
        )
        seen = geometry.inside
        hemisphere = image[(labels == ECHO_DB["hemisphere"]) & seen].mean()
        brain = image[(labels == ECHO_DB["brain"]) & seen].mean()
        assert hemisphere + 10 < brain < image[skull & seen].mean() - 30
        assert image[~geometry.inside].max() == 0
        assert image[0, 0] == image[0, -1] == 0


def test_section_shrinks_towards_the_ends() -> None:
    params, rng = _volume(1)
    _, masks = render_volume(params, rng, height=H, width=W)
    areas = masks.reshape(len(masks), -1).sum(axis=1).astype(np.int64)
    centre = int(np.argmax(areas))
    assert 4 <= centre <= 10
    assert np.all(np.diff(areas[: centre + 1]) >= 0)
    assert np.all(np.diff(areas[centre:]) <= 0)
    assert areas[0] < 0.6 * areas[centre] and areas[-1] < 0.6 * areas[centre]


def test_echogenicity_known_points() -> None:
    params, _ = _volume(2)
    a, b = params.semi_axes_mm
    t = params.tcd_mm
    a_in = a - params.skull_mm
    u = np.array([0.0, a - params.skull_mm / 2, 0.0, -0.4 * a_in, a + 20.0], dtype=np.float32)
    v = np.array([0.45 * b, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    echo, skull = echogenicity_db(u, v, 0.0, params)
    assert echo[0] == pytest.approx(ECHO_DB["brain"])  # parenchyma between thalamus and skull
    assert skull[1] and echo[1] == ECHO_DB["skull"]  # occipital bone on the midline
    assert echo[3] == ECHO_DB["fluid"]  # centre of the cavum septi pellucidi
    assert echo[4] == ECHO_DB["fluid"]  # amniotic fluid beyond the occiput
    assert not skull[[0, 2, 3, 4]].any()
    # cerebellum: its transverse extent at the central section is the TCD
    v_line = np.linspace(-t, t, 4001, dtype=np.float32)
    inside = np.zeros(v_line.shape, dtype=bool)
    for u0 in np.linspace(a_in - params.cisterna_mm - 0.5 * t, a_in - params.cisterna_mm, 200):
        inside |= cerebellum_mask_mm(np.full_like(v_line, u0), v_line, 0.0, params)
    extent = v_line[inside].max() - v_line[inside].min()
    assert extent == pytest.approx(t, rel=0.02)
    # nothing of the cerebellum in the cisterna magna (behind it, in front of the occiput)
    assert not cerebellum_mask_mm(np.array([a_in - 0.5]), np.array([0.0]), 0.0, params).any()


def test_generate_cohort_layout(tmp_path: Path) -> None:
    truth = generate_cohort(
        tmp_path, n_volumes=2, slices_per_volume=4, height=96, width=128, seed=5
    )
    table = pd.read_csv(tmp_path / "images.csv")
    assert tuple(table.columns) == IMAGE_COLUMNS
    assert tuple(truth.columns) == TRUTH_COLUMNS
    assert pd.read_csv(tmp_path / "phantom_truth.csv").shape == (8, len(TRUTH_COLUMNS))
    assert table["image_id"].tolist() == [f"V{v:02d}_{s:02d}" for v in range(2) for s in range(4)]
    assert table["volume_id"].tolist() == ["V00"] * 4 + ["V01"] * 4
    for row, has in zip(table.itertuples(), truth["has_cerebellum"], strict=True):
        assert row.image == f"images/{row.image_id}.bmp" and row.mask == f"masks/{row.image_id}.mat"
        image = read_bmp(tmp_path / row.image)
        mask = read_mask_mat(tmp_path / row.mask)
        assert image.shape == mask.shape == (96, 128)
        assert bool(mask.any()) == has
    assert (truth["pixel_mm"] > 0).all() and truth["ga_weeks"].between(18, 34).all()


def test_cohort_is_deterministic(tmp_path: Path) -> None:
    kwargs = {"slices_per_volume": 3, "height": 64, "width": 96}
    generate_cohort(tmp_path / "a", n_volumes=2, seed=9, **kwargs)
    generate_cohort(tmp_path / "b", n_volumes=2, seed=9, **kwargs)
    generate_cohort(tmp_path / "c", n_volumes=1, seed=9, **kwargs)
    generate_cohort(tmp_path / "d", n_volumes=1, seed=10, **kwargs)
    for name in ("V00_00", "V01_02"):
        assert np.array_equal(
            read_bmp(tmp_path / "a" / "images" / f"{name}.bmp"),
            read_bmp(tmp_path / "b" / "images" / f"{name}.bmp"),
        )
    # volume k depends on (seed, k) only, not on the number of volumes
    first = read_bmp(tmp_path / "a" / "images" / "V00_01.bmp")
    assert np.array_equal(first, read_bmp(tmp_path / "c" / "images" / "V00_01.bmp"))
    assert not np.array_equal(first, read_bmp(tmp_path / "d" / "images" / "V00_01.bmp"))


def test_timing_budget() -> None:
    params, rng = _volume(4, n_slices=6)
    render_volume(params, rng, height=H, width=W)  # warm-up
    start = time.perf_counter()
    images, _ = render_volume(params, rng, height=H, width=W)
    per_image = (time.perf_counter() - start) / len(images)
    assert per_image < 0.1, f"{per_image * 1000:.0f} ms per image"


def test_cli_writes_directory_atomically(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    argv = ["--out-dir", str(out), "--n-volumes", "1", "--slices", "2", "--height", "48"]
    assert fetal_us_cli.main([*argv, "--width", "64", "--seed", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "images",
        "images.csv",
        "masks",
        "phantom_truth.csv",
    ]
    assert read_bmp(out / "images" / "V00_01.bmp").shape == (48, 64)
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]  # no temporary left
    with pytest.raises(SystemExit):
        fetal_us_cli.main(["--out-dir", str(out), "--n-volumes", "0", "--seed", "1"])
