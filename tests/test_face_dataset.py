"""Stage ``face-dataset``: crop geometry, splits, budgets, source set, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medrepro.io.errors import InputError
from medrepro.preprocessing.face_dataset import (
    Crop,
    budget_indices,
    crop_and_resize,
    crop_box,
    main,
    make_splits,
    map_points,
    network_input,
)

NAMES = ["ex_r", "ex_l", "pg"]
#: the known case: 40 x 30 image, landmarks (0-based); box 10 x 4, L = 1.6 * 10 = 16, centre
#: (15, 12) -> left/top edge (15.5 - 8, 12.5 - 8) = (7.5, 4.5); S = 32 -> 2 output px per px
KNOWN_POINTS = np.array([[10.0, 10.0], [20.0, 10.0], [15.0, 14.0]])
KNOWN_MAPPED = np.array([[5.5, 11.5], [25.5, 11.5], [15.5, 19.5]])  # (x - x0 + 0.5) * 2 - 0.5


def _write_pts(path: Path, points_xy: np.ndarray) -> None:
    """Tiny iBUG writer: 1-based coordinates."""
    lines = ["version: 1", f"n_points: {len(points_xy)}", "{"]
    lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in points_xy]
    path.write_text("\n".join([*lines, "}"]) + "\n")


def _make_target(root: Path, n: int = 10) -> Path:
    """``n`` cases: case00 is the known one (black, one white pixel at (15, 14)), case01 grey."""
    target = root / "target"
    target.mkdir()
    (target / "landmarks.json").write_text(json.dumps({"names": NAMES, "flip_pairs": [[0, 1]]}))
    rng = np.random.default_rng(1)
    for i in range(n):
        stem = f"case{i:02d}"
        if i == 0:
            rgb = np.zeros((30, 40, 3), np.uint8)
            rgb[14, 15] = 255
            Image.fromarray(rgb).save(target / f"{stem}.png")
            _write_pts(target / f"{stem}.pts", KNOWN_POINTS)
            continue
        h, w = 24 + 2 * i, 30 + 3 * i
        if i == 1:
            Image.fromarray(np.full((h, w), 200, np.uint8), mode="L").save(target / f"{stem}.bmp")
        else:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                target / f"{stem}.png"
            )
        pts = np.array([[w * 0.3, h * 0.4], [w * 0.7, h * 0.4], [w * 0.5, h * 0.8]])
        _write_pts(target / f"{stem}.pts", pts)
    return target


def _make_source(root: Path) -> Path:
    """Identities b (3 images), a (2), c (1, non-square 30 x 20 with bright side bands)."""
    source = root / "source"
    (source / "images").mkdir(parents=True)
    rows = []
    for ident, count in (("b", 3), ("a", 2), ("c", 1)):
        for j in range(count):
            name = f"images/{ident}_{j}.png"
            if ident == "c":
                img = np.full((20, 30, 3), 255, np.uint8)
                img[:, 5:25] = 100  # the centre square
            else:
                img = np.full((16, 16, 3), 10 * j, np.uint8)
            Image.fromarray(img).save(source / name)
            rows.append({"image": name, "identity": ident})
    pd.DataFrame(rows).to_csv(source / "identities.csv", index=False)
    return source


def _run(tmp_path: Path, target: Path, source: Path, out: str = "out", seed: int = 0) -> Path:
    out_dir = tmp_path / out
    argv = ["--target-dir", str(target), "--source-dir", str(source), "--image-size", "32",
            "--crop-margin", "1.6", "--test-fraction", "0.2", "--seed", str(seed),
            "--out-dir", str(out_dir)]  # fmt: skip
    assert main(argv) == 0
    return out_dir


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return _make_target(tmp_path), _make_source(tmp_path)


def test_network_input_known_values() -> None:
    images = np.zeros((1, 2, 3, 3), np.uint8)
    images[0, 0, 0] = (0, 255, 51)
    x = network_input(images)
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [-2.0, 2.0, (0.2 - 0.5) / 0.25], atol=1e-6)


def test_crop_maps_known_point_and_pixel() -> None:
    crop = crop_box(KNOWN_POINTS, 1.6)
    assert crop == Crop(7.5, 4.5, 16.0)
    np.testing.assert_allclose(map_points(KNOWN_POINTS, crop, 32), KNOWN_MAPPED, atol=1e-12)
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[14, 15] = 255
    out = crop_and_resize(rgb, crop, 32)[..., 0].astype(np.float64)
    rows, cols = np.indices(out.shape)
    centroid = (np.sum(cols * out) / out.sum(), np.sum(rows * out) / out.sum())
    np.testing.assert_allclose(centroid, KNOWN_MAPPED[2], atol=0.02)  # pixel (15, 14)


def test_crop_pads_with_zeros_outside_the_image() -> None:
    rgb = np.full((20, 20, 3), 255, np.uint8)
    crop = crop_box(np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 4.0]]), 1.6)  # x0 = y0 = -0.7
    out = crop_and_resize(rgb, crop, 32)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[16, 16].tolist() == [255, 255, 255]


def test_stage_outputs(tmp_path: Path, dirs: tuple[Path, Path], caplog) -> None:
    target, source = dirs
    _write_pts(target / "orphan.pts", KNOWN_POINTS)  # no image: ignored with a warning
    (target / "case02.json").write_text(json.dumps({"visible": [True, False, True]}))
    with caplog.at_level(logging.WARNING):
        out = _run(tmp_path, target, source)
    assert "orphan.pts" in caplog.text
    data = np.load(out / "dataset.npz")
    assert data["case_id"].tolist() == [f"case{i:02d}" for i in range(10)]
    assert data["images"].shape == (10, 32, 32, 3) and data["images"].dtype == np.uint8
    assert data["landmarks"].shape == (10, 3, 2)
    assert data["visible"][2].tolist() == [True, False, True] and data["visible"].sum() == 29
    np.testing.assert_allclose(data["landmarks"][0], KNOWN_MAPPED, atol=2e-3)  # .pts: 3 decimals
    assert data["scale"][0] == pytest.approx(0.5)
    assert data["landmark_names"].tolist() == NAMES
    assert data["flip_pairs"].tolist() == [[0, 1]]
    grey = data["images"][1].astype(int)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and grey[16, 16, 0] == 200
    splits = pd.read_csv(out / "splits.csv")
    assert splits.columns.tolist() == ["case_id", "split", "budget_rank"]
    assert (splits["split"] == "test").sum() == 2 and (splits["split"] == "train").sum() == 8
    train = splits[splits["split"] == "train"]
    assert sorted(train["budget_rank"]) == list(range(8))
    assert (splits.loc[splits["split"] == "test", "budget_rank"] == -1).all()
    inputs = np.load(out / "inputs_test.npz")
    test_ids = splits.loc[splits["split"] == "test", "case_id"].tolist()
    assert inputs["case_id"].tolist() == test_ids
    index = [data["case_id"].tolist().index(c) for c in test_ids]
    np.testing.assert_array_equal(inputs["inputs"], network_input(data["images"][index]))
    src = np.load(out / "source.npz")
    assert src["identity_names"].tolist() == ["a", "b", "c"]
    assert src["identity"].tolist() == [0, 0, 1, 1, 1, 2]  # rows sorted by image path
    assert src["split"].tolist() == ["train", "val", "train", "train", "val", "train"]
    assert src["images"].shape == (6, 32, 32, 3)
    assert (src["images"][5] == 100).all()  # c: centre square kept, side bands cut


def test_nested_budgets(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    splits = pd.read_csv(_run(tmp_path, *dirs) / "splits.csv", dtype=str)
    sets = [set(budget_indices(splits, b)) for b in (10, 25, 50, 100)]
    assert [len(s) for s in sets] == [1, 2, 4, 8]  # max(1, round(b / 100 * 8))
    assert sets[0] < sets[1] < sets[2] < sets[3]
    assert sets[3] == set(splits.loc[splits["split"] == "train", "case_id"])


def test_deterministic_for_a_seed(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    a, b = _run(tmp_path, *dirs, out="a"), _run(tmp_path, *dirs, out="b")
    c = _run(tmp_path, *dirs, out="c", seed=1)
    assert (a / "splits.csv").read_text() == (b / "splits.csv").read_text()
    assert (a / "splits.csv").read_text() != (c / "splits.csv").read_text()
    for name in ("dataset.npz", "source.npz", "inputs_test.npz"):
        x, y = np.load(a / name), np.load(b / name)
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key])


def test_make_splits_counts() -> None:
    splits = make_splits([f"c{i}" for i in range(5)], 0.2, seed=3)
    assert splits["split"].tolist().count("test") == 1


@pytest.mark.parametrize(
    ("damage", "culprit", "words"),
    [
        ("missing_pts", "case03.png", "no landmark file case03.pts"),
        ("wrong_count", "case03.pts", "2 points, landmarks.json has 3"),
        ("outside", "case03.pts", "point 1 at"),
        ("no_spec", "landmarks.json", "file not found"),
        ("unreadable", "case03.png", "unreadable image"),
    ],
)
def test_bad_input_names_file_and_writes_nothing(
    tmp_path: Path, dirs: tuple[Path, Path], damage: str, culprit: str, words: str
) -> None:
    target, source = dirs
    if damage == "missing_pts":
        (target / "case03.pts").unlink()
    elif damage == "wrong_count":
        _write_pts(target / "case03.pts", KNOWN_POINTS[:2])
    elif damage == "outside":
        _write_pts(target / "case03.pts", np.array([[5.0, 5.0], [39.0, 5.0], [8.0, 9.0]]))
    elif damage == "no_spec":
        (target / "landmarks.json").unlink()
    else:
        (target / "case03.png").write_bytes(b"not an image")
    with pytest.raises(InputError) as err:
        _run(tmp_path, target, source)
    assert err.value.path.name == culprit
    assert words in str(err.value)
    if damage == "outside":  # case03 is 39 x 30: x = 39 is one past the last column (38)
        assert "39.000" in str(err.value) and "0 <= x <= 38" in str(err.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
