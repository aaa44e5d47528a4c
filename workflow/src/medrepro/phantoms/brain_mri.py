"""Synthetic multi-contrast brain MRI (T1, T1Gd, T2, FLAIR) built on the MNI152 anatomy.

Anatomy (head frame = MNI152 LPS millimetres, on a *canvas* grid around the brain):

- **Brain**: the nilearn MNI152 GM/WM probability maps and brain mask, warped by a smooth random
  deformation (per-axis scaling +-6 % about the brain centre plus a cubic-interpolated random
  displacement on a 40 mm control lattice, a few mm), so no two brains are the same. CSF inside
  the brain is ``mask - GM - WM`` clipped at 0 (ventricles, sulci).
- **Shells** outside the brain, from a signed distance (mm) to a smoothed brain hull (the mask
  blurred by 3 mm and thresholded, which bridges sulci), computed with an EDT on a 2 mm grid and
  interpolated: external CSF 1-3 mm, dura 1 mm, skull 4-7 mm (dark inner and outer tables
  around bright diploic marrow), scalp 4-6 mm (fat, bright on T1, then skin). A superior sagittal
  sinus runs in the dura/CSF layer along the midline. Partial volume: a layer's fraction is
  ``clip((b - sd) / voxel + 0.5, 0, 1)`` differences, as in ``head_ct``. The bottom of the
  template (the brainstem cut) is capped by the same shells.
- **Tumour** (part of the subjects): an ellipsoid of 10-35 mm diameter placed deep in the brain,
  necrotic core, enhancing rim 2-5 mm, oedema 5-20 mm beyond it (skewed towards one side, in
  white matter mostly), bright on T2/FLAIR. The brain mask includes tumour and oedema.

Intensities (``TISSUE_INTENSITY``, ``/work/shared/reference/data.md``) are relative (WM T1 = 0.80)
and scaled per subject and modality to the 0-4095 range with a few % tissue variation; T1Gd = T1
plus enhancement of dura, sinus and tumour rim.

Acquisition, per modality: the head is placed in the scanner with a random rigid pose (shared)
plus a small inter-scan motion (<= 3 deg, <= 3 mm; none for the reference T1Gd), sampled once
(linear interpolation) on an LPS scanner grid of isotropic spacing ``s``; T2/FLAIR of part of the
subjects are thick-slice (``k * s``, ``k`` = 3..6) as the box average of ``k`` thin slices;
multiplicative smooth bias field (range within 0.7-1.3), Rician noise (1-5 % of the modality's WM
intensity), clipping to 0-4095, int16 storage, then reorientation to a storage code (``RAS``,
``PIR``...) with a consistent affine. The ground-truth mask (brain + tumour + oedema) follows the
same deformation and T1Gd pose onto the T1Gd grid (linear on the fraction, >= 0.5).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from pydicom.uid import generate_uid
from scipy import ndimage
from scipy.spatial.transform import Rotation

from medrepro.io.atomic import write_csv
from medrepro.io.dicom import write_dicom_series
from medrepro.phantoms.brain_atlas import MNI152, load_mni152, mask_centre_mm
from medrepro.preprocessing.geometry import Grid, centre_mm, grid_from_centre, index_to_mm
from medrepro.preprocessing.resampling import (
    antialias_sigmas,
    resample_onto,
    smooth_for_downsampling,
)

__all__ = [
    "MODALITIES",
    "REFERENCE",
    "TISSUE_INTENSITY",
    "ENHANCEMENT",
    "ORIENTATIONS",
    "DICOM_ORIENTATIONS",
    "ShellParams",
    "TumourParams",
    "DeformationParams",
    "SubjectParams",
    "smoothed_template",
    "canvas_grid",
    "array_image",
    "bias_field",
    "brain_centre",
    "occupancy",
    "scanner_to_head",
    "tumour_fractions",
    "deformation_transform",
    "head_tissues",
    "shell_intensity",
    "modality_values",
    "sample_subject",
    "render_subject",
    "generate_cohort",
]

log = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
#: The reference modality: its grid carries the ground-truth mask.
REFERENCE = "t1ce"

#: Relative intensity of each tissue in (T1, T2, FLAIR); WM T1 = 0.80 (data.md table + choices).
TISSUE_INTENSITY: dict[str, tuple[float, float, float]] = {
    "csf": (0.15, 1.00, 0.05),
    "gm": (0.55, 0.55, 0.60),
    "wm": (0.80, 0.40, 0.45),
    "fat": (0.90, 0.60, 0.65),
    "marrow": (0.85, 0.55, 0.60),
    "skull": (0.05, 0.05, 0.05),
    "skin": (0.45, 0.35, 0.40),
    "dura": (0.30, 0.30, 0.30),
    "sinus": (0.25, 0.20, 0.20),
    "necrosis": (0.25, 0.95, 0.35),
    "rim": (0.50, 0.70, 0.75),
    "oedema": (0.45, 0.85, 0.95),
}
#: Extra T1Gd intensity (relative) of enhancing tissues.
ENHANCEMENT: dict[str, float] = {"dura": 0.30, "sinus": 0.60, "rim": 0.50}
_COLUMN = {"t1": 0, "t1ce": 0, "t2": 1, "flair": 2}

#: Storage orientations of NIfTI subjects.
ORIENTATIONS: tuple[str, ...] = ("LPS", "RAS", "LAS", "LPI", "RPI", "LAI", "PIR", "ASL")
#: Storage orientations of DICOM subjects: right-handed, slices along S/I (read back unchanged).
DICOM_ORIENTATIONS: tuple[str, ...] = ("LPS", "RAS", "RPI", "LAI")

_CANVAS_MARGIN_MM = 25.0
_HULL_SIGMA_MM = 3.0
_HULL_LEVEL = 0.3
_FOV_MM = (224.0, 240.0, 224.0)
_COARSE_MM = 2.0
_MAX_VALUE = 4095.0
_CONTROL_SPACING_MM = 40.0
_CONTROL_POINTS = 8
_FIELD_SPACING_MM = 8.0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class ShellParams:
    """Thicknesses (mm) of the tissue shells outside the brain."""

    csf_mm: float
    skull_mm: float
    marrow_fraction: float
    scalp_mm: float
    scalp_fat_fraction: float
    dura_mm: float = 1.0

    @classmethod
    def mean(cls) -> ShellParams:
        """Mean parameters (used for the atlas)."""
        return cls(
            csf_mm=2.0, skull_mm=5.5, marrow_fraction=0.4, scalp_mm=5.0, scalp_fat_fraction=0.6
        )

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ShellParams:
        """CSF 1-3 mm, skull 4-7 mm (30-50 % marrow), scalp 4-6 mm (50-70 % fat)."""
        return cls(
            csf_mm=float(rng.uniform(1.0, 3.0)),
            skull_mm=float(rng.uniform(4.0, 7.0)),
            marrow_fraction=float(rng.uniform(0.3, 0.5)),
            scalp_mm=float(rng.uniform(4.0, 6.0)),
            scalp_fat_fraction=float(rng.uniform(0.5, 0.7)),
        )

    def layers(self) -> list[tuple[str, float]]:
        """``(tissue, thickness mm)`` from the brain hull outwards."""
        table = self.skull_mm * (1.0 - self.marrow_fraction) / 2.0
        return [
            ("csf", self.csf_mm),
            ("dura", self.dura_mm),
            ("skull", table),
            ("marrow", self.skull_mm * self.marrow_fraction),
            ("skull", table),
            ("fat", self.scalp_mm * self.scalp_fat_fraction),
            ("skin", self.scalp_mm * (1.0 - self.scalp_fat_fraction)),
        ]


@dataclass(frozen=True)
class TumourParams:
    """An ellipsoidal tumour; placed by :func:`head_tissues` deep inside the (deformed) brain.

    Attributes:
        radii_mm: ``(3,)`` semi-axes in mm.
        rotation: ``(3, 3)`` orientation of the semi-axes (columns).
        rim_mm: enhancing rim thickness (mm); the necrotic core is the rest.
        oedema_mm: oedema extent beyond the tumour surface (mm).
        oedema_axis: ``(3,)`` unit vector; oedema reaches ``1 + skew`` times further that way.
        oedema_skew: 0..0.5.
        placement: 0..1, picks the centre among admissible deep voxels.
    """

    radii_mm: np.ndarray
    rotation: np.ndarray
    rim_mm: float
    oedema_mm: float
    oedema_axis: np.ndarray
    oedema_skew: float
    placement: float

    @property
    def radius_mm(self) -> float:
        """Mean semi-axis (mm)."""
        return float(np.mean(self.radii_mm))

    @classmethod
    def sample(cls, rng: np.random.Generator) -> TumourParams:
        """Diameter 10-35 mm (+-20 % per axis), rim 2-5 mm, oedema 5-20 mm."""
        radius = rng.uniform(5.0, 17.5)
        radii = radius * rng.uniform(0.8, 1.2, size=3)
        axis = rng.normal(size=3)
        return cls(
            radii_mm=radii,
            rotation=Rotation.random(random_state=rng).as_matrix(),
            rim_mm=float(min(rng.uniform(2.0, 5.0), 0.6 * radii.min())),
            oedema_mm=float(rng.uniform(5.0, 20.0)),
            oedema_axis=axis / np.linalg.norm(axis),
            oedema_skew=float(rng.uniform(0.0, 0.5)),
            placement=float(rng.uniform()),
        )


@dataclass(frozen=True)
class DeformationParams:
    """Smooth random warp of the template: per-axis scale and a coarse random displacement.

    Attributes:
        scale: ``(3,)`` size factors of the subject's head relative to the template.
        control_mm: ``(P, P, P, 3)`` displacements (mm) on a 40 mm lattice centred on the brain
            (``(x, y, z)`` index order), interpolated with cubic splines.
    """

    scale: np.ndarray
    control_mm: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator) -> DeformationParams:
        """Scale 0.94-1.06 per axis, control displacements N(0, 1.5-3.5 mm)."""
        amplitude = rng.uniform(1.5, 3.5)
        shape = (_CONTROL_POINTS,) * 3 + (3,)
        return cls(
            scale=rng.uniform(0.94, 1.06, size=3), control_mm=rng.normal(0, amplitude, shape)
        )


@dataclass(frozen=True)
class SubjectParams:
    """Everything random about one subject (drawn by :func:`sample_subject`)."""

    subject_id: str
    shells: ShellParams
    deformation: DeformationParams
    tumour: TumourParams | None
    rotation: dict[str, np.ndarray]  # modality -> (3, 3), scanner <- head
    translation_mm: dict[str, np.ndarray]  # modality -> (3,)
    values: dict[str, dict[str, float]]  # modality -> tissue -> intensity (0-4095 scale)
    noise_fraction: float
    bias_range: tuple[float, float]
    bias_coefficients: dict[str, np.ndarray]  # modality -> (10,)
    thick_factor: int  # 1 = no thick slices; else T2/FLAIR slice spacing = k * s
    orientation: str
    storage: str  # "nifti" | "dicom"
    noise_seed: int
    pose_rotation_deg: float = field(default=0.0)
    pose_translation_mm: float = field(default=0.0)


# --------------------------------------------------------------------------------------------
# anatomy on the canvas


@lru_cache(maxsize=4)
def smoothed_template(spacing_mm: float) -> MNI152:
    """The MNI152 mask and GM/WM maps (float32) pre-smoothed for sampling at ``spacing_mm``.

    The anti-aliasing Gaussian of ``medrepro.preprocessing.resampling`` is applied once per
    spacing instead of once per subject (cached); ``t1`` is left as is (unused by the
    phantoms). The returned images must not be modified.
    """
    mni = load_mni152()
    sigmas = antialias_sigmas(Grid.of(mni.t1), np.full(3, float(spacing_mm)))
    gm, wm, mask = (smooth_for_downsampling(img, sigmas) for img in (mni.gm, mni.wm, mni.mask))
    return MNI152(t1=mni.t1, mask=mask, gm=gm, wm=wm)


@lru_cache(maxsize=1)
def brain_centre() -> np.ndarray:
    """Centre (LPS mm) of the MNI152 brain mask's bounding box."""
    return mask_centre_mm(load_mni152().mask)


