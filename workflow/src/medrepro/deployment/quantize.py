"""Stage ``quantize``: INT8 post-training quantization of the FP32 IR with NNCF.

``mode="accuracy_control"`` (default) is NNCF's successor of POT's AccuracyAware algorithm,
``nncf.quantize_with_accuracy_control``: quantize everything, then revert the quantizer groups
that hurt the task metric most, one by one, until the drop on the validation split is at most
``max_drop`` (or nothing is left to revert). ``mode="default"`` is plain ``nncf.quantize``.

The metric is the task's ``validate`` (higher is better), run by NNCF on its own compiled models,
which use the f32 precision hint. The INT8 model must therefore be deployed and benchmarked with
the f32 hint too (``precision="int8"`` in :mod:`medrepro.deployment.runtimes`); its metric under
the CPU's default bf16 hint is recorded as ``metric_int8_bf16`` where the CPU has BF16.

``quantization.json`` records ``metric_fp32``, ``metric_int8``, ``drop``, ``max_drop``,
``fake_quantize_total`` (FakeQuantize nodes of a plain ``nncf.quantize`` with the same
calibration data: the fully quantized model), ``fake_quantize_kept`` (FakeQuantize nodes of the
result), ``reverted`` (their difference), ``seconds``, and the operations left in float. Weight
quantizers are folded into INT8 constants by NNCF, so the FakeQuantize counts are those of the
activation quantizers.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrepro.benchmark.sysinfo import package_versions
from medrepro.deployment.export import save_ir
from medrepro.io.atomic import write_json
from medrepro.io.errors import InputError
from medrepro.tasks.base import TaskItems

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

__all__ = [
    "ValidateFn",
    "count_fake_quantize",
    "accuracy_drop",
    "evaluate",
    "quantize_accuracy_aware",
    "main",
]

#: the task's scoring function: ``(outputs, items, index, meta) -> (metric, per_item)``
ValidateFn = Callable[
    [Sequence[np.ndarray], TaskItems, Sequence[int], dict[str, Any]], tuple[float, list[float]]
]

_REVERTED = re.compile(
    r"(\d+) out of (\d+) were reverted back to the floating-point precision:?\s*(.*)", re.S
)
_TOTAL = re.compile(r"Total number of quantized operations in the model: (\d+)")


def count_fake_quantize(model: ov.Model) -> int:
    """Number of ``FakeQuantize`` operations in ``model``."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def _fake_quantize_names(model: ov.Model) -> set[str]:
    return {
        op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
    }


def accuracy_drop(metric_fp32: float, metric_int8: float, drop_type: str = "absolute") -> float:
    """Drop of a higher-is-better metric: ``fp32 - int8``, or that over ``|fp32|`` (relative)."""
    drop = metric_fp32 - metric_int8
    if drop_type == "relative":
        return drop / abs(metric_fp32) if metric_fp32 != 0 else (0.0 if drop == 0 else float("inf"))
    if drop_type != "absolute":
        raise ValueError(f"drop_type must be 'absolute' or 'relative', got {drop_type!r}")
    return drop


def _run_items(compiled: Any, inputs: np.ndarray, index: Sequence[int]) -> list[np.ndarray]:
    """First output of ``compiled`` for each item (batch of 1), copied."""
    request = compiled.create_infer_request()
    outputs = []
    for i in index:
        x = np.ascontiguousarray(inputs[i : i + 1], dtype=np.float32)
        request.infer({0: x}, share_inputs=True, share_outputs=True)
        outputs.append(request.get_output_tensor(0).data.copy())
    return outputs


def _make_validation_fn(
    items: TaskItems, validate_fn: ValidateFn, meta: dict[str, Any]
) -> Callable[[Any, Any], tuple[float, list[float]]]:
    """NNCF ``validation_fn(compiled_model, data_items)``; data items are item indices.

    NNCF first calls it on a single item (to detect metric mode), then on subsets or the whole
    split; every call scores exactly the items it receives.
    """

    def validation_fn(compiled_model: Any, data_items: Any) -> tuple[float, list[float]]:
        index = [int(i) for i in data_items]
        outputs = _run_items(compiled_model, items.inputs, index)
        metric, per_item = validate_fn(outputs, items, index, meta)
        return float(metric), [float(v) for v in per_item]

    return validation_fn


def evaluate(
    model: ov.Model,
    items: TaskItems,
    validate_fn: ValidateFn,
    meta: dict[str, Any],
    threads: int = 1,
    precision: str = "f32",
) -> float:
    """Task metric of ``model`` on all ``items``, compiled with the given precision hint."""
    from medrepro.deployment.runtimes import OpenVINORunner

    runner = OpenVINORunner(model, threads=threads, precision=precision)
    index = list(range(len(items)))
    metric, _ = validate_fn(_run_items(runner.compiled, items.inputs, index), items, index, meta)
    return float(metric)


