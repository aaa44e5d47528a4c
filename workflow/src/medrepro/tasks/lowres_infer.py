"""Stage ``lowres-infer``: timed whole-volume inference of one (model, runtime, threads).

``docs/lowres.md`` ("Inference and timing"). The process is pinned to ``--threads`` CPUs before
torch or OpenVINO is imported; the network is the PyTorch bundle (``torch``) or the IR of
``lowres-export`` compiled for the CPU with ``INFERENCE_NUM_THREADS`` and the f32 precision hint
(``openvino_fp32``; ``openvino_int8`` runs the INT8 IR with the same hint, so the operations NNCF
left in float run in f32, as calibrated). For OpenVINO runtimes the bundle is not loaded (torch is
never imported, so the peak RSS is OpenVINO's own).

Every study goes through overlapping patches (:mod:`medrepro.transforms.patches`, logits
averaged, then the sigmoid); LowRes runs stage 1 on the patches (its four outputs averaged at
their scales) and the detail stage on the component boxes
(:mod:`medrepro.transforms.lowres_components`). One untimed warm-up study (the first), then every
study is timed (``time.perf_counter``) from the float32 array in memory to the full-resolution
probability map; reading the study and writing the map are outside the timing.

Outputs (``--out-dir``, atomically): ``times.csv`` (study_id, seconds, stage1_seconds,
stage2_seconds, n_components, n_patches, voxels; single-stage networks have stage1_seconds =
seconds, stage2_seconds = 0 and n_components = 0), ``summary.json`` and, with
``--save-probabilities``, ``probabilities.npz`` (float16 ``(z, y, x)`` per study, written study by
study into a compressed zip so the maps never accumulate in memory).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medrepro.io.errors import InputError

__all__ = [
    "RUNTIMES",
    "TIME_COLUMNS",
    "SUMMARY_KEYS",
    "StudyResult",
    "Predictor",
    "sigmoid",
    "predict_single",
    "predict_two_stage",
    "torch_predictor",
    "openvino_predictor",
    "peak_rss_mb",
    "NpzStream",
    "main",
]

RUNTIMES = ("torch", "openvino_fp32", "openvino_int8")

TIME_COLUMNS = [
    "study_id", "seconds", "stage1_seconds", "stage2_seconds", "n_components", "n_patches",
    "voxels",
]  # fmt: skip

SUMMARY_KEYS = [
    "model", "runtime", "threads", "n_studies", "mean_s", "sd_s", "median_s", "peak_rss_mb",
    "ram_limit_mb", "within_ram_limit", "warmup_s", "patch", "stride",
]  # fmt: skip

#: stage-1 output scales of LowRes: logits8, f2, f4, f8
STAGE1_SCALES = (8, 2, 4, 8)

ArrayFn = Callable[..., Sequence[np.ndarray]]


@dataclass(frozen=True)
class StudyResult:
    """Probability map ``(z, y, x)`` float32 of one study and how it was obtained."""

    probabilities: np.ndarray
    stage1_seconds: float
    stage2_seconds: float
    n_components: int
    n_patches: int


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32, in place on a float32 copy."""
    from scipy.special import expit

    return expit(np.asarray(x, dtype=np.float32))


def predict_single(
    image: np.ndarray, net_fn: ArrayFn, patch: int, stride: int, margin: int = 0
) -> StudyResult:
    """Probabilities of a single-stage network: patches -> averaged logits -> sigmoid.

    Args:
        image: ``(z, y, x)`` float32 volume in [0, 1].
        net_fn: ``(1, 1, *input_patch) -> [(1, 1, *patch)]`` logits.
        patch: output patch side (voxels); stride: step between patches (voxels).
        margin: voxels lost per side by the network.
    """
    from medrepro.transforms.patches import patch_grid, predict_patched

    started = time.perf_counter()
    (logits,) = predict_patched(image, net_fn, patch, stride, margin)
    prob = sigmoid(logits[0])
    seconds = time.perf_counter() - started
    return StudyResult(prob, seconds, 0.0, 0, len(patch_grid(image.shape, patch, stride, margin)))


