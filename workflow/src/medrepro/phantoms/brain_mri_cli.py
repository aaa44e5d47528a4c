"""Stage ``brain-phantoms``: write a synthetic multi-contrast brain MRI cohort.

Layout (``docs/brain_extraction.md``, "Cohort layout"): ``subjects.csv`` (paths relative to the
root), ``phantom_truth.csv``, and per subject ``<sid>/<sid>_<mod>.nii.gz`` or
``<sid>/dicom_<mod>/IM_<k>.dcm`` plus ``<sid>/<sid>_mask.nii.gz`` (on the T1Gd grid). The cohort
is built in a temporary sibling directory that replaces ``--out-dir`` only when complete.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from medrepro.io.atomic import atomic_dir
from medrepro.phantoms.brain_mri import generate_cohort

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro brain-phantoms",
        description="Generate synthetic T1/T1Gd/T2/FLAIR brain MRI subjects with brain masks.",
    )
    parser.add_argument("--out-dir", required=True, help="cohort directory (replaced)")
    parser.add_argument("--n-subjects", type=int, required=True, help="number of subjects")
    parser.add_argument("--spacing-mm", type=float, required=True, help="native voxel size (mm)")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument(
        "--tumour-fraction", type=float, default=0.6, help="share with a tumour (default 0.6)"
    )
    parser.add_argument(
        "--dicom-fraction", type=float, default=0.3, help="share stored as DICOM (default 0.3)"
    )
    parser.add_argument(
        "--max-rotation-deg", type=float, default=15.0, help="pose rotation range (default 15)"
    )
    parser.add_argument(
        "--max-translation-mm", type=float, default=15.0, help="pose shift range (default 15)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    if args.n_subjects < 1:
        raise SystemExit("error: --n-subjects must be >= 1")
    if args.spacing_mm <= 0:
        raise SystemExit("error: --spacing-mm must be > 0")
    for name in ("tumour_fraction", "dicom_fraction"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be in [0, 1]")
    if args.max_rotation_deg < 0 or args.max_translation_mm < 0:
        raise SystemExit("error: --max-rotation-deg and --max-translation-mm must be >= 0")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    with atomic_dir(args.out_dir) as tmp:
        table = generate_cohort(
            tmp,
            n_subjects=args.n_subjects,
            spacing_mm=args.spacing_mm,
            seed=args.seed,
            tumour_fraction=args.tumour_fraction,
            dicom_fraction=args.dicom_fraction,
            max_rotation_deg=args.max_rotation_deg,
            max_translation_mm=args.max_translation_mm,
        )
    logging.getLogger(__name__).info(
        "wrote %d subjects to %s in %.1f s", len(table), args.out_dir, time.perf_counter() - start
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