def canvas_grid(mni: MNI152, spacing_mm: float, margin_mm: float = _CANVAS_MARGIN_MM) -> Grid:
    """LPS grid of ``spacing_mm`` covering the template brain's bounding box plus ``margin_mm``."""
    arr = sitk.GetArrayViewFromImage(mni.mask)
    idx = np.argwhere(arr >= 0.5)[:, ::-1]  # (x, y, z)
    lo = index_to_mm(Grid.of(mni.mask), idx.min(axis=0))
    hi = index_to_mm(Grid.of(mni.mask), idx.max(axis=0))
    extent = (hi - lo) + 2.0 * margin_mm
    size = np.ceil(extent / spacing_mm).astype(np.int64) + 1
    return grid_from_centre((lo + hi) / 2.0, np.full(3, float(spacing_mm)), size)


def deformation_transform(params: DeformationParams, centre: np.ndarray) -> sitk.Transform:
    """Transform mapping head-frame points (mm) to template points: ``c + (p - c) / scale + u(p)``.

    Args:
        params: the random warp.
        centre: ``(3,)`` brain centre (mm) about which the scaling acts.

    Returns:
        A ``sitk.DisplacementFieldTransform`` on an 8 mm field (zero outside its 280 mm box).
    """
    box = _CONTROL_SPACING_MM * (_CONTROL_POINTS - 1)
    n = int(round(box / _FIELD_SPACING_MM)) + 1
    zoom = n / _CONTROL_POINTS  # output shape n, end points aligned
    coords = (np.arange(n) - (n - 1) / 2.0) * _FIELD_SPACING_MM  # offsets from the centre
    field_xyz = np.empty((n, n, n, 3), dtype=np.float64)
    for axis in range(3):
        smooth = ndimage.zoom(params.control_mm[..., axis], zoom, order=3, mode="nearest")
        shape = [1, 1, 1]
        shape[axis] = n
        linear = (1.0 / params.scale[axis] - 1.0) * coords.reshape(shape)
        field_xyz[..., axis] = smooth + linear
    img = sitk.GetImageFromArray(
        np.ascontiguousarray(field_xyz.transpose(2, 1, 0, 3)), isVector=True
    )
    img.SetSpacing([_FIELD_SPACING_MM] * 3)
    img.SetOrigin([float(c - box / 2.0) for c in centre])
    return sitk.DisplacementFieldTransform(img)


