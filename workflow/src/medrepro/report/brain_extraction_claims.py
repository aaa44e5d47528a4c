"""Claims of the brain extraction paper (001) checked against this run's tables.

Each claim compares a number computed from the artefacts (Table 4 summary, routes, core
scaling, quantization) with the paper's statement; ``holds`` is ``None`` when the configuration
it needs was not run, with a note saying so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from medrepro.report.brain_extraction_inputs import REFERENCE, ReportInputs
from medrepro.report.brain_extraction_tables import paired_difference, value
from medrepro.report.claims import Claim
from medrepro.report.published import brain_extraction as pub

__all__ = ["fmt", "build_claims"]

_T4 = pub.TABLE4


def fmt(x: float | None, digits: int = 3, unit: str = "") -> str:
    """A number with ``digits`` decimals and a unit, or ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}{unit}"


def _all_or_none(values: Sequence[bool | None]) -> bool | None:
    if not values or any(v is None for v in values):
        return None
    return all(bool(v) for v in values)


def _dice_drop(t4: pd.DataFrame, config: str, reference: str = REFERENCE) -> float | None:
    a, b = value(t4, reference, "dice_mean"), value(t4, config, "dice_mean")
    return None if a is None or b is None else a - b


def _claim_fp32_identical(inputs: ReportInputs, t4: pd.DataFrame) -> Claim:
    tol = float(inputs.options["identical_dice"])
    d = paired_difference(inputs.evaluation, "openvino_fp32", "dice")
    h = paired_difference(inputs.evaluation, "openvino_fp32", "hd95_mm").dropna()
    mean_diff = float(d.mean()) if d.size else None
    max_diff = float(d.abs().max()) if d.size else None
    pt, ov = value(t4, REFERENCE, "dice_mean"), value(t4, "openvino_fp32", "dice_mean")
    return Claim(
        "OpenVINO FP32 keeps PyTorch's Dice",
        f"identical: Dice {_T4['pt190_fp32']['dice']} vs {_T4['ov_fp32']['dice']}, HD95 "
        f"{_T4['pt190_fp32']['hd95_mean']} vs {_T4['ov_fp32']['hd95_mean']} mm (Table 4)",
        f"Dice {fmt(pt, 5)} vs {fmt(ov, 5)} (mean paired diff {fmt(mean_diff, 6)}, max "
        f"|diff| {fmt(max_diff, 6)}); max |HD95 diff| "
        f"{fmt(float(h.abs().max()) if h.size else None, 4, ' mm')}",
        None if mean_diff is None else abs(mean_diff) < tol,
        f"holds if |mean paired Dice difference| < {tol:g} on the {d.size} test items",
    )


def _claims_int8_accuracy(inputs: ReportInputs, t4: pd.DataFrame) -> list[Claim]:
    negligible = float(inputs.options["negligible_dice"])
    max_drop = inputs.options.get("max_drop")
    drop = _dice_drop(t4, "openvino_int8")
    drop_ov = _dice_drop(t4, "openvino_int8", "openvino_fp32")
    h32, h8 = value(t4, REFERENCE, "hd95_mean"), value(t4, "openvino_int8", "hd95_mean")
    p_drop = float(_T4["pt190_fp32"]["dice"]) - float(_T4["ov_int8"]["dice"])
    measured = (
        f"Dice {fmt(value(t4, REFERENCE, 'dice_mean'), 5)} -> "
        f"{fmt(value(t4, 'openvino_int8', 'dice_mean'), 5)} (drop {fmt(drop, 5)}; vs OpenVINO "
        f"FP32 {fmt(drop_ov, 5)}); HD95 {fmt(h32, 3)} -> {fmt(h8, 3, ' mm')}"
    )
    paper = (
        f"Dice {_T4['pt190_fp32']['dice']} -> {_T4['ov_int8']['dice']} (drop {p_drop:.5f}), "
        f"HD95 {_T4['pt190_fp32']['hd95_mean']} -> {_T4['ov_int8']['hd95_mean']} mm (Table 4)"
    )
    has_max = max_drop is not None and not math.isnan(float(max_drop))
    return [
        Claim(
            f"INT8 (accuracy control) loses < {negligible:g} Dice",
            paper,
            measured,
            None if drop is None else drop < negligible,
            "mean test-set Dice, PyTorch FP32 minus OpenVINO INT8 (accuracy-control model); "
            "the paper calls its 0.0008 drop negligible",
        ),
        Claim(
            "INT8 (accuracy control) Dice drop within the configured max_drop",
            "not in the paper (its AccuracyAware bound was 1.0 absolute in the public code)",
            f"{measured}; NNCF validation drop "
            f"{fmt(float(inputs.quantization['accuracy_control']['drop']), 5)}",
            None if drop is None or not has_max else drop <= float(max_drop),
            f"test-set drop vs PyTorch FP32 <= max_drop = {fmt(max_drop, 4)} "
            "(brain_extraction.quantization.max_drop)",
        ),
    ]


