"""Tests for the synthetic faces (medrepro.phantoms.face) and the face-phantoms stage."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medrepro.io.pts import read_pts, read_visibility
from medrepro.phantoms import face, face_cli
from medrepro.phantoms.face import (
    FACE_LANDMARKS,
    FLIP_PAIRS,
    FaceView,
    render_face,
    render_view,
    sample_identity,
)

IDX = {name: i for i, name in enumerate(FACE_LANDMARKS)}
FRONTAL = FaceView()  # no noise, no blur, centred, perspective camera at 900 mm


def _identity(seed: int = 0):
    return sample_identity(np.random.default_rng(seed), f"id{seed}")


def test_names_and_pairs_follow_the_docs() -> None:
    assert FACE_LANDMARKS[:4] == ("ex_r", "en_r", "en_l", "ex_l") and len(FACE_LANDMARKS) == 12
    assert FACE_LANDMARKS[9:] == ("ch_r", "ch_l", "pg")
    assert FLIP_PAIRS == ((0, 3), (1, 2), (9, 10))


def test_deterministic_for_a_seed() -> None:
    a = render_face(_identity(3), np.random.default_rng(7), 64)
    b = render_face(_identity(3), np.random.default_rng(7), 64)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = render_face(_identity(3), np.random.default_rng(8), 64)
    assert not np.array_equal(a[0], c[0])


def test_outputs_and_landmarks_inside_the_image() -> None:
    rng = np.random.default_rng(1)
    for k in range(6):
        image, lm, vis = render_face(_identity(k), rng, 64)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert lm.shape == (12, 2) and lm.dtype == np.float64 and vis.dtype == bool
        assert (lm > 0).all() and (lm < 63).all()
        # framed: bbox centred, its longer side about 1 / 1.6 of the image (+- jitter)
        side = (lm.max(0) - lm.min(0)).max()
        assert 64 / 1.6 * 0.9 < side < 64 / 1.6 * 1.1
        assert np.abs((lm.max(0) + lm.min(0)) / 2 - 31.5).max() < 0.05 * 64


def test_frontal_geometry_is_anatomical() -> None:
    for seed in range(3):
        _, lm, vis, _ = render_view(_identity(seed), FRONTAL, 96)
        x, y = lm[:, 0], lm[:, 1]
        assert x[IDX["ex_r"]] < x[IDX["en_r"]] < x[IDX["en_l"]] < x[IDX["ex_l"]]
        chain = ["prn", "sn", "ls", "sto", "li", "pg"]
        assert all(y[IDX[a]] < y[IDX[b]] for a, b in zip(chain, chain[1:], strict=False))
        assert x[IDX["ch_r"]] < x[IDX["sto"]] < x[IDX["ch_l"]]
        assert max(y[IDX["en_r"]], y[IDX["ex_r"]]) < y[IDX["prn"]]
        assert abs(x[IDX["prn"]] - 47.5) < 1.0  # midline at the image centre
        assert vis.all()


def test_pfl_in_pixels_is_identity_pfl_times_scale() -> None:
    ident = _identity(4)
    ortho = dataclasses.replace(FRONTAL, camera_distance=None)
    _, lm, _, cam = render_view(ident, ortho, 128)
    for a, b in (("en_r", "ex_r"), ("en_l", "ex_l")):
        pfl_px = np.linalg.norm(lm[IDX[a]] - lm[IDX[b]])
        assert pfl_px == pytest.approx(ident.pfl * cam.focal, rel=1e-9)
    en_en = np.linalg.norm(lm[IDX["en_r"]] - lm[IDX["en_l"]])
    assert en_en == pytest.approx(ident.en_en * cam.focal, rel=1e-9)
    # perspective: the local scale f d / (d - Z) at the eyes' mean depth Z (camera frame)
    _, lm_p, _, cam_p = render_view(ident, FRONTAL, 128)
    xyz = face._scene(ident, FRONTAL, 128).landmarks_xyz
    depth = face._to_camera(cam_p.rotation, cam_p.pivot, xyz[:2])[:, 2].mean()
    local = cam_p.focal * cam_p.distance / (cam_p.distance - depth)
    ratio = np.linalg.norm(lm_p[0] - lm_p[1]) / (ident.pfl * local)
    assert 0.95 < ratio < 1.01 and local > 1.05 * cam_p.focal  # ex is behind en: a bit shorter


def test_landmark_pixels_see_the_landmark_points() -> None:
    """The ray through each visible landmark's pixel hits the surface at that landmark."""
    ident = _identity(5)
    view = FaceView(yaw_deg=20.0, pitch_deg=-8.0, roll_deg=6.0, mouth_open=5.0, smile=0.5)
    scene = face._scene(ident, view, 96)
    uv = face.project(scene.camera, scene.landmarks_xyz)
    origin, direction = face._rays(scene.camera, uv[:, 0], uv[:, 1])
    hit, points = face._cast(scene.grid, origin, direction, scene.box, face._STEP_MM)
    vis = face._visible(scene.grid, scene.camera, scene.landmarks_xyz, scene.box[1])
    assert vis.sum() >= 10
    assert hit[vis].all()
    err = np.linalg.norm(points[vis] - scene.landmarks_xyz[vis], axis=1)
    assert err.max() < 0.1  # mm