def occupancy(sd: np.ndarray, boundary: float, voxel: float) -> np.ndarray:
    """Partial-volume fraction of ``sd < boundary`` for voxels of size ``voxel`` (mm)."""
    return np.clip((boundary - sd) / voxel + 0.5, 0.0, 1.0).astype(np.float32)


def _coarse_distances(brain: sitk.Image, coarse: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm) to the brain hull and depth (mm) inside the brain on ``coarse``.

    Returns:
        ``(hull_sd, depth)`` arrays ``(Z, Y, X)`` on ``coarse``.
    """
    frac = sitk.GetArrayFromImage(resample_onto(brain, coarse))
    c = float(coarse.spacing[0])
    inside = frac >= 0.5
    hull = (ndimage.gaussian_filter(frac, _HULL_SIGMA_MM / c) > _HULL_LEVEL) | inside
    hull = ndimage.binary_fill_holes(hull)
    outside = ndimage.distance_transform_edt(~hull, sampling=c)
    hull_sd = np.where(hull, -c / 2.0, outside - c / 2.0).astype(np.float32)
    depth = ndimage.distance_transform_edt(inside, sampling=c).astype(np.float32)
    return hull_sd, depth


def array_image(arr: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr, dtype=np.float32))
    img.SetOrigin([float(v) for v in grid.origin])
    img.SetSpacing([float(v) for v in grid.spacing])
    img.SetDirection([float(v) for v in grid.direction.ravel()])
    return img


def _tumour_centre(depth: np.ndarray, coarse: Grid, tumour: TumourParams) -> np.ndarray:
    """A deep brain point (mm): depth >= largest semi-axis + 3 mm, chosen by ``placement``."""
    need = float(np.max(tumour.radii_mm)) + 3.0
    candidates = np.argwhere(depth >= need)
    if len(candidates) == 0:
        candidates = np.argwhere(depth >= depth.max() - 1e-3)
    pick = candidates[min(int(tumour.placement * len(candidates)), len(candidates) - 1)]
    return index_to_mm(coarse, pick[::-1].astype(np.float64))


def tumour_fractions(
    grid: Grid, centre: np.ndarray, tumour: TumourParams
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Core, necrosis and oedema-envelope fractions in a sub-block of ``grid`` (``(Z, Y, X)``)."""
    w = float(grid.spacing[0])
    reach = float(np.max(tumour.radii_mm)) + tumour.oedema_mm * (1 + tumour.oedema_skew) + 2 * w
    lo = np.floor((centre - reach - grid.origin) / grid.spacing).astype(int)
    hi = np.ceil((centre + reach - grid.origin) / grid.spacing).astype(int) + 1
    lo, hi = np.clip(lo, 0, grid.size), np.clip(hi, 0, grid.size)
    axes = [
        grid.origin[a] + grid.spacing[a] * np.arange(lo[a], hi[a]) - centre[a] for a in range(3)
    ]
    pz, py, px = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    offset = np.stack([px, py, pz], axis=-1)  # (Z, Y, X, 3) mm from the centre
    local = offset @ tumour.rotation  # coordinates along the semi-axes
    q = local / tumour.radii_mm
    rho = np.linalg.norm(q, axis=-1)
    grad = np.linalg.norm(q / tumour.radii_mm, axis=-1)
    sd = (rho - 1.0) * rho / np.maximum(grad, 1e-6)  # first-order signed distance (mm)
    # At the centre itself (rho = 0) the first-order form gives 0: the distance is -radius there.
    sd = np.where(rho < 1e-6, -float(np.min(tumour.radii_mm)), sd)
    direction = offset / np.maximum(np.linalg.norm(offset, axis=-1, keepdims=True), 1e-6)
    reach_oedema = tumour.oedema_mm * (1.0 + tumour.oedema_skew * (direction @ tumour.oedema_axis))
    core = occupancy(sd, 0.0, w)
    necrosis = occupancy(sd, -tumour.rim_mm, w)
    envelope = occupancy(sd - reach_oedema, 0.0, w)
    block = tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
    return block, core, necrosis, envelope


