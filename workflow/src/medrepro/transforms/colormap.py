"""Grayscale -> viridis RGB, as Ramos et al. 2020 feed 3-channel networks with gray ultrasound."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["viridis_lut", "gray_to_viridis"]


@lru_cache(maxsize=1)
def viridis_lut() -> np.ndarray:
    """Matplotlib's 256-entry viridis table as ``uint8 (256, 3)`` (its ``bytes=True`` values)."""
    from matplotlib import colormaps

    lut = colormaps["viridis"].resampled(256)(np.arange(256), bytes=True)[:, :3]
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    lut.flags.writeable = False
    return lut


def gray_to_viridis(gray: np.ndarray) -> np.ndarray:
    """Map gray levels to viridis colours: ``uint8 (H, W)`` -> ``uint8 (H, W, 3)`` RGB.

    Gray level ``g`` takes entry ``g`` of the colormap (0 = dark purple, 255 = yellow), i.e. the
    result equals ``matplotlib.colormaps["viridis"](gray, bytes=True)[..., :3]``.

    Raises:
        ValueError: ``gray`` is not ``uint8``.
    """
    arr = np.asarray(gray)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 gray levels, got {arr.dtype}")
    return viridis_lut()[arr]
