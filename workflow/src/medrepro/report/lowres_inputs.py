"""Inputs of the ``lowres-report`` stage: every artefact read and validated before any write.

Layout (``docs/lowres.md``), under ``results_dir/{dataset}/``:

- ``preprocessed/studies.csv``, ``objects.csv``, ``studies.npz`` (one study for Fig. 3);
- ``predictions/{model}/{runtime}/summary.json`` and ``times.csv`` (timing at ``--threads``),
  ``probabilities.npz`` (PyTorch only, one study for Fig. 3);
- ``timing/{model}/{runtime}_t{T}/summary.json`` and ``times.csv`` for the other thread counts of
  ``--threads-list``: required for ``torch``, read when present for the OpenVINO runtimes;
- ``evaluation/{model}/{runtime}/summary.json``, ``froc.csv``, ``objects.csv``;
- ``models/{model}/history.csv``; ``models/{model}/openvino/parity.json`` and
  ``quantization.json`` (when an OpenVINO runtime is reported).

A missing or malformed artefact raises :class:`~medrepro.io.errors.InputError` naming it.
"""

from __future__ import annotations

import argparse
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.data.lowres_studies import SPLITS, read_objects, read_studies, read_study_arrays
from medrepro.io.errors import InputError
from medrepro.metrics.objects import FROC_COLUMNS as METRIC_FROC_COLUMNS
from medrepro.report.inputs import number, parse_config, read_csv, read_json, require, scaled_block
from medrepro.tasks.lowres_evaluate import SUMMARY_KEYS

__all__ = [
    "REFERENCE_RUNTIME",
    "REFERENCE_MODEL",
    "TIMES_COLUMNS",
    "TIMING_KEYS",
    "EVAL_KEYS",
    "FROC_COLUMNS",
    "EVAL_OBJECT_COLUMNS",
    "HISTORY_COLUMNS",
    "Timing",
    "Run",
    "Example",
    "DatasetInputs",
    "ReportInputs",
    "lowres_block",
    "load_timing",
    "load_evaluation_summary",
    "load_froc",
    "load_eval_objects",
    "load_history",
    "load_parts",
    "choose_example",
    "load_example",
    "load_inputs",
]

#: the paper's runtime, reference of every OpenVINO comparison
REFERENCE_RUNTIME = "torch"
#: the reference of every speed-up (the paper's baseline)
REFERENCE_MODEL = "unet3d"

TIMES_COLUMNS: tuple[str, ...] = ("study_id", "seconds")
#: numeric keys every timing ``summary.json`` must hold
TIMING_KEYS: tuple[str, ...] = ("threads", "n_studies", "mean_s")
#: keys every evaluation ``summary.json`` must have (values may be null when undefined)
EVAL_KEYS: tuple[str, ...] = tuple(SUMMARY_KEYS)
FROC_COLUMNS: tuple[str, ...] = tuple(METRIC_FROC_COLUMNS)
EVAL_OBJECT_COLUMNS: tuple[str, ...] = (
    "study_id",
    "kind",
    "object",
    "size_voxels",
    "diameter_mm",
    "hit_dice",
    "hit_stat",
    "self_stat",
)
HISTORY_COLUMNS: tuple[str, ...] = ("step", "loss", "lr", "seconds", "phase")


@dataclass
class Timing:
    """Timing of one (dataset, model, runtime, threads) process.

    Attributes:
        threads: inference threads.
        summary: ``summary.json`` (``mean_s``, ``sd_s``, ``median_s``, ``peak_rss_mb``, ...).
        times: ``times.csv``, one row per timed study (``seconds`` and the optional
            ``stage1_seconds``, ``stage2_seconds``, ``n_components``, ``n_patches`` as numbers).
        source: ``predictions`` (the pipeline's threads) or ``timing`` (other thread counts).
    """

    threads: int
    summary: dict[str, Any]
    times: pd.DataFrame
    source: str


@dataclass
class Run:
    """Everything of one (dataset, model, runtime).

    Attributes:
        timing: thread count -> :class:`Timing` (always the pipeline's ``threads``).
        evaluation: evaluation ``summary.json`` (NaN for null values).
        froc: ``froc.csv`` (numbers).
        objects: evaluation ``objects.csv`` (numbers coerced).
    """

    timing: dict[int, Timing]
    evaluation: dict[str, float]
    froc: pd.DataFrame
    objects: pd.DataFrame


