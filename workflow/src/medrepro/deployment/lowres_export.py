"""Stage ``lowres-export``: OpenVINO IR FP32 and plain NNCF INT8 of a lowres model.

``docs/lowres.md`` ("Export and INT8"). Single-stage networks are converted with the static
inference input shape ``(1, 1, *input_shape_for(P))`` (``P`` = output patch side of the
whole-volume inference, voxels); LowRes is converted as two models: stage 1 with that static
input and four outputs ``(logits8, f2, f4, f8)``, stage 2 with dynamic spatial axes (one crop per
component box, of any size that is a multiple of 8). Weights are stored as true FP32.

Parity: OpenVINO FP32 (f32 precision hint) against PyTorch on a real test patch (centred on an
object of the first test study that has one), ``max_abs_diff <= 1e-4 + 1e-4 * max|y_torch|``.

INT8: plain ``nncf.quantize`` (the project's ``mode="default"``), calibrated on training patches,
half of them centred on a random object voxel (the rest anywhere); stage 2 on the crops of the
component boxes that stage 1 (PyTorch) finds in those patches (boxes of the ground truth where it
finds none).

Output directory (written atomically as a whole)::

    net_fp32.xml/.bin, net_int8.xml/.bin                 single-stage networks
    stage1_fp32, stage1_int8, stage2_fp32, stage2_int8   LowRes (.xml/.bin)
    parity.json        {part: {max_abs_diff, tolerance, ok, ...}}
    quantization.json  {part: {mode, subset_size, fake_quantize, seconds, ...}}
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrepro.io.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov
    import torch

__all__ = [
    "TOLERANCE",
    "CalibrationPatch",
    "crop_padded",
    "input_patch_shape",
    "is_two_stage",
    "sample_patches",
    "stage2_crops",
    "export_stage2_ir",
    "quantize_default",
    "part_parity",
    "export_model",
    "main",
]

#: (atol, rtol): parity passes if max|y_ov - y_torch| <= atol + rtol * max|y_torch|
TOLERANCE = (1e-4, 1e-4)


@dataclass(frozen=True)
class CalibrationPatch:
    """An input patch and its ground truth (float16 / uint8, ``(z, y, x)`` input-patch shape)."""

    study_id: str
    image: np.ndarray
    mask: np.ndarray
    centred: bool


def is_two_stage(model: Any) -> bool:
    """Whether ``model`` follows the LowRes contract: ``stage1`` and ``stage2(x, f2, f4, f8)``.

    Other networks may have submodules named ``stage1``/``stage2`` (E-Net's stages), hence the
    check of the detail stage's four inputs.
    """
    stage1, stage2 = getattr(model, "stage1", None), getattr(model, "stage2", None)
    if not callable(stage1) or not callable(stage2):
        return False
    try:
        return len(inspect.signature(stage2.forward).parameters) == 4
    except (TypeError, ValueError, AttributeError):
        return False


def input_patch_shape(model: Any, patch: int) -> tuple[int, int, int]:
    """Input patch ``(z, y, x)`` of ``model`` for an output patch of side ``patch`` voxels.

    Raises:
        ValueError: ``patch`` is not a multiple of the network's ``divisor``.
    """
    divisor = int(getattr(model, "divisor", 1))
    if patch < 1 or patch % divisor:
        raise ValueError(f"patch {patch} must be a positive multiple of the divisor {divisor}")
    if hasattr(model, "input_shape_for"):
        return tuple(int(s) for s in model.input_shape_for((patch,) * 3))  # type: ignore[return-value]
    return (patch + 2 * int(getattr(model, "margin", 0)),) * 3


def crop_padded(volume: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``volume[start : start + size]`` per axis; voxels outside the volume are 0."""
    out = np.zeros(tuple(size), dtype=volume.dtype)
    src, dst = [], []
    for s, n, length in zip(start, size, volume.shape, strict=True):
        a, b = max(s, 0), min(s + n, length)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def _open_studies(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f"unreadable npz ({err})") from err


def _study(data: Any, path: Path, study_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Image (float16) and mask (uint8) of one study from an open ``studies.npz``."""
    if f"image/{study_id}" not in data.files or f"mask/{study_id}" not in data.files:
        raise InputError(path, f"study {study_id!r} is not in the container")
    return data[f"image/{study_id}"], data[f"mask/{study_id}"]


def sample_patches(
    studies: Path,
    study_ids: Sequence[str],
    n: int,
    input_patch: Sequence[int],
    seed: int,
    object_fraction: float = 0.5,
) -> list[CalibrationPatch]:
    """``n`` input patches from random studies; ``object_fraction`` of them centred on objects.

    Each patch picks a study at random; a centred patch is centred on a random voxel of the
    study's mask (a random position if the mask is empty), the others on a random voxel of the
    volume. Voxels outside the volume are 0. Every study is read once.
    """
    if not study_ids:
        raise ValueError("no studies to sample patches from")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(study_ids), size=n)
    centred = np.arange(n) < round(n * object_fraction)
    patches: list[CalibrationPatch | None] = [None] * n
    size = [int(s) for s in input_patch]
    with _open_studies(studies) as data:
        for index in np.unique(picks):
            image, mask = _study(data, studies, study_ids[index])
            objects = np.argwhere(mask > 0) if centred[picks == index].any() else None
            for i in np.flatnonzero(picks == index):
                if centred[i] and objects is not None and len(objects):
                    centre = objects[rng.integers(len(objects))]
                else:
                    centre = np.array([rng.integers(s) for s in image.shape])
                start = [int(c) - s // 2 for c, s in zip(centre, size, strict=True)]
                patches[i] = CalibrationPatch(
                    study_ids[index],
                    crop_padded(image, start, size).astype(np.float16),
                    crop_padded(mask, start, size).astype(np.uint8),
                    bool(centred[i]),
                )
    return [p for p in patches if p is not None]


def _test_patch(
    studies: Path, study_ids: Sequence[str], input_patch: Sequence[int]
) -> CalibrationPatch:
    """The parity patch: centred on the first object of the first test study that has one."""
    size = [int(s) for s in input_patch]
    with _open_studies(studies) as data:
        first = None
        for sid in study_ids:
            image, mask = _study(data, studies, sid)
            first = first or (sid, image, mask)
            objects = np.argwhere(mask > 0)
            if len(objects):
                break
        else:
            sid, image, mask = first  # type: ignore[misc]
            objects = np.array([[s // 2 for s in image.shape]])
    start = [int(c) - s // 2 for c, s in zip(objects[len(objects) // 2], size, strict=True)]
    return CalibrationPatch(
        sid, crop_padded(image, start, size), crop_padded(mask, start, size), True
    )


def _to_numpy(outputs: Any) -> list[np.ndarray]:
    if not isinstance(outputs, (tuple, list)):
        outputs = [outputs]
    return [o.detach().float().numpy() for o in outputs]


def _torch_run(module: torch.nn.Module, *arrays: np.ndarray) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        inputs = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        return _to_numpy(module(*inputs))


def stage2_crops(
    stage1: torch.nn.Module,
    patches: Sequence[CalibrationPatch],
    limit: int,
    threshold: float = 0.5,
) -> list[tuple[np.ndarray, ...]]:
    """Stage-2 inputs ``(x, f2, f4, f8)`` (batch 1, float32) from component boxes of patches.

    Stage 1 (PyTorch) runs on each patch; its components (p > ``threshold``, 1-voxel low-res
    margin) give the boxes; a patch without components uses the boxes of its ground truth
    max-pooled to the 1/8 grid. At most ``limit`` crops; if no patch yields a box, whole patches.
    """
    from medrepro.transforms.lowres_components import FACTOR, component_boxes

    crops: list[tuple[np.ndarray, ...]] = []
    whole: list[tuple[np.ndarray, ...]] = []
    for patch in patches:
        x = patch.image.astype(np.float32)[None, None]
        logits8, f2, f4, f8 = _torch_run(stage1, x)
        feats = {2: f2, 4: f4, 8: f8}
        if len(whole) < limit:
            whole.append((x, f2, f4, f8))
        boxes = component_boxes(1.0 / (1.0 + np.exp(-logits8[0, 0])), threshold)
        if not boxes and patch.mask.any():
            low = np.asarray(patch.mask > 0)
            low = low.reshape(*(s for n in low.shape for s in (n // FACTOR, FACTOR))).max((1, 3, 5))
            boxes = component_boxes(low.astype(np.float32), threshold)
        for box in boxes:
            crop = [np.ascontiguousarray(x[(..., *box.full)])]
            crop += [np.ascontiguousarray(feats[s][(..., *box.slices(s))]) for s in (2, 4, 8)]
            crops.append(tuple(crop))
            if len(crops) >= limit:
                return crops
    return crops or whole


def export_stage2_ir(
    stage2: torch.nn.Module, example: Sequence[np.ndarray], xml_path: Path
) -> ov.Model:
    """Convert the detail stage with dynamic spatial axes (batch 1, channels fixed); save FP32."""
    import torch

    from medrepro.deployment.export import export_ir

    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in example)
    shapes = [[1, int(t.shape[1]), -1, -1, -1] for t in tensors]
    return export_ir(stage2, tensors, xml_path, compress_to_fp16=False, input_shapes=shapes)


def quantize_default(
    ov_model: ov.Model, items: Sequence[tuple[np.ndarray, ...]], subset_size: int
) -> tuple[ov.Model, dict[str, Any]]:
    """Plain ``nncf.quantize`` (CPU target, default preset) on ``items`` (input tuples).

    Returns:
        ``(int8_model, report)`` with ``mode``, ``subset_size``, ``n_calibration``,
        ``fake_quantize`` (activation quantizers in the result) and ``seconds``.
    """
    import nncf

    from medrepro.deployment.quantize import count_fake_quantize

    if not items:
        raise ValueError("no calibration items")
    started = time.perf_counter()
    subset = int(min(subset_size, len(items)))

    def transform(item: tuple[np.ndarray, ...]) -> Any:
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in item]
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    dataset = nncf.Dataset(list(items), transform)
    result = nncf.quantize(
        ov_model.clone(), dataset, subset_size=subset, target_device=nncf.TargetDevice.CPU
    )
    return result, {
        "mode": "default",
        "subset_size": subset,
        "n_calibration": len(items),
        "fake_quantize": count_fake_quantize(result),
        "seconds": time.perf_counter() - started,
    }


def _ov_outputs(compiled: Any, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    request = compiled.create_infer_request()
    request.infer({i: np.ascontiguousarray(a, np.float32) for i, a in enumerate(arrays)})
    return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]


def part_parity(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> dict[str, Any]:
    """``{max_abs_diff, tolerance, ok, max_abs_reference}`` over all outputs of one part."""
    if len(reference) != len(outputs) or any(
        r.shape != o.shape for r, o in zip(reference, outputs, strict=True)
    ):
        raise ValueError(
            f"OpenVINO outputs {[o.shape for o in outputs]} differ from PyTorch "
            f"{[r.shape for r in reference]}"
        )
    diff = max(
        float(np.abs(o.astype(np.float64) - r).max())
        for r, o in zip(reference, outputs, strict=True)
    )
    scale = max(float(np.abs(r).max()) for r in reference)
    tolerance = TOLERANCE[0] + TOLERANCE[1] * scale
    return {
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "ok": bool(diff <= tolerance),
        "max_abs_reference": scale,
        "output_shapes": [list(r.shape) for r in reference],
    }


def _compile(model: ov.Model, threads: int) -> Any:
    from medrepro.deployment.runtimes import OpenVINORunner

    return OpenVINORunner(model, threads=threads, precision="f32").compiled


def _export_part(
    name: str,
    module: torch.nn.Module,
    convert: Callable[[Path], ov.Model],
    test_inputs: Sequence[np.ndarray],
    calibration: Sequence[tuple[np.ndarray, ...]],
    out_dir: Path,
    subset_size: int,
    threads: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """FP32 IR, parity on ``test_inputs``, INT8 IR; returns (parity, quantization) of ``name``."""
    from medrepro.deployment.export import save_ir

    print(f"[lowres-export] {name}: IR FP32", file=sys.stderr)
    ov_model = convert(out_dir / f"{name}_fp32.xml")
    reference = _torch_run(module, *test_inputs)
    fp32 = _ov_outputs(_compile(ov_model, threads), test_inputs)
    parity = part_parity(reference, fp32)
    parity["input_shapes"] = [list(a.shape) for a in test_inputs]
    print(
        f"[lowres-export] {name}: max|diff| {parity['max_abs_diff']:.3g} "
        f"(tol {parity['tolerance']:.3g}) {'ok' if parity['ok'] else 'EXCEEDS'}; "
        f"INT8 on {min(subset_size, len(calibration))} item(s)",
        file=sys.stderr,
    )
    int8, report = quantize_default(ov_model, calibration, subset_size)
    int8_out = _ov_outputs(_compile(int8, threads), test_inputs)
    report["max_abs_diff_vs_fp32"] = max(
        float(np.abs(a - b).max()) for a, b in zip(int8_out, fp32, strict=True)
    )
    save_ir(int8, out_dir / f"{name}_int8.xml", compress_to_fp16=False)
    return parity, report


def export_model(
    model: torch.nn.Module,
    patch: int,
    out_dir: Path,
    calibration: Sequence[CalibrationPatch],
    test_patch: CalibrationPatch,
    subset_size: int,
    threads: int = 1,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the IRs of ``model`` into ``out_dir`` (an existing directory).

    Args:
        model: a single-stage network or a LowRes (``stage1``/``stage2``), in eval mode.
        patch: inference output patch side (voxels); the IR input is ``input_patch_shape``.
        out_dir: destination directory.
        calibration: training input patches.
        test_patch: the parity patch.
        subset_size: NNCF ``subset_size`` (calibration items used per part).
        threads: OpenVINO inference threads for parity.

    Returns:
        ``(parity, quantization)``: the contents of ``parity.json`` and ``quantization.json``.
    """
    from medrepro.deployment.export import export_ir

    model = model.eval()
    shape = input_patch_shape(model, patch)
    for item in (test_patch, *calibration):
        if item.image.shape != shape:
            raise ValueError(f"patch of {item.study_id} has shape {item.image.shape} != {shape}")
    x_test = test_patch.image.astype(np.float32)[None, None]
    x_cal = [(p.image[None, None],) for p in calibration]

    def static(module: torch.nn.Module) -> Callable[[Path], ov.Model]:
        import torch

        example = torch.from_numpy(x_test.copy())
        return lambda path: export_ir(module, example, path, compress_to_fp16=False)

    if not is_two_stage(model):
        parity, quant = _export_part(
            "net", model, static(model), [x_test], x_cal, out_dir, subset_size, threads
        )
        return {"net": parity}, {"net": quant}
    p1, q1 = _export_part(
        "stage1", model.stage1, static(model.stage1), [x_test], x_cal, out_dir, subset_size,
        threads,
    )  # fmt: skip
    test_crops = stage2_crops(model.stage1, [test_patch], limit=1)
    crops = stage2_crops(model.stage1, calibration, limit=subset_size)
    p2, q2 = _export_part(
        "stage2",
        model.stage2,
        lambda path: export_stage2_ir(model.stage2, test_crops[0], path),
        list(test_crops[0]),
        crops,
        out_dir,
        subset_size,
        threads,
    )
    return {"stage1": p1, "stage2": p2}, {"stage1": q1, "stage2": q2}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro lowres-export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle (model.pt)")
    parser.add_argument("--studies", type=Path, required=True, help="preprocessed studies.npz")
    parser.add_argument("--table", type=Path, required=True, help="preprocessed studies.csv")
    parser.add_argument(
        "--patch", type=int, required=True, help="inference output patch side (voxels)"
    )
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument(
        "--subset-size", type=int, default=32, help="calibration patches (and stage-2 crops)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``lowres-export`` stage."""
    args = _parser().parse_args(argv)
    from medrepro.data.lowres_studies import read_studies, studies_of_split
    from medrepro.deployment.threads import cpu_affinity, set_torch_threads
    from medrepro.io.atomic import atomic_dir, write_json

    for path in (args.bundle, args.studies):
        if not path.is_file():
            raise InputError(path, "file not found")
    if args.subset_size < 1 or args.threads < 1:
        raise InputError(args.table, "--subset-size and --threads must be >= 1")
    table = read_studies(args.table)
    train, test = studies_of_split(table, "train"), studies_of_split(table, "test")
    if not train:
        raise InputError(args.table, "no training studies for calibration")
    test = test or studies_of_split(table, "val") or train
    with cpu_affinity(args.threads):
        from medrepro.nets.bundle import load_bundle

        set_torch_threads(args.threads)
        model, meta = load_bundle(args.bundle)
        try:
            shape = input_patch_shape(model, args.patch)
        except ValueError as err:
            raise InputError(args.bundle, str(err)) from err
        calibration = sample_patches(args.studies, train, args.subset_size, shape, args.seed)
        test_patch = _test_patch(args.studies, test, shape)
        with atomic_dir(args.out_dir) as tmp:
            parity, quant = export_model(
                model, args.patch, tmp, calibration, test_patch, args.subset_size, args.threads
            )
            for part in parity.values():
                part.update(patch=args.patch, test_study=test_patch.study_id)
            for part in quant.values():
                part["arch"] = meta.get("arch")
            write_json(tmp / "parity.json", parity)
            write_json(tmp / "quantization.json", quant)
    bad = [name for name, part in parity.items() if not part["ok"]]
    if bad:
        print(f"[lowres-export] WARNING: parity exceeds tolerance for {bad}", file=sys.stderr)
    return 0
