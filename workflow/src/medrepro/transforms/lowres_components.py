"""LowRes inference: stage-1 components -> detail boxes -> full-resolution probability map.

Shirokikh et al. (2021), Sec. 3: the 1/8-resolution probability map of stage 1 is binarised at
p > 0.5 and split into 3D connected components (full, 26-connectivity); every component's
bounding box, grown by one low-resolution voxel per side (clipped to the map), is predicted at full
resolution by the detail stage from the image crop and the matching crops of the stage-1
features. The full-resolution map is the detail output inside the boxes (the maximum where boxes
overlap) and the nearest-upsampled stage-1 probability everywhere else (``docs/lowres.md``).

All arrays are ``(z, y, x)`` volumes or ``(C, z, y, x)`` feature maps without a batch axis; the
detail function receives batches of one, ``(1, C, d, h, w)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "FACTOR",
    "ComponentBox",
    "DetailFn",
    "component_boxes",
    "upsample_nearest",
    "assemble_lowres",
]

#: stage-1 downsampling factor per axis
FACTOR = 8

#: ``(x (1,1,d,h,w), f2 (1,n,d/2,..), f4 (1,2n,d/4,..), f8 (1,4n,d/8,..)) -> (1,1,d,h,w)``
#: probabilities of the detail stage on one box
DetailFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ComponentBox:
    """One detail box: half-open low-resolution index ranges ``((z0, z1), (y0, y1), (x0, x1))``.

    Attributes:
        low: the box on the 1/``factor`` grid (component bounding box + margin, clipped).
        factor: stage-1 downsampling factor (8).
    """

    low: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    factor: int = FACTOR

    def slices(self, scale: int = 1) -> tuple[slice, slice, slice]:
        """The box on the grid of ``scale`` (1 = full resolution, 2 = f2, ..., 8 = stage 1)."""
        if self.factor % scale:
            raise ValueError(f"scale {scale} does not divide the factor {self.factor}")
        k = self.factor // scale
        return tuple(slice(a * k, b * k) for a, b in self.low)  # type: ignore[return-value]

    @property
    def full(self) -> tuple[slice, slice, slice]:
        """The box at full resolution (voxels; may extend past the image into its padding)."""
        return self.slices(1)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Full-resolution box shape (multiples of ``factor``)."""
        return tuple((b - a) * self.factor for a, b in self.low)  # type: ignore[return-value]


def component_boxes(
    prob8: np.ndarray, threshold: float = 0.5, margin: int = 1, factor: int = FACTOR
) -> list[ComponentBox]:
    """Boxes of the components of ``prob8 > threshold`` (26-connectivity), grown by ``margin``.

    Args:
        prob8: stage-1 probabilities ``(z, y, x)`` at 1/``factor`` resolution.
        threshold: binarisation threshold (strictly greater).
        margin: low-resolution voxels added on every side (clipped to the map).
        factor: the full/low resolution ratio.

    Returns:
        One box per component, in ``scipy.ndimage.label`` order.
    """
    prob8 = np.asarray(prob8)
    if prob8.ndim != 3:
        raise ValueError(f"prob8 must be (z, y, x), got shape {prob8.shape}")
    labels, n = ndimage.label(prob8 > threshold, structure=np.ones((3, 3, 3), dtype=bool))
    boxes = []
    for found in ndimage.find_objects(labels)[:n]:
        if found is None:  # pragma: no cover - labels are consecutive
            continue
        low = tuple(
            (max(0, s.start - margin), min(size, s.stop + margin))
            for s, size in zip(found, prob8.shape, strict=True)
        )
        boxes.append(ComponentBox(low, factor))  # type: ignore[arg-type]
    return boxes


def upsample_nearest(low: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upsampling of a ``(z, y, x)`` map by ``factor``, cropped to ``shape``."""
    low = np.asarray(low, dtype=np.float32)
    if any(-(-n // factor) > m for n, m in zip(shape, low.shape, strict=True)):
        raise ValueError(f"a {low.shape} map at 1/{factor} does not cover a {tuple(shape)} volume")
    out = np.empty(shape, dtype=np.float32)
    index = [np.arange(n) // factor for n in shape]
    # one axis at a time keeps the temporaries at most the size of the output
    out[...] = low[index[0]][:, index[1]][:, :, index[2]]
    return out


def assemble_lowres(
    image: np.ndarray,
    prob8: np.ndarray,
    features: Mapping[int, np.ndarray],
    detail_fn: DetailFn,
    threshold: float = 0.5,
    margin: int = 1,
) -> tuple[np.ndarray, list[ComponentBox]]:
    """Full-resolution probability map of LowRes from its stage-1 outputs.

    Args:
        image: the volume ``(z, y, x)`` in [0, 1]; padded with 0 to ``8 * prob8.shape``.
        prob8: stage-1 probabilities ``(ceil(z/8), ceil(y/8), ceil(x/8))``.
        features: ``{2: f2, 4: f4, 8: f8}``, ``(C_s, *(8 / s) * prob8.shape)`` stage-1 features
            of the padded volume.
        detail_fn: the detail stage on one box (see :data:`DetailFn`), returning probabilities.
        threshold: stage-1 binarisation threshold.
        margin: low-resolution voxels added around every component box.

    Returns:
        ``(probabilities, boxes)``: float32 ``(z, y, x)`` like ``image``, and the detail boxes.
    """
    image = np.asarray(image)
    prob8 = np.asarray(prob8, dtype=np.float32)
    padded_shape = tuple(FACTOR * n for n in prob8.shape)
    if image.ndim != 3 or any(
        -(-n // FACTOR) != m for n, m in zip(image.shape, prob8.shape, strict=True)
    ):
        raise ValueError(f"prob8 {prob8.shape} is not the 1/{FACTOR} grid of image {image.shape}")
    for scale in (2, 4, 8):
        f = features[scale]
        want = tuple(n // scale for n in padded_shape)
        if f.ndim != 4 or f.shape[1:] != want:
            raise ValueError(f"f{scale} has shape {f.shape}; expected (C, *{want})")
    boxes = component_boxes(prob8, threshold, margin)
    out = upsample_nearest(prob8, FACTOR, image.shape)
    if not boxes:
        return out, boxes
    pads = [(0, p - n) for n, p in zip(image.shape, padded_shape, strict=True)]
    padded = np.pad(np.asarray(image, dtype=np.float32), pads)
    covered = np.zeros(image.shape, dtype=bool)
    for box in boxes:
        x = np.ascontiguousarray(padded[box.full])[None, None]
        crops = [
            np.ascontiguousarray(features[s][(slice(None), *box.slices(s))])[None]
            for s in (2, 4, 8)
        ]
        prob = np.asarray(detail_fn(x, *crops), dtype=np.float32).reshape(box.shape)
        inside = tuple(
            slice(s.start, min(s.stop, n)) for s, n in zip(box.full, image.shape, strict=True)
        )
        prob = prob[tuple(slice(0, s.stop - s.start) for s in inside)]
        region, seen = out[inside], covered[inside]
        region[...] = np.where(seen, np.maximum(region, prob), prob)
        seen[...] = True
    return out, boxes
