"""Tests for medrepro.losses.heatmaps and medrepro.losses.distillation (face landmarks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrepro.losses import cosine_feature_loss, heatmap_frobenius_loss, kd_loss

torch.set_num_threads(1)


def test_frobenius_hand_case() -> None:
    target = torch.zeros(2, 2, 3, 3)
    pred = torch.zeros(2, 2, 3, 3)
    pred[0, 0, 1, 1] = 2.0  # ||.||_F^2 = 4
    pred[0, 1] = 1.0  # 9 pixels of 1: 9
    pred[1, 1, 0, :2] = 3.0  # 9 + 9 = 18
    # image 0: (4 + 9) / 2 = 6.5; image 1: (0 + 18) / 2 = 9; batch mean 7.75
    assert float(heatmap_frobenius_loss(pred, target)) == pytest.approx(7.75)
    weight = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # landmark 1 of image 0 invisible
    # image 0: (4 + 0) / 2 = 2 (still divided by K); image 1: 9; mean 5.5
    assert float(heatmap_frobenius_loss(pred, target, weight)) == pytest.approx(5.5)


def test_frobenius_zero_for_equal_inputs_and_finite_gradient() -> None:
    target = torch.rand(3, 4, 8, 8)
    assert float(heatmap_frobenius_loss(target.clone(), target)) == 0.0
    pred = torch.rand(3, 4, 8, 8, requires_grad=True)
    loss = heatmap_frobenius_loss(pred, target, torch.ones(3, 4))
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    # d/dpred of mean_n (1/K) sum (p - t)^2 = 2 (p - t) / (N K)
    torch.testing.assert_close(pred.grad, 2 * (pred.detach() - target) / 12)


def test_frobenius_bad_shapes() -> None:
    with pytest.raises(ValueError, match="differ"):
        heatmap_frobenius_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="weight"):
        heatmap_frobenius_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(2))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 8.0])
def test_kd_zero_for_equal_logits_positive_otherwise(temperature: float) -> None:
    z = torch.randn(4, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(float(kd_loss(z, z.clone(), temperature))) < 1e-12
    assert abs(float(kd_loss(z, z + 3.0, temperature))) < 1e-12  # softmax is shift-invariant
    # float32 rounding (softmax vs log_softmax) stays small even after the T^2 factor
    assert abs(float(kd_loss(z.float(), z.float(), temperature))) < 1e-4
    assert float(kd_loss(z, torch.flip(z, dims=[1]), temperature)) > 1e-2


def test_kd_matches_numpy_t_squared_kl() -> None:
    s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = np.array([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    temp = 2.0

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_t, p_s = softmax(t / temp), softmax(s / temp)
    expected = temp**2 * np.mean(np.sum(p_t * np.log(p_t / p_s), axis=1))  # KL(teacher||student)
    got = float(kd_loss(torch.tensor(s), torch.tensor(t), temp))
    assert got == pytest.approx(expected, rel=1e-10)
    reverse = temp**2 * np.mean(np.sum(p_s * np.log(p_s / p_t), axis=1))
    assert abs(got - reverse) > 1e-3  # the direction matters and is the teacher's


def test_kd_teacher_gets_no_gradient_under_no_grad() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, generator=g)
    student = torch.nn.Linear(6, 4)
    teacher = torch.nn.Linear(6, 4)
    with torch.no_grad():  # the caller's job, as documented
        z_teacher = teacher(x)
    kd_loss(student(x), z_teacher, 4.0).backward()
    assert teacher.weight.grad is None
    assert student.weight.grad is not None and torch.isfinite(student.weight.grad).all()
    assert float(student.weight.grad.abs().max()) > 0
    # the function itself does not detach: a teacher with a graph would receive gradients
    kd_loss(student(x).detach(), teacher(x), 4.0).backward()
    assert teacher.weight.grad is not None


def test_kd_bad_input() -> None:
    with pytest.raises(ValueError, match="differ"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


@pytest.mark.parametrize("shape", [(3, 8, 4, 4), (3, 16)])
def test_cosine_parallel_orthogonal_opposite(shape: tuple[int, ...]) -> None:
    t = torch.rand(shape, generator=torch.Generator().manual_seed(2)) + 0.1
    assert abs(float(cosine_feature_loss(3 * t, t))) < 1e-6
    assert float(cosine_feature_loss(-t, t)) == pytest.approx(2.0, abs=1e-6)
    # orthogonal: features living on disjoint channels
    a, b = torch.zeros(shape), torch.zeros(shape)
    a[:, : shape[1] // 2] = t[:, : shape[1] // 2]
    b[:, shape[1] // 2 :] = t[:, shape[1] // 2 :]
    assert float(cosine_feature_loss(a, b)) == pytest.approx(1.0, abs=1e-6)


def test_cosine_batch_mean_and_gradient() -> None:
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    s = torch.tensor([[2.0, 0.0], [0.0, 5.0]], requires_grad=True)  # cos 1 and 0
    loss = cosine_feature_loss(s, t)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="differ"):
        cosine_feature_loss(torch.zeros(2, 3), torch.zeros(2, 4))
