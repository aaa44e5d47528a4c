"""Stage ``yolo-evaluate``: the best YOLO model on the test images with PyTorch and OpenVINO.

Configurations (:data:`CONFIGS`): ``pytorch_fp32`` (the bundle, eager), ``openvino_fp32`` (the
FP32 IR with the explicit ``f32`` precision hint) and ``openvino_int8`` (the accuracy-controlled
INT8 IR, also run with the ``f32`` hint, the precision NNCF validated its float parts at). Every
configuration sees the same inputs: the dataset's images / 255, resized to the bundle's input
size if the dataset is larger (as ``yolo-train`` does), one image at a time at the static shape
``1 x 3 x I x I``. The top-confidence box of each image is scored as in the paper
(:func:`medrepro.metrics.detection.detection_scores`: AP = mean IoU over annotated images, F1,
TP, FP, FN at ``--conf-threshold``).

Outputs (atomic): ``deployment.csv`` (:data:`DEPLOYMENT_COLUMNS`, one row per configuration;
``seconds_per_image`` is the mean wall time of the network call after one untimed warm-up, a
rough figure: latency is measured by the ``benchmark`` stage) and ``predictions.csv``
(:data:`PREDICTION_COLUMNS`; ``iou`` is the geometric IoU of the top box whatever its
confidence, NaN for images without annotation).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from medrepro.io.atomic import write_csv
from medrepro.io.errors import InputError
from medrepro.metrics.detection import detection_scores, iou
from medrepro.tasks.base import TaskItems
from medrepro.tasks.cerebellum_yolo import TASK, grid_shape, outputs_to_raw
from medrepro.transforms.yolo_grid import decode_top_box

if TYPE_CHECKING:  # pragma: no cover
    from medrepro.deployment.runtimes import Runner

__all__ = [
    "CONFIGS",
    "DEPLOYMENT_COLUMNS",
    "PREDICTION_COLUMNS",
    "fit_inputs",
    "score_outputs",
    "evaluate",
    "main",
]

#: configuration -> (framework, precision, runtime precision given to ``make_runner``)
CONFIGS: dict[str, tuple[str, str, str]] = {
    "pytorch_fp32": ("pytorch", "fp32", "f32"),
    "openvino_fp32": ("openvino", "fp32", "f32"),
    "openvino_int8": ("openvino", "int8", "int8"),
}
#: columns of ``deployment.csv``
DEPLOYMENT_COLUMNS = [
    "config",
    "framework",
    "precision",
    "ap",
    "f1",
    "tp",
    "fp",
    "fn",
    "n_images",
    "n_annotated",
    "mean_conf",
    "conf_threshold",
    "seconds_per_image",
]
#: columns of ``predictions.csv``
PREDICTION_COLUMNS = [
    "config",
    "image_id",
    "cx",
    "cy",
    "w",
    "h",
    "conf",
    "gt_cx",
    "gt_cy",
    "gt_w",
    "gt_h",
    "iou",
]


def fit_inputs(inputs: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Resize ``(N, 3, H, W)`` inputs to the bundle's ``input_shape`` ``[1, 3, I, I]`` if needed."""
    size = int(input_shape[-1])
    if inputs.shape[2:] == (int(input_shape[-2]), size):
        return inputs
    from medrepro.training.detection import resize_inputs

    return resize_inputs(inputs, size)


