"""Synthetic transcerebellar-plane fetal ultrasound with cerebellum masks (paper 004 phantoms).

Ramos et al. 2020 use 21 volumes x 15 parallel transcerebellar slices (8-bit BMP, about 255 x 173
pixels) with expert cerebellum masks; the cerebellum is always on the right of the image. The
phantom follows ``/work/shared/reference/data.md`` ("cerebellum_yolo: fetal ultrasound").

**Anatomy** (head frame, mm): ``u`` along the occipito-frontal axis (the midline, positive
towards the occiput = image right), ``v`` across it in the image plane, ``w`` normal to the plane
(the offset of a parallel slice). Per volume a gestational age GA of 18-34 weeks gives

- the head: an ellipsoid whose outer skull section has head circumference
  ``HC = 175 + 10.5 (GA - 20) mm`` (175 mm at 20 weeks, 280 mm at 30, +-4 %) and BPD/OFD
  0.75-0.80; the section at offset ``w`` shrinks as ``sqrt(1 - (w / c)^2)``, ``c = 0.9 BPD/2``;
- an echogenic skull 2-3 mm thick (its echo weaker where the beam grazes it) that shadows
  everything beyond it along the beam (posterior acoustic shadowing), a thin scalp, a 1-2 mm
  anechoic extra-axial CSF layer;
- the falx (an echogenic midline line) in front of the cavum septi pellucidi (an anechoic box
  with echogenic walls), hypoechoic thalami beside a slit-like third ventricle;
- the **cerebellum** in the posterior fossa: two hypoechoic ellipsoidal hemispheres with
  echogenic rims (slightly rotated, a butterfly) joined by the echogenic vermis; transverse
  cerebellar diameter ``TCD = GA +- 1 mm`` (mm); behind it the anechoic cisterna magna
  (2-10 mm, growing with GA) up to the occipital bone.

The 15 slices of a volume are parallel cuts at offsets ``w`` spread symmetrically over
0.6-1.03 x the cerebellum's half-height (+- a small shift), so the cerebellar section shrinks
towards the ends and the outermost slices of a few volumes miss it (an empty mask).

**Image formation** on a polar (depth r x beam angle theta) grid of the probe's sector:
complex Gaussian scatterers x sqrt(echogenicity) -> separable Gaussian PSF (FWHM axial 0.3-0.5
mm, lateral 1.0-1.8 mm at the focus, widening away from it; data.md's ranges read as FWHM) ->
envelope (Rayleigh speckle) -> skull shadowing (amplitude x 0.3-0.55 per 2.5 mm of bone crossed)
-> attenuation 0.5 dB/cm/MHz at 3-5 MHz, 80-105 % compensated by TGC -> electronic noise -> log
compression (dynamic range 50-60 dB, gain +-4 dB) -> bilinear scan conversion to the ``H x W``
image, black outside the sector (opening 60-75 deg, apex above the image). Per volume the probe
angle (midline tilt +-10 deg), head position and zoom (OFD = 72-85 % of the width), apex
position and gain vary; the parenchymal texture is shared by a volume's slices, the speckle not.

The mask is the cerebellum (hemispheres + vermis) sampled at pixel centres inside the sector,
``uint8 (H, W)`` with values 0/1. Everything is vectorised (no per-pixel loops): about 20-35 ms
per 176 x 256 image on one loaded CPU core.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from medrepro.io.atomic import write_csv
from medrepro.io.bmp_mat import write_bmp, write_mask_mat

__all__ = [
    "ECHO_DB",
    "IMAGE_COLUMNS",
    "TRUTH_COLUMNS",
    "VolumeParams",
    "ScanGeometry",
    "head_semi_axes",
    "sample_volume",
    "scan_geometry",
    "echogenicity_db",
    "cerebellum_mask_mm",
    "has_cerebellum",
    "render_slice",
    "volume_texture",
    "render_volume",
    "generate_cohort",
]

log = logging.getLogger(__name__)

#: mean echogenicity (backscattered intensity, dB relative to 1) of each tissue
ECHO_DB: dict[str, float] = {
    "fluid": -55.0,  # amniotic fluid, CSP, cisterna magna, extra-axial CSF
    "tissue": -20.0,  # maternal tissue / uterine wall
    "scalp": -18.0,
    "skull": 10.0,  # at normal incidence
    "brain": -22.0,
    "falx": -10.0,
    "csp_wall": -14.0,
    "thalamus": -29.0,
    "hemisphere": -31.0,
    "rim": -9.0,
    "vermis": -7.0,
}
#: columns of ``images.csv`` and ``phantom_truth.csv`` (docs/cerebellum_yolo.md)
IMAGE_COLUMNS: tuple[str, ...] = ("image_id", "volume_id", "image", "mask")
TRUTH_COLUMNS: tuple[str, ...] = (
    "image_id",
    "volume_id",
    "ga_weeks",
    "tcd_mm",
    "pixel_mm",
    "has_cerebellum",
)

_ATTENUATION_DB_CM_MHZ = 0.5
_AXIAL_STEP_PX = 0.6  # polar depth sample spacing (pixels)
_LATERAL_STEP_PX = 1.1  # polar beam spacing at the deepest sample (pixels)
_WHITE_DB = 2.0  # echo level (dB) displayed white at 0 dB gain


@dataclass(frozen=True)
class VolumeParams:
    """One fetal head volume and its acquisition (lengths in mm unless the name says px).

    Attributes:
        ga_weeks: gestational age (weeks).
        hc_mm: head circumference of the central section (outer skull, mm).
        semi_axes_mm: outer skull semi-axes ``(a, b)`` of the central section (OFD/2, BPD/2).
        skull_mm: skull thickness.
        csf_mm: extra-axial CSF layer.
        tcd_mm: transverse cerebellar diameter of the central section.
        cisterna_mm: cisterna magna depth (vermis to inner skull along the midline).
        hemisphere_rot_deg: rotation of each cerebellar hemisphere (butterfly shape).
        slice_offsets_mm: offsets ``w`` of the parallel slices.
        pixel_mm: pixel size (isotropic).
        centre_px: head centre ``(x, y)`` in pixels.
        tilt_deg: angle of the midline (occiput direction) from the image x axis.
        apex_px: sector apex ``(x, y)`` in pixels (above the image, y < 0).
        half_opening_deg: half the sector opening.
        max_radius_px: sector depth from the apex.
        frequency_mhz: transmit frequency.
        tgc_compensation: share of the attenuation the TGC undoes.
        axial_fwhm_mm, lateral_fwhm_mm: PSF full width at half maximum (lateral: at the focus).
        focus_mm: focal depth from the apex.
        skull_transmission: amplitude transmitted through 2.5 mm of skull at normal incidence.
        dynamic_range_db: log compression range.
        gain_db: overall gain.
        noise_db: electronic noise level relative to the displayed black level.
        wall_gap_mm, far_gap_mm: amniotic fluid between the head and maternal tissue (near, far).
    """

    ga_weeks: float
    hc_mm: float
    semi_axes_mm: tuple[float, float]
    skull_mm: float
    csf_mm: float
    tcd_mm: float
    cisterna_mm: float
    hemisphere_rot_deg: float
    slice_offsets_mm: tuple[float, ...]
    pixel_mm: float
    centre_px: tuple[float, float]
    tilt_deg: float
    apex_px: tuple[float, float]
    half_opening_deg: float
    max_radius_px: float
    frequency_mhz: float
    tgc_compensation: float
    axial_fwhm_mm: float
    lateral_fwhm_mm: float
    focus_mm: float
    skull_transmission: float
    dynamic_range_db: float
    gain_db: float
    noise_db: float
    wall_gap_mm: float
    far_gap_mm: float


@dataclass(frozen=True)
class ScanGeometry:
    """The polar sampling grid of a volume and the scan conversion to the ``H x W`` image.

    Attributes:
        radius_px: depth of each polar row from the apex, ``(n_r,)`` pixels.
        theta: beam angle of each polar column from the image's downward axis, ``(n_theta,)``.
        u_mm, v_mm: head coordinates of the polar samples, ``(n_r, n_theta)``.
        beam_uv: unit beam direction in head coordinates per column, ``(2, n_theta)``.
        pixel_index: fractional polar index ``(2, H, W)`` (row, column) of each pixel centre.
        inside: ``(H, W)`` bool, pixel centre inside the sector.
        pixel_u_mm, pixel_v_mm: head coordinates of the pixel centres, ``(H, W)``.
    """

    radius_px: np.ndarray
    theta: np.ndarray
    u_mm: np.ndarray
    v_mm: np.ndarray
    beam_uv: np.ndarray
    pixel_index: np.ndarray
    inside: np.ndarray
    pixel_u_mm: np.ndarray
    pixel_v_mm: np.ndarray


def _ellipse_perimeter(a: float, b: float) -> float:
    """Ramanujan's second approximation of an ellipse's perimeter (same unit as a, b)."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def head_semi_axes(hc_mm: float, bpd_ofd: float) -> tuple[float, float]:
    """Outer skull semi-axes ``(OFD/2, BPD/2)`` (mm) of an ellipse with perimeter ``hc_mm``."""
    a = hc_mm / _ellipse_perimeter(1.0, bpd_ofd)
    return a, a * bpd_ofd


