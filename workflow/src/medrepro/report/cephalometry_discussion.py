"""Discussion of the cephalometry report: sentences generated from the claims' verdicts.

Explains, from the measured numbers only, why a claim of the paper held or did not (e.g. training
length, PyTorch's oneDNN baseline, missing VNNI/AMX, normalisation nodes blocking INT8 fusion,
the share of Interpolate nodes). Used by :func:`medrepro.report.cephalometry.render_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from medrepro.report.cephalometry_claims import speedup
from medrepro.report.cephalometry_inputs import ReportInputs
from medrepro.report.cephalometry_tables import node_share
from medrepro.report.claims import Claim
from medrepro.report.provenance import cpu_info
from medrepro.report.published import cephalometry as pub

__all__ = ["discussion"]


def _find_flags(obj: Any) -> set[str]:
    """CPU flags found anywhere in sysinfo (keys containing ``flag``)."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if "flag" in str(k).lower() and isinstance(v, (list, str)):
                found |= set(v.split() if isinstance(v, str) else map(str, v))
            else:
                found |= _find_flags(v)
    return found


def _claim(claims: Sequence[Claim], prefix: str) -> Claim | None:
    """The first claim whose text starts with ``prefix``."""
    return next((c for c in claims if c.claim.startswith(prefix)), None)


def _discuss_accuracy(inputs: ReportInputs, claims: Sequence[Claim]) -> list[str]:
    out = []
    acc = _claim(claims, "Hourglass is more accurate")
    if acc is not None and acc.holds is True:
        out.append(f"As in the paper, heatmap regression beats direct regression ({acc.measured}).")
    elif acc is not None and acc.holds is False:
        epochs = ", ".join(
            f"{m.name} {int(m.history['epoch'].max())} epochs"
            for m in inputs.models.values()
            if not m.history.empty
        )
        out.append(
            f"Unlike the paper, the Hourglass is not more accurate here ({acc.measured}). With "
            f"training lengths of {epochs} on synthetic phantoms, under-training or the heatmap "
            "decoder's voxel quantisation are the first suspects."
        )
    out.append(
        "Absolute errors are not comparable with Tables 1-2: the data are synthetic phantoms, not "
        "the paper's 20 patient CTs, so only the relations between models carry over."
    )
    return out


def _discuss_speed(inputs: ReportInputs, versions: dict[str, Any], perf: pd.DataFrame) -> list[str]:
    out = []
    sys_versions = inputs.sysinfo.get("versions")
    torch_v = (
        sys_versions.get("torch") if isinstance(sys_versions, dict) else None
    ) or versions.get("torch")
    for role in ("direct_regression", "hourglass"):
        m = inputs.role_model(role)
        measured = speedup(m, "openvino", "f32", "sync")
        published = float(pub.TABLE3_5_SPEED[role]["OpenVINO sync"]["speedup"])
        if m is None or measured is None:
            continue
        relation = "faster than" if measured >= 1 else "as fast as"
        text = (
            f"OpenVINO FP32 sync is {measured:.2f}× {relation} PyTorch for {m.name} "
            f"({pub.ROLES[role]}; published {published:.1f}×)"
        )
        if measured < published:
            onednn = inputs.sysinfo.get("torch_mkldnn") is True
            text += (
                f". The published baseline was PyTorch 1.5.1 on an i7-8700; PyTorch {torch_v or '(version unknown)'} "
                + (
                    "runs 3D convolutions through oneDNN (`torch_mkldnn` in sysinfo), which narrows the gap"
                    if onednn
                    else "is a much newer CPU baseline"
                )
                + ", and the ratio also depends on the CPU and thread count."
            )
        else:
            text += ", at or above the published ratio."
        top = _top_node(perf, m.name, "f32")
        if top is not None and top[0] not in {"Convolution", "GroupConvolution", "FullyConnected"}:
            text += (
                f" Per-layer counters: {top[0]} nodes take {100 * top[1]:.0f} % of {m.name}'s "
                "OpenVINO FP32 time, more than any convolution."
            )
        out.append(text)
    return out


