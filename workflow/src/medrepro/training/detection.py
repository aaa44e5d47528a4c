"""Stage ``yolo-train``: YOLOv1 / tiny YOLO on the cerebellum images (Ramos et al. 2020, paper 004).

The paper's protocol (darknet): SGD with momentum on random batches of the training images,
``iterations`` batches in all (1000 of 64), a checkpoint every ``checkpoint_every`` batches (100),
and **every checkpoint evaluated on the test images**; the "best model" is the checkpoint with
the best AP (the mean IoU of the top box, :mod:`medrepro.metrics.detection`). Optionally the
convolutional trunk (``features``) starts from a ``yolo-pretrain`` bundle (the paper used
darknet's ImageNet weights; here the stand-in pre-training of :mod:`medrepro.training.pretrain`).

Inputs: ``dataset.npz`` images uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` / 255, resized
(bilinear, antialiased) to the model's ``input_size`` when the dataset is larger (the dataset
is stored at the largest model's size; boxes are normalised so they do not change).

Augmentation (seeded; darknet jitters too, this is a simpler documented form), per image:

- geometry: zoom ``s ~ U(1 - scale_jitter, 1 + scale_jitter)`` about the image centre and a shift
  ``t`` of up to ``shift_jitter`` of the image side per axis, applied to image and box together
  (``cx' = (cx - 0.5) s + 0.5 + tx``, ``w' = s w``). The shift is drawn inside the part of
  ``[-shift_jitter, shift_jitter]`` that keeps the box inside the image, so an object is never
  cut or lost; a box larger than the image after zooming is clipped to ``[0, 1]``. Pixels from
  outside the image repeat the border (the dark ultrasound background);
- intensity: ``x' = (x - mean) c + mean + b`` with contrast ``c ~ U(1 - contrast, 1 + contrast)``,
  brightness ``b ~ U(-brightness, brightness)``, clipped to ``[0, 1]``.

Outputs in ``--out-dir``: ``checkpoints/iter_<k>.pt`` (bundles, written as they come),
``checkpoints.csv`` (:data:`CHECKPOINT_COLUMNS`), ``history.csv`` (the shared columns
``epoch, train_loss, val_loss, val_metric, seconds``; epoch = checkpoint index, val = the test
split as in the paper) and ``model.pt`` (the best-AP checkpoint, the earlier one on ties).
Bundles: ``output_kind="yolo"``, ``input_shape [1, 3, I, I]``, ``extra`` with ``S, B, C``,
``conf_threshold``, ``iteration`` and ``ap``.

Training and checkpoint evaluation run on :func:`medrepro.training.device.training_device` (CUDA
when present, else the CPU); bundles hold CPU tensors.
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from medrepro.data.select_inputs import to_network_inputs
from medrepro.io.atomic import atomic_path, write_csv
from medrepro.io.errors import InputError
from medrepro.losses.yolo import yolo_loss
from medrepro.metrics.detection import detection_scores
from medrepro.nets import MODELS, build_model
from medrepro.nets.bundle import save_bundle
from medrepro.tasks.cerebellum_yolo import DetectionData, load_detection_split
from medrepro.training.device import module_device, training_device
from medrepro.training.loop import parse_json_object
from medrepro.transforms.yolo_grid import decode_top_box, encode_targets

__all__ = [
    "CHECKPOINT_COLUMNS",
    "HISTORY_COLUMNS",
    "Augmentation",
    "DetectionConfig",
    "model_settings",
    "resize_inputs",
    "network_batch",
    "augment_batch",
    "batch_indices",
    "load_features",
    "predict_raw",
    "evaluate_detector",
    "best_checkpoint",
    "train_detector",
    "main",
]

#: columns of ``checkpoints.csv``: the design page's, plus the run name, the loss on the test
#: split, the annotated-image count, the mean top-box confidence and the elapsed seconds
CHECKPOINT_COLUMNS = [
    "run",
    "iteration",
    "loss",
    "test_loss",
    "ap",
    "f1",
    "tp",
    "fp",
    "fn",
    "n_images",
    "n_annotated",
    "mean_conf",
    "seconds",
    "diverged",
]
#: columns of ``history.csv`` shared with the other papers' trainers
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_metric", "seconds"]


@dataclass(frozen=True)
class Augmentation:
    """Augmentation ranges (module docstring); all zero disables augmentation.

    Attributes:
        scale: zoom ``s ~ U(1 - scale, 1 + scale)``.
        shift: largest shift, fraction of the image side, per axis.
        brightness: ``b ~ U(-brightness, brightness)`` added (images in ``[0, 1]``).
        contrast: ``c ~ U(1 - contrast, 1 + contrast)`` around the image mean.
    """

    scale: float = 0.1
    shift: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.2


@dataclass(frozen=True)
class DetectionConfig:
    """Optimisation settings of ``yolo-train``: SGD with momentum at a constant learning rate
    after a Darknet-style burn-in (``lr * (i / burn_in) ** 4`` for the first ``burn_in``
    batches), which keeps the first steps of a randomly initialised head from diverging, and
    the gradient norm clipped at ``clip_grad_norm`` (``None``: no clipping). Clipping is not in
    Darknet: the fully connected heads see ``c S^2`` (6,272 to 50,176) features, so plain SGD
    at the paper's rates and momenta takes steps far beyond the loss's curvature and diverges
    within a few dozen batches in our short schedules; a clipped step keeps the experiment grid
    comparable (a run that still blows up is recorded as diverged)."""

    lr: float
    momentum: float
    batch_size: int
    iterations: int
    checkpoint_every: int
    weight_decay: float = 5e-4
    conf_threshold: float = 0.25
    seed: int = 0
    eval_batch_size: int = 16
    burn_in: int = 0
    clip_grad_norm: float | None = 10.0


def burn_in_lr(lr: float, iteration: int, burn_in: int) -> float:
    """Darknet's burn-in: ``lr * (iteration / burn_in) ** 4`` up to ``burn_in``, then ``lr``."""
    if burn_in <= 0 or iteration >= burn_in:
        return lr
    return lr * (iteration / burn_in) ** 4


