"""YOLOv1 loss (Redmon et al. 2016, Eq. 3) with Darknet's ``rescore=1``, as in paper 004.

For every image and every cell holding an object centre (``obj``), the *responsible* predictor
is the one of the ``B`` whose box has the highest IoU with the target (Darknet's
``detection_layer``: when every IoU is 0, the one with the smallest RMSE to the target box).
With ``pred = activate(raw)`` (sigmoid on x, y, conf; ``w = raw_w ** 2``, Darknet's ``sqrt=1``):

- coord: ``lambda_coord * [(x - x*)^2 + (y - y*)^2 + (raw_w - sqrt(w*))^2 + (raw_h -
  sqrt(h*))^2]`` on the responsible predictor: the network predicts the square roots of the
  sizes, so no square root of a prediction (whose slope is infinite at 0) enters the gradient;
  w, h relative to the image, x, y offsets in the cell;
- obj: ``(conf - IoU)^2`` on the responsible predictor, the target being its IoU with the
  object (``rescore=1``; the IoU is a constant, no gradient);
- noobj: ``lambda_noobj * conf^2`` on **every other** predictor, including the
  non-responsible one(s) in the object's cell;
- class: ``sum_c (p_c - p*_c)^2`` in the object's cell (linear class outputs, Darknet's
  ``softmax=0``), for any ``C``;

summed over the grid and the batch, then divided by the batch size ``N``.
Bugs of public re-implementations avoided (``papers.md`` 004): target conf = 1, skipping the
non-responsible predictor in noobj, no batch averaging, class slices fixed to 20 classes.
"""

from __future__ import annotations

import torch

from medrepro.metrics.detection import iou
from medrepro.transforms.yolo_grid import activate, cell_boxes

__all__ = ["yolo_loss", "yolo_loss_terms"]


def _target_boxes(target: torch.Tensor) -> torch.Tensor:
    """``(N, S, S, 4)`` image-normalised ``(cx, cy, w, h)`` of encoded targets."""
    s = target.shape[1]
    idx = torch.arange(s, dtype=target.dtype, device=target.device)
    cx = (idx.view(1, 1, s) + target[..., 0]) / s
    cy = (idx.view(1, s, 1) + target[..., 1]) / s
    return torch.stack([cx, cy, target[..., 2], target[..., 3]], dim=-1)


def _responsible(
    boxes: torch.Tensor, tboxes: torch.Tensor, obj: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot ``(N, S, S, B)`` responsible predictor in object cells and every IoU ``(N, S, S, B)``."""
    with torch.no_grad():
        t = tboxes.unsqueeze(3)
        ious = iou(boxes, t)
        rmse = torch.sqrt(((boxes - t) ** 2).sum(-1))
        by_iou = ious.argmax(-1)
        by_rmse = rmse.argmin(-1)
        best = torch.where(ious.amax(-1) > 0, by_iou, by_rmse)
        onehot = torch.nn.functional.one_hot(best, boxes.shape[3]).to(boxes.dtype)
    return onehot * obj.unsqueeze(-1), ious


def yolo_loss_terms(
    raw: torch.Tensor,
    target: torch.Tensor,
    B: int,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> dict[str, torch.Tensor]:
    """The four batch-averaged terms of :func:`yolo_loss` (already weighted by the lambdas).

    Args:
        raw: ``(N, S, S, 5B + C)`` raw network outputs.
        target: ``(N, S, S, 5 + C)`` from :func:`medrepro.transforms.yolo_grid.encode_targets`.
        B: predictors per cell.
        lambda_coord: weight of the coordinate term.
        lambda_noobj: weight of the no-object confidence term.

    Returns:
        ``{"coord", "obj", "noobj", "class"}`` scalar tensors.
    """
    n, s = raw.shape[0], raw.shape[1]
    c = raw.shape[-1] - 5 * B
    if target.shape != (n, s, s, 5 + c):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match raw {tuple(raw.shape)} "
            f"(expected {(n, s, s, 5 + c)} for B={B})"
        )
    target = target.to(raw.dtype)
    pred = activate(raw, B)
    p = pred[..., : 5 * B].reshape(n, s, s, B, 5)
    r = raw[..., : 5 * B].reshape(n, s, s, B, 5)
    obj = target[..., 4]
    tboxes = _target_boxes(target)
    boxes = cell_boxes(pred, B)
    resp, ious = _responsible(boxes, tboxes, obj)
    t = target.unsqueeze(3)
    coord = (
        (p[..., 0] - t[..., 0]) ** 2
        + (p[..., 1] - t[..., 1]) ** 2
        + (r[..., 2] - torch.sqrt(t[..., 2])) ** 2
        + (r[..., 3] - torch.sqrt(t[..., 3])) ** 2
    )
    conf = p[..., 4]
    class_err = ((pred[..., 5 * B :] - target[..., 5:]) ** 2).sum(-1)
    return {
        "coord": lambda_coord * (resp * coord).sum() / n,
        "obj": (resp * (conf - ious) ** 2).sum() / n,
        "noobj": lambda_noobj * ((1.0 - resp) * conf**2).sum() / n,
        "class": (obj * class_err).sum() / n,
    }


def yolo_loss(
    raw: torch.Tensor,
    target: torch.Tensor,
    B: int,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> torch.Tensor:
    """YOLOv1 sum-squared loss averaged over the batch (module docstring).

    Args:
        raw: ``(N, S, S, 5B + C)`` raw network outputs (the sigmoid is applied here).
        target: ``(N, S, S, 5 + C)`` encoded targets.
        B: predictors per cell.
        lambda_coord: coordinate weight (paper: 5).
        lambda_noobj: no-object confidence weight (paper: 0.5).

    Returns:
        Scalar tensor.
    """
    terms = yolo_loss_terms(raw, target, B, lambda_coord, lambda_noobj)
    return terms["coord"] + terms["obj"] + terms["noobj"] + terms["class"]
