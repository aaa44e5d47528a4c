"""Stage ``face-train-source``: the source network, a ResNet trained on face identities.

Fu et al., MLMI 2020 (``docs/face_landmarks.md``): the source task is face identity
classification (the paper: a VGGFace2 ResNet-50); its encoder initialises the landmark detectors
of ``face-train`` and the frozen network provides the cross-task distillation targets.

A :class:`~medrepro.nets.ResNetClassifier` with one class per identity is trained with the
cross-entropy loss and Adam (L2 ``weight_decay``) under a cosine learning-rate decay ``lr (1 +
cos(pi step / steps)) / 2`` (``step`` 0-based). Augmentation, on the network-input tensors: a
horizontal flip (probability ``flip_prob``), scaling about the image centre by ``U(1 - r, 1 +
r)`` and a translation by ``U(-t, t) S`` pixels per axis (one ``grid_sample``, zeros = mid grey),
then a brightness shift ``U(-b, b)`` (in ``[0, 1]`` image units) and a contrast factor ``U(1 - c,
1 + c)`` about each image's mean. Deterministic for a seed on the CPU.

Outputs (``--out-dir``, replaced as a whole on success): ``model.pt`` (a bundle, arch
``resnet_classifier``, ``output_kind="logits"``, ``input_shape [1, 3, S, S]``, extra
``identity_names``, ``image_size``), ``history.csv`` (``step, loss, lr``, one row per step) and
``metrics.json`` (``train_accuracy``, ``val_accuracy`` (null without val images),
``n_identities``, ``n_train``, ``n_val``, ``seconds``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
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
from medrepro.io.atomic import atomic_dir, write_csv, write_json
from medrepro.io.errors import InputError
from medrepro.nets import build_model, save_bundle
from medrepro.preprocessing.face_dataset import network_input
from medrepro.training.device import module_device, training_device
from medrepro.training.loop import parse_json_object

__all__ = [
    "HISTORY_COLUMNS",
    "SourceTrainConfig",
    "SourceData",
    "cosine_lr",
    "load_source_data",
    "augment_classification",
    "accuracy",
    "train_source",
    "run",
    "main",
]

HISTORY_COLUMNS = ["step", "loss", "lr"]
#: the network-input scale: ``(u8 / 255 - 0.5) / _INPUT_STD`` (``network_input``)
_INPUT_STD = 0.25
_EVAL_BATCH = 64


@dataclass(frozen=True)
class SourceTrainConfig:
    """Settings of one ``face-train-source`` run (fractions of the image side, [0, 1] units)."""

    steps: int
    batch_size: int
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    flip_prob: float = 0.5
    scale_range: float = 0.1
    shift: float = 0.05
    brightness: float = 0.2
    contrast: float = 0.2

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("weight_decay", "shift", "brightness"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("flip_prob",):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("scale_range", "contrast"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class SourceData:
    """``source.npz``: ``images`` uint8 ``(M, S, S, 3)``, ``identity`` int64 ``(M,)`` (indices
    into ``identity_names``), ``split`` str ``(M,)`` (``train`` | ``val``)."""

    images: np.ndarray
    identity: np.ndarray
    identity_names: list[str]
    split: np.ndarray

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])


def cosine_lr(step: int, steps: int, lr: float) -> float:
    """Learning rate of 0-based ``step``: ``lr (1 + cos(pi step / steps)) / 2``."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))


