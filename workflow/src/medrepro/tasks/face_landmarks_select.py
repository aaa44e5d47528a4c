"""Stage ``face-select``: the method with the lowest ME at one label budget -> ``deploy/best``.

Among the ``torch`` rows of ``summary.csv`` at ``--budget`` (minus ``--exclude`` methods), the one
with the lowest finite ``me_px`` wins; ties go to the first in the summary's row order. Its bundle
``<models-root>/<method>/<budget>/model.pt`` is copied to ``<out-dir>/model.pt`` and the choice is
written to ``<out-dir>/selection.json`` ``{"method", "budget", "me_px", "rule"}``. Each file is
written atomically (the rest of ``out-dir``, e.g. ``export/``, belongs to later stages).
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

__all__ = ["select_best", "main"]


def select_best(
    summary: pd.DataFrame,
    budget: int,
    exclude: Sequence[str] = (),
    runtime: str = "torch",
    source: str | Path = "summary.csv",
) -> dict[str, Any]:
    """The winning row: ``{"method", "budget", "me_px", "rule"}``.

    Raises:
        InputError: naming ``source`` if no candidate with a finite ``me_px`` is left.
    """
    require_columns(summary, ("method", "budget", "runtime", "me_px"), source)
    table = summary.reset_index(drop=True)
    me = pd.to_numeric(table["me_px"], errors="coerce").to_numpy(dtype=np.float64)
    budgets = pd.to_numeric(table["budget"], errors="coerce").to_numpy(dtype=np.float64)
    keep = (
        (table["runtime"].astype(str) == runtime).to_numpy()
        & (budgets == float(budget))
        & ~table["method"].astype(str).isin(list(exclude)).to_numpy()
        & np.isfinite(me)
    )
    if not keep.any():
        raise InputError(
            source,
            f"no {runtime} row at budget {budget} with a finite me_px (excluded: {list(exclude)})",
        )
    candidates = np.flatnonzero(keep)
    best = int(candidates[np.argmin(me[candidates])])  # argmin: first of equal minima
    excluded = f", excluding {', '.join(exclude)}" if exclude else ""
    return {
        "method": str(table.loc[best, "method"]),
        "budget": int(budget),
        "me_px": float(me[best]),
        "rule": (
            f"lowest me_px on the test split at budget {budget} % (runtime {runtime}{excluded}); "
            "ties -> first in summary.csv"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--summary CSV --models-root DIR --budget B [--exclude M ...] --out-dir DIR``."""
    parser = argparse.ArgumentParser(
        prog="medrepro face-select", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--summary", type=Path, required=True, help="face-evaluate summary.csv")
    parser.add_argument("--models-root", type=Path, required=True, help="models/<method>/<budget>/")
    parser.add_argument("--budget", type=int, default=100, help="label budget, per cent")
    parser.add_argument("--exclude", nargs="*", default=[], help="methods not eligible (e.g. hg)")
    parser.add_argument("--runtime", default="torch")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    summary = read_text_csv(args.summary)
    choice = select_best(summary, args.budget, args.exclude, args.runtime, args.summary)
    model = args.models_root / choice["method"] / str(args.budget) / "model.pt"
    if not model.is_file():
        raise InputError(model, f"model of the selected method {choice['method']!r} not found")
    with atomic_path(args.out_dir / "model.pt") as tmp:
        shutil.copyfile(model, tmp)
    write_json(args.out_dir / "selection.json", choice)
    print(
        f"face-select: {choice['method']} at {args.budget} % (ME {choice['me_px']:.3f} px) "
        f"-> {args.out_dir}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
