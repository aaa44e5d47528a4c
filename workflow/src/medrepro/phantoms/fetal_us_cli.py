"""Stage ``us-phantoms``: write a synthetic transcerebellar fetal ultrasound cohort.

The cohort (``images/*.bmp``, ``masks/*.mat``, ``images.csv``, ``phantom_truth.csv``; layout in
docs/cerebellum_yolo.md) is built in a temporary sibling directory that replaces ``--out-dir``
only when every file is written, so a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from medrepro.io.atomic import atomic_dir
from medrepro.phantoms.fetal_us import generate_cohort

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro us-phantoms",
        description="Generate transcerebellar fetal ultrasound phantoms (BMP + MAT masks).",
    )
    parser.add_argument("--out-dir", required=True, help="output directory (replaced)")
    parser.add_argument("--n-volumes", type=int, default=21, help="volumes (default: 21)")
    parser.add_argument("--slices", type=int, default=15, help="slices per volume (default: 15)")
    parser.add_argument("--height", type=int, default=176, help="image rows (default: 176)")
    parser.add_argument("--width", type=int, default=256, help="image columns (default: 256)")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    if args.n_volumes < 1 or args.slices < 1:
        raise SystemExit("error: --n-volumes and --slices must be >= 1")
    if args.height < 16 or args.width < 16:
        raise SystemExit("error: --height and --width must be >= 16 pixels")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    with atomic_dir(args.out_dir) as tmp:
        truth = generate_cohort(
            tmp,
            n_volumes=args.n_volumes,
            slices_per_volume=args.slices,
            height=args.height,
            width=args.width,
            seed=args.seed,
        )
    logging.getLogger(__name__).info(
        "wrote %d images (%d without cerebellum) to %s in %.1f s",
        len(truth),
        int((~truth["has_cerebellum"]).sum()),
        args.out_dir,
        time.perf_counter() - start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
