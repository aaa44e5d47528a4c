"""Published results of the brain extraction seed paper (001, BrainMaGe optimisation).

Thakur S.P., Pati S., Panchumarthy R., Karkada D., Wu J., Kurtaev D., Sako C., Shah P., Bakas S.
"Optimization of Deep Learning Based Brain Extraction in MRI for Low Resource Environments".
BrainLes 2021 (LNCS 12962), PMC9627678.

- Table 4: Dice, HD95 (mean ± SD), memory (normalised to PyTorch 1.5.1) and latency speed-up
  (normalised to PyTorch 1.5.1) on hardware configuration 4 (Core i7-1185G7), n = 132 TCGA-GBM
  test images, input ``1x1x128x128x128``, batch 1.
- Section 3 (text): speed-ups against PyTorch 1.9.0 (1.89x OpenVINO FP32, 6.2x INT8), the
  range over client and server CPUs, core scaling (Fig. 5), the ONNX route's accuracy drop
  (Section 2.4) and the FLOP/IOP counts of the INT8 model (Section 4).
- Tables 2-3: hardware and software of the benchmarks.

Rows of Table 4 are keyed ``pt151_fp32``, ``pt190_fp32``, ``ov_fp32``, ``ov_int8``.
"""

from __future__ import annotations

__all__ = [
    "CITATION",
    "LABEL",
    "SETUP",
    "N_TEST_IMAGES",
    "INPUT_SHAPE",
    "PARAMETERS",
    "TABLE4",
    "TABLE4_LABELS",
    "CONFIG_TO_ROW",
    "SPEEDUP_VS_PT190",
    "CLIENT_MAX_SPEEDUP",
    "SERVER_MAX_SPEEDUP",
    "FLOPS_FP32",
    "FLOPS_INT8",
    "IOPS_INT8",
    "INT8_IOP_SHARE",
    "NEGLIGIBLE_INT8_DICE_DROP",
    "STATEMENTS",
]

CITATION = (
    "Thakur S.P., Pati S., Panchumarthy R., Karkada D., Wu J., Kurtaev D., Sako C., Shah P., "
    "Bakas S. Optimization of Deep Learning Based Brain Extraction in MRI for Low Resource "
    "Environments. BrainLes 2021, LNCS 12962 (PMC9627678)."
)

#: how published values are labelled in tables and figures
LABEL = "published (Thakur et al. 2022, i7-1185G7, OpenVINO 2021.4, PyTorch 1.5.1/1.9.0)"

#: Tables 2-3, hardware configuration 4 (the one of Table 4)
SETUP: dict[str, str] = {
    "cpu": "Intel Core i7-1185G7 @ 3.00 GHz (Tiger Lake; AVX2, AVX512, DL Boost VNNI)",
    "cores_threads": "4 cores, 8 threads",
    "memory": "16 GB DDR4 3200 MT/s",
    "openvino": "2021.4",
    "pytorch": "1.5.1 and 1.9.0",
    "data": "132 TCGA-GBM test images (public collection), SRI24 atlas space, 1 mm",
}

#: test images behind Table 4
N_TEST_IMAGES = 132
#: network input (Table 3), ``(N, C, X, Y, Z)``
INPUT_SHAPE: tuple[int, ...] = (1, 1, 128, 128, 128)
#: trainable parameters of the 3D-ResU-Net (Section 4)
PARAMETERS = 8.288e6

#: Table 4; hd95 in mm (the paper's "Average Hausdorff distance", 95th percentile), memory and
#: speed-up normalised to PyTorch 1.5.1 FP32
TABLE4: dict[str, dict[str, float | str]] = {
    "pt151_fp32": {
        "framework": "PyTorch",
        "version": "1.5.1",
        "precision": "FP32",
        "dice": 0.97198,
        "hd95_mean": 2.6577,
        "hd95_sd": 3.0,
        "memory_norm": 1.0,
        "speedup": 1.0,
    },
    "pt190_fp32": {
        "framework": "PyTorch",
        "version": "1.9.0",
        "precision": "FP32",
        "dice": 0.97198,
        "hd95_mean": 2.6577,
        "hd95_sd": 3.0,
        "memory_norm": 0.769,
        "speedup": 3.8,
    },
    "ov_fp32": {
        "framework": "OpenVINO",
        "version": "2021.4",
        "precision": "FP32",
        "dice": 0.97198,
        "hd95_mean": 2.6577,
        "hd95_sd": 3.0,
        "memory_norm": 1.285,
        "speedup": 7.1,
    },
    "ov_int8": {
        "framework": "OpenVINO",
        "version": "2021.4",
        "precision": "INT8",
        "dice": 0.97118,
        "hd95_mean": 2.7426,
        "hd95_sd": 3.1,
        "memory_norm": 0.907,
        "speedup": 23.3,
    },
}

#: display names of the Table 4 rows
TABLE4_LABELS: dict[str, str] = {
    "pt151_fp32": "PyTorch 1.5.1 FP32",
    "pt190_fp32": "PyTorch 1.9.0 FP32",
    "ov_fp32": "OpenVINO 2021.4 FP32",
    "ov_int8": "OpenVINO 2021.4 INT8",
}

#: our evaluation configuration -> the Table 4 row it reproduces (PyTorch: the newer 1.9.0)
CONFIG_TO_ROW: dict[str, str] = {
    "pytorch_fp32": "pt190_fp32",
    "openvino_fp32": "ov_fp32",
    "openvino_int8": "ov_int8",
}

#: Section 3 text: latency speed-up over PyTorch 1.9.0 on configuration 4
SPEEDUP_VS_PT190: dict[str, float] = {"openvino_fp32": 1.89, "openvino_int8": 6.2}

#: Section 3 text: best speed-up over PyTorch on the client CPUs (configurations 1-4)
CLIENT_MAX_SPEEDUP: dict[str, float] = {"openvino_fp32": 2.3, "openvino_int8": 6.9}
#: Section 3 text: speed-up on the server CPU (configuration 5, Xeon Gold 6252N)
SERVER_MAX_SPEEDUP: dict[str, float] = {"openvino_fp32": 9.6, "openvino_int8": 20.5}

#: Section 4: operations of one inference
FLOPS_FP32 = 350.72665e9
FLOPS_INT8 = 2.09099e9
IOPS_INT8 = 348.63566e9
#: Section 4: "approximately 99.4% of Flops have been converted to Iops"
INT8_IOP_SHARE = 0.994

#: the Dice drop the paper calls negligible (0.97198 -> 0.97118 is 0.0008, below this bound)
NEGLIGIBLE_INT8_DICE_DROP = 0.001

#: qualitative statements of the paper, quoted for the claims table
STATEMENTS: dict[str, str] = {
    "fp32_identical": "FP32 performance of PyTorch and OpenVINO is identical (Section 3, Table 4)",
    "int8_negligible": "INT8 performance drop is negligible (Section 3, Table 4)",
    "onnx_route": "PyTorch -> ONNX -> IR 'lead to an intolerable accuracy drop'; direct "
    "PyTorch -> IR did not (Section 2.4)",
    "core_scaling": "performance increases with the number of threads; slight drop beyond the "
    "physical cores (Section 3, Fig. 5)",
    "int8_memory": "INT8 memory 0.907 vs OpenVINO FP32 1.285 (Table 4)",
    "ov_memory": "OpenVINO FP32 memory 1.285 vs PyTorch 1.9.0 0.769 (Table 4)",
}
