"""Stage ``yolo-select-best``: the YOLO run with the best test AP -> ``models/best``.

Ramos et al. (2020) pick the "best model" over every checkpoint of every YOLO (24-conv) training;
that model is the one deployed (export, INT8 quantization, benchmark). Each run directory holds
``checkpoints.csv`` (``iteration, ap, ...``; written by ``yolo-train``), ``model.pt`` (its
best-AP checkpoint) and ``history.csv``. The run with the highest best AP wins; ties go to the
run listed first (and, within a run, to the earlier checkpoint).

Outputs in ``--out-dir``, each written atomically: ``model.pt`` (a copy of the winner's),
``history.csv`` (a copy of the winner's) and ``best.json`` (``run``, ``run_dir``,
``iteration``, ``ap``, and ``runs``: every run's best AP).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.atomic import atomic_path, write_json
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns

__all__ = ["run_best", "select_best", "main"]


def run_best(run_dir: Path) -> tuple[int, float]:
    """``(iteration, ap)`` of the best checkpoint of one run (earliest iteration on ties).

    Raises:
        InputError: naming ``checkpoints.csv``: missing, without ``iteration``/``ap`` columns,
            non-numeric values, or no finite AP.
    """
    path = Path(run_dir) / "checkpoints.csv"
    table = read_text_csv(path)
    require_columns(table, ("iteration", "ap"), path)
    iteration = pd.to_numeric(table["iteration"], errors="coerce").to_numpy(dtype=float)
    ap = pd.to_numeric(table["ap"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(iteration).any():
        raise InputError(path, "non-numeric 'iteration' values")
    if not np.isfinite(ap).any():
        raise InputError(path, "no checkpoint with a finite 'ap'")
    ap = np.where(np.isfinite(ap), ap, -np.inf)
    best = min(np.flatnonzero(ap == ap.max()), key=lambda i: iteration[i])
    return int(iteration[best]), float(ap[best])


def select_best(runs: Sequence[Path]) -> dict[str, Any]:
    """The winning run among ``runs`` (highest best AP; the first listed on ties).

    Returns:
        ``{"run": name, "run_dir": str, "iteration": int, "ap": float, "runs": {name: ap}}``.

    Raises:
        InputError: a run without a readable ``checkpoints.csv``, or without ``model.pt``.
        ValueError: no runs.
    """
    if not runs:
        raise ValueError("no runs given")
    bests = {Path(r): run_best(Path(r)) for r in runs}
    winner = max(runs, key=lambda r: bests[Path(r)][1])  # max keeps the first on ties
    winner = Path(winner)
    if not (winner / "model.pt").is_file():
        raise InputError(winner / "model.pt", "file not found (best run without model.pt)")
    iteration, ap = bests[winner]
    return {
        "run": winner.name,
        "run_dir": str(winner),
        "iteration": iteration,
        "ap": ap,
        "runs": {Path(r).name: bests[Path(r)][1] for r in runs},
    }


def _copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise InputError(source, "file not found")
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``yolo-select-best`` stage."""
    parser = argparse.ArgumentParser(
        prog="medrepro yolo-select-best", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="models/<run> dirs")
    parser.add_argument("--out-dir", type=Path, required=True, help="models/best")
    args = parser.parse_args(argv)
    best = select_best(args.runs)
    run_dir = Path(best["run_dir"])
    history = run_dir / "history.csv"
    if not history.is_file():
        raise InputError(history, "file not found")
    _copy(run_dir / "model.pt", args.out_dir / "model.pt")
    _copy(history, args.out_dir / "history.csv")
    write_json(args.out_dir / "best.json", best)
    print(
        f"[yolo-select-best] {best['run']}: AP {best['ap']:.4f} at iteration {best['iteration']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