def _cerebellum_half_height(tcd_mm: float) -> float:
    """Half-extent (mm) of the cerebellum normal to the transcerebellar plane (vermis)."""
    return 0.30 * tcd_mm


def sample_volume(
    rng: np.random.Generator, *, height: int = 176, width: int = 256, n_slices: int = 15
) -> VolumeParams:
    """Draw a head, its 15 slice offsets and an acquisition fitting an ``height x width`` image."""
    ga = float(rng.uniform(18.0, 34.0))
    hc = (175.0 + 10.5 * (ga - 20.0)) * float(rng.uniform(0.96, 1.04))
    ratio = float(rng.uniform(0.75, 0.80))
    a, b = head_semi_axes(hc, ratio)
    tcd = ga + float(rng.normal(0.0, 1.0))
    cisterna = float(np.clip(2.0 + 0.35 * (ga - 18.0) + rng.normal(0.0, 1.0), 2.0, 10.0))
    # parallel slices: symmetric offsets over a share of the cerebellum's half-height
    extent = _cerebellum_half_height(tcd) * float(rng.uniform(0.60, 1.03))
    shift = float(rng.normal(0.0, 0.02 * tcd))
    offsets = tuple(float(w) for w in np.linspace(-extent, extent, n_slices) + shift)
    # zoom: the OFD spans 72-85 % of the width, the BPD at most 92 % of the height
    span = min(float(rng.uniform(0.72, 0.85)), 0.92 * height / (ratio * width))
    pixel_mm = 2.0 * a / (span * width)
    centre = (
        width / 2.0 + float(rng.uniform(-0.04, 0.04)) * width,
        height / 2.0 + float(rng.uniform(-0.04, 0.04)) * height,
    )
    half_opening = float(rng.uniform(30.0, 37.5))
    # the sector covers half the image width on each side at mid-height
    apex_depth = 0.5 * width / math.tan(math.radians(half_opening)) - height / 2.0
    apex = (width / 2.0 + float(rng.uniform(-0.04, 0.04)) * width, -apex_depth)
    max_radius = (apex_depth + height) * float(rng.uniform(0.97, 1.06))
    centre_depth_mm = math.hypot(centre[0] - apex[0], centre[1] - apex[1]) * pixel_mm
    return VolumeParams(
        ga_weeks=ga,
        hc_mm=hc,
        semi_axes_mm=(a, b),
        skull_mm=float(rng.uniform(2.0, 3.0)),
        csf_mm=float(rng.uniform(1.0, 2.0)),
        tcd_mm=tcd,
        cisterna_mm=cisterna,
        hemisphere_rot_deg=float(rng.uniform(5.0, 25.0)),
        slice_offsets_mm=offsets,
        pixel_mm=pixel_mm,
        centre_px=centre,
        tilt_deg=float(rng.uniform(-10.0, 10.0)),
        apex_px=apex,
        half_opening_deg=half_opening,
        max_radius_px=max_radius,
        frequency_mhz=float(rng.uniform(3.0, 5.0)),
        tgc_compensation=float(rng.uniform(0.8, 1.05)),
        axial_fwhm_mm=float(rng.uniform(0.3, 0.5)),
        lateral_fwhm_mm=float(rng.uniform(1.0, 1.8)),
        focus_mm=centre_depth_mm * float(rng.uniform(0.85, 1.1)),
        skull_transmission=float(rng.uniform(0.3, 0.55)),
        dynamic_range_db=float(rng.uniform(50.0, 60.0)),
        gain_db=float(rng.uniform(-4.0, 4.0)),
        noise_db=float(rng.uniform(-8.0, 0.0)),
        wall_gap_mm=float(rng.uniform(1.0, 8.0)),
        far_gap_mm=float(rng.uniform(2.0, 12.0)),
    )


