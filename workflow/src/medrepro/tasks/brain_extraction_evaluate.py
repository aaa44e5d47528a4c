"""Stage ``brain-evaluate``: native-space brain masks with every runtime and precision.

For each configuration (:data:`CONFIGS`; ``openvino_bf16`` only where the CPU has native BF16)
the model is loaded once, then every test item (subject, modality) of ``dataset.npz`` goes
through BrainMaGe's inference chain (``docs/brain_extraction.md``, "Inference and evaluation"):

1. network probability ``(X, Y, Z)`` on the network grid;
2. resized back onto the atlas grid (cubic; ``brain_dataset.from_network`` with the subject's
   registered t1ce ``registered/<sid>/<sid>_t1ce.nii.gz`` as the reference grid);
3. :func:`medrepro.transforms.postprocess.brainmage_postprocess`: ``>= threshold`` (0.9),
   slice-wise hole filling along ``z``, largest 3D component;
4. mapped onto the native t1ce grid (``native/<sid>/<sid>_t1ce.nii.gz``) through the inverse of
   ``registered/<sid>/<sid>_t1ce_to_atlas.tfm`` (linear interpolation of the 0/1 mask, then
   ``>= 0.5``);
5. scored against ``native/<sid>/<sid>_mask.nii.gz`` with
   :func:`medrepro.metrics.segmentation.score_masks` (spacing of the native grid, mm).

Every modality of a subject is mapped through the t1ce transform: the registered modalities
were co-registered to t1ce, so they all lie on the atlas grid in the t1ce's alignment.

Outputs: ``evaluation.csv`` (:data:`COLUMNS`; ``seconds`` is the wall time of the network call
alone, after one untimed warm-up call per configuration, the post-processing being the same for
every configuration; latency is measured properly by the ``benchmark`` stage) and ``<masks-dir>/<sid>_<mod>_<config>.nii.gz`` (uint8, native t1ce
geometry). Both are written atomically. An empty predicted mask is a result, not an error:
``empty_pred`` is true and both HD95s are NaN.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medrepro.io.atomic import atomic_dir, write_csv
from medrepro.io.errors import InputError
from medrepro.io.images import array_to_image, image_to_array, read_image, write_image
from medrepro.metrics.segmentation import score_masks
from medrepro.tasks.base import TaskItems
from medrepro.tasks.brain_extraction import TASK
from medrepro.transforms.postprocess import brainmage_postprocess

if TYPE_CHECKING:  # pragma: no cover
    from medrepro.deployment.runtimes import Runner

__all__ = [
    "COLUMNS",
    "CONFIGS",
    "EvalConfig",
    "Subject",
    "ToAtlas",
    "select_configs",
    "build_runner",
    "subject_paths",
    "load_subject",
    "probability_to_native",
    "evaluate",
    "main",
]

#: columns of ``evaluation.csv``, in order
COLUMNS = [
    "subject_id",
    "modality",
    "config",
    "framework",
    "precision",
    "route",
    "dice",
    "hd95_mm",
    "hd95_max_mm",
    "empty_pred",
    "empty_gt",
    "pred_volume_ml",
    "gt_volume_ml",
    "seconds",
]

#: (network array (X, Y, Z), atlas reference image) -> probability image on the atlas grid
ToAtlas = Callable[[np.ndarray, sitk.Image], sitk.Image]


@dataclass(frozen=True)
class EvalConfig:
    """One row of the configuration table of ``docs/brain_extraction.md``.

    Attributes:
        name: configuration name (``evaluation.csv`` ``config``).
        framework: ``pytorch``, ``onnxruntime`` or ``openvino``.
        precision: ``fp32``, ``bf16`` or ``int8`` (reported).
        route: how the model was obtained: ``eager``, ``onnx``, ``direct``, ``onnx_to_ir``,
            ``accuracy_control`` or ``default``.
        model: the CLI option naming the model file (``bundle``, ``onnx``, ``ir_fp32``,
            ``ir_int8``, ``ir_int8_default``).
        runtime_precision: precision given to the runner (``f32``, ``bf16``, ``int8``).
    """

    name: str
    framework: str
    precision: str
    route: str
    model: str
    runtime_precision: str


CONFIGS: dict[str, EvalConfig] = {
    c.name: c
    for c in (
        EvalConfig("pytorch_fp32", "pytorch", "fp32", "eager", "bundle", "f32"),
        EvalConfig("onnxruntime_fp32", "onnxruntime", "fp32", "onnx", "onnx", "f32"),
        EvalConfig("openvino_fp32", "openvino", "fp32", "direct", "ir_fp32", "f32"),
        EvalConfig("openvino_fp32_onnx", "openvino", "fp32", "onnx_to_ir", "onnx", "f32"),
        EvalConfig("openvino_bf16", "openvino", "bf16", "direct", "ir_fp32", "bf16"),
        EvalConfig("openvino_int8", "openvino", "int8", "accuracy_control", "ir_int8", "int8"),
        EvalConfig(
            "openvino_int8_default", "openvino", "int8", "default", "ir_int8_default", "int8"
        ),
    )
}


def select_configs(names: Sequence[str] | None, bf16_supported: bool) -> list[str]:
    """Configurations to run, in table order: ``names`` (all if ``None``), bf16 only if supported."""
    wanted = list(CONFIGS) if names is None else list(names)
    unknown = sorted(set(wanted) - set(CONFIGS))
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; known: {list(CONFIGS)}")
    return [
        n
        for n in CONFIGS
        if n in wanted and (CONFIGS[n].runtime_precision != "bf16" or bf16_supported)
    ]


def build_runner(
    config: EvalConfig, model_path: Path, shape: Sequence[int], threads: int
) -> Runner:
    """The runner of one configuration.

    Args:
        config: the configuration.
        model_path: its model file (bundle ``.pt``, ``.onnx`` or IR ``.xml``).
        shape: network input shape with batch 1, ``(1, 1, X, Y, Z)``; OpenVINO models are
            compiled at this static shape.
        threads: inference threads.
    """
    from medrepro.deployment.runtimes import make_runner

    shape = [int(s) for s in shape]
    if config.route == "onnx_to_ir":
        from medrepro.deployment.export import ir_from_onnx

        return make_runner("openvino", ir_from_onnx(model_path, shape), threads, "f32")
    if config.framework == "openvino":
        return make_runner("openvino", model_path, threads, config.runtime_precision, shape=shape)
    return make_runner(config.framework, model_path, threads, config.runtime_precision)


@dataclass
class Subject:
    """What mapping and scoring need of one subject.

    Attributes:
        subject_id: the subject.
        atlas_reference: an image on the atlas grid (the registered t1ce's geometry).
        native_reference: an image on the native t1ce grid.
        to_native: maps native t1ce points (mm) to atlas points: the inverse of the
            ``<sid>_t1ce_to_atlas.tfm`` transform, as ``Resample(atlas_image, native, ...)`` needs.
        gt: ground-truth mask ``(X, Y, Z)`` bool on the native t1ce grid.
        spacing: native voxel size ``(sx, sy, sz)`` mm.
    """

    subject_id: str
    atlas_reference: sitk.Image
    native_reference: sitk.Image
    to_native: sitk.Transform
    gt: np.ndarray
    spacing: tuple[float, float, float]


def subject_paths(sid: str, registered_root: Path, native_root: Path) -> dict[str, Path]:
    """Input files of one subject (layout of ``docs/brain_extraction.md``)."""
    reg, nat = Path(registered_root) / sid, Path(native_root) / sid
    return {
        "atlas_reference": reg / f"{sid}_t1ce.nii.gz",
        "transform": reg / f"{sid}_t1ce_to_atlas.tfm",
        "native_reference": nat / f"{sid}_t1ce.nii.gz",
        "mask": nat / f"{sid}_mask.nii.gz",
    }


def _grid_only(path: Path) -> sitk.Image:
    """A zero float32 image with the grid of ``path`` (only the header is read)."""
    if not path.is_file():
        raise InputError(path, "file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(path, f"unreadable image ({str(err).strip().splitlines()[-1]})") from err
    if reader.GetDimension() != 3:
        raise InputError(path, f"expected a 3D image, got {reader.GetDimension()}D")
    img = sitk.Image([int(s) for s in reader.GetSize()], sitk.sitkFloat32)
    img.SetOrigin(reader.GetOrigin())
    img.SetSpacing(reader.GetSpacing())
    img.SetDirection(reader.GetDirection())
    return img


def _same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    return a.GetSize() == b.GetSize() and all(
        np.allclose(f(a), f(b), atol=tol)
        for f in (lambda i: i.GetOrigin(), lambda i: i.GetSpacing(), lambda i: i.GetDirection())
    )


def load_subject(sid: str, registered_root: Path, native_root: Path) -> Subject:
    """Read the reference grids, the inverse t1ce transform and the native ground truth.

    Raises:
        InputError: a missing or unreadable file, a transform without inverse, or a mask that is
            not on the native t1ce grid.
    """
    paths = subject_paths(sid, registered_root, native_root)
    atlas_ref = _grid_only(paths["atlas_reference"])
    native_ref = _grid_only(paths["native_reference"])
    tfm_path = paths["transform"]
    if not tfm_path.is_file():
        raise InputError(tfm_path, "file not found")
    try:
        to_native = sitk.ReadTransform(str(tfm_path)).GetInverse()
    except RuntimeError as err:
        raise InputError(tfm_path, f"unreadable or non-invertible transform ({err})") from err
    mask = read_image(paths["mask"], pixel_type=sitk.sitkUInt8)
    if not _same_grid(mask, native_ref):
        raise InputError(paths["mask"], f"mask is not on the grid of {paths['native_reference']}")
    sx, sy, sz = (float(s) for s in native_ref.GetSpacing())
    return Subject(sid, atlas_ref, native_ref, to_native, image_to_array(mask) > 0, (sx, sy, sz))


def _default_to_atlas() -> ToAtlas:
    from medrepro.preprocessing.brain_dataset import from_network

    return from_network


def probability_to_native(
    prob: np.ndarray, subject: Subject, threshold: float, to_atlas: ToAtlas
) -> sitk.Image:
    """Network probability ``(X, Y, Z)`` -> BrainMaGe mask on the native t1ce grid (uint8 image).

    Atlas grid (cubic, ``to_atlas``) -> :func:`brainmage_postprocess` -> inverse t1ce transform
    (linear on 0/1) -> ``>= 0.5``.
    """
    atlas_prob = to_atlas(np.asarray(prob, dtype=np.float32), subject.atlas_reference)
    mask_atlas = brainmage_postprocess(image_to_array(atlas_prob), threshold=threshold)
    ref = subject.atlas_reference
    mask_img = array_to_image(
        mask_atlas.astype(np.float32), ref.GetOrigin(), ref.GetSpacing(), ref.GetDirection()
    )
    native = sitk.Resample(
        mask_img,
        subject.native_reference,
        subject.to_native,
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
    out = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(native) >= 0.5).astype(np.uint8))
    out.CopyInformation(subject.native_reference)
    return out


def evaluate(
    items: TaskItems,
    runners: Mapping[str, Callable[[], Runner]],
    registered_root: Path,
    native_root: Path,
    threshold: float = 0.9,
    masks_dir: Path | None = None,
    to_atlas: ToAtlas | None = None,
    log: Callable[[str], Any] = print,
) -> pd.DataFrame:
    """Score every item with every configuration; one row per (item, configuration).

    Args:
        items: the test items (:meth:`BrainExtractionTask.load_items`): inputs
            ``(N, 1, X, Y, Z)``, ``extra["patient_id"]`` and ``extra["modality"]``.
        runners: configuration name (a key of :data:`CONFIGS`) -> factory of its runner. Each
            factory is called once; the runner gets one untimed warm-up call and is released
            before the next configuration.
        registered_root: ``registered/`` (reference atlas grid and t1ce transforms).
        native_root: ``native/`` (native t1ce grid and ground-truth masks).
        threshold: probability threshold of the post-processing.
        masks_dir: where ``<sid>_<mod>_<config>.nii.gz`` go (not written if ``None``).
        to_atlas: network grid -> atlas grid mapping; ``brain_dataset.from_network`` if ``None``.
        log: progress messages.

    Returns:
        The ``evaluation.csv`` table (:data:`COLUMNS`).
    """
    to_atlas = to_atlas or _default_to_atlas()
    sids = [str(s) for s in items.extra["patient_id"]]
    mods = [str(m) for m in items.extra["modality"]]
    spatial = items.inputs.shape[2:]
    order = sorted(range(len(items)), key=lambda i: (sids[i], i))  # one subject at a time
    subject = lru_cache(maxsize=1)(lambda sid: load_subject(sid, registered_root, native_root))
    rows = []
    for name, factory in runners.items():
        config = CONFIGS[name]
        runner = factory()
        runner.infer(items.inputs[order[0] : order[0] + 1])  # warm-up, not timed
        dices = []
        for i in order:
            t0 = time.perf_counter()
            out = np.asarray(runner.infer(items.inputs[i : i + 1]))
            seconds = time.perf_counter() - t0
            if out.size != int(np.prod(spatial)):
                raise ValueError(f"{name}: output shape {out.shape} does not match {spatial}")
            subj = subject(sids[i])
            native = probability_to_native(out.reshape(spatial), subj, threshold, to_atlas)
            if masks_dir is not None:
                write_image(native, Path(masks_dir) / f"{sids[i]}_{mods[i]}_{name}.nii.gz")
            scores = score_masks(image_to_array(native), subj.gt, subj.spacing)
            dices.append(scores["dice"])
            rows.append(
                {
                    "subject_id": sids[i],
                    "modality": mods[i],
                    "config": name,
                    "framework": config.framework,
                    "precision": config.precision,
                    "route": config.route,
                    **scores,
                    "seconds": seconds,
                }
            )
        del runner
        gc.collect()
        log(f"{name}: mean Dice {np.mean(dices):.4f} over {len(dices)} items")
    return pd.DataFrame(rows, columns=COLUMNS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro brain-evaluate", description=__doc__.split("\n")[0]
    )
    models = parser.add_argument_group("models (each needed only by the configurations using it)")
    models.add_argument("--bundle", type=Path, help="PyTorch bundle model.pt")
    models.add_argument("--onnx", type=Path, help="export/model.onnx")
    models.add_argument("--ir-fp32", type=Path, help="export/model_fp32.xml")
    models.add_argument("--ir-int8", type=Path, help="int8/model_int8.xml (accuracy control)")
    models.add_argument(
        "--ir-int8-default", type=Path, help="int8_default/model_int8.xml (nncf.quantize)"
    )
    parser.add_argument("--dataset", type=Path, required=True, help="preprocessed/dataset.npz")
    parser.add_argument("--splits", type=Path, required=True, help="splits.csv")
    parser.add_argument("--split", default="test")
    parser.add_argument("--registered-root", type=Path, required=True)
    parser.add_argument("--native-root", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="evaluation.csv")
    parser.add_argument("--masks-dir", type=Path, required=True)
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        default=None,
        help="configurations to run (default: all; openvino_bf16 only on CPUs with BF16)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``brain-evaluate`` stage."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold < 1.0:
        parser.error(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")

    from medrepro.deployment.runtimes import cpu_supports

    bf16 = cpu_supports("bf16")
    names = select_configs(args.configs, bf16)
    if not bf16 and (args.configs is None or "openvino_bf16" in args.configs):
        print("openvino_bf16 skipped: this CPU has no native BF16", flush=True)
    paths: dict[str, Path] = {}
    for name in names:
        key = CONFIGS[name].model
        path = getattr(args, key)
        if path is None:
            parser.error(f"configuration {name} needs --{key.replace('_', '-')}")
        if not Path(path).is_file():
            raise InputError(path, f"model file of configuration {name} not found")
        paths[name] = Path(path)

    items = TASK.load_items(args.dataset, args.splits, args.split)
    shape = [1, *items.inputs.shape[1:]]

    def factory(name: str) -> Callable[[], Runner]:
        return lambda: build_runner(CONFIGS[name], paths[name], shape, args.threads)

    runners = {name: factory(name) for name in names}
    with atomic_dir(args.masks_dir) as tmp_masks:
        table = evaluate(
            items,
            runners,
            args.registered_root,
            args.native_root,
            args.threshold,
            masks_dir=tmp_masks,
            log=lambda m: print(m, flush=True),
        )
        write_csv(table, args.out)
    return 0
