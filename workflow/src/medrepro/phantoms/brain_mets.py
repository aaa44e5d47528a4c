"""Synthetic T1 contrast-enhanced brain MRI with multiple metastases (``lowres``, second dataset).

The anatomy is the one of :mod:`medrepro.phantoms.brain_mri` (MNI152 grey/white matter and brain
mask from nilearn, warped by a smooth random deformation, skull and scalp shells, dura and
superior sagittal sinus), rendered as a single T1Gd-like contrast, with:

- **Metastases**: 1-15 per subject (``P(n) ~ 1/n``, mean about 4.5 for 1-15). Equivalent-sphere
  diameters are log-normal (median 7 mm, sigma 0.8, truncated to 2.5-40 mm: p5 about 3 mm, median
  about 7.6 mm, p95 about 24 mm), ellipsoids with semi-axes within +-15 % of the radius (volume
  kept). Lesions of 10-20 mm become ring-enhancing (necrotic core, enhancing rim 1.5-3.5 mm) with
  a probability growing linearly with the diameter, larger ones always; smaller ones enhance
  solidly. Vasogenic oedema (hypointense on T1c) reaches 0.1-1 diameter (at most 25 mm) beyond the
  lesion, in the white matter (and 20 % of the grey matter). Lesions are placed inside the brain
  at a depth of at least their largest semi-axis + 2 mm, at the grey-white junction for 80 % of
  them (when a site is left), largest first, with at least :data:`LESION_GAP_MM` between two
  lesions' surfaces, so the labels never overlap or touch. Sites are chosen on a 2 mm grid (on
  the anatomy's own grid when that is coarser).
- **False-positive sources**: 8-16 enhancing cortical vessels (random-walk tubes of 1-2.5 mm
  diameter, 20-60 mm long, starting 2-8 mm below the brain surface, as bright as an enhancing
  rim), the falx (dura, T1c 0.6 relative, in the interhemispheric CSF above the corpus
  callosum), and the enhancing dura and sinus of the shell model.

Acquisition: random rigid pose (<= 10 deg, <= 10 mm), one linear sampling onto an LPS scanner grid
of the requested spacing (isotropic or ``(x, y, z)`` mm; the anatomy is built at the finest of the
three), multiplicative smooth bias field (0.75-0.85 .. 1.15-1.25), Rician noise (1-4 % of the WM
intensity), intensity scale 2600-3000 per subject with +-3 % per-tissue variation, int16 0-4095.
Enhancing lesion tissue is 1.1-1.4 (relative, WM 0.8) per subject, brighter than the brain_mri
rim (1.0); vessels 0.95-1.15 times that.
The brain mask (brain + lesions) and the lesion labels (``k`` = lesion ``k``, 1-based, in
``lesions.csv`` order) are on the same grid; a lesion smaller than a voxel still gets the voxel of
its centre. Subjects are stored as NIfTI (nibabel, qform = sform, code 1) in a storage orientation
cycled through :data:`STORAGE_ORIENTATIONS`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from medrepro.io.atomic import write_csv
from medrepro.phantoms.brain_atlas import MNI152
from medrepro.phantoms.brain_mri import (
    DeformationParams,
    ShellParams,
    TumourParams,
    array_image,
    bias_field,
    brain_centre,
    canvas_grid,
    deformation_transform,
    head_tissues,
    modality_values,
    occupancy,
    scanner_to_head,
    shell_intensity,
    smoothed_template,
    tumour_fractions,
)
from medrepro.preprocessing.geometry import Grid, grid_from_centre, index_to_mm, mm_to_index
from medrepro.preprocessing.resampling import resample_onto

__all__ = [
    "STORAGE_ORIENTATIONS",
    "DIAMETER_MEDIAN_MM",
    "DIAMETER_SIGMA",
    "DIAMETER_RANGE_MM",
    "LESION_GAP_MM",
    "FOV_MM",
    "LESION_COLUMNS",
    "LesionParams",
    "VesselParams",
    "MetsSubjectParams",
    "sample_diameters",
    "sample_lesion",
    "sample_vessel",
    "sample_subject",
    "lesion_sites",
    "RenderedSubject",
    "render_subject",
    "to_nifti",
    "generate_cohort",
]

log = logging.getLogger(__name__)

#: Storage orientations (nibabel axis codes = the anatomical direction of increasing index).
STORAGE_ORIENTATIONS: tuple[str, ...] = ("RAS", "LPS", "LAS", "RPI", "PIR")
#: Log-normal lesion diameter: median (mm) and sigma of the log, truncated to the range (mm).
DIAMETER_MEDIAN_MM = 7.0
DIAMETER_SIGMA = 0.8
DIAMETER_RANGE_MM: tuple[float, float] = (2.5, 40.0)
#: Smallest distance (mm) between the surfaces (largest semi-axes) of two lesions.
LESION_GAP_MM = 3.0
#: Scanner field of view (mm) along x (L-R), y (P-A), z (I-S).
FOV_MM: tuple[float, float, float] = (196.0, 228.0, 196.0)
#: Columns of ``lesions.csv`` (centre in LPS world mm = SimpleITK physical coordinates).
LESION_COLUMNS = [
    "subject_id", "lesion", "diameter_mm", "kind", "oedema_mm",
    "center_x", "center_y", "center_z",
]  # fmt: skip

_SITE_GRID_MM = 2.0
_DEPTH_MARGIN_MM = 2.0
_JUNCTION_FRACTION = 0.8
_JUNCTION_LEVEL = 0.25
_VESSEL_DEPTH_MM = (2.0, 8.0)
_VESSEL_STEP_MM = 0.5
_MAX_VALUE = 4095.0
_INSIDE = ("gm", "wm", "csf", "necrosis", "rim", "oedema")


@dataclass(frozen=True)
class LesionParams:
    """One metastasis (shape from :class:`medrepro.phantoms.brain_mri.TumourParams`).

    Attributes:
        diameter_mm: equivalent-sphere diameter of the enhancing lesion (rim + core), mm.
        ring: ring-enhancing with a necrotic core (else solid enhancing).
        junction: placed at the grey-white junction if a site is left there.
        shape: semi-axes, orientation, rim, oedema and placement (``placement`` in 0..1 picks the
            site among the admissible ones).
        offset_mm: ``(3,)`` shift (+-0.5 mm per axis) of the centre from its site, so that a
            centre never falls exactly on a voxel centre (where the first-order signed distance
            of ``brain_mri`` is 0 instead of minus the radius).
    """

    diameter_mm: float
    ring: bool
    junction: bool
    shape: TumourParams
    offset_mm: np.ndarray


@dataclass(frozen=True)
class VesselParams:
    """An enhancing vessel: a tube along a smooth random walk.

    Attributes:
        path_mm: ``(P, 3)`` points (LPS mm) relative to the start, every 0.5 mm.
        radius_mm: tube radius (mm).
        placement: 0..1, picks the start among cortical sites (2-8 mm below the brain surface).
    """

    path_mm: np.ndarray
    radius_mm: float
    placement: float


@dataclass(frozen=True)
class MetsSubjectParams:
    """Everything random about one subject (drawn by :func:`sample_subject`)."""

    subject_id: str
    shells: ShellParams
    deformation: DeformationParams
    lesions: tuple[LesionParams, ...]
    vessels: tuple[VesselParams, ...]
    rotation: np.ndarray  # (3, 3) scanner <- head
    translation_mm: np.ndarray  # (3,)
    scale: float  # intensity of relative value 1.0
    values: dict[str, float]  # tissue -> T1Gd intensity (0-4095 scale)
    vessel_value: float
    noise_fraction: float
    bias_range: tuple[float, float]
    bias_coefficients: np.ndarray  # (10,)
    orientation: str
    noise_seed: int


# --------------------------------------------------------------------------------------------
# sampling


def sample_diameters(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` lesion diameters (mm): log-normal, median 7 mm, sigma 0.8, truncated to 2.5-40 mm."""
    lo, hi = DIAMETER_RANGE_MM
    out = np.empty(0)
    while out.size < n:
        draw = DIAMETER_MEDIAN_MM * np.exp(DIAMETER_SIGMA * rng.standard_normal(2 * n + 4))
        out = np.concatenate([out, draw[(draw >= lo) & (draw <= hi)]])
    return out[:n]