def _speed_claims(inputs: ReportInputs, t4: pd.DataFrame, speed: pd.DataFrame) -> list[Claim]:
    margin = float(inputs.options["noise_margin"])
    ok = speed[speed["status"] == "ok"]
    s32 = value(t4, "openvino_fp32", "speedup")
    s8 = value(t4, "openvino_int8", "speedup")
    out = []
    if ok.empty or not ((ok["backend"] == "openvino") & (ok["precision"] == "int8")).any():
        fastest, holds = "n/a", None
    else:
        best = ok.sort_values("latency_median_ms").iloc[0]
        fastest = f"{best['label']} ({best['latency_median_ms']:.1f} ms)"
        holds = bool(best["backend"] == "openvino" and best["precision"] == "int8")
    lat = ", ".join(f"{r['label']} {r['latency_median_ms']:.1f} ms" for _, r in ok.iterrows())
    out.append(
        Claim(
            "OpenVINO INT8 is the fastest configuration",
            f"INT8 {_T4['ov_int8']['speedup']}× vs OpenVINO FP32 {_T4['ov_fp32']['speedup']}× "
            "over PyTorch 1.5.1 (Table 4)",
            f"fastest: {fastest}; {lat or 'no benchmark rows'}",
            holds,
            "median latency, batch 1, sync, same thread count for every configuration",
        )
    )
    out.append(
        Claim(
            "OpenVINO FP32 is faster than PyTorch FP32",
            f"{pub.SPEEDUP_VS_PT190['openvino_fp32']}× vs PyTorch 1.9.0 (Section 3); "
            f"{_T4['ov_fp32']['speedup']}× vs 1.5.1 (Table 4)",
            f"{fmt(s32, 2, '×')} vs PyTorch {_version(t4)}",
            None if s32 is None else s32 > 1 + margin,
            f"PyTorch latency / OpenVINO FP32 latency, batch 1 sync; must exceed 1 + {margin:.0%}",
        )
    )
    target = float(inputs.options["target_speedup"])
    max_dice = float(inputs.options["target_dice_drop"])
    drop = _dice_drop(t4, "openvino_int8")
    mem8, mem_pt = value(t4, "openvino_int8", "peak_rss_mb"), value(t4, REFERENCE, "peak_rss_mb")
    parts = [
        None if s8 is None else s8 >= target,
        None if drop is None else drop <= max_dice,
        None if mem8 is None or mem_pt is None else mem8 <= mem_pt,
    ]
    out.append(
        Claim(
            f"INT8 >= {target:g}× faster than PyTorch FP32 with Dice drop <= {max_dice:g} and "
            "memory <= PyTorch's",
            f"{pub.SPEEDUP_VS_PT190['openvino_int8']}× vs PyTorch 1.9.0 (Section 3), Dice drop "
            f"{float(_T4['pt190_fp32']['dice']) - float(_T4['ov_int8']['dice']):.4f}, memory "
            f"{_T4['ov_int8']['memory_norm']} vs {_T4['pt190_fp32']['memory_norm']} (Table 4)",
            f"{fmt(s8, 2, '×')}; Dice drop {fmt(drop, 5)}; peak RSS {fmt(mem8, 0, ' MB')} vs "
            f"{fmt(mem_pt, 0, ' MB')}",
            _all_or_none(parts),
            "the project's speed target; all three conditions must hold (batch 1 sync, "
            f"accuracy-control INT8; verdicts speed/accuracy/memory: "
            f"{', '.join({True: 'yes', False: 'no', None: 'n/a'}[p] for p in parts)})",
        )
    )
    return out