@dataclass
class Example:
    """The Fig. 3 slice of one dataset (arrays ``(y, x)``, the axial slice ``z``).

    Attributes:
        study_id: the test study shown.
        z: the axial slice index (preprocessed grid).
        center_yx: the object's centre ``(y, x)`` in voxels.
        diameter_mm: the object's diameter.
        image: the slice, intensities in [0, 1].
        gt: ground-truth slice, bool.
        probabilities: model -> PyTorch probability slice in [0, 1].
        spacing: ``(z, y, x)`` voxel size in mm.
    """

    study_id: str
    z: int
    center_yx: tuple[float, float]
    diameter_mm: float
    image: np.ndarray
    gt: np.ndarray
    probabilities: dict[str, np.ndarray]
    spacing: tuple[float, float, float]


@dataclass
class DatasetInputs:
    """Validated inputs of one dataset.

    Attributes:
        name: ``luna16`` or ``metastases``.
        studies: ``studies.csv`` (``excluded`` bool).
        objects: ``objects.csv`` of the kept studies (numbers coerced).
        runs: ``(model, runtime)`` -> :class:`Run`.
        history: model -> ``history.csv``.
        parity: model -> ``parity.json`` (empty without OpenVINO runtimes).
        quantization: model -> ``quantization.json`` (empty without OpenVINO runtimes).
        example: the Fig. 3 slice, or None when no test object exists.
    """

    name: str
    studies: pd.DataFrame
    objects: pd.DataFrame
    runs: dict[tuple[str, str], Run]
    history: dict[str, pd.DataFrame]
    parity: dict[str, dict[str, Any]]
    quantization: dict[str, dict[str, Any]]
    example: Example | None


@dataclass
class ReportInputs:
    """All validated inputs of the report.

    Attributes:
        results_dir: ``results/lowres``.
        datasets: dataset name -> :class:`DatasetInputs`, in command-line order.
        models: models in command-line order.
        runtimes: runtimes in command-line order (``torch`` first).
        threads: the pipeline's inference threads (``predictions/``).
        threads_list: every thread count reported, sorted (``threads`` included).
        config: the run's configuration as given.
        block: the ``lowres`` configuration block with the scale's settings merged in.
        seed: the run's seed (provenance).
        paths: small files read (checksummed in the provenance).
        large_paths: large containers read partially (``.npz``; sizes only in the provenance).
        options: thresholds of the claims.
    """

    results_dir: Path
    datasets: dict[str, DatasetInputs]
    models: list[str]
    runtimes: list[str]
    threads: int
    threads_list: list[int]
    config: dict[str, Any]
    block: dict[str, Any]
    seed: int | None
    paths: list[Path] = field(default_factory=list)
    large_paths: list[Path] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> str | None:
        """The pipeline scale (``smoke``, ``quick``, ``paper``) or None if unknown."""
        s = self.block.get("scale")
        return str(s) if s else None

    @property
    def openvino_runtimes(self) -> list[str]:
        """The reported runtimes other than PyTorch."""
        return [r for r in self.runtimes if r != REFERENCE_RUNTIME]


def lowres_block(config: dict[str, Any]) -> dict[str, Any]:
    """The ``lowres`` block with the settings of ``config["scale"]`` merged in (one level deep).

    ``config`` may be the whole pipeline configuration (with ``lowres`` and ``scale``) or the
    block itself. The result has a ``scale`` key (``None`` if unknown).
    """
    return scaled_block(config, "lowres")


