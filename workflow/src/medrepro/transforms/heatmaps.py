"""Gaussian landmark heatmaps and their sub-voxel decoding, in 3D and 2D.

The stacked hourglass (Vasiliev, Lachinov, Getmanskaya, GraphiCon 2020, Sec. 4.4) regresses
one heatmap per landmark whose target is a Gaussian centred on the landmark; heatmaps have a
``stride`` (2 for the hourglass) relative to the input. Heatmap voxel ``h`` covers input voxels
``[s h, s h + s - 1]``, so its centre is input voxel ``s h + (s - 1) / 2``:

    ``input = s * heatmap + (s - 1) / 2``, ``heatmap = (input - (s - 1) / 2) / s``

(:func:`heatmap_to_input` / :func:`input_to_heatmap`, exact inverses, used by both the encoder
and the decoder). All coordinates are continuous voxel indices ``(x, y, z)`` with voxel centres
at integers, arrays ``(N, K, 3)``; heatmaps are ``(N, K, X, Y, Z)``.

2D (:func:`gaussian_heatmaps_2d`, :func:`decode_heatmaps_2d`; SimpleBaselines and the 2D
stacked hourglass of the face landmarks, paper 002, stride 4): landmarks are ``(x, y)`` =
(column, row) in 0-based pixel-centre input pixels, arrays ``(N, K, 2)``; heatmaps are
``(N, K, h, w)`` with ``h`` rows (y) and ``w`` columns (x), so the coordinate order is the
reverse of the array axis order. The same mapping ``input = s * heatmap + (s - 1) / 2`` holds per
axis (stride 4: heatmap pixel ``j`` covers input pixels ``[4 j, 4 j + 3]``, centre ``4 j + 1.5``).
Both dimensions share one D-dimensional encoder and decoder.

All functions work on NumPy arrays and on torch tensors; the computation is done in NumPy
(float64) and a tensor input gives a tensor output on the same device.

Decoding is "integer argmax, then a sub-voxel refinement in the ``(2 window + 1)^D``
neighbourhood". Integer argmax alone costs up to ``stride / 2`` input voxels per axis, which
dominates the mm error (papers.md, 000). Two refinements:

- ``"gaussian"`` (default): weighted least-squares fit of ``log h = c + sum_a (alpha_a d_a^2 +
  beta_a d_a)`` over the neighbourhood (weights ``h^2``, Guo 2011), peak at
  ``-beta_a / (2 alpha_a)``. Exact for Gaussian targets of any sigma, also at the volume border
  (the fit simply uses the voxels that exist); the same idea as DARK (Zhang et al., CVPR 2020).
- ``"centroid"``: intensity-weighted centroid. Biased towards the argmax voxel when the window
  truncates the Gaussian: worst-case bias (heatmap voxels) for sigma = 2 is 0.29 at window 2,
  0.17 at 3, 0.07 at 4, 0.007 at 6; for sigma = 1 it is 0.045 at window 2 and 0.003 at 3.
  Use ``window >= 3 sigma`` with it. Both fall back to the centroid along an axis where the
  fit is not concave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DECODE_METHODS",
    "input_to_heatmap",
    "heatmap_to_input",
    "gaussian_heatmaps",
    "decode_heatmaps",
    "gaussian_heatmaps_2d",
    "decode_heatmaps_2d",
]

DECODE_METHODS = ("gaussian", "centroid")


def input_to_heatmap(vox: Any, stride: int = 2) -> Any:
    """Input voxel coordinates -> heatmap voxel coordinates: ``(v - (s - 1) / 2) / s``."""
    return (vox - (stride - 1) / 2.0) / stride


def heatmap_to_input(hvox: Any, stride: int = 2) -> Any:
    """Heatmap voxel coordinates -> input voxel coordinates: ``s h + (s - 1) / 2``."""
    return hvox * stride + (stride - 1) / 2.0


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _like(out: np.ndarray, ref: Any) -> Any:
    """``out`` as a tensor on ``ref``'s device if ``ref`` is a tensor, else unchanged."""
    if isinstance(ref, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(out)).to(ref.device)
    return out


