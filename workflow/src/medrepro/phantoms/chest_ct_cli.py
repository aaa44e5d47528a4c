"""Stage ``lowres-luna16-phantoms``: a synthetic chest CT cohort in the LUNA16 layout.

Writes ``subset<k>/<seriesuid>.mhd/.raw``, ``seg-lungs-LUNA16/``, ``nodule-masks/``,
``annotations.csv`` (world mm), ``nodules.csv`` and ``cases.csv`` (see
:func:`medrepro.phantoms.chest_ct.generate_cohort`). The cohort is built in a temporary sibling
directory that replaces ``--out-dir`` only when every scan is written.

Scales (voxels x y z, mm): smoke ``--shape 64 64 48 --spacing-mm 5 --slice-mm 5 --per-subset 1``;
quick ``--shape 176 176 96 --spacing-mm 1.8 --slice-mm 2.5 --per-subset 2``; paper-like
``--shape 432 306 214 --spacing-mm 0.7 --slice-mm 1.25``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from medrepro.io.atomic import atomic_dir
from medrepro.phantoms.chest_ct import generate_cohort

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro lowres-luna16-phantoms",
        description="Generate synthetic chest CT scans with lung nodules in the LUNA16 layout.",
    )
    parser.add_argument("--out-dir", required=True, help="output directory (replaced)")
    parser.add_argument("--n-subsets", type=int, default=10, help="subset<k> directories (10)")
    parser.add_argument("--per-subset", type=int, required=True, help="scans per subset")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--spacing-mm", type=float, required=True, help="in-plane voxel size")
    parser.add_argument("--slice-mm", type=float, required=True, help="slice spacing")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        required=True,
        metavar=("X", "Y", "Z"),
        help="voxels along x (left-right), y (anterior-posterior), z (slices)",
    )
    parser.add_argument(
        "--nodules-per-scan",
        type=int,
        nargs=2,
        default=(1, 4),
        metavar=("MIN", "MAX"),
        help="inclusive range of nodules per scan (default: 1 4)",
    )
    parser.add_argument(
        "--nonsolid-fraction",
        type=float,
        default=0.18,
        help="probability of a ground-glass or part-solid nodule (default: 0.18)",
    )
    parser.add_argument(
        "--outside-lung-scans",
        type=int,
        default=0,
        help="the last N scans get an extra lesion outside the lung mask (default: 0)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    if args.n_subsets < 1 or args.per_subset < 1:
        raise SystemExit("error: --n-subsets and --per-subset must be >= 1")
    if args.spacing_mm <= 0 or args.slice_mm <= 0 or min(args.shape) < 16:
        raise SystemExit("error: spacings must be > 0 mm and every --shape side >= 16 voxels")
    low, high = args.nodules_per_scan
    if not 0 <= low <= high:
        raise SystemExit("error: --nodules-per-scan needs 0 <= MIN <= MAX")
    if not 0 <= args.nonsolid_fraction <= 1:
        raise SystemExit("error: --nonsolid-fraction must be in [0, 1]")
    total = args.n_subsets * args.per_subset
    if not 0 <= args.outside_lung_scans <= total:
        raise SystemExit(f"error: --outside-lung-scans must be in [0, {total}]")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    with atomic_dir(args.out_dir) as tmp:
        table = generate_cohort(
            tmp,
            n_subsets=args.n_subsets,
            per_subset=args.per_subset,
            seed=args.seed,
            shape_xyz=tuple(args.shape),
            spacing_xyz=(args.spacing_mm, args.spacing_mm, args.slice_mm),
            nodules_per_scan=(low, high),
            nonsolid_fraction=args.nonsolid_fraction,
            outside_lung_scans=args.outside_lung_scans,
        )
    logging.getLogger(__name__).info(
        "wrote %d scans (%d nodules) to %s in %.1f s",
        len(table),
        int(table["n_nodules"].sum()),
        args.out_dir,
        time.perf_counter() - start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
