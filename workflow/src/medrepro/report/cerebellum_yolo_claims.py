"""Claims of the cerebellum YOLO paper (004) checked against this run's tables.

Each claim compares numbers computed from the artefacts (run summaries, Tables 1-2, transfer and
deployment tables) with the paper's statement; ``holds`` is ``None`` when the runs or artefacts it
needs are missing, with a note saying so. Thresholds come from the report options (CLI).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medrepro.report.brain_extraction_claims import fmt
from medrepro.report.brain_extraction_tables import value
from medrepro.report.cerebellum_yolo_inputs import REFERENCE, TINY_ARCH, YOLO_ARCH, ReportInputs
from medrepro.report.cerebellum_yolo_tables import published_cell, spearman
from medrepro.report.claims import Claim
from medrepro.report.published import cerebellum_yolo as pub

__all__ = [
    "yolo_runs",
    "tiny_runs",
    "claim_ap_above",
    "claim_ap_spread",
    "claim_best_s",
    "claim_more_training",
    "claim_tiny_lower",
    "claim_tiny_f1",
    "claim_momentum_instability",
    "claim_momentum_better",
    "claim_fp_trend",
    "claim_transfer",
    "deployment_claims",
    "build_claims",
]

_PUB_AP = [v["ap"] for v in pub.TABLE1.values()]
_PUB_TINY_AP = [v["ap"] for v in pub.TABLE2.values()]
_PUB_TINY_F1 = [v["f1"] for v in pub.TABLE2.values()]


def yolo_runs(summary: pd.DataFrame) -> pd.DataFrame:
    """Pre-trained YOLOv1 runs (the S grid), sorted by S."""
    sel = summary[(summary["arch"] == YOLO_ARCH) & summary["pretrained"].astype(bool)]
    return sel.sort_values(["S", "run"]).reset_index(drop=True)


def tiny_runs(summary: pd.DataFrame) -> pd.DataFrame:
    """Tiny YOLO runs, sorted by learning rate then momentum."""
    sel = summary[summary["arch"] == TINY_ARCH]
    return sel.sort_values(["lr", "momentum", "run"]).reset_index(drop=True)


def _per_s(df: pd.DataFrame, column: str, digits: int = 4) -> str:
    return ", ".join(f"S={int(r['S'])} {fmt(float(r[column]), digits)}" for _, r in df.iterrows())


def _per_run(df: pd.DataFrame, column: str, digits: int = 2) -> str:
    return ", ".join(
        f"m{r['momentum']:g}/lr{r['lr']:g} {fmt(float(r[column]), digits)}"
        for _, r in df.iterrows()
    )


def claim_ap_above(summary: pd.DataFrame, bound: float = 0.8) -> Claim:
    """Every S reaches a best AP above ``bound``."""
    y = yolo_runs(summary)
    return Claim(
        f"YOLOv1 best AP above {bound:g} for every S",
        f"{min(_PUB_AP):.4f}-{max(_PUB_AP):.4f} for S = 7, 9, 11, 13 (Table 1)",
        _per_s(y, "best_ap") or "no pre-trained YOLOv1 run",
        None if y.empty else bool((y["best_ap"] > bound).all()),
        f"AP = mean IoU of the top box over the annotated test images; {len(y)} S value(s) run"
        + ("" if not y.empty else "; n/a: no pre-trained YOLOv1 run"),
    )


def claim_ap_spread(summary: pd.DataFrame, bound: float = 0.02) -> Claim:
    """The best AP differs little between grid sizes (max - min < ``bound``)."""
    y = yolo_runs(summary)
    spread = float(y["best_ap"].max() - y["best_ap"].min()) if len(y) > 1 else None
    return Claim(
        f"Best AP differs little across S (spread < {bound:g})",
        f"spread {max(_PUB_AP) - min(_PUB_AP):.4f}; 'the difference is not very significative' "
        "(Table 1, Section 3.1)",
        f"spread {fmt(spread, 4)} ({_per_s(y, 'best_ap')})" if len(y) else "no run",
        None if spread is None else spread < bound,
        "max - min of the best-checkpoint AP over the S values run"
        + ("" if spread is not None else "; n/a: fewer than two S values run"),
    )


def claim_best_s(summary: pd.DataFrame) -> Claim:
    """S = 11 (121 cells) gives the best AP."""
    y = yolo_runs(summary)
    ran = set(int(s) for s in y["S"])
    best = int(y.loc[y["best_ap"].idxmax(), "S"]) if len(y) else None
    return Claim(
        "S = 11 (121 cells) gives the best AP",
        f"S = 11: {pub.TABLE1[11]['ap']:.3f}, the best of Table 1 (and the abstract)",
        f"best S = {best if best is not None else 'n/a'} ({_per_s(y, 'best_ap')})",
        None if 11 not in ran or len(ran) < 2 else best == 11,
        "argmax of the best-checkpoint AP over S"
        + ("" if 11 in ran and len(ran) > 1 else "; n/a: S = 11 or a competitor was not run"),
    )


def claim_more_training(summary: pd.DataFrame, near_peak: float) -> Claim:
    """Larger S needs more training (batches) to reach (nearly) its peak AP."""
    y = yolo_runs(summary)
    rho = spearman(y["S"], y["iterations_to_near_peak"]) if len(y) > 1 else math.nan
    ok = None if len(y) < 2 else (not math.isnan(rho) and rho > 0)
    pub_it = ", ".join(f"S={s} {int(v['iteration'])}" for s, v in pub.TABLE1.items())
    return Claim(
        "Larger S needs more training to peak",
        f"{pub.STATEMENTS['more_training']}; best checkpoints at {pub_it} batches (Table 1)",
        f"batches to {100 * near_peak:g} % of the best AP: {_per_s(y, 'iterations_to_near_peak', 0)}; "
        f"best at {_per_s(y, 'best_iteration', 0)}; Spearman rho(S, batches) {fmt(rho, 2)}",
        ok,
        "holds if Spearman rho between S and the batches needed to reach "
        f"{100 * near_peak:g} % of the run's best AP is > 0 (constant: no)"
        + ("" if len(y) > 1 else "; n/a: fewer than two S values run"),
    )


def claim_tiny_lower(summary: pd.DataFrame, margin: float) -> Claim:
    """Tiny YOLO's AP is far below YOLOv1's."""
    y, t = yolo_runs(summary), tiny_runs(summary)
    ok = None
    gap = None
    if len(y) and len(t):
        gap = float(y["best_ap"].median() - t["best_ap"].median())
        ok = bool(t["best_ap"].max() < y["best_ap"].min() and gap >= margin)
    return Claim(
        "Tiny YOLO's AP is far lower than YOLOv1's",
        f"tiny {min(_PUB_TINY_AP):.2f}-{max(_PUB_TINY_AP):.2f} vs YOLOv1 "
        f"{min(_PUB_AP):.2f}-{max(_PUB_AP):.2f} (Tables 1-2); {pub.STATEMENTS['depth']}",
        (
            f"tiny {fmt(t['best_ap'].min(), 3)}-{fmt(t['best_ap'].max(), 3)} vs YOLOv1 "
            f"{fmt(y['best_ap'].min(), 3)}-{fmt(y['best_ap'].max(), 3)} (median gap {fmt(gap, 3)})"
            if len(y) and len(t)
            else f"{len(t)} tiny, {len(y)} YOLOv1 run(s)"
        ),
        ok,
        f"holds if every tiny run's best AP is below every YOLOv1 S run's and the medians differ "
        f"by >= {margin:g}" + ("" if ok is not None else "; n/a: needs both kinds of run"),
    )


def claim_tiny_f1(summary: pd.DataFrame, high: float) -> Claim:
    """Tiny YOLO's F1 is high although its AP is low."""
    t = tiny_runs(summary)
    ok = None
    if len(t):
        ok = bool(t["best_f1"].min() >= high and t["best_f1"].min() > t["best_ap"].max())
    return Claim(
        "Tiny YOLO's F1 is high despite its low AP",
        f"F1 {min(_PUB_TINY_F1):.2f}-{max(_PUB_TINY_F1):.2f} with AP "
        f"{min(_PUB_TINY_AP):.2f}-{max(_PUB_TINY_AP):.2f} (Table 2)",
        (
            f"best F1 {fmt(t['best_f1'].min(), 3)}-{fmt(t['best_f1'].max(), 3)}, best AP "
            f"{fmt(t['best_ap'].min(), 3)}-{fmt(t['best_ap'].max(), 3)}"
            if len(t)
            else "no tiny run"
        ),
        ok,
        f"holds if every tiny run's best F1 (over checkpoints) is >= {high:g} and above every "
        "tiny best AP; F1 at the confidence threshold with IoU >= 0.5 for a true positive"
        + ("" if len(t) else "; n/a: no tiny run"),
    )


