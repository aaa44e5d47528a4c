"""Stage ``lowres-train``: one network of the LowRes comparison trained on 3D patches (paper 003).

Shirokikh et al., J. Imaging 2021, section 5.1, and the authors' ``neuro-ml/low-resolution``
configs: every network is trained by iterations of SGD with Nesterov momentum 0.9, learning rate
1e-2 then 1e-3 for the last fifth (100 epochs x 100 iterations, drop at epoch 80), on patches of
64^3 voxels (DeepMedic: output 39^3, input 39 + 2 margin) that are centred on a ground-truth
object with probability ``object_prob`` and uniform otherwise (``transforms.patch_sampling``).
The loss is deep-pipe's per-sample Dice loss (:func:`~medrepro.losses.segmentation.soft_dice_per_sample`).

LowRes (see :func:`is_two_stage`) is trained in two phases, each with its own
optimiser and learning-rate schedule: ``stage1`` with the adaptive weighted BCE
(:func:`~medrepro.losses.segmentation.adaptive_weighted_bce`) between the 1/8-resolution logits
and the ground truth max-pooled by 8; then ``stage2`` with stage 1 frozen (eval mode, no
gradient) and the Dice loss on the full-resolution logits of the whole patch.

Training studies are sampled with probability proportional to their number of objects (the
authors' ``patient_sampling_weights``; ``--study-sampling uniform`` to draw every study alike).
The run is deterministic for a seed: ``torch.manual_seed`` before the network is built, one
``np.random.Generator`` for the patches, another for the fixed validation patches. It is not
resumable (no checkpoints). Training and validation run on
:func:`medrepro.training.device.training_device` (CUDA when present, else the CPU); the bundle
is written from the model moved back to the CPU.

Outputs (``--out-dir``, written together atomically): ``model.pt`` (a bundle,
``output_kind="logits"``, ``input_shape = [1, 1, *training input patch]``) and ``history.csv``
(one row per block of ``--log-every`` iterations: ``step, loss, lr, seconds, phase, val_dice``;
``loss`` the block's mean, ``seconds`` its wall time, ``val_dice`` the Dice of thresholded
predictions on a few fixed val patches every ``--val-every`` iterations, NaN otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from medrepro.data.lowres_studies import read_studies, read_study_arrays, studies_of_split
from medrepro.deployment.threads import set_torch_threads
from medrepro.io.atomic import atomic_dir, write_csv
from medrepro.io.errors import InputError
from medrepro.losses.segmentation import adaptive_weighted_bce, soft_dice_per_sample
from medrepro.metrics.segmentation import dice
from medrepro.nets import build_model, save_bundle
from medrepro.training.device import module_device, training_device
from medrepro.training.loop import parse_json_object
from medrepro.transforms.patch_sampling import object_voxels, sample_patch

__all__ = [
    "HISTORY_COLUMNS",
    "PHASES",
    "LowResTrainConfig",
    "PatchSource",
    "learning_rate",
    "is_two_stage",
    "patch_shapes",
    "load_patch_source",
    "phase_loss",
    "train_lowres_model",
    "main",
]

#: training phases: single-stage networks, then LowRes' two stages
PHASES = ("main", "stage1", "stage2")
HISTORY_COLUMNS = ["step", "loss", "lr", "seconds", "phase", "val_dice"]
#: stage-1 downsampling of LowRes (ground truth max-pooled by this factor)
STAGE1_SCALE = 8
#: studies read from ``studies.npz`` per call (bounds the float32 copy made by the reader)
_READ_CHUNK = 8


OPTIMIZERS = ("sgd_nesterov", "adam")


def make_optimiser(params: Sequence[nn.Parameter], name: str, lr: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9 (the paper), or Adam (a faster start for short runs)."""
    if name == "sgd_nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def init_output_prior(model: nn.Module, prior: float) -> list[str]:
    """Set the bias of each logit layer (the last one-element bias of the network, or of each
    LowRes stage that has one) so that the network starts by predicting ``prior`` everywhere.

    With the soft Dice loss and objects of a few dozen voxels in a patch of tens of thousands, a
    start at p = 0.5 makes sum(p^2) swamp the overlap and the gradient; a small prior (as in
    RetinaNet's classification head) lets short runs learn. A logit convolution also starts with
    zero weights (a BatchNorm logit layer keeps its scale). Returns the bias names set.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must be in (0, 1), got {prior}")
    parts = (
        {"stage1.": model.stage1, "stage2.": model.stage2} if is_two_stage(model) else {"": model}
    )
    names = []
    with torch.no_grad():
        for prefix, part in parts.items():
            heads = [
                (name, param)
                for name, param in part.named_parameters()
                if name.endswith("bias") and tuple(param.shape) == (1,)
            ]
            if heads:
                name, param = heads[-1]
                param.fill_(float(np.log(prior / (1.0 - prior))))
                names.append(prefix + name)
                owner = part.get_submodule(name.rsplit(".", 1)[0]) if "." in name else part
                if isinstance(owner, nn.modules.conv._ConvNd):
                    # a zero convolution starts every logit at the prior, whatever the scale of
                    # the (un-normalised) features before it, so the sigmoid is not saturated
                    owner.weight.zero_()
    return names


@dataclass(frozen=True)
class LowResTrainConfig:
    """Settings of one ``lowres-train`` run (sides in voxels, learning rates per iteration).

    ``stage1_iterations``/``stage2_iterations`` default to ``iterations``;
    ``stage2_object_prob`` defaults to ``object_prob``. ``jitter``: fraction of the output box
    in which an object-centred patch places its object voxel (0 = exactly at the centre, as the
    authors' code).
    """

    iterations: int
    batch_size: int
    patch: int
    object_prob: float
    seed: int
    lr: float = 1e-2
    lr_final: float = 1e-3
    final_fraction: float = 0.2
    stage1_iterations: int | None = None
    stage2_iterations: int | None = None
    stage2_object_prob: float | None = None
    jitter: float = 0.5
    study_sampling: str = "objects"
    val_every: int = 0
    val_patches: int = 8
    log_every: int = 10
    optimizer: str = "sgd_nesterov"
    output_prior: float | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "patch", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("stage1_iterations", "stage2_iterations"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("object_prob", "stage2_object_prob", "final_fraction", "jitter"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.study_sampling not in ("objects", "uniform"):
            raise ValueError(f"study_sampling must be objects|uniform, got {self.study_sampling!r}")
        if self.val_every < 0 or self.val_patches < 0:
            raise ValueError("val_every and val_patches must be >= 0")


def learning_rate(
    step: int, iterations: int, lr: float, lr_final: float, final_fraction: float
) -> float:
    """Learning rate of 0-based ``step``: ``lr``, then ``lr_final`` for the last fraction.

    The drop happens at ``round(iterations * (1 - final_fraction))`` (paper: iteration 8000 of
    10000, i.e. epoch 80 of 100).
    """
    drop = round(iterations * (1.0 - final_fraction))
    return lr_final if step >= drop else lr


def is_two_stage(model: nn.Module) -> bool:
    """True for LowRes (:class:`medrepro.nets.lowres.LowRes`, or a class with ``two_stage = True``).

    Such a model has ``stage1(x) -> (logits8, f2, f4, f8)`` and ``stage2(x, f2, f4, f8) ->
    logits``. Having attributes named ``stage1``/``stage2`` is not enough (E-Net has stages too).
    """
    from medrepro.nets.lowres import LowRes

    return isinstance(model, LowRes) or bool(getattr(model, "two_stage", False))


def patch_shapes(model: nn.Module, patch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(input, output)`` spatial patch shapes (voxels) for a network and a patch side.

    ``patch`` is the output side; the input is ``model.input_shape_for(output)`` when the network
    has it, else ``output + 2 * model.margin`` (``margin`` 0 when absent). The output side must be
    a multiple of ``model.divisor`` (1 when absent).

    Raises:
        ValueError: ``patch`` not a multiple of the divisor.
    """
    divisor = int(getattr(model, "divisor", 1))
    if patch % divisor:
        raise ValueError(f"patch {patch} must be a multiple of the network's divisor {divisor}")
    output = (patch, patch, patch)
    if hasattr(model, "input_shape_for"):
        inp = tuple(int(s) for s in model.input_shape_for(output))
    else:
        margin = int(getattr(model, "margin", 0))
        inp = tuple(s + 2 * margin for s in output)
    return inp, output


class PatchSource:
    """Studies held in memory (images float16, masks uint8, object voxels) to draw patches from.

    Args:
        images: ``{study_id: (z, y, x) image}``.
        masks: ``{study_id: (z, y, x) binary mask}``, same keys and shapes.
        weights: ``"objects"`` (studies drawn in proportion to their number of objects; uniform
            if no study has one) or ``"uniform"``.
    """

    def __init__(
        self, images: dict[str, np.ndarray], masks: dict[str, np.ndarray], weights: str
    ) -> None:
        if not images:
            raise ValueError("a patch source needs at least one study")
        self.ids = list(images)
        self.images = [np.asarray(images[i], dtype=np.float16) for i in self.ids]
        self.masks = [(np.asarray(masks[i]) > 0).astype(np.uint8) for i in self.ids]
        self.objects = [object_voxels(m) for m in self.masks]
        counts = np.array([len(o) for o in self.objects], dtype=np.float64)
        if weights == "objects" and counts.sum() > 0:
            self.p = counts / counts.sum()
        else:
            self.p = np.full(len(self.ids), 1.0 / len(self.ids))

    @property
    def n_objects(self) -> int:
        """Objects (3D components) over all studies."""
        return sum(len(o) for o in self.objects)

    def batch(
        self,
        rng: np.random.Generator,
        batch_size: int,
        input_shape: Sequence[int],
        output_shape: Sequence[int],
        object_prob: float,
        jitter: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x (B, 1, *input) float32, y (B, 1, *output) float32)`` drawn with ``rng``."""
        xs, ys = [], []
        for _ in range(batch_size):
            k = int(rng.choice(len(self.ids), p=self.p))
            x, y = sample_patch(
                self.images[k],
                self.masks[k],
                rng,
                input_shape,
                output_shape,
                object_prob=object_prob,
                jitter=jitter,
                objects=self.objects[k],
            )
            xs.append(x)
            ys.append(y)
        x_arr = np.stack(xs)[:, None].astype(np.float32)
        y_arr = np.stack(ys)[:, None].astype(np.float32)
        return torch.from_numpy(x_arr), torch.from_numpy(y_arr)


def load_patch_source(
    studies: Path, table: Path, split: str, weights: str = "objects"
) -> PatchSource | None:
    """The kept studies of ``split`` from the preprocessed container; None if the split is empty.

    Raises:
        InputError: unreadable container or table (naming the file), a study's mask not
            binary or not the image's shape.
    """
    ids = studies_of_split(read_studies(table), split)
    if not ids:
        return None
    images: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), _READ_CHUNK):
        chunk = read_study_arrays(studies, ids[start : start + _READ_CHUNK], dtype=np.float16)
        for sid, (image, mask) in chunk.items():
            assert image is not None and mask is not None
            if image.shape != mask.shape or image.ndim != 3:
                raise InputError(studies, f"study {sid!r}: image {image.shape}, mask {mask.shape}")
            if not np.all(np.isfinite(image)):
                raise InputError(studies, f"study {sid!r}: non-finite image values")
            images[sid] = image
            masks[sid] = mask
    return PatchSource(images, masks, weights)


def _stage1_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stage-1 logits ``(N, 1, D/8, H/8, W/8)`` (``stage1`` returns ``(logits8, f2, f4, f8)``)."""
    return model.stage1(x)[0]


def _stage2_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Full-resolution logits with stage 1 run without gradient."""
    with torch.no_grad():
        _, f2, f4, f8 = model.stage1(x)
    return model.stage2(x, f2, f4, f8)


def _main_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, (tuple, list)):  # LowRes trained as one network: the full-resolution map
        out = out[-1]
    return out


def phase_loss(
    model: nn.Module, phase: str, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, logits, target)`` of one batch in ``phase`` (see :data:`PHASES`).

    ``main`` and ``stage2``: per-sample Dice loss on the full-resolution logits; ``stage1``:
    adaptive weighted BCE against ``F.max_pool3d(y, 8)``.
    """
    if phase == "stage1":
        logits = _stage1_forward(model, x)
        target = F.max_pool3d(y, STAGE1_SCALE)
        return adaptive_weighted_bce(logits, target), logits, target
    logits = _stage2_forward(model, x) if phase == "stage2" else _main_forward(model, x)
    if logits.shape != y.shape:
        raise ValueError(f"{phase}: network output {tuple(logits.shape)} != target {y.shape}")
    return soft_dice_per_sample(logits, y), logits, y


def _val_dice(
    model: nn.Module, phase: str, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> float:
    """Dice of ``sigmoid(logits) > 0.5`` over all validation patches pooled (1 if both empty).

    The patches (CPU tensors) go to the model's device; the Dice is computed on the CPU.
    """
    if not batches:
        return float("nan")
    was_training = model.training
    model.eval()
    device = module_device(model)
    preds, targets = [], []
    with torch.inference_mode():
        for x, y in batches:
            _, logits, target = phase_loss(model, phase, x.to(device), y.to(device))
            preds.append((logits > 0).cpu().numpy().ravel())  # sigmoid > 0.5 <=> logit > 0
            targets.append(target.cpu().numpy().ravel() > 0.5)
    model.train(was_training)
    return dice(np.concatenate(preds), np.concatenate(targets))


def _trainable_part(model: nn.Module, phase: str) -> nn.Module:
    return model.stage1 if phase == "stage1" else model.stage2 if phase == "stage2" else model


def _freeze_stage1(model: nn.Module) -> None:
    """Stage 1 without gradients and in eval mode (``nets.lowres.freeze_stage1`` for LowRes)."""
    from medrepro.nets.lowres import LowRes, freeze_stage1

    if isinstance(model, LowRes):
        freeze_stage1(model)
    for p in model.stage1.parameters():
        p.requires_grad_(False)


def _run_phase(
    model: nn.Module,
    phase: str,
    *,
    iterations: int,
    object_prob: float,
    config: LowResTrainConfig,
    source: PatchSource,
    val_source: PatchSource | None,
    shapes: tuple[Sequence[int], Sequence[int]],
    rng: np.random.Generator,
    log: Callable[[dict[str, Any]], None],
) -> None:
    """Train ``model`` for one phase on its device; ``log`` receives one history row per block."""
    device = module_device(model)
    part = _trainable_part(model, phase)
    if phase == "stage2":
        _freeze_stage1(model)
    params = [p for p in part.parameters() if p.requires_grad]
    optimiser = make_optimiser(params, config.optimizer, config.lr)
    val_rng = np.random.default_rng([config.seed, 1, PHASES.index(phase)])
    val_batches = []
    if val_source is not None and config.val_every > 0 and config.val_patches > 0:
        for start in range(0, config.val_patches, config.batch_size):
            n = min(config.batch_size, config.val_patches - start)
            val_batches.append(
                val_source.batch(val_rng, n, *shapes, object_prob=object_prob, jitter=config.jitter)
            )
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(iterations):
        lr = learning_rate(step, iterations, config.lr, config.lr_final, config.final_fraction)
        for group in optimiser.param_groups:
            group["lr"] = lr
        model.train()
        if phase == "stage2":
            model.stage1.eval()
        x, y = source.batch(
            rng, config.batch_size, *shapes, object_prob=object_prob, jitter=config.jitter
        )
        x, y = x.to(device), y.to(device)
        optimiser.zero_grad(set_to_none=True)
        loss, _, _ = phase_loss(model, phase, x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{phase}: non-finite loss at step {step + 1}")
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if done % config.log_every == 0 or done == iterations:
            validate = bool(val_batches) and (done % config.val_every == 0 or done == iterations)
            log(
                {
                    "step": done,
                    "loss": float(np.mean(losses)),
                    "lr": lr,
                    "seconds": time.perf_counter() - t0,
                    "phase": phase,
                    "val_dice": _val_dice(model, phase, val_batches) if validate else math.nan,
                }
            )
            losses, t0 = [], time.perf_counter()


def train_lowres_model(
    *,
    studies: Path,
    table: Path,
    arch: str,
    model_kwargs: dict[str, Any],
    config: LowResTrainConfig,
    out_dir: Path,
) -> pd.DataFrame:
    """Train ``arch`` on the train split; write ``model.pt`` and ``history.csv`` to ``out_dir``.

    Args:
        studies: ``studies.npz`` of the preprocessed container.
        table: its ``studies.csv`` (splits).
        arch: registry name (``unet3d``, ``deepmedic``, ``mobilenetv2``, ``enet``, ``lowres``).
        model_kwargs: constructor arguments (plain JSON values).
        config: run settings.
        out_dir: replaced as a whole on success.

    Returns:
        The history table (:data:`HISTORY_COLUMNS`).

    Raises:
        InputError: bad container or table, or no train studies.
    """
    source = load_patch_source(studies, table, "train", config.study_sampling)
    if source is None:
        raise InputError(table, "no (non-excluded) train studies")
    validate = config.val_every > 0 and config.val_patches > 0
    val_source = (
        load_patch_source(studies, table, "val", config.study_sampling) if validate else None
    )
    torch.manual_seed(config.seed)
    model = build_model(arch, **model_kwargs)
    if config.output_prior is not None:
        print(
            f"output prior {config.output_prior}: {init_output_prior(model, config.output_prior)}"
        )
    try:
        shapes = patch_shapes(model, config.patch)
    except ValueError as err:
        raise ValueError(f"{arch}: {err}") from None
    rng = np.random.default_rng([config.seed, 0])
    model.to(training_device())
    rows: list[dict[str, Any]] = []

    def log(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    if is_two_stage(model):
        plan = [
            ("stage1", config.stage1_iterations or config.iterations, config.object_prob),
            (
                "stage2",
                config.stage2_iterations or config.iterations,
                config.object_prob
                if config.stage2_object_prob is None
                else config.stage2_object_prob,
            ),
        ]
    else:
        plan = [("main", config.iterations, config.object_prob)]
    for phase, iterations, object_prob in plan:
        _run_phase(
            model,
            phase,
            iterations=iterations,
            object_prob=object_prob,
            config=config,
            source=source,
            val_source=val_source,
            shapes=shapes,
            rng=rng,
            log=log,
        )
    model.cpu().eval()  # the bundle loads on CPU-only machines
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    extra = {
        "patch": config.patch,
        "iterations": {phase: n for phase, n, _ in plan},
        "divisor": int(getattr(model, "divisor", 1)),
        "margin": int(getattr(model, "margin", 0)),
        "output_shape": list(shapes[1]),
        "object_prob": {phase: p for phase, _, p in plan},
        "train_studies": len(source.ids),
        "train_objects": source.n_objects,
        "config": asdict(config),
    }
    with atomic_dir(out_dir) as tmp:
        save_bundle(
            tmp / "model.pt",
            model,
            arch=arch,
            kwargs=model_kwargs,
            input_shape=[1, 1, *shapes[0]],
            output_kind="logits",
            extra=extra,
        )
        write_csv(history, tmp / "history.csv")
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medrepro lowres-train", description=__doc__)
    parser.add_argument("--studies", type=Path, required=True, help="preprocessed studies.npz")
    parser.add_argument("--table", type=Path, required=True, help="preprocessed studies.csv")
    parser.add_argument("--arch", required=True, help="registry name (medrepro.nets.MODELS)")
    parser.add_argument("--model-kwargs", default="{}", help="JSON object of network arguments")
    parser.add_argument("--iterations", type=int, required=True, help="iterations per phase")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--patch", type=int, required=True, help="output patch side (voxels)")
    parser.add_argument("--object-prob", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--lr-final", type=float, default=1e-3)
    parser.add_argument("--final-fraction", type=float, default=0.2)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd_nesterov")
    parser.add_argument(
        "--output-prior", type=float, default=None, help="initial foreground probability"
    )
    parser.add_argument("--stage1-iterations", type=int, default=None)
    parser.add_argument("--stage2-iterations", type=int, default=None)
    parser.add_argument("--stage2-object-prob", type=float, default=None)
    parser.add_argument("--jitter", type=float, default=0.5, help="object voxel offset fraction")
    parser.add_argument("--study-sampling", choices=("objects", "uniform"), default="objects")
    parser.add_argument("--val-every", type=int, default=0, help="0: no validation")
    parser.add_argument("--val-patches", type=int, default=8)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    kwargs = parse_json_object(args.model_kwargs, parser)
    try:
        config = LowResTrainConfig(
            iterations=args.iterations,
            batch_size=args.batch_size,
            patch=args.patch,
            object_prob=args.object_prob,
            seed=args.seed,
            lr=args.lr,
            lr_final=args.lr_final,
            final_fraction=args.final_fraction,
            stage1_iterations=args.stage1_iterations,
            stage2_iterations=args.stage2_iterations,
            stage2_object_prob=args.stage2_object_prob,
            jitter=args.jitter,
            study_sampling=args.study_sampling,
            val_every=args.val_every,
            val_patches=args.val_patches,
            log_every=args.log_every,
            optimizer=args.optimizer,
            output_prior=args.output_prior,
        )
    except ValueError as err:
        parser.error(str(err))
    set_torch_threads(args.threads)
    train_lowres_model(
        studies=args.studies,
        table=args.table,
        arch=args.arch,
        model_kwargs=kwargs,
        config=config,
        out_dir=args.out_dir,
    )
    return 0