def model_settings(arch: str, model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor defaults of ``arch`` overridden by ``model_kwargs`` (plain values).

    The full set goes into the bundle and gives ``S``, ``B``, ``C`` and ``input_size``.

    Raises:
        KeyError: unknown ``arch``.
    """
    if arch not in MODELS:
        raise KeyError(f"unknown arch {arch!r}; known: {sorted(MODELS)}")
    params = inspect.signature(MODELS[arch]).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **dict(model_kwargs)}


def resize_inputs(x: np.ndarray, size: int) -> np.ndarray:
    """Resize float32 ``(N, 3, H, W)`` images to ``(N, 3, size, size)`` (bilinear, antialiased).

    Returns ``x`` itself when it already has that size.
    """
    if x.shape[2:] == (size, size):
        return x
    with torch.no_grad():
        out = F.interpolate(
            torch.from_numpy(np.ascontiguousarray(x)),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
    return out.clamp_(0.0, 1.0).numpy()


def _shift_range(
    lo_edge: np.ndarray, hi_edge: np.ndarray, limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of shifts in ``[-limit, limit]`` keeping ``[lo_edge, hi_edge]`` inside ``[0, 1]``.

    Empty intervals (an edge already outside) collapse to the centring shift.
    """
    lo = np.maximum(-limit, -lo_edge)
    hi = np.minimum(limit, 1.0 - hi_edge)
    centre = 0.5 - (lo_edge + hi_edge) / 2.0
    empty = lo > hi
    return np.where(empty, centre, lo), np.where(empty, centre, hi)


def augment_batch(
    x: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, aug: Augmentation
) -> tuple[np.ndarray, np.ndarray]:
    """Random zoom/shift (image and box together) and brightness/contrast of a batch.

    Args:
        x: float32 ``(N, 3, H, W)`` in ``[0, 1]``.
        boxes: float32 ``(N, 4)`` normalised ``(cx, cy, w, h)``, NaN rows for empty images.
        rng: draws exactly ``5 N`` numbers, so the sequence is reproducible.
        aug: the ranges.

    Returns:
        ``(x', boxes')``: new arrays; boxes stay inside ``[0, 1]`` and NaN rows stay NaN.
    """
    n = len(x)
    u = rng.random((5, n))
    s = 1.0 + aug.scale * (2.0 * u[0] - 1.0)
    has = ~np.isnan(boxes).any(axis=1)
    b = np.where(has[:, None], boxes, np.array([0.5, 0.5, 0.0, 0.0])).astype(np.float64)
    shifts = []
    for axis, draw in ((0, u[1]), (1, u[2])):
        c, half = (b[:, axis] - 0.5) * s + 0.5, b[:, axis + 2] * s / 2.0
        lo, hi = _shift_range(c - half, c + half, aug.shift)
        shifts.append(lo + (hi - lo) * draw)
    tx, ty = shifts
    # output pixel at normalised g in [-1, 1] samples the input at (g - 2t) / s
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
    theta[:, 0, 2], theta[:, 1, 2] = -2.0 * tx / s, -2.0 * ty / s
    with torch.no_grad():
        tx_img = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        grid = F.affine_grid(torch.from_numpy(theta), list(tx_img.shape), align_corners=False)
        out = F.grid_sample(
            tx_img, grid, mode="bilinear", padding_mode="border", align_corners=False
        ).numpy()
    contrast = 1.0 + aug.contrast * (2.0 * u[3] - 1.0)
    brightness = aug.brightness * (2.0 * u[4] - 1.0)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    out = np.clip(out, 0.0, 1.0).astype(np.float32)

    new = np.full_like(b, np.nan)
    cx, cy = (b[:, 0] - 0.5) * s + 0.5 + tx, (b[:, 1] - 0.5) * s + 0.5 + ty
    w, h = b[:, 2] * s, b[:, 3] * s
    x0, x1 = np.clip(cx - w / 2, 0, 1), np.clip(cx + w / 2, 0, 1)
    y0, y1 = np.clip(cy - h / 2, 0, 1), np.clip(cy + h / 2, 0, 1)
    clipped = np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=1)
    new[has] = clipped[has]
    return out, new.astype(np.float32)