def predict_two_stage(
    image: np.ndarray, stage1_fn: ArrayFn, stage2_fn: ArrayFn, patch: int, stride: int
) -> StudyResult:
    """Probabilities of LowRes.

    The volume is padded with 0 to multiples of 8 voxels so that the stitched stage-1 maps are
    exactly its 1/2, 1/4 and 1/8 grids; stage 1 runs on patches (``patch`` and ``stride``
    multiples of 8), the detail stage on every component box.

    Args:
        image: ``(z, y, x)`` float32 volume in [0, 1].
        stage1_fn: ``(1, 1, P, P, P) -> [logits8, f2, f4, f8]``, batch-1 arrays.
        stage2_fn: ``(x, f2, f4, f8) -> [logits (1, 1, d, h, w)]`` on one box.
        patch, stride: stage-1 patch side and step (voxels).
    """
    from medrepro.transforms.lowres_components import FACTOR, assemble_lowres
    from medrepro.transforms.patches import patch_grid, predict_patched

    started = time.perf_counter()
    pads = [(0, -n % FACTOR) for n in image.shape]
    padded = np.pad(np.asarray(image, dtype=np.float32), pads)
    logits8, f2, f4, f8 = predict_patched(padded, stage1_fn, patch, stride, 0, STAGE1_SCALES)
    prob8 = sigmoid(logits8[0])
    middle = time.perf_counter()

    def detail(*arrays: np.ndarray) -> np.ndarray:
        return sigmoid(stage2_fn(*arrays)[0])

    prob, boxes = assemble_lowres(image, prob8, {2: f2, 4: f4, 8: f8}, detail)
    done = time.perf_counter()
    n_patches = len(patch_grid(padded.shape, patch, stride, 0, STAGE1_SCALES))
    return StudyResult(prob, middle - started, done - middle, len(boxes), n_patches)


@dataclass
class Predictor:
    """A loaded network and how to run it on a whole volume.

    Attributes:
        patch, stride: output patch side and step (voxels).
        margin: voxels lost per side (single-stage networks).
        net_fn: single-stage function, or None.
        stage1_fn, stage2_fn: LowRes functions, or None.
    """

    patch: int
    stride: int
    margin: int = 0
    net_fn: ArrayFn | None = None
    stage1_fn: ArrayFn | None = None
    stage2_fn: ArrayFn | None = None

    @property
    def two_stage(self) -> bool:
        """Whether this is LowRes."""
        return self.stage1_fn is not None

    def __call__(self, image: np.ndarray) -> StudyResult:
        if self.two_stage:
            assert self.stage2_fn is not None
            return predict_two_stage(image, self.stage1_fn, self.stage2_fn, self.patch, self.stride)  # type: ignore[arg-type]
        assert self.net_fn is not None
        return predict_single(image, self.net_fn, self.patch, self.stride, self.margin)


def _torch_fn(module: Any) -> ArrayFn:
    import torch

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(*(torch.from_numpy(a) for a in arrays))
        return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]

    return run


def torch_predictor(model: Any, patch: int, stride: int) -> Predictor:
    """Predictor of a PyTorch network (eval mode; LowRes if it has ``stage1``/``stage2``)."""
    from medrepro.deployment.lowres_export import input_patch_shape, is_two_stage

    model = model.eval()
    margin = (input_patch_shape(model, patch)[0] - patch) // 2
    if is_two_stage(model):
        return Predictor(
            patch, stride, 0, stage1_fn=_torch_fn(model.stage1), stage2_fn=_torch_fn(model.stage2)
        )
    return Predictor(patch, stride, margin, net_fn=_torch_fn(model))


