"""Tests for mask -> YOLO boxes, BMP/MAT I/O, viridis, and the stages yolo-annotate / yolo-dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from matplotlib import colormaps
from PIL import Image

from medrepro.io.bmp_mat import read_bmp, read_mask_mat, write_bmp, write_mask_mat
from medrepro.io.errors import InputError
from medrepro.preprocessing import yolo_annotations, yolo_dataset
from medrepro.preprocessing.yolo_annotations import split_by_volume, split_random
from medrepro.preprocessing.yolo_dataset import assign_validation, resize_gray, union_box
from medrepro.transforms.colormap import gray_to_viridis
from medrepro.transforms.yolo_boxes import (
    box_to_pixels,
    mask_to_box,
    n_components,
    read_yolo_txt,
    yolo_line,
)

# --------------------------------------------------------------------------- mask -> box


def test_rectangle_gives_exact_box() -> None:
    mask = np.zeros((10, 20), np.uint8)
    mask[2:6, 4:12] = 1  # rows 2..5, columns 4..11
    assert mask_to_box(mask) == pytest.approx((8 / 20, 4 / 10, 8 / 20, 4 / 10))
    assert box_to_pixels(mask_to_box(mask), 10, 20) == pytest.approx((4, 2, 12, 6))


def test_single_pixel_box_is_one_pixel() -> None:
    mask = np.zeros((8, 16), bool)
    mask[3, 5] = True
    assert mask_to_box(mask) == pytest.approx((5.5 / 16, 3.5 / 8, 1 / 16, 1 / 8))
    assert n_components(mask) == 1


def test_two_components_give_union_box() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:5, 2:5] = 1
    mask[10:12, 14:18] = 1
    assert n_components(mask) == 2
    x0, y0, x1, y1 = box_to_pixels(mask_to_box(mask), 20, 20)
    assert (x0, y0, x1, y1) == pytest.approx((2, 2, 18, 12))


def test_diagonal_pixels_are_one_component_with_8_connectivity() -> None:
    mask = np.eye(5, dtype=np.uint8)
    assert n_components(mask) == 1
    mask[0, 4] = 1
    assert n_components(mask) == 2


def test_box_touching_the_border_reaches_one() -> None:
    mask = np.zeros((6, 9), np.uint8)
    mask[3:, 7:] = 1
    cx, cy, w, h = mask_to_box(mask)
    assert cx + w / 2 == pytest.approx(1.0) and cy + h / 2 == pytest.approx(1.0)
    mask[:] = 1
    assert mask_to_box(mask) == pytest.approx((0.5, 0.5, 1.0, 1.0))


def test_empty_mask_has_no_box() -> None:
    mask = np.zeros((5, 7), np.uint8)
    assert mask_to_box(mask) is None
    assert n_components(mask) == 0
    with pytest.raises(ValueError):
        mask_to_box(np.zeros((2, 3, 4)))


def test_yolo_txt_round_trip(tmp_path: Path) -> None:
    box = (0.123456789, 0.5, 0.25, 1.0)
    line = yolo_line(box)
    assert line == "0 0.123457 0.500000 0.250000 1.000000"
    path = tmp_path / "a.txt"
    path.write_text(line + "\n" + yolo_line((0.5, 0.5, 0.1, 0.2), cls=0) + "\n\n")
    entries = read_yolo_txt(path)
    assert [c for c, _ in entries] == [0, 0]
    assert entries[0][1] == pytest.approx(box, abs=5e-7)
    (tmp_path / "empty.txt").write_text("")
    assert read_yolo_txt(tmp_path / "empty.txt") == []


@pytest.mark.parametrize(
    "text",
    ["0 0.5 0.5 0.2", "0 0.5 0.5 0.2 x", "0 1.5 0.5 0.2 0.2", "0 0.5 0.5 0 0.2", "a b c d e"],
)
def test_bad_yolo_lines_name_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n" + text + "\n")
    with pytest.raises(InputError, match="bad.txt.*line 2"):
        read_yolo_txt(path)


def test_union_box_of_two_boxes() -> None:
    assert union_box([(0.2, 0.2, 0.2, 0.2), (0.7, 0.5, 0.2, 0.4)]) == pytest.approx(
        (0.45, 0.4, 0.7, 0.6)
    )


# --------------------------------------------------------------------------- BMP / MAT / viridis


def test_bmp_round_trip(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(7, 13), dtype=np.uint8)
    write_bmp(tmp_path / "a.bmp", img)
    with Image.open(tmp_path / "a.bmp") as pil:
        assert pil.format == "BMP" and pil.mode == "L" and pil.size == (13, 7)
    assert np.array_equal(read_bmp(tmp_path / "a.bmp"), img)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bmp"]
    with pytest.raises(ValueError):
        write_bmp(tmp_path / "b.bmp", img.astype(np.float32))


def test_rgb_bmp_is_converted_to_gray(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 150, 200
    Image.fromarray(rgb).save(tmp_path / "c.bmp")
    gray = read_bmp(tmp_path / "c.bmp")
    expected = round((100 * 299 + 150 * 587 + 200 * 114) / 1000)  # ITU-R 601 luma
    assert gray.shape == (4, 5) and abs(int(gray[0, 0]) - expected) <= 1


def test_corrupt_or_missing_bmp_raises(tmp_path: Path) -> None:
    (tmp_path / "x.bmp").write_bytes(b"BM not really a bitmap")
    with pytest.raises(InputError, match="x.bmp"):
        read_bmp(tmp_path / "x.bmp")
    with pytest.raises(InputError, match="missing.bmp"):
        read_bmp(tmp_path / "missing.bmp")


def test_mat_round_trip(tmp_path: Path) -> None:
    mask = np.zeros((6, 9), np.uint8)
    mask[1:4, 2:7] = 1
    write_mask_mat(tmp_path / "m.mat", mask)
    content = scipy.io.loadmat(tmp_path / "m.mat")
    assert [k for k in content if not k.startswith("__")] == ["mask"]
    back = read_mask_mat(tmp_path / "m.mat")
    assert back.dtype == np.uint8 and np.array_equal(back, mask)
    # any single variable name and a logical/double mask are accepted
    scipy.io.savemat(tmp_path / "seg.mat", {"BW": mask.astype(bool)})
    assert np.array_equal(read_mask_mat(tmp_path / "seg.mat"), mask)
    scipy.io.savemat(tmp_path / "dbl.mat", {"m": mask.astype(float)})
    assert np.array_equal(read_mask_mat(tmp_path / "dbl.mat"), mask)


@pytest.mark.parametrize(
    "content, problem",
    [
        ({"a": np.zeros((3, 3)), "b": np.zeros((3, 3))}, "exactly one"),
        ({"a": np.zeros((3, 3, 2))}, "2D"),
        ({"a": np.full((3, 3), 2.0)}, "binary"),
    ],
)
def test_bad_mat_content_raises(tmp_path: Path, content: dict, problem: str) -> None:
    scipy.io.savemat(tmp_path / "bad.mat", content)
    with pytest.raises(InputError, match=f"bad.mat.*{problem}"):
        read_mask_mat(tmp_path / "bad.mat")


@pytest.mark.parametrize(
    "payload", [b"MATLAB 5.0 MAT-file garbage" + bytes(200), b"garbage", b"", bytes(300)]
)
def test_corrupt_mat_raises(tmp_path: Path, payload: bytes) -> None:
    (tmp_path / "c.mat").write_bytes(payload)
    with pytest.raises(InputError, match="c.mat"):
        read_mask_mat(tmp_path / "c.mat")
    with pytest.raises(InputError, match="none.mat.*not found"):
        read_mask_mat(tmp_path / "none.mat")


def test_viridis_matches_matplotlib() -> None:
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = gray_to_viridis(gray)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, colormaps["viridis"](gray, bytes=True)[..., :3])
    assert tuple(rgb[0, 0]) == (68, 1, 84)  # viridis dark purple
    assert tuple(rgb[-1, -1]) == (253, 231, 36)  # viridis yellow
    with pytest.raises(ValueError):
        gray_to_viridis(gray.astype(np.float32))


# --------------------------------------------------------------------------- splits


def test_random_split_is_seeded_and_order_independent() -> None:
    ids = [f"V{v}_{s}" for v in range(5) for s in range(6)]
    a = split_random(ids, 7, seed=3)
    assert a.count("test") == 7 and a == split_random(ids, 7, seed=3)
    assert a != split_random(ids, 7, seed=4)
    reordered = split_random(ids[::-1], 7, seed=3)
    assert dict(zip(ids, a, strict=True)) == dict(zip(ids[::-1], reordered, strict=True))
    with pytest.raises(ValueError):
        split_random(ids, 30, seed=0)


def test_volume_split_keeps_volumes_whole() -> None:
    vols = [f"V{v}" for v in range(5) for _ in range(6)]
    splits = split_by_volume(vols, 7, seed=1)
    table = pd.DataFrame({"v": vols, "s": splits})
    assert (table.groupby("v")["s"].nunique() == 1).all()
    assert splits.count("test") == 12  # two whole volumes: first total >= 7
    assert "train" in splits


def test_assign_validation_draws_from_train() -> None:
    ids = [f"i{k:02d}" for k in range(20)]
    splits = ["test"] * 5 + ["train"] * 15
    out = assign_validation(ids, splits, 0.2, seed=0)
    assert out[:5] == ["test"] * 5
    assert out.count("val") == 3 and out.count("train") == 12
    assert assign_validation(ids, splits, 0.2, seed=0) == out
    assert assign_validation(ids, splits, 0.0, seed=0) == splits


# --------------------------------------------------------------------------- yolo-annotate


def _cohort(root: Path, shape: tuple[int, int] = (20, 30)) -> pd.DataFrame:
    """3 volumes x 3 slices; slice 0 of volume 2 has an empty mask, slice 1 two components."""
    rng = np.random.default_rng(0)
    rows = []
    for v in range(3):
        for s in range(3):
            image_id = f"V{v}_{s}"
            mask = np.zeros(shape, np.uint8)
            if not (v == 2 and s == 0):
                mask[4 + s : 10 + s, 18 : 24 + v] = 1
            if s == 1:
                mask[15:17, 2:4] = 1
            write_bmp(root / "images" / f"{image_id}.bmp", rng.integers(0, 256, shape, np.uint8))
            write_mask_mat(root / "masks" / f"{image_id}.mat", mask)
            rows.append((image_id, f"V{v}", f"images/{image_id}.bmp", f"masks/{image_id}.mat"))
    table = pd.DataFrame(rows, columns=["image_id", "volume_id", "image", "mask"])
    table.to_csv(root / "images.csv", index=False)
    return table


def _annotate(cohort: Path, out: Path, *extra: str) -> int:
    argv = ["--cohort", str(cohort), "--out-dir", str(out), "--test-count", "3", "--seed", "0"]
    return yolo_annotations.main([*argv, *extra])


def test_annotate_writes_darknet_files(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    _cohort(cohort)
    out = tmp_path / "ann"
    assert _annotate(cohort, out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"V{v}_{s}.txt" for v in range(3) for s in range(3)]
        + ["train.txt", "test.txt", "obj.names", "obj.data", "boxes.csv"]
    )
    # V0_0: rows 4..9, columns 18..23 of a 20 x 30 image
    assert (out / "V0_0.txt").read_text() == yolo_line((21 / 30, 7 / 20, 6 / 30, 6 / 20)) + "\n"
    assert (out / "V2_0.txt").read_text() == ""
    # V1_1: union with the second component (rows 15..16, columns 2..3)
    ((_, box),) = read_yolo_txt(out / "V1_1.txt")
    assert box_to_pixels(box, 20, 30) == pytest.approx((2, 5, 25, 17), abs=1e-4)
    boxes = pd.read_csv(out / "boxes.csv")
    assert list(boxes.columns) == list(yolo_annotations.BOX_COLUMNS)
    assert boxes.set_index("image_id").loc["V2_0", "empty"]
    assert np.isnan(boxes.set_index("image_id").loc["V2_0", "cx"])
    assert boxes.set_index("image_id").loc["V1_1", "n_components"] == 2
    test = (out / "test.txt").read_text().splitlines()
    train = (out / "train.txt").read_text().splitlines()
    assert len(test) == 3 and len(train) == 6 and not set(test) & set(train)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in test + train)
    assert sorted(Path(p).stem for p in test) == sorted(boxes[boxes["split"] == "test"]["image_id"])
    assert (out / "obj.names").read_text() == "cerebellum\n"
    data = dict(line.split("=", 1) for line in (out / "obj.data").read_text().splitlines())
    assert data["classes"] == "1" and Path(data["train"]) == out.resolve() / "train.txt"
    assert set(data) == {"classes", "train", "valid", "names", "backup"}


def test_annotate_volume_split(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    _cohort(cohort)
    assert _annotate(cohort, tmp_path / "ann", "--split", "volume") == 0
    boxes = pd.read_csv(tmp_path / "ann" / "boxes.csv")
    assert (boxes.groupby("volume_id")["split"].nunique() == 1).all()
    assert (boxes["split"] == "test").sum() == 3


def _break_missing_mask(cohort: Path) -> Path:
    path = cohort / "masks" / "V1_2.mat"
    path.unlink()
    return path


def _break_mask_size(cohort: Path) -> Path:
    path = cohort / "masks" / "V0_1.mat"
    write_mask_mat(path, np.zeros((20, 31), np.uint8))
    return path


def _break_mat(cohort: Path) -> Path:
    path = cohort / "masks" / "V2_2.mat"
    path.write_bytes(b"garbage")
    return path


def _break_bmp(cohort: Path) -> Path:
    path = cohort / "images" / "V0_2.bmp"
    path.write_bytes(b"BM" + bytes(10))
    return path


@pytest.mark.parametrize("breaker", [_break_missing_mask, _break_mask_size, _break_mat, _break_bmp])
def test_bad_pairs_raise_and_write_nothing(tmp_path: Path, breaker) -> None:
    cohort = tmp_path / "cohort"
    _cohort(cohort)
    bad = breaker(cohort)
    out = tmp_path / "ann"
    with pytest.raises(InputError) as info:
        _annotate(cohort, out)
    assert info.value.path == bad
    assert bad.name in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # nothing, no temporary
    # an existing annotation directory is left untouched
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError):
        _annotate(cohort, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_cohort_table(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    table = _cohort(cohort)
    table.drop(columns=["mask"]).to_csv(cohort / "images.csv", index=False)
    with pytest.raises(InputError, match="images.csv.*mask"):
        _annotate(cohort, tmp_path / "ann")
    pd.concat([table, table.iloc[:1]]).to_csv(cohort / "images.csv", index=False)
    with pytest.raises(InputError, match="duplicate"):
        _annotate(cohort, tmp_path / "ann")


# --------------------------------------------------------------------------- yolo-dataset


def test_dataset_arrays_and_splits(tmp_path: Path) -> None:
    cohort, ann, out = tmp_path / "cohort", tmp_path / "ann", tmp_path / "pre"
    table = _cohort(cohort)
    assert _annotate(cohort, ann) == 0
    argv = ["--cohort", str(cohort), "--annotations", str(ann), "--input-size", "32"]
    assert (
        yolo_dataset.main([*argv, "--val-fraction", "0.2", "--seed", "1", "--out-dir", str(out)])
        == 0
    )
    data = np.load(out / "dataset.npz")
    assert data["images"].shape == (9, 32, 32, 3) and data["images"].dtype == np.uint8
    assert data["boxes"].shape == (9, 4) and data["boxes"].dtype == np.float32
    assert data["image_id"].tolist() == table["image_id"].tolist()
    assert data["volume_id"].tolist() == table["volume_id"].tolist()
    assert data["orig_size"].tolist() == [[20, 30]] * 9
    k = data["image_id"].tolist().index("V2_0")
    assert not data["has_object"][k] and np.isnan(data["boxes"][k]).all()
    assert data["has_object"].sum() == 8
    k0 = data["image_id"].tolist().index("V0_0")
    assert data["boxes"][k0] == pytest.approx((21 / 30, 7 / 20, 6 / 30, 6 / 20), abs=1e-6)
    # the image is viridis of the bilinearly resized gray image
    gray = read_bmp(cohort / "images" / "V0_0.bmp")
    assert np.array_equal(data["images"][k0], gray_to_viridis(resize_gray(gray, 32)))
    cases = pd.read_csv(out / "cases.csv")
    splits = pd.read_csv(out / "splits.csv")
    assert list(cases.columns) == ["case_id", "patient_id"]
    assert list(splits.columns) == ["case_id", "patient_id", "split"]
    boxes = pd.read_csv(ann / "boxes.csv").set_index("image_id")
    for row in splits.itertuples():
        assert (row.split == "test") == (boxes.loc[row.case_id, "split"] == "test")
    assert (splits["split"] == "val").sum() == 1  # round(0.2 * 6)


def test_dataset_rejects_missing_annotation(tmp_path: Path) -> None:
    cohort, ann = tmp_path / "cohort", tmp_path / "ann"
    _cohort(cohort)
    assert _annotate(cohort, ann) == 0
    (ann / "V1_0.txt").unlink()
    argv = ["--cohort", str(cohort), "--annotations", str(ann), "--input-size", "16", "--seed", "0"]
    with pytest.raises(InputError, match="V1_0.txt"):
        yolo_dataset.main([*argv, "--out-dir", str(tmp_path / "pre")])
    assert not (tmp_path / "pre").exists()
