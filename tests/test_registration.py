"""Tests for rigid registration, transform composition and N4 (preprocessing.registration, .bias_field)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.special import expit

from medrepro.preprocessing.bias_field import n4_correct
from medrepro.preprocessing.registration import (
    compose,
    flatten_rigid,
    resample_once,
    rigid_register,
    rotation_deg,
    transform_points,
    translation_mm,
)

# Analytic head (LPS mm, centred at 0): nested ellipsoids with distinct semi-axes plus
# asymmetric ventricles and a nose, so that every rotation changes the image.
T1 = {"scalp": 0.7, "skull": 0.05, "csf": 0.15, "brain": 0.6, "wm": 0.85, "vent": 0.15}
T2 = {"scalp": 0.5, "skull": 0.05, "csf": 1.0, "brain": 0.55, "wm": 0.4, "vent": 1.0}
BRAIN_AXES = np.array([58.0, 78.0, 47.0])
BRAIN_CENTRE = np.array([0.0, 0.0, 2.0])


def _inside(p: np.ndarray, centre, axes, edge: float = 1.0) -> np.ndarray:
    axes = np.asarray(axes, dtype=float)
    r = np.sqrt((((p - np.asarray(centre, dtype=float)) / axes) ** 2).sum(-1))
    return expit(-(r - 1.0) * axes.min() / edge)


def head_values(p: np.ndarray, contrast: dict[str, float] = T1) -> np.ndarray:
    """Intensities (0..1000) of the analytic head at ``(..., 3)`` LPS points (mm)."""
    head = _inside(p, (0, 0, 0), (72, 92, 62))
    skull_out = _inside(p, (0, 0, 0), (66, 86, 56))
    skull_in = _inside(p, (0, 0, 0), (61, 81, 51))
    brain = _inside(p, BRAIN_CENTRE, BRAIN_AXES)
    wm = _inside(p, (0, 4, 6), (42, 55, 38))
    vent = np.maximum(_inside(p, (12, -14, 12), (6, 22, 9)), _inside(p, (-12, -10, 14), (5, 18, 8)))
    nose = _inside(p, (0, -92, -25), (10, 14, 18))
    v = contrast["scalp"] * np.maximum(head - skull_out, nose)
    v += contrast["skull"] * (skull_out - skull_in) + contrast["csf"] * (skull_in - brain)
    v += contrast["brain"] * (brain - wm) + contrast["wm"] * wm
    v = v * (1 - vent) + contrast["vent"] * vent * brain
    return 1000.0 * v


def grid_points(size, spacing, origin) -> np.ndarray:
    """``(X, Y, Z, 3)`` physical points of an identity-direction grid."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1)
    return np.asarray(origin, dtype=float) + idx * np.asarray(spacing, dtype=float)


def head_image(
    size, spacing, transform: sitk.Transform | None = None, contrast=T1, values=head_values
) -> sitk.Image:
    """Centred image of ``values``; with ``transform`` T the image shows the head moved by T
    (voxel at y shows the head at ``T^-1(y)``), so registering it onto the unmoved head gives T."""
    origin = -(np.asarray(size) - 1) / 2 * np.asarray(spacing, dtype=float)
    p = grid_points(size, spacing, origin)
    if transform is not None:
        p = transform_points(transform.GetInverse(), p)
    arr = values(p, contrast).astype(np.float32)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing(tuple(map(float, spacing)))
    img.SetOrigin(tuple(map(float, origin)))
    return img


def known_transform() -> sitk.Euler3DTransform:
    """8 degrees about an oblique axis and a 6 mm shift."""
    axis = np.array([1.0, 2.0, 0.5])
    versor = sitk.VersorRigid3DTransform()
    versor.SetRotation(tuple(axis / np.linalg.norm(axis)), float(np.deg2rad(8.0)))
    versor.SetTranslation((6 * 0.6, -6 * 0.8, 0.0))
    return flatten_rigid(versor)


def brain_points(step_mm: float = 6.0) -> np.ndarray:
    axes = [np.arange(-a, a + 1e-9, step_mm) for a in BRAIN_AXES]
    p = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3) + BRAIN_CENTRE
    return p[np.sum(((p - BRAIN_CENTRE) / BRAIN_AXES) ** 2, axis=1) <= 1.0]