def _by_lr(t: pd.DataFrame) -> list[tuple[float, pd.DataFrame]]:
    return [(float(lr), g) for lr, g in t.groupby("lr") if g["momentum"].nunique() > 1]


def claim_momentum_instability(summary: pd.DataFrame) -> Claim:
    """Higher momentum gives a less stable checkpoint curve (std of AP grows with momentum)."""
    t = tiny_runs(summary)
    groups = _by_lr(t)
    rho_ap = [spearman(g["momentum"], g["ap_std"]) for _, g in groups]
    rho_fp = [spearman(g["momentum"], g["fp_std"]) for _, g in groups]
    valid = [r for r in rho_ap if not math.isnan(r)]
    mean_rho = float(np.mean(valid)) if valid else None
    parts = [
        f"lr {lr:g}: rho(m, std AP) {fmt(a, 2)}, rho(m, std FP) {fmt(f, 2)}"
        for (lr, _), a, f in zip(groups, rho_ap, rho_fp, strict=True)
    ]
    return Claim(
        "Higher momentum makes training less stable",
        pub.STATEMENTS["momentum_instability"],
        ("; ".join(parts) + f"; std AP per run: {_per_run(t, 'ap_std', 3)}")
        if groups
        else "fewer than two momenta at any learning rate",
        None if mean_rho is None else mean_rho > 0,
        "stability = std of AP over the checkpoints of a run; holds if the Spearman rho between "
        "momentum and that std, averaged over the learning rates with >= 2 momenta, is > 0"
        + ("" if mean_rho is not None else "; n/a: no learning rate with >= 2 momenta"),
    )