def batch_indices(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless random batches of ``range(n)``: successive permutations, cut into batches.

    Every image is seen once per pass over the data; a batch larger than ``n`` repeats images.
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got {n} and {batch_size}")
    pool = np.empty(0, dtype=int)
    while True:
        while len(pool) < batch_size:
            pool = np.concatenate([pool, rng.permutation(n)])
        yield pool[:batch_size]
        pool = pool[batch_size:]


def load_features(model: nn.Module, init: Path) -> int:
    """Copy the ``features.*`` weights of the bundle ``init`` into ``model``.

    Returns:
        the number of tensors loaded.

    Raises:
        InputError: naming ``init``: unreadable, not a bundle, or its ``features`` do not match
            the model's (missing keys or other shapes).
    """
    init = Path(init)
    if not init.is_file():
        raise InputError(init, "file not found")
    try:
        payload = torch.load(init, map_location="cpu", weights_only=True)
        state = payload["state_dict"]
    except (RuntimeError, OSError, KeyError, TypeError, EOFError) as err:
        raise InputError(init, f"not a model bundle ({err})") from err
    own = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    if not own:
        raise InputError(init, "the model has no 'features' submodule to initialise")
    missing = sorted(k for k in own if k not in state)
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        detail = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]]
        raise InputError(
            init,
            f"pre-trained features do not fit the model ({len(missing)} missing, e.g. "
            f"{missing[:3]}; {len(wrong)} of another shape, e.g. {detail})",
        )
    model.load_state_dict({k: state[k] for k in own}, strict=False)
    return len(own)