def max_error_mm(found: sitk.Transform, truth: sitk.Transform) -> float:
    p = brain_points()
    return float(
        np.linalg.norm(transform_points(found, p) - transform_points(truth, p), axis=1).max()
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    yield
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


@pytest.fixture(scope="module")
def fixed() -> sitk.Image:
    return head_image((56, 66, 48), (3.0, 3.0, 3.0))


@pytest.fixture(scope="module")
def truth() -> sitk.Euler3DTransform:
    return known_transform()


@pytest.mark.parametrize("contrast", ["t1", "t2", "inverted"])
def test_rigid_register_recovers_known_transform(fixed, truth, contrast):
    moving = head_image((52, 62, 44), (3.2, 3.2, 3.4), truth, T2 if contrast == "t2" else T1)
    if contrast == "inverted":
        moving = sitk.Cast(1000.0 - moving, sitk.sitkFloat32)
    assert max_error_mm(sitk.Euler3DTransform(), truth) > 10.0  # the test is not trivial
    found, info = rigid_register(fixed, moving)
    assert max_error_mm(found, truth) < 1.0
    assert rotation_deg(compose(found, truth.GetInverse())) < 1.0
    assert abs(rotation_deg(found) - 8.0) < 1.0
    assert info["metric_final"] < info["metric_initial"]
    assert info["iterations"] > 0 and info["stop_condition"]


def test_rigid_register_is_deterministic(fixed, truth):
    moving = head_image((52, 62, 44), (3.2, 3.2, 3.4), truth, T2)
    a, info_a = rigid_register(fixed, moving, seed=3)
    b, info_b = rigid_register(fixed, moving, seed=3)
    assert a.GetParameters() == b.GetParameters()
    assert a.GetFixedParameters() == b.GetFixedParameters()
    assert info_a == info_b


def test_compose_applies_in_given_order_and_flattens():
    a = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.1, 0.0, 0.0, (1.0, 2.0, 3.0))
    b = sitk.Euler3DTransform((10.0, 5.0, 0.0), 0.0, 0.2, 0.05, (-4.0, 0.0, 1.0))
    pts = np.array([[3.0, 4.0, 5.0], [-20.0, 7.0, 1.0]])
    expected = transform_points(b, transform_points(a, pts))
    np.testing.assert_allclose(transform_points(compose(a, b), pts), expected, atol=1e-9)
    flat = flatten_rigid(compose(a, b), centre=(7.0, 7.0, 7.0))
    np.testing.assert_allclose(flat.GetCenter(), (7.0, 7.0, 7.0))
    np.testing.assert_allclose(transform_points(flat, pts), expected, atol=1e-9)
    np.testing.assert_allclose(transform_points(flat.GetInverse(), expected), pts, atol=1e-9)
    with pytest.raises(ValueError, match="not rigid"):
        flatten_rigid(sitk.ScaleTransform(3, (1.1, 1.0, 1.0)))


def test_rotation_and_translation_helpers(tmp_path):
    tx = sitk.Euler3DTransform((5.0, 0.0, 0.0), 0.0, 0.0, np.deg2rad(30.0), (3.0, 4.0, 0.0))
    assert rotation_deg(tx) == pytest.approx(30.0)
    assert translation_mm(tx) == pytest.approx(5.0)  # displacement of its centre
    # the origin is 5 mm from the centre: rotated by 30 deg it moves a further 2*5*sin(15 deg)
    assert translation_mm(tx, (5.0, 0.0, 0.0)) == pytest.approx(5.0)
    assert translation_mm(tx, (0.0, 0.0, 0.0)) == pytest.approx(
        np.linalg.norm(np.array(tx.TransformPoint((0.0, 0.0, 0.0))))
    )
    # written and read back, the inverse is available (the evaluation stage needs it)
    path = tmp_path / "t.tfm"
    sitk.WriteTransform(flatten_rigid(tx), str(path))
    back = sitk.ReadTransform(str(path))
    p = (1.0, 2.0, 3.0)
    np.testing.assert_allclose(back.GetInverse().TransformPoint(tx.TransformPoint(p)), p, atol=1e-9)


def test_resample_once_moves_the_image(fixed, truth):
    moving = head_image((52, 62, 44), (3.2, 3.2, 3.4), truth)
    back = resample_once(moving, fixed, truth)
    assert back.GetPixelID() == sitk.sitkFloat32
    assert back.GetSize() == fixed.GetSize() and back.GetOrigin() == fixed.GetOrigin()
    a, b = sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(fixed)
    inside = np.ones_like(a, dtype=bool)
    inside[:4], inside[-4:], inside[:, :4], inside[:, -4:], inside[:, :, :4], inside[:, :, -4:] = (
        False,
    ) * 6
    err_aligned = np.abs(a - b)[inside].mean()
    err_identity = np.abs(
        sitk.GetArrayFromImage(resample_once(moving, fixed, sitk.Transform())) - b
    )[inside].mean()
    assert err_aligned < 0.2 * err_identity


def test_n4_removes_a_smooth_multiplicative_field():
    img = head_image((48, 56, 40), (3.0, 3.0, 3.0))
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    x = np.linspace(-1, 1, arr.shape[0])[:, None, None]
    y = np.linspace(-1, 1, arr.shape[1])[None, :, None]
    field = np.exp(0.3 * x + 0.15 * y)  # smooth, ratio e^0.9 ~ 2.5 across the head
    biased = sitk.GetImageFromArray(
        np.ascontiguousarray((arr * field).transpose(2, 1, 0)).astype(np.float32)
    )
    biased.CopyInformation(img)
    corrected = n4_correct(biased, shrink=2)
    assert corrected.GetSize() == img.GetSize() and corrected.GetPixelID() == sitk.sitkFloat32
    # white matter: constant (850) before the bias, so its spread measures the residual field
    wm = np.abs(arr - 850.0) < 5.0
    cv = lambda a: float(np.std(a[wm]) / np.mean(a[wm]))  # noqa: E731
    before = cv(sitk.GetArrayFromImage(biased).transpose(2, 1, 0))
    after = cv(sitk.GetArrayFromImage(corrected).transpose(2, 1, 0))
    assert before > 0.07
    assert after < 0.5 * before
