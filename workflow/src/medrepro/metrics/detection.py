"""Single-object detection metrics: IoU, the paper's "AP" (mean IoU), TP/FP/FN and F1.

Definitions (``docs/cerebellum_yolo.md``, "Metrics"; ``papers.md`` 004):

- IoU of two ``(cx, cy, w, h)`` boxes: intersection area / union area. Boxes normalised by the
  image width W and height H give the same IoU as the pixel boxes (both areas scale by W H);
  boxes with ``w`` or ``h`` <= 0 have area 0 (a negative size is clamped), and IoU of two empty
  boxes is 0.
- Per image the prediction is the top-confidence box. **AP** (Ramos et al. 2020) = mean over
  the annotated images of IoU(top box, annotated box), the top box taken whatever its
  confidence (optionally 0 below ``ap_conf_threshold``); no box (NaN) counts IoU 0; images
  without an annotation are excluded (AP is NaN when no image is annotated). This is not VOC AP.
- At threshold tau: TP = top box ``conf >= tau`` and ``IoU >= iou_threshold`` with the
  annotation; FP = top box ``conf >= tau`` and (no annotation or ``IoU < iou_threshold``); FN =
  annotated image without a TP (an annotated image with a poor box is both FP and FN).
  ``F1 = 2 TP / (2 TP + FP + FN)``, NaN when the denominator is 0 (no annotation, no detection).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

__all__ = ["iou", "per_image_iou", "detection_scores"]


def iou(box_a: Any, box_b: Any) -> Any:
    """Intersection over union of ``(..., 4)`` boxes ``(cx, cy, w, h)`` (broadcasting).

    Args:
        box_a: boxes, normalised or in pixels (both arguments in the same units); an array
            or a tensor (then the result is a differentiable tensor).
        box_b: boxes, broadcastable against ``box_a``.

    Returns:
        ``(...)`` IoU in [0, 1] (float64 array for numpy input).
    """
    if isinstance(box_a, torch.Tensor) or isinstance(box_b, torch.Tensor):
        a = torch.as_tensor(box_a)
        b = torch.as_tensor(box_b, dtype=a.dtype, device=a.device)
        lib_min, lib_max, zero = torch.minimum, torch.maximum, torch.zeros((), dtype=a.dtype)
    else:
        a = np.asarray(box_a, dtype=np.float64)
        b = np.asarray(box_b, dtype=np.float64)
        lib_min, lib_max, zero = np.minimum, np.maximum, np.float64(0.0)
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 values (cx, cy, w, h), got {a.shape}, {b.shape}")
    aw, ah = lib_max(a[..., 2], zero), lib_max(a[..., 3], zero)
    bw, bh = lib_max(b[..., 2], zero), lib_max(b[..., 3], zero)
    ix = lib_min(a[..., 0] + aw / 2, b[..., 0] + bw / 2) - lib_max(
        a[..., 0] - aw / 2, b[..., 0] - bw / 2
    )
    iy = lib_min(a[..., 1] + ah / 2, b[..., 1] + bh / 2) - lib_max(
        a[..., 1] - ah / 2, b[..., 1] - bh / 2
    )
    inter = lib_max(ix, zero) * lib_max(iy, zero)
    union = aw * ah + bw * bh - inter
    safe = lib_max(union, zero + 1e-12)
    return (inter / safe) * (union > 0)


def _inputs(
    pred_boxes: ArrayLike, pred_conf: ArrayLike, gt_boxes: ArrayLike, has_object: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(N, 4), (N,), (N, 4), (N,)`` arrays."""
    pb = np.asarray(pred_boxes, dtype=np.float64)
    pc = np.asarray(pred_conf, dtype=np.float64).reshape(-1)
    gb = np.asarray(gt_boxes, dtype=np.float64)
    ho = np.asarray(has_object).reshape(-1)
    n = pc.shape[0]
    if pb.shape != (n, 4) or gb.shape != (n, 4) or ho.shape != (n,):
        raise ValueError(
            f"expected pred_boxes (N, 4), pred_conf (N,), gt_boxes (N, 4), has_object (N,); "
            f"got {pb.shape}, {pc.shape}, {gb.shape}, {ho.shape}"
        )
    if ho.dtype != bool:
        if not np.isin(ho, (0, 1)).all():
            raise ValueError("has_object must be boolean (or 0/1)")
        ho = ho.astype(bool)
    if not np.isfinite(gb[ho]).all():
        raise ValueError("an annotated image (has_object) has a non-finite gt box")
    return pb, pc, gb, ho