def score_outputs(
    outputs: Sequence[np.ndarray],
    items: TaskItems,
    meta: Mapping[str, Any],
    conf_threshold: float,
    config: str,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Scores and per-image predictions of one configuration's raw outputs (one per item).

    Returns:
        ``(scores, predictions)``: the :func:`detection_scores` dict plus ``mean_conf``, and the
        :data:`PREDICTION_COLUMNS` table.
    """
    S, B, C = grid_shape(dict(meta))
    raw = outputs_to_raw(outputs, S, B, C)
    boxes, conf = decode_top_box(raw, B)
    boxes, conf = np.asarray(boxes, dtype=np.float64), np.asarray(conf, dtype=np.float64)
    gt = np.asarray(items.extra["boxes"], dtype=np.float64)
    has = np.asarray(items.extra["has_object"], dtype=bool)
    scores = dict(detection_scores(boxes, conf, gt, has, conf_threshold=conf_threshold))
    scores["mean_conf"] = float(conf.mean())
    overlap = np.asarray(iou(boxes, np.where(has[:, None], gt, 0.5)), dtype=np.float64)
    table = pd.DataFrame(
        {
            "config": config,
            "image_id": list(items.case_id),
            **{k: boxes[:, j] for j, k in enumerate(("cx", "cy", "w", "h"))},
            "conf": conf,
            **{f"gt_{k}": gt[:, j] for j, k in enumerate(("cx", "cy", "w", "h"))},
            "iou": np.where(has, overlap, np.nan),
        },
        columns=PREDICTION_COLUMNS,
    )
    return scores, table


def evaluate(
    items: TaskItems,
    runners: Mapping[str, Callable[[], Runner]],
    meta: Mapping[str, Any],
    conf_threshold: float,
    log: Callable[[str], Any] = print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every configuration on every item; score the top boxes.

    Args:
        items: the test items (:meth:`CerebellumYoloTask.load_items`), inputs already at the
            network size.
        runners: configuration name (a key of :data:`CONFIGS`) -> factory of its runner; each
            is built once, warmed up once (untimed) and released before the next.
        meta: the bundle's metadata (``extra`` with ``S, B, C``).
        conf_threshold: detection threshold (F1, FP).
        log: progress messages.

    Returns:
        ``(deployment, predictions)`` tables.
    """
    rows, tables = [], []
    for name, factory in runners.items():
        framework, precision, _ = CONFIGS[name]
        runner = factory()
        runner.infer(items.inputs[:1])
        outputs, seconds = [], []
        for i in range(len(items)):
            t0 = time.perf_counter()
            outputs.append(np.asarray(runner.infer(items.inputs[i : i + 1])))
            seconds.append(time.perf_counter() - t0)
        del runner
        gc.collect()
        scores, table = score_outputs(outputs, items, meta, conf_threshold, name)
        rows.append(
            {
                "config": name,
                "framework": framework,
                "precision": precision,
                **{k: scores[k] for k in DEPLOYMENT_COLUMNS if k in scores},
                "conf_threshold": conf_threshold,
                "seconds_per_image": float(np.mean(seconds)),
            }
        )
        tables.append(table)
        log(f"[yolo-evaluate] {name}: AP {scores['ap']:.4f} F1 {scores['f1']:.3f}")
    return (
        pd.DataFrame(rows, columns=DEPLOYMENT_COLUMNS),
        pd.concat(tables, ignore_index=True),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro yolo-evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bundle", type=Path, required=True, help="models/best/model.pt")
    parser.add_argument("--ir-fp32", type=Path, help="export/model_fp32.xml")
    parser.add_argument("--ir-int8", type=Path, help="int8/model_int8.xml")
    parser.add_argument("--dataset", type=Path, required=True, help="preprocessed/dataset.npz")
    parser.add_argument("--splits", type=Path, required=True, help="splits.csv")
    parser.add_argument("--split", default="test")
    parser.add_argument("--conf-threshold", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), help="default: all"
    )
    parser.add_argument("--out", type=Path, required=True, help="deployment.csv")
    parser.add_argument("--predictions-out", type=Path, required=True, help="predictions.csv")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``yolo-evaluate`` stage."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.conf_threshold <= 1.0:
        parser.error(f"--conf-threshold must be in [0, 1], got {args.conf_threshold}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    names = [n for n in CONFIGS if n in args.configs]
    paths: dict[str, Path] = {}
    for name in names:
        option = "bundle" if name == "pytorch_fp32" else name.replace("openvino_", "ir_")
        path = getattr(args, option)
        if path is None:
            parser.error(f"configuration {name} needs --{option.replace('_', '-')}")
        if not Path(path).is_file():
            raise InputError(path, f"model file of configuration {name} not found")
        paths[name] = Path(path)
    if not args.bundle.is_file():
        raise InputError(args.bundle, "file not found")

    from medrepro.deployment.runtimes import make_runner
    from medrepro.deployment.threads import set_torch_threads
    from medrepro.nets.bundle import load_bundle

    set_torch_threads(args.threads)
    model, meta = load_bundle(args.bundle)
    try:
        grid_shape(meta)
    except ValueError as err:
        raise InputError(args.bundle, str(err)) from err
    items = TASK.load_items(args.dataset, args.splits, args.split)
    items.inputs = fit_inputs(items.inputs, meta["input_shape"])
    shape = [1, *items.inputs.shape[1:]]

    def factory(name: str) -> Callable[[], Runner]:
        _, _, runtime_precision = CONFIGS[name]
        if name == "pytorch_fp32":
            return lambda: make_runner("pytorch", model, args.threads, "f32")
        return lambda: make_runner(
            "openvino", paths[name], args.threads, runtime_precision, shape=shape
        )

    deployment, predictions = evaluate(
        items,
        {name: factory(name) for name in names},
        meta,
        args.conf_threshold,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    write_csv(predictions, args.predictions_out)
    write_csv(deployment, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