def sample_lesion(rng: np.random.Generator, diameter_mm: float) -> LesionParams:
    """Shape, enhancement pattern and oedema of a lesion of equivalent diameter ``diameter_mm``."""
    radius = diameter_mm / 2.0
    factors = rng.uniform(0.85, 1.15, size=3)
    radii = radius * factors / np.prod(factors) ** (1.0 / 3.0)  # same volume as the sphere
    ring = bool(rng.uniform() < np.clip((diameter_mm - 10.0) / 10.0, 0.0, 1.0))
    rim = min(rng.uniform(1.5, 3.5), 0.6 * radii.min()) if ring else 2.0 * radii.max() + 1.0
    axis = rng.normal(size=3)
    shape = TumourParams(
        radii_mm=radii,
        rotation=Rotation.random(random_state=rng).as_matrix(),
        rim_mm=float(rim),
        oedema_mm=float(min(diameter_mm * rng.uniform(0.1, 1.0), 25.0)),
        oedema_axis=axis / np.linalg.norm(axis),
        oedema_skew=float(rng.uniform(0.0, 0.5)),
        placement=float(rng.uniform()),
    )
    junction = bool(rng.uniform() < _JUNCTION_FRACTION)
    return LesionParams(
        diameter_mm=float(diameter_mm),
        ring=ring,
        junction=junction,
        shape=shape,
        offset_mm=rng.uniform(-0.5, 0.5, size=3),
    )