def claim_momentum_better(summary: pd.DataFrame) -> Claim:
    """The best tiny AP comes with the largest momentum."""
    t = tiny_runs(summary)
    if t["momentum"].nunique() < 2:
        return Claim(
            "The best tiny YOLO AP comes with the highest momentum",
            pub.STATEMENTS["momentum_better"] + "; best 0.66 at m0.9/lr5e-3 (Table 2)",
            "fewer than two momenta run",
            None,
            "n/a: needs tiny runs with at least two momenta",
        )
    best = t.loc[t["best_ap"].idxmax()]
    return Claim(
        "The best tiny YOLO AP comes with the highest momentum",
        pub.STATEMENTS["momentum_better"] + "; best 0.66 at m0.9/lr5e-3 (Table 2)",
        f"best {fmt(float(best['best_ap']), 3)} at m{best['momentum']:g}/lr{best['lr']:g} "
        f"({_per_run(t, 'best_ap', 3)})",
        bool(math.isclose(float(best["momentum"]), float(t["momentum"].max()))),
        "holds if the tiny run with the highest best AP has the largest momentum run",
    )


def claim_fp_trend(summary: pd.DataFrame, fp_rho: float) -> Claim:
    """False positives decrease with iterations for only part of the tiny runs."""
    t = tiny_runs(summary)
    n, k = len(t), int(t["fp_decreasing"].sum()) if len(t) else 0
    agree = []
    for _, r in t.iterrows():
        key = published_cell(float(r["momentum"]), float(r["lr"]))
        if key is not None:
            agree.append(bool(r["fp_decreasing"]) == pub.FP_DECREASING[key])
    dec = ", ".join(
        f"m{r['momentum']:g}/lr{r['lr']:g}"
        for _, r in t[t["fp_decreasing"].astype(bool)].iterrows()
    )
    return Claim(
        "FP decrease with iterations for only part of the tiny runs",
        pub.STATEMENTS["fp_trend"],
        f"{k} of {n} runs decreasing ({dec or 'none'}); per-run pattern matches the paper for "
        f"{sum(agree)} of {len(agree)} grid cells",
        None if n < 2 else 0 < k < n,
        f"decreasing: Spearman rho(iteration, FP) <= -{fp_rho:g} and fewer FP at the last "
        "checkpoint than at the first; holds if some but not all runs decrease"
        + ("" if n >= 2 else "; n/a: fewer than two tiny runs"),
    )


def claim_transfer(inputs: ReportInputs, transfer: pd.DataFrame) -> Claim:
    """Transfer learning (stand-in pre-trained encoder) beats training from scratch."""
    s7 = transfer[transfer["S"] == 7] if not transfer.empty else transfer
    pre = s7[s7["pretrained"].astype(bool)] if not s7.empty else s7
    scr = s7[~s7["pretrained"].astype(bool)] if not s7.empty else s7
    hist = inputs.pretrain.get(YOLO_ARCH)
    acc = float(hist["accuracy"].iloc[-1]) if hist is not None and not hist.empty else None
    if pre.empty or scr.empty:
        return Claim(
            "Transfer learning beats training from scratch (S = 7)",
            pub.STATEMENTS["transfer"],
            "no pre-trained/scratch pair at S = 7",
            None,
            "n/a: needs yolo_s7 and yolo_s7_scratch",
        )
    a, b = float(pre["best_ap"].iloc[0]), float(scr["best_ap"].iloc[0])
    return Claim(
        "Transfer learning beats training from scratch (S = 7)",
        pub.STATEMENTS["transfer"],
        f"best AP pre-trained {fmt(a, 4)} vs scratch {fmt(b, 4)} (mean over checkpoints "
        f"{fmt(float(pre['mean_ap'].iloc[0]), 4)} vs {fmt(float(scr['mean_ap'].iloc[0]), 4)}); "
        f"stand-in pre-training final accuracy {fmt(acc, 3)}",
        a > b,
        "our pre-training is a synthetic stand-in task (procedural images, yolo-pretrain), not "
        "ImageNet, and the paper reports no from-scratch run; holds if the pre-trained run's "
        "best AP is higher",
    )


