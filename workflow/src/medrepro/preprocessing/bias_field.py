"""N4 bias-field correction, used only to drive registration.

BraTS preprocessing (Thakur et al. 2022, ``docs/brain_extraction.md``) runs N4 on every modality
before registering it, but the images handed on are resampled from the *original* intensities:
N4 is known to obliterate FLAIR signal, so its output never leaves the registration step.

N4 (Tustison et al. 2010) is fitted on a shrunk copy of the image for speed; the fitted log bias
field (a B-spline) is then evaluated on the full-resolution grid and divided out, which is exact
for the smooth field rather than an upsampled approximation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

__all__ = ["otsu_head_mask", "n4_correct"]

#: minimum number of voxels kept along an axis by the shrink (smaller axes are shrunk less)
_MIN_SHRUNK_VOXELS = 8


def otsu_head_mask(img: sitk.Image) -> sitk.Image:
    """Foreground (head) mask by Otsu's threshold, restricted to positive voxels.

    Args:
        img: 3D image (any pixel type).

    Returns:
        uint8 mask on ``img``'s grid, 1 inside the head. If Otsu selects nothing (a constant
        image), every positive voxel.
    """
    img = sitk.Cast(img, sitk.sitkFloat32)
    mask = sitk.OtsuThreshold(img, 0, 1, 200)
    positive = sitk.Cast(img > 0, sitk.sitkUInt8)
    mask = sitk.And(sitk.Cast(mask, sitk.sitkUInt8), positive)
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        mask = positive
    return mask


def _shrink_factors(img: sitk.Image, shrink: int) -> list[int]:
    """Per-axis shrink factors: ``shrink``, reduced so that every axis keeps a few voxels."""
    return [max(1, min(int(shrink), n // _MIN_SHRUNK_VOXELS)) for n in img.GetSize()]


def n4_correct(
    img: sitk.Image,
    mask: sitk.Image | None = None,
    shrink: int = 4,
    iterations: Sequence[int] = (50, 50, 30, 20),
) -> sitk.Image:
    """N4 bias-field correction (for registration only, see the module docstring).

    Args:
        img: 3D MR image (intensities >= 0).
        mask: region in which the field is fitted (non-zero = inside), on ``img``'s grid;
            Otsu's head mask (:func:`otsu_head_mask`) when ``None``.
        shrink: shrink factor (voxels) of the grid the field is fitted on.
        iterations: maximum iterations per fitting level (one level per entry).

    Returns:
        float32 image on ``img``'s grid: ``img / exp(log_bias)``, with the log bias field fitted
        on the shrunk image and evaluated at full resolution.

    Raises:
        ValueError: if the mask selects no voxel with a positive intensity.
    """
    img = sitk.Cast(img, sitk.sitkFloat32)
    if mask is None:
        mask = otsu_head_mask(img)
    else:
        mask = sitk.And(sitk.Cast(mask != 0, sitk.sitkUInt8), sitk.Cast(img > 0, sitk.sitkUInt8))
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise ValueError("N4: the mask selects no voxel with a positive intensity")
    # N4 takes the log of the image: keep voxels outside the mask positive as well.
    positive = sitk.Maximum(img, 1e-6)
    factors = _shrink_factors(img, shrink)
    small = sitk.Shrink(positive, factors)
    small_mask = sitk.Shrink(mask, factors)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(n) for n in iterations])
    n4.Execute(small, small_mask)
    log_bias = n4.GetLogBiasFieldAsImage(img)
    return sitk.Cast(img / sitk.Exp(log_bias), sitk.sitkFloat32)
