"""Inputs of the brain extraction report: read and validate every artefact before anything is written.

Formats are those of ``docs/brain_extraction.md`` and ``docs/architecture.md``; a missing or
malformed artefact raises :class:`~medrepro.io.errors.InputError` naming the file.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.errors import InputError
from medrepro.io.images import image_to_array, read_image
from medrepro.preprocessing.brain_dataset import QC_COLUMNS
from medrepro.report.cephalometry_inputs import load_benchmark, load_perf
from medrepro.report.inputs import (
    number,
    parse_config,
    read_csv,
    read_json,
    read_json_numbers,
    require,
)
from medrepro.tasks.brain_extraction_evaluate import COLUMNS as EVALUATION_COLUMNS
from medrepro.tasks.brain_extraction_evaluate import CONFIGS as EVALUATION_CONFIGS

__all__ = [
    "CONFIGS",
    "REFERENCE",
    "FIG4_CONFIGS",
    "EVAL_COLUMNS",
    "QC_COLUMNS",
    "HISTORY_COLUMNS",
    "PARITY_KEYS",
    "QUANT_KEYS",
    "QUANT_MODES",
    "Example",
    "ReportInputs",
    "paper_block",
    "load_evaluation",
    "load_qc",
    "load_history",
    "load_parity",
    "load_quantization",
    "load_scaling",
    "choose_example",
    "load_example",
    "load_inputs",
]

#: evaluation configurations in display order (docs/brain_extraction.md, brain-evaluate)
CONFIGS: tuple[str, ...] = tuple(EVALUATION_CONFIGS)
#: the configuration every other one is compared with
REFERENCE = "pytorch_fp32"
#: the masks of Fig. 4 besides the ground truth (the paper's PT-FP32, OV-FP32, OV-INT8)
FIG4_CONFIGS: tuple[str, ...] = ("pytorch_fp32", "openvino_fp32", "openvino_int8")

#: columns of evaluation.csv and qc.csv, owned by the stages that write them
EVAL_COLUMNS: tuple[str, ...] = tuple(EVALUATION_COLUMNS)
EVAL_NUMERIC = ("dice", "hd95_mm", "hd95_max_mm", "pred_volume_ml", "gt_volume_ml", "seconds")
HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "train_loss", "val_loss", "val_metric", "seconds")
#: routes of ``export/parity.json`` (max abs output difference against PyTorch)
PARITY_KEYS: tuple[str, ...] = (
    "onnxruntime",
    "openvino_fp32",
    "openvino_fp16",
    "openvino_from_onnx",
)
#: numeric keys every ``quantization.json`` must have (deployment/quantize.py)
QUANT_KEYS: tuple[str, ...] = (
    "metric_fp32",
    "metric_int8",
    "drop",
    "max_drop",
    "fake_quantize_total",
    "fake_quantize_kept",
)
#: quantization directory -> mode label (accuracy control, plain nncf.quantize)
QUANT_MODES: dict[str, str] = {"int8": "accuracy_control", "int8_default": "default"}

_TRUE = {"true", "1", "yes", "t", "1.0"}
_FALSE = {"false", "0", "no", "f", "0.0", ""}


@dataclass
class Example:
    """The test subject of Fig. 4 (arrays ``(X, Y, Z)`` in the native t1ce grid, LPS).

    Attributes:
        subject_id: the subject.
        modality: the input modality whose predicted masks are shown.
        image: t1ce intensities, float32.
        spacing: ``(3,)`` voxel spacing in mm.
        gt: ground-truth brain mask, bool.
        masks: predicted masks per configuration, bool.
        dice: Dice of each shown configuration (from ``evaluation.csv``).
        paths: files read.
    """

    subject_id: str
    modality: str
    image: np.ndarray
    spacing: np.ndarray
    gt: np.ndarray
    masks: dict[str, np.ndarray]
    dice: dict[str, float]
    paths: list[Path] = field(default_factory=list)


@dataclass
class ReportInputs:
    """All validated inputs of the report.

    Attributes:
        results_dir: the paper's results directory (outputs go here too).
        model: the model name (directory under ``models/``).
        evaluation: ``evaluation.csv`` (numbers coerced, ``empty_pred``/``empty_gt`` bool).
        history: ``history.csv``.
        parity: ``export/parity.json``.
        quantization: ``{"accuracy_control": ..., "default": ...}`` from the two
            ``quantization.json``.
        bench: ``benchmark/<model>.csv`` (numbers coerced).
        perf: ``benchmark/<model>_perf_counters.csv``.
        sysinfo: ``benchmark/<model>_sysinfo.json``.
        scaling: thread count -> ``benchmark/scaling/<model>_t<k>.csv``.
        qc: ``preprocessed/qc.csv`` (numbers coerced, flags bool).
        example: the Fig. 4 subject, or ``None`` if no PyTorch t1ce item exists.
        config: the run's whole configuration as given.
        block: the paper's configuration block, scale settings merged in.
        seed: the run's seed.
        paths: every file read (for provenance).
        options: thresholds of the claims.
    """

    results_dir: Path
    model: str
    evaluation: pd.DataFrame
    history: pd.DataFrame
    parity: dict[str, Any]
    quantization: dict[str, dict[str, Any]]
    bench: pd.DataFrame
    perf: pd.DataFrame
    sysinfo: dict[str, Any]
    scaling: dict[int, pd.DataFrame]
    qc: pd.DataFrame
    example: Example | None
    config: dict[str, Any]
    block: dict[str, Any]
    seed: int | None
    paths: list[Path]
    options: dict[str, Any]

    @property
    def configs(self) -> list[str]:
        """Evaluated configurations in display order (known ones first)."""
        present = list(dict.fromkeys(self.evaluation["config"]))
        return [c for c in CONFIGS if c in present] + [c for c in present if c not in CONFIGS]


def _as_bool(series: pd.Series, path: Path, column: str) -> pd.Series:
    """``True/False/1/0`` text (any case) -> bool; anything else is an InputError."""

    def parse(v: Any) -> bool:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        text = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        text = text.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise InputError(path, f"column {column}: not a boolean: {v!r}")

    return series.map(parse).astype(bool)


def paper_block(config: dict[str, Any]) -> dict[str, Any]:
    """The ``brain_extraction`` block with the settings of ``config["scale"]`` merged in.

    ``config`` may be the whole pipeline configuration (with ``brain_extraction`` and ``scale``)
    or the block itself. The result has a ``scale`` key (``None`` if unknown).
    """
    block = config.get("brain_extraction", config)
    if not isinstance(block, dict):
        return {"scale": config.get("scale")}
    scale = config.get("scale", block.get("scale"))
    merged = {k: v for k, v in block.items() if k != "scales"}
    scales = block.get("scales")
    if isinstance(scales, dict) and isinstance(scales.get(scale), dict):
        merged.update(scales[scale])
    merged["scale"] = scale
    return merged


def load_evaluation(path: Path) -> pd.DataFrame:
    """Read and validate ``evaluation.csv``.

    Checks: columns, at least one ``pytorch_fp32`` row, no duplicate (subject, modality, config),
    Dice in [0, 1], HD95 >= 0 and NaN only when exactly one mask is empty (the flag says which).
    """
    df = read_csv(path, EVAL_COLUMNS, "per-item evaluation")
    for c in ("subject_id", "modality", "config", "framework", "precision", "route"):
        df[c] = df[c].astype(str).str.strip()
    df["route"] = df["route"].replace("nan", "")
    for c in EVAL_NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["empty_pred"] = _as_bool(df["empty_pred"], path, "empty_pred")
    df["empty_gt"] = _as_bool(df["empty_gt"], path, "empty_gt")
    if not (df["config"] == REFERENCE).any():
        raise InputError(path, f"no {REFERENCE} rows (the reference of every comparison)")
    dup = df.duplicated(["subject_id", "modality", "config"])
    if dup.any():
        r = df[dup].iloc[0]
        raise InputError(path, f"duplicate row for {r['subject_id']} {r['modality']} {r['config']}")
    dice = df["dice"]
    if dice.isna().any() or ((dice < -1e-9) | (dice > 1 + 1e-9)).any():
        raise InputError(path, "dice must be a number in [0, 1] on every row")
    one_empty = df["empty_pred"] ^ df["empty_gt"]
    for c in ("hd95_mm", "hd95_max_mm"):
        bad_nan = df[c].isna() & ~one_empty
        if bad_nan.any():
            r = df[bad_nan].iloc[0]
            raise InputError(
                path,
                f"{c} missing for {r['subject_id']} {r['modality']} {r['config']} although "
                "neither or both masks are empty",
            )
        vals = df.loc[df[c].notna(), c]
        if (~np.isfinite(vals) | (vals < 0)).any():
            raise InputError(path, f"{c} must be finite and >= 0 where given")
    return df.reset_index(drop=True)


def load_qc(path: Path) -> pd.DataFrame:
    """Read ``preprocessed/qc.csv`` (one row per subject; flags as bool)."""
    df = read_csv(path, QC_COLUMNS, "registration quality control")
    df["subject_id"] = df["subject_id"].astype(str)
    for c in ("mask_dice_vs_atlas", "rotation_deg_t1ce", "translation_mm_t1ce"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["qc_pass"] = _as_bool(df["qc_pass"], path, "qc_pass")
    df["included"] = _as_bool(df["included"], path, "included")
    df["reason"] = df["reason"].fillna("").astype(str)
    if df["subject_id"].duplicated().any():
        raise InputError(path, "duplicate subject_id")
    if df["mask_dice_vs_atlas"].isna().any():
        raise InputError(path, "mask_dice_vs_atlas missing on some rows")
    return df


def load_history(path: Path) -> pd.DataFrame:
    """Read ``history.csv`` (numbers coerced)."""
    df = read_csv(path, HISTORY_COLUMNS, "training history")
    for c in HISTORY_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def load_parity(path: Path) -> dict[str, Any]:
    """Read ``export/parity.json``; every route of :data:`PARITY_KEYS` needs a number >= 0."""
    obj = read_json(path, "export parity")
    for key in PARITY_KEYS:
        value = number(obj.get(key))
        if math.isnan(value) or value < 0:
            raise InputError(
                path, f"{key}: expected a max abs difference >= 0, got {obj.get(key)!r}"
            )
    return obj


def load_quantization(path: Path) -> dict[str, Any]:
    """Read one ``quantization.json``; the keys of :data:`QUANT_KEYS` must be numbers."""
    return read_json_numbers(path, "INT8 quantization summary", QUANT_KEYS)


def load_scaling(path: Path, threads: int, model: str) -> pd.DataFrame:
    """Read one core-scaling table; every row must have ``threads == threads``."""
    df = load_benchmark(path, model)
    if not (df["threads"] == threads).all():
        found = sorted(set(df["threads"].astype(int)))
        raise InputError(path, f"expected threads={threads} on every row, found {found}")
    return df


def choose_example(evaluation: pd.DataFrame) -> tuple[str, str, list[str]] | None:
    """The Fig. 4 subject: median PyTorch FP32 Dice among the t1ce test items.

    Falls back to the first modality (sorted) when there is no t1ce item. Ties are broken by
    subject id, so the choice is deterministic.

    Returns:
        ``(subject_id, modality, configs shown)`` or ``None``.
    """
    ref = evaluation[evaluation["config"] == REFERENCE]
    if ref.empty:
        return None
    mods = sorted(set(ref["modality"]))
    modality = "t1ce" if "t1ce" in mods else mods[0]
    sub = ref[ref["modality"] == modality].sort_values(["dice", "subject_id"])
    sid = str(sub.iloc[(len(sub) - 1) // 2]["subject_id"])
    item = evaluation[(evaluation["subject_id"] == sid) & (evaluation["modality"] == modality)]
    configs = [c for c in FIG4_CONFIGS if (item["config"] == c).any()]
    return sid, modality, configs


def _mask_array(path: Path, what: str, shape: tuple[int, ...]) -> np.ndarray:
    require(path, what)
    arr = image_to_array(read_image(path)) >= 0.5
    if arr.shape != shape:
        raise InputError(path, f"shape {arr.shape} differs from the t1ce image {shape}")
    return arr


def load_example(results_dir: Path, model: str, evaluation: pd.DataFrame) -> Example | None:
    """Read the Fig. 4 subject's native t1ce, ground truth and predicted masks."""
    choice = choose_example(evaluation)
    if choice is None:
        return None
    sid, modality, configs = choice
    native = results_dir / "native" / sid
    img_path = require(native / f"{sid}_t1ce.nii.gz", "native t1ce of the Fig. 4 subject")
    img = read_image(img_path)
    image = image_to_array(img).astype(np.float32)
    gt_path = native / f"{sid}_mask.nii.gz"
    gt = _mask_array(gt_path, "native ground-truth mask", image.shape)
    masks, paths = {}, [img_path, gt_path]
    mdir = results_dir / "models" / model / "masks"
    for config in configs:
        p = mdir / f"{sid}_{modality}_{config}.nii.gz"
        masks[config] = _mask_array(p, f"native mask of {config}", image.shape)
        paths.append(p)
    item = evaluation[(evaluation["subject_id"] == sid) & (evaluation["modality"] == modality)]
    dice = {str(r["config"]): float(r["dice"]) for _, r in item.iterrows()}
    return Example(
        subject_id=sid,
        modality=modality,
        image=image,
        spacing=np.asarray(img.GetSpacing(), dtype=np.float64),
        gt=gt,
        masks=masks,
        dice={c: dice[c] for c in configs},
        paths=paths,
    )