def _numbers(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    df = df.copy()
    for c in columns:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def load_timing(directory: Path, threads: int, model: str, runtime: str, source: str) -> Timing:
    """Read ``summary.json`` and ``times.csv`` of one timing directory.

    Checks: the summary's ``threads`` equals ``threads``; ``model``/``runtime`` match when given;
    ``mean_s`` > 0; every ``seconds`` of ``times.csv`` finite and > 0.
    """
    spath = directory / "summary.json"
    summary = read_json(spath, f"timing summary of {model} {runtime} at {threads} threads")
    for key in TIMING_KEYS:
        if math.isnan(number(summary.get(key))):
            raise InputError(spath, f"{key}: expected a number, got {summary.get(key)!r}")
    if int(summary["threads"]) != threads:
        raise InputError(spath, f"threads is {summary['threads']}, expected {threads}")
    for key, expected in (("model", model), ("runtime", runtime)):
        if key in summary and summary[key] is not None and str(summary[key]) != expected:
            raise InputError(spath, f"{key} is {summary[key]!r}, expected {expected!r}")
    if not number(summary["mean_s"]) > 0:
        raise InputError(spath, f"mean_s must be > 0 s, got {summary['mean_s']!r}")
    tpath = directory / "times.csv"
    times = read_csv(tpath, TIMES_COLUMNS, "per-study inference times")
    times = _numbers(times, ("seconds", "stage1_seconds", "stage2_seconds", "n_components",
                             "n_patches", "voxels"))  # fmt: skip
    secs = times["seconds"].to_numpy(dtype=float)
    if not (np.isfinite(secs) & (secs > 0)).all():
        raise InputError(tpath, "seconds must be finite and > 0 on every row")
    return Timing(threads=threads, summary=summary, times=times, source=source)


def load_evaluation_summary(path: Path) -> dict[str, float]:
    """Read an evaluation ``summary.json``: every key of :data:`EVAL_KEYS` (null -> NaN).

    Checks: ``avg_recall`` and the Dice values in [0, 1] where given.
    """
    obj = read_json(path, "evaluation summary")
    missing = [k for k in EVAL_KEYS if k not in obj]
    if missing:
        raise InputError(path, f"missing keys: {', '.join(missing)}")
    out = {k: number(obj[k]) for k in EVAL_KEYS}
    for k in ("avg_recall", "object_dice_mean", "image_dice_mean"):
        if not math.isnan(out[k]) and not -1e-9 <= out[k] <= 1 + 1e-9:
            raise InputError(path, f"{k} must be in [0, 1], got {out[k]}")
    return out


def load_froc(path: Path) -> pd.DataFrame:
    """Read ``froc.csv`` (numbers; recall in [0, 1], FP per scan >= 0)."""
    df = _numbers(read_csv(path, FROC_COLUMNS, "FROC curve"), FROC_COLUMNS)
    rec, fp = df["recall"], df["fp_per_scan"]
    if rec.isna().any() or fp.isna().any() or (rec < 0).any() or (rec > 1).any() or (fp < 0).any():
        raise InputError(path, "recall must be in [0, 1] and fp_per_scan >= 0 on every row")
    return df


def load_eval_objects(path: Path) -> pd.DataFrame:
    """Read the evaluation ``objects.csv`` (kind ``gt`` or ``pred``; numbers coerced)."""
    df = read_csv(path, EVAL_OBJECT_COLUMNS, "object records", allow_empty=True)
    df["study_id"] = df["study_id"].astype(str)
    df["kind"] = df["kind"].astype(str).str.strip()
    bad = sorted(set(df["kind"]) - {"gt", "pred"})
    if bad:
        raise InputError(path, f"kind must be gt or pred, found {bad}")
    return _numbers(df, EVAL_OBJECT_COLUMNS[2:])


def load_history(path: Path) -> pd.DataFrame:
    """Read ``history.csv`` (``step, loss, lr, seconds`` as numbers, ``phase`` as text)."""
    df = _numbers(read_csv(path, HISTORY_COLUMNS, "training history"), HISTORY_COLUMNS[:4])
    df["phase"] = df["phase"].fillna("main").astype(str)
    return df


def load_parts(path: Path, what: str, key: str | None = None) -> dict[str, Any]:
    """Read ``parity.json`` or ``quantization.json``: ``{part: {...}}`` with at least one part.

    With ``key``, every part must hold a number under it (e.g. ``max_abs_diff``).
    """
    obj = read_json(path, what)
    if not obj or not all(isinstance(v, dict) for v in obj.values()):
        raise InputError(path, "expected {part: {...}} with at least one part")
    if key is not None:
        for part, values in obj.items():
            if math.isnan(number(values.get(key))):
                raise InputError(path, f"{part}.{key}: expected a number, got {values.get(key)!r}")
    return obj


def _npz_keys(path: Path) -> set[str]:
    require(path, "probability maps")
    try:
        with np.load(path, allow_pickle=False) as data:
            return set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"unreadable npz ({err})") from err


