"""Training patches of 3D volumes, centred on objects with a given probability (paper 003).

Shirokikh et al., J. Imaging 2021: "Sampled patch contains a ground truth object with the
probability of 0.5, otherwise it is sampled randomly"; the authors' code (``lowres/batch_iter.py``)
picks a random object of the study, then a random voxel of it as the patch centre, and otherwise
a centre for which the output box fits in the volume. Here the object voxel may additionally be
shifted off the centre by a random jitter inside the output box.

Boxes are given by their centre: a box of side ``s`` centred at ``c`` covers voxels
``c - s // 2 .. c - s // 2 + s - 1``. The input box of a network with valid convolutions
(DeepMedic) is the output box grown by ``margin`` voxels on every side, with the same centre.
Parts of a box outside the volume are padded with 0 (images in [0, 1], masks).

All arrays are ``(z, y, x)``; shapes and coordinates are in voxels. Randomness comes only from
the ``np.random.Generator`` passed in, so a seed fixes every patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "object_voxels",
    "uniform_center",
    "object_center",
    "sample_center",
    "crop_centered",
    "sample_patch",
]

Shape = tuple[int, int, int]


def _shape3(shape: int | Sequence[int], name: str) -> np.ndarray:
    """A ``(3,)`` int array of positive sides from an int or a 3-sequence."""
    arr = np.full(3, shape, dtype=np.int64) if np.isscalar(shape) else np.asarray(shape, np.int64)
    if arr.shape != (3,) or np.any(arr < 1):
        raise ValueError(f"{name} must be 3 positive sides, got {shape!r}")
    return arr


def object_voxels(mask: np.ndarray) -> list[np.ndarray]:
    """Voxel coordinates of every object (3D component, full 26-connectivity) of a binary mask.

    Args:
        mask: ``(z, y, x)`` array, non-zero = foreground.

    Returns:
        One ``(K_i, 3)`` int32 array of ``(z, y, x)`` coordinates per object, in label order;
        an empty list when the mask is empty.
    """
    labels, n = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return []
    coords = np.argwhere(labels > 0).astype(np.int32)
    order = np.argsort(labels[labels > 0], kind="stable")  # argwhere and boolean index agree
    coords, ids = coords[order], labels[labels > 0][order]
    splits = np.searchsorted(ids, np.arange(2, n + 1))
    return np.split(coords, splits)


def uniform_center(
    volume_shape: Sequence[int], output_shape: int | Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """A centre drawn uniformly among those whose output box lies inside the volume.

    Along an axis where the volume is smaller than the output box, the centre is the volume's
    middle (``side // 2``) and the box is padded on both sides.

    Returns:
        ``(3,)`` int64 centre ``(z, y, x)``.
    """
    shape = _shape3(volume_shape, "volume_shape")
    out = _shape3(output_shape, "output_shape")
    low = out // 2
    high = shape - out + out // 2  # inclusive
    fits = high >= low
    draw = rng.integers(low, np.where(fits, high, low), endpoint=True)
    return np.where(fits, draw, shape // 2).astype(np.int64)


def object_center(
    objects: Sequence[np.ndarray],
    output_shape: int | Sequence[int],
    rng: np.random.Generator,
    jitter: float = 0.5,
) -> np.ndarray:
    """A centre near a random voxel of a random object.

    A random object is chosen (each object equally likely, whatever its size), then one of its
    voxels; the centre is that voxel shifted by a random integer offset so that the voxel lands
    uniformly within the central ``jitter`` fraction of the output box (``jitter=0``: the voxel is
    the centre, as the authors' code; ``jitter=1``: anywhere in the output box).

    Args:
        objects: ``(K_i, 3)`` voxel coordinates per object (:func:`object_voxels`), non-empty.
        output_shape: output box sides (voxels).
        rng: random generator.
        jitter: fraction of the output box, in ``[0, 1]``.

    Returns:
        ``(3,)`` int64 centre ``(z, y, x)``; may lie anywhere (boxes are padded).
    """
    if not objects:
        raise ValueError("no objects to centre on")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [0, 1], got {jitter}")
    out = _shape3(output_shape, "output_shape")
    coords = objects[int(rng.integers(len(objects)))]
    voxel = coords[int(rng.integers(len(coords)))].astype(np.int64)
    # The voxel sits at box offset (s // 2 - shift); it stays in the box for shift in
    # [-(s - 1 - s // 2), s // 2]. Scale that range by jitter (rounded towards the centre).
    high = np.floor(jitter * (out // 2)).astype(np.int64)
    low = -np.floor(jitter * (out - 1 - out // 2)).astype(np.int64)
    shift = rng.integers(low, high, endpoint=True)
    return voxel + shift


def sample_center(
    volume_shape: Sequence[int],
    output_shape: int | Sequence[int],
    objects: Sequence[np.ndarray],
    object_prob: float,
    rng: np.random.Generator,
    jitter: float = 0.5,
) -> tuple[np.ndarray, bool]:
    """With probability ``object_prob`` an object centre, otherwise a uniform one.

    One uniform number is always drawn first, so the stream of draws does not depend on the
    branch taken before it. A study without objects always gets a uniform centre.

    Returns:
        ``(centre (3,) int64, on_object)``.
    """
    if not 0.0 <= object_prob <= 1.0:
        raise ValueError(f"object_prob must be in [0, 1], got {object_prob}")
    on_object = bool(rng.random() < object_prob) and len(objects) > 0
    if on_object:
        return object_center(objects, output_shape, rng, jitter), True
    return uniform_center(volume_shape, output_shape, rng), False


def crop_centered(
    array: np.ndarray, center: Sequence[int], shape: int | Sequence[int], pad_value: float = 0
) -> np.ndarray:
    """The box of ``shape`` centred at ``center`` (start ``center - shape // 2``), padded outside.

    Args:
        array: ``(z, y, x)`` volume.
        center: ``(3,)`` voxel centre (may lie outside the volume).
        shape: box sides in voxels.
        pad_value: value of voxels outside the volume.

    Returns:
        A new array of ``shape`` with ``array``'s dtype.
    """
    if array.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {array.shape}")
    size = _shape3(shape, "shape")
    start = np.asarray(center, dtype=np.int64) - size // 2
    stop = start + size
    src_lo = np.clip(start, 0, array.shape)
    src_hi = np.clip(stop, 0, array.shape)
    out = np.full(tuple(size), pad_value, dtype=array.dtype)
    if np.all(src_hi > src_lo):
        dst_lo = src_lo - start
        dst_hi = dst_lo + (src_hi - src_lo)
        out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi, strict=True))] = array[
            tuple(slice(a, b) for a, b in zip(src_lo, src_hi, strict=True))
        ]
    return out


def sample_patch(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    input_shape: int | Sequence[int],
    output_shape: int | Sequence[int] | None = None,
    object_prob: float = 0.5,
    jitter: float = 0.5,
    objects: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One training patch: the image over the input box, the mask over the output box.

    Args:
        image: ``(z, y, x)`` intensities (e.g. float16/float32 in [0, 1]).
        mask: ``(z, y, x)`` binary ground truth, same shape.
        rng: random generator.
        input_shape: network input sides (voxels).
        output_shape: network output sides; defaults to ``input_shape`` (same-size networks).
            For valid-convolution networks ``input = output + 2 * margin``; the input box must
            not be smaller than the output box and their difference must be even.
        object_prob: probability of centring on an object (paper: 0.5; DeepMedic 0.25,
            LowRes 0.9 in the authors' code).
        jitter: see :func:`object_center`.
        objects: precomputed :func:`object_voxels` of ``mask`` (computed when None).

    Returns:
        ``(image_patch (input_shape), mask_patch (output_shape))``, new arrays with the inputs'
        dtypes; both boxes share their centre, voxels outside the volume are 0.

    Raises:
        ValueError: shapes inconsistent.
    """
    if image.shape != mask.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be equal 3D shapes")
    inp = _shape3(input_shape, "input_shape")
    out = inp if output_shape is None else _shape3(output_shape, "output_shape")
    if np.any(inp < out) or np.any((inp - out) % 2):
        raise ValueError(f"input box {tuple(inp)} must be output box {tuple(out)} + 2 * margin")
    if objects is None:
        objects = object_voxels(mask)
    center, _ = sample_center(image.shape, out, objects, object_prob, rng, jitter)
    return crop_centered(image, center, inp, pad_value=0), crop_centered(mask, center, out, 0)
