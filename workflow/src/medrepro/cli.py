"""Command-line entry point: ``python -m medrepro <stage> [options]``.

Every Snakemake rule calls one stage through this entry point. Each stage lives in its own
module, which exposes ``main(argv: list[str] | None) -> int`` with its own ``argparse`` parser;
this file only maps stage names to modules, imported lazily so that ``--help`` stays fast.

A stage that meets bad input raises :class:`medrepro.io.errors.InputError`; the message names
the file and the problem, it is printed on stderr and the process exits with status 2.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

#: stage name -> (module exposing ``main(argv)``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    # cephalometry (paper 000)
    "ceph-phantoms": (
        "medrepro.phantoms.head_ct_cli",
        "generate synthetic head CT phantoms (NIfTI + Slicer markups)",
    ),
    "ceph-preprocess": (
        "medrepro.preprocessing.cephalometry",
        "LPS, resample, crop/pad, HU clip, z-score -> dataset.npz",
    ),
    "ceph-evaluate": (
        "medrepro.tasks.cephalometry_evaluate",
        "predict landmarks with every backend, errors in mm",
    ),
    "ceph-report": (
        "medrepro.report.cephalometry",
        "tables, figures, claims, report.md, provenance.json",
    ),
    # brain extraction (paper 001)
    "brain-atlas": (
        "medrepro.phantoms.brain_atlas",
        "atlas T1 + brain mask on an SRI24-like grid (MNI152 from nilearn, or a given atlas)",
    ),
    "brain-phantoms": (
        "medrepro.phantoms.brain_mri_cli",
        "generate synthetic multi-contrast brain MRI subjects (NIfTI and DICOM series)",
    ),
    "brain-convert": (
        "medrepro.preprocessing.brain_convert",
        "one subject: DICOM series to NIfTI, every modality reoriented to LPS",
    ),
    "brain-register": (
        "medrepro.preprocessing.brain_register",
        "one subject: N4 (registration only), rigid registration to the atlas, one resampling",
    ),
    "brain-dataset": (
        "medrepro.preprocessing.brain_dataset",
        "registered subjects -> normalised network inputs, masks, QC table",
    ),
    "brain-evaluate": (
        "medrepro.tasks.brain_extraction_evaluate",
        "native-space masks with every runtime and precision, Dice and HD95",
    ),
    "brain-report": (
        "medrepro.report.brain_extraction",
        "Table 4, core scaling, qualitative slices, claims, report.md",
    ),
    # LowRes two-stage segmentation (paper 003)
    "lowres-luna16-phantoms": (
        "medrepro.phantoms.chest_ct_cli",
        "generate synthetic chest CT in the LUNA16 layout (.mhd/.raw, lung masks, annotations.csv)",
    ),
    "lowres-metastases-phantoms": (
        "medrepro.phantoms.brain_mets_cli",
        "generate synthetic T1 contrast MRI with brain metastases on MNI152 (NIfTI)",
    ),
    "lowres-luna16-dataset": (
        "medrepro.preprocessing.lowres_luna16",
        "LUNA16 scans: lung mask, crop, HU window [-1000, 300] -> [0, 1], nodule masks, splits",
    ),
    "lowres-metastases-dataset": (
        "medrepro.preprocessing.lowres_metastases",
        "metastases MRI: LPS, crop to the brain, [0, 1] scaling, lesion masks, splits",
    ),
    "lowres-train": (
        "medrepro.training.lowres",
        "train one network on 3D patches (LowRes: stage 1, then stage 2 with stage 1 frozen)",
    ),
    "lowres-export": (
        "medrepro.deployment.lowres_export",
        "OpenVINO IR FP32 and plain NNCF INT8 of a lowres model (both stages for LowRes)",
    ),
    "lowres-infer": (
        "medrepro.tasks.lowres_infer",
        "whole-volume patched inference of test studies with one runtime, timed per study",
    ),
    "lowres-evaluate": (
        "medrepro.tasks.lowres_evaluate",
        "object-wise FROC, average recall 0-5 FP per scan, object Dice",
    ),
    "lowres-report": (
        "medrepro.report.lowres",
        "Tables 1-2, time against recall, diameters, qualitative figure, claims, report.md",
    ),
    # facial anatomical landmarks, cross-task representation learning (paper 002)
    "face-phantoms": (
        "medrepro.phantoms.face_cli",
        "render synthetic faces: identity-labelled source images, target images + iBUG .pts",
    ),
    "face-dataset": (
        "medrepro.preprocessing.face_dataset",
        "read images + .pts, crop, resize, split 80/20 with nested label budgets",
    ),
    "face-train-source": (
        "medrepro.training.face_source",
        "train the source ResNet on identity classification",
    ),
    "face-train": (
        "medrepro.training.face_landmarks",
        "train one landmark model (HG, FE, FTP, FT, CTD-CD/ED/Com) at one label budget",
    ),
    "face-evaluate": (
        "medrepro.tasks.face_landmarks_evaluate",
        "predict the test landmarks: errors in pixels, CED, AUC, failure rate",
    ),
    "face-select": (
        "medrepro.tasks.face_landmarks_select",
        "pick the best landmark model for deployment (lowest mean error at one budget)",
    ),
    "face-report": (
        "medrepro.report.face_landmarks",
        "Table 1, CED curves (Fig. 5), predictions (Fig. 3), budget sweep, claims, report.md",
    ),
    # cerebellum localisation with YOLO (paper 004)
    "us-phantoms": (
        "medrepro.phantoms.fetal_us_cli",
        "generate transcerebellar fetal ultrasound phantoms (BMP images, MAT masks)",
    ),
    "yolo-annotate": (
        "medrepro.preprocessing.yolo_annotations",
        "masks -> YOLO boxes (darknet txt), train/test image lists",
    ),
    "yolo-dataset": (
        "medrepro.preprocessing.yolo_dataset",
        "viridis RGB at the network input size, boxes, splits -> dataset.npz",
    ),
    "yolo-pretrain": (
        "medrepro.training.pretrain",
        "pre-train a detector's convolutional layers on a synthetic stand-in source task",
    ),
    "yolo-train": (
        "medrepro.training.detection",
        "train one YOLO experiment, every checkpoint evaluated on the test images",
    ),
    "yolo-select-best": (
        "medrepro.training.select_best",
        "copy the best YOLO run (by AP) for deployment",
    ),
    "yolo-evaluate": (
        "medrepro.tasks.cerebellum_yolo_evaluate",
        "AP and F1 of PyTorch, OpenVINO FP32 and INT8 on the test images",
    ),
    "yolo-report": (
        "medrepro.report.cerebellum_yolo",
        "Tables 1-2, Figs. 4-10, deployment, claims, report.md",
    ),
    # shared stages
    "split": ("medrepro.data.split", "split cases into train/val/test by patient"),
    "select-inputs": (
        "medrepro.data.select_inputs",
        "write the network inputs of one split to inputs.npz",
    ),
    "train": ("medrepro.training.cli", "train a model from the registry, resumable, seeded"),
    "derive": (
        "medrepro.training.derive",
        "a deployment variant that reuses a trained model's weights",
    ),
    "export": (
        "medrepro.deployment.export",
        "PyTorch -> ONNX and OpenVINO IR (FP32, FP16), parity check",
    ),
    "quantize": (
        "medrepro.deployment.quantize",
        "NNCF accuracy-aware INT8 post-training quantization",
    ),
    "benchmark": (
        "medrepro.benchmark.driver",
        "latency/throughput/memory, one process per configuration",
    ),
    "benchmark-worker": (
        "medrepro.benchmark.worker",
        "run one benchmark configuration (called by 'benchmark')",
    ),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m medrepro <stage> [options]", "", "stages:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a stage; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown stage {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from medrepro.io.errors import InputError

    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
