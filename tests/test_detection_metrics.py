"""Tests for medrepro.metrics.detection: IoU and the paper's AP / F1 on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medrepro.metrics.detection import detection_scores, iou, per_image_iou

NAN4 = [np.nan] * 4


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2], 1.0),  # identical
        ([0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1], 0.0),  # disjoint
        ([0.5, 0.5, 0.2, 0.2], [0.7, 0.5, 0.2, 0.2], 0.0),  # touching edges
        ([50, 50, 20, 20], [60, 50, 20, 20], 1 / 3),  # half-width shift: 200 / (800 - 200)
        ([50, 50, 20, 20], [50, 50, 20, 10], 0.5),  # half of it inside: 200 / 400
        ([50, 50, 20, 20], [55, 55, 20, 20], 225 / 575),  # 15 x 15 overlap
        ([50, 50, 0, 20], [50, 50, 20, 20], 0.0),  # zero width
        ([50, 50, -5, 20], [50, 50, 20, 20], 0.0),  # negative width clamps to 0
        ([50, 50, 0, 0], [50, 50, 0, 0], 0.0),  # two empty boxes
    ],
)
def test_iou_known_boxes(a: list, b: list, expected: float) -> None:
    assert float(iou(np.array(a), np.array(b))) == pytest.approx(expected, abs=1e-12)
    assert float(iou(np.array(b), np.array(a))) == pytest.approx(expected, abs=1e-12)


def test_iou_normalised_equals_pixels() -> None:
    H, W = 173, 255
    a_px = np.array([120.0, 80.0, 40.0, 30.0])
    b_px = np.array([130.0, 90.0, 50.0, 20.0])
    scale = np.array([W, H, W, H], dtype=np.float64)
    # x [100, 140] ^ [105, 155] = 35; y [65, 95] ^ [80, 100] = 15 -> 525 / (1200 + 1000 - 525)
    assert float(iou(a_px, b_px)) == pytest.approx(525 / 1675, abs=1e-12)
    assert float(iou(a_px / scale, b_px / scale)) == pytest.approx(525 / 1675, abs=1e-12)


def test_iou_broadcasts_and_accepts_tensors() -> None:
    boxes = np.array([[50, 50, 20, 20], [60, 50, 20, 20], [150, 50, 20, 20]], dtype=np.float64)
    ref = np.array([50, 50, 20, 20], dtype=np.float64)
    np.testing.assert_allclose(iou(boxes, ref), [1.0, 1 / 3, 0.0], atol=1e-12)
    t = torch.tensor(boxes, requires_grad=True)
    out = iou(t, torch.tensor(ref))
    np.testing.assert_allclose(out.detach().numpy(), [1.0, 1 / 3, 0.0], atol=1e-12)
    out.sum().backward()
    assert torch.isfinite(t.grad).all()
    with pytest.raises(ValueError, match="4 values"):
        iou(np.zeros(3), np.zeros(4))


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seven images, pixel boxes; annotation (50, 50, 20, 20) on images 0, 1, 2, 3, 6."""
    gt = [50.0, 50.0, 20.0, 20.0]
    pred = np.array(
        [
            [50, 50, 20, 20],  # 0: conf 0.9, IoU 1 -> TP
            [60, 50, 20, 20],  # 1: conf 0.8, IoU 1/3 -> FP and FN
            [50, 50, 20, 20],  # 2: conf 0.1 < tau -> not a detection: IoU 0, FN
            NAN4,  # 3: no box -> IoU 0, FN
            [30, 30, 10, 10],  # 4: no annotation, conf 0.5 -> FP
            [30, 30, 10, 10],  # 5: no annotation, conf 0.2 < tau -> nothing
            [50, 50, 20, 10],  # 6: conf 0.3, IoU exactly 0.5 -> TP
        ],
        dtype=np.float64,
    )
    conf = np.array([0.9, 0.8, 0.1, np.nan, 0.5, 0.2, 0.3])
    has = np.array([True, True, True, True, False, False, True])
    gt_boxes = np.array([gt if h else NAN4 for h in has])
    return pred, conf, gt_boxes, has


def test_detection_scores_hand_case() -> None:
    scores = detection_scores(
        *_case(), conf_threshold=0.25, iou_threshold=0.5, ap_conf_threshold=0.25
    )
    assert scores["ap"] == pytest.approx((1 + 1 / 3 + 0 + 0 + 0.5) / 5, abs=1e-12)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 2, 3)
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 3), abs=1e-12)  # 4/9
    assert (scores["n_images"], scores["n_annotated"]) == (7, 5)
    assert set(scores) == {"ap", "f1", "tp", "fp", "fn", "n_images", "n_annotated"}


def test_detection_scores_thresholds_move_counts() -> None:
    low = detection_scores(*_case(), conf_threshold=0.05, ap_conf_threshold=0.05)
    # image 2 becomes a TP (IoU 1), image 5 a FP
    assert (low["tp"], low["fp"], low["fn"]) == (3, 3, 2)
    assert low["ap"] == pytest.approx((1 + 1 / 3 + 1 + 0 + 0.5) / 5, abs=1e-12)
    assert low["f1"] == pytest.approx(6 / 11, abs=1e-12)
    strict = detection_scores(
        *_case(), conf_threshold=0.25, iou_threshold=0.6, ap_conf_threshold=0.25
    )
    # image 6 (IoU 0.5) is now both FP and FN; AP does not depend on the IoU threshold
    assert (strict["tp"], strict["fp"], strict["fn"]) == (1, 3, 4)
    assert strict["ap"] == pytest.approx((1 + 1 / 3 + 0.5) / 5, abs=1e-12)


def test_default_ap_scores_the_top_box_whatever_its_confidence() -> None:
    """Default AP: image 2's exact box (conf below tau) counts IoU 1; detection is unchanged."""
    scores = detection_scores(*_case(), conf_threshold=0.25)
    assert scores["ap"] == pytest.approx((1 + 1 / 3 + 1 + 0 + 0.5) / 5, abs=1e-12)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 2, 3)


def test_per_image_iou_policy() -> None:
    ious = per_image_iou(*_case(), conf_threshold=0.25)
    np.testing.assert_allclose(ious, [1.0, 1 / 3, 0.0, 0.0, np.nan, np.nan, 0.5], atol=1e-12)


def test_detection_scores_undefined_cases_are_nan() -> None:
    pred = np.array([[0.5, 0.5, 0.1, 0.1]])
    nothing = detection_scores(pred, [0.1], np.array([NAN4]), [False])
    assert math.isnan(nothing["ap"]) and math.isnan(nothing["f1"])
    assert (nothing["tp"], nothing["fp"], nothing["fn"], nothing["n_annotated"]) == (0, 0, 0, 0)
    false_alarm = detection_scores(pred, [0.9], np.array([NAN4]), [False])
    assert false_alarm["f1"] == 0.0 and false_alarm["fp"] == 1


def test_detection_scores_validates_inputs() -> None:
    with pytest.raises(ValueError, match="non-finite gt"):
        detection_scores(np.zeros((1, 4)), [0.9], np.array([NAN4]), [True])
    with pytest.raises(ValueError, match="expected pred_boxes"):
        detection_scores(np.zeros((2, 4)), [0.9], np.zeros((2, 4)), [True, True])
    with pytest.raises(ValueError, match="boolean"):
        detection_scores(np.zeros((1, 4)), [0.9], np.zeros((1, 4)), [2])
