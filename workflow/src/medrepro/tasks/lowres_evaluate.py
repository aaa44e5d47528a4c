"""Stage ``lowres-evaluate``: object-wise scores of one model's probabilities (``docs/lowres.md``).

Reads the probability maps of ``lowres-infer`` (``probabilities.npz``, key = study id, float16
``(z, y, x)``) and the ground-truth masks of the preprocessed container (``studies.npz``, through
:func:`medrepro.data.lowres_studies.read_study_arrays`, one study at a time), scores every study
of ``--split`` with :mod:`medrepro.metrics.objects` (the LowRes paper's FROC variant, not
LUNA16's CPM) and writes into ``--out-dir`` (replaced as a whole, atomically):

- ``objects.csv``: ``study_id, kind (gt|pred), object, size_voxels, diameter_mm, hit_dice,
  hit_stat, self_stat``; ``self_stat`` is empty for ``gt`` rows and ``hit_stat`` for ``pred``
  rows (not applicable); a ``pred`` row with ``hit_dice == 0`` overlaps no GT object.
- ``froc.csv``: ``threshold, fp_per_scan, recall, n_tp, n_fp`` at sigmoid(linspace(0, 5, 51)).
- ``studies.csv``: ``study_id, image_dice, n_gt, n_pred``.
- ``summary.json``: ``avg_recall, avg_recall_sd`` (bootstrap over studies), ``object_dice_mean,
  object_dice_sd, image_dice_mean, n_studies, n_objects, n_found, fp_per_scan_at_05``; an
  undefined number (e.g. no object found) is ``null``.

Ground-truth objects are the 26-connected components of the stored union mask, so annotated
objects that touch count as one; ``--objects`` (the container's ``objects.csv``), when given, is
only checked against it and the studies where the counts differ are reported on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.data.lowres_studies import (
    read_objects,
    read_studies,
    read_study_arrays,
    studies_of_split,
)
from medrepro.io.atomic import atomic_dir, write_csv, write_json
from medrepro.io.errors import InputError
from medrepro.metrics.objects import (
    THRESHOLDS,
    StudyRecords,
    average_recall,
    bootstrap_average_recall,
    froc,
    image_dice,
    object_dice,
    object_records,
)

__all__ = [
    "OBJECT_COLUMNS",
    "STUDY_COLUMNS",
    "SUMMARY_KEYS",
    "read_probability",
    "evaluate_study",
    "summarise",
    "evaluate",
    "main",
]

#: columns of ``objects.csv``
OBJECT_COLUMNS = [
    "study_id", "kind", "object", "size_voxels", "diameter_mm", "hit_dice", "hit_stat",
    "self_stat",
]  # fmt: skip
#: columns of ``studies.csv``
STUDY_COLUMNS = ["study_id", "image_dice", "n_gt", "n_pred"]
#: keys of ``summary.json``, in order
SUMMARY_KEYS = [
    "avg_recall", "avg_recall_sd", "object_dice_mean", "object_dice_sd", "image_dice_mean",
    "n_studies", "n_objects", "n_found", "fp_per_scan_at_05",
]  # fmt: skip


def read_probability(path: Path, study_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """One study's probability map ``(z, y, x)`` as float32 from ``probabilities.npz``.

    Raises:
        InputError: naming ``path``: missing or unreadable file, study absent, shape differing
            from the ground truth, or values outside [0, 1] (NaN included).
    """
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            if study_id not in data.files:
                raise InputError(path, f"study {study_id!r} has no probability map")
            prob = data[study_id].astype(np.float32)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"unreadable npz ({err})") from err
    if prob.shape != tuple(shape):
        raise InputError(
            path, f"study {study_id!r}: probabilities {prob.shape} vs ground truth {tuple(shape)}"
        )
    if not np.all((prob >= 0) & (prob <= 1)):
        raise InputError(path, f"study {study_id!r}: probabilities outside [0, 1] or not finite")
    return prob


def evaluate_study(
    prob: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[StudyRecords, dict[str, Any]]:
    """Object records and the ``studies.csv`` numbers (without ``study_id``) of one study."""
    gt_rec, pred_rec = object_records(prob, gt, spacing)
    row = {
        "image_dice": image_dice(prob > 0.5, gt),
        "n_gt": len(gt_rec),
        "n_pred": len(pred_rec),
    }
    return (gt_rec, pred_rec), row


def _objects_table(records: dict[str, StudyRecords]) -> pd.DataFrame:
    frames = []
    for sid, (gt_rec, pred_rec) in records.items():
        for kind, frame in (("gt", gt_rec), ("pred", pred_rec)):
            if len(frame):
                frames.append(frame.assign(study_id=sid, kind=kind))
    if not frames:
        return pd.DataFrame(columns=OBJECT_COLUMNS)
    return pd.concat(frames, ignore_index=True).reindex(columns=OBJECT_COLUMNS)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def summarise(
    records: dict[str, StudyRecords],
    froc_table: pd.DataFrame,
    image_dices: Sequence[float],
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """The ``summary.json`` dictionary (:data:`SUMMARY_KEYS`; undefined numbers are ``None``)."""
    mean, sd, n_found = object_dice(records)
    at_05 = froc_table.loc[np.isclose(froc_table["threshold"], 0.5), "fp_per_scan"]
    return {
        "avg_recall": _finite_or_none(average_recall(froc_table)),
        "avg_recall_sd": _finite_or_none(bootstrap_average_recall(records, n_bootstrap, seed)),
        "object_dice_mean": _finite_or_none(mean),
        "object_dice_sd": _finite_or_none(sd),
        "image_dice_mean": _finite_or_none(
            float(np.mean(image_dices)) if image_dices else math.nan
        ),
        "n_studies": len(records),
        "n_objects": int(sum(len(g) for g, _ in records.values())),
        "n_found": n_found,
        "fp_per_scan_at_05": _finite_or_none(float(at_05.iloc[0]) if len(at_05) else math.nan),
    }


def _spacing(table: pd.DataFrame, table_path: Path, sid: str) -> tuple[float, float, float]:
    row = table.loc[table["study_id"] == sid].iloc[0]
    try:
        spacing = tuple(float(row[f"spacing_{a}"]) for a in "zyx")
    except (TypeError, ValueError) as err:
        raise InputError(table_path, f"study {sid!r}: bad spacing ({err})") from err
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(table_path, f"study {sid!r}: spacing must be finite and > 0 mm")
    return spacing  # type: ignore[return-value]


def _check_objects(objects_path: Path, table: dict[str, int]) -> list[str]:
    """Studies whose number of GT components differs from their rows in ``objects.csv``."""
    objects = read_objects(objects_path)
    counts = objects.groupby("study_id").size()
    return [sid for sid, n in table.items() if int(counts.get(sid, 0)) != n]


def evaluate(
    probabilities: Path,
    studies: Path,
    table_path: Path,
    out_dir: Path,
    split: str = "test",
    n_bootstrap: int = 200,
    seed: int = 0,
    objects: Path | None = None,
) -> dict[str, Any]:
    """Score every kept study of ``split`` and write the four outputs into ``out_dir``.

    Returns:
        The summary dictionary written to ``summary.json``.

    Raises:
        InputError: naming the file: a missing study or a bad table, container or probability map.
    """
    table = read_studies(table_path)
    ids = studies_of_split(table, split)
    if not ids:
        raise InputError(table_path, f"no kept study in split {split!r}")
    if not probabilities.is_file():
        raise InputError(probabilities, "file not found")
    records: dict[str, StudyRecords] = {}
    rows = []
    for sid in ids:
        _, mask = read_study_arrays(studies, [sid], with_image=False)[sid]
        assert mask is not None
        prob = read_probability(probabilities, sid, mask.shape)
        records[sid], row = evaluate_study(prob, mask, _spacing(table, table_path, sid))
        rows.append({"study_id": sid, **row})
    if objects is not None:
        differing = _check_objects(objects, {r["study_id"]: r["n_gt"] for r in rows})
        if differing:
            print(
                f"note: {len(differing)} studies have a number of GT components differing from "
                f"{objects} (touching objects merge): {', '.join(differing[:5])}",
                file=sys.stderr,
            )
    froc_table = froc(records, THRESHOLDS)
    study_table = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    summary = summarise(records, froc_table, study_table["image_dice"].tolist(), n_bootstrap, seed)
    with atomic_dir(out_dir) as tmp:
        write_csv(_objects_table(records), tmp / "objects.csv")
        write_csv(froc_table, tmp / "froc.csv")
        write_csv(study_table, tmp / "studies.csv")
        write_json(tmp / "summary.json", summary)
    return summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro lowres-evaluate",
        description="Object-wise scores (FROC, average recall, object and image Dice) of one "
        "model's probability maps (the LowRes paper's variant, not LUNA16's CPM).",
    )
    parser.add_argument("--probabilities", type=Path, required=True, help="probabilities.npz")
    parser.add_argument("--studies", type=Path, required=True, help="preprocessed studies.npz")
    parser.add_argument("--table", type=Path, required=True, help="preprocessed studies.csv")
    parser.add_argument(
        "--objects", type=Path, default=None, help="preprocessed objects.csv (only checked)"
    )
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--n-bootstrap", type=int, default=200, help="resamples for the SD")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out-dir", type=Path, required=True, help="evaluation directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m medrepro lowres-evaluate``."""
    args = _parser().parse_args(argv)
    if args.n_bootstrap < 0:
        raise SystemExit("--n-bootstrap must be >= 0")
    summary = evaluate(
        args.probabilities,
        args.studies,
        args.table,
        args.out_dir,
        split=args.split,
        n_bootstrap=args.n_bootstrap,
        seed=args.seed,
        objects=args.objects,
    )
    recall = summary["avg_recall"]
    print(
        f"lowres-evaluate: {summary['n_studies']} studies, {summary['n_objects']} objects, "
        f"average recall {recall if recall is None else round(recall, 3)} -> {args.out_dir}"
    )
    return 0
