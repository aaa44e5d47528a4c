"""Stage ``brain-atlas``: the registration atlas (T1 with skull + brain mask) on an SRI24-like grid.

The atlas is the MNI152 2009 symmetric T1 template shipped in the nilearn wheel (skull-stripped,
1 mm, RAS) with a synthetic skull and scalp added by the phantom generator's shell model at its
mean parameters (:func:`medrepro.phantoms.brain_mri.head_tissues`), resampled onto an SRI24-like
grid: 240 x 240 x 155 mm field of view, LPS, isotropic spacing, centred on the template's brain
centre (the centre of the brain mask's bounding box). A user's real atlas (e.g. SRI24) given as
T1 + mask files is resampled onto the same kind of grid instead.

nibabel gives RAS affines and SimpleITK works in LPS: the conversion negates the first two rows
of the affine (x_LPS = -x_RAS, y_LPS = -y_RAS).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medrepro.io.atomic import atomic_dir
from medrepro.io.images import read_image
from medrepro.preprocessing.geometry import Grid, grid_from_centre, index_to_mm
from medrepro.preprocessing.orientation import reorient
from medrepro.preprocessing.resampling import resample_onto

__all__ = [
    "SRI24_FOV_MM",
    "MNI152",
    "nifti_to_sitk",
    "load_mni152",
    "mask_centre_mm",
    "sri24_like_grid",
    "build_atlas",
    "atlas_from_files",
    "main",
]

log = logging.getLogger(__name__)

#: Field of view (mm) of the SRI24 atlas grid, 240 x 240 x 155 voxels at 1 mm.
SRI24_FOV_MM: tuple[float, float, float] = (240.0, 240.0, 155.0)


@dataclass(frozen=True)
class MNI152:
    """The nilearn MNI152 2009 template as LPS SimpleITK images on its 1 mm grid.

    Attributes:
        t1: T1 template, float32, 0..1, skull-stripped.
        mask: brain mask (template > 0.2), uint8 0/1.
        gm: grey-matter probability, float32 0..1.
        wm: white-matter probability, float32 0..1.
    """

    t1: sitk.Image
    mask: sitk.Image
    gm: sitk.Image
    wm: sitk.Image


def nifti_to_sitk(
    img: nib.spatialimages.SpatialImage, pixel_type: int = sitk.sitkFloat32
) -> sitk.Image:
    """Convert a nibabel 3D image (RAS affine) to a SimpleITK image (LPS geometry).

    Args:
        img: nibabel image with a 4x4 voxel-to-RAS affine.
        pixel_type: SimpleITK pixel type of the result.

    Returns:
        The same voxels with origin, spacing and direction in LPS mm, reoriented to LPS voxel
        order (identity direction for axis-aligned images).
    """
    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D image, got shape {data.shape}")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(img.affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    out = sitk.Cast(out, pixel_type)
    out.SetSpacing([float(s) for s in spacing])
    out.SetOrigin([float(v) for v in lps[:3, 3]])
    out.SetDirection([float(v) for v in (lps[:3, :3] / spacing[None, :]).ravel()])
    return reorient(out, "LPS")


@functools.lru_cache(maxsize=2)
def _mni152_arrays(resolution: int) -> tuple[tuple[np.ndarray, ...], tuple[tuple[float, ...], ...]]:
    """Cached ``(Z, Y, X)`` arrays and geometry of the four template images."""
    from nilearn import datasets  # slow import (~2 s): only when needed

    loaders = (
        (datasets.load_mni152_template, sitk.sitkFloat32),
        (datasets.load_mni152_brain_mask, sitk.sitkUInt8),
        (datasets.load_mni152_gm_template, sitk.sitkFloat32),
        (datasets.load_mni152_wm_template, sitk.sitkFloat32),
    )
    images = [nifti_to_sitk(load(resolution=resolution), ptype) for load, ptype in loaders]
    geometry = (images[0].GetOrigin(), images[0].GetSpacing(), images[0].GetDirection())
    return tuple(sitk.GetArrayFromImage(i) for i in images), geometry


def load_mni152(resolution: int = 1) -> MNI152:
    """The nilearn MNI152 template, brain mask and GM/WM maps as LPS SimpleITK images.

    Uses only files shipped in the nilearn wheel (no download). Loaded once per process.

    Args:
        resolution: 1 or 2 (mm).

    Returns:
        Fresh images (safe to modify) sharing one LPS 1 mm (or 2 mm) grid.
    """
    arrays, (origin, spacing, direction) = _mni152_arrays(int(resolution))
    out = []
    for arr in arrays:
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin(origin)
        img.SetSpacing(spacing)
        img.SetDirection(direction)
        out.append(img)
    return MNI152(*out)


def mask_centre_mm(mask: sitk.Image) -> np.ndarray:
    """Centre (LPS mm) of the bounding box of the non-zero voxels of ``mask``, ``(3,)``."""
    arr = sitk.GetArrayViewFromImage(mask)
    idx = np.argwhere(arr > 0)
    if idx.size == 0:
        raise ValueError("empty mask")
    centre_zyx = (idx.min(axis=0) + idx.max(axis=0)) / 2.0
    return index_to_mm(Grid.of(mask), centre_zyx[::-1])


def sri24_like_grid(spacing_mm: float, centre_mm: np.ndarray | None = None) -> Grid:
    """SRI24-like atlas grid: 240 x 240 x 155 mm field of view, LPS, isotropic ``spacing_mm``.

    Args:
        spacing_mm: voxel size in mm (1 mm gives the 240 x 240 x 155 SRI24 matrix).
        centre_mm: ``(3,)`` LPS centre of the grid; the MNI152 brain centre when ``None``.

    Returns:
        The grid: identity direction, ``size = round(FOV / spacing)`` voxels.
    """
    if spacing_mm <= 0:
        raise ValueError(f"spacing_mm must be > 0, got {spacing_mm}")
    if centre_mm is None:
        centre_mm = mask_centre_mm(load_mni152().mask)
    size = np.maximum(np.round(np.asarray(SRI24_FOV_MM) / spacing_mm), 1).astype(np.int64)
    return grid_from_centre(centre_mm, np.full(3, float(spacing_mm)), size)


def _binarise(img: sitk.Image) -> sitk.Image:
    return sitk.Cast(sitk.BinaryThreshold(img, 0.5, 1e30, 1, 0), sitk.sitkUInt8)


def build_atlas(spacing_mm: float) -> tuple[sitk.Image, sitk.Image]:
    """MNI152 T1 with a synthetic skull and scalp, and its brain mask, on the SRI24-like grid.

    Inside the brain the atlas is the real template (0..1, WM about 0.87); outside, the shell
    tissues of :func:`medrepro.phantoms.brain_mri.head_tissues` at mean parameters get T1
    intensities on the template's scale (the phantom table's WM value 0.80 maps to the template's
    WM median).

    Args:
        spacing_mm: isotropic atlas voxel size in mm.

    Returns:
        ``(atlas_t1 float32, atlas_mask uint8 0/1)`` on ``sri24_like_grid(spacing_mm)``.
    """
    from medrepro.phantoms import brain_mri  # lazy: brain_mri imports this module

    mni = load_mni152()
    grid = sri24_like_grid(spacing_mm, mask_centre_mm(mni.mask))
    # Shells on a 1 mm canvas around the brain (room below the template's cut), then one
    # resampling onto the atlas grid.
    canvas = brain_mri.canvas_grid(mni, 1.0)
    tissues = brain_mri.head_tissues(
        mni, canvas, brain_mri.ShellParams.mean(), deformation=None, tumour=None
    )
    t1 = sitk.GetArrayFromImage(resample_onto(mni.t1, canvas, antialias=False))
    wm = sitk.GetArrayFromImage(mni.wm)
    template = sitk.GetArrayViewFromImage(mni.t1)
    scale = float(np.median(template[wm > 0.9])) / brain_mri.TISSUE_INTENSITY["wm"][0]
    outside = brain_mri.shell_intensity(tissues, "t1") * scale
    composed = (t1 * tissues["brain"] + outside).astype(np.float32)
    atlas_src = sitk.GetImageFromArray(composed)
    atlas_src.SetOrigin([float(v) for v in canvas.origin])
    atlas_src.SetSpacing([float(v) for v in canvas.spacing])
    atlas_t1 = resample_onto(atlas_src, grid)
    atlas_mask = _binarise(resample_onto(mni.mask, grid, antialias=False))
    return atlas_t1, atlas_mask


def atlas_from_files(
    t1_path: str | Path, mask_path: str | Path, spacing_mm: float
) -> tuple[sitk.Image, sitk.Image]:
    """A user's atlas (e.g. SRI24 T1 + brain mask) resampled onto an SRI24-like grid.

    Args:
        t1_path: atlas T1 image (NIfTI or any SimpleITK format, with skull).
        mask_path: its brain mask (non-zero = brain), same physical space.
        spacing_mm: isotropic output voxel size in mm.

    Returns:
        ``(atlas_t1 float32, atlas_mask uint8 0/1)`` on a 240 x 240 x 155 mm LPS grid centred on
        the mask's bounding-box centre.

    Raises:
        InputError: unreadable files, or an empty mask.
    """
    from medrepro.io.errors import InputError

    t1 = read_image(t1_path)
    mask = read_image(mask_path)
    binary = sitk.Cast(sitk.BinaryThreshold(mask, 0.5, 1e30, 1, 0), sitk.sitkUInt8)
    if not np.any(sitk.GetArrayViewFromImage(binary)):
        raise InputError(mask_path, "atlas mask is empty (no voxel >= 0.5)")
    grid = sri24_like_grid(spacing_mm, mask_centre_mm(binary))
    atlas_t1 = resample_onto(t1, grid, default_value=float(np.min(sitk.GetArrayViewFromImage(t1))))
    atlas_mask = _binarise(resample_onto(binary, grid, antialias=False))
    if not np.any(sitk.GetArrayViewFromImage(atlas_mask)):
        raise InputError(mask_path, "atlas mask does not overlap the atlas grid")
    return atlas_t1, atlas_mask


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro brain-atlas",
        description="Write atlas_t1.nii.gz and atlas_mask.nii.gz on an SRI24-like LPS grid.",
    )
    parser.add_argument("--out-dir", required=True, help="output directory (replaced)")
    parser.add_argument("--spacing-mm", type=float, required=True, help="isotropic voxel size")
    parser.add_argument("--atlas", default=None, help="a real atlas T1 (default: MNI152 + shells)")
    parser.add_argument("--atlas-mask", default=None, help="brain mask of --atlas")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    if args.spacing_mm <= 0:
        raise SystemExit("error: --spacing-mm must be > 0")
    if (args.atlas is None) != (args.atlas_mask is None):
        raise SystemExit("error: --atlas and --atlas-mask go together")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    if args.atlas is None:
        t1, mask = build_atlas(args.spacing_mm)
    else:
        t1, mask = atlas_from_files(args.atlas, args.atlas_mask, args.spacing_mm)
    with atomic_dir(args.out_dir) as tmp:
        sitk.WriteImage(sitk.Cast(t1, sitk.sitkFloat32), str(tmp / "atlas_t1.nii.gz"), True)
        sitk.WriteImage(sitk.Cast(mask, sitk.sitkUInt8), str(tmp / "atlas_mask.nii.gz"), True)
    log.info(
        "atlas %s at %.2f mm written to %s in %.1f s",
        "x".join(map(str, t1.GetSize())),
        args.spacing_mm,
        args.out_dir,
        time.perf_counter() - start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
