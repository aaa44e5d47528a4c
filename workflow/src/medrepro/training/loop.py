"""A small, seeded, resumable training loop shared by the papers' trainers.

The loop checkpoints after every epoch (model, optimiser, history, best weights) into
``<out_dir>/checkpoints/last.pt``. Rerun after an interruption with the same settings, it resumes
from that checkpoint; with other settings (a different fingerprint) it starts afresh. Batches of
epoch ``e`` are drawn from a generator seeded by ``(seed, e)``, so a resumed run sees the same
batches as an uninterrupted one.

Training runs on :func:`medrepro.training.device.training_device` (CUDA when present, else the
CPU; ``MEDREPRO_DEVICE``). Checkpoints hold CPU tensors and the trained model is returned on the
CPU, so both load on CPU-only machines.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from medrepro.io.atomic import atomic_path
from medrepro.training.device import to_device, training_device

__all__ = [
    "OPTIMIZERS",
    "TrainConfig",
    "seed_everything",
    "fingerprint",
    "make_optimizer",
    "fit",
    "parse_json_object",
]

Batch = tuple[torch.Tensor, torch.Tensor]


#: optimiser names accepted by :class:`TrainConfig`
OPTIMIZERS = ("adam", "sgd_nesterov")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (an optimiser with a cosine learning-rate decay).

    ``optimizer``: ``"adam"`` (default) or ``"sgd_nesterov"`` (SGD, momentum 0.9, Nesterov: the
    BrainMaGe paper's). ``weight_decay`` applies to both.
    """

    epochs: int
    batch_size: int
    lr: float
    seed: int
    weight_decay: float = 1e-5
    optimizer: str = "adam"


def make_optimizer(
    params: Iterable[torch.nn.Parameter], config: TrainConfig
) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` (see :data:`OPTIMIZERS`).

    Raises:
        ValueError: unknown optimiser name.
    """
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd_nesterov":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected one of {OPTIMIZERS}")


def parse_json_object(
    text: str, parser: argparse.ArgumentParser, flag: str = "--model-kwargs"
) -> dict[str, Any]:
    """A command-line JSON object (e.g. ``--model-kwargs``) -> dict; a parser error otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"{flag} is not JSON: {err}")
    if not isinstance(value, dict):
        parser.error(f"{flag} must be a JSON object")
    return value


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of JSON-serialisable settings: resume only into identical settings."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit(
    model: torch.nn.Module,
    batches: Callable[[np.random.Generator], Iterable[Batch]],
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    validate: Callable[[torch.nn.Module], tuple[float, float]],
    config: TrainConfig,
    out_dir: Path,
    settings_hash: str,
    device: torch.device | str | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train ``model``; return it with the weights of its best validation epoch, and the history.

    Args:
        model: the network, in its initial state.
        batches: given an epoch's generator, yields ``(inputs, targets)`` tensors.
        loss_fn: ``loss_fn(model_output, targets)``, a scalar tensor.
        validate: ``validate(model) -> (val_loss, val_metric)``; higher metric is better. The
            model is on the training device: ``validate`` moves its inputs there
            (:func:`~medrepro.training.device.module_device`) and the outputs back.
        config: optimisation settings.
        out_dir: where ``checkpoints/last.pt`` lives.
        settings_hash: fingerprint of everything that defines the run (see :func:`fingerprint`).
        device: where to train; None: :func:`~medrepro.training.device.training_device`.

    Returns:
        ``(model, history)``, the model on the CPU in eval mode; history columns ``epoch,
        train_loss, val_loss, val_metric, seconds``.
    """
    checkpoint = Path(out_dir) / "checkpoints" / "last.pt"
    device = training_device() if device is None else torch.device(device)
    model.to(device)
    optimiser = make_optimizer(model.parameters(), config)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(config.epochs, 1))
    history: list[dict[str, float]] = []
    best_state, best_metric, start = copy.deepcopy(model.state_dict()), -np.inf, 0

    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state.get("settings_hash") == settings_hash:
            model.load_state_dict(state["model"])  # copied onto the model's device
            optimiser.load_state_dict(state["optimiser"])  # moved to its parameters' device
            schedule.load_state_dict(state["schedule"])
            history, best_state, best_metric = (
                state["history"],
                state["best_state"],
                state["best_metric"],
            )
            start = len(history)
            print(f"resuming from {checkpoint} after epoch {start}", flush=True)
        else:
            print(f"ignoring {checkpoint}: it belongs to other settings", flush=True)

    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(config.seed * 100_003 + epoch)
        rng = np.random.default_rng([config.seed, epoch])
        model.train()
        losses = []
        progress = tqdm(
            batches(rng), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False
        )
        for inputs, targets in progress:
            inputs, targets = to_device((inputs, targets), device)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            progress.set_postfix(loss=f"{losses[-1]:.4g}")
        schedule.step()
        model.eval()
        val_loss, val_metric = validate(model)
        if val_metric > best_metric:
            best_metric, best_state = val_metric, copy.deepcopy(model.state_dict())
        row = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_loss": float(val_loss),
            "val_metric": float(val_metric),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        print(json.dumps(row), flush=True)
        state = {
            "settings_hash": settings_hash,
            "config": asdict(config),
            "model": to_device(model.state_dict(), "cpu"),
            "optimiser": to_device(optimiser.state_dict(), "cpu"),
            "schedule": schedule.state_dict(),
            "history": history,
            "best_state": to_device(best_state, "cpu"),
            "best_metric": best_metric,
        }
        with atomic_path(checkpoint) as tmp:
            torch.save(state, tmp)

    model.load_state_dict(best_state)
    model.cpu().eval()
    return model, pd.DataFrame(
        history, columns=["epoch", "train_loss", "val_loss", "val_metric", "seconds"]
    )
