"""Stage ``brain-dataset``: registered subjects -> ``dataset.npz``, ``cases.csv``, ``qc.csv``.

Every (subject, modality) pair is one item (BrainMaGe is modality-agnostic): the atlas-space
image is normalised with :func:`brainmage_normalise` and resized to the network input shape by a
cubic B-spline resampling onto a grid of that shape spanning the atlas field of view
(:func:`network_grid`, :func:`to_network`); the atlas-space mask is resized the same way with
linear interpolation then ``>= 0.5``. :func:`from_network` maps a network-shaped array back onto
the atlas grid (cubic), as BrainMaGe's inference does before thresholding. Subjects whose
registration failed QC are excluded and listed in ``qc.csv`` with ``included=False``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from numpy.typing import ArrayLike

from medrepro.io.atomic import write_csv, write_npz
from medrepro.io.errors import InputError
from medrepro.io.images import array_to_image, image_to_array, read_image
from medrepro.preprocessing.brain_convert import MODALITIES, check_binary, check_same_grid
from medrepro.preprocessing.geometry import Grid, centre_mm, grid_from_centre
from medrepro.preprocessing.intensity import brainmage_normalise
from medrepro.preprocessing.resampling import resample_onto

__all__ = [
    "QC_COLUMNS",
    "network_grid",
    "to_network",
    "mask_to_network",
    "from_network",
    "read_qc",
    "build_brain_dataset",
    "main",
]

QC_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "mask_dice_vs_atlas",
    "rotation_deg_t1ce",
    "translation_mm_t1ce",
    "qc_pass",
    "reason",
    "included",
)


def network_grid(atlas_reference: sitk.Image, shape: Sequence[int]) -> sitk.Image:
    """Empty float32 image of ``shape`` voxels covering the atlas field of view.

    The grid has the atlas direction and centre; its spacing is ``atlas_size * atlas_spacing /
    shape`` (mm), so the outer voxel edges coincide with the atlas's (as ``skimage`` resize).

    Args:
        atlas_reference: any image on the atlas grid.
        shape: ``(X, Y, Z)`` network input shape in voxels.
    """
    atlas = Grid.of(atlas_reference)
    size = np.asarray(shape, dtype=np.int64).reshape(3)
    if np.any(size < 1):
        raise ValueError(f"shape must be positive, got {size.tolist()}")
    spacing = atlas.size * atlas.spacing / size
    grid = grid_from_centre(centre_mm(atlas), spacing, size, atlas.direction)
    img = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    img.SetOrigin(tuple(map(float, grid.origin)))
    img.SetSpacing(tuple(map(float, grid.spacing)))
    img.SetDirection(tuple(map(float, grid.direction.ravel())))
    return img


def to_network(
    img: sitk.Image,
    shape: Sequence[int],
    *,
    interpolator: int = sitk.sitkBSpline,
    antialias: bool = True,
) -> np.ndarray:
    """Resize an atlas-space image to the network grid (cubic B-spline by default).

    Args:
        img: image on the atlas grid.
        shape: ``(X, Y, Z)`` network input shape.
        interpolator: SimpleITK interpolator.
        antialias: Gaussian pre-smoothing along axes that get coarser, as ``skimage`` resize
            does by default in BrainMaGe's inference (``preprocessing.resampling``).

    Returns:
        float32 ``(X, Y, Z)`` array.
    """
    grid = Grid.of(network_grid(img, shape))
    return image_to_array(resample_onto(img, grid, interpolator=interpolator, antialias=antialias))


def mask_to_network(mask: sitk.Image, shape: Sequence[int]) -> np.ndarray:
    """Resize an atlas-space 0/1 mask to the network grid: linear, then ``>= 0.5``; uint8."""
    prob = to_network(mask, shape, interpolator=sitk.sitkLinear, antialias=False)
    return (prob >= 0.5).astype(np.uint8)


def from_network(
    arr: ArrayLike, atlas_reference: sitk.Image, *, interpolator: int = sitk.sitkBSpline
) -> sitk.Image:
    """Map a network-shaped ``(X, Y, Z)`` array (e.g. probabilities) back onto the atlas grid.

    Args:
        arr: ``(X, Y, Z)`` array on :func:`network_grid` of ``atlas_reference``.
        atlas_reference: any image on the atlas grid.
        interpolator: SimpleITK interpolator (cubic B-spline by default, as BrainMaGe).

    Returns:
        float32 image on the atlas grid (values may overshoot slightly with cubic splines).
    """
    values = np.asarray(arr, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"expected an (X, Y, Z) array, got shape {values.shape}")
    grid = Grid.of(network_grid(atlas_reference, values.shape))
    img = array_to_image(values, grid.origin, grid.spacing, grid.direction)
    return sitk.Resample(
        img, atlas_reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32
    )


def read_qc(path: Path) -> dict[str, Any]:
    """Read a subject's ``qc.json`` (brain-register) and check its keys."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        qc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"unreadable JSON: {err}") from err
    missing = [
        k
        for k in ("mask_dice_vs_atlas", "qc_pass", "rotation_deg", "translation_mm")
        if k not in qc
    ]
    if missing:
        raise InputError(path, f"missing key(s) {missing}")
    return qc


