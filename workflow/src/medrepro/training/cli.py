"""Stage ``train``: train one model of the registry for one task."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from medrepro.deployment.threads import set_torch_threads
from medrepro.training.loop import OPTIMIZERS, TrainConfig

__all__ = ["main"]

#: task -> "module:function" of its trainer (keyword arguments as in ``train_landmarks``)
TRAINERS = {
    "cephalometry": "medrepro.training.landmarks:train_landmarks",
    "brain_extraction": "medrepro.training.segmentation:train_segmentation",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medrepro train", description=__doc__)
    parser.add_argument("--task", required=True, choices=sorted(TRAINERS))
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument(
        "--model-kwargs", default="{}", help="JSON object of architecture arguments"
    )
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    set_torch_threads(args.threads)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        optimizer=args.optimizer,
    )
    module, function = TRAINERS[args.task].split(":")
    trainer = getattr(importlib.import_module(module), function)
    trainer(
        task_name=args.task,
        dataset=args.dataset,
        splits=args.splits,
        arch=args.arch,
        model_kwargs=json.loads(args.model_kwargs),
        config=config,
        out_dir=args.out_dir,
    )
    return 0