def _sigma(sigma: float | Sequence[float], ndim: int) -> np.ndarray:
    """``sigma`` broadcast to ``(ndim,)`` float64; ValueError unless all > 0."""
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (ndim,))
    if np.any(sig <= 0):
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return sig


def _encode(
    lm: np.ndarray, heatmap_shape: Sequence[int], stride: int, sig: np.ndarray
) -> np.ndarray:
    """Peak-1 Gaussians ``(N, K, *heatmap_shape)`` float32 for ``(N, K, D)`` input coordinates.

    Coordinates, ``heatmap_shape`` and ``sig`` (heatmap units) are all in array axis order; the
    Gaussian is the product of one 1D profile per axis; non-finite landmarks give zero channels.
    """
    centres = input_to_heatmap(lm, stride)
    finite = np.all(np.isfinite(centres), axis=-1)  # (N, K)
    centres = np.where(finite[..., None], centres, 0.0)
    hm = None
    for a in range(len(heatmap_shape)):
        grid = np.arange(int(heatmap_shape[a]), dtype=np.float64)
        d = grid[None, None, :] - centres[..., a, None]
        profile = np.exp(-(d**2) / (2.0 * sig[a] ** 2))  # (N, K, S_a)
        if hm is None:
            hm = profile
        else:  # outer product: (N, K, S_0, .., S_a-1) x (N, K, S_a)
            hm = hm[..., None] * profile.reshape(profile.shape[:2] + (1,) * a + profile.shape[2:])
    hm = hm * finite.reshape(finite.shape + (1,) * len(heatmap_shape))
    return hm.astype(np.float32)


def gaussian_heatmaps(
    landmarks_vox: Any,
    heatmap_shape: Sequence[int],
    stride: int = 2,
    sigma: float | Sequence[float] = 2.0,
) -> Any:
    """Gaussian heatmap targets, peak value 1, one channel per landmark.

    ``H[n, k, h] = exp(-|h - c_nk|^2 / (2 sigma^2))`` with ``c_nk`` the landmark in heatmap
    voxels (:func:`input_to_heatmap`). The value is 1 at the landmark itself, so it is below 1
    at the nearest voxel centre when the landmark is off-grid (the paper uses a Gaussian pdf;
    scaling it to peak 1 makes it reachable by the sigmoid output). Landmarks with non-finite
    coordinates (missing) give an all-zero channel.

    Args:
        landmarks_vox: ``(N, K, 3)`` input-voxel coordinates ``(x, y, z)`` (array or tensor).
        heatmap_shape: ``(X, Y, Z)`` of the heatmaps, e.g. input shape // stride.
        stride: input voxels per heatmap voxel along each axis.
        sigma: standard deviation in **heatmap voxels** (scalar or per axis).

    Returns:
        ``(N, K, X, Y, Z)`` float32 heatmaps; a tensor (on the input's device) if
        ``landmarks_vox`` is a tensor, else a NumPy array.
    """
    lm = _to_numpy(landmarks_vox).astype(np.float64)
    if lm.ndim != 3 or lm.shape[-1] != 3:
        raise ValueError(f"landmarks_vox must be (N, K, 3), got {lm.shape}")
    if len(heatmap_shape) != 3:
        raise ValueError(f"heatmap_shape must be (X, Y, Z), got {tuple(heatmap_shape)}")
    hm = _encode(lm, heatmap_shape, stride, _sigma(sigma, 3))
    return _like(hm, landmarks_vox)


def _neighbourhood(window: int, ndim: int = 3) -> np.ndarray:
    """Integer offsets ``(M, ndim)`` of the ``(2 window + 1)^ndim`` cube, C order."""
    r = np.arange(-window, window + 1)
    grids = np.meshgrid(*([r] * ndim), indexing="ij")
    return np.stack(grids, axis=-1).reshape(-1, ndim)  # (M, D)