def _version(t4: pd.DataFrame) -> str:
    sel = t4[t4["config"] == REFERENCE]
    return str(sel.iloc[0]["version"]) if not sel.empty and sel.iloc[0]["version"] else ""


def _claims_memory(t4: pd.DataFrame) -> list[Claim]:
    m32, m8 = value(t4, "openvino_fp32", "memory_norm"), value(t4, "openvino_int8", "memory_norm")
    return [
        Claim(
            "INT8 uses less memory than OpenVINO FP32",
            pub.STATEMENTS["int8_memory"],
            f"INT8 {fmt(m8, 3)} vs FP32 {fmt(m32, 3)} (peak RSS / PyTorch FP32's)",
            None if m8 is None or m32 is None else m8 < m32,
            "peak RSS of the benchmark process, batch 1 sync",
        ),
        Claim(
            "OpenVINO FP32 uses more memory than PyTorch FP32",
            pub.STATEMENTS["ov_memory"],
            f"OpenVINO FP32 {fmt(m32, 3)} vs PyTorch 1.000 (peak RSS / PyTorch FP32's)",
            None if m32 is None else m32 > 1.0,
            "peak RSS of the benchmark process, batch 1 sync",
        ),
    ]


def _claims_scaling(inputs: ReportInputs, scaling: pd.DataFrame) -> list[Claim]:
    margin = float(inputs.options["noise_margin"])
    cores = inputs.options.get("physical_cores")
    ok = scaling[scaling["status"] == "ok"] if not scaling.empty else scaling
    threads = sorted({int(t) for t in ok["threads"]}) if not ok.empty else []
    verdicts, parts = [], []
    if len(threads) >= 2:
        for (_b, _p), g in ok.groupby(["backend", "precision"], sort=False):
            g = g.sort_values("threads")
            upto = g[g["threads"] <= cores] if cores else g
            if len(upto) < 2:
                continue
            lo, hi = upto.iloc[0], upto.iloc[-1]
            gain = float(lo["latency_median_ms"]) / float(hi["latency_median_ms"])
            verdicts.append(gain > 1 + margin)
            parts.append(f"{lo['label']} {gain:.2f}× ({int(lo['threads'])}->{int(hi['threads'])})")
    grows = Claim(
        "Speed grows with the number of threads for every framework",
        pub.STATEMENTS["core_scaling"],
        "; ".join(parts) if parts else f"thread counts benchmarked: {threads or 'none'}",
        _all_or_none(verdicts) if parts else None,
        f"latency at the fewest / most threads (up to the physical cores, when known); each "
        f"ratio must exceed 1 + {margin:.0%}"
        + ("" if len(threads) >= 2 else "; needs at least two thread counts"),
    )
    beyond = [t for t in threads if cores and t > cores]
    if not cores or not beyond:
        note = (
            "physical core count unknown (sysinfo has none; pass --physical-cores)"
            if not cores
            else f"no thread count above the {cores} physical cores was benchmarked"
        )
        drop = Claim(
            "Speed drops slightly beyond the physical cores",
            pub.STATEMENTS["core_scaling"],
            f"thread counts benchmarked: {threads or 'none'}",
            None,
            note,
        )
        return [grows, drop]
    verdicts, parts = [], []
    for (_b, _p), g in ok.groupby(["backend", "precision"], sort=False):
        at = g.set_index("threads")["latency_median_ms"]
        if cores not in at.index:
            continue
        worst = max(float(at[t]) for t in beyond if t in at.index)
        verdicts.append(worst > float(at[cores]))
        parts.append(f"{g.iloc[0]['label']} {float(at[cores]):.0f} -> {worst:.0f} ms")
    drop = Claim(
        "Speed drops slightly beyond the physical cores",
        pub.STATEMENTS["core_scaling"],
        "; ".join(parts) or "n/a",
        _all_or_none(verdicts) if parts else None,
        f"latency above {cores} physical cores vs at {cores}",
    )
    return [grows, drop]


