"""Stage ``yolo-pretrain``: a **stand-in** for the ImageNet pre-training of the YOLO encoders.

Ramos et al. (2020) initialise the convolutional layers with darknet's ImageNet weights
(transfer learning). ImageNet (and those weights) cannot be fetched here, so the ``features``
trunk of the detector is pre-trained on a synthetic source task generated on the fly:
classify procedurally drawn RGB images into :data:`CLASSES` texture/shape classes (oriented
stripes at four angles, checkerboards, concentric rings, Gaussian blobs, and speckle, the
granular texture of ultrasound), with random colours, frequencies, scales, positions, contrast
and additive noise. The classifier is ``features -> global average pool -> Linear``, trained
with Adam and cross-entropy. This transfers generic low-level filters (edges, orientations,
textures, colour), not ImageNet's semantics: the report states the substitution, and the
``yolo_s7_scratch`` experiment measures what the initialisation brings.

Output: a bundle of the **full detector** (``build_model(arch, **kwargs)``; the head keeps its
random initialisation, ``yolo-train --init`` loads only ``features.*``), ``output_kind="yolo"``,
``extra`` with ``S, B, C`` and the stand-in's description, and ``history.csv``
(``iteration, loss, accuracy``, accuracy on the training batch). Deterministic given ``--seed``
on the CPU; trains on CUDA when present (:func:`medrepro.training.device.training_device`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from medrepro.io.atomic import write_csv
from medrepro.nets import MODELS, build_model
from medrepro.nets.bundle import save_bundle
from medrepro.training.detection import model_settings
from medrepro.training.device import training_device
from medrepro.training.loop import parse_json_object

__all__ = [
    "CLASSES",
    "HISTORY_COLUMNS",
    "pattern",
    "synthetic_batch",
    "Classifier",
    "feature_channels",
    "pretrain",
    "main",
]

#: the stand-in source task's classes (index = label)
CLASSES = (
    "stripes_0",
    "stripes_45",
    "stripes_90",
    "stripes_135",
    "checkerboard",
    "rings",
    "blobs",
    "speckle",
)
#: columns of ``history.csv``
HISTORY_COLUMNS = ["iteration", "loss", "accuracy"]


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)`` in ``[-1, 1]``, each ``(size, size)``."""
    t = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(t, t, indexing="ij")