def _top_node(perf: pd.DataFrame, model: str, precision: str) -> tuple[str, float] | None:
    """``(node type, share of time)`` of the most expensive node type, or None."""
    rows = perf[(perf["model"] == model) & (perf["precision"] == precision)] if len(perf) else perf
    if rows is None or len(rows) == 0:
        return None
    row = rows.sort_values("time_ms", ascending=False).iloc[0]
    return str(row["node_type"]), float(row["share"])


def _discuss_int8(inputs: ReportInputs, claims: Sequence[Claim], perf: pd.DataFrame) -> list[str]:
    bn = _claim(claims, "Folding normalisation")
    if bn is None or bn.holds is None:
        return []
    if bn.holds:
        return [f"INT8 pays off once normalisation folds into the convolutions ({bn.measured})."]
    a, b = inputs.options["bn_pair"]
    reasons = []
    for name in (a, b):
        q = inputs.models[name].quantization
        kept, total = q.get("fake_quantize_kept"), q.get("fake_quantize_total")
        if isinstance(kept, int | float) and isinstance(total, int | float) and kept < total:
            reasons.append(
                f"accuracy control kept {kept:g} of {total:g} FakeQuantize nodes of {name}"
            )
    mvn = node_share(perf, a, "mvn|norm", "int8")
    if mvn is not None and mvn > 0.1:
        reasons.append(
            f"normalisation (MVN) nodes, which block conv+FakeQuantize fusion, take {100 * mvn:.0f} % "
            f"of {a}'s INT8 time"
        )
    flags = _find_flags(inputs.sysinfo) or set(cpu_info().get("flags", []))
    if not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        reasons.append("the CPU has neither VNNI nor AMX-INT8 instructions")
    elif "amx_int8" not in flags:
        reasons.append("the CPU has no AMX, so INT8 kernels rely on VNNI alone")
    text = f"Folding normalisation did not make INT8 pay off here ({bn.measured})"
    if reasons:
        text += "; candidate reasons from the measurements: " + "; ".join(reasons)
    return [text + "."]


def _discuss_variants(
    inputs: ReportInputs, claims: Sequence[Claim], perf: pd.DataFrame
) -> list[str]:
    out = []
    deconv = _claim(claims, "Deconvolution replacement")
    if deconv is not None and deconv.holds is True:
        out.append(
            f"The transposed-convolution decoder is faster in OpenVINO, as the paper's authors found "
            f"({deconv.measured})."
        )
    elif deconv is not None and deconv.holds is False:
        a = inputs.options["deconv_pair"][0]
        share = node_share(perf, a, "interp")
        text = (
            "Replacing trilinear upsampling by a transposed convolution did not speed the Hourglass "
            f"up ({deconv.measured})"
        )
        if share is not None and share < 0.2:
            text += (
                f"; Interpolate takes only {100 * share:.0f} % of {a}'s OpenVINO time, unlike the "
                "2020 CPU plugin where trilinear upscaling dominated"
            )
        out.append(text + ".")
    batch = _claim(claims, "A larger batch")
    if batch is not None and batch.holds is False:
        out.append(
            f"Larger batches did raise OpenVINO throughput here ({batch.measured}), unlike the "
            "paper's Tables 4 and 6."
        )
    return out


def discussion(
    inputs: ReportInputs, claims: Sequence[Claim], perf: pd.DataFrame, versions: dict[str, Any]
) -> list[str]:
    """Sentences generated from the measured numbers and the claims' verdicts."""
    failed = [c.claim for c in claims if c.holds is False]
    n_yes = sum(c.holds is True for c in claims)
    n_na = sum(c.holds is None for c in claims)
    out = [
        f"{n_yes} of {len(claims)} checked claims hold, {len(failed)} do not and {n_na} could not "
        "be checked (model not run or configuration missing)."
    ]
    out += _discuss_accuracy(inputs, claims)
    out += _discuss_speed(inputs, versions, perf)
    out += _discuss_int8(inputs, claims, perf)
    out += _discuss_variants(inputs, claims, perf)
    if failed:
        out.append("Claims that did not hold: " + "; ".join(failed) + ".")
    return out
