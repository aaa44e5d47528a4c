"""Stage ``face-train``: a facial landmark detector trained by one of the paper's seven methods.

Fu, Jiao, Suttie, Noble, MLMI 2020, *Cross-task representation learning for anatomical landmark
detection* (``docs/face_landmarks.md``, section Methods). Every method except ``hg`` is a
:class:`~medrepro.nets.SimpleBaselines` network whose encoder is initialised from the source
identity classifier (``face-train-source``, loaded strictly); ``hg`` is a
``StackedHourglass2D`` trained from scratch with the loss summed over its stacks.

==========  ==================================================  =========  =========
method      trained                                             lambda_cd  lambda_ed
==========  ==================================================  =========  =========
``fe``      decoder (encoder frozen and in eval mode: BN too)   0          0
``ftp``     decoder + ``layer4`` (stem, layer1-3 frozen, eval)  0          0
``ft``      everything                                          0          0
``ctd_cd``  everything                                          lambda     0
``ctd_ed``  everything                                          0          lambda
``ctd_com`` everything                                          lambda     lambda
``hg``      a stacked hourglass from scratch                    0          0
==========  ==================================================  =========  =========

Loss ``L = L_hm + lambda_cd L_cd + lambda_ed L_ed``: ``L_hm`` the squared Frobenius norm of the
heatmap error (invisible landmarks weighted 0, as SimpleBaselines' target weights), ``L_cd =
T^2 KL(softmax(z_s / T) || softmax(z_t / T))`` with ``z_s = C_s(E_s(x))`` (frozen source, no
gradient) and ``z_t = C_s(E_t(x))`` (frozen source classifier, gradient to the target encoder),
``L_ed = 1 - cos(E_t(x), E_s(x))`` on the last encoder maps.

The frozen source network is in eval mode except for its BatchNorm layers, which by default
(``teacher_bn="batch"``) normalise with the statistics of the current batch, exactly as the
target's BatchNorm does in training mode, without touching the running statistics. The target
starts as a copy of the source, so both regularisers are exactly 0 at step 0 and measure only how
far the weights have drifted; ``teacher_bn="running"`` uses the source's running statistics
(plain eval mode) instead, which leaves a non-zero regulariser even before any update.

Augmentation (on the fly, per image): horizontal flip with probability ``flip_prob`` (``x -> W -
1 - x`` in 0-based pixel-centre coordinates, the dataset's flip pairs swapped) and scaling about
the image centre by a factor in ``[1 - r, 1 + r]`` (``affine_grid``/``grid_sample`` with
``align_corners=False``, zero padding = mid grey after :func:`network_input`); a landmark pushed
outside the image is weighted 0. Adam with the polynomial decay ``lr (1 - step / steps)^0.9``
(``step`` 0-based); every budget trains for the same number of steps. Deterministic for a seed on
the CPU (the network is built after ``torch.manual_seed(seed)``; batches and augmentation come
from ``np.random.default_rng([seed, 1])``).

Outputs (``--out-dir``, replaced as a whole on success): ``model.pt`` (a bundle,
``output_kind="heatmaps"``, ``input_shape [1, 3, S, S]``) and ``history.csv`` (one row per step:
``step, loss, heatmap_loss, reg_loss, lr``; ``reg_loss`` is the weighted regulariser).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from medrepro.data.dataset_npz import read_dataset_arrays
from medrepro.deployment.threads import set_torch_threads
from medrepro.io.atomic import atomic_dir, write_csv
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns
from medrepro.losses.distillation import cosine_feature_loss, kd_loss
from medrepro.losses.heatmaps import heatmap_frobenius_loss
from medrepro.nets import build_model, load_bundle, save_bundle
from medrepro.preprocessing.face_dataset import budget_indices, network_input
from medrepro.training.device import training_device
from medrepro.training.loop import parse_json_object
from medrepro.transforms.heatmaps import gaussian_heatmaps_2d

__all__ = [
    "METHODS",
    "TEACHER_BN",
    "HISTORY_COLUMNS",
    "HEATMAP_STRIDE",
    "LandmarkTrainConfig",
    "LandmarkSet",
    "method_weights",
    "polynomial_lr",
    "flip_permutation",
    "warp_images",
    "warp_points",
    "sample_augmentation",
    "augment_batch",
    "load_landmark_set",
    "load_source_network",
    "build_target_model",
    "frozen_modules",
    "batch_statistics",
    "train_face_landmarks",
    "main",
]

#: the paper's methods (``docs/face_landmarks.md``)
METHODS = ("hg", "fe", "ftp", "ft", "ctd_cd", "ctd_ed", "ctd_com")
#: how the frozen source network's BatchNorm normalises (see the module docstring)
TEACHER_BN = ("batch", "running")
HISTORY_COLUMNS = ["step", "loss", "heatmap_loss", "reg_loss", "lr"]
#: input pixels per heatmap pixel of both architectures
HEATMAP_STRIDE = 4
_DATASET_KEYS = ("images", "landmarks", "visible", "case_id", "landmark_names", "flip_pairs")


@dataclass(frozen=True)
class LandmarkTrainConfig:
    """Settings of one ``face-train`` run (learning rate per step, sigma in heatmap pixels)."""

    method: str
    budget: float
    steps: int
    batch_size: int
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.0
    sigma: float = 2.0
    lambda_cd: float = 1.0
    lambda_ed: float = 1.0
    temperature: float = 4.0
    flip_prob: float = 0.5
    scale_range: float = 0.25
    deconv_channels: int = 256
    teacher_bn: str = "batch"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.teacher_bn not in TEACHER_BN:
            raise ValueError(f"teacher_bn must be one of {TEACHER_BN}, got {self.teacher_bn!r}")
        if not 0.0 < self.budget <= 100.0:
            raise ValueError(f"budget must be a percentage in (0, 100], got {self.budget}")
        for name in ("steps", "batch_size", "deconv_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "sigma", "temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lambda_cd", "lambda_ed", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if not 0.0 <= self.scale_range < 1.0:
            raise ValueError(f"scale_range must be in [0, 1), got {self.scale_range}")


@dataclass
class LandmarkSet:
    """The training images of one budget.

    ``images`` uint8 ``(N, S, S, 3)``; ``landmarks`` float64 ``(N, K, 2)`` (x, y) 0-based pixel
    centres; ``visible`` bool ``(N, K)``; ``flip_pairs`` int ``(P, 2)``.
    """

    images: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    case_id: list[str]
    landmark_names: list[str]
    flip_pairs: np.ndarray

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])


def method_weights(method: str, lambda_cd: float, lambda_ed: float) -> tuple[float, float]:
    """``(lambda_cd, lambda_ed)`` in effect for ``method`` (0 for the terms it does not use).

    Raises:
        ValueError: unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    cd = lambda_cd if method in ("ctd_cd", "ctd_com") else 0.0
    ed = lambda_ed if method in ("ctd_ed", "ctd_com") else 0.0
    return float(cd), float(ed)


