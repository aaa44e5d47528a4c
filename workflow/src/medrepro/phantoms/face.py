"""Synthetic faces with identities and 12 anatomical landmarks (paper 002 phantoms).

**Canonical frame** (mm): ``x`` to the subject's left (the image's right in a frontal view),
``y`` down, ``z`` towards the viewer; the origin is the midpoint of the two endocanthia. The face
is a height field ``z = H(x, y)`` (a front-facing surface):

- the head: a footprint of half-width ``w(y)`` (an elliptic cranium above the cheekbones, a jaw
  that narrows to a rounded chin, squareness ``jaw_exponent``) with half-elliptic cross-sections
  of midline depth ``D(y)``, continued by a steep skirt below the outline (so the side of the
  head shows at yaw), and a neck cylinder behind the chin (``H = max(head, neck)``);
- smooth bumps: brow ridges, eye sockets and eyeballs, the nose (a ridge rising from the nasion
  to the pronasale and dropping to the subnasale, alae), philtral columns (``philtrum_depth``,
  0 = the smooth philtrum of FAS), lips, the mentolabial sulcus, chin and cheekbones.

The **texture** is evaluated analytically at the surface points (skin tone, hair above the
hairline, brows, palpebral fissures with sclera, iris and lid lines, nostrils, vermilion, the
open mouth). The **landmarks** are points of the same frame: ``en`` / ``ex`` are the medial and
lateral tips of the almond-shaped fissures, ``prn`` the crest of the nose ridge, ``sn`` its foot,
``ls`` / ``li`` the midline vermilion borders, ``sto`` the midline of the oral fissure, ``ch``
its corners, ``pg`` the chin bump. Identity anthropometry follows data.md's priors (en-en 30-35,
ex-ex 85-95, al-al 32-38, ch-ch 48-55, n-gn 110-125 mm).

**Expression** (per image): eye opening, smile (the cheilia move up and out) and a jaw drop
(mouth opening: everything below the stomion line moves down, fading towards the cheeks; the
gap shows the mouth interior). **View**: the surface is rotated (yaw, then pitch, then roll
about a point behind the face) and projected in perspective (camera distance ~ 0.6-1.2 m) or
orthographically; the focal scale and principal point frame the landmarks' bounding box in the
image centre with side ``margin x`` its longer side (``margin`` 1.6, small jitter).

**Rendering** inverse-maps each output pixel: the pixel's ray is marched through the height
field (2 mm steps, then bisection to < 0.05 mm), so the first hit is found and self-occlusion is
exact; the landmarks are forward-projected from the same height field (bilinear on the same
grid), so drawn features and landmarks agree to the bisection tolerance. A landmark is
``visible`` when the segment from it to the camera does not pass below the surface. Shading is
Lambertian (ambient + diffuse from a random light direction) with the normals of the height
field; background clutter (smooth colour field + ellipses), Gaussian blur and noise follow.
About 20 / 50 / 200 ms per 64 / 128 / 256-pixel image on one (shared) CPU core.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "FACE_LANDMARKS",
    "FLIP_PAIRS",
    "FaceIdentity",
    "FaceView",
    "Camera",
    "sample_identity",
    "sample_view",
    "neutral_landmarks",
    "expressed_landmarks",
    "make_camera",
    "project",
    "render_view",
    "render_face",
]

#: the 12 landmark names in docs/face_landmarks.md order (``_r`` / ``_l``: subject's right / left)
FACE_LANDMARKS: tuple[str, ...] = (
    "ex_r",
    "en_r",
    "en_l",
    "ex_l",
    "prn",
    "sn",
    "ls",
    "sto",
    "li",
    "ch_r",
    "ch_l",
    "pg",
)
#: index pairs swapped by a horizontal flip
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 3), (1, 2), (9, 10))

_Y_NASION = -7.0  # nasion, mm above the endocanthion line
_Y_WIDEST = 12.0  # level of the widest head section (cheekbones), mm


@dataclass(frozen=True)
class FaceIdentity:
    """Shape and appearance of one person (lengths in mm, colours RGB in [0, 1])."""

    name: str
    head_half_width: float  # half of the head breadth at the cheekbones
    head_top: float  # vertex height above the endocanthion line
    head_depth: float  # midline depth of the face surface above the head's centre plane
    jaw_exponent: float  # 2 = round lower face, 4 = square jaw
    chin_half_width: float
    n_gn: float  # nasion - gnathion (face height)
    en_en: float  # intercanthal width
    pfl: float  # palpebral fissure length (en - ex, in the frontal plane)
    eye_height: float  # palpebral fissure height (opening)
    eye_slant_deg: float  # positive: ex above en
    brow_height: float  # brow centre above the endocanthion line
    brow_thickness: float
    nose_height: float  # nasion - subnasale
    nose_protrusion: float  # pronasale height above the surrounding face
    alar_width: float  # al - al
    philtrum_length: float  # sn - ls
    philtrum_depth: float  # height of the philtral columns (0: smooth philtrum)
    upper_vermilion: float  # ls - sto
    lower_vermilion: float  # sto - li
    mouth_width: float  # ch - ch
    skin_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    iris_rgb: tuple[float, float, float]
    hairline: float  # hairline height above the endocanthion line at the midline
    hair_sides: float  # 0: short hair, 1: hair down over the temples and sides
    texture_seed: int  # fixed skin/hair texture of this person

    def to_row(self) -> dict[str, object]:
        """A flat dict for ``identities.csv`` (colours as ``r;g;b``)."""
        row = asdict(self)
        for key in ("skin_rgb", "hair_rgb", "iris_rgb"):
            row[key] = ";".join(f"{v:.3f}" for v in row[key])
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}


@dataclass(frozen=True)
class FaceView:
    """Per-image pose (deg), expression, lighting, framing and degradations."""

    yaw_deg: float = 0.0  # positive: the subject turns towards the image's right (own left)
    pitch_deg: float = 0.0  # positive: chin down (the nose tip moves down in the image)
    roll_deg: float = 0.0  # positive: clockwise in the image
    mouth_open: float = 0.0  # jaw drop at the midline, mm
    smile: float = 0.0  # 0..1
    eye_open: float = 1.0  # factor on the fissure height
    gaze: tuple[float, float] = (0.0, 0.0)  # iris offset, mm
    light_dir: tuple[float, float, float] = (0.0, -0.3, 1.0)  # camera frame, towards the light
    light_intensity: float = 1.0
    ambient: float = 0.35
    camera_distance: float | None = 900.0  # mm from the pivot; None: orthographic
    margin: float = 1.6
    scale_jitter: float = 1.0  # factor on the framing scale
    shift_px: tuple[float, float] = (0.0, 0.0)  # in units of the image side
    blur_sigma_px: float = 0.0
    noise_sigma: float = 0.0  # in [0, 1] intensity units
    background_seed: int = 0
    clutter: int = 0  # number of background shapes


@dataclass(frozen=True)
class Camera:
    """Rigid pose + projection: ``p_cam = R (p - pivot)``, pixels ``u0 + f X d / (d - Z)``."""

    rotation: np.ndarray  # (3, 3)
    pivot: np.ndarray  # (3,) mm, canonical
    focal: float  # pixels per mm at Z = 0
    u0: float
    v0: float
    distance: float | None
    image_size: int = field(default=0)


# ------------------------------------------------------------------------------------ sampling


def _clipped_normal(
    rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float
) -> float:
    return float(np.clip(rng.normal(mean, sd), lo, hi))


_SKIN = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.90, 0.72, 0.58],
        [0.80, 0.60, 0.46],
        [0.62, 0.44, 0.32],
        [0.42, 0.29, 0.21],
    ]
)
_HAIR = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.25, 0.16, 0.09],
        [0.45, 0.30, 0.16],
        [0.75, 0.60, 0.38],
        [0.55, 0.22, 0.10],
        [0.55, 0.55, 0.55],
    ]
)
_IRIS = np.array([[0.30, 0.18, 0.09], [0.18, 0.32, 0.55], [0.30, 0.42, 0.25], [0.42, 0.30, 0.15]])


def _colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> tuple[float, ...]:
    i = rng.integers(len(palette))
    j = rng.integers(len(palette))
    t = rng.uniform(0.0, 0.4)
    c = (1 - t) * palette[i] + t * palette[j] + rng.normal(0.0, jitter, 3)
    return tuple(float(v) for v in np.clip(c, 0.02, 1.0))


def sample_identity(rng: np.random.Generator, name: str = "id") -> FaceIdentity:
    """Draw one person from anthropometric priors (mm) wide enough to tell people apart."""
    n = _clipped_normal
    return FaceIdentity(
        name=name,
        head_half_width=n(rng, 73.0, 4.0, 64.0, 82.0),
        head_top=n(rng, 118.0, 6.0, 105.0, 132.0),
        head_depth=n(rng, 88.0, 5.0, 78.0, 98.0),
        jaw_exponent=float(rng.uniform(1.8, 4.0)),
        chin_half_width=n(rng, 17.0, 3.0, 11.0, 24.0),
        n_gn=n(rng, 117.5, 4.0, 110.0, 125.0),
        en_en=n(rng, 32.5, 1.4, 30.0, 35.0),
        pfl=n(rng, 28.0, 1.6, 24.5, 31.5),
        eye_height=n(rng, 10.0, 1.2, 7.5, 12.5),
        eye_slant_deg=n(rng, 3.0, 3.0, -4.0, 10.0),
        brow_height=n(rng, 17.0, 2.5, 12.0, 23.0),
        brow_thickness=n(rng, 5.0, 1.2, 2.5, 8.0),
        nose_height=n(rng, 52.0, 3.0, 45.0, 59.0),
        nose_protrusion=n(rng, 19.0, 2.0, 14.0, 24.0),
        alar_width=n(rng, 35.0, 1.6, 32.0, 38.0),
        philtrum_length=n(rng, 14.0, 2.0, 9.0, 19.0),
        philtrum_depth=float(rng.uniform(0.0, 1.6)),
        upper_vermilion=n(rng, 8.0, 1.5, 4.5, 11.5),
        lower_vermilion=n(rng, 10.0, 1.5, 6.5, 13.5),
        mouth_width=n(rng, 51.5, 2.0, 48.0, 55.0),
        skin_rgb=_colour(rng, _SKIN, 0.03),
        hair_rgb=_colour(rng, _HAIR, 0.03),
        iris_rgb=_colour(rng, _IRIS, 0.04),
        hairline=n(rng, 68.0, 7.0, 52.0, 85.0),
        hair_sides=float(rng.uniform(0.0, 1.0)),
        texture_seed=int(rng.integers(2**31 - 1)),
    )


def sample_view(
    rng: np.random.Generator,
    max_yaw_deg: float = 30.0,
    max_pitch_deg: float = 15.0,
    max_roll_deg: float = 15.0,
) -> FaceView:
    """Draw a pose (uniform within the ranges), expression, lighting and degradations."""
    azimuth = rng.uniform(-np.pi, np.pi)
    elevation = rng.uniform(0.0, 0.6)
    light = (math.sin(azimuth) * elevation, -abs(math.cos(azimuth)) * elevation * 0.8, 1.0)
    return FaceView(
        yaw_deg=float(rng.uniform(-max_yaw_deg, max_yaw_deg)),
        pitch_deg=float(rng.uniform(-max_pitch_deg, max_pitch_deg)),
        roll_deg=float(rng.uniform(-max_roll_deg, max_roll_deg)),
        mouth_open=float(rng.choice([0.0, rng.uniform(1.0, 10.0)], p=[0.5, 0.5])),
        smile=float(rng.uniform(0.0, 1.0) ** 2),
        eye_open=float(rng.uniform(0.6, 1.1)),
        gaze=(float(rng.uniform(-2.0, 2.0)), float(rng.uniform(-1.0, 1.0))),
        light_dir=light,
        light_intensity=float(rng.uniform(0.8, 1.25)),
        ambient=float(rng.uniform(0.25, 0.5)),
        camera_distance=float(rng.uniform(600.0, 1200.0)),
        margin=1.6,
        scale_jitter=float(rng.uniform(0.95, 1.05)),
        shift_px=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
        blur_sigma_px=float(rng.uniform(0.0, 0.9)),
        noise_sigma=float(rng.uniform(0.005, 0.03)),
        background_seed=int(rng.integers(2**31 - 1)),
        clutter=int(rng.integers(0, 7)),
    )


# ----------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Mouth:
    """The mouth in neutral coordinates (mm) for one expression."""

    half_width: float
    y_sto: float
    y_corner: float
    upper: float
    lower: float
    open: float

    def stomion_line(self, x: np.ndarray) -> np.ndarray:
        u2 = np.minimum((x / self.half_width) ** 2, 1.0)
        return self.y_sto + (self.y_corner - self.y_sto) * u2

    def _taper(self, x: np.ndarray, power: float) -> np.ndarray:
        return np.clip(1.0 - (x / self.half_width) ** 2, 0.0, 1.0) ** power

    def upper_border(self, x: np.ndarray) -> np.ndarray:
        bow = 1.6 * np.exp(-(((np.abs(x) - 6.0) / 3.0) ** 2))
        return self.stomion_line(x) - self.upper * self._taper(x, 0.6) - bow * self._taper(x, 1.0)

    def lower_border(self, x: np.ndarray) -> np.ndarray:
        return self.stomion_line(x) + self.lower * self._taper(x, 0.55)


def _levels(ident: FaceIdentity) -> dict[str, float]:
    """Vertical levels (mm, y down) of the neutral face."""
    y_sn = _Y_NASION + ident.nose_height
    y_ls = y_sn + ident.philtrum_length
    y_sto = y_ls + ident.upper_vermilion
    y_gn = _Y_NASION + ident.n_gn
    return {
        "sn": y_sn,
        "prn": y_sn - max(5.0, 0.13 * ident.nose_height),
        "ls": y_ls,
        "sto": y_sto,
        "li": y_sto + ident.lower_vermilion,
        "gn": y_gn,
        "pg": y_gn - 7.0,
        "top": -ident.head_top,
    }


def _mouth(ident: FaceIdentity, view: FaceView) -> _Mouth:
    lv = _levels(ident)
    return _Mouth(
        half_width=ident.mouth_width / 2 + 3.0 * view.smile,
        y_sto=lv["sto"],
        y_corner=lv["sto"] + 1.0 - 5.0 * view.smile,
        upper=ident.upper_vermilion,
        lower=ident.lower_vermilion,
        open=max(view.mouth_open, 0.0),
    )


def _eye_frame(ident: FaceIdentity, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(en, ex, unit axis en->ex)`` of one eye; ``side`` -1 = right (image left), +1 = left."""
    a = math.radians(ident.eye_slant_deg)
    en = np.array([side * ident.en_en / 2, 0.0])
    axis = np.array([side * math.cos(a), -math.sin(a)])
    return en, en + ident.pfl * axis, axis