def _ov_fn(xml: Path, threads: int, precision: str) -> tuple[ArrayFn, list[int] | None]:
    """An OpenVINO function returning every output, and the static input shape (or None)."""
    from medrepro.deployment.runtimes import OpenVINORunner

    runner = OpenVINORunner(xml, threads=threads, precision=precision, streams=1)
    request, n_out = runner.request, len(runner.compiled.outputs)
    shape = runner.compiled.inputs[0].get_partial_shape()

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        request.infer(dict(enumerate(arrays)), share_inputs=True, share_outputs=True)
        return [request.get_output_tensor(i).data for i in range(n_out)]

    return run, None if shape.is_dynamic else [int(d) for d in shape.to_shape()]


def openvino_predictor(
    ir_dir: Path, precision: str, patch: int, stride: int, threads: int
) -> Predictor:
    """Predictor of the IRs in ``ir_dir`` (``net_*`` or ``stage1_*``/``stage2_*``).

    Args:
        precision: ``fp32`` or ``int8`` (the IR file suffix); both compile with the f32 hint.

    Raises:
        InputError: missing IR files, or an IR input shape that does not fit ``patch``.
    """
    hint = {"fp32": "f32", "int8": "int8"}[precision]
    if (ir_dir / f"stage1_{precision}.xml").is_file():
        stage2 = ir_dir / f"stage2_{precision}.xml"
        if not stage2.is_file():
            raise InputError(stage2, "file not found")
        stage1_fn, shape = _ov_fn(ir_dir / f"stage1_{precision}.xml", threads, hint)
        if shape is None or shape[2:] != [patch] * 3:
            raise InputError(ir_dir / f"stage1_{precision}.xml", f"input {shape} != patch {patch}")
        stage2_fn, _ = _ov_fn(stage2, threads, hint)
        return Predictor(patch, stride, 0, stage1_fn=stage1_fn, stage2_fn=stage2_fn)
    xml = ir_dir / f"net_{precision}.xml"
    if not xml.is_file():
        raise InputError(xml, "file not found (nor a stage1_ IR)")
    net_fn, shape = _ov_fn(xml, threads, hint)
    sides = set(shape[2:]) if shape else set()
    if len(sides) != 1 or (next(iter(sides)) - patch) % 2 or next(iter(sides)) < patch:
        raise InputError(xml, f"static input {shape} does not fit output patch {patch}")
    return Predictor(patch, stride, (next(iter(sides)) - patch) // 2, net_fn=net_fn)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``, KiB on Linux)."""
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


class NpzStream:
    """Write arrays one at a time into a compressed ``.npz`` (readable by ``np.load``)."""

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1)

    def add(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` under ``key``."""
        with self._zip.open(f"{key}.npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)

    def close(self) -> None:
        """Finish the archive."""
        self._zip.close()


def _summary(
    args: argparse.Namespace, model: str, seconds: list[float], warmup: float
) -> dict[str, Any]:
    peak = peak_rss_mb()
    limit = float(args.ram_limit_mb) if args.ram_limit_mb else None
    return {
        "model": model,
        "runtime": args.runtime,
        "threads": args.threads,
        "n_studies": len(seconds),
        "mean_s": statistics.fmean(seconds),
        "sd_s": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
        "median_s": statistics.median(seconds),
        "peak_rss_mb": peak,
        "ram_limit_mb": limit,
        "within_ram_limit": bool(limit is None or peak <= limit),
        "warmup_s": warmup,
        "patch": args.patch,
        "stride": args.stride,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro lowres-infer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle (model.pt)")
    parser.add_argument("--runtime", choices=RUNTIMES, required=True)
    parser.add_argument("--ir-dir", type=Path, help="lowres-export directory (OpenVINO runtimes)")
    parser.add_argument("--studies", type=Path, required=True, help="preprocessed studies.npz")
    parser.add_argument("--table", type=Path, required=True, help="preprocessed studies.csv")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--patch", type=int, required=True, help="output patch side (voxels)")
    parser.add_argument("--stride", type=int, required=True, help="patch step (voxels)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--max-studies", type=int, default=0, help="first N studies of the split (0: all)"
    )
    parser.add_argument(
        "--ram-limit-mb", type=float, default=0, help="RAM budget recorded (0: none)"
    )
    parser.add_argument("--model", default=None, help="model name (default: bundle's folder)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--save-probabilities", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``lowres-infer`` stage."""
    args = _parser().parse_args(argv)
    if args.threads < 1:
        raise InputError(args.table, "--threads must be >= 1")
    from medrepro.deployment.threads import pin_process

    pin_process(args.threads)  # before torch / OpenVINO are imported
    import pandas as pd

    from medrepro.data.lowres_studies import read_studies, studies_of_split
    from medrepro.io.atomic import atomic_dir, write_csv, write_json

    for path in (args.bundle, args.studies):
        if not path.is_file():
            raise InputError(path, "file not found")
    table = read_studies(args.table)
    ids = studies_of_split(table, args.split)[: args.max_studies or None]
    if not ids:
        raise InputError(args.table, f"no kept studies in split {args.split!r}")
    try:
        if args.runtime == "torch":
            from medrepro.deployment.threads import set_torch_threads
            from medrepro.nets.bundle import load_bundle

            set_torch_threads(args.threads)
            model, _ = load_bundle(args.bundle)
            predictor = torch_predictor(model, args.patch, args.stride)
        else:
            if args.ir_dir is None:
                raise InputError(args.bundle, f"--ir-dir is required for {args.runtime}")
            precision = args.runtime.split("_")[1]
            predictor = openvino_predictor(
                args.ir_dir, precision, args.patch, args.stride, args.threads
            )
        # the grid must also fit LowRes' scales and the valid margin
        from medrepro.transforms.patches import patch_grid

        scales = STAGE1_SCALES if predictor.two_stage else (1,)
        patch_grid((1, 1, 1), args.patch, args.stride, predictor.margin, scales)
    except ValueError as err:
        raise InputError(args.bundle, str(err)) from err
    model_name = args.model or args.bundle.parent.name
    rows, seconds = [], []
    with np.load(args.studies, allow_pickle=False) as data, atomic_dir(args.out_dir) as tmp:

        def image_of(sid: str) -> np.ndarray:
            if f"image/{sid}" not in data.files:
                raise InputError(args.studies, f"study {sid!r} is not in the container")
            return np.ascontiguousarray(data[f"image/{sid}"], dtype=np.float32)

        started = time.perf_counter()
        predictor(image_of(ids[0]))
        warmup = time.perf_counter() - started
        stream = NpzStream(tmp / "probabilities.npz") if args.save_probabilities else None
        try:
            for sid in ids:
                image = image_of(sid)
                started = time.perf_counter()
                result = predictor(image)
                total = time.perf_counter() - started
                seconds.append(total)
                rows.append(
                    {
                        "study_id": sid,
                        "seconds": total,
                        "stage1_seconds": result.stage1_seconds if predictor.two_stage else total,
                        "stage2_seconds": result.stage2_seconds,
                        "n_components": result.n_components,
                        "n_patches": result.n_patches,
                        "voxels": int(image.size),
                    }
                )
                print(
                    f"[lowres-infer] {sid}: {total:.2f} s, {result.n_patches} patches, "
                    f"{result.n_components} components",
                    file=sys.stderr,
                )
                if stream is not None:
                    stream.add(sid, result.probabilities.astype(np.float16))
                del result
        finally:
            if stream is not None:
                stream.close()
        summary = _summary(args, model_name, seconds, warmup)
        write_csv(pd.DataFrame(rows, columns=TIME_COLUMNS), tmp / "times.csv")
        write_json(tmp / "summary.json", summary)
    print(
        f"[lowres-infer] {model_name}/{args.runtime} t{args.threads}: mean {summary['mean_s']:.2f} s "
        f"over {len(seconds)} studies, peak RSS {summary['peak_rss_mb']:.0f} MB",
        file=sys.stderr,
    )
    return 0