def head_tissues(
    mni: MNI152,
    grid: Grid,
    shells: ShellParams,
    *,
    deformation: sitk.Transform | None,
    tumour: TumourParams | None,
    antialias: bool = True,
) -> dict[str, np.ndarray]:
    """Tissue fractions of a head on ``grid`` (head frame, LPS mm).

    Args:
        mni: the template (:func:`medrepro.phantoms.brain_atlas.load_mni152`).
        grid: canvas geometry (see :func:`canvas_grid`), isotropic.
        shells: shell thicknesses.
        deformation: head -> template transform (:func:`deformation_transform`) or ``None``.
        tumour: tumour parameters or ``None``.
        antialias: smooth the template before sampling it on a coarser grid (``False`` when
            ``mni`` is already smoothed, see :func:`smoothed_template`).

    Returns:
        Float32 ``(Z, Y, X)`` arrays: fractions ``gm, wm, csf`` (inside the brain), ``necrosis,
        rim, oedema``, ``csf_out, dura, sinus, skull, marrow, fat, skin`` (outside the brain),
        which sum to at most 1 (the rest is air); ``brain`` is the ground-truth brain fraction
        (brain + tumour + oedema); ``tumour_centre`` (``(3,)`` mm, NaN without tumour).
    """
    w = float(grid.spacing[0])
    bf, gm, wm = (
        sitk.GetArrayFromImage(resample_onto(img, grid, transform=deformation, antialias=antialias))
        for img in (mni.mask, mni.gm, mni.wm)
    )
    np.clip(bf, 0.0, 1.0, out=bf)
    gm = np.minimum(np.clip(gm, 0.0, 1.0), bf)
    wm = np.minimum(np.clip(wm, 0.0, 1.0), bf - gm)
    csf = bf - gm - wm
    # distances on a fixed 2 mm grid (the tumour site does not depend on the spacing)
    coarse = canvas_grid(mni, _COARSE_MM)
    hull_sd, depth = _coarse_distances(array_image(bf, grid), coarse)
    sd = sitk.GetArrayFromImage(
        resample_onto(array_image(hull_sd, coarse), grid, antialias=False, default_value=1e3)
    )
    out: dict[str, np.ndarray] = {k: np.zeros_like(bf) for k in ("necrosis", "rim", "oedema")}
    brain = bf.copy()
    centre = np.full(3, np.nan)
    if tumour is not None:
        centre = _tumour_centre(depth, coarse, tumour)
        block, core, necrosis, envelope = tumour_fractions(grid, centre, tumour)
        oed = np.clip(envelope - core, 0.0, 1.0)
        g, wmb, cb = gm[block], wm[block], csf[block]
        # oedema replaces all WM, 60 % of GM and 20 % of CSF in its zone; the core replaces all
        out["oedema"][block] = oed * (wmb + 0.6 * g + 0.2 * cb)
        out["necrosis"][block] = necrosis
        out["rim"][block] = core - necrosis
        gm[block] = g * (1 - core - 0.6 * oed)
        wm[block] = wmb * (1 - core - oed)
        csf[block] = cb * (1 - core - 0.2 * oed)
        brain[block] = np.maximum(brain[block], core)
    out.update(gm=gm, wm=wm, csf=csf, brain=brain)
    # shells outside the brain
    outside = 1.0 - brain
    for name in ("csf_out", "dura", "sinus", "skull", "marrow", "fat", "skin"):
        out[name] = np.zeros_like(bf)
    bound, previous = 0.0, np.zeros_like(bf)
    for tissue, thickness in shells.layers():
        bound += thickness
        occ = occupancy(sd, bound, w)
        out["csf_out" if tissue == "csf" else tissue] += (occ - previous) * outside
        previous = occ
    # superior sagittal sinus: part of the CSF + dura layers near the midline, upper half
    xs = grid.origin[0] + grid.spacing[0] * np.arange(grid.size[0])
    zs = grid.origin[2] + grid.spacing[2] * np.arange(grid.size[2])
    mid = np.exp(-0.5 * (xs / 3.0) ** 2)[None, None, :]
    upper = (1.0 / (1.0 + np.exp(-(zs - centre_mm(grid)[2]) / 5.0)))[:, None, None]
    share = (0.8 * mid * upper).astype(np.float32)
    moved_csf, moved_dura = out["csf_out"] * share, out["dura"] * share
    out["csf_out"] -= moved_csf
    out["dura"] -= moved_dura
    out["sinus"] = moved_csf + moved_dura
    out["tumour_centre"] = centre
    return out


