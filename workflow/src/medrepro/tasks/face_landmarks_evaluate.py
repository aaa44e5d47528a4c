"""Stage ``face-evaluate``: landmarks of the test split for every model, ME, CED, AUC, FR.

Each ``--model METHOD,BUDGET,RUNTIME,PATH[,BUNDLE]`` is run on the test split's network inputs in
batches: a ``.pt`` bundle with PyTorch (:class:`~medrepro.deployment.runtimes.TorchRunner`,
``torch.inference_mode``), an IR ``.xml`` with OpenVINO (``precision`` ``int8`` if the runtime
name contains ``int8``, else ``f32``; static batch, the last batch zero-padded), whose metadata
(heatmap stride, ``n_train``) come from ``BUNDLE``. Heatmaps are decoded with
:func:`medrepro.transforms.heatmaps.decode_heatmaps_2d`; errors are Euclidean distances in pixels
of the ``S x S`` network input (:mod:`medrepro.metrics.ced`).

Per model: ME, SD (``ddof=1``) and median of the per-image errors (mean over the landmarks),
AUC of the CED on ``[0, threshold_px]`` and FR = fraction of images with error ``> threshold_px``
(the paper's failure definition), NME = mean over images of the error normalised by the true
outer eye corners (``ex_r``, ``ex_l``; NaN when the landmark set lacks them). ``ced.csv`` samples
the CED on ``[0, ced_max_px]`` for the figure.

``heatmaps.npz`` (Fig. 3) holds the first ``n_figure`` test images and, for every model at
``figure_budget``, ``<key>/heatmaps`` (float16) and ``<key>/pred``; the key is the method for the
``torch`` runtime and ``<method>@<runtime>`` otherwise (the deployment run); ``keys`` lists them.
All outputs appear together (one atomic directory).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.atomic import atomic_dir, write_csv, write_npz
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv
from medrepro.preprocessing.face_dataset import budget_indices
from medrepro.tasks.base import TaskItems
from medrepro.tasks.face_landmarks import TASK, decode_outputs

__all__ = [
    "PREDICTION_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "SUMMARY_COLUMNS",
    "CED_COLUMNS",
    "ModelSpec",
    "parse_model_spec",
    "eye_corner_indices",
    "load_predictor",
    "predict_heatmaps",
    "predictions_table",
    "per_image_table",
    "summary_row",
    "ced_table",
    "evaluate",
    "main",
]

PREDICTION_COLUMNS = ["method", "budget", "runtime", "case_id", "landmark",
                      "x_true", "y_true", "x_pred", "y_pred", "error_px"]  # fmt: skip
PER_IMAGE_COLUMNS = ["method", "budget", "runtime", "case_id", "error_px", "nme"]
SUMMARY_COLUMNS = ["method", "budget", "runtime", "n_train", "n_test", "me_px", "sd_px",
                   "median_px", "auc", "fr", "threshold_px", "nme"]  # fmt: skip
CED_COLUMNS = ["method", "budget", "runtime", "threshold_px", "fraction"]

#: a predictor: float32 inputs ``(n, 3, S, S)`` -> heatmaps ``(n, K, h, w)``
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model`` argument: what to run and how to label it."""

    method: str
    budget: int
    runtime: str
    path: Path
    bundle: Path | None = None

    @property
    def key(self) -> str:
        """Array-name prefix in ``heatmaps.npz``: the method, ``<method>@<runtime>`` if not torch."""
        return self.method if self.runtime == "torch" else f"{self.method}@{self.runtime}"


def parse_model_spec(text: str) -> ModelSpec:
    """``METHOD,BUDGET,RUNTIME,PATH[,BUNDLE]`` -> :class:`ModelSpec` (argparse type)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (4, 5) or not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected METHOD,BUDGET,RUNTIME,PATH[,BUNDLE], got {text!r}"
        )
    try:
        budget = int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget must be an integer, got {parts[1]!r}") from None
    bundle = Path(parts[4]) if len(parts) == 5 else None
    return ModelSpec(parts[0], budget, parts[2], Path(parts[3]), bundle)


def eye_corner_indices(names: Sequence[str]) -> tuple[int, int] | None:
    """Indices ``(ex_l, ex_r)`` of the outer eye corners, or None if either is missing."""
    names = list(names)
    if "ex_l" in names and "ex_r" in names:
        return names.index("ex_l"), names.index("ex_r")
    return None


def _read_meta(bundle: Path) -> dict[str, Any]:
    """A bundle's metadata without building its network."""
    import torch

    try:
        payload = torch.load(bundle, map_location="cpu", weights_only=True)
        return {k: v for k, v in payload.items() if k != "state_dict"}
    except Exception as err:  # noqa: BLE001 - any unreadable bundle is bad input
        raise InputError(bundle, f"unreadable model bundle ({err})") from err


