"""Rigid (6-DOF) registration, transform composition and one-shot resampling.

Convention (ITK): a registration of ``moving`` onto ``fixed`` returns a transform ``T`` that maps
**fixed** physical points (LPS mm) to **moving** physical points, which is what
``sitk.Resample(moving, fixed_grid, T)`` needs to bring ``moving`` onto the fixed grid. Chains
are composed with :func:`compose` in the order the points travel (atlas -> t1ce native ->
modality native) and flattened with :func:`flatten_rigid` into a single rigid transform, so an
image is interpolated only once and the inverse is available (``GetInverse()``).

The metric is Mattes mutual information, which works across MR contrasts (T1Gd vs T2/FLAIR, or
a subject vs an atlas T1). Sampling is random with a fixed seed, so a rerun gives the same
result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike

__all__ = [
    "rigid_register",
    "initial_transform",
    "compose",
    "flatten_rigid",
    "resample_once",
    "rotation_deg",
    "translation_mm",
    "transform_points",
]

_INITIALISERS = {
    "moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
    "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY,
}


def initial_transform(
    fixed: sitk.Image, moving: sitk.Image, init: str = "moments"
) -> sitk.Euler3DTransform:
    """Starting rigid transform: no rotation, centres aligned.

    Args:
        fixed: fixed image (its grid defines the domain of the transform).
        moving: moving image.
        init: ``"moments"`` (intensity centres of mass: robust for heads in different fields of
            view, the default), ``"geometry"`` (centres of the image grids) or ``"identity"``
            (scanner coordinates already agree, e.g. modalities of one session).

    Returns:
        An Euler3D transform centred at the fixed image's centre (of mass or of the grid).
    """
    if init == "identity":
        tx = sitk.Euler3DTransform()
        size = np.asarray(fixed.GetSize(), dtype=float)
        tx.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
        return tx
    if init not in _INITIALISERS:
        raise ValueError(f"unknown initialisation {init!r}: use moments, geometry or identity")
    tx = sitk.CenteredTransformInitializer(
        sitk.Cast(fixed, sitk.sitkFloat32),
        sitk.Cast(moving, sitk.sitkFloat32),
        sitk.Euler3DTransform(),
        _INITIALISERS[init],
    )
    return sitk.Euler3DTransform(tx)


def _sampling_per_level(
    fixed: sitk.Image, shrink: Sequence[int], sampling: float, max_samples: int | None
) -> list[float]:
    """Sampled fraction of the fixed voxels at each level, capped at ``max_samples`` voxels."""
    voxels = float(np.prod(fixed.GetSize()))
    out = []
    for s in shrink:
        fraction = float(sampling)
        if max_samples is not None:
            fraction = min(fraction, max_samples * float(s) ** 3 / voxels)
        out.append(min(1.0, max(fraction, 1e-4)))
    return out


def rigid_register(
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    fixed_mask: sitk.Image | None = None,
    shrink: Sequence[int] = (4, 2, 1),
    smoothing_mm: Sequence[float] = (2.0, 1.0, 0.0),
    sampling: float = 0.1,
    iterations: int = 200,
    seed: int = 0,
    max_samples: int | None = 30_000,
    learning_rate: float = 8.0,
    relaxation: float = 0.7,
    min_step: float = 1e-3,
    bins: int = 32,
    init: str = "moments",
) -> tuple[sitk.Euler3DTransform, dict[str, Any]]:
    """Rigid registration of ``moving`` onto ``fixed`` by Mattes mutual information.

    Multi-resolution (one level per entry of ``shrink``/``smoothing_mm``), regular-step gradient
    descent with parameter scales estimated from physical shifts (so 1 radian and 1 mm are
    weighted by how far they move voxels), linear interpolation, random sampling of a fraction
    of the fixed voxels with a fixed seed.

    Args:
        fixed: fixed image, e.g. the atlas T1 (defines the domain of the transform).
        moving: moving image, e.g. the subject's bias-corrected T1Gd.
        fixed_mask: optional region of the fixed image where the metric is sampled.
        shrink: shrink factor (voxels) per level, coarse to fine.
        smoothing_mm: Gaussian sigma (mm) per level.
        sampling: fraction of the fixed voxels sampled by the metric at each level, in (0, 1].
        iterations: maximum optimiser iterations per level.
        seed: seed of the random sampling (same seed, same result).
        max_samples: cap on the number of sampled voxels per level (``None``: no cap); 30 000
            samples estimate the joint histogram well and keep one iteration cheap.
        learning_rate: initial step of the regular-step descent, in scaled parameter units
            (physical-shift scales: about mm of voxel motion). The default 8 is large because
            with physical-shift scales a step of 1 moves rotations very slowly.
        relaxation: factor applied to the step each time the gradient direction reverses.
        min_step: the level stops when the step falls below this.
        bins: histogram bins of the mutual information.
        init: initialisation, see :func:`initial_transform`.

    Returns:
        ``(transform, info)``: the Euler3D transform mapping fixed points (mm) to moving points
        (mm), and ``info`` with ``metric_initial``, ``metric_final`` (Mattes MI, lower is
        better), ``iterations`` (of the last level), ``stop_condition``, ``init``.

    Raises:
        ValueError: if the level lists differ in length or ``sampling`` is not in (0, 1].
    """
    if len(shrink) != len(smoothing_mm) or len(shrink) == 0:
        raise ValueError(f"shrink {list(shrink)} and smoothing_mm {list(smoothing_mm)} differ")
    if not 0.0 < sampling <= 1.0:
        raise ValueError(f"sampling must be in (0, 1], got {sampling}")
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    transform = initial_transform(fixed, moving, init)

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(bins))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # SimpleITK treats seed 0 as "seed from the wall clock": shift to keep runs repeatable
    reg.SetMetricSamplingPercentagePerLevel(
        _sampling_per_level(fixed, shrink, sampling, max_samples), int(seed) + 1
    )
    # central differences on the fly instead of full gradient images at every level (faster)
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(sitk.Cast(fixed_mask != 0, sitk.sitkUInt8))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=float(learning_rate),
        minStep=float(min_step),
        numberOfIterations=int(iterations),
        relaxationFactor=float(relaxation),
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([int(s) for s in shrink])
    reg.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_mm])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(transform, inPlace=True)
    metric_initial = float(reg.MetricEvaluate(fixed, moving))
    reg.Execute(fixed, moving)
    info = {
        "metric_initial": metric_initial,
        "metric_final": float(reg.GetMetricValue()),
        "iterations": int(reg.GetOptimizerIteration()),
        "stop_condition": reg.GetOptimizerStopConditionDescription(),
        "init": init,
    }
    return sitk.Euler3DTransform(transform), info


def compose(*transforms: sitk.Transform) -> sitk.CompositeTransform:
    """Composite transform that applies ``transforms`` **in the order given**.

    ``compose(a, b)(x) == b(a(x))``: list the transforms in the order a point travels, e.g.
    ``compose(atlas_to_t1ce, t1ce_to_flair)`` maps atlas points to FLAIR points. (ITK's
    ``CompositeTransform`` applies its *last added* transform first, hence the reversal here.)

    Raises:
        ValueError: if no transform is given.
    """
    if not transforms:
        raise ValueError("compose() needs at least one transform")
    return sitk.CompositeTransform([sitk.Transform(t) for t in reversed(transforms)])


def transform_points(transform: sitk.Transform, points: ArrayLike) -> np.ndarray:
    """Apply ``transform`` to ``(..., 3)`` physical points (mm); returns float64 ``(..., 3)``."""
    pts = np.asarray(points, dtype=np.float64)
    flat = pts.reshape(-1, 3)
    out = np.array([transform.TransformPoint(tuple(map(float, p))) for p in flat])
    return out.reshape(pts.shape)


def flatten_rigid(
    transform: sitk.Transform, centre: ArrayLike | None = None
) -> sitk.Euler3DTransform:
    """A single Euler3D transform equal to a (composite of) rigid transform(s).

    The affine map ``x -> A x + b`` is read off the images of the origin and the unit vectors;
    ``A`` is projected onto the nearest rotation (SVD) to remove round-off.

    Args:
        transform: any transform that is rigid (e.g. a :func:`compose` of Euler3D transforms).
        centre: ``(3,)`` centre of rotation (mm) of the result (e.g. the atlas centre); the
            mapping is the same for any centre, only the stored parameters change.

    Returns:
        The Euler3D transform; ``sitk.WriteTransform`` stores it and ``GetInverse()`` works.

    Raises:
        ValueError: if ``transform`` is not rigid (its linear part is not a rotation).
    """
    b = transform_points(transform, np.zeros(3))
    a = (transform_points(transform, np.eye(3)) - b).T  # columns = images of the unit vectors
    u, s, vt = np.linalg.svd(a)
    rot = u @ vt
    if np.linalg.det(rot) < 0 or np.max(np.abs(s - 1.0)) > 1e-4:
        raise ValueError(f"transform is not rigid (singular values {s.tolist()})")
    c = np.zeros(3) if centre is None else np.asarray(centre, dtype=np.float64).reshape(3)
    out = sitk.Euler3DTransform()
    out.SetCenter(tuple(map(float, c)))
    out.SetMatrix(tuple(map(float, rot.ravel())))
    # x -> R (x - c) + c + t  equals  x -> R x + b  when  t = b + R c - c
    out.SetTranslation(tuple(map(float, b + rot @ c - c)))
    return out


def resample_once(
    moving: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform,
    interpolator: int = sitk.sitkLinear,
    default: float = 0.0,
) -> sitk.Image:
    """Resample ``moving`` onto ``reference``'s grid through ``transform``, in one interpolation.

    Args:
        moving: image to resample (e.g. an original, not bias-corrected, native modality).
        reference: image whose grid (origin, spacing, direction, size) is the output grid.
        transform: maps reference points (mm) to moving points (mm).
        interpolator: SimpleITK interpolator (linear by default).
        default: value of output voxels that map outside ``moving``.

    Returns:
        float32 image on the reference grid.
    """
    return sitk.Resample(
        sitk.Cast(moving, sitk.sitkFloat32),
        reference,
        transform,
        interpolator,
        float(default),
        sitk.sitkFloat32,
    )


def _linear_part(transform: sitk.Transform) -> np.ndarray:
    b = transform_points(transform, np.zeros(3))
    return (transform_points(transform, np.eye(3)) - b).T


def rotation_deg(transform: sitk.Transform) -> float:
    """Rotation angle (degrees, in [0, 180]) of a rigid transform: ``acos((trace(R) - 1) / 2)``."""
    rot = _linear_part(transform)
    cos = (np.trace(rot) - 1.0) / 2.0
    return float(math.degrees(math.acos(min(1.0, max(-1.0, cos)))))


def translation_mm(transform: sitk.Transform, point: ArrayLike | None = None) -> float:
    """Displacement (mm) of a point by ``transform``: ``|T(p) - p|``.

    Args:
        transform: any transform.
        point: ``(3,)`` point in mm; the transform's centre of rotation when ``None`` (for an
            Euler3D transform this is the norm of its translation), else the origin.
    """
    if point is None:
        get_centre = getattr(transform, "GetCenter", None)
        point = np.asarray(get_centre()) if get_centre is not None else np.zeros(3)
    p = np.asarray(point, dtype=np.float64).reshape(3)
    return float(np.linalg.norm(transform_points(transform, p) - p))