def _physical_cores(sysinfo: dict[str, Any], given: int | None) -> int | None:
    """Physical cores of the benchmark machine: ``--physical-cores``, else sysinfo, else None."""
    if given:
        return int(given)
    value = sysinfo.get("physical_cores")  # benchmark.sysinfo.physical_cores
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def load_inputs(args: argparse.Namespace) -> ReportInputs:
    """Read and validate every input named on the command line.

    Args:
        args: the parsed ``brain-report`` arguments (see
            :func:`medrepro.report.brain_extraction.build_parser`).

    Returns:
        The validated inputs.

    Raises:
        InputError: naming the first missing or malformed artefact.
    """
    results_dir = Path(args.results_dir)
    model = str(args.model)
    config = parse_config(args.config_json)
    block = paper_block(config)
    mdir = results_dir / "models" / model
    bdir = results_dir / "benchmark"
    p = {
        "evaluation": mdir / "evaluation.csv",
        "history": mdir / "history.csv",
        "parity": mdir / "export" / "parity.json",
        "bench": bdir / f"{model}.csv",
        "perf": bdir / f"{model}_perf_counters.csv",
        "sysinfo": bdir / f"{model}_sysinfo.json",
        "qc": results_dir / "preprocessed" / "qc.csv",
    }
    evaluation = load_evaluation(p["evaluation"])
    history = load_history(p["history"])
    parity = load_parity(p["parity"])
    quantization = {}
    paths = list(p.values())
    for sub, mode in QUANT_MODES.items():
        qpath = mdir / sub / "quantization.json"
        quantization[mode] = load_quantization(qpath)
        paths.append(qpath)
    bench = load_benchmark(require(p["bench"], "benchmark results"), model)
    perf = load_perf(p["perf"])
    sysinfo = read_json(p["sysinfo"], "benchmark system information")
    scaling: dict[int, pd.DataFrame] = {}
    for k in sorted({int(t) for t in args.scaling_threads}):
        if k < 1:
            raise InputError(Path("--scaling-threads"), f"thread counts must be >= 1, got {k}")
        spath = bdir / "scaling" / f"{model}_t{k}.csv"
        scaling[k] = load_scaling(require(spath, f"core-scaling benchmark, {k} threads"), k, model)
        paths.append(spath)
    qc = load_qc(p["qc"])
    example = load_example(results_dir, model, evaluation)
    if example is not None:
        paths += example.paths
    quant = block.get("quantization") if isinstance(block.get("quantization"), dict) else {}
    max_drop = number(quant.get("max_drop"))
    if math.isnan(max_drop):
        max_drop = number(quantization["accuracy_control"].get("max_drop"))
    qc_min = number(block.get("qc_min_dice"))
    options = {
        "noise_margin": float(args.noise_margin),
        "identical_dice": float(args.identical_dice),
        "negligible_dice": float(args.negligible_dice),
        "target_speedup": float(args.target_speedup),
        "target_dice_drop": float(args.target_dice_drop),
        "parity_tolerance": float(args.parity_tolerance),
        "max_drop": max_drop,
        "qc_min_dice": None if math.isnan(qc_min) else qc_min,
        "threshold": number(block.get("threshold")),
        "physical_cores": _physical_cores(sysinfo, args.physical_cores),
        "scaling_threads": sorted(scaling),
    }
    return ReportInputs(
        results_dir=results_dir,
        model=model,
        evaluation=evaluation,
        history=history,
        parity=parity,
        quantization=quantization,
        bench=bench,
        perf=perf,
        sysinfo=sysinfo,
        scaling=scaling,
        qc=qc,
        example=example,
        config=config,
        block=block,
        seed=args.seed,
        paths=paths,
        options=options,
    )
