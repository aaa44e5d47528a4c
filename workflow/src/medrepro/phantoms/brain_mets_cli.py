"""Stage ``lowres-metastases-phantoms``: synthetic T1 contrast MRI with brain metastases.

Layout (``docs/lowres.md``): ``subjects.csv`` (``subject_id``), per subject
``<id>_t1c.nii.gz``, ``<id>_brainmask.nii.gz``, ``<id>_lesions.nii.gz`` (``k`` = lesion ``k``),
plus ``lesions.csv`` (diameter and LPS world centre of every lesion) and ``phantom_truth.csv``.
The cohort is built in a temporary sibling directory that replaces ``--out-dir`` only when
complete. Model: :mod:`medrepro.phantoms.brain_mets`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from medrepro.io.atomic import atomic_dir
from medrepro.phantoms.brain_mets import STORAGE_ORIENTATIONS, generate_cohort
from medrepro.preprocessing.orientation import check_code

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro lowres-metastases-phantoms",
        description="Generate synthetic T1 contrast-enhanced MRI with multiple brain metastases.",
    )
    parser.add_argument("--out-dir", required=True, help="cohort directory (replaced)")
    parser.add_argument("--n-subjects", type=int, required=True, help="number of subjects")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument(
        "--spacing-mm",
        type=float,
        nargs="+",
        required=True,
        metavar="MM",
        help="voxel size: one value (isotropic) or three in (x, y, z) order, e.g. 0.94 0.94 1",
    )
    parser.add_argument(
        "--lesions",
        type=int,
        nargs=2,
        default=(1, 15),
        metavar=("MIN", "MAX"),
        help="number of lesions per subject, P(n) ~ 1/n (default 1 15)",
    )
    parser.add_argument(
        "--orientations",
        nargs="+",
        default=list(STORAGE_ORIENTATIONS),
        help=f"storage orientations, cycled (default {' '.join(STORAGE_ORIENTATIONS)})",
    )
    parser.add_argument(
        "--max-rotation-deg", type=float, default=10.0, help="pose rotation range (default 10)"
    )
    parser.add_argument(
        "--max-translation-mm", type=float, default=10.0, help="pose shift range (default 10)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.n_subjects < 1:
        parser.error("--n-subjects must be >= 1")
    if len(args.spacing_mm) not in (1, 3) or min(args.spacing_mm) <= 0:
        parser.error("--spacing-mm takes one or three values > 0")
    lo, hi = args.lesions
    if not 1 <= lo <= hi <= 255:
        parser.error("--lesions needs 1 <= MIN <= MAX <= 255")
    if args.max_rotation_deg < 0 or args.max_translation_mm < 0:
        parser.error("--max-rotation-deg and --max-translation-mm must be >= 0")
    try:
        orientations = tuple(check_code(code) for code in args.orientations)
    except ValueError as err:
        parser.error(str(err))
    spacing = args.spacing_mm[0] if len(args.spacing_mm) == 1 else tuple(args.spacing_mm)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    with atomic_dir(args.out_dir) as tmp:
        lesions = generate_cohort(
            tmp,
            n_subjects=args.n_subjects,
            spacing_mm=spacing,
            seed=args.seed,
            n_lesions=(lo, hi),
            orientations=orientations,
            max_rotation_deg=args.max_rotation_deg,
            max_translation_mm=args.max_translation_mm,
        )
    logging.getLogger(__name__).info(
        "wrote %d subjects (%d lesions) to %s in %.1f s",
        args.n_subjects,
        len(lesions),
        args.out_dir,
        time.perf_counter() - start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
