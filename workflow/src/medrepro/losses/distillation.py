"""Cross-task distillation regularisers of the face landmark paper (CTD-CD and CTD-ED).

Fu, Jiao, Suttie, Noble, MLMI 2020, Sec. 2.2.4: total loss ``L_hm + lambda L_reg`` (Eq. 2). The
exact regularisers are lost in the text extraction; these are the documented stand-ins
(``docs/face_landmarks.md``):

- CD (Eq. 3), on the classifier outputs: Hinton's distillation term
  ``T^2 KL(softmax(z_teacher / T) || softmax(z_student / T))``, batch mean. With the frozen
  source classifier ``C_s``: teacher ``z_s = C_s(E_s(x))``, student ``z_t = C_s(pool(E_t(x)))``.
  The ``T^2`` keeps the gradient scale independent of ``T``.
- ED (Eq. 4), on the encoder feature maps: ``1 - cos(flatten(f_student), flatten(f_teacher))``,
  batch mean (cosine similarity as in relational knowledge distillation, Park et al., CVPR 2019).

Neither function detaches the teacher: the caller computes the teacher's logits / features under
``torch.no_grad()`` (or passes detached tensors), so that only the student is trained.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["kd_loss", "cosine_feature_loss"]


def _same_shape(student: torch.Tensor, teacher: torch.Tensor, what: str, min_ndim: int) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {what} {tuple(student.shape)} and teacher {what} "
            f"{tuple(teacher.shape)} differ"
        )
    if student.ndim < min_ndim or student.shape[0] == 0:
        raise ValueError(f"{what} need a batch axis and a feature axis, got {tuple(student.shape)}")


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Temperature-softened distillation loss, ``T^2 KL(p_teacher || p_student)``.

    ``F.kl_div(log_softmax(s / T), softmax(t / T), reduction="batchmean") * T * T`` (nats).

    Args:
        student_logits: ``(N, C)`` logits of the network being trained.
        teacher_logits: ``(N, C)`` logits of the frozen source network (computed under
            ``torch.no_grad()`` by the caller).
        temperature: ``T > 0``.

    Returns:
        Scalar tensor, ``>= 0``, 0 when the two softmaxes agree.
    """
    _same_shape(student_logits, teacher_logits, "logits", 2)
    if student_logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got {tuple(student_logits.shape)}")
    t = float(temperature)
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    p_teacher = F.softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * (t * t)


def cosine_feature_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor
) -> torch.Tensor:
    """Batch mean of ``1 - cos(flatten(s_n), flatten(t_n))``, in ``[0, 2]``.

    Args:
        student_features: ``(N, C, H, W)`` (or ``(N, C)``) features of the network being trained.
        teacher_features: same shape, the frozen source encoder's (caller: ``torch.no_grad()``).

    Returns:
        Scalar tensor: 0 for parallel, 1 for orthogonal, 2 for opposite features (a zero vector
        counts as orthogonal).
    """
    _same_shape(student_features, teacher_features, "features", 2)
    cos = F.cosine_similarity(student_features.flatten(1), teacher_features.flatten(1), dim=1)
    return (1.0 - cos).mean()