class _LogCapture(logging.Handler):
    """Collects NNCF's INFO messages (the reverted-operations report)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _reverted_from_log(messages: Sequence[str]) -> tuple[list[str], int | None]:
    """Names NNCF reports as reverted to float, and its count of quantized operations."""
    for message in reversed(messages):
        match = _REVERTED.search(message)
        if match:
            names = [line.strip() for line in match.group(3).splitlines() if line.strip()]
            return names, int(match.group(2))
    totals = [int(m.group(1)) for m in map(_TOTAL.search, messages) if m]
    return [], (totals[-1] if totals else None)


def _float_ops(
    original: ov.Model, full: ov.Model, result: ov.Model, reverted_names: Sequence[str]
) -> list[dict[str, str]]:
    """Operations left in float: NNCF's list if logged, else consumers of removed quantizers."""
    types = {op.get_friendly_name(): op.get_type_name() for op in original.get_ops()}
    if reverted_names:
        return [{"name": n, "type": types.get(n, "?")} for n in reverted_names]
    removed = _fake_quantize_names(full) - _fake_quantize_names(result)
    ops: dict[str, str] = {}
    for op in full.get_ops():
        if op.get_friendly_name() in removed:
            for target in op.output(0).get_target_inputs():
                node = target.get_node()
                ops[node.get_friendly_name()] = node.get_type_name()
    return [{"name": n, "type": t} for n, t in sorted(ops.items())]


