"""Discussion of the brain extraction report: sentences generated from the numbers and verdicts.

Says why a claim of the paper held or did not, from the measurements only: the CPU's INT8/BF16
instructions (VNNI, AMX) recorded in sysinfo, the PyTorch version of the baseline, the
FakeQuantize nodes accuracy control kept, the most expensive OpenVINO node type, empty masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from medrepro.report.brain_extraction_claims import fmt
from medrepro.report.brain_extraction_inputs import REFERENCE, ReportInputs
from medrepro.report.brain_extraction_tables import value
from medrepro.report.claims import Claim
from medrepro.report.published import brain_extraction as pub

__all__ = ["cpu_flags", "top_node", "discussion"]

_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags(sysinfo: dict[str, Any]) -> set[str]:
    """CPU flags found anywhere in sysinfo (keys containing ``flag``)."""
    found: set[str] = set()
    for k, v in sysinfo.items():
        if "flag" in str(k).lower() and isinstance(v, (list, str)):
            found |= set(v.split() if isinstance(v, str) else map(str, v))
        elif isinstance(v, dict):
            found |= cpu_flags(v)
    return found


def top_node(perf: pd.DataFrame, precision: str) -> tuple[str, float] | None:
    """``(node type, share of OpenVINO time)`` of the most expensive node type, or None."""
    if perf.empty:
        return None
    rows = perf[perf["precision"] == precision]
    if rows.empty or rows["time_ms"].sum() <= 0:
        return None
    row = rows.sort_values("time_ms", ascending=False).iloc[0]
    return str(row["node_type"]), float(row["time_ms"] / rows["time_ms"].sum())


def _claim(claims: Sequence[Claim], prefix: str) -> Claim | None:
    return next((c for c in claims if c.claim.startswith(prefix)), None)


def _data(inputs: ReportInputs, t4: pd.DataFrame) -> list[str]:
    synthetic = inputs.block.get("data_dir") in (None, "")
    n = int(inputs.evaluation.groupby(["subject_id", "modality"]).ngroups)
    out = [
        f"Absolute Dice and HD95 ({fmt(value(t4, REFERENCE, 'dice_mean'), 4)}, "
        f"{fmt(value(t4, REFERENCE, 'hd95_mean'), 2, ' mm')} for PyTorch FP32 on {n} test items) "
        + (
            "come from synthetic phantoms built on the MNI152 template, not from the paper's "
            f"{pub.N_TEST_IMAGES} TCGA-GBM scans; only the relations between frameworks and "
            "precisions carry over."
            if synthetic
            else f"come from the user's data, not the paper's {pub.N_TEST_IMAGES} TCGA-GBM scans."
        )
    ]
    excluded = int(t4["hd95_excluded"].sum())
    if excluded:
        out.append(
            f"{excluded} (item, configuration) pairs had exactly one empty mask; their HD95 is "
            "undefined and excluded from the means (counted in `hd95_excluded`)."
        )
    return out


def _speed(inputs: ReportInputs, t4: pd.DataFrame, claims: Sequence[Claim]) -> list[str]:
    out = []
    s32, s8 = value(t4, "openvino_fp32", "speedup"), value(t4, "openvino_int8", "speedup")
    torch_v = t4.loc[t4["config"] == REFERENCE, "version"]
    torch_v = str(torch_v.iloc[0]) if not torch_v.empty and torch_v.iloc[0] else "(unknown)"
    flags = cpu_flags(inputs.sysinfo)
    int8_isa = [f for f in _INT8_FLAGS if f in flags]
    model = inputs.sysinfo.get("cpu_model") or "the benchmark CPU"
    target = float(inputs.options["target_speedup"])
    if s32 is not None:
        rel = "faster" if s32 >= 1 else "slower"
        out.append(
            f"OpenVINO FP32 runs {s32:.2f}× {rel} than PyTorch {torch_v} here (published "
            f"{pub.SPEEDUP_VS_PT190['openvino_fp32']}× vs PyTorch 1.9.0). A modern PyTorch runs "
            "3D convolutions through oneDNN too, so the FP32 gap is expected to be narrower than "
            "in 2021."
        )
    if s8 is not None:
        text = (
            f"OpenVINO INT8 runs {s8:.2f}× faster than PyTorch FP32 (target {target:g}×, "
            f"published {pub.SPEEDUP_VS_PT190['openvino_int8']}× on an i7-1185G7 with VNNI)"
        )
        if s8 < target:
            if not int8_isa:
                text += (
                    f"; {model} has no VNNI or AMX-INT8 instructions (sysinfo flags), so INT8 "
                    "convolutions cannot use 8-bit dot-product units and the gain over FP32 is "
                    "limited to memory traffic; the paper attributes its INT8 boost to AVX512 and "
                    "DL Boost (VNNI)"
                )
            else:
                text += (
                    f"; the CPU has {', '.join(int8_isa)}, so the instruction set is not the limit"
                )
            if s32 is not None and s32 > 0:
                text += f"; INT8 over OpenVINO FP32 is {s8 / s32:.2f}×"
        else:
            text += f", meeting the target (CPU INT8 instructions: {', '.join(int8_isa) or 'none'})"
        out.append(text + ".")
    for precision in ("f32", "int8"):
        top = top_node(inputs.perf, precision)
        if top is not None:
            out.append(
                f"OpenVINO {precision} per-node counters: {top[0]} takes {100 * top[1]:.0f} % of "
                "the inference time."
            )
    threads = inputs.options.get("scaling_threads") or []
    grows = _claim(claims, "Speed grows")
    if grows is not None and len(threads) < 2:
        out.append(
            f"Core scaling was benchmarked at {threads or 'no'} thread count(s) only, so the "
            "trend of Fig. 5 cannot be checked on this machine."
        )
    elif grows is not None and grows.holds is False:
        out.append(f"Not every framework sped up with more threads ({grows.measured}).")
    return out


def _deployment(inputs: ReportInputs, claims: Sequence[Claim]) -> list[str]:
    out = []
    onnx = _claim(claims, "The ONNX route")
    if onnx is not None and onnx.holds is False:
        out.append(
            "Unlike the paper, the PyTorch -> ONNX -> IR route keeps the accuracy of the direct "
            f"route ({onnx.measured}); the paper's 2021 exporter/Model Optimizer problem does not "
            f"reproduce with opset {inputs.parity.get('opset', '?')} and current OpenVINO. "
            "It would have, had we exported BrainMaGe's `InstanceNorm3d(track_running_stats=True)`"
            " as it is: the TorchScript ONNX exporter refuses it with a dynamic batch and, with a"
            " static batch, bakes the traced shape into a Reshape to (1, N*C, ...). Our network"
            " computes the same eval-mode normalisation as a per-channel affine map"
            " (`RunningStatsInstanceNorm3d`), which exports as one BatchNormalization node; that"
            " this is where the paper's ONNX accuracy drop came from is our guess, not a result."
        )
    elif onnx is not None and onnx.holds is True:
        out.append(f"As in the paper, the ONNX route loses accuracy ({onnx.measured}).")
    q = inputs.quantization
    ac, df = q["accuracy_control"], q["default"]
    out.append(
        f"Accuracy control kept {int(ac['fake_quantize_kept'])} of "
        f"{int(ac['fake_quantize_total'])} FakeQuantize nodes (validation Dice drop "
        f"{float(ac['drop']):.4g}, max_drop {float(ac['max_drop']):g}); plain nncf.quantize kept "
        f"{int(df['fake_quantize_kept'])} (drop {float(df['drop']):.4g})."
    )
    return out


def discussion(inputs: ReportInputs, t4: pd.DataFrame, claims: Sequence[Claim]) -> list[str]:
    """Sentences generated from the measured numbers and the claims' verdicts."""
    failed = [c.claim for c in claims if c.holds is False]
    n_yes = sum(c.holds is True for c in claims)
    n_na = sum(c.holds is None for c in claims)
    out = [
        f"{n_yes} of {len(claims)} checked claims hold, {len(failed)} do not and {n_na} could not "
        "be checked (configuration not run or not measurable)."
    ]
    out += _data(inputs, t4)
    out += _speed(inputs, t4, claims)
    out += _deployment(inputs, claims)
    if failed:
        out.append("Claims that did not hold: " + "; ".join(failed) + ".")
    return out
