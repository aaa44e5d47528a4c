"""Stage ``ceph-phantoms``: write a synthetic head CT cohort (NIfTI + Slicer markups + cases.csv).

The cohort is built in a temporary sibling directory that replaces ``--out-dir`` only when every
case is written, so a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from medrepro.io.atomic import atomic_dir
from medrepro.phantoms.head_ct import generate_cohort

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro ceph-phantoms",
        description="Generate synthetic head CT phantoms with orbitale and porion landmarks.",
    )
    parser.add_argument("--out-dir", required=True, help="output directory (replaced)")
    parser.add_argument("--n-patients", type=int, required=True, help="patients (2 scans each)")
    parser.add_argument("--spacing-mm", type=float, required=True, help="isotropic voxel size")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument(
        "--fov-mm",
        type=float,
        nargs=3,
        default=(200.0, 200.0, 150.0),
        metavar=("X", "Y", "Z"),
        help="field of view in mm (default: 200 200 150)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    if args.n_patients < 1:
        raise SystemExit("error: --n-patients must be >= 1")
    if args.spacing_mm <= 0 or min(args.fov_mm) <= 0:
        raise SystemExit("error: --spacing-mm and --fov-mm must be > 0")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    with atomic_dir(args.out_dir) as tmp:
        table = generate_cohort(
            tmp,
            n_patients=args.n_patients,
            spacing_mm=args.spacing_mm,
            seed=args.seed,
            fov_mm=tuple(args.fov_mm),
        )
    logging.getLogger(__name__).info(
        "wrote %d cases to %s in %.1f s", len(table), args.out_dir, time.perf_counter() - start
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
