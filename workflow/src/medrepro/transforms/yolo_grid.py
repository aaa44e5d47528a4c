"""YOLOv1 output grid: activation, target encoding and top-box decoding.

Layout (``docs/cerebellum_yolo.md``): raw network outputs ``(N, S, S, 5B + C)`` indexed
``[n, row, col, :]`` (row along y, col along x); per cell ``[x, y, w, h, conf] * B + classes``.
``x, y`` are offsets of the box centre inside its cell (0..1, after the sigmoid), ``w, h`` are
relative to the **image** (not to the cell), so a box ``(cx, cy, w, h)`` normalised by the image
width and height decodes as ``cx = (col + x) / S``, ``cy = (row + y) / S``.

Targets ``(N, S, S, 5 + C)`` per cell ``[x_off, y_off, w, h, obj, class...]``: the object sits in
the cell of its centre, ``col = min(floor(cx S), S - 1)`` (clamped, so ``cx = 1.0`` does not
overflow the grid), ``x_off = cx S - col``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["activate", "encode_targets", "decode_top_box", "cell_boxes"]


def _check_raw(raw: Any, B: int) -> int:
    """Number of classes ``C`` of a ``(N, S, S, 5B + C)`` raw output; ``ValueError`` otherwise."""
    shape = tuple(raw.shape)
    if len(shape) != 4 or shape[1] != shape[2]:
        raise ValueError(f"raw outputs must be (N, S, S, 5B + C), got shape {shape}")
    if B < 1 or shape[3] < 5 * B:
        raise ValueError(f"last axis {shape[3]} too short for B={B} boxes (needs >= {5 * B})")
    return shape[3] - 5 * B


def _sigmoid_mask(depth: int, B: int) -> np.ndarray:
    """Boolean ``(depth,)``: True at ``x, y, conf`` of each of the ``B`` predictors."""
    mask = np.zeros(depth, dtype=bool)
    for b in range(B):
        mask[[5 * b, 5 * b + 1, 5 * b + 4]] = True
    return mask


def _square_mask(depth: int, B: int) -> np.ndarray:
    """Boolean ``(depth,)``: True at ``w, h`` of each of the ``B`` predictors."""
    mask = np.zeros(depth, dtype=bool)
    for b in range(B):
        mask[[5 * b + 2, 5 * b + 3]] = True
    return mask


def activate(raw: Any, B: int) -> Any:
    """Sigmoid on every predictor's ``x, y`` (cell offsets) and ``conf``; ``w, h`` squared.

    The network predicts the square roots of the box width and height (Darknet's ``sqrt=1``),
    so ``w = raw_w ** 2`` and ``h = raw_h ** 2`` relative to the image; the loss compares
    ``raw_w`` with ``sqrt(w*)`` directly, which keeps its gradient bounded (a square root of a
    predicted size would have an infinite slope at 0). Classes stay linear.

    Args:
        raw: ``(N, S, S, 5B + C)`` raw outputs, a tensor (differentiable) or an array.
        B: predictors per cell.

    Returns:
        Same shape and type (numpy input -> float64 array).
    """
    _check_raw(raw, B)
    mask = _sigmoid_mask(raw.shape[-1], B)
    square = _square_mask(raw.shape[-1], B)
    if isinstance(raw, torch.Tensor):
        m = torch.as_tensor(mask, device=raw.device)
        q = torch.as_tensor(square, device=raw.device)
        return torch.where(m, torch.sigmoid(raw), torch.where(q, raw * raw, raw))
    arr = np.asarray(raw, dtype=np.float64)
    out = arr.copy()
    out[..., mask] = 1.0 / (1.0 + np.exp(-arr[..., mask]))
    out[..., square] = arr[..., square] ** 2
    return out


def encode_targets(boxes: Any, S: int, C: int = 1) -> Any:
    """Training targets on the ``S x S`` grid, one object (class 0) per image at most.

    Args:
        boxes: ``(N, 4)`` normalised ``(cx, cy, w, h)`` in [0, 1]; a row of NaN = no object.
            An array or a tensor.
        S: grid side.
        C: classes; the object's one-hot class is class 0.

    Returns:
        ``(N, S, S, 5 + C)`` float32 (array, or a tensor for tensor input): per cell
        ``[x_off, y_off, w, h, obj, class...]``, all zero except the object's cell.

    Raises:
        ValueError: bad shape, a partly-NaN row, a coordinate outside [0, 1] or w, h <= 0.
    """
    as_tensor = isinstance(boxes, torch.Tensor)
    b = np.asarray(boxes.detach().cpu().numpy() if as_tensor else boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) (cx, cy, w, h), got shape {b.shape}")
    if S < 1 or C < 1:
        raise ValueError(f"need S >= 1 and C >= 1, got S={S}, C={C}")
    empty = np.isnan(b).all(axis=1)
    full = b[~empty]
    if not np.isfinite(full).all():
        raise ValueError("each box row must be all finite or all NaN (no object)")
    if ((full < 0) | (full > 1)).any() or (full[:, 2:] <= 0).any():
        raise ValueError("boxes must be normalised: cx, cy, w, h in [0, 1] with w, h > 0")
    target = np.zeros((b.shape[0], S, S, 5 + C), dtype=np.float32)
    for n in np.flatnonzero(~empty):
        cx, cy, w, h = b[n]
        col = min(int(np.floor(cx * S)), S - 1)
        row = min(int(np.floor(cy * S)), S - 1)
        target[n, row, col, :5] = (cx * S - col, cy * S - row, w, h, 1.0)
        target[n, row, col, 5] = 1.0
    return torch.from_numpy(target) if as_tensor else target


def cell_boxes(pred: Any, B: int) -> Any:
    """Image-normalised boxes of every predictor from *activated* outputs.

    Args:
        pred: ``(N, S, S, 5B + C)`` activated outputs (:func:`activate`), tensor or array.
        B: predictors per cell.

    Returns:
        ``(N, S, S, B, 4)`` ``(cx, cy, w, h)`` with ``cx = (col + x) / S``, ``cy = (row + y) / S``
        and ``w, h`` as predicted (not clamped).
    """
    _check_raw(pred, B)
    n, s = pred.shape[0], pred.shape[1]
    p = pred[..., : 5 * B].reshape(n, s, s, B, 5)
    if isinstance(pred, torch.Tensor):
        idx = torch.arange(s, dtype=pred.dtype, device=pred.device)
        col, row = idx.view(1, 1, s, 1), idx.view(1, s, 1, 1)
        cx = (col + p[..., 0]) / s
        cy = (row + p[..., 1]) / s
        return torch.stack([cx, cy, p[..., 2], p[..., 3]], dim=-1)
    idx = np.arange(s, dtype=np.float64)
    cx = (idx.reshape(1, 1, s, 1) + p[..., 0]) / s
    cy = (idx.reshape(1, s, 1, 1) + p[..., 1]) / s
    return np.stack([cx, cy, p[..., 2], p[..., 3]], axis=-1)


def decode_top_box(raw: Any, B: int) -> tuple[np.ndarray, np.ndarray]:
    """The highest-confidence predictor of the whole grid, per image.

    Args:
        raw: ``(N, S, S, 5B + C)`` raw outputs (tensor or array; decoded in numpy).
        B: predictors per cell.

    Returns:
        ``(boxes, conf)``: ``(N, 4)`` float64 normalised ``(cx, cy, w, h)`` with ``w, h``
        clamped to >= 0, and ``(N,)`` the sigmoid confidence of that predictor. Ties go to
        the first predictor in ``(row, col, b)`` order.
    """
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    pred = activate(np.asarray(raw, dtype=np.float64), B)
    n, s = pred.shape[0], pred.shape[1]
    boxes = cell_boxes(pred, B).reshape(n, s * s * B, 4)
    conf = pred[..., : 5 * B].reshape(n, s * s * B, 5)[..., 4]
    best = np.argmax(conf, axis=1)
    top = boxes[np.arange(n), best].copy()
    top[:, 2:] = np.maximum(top[:, 2:], 0.0)
    return top, conf[np.arange(n), best]
