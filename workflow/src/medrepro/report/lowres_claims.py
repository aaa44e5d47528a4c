"""Claims of the LowRes paper (and the project's targets), checked per dataset.

Speed claims compare mean seconds per study of PyTorch FP32 at the pipeline's ``threads`` (the
same thread count for both models); quality claims compare average recall over 0-5 FP per scan.
A claim is ``n/a`` when a model, runtime or thread count it needs was not run, or when it only
makes sense at the paper's scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from medrepro.report.claims import Claim
from medrepro.report.lowres_inputs import REFERENCE_MODEL, REFERENCE_RUNTIME, ReportInputs
from medrepro.report.lowres_tables import (
    QUALITY_KEY,
    RUNTIME_NAMES,
    TIMING_KEY,
    index_rows,
    model_name,
    quality_of,
    time_of,
)
from medrepro.report.published import lowres as pub

__all__ = ["fmt", "all_or_none", "build_claims"]

#: MobileNetV2's published speed-up over 3D U-Net (~10x) is accepted within this factor
MOBILENET_FACTOR = 2.0


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A number for the claims table (``n/a`` when missing)."""
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def all_or_none(verdicts: Sequence[bool | None]) -> bool | None:
    """True if all are True, False if any is False, None if some are undefined and none False."""
    if any(v is False for v in verdicts):
        return False
    if not verdicts or any(v is None for v in verdicts):
        return None
    return True


def _pub(dataset: str, model: str, key: str) -> float | None:
    v = pub.TABLES.get(dataset, {}).get(model, {}).get(key)
    return None if v is None else float(v)


def _tag(dataset: str) -> str:
    return f"[{dataset}]"


