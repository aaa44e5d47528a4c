"""Tests for medrepro.transforms.yolo_grid and medrepro.losses.yolo (hand-computed cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medrepro.losses.yolo import yolo_loss, yolo_loss_terms
from medrepro.transforms.yolo_grid import activate, cell_boxes, decode_top_box, encode_targets

torch.set_num_threads(1)


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# --- yolo_grid -------------------------------------------------------------------------------


def test_activate_sigmoid_on_xy_conf_square_on_wh() -> None:
    raw = np.arange(13, dtype=np.float64).reshape(1, 1, 1, 13) - 6.0  # B=2, C=3: -6 .. 6
    out = activate(raw, 2)
    sig = 1.0 / (1.0 + np.exp(-raw))
    squashed = [0, 1, 4, 5, 6, 9]
    np.testing.assert_allclose(out[..., squashed], sig[..., squashed])
    # w, h = raw ** 2 (Darknet sqrt=1): raw -4, -3 (predictor 0) and 1, 2 (predictor 1)
    np.testing.assert_array_equal(out[0, 0, 0, [2, 3, 7, 8]], [16.0, 9.0, 1.0, 4.0])
    np.testing.assert_array_equal(out[0, 0, 0, 10:], [4.0, 5.0, 6.0])  # classes linear
    raw_t = torch.tensor(raw, requires_grad=True)
    t = activate(raw_t, 2)
    np.testing.assert_allclose(t.detach().numpy(), out)
    t.sum().backward()  # differentiable: d(raw^2)/d raw = 2 raw on w, h
    np.testing.assert_allclose(raw_t.grad[0, 0, 0, [2, 3, 7, 8]].numpy(), [-8.0, -6.0, 2.0, 4.0])
    np.testing.assert_array_equal(raw_t.grad[0, 0, 0, 10:].numpy(), [1.0, 1.0, 1.0])


def test_encode_targets_cell_offsets_and_clamp() -> None:
    boxes = np.array(
        [
            [0.75, 0.25, 0.5, 0.4],  # S=2: col 1, row 0, offsets (0.5, 0.5)
            [np.nan] * 4,  # no object
            [1.0, 1.0, 0.2, 0.2],  # x = 1.0 must clamp to the last cell, offset 1.0
            [0.0, 0.5, 0.1, 0.3],  # on the lower border / a cell boundary
        ]
    )
    t = encode_targets(boxes, S=2, C=1)
    assert t.shape == (4, 2, 2, 6) and t.dtype == np.float32
    np.testing.assert_allclose(t[0, 0, 1], [0.5, 0.5, 0.5, 0.4, 1.0, 1.0], atol=1e-7)
    assert t[0].sum() == pytest.approx(t[0, 0, 1].sum())
    assert not t[1].any()
    np.testing.assert_allclose(t[2, 1, 1], [1.0, 1.0, 0.2, 0.2, 1.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(t[3, 1, 0], [0.0, 0.0, 0.1, 0.3, 1.0, 1.0], atol=1e-7)
    assert t[:, ..., 4].sum() == 3
    tt = encode_targets(torch.tensor(boxes), S=2)
    assert isinstance(tt, torch.Tensor) and torch.equal(tt, torch.from_numpy(t))


def test_encode_targets_rejects_bad_boxes() -> None:
    with pytest.raises(ValueError, match="all NaN"):
        encode_targets(np.array([[0.5, np.nan, 0.1, 0.1]]), S=7)
    with pytest.raises(ValueError, match="normalised"):
        encode_targets(np.array([[120.0, 50.0, 30.0, 20.0]]), S=7)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        encode_targets(np.zeros((2, 5)), S=7)


def test_decode_top_box_round_trips_encoding() -> None:
    S, B = 7, 2
    box = np.array([0.61, 0.33, 0.25, 0.09])
    target = encode_targets(box[None], S)
    raw = np.full((1, S, S, 5 * B + 1), -5.0)
    r, c = np.argwhere(target[0, ..., 4] == 1)[0]
    # raw w, h are the square roots of the sizes: sqrt(0.25) = 0.5, sqrt(0.09) = 0.3
    raw[0, r, c, 5:10] = [logit(target[0, r, c, 0]), logit(target[0, r, c, 1]), 0.5, 0.3, 3.0]
    boxes, conf = decode_top_box(raw, B)
    np.testing.assert_allclose(boxes[0], box, atol=1e-9)
    assert conf[0] == pytest.approx(1.0 / (1.0 + math.exp(-3.0)))


def test_decode_top_box_squares_raw_size_and_uses_image_relative_wh() -> None:
    raw = np.zeros((2, 2, 2, 10))  # S=2, B=2, C=0
    raw[..., 4] = raw[..., 9] = -4.0
    raw[0, 1, 0, 5:10] = [0.0, 0.0, -0.3, 0.6, 2.0]  # predictor 1 of cell (row 1, col 0)
    raw[1, 0, 1, 0:5] = [0.0, 0.0, 0.8, 0.4, 1.0]
    boxes, conf = decode_top_box(torch.tensor(raw), 2)
    # w, h = raw ** 2 relative to the image (not divided by S): a negative raw w -0.3 is a
    # positive width 0.09; centres (col + 0.5) / 2, (row + 0.5) / 2
    np.testing.assert_allclose(boxes, [[0.25, 0.75, 0.09, 0.36], [0.75, 0.25, 0.64, 0.16]])
    np.testing.assert_allclose(conf, 1.0 / (1.0 + np.exp(-np.array([2.0, 1.0]))))


# --- loss ------------------------------------------------------------------------------------
# S = 2, B = 2, C = 1; one object (cx, cy, w, h) = (0.75, 0.25, 0.5, 0.5) -> cell (row 0, col 1),
# offsets (0.5, 0.5). Every other conf logit is 0 (conf 0.5); 3 empty cells x 2 predictors.

TARGET_BOX = [0.75, 0.25, 0.5, 0.5]


def _raw_case(swap: bool = False) -> torch.Tensor:
    raw = torch.zeros(1, 2, 2, 11, dtype=torch.float64)
    # raw w, h are square roots of the sizes (w = raw_w ** 2)
    # predictor 0: x 0.6, y 0.5, raw w sqrt(0.5), raw h -0.5, conf 0.8 -> w 0.5, h 0.25,
    #   box (0.8, 0.25, 0.5, 0.25): x [0.55, 1.05] vs [0.5, 1.0] -> 0.45;
    #   y [0.125, 0.375] inside [0, 0.5] -> 0.25; IoU = 0.1125 / (0.125 + 0.25 - 0.1125) = 3/7
    p0 = [logit(0.6), 0.0, math.sqrt(0.5), -0.5, logit(0.8)]
    # predictor 1: x 0.5, y 0.5, raw w, h 0.5 -> w, h 0.25, conf 0.6 -> IoU = 0.0625 / 0.25
    p1 = [0.0, 0.0, 0.5, 0.5, logit(0.6)]
    if swap:  # predictor 1 now matches the target exactly: IoU 1
        p1 = [0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5), logit(0.6)]
    raw[0, 0, 1, :10] = torch.tensor(p0 + p1, dtype=torch.float64)
    raw[0, 0, 1, 10] = 0.7  # class output (linear)
    raw[0, 1, 0, 10] = 5.0  # class output of an empty cell: ignored
    return raw


def _target() -> torch.Tensor:
    return torch.from_numpy(encode_targets(np.array([TARGET_BOX]), S=2)).double()


def test_loss_hand_computed_one_object() -> None:
    terms = yolo_loss_terms(_raw_case(), _target(), B=2)
    # responsible = predictor 0 (IoU 3/7 > 1/4)
    # x 0.6 vs 0.5; y exact; raw w sqrt(0.5) vs sqrt(w*) = sqrt(0.5): exact;
    # raw h -0.5 vs sqrt(h*) = sqrt(0.5) (the raw output, not sqrt(h) = +0.5):
    #   (-0.5 - sqrt(0.5))^2 = 0.25 + sqrt(0.5) + 0.5 = 0.75 + 0.707107 = 1.457107
    # coord = 5 * (0.01 + 1.457107) = 3.8 + 5 sqrt(0.5) = 7.335534
    coord = 5.0 * ((0.6 - 0.5) ** 2 + (-0.5 - 0.5**0.5) ** 2)
    assert coord == pytest.approx(3.8 + 5.0 * math.sqrt(0.5), abs=1e-12)
    assert terms["coord"].item() == pytest.approx(7.335534, abs=1e-6)
    assert terms["obj"].item() == pytest.approx((0.8 - 3 / 7) ** 2, abs=1e-9)  # target = IoU
    # the other predictor of the object's cell (0.6) + 6 empty predictors (0.5)
    assert terms["noobj"].item() == pytest.approx(0.5 * (0.6**2 + 6 * 0.25), abs=1e-9)
    assert terms["class"].item() == pytest.approx((0.7 - 1.0) ** 2, abs=1e-9)
    total = yolo_loss(_raw_case(), _target(), B=2).item()
    # coord 7.335534 + obj (0.8 - 3/7)^2 = 0.137959 + noobj 0.93 + class 0.09
    assert total == pytest.approx(7.335534 + 0.137959 + 0.93 + 0.09, abs=2e-6)


def test_loss_responsible_is_highest_iou_not_first() -> None:
    terms = yolo_loss_terms(_raw_case(swap=True), _target(), B=2)
    # predictor 1 is exact (coord 0); predictor 0 would give 7.335534
    assert terms["coord"].item() == pytest.approx(0.0, abs=1e-10)
    assert terms["obj"].item() == pytest.approx((0.6 - 1.0) ** 2, abs=1e-9)
    assert terms["noobj"].item() == pytest.approx(0.5 * (0.8**2 + 6 * 0.25), abs=1e-9)


def test_loss_zero_iou_falls_back_to_smallest_rmse() -> None:
    raw = torch.zeros(1, 2, 2, 11, dtype=torch.float64)
    # both predictors of the object's cell have zero size (IoU 0): predictor 1's centre sits on
    # the target's centre (0.75, 0.25), predictor 0's is off by 0.25 in x -> predictor 1
    raw[0, 0, 1, :10] = torch.tensor(
        [logit(0.999), 0.0, 0.0, 0.0, logit(0.9), 0.0, 0.0, 0.0, 0.0, logit(0.3)],
        dtype=torch.float64,
    )
    terms = yolo_loss_terms(raw, _target(), B=2)
    assert terms["obj"].item() == pytest.approx(0.3**2, abs=1e-9)  # conf 0.3, target IoU 0
    assert terms["noobj"].item() == pytest.approx(0.5 * (0.9**2 + 6 * 0.25), abs=1e-9)


def test_loss_without_object_is_only_noobj() -> None:
    torch.manual_seed(0)
    raw = torch.randn(1, 3, 3, 11, dtype=torch.float64)
    target = torch.from_numpy(encode_targets(np.full((1, 4), np.nan), S=3)).double()
    terms = yolo_loss_terms(raw, target, B=2)
    conf = torch.sigmoid(raw[..., [4, 9]])
    expected = 0.5 * (conf**2).sum().item()
    assert terms["noobj"].item() == pytest.approx(expected, rel=1e-12)
    assert terms["coord"].item() == terms["obj"].item() == terms["class"].item() == 0.0
    assert yolo_loss(raw, target, B=2).item() == pytest.approx(expected, rel=1e-12)


def test_loss_is_batch_averaged() -> None:
    raw, target = _raw_case(), _target()
    single = yolo_loss(raw, target, B=2)
    double = yolo_loss(torch.cat([raw, raw]), torch.cat([target, target]), B=2)
    assert double.item() == pytest.approx(single.item(), rel=1e-12)


def test_loss_class_term_for_several_classes() -> None:
    raw = torch.zeros(1, 2, 2, 13, dtype=torch.float64)  # B=2, C=3
    raw[0, 0, 1, 10:13] = torch.tensor([0.5, 0.2, -0.1], dtype=torch.float64)
    target = torch.from_numpy(encode_targets(np.array([TARGET_BOX]), S=2, C=3)).double()
    terms = yolo_loss_terms(raw, target, B=2)
    assert terms["class"].item() == pytest.approx(0.25 + 0.04 + 0.01, abs=1e-12)


def test_loss_gradient_treats_iou_as_constant() -> None:
    raw = _raw_case().requires_grad_(True)
    yolo_loss(raw, _target(), B=2).backward()
    # d/dz (sigmoid(z) - IoU)^2 = 2 (c - IoU) c (1 - c), with c = 0.8, IoU = 3/7 constant
    assert raw.grad[0, 0, 1, 4].item() == pytest.approx(2 * (0.8 - 3 / 7) * 0.8 * 0.2, abs=1e-9)
    # noobj on the non-responsible predictor: 0.5 * 2 c * c (1 - c), c = 0.6
    assert raw.grad[0, 0, 1, 9].item() == pytest.approx(0.6 * 0.6 * 0.4, abs=1e-9)
    # raw h of the responsible predictor also moves its IoU, but only coord contributes:
    # d/d raw_h 5 (raw_h - sqrt(0.5))^2 = 10 (-0.5 - sqrt(0.5)) = -12.071068; raw w is exact
    assert raw.grad[0, 0, 1, 3].item() == pytest.approx(-12.071068, abs=1e-6)
    assert raw.grad[0, 0, 1, 2].item() == pytest.approx(0.0, abs=1e-12)
    # sizes of the non-responsible predictor: no coord, no IoU gradient
    assert raw.grad[0, 0, 1, 7].item() == raw.grad[0, 0, 1, 8].item() == 0.0
    assert torch.isfinite(raw.grad).all()


def test_loss_coord_gradient_finite_at_zero_raw_size() -> None:
    # S=2, B=1, C=1, N=2, all raw outputs 0 (so raw_w = raw_h = 0, sizes 0, x, y offsets 0.5):
    # image 0: the target box, cell (row 0, col 1), sqrt(w*) = sqrt(h*) = sqrt(0.5);
    # image 1: (0.25, 0.75, 0.16, 0.36), cell (row 1, col 0), sqrt(w*) = 0.4, sqrt(h*) = 0.6.
    # d coord / d raw_w = 2 lambda_coord (raw_w - sqrt(w*)) / N, with lambda_coord = 3:
    #   image 0: 3 * (0 - sqrt(0.5)) = -2.121320; image 1: 3 * (0 - 0.4) = -1.2 (h: -1.8).
    # A square root of the predicted size would have an infinite (or, signed, zero) slope here.
    boxes = np.array([TARGET_BOX, [0.25, 0.75, 0.16, 0.36]])
    target = torch.from_numpy(encode_targets(boxes, S=2)).double()
    raw = torch.zeros(2, 2, 2, 6, dtype=torch.float64, requires_grad=True)
    yolo_loss_terms(raw, target, B=1, lambda_coord=3.0)["coord"].backward()
    assert torch.isfinite(raw.grad).all()
    assert raw.grad[0, 0, 1, 2].item() == pytest.approx(-2.121320, abs=1e-6)
    assert raw.grad[0, 0, 1, 2].item() == pytest.approx(2 * 3.0 * (0.0 - 0.5**0.5) / 2, abs=1e-12)
    assert raw.grad[1, 1, 0, 2].item() == pytest.approx(-1.2, abs=1e-7)
    assert raw.grad[1, 1, 0, 3].item() == pytest.approx(-1.8, abs=1e-7)
    assert raw.grad[0, 1, 0, 2].item() == 0.0  # empty cell: no coord term


def test_cell_boxes_are_image_relative() -> None:
    pred = np.zeros((1, 3, 3, 5))
    pred[0, 2, 1] = [0.5, 0.25, 0.4, 0.1, 0.9]
    boxes = cell_boxes(pred, 1)
    np.testing.assert_allclose(boxes[0, 2, 1, 0], [1.5 / 3, 2.25 / 3, 0.4, 0.1])


def test_loss_rejects_mismatched_target() -> None:
    with pytest.raises(ValueError, match="target shape"):
        yolo_loss(torch.zeros(1, 2, 2, 11), torch.zeros(1, 2, 2, 7), B=2)