def neutral_landmarks(ident: FaceIdentity, view: FaceView | None = None) -> np.ndarray:
    """The 12 landmarks in the neutral canonical frame (before the jaw drop), ``(12, 2)`` (x, y) mm."""
    view = view or FaceView()
    lv = _levels(ident)
    mouth = _mouth(ident, view)
    en_r, ex_r, _ = _eye_frame(ident, -1)
    en_l, ex_l, _ = _eye_frame(ident, +1)
    zero = np.zeros(1)
    return np.array(
        [
            ex_r,
            en_r,
            en_l,
            ex_l,
            [0.0, lv["prn"]],
            [0.0, lv["sn"]],
            [0.0, float(mouth.upper_border(zero)[0])],
            [0.0, mouth.y_sto],
            [0.0, float(mouth.lower_border(zero)[0])],
            [-mouth.half_width, mouth.y_corner],
            [mouth.half_width, mouth.y_corner],
            [0.0, lv["pg"]],
        ]
    )


def _jaw_weight(mouth: _Mouth, x: np.ndarray, y_n: np.ndarray) -> np.ndarray:
    """Fraction of the jaw drop at neutral ``(x, y_n)`` (0 above the stomion line)."""
    reach = mouth.half_width + 0.8 * np.maximum(y_n - mouth.y_sto, 0.0)
    g = np.clip(1.0 - (x / reach) ** 2, 0.0, 1.0)
    return np.where(y_n >= mouth.stomion_line(x), g, 0.0)