def _ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` or None."""
    return None if a is None or b is None or b <= 0 else a / b


class _Ctx:
    """Lookups of one dataset's numbers (PyTorch at the pipeline's threads by default)."""

    def __init__(self, inputs: ReportInputs, dataset: str, timing: pd.DataFrame,
                 quality: pd.DataFrame) -> None:  # fmt: skip
        self.inputs, self.dataset = inputs, dataset
        self.timing = index_rows(timing, TIMING_KEY)
        self.quality = index_rows(quality, QUALITY_KEY)
        self.threads = inputs.threads

    def time(self, model: str, runtime: str = REFERENCE_RUNTIME, threads: int | None = None):
        if model not in self.inputs.models:
            return None
        t = self.threads if threads is None else threads
        return time_of(self.timing, self.dataset, model, runtime, t)

    def recall(self, model: str, runtime: str = REFERENCE_RUNTIME) -> float | None:
        if model not in self.inputs.models:
            return None
        return quality_of(self.quality, self.dataset, model, runtime, "avg_recall")


def _claim_lowres_speed(c: _Ctx) -> Claim:
    target = float(c.inputs.options["target_speedup"])
    d = c.dataset
    sp = _ratio(c.time(REFERENCE_MODEL), c.time("lowres"))
    p8 = _ratio(_pub(d, REFERENCE_MODEL, "time_t8_mean"), _pub(d, "lowres", "time_t8_mean"))
    return Claim(
        f"{_tag(d)} LowRes at least {target:g}x faster than 3D U-Net at the same threads",
        f"{fmt(p8, 1, 'x')} at 8 threads (Table {pub.TABLE_NUMBERS.get(d, '?')}); "
        f"{pub.STATEMENTS['speed']}",
        f"{fmt(sp, 1, 'x')} at {c.threads} threads (PyTorch, mean s per study)",
        None if sp is None else sp >= target,
        f"target {target:g}x is the project's; U-Net time / LowRes time, this machine",
    )


def _claim_recall_close(c: _Ctx) -> Claim:
    margin = float(c.inputs.options["recall_margin"])
    d = c.dataset
    lo, un = c.recall("lowres"), c.recall(REFERENCE_MODEL)
    return Claim(
        f"{_tag(d)} LowRes avg recall within {margin:g} of 3D U-Net's",
        f"LowRes {fmt(_pub(d, 'lowres', 'avg_recall'))} vs U-Net "
        f"{fmt(_pub(d, REFERENCE_MODEL, 'avg_recall'))}",
        f"LowRes {fmt(lo, 3)} vs U-Net {fmt(un, 3)}",
        None if lo is None or un is None else lo >= un - margin,
        f"holds if LowRes >= U-Net - {margin:g} (avg recall 0-5 FP/scan, PyTorch)",
    )


def _claim_recall_best(c: _Ctx) -> Claim:
    d = c.dataset
    lo, un, dm = c.recall("lowres"), c.recall(REFERENCE_MODEL), c.recall("deepmedic")
    holds = None if None in (lo, un, dm) else bool(lo >= un and lo >= dm)  # type: ignore[operator]
    p_lo, p_un, p_dm = (_pub(d, m, "avg_recall") for m in ("lowres", REFERENCE_MODEL, "deepmedic"))
    p_holds = None if None in (p_lo, p_un, p_dm) else p_lo >= max(p_un, p_dm)  # type: ignore
    return Claim(
        f"{_tag(d)} LowRes avg recall >= DeepMedic's and 3D U-Net's",
        f"LowRes {fmt(p_lo)} vs DeepMedic {fmt(p_dm)} / U-Net {fmt(p_un)}"
        + ("" if p_holds is not False else " (does not hold in the paper either)"),
        f"LowRes {fmt(lo, 3)} vs DeepMedic {fmt(dm, 3)} / U-Net {fmt(un, 3)}",
        holds,
        "avg recall 0-5 FP/scan, PyTorch; ties count as holding",
    )


def _claim_enet(c: _Ctx) -> Claim:
    d = c.dataset
    times = {m: c.time(m) for m in c.inputs.models}
    measured = {m: t for m, t in times.items() if t is not None}
    en, en_r = c.time("enet"), c.recall("enet")
    others = [m for m in (REFERENCE_MODEL, "lowres") if m in c.inputs.models]
    recalls = {m: c.recall(m) for m in others}
    holds: bool | None = None
    if en is not None and en_r is not None and others and None not in recalls.values():
        fastest = min(measured, key=measured.__getitem__) == "enet"
        holds = fastest and all(en_r < r for r in recalls.values())  # type: ignore[operator]
    fastest_model = min(measured, key=measured.__getitem__) if measured else None
    return Claim(
        f"{_tag(d)} 3D E-Net is the fastest model but has lower recall than U-Net and LowRes",
        f"E-Net {fmt(_pub(d, 'enet', 'time_t8_mean'), 1, ' s')} at 8 threads, recall "
        f"{fmt(_pub(d, 'enet', 'avg_recall'))} (lowest)",
        f"E-Net {fmt(en, 2, ' s')}, recall {fmt(en_r, 3)}; fastest: "
        f"{model_name(fastest_model) if fastest_model else 'n/a'}; recall "
        + ", ".join(f"{model_name(m)} {fmt(r, 3)}" for m, r in recalls.items()),
        holds,
        f"PyTorch at {c.threads} threads; recall strictly below both",
    )


def _claim_mobilenet(c: _Ctx) -> Claim:
    d = c.dataset
    sp = _ratio(c.time(REFERENCE_MODEL), c.time("mobilenetv2"))
    mr, ur = c.recall("mobilenetv2"), c.recall(REFERENCE_MODEL)
    p8 = _ratio(_pub(d, REFERENCE_MODEL, "time_t8_mean"), _pub(d, "mobilenetv2", "time_t8_mean"))
    lo, hi = 10.0 / MOBILENET_FACTOR, 10.0 * MOBILENET_FACTOR
    holds = None
    if sp is not None and mr is not None and ur is not None:
        holds = lo <= sp <= hi and mr < ur
    return Claim(
        f"{_tag(d)} 3D MobileNetV2 ~10x faster than 3D U-Net with lower recall",
        f"{fmt(p8, 1, 'x')} at 8 threads; recall {fmt(_pub(d, 'mobilenetv2', 'avg_recall'))} vs "
        f"{fmt(_pub(d, REFERENCE_MODEL, 'avg_recall'))}",
        f"{fmt(sp, 1, 'x')} at {c.threads} threads; recall {fmt(mr, 3)} vs {fmt(ur, 3)}",
        holds,
        f"~10x accepted in [{lo:g}x, {hi:g}x]; recall strictly below U-Net's",
    )


def _claim_lowres_vs_mobilenet(c: _Ctx) -> Claim:
    d = c.dataset
    lo, mb = c.time("lowres"), c.time("mobilenetv2")
    return Claim(
        f"{_tag(d)} LowRes faster than 3D MobileNetV2 (speed close to the mobile networks)",
        f"LowRes {fmt(_pub(d, 'lowres', 'time_t8_mean'), 1, ' s')} vs MobileNetV2 "
        f"{fmt(_pub(d, 'mobilenetv2', 'time_t8_mean'), 1, ' s')} at 8 threads; "
        + pub.STATEMENTS["enet"],
        f"LowRes {fmt(lo, 2, ' s')} vs MobileNetV2 {fmt(mb, 2, ' s')} at {c.threads} threads",
        None if lo is None or mb is None else lo < mb,
        "PyTorch, mean seconds per study",
    )


def _claim_15s(c: _Ctx) -> Claim:
    d = c.dataset
    limit = float(c.inputs.options["max_seconds"])
    t_claim = int(c.inputs.options["max_seconds_threads"])
    t = c.time("lowres", threads=t_claim)
    scale = c.inputs.scale
    if scale != "paper":
        holds, note = (
            None,
            (
                f"n/a at scale '{scale or 'unknown'}': only the paper scale has the paper's volumes "
                "and networks (times shown for information)"
            ),
        )
    elif t is None:
        holds, note = None, f"n/a: LowRes was not timed at {t_claim} threads"
    else:
        holds, note = t <= limit, f"PyTorch, mean s per study at {t_claim} threads, this machine"
    return Claim(
        f"{_tag(d)} LowRes segments a study within {limit:g} s at {t_claim} threads",
        f"{fmt(_pub(d, 'lowres', f'time_t{t_claim}_mean'), 1, ' s')}; {pub.STATEMENTS['within_15s']}",
        f"{fmt(t, 2, ' s')}" if t is not None else f"not timed at {t_claim} threads",
        holds,
        note,
    )


def _claim_scaling(c: _Ctx) -> Claim:
    d = c.dataset
    margin = float(c.inputs.options["speed_margin"])
    threads = c.inputs.threads_list
    parts, verdicts = [], []
    if len(threads) >= 2:
        lo_t, hi_t = threads[0], threads[-1]
        for model in c.inputs.models:
            a, b = c.time(model, threads=lo_t), c.time(model, threads=hi_t)
            gain = _ratio(a, b)
            verdicts.append(None if gain is None else gain > 1 + margin)
            parts.append(f"{model_name(model)} {fmt(gain, 2, 'x')}")
    p = [
        f"{model_name(m)} {fmt(_ratio(_pub(d, m, 'time_t4_mean'), _pub(d, m, 'time_t16_mean')), 2, 'x')}"
        for m in c.inputs.models
        if _pub(d, m, "time_t4_mean") is not None
    ]
    return Claim(
        f"{_tag(d)} Time per study falls with more threads, for every model",
        "4 -> 16 threads: " + ", ".join(p),
        (f"{threads[0]} -> {threads[-1]} threads: " + ", ".join(parts))
        if parts
        else f"thread counts timed: {threads}",
        all_or_none(verdicts) if parts else None,
        f"PyTorch; time(fewest)/time(most threads) must exceed 1 + {margin:.0%}"
        + ("" if parts else "; needs at least two thread counts"),
    )


def _claim_openvino_fp32(c: _Ctx) -> Claim:
    d = c.dataset
    runtime = "openvino_fp32"
    if runtime not in c.inputs.runtimes:
        return Claim(f"{_tag(d)} OpenVINO FP32 faster than PyTorch for every model",
                     pub.STATEMENTS["openvino"], "not run", None, "openvino_fp32 not reported")  # fmt: skip
    parts, verdicts = [], []
    for model in c.inputs.models:
        sp = _ratio(c.time(model), c.time(model, runtime))
        verdicts.append(None if sp is None else sp > 1.0)
        parts.append(f"{model_name(model)} {fmt(sp, 2, 'x')}")
    return Claim(
        f"{_tag(d)} OpenVINO FP32 faster than PyTorch for every model",
        pub.STATEMENTS["openvino"],
        ", ".join(parts),
        all_or_none(verdicts),
        f"PyTorch time / OpenVINO FP32 time at {c.threads} threads; every ratio must exceed 1",
    )


def _claim_int8_recall(c: _Ctx) -> Claim:
    d = c.dataset
    margin = float(c.inputs.options["int8_recall_margin"])
    if "openvino_int8" not in c.inputs.runtimes:
        return Claim(f"{_tag(d)} INT8 keeps avg recall within {margin:g}",
                     pub.STATEMENTS["openvino"], "not run", None, "openvino_int8 not reported")  # fmt: skip
    ref = "openvino_fp32" if "openvino_fp32" in c.inputs.runtimes else REFERENCE_RUNTIME
    parts, verdicts = [], []
    for model in c.inputs.models:
        a, b = c.recall(model, ref), c.recall(model, "openvino_int8")
        drop = None if a is None or b is None else a - b
        verdicts.append(None if drop is None else drop <= margin)
        parts.append(f"{model_name(model)} {fmt(drop, 3)}")
    return Claim(
        f"{_tag(d)} INT8 keeps avg recall within {margin:g} of FP32 for every model",
        pub.STATEMENTS["openvino"],
        f"drop vs {RUNTIME_NAMES.get(ref, ref)}: " + ", ".join(parts),
        all_or_none(verdicts),
        f"avg recall({RUNTIME_NAMES.get(ref, ref)}) - avg recall(INT8) <= {margin:g}",
    )


def _claim_ram(c: _Ctx, timing: pd.DataFrame) -> Claim:
    d = c.dataset
    sel = timing[(timing["dataset"] == d) & (timing["threads"] == c.threads)]
    flags = [v for v in sel["within_ram_limit"] if isinstance(v, bool)]
    peak = pd.to_numeric(sel["peak_rss_mb"], errors="coerce")
    limit = pd.to_numeric(sel["ram_limit_mb"], errors="coerce")
    measured = (
        f"peak RSS up to {peak.max():.0f} MB (limit {limit.max():.0f} MB)"
        if peak.notna().any() and limit.notna().any()
        else "peak RSS not recorded"
    )
    return Claim(
        f"{_tag(d)} Every model and runtime runs within the RAM limit",
        pub.STATEMENTS["ram"],
        measured,
        all_or_none([bool(v) for v in flags]) if len(flags) == len(sel) and flags else None,
        f"within_ram_limit of each inference summary at {c.threads} threads",
    )


def build_claims(inputs: ReportInputs, timing: pd.DataFrame, quality: pd.DataFrame) -> list[Claim]:
    """Every claim for every dataset, in report order.

    Args:
        inputs: validated report inputs.
        timing: :func:`~medrepro.report.lowres_tables.timing_table`.
        quality: :func:`~medrepro.report.lowres_tables.quality_table`.
    """
    out: list[Claim] = []
    for dataset in inputs.datasets:
        c = _Ctx(inputs, dataset, timing, quality)
        out += [
            _claim_lowres_speed(c),
            _claim_recall_close(c),
            _claim_recall_best(c),
            _claim_enet(c),
            _claim_mobilenet(c),
            _claim_lowres_vs_mobilenet(c),
            _claim_15s(c),
            _claim_scaling(c),
            _claim_openvino_fp32(c),
            _claim_int8_recall(c),
            _claim_ram(c, timing),
        ]
    return out