def decode_heatmaps(hm: Any, stride: int = 2, window: int = 2, method: str = "gaussian") -> Any:
    """Sub-voxel landmark positions from heatmaps, in input voxels.

    Integer argmax per channel, then refinement in the ``(2 window + 1)^3`` neighbourhood
    (clipped to the volume), see the module docstring for the two ``method`` s; the result is
    mapped back to input voxels with :func:`heatmap_to_input`.

    Args:
        hm: ``(N, K, X, Y, Z)`` heatmaps (array or tensor; negative values are ignored).
        stride: input voxels per heatmap voxel.
        window: half-size of the refinement neighbourhood (0: plain argmax).
        method: ``"gaussian"`` (log-quadratic fit, exact for Gaussians) or ``"centroid"``.

    Returns:
        ``(N, K, 3)`` float64 input-voxel coordinates ``(x, y, z)``; a tensor (same device) if
        ``hm`` is a tensor, else a NumPy array.
    """
    _check_method(method)
    h = _to_numpy(hm).astype(np.float64)
    if h.ndim != 5:
        raise ValueError(f"heatmaps must be (N, K, X, Y, Z), got {h.shape}")
    return _like(_decode(h, stride, window, method), hm)


def gaussian_heatmaps_2d(
    landmarks_xy: Any,
    heatmap_shape: Sequence[int],
    stride: int = 4,
    sigma: float | Sequence[float] = 2.0,
) -> Any:
    """2D Gaussian heatmap targets, peak value 1, one channel per landmark.

    ``H[n, k, r, c] = exp(-((c - cx)^2 + (r - cy)^2) / (2 sigma^2))`` with ``(cx, cy)`` the
    landmark in heatmap pixels (``(x - (s - 1) / 2) / s``). Non-finite landmarks (missing) give an
    all-zero channel.

    Args:
        landmarks_xy: ``(N, K, 2)`` input-pixel coordinates ``(x, y)`` = (column, row), 0-based
            pixel centres (array or tensor).
        heatmap_shape: ``(h, w)`` = (rows, columns) of the heatmaps, e.g. ``(H // 4, W // 4)``.
        stride: input pixels per heatmap pixel along each axis.
        sigma: standard deviation in **heatmap pixels** (scalar, or ``(sigma_x, sigma_y)``).

    Returns:
        ``(N, K, h, w)`` float32 heatmaps; a tensor (on the input's device) if ``landmarks_xy``
        is a tensor, else a NumPy array.

    Example:
        >>> # heatmap pixel (row 2, column 10) has its centre at x = 4 * 10 + 1.5, y = 4 * 2 + 1.5
        >>> hm = gaussian_heatmaps_2d([[[41.5, 9.5]]], (16, 16))
        >>> hm.shape, float(hm[0, 0, 2, 10])
        ((1, 1, 16, 16), 1.0)
    """
    lm = _to_numpy(landmarks_xy).astype(np.float64)
    if lm.ndim != 3 or lm.shape[-1] != 2:
        raise ValueError(f"landmarks_xy must be (N, K, 2), got {lm.shape}")
    if len(heatmap_shape) != 2:
        raise ValueError(f"heatmap_shape must be (h, w), got {tuple(heatmap_shape)}")
    sig_xy = _sigma(sigma, 2)
    # (x, y) -> array axis order (row = y, column = x)
    hm = _encode(lm[..., ::-1], heatmap_shape, stride, sig_xy[::-1])
    return _like(hm, landmarks_xy)


def decode_heatmaps_2d(hm: Any, stride: int = 4, window: int = 2, method: str = "gaussian") -> Any:
    """Sub-pixel landmark positions ``(x, y)`` from 2D heatmaps, in input pixels.

    Integer argmax per channel, then refinement in the ``(2 window + 1)^2`` neighbourhood
    (clipped to the map; ``"gaussian"`` log-quadratic fit or ``"centroid"``, see the module
    docstring), mapped back with ``input = s * heatmap + (s - 1) / 2``.

    Args:
        hm: ``(N, K, h, w)`` heatmaps, rows = y, columns = x (array or tensor; negative values
            are ignored).
        stride: input pixels per heatmap pixel.
        window: half-size of the refinement neighbourhood (0: plain argmax).
        method: ``"gaussian"`` (exact for Gaussians) or ``"centroid"``.

    Returns:
        ``(N, K, 2)`` float64 input-pixel coordinates ``(x, y)``; a tensor (same device) if
        ``hm`` is a tensor, else a NumPy array.
    """
    _check_method(method)
    h = _to_numpy(hm).astype(np.float64)
    if h.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, h, w), got {h.shape}")
    rc = _decode(h, stride, window, method)  # (N, K, 2) as (row, column)
    return _like(np.ascontiguousarray(rc[..., ::-1]), hm)


