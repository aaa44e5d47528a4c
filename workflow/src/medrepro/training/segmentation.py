"""Training of the BrainMaGe brain-extraction network (paper 001), modality-agnostic.

Thakur et al., BrainLes 2021; BrainMaGe ``trainer/lightning_networks.py``: every (subject,
modality) item of ``dataset.npz`` is one training sample whatever its contrast (the
"modality-agnostic" model), the loss is the batch-global soft Dice loss
(:func:`medrepro.losses.segmentation.dice_loss`), the optimiser SGD with Nesterov momentum 0.9
(``TrainConfig(optimizer="sgd_nesterov")``) with a cosine learning-rate decay (the shared
:func:`medrepro.training.loop.fit`; BrainMaGe uses a cyclic cosine schedule).

Augmentation (seeded by the loop's per-epoch generator; an addition, kept simple): a left-right
flip (axis X of ``(X, Y, Z)``, LPS) with probability ``flip_prob``, and an intensity map
``x * a + b`` with ``a ~ U(1 - intensity_scale, 1 + intensity_scale)`` and
``b ~ U(-intensity_shift, intensity_shift)`` (the images are BrainMaGe-normalised, about 0..1).

Validation metric: mean per-item Dice of the prediction thresholded at ``>= 0.5`` on the val
split, at network resolution (higher is better). Inference later thresholds at 0.9 (BrainMaGe),
stored as ``extra["threshold"]`` in the bundle.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrepro.data.select_inputs import split_indices
from medrepro.io.atomic import write_csv
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv
from medrepro.losses.segmentation import dice_loss
from medrepro.metrics.segmentation import dice
from medrepro.nets import build_model
from medrepro.nets.bundle import save_bundle
from medrepro.training.device import module_device
from medrepro.training.loop import TrainConfig, fingerprint, fit, seed_everything

__all__ = [
    "INFERENCE_THRESHOLD",
    "VALIDATION_THRESHOLD",
    "load_segmentation_split",
    "augment",
    "train_segmentation",
]

#: BrainMaGe's inference threshold on the probability map (stored in the bundle)
INFERENCE_THRESHOLD = 0.9
#: threshold of the validation Dice at network resolution
VALIDATION_THRESHOLD = 0.5

_KEYS = ("images", "masks", "case_id")


def load_segmentation_split(
    dataset: Path, splits: Path, split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images and masks of one split of a brain-extraction ``dataset.npz``.

    Args:
        dataset: ``dataset.npz`` with ``images`` float32 ``(N, X, Y, Z)``, ``masks`` uint8
            ``(N, X, Y, Z)`` and ``case_id (N,)`` (``docs/brain_extraction.md``).
        splits: ``splits.csv`` (``case_id, patient_id, split``).
        split: ``train``, ``val`` or ``test``.

    Returns:
        ``images`` float32 ``(M, X, Y, Z)``, ``masks`` uint8 ``(M, X, Y, Z)`` (0/1) and the
        ``M`` case ids, in dataset order.

    Raises:
        InputError: unreadable file, missing arrays, inconsistent shapes, non-binary masks, sides
            not divisible by 16 (the ResU-Net's four downsamplings), or a bad split.
    """
    dataset = Path(dataset)
    if not dataset.is_file():
        raise InputError(dataset, "file not found")
    try:
        with np.load(dataset, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise InputError(dataset, f"missing array(s) {missing}; found {data.files}")
            case_id = [str(c) for c in data["case_id"]]
            index = split_indices(case_id, read_text_csv(splits), split, source=splits)
            images, masks = data["images"], data["masks"]
            if images.ndim != 4 or masks.shape != images.shape or len(case_id) != len(images):
                raise InputError(
                    dataset,
                    f"expected images and masks (N, X, Y, Z) and case_id (N,), got "
                    f"{images.shape}, {masks.shape} and {len(case_id)} ids",
                )
            images = np.ascontiguousarray(images[index], dtype=np.float32)
            masks = np.ascontiguousarray(masks[index])
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(dataset, f"unreadable npz: {err}") from err
    if any(s % 16 for s in images.shape[1:]):
        raise InputError(dataset, f"image sides {images.shape[1:]} must be divisible by 16 voxels")
    if not np.all(np.isfinite(images)):
        raise InputError(dataset, f"non-finite values in the images of split {split!r}")
    if masks.size and not np.isin(masks, (0, 1)).all():
        raise InputError(dataset, "masks must be 0/1")
    return images, masks.astype(np.uint8), [case_id[i] for i in index]


def augment(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    flip_prob: float = 0.5,
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Random left-right flip (axis X of ``(X, Y, Z)``) and intensity scale/shift of one item.

    The mask is flipped with the image; intensities only change the image. Draws exactly three
    numbers from ``rng`` per call, so the sequence is reproducible.

    Returns:
        ``(image float32, mask)``, new arrays.
    """
    flip, a, b = rng.random(), rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)
    if flip < flip_prob:
        image, mask = image[::-1], mask[::-1]
    scale = 1.0 + intensity_scale * a
    shift = intensity_shift * b
    return np.ascontiguousarray(image * scale + shift, dtype=np.float32), np.ascontiguousarray(mask)


def _batches(
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    aug: dict[str, float],
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, augmented batches ``(inputs (B,1,X,Y,Z) float32, targets (B,1,X,Y,Z) float32)``."""
    order = rng.permutation(len(images))
    for start in range(0, len(order), batch_size):
        pairs = [
            augment(images[i], masks[i], rng, **aug) for i in order[start : start + batch_size]
        ]
        x = np.stack([p[0] for p in pairs])[:, None]
        y = np.stack([p[1] for p in pairs])[:, None].astype(np.float32)
        yield torch.from_numpy(x), torch.from_numpy(y)


def _validate(net: torch.nn.Module, images: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """``(mean per-item Dice loss, mean per-item Dice of prob >= 0.5)`` over the val items.

    The network runs on its own device (the training device); the scores are computed on the CPU.
    """
    device = module_device(net)
    losses, scores = [], []
    with torch.inference_mode():
        for image, mask in zip(images, masks, strict=True):
            prob = net(torch.from_numpy(image[None, None]).to(device)).cpu()
            target = torch.from_numpy(mask[None, None].astype(np.float32))
            losses.append(float(dice_loss(prob, target)))
            scores.append(dice(prob.numpy()[0, 0] >= VALIDATION_THRESHOLD, mask))
    return float(np.mean(losses)), float(np.mean(scores))


def train_segmentation(
    *,
    task_name: str,
    dataset: Path,
    splits: Path,
    arch: str,
    model_kwargs: dict[str, Any],
    config: TrainConfig,
    out_dir: Path,
    flip_prob: float = 0.5,
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.1,
) -> None:
    """Train ``arch`` (``resunet``) on the train split, select the epoch on the val split.

    Writes ``<out_dir>/model.pt`` (bundle: ``output_kind="probabilities"``, ``input_shape
    [1, 1, X, Y, Z]``, ``extra={"threshold": 0.9}``), ``<out_dir>/history.csv`` (``epoch,
    train_loss, val_loss, val_metric, seconds``) and keeps ``<out_dir>/checkpoints/last.pt``
    for resuming. ``task_name`` is accepted for the shared trainer interface (unused).
    """
    del task_name
    out_dir = Path(out_dir)
    train_x, train_y, train_ids = load_segmentation_split(dataset, splits, "train")
    val_x, val_y, _ = load_segmentation_split(dataset, splits, "val")
    spatial = list(train_x.shape[1:])
    aug = {
        "flip_prob": flip_prob,
        "intensity_scale": intensity_scale,
        "intensity_shift": intensity_shift,
    }
    kwargs = {"in_channels": 1, "out_channels": 1, **model_kwargs}
    seed_everything(config.seed)
    model = build_model(arch, **kwargs)

    def batches(rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _batches(train_x, train_y, config.batch_size, rng, aug)

    settings = {
        "trainer": "segmentation",
        "arch": arch,
        "kwargs": kwargs,
        "config": config.__dict__,
        "augment": aug,
        "dataset_bytes": Path(dataset).stat().st_size,
        "train": train_ids,
    }
    model, history = fit(
        model,
        batches,
        dice_loss,
        lambda net: _validate(net, val_x, val_y),
        config,
        out_dir,
        fingerprint(settings),
    )
    save_bundle(
        out_dir / "model.pt",
        model,
        arch=arch,
        kwargs=kwargs,
        input_shape=[1, 1, *spatial],
        output_kind="probabilities",
        extra={"threshold": INFERENCE_THRESHOLD},
    )
    write_csv(history, out_dir / "history.csv")