def load_predictor(
    spec: ModelSpec, threads: int, batch: int, image_size: int
) -> tuple[Predictor, dict[str, Any]]:
    """The predictor of ``spec`` and its bundle metadata.

    Raises:
        InputError: a missing file, an unreadable bundle, an ``.xml`` without its bundle, or a
            model that does not output heatmaps.
    """
    from medrepro.deployment.runtimes import OpenVINORunner, TorchRunner
    from medrepro.nets.bundle import load_bundle

    if not spec.path.is_file():
        raise InputError(spec.path, "model file not found")
    suffix = spec.path.suffix.lower()
    if suffix == ".pt":
        try:
            model, meta = load_bundle(spec.path)
        except Exception as err:  # noqa: BLE001 - any unreadable bundle is bad input
            raise InputError(spec.path, f"unreadable model bundle ({err})") from err
        runner = TorchRunner(model, threads=threads)
        predictor: Predictor = runner.infer
        meta_source = spec.path
    elif suffix == ".xml":
        if spec.bundle is None:
            raise InputError(spec.path, "an OpenVINO model needs its bundle (5th field)")
        if not spec.bundle.is_file():
            raise InputError(spec.bundle, "bundle file not found")
        meta = _read_meta(spec.bundle)
        precision = "int8" if "int8" in spec.runtime else "f32"
        shape = (batch, 3, image_size, image_size)
        runner_ov = OpenVINORunner(spec.path, threads=threads, precision=precision, shape=shape)

        def predictor(x: np.ndarray) -> np.ndarray:
            n = len(x)
            if n < batch:  # static shape: pad with zeros, drop the padding's outputs
                x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
            return runner_ov.infer(x)[:n]

        meta_source = spec.bundle
    else:
        raise InputError(spec.path, f"unknown model type {suffix!r} (expected .pt or .xml)")
    if meta.get("output_kind", "heatmaps") != "heatmaps":
        raise InputError(meta_source, f"output_kind {meta.get('output_kind')!r}, not heatmaps")
    return predictor, meta


def predict_heatmaps(
    predictor: Predictor, inputs: np.ndarray, batch: int, n_landmarks: int, source: Path
) -> np.ndarray:
    """Heatmaps ``(N, K, h, w)`` float32 of ``inputs (N, 3, S, S)`` in batches of ``batch``.

    Raises:
        InputError: naming ``source`` if the model's output is not K heatmaps.
    """
    chunks = []
    for start in range(0, len(inputs), batch):
        out = np.asarray(predictor(inputs[start : start + batch]), dtype=np.float32)
        if out.ndim != 4 or out.shape[1] != n_landmarks:
            raise InputError(
                source,
                f"model outputs {out.shape}, expected (n, {n_landmarks}, h, w): "
                f"{n_landmarks} heatmaps, one per landmark of the dataset",
            )
        chunks.append(out)
    return np.concatenate(chunks, axis=0)


def _labels(spec: ModelSpec) -> dict[str, Any]:
    return {"method": spec.method, "budget": spec.budget, "runtime": spec.runtime}


def predictions_table(
    spec: ModelSpec,
    case_id: Sequence[str],
    names: Sequence[str],
    pred: np.ndarray,
    truth: np.ndarray,
    errors: np.ndarray,
) -> pd.DataFrame:
    """One row per (image, landmark): true and predicted ``(x, y)`` and the error, pixels."""
    n, k = errors.shape
    table = pd.DataFrame(
        {
            "case_id": np.repeat(np.asarray(case_id, dtype=str), k),
            "landmark": np.tile(np.asarray(names, dtype=str), n),
            "x_true": truth[..., 0].ravel(),
            "y_true": truth[..., 1].ravel(),
            "x_pred": pred[..., 0].ravel(),
            "y_pred": pred[..., 1].ravel(),
            "error_px": errors.ravel(),
        }
    )
    return table.assign(**_labels(spec))[PREDICTION_COLUMNS]


