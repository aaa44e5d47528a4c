"""Claims of the cephalometry paper, and this project's deployment hypotheses, checked on artefacts.

Each ``_claim_*`` function returns one or more :class:`~medrepro.report.claims.Claim`; a claim is
``None`` (``n/a``) when a model it needs was not run or a configuration is missing. Speed claims
compare FPS ratios and use a relative noise margin (``--noise-margin``): "faster" needs a ratio
above ``1 + margin``, "does not raise" a ratio at most ``1 + margin``. Published values come from
:mod:`medrepro.report.published.cephalometry`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medrepro.report.cephalometry_inputs import ModelArtefacts, ReportInputs
from medrepro.report.cephalometry_tables import (
    accuracy_value,
    as_number,
    format_deployment_cell,
    node_share,
    parity_tolerance,
    select,
)
from medrepro.report.claims import Claim
from medrepro.report.markdown import format_value
from medrepro.report.published import cephalometry as pub

__all__ = ["fmt", "fps", "speedup", "published_speedup", "build_claims"]

_BASE = "pytorch_fp32"
_SYNC, _ASYNC = "OpenVINO sync", "OpenVINO async (4 requests)"


def fmt(x: float | None, digits: int = 2, unit: str = "") -> str:
    """A number with ``digits`` decimals and a unit, or ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}{unit}"


def fps(
    m: ModelArtefacts | None, backend: str, precision: str, mode: str, batch: int = 1
) -> float | None:
    """Throughput (FPS) of one ``ok`` configuration at the model's main thread count."""
    if m is None:
        return None
    r = select(m.bench, backend, precision, mode, batch)
    return None if r is None else float(r["fps"])


def speedup(m: ModelArtefacts | None, backend: str, precision: str, mode: str) -> float | None:
    """FPS ratio of a batch-1 configuration over PyTorch f32 sync batch 1."""
    value, ref = fps(m, backend, precision, mode), fps(m, "pytorch", "f32", "sync")
    return None if value is None or not ref else value / ref


def published_speedup(role: str, config: str) -> float:
    """The paper's speed-up (Tables 3, 5) rounded to one decimal as quoted in its text."""
    return round(float(pub.TABLE3_5_SPEED[role][config]["speedup"]), 1)


def _best_ov(m: ModelArtefacts | None, mode: str) -> tuple[float | None, str]:
    """Best batch-1 OpenVINO speed-up over PyTorch in ``mode`` across precisions."""
    best, label = None, ""
    for precision in ("f32", "bf16", "int8"):
        s = speedup(m, "openvino", precision, mode)
        if s is not None and (best is None or s > best):
            best, label = s, precision
    return best, label


def _all_or_none(values: Sequence[bool | None]) -> bool | None:
    """``all(values)``, or ``None`` if any verdict is unknown (or there is none)."""
    if not values or any(v is None for v in values):
        return None
    return all(bool(v) for v in values)


def _name(m: ModelArtefacts | None, role: str) -> str:
    return m.name if m is not None else pub.ROLES[role]


def _margin_note(margin: float) -> str:
    return f"ratios must exceed 1 + {margin:.0%} (benchmark noise margin)"


def _claims_accuracy(
    inputs: ReportInputs, table1: pd.DataFrame, table2: pd.DataFrame
) -> list[Claim]:
    dr, hg = inputs.role_model("direct_regression"), inputs.role_model("hourglass")
    r_dr = accuracy_value(table1, dr and dr.name, _BASE, "total")
    r_hg = accuracy_value(table1, hg and hg.name, _BASE, "total")
    s_dr = accuracy_value(table2, dr and dr.name, _BASE, "4 mm")
    s_hg = accuracy_value(table2, hg and hg.name, _BASE, "4 mm")
    p_rmse, p_sdr = pub.TABLE1_RMSE, pub.TABLE2_SDR
    return [
        Claim(
            "Hourglass is more accurate than direct regression (total RMSE)",
            f"Hourglass {p_rmse['hourglass']['total']:.2f} mm vs direct regression "
            f"{p_rmse['direct_regression']['total']:.2f} mm (Table 1)",
            f"{_name(hg, 'hourglass')} {fmt(r_hg, 2, ' mm')} vs "
            f"{_name(dr, 'direct_regression')} {fmt(r_dr, 2, ' mm')}",
            None if r_dr is None or r_hg is None else r_hg < r_dr,
            "pooled RMSE sqrt(mean_k RMSE_k²) on the test cases, PyTorch FP32",
        ),
        Claim(
            f"Hourglass puts ≥ {p_sdr['hourglass'][4.0]:.2f} of landmarks within 4 mm",
            f"Hourglass {p_sdr['hourglass'][4.0]:.2f}; direct regression "
            f"{p_sdr['direct_regression'][4.0]:.2f} (Table 2)",
            f"{_name(hg, 'hourglass')} {fmt(s_hg)}; {_name(dr, 'direct_regression')} {fmt(s_dr)}",
            None if s_hg is None else s_hg >= p_sdr["hourglass"][4.0],
            "share of all (case, landmark) pairs with error ≤ 4 mm, PyTorch FP32",
        ),
    ]