def sample_vessel(rng: np.random.Generator) -> VesselParams:
    """A vessel 20-60 mm long, 1-2.5 mm wide, along a smooth random walk (0.5 mm steps)."""
    n = int(rng.uniform(20.0, 60.0) / _VESSEL_STEP_MM)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    points = np.zeros((n + 1, 3))
    for i in range(n):
        direction = direction + rng.normal(0.0, 0.06, size=3)
        direction /= np.linalg.norm(direction)
        points[i + 1] = points[i] + _VESSEL_STEP_MM * direction
    return VesselParams(
        path_mm=points, radius_mm=float(rng.uniform(0.5, 1.25)), placement=float(rng.uniform())
    )


def _lesion_count(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Number of lesions in ``[lo, hi]`` with ``P(n) ~ 1 / n``."""
    n = np.arange(lo, hi + 1)
    p = 1.0 / np.maximum(n, 1)
    return int(rng.choice(n, p=p / p.sum()))


def sample_subject(
    seed: int,
    index: int,
    *,
    n_lesions: tuple[int, int] = (1, 15),
    orientation: str = "RAS",
    max_rotation_deg: float = 10.0,
    max_translation_mm: float = 10.0,
) -> MetsSubjectParams:
    """Draw every random parameter of subject ``index`` from ``default_rng((seed, index))``.

    Args:
        seed: cohort seed.
        index: 0-based subject index (the id is ``mets-<index + 1:04d>``).
        n_lesions: ``(min, max)`` number of lesions (``P(n) ~ 1 / n``); sites may drop some.
        orientation: storage orientation code.
        max_rotation_deg: largest pose rotation (deg, random axis, about the brain centre).
        max_translation_mm: pose translation range (+-, each axis, mm).
    """
    rng = np.random.default_rng((seed, index, 3))
    shells = ShellParams.sample(rng)
    deformation = DeformationParams.sample(rng)
    n = _lesion_count(rng, *n_lesions)
    lesions = tuple(sample_lesion(rng, d) for d in sample_diameters(rng, n))
    vessels = tuple(sample_vessel(rng) for _ in range(int(rng.integers(8, 17))))
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(0.0, max_rotation_deg))
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
    shift = rng.uniform(-max_translation_mm, max_translation_mm, size=3)
    scale = float(rng.uniform(2600.0, 3000.0))
    variation = {t: float(np.clip(rng.normal(1.0, 0.03), 0.94, 1.06)) for t in _INSIDE}
    values = modality_values("t1ce", scale, variation)
    values["rim"] = scale * variation["rim"] * float(rng.uniform(1.1, 1.4))  # WM: 0.8
    return MetsSubjectParams(
        subject_id=f"mets-{index + 1:04d}",
        shells=shells,
        deformation=deformation,
        lesions=lesions,
        vessels=vessels,
        rotation=rotation,
        translation_mm=shift,
        scale=scale,
        values=values,
        vessel_value=float(values["rim"] * rng.uniform(0.95, 1.15)),
        noise_fraction=float(rng.uniform(0.01, 0.04)),
        bias_range=(float(rng.uniform(0.75, 0.85)), float(rng.uniform(1.15, 1.25))),
        bias_coefficients=rng.normal(size=10),
        orientation=orientation,
        noise_seed=int(rng.integers(2**31)),
    )


# --------------------------------------------------------------------------------------------
# placement


def _site_maps(tissues: dict[str, np.ndarray], grid: Grid, coarse: Grid) -> dict[str, np.ndarray]:
    """Depth below the brain surface (mm), junction and tissue flags on the 2 mm site grid."""
    same = np.array_equal(grid.size, coarse.size) and np.allclose(grid.origin, coarse.origin)
    same = same and np.allclose(grid.spacing, coarse.spacing)
    maps = {
        k: tissues[k]
        if same
        else sitk.GetArrayFromImage(resample_onto(array_image(tissues[k], grid), coarse))
        for k in ("brain", "gm", "wm")
    }
    depth = ndimage.distance_transform_edt(maps["brain"] >= 0.5, sampling=float(coarse.spacing[0]))
    gm = ndimage.gaussian_filter(maps["gm"], 1.0)
    wm = ndimage.gaussian_filter(maps["wm"], 1.0)
    return {
        "depth": depth.astype(np.float32),
        "junction": (gm > _JUNCTION_LEVEL) & (wm > _JUNCTION_LEVEL),
        "tissue": (maps["gm"] + maps["wm"]) >= 0.5,
    }


def lesion_sites(
    depth: np.ndarray,
    junction: np.ndarray,
    tissue: np.ndarray,
    grid: Grid,
    lesions: tuple[LesionParams, ...],
) -> list[np.ndarray | None]:
    """Centres (mm) of the lesions on a site grid, largest first, without overlap.

    A site needs ``depth >= largest semi-axis + 2 mm``, brain tissue (GM + WM >= 0.5) and a
    distance of at least ``r_a + r_b + LESION_GAP_MM`` to every lesion placed before (both
    with the length of the lesion's ``offset_mm`` added); junction lesions take a junction site
    while one is left. ``placement`` picks among the admissible sites (in index order); the
    centre is the site plus ``offset_mm``.

    Args:
        depth: ``(z, y, x)`` depth below the brain surface (mm) on ``grid``.
        junction: ``(z, y, x)`` bool, grey-white junction.
        tissue: ``(z, y, x)`` bool, brain parenchyma.
        grid: the site grid.
        lesions: the subject's lesions.

    Returns:
        One ``(3,)`` LPS mm centre per lesion (input order), ``None`` where no site is left.
    """
    out: list[np.ndarray | None] = [None] * len(lesions)
    if not lesions:
        return out
    reaches = [float(np.max(lesion.shape.radii_mm)) for lesion in lesions]
    idx = np.argwhere(tissue & (depth >= min(reaches) + _DEPTH_MARGIN_MM))
    site_depth = depth[tuple(idx.T)]
    site_junction = junction[tuple(idx.T)]
    mm = index_to_mm(grid, idx[:, ::-1].astype(np.float64))
    clearance = np.full(len(idx), np.inf)  # distance (mm) to the surface of the nearest lesion
    for k in sorted(range(len(lesions)), key=lambda k: -lesions[k].diameter_mm):
        shift = float(np.linalg.norm(lesions[k].offset_mm))
        keep = (site_depth >= reaches[k] + _DEPTH_MARGIN_MM + shift) & (
            clearance >= reaches[k] + LESION_GAP_MM + shift
        )
        if lesions[k].junction and (keep & site_junction).any():
            keep &= site_junction
        candidates = np.flatnonzero(keep)
        if len(candidates) == 0:
            continue
        u = lesions[k].shape.placement
        centre = mm[candidates[min(int(u * len(candidates)), len(candidates) - 1)]]
        centre = centre + lesions[k].offset_mm
        out[k] = centre
        distance = np.sqrt(((mm - centre) ** 2).sum(axis=1)) - reaches[k]
        np.minimum(clearance, distance, out=clearance)
    return out


# --------------------------------------------------------------------------------------------
# rendering


def _add_lesion(
    tissues: dict[str, np.ndarray], block: tuple[slice, ...], core, necrosis, envelope
) -> None:
    """Insert one lesion's fractions into ``tissues`` (in place).

    The lesion replaces every tissue; vasogenic oedema replaces the white matter in its zone
    and 20 % of the grey matter (it spreads along the white matter and spares CSF).
    """
    oed = np.clip(envelope - core, 0.0, 1.0)
    g, w, c = tissues["gm"][block], tissues["wm"][block], tissues["csf"][block]
    previous = tissues["oedema"][block]
    tissues["oedema"][block] = previous * (1.0 - core) + oed * (w + 0.2 * g)
    tissues["necrosis"][block] += necrosis
    tissues["rim"][block] += core - necrosis
    tissues["gm"][block] = g * (1.0 - core - 0.2 * oed)
    tissues["wm"][block] = w * (1.0 - core - oed)
    tissues["csf"][block] = c * (1.0 - core)
    tissues["brain"][block] = np.maximum(tissues["brain"][block], core)


def _vessel_fraction(grid: Grid, path_mm: np.ndarray, radius_mm: float) -> tuple:
    """Partial-volume tube fraction of a vessel in a sub-block of ``grid`` (``(z, y, x)``).

    Tubes thinner than half a voxel are widened to half a voxel and dimmed by the area ratio,
    which keeps their cross-section (``pi r^2``) and so their total signal.
    """
    w = float(grid.spacing.min())
    r_eff = max(radius_mm, w / 2.0)
    reach = r_eff + 2.0 * w
    lo = np.floor(mm_to_index(grid, path_mm.min(axis=0) - reach)).astype(int)
    hi = np.ceil(mm_to_index(grid, path_mm.max(axis=0) + reach)).astype(int) + 1
    lo, hi = np.clip(lo, 0, grid.size), np.clip(hi, 0, grid.size)
    if np.any(hi <= lo):
        return None, None
    axes = [np.arange(lo[a], hi[a]) for a in range(3)]
    kz, ky, kx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    mm = index_to_mm(grid, np.stack([kx, ky, kz], axis=-1).reshape(-1, 3).astype(np.float64))
    dist, _ = cKDTree(path_mm).query(mm, distance_upper_bound=reach + 1.0)
    dist = np.minimum(dist, 1e3).reshape(kz.shape)
    frac = occupancy(dist, r_eff, w) * np.float32(min(1.0, (radius_mm / r_eff) ** 2))
    block = tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
    return block, frac


def _falx(tissues: dict[str, np.ndarray], grid: Grid, centre: np.ndarray) -> None:
    """Move the CSF of a 1.2 mm midline slab into the dura (in place): the falx cerebri.

    Only above ``centre`` + 15 mm (the interhemispheric fissure over the corpus callosum).
    """
    w = float(grid.spacing[0])
    xs = grid.origin[0] + w * np.arange(grid.size[0])
    zs = grid.origin[2] + w * np.arange(grid.size[2])
    slab = occupancy(np.abs(xs), 0.6, w)[None, None, :]
    above = occupancy(centre[2] + 15.0 - zs, 0.0, w)[:, None, None]
    moved = tissues["csf"] * slab * above
    tissues["csf"] -= moved
    tissues["dura"] += moved


@lru_cache(maxsize=4)
def _grids(spacing_mm: float) -> tuple[MNI152, Grid, Grid]:
    """Smoothed template, canvas grid at ``spacing_mm`` and the site grid (cached).

    The site grid is a 2 mm canvas, or the canvas itself when that is coarser.
    """
    mni = smoothed_template(spacing_mm)
    grid = canvas_grid(mni, spacing_mm)
    return mni, grid, grid if spacing_mm >= _SITE_GRID_MM else canvas_grid(mni, _SITE_GRID_MM)


def _scanner_grid(spacing: np.ndarray) -> Grid:
    """LPS scanner grid of ``spacing`` (x, y, z mm) over :data:`FOV_MM`, centred at 0."""
    size = np.maximum(np.round(np.asarray(FOV_MM) / spacing), 1).astype(np.int64)
    return grid_from_centre(np.zeros(3), spacing, size)


@dataclass(frozen=True)
class RenderedSubject:
    """One rendered subject, every image in the storage orientation (same grid).

    Attributes:
        image: int16 T1Gd-like image (0-4095).
        brainmask: uint8 0/1 brain mask (brain + lesions).
        lesions: uint8 labels, ``k`` = lesion ``k`` (1-based), 0 background.
        table: ``lesions.csv`` rows of the subject (:data:`LESION_COLUMNS`), lesion order.
    """

    image: sitk.Image
    brainmask: sitk.Image
    lesions: sitk.Image
    table: pd.DataFrame


def _spacing3(spacing_mm: float | tuple[float, float, float]) -> np.ndarray:
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)).copy()
    if np.any(spacing <= 0):
        raise ValueError(f"spacing must be > 0 mm, got {spacing.tolist()}")
    return spacing


def render_subject(
    params: MetsSubjectParams, spacing_mm: float | tuple[float, float, float]
) -> RenderedSubject:
    """Render the T1Gd image, brain mask and lesion labels of one subject.

    Args:
        params: from :func:`sample_subject`.
        spacing_mm: isotropic voxel size, or ``(x, y, z)`` mm (the anatomy is built at the
            finest of the three, then sampled once onto the scanner grid).

    Returns:
        The subject; lesions without a site are left out (lesion numbers stay consecutive).
    """
    spacing = _spacing3(spacing_mm)
    w = float(spacing.min())
    mni, grid, coarse = _grids(w)
    centre = brain_centre()
    warp = deformation_transform(params.deformation, centre)
    tissues = head_tissues(mni, grid, params.shells, deformation=warp, tumour=None, antialias=False)
    sites = _site_maps(tissues, grid, coarse)
    centres = lesion_sites(
        sites["depth"], sites["junction"], sites["tissue"], coarse, params.lesions
    )
    placed = [
        (lesion, c) for lesion, c in zip(params.lesions, centres, strict=True) if c is not None
    ]
    ids = np.zeros(tissues["brain"].shape, dtype=np.uint8)
    lesion_core = np.zeros_like(tissues["brain"])
    for k, (lesion, c) in enumerate(placed, start=1):
        block, core, necrosis, envelope = tumour_fractions(grid, c, lesion.shape)
        _add_lesion(tissues, block, core, necrosis, envelope)
        lesion_core[block] += core
        ids[block][core > 0] = k
    # vessels: start 2-8 mm below the surface, stay inside the brain, never over a lesion
    depth = sites["depth"]
    starts = np.argwhere((depth >= _VESSEL_DEPTH_MM[0]) & (depth <= _VESSEL_DEPTH_MM[1]))
    vessel = np.zeros_like(tissues["brain"])
    for v in params.vessels:
        pick = starts[min(int(v.placement * len(starts)), len(starts) - 1)]
        start = index_to_mm(coarse, pick[::-1].astype(np.float64))
        block, frac = _vessel_fraction(grid, start + v.path_mm, v.radius_mm)
        if block is not None:
            vessel[block] = np.maximum(vessel[block], frac)
    vessel *= np.clip(tissues["brain"] - lesion_core, 0.0, 1.0)
    for name in ("gm", "wm", "csf", "oedema"):
        tissues[name] *= 1.0 - vessel
    _falx(tissues, grid, centre)
    values = params.values
    canvas = shell_intensity(tissues, "t1ce", params.scale)
    for name in _INSIDE:
        canvas += tissues[name] * np.float32(values[name])
    canvas += vessel * np.float32(params.vessel_value)
    # acquisition
    scanner = _scanner_grid(spacing)
    to_head = scanner_to_head(params.rotation, params.translation_mm, centre)
    img = resample_onto(array_image(canvas, grid), scanner, transform=to_head)
    arr = sitk.GetArrayFromImage(img)
    lo, hi = params.bias_range
    arr *= bias_field(arr.shape, scanner, params.bias_coefficients, lo, hi)
    rng = np.random.default_rng(params.noise_seed)
    sigma = np.float32(params.noise_fraction * values["wm"])
    real = arr + sigma * rng.standard_normal(arr.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(arr.shape, dtype=np.float32)
    arr = np.clip(np.rint(np.sqrt(real * real + imag * imag)), 0, _MAX_VALUE).astype(np.int16)
    brain = sitk.GetArrayFromImage(
        resample_onto(array_image(tissues["brain"], grid), scanner, transform=to_head)
    )
    core = sitk.GetArrayFromImage(
        resample_onto(array_image(lesion_core, grid), scanner, transform=to_head)
    )
    id_img = sitk.GetImageFromArray(ids)
    id_img.CopyInformation(array_image(lesion_core, grid))
    nearest = sitk.GetArrayFromImage(
        resample_onto(
            id_img,
            scanner,
            transform=to_head,
            interpolator=sitk.sitkNearestNeighbor,
            antialias=False,
            pixel_type=sitk.sitkUInt8,
        )
    )
    labels = np.where(core >= 0.5, nearest, 0).astype(np.uint8)
    rows = []
    for k, (lesion, c) in enumerate(placed, start=1):
        world = params.rotation @ (c - centre) + params.translation_mm  # scanner LPS mm
        voxel = np.rint(mm_to_index(scanner, world)).astype(int)[::-1]  # (z, y, x)
        if not np.any(labels == k) and np.all((voxel >= 0) & (voxel < labels.shape)):
            labels[tuple(voxel)] = k  # sub-voxel lesion: keep its centre voxel
        rows.append(
            {
                "subject_id": params.subject_id,
                "lesion": k,
                "diameter_mm": round(lesion.diameter_mm, 3),
                "kind": "ring" if lesion.ring else "solid",
                "oedema_mm": round(lesion.shape.oedema_mm, 3),
                **{f"center_{a}": round(float(v), 3) for a, v in zip("xyz", world, strict=True)},
            }
        )
    mask = ((brain >= 0.5) | (labels > 0)).astype(np.uint8)
    out = []
    for values_zyx in (arr, mask, labels):
        image = sitk.GetImageFromArray(values_zyx)
        image.CopyInformation(img)
        out.append(sitk.DICOMOrient(image, params.orientation))
    table = pd.DataFrame(rows, columns=LESION_COLUMNS)
    return RenderedSubject(image=out[0], brainmask=out[1], lesions=out[2], table=table)


def to_nifti(img: sitk.Image) -> nib.Nifti1Image:
    """A SimpleITK image (LPS geometry) as a nibabel image (RAS affine, qform = sform, code 1).

    The voxel array is ``(x, y, z)`` (nibabel order), the image's own dtype, units mm.
    """
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(img.GetSpacing())[None, :]
    lps[:3, 3] = img.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    nii = nib.Nifti1Image(np.ascontiguousarray(arr), affine)
    nii.set_qform(affine, code=1)
    nii.set_sform(affine, code=1)
    nii.header.set_xyzt_units("mm")
    return nii


def generate_cohort(
    root: str | Path,
    *,
    n_subjects: int,
    spacing_mm: float | tuple[float, float, float],
    seed: int,
    n_lesions: tuple[int, int] = (1, 15),
    orientations: tuple[str, ...] = STORAGE_ORIENTATIONS,
    max_rotation_deg: float = 10.0,
    max_translation_mm: float = 10.0,
) -> pd.DataFrame:
    """Write a cohort into ``root`` (an existing, empty directory; the caller makes it atomic).

    Files: ``subjects.csv`` (``subject_id``), ``lesions.csv`` (:data:`LESION_COLUMNS`),
    ``phantom_truth.csv`` (per subject: orientation, lesion and vessel counts, pose, noise) and
    per subject ``<id>_t1c.nii.gz`` (int16), ``<id>_brainmask.nii.gz`` and ``<id>_lesions.nii.gz``
    (uint8). Subject ``k`` depends only on ``(seed, k)``; its storage orientation is
    ``orientations[(k + seed) % len(orientations)]``.

    Returns:
        The lesions table.
    """
    root = Path(root)
    spacing = _spacing3(spacing_mm)
    lesion_tables, truth = [], []
    for k in range(n_subjects):
        start = time.perf_counter()
        params = sample_subject(
            seed,
            k,
            n_lesions=n_lesions,
            orientation=orientations[(k + seed) % len(orientations)],
            max_rotation_deg=max_rotation_deg,
            max_translation_mm=max_translation_mm,
        )
        subject = render_subject(params, spacing)
        sid = params.subject_id
        nib.save(to_nifti(subject.image), root / f"{sid}_t1c.nii.gz")
        nib.save(to_nifti(subject.brainmask), root / f"{sid}_brainmask.nii.gz")
        nib.save(to_nifti(subject.lesions), root / f"{sid}_lesions.nii.gz")
        lesion_tables.append(subject.table)
        truth.append(
            {
                "subject_id": sid,
                "orientation": params.orientation,
                "n_lesions": len(subject.table),
                "n_lesions_drawn": len(params.lesions),
                "n_vessels": len(params.vessels),
                "spacing_x": spacing[0],
                "spacing_y": spacing[1],
                "spacing_z": spacing[2],
                "rotation_deg": round(
                    math.degrees(Rotation.from_matrix(params.rotation).magnitude()), 4
                ),
                "translation_mm": round(float(np.linalg.norm(params.translation_mm)), 4),
                "noise_fraction": round(params.noise_fraction, 5),
                "seed": seed,
            }
        )
        log.info("%s: %d lesions in %.1f s", sid, len(subject.table), time.perf_counter() - start)
    write_csv(pd.DataFrame({"subject_id": [t["subject_id"] for t in truth]}), root / "subjects.csv")
    lesions = pd.concat(lesion_tables, ignore_index=True)
    write_csv(lesions[LESION_COLUMNS], root / "lesions.csv")
    write_csv(pd.DataFrame(truth), root / "phantom_truth.csv")
    return lesions
