"""Published results of the LowRes paper (003, two-stage 3D segmentation on CPU).

Shirokikh B., Shevtsov A., Dalechina A., Krivov E., Kostjuchenko V., Golanov A., Gombolevskiy V.,
Morozov S., Belyaev M. "Accelerating 3D Medical Image Segmentation by Adaptive Small-Scale Target
Localization". J. Imaging 7(2):35 (2021), doi:10.3390/jimaging7020035.

- Table 1 (LUNA16) and Table 2 (multiple brain metastases): inference time per study in seconds,
  mean (SD) over 10 random test images, at 4, 8 and 16 threads of an Intel Xeon E5-2690 v4
  @ 2.60 GHz under 16 GB of RAM; average object recall over 0-5 FP per scan (step 0.01) with its
  SD; object Dice, mean (SD) over the detected objects.
- Section 5.3 text: at most 23 s at 4 threads (LUNA16), ~60x faster than DeepMedic and 3D U-Net.
- Fig. 2 caption: small-object thresholds, 10 mm (lung nodules) and 5 mm (brain metastases).

Rows are keyed by the pipeline's model names (``unet3d``, ``deepmedic``, ``mobilenetv2``,
``enet``, ``lowres``); columns ``time_t{4,8,16}_mean``, ``time_t{4,8,16}_sd`` (s),
``avg_recall``, ``avg_recall_sd``, ``object_dice``, ``object_dice_sd``.
"""

from __future__ import annotations

__all__ = [
    "CITATION",
    "LABEL",
    "SETUP",
    "THREADS",
    "N_TIMED_STUDIES",
    "RAM_LIMIT_GB",
    "MODEL_NAMES",
    "TABLE1",
    "TABLE2",
    "TABLES",
    "TABLE_NUMBERS",
    "SMALL_OBJECT_MM",
    "MAX_SECONDS",
    "MAX_SECONDS_4_THREADS",
    "SPEEDUP_VS_BASELINES",
    "STATEMENTS",
]

CITATION = (
    "Shirokikh B., Shevtsov A., Dalechina A., Krivov E., Kostjuchenko V., Golanov A., "
    "Gombolevskiy V., Morozov S., Belyaev M. Accelerating 3D Medical Image Segmentation by "
    "Adaptive Small-Scale Target Localization. J. Imaging 7(2):35 (2021), "
    "doi:10.3390/jimaging7020035."
)

#: how published values are labelled in tables and figures
LABEL = "published (Shirokikh et al. 2021, Xeon E5-2690 v4, 4/8/16 threads)"

#: Section 5: hardware, timing protocol and data of the paper
SETUP: dict[str, str] = {
    "cpu": "Intel Xeon E5-2690 v4 @ 2.60 GHz",
    "threads": "4, 8 and 16 CPU threads",
    "memory": "at most 16 GB of RAM during inference (Fig. 1: 8 GB, 8 threads)",
    "timing": "mean (SD) over 10 randomly chosen test images per dataset",
    "luna16": "LUNA16 CT, 888 scans (72 excluded: nodule outside the lung mask), subsets 8-9 test",
    "metastases": "1952 T1 contrast-enhanced MRI with multiple brain metastases (1250/402/300)",
    "quality": "average object recall over 0-5 FP per scan (step 0.01); Dice per detected object",
}

#: thread counts of Tables 1-2
THREADS: tuple[int, ...] = (4, 8, 16)
#: test images timed per dataset (Section 5.2)
N_TIMED_STUDIES = 10
#: RAM bound of the inference (Section 5.2), GB
RAM_LIMIT_GB = 16

#: display names of the models (the tables' row labels)
MODEL_NAMES: dict[str, str] = {
    "unet3d": "3D U-Net",
    "deepmedic": "DeepMedic",
    "mobilenetv2": "3D MobileNetV2",
    "enet": "3D E-Net",
    "lowres": "LowRes",
}