def _claims_frameworks(inputs: ReportInputs, margin: float) -> list[Claim]:
    """OpenVINO vs PyTorch, async vs sync, and the relative gain of the two paper models."""
    roles = ("direct_regression", "hourglass")
    models = {role: inputs.role_model(role) for role in roles}
    sync = {role: speedup(m, "openvino", "f32", "sync") for role, m in models.items()}
    p_sync = {role: published_speedup(role, _SYNC) for role in roles}
    p_fps = {role: pub.TABLE3_5_SPEED[role] for role in roles}

    verdicts, parts = [], []
    for role, m in models.items():
        fs, fa = fps(m, "openvino", "f32", "sync"), fps(m, "openvino", "f32", "async")
        verdicts.append(None if fs is None or fa is None else fa > fs * (1 + margin))
        parts.append(f"{_name(m, role)} async {fmt(fa, 2, ' FPS')} vs sync {fmt(fs, 2, ' FPS')}")
    dr, hg = sync["direct_regression"], sync["hourglass"]
    return [
        Claim(
            "OpenVINO is faster than PyTorch for both models (sync, batch 1)",
            f"{p_sync['direct_regression']}× (direct regression, Table 3), "
            f"{p_sync['hourglass']}× (Hourglass, Table 5)",
            ", ".join(f"{_name(models[r], r)} {fmt(sync[r], 2, '×')}" for r in roles),
            _all_or_none([None if s is None else s > 1 + margin for s in sync.values()]),
            f"OpenVINO f32 sync vs PyTorch f32 sync, batch 1, FPS ratio; {_margin_note(margin)}",
        ),
        Claim(
            "OpenVINO async (4 requests) beats sync",
            "; ".join(
                f"{p_fps[r][_ASYNC]['fps']:.2f} vs {p_fps[r][_SYNC]['fps']:.2f} FPS ({pub.ROLES[r]})"
                for r in roles
            )
            + " (Tables 3, 5)",
            "; ".join(parts),
            _all_or_none(verdicts),
            "OpenVINO f32, batch 1, 4 infer requests (else the fastest async row); "
            + _margin_note(margin),
        ),
        Claim(
            "OpenVINO's speed-up is smaller for the Hourglass than for direct regression",
            f"{p_sync['hourglass']}× vs {p_sync['direct_regression']}× (Tables 3, 5)",
            f"{fmt(hg, 2, '×')} vs {fmt(dr, 2, '×')}",
            None if dr is None or hg is None else hg < dr,
            "OpenVINO f32 sync vs PyTorch f32 sync, batch 1",
        ),
    ]


def _published_batch_text(role: str) -> str:
    """E.g. ``Direct Regression sync 74.87 FPS at batch 1 vs ≤ 71.85 at batch 2-256``."""
    rows = pub.TABLE4_6_BATCH[role]
    larger = [v["ov_sync_fps"] for b, v in rows.items() if b > 1 and v["ov_sync_fps"] is not None]
    batches = [b for b in rows if b > 1]
    return (
        f"{pub.ROLES[role]} sync {rows[1]['ov_sync_fps']:.2f} FPS at batch 1 vs ≤ {max(larger):.2f} "
        f"at batch {min(batches)}-{max(batches)}"
    )


