"""Synthetic chest CT in Hounsfield units with lung nodules, written in the LUNA16 layout.

A scan is painted on its voxel grid in a *body frame*: LPS millimetres (x to the patient's left,
y posterior, z superior) centred on the body, which sits at a random offset in the field of view.
The anatomy follows ``/work/shared/reference/data.md`` ("lowres: chest CT (LUNA16-like)"):

- body ellipse (300-360 x 200-260 mm, scaled to fit the field of view) with a subcutaneous fat
  layer (-100 HU), chest-wall muscle (40 HU), mediastinum (30-50 HU), heart, descending aorta,
  liver below the right diaphragm;
- two lungs: super-ellipsoids (100-130 x 150-180 x 220-280 mm, clipped to the thoracic cavity and
  the field of view) at -850..-800 HU with an antero-posterior gradient and smooth texture (sigma
  20-30 HU), a diaphragm dome carved from below, the heart, mediastinum, spine and aorta carved out;
- a **branching pulmonary vessel tree** in each lung (radius 5 mm down to 0.5 mm, 30-60 HU), the
  main source of false positives for a nodule detector;
- trachea (diameter ~18 mm) and main bronchi (air with a soft-tissue wall);
- spine (cancellous 150-300 HU, cortex 700-1200 HU, discs, posterior arch), ribs (400-800 HU, with
  cartilage anteriorly), sternum, and a scanner table;
- nodules: diameters from LIDC's distribution (:func:`sample_diameters`), solid (0..+100 HU) or
  ground-glass / part-solid (-700..-300 HU, a fraction ``nonsolid_fraction``), lobulated ellipsoids
  (zonal spherical harmonics), some spiculated, 0.5-1 mm edge blur; isolated, juxtapleural or
  juxtavascular;
- a small point-spread function, correlated noise (10-25 HU), optionally the -2000 / -3024 HU
  padding outside the reconstruction circle; int16, identity direction, random origin.

Lung labels (as ``seg-lungs-LUNA16``): 3 right lung (-x), 4 left lung (+x), 5 trachea and main
bronchi. The nodule mask holds ``k`` on the voxels of the k-th nodule (occupancy >= 0.5; the
centre voxel always), in the order of the scan's rows in ``annotations.csv``.

Array axis order: ``(z, y, x)``; shapes, spacings and points given as ``(x, y, z)`` are named so.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from scipy.special import erfc, eval_legendre

from medrepro.io.atomic import write_csv
from medrepro.io.luna16 import (
    AIRWAY_LABEL,
    ANNOTATION_COLUMNS,
    ANNOTATIONS_FILE,
    CT_PIXEL,
    LABEL_PIXEL,
    LUNG_MASK_DIR,
    NODULE_MASK_DIR,
    write_mhd,
)

__all__ = [
    "CASE_COLUMNS",
    "DIAMETER_QUANTILES_MM",
    "NODULE_COLUMNS",
    "ChestScan",
    "Nodule",
    "UID_PREFIX",
    "generate_cohort",
    "make_seriesuid",
    "render_chest_ct",
    "sample_diameters",
    "scan_images",
    "write_scan",
]

log = logging.getLogger(__name__)

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
#: LIDC nodule diameters (mm): 5th percentile, median, 95th percentile
DIAMETER_QUANTILES_MM = (4.3, 7.1, 20.5)
_DIAMETER_RANGE_MM = (3.0, 32.0)
_Z95 = 1.6448536269514722
_AIR = -1000.0
_RIGHT, _LEFT = 3, 4

CASE_COLUMNS = [
    "seriesuid", "subset", "image", "lung_mask", "nodule_mask",
    "shape_x", "shape_y", "shape_z", "spacing_x", "spacing_y", "spacing_z",
    "origin_x", "origin_y", "origin_z", "n_nodules", "noise_hu", "seconds",
]  # fmt: skip
NODULE_COLUMNS = [
    "seriesuid", "object", "kind", "location", "diameter_mm", "hu",
    "coordX", "coordY", "coordZ", "voxels",
]  # fmt: skip

Vec = np.ndarray


@dataclass(frozen=True)
class Nodule:
    """One nodule of a scan.

    Attributes:
        centre_mm: ``(x, y, z)`` world position in mm (the annotation).
        diameter_mm: nominal diameter (the annotation's ``diameter_mm``).
        kind: ``solid``, ``ground_glass`` or ``part_solid``.
        location: ``isolated``, ``juxtapleural``, ``juxtavascular`` or ``outside_lung``.
        hu: attenuation of the (ground-glass part of the) nodule, HU.
        voxels: voxels labelled in the nodule mask.
    """

    centre_mm: Vec
    diameter_mm: float
    kind: str
    location: str
    hu: float
    voxels: int


@dataclass(frozen=True)
class ChestScan:
    """A rendered scan: ``(z, y, x)`` arrays and the grid (``(x, y, z)`` mm, identity direction)."""

    seriesuid: str
    ct: np.ndarray
    lungs: np.ndarray
    nodule_mask: np.ndarray
    nodules: tuple[Nodule, ...]
    origin: Vec
    spacing: Vec
    noise_hu: float


def sample_diameters(rng: np.random.Generator, n: int) -> np.ndarray:
    """Nodule diameters (mm) from a split log-normal matching LIDC's quantiles.

    ``log d = log 7.1 + z * s``, ``z ~ N(0, 1)``, with ``s`` chosen on each side of the median so
    that the 5th and 95th percentiles are 4.3 and 20.5 mm; clipped to [3, 32] mm.
    """
    p5, p50, p95 = DIAMETER_QUANTILES_MM
    low, high = math.log(p50 / p5) / _Z95, math.log(p95 / p50) / _Z95
    z = rng.standard_normal(n)
    d = np.exp(math.log(p50) + z * np.where(z < 0, low, high))
    return np.clip(d, *_DIAMETER_RANGE_MM)


def make_seriesuid(rng: np.random.Generator) -> str:
    """A DICOM-like series UID: :data:`UID_PREFIX` + 30 digits (no leading zero)."""
    digits = rng.integers(0, 10, size=30)
    digits[0] = rng.integers(1, 10)
    return UID_PREFIX + "".join(str(int(d)) for d in digits)


# ---------------------------------------------------------------------------------------------
# grid helpers


@dataclass(frozen=True)
class _Frame:
    """Body-frame coordinates (mm) of the voxel centres along each axis and the voxel size."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    spacing: Vec  # (x, y, z) mm

    @property
    def h(self) -> float:
        """Geometric-mean voxel size (mm), the width of partial-volume edges."""
        return float(np.prod(self.spacing) ** (1 / 3))

    def box(self, lo: Vec, hi: Vec) -> tuple[slice, slice, slice] | None:
        """``(z, y, x)`` slices of the voxels whose centres lie in the body-frame box [lo, hi]."""
        lo_zyx, hi_zyx = np.asarray(lo)[::-1], np.asarray(hi)[::-1]
        slices = []
        for axis, a, b in zip((self.z, self.y, self.x), lo_zyx, hi_zyx, strict=True):
            i0 = int(np.searchsorted(axis, a, side="left"))
            i1 = int(np.searchsorted(axis, b, side="right"))
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
        return tuple(slices)  # type: ignore[return-value]

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable ``(z, y, x)`` coordinate arrays (mm) of a crop."""
        return (
            self.z[sl[0]][:, None, None],
            self.y[sl[1]][None, :, None],
            self.x[sl[2]][None, None, :],
        )

    def index(self, points: np.ndarray) -> np.ndarray:
        """Nearest ``(z, y, x)`` voxel indices of body-frame points ``(..., 3)`` (x, y, z) mm."""
        first = np.array([self.x[0], self.y[0], self.z[0]])
        idx = np.rint((np.asarray(points) - first) / self.spacing).astype(np.int64)
        return idx[..., ::-1]


def _lookup(mask: np.ndarray, frame: _Frame, points: np.ndarray) -> np.ndarray:
    """``mask`` at the nearest voxels of body-frame points ``(..., 3)``; False outside the grid."""
    idx = frame.index(points)
    inside = np.all((idx >= 0) & (idx < np.array(mask.shape)), axis=-1)
    out = np.zeros(idx.shape[:-1], dtype=bool)
    sel = idx[inside]
    out[inside] = mask[sel[:, 0], sel[:, 1], sel[:, 2]].astype(bool)
    return out


def _unit(v: Vec) -> Vec:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _sphere_directions(n: int) -> np.ndarray:
    """``(n, 3)`` roughly uniform unit vectors (Fibonacci sphere)."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)


_PROBES = _sphere_directions(48)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _rotate_away(d: Vec, angle: float, rng: np.random.Generator, axis: Vec | None = None) -> Vec:
    """Rotate the unit vector ``d`` by ``angle`` (rad) towards a random (or given) perpendicular."""
    if axis is None:
        axis = rng.standard_normal(3)
    perp = axis - np.dot(axis, d) * d
    if np.linalg.norm(perp) < 1e-6:
        perp = np.cross(d, [1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.cross(d, [0.0, 1.0, 0.0])
    perp = _unit(perp)
    return _unit(math.cos(angle) * d + math.sin(angle) * perp)


def _capsule_occupancy(
    frame: _Frame, a: Vec, b: Vec, radius: float
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Partial-volume occupancy (0..1) of a capsule (segment a-b, radius mm) on its crop.

    Thin tubes get their peak scaled by ``min(1, 2 r / h)`` (their cross-section fills only part
    of a voxel).
    """
    h = frame.h
    pad = radius + h
    sl = frame.box(np.minimum(a, b) - pad, np.maximum(a, b) + pad)
    if sl is None:
        return None
    z, y, x = frame.coords(sl)
    ab = b - a
    length2 = max(float(ab @ ab), 1e-12)
    vx, vy, vz = x - a[0], y - a[1], z - a[2]
    t = np.clip((vx * ab[0] + vy * ab[1] + vz * ab[2]) / length2, 0.0, 1.0)
    d = np.sqrt((vx - t * ab[0]) ** 2 + (vy - t * ab[1]) ** 2 + (vz - t * ab[2]) ** 2)
    occ = np.clip(0.5 - (d - radius) / h, 0.0, 1.0) * min(1.0, 2.0 * radius / h)
    return sl, occ.astype(np.float32)


def _blend(
    hu: np.ndarray, sl: tuple[slice, ...], occ: np.ndarray, value: float | np.ndarray
) -> None:
    """``hu[sl] += occ * (value - hu[sl])``."""
    view = hu[sl]
    view += occ * (value - view)


# ---------------------------------------------------------------------------------------------
# anatomy


@dataclass(frozen=True)
class _Anatomy:
    body: tuple[float, float]  # semi-axes (x, y) mm
    fat: float
    wall: float
    cavity: tuple[float, float]
    med: float  # mediastinum half width
    lung_c: tuple[Vec, Vec]  # centres (right, left)
    lung_r: Vec  # semi-axes (x, y, z)
    lung_p: float
    spine_y: float
    spine_r: float
    trachea_y: float
    trachea_r: float
    carina_z: float
    heart_c: Vec
    heart_r: Vec
    aorta: tuple[float, float, float]  # x, y, radius
    hu: dict[str, float]


def _sample_anatomy(rng: np.random.Generator, fov: Vec) -> _Anatomy:
    """Random anatomy (body frame, mm) that fits the field of view ``fov`` (x, y, z) mm."""
    bx, by = rng.uniform(150, 180), rng.uniform(100, 130)
    scale = min(1.0, 0.46 * fov[0] / bx, 0.40 * fov[1] / by)
    bx, by = bx * scale, by * scale
    fat, wall = rng.uniform(5, 20) * scale, rng.uniform(14, 20) * scale
    cx, cy = bx - fat - wall, by - fat - wall
    med = rng.uniform(20, 30) * scale
    ax = (cx - med) / 2
    ay = cy * rng.uniform(0.85, 0.95)
    c = min(rng.uniform(110, 140), 0.45 * fov[2])
    zc = fov[2] / 2 - 0.04 * fov[2] - c
    ly = cy - ay - 2 * scale
    spine_r = rng.uniform(15, 20) * scale
    spine_y = cy - spine_r - 5 * scale
    hu = {
        "fat": rng.uniform(-120, -80),
        "muscle": rng.uniform(35, 55),
        "mediastinum": rng.uniform(30, 50),
        "heart": rng.uniform(35, 50),
        "liver": rng.uniform(50, 65),
        "lung": rng.uniform(-850, -800),
        "lung_gradient": rng.uniform(10, 30),
        "texture": rng.uniform(20, 30),
        "vessel": rng.uniform(30, 60),
        "cancellous": rng.uniform(150, 300),
        "cortex": rng.uniform(700, 1200),
        "rib": rng.uniform(400, 800),
        "disc": rng.uniform(70, 100),
        "cartilage": rng.uniform(120, 220),
    }
    return _Anatomy(
        body=(bx, by),
        fat=fat,
        wall=wall,
        cavity=(cx, cy),
        med=med,
        lung_c=(np.array([-(med + ax), ly, zc]), np.array([med + ax, ly, zc])),
        lung_r=np.array([ax, ay, c]),
        lung_p=rng.uniform(2.5, 3.5),
        spine_y=spine_y,
        spine_r=spine_r,
        trachea_y=spine_y - spine_r - rng.uniform(18, 26) * scale,
        trachea_r=rng.uniform(8, 10) * min(1.0, scale * 1.1),
        carina_z=zc + rng.uniform(0.2, 0.3) * c,
        heart_c=np.array([0.25 * cx * rng.uniform(0.6, 1.0), -0.45 * cy, zc - 0.45 * c]),
        heart_r=np.array([0.42 * cx, 0.5 * cy, 0.4 * c]) * rng.uniform(0.9, 1.1, 3),
        aorta=(spine_r + 8 * scale, spine_y - 0.6 * spine_r, rng.uniform(10, 13) * scale),
        hu=hu,
    )


def _ellipse2d(frame: _Frame, rx: float, ry: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    """``(y, x)`` normalised radius of an axis-aligned ellipse (< 1 inside)."""
    return np.sqrt(((frame.x[None, :] - cx) / rx) ** 2 + ((frame.y[:, None] - cy) / ry) ** 2)


def _paint_torso(hu: np.ndarray, frame: _Frame, a: _Anatomy, rng: np.random.Generator) -> None:
    """Body, fat, muscle, cavity (mediastinum) and the table, constant along z."""
    bx, by = a.body
    body = _ellipse2d(frame, bx, by) < 1
    muscle = _ellipse2d(frame, bx - a.fat, by - a.fat) < 1
    cavity = _ellipse2d(frame, *a.cavity) < 1
    slab = np.full(body.shape, _AIR, dtype=np.float32)
    slab[body] = a.hu["fat"]
    slab[muscle] = a.hu["muscle"]
    slab[cavity] = a.hu["mediastinum"]
    # table: carbon-fibre shell (+200 HU) around a foam core, under the back (posterior = +y)
    top = by + rng.uniform(2, 10)
    thick = rng.uniform(8, 14)
    y, x = frame.y[:, None], frame.x[None, :]
    wide = np.abs(x) < min(0.45 * (frame.x[-1] - frame.x[0]), 1.6 * bx)
    table = wide & (y >= top) & (y <= top + thick)
    core = wide & (y >= top + 2) & (y <= top + thick - 2)
    slab[table] = 200.0
    slab[core] = -950.0
    hu[:] = slab[None]


def _spine_and_ribs(
    hu: np.ndarray,
    frame: _Frame,
    a: _Anatomy,
    rng: np.random.Generator,
    z_range: tuple[float, float],
) -> None:
    """Vertebrae (cortex, cancellous bone, discs, arch, spinous process), ribs and sternum."""
    y, x = frame.y[:, None], frame.x[None, :]
    z = frame.z
    r = np.sqrt(x**2 + (y - a.spine_y) ** 2)
    body2d = r < a.spine_r
    shell2d = body2d & (r > a.spine_r - 2.5)
    z_scale = a.lung_r[2] / 125.0
    period = rng.uniform(24, 30) * z_scale
    phase = rng.uniform(0, period)
    disc = np.abs(((z - phase) % period) - period / 2) < 2.5 * z_scale
    hu[:, body2d] = np.where(disc[:, None], a.hu["disc"], a.hu["cancellous"])
    hu[:, shell2d] = np.where(disc[:, None], a.hu["disc"], a.hu["cortex"])
    canal_y = a.spine_y + a.spine_r + 9 * a.spine_r / 18
    rc = np.sqrt(x**2 + (y - canal_y) ** 2)
    hu[:, rc < 13 * a.spine_r / 18] = a.hu["cortex"] * 0.6
    hu[:, rc < 7 * a.spine_r / 18] = 20.0  # spinal canal
    back = a.body[1] - a.fat - 6
    process = (np.abs(x) < 4) & (y > canal_y + 12 * a.spine_r / 18) & (y < back)
    hu[:, process] = a.hu["cortex"] * 0.6

    # ribs: a ring in the chest wall, periodic in z, descending anteriorly
    rx = a.body[0] - a.fat - 0.55 * a.wall
    ry = a.body[1] - a.fat - 0.55 * a.wall
    rr = min(rng.uniform(4.0, 5.5), 0.3 * a.wall)
    rho = np.sqrt((x / rx) ** 2 + (y / ry) ** 2) + 1e-6
    dr = np.sqrt(x**2 + y**2) * (1 - 1 / rho)
    ring = np.abs(dr) < rr + frame.h
    ring &= np.abs(x) > 0.15 * rx  # no ribs at the spine or the sternum
    theta = np.arctan2(y, x)
    sin_t = np.sin(theta)[ring]
    cartilage = (sin_t < -0.75).astype(np.float32)  # anterior ends: costal cartilage
    zsel = (z >= z_range[0]) & (z <= z_range[1])
    if not zsel.any() or not ring.any():
        return
    rib_period = rng.uniform(22, 28) * z_scale
    drop = rng.uniform(30, 50) * z_scale
    zz = z[zsel][:, None] - drop * (sin_t[None, :] - 1) / 2 - rng.uniform(0, rib_period)
    dz = zz % rib_period
    dz = np.minimum(dz, rib_period - dz)
    d = np.sqrt((dr[ring][None, :] / 0.7) ** 2 + dz**2)
    occ = np.clip(0.5 - (d - rr) / frame.h, 0.0, 1.0).astype(np.float32)
    value = a.hu["rib"] + cartilage * (a.hu["cartilage"] - a.hu["rib"])
    idx = np.flatnonzero(zsel)
    sub = hu[idx[0] : idx[-1] + 1]  # a view: zsel is one contiguous run
    block = sub[:, ring]
    block += occ * (value[None, :] - block)
    sub[:, ring] = block
    # sternum
    sternum = (np.abs(x) < 0.1 * rx) & (np.abs(dr) < 0.45 * a.wall) & (y < 0)
    zs = (z >= z_range[0] + 0.35 * (z_range[1] - z_range[0])) & (z <= z_range[1] - 10)
    idx = np.flatnonzero(zs)
    if idx.size:
        hu[idx[0] : idx[-1] + 1, sternum] = a.hu["cancellous"] + 150


def _ellipsoid_value(frame: _Frame, sl: tuple[slice, ...], c: Vec, r: Vec) -> np.ndarray:
    z, y, x = frame.coords(sl)
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2


def _lungs(frame: _Frame, a: _Anatomy) -> np.ndarray:
    """``(z, y, x)`` uint8 lung labels: 3 right, 4 left (airways added later)."""
    shape = (frame.z.size, frame.y.size, frame.x.size)
    labels = np.zeros(shape, dtype=np.uint8)
    y, x = frame.y[:, None], frame.x[None, :]
    cavity = _ellipse2d(frame, a.cavity[0] - 1, a.cavity[1] - 1) < 1
    spine = np.sqrt(x**2 + (y - a.spine_y) ** 2) < a.spine_r + 4
    ax_, ay_, ar_ = a.aorta
    aorta = np.sqrt((x - ax_) ** 2 + (y - ay_) ** 2) < ar_ + 3
    allowed2d = cavity & ~spine & ~aorta & (np.abs(x) > a.med)
    p = a.lung_p
    for label, c in zip((_RIGHT, _LEFT), a.lung_c, strict=True):
        r = a.lung_r
        sl = frame.box(c - r, c + r)
        if sl is None:
            continue
        z, yy, xx = frame.coords(sl)
        xy = (np.abs((xx - c[0]) / r[0]) ** p + np.abs((yy - c[1]) / r[1]) ** p) ** (2 / p)
        dz = (z - c[2]) / r[2]
        zterm = np.where(dz > 0, dz**2, np.abs(dz) ** 4)
        inside = (xy + zterm) < 1
        inside &= allowed2d[sl[1], sl[2]][None]
        # diaphragm dome (higher on the right, over the liver)
        dome_c = np.array([c[0] * 0.9, c[1] - 0.1 * r[1], c[2] - r[2]])
        dome_r = np.array([r[0] * 1.1, r[1] * 0.95, r[2] * (0.5 if label == _RIGHT else 0.4)])
        inside &= _ellipsoid_value(frame, sl, dome_c, dome_r) > 1
        inside &= _ellipsoid_value(frame, sl, a.heart_c, a.heart_r + 3) > 1
        labels[sl][inside] = label
    return labels


def _airways(frame: _Frame, a: _Anatomy) -> list[tuple[Vec, Vec, float]]:
    """Trachea and main bronchi as capsules ``(start, end, radius)`` (body frame mm)."""
    top = np.array([0.0, a.trachea_y, frame.z[-1] + 5])
    carina = np.array([0.0, a.trachea_y, a.carina_z])
    out = [(top, carina, a.trachea_r)]
    for side in (-1.0, 1.0):
        hilum = np.array([side * (a.med + 10), a.trachea_y + 8, a.carina_z - 0.15 * a.lung_r[2]])
        out.append((carina, hilum, 0.7 * a.trachea_r))
    return out


def _paint_airways(
    hu: np.ndarray, labels: np.ndarray, frame: _Frame, tubes: list[tuple[Vec, Vec, float]]
) -> None:
    """Soft-tissue walls, air lumen (label 5), airways removed from the lungs."""
    for a, b, r in tubes:
        wall = _capsule_occupancy(frame, a, b, r + 2.0)
        if wall is not None:
            sl, occ = wall
            labels[sl][occ > 0.5] = 0
            _blend(hu, sl, occ, 40.0)
    for a, b, r in tubes:
        lumen = _capsule_occupancy(frame, a, b, r)
        if lumen is not None:
            sl, occ = lumen
            _blend(hu, sl, occ, _AIR)
            labels[sl][occ >= 0.5] = AIRWAY_LABEL


def _vessel_tree(
    frame: _Frame,
    lung: np.ndarray,
    a: _Anatomy,
    rng: np.random.Generator,
    max_segments: int,
) -> list[tuple[Vec, Vec, float]]:
    """Branching vessel segments ``(start, end, radius)`` grown from each hilum inside the lungs.

    Each segment is 5-9 radii long; it splits in two with radii 0.65-0.85 of the parent and
    branch angles of 20-45 degrees, until the radius falls below ``max(0.5 mm, 0.3 voxel)`` or a
    segment would leave the lung.
    """
    r_min = max(0.5, 0.3 * float(frame.spacing.min()))
    segments: list[tuple[Vec, Vec, float]] = []
    trunks = [(0.3, 0.0, 1.0), (1.0, -0.6, -0.1), (0.5, 0.2, -1.0), (0.4, 1.0, -0.6), (1, 0.3, 0.3)]
    stack: list[tuple[Vec, Vec, float, bool]] = []
    for side, centre in zip((-1.0, 1.0), a.lung_c, strict=True):
        hilum = np.array([side * (a.med + 4), a.trachea_y + 14, a.carina_z - 0.2 * a.lung_r[2]])
        hilum[1] = min(hilum[1], centre[1])
        for tx, ty, tz in trunks:
            d = _unit([side * tx, ty, tz] + rng.normal(0, 0.15, 3))
            stack.append((hilum, d, rng.uniform(3.5, 5.0), True))
    order = rng.permutation(len(stack))
    stack = [stack[i] for i in order]
    while stack and len(segments) < max_segments:
        start, d, r, root = stack.pop(0)
        length = r * rng.uniform(5, 9) * (1.6 if root else 1.0)
        end = None
        for frac in (1.0, 0.6, 0.35):
            cand = start + d * length * frac
            t = np.linspace(0.0 if not root else 0.5, 1.0, 5)[:, None]
            pts = start + t * (cand - start)
            if _lookup(lung, frame, pts).all():
                end = cand
                break
        if end is None:
            continue
        segments.append((start, end, r))
        if r * 0.85 < r_min:
            continue
        axis = rng.standard_normal(3)
        for sign, ratio in ((1.0, rng.uniform(0.7, 0.85)), (-1.0, rng.uniform(0.6, 0.8))):
            angle = rng.uniform(20, 45) * math.pi / 180
            child = _rotate_away(d, angle, rng, axis=sign * axis)
            stack.append((end, child, r * ratio, False))
    return segments


def _paint_vessels(
    hu: np.ndarray, frame: _Frame, lung: np.ndarray, segments: list, value: float
) -> None:
    """Blend the vessel segments into ``hu`` inside the lungs (``lung``: bool ``(z, y, x)``)."""
    for a, b, r in segments:
        out = _capsule_occupancy(frame, a, b, r)
        if out is None:
            continue
        sl, occ = out
        occ *= lung[sl]
        _blend(hu, sl, occ, value)


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: Vec, std: float
) -> np.ndarray:
    """Gaussian-filtered white noise with standard deviation ``std`` (float32, ``(z, y, x)``)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    ndimage.gaussian_filter(
        noise, sigma=tuple(float(s) for s in sigma_vox), output=noise, truncate=3
    )
    scale = float(noise.std())
    noise *= std / max(scale, 1e-6)
    return noise


# ---------------------------------------------------------------------------------------------
# nodules


def _nodule_kind(rng: np.random.Generator, nonsolid_fraction: float) -> str:
    if rng.random() >= nonsolid_fraction:
        return "solid"
    return "ground_glass" if rng.random() < 0.5 else "part_solid"


def _place_nodule(
    rng: np.random.Generator,
    frame: _Frame,
    lung: np.ndarray,
    candidates: np.ndarray,
    segments: list,
    radius: float,
    location: str,
    taken: list[tuple[Vec, float]],
    a: _Anatomy,
) -> Vec | None:
    """A body-frame centre (mm) for a nodule of ``radius`` at ``location``, or None."""
    thick = [s for s in segments if 1.0 <= s[2] <= 4.0]
    for _ in range(400):
        if location == "outside_lung":
            theta = rng.uniform(0.15, 0.85) * math.pi * rng.choice([-1, 1])
            rx = a.body[0] - a.fat - 0.3 * a.wall
            ry = a.body[1] - a.fat - 0.3 * a.wall
            z = rng.uniform(a.lung_c[0][2] - 0.3 * a.lung_r[2], a.lung_c[0][2] + 0.5 * a.lung_r[2])
            c = np.array([rx * math.cos(theta), ry * math.sin(theta), z])
            if _lookup(lung, frame, c[None] + _PROBES * radius).any():
                continue
        elif location == "juxtavascular" and thick:
            s0, s1, rv = thick[int(rng.integers(len(thick)))]
            axis = _unit(s1 - s0)
            offset = _rotate_away(axis, math.pi / 2, rng)
            c = s0 + rng.uniform(0.2, 0.8) * (s1 - s0) + offset * (radius + 0.6 * rv)
            if not _lookup(lung, frame, c[None] + _PROBES * (0.8 * radius + 1)).all():
                continue
        else:
            pick = candidates[int(rng.integers(len(candidates)))]
            c = pick + rng.uniform(-0.5, 0.5, 3) * frame.spacing
            if location == "juxtapleural":
                inner = _lookup(lung, frame, c[None] + _PROBES * (0.35 * radius))
                outer = _lookup(lung, frame, c[None] + _PROBES * (radius + 1.0))
                if not (inner.all() and not outer.all() and _lookup(lung, frame, c[None])[0]):
                    continue
            elif not _lookup(lung, frame, c[None] + _PROBES * (radius + 2.0)).all():
                continue
        if all(np.linalg.norm(c - o) > radius + ro + 2.0 for o, ro in taken):
            return c
    return None


def _render_nodule(
    hu: np.ndarray,
    mask: np.ndarray,
    frame: _Frame,
    centre: Vec,
    radius: float,
    kind: str,
    label: int,
    rng: np.random.Generator,
) -> tuple[float, int]:
    """Paint one lobulated nodule (max with the background) and label its voxels; (HU, voxels)."""
    axes = radius * rng.uniform(0.8, 1.2, 3)
    axes *= radius / float(np.prod(axes) ** (1 / 3))
    rot = _random_rotation(rng)
    n_lobes = int(rng.integers(2, 5))
    lobe_axes = _sphere_directions(n_lobes * 7)[rng.choice(n_lobes * 7, n_lobes, replace=False)]
    lobe_axes = lobe_axes @ rot.T
    lobe_orders = rng.integers(2, 5, n_lobes)
    lobe_amps = rng.uniform(0.03, 0.10, n_lobes)
    blur = rng.uniform(0.5, 1.0)
    sigma = math.sqrt(blur**2 + frame.h**2 / 12)
    half = float(axes.max()) * 1.35 + 3 * sigma + frame.h
    sl = frame.box(centre - half, centre + half)
    if sl is None:
        return 0.0, 0
    z, y, x = frame.coords(sl)
    q = np.stack(np.broadcast_arrays(x - centre[0], y - centre[1], z - centre[2]), axis=-1)
    local = q @ rot  # coordinates along the ellipsoid's axes
    norm = np.linalg.norm(q, axis=-1)
    u = q / np.maximum(norm, 1e-6)[..., None]
    rho = np.linalg.norm(local / axes, axis=-1)
    bound = np.ones_like(rho)
    for v, order, amp in zip(lobe_axes, lobe_orders, lobe_amps, strict=True):
        bound += amp * eval_legendre(int(order), u @ v)
    s = (rho - bound) * radius
    occ = (0.5 * erfc(s / (math.sqrt(2.0) * sigma))).astype(np.float32)
    if kind == "solid":
        value: float | np.ndarray = float(rng.uniform(0, 100))
        hu_out = float(value)
    elif kind == "ground_glass":
        value = float(rng.uniform(-700, -450))
        hu_out = float(value)
    else:
        hu_out = float(rng.uniform(-650, -300))
        core_r = radius * rng.uniform(0.3, 0.6)
        core = 0.5 * erfc((norm - core_r) / (math.sqrt(2.0) * sigma))
        value = (hu_out + core * (rng.uniform(0, 80) - hu_out)).astype(np.float32)
    view = hu[sl]
    np.maximum(view, view + occ * (value - view), out=view)
    if kind == "solid" and rng.random() < 0.3:  # spicules
        for _ in range(int(rng.integers(3, 7))):
            d = _unit(rng.standard_normal(3))
            end = centre + d * radius * rng.uniform(1.4, 2.2)
            spic = _capsule_occupancy(frame, centre, end, rng.uniform(0.4, 0.8))
            if spic is not None:
                ssl, socc = spic
                sview = hu[ssl]
                np.maximum(sview, sview + socc * (value - sview), out=sview)
    body = occ >= 0.5
    mask[sl][body] = label
    cz, cy, cx = frame.index(centre[None])[0]
    if all(0 <= i < n for i, n in zip((cz, cy, cx), mask.shape, strict=True)):
        mask[cz, cy, cx] = label
    return hu_out, int(np.count_nonzero(mask[sl] == label))


# ---------------------------------------------------------------------------------------------
# the scan


def render_chest_ct(
    rng: np.random.Generator,
    *,
    shape_xyz: tuple[int, int, int],
    spacing_xyz: tuple[float, float, float],
    nodules_per_scan: tuple[int, int] = (1, 4),
    nonsolid_fraction: float = 0.18,
    juxta_fraction: float = 0.4,
    outside_lung: int = 0,
    max_vessel_segments: int = 1200,
    seriesuid: str | None = None,
) -> ChestScan:
    """Render one chest CT with nodules.

    Args:
        rng: the scan's random generator (everything, the UID included, comes from it).
        shape_xyz: voxels along x, y, z.
        spacing_xyz: voxel size (mm) along x, y, z.
        nodules_per_scan: inclusive range of the number of nodules.
        nonsolid_fraction: probability that a nodule is ground-glass or part-solid.
        juxta_fraction: probability that a nodule is juxtapleural or juxtavascular (half each).
        outside_lung: extra solid lesions placed in the chest wall, outside the lung mask (as the
            72 LUNA16 cases the paper excludes); they are annotated like nodules.
        max_vessel_segments: cap on the vessel tree size.
        seriesuid: the UID; drawn from ``rng`` when None.

    Returns:
        The scan: int16 HU, uint8 lung labels and nodule mask, ``(z, y, x)``.
    """
    uid = make_seriesuid(rng) if seriesuid is None else seriesuid
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    n = np.asarray(shape_xyz, dtype=np.int64)
    fov = n * spacing
    offset = np.array([rng.uniform(-0.03, 0.03) * fov[0], rng.uniform(-0.08, -0.02) * fov[1], 0.0])
    axes = [
        (np.arange(k) - (k - 1) / 2) * s - o for k, s, o in zip(n, spacing, offset, strict=True)
    ]
    frame = _Frame(x=axes[0], y=axes[1], z=axes[2], spacing=spacing)
    fov_centre = np.array([rng.uniform(-15, 15), rng.uniform(-30, 0), rng.uniform(-260, -100)])
    origin = fov_centre - (n - 1) / 2 * spacing
    body_world = fov_centre + offset  # body frame -> world: add this

    a = _sample_anatomy(rng, fov)
    shape = (int(n[2]), int(n[1]), int(n[0]))
    hu = np.empty(shape, dtype=np.float32)
    _paint_torso(hu, frame, a, rng)
    lungs = _lungs(frame, a)
    zc, c = a.lung_c[0][2], a.lung_r[2]
    # liver under the right dome, heart, aorta
    liver_c = np.array([-0.45 * a.cavity[0], 0.0, zc - 1.35 * c])
    liver_r = np.array([0.75 * a.cavity[0], 0.9 * a.cavity[1], 0.55 * c])
    sl = frame.box(liver_c - liver_r, liver_c + liver_r)
    if sl is not None:
        hu[sl][_ellipsoid_value(frame, sl, liver_c, liver_r) < 1] = a.hu["liver"]
    sl = frame.box(a.heart_c - a.heart_r, a.heart_c + a.heart_r)
    if sl is not None:
        hu[sl][_ellipsoid_value(frame, sl, a.heart_c, a.heart_r) < 1] = a.hu["heart"]
    y, x = frame.y[:, None], frame.x[None, :]
    aorta = np.sqrt((x - a.aorta[0]) ** 2 + (y - a.aorta[1]) ** 2) < a.aorta[2]
    hu[:, aorta] = a.hu["heart"] - 5
    _spine_and_ribs(hu, frame, a, rng, (zc - c - 15, zc + c))

    lung = lungs > 0  # airways not painted yet
    gradient = a.hu["lung_gradient"] * (frame.y / max(a.lung_r[1], 1.0))
    base = (a.hu["lung"] + gradient).astype(np.float32)[None, :, None]
    texture = _smooth_noise(rng, shape, 1.5 / spacing[::-1], a.hu["texture"])
    hu[lung] = np.broadcast_to(base, shape)[lung] + texture[lung]
    del texture
    tubes = _airways(frame, a)
    _paint_airways(hu, lungs, frame, tubes)
    lung = (lungs == _RIGHT) | (lungs == _LEFT)
    segments = _vessel_tree(frame, lung, a, rng, max_vessel_segments)
    _paint_vessels(hu, frame, lung, segments, a.hu["vessel"])

    # nodules
    mask = np.zeros(shape, dtype=np.uint8)
    strided = np.argwhere(lung[::2, ::2, ::2]) * 2
    candidates = np.stack(
        [frame.x[strided[:, 2]], frame.y[strided[:, 1]], frame.z[strided[:, 0]]], axis=-1
    )
    count = int(rng.integers(nodules_per_scan[0], nodules_per_scan[1] + 1))
    diameters = sample_diameters(rng, count)
    plan = [(float(d), _nodule_location(rng, juxta_fraction)) for d in diameters]
    plan += [(float(rng.uniform(8, 16)), "outside_lung") for _ in range(outside_lung)]
    taken: list[tuple[Vec, float]] = []
    nodules: list[Nodule] = []
    for d, location in plan:
        if len(candidates) == 0:
            break
        centre = _place_nodule(rng, frame, lung, candidates, segments, d / 2, location, taken, a)
        if centre is None and location != "isolated":
            location = "isolated"
            centre = _place_nodule(
                rng, frame, lung, candidates, segments, d / 2, location, taken, a
            )
        if centre is None:
            log.warning("%s: no room for a %.1f mm nodule", uid, d)
            continue
        kind = "solid" if location == "outside_lung" else _nodule_kind(rng, nonsolid_fraction)
        label = len(nodules) + 1
        value, voxels = _render_nodule(hu, mask, frame, centre, d / 2, kind, label, rng)
        taken.append((centre, d / 2))
        nodules.append(Nodule(centre + body_world, d, kind, location, value, voxels))

    # point-spread function, correlated noise, reconstruction circle
    psf = 0.3 / spacing[::-1]
    if np.any(psf > 0.25):
        ndimage.gaussian_filter(hu, sigma=tuple(float(s) for s in psf), output=hu, truncate=3)
    noise_hu = float(rng.uniform(10, 25))
    hu += _smooth_noise(rng, shape, np.array([0.5, 0.7, 0.7]), noise_hu)
    if rng.random() < 0.5:
        jj, ii = np.ogrid[: shape[1], : shape[2]]
        radius = min(shape[1], shape[2]) / 2
        outside = (jj - (shape[1] - 1) / 2) ** 2 + (ii - (shape[2] - 1) / 2) ** 2 > radius**2
        hu[:, outside] = -2000.0 if rng.random() < 0.5 else -3024.0
    ct = np.clip(np.rint(hu), -3024, 3071).astype(np.int16)
    return ChestScan(
        seriesuid=uid,
        ct=ct,
        lungs=lungs,
        nodule_mask=mask,
        nodules=tuple(nodules),
        origin=origin,
        spacing=spacing,
        noise_hu=noise_hu,
    )


def _nodule_location(rng: np.random.Generator, juxta_fraction: float) -> str:
    if rng.random() >= juxta_fraction:
        return "isolated"
    return "juxtapleural" if rng.random() < 0.5 else "juxtavascular"


# ---------------------------------------------------------------------------------------------
# files


def scan_images(scan: ChestScan) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """SimpleITK images (CT, lung labels, nodule mask) with the scan's origin and spacing."""
    out = []
    for arr in (scan.ct, scan.lungs, scan.nodule_mask):
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin(tuple(float(v) for v in scan.origin))
        img.SetSpacing(tuple(float(v) for v in scan.spacing))
        out.append(img)
    return out[0], out[1], out[2]


def write_scan(root: str | Path, scan: ChestScan, subset: int) -> dict[str, str]:
    """Write a scan's three MetaImages under ``root`` in the LUNA16 layout; relative paths."""
    root = Path(root)
    ct, lungs, nodules = scan_images(scan)
    paths = {
        "image": f"subset{subset}/{scan.seriesuid}.mhd",
        "lung_mask": f"{LUNG_MASK_DIR}/{scan.seriesuid}.mhd",
        "nodule_mask": f"{NODULE_MASK_DIR}/{scan.seriesuid}.mhd",
    }
    write_mhd(ct, root / paths["image"], pixel_type=CT_PIXEL)
    write_mhd(lungs, root / paths["lung_mask"], pixel_type=LABEL_PIXEL)
    write_mhd(nodules, root / paths["nodule_mask"], pixel_type=LABEL_PIXEL)
    return paths


def generate_cohort(
    out_dir: str | Path,
    *,
    n_subsets: int,
    per_subset: int,
    seed: int,
    shape_xyz: tuple[int, int, int],
    spacing_xyz: tuple[float, float, float],
    nodules_per_scan: tuple[int, int] = (1, 4),
    nonsolid_fraction: float = 0.18,
    outside_lung_scans: int = 0,
) -> pd.DataFrame:
    """Write a cohort in the LUNA16 layout into ``out_dir`` (an existing, empty directory).

    Scan ``i`` (subset ``i // per_subset``) is rendered from ``np.random.default_rng([seed, i])``,
    so a scan does not depend on the cohort's size. The last ``outside_lung_scans`` scans get one
    extra lesion outside the lung mask (to exercise the paper's exclusion rule).

    Writes ``subset<k>/``, ``seg-lungs-LUNA16/``, ``nodule-masks/``, ``annotations.csv`` (world
    mm), ``nodules.csv`` (:data:`NODULE_COLUMNS`: kind and location of every annotation, in the
    same order) and ``cases.csv`` (:data:`CASE_COLUMNS`).

    Returns:
        The ``cases.csv`` table.
    """
    out_dir = Path(out_dir)
    cases, annotations, records = [], [], []
    total = n_subsets * per_subset
    for i in range(total):
        subset = i // per_subset
        start = time.perf_counter()
        scan = render_chest_ct(
            np.random.default_rng([seed, i]),
            shape_xyz=shape_xyz,
            spacing_xyz=spacing_xyz,
            nodules_per_scan=nodules_per_scan,
            nonsolid_fraction=nonsolid_fraction,
            outside_lung=1 if i >= total - outside_lung_scans else 0,
        )
        paths = write_scan(out_dir, scan, subset)
        seconds = time.perf_counter() - start
        for k, nod in enumerate(scan.nodules, start=1):
            x, y, z = (round(float(v), 4) for v in nod.centre_mm)
            d = round(nod.diameter_mm, 4)
            annotations.append([scan.seriesuid, x, y, z, d])
            records.append(
                [
                    scan.seriesuid,
                    k,
                    nod.kind,
                    nod.location,
                    d,
                    round(nod.hu, 1),
                    x,
                    y,
                    z,
                    nod.voxels,
                ]
            )
        cases.append(
            [scan.seriesuid, subset, paths["image"], paths["lung_mask"], paths["nodule_mask"]]
            + [int(v) for v in shape_xyz]
            + [float(v) for v in scan.spacing]
            + [round(float(v), 4) for v in scan.origin]
            + [len(scan.nodules), round(scan.noise_hu, 2), round(seconds, 3)]
        )
        log.info("scan %d/%d %s: %d nodules, %.2f s", i + 1, total, scan.seriesuid,
                 len(scan.nodules), seconds)  # fmt: skip
    write_csv(pd.DataFrame(annotations, columns=ANNOTATION_COLUMNS), out_dir / ANNOTATIONS_FILE)
    write_csv(pd.DataFrame(records, columns=NODULE_COLUMNS), out_dir / "nodules.csv")
    table = pd.DataFrame(cases, columns=CASE_COLUMNS)
    write_csv(table, out_dir / "cases.csv")
    return table
