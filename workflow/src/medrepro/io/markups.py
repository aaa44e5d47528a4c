"""3D Slicer point landmarks (``.mrk.json``, markups-schema-v1.0.0) in LPS millimetres.

A file holds ``{"@schema": ..., "markups": [{"type": "Fiducial", "coordinateSystem": "LPS",
"controlPoints": [{"label": ..., "position": [x, y, z], ...}]}]}``. Positions are world mm; RAS
positions are converted to LPS by negating x and y.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrepro.io.atomic import write_json
from medrepro.io.errors import InputError

__all__ = ["SCHEMA", "read_markups", "write_markups"]

SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.0.json#"
)
_TO_LPS = {"LPS": np.array([1.0, 1.0, 1.0]), "RAS": np.array([-1.0, -1.0, 1.0])}


def _position(path: Path, label: str, point: Mapping[str, Any]) -> np.ndarray:
    pos = point.get("position")
    ok = (
        isinstance(pos, list)
        and len(pos) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos)
    )
    if not ok:
        raise InputError(path, f"landmark {label!r}: malformed position {pos!r}")
    if not all(math.isfinite(v) for v in pos):
        raise InputError(path, f"landmark {label!r}: non-finite position {pos!r}")
    return np.asarray(pos, dtype=float)


def read_markups(path: str | Path, expected_labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Read landmarks from a Slicer ``.mrk.json`` file.

    Args:
        path: markups file.
        expected_labels: labels that must all be present, and the only ones allowed.

    Returns:
        ``{label: (3,) float64 position in LPS mm}`` in the order of ``expected_labels``.

    Raises:
        InputError: bad JSON, no markups, an unknown coordinate system, a missing, unknown or
            duplicate label, a malformed or non-finite position.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from exc
    markups = doc.get("markups") if isinstance(doc, dict) else None
    if not isinstance(markups, list) or not markups:
        raise InputError(path, "no markups in file")
    found: dict[str, np.ndarray] = {}
    for markup in markups:
        if not isinstance(markup, dict):
            raise InputError(path, f"malformed markup {markup!r}")
        system = markup.get("coordinateSystem", "LPS")
        if system not in _TO_LPS:
            raise InputError(path, f"unknown coordinateSystem {system!r} (LPS or RAS)")
        points = markup.get("controlPoints", [])
        if not isinstance(points, list):
            raise InputError(path, "controlPoints is not a list")
        for point in points:
            label = point.get("label") if isinstance(point, dict) else None
            if not isinstance(label, str):
                raise InputError(path, f"control point without a label: {point!r}")
            if label not in expected_labels:
                raise InputError(path, f"unknown landmark {label!r}")
            if label in found:
                raise InputError(path, f"duplicate landmark {label!r}")
            found[label] = _position(path, label, point) * _TO_LPS[system]
    missing = [label for label in expected_labels if label not in found]
    if missing:
        raise InputError(path, f"missing landmarks {missing}")
    return {label: found[label] for label in expected_labels}


def write_markups(
    path: str | Path,
    points: Mapping[str, Sequence[float] | np.ndarray],
    coordinate_system: str = "LPS",
) -> None:
    """Write landmarks atomically as a Slicer ``.mrk.json`` file.

    Args:
        path: output file (``.mrk.json``).
        points: ``{label: (3,) position in LPS mm}``; written in this order.
        coordinate_system: ``"LPS"`` (positions as given) or ``"RAS"`` (x and y negated).
    """
    if coordinate_system not in _TO_LPS:
        raise ValueError(f"coordinate_system must be LPS or RAS, got {coordinate_system!r}")
    flip = _TO_LPS[coordinate_system]
    control_points = []
    for i, (label, pos) in enumerate(points.items()):
        xyz = np.asarray(pos, dtype=float).reshape(3)
        if not np.all(np.isfinite(xyz)):
            raise ValueError(f"landmark {label!r}: non-finite position {xyz.tolist()}")
        control_points.append(
            {
                "id": str(i + 1),
                "label": label,
                "position": (xyz * flip).tolist(),
                "positionStatus": "defined",
            }
        )
    doc = {
        "@schema": SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": coordinate_system,
                "coordinateUnits": "mm",
                "controlPoints": control_points,
            }
        ],
    }
    write_json(path, doc)