def quantize_accuracy_aware(
    ov_model: ov.Model,
    calibration_inputs: np.ndarray,
    validation_items: TaskItems,
    validate_fn: ValidateFn,
    *,
    max_drop: float = 0.01,
    subset_size: int = 32,
    drop_type: str = "absolute",
    threads: int = 1,
    mode: str = "accuracy_control",
    meta: dict[str, Any] | None = None,
    max_iterations: int | None = None,
    target_device: str = "CPU",
    preset: str | None = None,
) -> tuple[ov.Model, dict[str, Any]]:
    """INT8 post-training quantization with (or without) accuracy control.

    Args:
        ov_model: the FP32 model (static input shape matching the items); not modified.
        calibration_inputs: float32 ``(N, C, *spatial)``; items are fed one at a time.
        validation_items: the split the metric is computed on.
        validate_fn: the task's ``validate(outputs, items, index, meta) -> (metric, per_item)``,
            higher is better.
        max_drop: largest acceptable metric drop (``drop_type`` units).
        subset_size: calibration items used (capped at ``N``); also the ranking subset size.
        drop_type: ``"absolute"`` or ``"relative"``.
        threads: inference threads of the models compiled here (NNCF's own compiled models take
            the process's CPU affinity, see :func:`medrepro.deployment.threads.cpu_affinity`).
        mode: ``"accuracy_control"`` or ``"default"`` (plain ``nncf.quantize``).
        meta: the model bundle's metadata, passed to ``validate_fn``.
        max_iterations: cap on reverted groups (NNCF's ``max_num_iterations``); ``None``: no cap.
        target_device: NNCF target device (``"CPU"``, ``"ANY"``...).
        preset: NNCF preset (``"performance"``, ``"mixed"``); ``None``: NNCF's default.

    Returns:
        ``(int8_model, report)``; the report has the fields of ``quantization.json``.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if mode not in ("accuracy_control", "default"):
        raise ValueError(f"mode must be 'accuracy_control' or 'default', got {mode!r}")
    if len(calibration_inputs) == 0 or len(validation_items) == 0:
        raise ValueError("calibration and validation sets must not be empty")
    meta = dict(meta or {})
    started = time.perf_counter()
    calibration = np.ascontiguousarray(calibration_inputs, dtype=np.float32)
    subset = int(min(subset_size, len(calibration)))
    calibration_ds = nncf.Dataset(list(range(len(calibration))), lambda i: calibration[i : i + 1])
    val_inputs = validation_items.inputs
    validation_ds = nncf.Dataset(
        list(range(len(validation_items))), lambda i: val_inputs[i : i + 1]
    )
    common: dict[str, Any] = {
        "subset_size": subset,
        "target_device": nncf.TargetDevice[target_device.upper()],
        "preset": nncf.QuantizationPreset(preset) if preset else None,
    }

    # the fully quantized model (also the result of mode="default")
    full = nncf.quantize(ov_model.clone(), calibration_ds, **common)
    reverted_names: list[str] = []
    num_quantized_ops = None
    if mode == "accuracy_control":
        validation_fn = _make_validation_fn(validation_items, validate_fn, meta)
        restorer = AdvancedAccuracyRestorerParameters(
            ranking_subset_size=int(min(subset, len(validation_items))),
            num_ranking_workers=1,
            **({"max_num_iterations": int(max_iterations)} if max_iterations else {}),
        )
        capture = _LogCapture()
        logger = logging.getLogger("nncf")
        logger.addHandler(capture)
        try:
            result = nncf.quantize_with_accuracy_control(
                ov_model.clone(),
                calibration_ds,
                validation_ds,
                validation_fn,
                max_drop=float(max_drop),
                drop_type=nncf.DropType(drop_type),
                advanced_accuracy_restorer_parameters=restorer,
                **common,
            )
        finally:
            logger.removeHandler(capture)
        reverted_names, num_quantized_ops = _reverted_from_log(capture.messages)
    else:
        result = full
    quantize_seconds = time.perf_counter() - started

    metric_fp32 = evaluate(ov_model, validation_items, validate_fn, meta, threads)
    metric_int8 = evaluate(result, validation_items, validate_fn, meta, threads)
    drop = accuracy_drop(metric_fp32, metric_int8, drop_type)
    total, kept = count_fake_quantize(full), count_fake_quantize(result)
    report: dict[str, Any] = {
        "mode": mode,
        "metric_fp32": metric_fp32,
        "metric_int8": metric_int8,
        "drop": drop,
        "drop_type": drop_type,
        "max_drop": float(max_drop),
        "target_reached": bool(drop <= max_drop),
        "fake_quantize_total": total,
        "fake_quantize_kept": kept,
        "reverted": total - kept,
        "nncf_quantized_operations": num_quantized_ops,
        "float_operations": _float_ops(ov_model, full, result, reverted_names)
        if mode != "default"
        else [],
        "subset_size": subset,
        "n_calibration": len(calibration),
        "n_validation": len(validation_items),
        "target_device": target_device.upper(),
        "validation_precision_hint": "f32",
        "quantize_seconds": quantize_seconds,
    }
    from medrepro.deployment.runtimes import cpu_supports

    if cpu_supports("bf16"):
        report["metric_int8_bf16"] = evaluate(
            result, validation_items, validate_fn, meta, threads, "bf16"
        )
    if not report["target_reached"]:
        report["note"] = (
            f"could not reach max_drop={max_drop}: drop {drop:.4g} ({drop_type}) after reverting"
        )
    report["seconds"] = time.perf_counter() - started
    return result, report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medrepro quantize", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--bundle", type=Path, required=True, help="model bundle (.pt), for its metadata"
    )
    parser.add_argument("--ir", type=Path, required=True, help="FP32 IR (.xml)")
    parser.add_argument("--task", required=True, help="task name (medrepro.tasks.TASKS)")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True)
    parser.add_argument("--calibration-split", default="train")
    parser.add_argument("--validation-split", default="val")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--drop-type", choices=["absolute", "relative"], default="absolute")
    parser.add_argument("--subset-size", type=int, default=32)
    parser.add_argument(
        "--mode", choices=["accuracy_control", "default"], default="accuracy_control"
    )
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--target-device", default="CPU")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``quantize`` stage."""
    args = _parser().parse_args(argv)
    from medrepro.deployment.threads import cpu_affinity, set_torch_threads
    from medrepro.tasks import get_task

    for path in (args.bundle, args.ir, args.dataset, args.splits):
        if not path.is_file():
            raise InputError(path, "file not found")
    try:
        task = get_task(args.task)
    except KeyError as err:
        raise InputError(args.dataset, str(err)) from err
    with cpu_affinity(args.threads):
        import openvino as ov

        from medrepro.nets.bundle import load_bundle

        set_torch_threads(args.threads)
        _, meta = load_bundle(args.bundle)
        calibration = task.load_items(args.dataset, args.splits, args.calibration_split)
        validation = task.load_items(args.dataset, args.splits, args.validation_split)
        ov_model = ov.Core().read_model(str(args.ir))
        shape = [1, *calibration.inputs.shape[1:]]
        if list(validation.inputs.shape[1:]) != shape[1:]:
            raise InputError(args.dataset, "calibration and validation inputs differ in shape")
        ir_shape = ov_model.inputs[0].get_partial_shape()
        if ir_shape.is_dynamic or list(ir_shape.to_shape()) != shape:
            ov_model.reshape({ov_model.inputs[0]: ov.PartialShape(shape)})
        print(
            f"[quantize] {args.mode}: {len(calibration)} calibration / {len(validation)} validation items, "
            f"max_drop {args.max_drop} ({args.drop_type})",
            file=sys.stderr,
        )
        model, report = quantize_accuracy_aware(
            ov_model,
            calibration.inputs,
            validation,
            task.validate,
            max_drop=args.max_drop,
            subset_size=args.subset_size,
            drop_type=args.drop_type,
            threads=args.threads,
            mode=args.mode,
            meta=meta,
            max_iterations=args.max_iterations,
            target_device=args.target_device,
        )
    report.update(
        task=args.task,
        metric_name=getattr(task, "metric_name", ""),
        metric_unit=getattr(task, "metric_unit", ""),
        input_shape=shape,
        ir=str(args.ir),
        versions=package_versions(["nncf", "openvino", "numpy"]),
    )
    save_ir(model, args.out_dir / "model_int8.xml", compress_to_fp16=False)
    write_json(args.out_dir / "quantization.json", report)
    print(
        f"[quantize] metric fp32 {report['metric_fp32']:.5g} int8 {report['metric_int8']:.5g} "
        f"drop {report['drop']:.4g}; FakeQuantize kept {report['fake_quantize_kept']}/{report['fake_quantize_total']} "
        f"in {report['seconds']:.1f} s",
        file=sys.stderr,
    )
    return 0
