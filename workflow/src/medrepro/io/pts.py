"""iBUG ``.pts`` landmark files and their visibility sidecar.

A ``.pts`` file (the 300-W / menpo / dlib format) is::

    version: 1
    n_points: K
    {
    x y
    ...            (K lines, x then y, 1-based pixels)
    }

In arrays the points are ``(K, 2)`` ``(x, y)`` in 0-based pixel-centre pixels (pixel ``(r, c)``
has its centre at ``x = c, y = r``), so ``x_pts = x + 1``. The optional sidecar
``<stem>.json`` holds ``{"visible": [K bools]}`` (self-occlusion flags).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from medrepro.io.atomic import write_json, write_text
from medrepro.io.errors import InputError

__all__ = ["read_pts", "write_pts", "read_visibility", "write_visibility", "visibility_path"]


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected a .pts file") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text file (undecodable bytes)") from None


def _header(path: Path, lines: list[str]) -> tuple[int, int]:
    """Parse ``key: value`` lines up to ``{``; return (n_points, index of the ``{`` line)."""
    n_points: int | None = None
    for i, line in enumerate(lines):
        if line == "{":
            if n_points is None:
                raise InputError(path, "no 'n_points:' line before '{'")
            return n_points, i
        key, sep, value = line.partition(":")
        if not sep:
            raise InputError(path, f"malformed header line {line!r} (expected 'key: value')")
        if key.strip().lower() == "n_points":
            try:
                n_points = int(value.strip())
            except ValueError:
                raise InputError(path, f"n_points is not an integer: {value.strip()!r}") from None
            if n_points < 0:
                raise InputError(path, f"negative n_points {n_points}")
    raise InputError(path, "no '{' line: not an iBUG .pts file")


def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG ``.pts`` file.

    Blank lines, CRLF line ends, a UTF-8 BOM and extra whitespace are tolerated.

    Args:
        path: the ``.pts`` file.

    Returns:
        float64 ``(K, 2)`` ``(x, y)`` 0-based pixel coordinates (the file's values minus 1).

    Raises:
        InputError: missing or undecodable file, no ``n_points`` or braces, a line that is not two
            finite numbers, or a number of point lines other than ``n_points``.
    """
    path = Path(path)
    lines = [line.strip() for line in _text(path).splitlines()]
    lines = [line for line in lines if line]
    n_points, start = _header(path, lines)
    try:
        end = lines.index("}", start + 1)
    except ValueError:
        raise InputError(path, "no closing '}'") from None
    if end != len(lines) - 1:
        raise InputError(path, f"unexpected text after '}}': {lines[end + 1]!r}")
    body = lines[start + 1 : end]
    if len(body) != n_points:
        raise InputError(path, f"n_points is {n_points} but {len(body)} point lines follow")
    points = np.empty((n_points, 2), dtype=np.float64)
    for i, line in enumerate(body):
        fields = line.split()
        if len(fields) != 2:
            raise InputError(path, f"point {i + 1}: expected 'x y', got {line!r}")
        try:
            xy = [float(v) for v in fields]
        except ValueError:
            raise InputError(path, f"point {i + 1}: non-numeric value in {line!r}") from None
        if not all(math.isfinite(v) for v in xy):
            raise InputError(path, f"point {i + 1}: non-finite value in {line!r}")
        points[i] = xy
    return points - 1.0


def write_pts(path: str | Path, points_xy: np.ndarray) -> None:
    """Write ``(K, 2)`` 0-based ``(x, y)`` points as a 1-based iBUG ``.pts`` file (3 decimals).

    The file is written atomically. Raises ``ValueError`` for a wrong shape or non-finite points.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (K, 2), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite")
    rows = [f"{x + 1.0:.3f} {y + 1.0:.3f}" for x, y in pts]
    text = "\n".join(["version: 1", f"n_points: {len(pts)}", "{", *rows, "}"]) + "\n"
    write_text(path, text)


def visibility_path(pts_path: str | Path) -> Path:
    """The visibility sidecar of a ``.pts`` file: ``<stem>.json`` beside it."""
    return Path(pts_path).with_suffix(".json")


def read_visibility(pts_path: str | Path, k: int) -> np.ndarray:
    """Read the ``{"visible": [K bools]}`` sidecar of ``pts_path``.

    Returns:
        bool ``(K,)``; all True when there is no sidecar.

    Raises:
        InputError (naming the sidecar): bad JSON, no ``visible`` list, a length other than ``k``,
            a value that is not a boolean (0/1 are accepted).
    """
    side = visibility_path(pts_path)
    if not side.exists():
        return np.ones(k, dtype=bool)
    try:
        doc = json.loads(_text(side))
    except json.JSONDecodeError as exc:
        raise InputError(side, f"invalid JSON ({exc.msg}, line {exc.lineno})") from None
    visible = doc.get("visible") if isinstance(doc, dict) else None
    if not isinstance(visible, list):
        raise InputError(side, "expected an object with a 'visible' list")
    if len(visible) != k:
        raise InputError(side, f"'visible' has {len(visible)} entries, expected {k}")
    if not all(isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)) for v in visible):
        raise InputError(side, "'visible' entries must be true/false")
    return np.asarray(visible, dtype=bool)


def write_visibility(pts_path: str | Path, visible: np.ndarray) -> None:
    """Write the visibility sidecar ``<stem>.json`` of ``pts_path`` atomically."""
    flags = [bool(v) for v in np.asarray(visible).reshape(-1)]
    write_json(visibility_path(pts_path), {"visible": flags})
