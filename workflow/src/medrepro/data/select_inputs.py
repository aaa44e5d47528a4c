"""Stage ``select-inputs``: the network inputs of one split -> ``inputs_<split>.npz``.

Reads ``dataset.npz`` (``images (N, X, Y, Z)``, ``case_id (N,)``) and ``splits.csv``
(``case_id, patient_id, split``) and writes ``inputs`` float32 ``(M, 1, X, Y, Z)`` and
``case_id (M,)`` of the cases in the split, in dataset order. With ``--layout rgb`` the images
are 2D colour pictures ``(N, H, W, 3)`` uint8 and the inputs ``(M, 3, H, W)`` float32 in [0, 1].
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.io.atomic import write_npz
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns

__all__ = ["split_indices", "select_inputs", "to_network_inputs", "main"]

_SPLITS = ("train", "val", "test")


def split_indices(
    case_id: Sequence[str], splits: pd.DataFrame, split: str, *, source: str | Path = "splits"
) -> np.ndarray:
    """Positions, in dataset order, of the cases that ``splits`` assigns to ``split``.

    Args:
        case_id: ``(N,)`` case ids of the dataset.
        splits: table with columns ``case_id`` and ``split``.
        split: ``train``, ``val`` or ``test``.
        source: name of the splits file, used in error messages.

    Raises:
        InputError: missing columns, a split case absent from the dataset, or an empty split.
    """
    require_columns(splits, ("case_id", "split"), source)
    wanted = set(splits.loc[splits["split"].astype(str) == split, "case_id"].astype(str))
    ids = np.asarray(case_id).astype(str)
    unknown = sorted(wanted - set(ids.tolist()))
    if unknown:
        raise InputError(source, f"case(s) of split {split!r} not in the dataset: {unknown}")
    if not wanted:
        raise InputError(source, f"split {split!r} has no cases")
    return np.flatnonzero(np.isin(ids, sorted(wanted)))


def to_network_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` RGB -> float32 ``(N, 3, H, W)`` in ``[0, 1]`` (divided by 255)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images (N, H, W, 3), got {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def select_inputs(
    images: np.ndarray,
    case_id: Sequence[str],
    splits: pd.DataFrame,
    split: str,
    *,
    source: str | Path = "splits",
    layout: str = "volume",
) -> tuple[np.ndarray, np.ndarray]:
    """Pick the images of one split and put them in the network layout.

    Args:
        images: ``(N, X, Y, Z)`` volumes, or ``(N, H, W, 3)`` uint8 pictures (``layout="rgb"``).
        case_id: ``(N,)`` case ids of ``images``.
        splits: table with columns ``case_id`` and ``split``.
        split: ``train``, ``val`` or ``test``.
        source: name of the splits file, used in error messages.
        layout: ``"volume"`` (add a channel axis) or ``"rgb"`` (channels first, scaled to [0, 1]).

    Returns:
        ``inputs`` float32 ``(M, 1, X, Y, Z)`` or ``(M, 3, H, W)`` and ``case_id (M,)`` str, in
        dataset order.

    Raises:
        InputError: as :func:`split_indices`.
    """
    keep = split_indices(case_id, splits, split, source=source)
    ids = np.asarray(case_id).astype(str)[keep]
    if layout == "rgb":
        if images.shape[-1] != 3:
            raise InputError(source, f"layout rgb needs (N, H, W, 3) images, got {images.shape}")
        return to_network_inputs(images[keep]), ids
    if layout != "volume":
        raise ValueError(f"layout must be 'volume' or 'rgb', got {layout!r}")
    return np.ascontiguousarray(images[keep][:, None], dtype=np.float32), ids


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
    parser.add_argument(
        "--layout", choices=["volume", "rgb"], default="volume",
        help="volume: (N, X, Y, Z) -> (N, 1, X, Y, Z); rgb: (N, H, W, 3) uint8 -> (N, 3, H, W)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m medrepro select-inputs --dataset NPZ --splits CSV --split test --out NPZ``."""
    args = _parser().parse_args(argv)
    images, case_id = _load_dataset(args.dataset)
    splits = read_text_csv(args.splits)
    inputs, ids = select_inputs(
        images, case_id, splits, args.split, source=args.splits, layout=args.layout
    )
    write_npz(args.out, inputs=inputs, case_id=ids)
    print(f"{args.split}: {len(ids)} cases -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