def _to_head(x_px: np.ndarray, y_px: np.ndarray, params: VolumeParams) -> tuple[np.ndarray, ...]:
    """Image pixel coordinates -> head coordinates ``(u, v)`` in mm."""
    dx = (x_px - params.centre_px[0]) * params.pixel_mm
    dy = (y_px - params.centre_px[1]) * params.pixel_mm
    cos, sin = math.cos(math.radians(params.tilt_deg)), math.sin(math.radians(params.tilt_deg))
    return dx * cos + dy * sin, -dx * sin + dy * cos


def scan_geometry(params: VolumeParams, height: int, width: int) -> ScanGeometry:
    """Polar grid covering the sector part of the image, and the pixel -> polar index map."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - params.apex_px[0], ys - params.apex_px[1]
    radius = np.hypot(dx, dy)
    angle = np.arctan2(dx, dy)  # 0 = straight down, positive towards +x
    half = math.radians(params.half_opening_deg)
    inside = (np.abs(angle) <= half) & (radius <= params.max_radius_px)
    r_lo = float(radius[inside].min()) - 1.0 if inside.any() else 0.0
    r_hi = min(float(radius.max()), params.max_radius_px) + 1.0
    n_r = int(math.ceil((r_hi - r_lo) / _AXIAL_STEP_PX)) + 1
    d_theta = _LATERAL_STEP_PX / r_hi
    n_theta = int(math.ceil(2.0 * half / d_theta)) + 1
    radius_px = r_lo + _AXIAL_STEP_PX * np.arange(n_r)
    theta = np.linspace(-half, half, n_theta)
    px = params.apex_px[0] + radius_px[:, None] * np.sin(theta)[None, :]
    py = params.apex_px[1] + radius_px[:, None] * np.cos(theta)[None, :]
    u, v = (c.astype(np.float32) for c in _to_head(px, py, params))
    tilt = math.radians(params.tilt_deg)
    beam_uv = np.stack([np.sin(theta + tilt), np.cos(theta + tilt)])  # image beam (x, y) in (u, v)
    index = np.stack(
        [(radius - r_lo) / _AXIAL_STEP_PX, (angle + half) / (theta[1] - theta[0])]
    ).astype(np.float32)
    pu, pv = _to_head(xs, ys, params)
    return ScanGeometry(
        radius_px=radius_px,
        theta=theta,
        u_mm=u,
        v_mm=v,
        beam_uv=beam_uv,
        pixel_index=index,
        inside=inside,
        pixel_u_mm=pu,
        pixel_v_mm=pv,
    )


def _rho2(u: np.ndarray, v: np.ndarray, ru: float, rv: float) -> np.ndarray:
    """Squared normalised elliptic radius (1 on the ellipse of semi-axes ``ru``, ``rv``)."""
    return (u * (1.0 / ru)) ** 2 + (v * (1.0 / rv)) ** 2


def _section(w: float, half_height: float) -> float:
    """Scale of an ellipsoid's section at offset ``w`` (0 when the plane misses it)."""
    q = 1.0 - (w / half_height) ** 2
    return math.sqrt(q) if q > 0 else 0.0