def _claim_batch(inputs: ReportInputs, margin: float) -> Claim:
    verdicts: list[bool | None] = []
    parts = []
    for role in ("direct_regression", "hourglass"):
        m = inputs.role_model(role)
        if m is None:
            verdicts.append(None)
            continue
        for mode in ("sync", "async"):
            f1 = fps(m, "openvino", "f32", mode, 1)
            larger = [
                (int(b), fps(m, "openvino", "f32", mode, int(b)))
                for b in sorted(m.bench["batch"].unique())
                if b > 1
            ]
            larger = [(b, f) for b, f in larger if f is not None]
            if f1 is None or not larger:
                verdicts.append(None)
                parts.append(f"{m.name} {mode}: n/a")
                continue
            best_b, best_f = max(larger, key=lambda t: t[1])
            verdicts.append(best_f <= f1 * (1 + margin))
            parts.append(
                f"{m.name} {mode}: batch 1 {f1:.2f} FPS, best larger batch {best_f:.2f} FPS (batch {best_b})"
            )
    return Claim(
        "A larger batch does not raise OpenVINO throughput",
        "; ".join(_published_batch_text(r) for r in ("direct_regression", "hourglass"))
        + " (Tables 4, 6)",
        "; ".join(parts) or "n/a",
        _all_or_none(verdicts),
        f"OpenVINO f32 sync and async; holds if no batch > 1 exceeds batch 1 by more than {margin:.0%}",
    )


def _claims_published_speedups(inputs: ReportInputs) -> list[Claim]:
    out = []
    for role, table in (("direct_regression", "Table 3"), ("hourglass", "Table 5")):
        m = inputs.role_model(role)
        ps, pa = published_speedup(role, _SYNC), published_speedup(role, _ASYNC)
        bs, ls = _best_ov(m, "sync")
        ba, la = _best_ov(m, "async")
        out.append(
            Claim(
                f"Best OpenVINO ≥ {ps}× (sync) and ≥ {pa}× (async) faster than PyTorch for "
                f"{pub.ROLES[role]}",
                f"{ps}× sync, {pa}× async ({table}; OpenVINO 2020.3 vs PyTorch 1.5.1 on i7-8700)",
                f"{_name(m, role)}: sync {fmt(bs, 2, '×')} ({ls or 'n/a'}), "
                f"async {fmt(ba, 2, '×')} ({la or 'n/a'})",
                None if bs is None or ba is None else (bs >= ps and ba >= pa),
                "best OpenVINO precision (f32/bf16/int8) at batch 1 vs PyTorch f32 sync batch 1, "
                "FPS ratio",
            )
        )
    return out


def _prediction_shift(pred: pd.DataFrame, a: str, b: str) -> float | None:
    """Largest distance (mm) between two backends' predictions of the same landmark."""
    pa = pred[pred["backend"] == a].set_index(["case_id", "landmark"])
    pb = pred[pred["backend"] == b].set_index(["case_id", "landmark"])
    common = pa.index.intersection(pb.index)
    if common.empty:
        return None
    cols = ["pred_x", "pred_y", "pred_z"]
    diff = pa.loc[common, cols].to_numpy() - pb.loc[common, cols].to_numpy()
    return float(np.max(np.linalg.norm(diff, axis=1)))


def _claims_deployment(inputs: ReportInputs, table1: pd.DataFrame) -> list[Claim]:
    """Per model: OpenVINO FP32 parity and INT8 accuracy."""
    default_tol = float(inputs.options["parity_tolerance"])
    tol_mm = float(inputs.options["int8_tolerance_mm"])
    out = []
    for m in inputs.models.values():
        d = as_number(m.parity.get("openvino_fp32"))
        tol = parity_tolerance(m.parity, "openvino_fp32", default_tol)
        source = "the export stage's tolerance" if tol != default_tol else "--parity-tolerance"
        shift = _prediction_shift(m.predictions, _BASE, "openvino_fp32")
        out.append(
            Claim(
                f"OpenVINO FP32 reproduces PyTorch (max abs diff): {m.name}",
                "implied (the paper reports OpenVINO speed for the PyTorch models' accuracy)",
                f"max abs output diff {format_deployment_cell('parity_', d)}; "
                f"max landmark shift {fmt(shift, 4, ' mm')}",
                None if math.isnan(d) or tol is None else d <= tol,
                f"export/parity.json openvino_fp32 ≤ {tol:.2g} ({source}; held-out inputs)",
            )
        )
    for m in inputs.models.values():
        r32 = accuracy_value(table1, m.name, "openvino_fp32", "total")
        r8 = accuracy_value(table1, m.name, "openvino_int8", "total")
        change = None if r32 is None or r8 is None else r8 - r32
        out.append(
            Claim(
                f"INT8 within {tol_mm:g} mm RMSE of FP32: {m.name}",
                "not in the paper (its runs were FP32); project acceptance criterion",
                f"OpenVINO INT8 {fmt(r8, 3, ' mm')} vs FP32 {fmt(r32, 3, ' mm')} "
                f"(change {fmt(change, 3, ' mm')})",
                None if change is None else change <= tol_mm,
                "pooled RMSE on the test cases; an INT8 improvement also holds",
            )
        )
    return out