def test_visibility_nose_hides_subnasale_from_above() -> None:
    ident = _identity(6)
    _, _, vis_down, _ = render_view(ident, FaceView(pitch_deg=30.0), 64)
    _, _, vis_up, _ = render_view(ident, FaceView(pitch_deg=-15.0), 64)
    assert not vis_down[IDX["sn"]] and vis_up[IDX["sn"]]


def test_flip_with_swapped_pairs_is_the_mirrored_view() -> None:
    ident = _identity(7)
    size = 96
    image, lm, vis, _ = render_view(ident, FaceView(yaw_deg=20.0, roll_deg=8.0), size)
    _, lm_m, vis_m, _ = render_view(ident, FaceView(yaw_deg=-20.0, roll_deg=-8.0), size)
    flipped = lm.copy()
    flipped[:, 0] = size - 1 - flipped[:, 0]
    order = np.arange(12)
    for i, j in FLIP_PAIRS:
        order[i], order[j] = j, i
    flipped, vis_f = flipped[order], vis[order]
    x = flipped[:, 0]
    assert x[IDX["ex_r"]] < x[IDX["en_r"]] < x[IDX["en_l"]] < x[IDX["ex_l"]]
    assert x[IDX["ch_r"]] < x[IDX["ch_l"]]
    np.testing.assert_allclose(flipped, lm_m, atol=0.02)
    np.testing.assert_array_equal(vis_f, vis_m)
    assert image[:, ::-1].shape == image.shape


def test_identities_differ_and_follow_the_priors() -> None:
    a, _, _, _ = render_view(_identity(10), FRONTAL, 64)
    b, _, _, _ = render_view(_identity(11), FRONTAL, 64)
    a2, _, _, _ = render_view(_identity(10), FRONTAL, 64)
    np.testing.assert_array_equal(a, a2)
    assert np.abs(a.astype(float) - b.astype(float)).mean() > 5.0
    rng = np.random.default_rng(0)
    ids = [sample_identity(rng) for _ in range(300)]
    en_en = np.array([p.en_en for p in ids])
    ex_ex = np.array([p.en_en + 2 * p.pfl * math.cos(math.radians(p.eye_slant_deg)) for p in ids])
    assert en_en.min() >= 30 and en_en.max() <= 35
    assert 86 < ex_ex.mean() < 91 and np.percentile(ex_ex, 5) > 81 and np.percentile(ex_ex, 95) < 96
    assert all(32 <= p.alar_width <= 38 and 48 <= p.mouth_width <= 55 for p in ids)
    assert all(110 <= p.n_gn <= 125 for p in ids)
    assert np.std([p.skin_rgb[0] for p in ids]) > 0.05


def _run_cli(out: Path, seed: int = 3) -> None:
    argv = [
        "--out-dir", str(out), "--n-source-identities", "2", "--images-per-identity", "2",
        "--n-target", "3", "--image-size", "48", "--max-yaw-deg", "30", "--max-pitch-deg", "15",
        "--max-roll-deg", "15", "--seed", str(seed),
    ]  # fmt: skip
    assert face_cli.main(argv) == 0


def test_cli_writes_the_layout(tmp_path: Path) -> None:
    out = tmp_path / "faces"
    _run_cli(out)
    src = pd.read_csv(out / "source/identities.csv", dtype=str)
    assert list(src.columns) == ["image", "identity"] and len(src) == 4
    assert set(src["identity"]) == {"s0000", "s0001"}
    for rel in src["image"]:
        assert np.asarray(Image.open(out / "source" / rel)).shape == (48, 48, 3)
    tgt = out / "target"
    meta = json.loads((tgt / "landmarks.json").read_text())
    assert meta == {"names": list(FACE_LANDMARKS), "flip_pairs": [[0, 3], [1, 2], [9, 10]]}
    ids = pd.read_csv(tgt / "identities.csv", dtype=str)
    assert list(ids.columns) == ["stem", "identity"] and len(ids) == 3
    assert not set(ids["identity"]) & set(src["identity"])
    for i, stem in enumerate(ids["stem"]):
        image = np.asarray(Image.open(tgt / f"{stem}.png"))
        ident = sample_identity(face_cli._rng(3, face_cli._TARGET, i), f"t{i:04d}")
        ref_img, ref_lm, ref_vis = render_face(ident, face_cli._rng(3, face_cli._TARGET, i, 1), 48)
        np.testing.assert_array_equal(image, ref_img)
        np.testing.assert_allclose(read_pts(tgt / f"{stem}.pts"), ref_lm, atol=1e-3)
        np.testing.assert_array_equal(read_visibility(tgt / f"{stem}.pts", 12), ref_vis)


def test_cli_is_deterministic_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_cli(tmp_path / "a")
    _run_cli(tmp_path / "b")
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 4 + 1 + 3 * 3 + 2
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(face_cli, "write_target", boom)
    with pytest.raises(RuntimeError):
        _run_cli(tmp_path / "c")
    assert not (tmp_path / "c" / "source").exists() and not (tmp_path / "c" / "target").exists()
