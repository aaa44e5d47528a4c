"""Tests for medrepro.io.markups: Slicer .mrk.json landmarks in LPS mm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrepro.io.errors import InputError
from medrepro.io.markups import read_markups, write_markups

LABELS = ("Or-L", "Or-R", "Po-L", "Po-R")
POINTS = {
    "Or-L": np.array([31.5, -70.25, 2.0]),
    "Or-R": np.array([-30.0, -69.0, 1.5]),
    "Po-L": np.array([60.0, 10.0, 0.0]),
    "Po-R": np.array([-61.0, 9.5, -0.5]),
}


def _doc(points: list[dict[str, Any]], system: str = "LPS") -> dict[str, Any]:
    return {
        "@schema": "x/markups-schema-v1.0.0.json#",
        "markups": [{"type": "Fiducial", "coordinateSystem": system, "controlPoints": points}],
    }


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_round_trip(tmp_path: Path, system: str) -> None:
    path = tmp_path / "case.mrk.json"
    write_markups(path, POINTS, coordinate_system=system)
    doc = json.loads(path.read_text())
    assert doc["markups"][0]["coordinateSystem"] == system
    assert [p["label"] for p in doc["markups"][0]["controlPoints"]] == list(LABELS)
    back = read_markups(path, LABELS)
    assert list(back) == list(LABELS)
    for label in LABELS:
        np.testing.assert_allclose(back[label], POINTS[label])


def test_ras_read_as_lps(tmp_path: Path) -> None:
    pts = [{"label": k, "position": v.tolist()} for k, v in POINTS.items()]
    path = _write(tmp_path / "ras.mrk.json", _doc(pts, "RAS"))
    back = read_markups(path, LABELS)
    np.testing.assert_allclose(back["Or-L"], [-31.5, 70.25, 2.0])


def _points() -> list[dict[str, Any]]:
    return [{"label": k, "position": v.tolist()} for k, v in POINTS.items()]


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        (_points()[:3], "missing landmarks"),
        ([*_points(), {"label": "Na", "position": [0, 0, 0]}], "unknown landmark 'Na'"),
        ([*_points(), _points()[0]], "duplicate landmark 'Or-L'"),
        (
            [*_points()[:3], {"label": "Po-R", "position": [0, 0]}],
            "landmark 'Po-R': malformed position",
        ),
        (
            [*_points()[:3], {"label": "Po-R", "position": [0, "a", 1]}],
            "landmark 'Po-R': malformed position",
        ),
    ],
)
def test_bad_points(tmp_path: Path, points: list[dict[str, Any]], problem: str) -> None:
    path = _write(tmp_path / "bad.mrk.json", _doc(points))
    with pytest.raises(InputError, match=f"bad.mrk.json: {problem}"):
        read_markups(path, LABELS)


def test_non_finite_position(tmp_path: Path) -> None:
    path = tmp_path / "nan.mrk.json"
    text = json.dumps(_doc(_points())).replace("60.0", "NaN", 1)
    path.write_text(text)
    with pytest.raises(InputError, match="nan.mrk.json: landmark 'Po-L': non-finite"):
        read_markups(path, LABELS)


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.mrk.json"
    path.write_text('{"markups": [')
    with pytest.raises(InputError, match="broken.mrk.json: not valid JSON"):
        read_markups(path, LABELS)


@pytest.mark.parametrize("doc", [{}, {"markups": []}, []])
def test_no_markups(tmp_path: Path, doc: Any) -> None:
    path = _write(tmp_path / "empty.mrk.json", doc)
    with pytest.raises(InputError, match="empty.mrk.json: no markups"):
        read_markups(path, LABELS)


def test_unknown_coordinate_system(tmp_path: Path) -> None:
    path = _write(tmp_path / "sys.mrk.json", _doc(_points(), "IJK"))
    with pytest.raises(InputError, match="sys.mrk.json: unknown coordinateSystem"):
        read_markups(path, LABELS)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothere.mrk.json"):
        read_markups(tmp_path / "nothere.mrk.json", LABELS)