def _unwarp(mouth: _Mouth, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expressed ``(x, y)`` -> neutral ``y_n`` and the mouth-gap mask (the jaw drop inverted)."""
    if mouth.open <= 0.0:
        return y, np.zeros(y.shape, dtype=bool)
    line = mouth.stomion_line(x)
    below = y >= line
    y_n = y.copy()
    yb, xb = y[below], x[below]
    yn = yb.copy()
    for _ in range(6):
        reach = mouth.half_width + 0.8 * np.maximum(yn - mouth.y_sto, 0.0)
        yn = yb - mouth.open * np.clip(1.0 - (xb / reach) ** 2, 0.0, 1.0)
    gap = np.zeros(y.shape, dtype=bool)
    gap_b = yn < line[below]
    gap[below] = gap_b
    y_n[below] = np.where(gap_b, line[below], yn)
    return y_n, gap


def expressed_landmarks(ident: FaceIdentity, view: FaceView) -> np.ndarray:
    """Landmarks after the jaw drop, ``(12, 2)`` (x, y) mm; ``sto`` = middle of the oral fissure."""
    pts = neutral_landmarks(ident, view)
    mouth = _mouth(ident, view)
    drop = mouth.open * _jaw_weight(mouth, pts[:, 0], pts[:, 1] + 1e-9)
    out = pts.copy()
    out[:, 1] += drop
    out[7, 1] = mouth.y_sto + mouth.open / 2  # stomion: between the lip edges
    return out


# --------------------------------------------------------------------------- height field


def _half_width(ident: FaceIdentity, y: np.ndarray) -> np.ndarray:
    """Footprint half-width ``w(y)`` (mm); 0 outside the head."""
    lv = _levels(ident)
    top, gn = lv["top"], lv["gn"]
    a = ident.head_half_width
    up = (y - _Y_WIDEST) / (_Y_WIDEST - top)
    w_up = a * np.sqrt(np.clip(1.0 - up**2, 0.0, None))
    t = np.clip((y - _Y_WIDEST) / (gn - _Y_WIDEST), 0.0, 1.0)
    p = ident.jaw_exponent
    c = ident.chin_half_width
    w_lo = c * np.sqrt(np.clip(1.0 - t**6, 0.0, None)) + (a - c) * np.clip(
        1.0 - t**p, 0.0, None
    ) ** (1.0 / p)
    w = np.where(y < _Y_WIDEST, w_up, w_lo)
    return np.where((y >= top) & (y <= gn), w, 0.0)


def _midline_depth(ident: FaceIdentity, y: np.ndarray) -> np.ndarray:
    lv = _levels(ident)
    top, gn = lv["top"], lv["gn"]
    c = ident.head_depth
    up = (y - _Y_WIDEST) / (_Y_WIDEST - top)
    d_up = c * np.sqrt(np.clip(1.0 - (np.clip(up, -1, 0) * 0.97) ** 2, 0.0, None))
    t = np.clip((y - _Y_WIDEST) / (gn - _Y_WIDEST), 0.0, 1.0)
    d_lo = c * (1.0 - 0.22 * t**2)
    return np.where(y < _Y_WIDEST, d_up, d_lo)


_NO_SURFACE = -1.0e4


def _head_height(ident: FaceIdentity, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Base head (no bumps): half-elliptic sections plus a steep skirt below the outline."""
    w = _half_width(ident, y)
    d = _midline_depth(ident, y)
    r = np.abs(x) / np.maximum(w, 1e-6)
    prof = np.where(r < 1.0, np.sqrt(np.clip(1.0 - r**2, 0.0, None)), -3.0 * (r - 1.0))
    return np.where((w > 0.5) & (r < 1.15), d * prof, _NO_SURFACE)


def _neck_height(ident: FaceIdentity, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    lv = _levels(ident)
    wn = 0.72 * ident.head_half_width
    r = np.abs(x) / wn
    z = 0.55 * ident.head_depth * np.sqrt(np.clip(1.0 - r**2, 0.0, None)) - 0.05 * ident.head_depth
    return np.where((r < 1.0) & (y > lv["sto"] - 10.0), z, _NO_SURFACE)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _bumps(ident: FaceIdentity, mouth: _Mouth, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Facial relief (mm) at neutral ``(x, y)``."""
    lv = _levels(ident)
    h = np.zeros_like(x)
    for side in (-1, 1):
        en, ex, axis = _eye_frame(ident, side)
        mid = (en + ex) / 2
        h += 5.0 * _gauss(
            x, y, side * (ident.en_en / 2 + ident.pfl * 0.45), -ident.brow_height + 2, 16, 6
        )
        h -= 9.0 * _gauss(x, y, mid[0], mid[1] - 1.0, 0.55 * ident.pfl, 0.55 * ident.pfl)
        h += 3.5 * _gauss(x, y, mid[0], mid[1], 0.33 * ident.pfl, 0.33 * ident.pfl)
        h += 5.0 * _gauss(x, y, side * 40.0, 30.0, 14.0, 12.0)  # cheekbone
        h += 5.0 * _gauss(x, y, side * (ident.alar_width / 2 - 5.0), lv["sn"] - 4.0, 4.5, 4.0)
        h += ident.philtrum_depth * _gauss(x, y, side * 5.0, (lv["sn"] + lv["ls"]) / 2, 1.8, 5.0)
    h += 4.0 * _gauss(x, y, 0.0, -ident.brow_height, 10, 8)  # glabella
    # nose ridge: rises from the nasion to the pronasale, drops to the subnasale
    y_n0, y_p, y_s = _Y_NASION, lv["prn"], lv["sn"]
    t_up = np.clip((y - y_n0) / (y_p - y_n0), 0.0, 1.0)
    t_dn = np.clip((y - y_p) / (y_s - y_p), 0.0, 1.0)
    prof = np.where(
        y < y_p,
        4.0 + (ident.nose_protrusion - 4.0) * t_up**1.6,
        ident.nose_protrusion * np.cos(0.5 * np.pi * t_dn) ** 2,
    )
    ramp = np.clip((y - (y_n0 - 16.0)) / 16.0, 0.0, 1.0)
    prof *= ramp * ramp * (3.0 - 2.0 * ramp)  # fade in above the nasion
    width = 6.0 + (0.28 * ident.alar_width - 6.0) * t_up**2
    h += np.where(y <= y_s, prof * np.exp(-0.5 * (x / width) ** 2), 0.0)
    # lips (protruding vermilion), sulcus and chin (these move with the jaw: neutral coordinates)
    hw = mouth.half_width
    h += (
        0.45
        * ident.upper_vermilion
        * _gauss(x, y, 0.0, mouth.y_sto - 0.5 * mouth.upper, 0.6 * hw, 4.5)
    )
    h += (
        0.35
        * ident.lower_vermilion
        * _gauss(x, y, 0.0, mouth.y_sto + 0.5 * mouth.lower, 0.55 * hw, 5.0)
    )
    h -= 3.0 * _gauss(x, y, 0.0, lv["li"] + 7.0, 14.0, 4.0)
    h += 6.0 * _gauss(x, y, 0.0, lv["pg"], 13.0, 8.0)
    return h


@dataclass(frozen=True)
class _Grid:
    """Height field on a regular canonical grid: ``heights[i, j]`` at ``(x0 + j res, y0 + i res)``."""

    heights: np.ndarray
    x0: float
    y0: float
    res: float

    def lookup(self, arr: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        coords = np.stack([(y - self.y0) / self.res, (x - self.x0) / self.res])
        return ndimage.map_coordinates(arr, coords, order=1, mode="constant", cval=_NO_SURFACE)

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.lookup(self.heights, x, y)


def _height_grid(
    ident: FaceIdentity,
    mouth: _Mouth,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    res: float,
) -> _Grid:
    """The expressed height field (jaw drop applied, mouth gap recessed) on a grid."""
    xs = x_range[0] + res * np.arange(int(round((x_range[1] - x_range[0]) / res)) + 1)
    ys = np.arange(y_range[0], y_range[1] + res, res)
    xg, yg = np.meshgrid(xs, ys)
    y_n, gap = _unwarp(mouth, xg, yg)
    head = _head_height(ident, xg, y_n)
    face = head + np.where(head > _NO_SURFACE, _bumps(ident, mouth, xg, y_n), 0.0)
    opening = mouth.open * _jaw_weight(mouth, xg, mouth.stomion_line(xg) + 1e-6)
    face = np.where(gap, face - np.minimum(7.0, 1.5 * opening), face)
    heights = np.maximum(face, _neck_height(ident, xg, yg))
    return _Grid(heights, float(xs[0]), float(ys[0]), res)


# ------------------------------------------------------------------------------ camera


def _rotation(view: FaceView) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (view.yaw_deg, view.pitch_deg, view.roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _to_camera(rotation: np.ndarray, pivot: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return (pts - pivot) @ rotation.T


def _plane(cam_pts: np.ndarray, distance: float | None) -> np.ndarray:
    """Camera-frame points -> image-plane mm at Z = 0 scale, ``(N, 2)``."""
    if distance is None:
        return cam_pts[:, :2].copy()
    return cam_pts[:, :2] * (distance / (distance - cam_pts[:, 2]))[:, None]


def make_camera(
    ident: FaceIdentity, view: FaceView, landmarks_xyz: np.ndarray, image_size: int
) -> Camera:
    """Frame ``landmarks_xyz`` (canonical mm, ``(K, 3)``): bbox centred, side ``margin`` x longest."""
    rot = _rotation(view)
    pivot = np.array([0.0, 20.0, -0.3 * ident.head_depth])
    plane = _plane(_to_camera(rot, pivot, landmarks_xyz), view.camera_distance)
    lo, hi = plane.min(axis=0), plane.max(axis=0)
    side = float(np.max(hi - lo)) * view.margin
    focal = image_size / side * view.scale_jitter
    centre = (lo + hi) / 2
    half = (image_size - 1) / 2
    u0 = half - focal * centre[0] + view.shift_px[0] * image_size
    v0 = half - focal * centre[1] + view.shift_px[1] * image_size
    return Camera(rot, pivot, focal, u0, v0, view.camera_distance, image_size)


def project(camera: Camera, pts_xyz: np.ndarray) -> np.ndarray:
    """Canonical ``(N, 3)`` mm -> ``(N, 2)`` (x, y) 0-based pixels."""
    plane = _plane(_to_camera(camera.rotation, camera.pivot, pts_xyz), camera.distance)
    return np.stack(
        [camera.u0 + camera.focal * plane[:, 0], camera.v0 + camera.focal * plane[:, 1]], 1
    )


def _rays(camera: Camera, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical ray origins and unit directions ``(N, 3)`` (pointing away from the camera)."""
    px = (u - camera.u0) / camera.focal
    py = (v - camera.v0) / camera.focal
    n = u.size
    if camera.distance is None:
        origin_cam = np.stack([px, py, np.full(n, 1000.0)], 1)
        dir_cam = np.tile([0.0, 0.0, -1.0], (n, 1))
    else:
        d = camera.distance
        origin_cam = np.tile([0.0, 0.0, d], (n, 1))
        dir_cam = np.stack([px, py, np.full(n, -d)], 1)
        dir_cam /= np.linalg.norm(dir_cam, axis=1, keepdims=True)
    origin = origin_cam @ camera.rotation + camera.pivot
    direction = dir_cam @ camera.rotation
    return origin, direction


# --------------------------------------------------------------------------- ray casting


def _slab(
    origin: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(direction) < 1e-12, 1e-12, direction)
    t1 = (lo - origin) * inv
    t2 = (hi - origin) * inv
    return np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)


def _march(
    height,
    origin: np.ndarray,
    direction: np.ndarray,
    t0: np.ndarray,
    t_end: np.ndarray,
    step: float,
    lead: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Step each ray from ``t0`` by ``step`` until ``z(t + lead) <= height(x(t), y(t))``.

    Returns ``(stopped (N,) bool, t (N,))``: the last ``t`` before the condition held (or the
    end of the ray, not stopped).
    """
    t = t0.copy()
    stopped = np.zeros(len(t), dtype=bool)
    active = np.flatnonzero(t <= t_end)
    while active.size:
        ta = t[active]
        p = origin[active] + ta[:, None] * direction[active]
        z_ahead = p[:, 2] + lead * direction[active, 2]
        stop = z_ahead <= height(p[:, 0], p[:, 1])
        stopped[active[stop]] = True
        rest = active[~stop]
        t[rest] += step
        active = rest[t[rest] <= t_end[rest]]
    return stopped, t


def _cast(
    grid: _Grid,
    origin: np.ndarray,
    direction: np.ndarray,
    box: tuple[np.ndarray, np.ndarray],
    step: float,
) -> tuple[np.ndarray, np.ndarray]:
    """First intersection of each ray with the height field: ``(hit (N,) bool, points (N, 3))``.

    Empty space is skipped with ``4 step`` strides against the height field's maximum over a
    neighbourhood wider than a stride's horizontal travel; then ``step`` strides find the
    first sample below the surface and a bisection refines it to ``step / 128``.
    """
    n = len(direction)
    t_in, t_out = _slab(origin, direction, *box)
    t_in = np.maximum(t_in, 0.0)
    coarse = 4.0 * step
    radius = int(math.ceil(coarse / grid.res)) + 1
    upper = _Grid(
        ndimage.maximum_filter(grid.heights, size=2 * radius + 1), grid.x0, grid.y0, grid.res
    )
    near, t_near = _march(upper.height, origin, direction, t_in, t_out, coarse, coarse)
    idx = np.flatnonzero(near)
    o, d = origin[idx], direction[idx]
    hit_sub, t_hit = _march(grid.height, o, d, t_near[idx], t_out[idx] + step, step, 0.0)
    idx, o, d, t_hit = idx[hit_sub], o[hit_sub], d[hit_sub], t_hit[hit_sub]
    hi = t_hit
    lo = np.maximum(t_hit - step, t_near[idx])
    for _ in range(7):
        mid = (lo + hi) / 2
        p = o + mid[:, None] * d
        below = p[:, 2] <= grid.height(p[:, 0], p[:, 1])
        hi = np.where(below, mid, hi)
        lo = np.where(below, lo, mid)
    hit = np.zeros(n, dtype=bool)
    hit[idx] = True
    points = np.zeros((n, 3))
    points[idx] = o + hi[:, None] * d
    return hit, points


def _visible(grid: _Grid, camera: Camera, pts: np.ndarray, box_hi: np.ndarray) -> np.ndarray:
    """Whether each canonical point ``(K, 3)`` sees the camera over the surface."""
    if camera.distance is None:
        towards = np.tile(-np.array([0.0, 0.0, -1.0]) @ camera.rotation, (len(pts), 1))
    else:
        cam = np.array([0.0, 0.0, camera.distance]) @ camera.rotation + camera.pivot
        towards = cam - pts
        towards /= np.linalg.norm(towards, axis=1, keepdims=True)
    vis = np.ones(len(pts), dtype=bool)
    for k, (p, d) in enumerate(zip(pts, towards, strict=True)):
        if d[2] <= 0:
            vis[k] = False
            continue
        t = np.arange(1.0, (box_hi[2] - p[2]) / d[2] + 1.0, 0.5)
        q = p + t[:, None] * d
        vis[k] = not np.any(q[:, 2] < grid.height(q[:, 0], q[:, 1]) - 0.3)
    return vis


# ------------------------------------------------------------------------------ texture


def _smooth_step(d: np.ndarray, width: float) -> np.ndarray:
    """0 for ``d << 0``, 1 for ``d >> 0``, a logistic ramp of ``width`` mm."""
    return 1.0 / (1.0 + np.exp(-np.clip(d / max(width, 1e-3), -30, 30)))


def _blend(rgb: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return rgb * (1.0 - alpha[:, None]) + np.asarray(colour)[None, :] * alpha[:, None]


def _value_noise(seed: int, x: np.ndarray, y: np.ndarray, cell: float) -> np.ndarray:
    """Smooth pseudo-random field in [-1, 1] at canonical ``(x, y)`` (cells of ``cell`` mm)."""
    rng = np.random.default_rng(seed)
    table = rng.uniform(-1.0, 1.0, (64, 64))
    coords = np.stack([(y + 160.0) / cell, (x + 160.0) / cell])
    return ndimage.map_coordinates(table, coords, order=3, mode="grid-wrap")


def _albedo(
    ident: FaceIdentity, view: FaceView, mouth: _Mouth, x: np.ndarray, y_e: np.ndarray, soft: float
) -> np.ndarray:
    """Surface colour ``(N, 3)`` in [0, 1] at expressed canonical ``(x, y_e)``."""
    lv = _levels(ident)
    y, gap = _unwarp(mouth, x, y_e)
    skin = np.asarray(ident.skin_rgb)
    rgb = (
        np.tile(skin, (len(x), 1))
        * (1.0 + 0.05 * _value_noise(ident.texture_seed, x, y, 9.0))[:, None]
    )
    blush = 0.25 * _gauss(x, y, -38, 32, 13, 11) + 0.25 * _gauss(x, y, 38, 32, 13, 11)
    rgb = _blend(rgb, skin * np.array([1.0, 0.78, 0.75]), blush)
    # lips
    hw = mouth.half_width
    inside_x = _smooth_step(hw - np.abs(x), soft)
    upper = _smooth_step(y - mouth.upper_border(x), soft) * _smooth_step(
        mouth.stomion_line(x) - y, soft
    )
    lower = _smooth_step(y - mouth.stomion_line(x), soft) * _smooth_step(
        mouth.lower_border(x) - y, soft
    )
    lip = np.clip((upper + lower) * inside_x, 0.0, 1.0)
    rgb = _blend(rgb, skin * np.array([0.85, 0.48, 0.48]), 0.85 * lip)
    rgb = _blend(
        rgb,
        skin * 0.45,
        0.6 * _smooth_step(0.6 - np.abs(y - mouth.stomion_line(x)), soft) * inside_x,
    )
    if mouth.open > 0:
        interior = np.where(gap, 1.0, 0.0)
        teeth = interior * _smooth_step(mouth.stomion_line(x) + 0.35 * mouth.open - y_e, soft)
        rgb = _blend(rgb, np.array([0.22, 0.06, 0.07]), interior)
        rgb = _blend(rgb, np.array([0.9, 0.88, 0.8]), teeth * (mouth.open > 2.5))
    # nostrils
    for side in (-1, 1):
        cx = side * (ident.alar_width / 2 - 7.0)
        r = np.sqrt(((x - cx) / 3.3) ** 2 + ((y - (lv["sn"] - 2.2)) / 1.7) ** 2)
        rgb = _blend(rgb, skin * 0.25, _smooth_step(1.0 - r, soft / 2.5))
    # eyes
    for side in (-1, 1):
        en, _ex, axis = _eye_frame(ident, side)
        rel_x, rel_y = x - en[0], y - en[1]
        t = (rel_x * axis[0] + rel_y * axis[1]) / ident.pfl
        v = -rel_x * axis[1] * side + rel_y * axis[0] * side  # down positive
        tt = np.clip(t, 0.0, 1.0)
        shape = np.sin(np.pi * tt) ** 0.8 * ident.eye_height * view.eye_open
        v_up = -0.6 * shape
        v_lo = 0.4 * shape
        in_t = _smooth_step(t, soft / ident.pfl * 0.5) * _smooth_step(
            1.0 - t, soft / ident.pfl * 0.5
        )
        fissure = _smooth_step(v - v_up, soft) * _smooth_step(v_lo - v, soft) * in_t
        centre = (en + _ex) / 2 + np.asarray(view.gaze)
        ri = np.hypot(x - centre[0], y - centre[1] + 0.1 * ident.eye_height)
        iris = _smooth_step(5.6 - ri, soft)
        pupil = _smooth_step(2.0 - ri, soft)
        eye = np.array([0.93, 0.91, 0.88]) * np.ones((len(x), 1))
        eye = _blend(eye, np.asarray(ident.iris_rgb), iris)
        eye = _blend(eye, np.array([0.03, 0.03, 0.03]), pupil)
        lid_line = _smooth_step(1.3 - np.abs(v - v_up + 0.5), soft) * np.clip(in_t * 1.2, 0, 1)
        lid_line = np.maximum(
            lid_line, 0.5 * _smooth_step(0.6 - np.abs(v - v_lo - 0.3), soft) * in_t
        )
        rgb = _blend(
            rgb,
            skin * 0.8,
            0.4 * _smooth_step(-v + v_up, 1.5) * _smooth_step(v_up + 5.0 + v, 2.0) * in_t,
        )
        rgb = rgb * (1.0 - fissure[:, None]) + eye * fissure[:, None]
        rgb = _blend(rgb, np.array([0.08, 0.05, 0.04]), 0.85 * lid_line)
        # brow: an arch over the eye from the medial end outwards
        u = (side * x - (ident.en_en / 2 - 3.0)) / (ident.pfl + 9.0)
        y_brow = (
            -ident.brow_height - 3.5 * np.sin(np.pi * np.clip(u, 0, 1)) + 0.3 * (en[1] - _ex[1]) * u
        )
        thick = ident.brow_thickness * (1.0 - 0.5 * np.clip(u, 0, 1))
        brow = (
            _smooth_step(thick / 2 - np.abs(y - y_brow), soft)
            * _smooth_step(u, 0.05)
            * _smooth_step(1 - u, 0.05)
        )
        rgb = _blend(rgb, np.asarray(ident.hair_rgb) * 0.55, 0.9 * brow)
    # hair
    strands = 1.0 + 0.12 * _value_noise(ident.texture_seed + 1, x * 4.0, y, 12.0)
    hairline = (
        -ident.hairline + 0.012 * x**2 + 4.0 * _value_noise(ident.texture_seed + 2, x, y * 0, 20.0)
    )
    w = _half_width(ident, y)
    sides = _smooth_step(
        np.abs(x) - (0.88 - 0.08 * ident.hair_sides) * np.maximum(w, 1.0), 2.0
    ) * _smooth_step((10.0 + 40.0 * ident.hair_sides) - y, 3.0)
    hair = np.maximum(_smooth_step(hairline - y, soft * 1.5), sides)
    rgb = (
        rgb * (1.0 - hair[:, None])
        + (np.asarray(ident.hair_rgb)[None, :] * strands[:, None]) * hair[:, None]
    )
    return np.clip(rgb, 0.0, 1.0)


def _background(view: FaceView, size: int) -> np.ndarray:
    """Cluttered background ``(S, S, 3)`` in [0, 1]."""
    rng = np.random.default_rng(view.background_seed)
    coarse = rng.uniform(0.1, 0.9, (4, 4, 3))
    zoom = size / 4
    bg = ndimage.zoom(coarse, (zoom, zoom, 1), order=1, mode="nearest", grid_mode=True)[
        :size, :size
    ]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    for _ in range(view.clutter):
        cx, cy = rng.uniform(0, size, 2)
        ax, ay = rng.uniform(0.05, 0.3, 2) * size
        theta = rng.uniform(0, np.pi)
        c, s = math.cos(theta), math.sin(theta)
        d = (((xx - cx) * c + (yy - cy) * s) / ax) ** 2 + (
            (-(xx - cx) * s + (yy - cy) * c) / ay
        ) ** 2
        if rng.uniform() < 0.5:  # rectangle-ish
            d = (
                np.maximum(
                    np.abs((xx - cx) * c + (yy - cy) * s) / ax,
                    np.abs(-(xx - cx) * s + (yy - cy) * c) / ay,
                )
                ** 2
            )
        alpha = (d < 1.0) * rng.uniform(0.5, 1.0)
        bg = bg * (1 - alpha[..., None]) + rng.uniform(0, 1, 3)[None, None, :] * alpha[..., None]
    return bg


# ------------------------------------------------------------------------------- render


_STEP_MM = 2.0  # ray-marching step


@dataclass(frozen=True)
class _Scene:
    """Everything geometric about one image: expressed height field, camera, landmarks (mm)."""

    grid: _Grid
    camera: Camera
    mouth: _Mouth
    landmarks_xyz: np.ndarray  # (12, 3) canonical mm
    box: tuple[np.ndarray, np.ndarray]  # canonical bounding box of the surface


def _scene(ident: FaceIdentity, view: FaceView, size: int) -> _Scene:
    mouth = _mouth(ident, view)
    pts2 = expressed_landmarks(ident, view)
    lv = _levels(ident)
    # a provisional camera (landmark depths from the base head) sets the grid resolution
    approx_z = _head_height(ident, pts2[:, 0], pts2[:, 1])
    cam0 = make_camera(ident, view, np.column_stack([pts2, approx_z]), size)
    res = float(np.clip(1.0 / cam0.focal, 0.3, 2.0))
    half_x = res * math.ceil(1.16 * ident.head_half_width / res)  # symmetric grid
    y_lo = lv["top"] - 2.0
    y_hi = max(lv["gn"] + mouth.open + 5.0, (size / cam0.focal) * 1.2 + pts2[:, 1].mean())
    grid = _height_grid(ident, mouth, (-half_x, half_x), (y_lo, y_hi), res)
    pts3 = np.column_stack([pts2, grid.height(pts2[:, 0], pts2[:, 1])])
    camera = make_camera(ident, view, pts3, size)
    box = (
        np.array([-half_x, y_lo, -0.35 * ident.head_depth]),
        np.array([half_x, y_hi, float(grid.heights.max()) + 1.0]),
    )
    return _Scene(grid, camera, mouth, pts3, box)


def render_view(
    ident: FaceIdentity, view: FaceView, image_size: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Camera]:
    """Render one image of ``ident`` in ``view``.

    Returns:
        ``(image uint8 (S, S, 3) RGB, landmarks float64 (12, 2) (x, y) 0-based pixel centres,
        visible bool (12,), camera)``.
    """
    size = int(image_size)
    scene = _scene(ident, view, size)
    grid, camera, mouth = scene.grid, scene.camera, scene.mouth
    landmarks = project(camera, scene.landmarks_xyz)
    visible = _visible(grid, camera, scene.landmarks_xyz, scene.box[1])
    res = grid.res

    vv, uu = np.mgrid[0:size, 0:size]
    origin, direction = _rays(camera, uu.ravel().astype(np.float64), vv.ravel().astype(np.float64))
    hit, points = _cast(grid, origin, direction, scene.box, step=_STEP_MM)
    image = _background(view, size).reshape(-1, 3)
    idx = np.flatnonzero(hit)
    if idx.size:
        p = points[idx]
        soft = 0.5 / camera.focal
        albedo = _albedo(ident, view, mouth, p[:, 0], p[:, 1], soft)
        gy, gx = np.gradient(grid.heights, res)
        nx = -grid.lookup(gx, p[:, 0], p[:, 1])
        ny = -grid.lookup(gy, p[:, 0], p[:, 1])
        normal = np.stack([nx, ny, np.ones_like(nx)], 1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        light = np.asarray(view.light_dir, dtype=np.float64) @ camera.rotation
        light /= np.linalg.norm(light)
        lambert = np.clip(normal @ light, 0.0, None)
        shade = view.ambient + (1.0 - view.ambient) * view.light_intensity * lambert
        image[idx] = albedo * shade[:, None]
    image = image.reshape(size, size, 3)
    if view.blur_sigma_px > 0:
        image = ndimage.gaussian_filter(image, (view.blur_sigma_px, view.blur_sigma_px, 0))
    if view.noise_sigma > 0:
        noise_rng = np.random.default_rng(view.background_seed + 1)
        image = image + noise_rng.normal(0.0, view.noise_sigma, image.shape)
    image_u8 = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return image_u8, landmarks, visible, camera


def render_face(
    ident: FaceIdentity,
    rng: np.random.Generator,
    image_size: int = 128,
    max_yaw_deg: float = 30.0,
    max_pitch_deg: float = 15.0,
    max_roll_deg: float = 15.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``ident`` in a random view (:func:`sample_view`).

    Returns:
        ``(image uint8 (S, S, 3) RGB, landmarks float64 (12, 2) (x, y) 0-based pixel centres,
        visible bool (12,))``.
    """
    view = sample_view(rng, max_yaw_deg, max_pitch_deg, max_roll_deg)
    image, landmarks, visible, _camera = render_view(ident, view, image_size)
    return image, landmarks, visible
