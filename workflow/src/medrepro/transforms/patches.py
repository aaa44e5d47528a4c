"""Whole-volume inference by overlapping patches of one static shape (pure NumPy).

The volume ``(z, y, x)`` is padded with 0 at the far end of every axis until a regular grid of
output patches (side ``patch``, step ``stride``, voxels) covers it; a network with valid
convolutions (``margin`` voxels lost per side) sees input patches of ``patch + 2 * margin``
taken from the volume padded by ``margin`` more on both sides. Every input patch therefore has
the same static shape, which an OpenVINO IR with a static input needs.

A network may return several maps, each at its own scale ``s`` (1 = full resolution, 8 = 1/8,
the LowRes stage 1): the output of a patch at scale ``s`` covers ``patch / s`` voxels starting at
``start / s``. Overlapping outputs are averaged; maps are cropped back to ``ceil(shape / s)``.
Patch sides and strides must be multiples of every scale (a ValueError says which is not).

Example:
    >>> import numpy as np
    >>> volume = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    >>> (out,) = predict_patched(volume, lambda x: [x], patch=4, stride=2)
    >>> bool(np.array_equal(out[0], volume))
    True
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PatchGrid", "PredictFn", "as_triple", "patch_grid", "pad_volume", "predict_patched"]

#: maps an input patch ``(1, 1, *input_patch)`` float32 to its outputs ``(1, C, *patch / s)``
PredictFn = Callable[[np.ndarray], Sequence[np.ndarray]]


def as_triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    """``value`` as a ``(z, y, x)`` triple of positive ints (an int is repeated)."""
    triple = (int(value),) * 3 if np.isscalar(value) else tuple(int(v) for v in value)
    if len(triple) != 3 or min(triple) < 1:
        raise ValueError(f"{name} must be a positive int or 3 positive ints, got {value!r}")
    return triple  # type: ignore[return-value]


@dataclass(frozen=True)
class PatchGrid:
    """A regular grid of output patches over a padded volume (all in voxels, ``(z, y, x)``).

    Attributes:
        shape: the volume's shape.
        patch: output patch side per axis.
        stride: step between patch starts per axis.
        margin: voxels lost per side by the network (input patch = patch + 2 * margin).
    """

    shape: tuple[int, int, int]
    patch: tuple[int, int, int]
    stride: tuple[int, int, int]
    margin: int = 0

    @property
    def counts(self) -> tuple[int, int, int]:
        """Number of patches per axis."""
        return tuple(  # type: ignore[return-value]
            1 + max(0, -(-(n - p) // s))
            for n, p, s in zip(self.shape, self.patch, self.stride, strict=True)
        )

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        """Shape covered by the output patches (>= ``shape``)."""
        return tuple(  # type: ignore[return-value]
            (c - 1) * s + p for c, s, p in zip(self.counts, self.stride, self.patch, strict=True)
        )

    @property
    def input_patch(self) -> tuple[int, int, int]:
        """Static input patch shape fed to the network."""
        return tuple(p + 2 * self.margin for p in self.patch)  # type: ignore[return-value]

    def axis_starts(self, axis: int) -> list[int]:
        """Output-patch start indices along ``axis``."""
        return [i * self.stride[axis] for i in range(self.counts[axis])]

    @property
    def starts(self) -> list[tuple[int, int, int]]:
        """Every output patch's start ``(z, y, x)``, in C order."""
        return list(itertools.product(*(self.axis_starts(a) for a in range(3))))

    def __len__(self) -> int:
        return int(np.prod(self.counts))

    def coverage(self, axis: int, scale: int = 1) -> np.ndarray:
        """How many patches cover each voxel of ``axis`` at ``scale`` (padded length / scale)."""
        cover = np.zeros(self.padded_shape[axis] // scale, dtype=np.float32)
        side = self.patch[axis] // scale
        for start in self.axis_starts(axis):
            cover[start // scale : start // scale + side] += 1.0
        return cover


def patch_grid(
    shape: Sequence[int],
    patch: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    margin: int = 0,
    scales: Sequence[int] = (1,),
) -> PatchGrid:
    """The patch grid of a ``(z, y, x)`` volume.

    Args:
        shape: volume shape in voxels.
        patch: output patch side(s) in voxels.
        stride: step(s) between patches, ``<= patch`` (default: ``patch``, no overlap).
        margin: voxels lost per side by valid convolutions (0 for same-size networks).
        scales: output scales the grid must be compatible with.

    Raises:
        ValueError: non-positive sizes, stride larger than the patch (voxels left uncovered),
            or a patch side or stride that is not a multiple of a scale.
    """
    shape3 = as_triple(shape, "shape")
    patch3 = as_triple(patch, "patch")
    stride3 = patch3 if stride is None else as_triple(stride, "stride")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if any(s > p for s, p in zip(stride3, patch3, strict=True)):
        raise ValueError(f"stride {stride3} must not exceed patch {patch3} (gaps between patches)")
    for scale in scales:
        if int(scale) < 1:
            raise ValueError(f"scales must be positive ints, got {tuple(scales)}")
        bad = [v for v in (*patch3, *stride3) if v % int(scale)]
        if bad:
            raise ValueError(
                f"patch {patch3} and stride {stride3} must be multiples of every output scale "
                f"{tuple(scales)}; {bad} are not multiples of {scale}"
            )
    return PatchGrid(shape3, patch3, stride3, int(margin))


def pad_volume(volume: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """``volume`` as float32, padded with 0 to the grid (+ ``margin`` on both sides)."""
    m = grid.margin
    pads = [(m, m + p - n) for n, p in zip(volume.shape, grid.padded_shape, strict=True)]
    return np.pad(np.asarray(volume, dtype=np.float32), pads, mode="constant", constant_values=0)


def predict_patched(
    volume: np.ndarray,
    predict_fn: PredictFn,
    patch: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    margin: int = 0,
    scales: Sequence[int] = (1,),
) -> list[np.ndarray]:
    """Run ``predict_fn`` on every patch of ``volume`` and stitch the outputs.

    Args:
        volume: ``(z, y, x)`` array (converted to float32).
        predict_fn: maps a C-contiguous float32 input patch ``(1, 1, *(patch + 2 * margin))`` to a
            sequence of arrays ``(1, C_i, *(patch / scales[i]))``, one per scale.
        patch: output patch side(s) in voxels.
        stride: step(s) between patches (default ``patch``).
        margin: voxels lost per side by the network.
        scales: the scale of each output of ``predict_fn``.

    Returns:
        One ``(C_i, *ceil(shape / scales[i]))`` float32 map per output, the average of the
        patches covering each voxel.

    Raises:
        ValueError: incompatible sizes (see :func:`patch_grid`), or outputs of ``predict_fn``
            whose number or shapes do not match ``scales``.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), got shape {volume.shape}")
    scales = [int(s) for s in scales]
    grid = patch_grid(volume.shape, patch, stride, margin, scales)
    padded = pad_volume(volume, grid)
    sums: list[np.ndarray | None] = [None] * len(scales)
    for start in grid.starts:
        window = tuple(slice(s, s + p) for s, p in zip(start, grid.input_patch, strict=True))
        x = np.ascontiguousarray(padded[window])[None, None]
        outputs = list(predict_fn(x))
        if len(outputs) != len(scales):
            raise ValueError(f"predict_fn returned {len(outputs)} outputs for scales {scales}")
        for i, (out, scale) in enumerate(zip(outputs, scales, strict=True)):
            out = np.asarray(out)
            expected = tuple(p // scale for p in grid.patch)
            if out.ndim != 5 or out.shape[0] != 1 or out.shape[2:] != expected:
                raise ValueError(
                    f"output {i} has shape {out.shape}; expected (1, C, *{expected}) at scale {scale}"
                )
            if sums[i] is None:
                low = tuple(n // scale for n in grid.padded_shape)
                sums[i] = np.zeros((out.shape[1], *low), dtype=np.float32)
            region = (
                slice(None),
                *(slice(s // scale, s // scale + e) for s, e in zip(start, expected, strict=True)),
            )
            sums[i][region] += out[0]  # type: ignore[index]
    results = []
    for total, scale in zip(sums, scales, strict=True):
        assert total is not None
        # the grid is a Cartesian product, so the overlap count is separable per axis
        total /= grid.coverage(0, scale)[:, None, None]
        total /= grid.coverage(1, scale)[:, None]
        total /= grid.coverage(2, scale)
        crop = tuple(slice(0, -(-n // scale)) for n in grid.shape)
        results.append(np.ascontiguousarray(total[(slice(None), *crop)]))
    return results
