"""Stage ``ceph-evaluate``: landmarks of the test split by PyTorch FP32, OpenVINO FP32 and INT8.

Every backend runs the same preprocessed inputs; predictions are decoded to LPS mm in the
original image space, where the radial error to the ground truth is measured.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.io.atomic import write_csv
from medrepro.metrics.landmarks import radial_errors
from medrepro.tasks.cephalometry import TASK

__all__ = ["predictions_table", "main"]


def predictions_table(
    backend: str,
    pred_mm: np.ndarray,
    gt_mm: np.ndarray,
    case_id: list[str],
    patient_id: list[str],
    labels: list[str],
) -> pd.DataFrame:
    """Long table: one row per (case, landmark) with predicted and true LPS mm and the error."""
    errors = radial_errors(pred_mm, gt_mm)
    rows = []
    for i, case in enumerate(case_id):
        for k, label in enumerate(labels):
            rows.append(
                {
                    "case_id": case,
                    "patient_id": patient_id[i],
                    "backend": backend,
                    "landmark": label,
                    **{f"pred_{a}": pred_mm[i, k, j] for j, a in enumerate("xyz")},
                    **{f"gt_{a}": gt_mm[i, k, j] for j, a in enumerate("xyz")},
                    "error_mm": errors[i, k],
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medrepro ceph-evaluate", description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--ir-fp32", type=Path, required=True)
    parser.add_argument("--ir-int8", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from medrepro.deployment.runtimes import OpenVINORunner, TorchRunner
    from medrepro.nets.bundle import load_bundle

    items = TASK.load_items(args.dataset, args.splits, args.split)
    model, meta = load_bundle(args.bundle)
    runners = {
        "pytorch_fp32": TorchRunner(model, threads=args.threads),
        "openvino_fp32": OpenVINORunner(args.ir_fp32, threads=args.threads, precision="f32"),
        "openvino_int8": OpenVINORunner(args.ir_int8, threads=args.threads, precision="f32"),
    }
    index = list(range(len(items)))
    tables = []
    for backend, runner in runners.items():
        outputs = [runner.infer(items.inputs[i : i + 1]) for i in index]
        pred = TASK.predict_mm(outputs, items, index, meta)
        tables.append(
            predictions_table(
                backend,
                pred,
                items.extra["landmarks_mm"],
                items.case_id,
                [str(p) for p in items.extra["patient_id"]],
                items.extra["labels"],
            )
        )
        print(f"{backend}: mean error {np.mean(tables[-1]['error_mm']):.3f} mm", flush=True)
    write_csv(pd.concat(tables, ignore_index=True), args.out)
    return 0
