"""Synthetic head CT in Hounsfield units with exact orbitale and porion landmarks.

The anatomy is a set of analytic signed-distance functions (SDFs, mm, negative inside) in a
*head frame*: LPS axes (x to the patient's left, y posterior, z superior) with its origin at the
centre of the cranium, in which the Frankfort horizontal is the plane ``z = const`` through the
four landmarks. A scan places the head in the world with a rigid pose and samples the SDFs at the
physical centres of its voxels; tissues are painted in order with a partial-volume weight
``clip(0.5 - sdf / voxel, 0, 1)`` instead of supersampling.

Landmarks (``LANDMARKS``) are defined from the same parameters:

- **Orbitale** (``Or-L``, ``Or-R``): the lowest point of the inferior orbital rim. The orbit is an
  elliptic cone opening anteriorly; its floor is flat (at the landmark's height) from the anterior
  face of the bone back to the landmark and rises behind it, so the landmark is the posterior end
  of the rim's lowest edge. Bone lies below it and orbital fat above it.
- **Porion** (``Po-L``, ``Po-R``): the top of the external acoustic meatus's outer opening. The
  meatus is an air tube along x through a dense temporal bone block whose lateral face is the
  plane through the landmark; the tube's top touches the landmark.

Anatomy follows ``/work/shared/reference/data.md`` ("cephalometry: 3D head CT"): skull with
cortical tables and diploë, CSF, grey and white matter, ventricles, scalp (skin, fat, muscle),
orbits with eyeballs and orbital fat, maxilla with sinuses, nasal cavity and airway, mandible,
cervical spine, temporal bone with mastoid air cells, and, after surgery, titanium plates with
screws and mild metal streaks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from medrepro.io.atomic import write_csv
from medrepro.io.images import array_to_image, write_image
from medrepro.io.markups import write_markups

__all__ = [
    "LANDMARKS",
    "PRIORS_MM",
    "ORIENTATIONS",
    "Plate",
    "HeadParams",
    "sample_head",
    "post_operative",
    "canonical_pose",
    "canonical_landmarks",
    "rotation_matrix",
    "render_head_ct",
    "generate_cohort",
]

log = logging.getLogger(__name__)

#: Landmark labels; L/R are the patient's left/right (left is +x in LPS).
LANDMARKS: tuple[str, ...] = ("Or-L", "Or-R", "Po-L", "Po-R")

#: Ranges (mm) that every sampled head satisfies in its canonical pose, deformity included.
PRIORS_MM: dict[str, tuple[float, float]] = {
    "Po-Po": (110.0, 130.0),
    "Or-Or": (55.0, 70.0),
    "Po-Or AP": (70.0, 85.0),
}

#: Storage orientations used by ``generate_cohort`` besides LPS (DICOM-style axis codes).
ORIENTATIONS: tuple[str, ...] = ("RAS", "LAS", "RPI", "PIR", "LPI")

Vec3 = tuple[float, float, float]
Coords = tuple[np.ndarray, np.ndarray, np.ndarray]

_AIR_HU = -1000.0
_HU_RANGE = (-1024.0, 3071.0)
_PORION_GAP_MM = 2.0  # porion lies this far lateral of the cranium's outer surface
_RIM_MM = 2.5  # orbitale lies this far behind the anterior face of the orbital rim
_SKIN_MM = 1.5
_FAR_MM = 400.0  # "unbounded" extent of the neck, spine and airway


@dataclass(frozen=True)
class Plate:
    """A titanium osteosynthesis plate with screws, in the head frame (mm).

    Attributes:
        centre_mm: centre of the plate.
        axis: unit vector along the plate's length.
        normal: unit vector pointing out of the bone; screws go along ``-normal``.
        length_mm, width_mm, thickness_mm: plate size.
        n_screws: screws spread along the plate.
    """

    centre_mm: Vec3
    axis: Vec3
    normal: Vec3
    length_mm: float
    width_mm: float
    thickness_mm: float
    n_screws: int


@dataclass(frozen=True)
class HeadParams:
    """Everything that defines one scan of one head (lengths in mm, intensities in HU).

    Anatomy is in the head frame (see the module docstring). ``nominal_mm + shift_mm`` gives the
    landmarks in ``LANDMARKS`` order; ``shift_mm`` is the deformity (zero except on
    ``deformed_side``). The cranium's lateral extent on each side follows that side's porion.

    Attributes:
        skull_semi_axes_mm: nominal outer semi-axes of the cranium (LR, AP, SI).
        skull_thickness_mm: total thickness of the skull vault.
        cortical_mm: thickness of each cortical table.
        scalp_mm: soft tissue over the vault (skin + fat + muscle).
        face_soft_mm: soft tissue over the facial bones.
        csf_mm: CSF layer between skull and brain.
        skull_skew: shear of the posterior cranium (plagiocephaly), dimensionless.
        nominal_mm: undeformed landmark positions, ``LANDMARKS`` order.
        shift_mm: deformity displacement of each landmark.
        deformed_side: ``"L"`` or ``"R"``.
        canal_radius_mm: radius of the external acoustic meatus.
        orbit_semi_axes_mm: half width (LR) and half height (SI) of the orbital opening.
        orbit_depth_mm: depth of the orbital cone behind orbitale.
        eye_radius_mm: eyeball radius.
        face_scale: scale of the lower face (mandible, neck, spine).
        ventricle_scale: scale of the lateral ventricles.
        mastoid_cells: ``(side, medial, dy, dz, radius)`` per air cell, relative to the
            porion of ``side`` (+1 left, -1 right); ``medial`` is measured inwards.
        hu: tissue intensities (HU).
        plates: osteosynthesis plates (post-operative scans only).
        streak_hu: amplitude of metal streaks.
        rotation_deg: pose, rotations about x, y, z (degrees), applied as ``Rz @ Ry @ Rx``.
        translation_mm: world position of the head-frame origin.
        centre_jitter_mm: offset of the image centre from the landmarks' centroid.
        noise_hu: standard deviation of the Gaussian noise.
        psf_mm: standard deviation of the Gaussian point-spread function.
    """

    skull_semi_axes_mm: Vec3
    skull_thickness_mm: float
    cortical_mm: float
    scalp_mm: float
    face_soft_mm: float
    csf_mm: float
    skull_skew: float
    nominal_mm: tuple[Vec3, ...]
    shift_mm: tuple[Vec3, ...]
    deformed_side: str
    canal_radius_mm: float
    orbit_semi_axes_mm: tuple[float, float]
    orbit_depth_mm: float
    eye_radius_mm: float
    face_scale: float
    ventricle_scale: float
    mastoid_cells: tuple[tuple[float, float, float, float, float], ...]
    hu: dict[str, float] = field(default_factory=dict)
    plates: tuple[Plate, ...] = ()
    streak_hu: float = 0.0
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)
    translation_mm: Vec3 = (0.0, 0.0, 0.0)
    centre_jitter_mm: Vec3 = (0.0, 0.0, 0.0)
    noise_hu: float = 40.0
    psf_mm: float = 0.6


# --------------------------------------------------------------------------- sampling


def _vec(values: Sequence[float] | np.ndarray) -> Vec3:
    x, y, z = (float(v) for v in values)
    return (x, y, z)


def _unit(values: Sequence[float]) -> Vec3:
    v = np.asarray(values, dtype=float)
    return _vec(v / np.linalg.norm(v))


def _sample_hu(rng: np.random.Generator) -> dict[str, float]:
    ranges = {
        "cortical": (1300.0, 1800.0),
        "diploe": (350.0, 750.0),
        "temporal": (900.0, 1400.0),
        "grey": (35.0, 40.0),
        "white": (29.0, 33.0),
        "csf": (3.0, 12.0),
        "skin": (35.0, 55.0),
        "fat": (-115.0, -85.0),
        "muscle": (40.0, 55.0),
        "eye": (10.0, 20.0),
        "lens": (70.0, 100.0),
        "orbital_fat": (-110.0, -90.0),
        "metal": (2800.0, 3071.0),
    }
    return {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()}


def _sample_acquisition(rng: np.random.Generator) -> dict[str, object]:
    return {
        "rotation_deg": _vec(rng.uniform(-15.0, 15.0, 3)),
        "translation_mm": _vec(rng.uniform(-10.0, 10.0, 3)),
        "centre_jitter_mm": _vec(rng.uniform(-4.0, 4.0, 3)),
        "noise_hu": float(rng.uniform(20.0, 60.0)),
        "psf_mm": float(rng.uniform(0.4, 0.8)),
    }


def sample_head(rng: np.random.Generator) -> HeadParams:
    """Sample a pre-operative head: size, shape, one-sided deformity, HU values and pose.

    Landmark distances respect ``PRIORS_MM`` in the canonical pose; everything else varies by
    about ±10–15 %.
    """
    u = rng.uniform
    a_x, a_y, a_z = u(70.0, 75.0), u(90.0, 100.0), u(65.0, 75.0)
    po_half, or_half, po_or = u(57.0, 63.0), u(29.5, 33.0), u(75.0, 80.0)
    po_y = u(-8.0, 0.0)
    # Frankfort height such that the cranium's outer surface passes just medial of porion.
    rest = 1.0 - (po_y / a_y) ** 2 - ((po_half - _PORION_GAP_MM) / a_x) ** 2
    fh_z = -a_z * math.sqrt(max(rest, 0.1))
    or_y = po_y - po_or
    nominal = (
        (or_half, or_y, fh_z),
        (-or_half, or_y, fh_z),
        (po_half, po_y, fh_z),
        (-po_half, po_y, fh_z),
    )
    side = "L" if rng.random() < 0.5 else "R"
    sign = 1.0 if side == "L" else -1.0
    orbit_shift = (sign * u(-3.0, 3.0), u(-2.5, 2.5), rng.choice([-1.0, 1.0]) * u(1.5, 4.5))
    ear_shift = (sign * u(-3.5, 2.0), u(-2.5, 2.5), rng.choice([-1.0, 1.0]) * u(1.0, 4.0))
    zero = (0.0, 0.0, 0.0)
    if side == "L":
        shift = (_vec(orbit_shift), zero, _vec(ear_shift), zero)
    else:
        shift = (zero, _vec(orbit_shift), zero, _vec(ear_shift))
    cells = []
    for cell_side in (1.0, -1.0):
        for _ in range(int(rng.integers(6, 12))):
            cells.append(
                (cell_side, u(4.0, 20.0), u(6.0, 16.0), u(-18.0, -4.0), u(1.5, 3.0)),
            )
    return HeadParams(
        skull_semi_axes_mm=(a_x, a_y, a_z),
        skull_thickness_mm=u(6.0, 8.0),
        cortical_mm=u(1.5, 2.0),
        scalp_mm=u(4.0, 7.0),
        face_soft_mm=u(6.0, 10.0),
        csf_mm=u(2.0, 3.5),
        skull_skew=u(-0.1, 0.1),
        nominal_mm=nominal,
        shift_mm=shift,
        deformed_side=side,
        canal_radius_mm=u(3.5, 4.5),
        orbit_semi_axes_mm=(u(18.0, 21.0), u(16.0, 18.5)),
        orbit_depth_mm=u(32.0, 38.0),
        eye_radius_mm=u(11.5, 12.5),
        face_scale=u(0.9, 1.1),
        ventricle_scale=u(0.8, 1.2),
        mastoid_cells=tuple(cells),
        hu=_sample_hu(rng),
        **_sample_acquisition(rng),  # type: ignore[arg-type]
    )


def post_operative(params: HeadParams, rng: np.random.Generator) -> HeadParams:
    """The same patient after surgery: deformity partly corrected, plates and screws, new scan.

    The deformity shrinks to 20–60 %; one or two plates are fixed on the operated orbit's lateral
    and inferior rims; pose, noise and PSF are drawn anew.
    """
    factor = float(rng.uniform(0.2, 0.6))
    shift = tuple(_vec(np.asarray(s) * factor) for s in params.shift_mm)
    post = dataclasses.replace(params, shift_mm=shift)
    sign = 1.0 if params.deformed_side == "L" else -1.0
    orbit = canonical_landmarks(post)[f"Or-{params.deformed_side}"]
    bx, bz = params.orbit_semi_axes_mm
    lateral = Plate(
        centre_mm=_vec(orbit + [sign * (bx + 6.0 + 0.6), 8.0, bz + rng.uniform(0.0, 10.0)]),
        axis=_unit([0.0, rng.uniform(-0.4, 0.4), 1.0]),
        normal=(sign, 0.0, 0.0),
        length_mm=float(rng.uniform(18.0, 26.0)),
        width_mm=float(rng.uniform(4.0, 5.5)),
        thickness_mm=float(rng.uniform(1.0, 1.5)),
        n_screws=int(rng.integers(2, 5)),
    )
    plates = [lateral]
    if rng.random() < 0.6:
        plates.append(
            Plate(
                centre_mm=_vec(orbit + [sign * rng.uniform(10.0, 14.0), -_RIM_MM - 0.6, -8.0]),
                axis=_unit([1.0, 0.0, rng.uniform(-0.3, 0.3)]),
                normal=(0.0, -1.0, 0.0),
                length_mm=float(rng.uniform(14.0, 20.0)),
                width_mm=float(rng.uniform(4.0, 5.0)),
                thickness_mm=float(rng.uniform(1.0, 1.5)),
                n_screws=int(rng.integers(2, 4)),
            )
        )
    return dataclasses.replace(
        post,
        plates=tuple(plates),
        streak_hu=float(rng.uniform(60.0, 200.0)),
        **_sample_acquisition(rng),  # type: ignore[arg-type]
    )


def canonical_pose(params: HeadParams) -> HeadParams:
    """The same scan with no rotation, no translation and the image centred on the landmarks."""
    zero = (0.0, 0.0, 0.0)
    return dataclasses.replace(
        params, rotation_deg=zero, translation_mm=zero, centre_jitter_mm=zero
    )


def canonical_landmarks(params: HeadParams) -> dict[str, np.ndarray]:
    """Landmarks in the head frame (mm), deformity included, in ``LANDMARKS`` order."""
    return {
        label: np.asarray(n, dtype=float) + np.asarray(s, dtype=float)
        for label, n, s in zip(LANDMARKS, params.nominal_mm, params.shift_mm, strict=True)
    }


def rotation_matrix(rotation_deg: Sequence[float]) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for rotations (degrees) about x, y and z; maps head to world axes."""
    ax, ay, az = np.deg2rad(np.asarray(rotation_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# --------------------------------------------------------------------------- SDF primitives


def _ellipsoid(q: Coords, c: np.ndarray, r: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Approximate ellipsoid SDF ``k0 (k0 - 1) / k1`` (exact on the surface, mm)."""
    k0 = np.zeros_like(q[0])
    k1 = np.zeros_like(q[0])
    for axis in range(3):
        d = (q[axis] - np.float32(c[axis])) / r[axis]
        k0 += d * d
        d /= r[axis]
        k1 += d * d
    np.sqrt(k0, out=k0)
    np.sqrt(k1, out=k1)
    np.maximum(k1, 1e-6, out=k1)
    return k0 * (k0 - 1.0) / k1


def _ellipse_2d(
    a: np.ndarray, b: np.ndarray, ra: np.ndarray | float, rb: np.ndarray | float
) -> np.ndarray:
    """Approximate SDF of an ellipse with semi-axes ``ra``, ``rb`` about the origin (mm)."""
    a0, b0 = a / ra, b / rb
    k0 = np.sqrt(a0 * a0 + b0 * b0)
    a0 /= ra
    b0 /= rb
    k1 = np.sqrt(a0 * a0 + b0 * b0)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _round_box(q: Coords, c: np.ndarray, half: np.ndarray, radius: float) -> np.ndarray:
    """Exact SDF of a box with rounded edges (``half`` includes the rounding)."""
    d = [np.abs(q[k] - np.float32(c[k])) - np.float32(half[k] - radius) for k in range(3)]
    outside = np.sqrt(sum(np.maximum(dk, 0.0) ** 2 for dk in d))
    inside = np.minimum(np.maximum(np.maximum(d[0], d[1]), d[2]), 0.0)
    return outside + inside - radius


def _capsule(q: Coords, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Exact SDF of a segment ``a``-``b`` thickened by ``radius``."""
    ba = np.asarray(b, dtype=float) - a
    pa = [q[k] - np.float32(a[k]) for k in range(3)]
    t = sum(pa[k] * np.float32(ba[k]) for k in range(3)) / np.float32(ba @ ba)
    np.clip(t, 0.0, 1.0, out=t)
    return np.sqrt(sum((pa[k] - t * np.float32(ba[k])) ** 2 for k in range(3))) - radius


def _tube_x(q: Coords, y: float, z: float, radius: float, x0: float, x1: float) -> np.ndarray:
    """Cylinder along x, axis at ``(y, z)``, from ``x0`` to ``x1``."""
    lo, hi = min(x0, x1), max(x0, x1)
    side = np.hypot(q[1] - np.float32(y), q[2] - np.float32(z)) - radius
    return np.maximum(side, np.maximum(lo - q[0], q[0] - hi))


def _column_z(q: Coords, c: np.ndarray, rx: float, ry: float, z_top: float) -> np.ndarray:
    """Vertical elliptic column through ``c`` (x, y), closed at ``z_top``, open downwards."""
    ell = _ellipse_2d(q[0] - np.float32(c[0]), q[1] - np.float32(c[1]), rx, ry)
    return np.maximum(ell, q[2] - np.float32(z_top))


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth union with blend radius ``k`` (mm)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (k / 4.0)


# --------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Shape:
    """An SDF with a head-frame bounding box outside which it is positive."""

    fn: Callable[[Coords], np.ndarray]
    lo: np.ndarray
    hi: np.ndarray


def _box_bounds(c: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, half = np.asarray(c, dtype=float), np.asarray(half, dtype=float)
    return c - half, c + half


def _column_shape(c: np.ndarray, rx: float, ry: float, top: float) -> _Shape:
    """:func:`_column_z` with its bounding box (reaching :data:`_FAR_MM` below)."""
    return _Shape(
        partial(_column_z, c=c, rx=rx, ry=ry, z_top=top),
        np.array([c[0] - rx, c[1] - ry, -_FAR_MM]),
        np.array([c[0] + rx, c[1] + ry, top]),
    )


@dataclass(frozen=True)
class _Anatomy:
    """Geometry derived from ``HeadParams`` (head frame, mm)."""

    p: HeadParams
    lm: dict[str, np.ndarray]
    cranium_x: tuple[float, float]  # outer LR semi-axis on the left (+x) and right side
    floor_y: np.ndarray  # skull-base height profile z(y)
    floor_z: np.ndarray

    @property
    def sides(self) -> tuple[tuple[float, str], ...]:
        return ((1.0, "L"), (-1.0, "R"))

    def orbit(self, side: str) -> np.ndarray:
        return self.lm[f"Or-{side}"]

    def porion(self, side: str) -> np.ndarray:
        return self.lm[f"Po-{side}"]

    @property
    def or_mean(self) -> np.ndarray:
        return (self.lm["Or-L"] + self.lm["Or-R"]) / 2

    @property
    def po_mean(self) -> np.ndarray:
        return (self.lm["Po-L"] + self.lm["Po-R"]) / 2

    @property
    def po_half(self) -> float:
        return float(self.lm["Po-L"][0] - self.lm["Po-R"][0]) / 2

    @property
    def or_half(self) -> float:
        return float(self.lm["Or-L"][0] - self.lm["Or-R"][0]) / 2


def _anatomy(p: HeadParams) -> _Anatomy:
    lm = canonical_landmarks(p)
    a_x, a_y, a_z = p.skull_semi_axes_mm

    def lateral(po: np.ndarray) -> float:
        rest = 1.0 - (po[1] / a_y) ** 2 - (po[2] / a_z) ** 2
        return (abs(po[0]) - _PORION_GAP_MM) / math.sqrt(max(rest, 0.05))

    bz = p.orbit_semi_axes_mm[1]
    or_y = float(min(lm["Or-L"][1], lm["Or-R"][1]))
    or_top = float(max(lm["Or-L"][2], lm["Or-R"][2])) + 2 * bz
    po = (lm["Po-L"] + lm["Po-R"]) / 2
    floor_y = np.array([-_FAR_MM, or_y + 30.0, or_y + 42.0, po[1] + 12.0, po[1] + 25.0, _FAR_MM])
    z_ant, z_mid, z_post = or_top + 4.0, po[2] - 6.0, po[2] - 50.0
    floor_z = np.array([z_ant, z_ant, z_mid, z_mid, z_post, z_post])
    return _Anatomy(p, lm, (lateral(lm["Po-L"]), lateral(lm["Po-R"])), floor_y, floor_z)


def _intracranial(a: _Anatomy, q: Coords) -> np.ndarray:
    """Cranial cavity: inner ellipsoid of the vault, above the stepped skull base."""
    p = a.p
    t = p.skull_thickness_mm
    _, a_y, a_z = p.skull_semi_axes_mm
    x, y, z = q
    ys = y - np.float32(p.skull_skew) * x * np.clip(y / np.float32(a_y), 0.0, 1.0)
    rx = np.where(x > 0, np.float32(a.cranium_x[0] - t), np.float32(a.cranium_x[1] - t))
    inner = _ellipsoid((x, ys, z), np.zeros(3), (rx, a_y - t, a_z - t))
    slope = np.diff(a.floor_z) / np.maximum(np.diff(a.floor_y), 1e-6)
    seg = np.clip(np.searchsorted(a.floor_y, y.ravel()) - 1, 0, len(slope) - 1).reshape(y.shape)
    z_floor = np.interp(y.ravel(), a.floor_y, a.floor_z).reshape(y.shape).astype(np.float32)
    base = (z_floor - z) / np.sqrt(1.0 + slope[seg] ** 2).astype(np.float32)
    return np.maximum(inner, base)


def _face_shapes(a: _Anatomy) -> list[_Shape]:
    """Facial skeleton solids: one orbital block per side and the maxilla."""
    bx, bz = a.p.orbit_semi_axes_mm
    shapes = []
    for _, side in a.sides:
        o = a.orbit(side)
        c = o + [0.0, -_RIM_MM + 22.0, 20.0]
        half = np.array([bx + 6.0, 22.0, 42.0])
        shapes.append(
            _Shape(partial(_round_box, c=c, half=half, radius=8.0), *_box_bounds(c, half))
        )
    om = a.or_mean
    c = om + [0.0, 16.0, -22.0]
    c[0] = 0.0
    half = np.array([a.or_half + 12.0, 20.0, 20.0])
    shapes.append(_Shape(partial(_round_box, c=c, half=half, radius=10.0), *_box_bounds(c, half)))
    return shapes


def _orbit_cone(q: Coords, o: np.ndarray, bx: float, bz: float, depth: float) -> np.ndarray:
    """Orbital cavity: elliptic cylinder in front of ``o``, tapering to 25 % behind it."""
    s = np.clip(1.0 - 0.75 * (q[1] - np.float32(o[1])) / np.float32(depth), 0.25, 1.0)
    ell = _ellipse_2d(q[0] - np.float32(o[0]), q[2] - np.float32(o[2] + bz), bx * s, bz * s)
    front = np.float32(o[1] - 30.0) - q[1]
    back = q[1] - np.float32(o[1] + depth)
    return np.maximum(ell, np.maximum(front, back))


def _orbit_shapes(a: _Anatomy) -> list[_Shape]:
    bx, bz = a.p.orbit_semi_axes_mm
    depth = a.p.orbit_depth_mm
    out = []
    for _, side in a.sides:
        o = a.orbit(side)
        lo = o + [-bx, -30.0, 0.0]
        hi = o + [bx, depth, 2 * bz]
        out.append(_Shape(partial(_orbit_cone, o=o, bx=bx, bz=bz, depth=depth), lo, hi))
    return out


def _eye_shapes(a: _Anatomy) -> list[tuple[_Shape, str]]:
    r = a.p.eye_radius_mm
    bz = a.p.orbit_semi_axes_mm[1]
    out = []
    for _, side in a.sides:
        c = a.orbit(side) + [0.0, r - 4.0, bz]
        radii = np.array([r, r, r])
        out.append((_Shape(partial(_ellipsoid, c=c, r=radii), c - r, c + r), "eye"))
        cl = c + [0.0, -r + 2.5, 0.0]
        rl = np.array([4.5, 2.0, 4.5])
        out.append((_Shape(partial(_ellipsoid, c=cl, r=rl), cl - rl, cl + rl), "lens"))
    return out


def _air_shapes(a: _Anatomy) -> list[_Shape]:
    """Nasal cavity, nasopharynx, airway (not clipped to bone)."""
    bx = a.p.orbit_semi_axes_mm[0]
    om, pm = a.or_mean, a.po_mean
    shapes = []
    w_up = max(3.0, a.or_half - bx - 5.0)
    boxes = [
        (np.array([0.0, om[1] + 14.0, om[2] - 20.0]), np.array([11.0, 22.0, 14.0])),
        (np.array([0.0, om[1] + 14.0, om[2] + 8.0]), np.array([w_up, 20.0, 14.0])),
    ]
    y0, y1 = om[1] + 30.0, pm[1] - 4.0
    boxes.append(
        (np.array([0.0, (y0 + y1) / 2, om[2] - 20.0]), np.array([8.0, (y1 - y0) / 2, 10.0]))
    )
    for c, half in boxes:
        shapes.append(
            _Shape(partial(_round_box, c=c, half=half, radius=3.0), *_box_bounds(c, half))
        )
    r = 6.5 * a.p.face_scale
    c = np.array([0.0, pm[1] - 10.0, 0.0])
    top = om[2] - 12.0
    shapes.append(_column_shape(c, r, r, top))
    return shapes


def _sinus_shapes(a: _Anatomy) -> list[_Shape]:
    out = []
    for _, side in a.sides:
        o = a.orbit(side)
        c = np.array([0.9 * o[0], o[1] + 18.0, o[2] - 21.0])
        r = np.array([12.0, 14.0, 12.0])
        out.append(_Shape(partial(_ellipsoid, c=c, r=r), c - r, c + r))
    return out


def _mandible(q: Coords, a: _Anatomy) -> np.ndarray:
    fs = a.p.face_scale
    pm, om = a.po_mean, a.or_mean
    z_m = pm[2] - 52.0 * fs
    cy = pm[1] - 18.0
    rx, ry = a.po_half - 16.0, cy - (om[1] - 10.0)
    ring = np.abs(_ellipse_2d(q[0], q[1] - np.float32(cy), rx, ry)) - 4.5 * fs
    body = np.maximum(ring, np.abs(q[2] - np.float32(z_m)) - 12.0 * fs)
    body = np.maximum(body, q[1] - np.float32(cy))
    for sign, side in a.sides:
        po = a.porion(side)
        angle = np.array([sign * rx, cy, z_m])
        condyle = np.array([po[0] - sign * 9.0, po[1] - 11.0, po[2] - 5.0])
        body = np.minimum(body, _capsule(q, angle, condyle, 5.0 * fs))
    return body


def _mandible_shape(a: _Anatomy) -> _Shape:
    pm, om = a.po_mean, a.or_mean
    lo = np.array([-a.po_half - 5.0, om[1] - 20.0, pm[2] - 75.0])
    hi = np.array([a.po_half + 5.0, pm[1] - 1.0, pm[2] + 5.0])
    return _Shape(partial(_mandible, a=a), lo, hi)


def _spine_shape(a: _Anatomy) -> _Shape:
    pm = a.po_mean
    r = 9.0 * a.p.face_scale
    c = np.array([0.0, pm[1] + 20.0, 0.0])
    return _column_shape(c, r, r, pm[2] - 26.0)


def _neck_shape(a: _Anatomy) -> _Shape:
    pm = a.po_mean
    rx, ry = 0.8 * a.po_half * a.p.face_scale, 52.0 * a.p.face_scale
    c = np.array([0.0, pm[1] + 5.0, 0.0])
    return _column_shape(c, rx, ry, pm[2] - 8.0)


def _temporal_shapes(a: _Anatomy) -> list[tuple[float, _Shape]]:
    """Dense temporal bone blocks whose lateral face passes through porion."""
    out = []
    for sign, side in a.sides:
        po = a.porion(side)
        c = po + [-sign * 13.0, 5.0, -7.0]
        half = np.array([13.0, 17.0, 15.0])
        out.append(
            (sign, _Shape(partial(_round_box, c=c, half=half, radius=3.0), *_box_bounds(c, half)))
        )
    return out


def _canal_shapes(a: _Anatomy, radius: float, medial: float, lateral: float) -> list[_Shape]:
    """Tubes along x through porion's canal axis, from ``medial`` inside to ``lateral`` outside."""
    out = []
    for sign, side in a.sides:
        po = a.porion(side)
        y, z = po[1], po[2] - a.p.canal_radius_mm
        x0, x1 = po[0] - sign * medial, po[0] + sign * lateral
        lo = np.array([min(x0, x1), y - radius, z - radius])
        hi = np.array([max(x0, x1), y + radius, z + radius])
        out.append(_Shape(partial(_tube_x, y=y, z=z, radius=radius, x0=x0, x1=x1), lo, hi))
    return out


def _cell_shapes(a: _Anatomy) -> list[tuple[float, _Shape]]:
    out = []
    for sign, medial, dy, dz, r in a.p.mastoid_cells:
        po = a.porion("L" if sign > 0 else "R")
        c = po + [-sign * medial, dy, dz]
        radii = np.array([r, r, r])
        out.append((sign, _Shape(partial(_ellipsoid, c=c, r=radii), c - r, c + r)))
    return out


def _soft_shapes(a: _Anatomy) -> list[tuple[_Shape, float]]:
    """Extra soft-tissue solids (nose, pinnae) and their smooth-union radius (mm)."""
    om = a.or_mean
    c = np.array([0.0, om[1] - _RIM_MM - 9.0, om[2] - 14.0])
    r = np.array([10.0, 12.0, 20.0])
    out = [(_Shape(partial(_ellipsoid, c=c, r=r), c - r, c + r), 4.0)]
    for sign, side in a.sides:
        po = a.porion(side)
        c = po + [sign * 9.0, 6.0, 4.0]
        r = np.array([3.5, 13.0, 27.0])
        out.append((_Shape(partial(_ellipsoid, c=c, r=r), c - r, c + r), 2.0))
    return out


def _ventricle_shapes(a: _Anatomy) -> list[_Shape]:
    pm = a.po_mean
    vs = a.p.ventricle_scale
    out = []
    for sign in (1.0, -1.0):
        c = np.array([sign * 7.0 * vs, pm[1] - 2.0, pm[2] + 40.0])
        r = np.array([4.5, 18.0, 7.0]) * vs
        out.append(_Shape(partial(_ellipsoid, c=c, r=r), c - r, c + r))
    return out


def _plate_sdf(q: Coords, plate: Plate) -> np.ndarray:
    c = np.asarray(plate.centre_mm)
    u = np.asarray(plate.axis) / np.linalg.norm(plate.axis)
    n = np.asarray(plate.normal) / np.linalg.norm(plate.normal)
    v = np.cross(n, u)
    d = [q[k] - np.float32(c[k]) for k in range(3)]
    local = tuple(sum(d[k] * np.float32(e[k]) for k in range(3)) for e in (u, v, n))
    half = np.array([plate.length_mm / 2, plate.width_mm / 2, plate.thickness_mm / 2])
    sdf = _round_box(local, np.zeros(3), half, min(0.5, half[2]))
    for i in range(plate.n_screws):
        frac = 0.0 if plate.n_screws == 1 else i / (plate.n_screws - 1) - 0.5
        s = c + u * frac * (plate.length_mm - 5.0)
        sdf = np.minimum(sdf, _capsule(q, s + 0.8 * n, s - 6.0 * n, 0.9))
    return sdf


def _plate_shape(plate: Plate) -> _Shape:
    c = np.asarray(plate.centre_mm)
    r = plate.length_mm / 2 + 8.0
    return _Shape(partial(_plate_sdf, plate=plate), c - r, c + r)


# --------------------------------------------------------------------------- rendering


class _Grid:
    """An LPS-aligned voxel grid with a rigid head pose; coordinates in float32 mm."""

    def __init__(
        self,
        origin: np.ndarray,
        spacing: float,
        size: Sequence[int],
        rot: np.ndarray,
        t: np.ndarray,
    ) -> None:
        self.h = float(spacing)
        self.size = tuple(int(n) for n in size)
        self.axes = [origin[k] + spacing * np.arange(self.size[k]) for k in range(3)]
        self.rot = rot
        self.t = t

    def region(
        self, lo: np.ndarray, hi: np.ndarray, margin: float = 0.0
    ) -> tuple[slice, ...] | None:
        """Index slices covering the world bounding box of a head-frame box (plus ``margin``)."""
        c, e = (np.asarray(lo) + hi) / 2, (np.asarray(hi) - lo) / 2
        wc = self.rot @ c + self.t
        we = np.abs(self.rot) @ e + margin + self.h
        out = []
        for k in range(3):
            i0 = math.ceil((wc[k] - we[k] - self.axes[k][0]) / self.h)
            i1 = math.floor((wc[k] + we[k] - self.axes[k][0]) / self.h) + 1
            i0, i1 = max(i0, 0), min(i1, self.size[k])
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    @property
    def everything(self) -> tuple[slice, ...]:
        return tuple(slice(0, n) for n in self.size)

    def world(self, sl: tuple[slice, ...]) -> Coords:
        """World coordinates of a region as broadcastable 1D arrays (X, Y, Z)."""
        ax = [self.axes[k][sl[k]].astype(np.float32) for k in range(3)]
        return ax[0][:, None, None], ax[1][None, :, None], ax[2][None, None, :]

    def coords(self, sl: tuple[slice, ...]) -> Coords:
        """Head-frame coordinates of every voxel of a region, each of shape (X, Y, Z)."""
        d = [(self.axes[k][sl[k]] - self.t[k]).astype(np.float32) for k in range(3)]
        shape = tuple(len(dk) for dk in d)
        out = []
        for k in range(3):
            r = self.rot[:, k].astype(np.float32)  # row k of rot.T
            qk = np.empty(shape, dtype=np.float32)
            qk[...] = r[0] * d[0][:, None, None]
            qk += r[1] * d[1][None, :, None]
            qk += r[2] * d[2][None, None, :]
            out.append(qk)
        return out[0], out[1], out[2]


def _paint(hu: np.ndarray, sdf: np.ndarray, value: float | np.ndarray, h: float) -> None:
    """Composite ``value`` over ``hu`` in place with partial-volume weight from ``sdf``."""
    alpha = sdf * np.float32(-1.0 / h)
    alpha += 0.5
    np.clip(alpha, 0.0, 1.0, out=alpha)
    alpha *= value - hu
    hu += alpha


def _layered(
    depth: np.ndarray, surface: float, core: float, thickness: float, h: float
) -> np.ndarray:
    """``surface`` HU within ``thickness`` mm of the bone surface, ``core`` HU deeper."""
    w = (np.float32(thickness) - depth) * np.float32(1.0 / h)
    w += 0.5
    np.clip(w, 0.0, 1.0, out=w)
    return core + (surface - core) * w


def _eval(grid: _Grid, shape: _Shape, margin: float) -> tuple[tuple[slice, ...], np.ndarray] | None:
    sl = grid.region(shape.lo, shape.hi, margin)
    if sl is None:
        return None
    return sl, shape.fn(grid.coords(sl))


def _render_hu(a: _Anatomy, grid: _Grid) -> np.ndarray:
    """Noise-free HU volume ``(X, Y, Z)`` float32 before the PSF."""
    p, hu_of, h = a.p, a.p.hu, grid.h
    t = p.skull_thickness_mm
    q = grid.coords(grid.everything)
    hu = np.full(grid.size, _AIR_HU, dtype=np.float32)
    ic = _intracranial(a, q)

    # Soft-tissue envelope: cranium, face, temporal blocks, mandible, neck, nose, pinnae.
    face, temporal = _face_shapes(a), _temporal_shapes(a)
    body = ic - np.float32(t + p.scalp_mm)
    blends: list[tuple[_Shape, float, float]] = [(s, p.face_soft_mm, 8.0) for s in face]
    blends += [(s, p.scalp_mm, 6.0) for _, s in temporal]
    blends += [(_mandible_shape(a), 7.0, 8.0), (_neck_shape(a), 0.0, 15.0)]
    blends += [(s, 0.0, k) for s, k in _soft_shapes(a)]
    for shape, offset, k in blends:
        if (res := _eval(grid, shape, offset + k)) is not None:
            sl, d = res
            body[sl] = _smin(body[sl], d - np.float32(offset), k)
    fat_mm = 0.35 * p.scalp_mm
    _paint(hu, body, hu_of["skin"], h)
    body += np.float32(_SKIN_MM)
    _paint(hu, body, hu_of["fat"], h)
    body += np.float32(fat_mm)
    _paint(hu, body, hu_of["muscle"], h)
    del body

    # Cranial contents.
    _paint(hu, ic, hu_of["csf"], h)
    _paint(hu, ic + np.float32(p.csf_mm), hu_of["grey"], h)
    _paint(hu, ic + np.float32(p.csf_mm + 9.0), hu_of["white"], h)
    for shape in _ventricle_shapes(a):
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            _paint(hu[sl], d, hu_of["csf"], h)

    # Generic bone: vault and skull base shell, face, mandible, spine.
    bone = np.maximum(ic - np.float32(t), -ic)
    top = max(a.lm["Or-L"][2], a.lm["Or-R"][2]) + 2 * p.orbit_semi_axes_mm[1] + 2.0
    face_sdf = np.full(grid.size, np.float32(1e3), dtype=np.float32)
    for shape in face:
        if (res := _eval(grid, shape, 4.0)) is not None:
            sl, d = res
            face_sdf[sl] = _smin(face_sdf[sl], d, 4.0)
    fsl = grid.region(
        np.min([s.lo for s in face], axis=0), np.max([s.hi for s in face], axis=0), 4.0
    )
    if fsl is not None:
        clipped = np.maximum(face_sdf[fsl], -ic[fsl])
        cut = np.minimum(ic[fsl] - np.float32(t), q[2][fsl] - np.float32(top))
        bone[fsl] = np.minimum(bone[fsl], np.maximum(clipped, cut))
    for shape in (_mandible_shape(a), _spine_shape(a)):
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            bone[sl] = np.minimum(bone[sl], d)
    for shape in _canal_shapes(a, radius=14.0, medial=0.0, lateral=25.0):
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            bone[sl] = np.maximum(bone[sl], -d)
    carved = bone.copy()
    cavities = _orbit_shapes(a) + _sinus_shapes(a) + _air_shapes(a)
    for shape in cavities:
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            carved[sl] = np.maximum(carved[sl], -d)
    np.negative(carved, out=carved)
    value = _layered(carved, hu_of["cortical"], hu_of["diploe"], p.cortical_mm, h)
    del carved
    _paint(hu, bone, value, h)
    del bone, value

    # Temporal bone: dense, with the meatus and mastoid cells carved for the cortical rim.
    canals = _canal_shapes(a, radius=p.canal_radius_mm, medial=20.0, lateral=35.0)
    cells = _cell_shapes(a)
    for sign, shape in temporal:
        if (res := _eval(grid, shape, h)) is None:
            continue
        sl, d = res
        qs = grid.coords(sl)
        depth = np.maximum(d, -canals[0 if sign > 0 else 1].fn(qs))
        for cell_sign, cell in cells:
            if cell_sign == sign:
                depth = np.maximum(depth, -cell.fn(qs))
        value = _layered(-depth, hu_of["cortical"], hu_of["temporal"], p.cortical_mm, h)
        _paint(hu[sl], d, value, h)

    # Cavity contents.
    for shape in _orbit_shapes(a):
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            _paint(hu[sl], np.maximum(d, face_sdf[sl]), hu_of["orbital_fat"], h)
    for shape, tissue in _eye_shapes(a):
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            _paint(hu[sl], d, hu_of[tissue], h)
    for shape in _sinus_shapes(a):
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            _paint(hu[sl], np.maximum(d, face_sdf[sl] + np.float32(1.5)), _AIR_HU, h)
    for shape in _air_shapes(a) + canals:
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            _paint(hu[sl], d, _AIR_HU, h)
    temporal_of = {sign: shape for sign, shape in temporal}
    for sign, shape in cells:
        if (res := _eval(grid, shape, h)) is not None:
            sl, d = res
            block = temporal_of[sign].fn(grid.coords(sl))
            _paint(hu[sl], np.maximum(d, block + np.float32(1.0)), _AIR_HU, h)
    del face_sdf

    # Metal.
    for plate in p.plates:
        if (res := _eval(grid, _plate_shape(plate), h)) is not None:
            sl, d = res
            _paint(hu[sl], d, hu_of["metal"], h)
        _add_streaks(hu, grid, plate, p.streak_hu)
    return hu


def _add_streaks(hu: np.ndarray, grid: _Grid, plate: Plate, amplitude: float) -> None:
    """Mild radial metal streaks in the axial (world xy) planes through the plate."""
    if amplitude <= 0:
        return
    c = grid.rot @ np.asarray(plate.centre_mm) + grid.t
    reach, half_z = 70.0, 5.0
    lo, hi = c - [reach, reach, half_z], c + [reach, reach, half_z]
    sl = []  # the streak box is world-aligned: index it directly
    for k in range(3):
        i0 = max(math.ceil((lo[k] - grid.axes[k][0]) / grid.h), 0)
        i1 = min(math.floor((hi[k] - grid.axes[k][0]) / grid.h) + 1, grid.size[k])
        if i1 <= i0:
            return
        sl.append(slice(i0, i1))
    x, y, z = grid.world(tuple(sl))
    dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    phase = float(np.dot(plate.axis, [1.0, 2.0, 3.0]))  # deterministic per plate
    pattern = np.cos(7.0 * theta + phase) * np.exp(-r / 35.0) * (r > 3.0)
    pattern = pattern * np.clip(1.0 - np.abs(dz) / half_z, 0.0, 1.0)
    hu[tuple(sl)] += np.float32(amplitude) * pattern.astype(np.float32)


def _check_orientation(orientation: str) -> str:
    """Upper-case 3-letter axis code with one letter of each of LR, PA, SI."""
    code = orientation.upper()
    groups = ("LR", "PA", "SI")
    used = sorted(next((i for i, g in enumerate(groups) if c in g), -1) for c in code)
    if used != [0, 1, 2]:
        raise ValueError(f"orientation must be a code such as LPS, RAS or PIR, got {orientation!r}")
    return code


def render_head_ct(
    params: HeadParams,
    *,
    spacing_mm: float,
    fov_mm: Sequence[float] = (200.0, 200.0, 150.0),
    rng: np.random.Generator,
    orientation: str = "LPS",
) -> tuple[sitk.Image, dict[str, np.ndarray]]:
    """Render one head CT scan.

    Args:
        params: the head and its acquisition.
        spacing_mm: isotropic voxel size (mm).
        fov_mm: field of view (mm) along x, y, z, centred on the landmarks' centroid (plus
            ``params.centre_jitter_mm``).
        rng: source of the noise.
        orientation: DICOM-style code of the stored axes (``LPS``, ``RAS``, ``PIR`` ...); the
            anatomy and physical landmark positions do not depend on it.

    Returns:
        ``(image, landmarks)``: int16 HU image, and ``{label: (3,) LPS mm}`` physical positions.
    """
    code = _check_orientation(orientation)
    a = _anatomy(params)
    rot = rotation_matrix(params.rotation_deg)
    t = np.asarray(params.translation_mm, dtype=float)
    landmarks = {k: rot @ v + t for k, v in a.lm.items()}
    centre = np.mean(list(landmarks.values()), axis=0) + np.asarray(params.centre_jitter_mm)
    size = [max(1, round(f / spacing_mm)) for f in fov_mm]
    origin = centre - spacing_mm * (np.asarray(size) - 1) / 2
    grid = _Grid(origin, spacing_mm, size, rot, t)
    hu = _render_hu(a, grid)
    sigma = params.psf_mm / spacing_mm
    if sigma > 0.15:
        hu = ndimage.gaussian_filter(hu, sigma, mode="nearest", truncate=3.0)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(params.noise_hu)
    np.clip(hu, *_HU_RANGE, out=hu)
    img = array_to_image(np.rint(hu).astype(np.int16), origin, (spacing_mm,) * 3, np.eye(3))
    if code != "LPS":
        img = sitk.DICOMOrient(img, code)
    return img, landmarks


def generate_cohort(
    out_dir: str | Path,
    *,
    n_patients: int,
    spacing_mm: float,
    seed: int,
    fov_mm: Sequence[float] = (200.0, 200.0, 150.0),
) -> pd.DataFrame:
    """Write a pre- and a post-operative scan per patient, their landmarks and ``cases.csv``.

    Each patient draws from its own child of ``np.random.SeedSequence(seed)``, so a given seed
    always gives the same files. Every third scan is stored in a non-LPS orientation drawn from
    ``ORIENTATIONS``.

    Args:
        out_dir: output directory (created).
        n_patients: number of patients (two cases each).
        spacing_mm: isotropic voxel size (mm).
        seed: random seed.
        fov_mm: field of view (mm).

    Returns:
        The case table: ``case_id, patient_id, timepoint, image, landmarks`` (paths relative to
        ``out_dir``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    children = np.random.SeedSequence(seed).spawn(n_patients)
    n_cases = 0
    for i, child in enumerate(children):
        rng = np.random.default_rng(child)
        patient = f"P{i:03d}"
        pre = sample_head(rng)
        post = post_operative(pre, rng)
        for timepoint, params in (("pre", pre), ("post", post)):
            case = f"{patient}_{timepoint}"
            code = str(rng.choice(ORIENTATIONS))
            orientation = code if n_cases % 3 == 2 else "LPS"
            n_cases += 1
            img, landmarks = render_head_ct(
                params, spacing_mm=spacing_mm, fov_mm=fov_mm, rng=rng, orientation=orientation
            )
            write_image(img, out / f"{case}.nii.gz")
            write_markups(out / f"{case}.mrk.json", landmarks)
            rows.append(
                {
                    "case_id": case,
                    "patient_id": patient,
                    "timepoint": timepoint,
                    "image": f"{case}.nii.gz",
                    "landmarks": f"{case}.mrk.json",
                }
            )
            log.info("%s: %s, %s voxels, %s", case, orientation, img.GetSize(), timepoint)
    table = pd.DataFrame(rows, columns=["case_id", "patient_id", "timepoint", "image", "landmarks"])
    write_csv(table, out / "cases.csv")
    return table