def per_image_iou(
    pred_boxes: ArrayLike,
    pred_conf: ArrayLike,
    gt_boxes: ArrayLike,
    has_object: ArrayLike,
    conf_threshold: float = 0.25,
) -> np.ndarray:
    """IoU of each image's top box with its annotation, as counted in AP.

    Args:
        pred_boxes: ``(N, 4)`` top box per image ``(cx, cy, w, h)``; NaN row = no box.
        pred_conf: ``(N,)`` its confidence (NaN = no box).
        gt_boxes: ``(N, 4)`` annotated boxes, same units; NaN rows where ``has_object`` is False.
        has_object: ``(N,)`` bool, the image has an annotation.
        conf_threshold: a top box below it counts as missing.

    Returns:
        ``(N,)`` float64: IoU, 0 for an annotated image without a box above the threshold, NaN
        for images without an annotation.
    """
    pb, pc, gb, ho = _inputs(pred_boxes, pred_conf, gt_boxes, has_object)
    detected = (pc >= conf_threshold) & np.isfinite(pb).all(axis=1)
    out = np.full(pc.shape[0], np.nan)
    out[ho] = 0.0
    both = ho & detected
    out[both] = iou(pb[both], gb[both])
    return out


def detection_scores(
    pred_boxes: ArrayLike,
    pred_conf: ArrayLike,
    gt_boxes: ArrayLike,
    has_object: ArrayLike,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    ap_conf_threshold: float | None = None,
) -> dict[str, float | int]:
    """The paper's AP (mean IoU), TP, FP, FN and F1 over a set of images (module docstring).

    AP is the localisation score: the IoU of each annotated image's top box, whatever its
    confidence (``ap_conf_threshold=None``; the paper's "average of the IoU values for 78 test
    images" has a box for every image), or 0 below ``ap_conf_threshold`` when one is given.
    Detection (TP/FP/FN, F1) always uses ``conf_threshold``.

    Args:
        pred_boxes: ``(N, 4)`` top-confidence box per image (NaN row = no box).
        pred_conf: ``(N,)`` its confidence.
        gt_boxes: ``(N, 4)`` annotations (NaN rows for images without one).
        has_object: ``(N,)`` bool.
        conf_threshold: tau; boxes with ``conf < tau`` are not detections.
        iou_threshold: minimum IoU of a true positive.
        ap_conf_threshold: confidence below which a top box counts IoU 0 in AP (None: never).

    Returns:
        ``{"ap", "f1", "tp", "fp", "fn", "n_images", "n_annotated"}``; ``ap`` and ``f1`` are
        floats (NaN when undefined), the counts ints.
    """
    pb, pc, gb, ho = _inputs(pred_boxes, pred_conf, gt_boxes, has_object)
    ious = per_image_iou(pb, pc, gb, ho, conf_threshold)
    ap_threshold = -np.inf if ap_conf_threshold is None else ap_conf_threshold
    ap_ious = per_image_iou(pb, pc, gb, ho, ap_threshold)
    detected = (pc >= conf_threshold) & np.isfinite(pb).all(axis=1)
    hit = ho & detected & (np.nan_to_num(ious, nan=0.0) >= iou_threshold)
    tp = int(hit.sum())
    fp = int((detected & ~hit).sum())
    fn = int((ho & ~hit).sum())
    n_annotated = int(ho.sum())
    denom = 2 * tp + fp + fn
    return {
        "ap": float(ap_ious[ho].mean()) if n_annotated else float("nan"),
        "f1": 2.0 * tp / denom if denom else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_images": int(pc.shape[0]),
        "n_annotated": n_annotated,
    }