def _check_method(method: str) -> None:
    if method not in DECODE_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {DECODE_METHODS}")


def _decode(h: np.ndarray, stride: int, window: int, method: str) -> np.ndarray:
    """``(N, K, D)`` input coordinates (array axis order) of ``(N, K, *S)`` float64 heatmaps."""
    n, k = h.shape[:2]
    ndim = h.ndim - 2
    shape = np.asarray(h.shape[2:])
    flat = h.reshape(n, k, -1)
    peak_idx = np.argmax(flat, axis=-1)  # (N, K)
    peak = np.stack(np.unravel_index(peak_idx, h.shape[2:]), axis=-1)  # (N, K, D)
    pos = peak.astype(np.float64)
    if window > 0:
        offsets = _neighbourhood(window, ndim)  # (M, D)
        coords = peak[..., None, :] + offsets  # (N, K, M, D)
        inside = np.all((coords >= 0) & (coords < shape), axis=-1)  # (N, K, M)
        clipped = np.clip(coords, 0, shape - 1)
        lin = np.ravel_multi_index(tuple(np.moveaxis(clipped, -1, 0)), h.shape[2:])
        vals = np.take_along_axis(flat, lin, axis=-1)
        vals = np.where(inside, np.maximum(vals, 0.0), 0.0)  # (N, K, M)
        pos = pos + _centroid_shift(vals, offsets)
        if method == "gaussian":
            shift, ok = _gaussian_shift(vals, offsets, peak_max=np.max(vals, axis=-1))
            shift = np.clip(shift, -window, window)
            pos = np.where(ok, peak + shift, pos)
    return heatmap_to_input(pos, stride)


def _centroid_shift(vals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Intensity-weighted mean offset ``(N, K, D)``; 0 where the neighbourhood is empty."""
    total = vals.sum(axis=-1, keepdims=True)  # (N, K, 1)
    moment = vals @ offsets.astype(np.float64)  # (N, K, D)
    return np.divide(moment, total, out=np.zeros_like(moment), where=total > 0)


def _gaussian_shift(
    vals: np.ndarray, offsets: np.ndarray, peak_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Peak offset of a separable log-quadratic fit; returns ``(shift (N,K,D), ok (N,K,D))``."""
    ndim = offsets.shape[1]
    d = offsets.astype(np.float64)
    design = np.concatenate([np.ones((len(d), 1)), d, d**2], axis=1)  # (M, 1 + 2D): 1, d, d^2
    usable = vals > 1e-6 * peak_max[..., None]
    logv = np.log(np.where(usable, vals, 1.0))
    w = np.where(usable, vals**2, 0.0)  # (N, K, M)
    ata = np.einsum("nkm,mi,mj->nkij", w, design, design)
    atb = np.einsum("nkm,mi,nkm->nki", w, design, logv)
    coef = np.einsum("nkij,nkj->nki", np.linalg.pinv(ata), atb)
    beta, alpha = coef[..., 1 : 1 + ndim], coef[..., 1 + ndim : 1 + 2 * ndim]
    # a parabola along an axis needs >= 3 distinct positions on it (else d and d^2 are collinear)
    levels = np.unique(offsets[:, 0])
    distinct = np.stack(
        [
            sum(np.any(usable & (offsets[:, a] == r), axis=-1).astype(int) for r in levels)
            for a in range(ndim)
        ],
        axis=-1,
    )  # (N, K, D)
    ok = (alpha < -1e-12) & (distinct >= 3)
    shift = np.where(ok, -beta / (2.0 * np.where(ok, alpha, -1.0)), 0.0)
    return shift, ok
