"""Training of the cephalometry landmark networks (direct regression and heatmap regression).

Augmentation is a random integer translation of the volume (and its landmarks) by up to
``max_shift`` voxels per axis, padded with the volume's minimum (air after z-scoring). There is
no flipping: a left-right flip would swap Or-L/Or-R and Po-L/Po-R.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrepro.io.atomic import write_csv
from medrepro.losses.landmarks import coordinate_loss, heatmap_loss
from medrepro.nets import build_model
from medrepro.nets.bundle import save_bundle
from medrepro.nets.vgg_regressor import encode_coordinates
from medrepro.tasks import get_task
from medrepro.training.device import module_device, to_device
from medrepro.training.loop import TrainConfig, fingerprint, fit, seed_everything
from medrepro.transforms.heatmaps import gaussian_heatmaps

__all__ = ["OUTPUT_KINDS", "shift_volume", "train_landmarks"]

#: architecture -> how its output encodes landmarks
OUTPUT_KINDS = {"vgg_regressor": "coordinates", "stacked_hourglass": "heatmaps"}


def shift_volume(volume: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Translate ``volume`` ``(X, Y, Z)`` by integer ``shift`` voxels, padding with its minimum.

    A landmark at voxel ``p`` of the input is at ``p + shift`` of the output.
    """
    out = np.full_like(volume, volume.min())
    src, dst = [], []
    for s, n in zip(shift.astype(int), volume.shape, strict=True):
        src.append(slice(max(0, -s), min(n, n - s)))
        dst.append(slice(max(0, s), min(n, n + s)))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def _batches(
    images: np.ndarray,
    landmarks: np.ndarray,
    batch_size: int,
    max_shift: int,
    rng: np.random.Generator,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled, augmented mini-batches ``(inputs (B,1,X,Y,Z), landmarks_vox (B,K,3))``."""
    order = rng.permutation(len(images))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        xs, ps = [], []
        for i in chunk:
            shift = (
                rng.integers(-max_shift, max_shift + 1, size=3) if max_shift else np.zeros(3, int)
            )
            xs.append(shift_volume(images[i, 0], shift))
            ps.append(landmarks[i] + shift)
        yield np.stack(xs)[:, None].astype(np.float32), np.stack(ps)


def train_landmarks(
    *,
    task_name: str,
    dataset: Path,
    splits: Path,
    arch: str,
    model_kwargs: dict[str, Any],
    config: TrainConfig,
    out_dir: Path,
    max_shift: int = 3,
    heatmap_sigma: float = 2.0,
) -> None:
    """Train ``arch`` on the train split, select the epoch on the val split, write the bundle.

    Writes ``<out_dir>/model.pt`` (bundle), ``<out_dir>/history.csv`` and keeps
    ``<out_dir>/checkpoints/last.pt`` for resuming.
    """
    task = get_task(task_name)
    train = task.load_items(dataset, splits, "train")
    val = task.load_items(dataset, splits, "val")
    labels = train.extra["labels"]
    spatial = tuple(train.inputs.shape[2:])
    kind = OUTPUT_KINDS[arch]
    seed_everything(config.seed)
    model = build_model(arch, in_channels=1, n_landmarks=len(labels), **model_kwargs)
    stride = int(getattr(model, "stride", 1))
    heatmap_shape = tuple(s // stride for s in spatial)
    meta = {"output_kind": kind, "extra": {"heatmap_stride": stride, "labels": labels}}

    def targets(landmarks_vox: np.ndarray) -> torch.Tensor:
        if kind == "coordinates":
            return torch.as_tensor(encode_coordinates(landmarks_vox, spatial), dtype=torch.float32)
        hm = gaussian_heatmaps(landmarks_vox, heatmap_shape, stride=stride, sigma=heatmap_sigma)
        return torch.as_tensor(hm, dtype=torch.float32)

    def loss_fn(output: Any, target: torch.Tensor) -> torch.Tensor:
        return (
            coordinate_loss(output, target)
            if kind == "coordinates"
            else heatmap_loss(output, target)
        )

    def batches(rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, p in _batches(
            train.inputs, train.extra["landmarks_vox"], config.batch_size, max_shift, rng
        ):
            yield torch.from_numpy(x), targets(p)

    val_targets = targets(val.extra["landmarks_vox"])

    def validate(net: torch.nn.Module) -> tuple[float, float]:
        device = module_device(net)  # the training device; outputs come back to the CPU
        with torch.inference_mode():
            outputs = [
                to_device(net(torch.from_numpy(val.inputs[i : i + 1]).to(device)), "cpu")
                for i in range(len(val))
            ]
        loss = float(
            np.mean([float(loss_fn(o, val_targets[i : i + 1])) for i, o in enumerate(outputs)])
        )
        metric, _ = task.validate([o.numpy() for o in outputs], val, range(len(val)), meta)
        return loss, metric

    settings = {
        "arch": arch,
        "kwargs": model_kwargs,
        "config": config.__dict__,
        "max_shift": max_shift,
        "heatmap_sigma": heatmap_sigma,
        "dataset_bytes": Path(dataset).stat().st_size,
        "train": train.case_id,
    }
    model, history = fit(model, batches, loss_fn, validate, config, out_dir, fingerprint(settings))
    save_bundle(
        out_dir / "model.pt",
        model,
        arch=arch,
        kwargs={"in_channels": 1, "n_landmarks": len(labels), **model_kwargs},
        input_shape=[1, 1, *spatial],
        output_kind=kind,
        extra=meta["extra"],
    )
    write_csv(history, out_dir / "history.csv")