def polynomial_lr(step: int, steps: int, lr: float, power: float = 0.9) -> float:
    """Learning rate of 0-based ``step``: ``lr * (1 - step / steps) ** power``."""
    return lr * (1.0 - step / steps) ** power


def flip_permutation(n_landmarks: int, flip_pairs: np.ndarray) -> np.ndarray:
    """``perm`` with ``flipped[:, i] = mirrored[:, perm[i]]``: the pairs swapped, others fixed.

    Raises:
        ValueError: an index out of range or used by two pairs.
    """
    perm = np.arange(n_landmarks)
    seen: set[int] = set()
    for i, j in np.asarray(flip_pairs, dtype=np.int64).reshape(-1, 2):
        if not (0 <= i < n_landmarks and 0 <= j < n_landmarks) or {i, j} & seen or i == j:
            raise ValueError(
                f"bad flip pairs {np.asarray(flip_pairs).tolist()} for K={n_landmarks}"
            )
        seen |= {int(i), int(j)}
        perm[i], perm[j] = j, i
    return perm


def _theta(flip: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    """``(B, 2, 3)`` ``affine_grid`` matrices: output normalised ``u`` -> input ``F u / f``."""
    sx = np.where(flip, -1.0, 1.0)
    theta = np.zeros((len(flip), 2, 3), dtype=np.float32)
    theta[:, 0, 0] = sx / scale
    theta[:, 1, 1] = 1.0 / scale
    return torch.from_numpy(theta)


def warp_images(images: torch.Tensor, flip: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    """Flip horizontally (where ``flip``) and scale about the image centre by ``scale``.

    Args:
        images: ``(B, C, H, W)`` float tensor.
        flip: ``(B,)`` bool.
        scale: ``(B,)`` factors (> 1 zooms in).

    Returns:
        ``(B, C, H, W)``: output pixel ``p`` shows input ``c + F (p - c) / f`` (``c = (W - 1) /
        2``, ``F`` the flip), bilinear, zeros outside; see :func:`warp_points`.
    """
    b, c, h, w = images.shape
    theta = _theta(np.asarray(flip, bool), np.asarray(scale, np.float64)).to(images.device)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_points(
    points_xy: np.ndarray, flip: np.ndarray, scale: np.ndarray, size: Sequence[int]
) -> np.ndarray:
    """Where :func:`warp_images` moves points ``(B, K, 2)`` (x, y) of an image of ``size (H, W)``.

    ``x' = c_x + f s (x - c_x)``, ``y' = c_y + f (y - c_y)`` with ``c = (size - 1) / 2`` (0-based
    pixel centres) and ``s = -1`` where flipped. Landmark indices are not permuted here.
    """
    h, w = size
    p = np.asarray(points_xy, dtype=np.float64)
    f = np.asarray(scale, np.float64)[:, None]
    sx = np.where(np.asarray(flip, bool), -1.0, 1.0)[:, None]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    out = np.empty_like(p)
    out[..., 0] = cx + f * sx * (p[..., 0] - cx)
    out[..., 1] = cy + f * (p[..., 1] - cy)
    return out


def sample_augmentation(
    rng: np.random.Generator, batch: int, flip_prob: float, scale_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(flip (B,) bool, scale (B,))`` with ``scale ~ U(1 - r, 1 + r)``."""
    flip = rng.random(batch) < flip_prob
    scale = 1.0 + rng.uniform(-scale_range, scale_range, size=batch)
    return flip, scale


def augment_batch(
    inputs: torch.Tensor,
    landmarks: np.ndarray,
    visible: np.ndarray,
    flip: np.ndarray,
    scale: np.ndarray,
    flip_pairs: np.ndarray,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Warp a batch and its landmarks alike; swap the flip pairs of the flipped images.

    Args:
        inputs: ``(B, 3, S, S)`` network inputs.
        landmarks: ``(B, K, 2)`` (x, y) 0-based pixel centres.
        visible: ``(B, K)`` bool.
        flip, scale: per image, see :func:`sample_augmentation`.
        flip_pairs: ``(P, 2)`` landmark index pairs.

    Returns:
        ``(inputs, landmarks, visible)``; a landmark outside ``[-0.5, S - 0.5)`` becomes
        invisible.
    """
    flip = np.asarray(flip, bool)
    h, w = inputs.shape[-2:]
    out = warp_images(inputs, flip, scale)
    pts = warp_points(landmarks, flip, scale, (h, w))
    vis = np.asarray(visible, bool).copy()
    perm = flip_permutation(pts.shape[1], flip_pairs)
    pts[flip] = pts[flip][:, perm]
    vis[flip] = vis[flip][:, perm]
    inside = (
        np.isfinite(pts).all(-1)
        & (pts[..., 0] >= -0.5)
        & (pts[..., 0] < w - 0.5)
        & (pts[..., 1] >= -0.5)
        & (pts[..., 1] < h - 0.5)
    )
    return out, pts, vis & inside


def load_landmark_set(dataset: Path, splits: Path, budget: float) -> LandmarkSet:
    """The train images of label budget ``budget`` (per cent; nested, see ``budget_indices``).

    Raises:
        InputError: naming the file: a missing or malformed ``dataset.npz`` or ``splits.csv``, a
            budget case missing from the dataset.
    """
    arrays = read_dataset_arrays(dataset, _DATASET_KEYS, "face_landmarks")
    images, landmarks, visible = arrays["images"], arrays["landmarks"], arrays["visible"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(dataset, f"images must be uint8 (N, S, S, 3), got {images.shape}")
    if images.shape[1] != images.shape[2]:
        raise InputError(dataset, f"images must be square, got {images.shape[1:3]}")
    n, k = len(images), len(arrays["landmark_names"])
    if landmarks.shape != (n, k, 2) or visible.shape != (n, k) or len(arrays["case_id"]) != n:
        raise InputError(
            dataset,
            f"inconsistent arrays: images {images.shape}, landmarks {landmarks.shape}, "
            f"visible {visible.shape}, case_id {arrays['case_id'].shape}, K={k}",
        )
    try:
        flip_permutation(k, arrays["flip_pairs"])
    except ValueError as err:
        raise InputError(dataset, str(err)) from None
    table = read_text_csv(splits)
    require_columns(table, ["case_id", "split", "budget_rank"], splits)
    try:
        table["budget_rank"] = table["budget_rank"].astype(int)
        chosen = [str(c) for c in budget_indices(table, budget)]
    except ValueError as err:
        raise InputError(splits, f"bad budget_rank or budget: {err}") from None
    if not chosen:
        raise InputError(splits, "no train rows")
    index = {str(c): i for i, c in enumerate(arrays["case_id"])}
    missing = [c for c in chosen if c not in index]
    if missing:
        raise InputError(splits, f"case_id(s) not in {Path(dataset).name}: {missing[:5]}")
    rows = np.array([index[c] for c in chosen], dtype=np.int64)
    return LandmarkSet(
        images=images[rows],
        landmarks=landmarks[rows].astype(np.float64),
        visible=visible[rows].astype(bool),
        case_id=chosen,
        landmark_names=[str(s) for s in arrays["landmark_names"]],
        flip_pairs=np.asarray(arrays["flip_pairs"], dtype=np.int64).reshape(-1, 2),
    )


def load_source_network(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The source classifier bundle, frozen (no gradients, eval mode), and its meta.

    Raises:
        InputError: unreadable bundle, or not a ``resnet_classifier``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        model, meta = load_bundle(path)
    except Exception as err:  # torch raises many kinds for a corrupt or foreign file
        raise InputError(path, f"unreadable model bundle ({type(err).__name__}: {err})") from err
    if meta.get("arch") != "resnet_classifier":
        raise InputError(path, f"arch must be 'resnet_classifier', got {meta.get('arch')!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), meta


def build_target_model(
    config: LandmarkTrainConfig,
    n_landmarks: int,
    source: nn.Module | None,
    source_kwargs: dict[str, Any] | None,
    hg_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, str, dict[str, Any]]:
    """``(model, arch, kwargs)`` of the landmark network of ``config.method``.

    ``hg``: ``StackedHourglass2D(n_landmarks, **hg_kwargs)``, random initialisation. Otherwise a
    ``SimpleBaselines`` with the source's ``block_counts``, ``width`` (and ``in_channels``) and
    ``config.deconv_channels``, whose encoder is loaded strictly from ``source.encoder``.
    """
    if config.method == "hg":
        kwargs = {"n_landmarks": n_landmarks, **(hg_kwargs or {})}
        return build_model("stacked_hourglass2d", **kwargs), "stacked_hourglass2d", kwargs
    if source is None or source_kwargs is None:
        raise ValueError(f"method {config.method!r} needs the source network")
    kwargs = {
        "n_landmarks": n_landmarks,
        **{
            k: source_kwargs[k]
            for k in ("block_counts", "width", "in_channels")
            if k in source_kwargs
        },
        "deconv_channels": config.deconv_channels,
    }
    model = build_model("simple_baselines", **kwargs)
    model.encoder.load_state_dict(source.encoder.state_dict(), strict=True)
    return model, "simple_baselines", kwargs


def frozen_modules(model: nn.Module, method: str) -> list[nn.Module]:
    """The parts ``method`` freezes: ``fe`` the encoder, ``ftp`` the encoder but ``layer4``."""
    if method == "fe":
        return [model.encoder]
    if method == "ftp":
        return [m for name, m in model.encoder.named_children() if name != "layer4"]
    return []


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[nn.Module]:
    """BatchNorm layers of ``module`` normalise with the batch's statistics, running ones kept.

    Inside the block every ``_BatchNorm`` is in training mode with ``track_running_stats``
    off (so neither ``running_*`` nor ``num_batches_tracked`` change); both are restored after.
    """
    saved = [
        (m, m.training, m.track_running_stats)
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        for m, _, _ in saved:
            m.train()
            m.track_running_stats = False
        yield module
    finally:
        for m, training, tracking in saved:
            m.train(training)
            m.track_running_stats = tracking


def _index_batches(rng: np.random.Generator, n: int, batch_size: int) -> Iterator[np.ndarray]:
    """Endless batches of ``batch_size`` indices drawn from successive permutations of ``n``."""
    queue = np.empty(0, dtype=np.int64)
    while True:
        while len(queue) < batch_size:
            queue = np.concatenate([queue, rng.permutation(n)])
        yield queue[:batch_size]
        queue = queue[batch_size:]


def _regulariser(
    source: nn.Module,
    x: torch.Tensor,
    features: torch.Tensor,
    lambda_cd: float,
    lambda_ed: float,
    temperature: float,
    teacher_bn: str,
) -> torch.Tensor:
    """``lambda_cd L_cd + lambda_ed L_ed`` of the target features ``E_t(x)`` against the source."""
    with torch.no_grad():
        if teacher_bn == "batch":
            with batch_statistics(source):
                teacher = source.features(x)
        else:
            teacher = source.features(x)
        teacher_logits = source.classify(teacher) if lambda_cd > 0 else None
    reg = features.new_zeros(())
    if lambda_cd > 0:
        reg = reg + lambda_cd * kd_loss(source.classify(features), teacher_logits, temperature)
    if lambda_ed > 0:
        reg = reg + lambda_ed * cosine_feature_loss(features, teacher)
    return reg


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_face_landmarks(
    data: LandmarkSet,
    config: LandmarkTrainConfig,
    source: nn.Module | None = None,
    source_kwargs: dict[str, Any] | None = None,
    hg_kwargs: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, str, dict[str, Any], pd.DataFrame]:
    """Train the landmark network of ``config.method`` on ``data``.

    Args:
        data: the budget's training images.
        config: run settings.
        source: the frozen source classifier (:func:`load_source_network`); unused by ``hg``.
        source_kwargs: its bundle kwargs (``block_counts``, ``width``).
        hg_kwargs: ``StackedHourglass2D`` arguments for ``hg``.
        device: where to train.

    Returns:
        ``(model, arch, kwargs, history)``: the model on the CPU in eval mode, its registry name
        and constructor arguments, the history (:data:`HISTORY_COLUMNS`, one row per step).
    """
    lambda_cd, lambda_ed = method_weights(config.method, config.lambda_cd, config.lambda_ed)
    torch.manual_seed(config.seed)
    k = len(data.landmark_names)
    model, arch, kwargs = build_target_model(config, k, source, source_kwargs, hg_kwargs)
    frozen = frozen_modules(model, config.method)
    for part in frozen:
        for p in part.parameters():
            p.requires_grad_(False)
    device = torch.device(device)
    model.to(device)
    regularised = source is not None and (lambda_cd > 0 or lambda_ed > 0)
    if regularised:
        source.to(device).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    size = data.image_size
    heatmap_shape = (size // HEATMAP_STRIDE, size // HEATMAP_STRIDE)
    rng = np.random.default_rng([config.seed, 1])
    batches = _index_batches(rng, len(data.images), config.batch_size)
    log_every = max(1, config.steps // 10)
    rows: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for step in range(config.steps):
        lr = polynomial_lr(step, config.steps, config.lr)
        for group in optimiser.param_groups:
            group["lr"] = lr
        idx = next(batches)
        flip, scale = sample_augmentation(rng, len(idx), config.flip_prob, config.scale_range)
        x, pts, vis = augment_batch(
            torch.from_numpy(network_input(data.images[idx])),
            data.landmarks[idx],
            data.visible[idx],
            flip,
            scale,
            data.flip_pairs,
        )
        target = torch.as_tensor(
            gaussian_heatmaps_2d(pts, heatmap_shape, stride=HEATMAP_STRIDE, sigma=config.sigma)
        )
        weights = torch.from_numpy(vis.astype(np.float32))  # (B, K): 0 = invisible
        x, target, weights = x.to(device), target.to(device), weights.to(device)
        model.train()
        for part in frozen:
            part.eval()
        optimiser.zero_grad(set_to_none=True)
        if arch == "stacked_hourglass2d":
            outputs = model.forward_stacks(x)
            heatmap_loss = sum(heatmap_frobenius_loss(o, target, weights) for o in outputs)
            reg = x.new_zeros(())
        else:
            features = model.features(x)
            out = model.decode(features)
            if out.shape != target.shape:
                raise ValueError(f"network output {tuple(out.shape)} != target {target.shape}")
            heatmap_loss = heatmap_frobenius_loss(out, target, weights)
            reg = (
                _regulariser(
                    source,
                    x,
                    features,
                    lambda_cd,
                    lambda_ed,
                    config.temperature,
                    config.teacher_bn,
                )
                if regularised
                else x.new_zeros(())
            )
        loss = heatmap_loss + reg
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}")
        loss.backward()
        optimiser.step()
        rows.append(
            {
                "step": step,
                "loss": float(loss.detach()),
                "heatmap_loss": float(heatmap_loss.detach()),
                "reg_loss": float(reg.detach()),
                "lr": lr,
            }
        )
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            recent = pd.DataFrame(rows[-log_every:])
            _log(
                f"{config.method} budget {config.budget:g}: step {step + 1}/{config.steps} "
                f"loss {recent['loss'].mean():.4g} (heatmap {recent['heatmap_loss'].mean():.4g}, "
                f"reg {recent['reg_loss'].mean():.4g}) lr {lr:.3g} "
                f"[{time.perf_counter() - t0:.1f} s]"
            )
    model.cpu().eval()
    if source is not None:
        source.cpu()
    return model, arch, kwargs, pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def run(
    *,
    dataset: Path,
    splits: Path,
    source_bundle: Path | None,
    config: LandmarkTrainConfig,
    out_dir: Path,
    hg_kwargs: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Read the inputs, train, write ``model.pt`` and ``history.csv`` into ``out_dir`` atomically.

    Raises:
        InputError: bad dataset, splits or source bundle (naming the file).
    """
    data = load_landmark_set(dataset, splits, config.budget)
    source, source_kwargs = None, None
    if config.method != "hg":
        if source_bundle is None:
            raise ValueError(f"method {config.method!r} needs --source-bundle")
        source, meta = load_source_network(source_bundle)
        source_kwargs = dict(meta["kwargs"])
    t0 = time.perf_counter()
    model, arch, kwargs, history = train_face_landmarks(
        data, config, source, source_kwargs, hg_kwargs, device=training_device()
    )
    lambda_cd, lambda_ed = method_weights(config.method, config.lambda_cd, config.lambda_ed)
    size = data.image_size
    extra = {
        "heatmap_stride": HEATMAP_STRIDE,
        "sigma": config.sigma,
        "landmark_names": data.landmark_names,
        "flip_pairs": data.flip_pairs.tolist(),
        "method": config.method,
        "budget": int(config.budget) if float(config.budget).is_integer() else config.budget,
        "n_train": len(data.case_id),
        "image_size": size,
        "lambda_cd": lambda_cd,
        "lambda_ed": lambda_ed,
        "seconds": time.perf_counter() - t0,
        "config": asdict(config),
    }
    with atomic_dir(out_dir) as tmp:
        save_bundle(
            tmp / "model.pt",
            model,
            arch=arch,
            kwargs=kwargs,
            input_shape=[1, 3, size, size],
            output_kind="heatmaps",
            extra=extra,
        )
        write_csv(history, tmp / "history.csv")
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medrepro face-train", description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True, help="preprocessed dataset.npz")
    parser.add_argument("--splits", type=Path, required=True, help="preprocessed splits.csv")
    parser.add_argument("--source-bundle", type=Path, default=None, help="source model.pt")
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--budget", type=float, required=True, help="per cent of the train split")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--sigma", type=float, default=2.0, help="heatmap pixels")
    parser.add_argument("--lambda-cd", type=float, default=1.0)
    parser.add_argument("--lambda-ed", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--teacher-bn", choices=TEACHER_BN, default="batch")
    parser.add_argument("--flip-prob", type=float, default=0.5)
    parser.add_argument("--scale-range", type=float, default=0.25)
    parser.add_argument("--deconv-channels", type=int, default=256)
    parser.add_argument("--hg-kwargs", default="{}", help="JSON: StackedHourglass2D arguments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    hg_kwargs = parse_json_object(args.hg_kwargs, parser, "--hg-kwargs")
    try:
        config = LandmarkTrainConfig(
            method=args.method,
            budget=args.budget,
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            lr=args.lr,
            weight_decay=args.weight_decay,
            sigma=args.sigma,
            lambda_cd=args.lambda_cd,
            lambda_ed=args.lambda_ed,
            temperature=args.temperature,
            flip_prob=args.flip_prob,
            scale_range=args.scale_range,
            deconv_channels=args.deconv_channels,
            teacher_bn=args.teacher_bn,
        )
    except ValueError as err:
        parser.error(str(err))
    if args.method != "hg" and args.source_bundle is None:
        parser.error(f"--method {args.method} needs --source-bundle")
    set_torch_threads(args.threads)
    run(
        dataset=args.dataset,
        splits=args.splits,
        source_bundle=args.source_bundle,
        config=config,
        out_dir=args.out_dir,
        hg_kwargs=hg_kwargs,
    )
    return 0
