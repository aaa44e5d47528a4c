"""Stage ``split``: patient-level train/val/test split.

All scans of a patient land in the same split, so follow-up scans never leak between training
and evaluation. The split is a seeded permutation of the sorted patient ids, hence independent of
the row order of the case table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.io.atomic import write_csv
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns

__all__ = ["SPLITS", "split_counts", "split_by_patient", "main"]

SPLITS: tuple[str, str, str] = ("train", "val", "test")


def split_counts(n_patients: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Number of patients per split: largest remainders, then at least one per split.

    Args:
        n_patients: number of patients, at least 3.
        fractions: ``(train, val, test)`` positive fractions summing to 1.

    Returns:
        ``(n_train, n_val, n_test)`` summing to ``n_patients``, each at least 1.

    Raises:
        ValueError: bad fractions or fewer than 3 patients.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or not np.all(np.isfinite(f)) or np.any(f <= 0) or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be 3 positive numbers summing to 1, got {list(fractions)}"
        )
    if n_patients < 3:
        raise ValueError(f"need at least 3 patients for 3 non-empty splits, got {n_patients}")
    exact = f * n_patients
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n_patients - counts.sum()]:
        counts[i] += 1
    while np.any(counts == 0):
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def split_by_patient(
    cases: pd.DataFrame,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    *,
    source: str | Path = "cases",
) -> pd.DataFrame:
    """Assign every case to ``train``, ``val`` or ``test``, keeping patients whole.

    Args:
        cases: table with columns ``case_id`` and ``patient_id``.
        fractions: ``(train, val, test)`` fractions of patients (not of cases).
        seed: seed of the permutation of patients.
        source: name of the table's file, used in error messages.

    Returns:
        ``case_id, patient_id, split`` (str) in the row order of ``cases``.

    Raises:
        InputError: missing columns, duplicate or empty ids, or fewer than 3 patients.
        ValueError: bad ``fractions``.
    """
    require_columns(cases, ("case_id", "patient_id"), source)
    case_id = cases["case_id"].astype(str)
    patient_id = cases["patient_id"].astype(str)
    if case_id.duplicated().any():
        raise InputError(
            source, f"duplicate case_id {case_id[case_id.duplicated()].unique().tolist()}"
        )
    if (case_id.str.strip() == "").any() or (patient_id.str.strip() == "").any():
        raise InputError(source, "empty case_id or patient_id")
    patients = np.array(sorted(patient_id.unique()))
    if len(patients) < 3:
        raise InputError(
            source, f"need at least 3 patients for train/val/test, got {len(patients)}"
        )
    n_train, n_val, _ = split_counts(len(patients), fractions)
    order = patients[np.random.default_rng(seed).permutation(len(patients))]
    assignment = {p: SPLITS[0] for p in order[:n_train]}
    assignment |= {p: SPLITS[1] for p in order[n_train : n_train + n_val]}
    assignment |= {p: SPLITS[2] for p in order[n_train + n_val :]}
    return pd.DataFrame(
        {
            "case_id": case_id.to_numpy(),
            "patient_id": patient_id.to_numpy(),
            "split": patient_id.map(assignment).to_numpy(),
        }
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medrepro split", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="table with case_id, patient_id")
    parser.add_argument("--out", type=Path, required=True, help="output splits.csv")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.6, 0.2, 0.2),
        metavar="F",
        help="train val test fractions of patients",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient permutation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m medrepro split --cases CSV --out CSV [--fractions F F F] [--seed S]``."""
    args = _parser().parse_args(argv)
    cases = read_text_csv(args.cases)
    splits = split_by_patient(cases, args.fractions, args.seed, source=args.cases)
    write_csv(splits, args.out)
    for name in SPLITS:
        part = splits[splits["split"] == name]
        print(
            f"{name}: {part['patient_id'].nunique()} patients, {len(part)} cases", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