def _row(
    times: tuple[tuple[float, float], tuple[float, float], tuple[float, float]],
    recall: tuple[float, float],
    dice: tuple[float, float],
) -> dict[str, float]:
    row: dict[str, float] = {}
    for t, (mean, sd) in zip(THREADS, times, strict=True):
        row[f"time_t{t}_mean"] = mean
        row[f"time_t{t}_sd"] = sd
    row["avg_recall"], row["avg_recall_sd"] = recall
    row["object_dice"], row["object_dice_sd"] = dice
    return row


#: Table 1, LUNA16: times in s at 4/8/16 threads, mean (SD); avg recall (SD); object Dice (SD)
TABLE1: dict[str, dict[str, float]] = {
    "unet3d": _row(((1293, 100), (880, 61), (828, 62)), (0.77, 0.02), (0.82, 0.16)),
    "deepmedic": _row(((1139, 162), (872, 138), (840, 127)), (0.78, 0.02), (0.78, 0.20)),
    "mobilenetv2": _row(((108, 14), (89, 12), (74, 10)), (0.68, 0.02), (0.75, 0.22)),
    "enet": _row(((11, 1.2), (9.5, 1.2), (9.2, 1.0)), (0.62, 0.02), (0.70, 0.22)),
    "lowres": _row(((23, 2.9), (15, 1.9), (13, 1.7)), (0.80, 0.02), (0.75, 0.18)),
}

#: Table 2, multiple brain metastases: same columns as Table 1
TABLE2: dict[str, dict[str, float]] = {
    "unet3d": _row(((342, 36), (225, 20), (202, 16)), (0.71, 0.01), (0.72, 0.21)),
    "deepmedic": _row(((381, 74), (254, 50), (226, 46)), (0.70, 0.02), (0.69, 0.23)),
    "mobilenetv2": _row(((33, 4.6), (23, 3.0), (21, 2.4)), (0.65, 0.01), (0.69, 0.22)),
    "enet": _row(((3.2, 0.3), (1.7, 0.2), (1.9, 0.3)), (0.47, 0.01), (0.59, 0.23)),
    "lowres": _row(((6.1, 0.7), (4.3, 0.6), (3.7, 0.6)), (0.68, 0.01), (0.64, 0.22)),
}

#: dataset -> its published table
TABLES: dict[str, dict[str, dict[str, float]]] = {"luna16": TABLE1, "metastases": TABLE2}
#: dataset -> the paper's table number
TABLE_NUMBERS: dict[str, int] = {"luna16": 1, "metastases": 2}

#: Fig. 2 caption: diameter (mm) below which an object counts as small
SMALL_OBJECT_MM: dict[str, float] = {"luna16": 10.0, "metastases": 5.0}

#: Abstract and Conclusions: LowRes segments a study "within 15 s" on a CPU workstation
MAX_SECONDS = 15.0
#: Section 5.3: "The maximum inference time is 23 s with four CPU threads on LUNA16 data"
MAX_SECONDS_4_THREADS = 23.0
#: Section 5.3: LowRes outperforms DeepMedic and 3D U-Net "in terms of speed by approximately 60
#: times"
SPEEDUP_VS_BASELINES = 60.0

#: qualitative statements of the paper, quoted in the claims table
STATEMENTS: dict[str, str] = {
    "speed": "LowRes ~60x faster than DeepMedic and 3D U-Net (Section 5.3)",
    "quality": "LowRes 'preserves or even increases the performance' of 3D U-Net and DeepMedic "
    "(Section 7)",
    "enet": "LowRes achieves 'a comparable inference speed with the fastest 3D mobile network "
    "E-Net' (Section 5.3)",
    "within_15s": "'within 15 s for a single case' on a CPU workstation (Abstract, Section 7)",
    "ram": "'We operate under the upper boundary of 16 GB of RAM' (Section 5.2)",
    "openvino": "not in the paper (PyTorch only); OpenVINO FP32/INT8 are this project's extension",
}
