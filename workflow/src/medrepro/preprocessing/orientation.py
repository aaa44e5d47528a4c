"""Reorientation of images to an anatomical axis code (``LPS`` by default).

Reorientation only permutes and flips the voxel axes; every voxel keeps its physical position,
so landmarks given in physical millimetres stay valid.
"""

from __future__ import annotations

import SimpleITK as sitk

__all__ = ["reorient", "orientation_code", "check_code"]

_PAIRS = ("LR", "PA", "IS")


def check_code(code: str) -> str:
    """Validate a three-letter orientation code such as ``LPS`` or ``RAS``.

    Args:
        code: one letter per voxel axis from ``L/R``, ``P/A`` and ``I/S``, each pair used once;
            the letter names the direction in which the index increases (ITK/DICOM convention).

    Returns:
        The code in upper case.

    Raises:
        ValueError: if the code is not a valid permutation of the three anatomical axes.
    """
    upper = code.upper()
    used = sorted(i for letter in upper for i, pair in enumerate(_PAIRS) if letter in pair)
    if len(upper) != 3 or used != [0, 1, 2]:
        raise ValueError(f"invalid orientation code {code!r}: need one of L/R, P/A, I/S each")
    return upper


def orientation_code(img: sitk.Image) -> str:
    """Orientation code of a 3D image, e.g. ``LPS`` or ``RAS`` (closest one for oblique images).

    Args:
        img: 3D image.

    Returns:
        Three letters: the anatomical direction of increasing index along x, y and z.
    """
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())


def reorient(img: sitk.Image, code: str = "LPS") -> sitk.Image:
    """Permute and flip the voxel axes of ``img`` so that its orientation becomes ``code``.

    Args:
        img: 3D image in any axis-aligned (or oblique) orientation.
        code: target orientation code (default ``LPS``, the ITK/DICOM patient frame).

    Returns:
        The same physical image with axes permuted and flipped; no interpolation happens.
        For oblique images the closest code is reached and the residual rotation is kept
        in the direction matrix.
    """
    code = check_code(code)
    if orientation_code(img) == code:
        return img
    return sitk.DICOMOrient(img, code)