def deployment_claims(inputs: ReportInputs, dep: pd.DataFrame) -> list[Claim]:
    """Beyond the paper: OpenVINO FP32 keeps PyTorch's AP, INT8 AP drop, INT8 and FP32 speed."""
    o = inputs.options
    tol, max_drop, margin = o["identical_ap"], o["max_drop"], o["noise_margin"]
    pt = value(dep, REFERENCE, "ap")
    ov = value(dep, "openvino_fp32", "ap")
    i8 = value(dep, "openvino_int8", "ap")
    q = inputs.quantization
    out = [
        Claim(
            "OpenVINO FP32 keeps PyTorch's AP",
            "- (beyond the paper: Darknet on GPU only)",
            f"AP {fmt(pt, 4)} vs {fmt(ov, 4)}; parity max|diff| "
            f"{float(inputs.parity['openvino_fp32']):.1e}",
            None if ov is None else abs(ov - pt) <= tol,
            f"holds if |AP difference| <= {tol:g} on the test images"
            + ("" if ov is not None else "; n/a: openvino_fp32 not evaluated"),
        ),
        Claim(
            "INT8 AP drop within the configured max_drop",
            "- (beyond the paper)",
            f"test AP {fmt(pt, 4)} -> {fmt(i8, 4)} (drop {fmt(None if i8 is None else pt - i8, 4)}); "
            f"validation AP {fmt(float(q['metric_fp32']), 4)} -> {fmt(float(q['metric_int8']), 4)}"
            f" (drop {fmt(float(q['drop']), 4)})",
            None if i8 is None else pt - i8 <= max_drop + 1e-12,
            f"holds if the test-set AP drop vs PyTorch FP32 is <= max_drop {max_drop:g} (the "
            "quantizer enforces it on the validation images only)"
            + ("" if i8 is not None else "; n/a: openvino_int8 not evaluated"),
        ),
    ]
    for config, label in (("openvino_int8", "INT8"), ("openvino_fp32", "OpenVINO FP32")):
        sp = value(dep, config, "speedup_vs_pytorch")
        lat = value(dep, config, "latency_median_ms")
        ref = value(dep, REFERENCE, "latency_median_ms")
        out.append(
            Claim(
                f"{label} is faster than PyTorch FP32",
                "- (beyond the paper)",
                f"median latency {fmt(ref, 2, ' ms')} (PyTorch) vs {fmt(lat, 2, ' ms')} "
                f"(speed-up {fmt(sp, 2, 'x')})",
                None if sp is None else sp > 1 + margin,
                f"batch 1, sync, same threads; holds if the speed-up exceeds {1 + margin:g}"
                + ("" if sp is not None else "; n/a: not benchmarked"),
            )
        )
    return out


def build_claims(
    inputs: ReportInputs,
    summary: pd.DataFrame,
    transfer: pd.DataFrame,
    deployment: pd.DataFrame,
) -> list[Claim]:
    """Check the paper's claims and the deployment claims, in report order.

    Args:
        inputs: validated report inputs (options hold the thresholds).
        summary: :func:`~medrepro.report.cerebellum_yolo_tables.run_summaries`.
        transfer: :func:`~medrepro.report.cerebellum_yolo_tables.transfer_table`.
        deployment: :func:`~medrepro.report.cerebellum_yolo_tables.deployment_table`.
    """
    o = inputs.options
    claims: Sequence[Claim] = [
        claim_ap_above(summary),
        claim_ap_spread(summary),
        claim_best_s(summary),
        claim_more_training(summary, o["near_peak"]),
        claim_tiny_lower(summary, o["far_margin"]),
        claim_tiny_f1(summary, o["high_f1"]),
        claim_momentum_instability(summary),
        claim_momentum_better(summary),
        claim_fp_trend(summary, o["fp_trend_rho"]),
        claim_transfer(inputs, transfer),
        *deployment_claims(inputs, deployment),
    ]
    return list(claims)