def _stripes(y: np.ndarray, x: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    theta = np.deg2rad(angle + rng.uniform(-15.0, 15.0))
    freq, phase = rng.uniform(2.0, 8.0), rng.uniform(0.0, 2 * np.pi)
    u = x * np.cos(theta) + y * np.sin(theta)
    return 0.5 + 0.5 * np.sin(np.pi * freq * u + phase)


def _checkerboard(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    theta, freq = rng.uniform(0.0, np.pi / 2), rng.uniform(1.5, 6.0)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    p = np.sin(np.pi * freq * u + rng.uniform(0, 6.3)) * np.sin(np.pi * freq * v)
    return (p > 0).astype(np.float64)


def _rings(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cy, cx = rng.uniform(-0.6, 0.6, size=2)
    r = np.hypot(y - cy, x - cx)
    return 0.5 + 0.5 * np.cos(np.pi * rng.uniform(3.0, 10.0) * r + rng.uniform(0, 6.3))


def _blobs(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = np.zeros_like(x)
    for _ in range(int(rng.integers(1, 6))):
        cy, cx = rng.uniform(-0.8, 0.8, size=2)
        sy, sx = rng.uniform(0.08, 0.35, size=2)
        p += np.exp(-0.5 * (((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2))
    return p / max(p.max(), 1e-6)


def _speckle(size: int, rng: np.random.Generator) -> np.ndarray:
    """Fully developed speckle: squared modulus of smoothed complex Gaussian noise."""
    sigma = rng.uniform(0.5, 2.5) * size / 64.0
    re = gaussian_filter(rng.standard_normal((size, size)), sigma)
    im = gaussian_filter(rng.standard_normal((size, size)), sigma)
    p = re**2 + im**2
    return np.clip(p / (4.0 * p.mean()), 0.0, 1.0)


def pattern(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Gray pattern ``(size, size)`` in ``[0, 1]`` of class ``label`` (:data:`CLASSES`)."""
    y, x = _coords(size)
    name = CLASSES[label]
    if name.startswith("stripes_"):
        return _stripes(y, x, float(name.split("_")[1]), rng)
    if name == "checkerboard":
        return _checkerboard(y, x, rng)
    if name == "rings":
        return _rings(y, x, rng)
    if name == "blobs":
        return _blobs(y, x, rng)
    return _speckle(size, rng)


def synthetic_batch(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random images of the stand-in task and their labels.

    Each image maps a class pattern ``p (H, W)`` between two random RGB colours
    (``c0 + (c1 - c0) p``), then adds Gaussian noise (sigma up to 0.08) and clips to ``[0, 1]``.

    Returns:
        ``(x float32 (n, 3, size, size) in [0, 1], labels int64 (n,))``.
    """
    labels = rng.integers(0, len(CLASSES), size=n)
    x = np.empty((n, 3, size, size), dtype=np.float32)
    for i, label in enumerate(labels):
        p = pattern(int(label), size, rng)
        c0, c1 = rng.random(3), rng.random(3)
        img = c0[:, None, None] + (c1 - c0)[:, None, None] * p[None]
        img += rng.normal(0.0, rng.uniform(0.0, 0.08), size=img.shape)
        x[i] = np.clip(img, 0.0, 1.0)
    return x, labels.astype(np.int64)


class Classifier(nn.Module):
    """``features`` of a detector, global average pooling, and a linear classifier."""

    def __init__(self, features: nn.Module, channels: int, n_classes: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> logits ``(N, n_classes)``."""
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def feature_channels(features: nn.Module, size: int) -> int:
    """Channels of the ``features`` output for a ``(1, 3, size, size)`` input (probed in eval)."""
    was_training = features.training
    features.eval()
    with torch.no_grad():
        channels = int(features(torch.zeros(1, 3, size, size)).shape[1])
    features.train(was_training)
    return channels


def pretrain(
    arch: str,
    model_kwargs: Mapping[str, Any],
    *,
    iterations: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Callable[[str], Any] = print,
) -> tuple[nn.Module, dict[str, Any], pd.DataFrame]:
    """Pre-train the ``features`` of ``arch`` on the stand-in task.

    Returns:
        ``(detector, settings, history)``: the full detector on the CPU (pre-trained
        ``features``, head as initialised), its constructor settings (defaults +
        ``model_kwargs``) and the history (:data:`HISTORY_COLUMNS`).
    """
    if iterations < 1 or batch_size < 1:
        raise ValueError(f"need iterations and batch_size >= 1, got {iterations}, {batch_size}")
    settings = model_settings(arch, model_kwargs)
    size = int(settings["input_size"])
    torch.manual_seed(seed)
    detector = build_model(arch, **settings)
    net = Classifier(detector.features, feature_channels(detector.features, size), len(CLASSES))
    device = training_device()
    net.to(device)  # moves detector.features too (shared); the detector's head stays on the CPU
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    net.train()
    for iteration in range(1, iterations + 1):
        x, y = synthetic_batch(batch_size, size, rng)
        logits = net(torch.from_numpy(x).to(device))
        target = torch.from_numpy(y).to(device)
        loss = nn.functional.cross_entropy(logits, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        acc = float((logits.detach().argmax(1) == target).float().mean())
        rows.append({"iteration": iteration, "loss": float(loss.detach()), "accuracy": acc})
        if iteration % 50 == 0 or iteration == iterations:
            recent = rows[-50:]
            log(
                f"[yolo-pretrain] iter {iteration}/{iterations}: loss "
                f"{np.mean([r['loss'] for r in recent]):.4f} accuracy "
                f"{np.mean([r['accuracy'] for r in recent]):.3f} ({time.perf_counter() - t0:.0f} s)"
            )
    detector.cpu().eval()
    return detector, settings, pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro yolo-pretrain", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--arch", required=True, help="yolov1 or tiny_yolov1")
    parser.add_argument("--model-kwargs", default="{}", help="JSON constructor arguments")
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="model.pt (bundle)")
    parser.add_argument("--history", type=Path, required=True, help="history.csv")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``yolo-pretrain`` stage."""
    parser = _parser()
    args = parser.parse_args(argv)
    kwargs = parse_json_object(args.model_kwargs, parser)
    if args.arch not in MODELS:
        parser.error(f"unknown --arch {args.arch!r}; known: {sorted(MODELS)}")
    if args.iterations < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--iterations, --batch-size and --threads must be >= 1")
    from medrepro.deployment.threads import set_torch_threads

    set_torch_threads(args.threads)
    detector, settings, history = pretrain(
        args.arch,
        kwargs,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    size = int(settings["input_size"])
    save_bundle(
        args.out,
        detector,
        arch=args.arch,
        kwargs=settings,
        input_shape=[1, 3, size, size],
        output_kind="yolo",
        extra={
            "S": int(settings["S"]),
            "B": int(settings["B"]),
            "C": int(settings["C"]),
            "pretrain": {
                "task": "synthetic stand-in for ImageNet (texture/shape classification)",
                "classes": list(CLASSES),
                "iterations": args.iterations,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "seed": args.seed,
                "final_accuracy": float(history["accuracy"].tail(50).mean()),
            },
        },
    )
    write_csv(history, args.history)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