def load_source_data(path: Path) -> SourceData:
    """Read and check ``source.npz``.

    Raises:
        InputError: naming ``path``: missing or unreadable, missing arrays, bad shapes, an
            identity index out of range, a split other than train/val, no train image.
    """
    arrays = read_dataset_arrays(path, ("images", "identity", "identity_names", "split"), "source")
    images, identity = arrays["images"], arrays["identity"]
    names = [str(s) for s in arrays["identity_names"]]
    split = arrays["split"].astype(str)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(
            path, f"images must be uint8 (M, S, S, 3), got {images.dtype} {images.shape}"
        )
    if images.shape[1] != images.shape[2]:
        raise InputError(path, f"images must be square, got {images.shape[1:3]}")
    m = len(images)
    if identity.shape != (m,) or split.shape != (m,):
        raise InputError(path, f"identity {identity.shape} / split {split.shape} != ({m},)")
    if not np.issubdtype(identity.dtype, np.integer):
        raise InputError(path, f"identity must be integer, got {identity.dtype}")
    if m and (identity.min() < 0 or identity.max() >= len(names)):
        raise InputError(path, f"identity index out of range [0, {len(names)})")
    bad = sorted(set(split) - {"train", "val"})
    if bad:
        raise InputError(path, f"split values must be train|val, got {bad}")
    if not np.any(split == "train"):
        raise InputError(path, "no train images")
    return SourceData(images, identity.astype(np.int64), names, split)


def _affine_theta(
    flip: np.ndarray, scale: np.ndarray, shift_xy: np.ndarray, size: int
) -> torch.Tensor:
    """``(B, 2, 3)``: output pixel ``p`` shows input ``c + F (p - c - t) / f`` (pixels)."""
    sx = np.where(flip, -1.0, 1.0)
    theta = np.zeros((len(flip), 2, 3), dtype=np.float32)
    theta[:, 0, 0] = sx / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, 0, 2] = -sx * 2.0 * shift_xy[:, 0] / (size * scale)
    theta[:, 1, 2] = -2.0 * shift_xy[:, 1] / (size * scale)
    return torch.from_numpy(theta)