def _head_section(params: VolumeParams, w: float) -> tuple[float, float]:
    """Outer skull semi-axes (mm) of the head section at offset ``w``."""
    a, b = params.semi_axes_mm
    s = max(_section(w, 0.9 * b), 0.5)
    return a * s, b * s


def _cerebellum_parts(
    u: np.ndarray, v: np.ndarray, w: float, params: VolumeParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared normalised radii of both hemispheres and the vermis at offset ``w`` (inf: absent).

    Hemispheres: semi-axes 0.27 x 0.24 x 0.28 TCD (u, v, w), rotated by +-``hemisphere_rot_deg``,
    centres at ``v = +-vh`` with ``vh`` such that the central section spans exactly the TCD.
    Vermis: 0.24 x 0.12 x 0.30 TCD on the midline. The vermis ends ``cisterna_mm`` before the
    inner skull on the midline.
    """
    t = params.tcd_mm
    a_in = _head_section(params, 0.0)[0] - params.skull_mm
    ru_h, rv_h, rw_h = 0.27 * t, 0.24 * t, 0.28 * t
    ru_v, rv_v, rw_v = 0.24 * t, 0.12 * t, _cerebellum_half_height(t)
    u_vermis = a_in - params.cisterna_mm - ru_v
    u_hemi = u_vermis - 0.05 * t
    beta = math.radians(params.hemisphere_rot_deg)
    half_span = math.hypot(ru_h * math.sin(beta), rv_h * math.cos(beta))
    v_hemi = max(t / 2.0 - half_span, 0.0)
    absent = np.full(np.shape(u), np.inf, dtype=np.float32)
    radii = []
    s = _section(w, rw_h)
    for sign in (-1.0, 1.0):
        if s == 0.0:
            radii.append(absent)
            continue
        du, dv = u - u_hemi, v - sign * v_hemi
        uu = du * math.cos(beta) + dv * (sign * math.sin(beta))
        vv = du * (-sign * math.sin(beta)) + dv * math.cos(beta)
        radii.append(_rho2(uu, vv, ru_h * s, rv_h * s))
    s = _section(w, rw_v)
    vermis = _rho2(u - u_vermis, v, ru_v * s, rv_v * s) if s > 0 else absent
    return radii[0], radii[1], vermis


def cerebellum_mask_mm(u: np.ndarray, v: np.ndarray, w: float, params: VolumeParams) -> np.ndarray:
    """Boolean cerebellum (hemispheres + vermis) at head coordinates ``u, v`` (mm), offset ``w``."""
    left, right, vermis = _cerebellum_parts(u, v, w, params)
    return (left <= 1.0) | (right <= 1.0) | (vermis <= 1.0)


def has_cerebellum(params: VolumeParams, w: float) -> bool:
    """Whether the slice at offset ``w`` (mm) cuts the cerebellum at all."""
    t = params.tcd_mm
    return abs(w) < max(0.28 * t, _cerebellum_half_height(t))


def echogenicity_db(
    u: np.ndarray, v: np.ndarray, w: float, params: VolumeParams
) -> tuple[np.ndarray, np.ndarray]:
    """Mean echogenicity (dB, ``ECHO_DB``) and the skull indicator at head coordinates (mm).

    Args:
        u, v: head coordinates (mm), float arrays of one shape.
        w: slice offset (mm).
        params: the volume.

    Returns:
        ``(echo_db, skull)``: float32 and bool arrays of the shape of ``u``. Outside the scalp
        is amniotic fluid (the renderer adds maternal tissue, which depends on depth).
    """
    e = ECHO_DB
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    a, b = _head_section(params, w)
    t = params.tcd_mm
    out = np.full(u.shape, e["fluid"], dtype=np.float32)
    out[_rho2(u, v, a + 1.5, b + 1.5) <= 1.0] = e["scalp"]
    skull = _rho2(u, v, a, b) <= 1.0
    out[skull] = e["skull"]
    a_in, b_in = a - params.skull_mm, b - params.skull_mm
    inner = _rho2(u, v, a_in, b_in) <= 1.0
    skull &= ~inner
    out[inner] = e["fluid"]
    a_br, b_br = a_in - params.csf_mm, b_in - params.csf_mm
    out[_rho2(u, v, a_br, b_br) <= 1.0] = e["brain"]
    # the falx (midline echo) in front of the cavum septi pellucidi, a box with echogenic walls
    csp_u, csp_len = -0.4 * a_in, 0.45 * t
    csp_half_w = 0.125 * t * _section(w, 0.5 * t)
    falx = (u < csp_u - csp_len / 2.0) & (u > -a_br) & (np.abs(v) < 1.5)
    line = e["brain"] + (e["falx"] - e["brain"]) * np.exp(-((v[falx] / 0.5) ** 2))
    out[falx] = np.maximum(out[falx], line)
    if csp_half_w > 0.3:
        du, dv = np.abs(u - csp_u), np.abs(v)
        box = (du <= csp_len / 2.0) & (dv <= csp_half_w)
        out[box] = e["csp_wall"]
        out[(du <= csp_len / 2.0 - 0.7) & (dv <= csp_half_w - 0.7)] = e["fluid"]
    # thalami (rotated +-20 deg) beside the slit-like third ventricle
    th_u, th_v = -0.05 * a_in, 0.2 * b_in
    cos, sin = math.cos(math.radians(20.0)), math.sin(math.radians(20.0))
    for sign in (-1.0, 1.0):
        du, dv = u - th_u, v - sign * th_v
        rho = _rho2(
            du * cos + dv * (sign * sin), du * (-sign * sin) + dv * cos, 0.2 * a_in, 0.13 * b_in
        )
        out[rho <= 1.0] = e["thalamus"]
    out[(np.abs(u - th_u) <= 0.15 * a_in) & (np.abs(v) <= 0.6)] = e["fluid"]
    # posterior fossa: the cisterna magna behind the cerebellum, then the cerebellum
    cm_u = a_in - params.cisterna_mm / 2.0
    cm = _rho2(u - cm_u, v, params.cisterna_mm / 2.0 + 0.15 * t, 0.32 * t)
    out[(cm <= 1.0) & inner] = e["fluid"]
    left, right, vermis = _cerebellum_parts(u, v, w, params)
    for rho in (left, right):
        out[rho <= 1.0] = e["rim"]
        out[rho <= 0.64] = e["hemisphere"]
    out[vermis <= 1.0] = e["vermis"]
    return out, skull


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance smooth Gaussian random field, float32 ``shape`` (correlation ``sigma``)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / (field.std() + 1e-12)


def _gauss1d(field: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian blur along ``axis`` scaled to keep the variance of white noise unchanged."""
    out = ndimage.gaussian_filter1d(field, sigma, axis=axis, truncate=3.0)
    out *= math.sqrt(2.0 * math.sqrt(math.pi) * sigma)
    return out


def _lateral_psf(field: np.ndarray, sigmas: np.ndarray, levels: int = 3) -> np.ndarray:
    """Blur ``field (2, n_r, n_theta)`` along theta with a per-row sigma ``(n_r,)`` in samples.

    A row's sigma is interpolated (in log sigma) between ``levels`` filtered copies, each scaled
    to unit white-noise gain so the speckle level does not depend on depth.
    """
    lo, hi = float(sigmas.min()), float(sigmas.max())
    grid = np.geomspace(lo, max(hi, lo * 1.001), levels)
    pos = np.interp(np.log(sigmas), np.log(grid), np.arange(levels, dtype=np.float64))
    k = np.clip(np.floor(pos).astype(int), 0, levels - 2)
    frac = (pos - k).astype(np.float32)
    out = np.zeros_like(field)
    for i, sigma in enumerate(grid):
        weight = np.where(k == i, 1.0 - frac, 0.0) + np.where(k + 1 == i, frac, 0.0)
        rows = np.flatnonzero(weight > 0)
        if rows.size == 0:
            continue
        lo_row, hi_row = rows[0], rows[-1] + 1  # rows in between get weight 0
        blurred = _gauss1d(field[:, lo_row:hi_row], float(sigma), axis=-1)
        out[:, lo_row:hi_row] += blurred * weight[lo_row:hi_row, None].astype(np.float32)
    return out


def volume_texture(rng: np.random.Generator, geometry: ScanGeometry) -> np.ndarray:
    """Smooth parenchymal texture (dB, sd 2.5) on the polar grid, shared by a volume's slices."""
    return 2.5 * _smooth_noise(rng, geometry.u_mm.shape, 6.0)


def render_slice(
    params: VolumeParams,
    w_mm: float,
    rng: np.random.Generator,
    geometry: ScanGeometry,
    texture: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one slice at offset ``w_mm``.

    Args:
        params: the volume.
        w_mm: slice offset normal to the plane (mm).
        rng: source of the speckle and noise.
        geometry: :func:`scan_geometry` of ``params`` for the output size.
        texture: :func:`volume_texture` (drawn from ``rng`` if None).

    Returns:
        ``(image, mask)``: ``uint8 (H, W)`` B-mode image (0 outside the sector) and ``uint8 (H, W)``
        cerebellum mask (0/1).
    """
    g = geometry
    px = params.pixel_mm
    step_mm = _AXIAL_STEP_PX * px
    echo, skull = echogenicity_db(g.u_mm, g.v_mm, w_mm, params)
    # specular skull echo, weaker where the beam grazes the bone
    a, b = _head_section(params, w_mm)
    rows, cols = np.nonzero(skull)
    nu, nv = g.u_mm[rows, cols] / a**2, g.v_mm[rows, cols] / b**2
    cos_inc = np.abs(nu * g.beam_uv[0, cols] + nv * g.beam_uv[1, cols]) / (np.hypot(nu, nv) + 1e-9)
    echo[rows, cols] += 20.0 * np.log10(0.2 + 0.8 * cos_inc)
    # maternal tissue above and below the head (by depth from the apex)
    depth_mm = g.radius_px * px
    centre_mm = math.dist(params.centre_px, params.apex_px) * px
    b_scalp = b + 1.5
    tissue_rows = (depth_mm < centre_mm - b_scalp - params.wall_gap_mm) | (
        depth_mm > centre_mm + b_scalp + params.far_gap_mm
    )
    part = echo[tissue_rows]
    echo[tissue_rows] = np.where(part <= ECHO_DB["fluid"], ECHO_DB["tissue"], part)
    if texture is None:
        texture = volume_texture(rng, g)
    echo += np.where(echo > ECHO_DB["fluid"], texture, np.float32(0.0))
    # complex scatterers x sqrt(echogenicity), separable Gaussian PSF, envelope
    amplitude = np.exp(echo * np.float32(math.log(10.0) / 20.0)) * np.float32(math.sqrt(0.5))
    field = rng.standard_normal((2, *echo.shape), dtype=np.float32) * amplitude
    fwhm = 2.0 * math.sqrt(2.0 * math.log(2.0))
    field = _gauss1d(field, params.axial_fwhm_mm / fwhm / step_mm, axis=1)
    lateral_mm = (params.lateral_fwhm_mm / fwhm) * np.sqrt(
        1.0 + ((depth_mm - params.focus_mm) / 30.0) ** 2
    )
    d_theta = float(g.theta[1] - g.theta[0])
    field = _lateral_psf(field, lateral_mm / (np.maximum(g.radius_px, 1.0) * px * d_theta))
    envelope = np.hypot(field[0], field[1])
    # posterior acoustic shadowing: skull path travelled so far along each beam
    path = np.cumsum(skull, axis=0, dtype=np.float32)
    path -= skull
    envelope *= np.exp(path * np.float32(math.log(params.skull_transmission) / 2.5 * step_mm))
    # two-way attenuation, partly compensated by TGC
    residual = 2.0 * _ATTENUATION_DB_CM_MHZ * params.frequency_mhz * (1.0 - params.tgc_compensation)
    envelope *= (10.0 ** (-residual * (depth_mm - depth_mm[0]) / 200.0)).astype(np.float32)[:, None]
    # electronic noise, log compression with gain and dynamic range
    floor_db = _WHITE_DB - params.gain_db - params.dynamic_range_db
    sd = np.float32(10.0 ** ((floor_db + params.noise_db) / 20.0) * math.sqrt(0.5))
    noise = rng.standard_normal((2, *echo.shape), dtype=np.float32) * sd
    envelope = np.hypot(envelope + noise[0], noise[1])
    scale = np.float32(255.0 / params.dynamic_range_db)
    polar = (20.0 * np.log10(envelope + np.float32(1e-12)) - np.float32(floor_db)) * scale
    np.clip(polar, 0.0, 255.0, out=polar)
    # scan conversion (bilinear), black outside the sector
    cart = ndimage.map_coordinates(polar, g.pixel_index, order=1, mode="nearest")
    image = np.where(g.inside, np.rint(cart), 0).astype(np.uint8)
    mask = cerebellum_mask_mm(g.pixel_u_mm, g.pixel_v_mm, w_mm, params) & g.inside
    return image, mask.astype(np.uint8)


def render_volume(
    params: VolumeParams, rng: np.random.Generator, *, height: int = 176, width: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Render every slice of a volume: ``images, masks`` both ``uint8 (S, H, W)``."""
    geometry = scan_geometry(params, height, width)
    texture = volume_texture(rng, geometry)
    pairs = [render_slice(params, w, rng, geometry, texture) for w in params.slice_offsets_mm]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def generate_cohort(
    root: str | Path,
    *,
    n_volumes: int = 21,
    slices_per_volume: int = 15,
    height: int = 176,
    width: int = 256,
    seed: int = 0,
) -> pd.DataFrame:
    """Write a phantom cohort into ``root`` (the caller makes it atomic).

    Layout (docs/cerebellum_yolo.md): ``images/<volume>_<slice>.bmp`` (8-bit gray),
    ``masks/<volume>_<slice>.mat`` (variable ``mask``, uint8 0/1), ``images.csv``
    (``image_id, volume_id, image, mask``, paths relative to ``root``) and ``phantom_truth.csv``.
    Volume ``k`` (``V00``, ``V01``...) depends only on ``(seed, k)``.

    Returns:
        The truth table ``image_id, volume_id, ga_weeks, tcd_mm, pixel_mm, has_cerebellum``.
    """
    if n_volumes < 1 or slices_per_volume < 1 or height < 16 or width < 16:
        raise ValueError("need n_volumes, slices_per_volume >= 1 and an image of >= 16 x 16")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rows, truth = [], []
    for k in range(n_volumes):
        rng = np.random.default_rng([seed, k])
        params = sample_volume(rng, height=height, width=width, n_slices=slices_per_volume)
        images, masks = render_volume(params, rng, height=height, width=width)
        volume = f"V{k:02d}"
        for s in range(slices_per_volume):
            image_id = f"{volume}_{s:02d}"
            image_rel, mask_rel = f"images/{image_id}.bmp", f"masks/{image_id}.mat"
            write_bmp(root / image_rel, images[s])
            write_mask_mat(root / mask_rel, masks[s])
            rows.append((image_id, volume, image_rel, mask_rel))
            truth.append(
                (
                    image_id,
                    volume,
                    round(params.ga_weeks, 3),
                    round(params.tcd_mm, 3),
                    round(params.pixel_mm, 5),
                    bool(masks[s].any()),
                )
            )
        log.info(
            "%s: GA %.1f wk, TCD %.1f mm, %.3f mm/px, %d/%d slices with cerebellum",
            volume,
            params.ga_weeks,
            params.tcd_mm,
            params.pixel_mm,
            int(masks.any(axis=(1, 2)).sum()),
            slices_per_volume,
        )
    write_csv(pd.DataFrame(rows, columns=list(IMAGE_COLUMNS)), root / "images.csv")
    table = pd.DataFrame(truth, columns=list(TRUTH_COLUMNS))
    write_csv(table, root / "phantom_truth.csv")
    return table
