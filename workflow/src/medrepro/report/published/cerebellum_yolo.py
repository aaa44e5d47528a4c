"""Published results of the cerebellum localisation paper (004, YOLO in prenatal ultrasound).

Ramos Díaz R., Olveres J., Escalante-Ramírez B., Arámbula Cosío F. "Deep learning approach for
cerebellum localization in prenatal ultrasound images". Proc. SPIE 11353, 1135322 (2020),
doi:10.1117/12.2556818.

- Table 1: best YOLOv1 (24 conv) checkpoint per grid size S (cells = S x S): AP in percent,
  converted here to fractions; the batch (iteration) of that checkpoint.
- Table 2: best tiny YOLO (8 conv) AP and F1 per momentum x learning rate.
- Section 3.2 text: which tiny runs show false positives decreasing with iterations (Fig. 10).
- Section 2: data (315 images, 21 volumes x 15 slices, 78 random test images), training (batch
  64, 1000 batches, a checkpoint every 100, ImageNet-pretrained convolutions).

"AP" is the paper's: the mean IoU of the top box over the 78 test images, not VOC AP.
"""

from __future__ import annotations

__all__ = [
    "CITATION",
    "LABEL",
    "SETUP",
    "N_IMAGES",
    "N_TEST_IMAGES",
    "N_VOLUMES",
    "TABLE1",
    "TABLE2",
    "FP_DECREASING",
    "FIG5_8_ITERATIONS",
    "MOMENTA",
    "LEARNING_RATES",
    "STATEMENTS",
]

CITATION = (
    "Ramos Díaz R., Olveres J., Escalante-Ramírez B., Arámbula Cosío F. Deep learning approach "
    "for cerebellum localization in prenatal ultrasound images. Proc. SPIE 11353, 1135322 "
    "(2020), doi:10.1117/12.2556818."
)

#: how published values are labelled in tables and figures
LABEL = "published (Ramos et al. 2020, Darknet, NVIDIA K4200, 78 test images)"

#: Section 2: data, framework and training of the paper
SETUP: dict[str, str] = {
    "data": "315 transcerebellar fetal ultrasound images (21 volumes x 15 slices, INPER), "
    "grayscale BMP + MATLAB masks, mapped to viridis",
    "split": "78 test images drawn at random (volumes not kept whole)",
    "framework": "Darknet (C/CUDA), NVIDIA K4200, CUDA 10.1",
    "training": "batch 64, 1000 batches (~270 epochs), a checkpoint every 100 batches",
    "transfer": "convolutional layers initialised with ImageNet-pretrained weights",
    "inputs": "YOLOv1 448 x 448; tiny YOLO 224 x 224",
}

#: images, test images and volumes (Section 2.2-2.3; the abstract says 316 images)
N_IMAGES = 315
N_TEST_IMAGES = 78
N_VOLUMES = 21

#: Table 1: grid size S -> best checkpoint (cells = S*S, iteration in batches, AP as a fraction)
TABLE1: dict[int, dict[str, float]] = {
    7: {"cells": 49, "iteration": 1000, "ap": 0.8297},
    9: {"cells": 81, "iteration": 1000, "ap": 0.8377},
    11: {"cells": 121, "iteration": 900, "ap": 0.848},
    13: {"cells": 169, "iteration": 900, "ap": 0.836},
}

#: Table 2: (momentum, learning rate) -> best AP and F1 of tiny YOLO
TABLE2: dict[tuple[float, float], dict[str, float]] = {
    (0.3, 5e-4): {"ap": 0.45, "f1": 0.96},
    (0.3, 5e-3): {"ap": 0.48, "f1": 0.96},
    (0.5, 5e-4): {"ap": 0.42, "f1": 0.99},
    (0.5, 5e-3): {"ap": 0.31, "f1": 0.99},
    (0.7, 5e-4): {"ap": 0.45, "f1": 0.94},
    (0.7, 5e-3): {"ap": 0.29, "f1": 0.94},
    (0.9, 5e-4): {"ap": 0.40, "f1": 1.0},
    (0.9, 5e-3): {"ap": 0.66, "f1": 1.0},
}

#: Section 3.2 / Fig. 10: FP decrease with iterations "only shown by mu = 0.3 to 0.7 for the
#: lower learning rate and by mu = 0.5 for the higher"
FP_DECREASING: dict[tuple[float, float], bool] = {
    (0.3, 5e-4): True,
    (0.5, 5e-4): True,
    (0.7, 5e-4): True,
    (0.9, 5e-4): False,
    (0.3, 5e-3): False,
    (0.5, 5e-3): True,
    (0.7, 5e-3): False,
    (0.9, 5e-3): False,
}

#: Figs. 5-8: S -> the checkpoint (batches) whose predictions are shown
FIG5_8_ITERATIONS: dict[int, int] = {7: 500, 9: 600, 11: 600, 13: 1000}

#: the tiny YOLO grid (Section 2.5)
MOMENTA: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
LEARNING_RATES: tuple[float, ...] = (5e-4, 5e-3)

#: qualitative statements of the paper, quoted in the claims table
STATEMENTS: dict[str, str] = {
    "more_training": "increasing S 'can achieve greater accuracy but requires more training'; "
    "'at the end the difference is not very significative' (Section 3.1)",
    "tiny_unstable": "tiny YOLO AP and F1 'casted very unstable behavior'; 'AP results are "
    "unsatisfactory' (Section 3.2)",
    "momentum_instability": "'accumulation of momentum introduces instability in learning as the "
    "momentum coefficient increases' (Section 3.2)",
    "momentum_better": "'better results are achieved with most increased values of mu' "
    "(Section 3.2)",
    "fp_trend": "FP decrease with iterations only for mu 0.3-0.7 at lr 5e-4 and mu 0.5 at "
    "lr 5e-3: 'half of experiments' (Section 3.2, Fig. 10)",
    "transfer": "ImageNet transfer learning dealt with the small data set; 'some knowledge may "
    "have been transferred across domains' (Sections 1.5, 4); no from-scratch run reported",
    "depth": "'the number of layers or depth play a very important role' (Section 4)",
}
