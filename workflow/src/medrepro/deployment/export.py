"""Stage ``export``: PyTorch -> ONNX and OpenVINO IR (FP32 and FP16 weights), with a parity check.

Artefacts (docs/architecture.md): ``model.onnx``, ``model_fp32.xml/.bin`` (true FP32 storage,
``compress_to_fp16=False``), ``model_fp16.xml/.bin`` (FP16 weight storage, OpenVINO's default) and
``parity.json``: the max absolute difference to PyTorch of ONNX Runtime, OpenVINO FP32, OpenVINO
FP16-weights and OpenVINO-from-ONNX on held-out inputs, every OpenVINO model run with the f32
precision hint (otherwise a CPU with native BF16 would silently run bf16).

Routes and pitfalls:

- ONNX is exported with the TorchScript ("legacy", ``dynamo=False``) exporter at opset 17 with
  dynamic batch and spatial axes, so ONNX Runtime can run the paper's shape or other batch sizes
  from a model traced at the training shape. It is exact for Conv3d, InstanceNorm, GroupNorm,
  trilinear upsampling and ConvTranspose3d, and 10x faster than the dynamo exporter, which is
  kept as ``route="dynamo"`` (``dynamic_shapes`` with ``Dim.AUTO``; it emits opset 18 and
  down-converts). Opsets below 11 are refused: ``Resize-10`` has no coordinate transformation
  mode and trilinear upsampling is then wrong by O(1).
- The IR is converted directly from the module (``ov.convert_model(model, example_input=x,
  input=x.shape)``): static shape, no ONNX detour. ``example_input`` alone would give a fully
  dynamic input and lose CPU optimisations.
- ``GroupNormalization`` is decomposed into ``Reshape -> MVN -> Reshape -> Mul -> Add`` in the
  IR (:func:`decompose_group_norm`): the OpenVINO 2026.4 CPU plugin segfaults when compiling
  some GroupNorm + activation + residual graphs (the hourglass's ResNeXt blocks) with the f32
  hint. The ONNX route yields the same decomposition.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrepro.benchmark.sysinfo import package_versions
from medrepro.io.atomic import atomic_path, write_json
from medrepro.io.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov
    import torch

__all__ = [
    "TOLERANCES",
    "export_onnx",
    "export_ir",
    "decompose_group_norm",
    "save_ir",
    "ir_from_onnx",
    "parity",
    "parity_report",
    "load_inputs",
    "main",
]

#: (atol, rtol) per route: a route passes if max|y - y_torch| <= atol + rtol * max|y_torch|.
#: FP32 routes differ from PyTorch by summation order only (1e-7 to 1e-5 for IN/GN nets);
#: FP16 weight storage rounds every weight by up to 2**-11 relative, hence the looser bound.
#: These are sanity bounds that catch conversion bugs (e.g. the opset-10 trilinear error of
#: O(1)), not accuracy claims; the task metric is compared in ``quantize``/evaluation.
TOLERANCES: dict[str, tuple[float, float]] = {
    "onnxruntime": (1e-4, 1e-4),
    "openvino_fp32": (1e-4, 1e-4),
    "openvino_from_onnx": (1e-4, 1e-4),
    "openvino_fp16": (1e-2, 1e-2),
}


def _n_outputs(model: torch.nn.Module, example: torch.Tensor) -> int:
    """Number of tensors the model returns (nested tuples/lists/dicts flattened)."""
    import torch
    from torch.utils._pytree import tree_leaves

    with torch.inference_mode():
        return len([t for t in tree_leaves(model(example)) if isinstance(t, torch.Tensor)])


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: str | Path,
    opset: int = 17,
    dynamic: bool = True,
    route: str = "legacy",
) -> Path:
    """Export ``model`` to ONNX, atomically.

    Args:
        model: the network (exported in eval mode).
        example: an input batch ``(N, C, *spatial)`` that fixes the traced graph.
        path: the ``.onnx`` file to write.
        opset: ONNX opset, at least 11 (17 recommended).
        dynamic: make the batch and all spatial axes of the input dynamic (and axis 0 of
            every output), so ONNX Runtime accepts other shapes.
        route: ``"legacy"`` (TorchScript exporter, ``dynamic_axes``) or ``"dynamo"``
            (``torch.export``, ``dynamic_shapes``).

    Returns:
        ``path``.
    """
    import onnx
    import torch

    if opset < 11:
        raise ValueError(
            f"opset {opset} < 11 exports trilinear Resize with wrong coordinates; use >= 11"
        )
    model = model.eval()
    path = Path(path)
    spatial_axes = list(range(2, example.dim()))
    n_out = _n_outputs(model, example)
    output_names = ["output"] + [f"output{i}" for i in range(1, n_out)]
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if route == "legacy":
            axes = {0: "batch", **{a: f"dim{a}" for a in spatial_axes}}
            dynamic_axes = (
                {"input": axes, **{name: {0: "batch"} for name in output_names}}
                if dynamic
                else None
            )
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                opset_version=opset,
                dynamo=False,
                input_names=["input"],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        elif route == "dynamo":
            auto = torch.export.Dim.AUTO
            shapes = ({0: auto, **dict.fromkeys(spatial_axes, auto)},) if dynamic else None
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                opset_version=opset,
                dynamo=True,
                input_names=["input"],
                output_names=output_names,
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
            )
        else:
            raise ValueError(f"route must be 'legacy' or 'dynamo', got {route!r}")
        onnx.checker.check_model(str(tmp))
    return path


def save_ir(ov_model: ov.Model, xml_path: str | Path, compress_to_fp16: bool) -> Path:
    """Save an IR atomically: both files are written in a temporary directory, then moved.

    The ``.bin`` is moved first, so an ``.xml`` on disk always has its weights beside it.
    """
    import openvino as ov

    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", suffix=".tmp", dir=xml_path.parent))
    try:
        ov.save_model(ov_model, str(tmp / xml_path.name), compress_to_fp16=compress_to_fp16)
        os.replace(tmp / xml_path.with_suffix(".bin").name, xml_path.with_suffix(".bin"))
        os.replace(tmp / xml_path.name, xml_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml_path


def decompose_group_norm(ov_model: ov.Model) -> int:
    """Replace every ``GroupNormalization`` by ``Reshape -> MVN -> Reshape -> Multiply -> Add``.

    Works around a crash of the OpenVINO 2026.4 CPU plugin: compiling with the f32 precision
    hint segfaults on ``GroupNormalization -> ReLU/LeakyReLU`` whose output also feeds a residual
    ``Add`` after another GroupNormalization, for small groups (GN(8) on 16 channels) and small
    volumes (e.g. 16x16x8); bf16 compiles. It hits the stacked hourglass (ResNeXt blocks with
    GN(8)). The decomposition is the graph the ONNX route produces (which compiles), and the CPU
    plugin lowers GroupNormalization to MVN anyway. The model is modified in place.

    Returns:
        The number of replaced nodes.
    """
    import openvino.opset13 as ops

    count = 0
    for node in list(ov_model.get_ordered_ops()):
        if node.get_type_name() != "GroupNormalization":
            continue
        attrs = node.get_attributes()
        x, scale, bias = (node.input_value(i) for i in range(3))
        rank = x.get_partial_shape().rank.get_length()
        name = node.get_friendly_name()
        grouped = ops.reshape(
            x, ops.constant(np.array([0, attrs["num_groups"], -1], np.int64)), special_zero=True
        )
        mvn = ops.mvn(
            grouped,
            ops.constant(np.array([2], np.int64)),
            True,
            float(attrs["epsilon"]),
            "inside_sqrt",
        )
        mvn.set_friendly_name(f"{name}/MVN")
        restored = ops.reshape(mvn, ops.shape_of(x, "i64"), special_zero=False)
        per_channel = ops.constant(np.array([1, -1] + [1] * (rank - 2), np.int64))
        out = ops.add(
            ops.multiply(restored, ops.reshape(scale, per_channel, special_zero=False)),
            ops.reshape(bias, per_channel, special_zero=False),
        )
        out.set_friendly_name(name)
        node.output(0).replace(out.output(0))
        count += 1
    if count:
        ov_model.validate_nodes_and_infer_types()
    return count


def export_ir(
    model: torch.nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    xml_path: str | Path,
    compress_to_fp16: bool,
    dynamo: bool = False,
    decompose_gn: bool = True,
    input_shapes: Sequence[Sequence[int]] | None = None,
) -> ov.Model:
    """Convert ``model`` to an OpenVINO IR with the static shape of ``example`` and save it.

    Args:
        model: the network (converted in eval mode; see openvino#37954 for why).
        example: input batch, or a tuple of them for a network with several inputs; its
            shape becomes the IR's static input shape unless ``input_shapes`` is given.
        xml_path: the ``.xml`` to write (the ``.bin`` goes beside it).
        compress_to_fp16: store weights as FP16 (OpenVINO's default) or as true FP32.
        dynamo: convert through ``torch.export`` instead of TorchScript tracing.
        decompose_gn: replace GroupNormalization by MVN (see :func:`decompose_group_norm`).
        input_shapes: one shape per input, ``-1`` for a dynamic axis (e.g. ``[1, C, -1, -1, -1]``).

    Returns:
        The converted (uncompressed, in-memory) ``ov.Model``.
    """
    import openvino as ov
    import torch

    examples = example if isinstance(example, tuple) else (example,)
    shapes = input_shapes if input_shapes is not None else [list(t.shape) for t in examples]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ov_model = ov.convert_model(
            model.eval(),
            example_input=example,
            input=[ov.PartialShape([int(s) for s in shape]) for shape in shapes],
            dynamo=dynamo,
        )
    if decompose_gn:
        decompose_group_norm(ov_model)
    save_ir(ov_model, xml_path, compress_to_fp16)
    return ov_model


def ir_from_onnx(onnx_path: str | Path, shape: Sequence[int]) -> ov.Model:
    """Convert an ONNX file to an ``ov.Model`` with a static input ``shape`` (batch first)."""
    import openvino as ov

    return ov.convert_model(str(onnx_path), input=[ov.PartialShape([int(s) for s in shape])])


def _parity(
    model: torch.nn.Module, paths: Mapping[str, str | Path], inputs: np.ndarray, threads: int = 1
) -> tuple[dict[str, float], float, list[int]]:
    """Max abs differences per route, max |y_torch| and the output shape of one item."""
    from medrepro.deployment.runtimes import OnnxRunner, OpenVINORunner, TorchRunner

    shape = [1, *inputs.shape[1:]]
    runners: dict[str, Any] = {}
    if paths.get("onnx"):
        runners["onnxruntime"] = OnnxRunner(paths["onnx"], threads)
    if paths.get("ir_fp32"):
        runners["openvino_fp32"] = OpenVINORunner(paths["ir_fp32"], threads, "f32", shape=shape)
    if paths.get("ir_fp16"):
        runners["openvino_fp16"] = OpenVINORunner(paths["ir_fp16"], threads, "f32", shape=shape)
    if paths.get("onnx"):
        runners["openvino_from_onnx"] = OpenVINORunner(
            ir_from_onnx(paths["onnx"], shape), threads, "f32"
        )
    reference = TorchRunner(model, threads)
    diffs = dict.fromkeys(runners, 0.0)
    scale = 0.0
    out_shape: list[int] = []
    for i in range(len(inputs)):
        x = inputs[i : i + 1]
        ref = reference.infer(x).astype(np.float64)
        scale = max(scale, float(np.abs(ref).max(initial=0.0)))
        out_shape = list(ref.shape)
        for name, runner in runners.items():
            y = runner.infer(x)
            if y.shape != ref.shape:
                raise ValueError(f"{name}: output shape {y.shape} != PyTorch {ref.shape}")
            diffs[name] = max(
                diffs[name], float(np.abs(y.astype(np.float64) - ref).max(initial=0.0))
            )
    return diffs, scale, out_shape


def parity(
    model: torch.nn.Module, paths: Mapping[str, str | Path], inputs: np.ndarray, threads: int = 1
) -> dict[str, float]:
    """Max absolute difference to PyTorch of every exported route, over ``inputs``.

    Args:
        model: the PyTorch reference.
        paths: any of ``onnx`` (-> ``onnxruntime`` and ``openvino_from_onnx``), ``ir_fp32``
            (-> ``openvino_fp32``) and ``ir_fp16`` (-> ``openvino_fp16``). OpenVINO runs with the
            f32 precision hint, reshaped to the inputs' shape.
        inputs: float32 ``(N, C, *spatial)``; items are run one at a time (batch 1).
        threads: inference threads of every runtime.

    Returns:
        route -> max abs difference over all items and output elements.
    """
    return _parity(model, paths, inputs, threads)[0]


def parity_report(diffs: Mapping[str, float], scale: float) -> dict[str, Any]:
    """``tolerance`` and ``tolerance_ok`` entries for ``parity.json`` (see :data:`TOLERANCES`)."""
    tolerance = {name: TOLERANCES[name][0] + TOLERANCES[name][1] * scale for name in diffs}
    return {
        "tolerance": tolerance,
        "tolerance_rule": "max_abs_diff <= atol + rtol * max|y_torch|",
        "tolerance_atol_rtol": {name: list(TOLERANCES[name]) for name in diffs},
        "tolerance_ok": {name: bool(diffs[name] <= tolerance[name]) for name in diffs},
    }


def load_inputs(path: str | Path, max_items: int | None = None) -> np.ndarray:
    """Read ``inputs`` ``(N, C, *spatial)`` float32 from an ``inputs.npz``; keep ``max_items``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "inputs" not in data:
                raise InputError(path, f"no 'inputs' array (keys: {sorted(data.files)})")
            inputs = np.asarray(data["inputs"])
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read npz ({err})") from err
    if inputs.ndim < 3 or len(inputs) == 0:
        raise InputError(
            path, f"'inputs' must be (N, C, *spatial) with N > 0, got shape {inputs.shape}"
        )
    if not np.issubdtype(inputs.dtype, np.floating) or not np.isfinite(inputs).all():
        raise InputError(path, "'inputs' must be finite floating-point values")
    return np.ascontiguousarray(inputs[:max_items], dtype=np.float32)


def _onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medrepro export", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle (.pt)")
    parser.add_argument(
        "--inputs", type=Path, required=True, help="inputs.npz with 'inputs' (N, C, ...) float32"
    )
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-items", type=int, default=4, help="held-out items used for parity")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--onnx-route", choices=["legacy", "dynamo"], default="legacy")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if a route exceeds its tolerance"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``export`` stage."""
    args = _parser().parse_args(argv)
    import torch

    from medrepro.deployment.threads import set_torch_threads
    from medrepro.nets.bundle import load_bundle

    set_torch_threads(args.threads)
    inputs = load_inputs(args.inputs, args.max_items)
    if not args.bundle.is_file():
        raise InputError(args.bundle, "model bundle not found")
    model, meta = load_bundle(args.bundle)
    shape = [int(s) for s in meta.get("input_shape") or [1, *inputs.shape[1:]]]
    if list(inputs.shape[1:]) == shape[1:]:
        example = torch.from_numpy(inputs[:1].copy())
    else:
        example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = args.out_dir
    paths = {
        "onnx": out / "model.onnx",
        "ir_fp32": out / "model_fp32.xml",
        "ir_fp16": out / "model_fp16.xml",
    }
    print(f"[export] ONNX opset {args.opset} ({args.onnx_route}) at {shape}", file=sys.stderr)
    export_onnx(model, example, paths["onnx"], opset=args.opset, route=args.onnx_route)
    print("[export] OpenVINO IR FP32 and FP16", file=sys.stderr)
    export_ir(model, example, paths["ir_fp32"], compress_to_fp16=False)
    export_ir(model, example, paths["ir_fp16"], compress_to_fp16=True)
    print(
        f"[export] parity on {len(inputs)} item(s) of shape {list(inputs.shape[1:])}",
        file=sys.stderr,
    )
    diffs, scale, out_shape = _parity(model, paths, inputs, args.threads)
    report: dict[str, Any] = {
        **diffs,
        "max_abs_reference": scale,
        **parity_report(diffs, scale),
        "n_items": len(inputs),
        "export_shape": shape,
        "input_shape": [1, *inputs.shape[1:]],
        "output_shape": out_shape,
        "opset": _onnx_opset(paths["onnx"]),
        "onnx_route": args.onnx_route,
        "onnx_dynamic_axes": True,
        "openvino_precision_hint": "f32",
        "bin_bytes": {
            k: paths[k].with_suffix(".bin").stat().st_size for k in ("ir_fp32", "ir_fp16")
        },
        "arch": meta.get("arch"),
        "versions": {
            "python": platform.python_version(),
            **package_versions(["torch", "onnx", "onnxruntime", "openvino", "numpy"]),
        },
    }
    write_json(out / "parity.json", report)
    for name, diff in diffs.items():
        flag = "ok" if report["tolerance_ok"][name] else "EXCEEDS"
        print(
            f"[export] {name:<20} max|diff| {diff:.3g} (tol {report['tolerance'][name]:.3g}) {flag}",
            file=sys.stderr,
        )
    return 1 if args.strict and not all(report["tolerance_ok"].values()) else 0