_INSIDE = ("gm", "wm", "csf", "necrosis", "rim", "oedema")
_OUTSIDE = {
    "csf_out": "csf",
    "dura": "dura",
    "sinus": "sinus",
    "skull": "skull",
    "marrow": "marrow",
    "fat": "fat",
    "skin": "skin",
}


def modality_values(
    modality: str, scale: float = 1.0, variation: dict[str, float] | None = None
) -> dict[str, float]:
    """Intensity of every tissue in ``modality`` (T1Gd = T1 + enhancement), times ``scale``.

    Args:
        modality: one of :data:`MODALITIES`.
        scale: intensity of relative value 1.0.
        variation: optional per-tissue factors (e.g. 1 +- a few %).

    Returns:
        ``{tissue: intensity}`` for every tissue of :data:`TISSUE_INTENSITY`.
    """
    column = _COLUMN[modality]
    values = {}
    for tissue, row in TISSUE_INTENSITY.items():
        v = row[column] * (variation or {}).get(tissue, 1.0)
        if modality == "t1ce":
            v += ENHANCEMENT.get(tissue, 0.0)
        values[tissue] = v * scale
    return values


def _compose(
    tissues: dict[str, np.ndarray], values: dict[str, float], names: dict[str, str]
) -> np.ndarray:
    total = np.zeros_like(tissues["brain"])
    for key, tissue in names.items():
        total += tissues[key] * np.float32(values[tissue])
    return total


