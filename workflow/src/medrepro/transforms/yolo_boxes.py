"""Binary masks -> YOLO boxes, and darknet's YOLO annotation text lines.

Boxes are ``(cx, cy, w, h)`` normalised by the image width ``W`` (x) and height ``H`` (y). The
box of a mask is half-open, like dpipe's ``mask2bounding_box``: ``x0 = min(xs)``,
``x1 = max(xs) + 1`` (same for y) in pixel edges, so a mask touching the right border gives
``x1 = W`` and ``cx + w / 2 = 1``. A mask of several components (the two cerebellar hemispheres
may be disconnected) gives one union box; an empty mask gives no box (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from medrepro.io.errors import InputError

__all__ = ["Box", "mask_to_box", "box_to_pixels", "n_components", "yolo_line", "read_yolo_txt"]

#: ``(cx, cy, w, h)`` normalised by the image size
Box = tuple[float, float, float, float]


def _mask2d(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2D mask (H, W), got shape {arr.shape}")
    return arr != 0


def mask_to_box(mask: np.ndarray) -> Box | None:
    """Normalised half-open bounding box of all nonzero pixels of ``mask (H, W)``; None if empty.

    Example:
        >>> m = np.zeros((4, 8), np.uint8); m[1:3, 2:6] = 1
        >>> mask_to_box(m)
        (0.5, 0.5, 0.5, 0.5)
    """
    m = _mask2d(mask)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    height, width = m.shape
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    return (
        (x0 + x1) / (2.0 * width),
        (y0 + y1) / (2.0 * height),
        (x1 - x0) / width,
        (y1 - y0) / height,
    )


def box_to_pixels(
    box: Sequence[float], height: int, width: int
) -> tuple[float, float, float, float]:
    """Normalised ``(cx, cy, w, h)`` -> pixel edges ``(x0, y0, x1, y1)`` of an ``H x W`` image.

    The inverse of :func:`mask_to_box`: a mask's box comes back as its integer half-open edges
    (up to float rounding).
    """
    cx, cy, w, h = (float(v) for v in box)
    return (
        (cx - w / 2.0) * width,
        (cy - h / 2.0) * height,
        (cx + w / 2.0) * width,
        (cy + h / 2.0) * height,
    )


def n_components(mask: np.ndarray) -> int:
    """Number of 8-connected components of the nonzero pixels of ``mask (H, W)``."""
    _, count = ndimage.label(_mask2d(mask), structure=np.ones((3, 3), dtype=bool))
    return int(count)


def yolo_line(box: Sequence[float], cls: int = 0) -> str:
    """Darknet annotation line ``"<cls> cx cy w h"`` with 6 decimals (no newline)."""
    if len(box) != 4:
        raise ValueError(f"expected (cx, cy, w, h), got {box!r}")
    return f"{int(cls)} " + " ".join(f"{float(v):.6f}" for v in box)


def _parse_line(line: str, path: Path, number: int) -> tuple[int, Box]:
    fields = line.split()
    if len(fields) != 5:
        raise InputError(path, f"line {number}: expected 'class cx cy w h', got {line.strip()!r}")
    try:
        cls = int(fields[0])
        cx, cy, w, h = (float(v) for v in fields[1:])
    except ValueError as err:
        raise InputError(path, f"line {number}: not numbers: {line.strip()!r}") from err
    values = (cx, cy, w, h)
    if cls < 0 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values) or w * h == 0:
        raise InputError(
            path, f"line {number}: need class >= 0 and 0 <= cx, cy, w, h <= 1, w, h > 0: {values}"
        )
    return cls, values


def read_yolo_txt(path: str | Path) -> list[tuple[int, Box]]:
    """Read a darknet annotation file: one ``(class, (cx, cy, w, h))`` per non-blank line.

    An empty file means "no object" and gives ``[]``.

    Raises:
        InputError: naming ``path`` if it is missing or a line is not ``class cx cy w h`` with
            normalised values in [0, 1] and a positive width and height.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "annotation file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"unreadable annotation file: {err}") from err
    return [
        _parse_line(line, path, number)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