def choose_example(objects: pd.DataFrame, candidates: set[str]) -> pd.Series | None:
    """The Fig. 3 object: the median-diameter test object among studies in ``candidates``.

    Ties are broken by study id and object number, so the choice is deterministic.
    """
    sel = objects[(objects["split"] == "test") & objects["study_id"].isin(candidates)]
    sel = sel[np.isfinite(sel["diameter_mm"].to_numpy(dtype=float))]
    if sel.empty:
        return None
    sel = sel.sort_values(["diameter_mm", "study_id", "object"]).reset_index(drop=True)
    return sel.iloc[(len(sel) - 1) // 2]


def _prob_slice(path: Path, sid: str, shape: tuple[int, ...], z: int) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            prob = data[sid]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise InputError(path, f"study {sid!r}: unreadable probability map ({err})") from err
    if prob.shape != shape:
        raise InputError(path, f"study {sid!r}: probabilities {prob.shape} vs image {shape}")
    out = prob[z].astype(np.float32)
    if not np.all((out >= 0) & (out <= 1)):
        raise InputError(path, f"study {sid!r}: probabilities outside [0, 1]")
    return out


def load_example(
    ddir: Path, studies: pd.DataFrame, objects: pd.DataFrame, models: Sequence[str]
) -> tuple[Example | None, list[Path]]:
    """Read the Fig. 3 slice: image, ground truth and each model's PyTorch probabilities.

    Returns:
        ``(example or None, files read)``.
    """
    prob_paths = {m: ddir / "predictions" / m / REFERENCE_RUNTIME / "probabilities.npz"
                  for m in models}  # fmt: skip
    keys = [_npz_keys(p) for p in prob_paths.values()]
    candidates = set.intersection(*keys) if keys else set()
    row = choose_example(objects, candidates)
    read = list(prob_paths.values())
    if row is None:
        return None, read
    sid = str(row["study_id"])
    npz = ddir / "preprocessed" / "studies.npz"
    image, mask = read_study_arrays(npz, [sid])[sid]
    read.append(npz)
    assert image is not None and mask is not None
    z = int(np.clip(round(float(row["center_z"])), 0, image.shape[0] - 1))
    probs = {m: _prob_slice(p, sid, image.shape, z) for m, p in prob_paths.items()}
    srow = studies[studies["study_id"] == sid].iloc[0]
    spacing = tuple(float(srow[f"spacing_{a}"]) for a in "zyx")
    example = Example(
        study_id=sid,
        z=z,
        center_yx=(float(row["center_y"]), float(row["center_x"])),
        diameter_mm=float(row["diameter_mm"]),
        image=image[z],
        gt=mask[z] > 0,
        probabilities=probs,
        spacing=spacing,  # type: ignore[arg-type]
    )
    return example, read


def _load_preprocessed(ddir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    spath, opath = ddir / "preprocessed" / "studies.csv", ddir / "preprocessed" / "objects.csv"
    studies = read_studies(spath)
    objects = read_objects(opath)
    studies = _numbers(studies, [f"spacing_{a}" for a in "zyx"] + [f"shape_{a}" for a in "zyx"])
    bad = sorted(set(studies["split"]) - set(SPLITS))
    if bad:
        raise InputError(spath, f"unknown split(s) {bad}")
    kept = set(studies.loc[~studies["excluded"], "study_id"])
    objects = _numbers(objects, ["object", "diameter_mm", "volume_mm3", "center_z", "center_y",
                                 "center_x"])  # fmt: skip
    objects = objects[objects["study_id"].isin(kept)].reset_index(drop=True)
    if objects["diameter_mm"].isna().any():
        raise InputError(opath, "diameter_mm must be a number on every row of a kept study")
    return studies, objects, [spath, opath]


def _load_run(
    ddir: Path, model: str, runtime: str, threads: int, threads_list: Sequence[int]
) -> tuple[Run, list[Path]]:
    pdir = ddir / "predictions" / model / runtime
    timing = {threads: load_timing(pdir, threads, model, runtime, "predictions")}
    paths = [pdir / "summary.json", pdir / "times.csv"]
    for t in threads_list:
        if t == threads:
            continue
        tdir = ddir / "timing" / model / f"{runtime}_t{t}"
        if runtime != REFERENCE_RUNTIME and not (tdir / "summary.json").is_file():
            continue  # OpenVINO at other thread counts is optional
        timing[t] = load_timing(tdir, t, model, runtime, "timing")
        paths += [tdir / "summary.json", tdir / "times.csv"]
    edir = ddir / "evaluation" / model / runtime
    run = Run(
        timing=dict(sorted(timing.items())),
        evaluation=load_evaluation_summary(edir / "summary.json"),
        froc=load_froc(edir / "froc.csv"),
        objects=load_eval_objects(edir / "objects.csv"),
    )
    paths += [edir / "summary.json", edir / "froc.csv", edir / "objects.csv"]
    return run, paths


def load_dataset(
    results_dir: Path,
    name: str,
    models: Sequence[str],
    runtimes: Sequence[str],
    threads: int,
    threads_list: Sequence[int],
) -> tuple[DatasetInputs, list[Path], list[Path]]:
    """Read one dataset's artefacts.

    Returns:
        ``(inputs, small files read, large containers read partially)``.
    """
    ddir = results_dir / name
    studies, objects, paths = _load_preprocessed(ddir)
    runs: dict[tuple[str, str], Run] = {}
    for model in models:
        for runtime in runtimes:
            runs[(model, runtime)], p = _load_run(ddir, model, runtime, threads, threads_list)
            paths += p
    history, parity, quant = {}, {}, {}
    for model in models:
        mdir = ddir / "models" / model
        history[model] = load_history(mdir / "history.csv")
        paths.append(mdir / "history.csv")
        if any(r != REFERENCE_RUNTIME for r in runtimes):
            odir = mdir / "openvino"
            parity[model] = load_parts(odir / "parity.json", "OpenVINO parity", "max_abs_diff")
            quant[model] = load_parts(odir / "quantization.json", "INT8 quantization summary")
            paths += [odir / "parity.json", odir / "quantization.json"]
    example, large = load_example(ddir, studies, objects, models)
    data = DatasetInputs(name, studies, objects, runs, history, parity, quant, example)
    return data, paths, large


def _unique(values: Sequence[str], option: str) -> list[str]:
    out = list(dict.fromkeys(str(v) for v in values))
    if not out:
        raise InputError(Path(option), "at least one value is required")
    return out


def load_inputs(args: argparse.Namespace) -> ReportInputs:
    """Read and validate every input named on the command line.

    Args:
        args: the parsed ``lowres-report`` arguments (see
            :func:`medrepro.report.lowres.build_parser`).

    Raises:
        InputError: naming the first missing or malformed artefact (or option).
    """
    results_dir = Path(args.results_dir)
    datasets = _unique(args.datasets, "--datasets")
    models = _unique(args.models, "--models")
    runtimes = _unique(args.runtimes, "--runtimes")
    if REFERENCE_RUNTIME not in runtimes:
        raise InputError(Path("--runtimes"), f"{REFERENCE_RUNTIME!r} (the reference) is required")
    runtimes = [REFERENCE_RUNTIME] + [r for r in runtimes if r != REFERENCE_RUNTIME]
    threads = int(args.threads)
    threads_list = sorted({int(t) for t in (args.threads_list or [])} | {threads})
    if threads_list[0] < 1:
        raise InputError(Path("--threads-list"), "thread counts must be >= 1")
    config = parse_config(args.config_json)
    block = lowres_block(config)
    loaded: dict[str, DatasetInputs] = {}
    paths: list[Path] = []
    large: list[Path] = []
    for name in datasets:
        data, p, big = load_dataset(results_dir, name, models, runtimes, threads, threads_list)
        loaded[name] = data
        paths += p
        large += big
    seed = args.seed if args.seed is not None else block.get("seed", config.get("seed"))
    options = {
        "target_speedup": float(args.target_speedup),
        "recall_margin": float(args.recall_margin),
        "int8_recall_margin": float(args.int8_recall_margin),
        "speed_margin": float(args.speed_margin),
        "max_seconds": float(args.max_seconds),
        "max_seconds_threads": int(args.max_seconds_threads),
    }
    return ReportInputs(
        results_dir=results_dir,
        datasets=loaded,
        models=models,
        runtimes=runtimes,
        threads=threads,
        threads_list=threads_list,
        config=config,
        block=block,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        paths=paths,
        large_paths=large,
        options=options,
    )