def _claim_onnx_route(inputs: ReportInputs, routes: pd.DataFrame) -> Claim:
    negligible = float(inputs.options["negligible_dice"])
    direct = routes[routes["route"] == "direct"].iloc[0]
    onnx = routes[routes["route"] == "onnx"].iloc[0]
    d_dir, d_onnx = direct["dice_mean"], onnx["dice_mean"]
    evaluated = not (pd.isna(d_dir) or pd.isna(d_onnx))
    loss = float(d_dir) - float(d_onnx) if evaluated else None
    return Claim(
        "The ONNX route loses accuracy against the direct PyTorch -> IR route",
        pub.STATEMENTS["onnx_route"],
        f"Dice direct {fmt(None if pd.isna(d_dir) else float(d_dir), 5)} vs ONNX route "
        f"{fmt(None if pd.isna(d_onnx) else float(d_onnx), 5)} (loss {fmt(loss, 6)}); parity "
        f"max|diff| direct {direct['parity_max_abs_diff']:.1e}, ONNX route "
        f"{onnx['parity_max_abs_diff']:.1e}",
        None if loss is None else loss > negligible,
        f"holds if the ONNX route's mean test Dice is lower by more than {negligible:g}"
        + ("" if evaluated else "; openvino_fp32_onnx was not evaluated"),
    )


def _claim_iops(inputs: ReportInputs) -> Claim:
    q = inputs.quantization["accuracy_control"]
    total, kept = float(q["fake_quantize_total"]), float(q["fake_quantize_kept"])
    share = kept / total if total > 0 else None
    return Claim(
        f"About {100 * pub.INT8_IOP_SHARE:.1f} % of the operations run in INT8",
        f"{pub.IOPS_INT8 / 1e9:.2f} G integer of {pub.FLOPS_FP32 / 1e9:.2f} G operations "
        "(Section 4)",
        f"FakeQuantize kept {int(kept)} of {int(total)} ({fmt(None if share is None else 100 * share, 1, ' %')}); "
        "operation counts not measured",
        None,
        "not measurable from the artefacts (no FLOP counter); the share of activation quantizers "
        "kept by accuracy control is shown as a proxy",
    )


def build_claims(
    inputs: ReportInputs,
    t4: pd.DataFrame,
    speed: pd.DataFrame,
    routes: pd.DataFrame,
    scaling: pd.DataFrame,
) -> list[Claim]:
    """Check the paper's claims and the project's speed target.

    Args:
        inputs: validated report inputs.
        t4: :func:`~medrepro.report.brain_extraction_tables.table4_summary`.
        speed: :func:`~medrepro.report.brain_extraction_tables.speed_rows` of the main benchmark.
        routes: :func:`~medrepro.report.brain_extraction_tables.routes_table`.
        scaling: :func:`~medrepro.report.brain_extraction_tables.core_scaling_table`.

    Returns:
        The claims, in report order.
    """
    return [
        _claim_fp32_identical(inputs, t4),
        *_claims_int8_accuracy(inputs, t4),
        *_speed_claims(inputs, t4, speed),
        *_claims_memory(t4),
        *_claims_scaling(inputs, scaling),
        _claim_onnx_route(inputs, routes),
        _claim_iops(inputs),
    ]
