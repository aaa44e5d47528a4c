"""Published results of the cephalometry seed paper (000).

Vasiliev E., Lachinov D., Getmanskaya A. "DL-inferencing for 3D Cephalometric Landmarks
Regression task using OpenVINO". GraphiCon 2020, CEUR-WS Vol-2744, paper 35.

- Table 1: RMSE (mm) per landmark and "Total" (the pooled RMSE, sqrt of the mean squared
  per-landmark RMSE).
- Table 2: share of landmarks within 2, 3 and 4 mm.
- Tables 3 and 5: batch-1 performance of the VGG-like direct regression model (2048 generated
  inputs) and of the Hourglass model (128 generated inputs): PyTorch, OpenVINO sync, OpenVINO
  async with 4 infer requests.
- Tables 4 and 6: the same over batch sizes; ``None`` is the paper's "–" (out of memory).
- Section 5.1 (setup) and 5.3 (model sizes).

The paper's models are keyed by role: ``"direct_regression"`` (the VGG-like regressor) and
``"hourglass"`` (the 3-stack Hourglass with ResNeXt blocks and GroupNorm).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CITATION",
    "LABEL",
    "ROLES",
    "SETUP",
    "MODEL_SIZE",
    "LANDMARKS",
    "TABLE1_RMSE",
    "TABLE2_SDR",
    "TABLE3_5_SPEED",
    "TABLE4_6_BATCH",
    "BENCHMARK_INPUTS",
]

CITATION = (
    "Vasiliev E., Lachinov D., Getmanskaya A. DL-inferencing for 3D Cephalometric Landmarks "
    "Regression task using OpenVINO. GraphiCon 2020, CEUR-WS Vol-2744, paper 35."
)

#: how published values are labelled in tables and figures
LABEL = "published (Vasiliev et al. 2020, i7-8700, OpenVINO 2020.3, PyTorch 1.5.1)"

#: role key -> the paper's model name
ROLES: dict[str, str] = {"direct_regression": "Direct Regression", "hourglass": "Hourglass"}

#: Section 5.1: test infrastructure
SETUP: dict[str, str] = {
    "cpu": "Intel Core i7-8700 CPU @ 3.20GHz",
    "ram": "64 GB",
    "os": "Linux-5.3.0-51-generic-x86-64-with-Ubuntu-18.04-bionic",
    "python": "3.7.7",
    "openvino": "2020.3.194",
    "pytorch": "1.5.1",
}

#: Section 5.3: parameters and operations
MODEL_SIZE: dict[str, dict[str, float]] = {
    "direct_regression": {"params": 1.33e6, "gflop": 3.8},
    "hourglass": {"params": 25.5e6, "gflop": 6.9},
}

#: landmark order of Table 1
LANDMARKS: tuple[str, ...] = ("Or-L", "Or-R", "Po-L", "Po-R")

#: Table 1: RMSE in mm
TABLE1_RMSE: dict[str, dict[str, float]] = {
    "direct_regression": {"Or-L": 4.14, "Or-R": 3.78, "Po-L": 5.03, "Po-R": 5.22, "total": 4.58},
    "hourglass": {"Or-L": 1.66, "Or-R": 1.24, "Po-L": 1.91, "Po-R": 1.97, "total": 1.72},
}

#: Table 2: share of landmarks within r mm, keyed by r in mm
TABLE2_SDR: dict[str, dict[float, float]] = {
    "direct_regression": {2.0: 0.20, 3.0: 0.39, 4.0: 0.61},
    "hourglass": {2.0: 0.81, 3.0: 0.94, 4.0: 0.95},
}

#: Tables 3 (direct regression) and 5 (hourglass), batch 1; configuration -> values.
#: latency in s (not reported for async), total time in s, FPS, speed-up over PyTorch (FPS ratio).
TABLE3_5_SPEED: dict[str, dict[str, dict[str, float | None]]] = {
    "direct_regression": {
        "PyTorch": {"latency_s": 0.183, "total_time_s": 187.788, "fps": 5.453, "speedup": 1.0},
        "OpenVINO sync": {
            "latency_s": 0.013,
            "total_time_s": 13.655,
            "fps": 74.990,
            "speedup": 13.752,
        },
        "OpenVINO async (4 requests)": {
            "latency_s": None,
            "total_time_s": 11.180,
            "fps": 91.595,
            "speedup": 16.797,
        },
    },
    "hourglass": {
        "PyTorch": {"latency_s": 2.421, "total_time_s": 308.830, "fps": 0.414, "speedup": 1.0},
        "OpenVINO sync": {
            "latency_s": 0.686,
            "total_time_s": 87.798,
            "fps": 1.458,
            "speedup": 3.518,
        },
        "OpenVINO async (4 requests)": {
            "latency_s": None,
            "total_time_s": 79.829,
            "fps": 1.603,
            "speedup": 3.828,
        },
    },
}

#: number of generated inputs behind Tables 3-6
BENCHMARK_INPUTS: dict[str, int] = {"direct_regression": 2048, "hourglass": 128}

_B = tuple[float | None, float | None]


def _batch(rows: dict[int, tuple[_B, _B, _B]]) -> dict[int, dict[str, Any]]:
    """Rows ``batch -> ((pt_total, pt_fps), (sync_total, sync_fps), (async_total, async_fps))``."""
    out: dict[int, dict[str, Any]] = {}
    for batch, (pt, sync, asyn) in rows.items():
        out[batch] = {
            "pytorch_total_s": pt[0],
            "pytorch_fps": pt[1],
            "ov_sync_total_s": sync[0],
            "ov_sync_fps": sync[1],
            "ov_async_total_s": asyn[0],
            "ov_async_fps": asyn[1],
        }
    return out


#: Tables 4 (direct regression) and 6 (hourglass): batch -> total time (s) and FPS per
#: framework; ``None`` is the paper's "–" (out of memory)
TABLE4_6_BATCH: dict[str, dict[int, dict[str, Any]]] = {
    "direct_regression": _batch(
        {
            1: ((375.814, 5.450), (27.354, 74.871), (22.722, 90.135)),
            2: ((294.316, 6.959), (28.503, 71.852), (22.928, 89.323)),
            4: ((259.146, 7.903), (28.910, 70.842), (23.511, 87.110)),
            8: ((251.736, 8.136), (29.215, 70.100), (23.353, 87.697)),
            16: ((243.928, 8.396), (29.288, 69.927), (23.805, 86.032)),
            32: ((259.44, 7.894), (29.413, 69.630), (24.894, 82.268)),
            64: ((168.322, 12.167), (29.471, 69.492), (24.834, 82.467)),
            128: ((141.724, 14.451), (29.662, 69.044), (26.67, 76.790)),
            256: ((140.164, 14.611), (29.807, 68.709), (28.493, 71.878)),
        }
    ),
    "hourglass": _batch(
        {
            1: ((308.830, 0.414), (87.798, 1.458), (80.673, 1.587)),
            2: ((303.234, 0.422), (89.439, 1.431), (79.155, 1.617)),
            4: ((293.672, 0.436), (89.581, 1.429), (79.030, 1.620)),
            8: ((309.207, 0.414), (89.639, 1.428), (82.291, 1.555)),
            16: ((320.290, 0.400), (89.416, 1.432), (86.469, 1.480)),
            32: ((None, None), (90.005, 1.422), (91.701, 1.396)),
            64: ((None, None), (90.904, 1.408), (None, None)),
        }
    ),
}