def _qc_row(subject: str, qc: dict[str, Any], reference: str) -> dict[str, Any]:
    passed = bool(qc["qc_pass"])
    return {
        "subject_id": subject,
        "mask_dice_vs_atlas": float(qc["mask_dice_vs_atlas"]),
        "rotation_deg_t1ce": float(qc["rotation_deg"].get(reference, np.nan)),
        "translation_mm_t1ce": float(qc["translation_mm"].get(reference, np.nan)),
        "qc_pass": passed,
        "reason": str(qc.get("reason", "")),
        "included": passed,
    }


def build_brain_dataset(
    registered_root: str | Path,
    subjects: Sequence[str],
    input_shape: Sequence[int],
    out_dir: str | Path,
    *,
    modalities: Sequence[str] = MODALITIES,
    reference: str = "t1ce",
) -> dict[str, Any]:
    """Write ``dataset.npz``, ``cases.csv`` and ``qc.csv`` (each atomically) into ``out_dir``.

    Args:
        registered_root: directory holding ``<sid>/`` outputs of ``brain-register``.
        subjects: subject ids, in output order.
        input_shape: ``(X, Y, Z)`` network input shape.
        out_dir: output directory.
        modalities: modalities per subject, in output order.
        reference: modality whose rotation/translation go to ``qc.csv``.

    Returns:
        The arrays written to ``dataset.npz``.

    Raises:
        InputError: missing or invalid registered file, images off the common atlas grid, or
            no subject passing QC (naming ``registered_root``).
    """
    root = Path(registered_root)
    shape = tuple(int(n) for n in input_shape)
    qc_rows, images, masks, case_ids, patient_ids, mods = [], [], [], [], [], []
    atlas_ref: sitk.Image | None = None
    for sid in subjects:
        sdir = root / sid
        row = _qc_row(sid, read_qc(sdir / "qc.json"), reference)
        qc_rows.append(row)
        if not row["included"]:
            print(f"{sid}: excluded ({row['reason']})", file=sys.stderr)
            continue
        mask_path = sdir / f"{sid}_mask.nii.gz"
        mask = check_binary(read_image(mask_path), mask_path)
        if atlas_ref is None:
            atlas_ref = mask
        check_same_grid(mask, atlas_ref, mask_path, what="registered mask (vs the atlas grid)")
        mask_net = mask_to_network(mask, shape)
        for mod in modalities:
            path = sdir / f"{sid}_{mod}.nii.gz"
            img = read_image(path)
            check_same_grid(img, atlas_ref, path, what="registered image (vs the atlas grid)")
            normalised = array_to_image(
                brainmage_normalise(image_to_array(img)),
                img.GetOrigin(),
                img.GetSpacing(),
                img.GetDirection(),
            )
            images.append(to_network(normalised, shape))
            masks.append(mask_net)
            case_ids.append(f"{sid}_{mod}")
            patient_ids.append(sid)
            mods.append(mod)
        print(f"{sid}: {len(modalities)} items", file=sys.stderr)
    if atlas_ref is None:
        raise InputError(root, f"no subject passed registration QC among {list(subjects)}")

    arrays = {
        "images": np.stack(images).astype(np.float32),
        "masks": np.stack(masks).astype(np.uint8),
        "case_id": np.array(case_ids, dtype=str),
        "patient_id": np.array(patient_ids, dtype=str),
        "modality": np.array(mods, dtype=str),
        "atlas_shape": np.array(atlas_ref.GetSize(), dtype=np.int64),
        "atlas_spacing": np.array(atlas_ref.GetSpacing(), dtype=np.float64),
    }
    out = Path(out_dir)
    cases = pd.DataFrame({"case_id": case_ids, "patient_id": patient_ids, "modality": mods})
    write_npz(out / "dataset.npz", **arrays)
    write_csv(cases, out / "cases.csv")
    write_csv(pd.DataFrame(qc_rows, columns=list(QC_COLUMNS)), out / "qc.csv")
    return arrays


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro brain-dataset", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--registered-root", type=Path, required=True, help="directory of <sid>/ outputs"
    )
    parser.add_argument("--subjects", nargs="+", required=True, help="subject ids")
    parser.add_argument(
        "--input-shape", type=int, nargs=3, required=True, metavar="N", help="network X Y Z"
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="output directory")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m medrepro brain-dataset --registered-root DIR --subjects ...``."""
    args = _parser().parse_args(argv)
    if min(args.input_shape) < 1:
        _parser().error("--input-shape must be positive")
    arrays = build_brain_dataset(
        args.registered_root,
        args.subjects,
        args.input_shape,
        args.out_dir,
        modalities=args.modalities,
    )
    print(f"wrote {len(arrays['case_id'])} items to {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
