"""Stage ``select-inputs``: the network inputs of one split -> ``inputs_<split>.npz``.

Reads ``dataset.npz`` (``images (N, X, Y, Z)``, ``case_id (N,)``) and ``splits.csv``
(``case_id, patient_id, split``) and writes ``inputs`` float32 ``(M, 1, X, Y, Z)`` and
``case_id (M,)`` of the cases in the split, in dataset order.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.io.atomic import atomic_path
from medrepro.io.errors import InputError

__all__ = ["select_inputs", "main"]

_SPLITS = ("train", "val", "test")


def select_inputs(
    images: np.ndarray,
    case_id: Sequence[str],
    splits: pd.DataFrame,
    split: str,
    *,
    source: str | Path = "splits",
) -> tuple[np.ndarray, np.ndarray]:
    """Pick the images of one split and add the channel axis.

    Args:
        images: ``(N, X, Y, Z)`` volumes.
        case_id: ``(N,)`` case ids of ``images``.
        splits: table with columns ``case_id`` and ``split``.
        split: ``train``, ``val`` or ``test``.
        source: name of the splits file, used in error messages.

    Returns:
        ``inputs`` float32 ``(M, 1, X, Y, Z)`` and ``case_id (M,)`` str, in dataset order.

    Raises:
        InputError: missing columns, a split case absent from the dataset, or an empty split.
    """
    missing = [c for c in ("case_id", "split") if c not in splits.columns]
    if missing:
        raise InputError(source, f"missing column(s) {missing}; found {list(splits.columns)}")
    wanted = set(splits.loc[splits["split"].astype(str) == split, "case_id"].astype(str))
    ids = np.asarray(case_id).astype(str)
    unknown = sorted(wanted - set(ids.tolist()))
    if unknown:
        raise InputError(source, f"case(s) of split {split!r} not in the dataset: {unknown}")
    if not wanted:
        raise InputError(source, f"split {split!r} has no cases")
    keep = np.flatnonzero(np.isin(ids, sorted(wanted)))
    return np.ascontiguousarray(images[keep][:, None], dtype=np.float32), ids[keep]


def _load_dataset(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``images`` and ``case_id`` of a ``dataset.npz``; InputError if unreadable or incomplete."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("images", "case_id") if k not in data.files]
            if missing:
                raise InputError(path, f"missing array(s) {missing}; found {data.files}")
            images, case_id = data["images"], data["case_id"]
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"unreadable npz: {err}") from err
    if images.ndim != 4 or case_id.shape != (images.shape[0],):
        raise InputError(
            path,
            f"expected images (N, X, Y, Z) and case_id (N,), got {images.shape} and {case_id.shape}",
        )
    return images, case_id


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro select-inputs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dataset", type=Path, required=True, help="dataset.npz")
    parser.add_argument("--splits", type=Path, required=True, help="splits.csv")
    parser.add_argument("--split", choices=_SPLITS, default="test", help="which split")
    parser.add_argument("--out", type=Path, required=True, help="output inputs.npz")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m medrepro select-inputs --dataset NPZ --splits CSV --split test --out NPZ``."""
    args = _parser().parse_args(argv)
    images, case_id = _load_dataset(args.dataset)
    if not args.splits.is_file():
        raise InputError(args.splits, "file not found")
    try:
        splits = pd.read_csv(args.splits, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(args.splits, f"unreadable CSV: {err}") from err
    inputs, ids = select_inputs(images, case_id, splits, args.split, source=args.splits)
    # A file handle stops np.savez from appending ".npz" to the temporary name.
    with atomic_path(args.out) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, inputs=inputs, case_id=ids)
    print(f"{args.split}: {len(ids)} cases -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