def per_image_table(
    spec: ModelSpec, case_id: Sequence[str], image_err: np.ndarray, nme: np.ndarray
) -> pd.DataFrame:
    """One row per image: mean error over landmarks (pixels) and NME."""
    table = pd.DataFrame({"case_id": list(case_id), "error_px": image_err, "nme": nme})
    return table.assign(**_labels(spec))[PER_IMAGE_COLUMNS]


def summary_row(
    spec: ModelSpec,
    image_err: np.ndarray,
    nme: np.ndarray,
    n_train: int,
    threshold_px: float,
) -> dict[str, Any]:
    """ME, SD, median, AUC and FR at ``threshold_px``, mean NME of one model."""
    from medrepro.metrics.ced import ced_auc, failure_rate

    err = np.asarray(image_err, dtype=np.float64)
    return {
        **_labels(spec),
        "n_train": int(n_train),
        "n_test": len(err),
        "me_px": float(np.mean(err)),
        "sd_px": float(np.std(err, ddof=1)) if len(err) > 1 else float("nan"),
        "median_px": float(np.median(err)),
        "auc": float(ced_auc(err, threshold_px)),
        "fr": float(failure_rate(err, threshold_px)),
        "threshold_px": float(threshold_px),
        "nme": float(np.mean(nme)) if np.all(np.isfinite(nme)) else float("nan"),
    }


def ced_table(
    spec: ModelSpec, image_err: np.ndarray, ced_max_px: float, n_points: int
) -> pd.DataFrame:
    """The CED curve sampled at ``n_points`` thresholds on ``[0, ced_max_px]``."""
    from medrepro.metrics.ced import ced_curve

    thresholds, fractions = ced_curve(np.asarray(image_err), ced_max_px, n_points=n_points)
    table = pd.DataFrame({"threshold_px": thresholds, "fraction": fractions})
    return table.assign(**_labels(spec))[CED_COLUMNS]


def _n_train(spec: ModelSpec, meta: dict[str, Any], splits: pd.DataFrame) -> int:
    """``n_train`` of the bundle's ``extra``, else the size of the budget in ``splits``."""
    extra = meta.get("extra") or {}
    if "n_train" in extra:
        return int(extra["n_train"])
    return len(budget_indices(splits, spec.budget))


