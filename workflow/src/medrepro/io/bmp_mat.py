"""The cerebellum data's file formats: 8-bit grayscale BMP images and MATLAB ``.mat`` masks.

Ramos et al. 2020 (paper 004) ship grayscale bitmaps with binary MATLAB masks. Images are
``uint8 (H, W)`` arrays (rows = y, columns = x); masks are ``uint8 (H, W)`` with values 0/1,
stored as the single non-``__`` variable of a MATLAB v5 file (the original variable name is
unknown, so readers take whatever single variable there is).
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError
from scipy.io.matlab import MatReadError

from medrepro.io.atomic import atomic_path
from medrepro.io.errors import InputError

__all__ = ["MASK_VARIABLE", "read_bmp", "write_bmp", "read_mask_mat", "write_mask_mat"]

log = logging.getLogger(__name__)

#: variable name used when writing masks
MASK_VARIABLE = "mask"


def read_bmp(path: str | Path) -> np.ndarray:
    """Read an 8-bit grayscale image (BMP, or anything Pillow reads) as ``uint8 (H, W)``.

    A colour or 16-bit image is converted to 8-bit gray (Pillow's ``convert("L")``, ITU-R 601
    luma) and a note is logged.

    Raises:
        InputError: naming ``path`` if it is missing or not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "L":
                log.info("%s: %s image converted to 8-bit gray", path, img.mode)
                img = img.convert("L")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(path, f"unreadable image: {err}") from err
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(path, f"expected a non-empty 2D gray image, got shape {arr.shape}")
    return arr


def write_bmp(path: str | Path, image: np.ndarray) -> None:
    """Write ``uint8 (H, W)`` as an 8-bit grayscale BMP (mode ``"L"``), atomically.

    Raises:
        ValueError: ``image`` is not a 2D ``uint8`` array.
    """
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W), got {arr.dtype} {arr.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="BMP")


def _check_binary(arr: np.ndarray) -> str | None:
    """Return why ``arr`` is not a binary 2D mask, or None if it is."""
    if arr.ndim != 2:
        return f"mask must be 2D, got shape {arr.shape}"
    if arr.size == 0:
        return "mask is empty (size 0)"
    if arr.dtype == bool:
        return None
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        return f"mask must be numeric or logical, got dtype {arr.dtype}"
    values = np.unique(arr)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(f"{v:g}" for v in values[:6])
        return f"mask must be binary 0/1, found values {shown}{'...' if values.size > 6 else ''}"
    return None


def read_mask_mat(path: str | Path) -> np.ndarray:
    """Read the binary mask of a MATLAB ``.mat`` file as ``uint8 (H, W)`` with values 0/1.

    The file must hold exactly one variable whose name does not start with ``__``: a 2D logical or
    numeric array with values 0 and 1 only.

    Raises:
        InputError: naming ``path``: missing, unreadable (including MATLAB v7.3/HDF5), no or
            several variables, not 2D, or not binary.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "mask file not found")
    try:
        content = scipy.io.loadmat(path, appendmat=False)
    except NotImplementedError as err:  # scipy's answer to v7.3 (HDF5) files
        raise InputError(path, f"unsupported .mat version (save with -v7 or older): {err}") from err
    except (
        MatReadError,
        zlib.error,
        ValueError,
        TypeError,
        OSError,
        EOFError,
        KeyError,
        IndexError,
    ) as err:
        raise InputError(path, f"unreadable .mat file: {err}") from err
    names = sorted(k for k in content if not k.startswith("__"))
    if len(names) != 1:
        raise InputError(path, f"expected exactly one mask variable, found {names or 'none'}")
    arr = np.asarray(content[names[0]])
    problem = _check_binary(arr)
    if problem is not None:
        raise InputError(path, f"variable {names[0]!r}: {problem}")
    return arr.astype(np.uint8)


def write_mask_mat(path: str | Path, mask: np.ndarray, name: str = MASK_VARIABLE) -> None:
    """Write a binary ``(H, W)`` mask as ``uint8`` variable ``name`` of a compressed MATLAB v5 file.

    Raises:
        ValueError: ``mask`` is not a 2D binary array.
    """
    arr = np.asarray(mask)
    problem = _check_binary(arr)
    if problem is not None:
        raise ValueError(problem)
    with atomic_path(path) as tmp:
        scipy.io.savemat(
            tmp, {name: arr.astype(np.uint8)}, appendmat=False, format="5", do_compression=True
        )