def augment_classification(
    inputs: torch.Tensor, rng: np.random.Generator, config: SourceTrainConfig
) -> torch.Tensor:
    """Flip, scale, translate and jitter brightness/contrast of network inputs ``(B, 3, S, S)``.

    The random numbers come from ``rng`` (NumPy), so the batch is reproducible for a seed.
    """
    b, _, size, _ = inputs.shape
    flip = rng.random(b) < config.flip_prob
    scale = 1.0 + rng.uniform(-config.scale_range, config.scale_range, size=b)
    shift = rng.uniform(-config.shift, config.shift, size=(b, 2)) * size
    brightness = rng.uniform(-config.brightness, config.brightness, size=b) / _INPUT_STD
    contrast = 1.0 + rng.uniform(-config.contrast, config.contrast, size=b)
    theta = _affine_theta(flip, scale, shift, size).to(inputs.device)
    grid = F.affine_grid(theta, list(inputs.shape), align_corners=False)
    out = F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    c = torch.as_tensor(contrast, dtype=out.dtype, device=out.device)[:, None, None, None]
    d = torch.as_tensor(brightness, dtype=out.dtype, device=out.device)[:, None, None, None]
    return (out - mean) * c + mean + d


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float | None:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 images ``(M, S, S, 3)``; None if empty."""
    if len(images) == 0:
        return None
    was_training = model.training
    model.eval()
    device = module_device(model)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), _EVAL_BATCH):
            x = torch.from_numpy(network_input(images[start : start + _EVAL_BATCH])).to(device)
            pred = model(x).argmax(dim=1).cpu().numpy()
            correct += int(np.sum(pred == labels[start : start + _EVAL_BATCH]))
    model.train(was_training)
    return correct / len(images)


def train_source(
    data: SourceData,
    model_kwargs: dict[str, Any],
    config: SourceTrainConfig,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict[str, Any], pd.DataFrame]:
    """Train the identity classifier on the train images of ``data``.

    Returns:
        ``(model, kwargs, history)``: the model on the CPU in eval mode, its constructor
        arguments (``n_classes`` and ``model_kwargs``), the history (:data:`HISTORY_COLUMNS`).
    """
    kwargs = {"n_classes": len(data.identity_names), **model_kwargs}
    torch.manual_seed(config.seed)
    model = build_model("resnet_classifier", **kwargs).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train = np.flatnonzero(data.split == "train")
    rng = np.random.default_rng([config.seed, 1])
    queue = np.empty(0, dtype=np.int64)
    log_every = max(1, config.steps // 10)
    rows: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.train()
    for step in range(config.steps):
        lr = cosine_lr(step, config.steps, config.lr)
        for group in optimiser.param_groups:
            group["lr"] = lr
        while len(queue) < config.batch_size:
            queue = np.concatenate([queue, rng.permutation(train)])
        idx, queue = queue[: config.batch_size], queue[config.batch_size :]
        x = torch.from_numpy(network_input(data.images[idx])).to(device)
        x = augment_classification(x, rng, config)
        y = torch.from_numpy(data.identity[idx]).to(device)
        optimiser.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}")
        loss.backward()
        optimiser.step()
        rows.append({"step": step, "loss": float(loss.detach()), "lr": lr})
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            mean = float(np.mean([r["loss"] for r in rows[-log_every:]]))
            print(
                f"source: step {step + 1}/{config.steps} loss {mean:.4g} lr {lr:.3g} "
                f"[{time.perf_counter() - t0:.1f} s]",
                file=sys.stderr,
                flush=True,
            )
    model.eval()
    return model, kwargs, pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def run(
    *, source: Path, model_kwargs: dict[str, Any], config: SourceTrainConfig, out_dir: Path
) -> dict[str, Any]:
    """Read ``source.npz``, train, write ``model.pt``, ``history.csv``, ``metrics.json``.

    Returns:
        The metrics written to ``metrics.json``.
    """
    data = load_source_data(source)
    t0 = time.perf_counter()
    model, kwargs, history = train_source(data, model_kwargs, config, device=training_device())
    is_train = data.split == "train"
    metrics = {
        "train_accuracy": accuracy(model, data.images[is_train], data.identity[is_train]),
        "val_accuracy": accuracy(model, data.images[~is_train], data.identity[~is_train]),
        "n_identities": len(data.identity_names),
        "n_train": int(is_train.sum()),
        "n_val": int((~is_train).sum()),
        "seconds": time.perf_counter() - t0,
    }
    model.cpu()
    size = data.image_size
    with atomic_dir(out_dir) as tmp:
        save_bundle(
            tmp / "model.pt",
            model,
            arch="resnet_classifier",
            kwargs=kwargs,
            input_shape=[1, 3, size, size],
            output_kind="logits",
            extra={
                "identity_names": data.identity_names,
                "image_size": size,
                "config": asdict(config),
            },
        )
        write_csv(history, tmp / "history.csv")
        write_json(tmp / "metrics.json", metrics)
    print(f"source: {json.dumps(metrics)}", file=sys.stderr, flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medrepro face-train-source", description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="preprocessed source.npz")
    parser.add_argument(
        "--model-kwargs",
        default="{}",
        help="JSON: ResNetClassifier arguments (block_counts, width)",
    )
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--flip-prob", type=float, default=0.5)
    parser.add_argument("--scale-range", type=float, default=0.1, help="scale in 1 +- r")
    parser.add_argument("--shift", type=float, default=0.05, help="translation, fraction of S")
    parser.add_argument("--brightness", type=float, default=0.2, help="shift, [0, 1] units")
    parser.add_argument("--contrast", type=float, default=0.2, help="factor in 1 +- c")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    kwargs = parse_json_object(args.model_kwargs, parser)
    if "n_classes" in kwargs:
        parser.error("--model-kwargs must not set n_classes (it is the number of identities)")
    try:
        config = SourceTrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            lr=args.lr,
            weight_decay=args.weight_decay,
            flip_prob=args.flip_prob,
            scale_range=args.scale_range,
            shift=args.shift,
            brightness=args.brightness,
            contrast=args.contrast,
        )
    except ValueError as err:
        parser.error(str(err))
    set_torch_threads(args.threads)
    run(source=args.source, model_kwargs=kwargs, config=config, out_dir=args.out_dir)
    return 0