def evaluate(
    items: TaskItems,
    splits: pd.DataFrame,
    specs: Sequence[ModelSpec],
    *,
    threshold_px: float,
    ced_max_px: float,
    ced_points: int = 201,
    figure_budget: int = 100,
    n_figure: int = 4,
    images: np.ndarray | None = None,
    threads: int = 1,
    batch: int = 8,
) -> dict[str, Any]:
    """Run and score every model.

    Args:
        items: the test split (:meth:`FaceLandmarksTask.load_items`).
        splits: ``splits.csv`` (for ``n_train`` when a bundle lacks it).
        specs: the models.
        threshold_px: AUC upper limit and failure threshold (pixels).
        ced_max_px: upper end of ``ced.csv``'s curve (pixels).
        images: uint8 ``(N, S, S, 3)`` test images for ``heatmaps.npz`` (None: not stored).

    Returns:
        ``{"predictions", "per_image", "summary", "ced"}`` DataFrames and ``"heatmaps"``, the
        arrays of ``heatmaps.npz``.
    """
    names = list(items.extra["landmark_names"])
    truth = items.extra["landmarks"]
    eyes = eye_corner_indices(names)
    size = int(items.inputs.shape[-1])
    m = min(n_figure, len(items))
    figure: dict[str, np.ndarray] = {
        "case_id": np.asarray(items.case_id[:m], dtype=str),
        "truth": truth[:m].astype(np.float64),
    }
    if images is not None:
        figure["images"] = np.asarray(images[:m], dtype=np.uint8)
    keys: list[str] = []
    tables: dict[str, list[pd.DataFrame]] = {"predictions": [], "per_image": [], "ced": []}
    summary = []
    seen = set()
    from medrepro.metrics.ced import normalised_mean_error, point_errors

    for spec in specs:
        label = (spec.method, spec.budget, spec.runtime)
        if label in seen:
            raise InputError(spec.path, f"model {label} given twice")
        seen.add(label)
        t0 = time.perf_counter()
        predictor, meta = load_predictor(spec, threads, batch, size)
        model_names = (meta.get("extra") or {}).get("landmark_names")
        if model_names is not None and list(model_names) != names:
            raise InputError(
                spec.bundle or spec.path,
                f"model landmarks {list(model_names)} differ from the dataset's {names}",
            )
        hm = predict_heatmaps(predictor, items.inputs, batch, len(names), spec.path)
        pred = decode_outputs(hm, meta)
        errors = np.asarray(point_errors(pred, truth), dtype=np.float64)
        image_err = errors.mean(axis=1)
        nme = (
            np.asarray(normalised_mean_error(pred, truth, *eyes), dtype=np.float64)
            if eyes is not None
            else np.full(len(items), np.nan)
        )
        tables["predictions"].append(
            predictions_table(spec, items.case_id, names, pred, truth, errors)
        )
        tables["per_image"].append(per_image_table(spec, items.case_id, image_err, nme))
        tables["ced"].append(ced_table(spec, image_err, ced_max_px, ced_points))
        summary.append(
            summary_row(spec, image_err, nme, _n_train(spec, meta, splits), threshold_px)
        )
        if spec.budget == figure_budget:
            keys.append(spec.key)
            figure[f"{spec.key}/heatmaps"] = hm[:m].astype(np.float16)
            figure[f"{spec.key}/pred"] = pred[:m]
        print(
            f"face-evaluate: {spec.method} {spec.budget}% {spec.runtime}: "
            f"ME {summary[-1]['me_px']:.3f} px, AUC {summary[-1]['auc']:.3f}, "
            f"FR {summary[-1]['fr']:.3f} ({time.perf_counter() - t0:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    figure["keys"] = np.asarray(keys, dtype=str)
    result: dict[str, Any] = {
        name: pd.concat(parts, ignore_index=True) for name, parts in tables.items()
    }
    result["summary"] = pd.DataFrame(summary, columns=SUMMARY_COLUMNS)
    result["heatmaps"] = figure
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro face-evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dataset", type=Path, required=True, help="dataset.npz")
    parser.add_argument("--splits", type=Path, required=True, help="splits.csv")
    parser.add_argument(
        "--model", type=parse_model_spec, action="append", required=True,
        help="METHOD,BUDGET,RUNTIME,PATH[,BUNDLE] (repeat); PATH .pt (PyTorch) or .xml "
        "(OpenVINO, then BUNDLE gives the metadata)",
    )  # fmt: skip
    parser.add_argument("--threshold-px", type=float, required=True, help="AUC/FR threshold")
    parser.add_argument("--ced-max-px", type=float, required=True, help="CED curve upper end")
    parser.add_argument("--ced-points", type=int, default=201, help="CED samples in ced.csv")
    parser.add_argument("--figure-budget", type=int, default=100)
    parser.add_argument("--n-figure", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out-dir", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: see :func:`_parser` and the module docstring."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threshold_px <= 0 or args.ced_max_px <= 0 or args.batch < 1 or args.ced_points < 2:
        parser.error("--threshold-px, --ced-max-px and --batch must be > 0, --ced-points >= 2")
    from medrepro.deployment.threads import cpu_affinity, set_torch_threads

    with cpu_affinity(args.threads):
        set_torch_threads(args.threads)
        items = TASK.load_items(args.dataset, args.splits, args.split)
        splits = read_text_csv(args.splits)
        with np.load(args.dataset, allow_pickle=False) as data:
            index = np.flatnonzero(np.isin(data["case_id"].astype(str), items.case_id))
            images = data["images"][index]
        result = evaluate(
            items,
            splits,
            args.model,
            threshold_px=args.threshold_px,
            ced_max_px=args.ced_max_px,
            ced_points=args.ced_points,
            figure_budget=args.figure_budget,
            n_figure=args.n_figure,
            images=images,
            threads=args.threads,
            batch=args.batch,
        )
    with atomic_dir(args.out_dir) as tmp:
        for name in ("predictions", "per_image", "summary", "ced"):
            write_csv(result[name], tmp / f"{name}.csv")
        write_npz(tmp / "heatmaps.npz", **result["heatmaps"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