def shell_intensity(
    tissues: dict[str, np.ndarray], modality: str, scale: float = 1.0
) -> np.ndarray:
    """Intensity contributed by the tissues outside the brain (relative units times ``scale``)."""
    return _compose(tissues, modality_values(modality, scale), _OUTSIDE)


def _intensity(tissues: dict[str, np.ndarray], values: dict[str, float]) -> np.ndarray:
    return _compose(tissues, values, {**{k: k for k in _INSIDE}, **_OUTSIDE})


# --------------------------------------------------------------------------------------------
# subject sampling and rendering


def _flag(index: int, fraction: float, offset: float) -> bool:
    """Balanced yes/no for subject ``index``: golden-ratio sequence below ``fraction``."""
    return ((index + 1) * _GOLDEN + offset) % 1.0 < fraction


def sample_subject(
    seed: int,
    index: int,
    *,
    has_tumour: bool,
    dicom: bool,
    max_rotation_deg: float = 15.0,
    max_translation_mm: float = 15.0,
) -> SubjectParams:
    """Draw every random parameter of subject ``index`` from ``default_rng((seed, index))``.

    Pose: rotation about a uniformly random axis by an angle uniform in ``[0, max_rotation_deg]``
    (about the brain centre), translation uniform in ``+-max_translation_mm`` per axis; every
    modality but T1Gd adds an inter-scan motion (random axis, <= 3 deg; random direction, <= 3 mm).
    """
    rng = np.random.default_rng((seed, index))
    shells = ShellParams.sample(rng)
    deformation = DeformationParams.sample(rng)
    tumour = TumourParams.sample(rng) if has_tumour else None
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(0.0, max_rotation_deg))
    pose = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle)
    shift = rng.uniform(-max_translation_mm, max_translation_mm, size=3)
    rotation, translation = {}, {}
    for modality in MODALITIES:
        if modality == REFERENCE:
            motion_r, motion_t = Rotation.identity(), np.zeros(3)
        else:
            axis = rng.normal(size=3)
            motion_r = Rotation.from_rotvec(
                axis / np.linalg.norm(axis) * np.deg2rad(rng.uniform(0, 3))
            )
            direction = rng.normal(size=3)
            motion_t = direction / np.linalg.norm(direction) * rng.uniform(0, 3)
        rotation[modality] = (motion_r * pose).as_matrix()
        translation[modality] = shift + motion_t
    values = {}
    for modality in MODALITIES:
        if modality == "t1ce":
            continue
        scale = rng.uniform(2600.0, 3000.0)
        variation = {t: float(np.clip(rng.normal(1.0, 0.03), 0.94, 1.06)) for t in TISSUE_INTENSITY}
        values[modality] = modality_values(modality, scale, variation)
        if modality == "t1":
            values["t1ce"] = modality_values("t1ce", scale * rng.uniform(0.95, 1.05), variation)
    thick = int(rng.integers(3, 7)) if rng.uniform() < 0.5 else 1
    orientation = str(rng.choice(DICOM_ORIENTATIONS if dicom else ORIENTATIONS))
    t1ce_rot = Rotation.from_matrix(rotation[REFERENCE])
    return SubjectParams(
        subject_id=f"sub-{index + 1:03d}",
        shells=shells,
        deformation=deformation,
        tumour=tumour,
        rotation=rotation,
        translation_mm=translation,
        values={m: values[m] for m in MODALITIES},
        noise_fraction=float(rng.uniform(0.01, 0.05)),
        bias_range=(float(rng.uniform(0.7, 0.85)), float(rng.uniform(1.15, 1.3))),
        bias_coefficients={m: rng.normal(size=10) for m in MODALITIES},
        thick_factor=thick,
        orientation=orientation,
        storage="dicom" if dicom else "nifti",
        noise_seed=int(rng.integers(2**31)),
        pose_rotation_deg=float(np.rad2deg(t1ce_rot.magnitude())),
        pose_translation_mm=float(np.linalg.norm(translation[REFERENCE])),
    )