def network_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> float32 network inputs ``(N, 3, size, size)`` in ``[0, 1]``.

    Converting batch by batch keeps memory at the uint8 size (448 px inputs: 2.4 MB per image
    as float32).
    """
    return resize_inputs(to_network_inputs(images), size)


def predict_raw(
    model: nn.Module, images: np.ndarray, size: int, batch_size: int = 16
) -> np.ndarray:
    """Raw outputs ``(N, S, S, 5B + C)`` float32 of ``model`` in eval mode (no gradients).

    Args:
        model: the detector, on any device (the inputs go there, the outputs come back).
        images: uint8 ``(N, H, W, 3)``, converted with :func:`network_batch`.
        size: network input side (pixels).
        batch_size: images per forward pass.
    """
    was_training = model.training
    model.eval()
    device = module_device(model)
    outs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(network_batch(images[start : start + batch_size], size))
            outs.append(model(x.to(device)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(outs)


def evaluate_detector(
    model: nn.Module,
    images: np.ndarray,
    size: int,
    boxes: np.ndarray,
    has_object: np.ndarray,
    S: int,
    B: int,
    C: int,
    conf_threshold: float,
    batch_size: int = 16,
) -> dict[str, float]:
    """Scores of one checkpoint on a split (uint8 ``images (N, H, W, 3)``, ``boxes (N, 4)``).

    Returns:
        ``detection_scores`` keys (``ap, f1, tp, fp, fn, n_images, n_annotated``) plus
        ``test_loss`` (the YOLO loss, batch-averaged) and ``mean_conf`` (mean top-box
        confidence).
    """
    raw = predict_raw(model, images, size, batch_size)
    pred_boxes, pred_conf = decode_top_box(raw, B)
    scores = dict(
        detection_scores(pred_boxes, pred_conf, boxes, has_object, conf_threshold=conf_threshold)
    )
    target = torch.as_tensor(np.asarray(encode_targets(boxes, S, C)), dtype=torch.float32)
    with torch.no_grad():
        scores["test_loss"] = float(yolo_loss(torch.from_numpy(raw), target, B))
    scores["mean_conf"] = float(np.mean(pred_conf))
    return scores


def best_checkpoint(table: pd.DataFrame) -> int:
    """Row position of the best AP in a checkpoints table; the earliest iteration on ties.

    Raises:
        ValueError: no row with a finite AP.
    """
    ap = pd.to_numeric(table["ap"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(ap).any():
        raise ValueError("no checkpoint with a finite AP")
    order = np.argsort(pd.to_numeric(table["iteration"]).to_numpy(), kind="stable")
    best = max(order, key=lambda i: ap[i] if np.isfinite(ap[i]) else -np.inf)
    # max() keeps the first maximal element of ``order``: the earliest iteration on ties
    return int(best)


def _bundle_extra(settings: Mapping[str, Any], config: DetectionConfig) -> dict[str, Any]:
    return {
        "S": int(settings["S"]),
        "B": int(settings["B"]),
        "C": int(settings["C"]),
        "conf_threshold": float(config.conf_threshold),
    }


def train_detector(
    *,
    dataset: Path,
    splits: Path,
    arch: str,
    model_kwargs: Mapping[str, Any],
    config: DetectionConfig,
    out_dir: Path,
    init: Path | None = None,
    aug: Augmentation = Augmentation(),
    log: Any = print,
) -> pd.DataFrame:
    """Train ``arch`` on the train split, evaluate each checkpoint on the test split.

    Writes the files listed in the module docstring and returns the checkpoints table.

    Raises:
        InputError: bad dataset, splits or ``init`` bundle.
        ValueError: bad settings (``checkpoint_every`` not in ``1..iterations``...).
    """
    if config.iterations < 1 or not 1 <= config.checkpoint_every <= config.iterations:
        raise ValueError(
            f"need iterations >= 1 and 1 <= checkpoint_every <= iterations, got "
            f"{config.iterations} and {config.checkpoint_every}"
        )
    out_dir = Path(out_dir)
    settings = model_settings(arch, model_kwargs)
    size = int(settings["input_size"])
    S, B, C = int(settings["S"]), int(settings["B"]), int(settings["C"])
    train = load_detection_split(dataset, splits, "train")
    test = load_detection_split(dataset, splits, "test")
    _check_square(train, dataset)

    torch.manual_seed(config.seed)
    model = build_model(arch, **settings)
    if init is not None:
        log(f"[yolo-train] {load_features(model, init)} feature tensors from {init}")
    device = training_device()
    model.to(device)  # save_bundle below stores the state dict on the CPU
    optimiser = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    rng = np.random.default_rng(config.seed)
    batches = batch_indices(len(train), config.batch_size, rng)
    extra = _bundle_extra(settings, config)
    rows: list[dict[str, Any]] = []
    losses: list[float] = []
    t_start = t_last = time.perf_counter()
    model.train()
    for iteration in range(1, config.iterations + 1):
        idx = next(batches)
        xb, bb = augment_batch(network_batch(train.images[idx], size), train.boxes[idx], rng, aug)
        target = torch.as_tensor(np.asarray(encode_targets(bb, S, C)), dtype=torch.float32)
        target = target.to(device)
        for group in optimiser.param_groups:
            group["lr"] = burn_in_lr(config.lr, iteration, config.burn_in)
        optimiser.zero_grad(set_to_none=True)
        loss = yolo_loss(model(torch.from_numpy(xb).to(device)), target, B)
        diverged = not bool(torch.isfinite(loss))
        if diverged:
            # A diverging setting is a result of the experiment grid (the paper's momentum x lr
            # study), not an error: score the last finite weights once and stop this run.
            log(f"[yolo-train] non-finite loss at iteration {iteration}: run diverged, stopping")
        else:
            loss.backward()
            if config.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimiser.step()
            losses.append(float(loss.detach()))
        last = iteration == config.iterations
        if not diverged and iteration % config.checkpoint_every and not last:
            continue
        scores = evaluate_detector(
            model, test.images, size, test.boxes, test.has_object, S, B, C, config.conf_threshold,
            config.eval_batch_size,
        )  # fmt: skip
        now = time.perf_counter()
        row = {
            "run": out_dir.name,
            "iteration": iteration,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            **{k: scores[k] for k in CHECKPOINT_COLUMNS if k in scores},
            "seconds": now - t_last,
            "diverged": diverged,
        }
        rows.append(row)
        losses, t_last = [], now
        save_bundle(
            out_dir / "checkpoints" / f"iter_{iteration}.pt",
            model,
            arch=arch,
            kwargs=settings,
            input_shape=[1, 3, size, size],
            output_kind="yolo",
            extra={**extra, "iteration": iteration, "ap": float(scores["ap"])},
        )
        log(
            f"[yolo-train] iter {iteration}: loss {row['loss']:.4g} test AP {row['ap']:.4f} "
            f"F1 {row['f1']:.3f} FP {row['fp']} ({now - t_start:.0f} s)"
        )
        if diverged:
            break
    table = pd.DataFrame(rows, columns=CHECKPOINT_COLUMNS)
    _write_outputs(table, out_dir)
    return table


def _check_square(data: DetectionData, dataset: Path) -> None:
    """InputError unless the dataset images are square (they are the network inputs)."""
    h, w = data.images.shape[1:3]
    if h != w:
        raise InputError(dataset, f"images must be square (the network input), got {h}x{w}")


def _write_outputs(table: pd.DataFrame, out_dir: Path) -> None:
    """``model.pt`` (copy of the best checkpoint), ``checkpoints.csv``, ``history.csv``."""
    best = table.iloc[best_checkpoint(table)]
    source = out_dir / "checkpoints" / f"iter_{int(best['iteration'])}.pt"
    with atomic_path(out_dir / "model.pt") as tmp:
        shutil.copyfile(source, tmp)
    history = pd.DataFrame(
        {
            "epoch": np.arange(1, len(table) + 1),
            "train_loss": table["loss"].to_numpy(),
            "val_loss": table["test_loss"].to_numpy(),
            "val_metric": table["ap"].to_numpy(),
            "seconds": table["seconds"].to_numpy(),
        },
        columns=HISTORY_COLUMNS,
    )
    write_csv(history, out_dir / "history.csv")
    write_csv(table, out_dir / "checkpoints.csv")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medrepro yolo-train", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="preprocessed/dataset.npz")
    parser.add_argument("--splits", type=Path, required=True, help="splits.csv")
    parser.add_argument("--arch", required=True, help="yolov1 or tiny_yolov1")
    parser.add_argument("--model-kwargs", default="{}", help="JSON constructor arguments")
    parser.add_argument("--init", type=Path, default=None, help="pre-trained bundle (features)")
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--momentum", type=float, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, required=True)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--conf-threshold", type=float, default=0.25)
    parser.add_argument(
        "--burn-in", type=int, default=None,
        help="batches of learning-rate warm-up (Darknet's burn_in); default: a tenth of them",
    )  # fmt: skip
    parser.add_argument(
        "--clip-grad-norm", type=float, default=10.0,
        help="clip the gradient norm at this value; 0: no clipping (Darknet's behaviour)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-augment", action="store_true", help="disable augmentation")
    parser.add_argument("--out-dir", type=Path, required=True, help="models/<run>")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``yolo-train`` stage."""
    parser = _parser()
    args = parser.parse_args(argv)
    kwargs = parse_json_object(args.model_kwargs, parser)
    if args.arch not in MODELS:
        parser.error(f"unknown --arch {args.arch!r}; known: {sorted(MODELS)}")
    for name in ("batch_size", "iterations", "checkpoint_every", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.checkpoint_every > args.iterations:
        parser.error("--checkpoint-every must not exceed --iterations")
    from medrepro.deployment.threads import set_torch_threads

    set_torch_threads(args.threads)
    config = DetectionConfig(
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        iterations=args.iterations,
        checkpoint_every=args.checkpoint_every,
        weight_decay=args.weight_decay,
        conf_threshold=args.conf_threshold,
        seed=args.seed,
        burn_in=args.iterations // 10 if args.burn_in is None else args.burn_in,
        clip_grad_norm=args.clip_grad_norm or None,
    )
    aug = Augmentation(0.0, 0.0, 0.0, 0.0) if args.no_augment else Augmentation()
    table = train_detector(
        dataset=args.dataset,
        splits=args.splits,
        arch=args.arch,
        model_kwargs=kwargs,
        config=config,
        out_dir=args.out_dir,
        init=args.init,
        aug=aug,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    best = table.iloc[best_checkpoint(table)]
    print(
        f"[yolo-train] best AP {best['ap']:.4f} at iteration {int(best['iteration'])} "
        f"-> {args.out_dir / 'model.pt'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
