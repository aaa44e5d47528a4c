"""Stage ``face-phantoms``: synthetic faces for paper 002 (layout in docs/face_landmarks.md).

Writes under ``--out-dir``:

- ``source/images/<identity>_<n>.png`` and ``source/identities.csv`` (image, identity): the
  identity-classification task, ``--images-per-identity`` views of each of
  ``--n-source-identities`` people;
- ``target/<stem>.png`` + ``<stem>.pts`` (iBUG, 1-based) + ``<stem>.json`` (visibility),
  ``target/landmarks.json`` (names, flip pairs) and ``target/identities.csv`` (stem, identity):
  ``--n-target`` images, each of a new person (disjoint from the source identities).

Every image has its own generator seeded by ``(seed, part, index)``, so the output bytes depend
only on the arguments. Both directories are built in temporary siblings and replace the old ones
only when everything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medrepro.io.atomic import atomic_dir, write_csv, write_json
from medrepro.io.pts import write_pts, write_visibility
from medrepro.phantoms.face import FACE_LANDMARKS, FLIP_PAIRS, render_face, sample_identity

__all__ = ["main", "write_source", "write_target"]

log = logging.getLogger(__name__)

_SOURCE, _TARGET = 1, 2  # seed-sequence tags


def _rng(seed: int, part: int, *index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, part, *index]))


def _save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")


def write_source(
    out: Path,
    n_identities: int,
    images_per_identity: int,
    image_size: int,
    poses: tuple[float, float, float],
    seed: int,
) -> pd.DataFrame:
    """Render the identity-labelled images into ``out`` (``images/``, ``identities.csv``)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_identities):
        name = f"s{i:04d}"
        ident = sample_identity(_rng(seed, _SOURCE, i), name)
        for n in range(images_per_identity):
            image, _, _ = render_face(ident, _rng(seed, _SOURCE, i, n + 1), image_size, *poses)
            rel = f"images/{name}_{n}.png"
            _save_png(out / rel, image)
            rows.append({"image": rel, "identity": name})
    table = pd.DataFrame(rows, columns=["image", "identity"])
    write_csv(table, out / "identities.csv")
    return table


def write_target(
    out: Path, n_images: int, image_size: int, poses: tuple[float, float, float], seed: int
) -> pd.DataFrame:
    """Render the landmark-annotated images into ``out`` (png, pts, json, landmarks.json)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_images):
        name = f"t{i:04d}"
        stem = f"face_{i:04d}"
        ident = sample_identity(_rng(seed, _TARGET, i), name)
        image, landmarks, visible = render_face(
            ident, _rng(seed, _TARGET, i, 1), image_size, *poses
        )
        _save_png(out / f"{stem}.png", image)
        write_pts(out / f"{stem}.pts", landmarks)
        write_visibility(out / f"{stem}.pts", visible)
        rows.append({"stem": stem, "identity": name})
    write_json(
        out / "landmarks.json",
        {"names": list(FACE_LANDMARKS), "flip_pairs": [list(p) for p in FLIP_PAIRS]},
    )
    table = pd.DataFrame(rows, columns=["stem", "identity"])
    write_csv(table, out / "identities.csv")
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro face-phantoms",
        description="Render synthetic faces: identity-labelled source images, target images with "
        "iBUG .pts landmarks.",
    )
    parser.add_argument("--out-dir", required=True, help="output directory (source/, target/)")
    parser.add_argument("--n-source-identities", type=int, default=500)
    parser.add_argument("--images-per-identity", type=int, default=20)
    parser.add_argument("--n-target", type=int, default=1549, help="annotated target images")
    parser.add_argument("--image-size", type=int, default=256, help="image side, pixels")
    parser.add_argument("--max-yaw-deg", type=float, default=30.0)
    parser.add_argument("--max-pitch-deg", type=float, default=15.0)
    parser.add_argument("--max-roll-deg", type=float, default=15.0)
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    if min(args.n_source_identities, args.images_per_identity, args.n_target) < 1:
        raise SystemExit("error: identity and image counts must be >= 1")
    if not 32 <= args.image_size <= 1024:
        raise SystemExit("error: --image-size must be in [32, 1024] pixels")
    poses = (args.max_yaw_deg, args.max_pitch_deg, args.max_roll_deg)
    if min(poses) < 0 or args.max_yaw_deg > 60 or max(poses[1:]) > 40:
        raise SystemExit("error: pose ranges must be >= 0 (yaw <= 60, pitch and roll <= 40 deg)")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    out = Path(args.out_dir)
    with atomic_dir(out / "source") as src, atomic_dir(out / "target") as tgt:
        source = write_source(
            src,
            args.n_source_identities,
            args.images_per_identity,
            args.image_size,
            poses,
            args.seed,
        )
        target = write_target(tgt, args.n_target, args.image_size, poses, args.seed)
    log.info(
        "wrote %d source images (%d identities) and %d target images to %s in %.1f s",
        len(source),
        args.n_source_identities,
        len(target),
        out,
        time.perf_counter() - start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