def scanner_to_head(
    rotation: np.ndarray, translation: np.ndarray, centre: np.ndarray
) -> sitk.Transform:
    """Scanner -> head transform for the pose ``p_scanner = R (p_head - c) + t``."""
    tf = sitk.AffineTransform(3)
    tf.SetMatrix([float(v) for v in rotation.T.ravel()])
    tf.SetTranslation([float(v) for v in centre - rotation.T @ translation])
    return tf


def _scanner_grid(spacing_mm: float, thick: int) -> Grid:
    """Fine LPS scanner grid centred at the isocentre; z size a multiple of ``thick``."""
    size = np.ceil(np.asarray(_FOV_MM) / spacing_mm).astype(np.int64)
    size[2] = int(math.ceil(size[2] / thick) * thick)
    return grid_from_centre(np.zeros(3), np.full(3, spacing_mm), size)


def bias_field(
    shape_zyx: tuple[int, int, int], grid: Grid, coeffs: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """Smooth multiplicative field in ``[lo, hi]``: exp of a quadratic in mm/100 (``(Z, Y, X)``)."""
    x, y, z = (
        ((grid.origin[a] + grid.spacing[a] * np.arange(shape_zyx[2 - a])) / 100.0).astype(
            np.float32
        )
        for a in range(3)
    )
    a = coeffs.astype(np.float32)
    p = (a[0] * z + a[3] * z * z)[:, None, None] + (a[1] * y + a[4] * y * y)[None, :, None]
    p = p + (a[2] * x + a[5] * x * x)[None, None, :]
    p = p + a[6] * (y[:, None] * x[None, :])[None] + a[7] * (z[:, None] * x[None, :])[:, None, :]
    p = p + a[8] * (z[:, None] * y[None, :])[:, :, None]
    p -= p.min()
    p /= max(float(p.max()), 1e-6)
    return (lo * (hi / lo) ** p).astype(np.float32)


def _acquire(
    canvas_img: sitk.Image,
    transform: sitk.Transform,
    grid: Grid,
    thick: int,
) -> sitk.Image:
    """Sample the head once on the scanner grid; box-average ``thick`` thin slices along z."""
    fine = resample_onto(canvas_img, grid, transform=transform, antialias=False)
    if thick == 1:
        return fine
    arr = sitk.GetArrayFromImage(fine)
    arr = arr.reshape(arr.shape[0] // thick, thick, *arr.shape[1:]).mean(axis=1)
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.SetSpacing((grid.spacing[0], grid.spacing[1], grid.spacing[2] * thick))
    out.SetOrigin(
        [float(v) for v in grid.origin + np.array([0.0, 0.0, grid.spacing[2] * (thick - 1) / 2])]
    )
    return out


def render_subject(
    params: SubjectParams, spacing_mm: float
) -> tuple[dict[str, sitk.Image], sitk.Image, dict[str, float]]:
    """Render the four modalities and the ground-truth mask of one subject.

    Args:
        params: from :func:`sample_subject`.
        spacing_mm: native isotropic voxel size (thick slices: ``thick_factor`` times along z).

    Returns:
        ``(images, mask, info)``: int16 images per modality (0-4095) in the storage orientation;
        the uint8 0/1 mask on the T1Gd grid (same orientation); ``info`` with
        ``tumour_centre_*`` (head frame mm).
    """
    w = float(spacing_mm)
    mni = smoothed_template(w)
    grid = canvas_grid(mni, w)
    centre = brain_centre()
    warp = deformation_transform(params.deformation, centre)
    tissues = head_tissues(
        mni, grid, params.shells, deformation=warp, tumour=params.tumour, antialias=False
    )
    rng = np.random.default_rng(params.noise_seed)
    images: dict[str, sitk.Image] = {}
    for modality in MODALITIES:
        thick = params.thick_factor if modality in ("t2", "flair") else 1
        scanner = _scanner_grid(w, thick)
        to_head = scanner_to_head(
            params.rotation[modality], params.translation_mm[modality], centre
        )
        canvas_img = array_image(_intensity(tissues, params.values[modality]), grid)
        img = _acquire(canvas_img, to_head, scanner, thick)
        arr = sitk.GetArrayFromImage(img)
        lo, hi = params.bias_range
        arr *= bias_field(arr.shape, Grid.of(img), params.bias_coefficients[modality], lo, hi)
        sigma = np.float32(params.noise_fraction * params.values[modality]["wm"])
        real = arr + sigma * rng.standard_normal(arr.shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(arr.shape, dtype=np.float32)
        arr = np.clip(np.rint(np.sqrt(real * real + imag * imag)), 0, _MAX_VALUE).astype(np.int16)
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        images[modality] = sitk.DICOMOrient(out, params.orientation)
    to_head = scanner_to_head(params.rotation[REFERENCE], params.translation_mm[REFERENCE], centre)
    brain = resample_onto(
        array_image(tissues["brain"], grid),
        _scanner_grid(w, 1),
        transform=to_head,
        antialias=False,
    )
    mask = sitk.Cast(sitk.BinaryThreshold(brain, 0.5, 1e30, 1, 0), sitk.sitkUInt8)
    mask = sitk.DICOMOrient(mask, params.orientation)
    tc = tissues["tumour_centre"]
    info = {f"tumour_centre_{a}": float(v) for a, v in zip("xyz", tc, strict=True)}
    return images, mask, info


def _write_subject(
    root: Path, params: SubjectParams, images: dict[str, sitk.Image], mask: sitk.Image, seed: int
) -> dict[str, str]:
    """Write one subject below ``root``; return the subjects.csv row (paths relative to root)."""
    sid = params.subject_id
    folder = root / sid
    folder.mkdir(parents=True, exist_ok=True)
    row = {"subject_id": sid}
    study = None
    for modality, img in images.items():
        if params.storage == "dicom":
            study = study or generate_uid(entropy_srcs=[f"medrepro-brain-{seed}-{sid}-study"])
            write_dicom_series(
                img,
                folder / f"dicom_{modality}",
                series_description=modality.upper(),
                seed_uid=f"medrepro-brain-{seed}-{sid}-{modality}",
                patient_id=sid,
                study_uid=study,
            )
            row[modality] = f"{sid}/dicom_{modality}"
        else:
            sitk.WriteImage(img, str(folder / f"{sid}_{modality}.nii.gz"), True)
            row[modality] = f"{sid}/{sid}_{modality}.nii.gz"
    sitk.WriteImage(mask, str(folder / f"{sid}_mask.nii.gz"), True)
    row["mask"] = f"{sid}/{sid}_mask.nii.gz"
    return row


def generate_cohort(
    root: str | Path,
    *,
    n_subjects: int,
    spacing_mm: float,
    seed: int,
    tumour_fraction: float = 0.6,
    dicom_fraction: float = 0.3,
    max_rotation_deg: float = 15.0,
    max_translation_mm: float = 15.0,
) -> pd.DataFrame:
    """Write a cohort into ``root`` (an existing, empty directory; the caller makes it atomic).

    Subject ``k`` (0-based) depends only on ``(seed, k)``: tumour and DICOM flags come from a
    golden-ratio sequence offset by the seed, so the fractions hold closely even for few subjects.

    Args:
        root: output directory.
        n_subjects: number of subjects.
        spacing_mm: native voxel size (mm).
        seed: random seed.
        tumour_fraction: share of subjects with a tumour.
        dicom_fraction: share of subjects stored as DICOM series.
        max_rotation_deg: largest pose rotation angle (deg, about a random axis).
        max_translation_mm: pose translation range (+-, each axis).

    Returns:
        The phantom_truth table (also written as ``phantom_truth.csv``; ``subjects.csv`` too).
    """
    root = Path(root)
    offsets = np.random.default_rng(seed).uniform(size=2)
    rows, truth = [], []
    for k in range(n_subjects):
        start = time.perf_counter()
        params = sample_subject(
            seed,
            k,
            has_tumour=_flag(k, tumour_fraction, offsets[0]),
            dicom=_flag(k, dicom_fraction, offsets[1]),
            max_rotation_deg=max_rotation_deg,
            max_translation_mm=max_translation_mm,
        )
        images, mask, _ = render_subject(params, spacing_mm)
        rows.append(_write_subject(root, params, images, mask, seed))
        truth.append(
            {
                "subject_id": params.subject_id,
                "has_tumour": params.tumour is not None,
                "tumour_radius_mm": round(params.tumour.radius_mm, 3) if params.tumour else 0.0,
                "storage": params.storage,
                "orientation": params.orientation,
                "slice_thickness_mm": spacing_mm * params.thick_factor,
                "rotation_deg": round(params.pose_rotation_deg, 4),
                "translation_mm": round(params.pose_translation_mm, 4),
                "seed": seed,
            }
        )
        log.info("%s done in %.1f s", params.subject_id, time.perf_counter() - start)
    write_csv(
        pd.DataFrame(rows, columns=["subject_id", *MODALITIES, "mask"]), root / "subjects.csv"
    )
    table = pd.DataFrame(truth)
    write_csv(table, root / "phantom_truth.csv")
    return table