def _percent(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _claim_deconv(inputs: ReportInputs, perf: pd.DataFrame, margin: float) -> Claim:
    a, b = inputs.options["deconv_pair"]
    ma, mb = inputs.models.get(a), inputs.models.get(b)
    fa, fb = fps(ma, "openvino", "f32", "sync"), fps(mb, "openvino", "f32", "sync")
    ratio = None if fa is None or fb is None else fb / fa
    ia = node_share(perf, a, "interp") if ma else None
    ib = node_share(perf, b, "interp") if mb else None
    return Claim(
        f"Deconvolution replacement speeds up the Hourglass in OpenVINO ({b} vs {a})",
        "trilinear upscaling was the slowest operation; replaced by a deconvolution "
        "(Section 5.3, openvino#1191)",
        f"{b} {fmt(fb, 3, ' FPS')} vs {a} {fmt(fa, 3, ' FPS')} ({fmt(ratio, 2, '×')}); "
        f"Interpolate share of OpenVINO time {fmt(_percent(ia), 1, ' %')} vs "
        f"{fmt(_percent(ib), 1, ' %')}",
        None if ratio is None else ratio > 1 + margin,
        f"OpenVINO f32 sync batch 1; {_margin_note(margin)}",
    )


def _claim_bn(inputs: ReportInputs, margin: float) -> Claim:
    a, b = inputs.options["bn_pair"]
    gains: dict[str, float | None] = {}
    kept: dict[str, float] = {}
    for name in (a, b):
        m = inputs.models.get(name)
        f32, i8 = fps(m, "openvino", "f32", "sync"), fps(m, "openvino", "int8", "sync")
        gains[name] = None if f32 is None or i8 is None else i8 / f32
        kept[name] = as_number(m.quantization.get("fake_quantize_kept")) if m else math.nan
    ga, gb = gains[a], gains[b]
    return Claim(
        f"Folding normalisation ({b}) makes INT8 pay off",
        "not in the paper; hypothesis: BatchNorm folds into the convolutions, while "
        "InstanceNorm/GroupNorm (MVN) block conv+FakeQuantize fusion",
        f"INT8/FP32 OpenVINO speed-up {b} {fmt(gb, 2, '×')} vs {a} {fmt(ga, 2, '×')}; "
        f"FakeQuantize kept {format_value(kept[b], 0)} vs {format_value(kept[a], 0)}",
        None if ga is None or gb is None else (gb > 1 + margin and gb > ga),
        f"OpenVINO sync batch 1; holds if {b}'s INT8 gain exceeds 1 + {margin:.0%} and {a}'s",
    )


def build_claims(
    inputs: ReportInputs, table1: pd.DataFrame, table2: pd.DataFrame, perf: pd.DataFrame
) -> list[Claim]:
    """Check the paper's claims and this project's deployment hypotheses.

    Args:
        inputs: validated report inputs.
        table1: accuracy table 1 (RMSE, mm) from :func:`accuracy_tables`.
        table2: accuracy table 2 (SDR) from :func:`accuracy_tables`.
        perf: per-node OpenVINO profile from :func:`perf_counter_table`.

    Returns:
        The claims, in report order.
    """
    margin = float(inputs.options["noise_margin"])
    return [
        *_claims_accuracy(inputs, table1, table2),
        *_claims_frameworks(inputs, margin),
        _claim_batch(inputs, margin),
        *_claims_published_speedups(inputs),
        *_claims_deployment(inputs, table1),
        _claim_deconv(inputs, perf, margin),
        _claim_bn(inputs, margin),
    ]
