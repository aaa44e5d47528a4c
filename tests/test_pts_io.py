"""Tests for the iBUG .pts reader/writer and the visibility sidecar (medrepro.io.pts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medrepro.io.errors import InputError
from medrepro.io.pts import read_pts, read_visibility, write_pts, write_visibility


def test_round_trip_is_zero_based_in_and_out(tmp_path: Path) -> None:
    pts = np.array([[0.0, 0.0], [10.25, 3.5], [127.125, 63.999]])
    path = tmp_path / "a.pts"
    write_pts(path, pts)
    np.testing.assert_allclose(read_pts(path), pts, atol=5e-4)
    lines = path.read_text().splitlines()
    assert lines[:3] == ["version: 1", "n_points: 3", "{"] and lines[-1] == "}"
    assert lines[3] == "1.000 1.000"  # 1-based on disk


def test_hand_written_file_is_one_based_and_tolerant(tmp_path: Path) -> None:
    path = tmp_path / "b.pts"
    text = "version: 1\r\n\r\nn_points:   2\r\n{\r\n  1 1  \r\n\r\n 11.5\t21\r\n}\r\n\r\n"
    path.write_bytes(text.encode())
    np.testing.assert_array_equal(read_pts(path), [[0.0, 0.0], [10.5, 20.0]])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 1\nn_points: 2\n{\n1 2\n}\n", "n_points is 2 but 1"),
        ("version: 1\nn_points: 1\n{\n1 2\n3 4\n}\n", "n_points is 1 but 2"),
        ("version: 1\nn_points: 1\n{\n1 abc\n}\n", "non-numeric"),
        ("version: 1\nn_points: 1\n{\n1 2 3\n}\n", "expected 'x y'"),
        ("version: 1\nn_points: 1\n{\n1 nan\n}\n", "non-finite"),
        ("version: 1\nn_points: 1\n{\n1 2\n", "no closing"),
        ("version: 1\n{\n1 2\n}\n", "no 'n_points:'"),
        ("version: 1\nn_points: x\n{\n}\n", "not an integer"),
        ("1 2\n3 4\n", "malformed header"),
    ],
)
def test_malformed_file_raises_naming_the_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        read_pts(path)
    assert err.value.path == path and "bad.pts" in str(err.value)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_pts(tmp_path / "none.pts")


def test_visibility_sidecar(tmp_path: Path) -> None:
    pts_path = tmp_path / "c.pts"
    np.testing.assert_array_equal(read_visibility(pts_path, 3), [True, True, True])
    write_visibility(pts_path, np.array([True, False, True]))
    assert (tmp_path / "c.json").is_file()
    np.testing.assert_array_equal(read_visibility(pts_path, 3), [True, False, True])
    with pytest.raises(InputError, match="expected 4") as err:
        read_visibility(pts_path, 4)
    assert err.value.path == tmp_path / "c.json"
    (tmp_path / "c.json").write_text('{"visible": [true, "no", true]}')
    with pytest.raises(InputError, match="true/false"):
        read_visibility(pts_path, 3)
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        read_visibility(pts_path, 3)
