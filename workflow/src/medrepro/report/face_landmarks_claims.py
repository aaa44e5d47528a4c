"""Claims of the cross-task representation learning paper, checked against our run.

The paper's Table 1 numbers were lost in our copy, so each claim quotes its qualitative
statement (:data:`medrepro.report.published.face_landmarks.STATEMENTS`). Quality claims compare
the PyTorch mean error (ME, pixels) over the test images; differences between two methods come
with a paired bootstrap over the test images (95 % percentile interval), so a failing claim can
be told apart from a difference smaller than the run's noise. A claim is ``n/a`` when a method
or budget it needs was not run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medrepro.report.claims import Claim
from medrepro.report.face_landmarks_inputs import (
    CTD_METHODS,
    FINETUNE_METHODS,
    REFERENCE_RUNTIME,
    ReportInputs,
    benchmark_row,
)
from medrepro.report.face_landmarks_tables import method_name, metric, paired_bootstrap
from medrepro.report.published import face_landmarks as pub

__all__ = ["fmt", "Difference", "difference", "aligned_errors", "build_claims"]


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A number for the claims table (``n/a`` when missing)."""
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}{unit}"


class Difference:
    """A paired mean difference ``A - B`` (pixels) with its bootstrap interval.

    Attributes:
        mean, lo, hi: the difference and its 95 % interval.
        n: test images paired.
    """

    def __init__(self, mean: float, lo: float, hi: float, n: int) -> None:
        self.mean, self.lo, self.hi, self.n = mean, lo, hi, n

    @property
    def covers_zero(self) -> bool:
        """True if the interval includes 0 (the sign is not resolved by this test set)."""
        return bool(self.lo <= 0 <= self.hi)

    def text(self, label: str) -> str:
        """``label = -0.42 px [95 % CI -0.61, -0.20]``."""
        return f"{label} = {self.mean:+.2f} px [95 % CI {self.lo:+.2f}, {self.hi:+.2f}]"


def aligned_errors(inputs: ReportInputs, cells: Sequence[tuple[str, int]]) -> list[np.ndarray]:
    """Per-image errors (pixels) of each (method, budget) on the test images they all share."""
    df = inputs.per_image
    series = [
        df[(df["method"] == m) & (df["budget"] == b)].set_index("case_id")["error_px"]
        for m, b in cells
    ]
    common = series[0].index
    for s in series[1:]:
        common = common.intersection(s.index)
    common = common.sort_values()
    return [s.loc[common].to_numpy(float) for s in series]


def difference(inputs: ReportInputs, a: str, b: str, budget: int) -> Difference:
    """``ME(a) - ME(b)`` at ``budget`` over the shared test images, with its bootstrap interval."""
    ea, eb = aligned_errors(inputs, [(a, budget), (b, budget)])
    mean, lo, hi = paired_bootstrap(
        ea, eb, inputs.options["n_bootstrap"], inputs.options["bootstrap_seed"]
    )
    return Difference(mean, lo, hi, len(ea))


def _have(inputs: ReportInputs, methods: Sequence[str]) -> list[str]:
    return [m for m in methods if m in inputs.methods]


def _me_list(inputs: ReportInputs, methods: Sequence[str], budget: int) -> str:
    return ", ".join(
        f"{method_name(m)} {fmt(metric(inputs.summary, m, budget, 'me_px'))}" for m in methods
    )


def _noise_note(failing: list[tuple[str, Difference]]) -> str:
    if not failing:
        return ""
    noisy = [lab for lab, d in failing if d.covers_zero]
    if len(noisy) == len(failing):
        return (
            " Every failing difference has a bootstrap interval that includes 0: it is within "
            "the noise of this test set."
        )
    if noisy:
        return f" Within the bootstrap noise (interval includes 0): {', '.join(noisy)}."
    return " The failing differences' intervals exclude 0: a real reversal on this run."


def _claim_ctd_vs_finetune(inputs: ReportInputs, budget: int, tag: str) -> Claim:
    ctd, base = _have(inputs, CTD_METHODS), _have(inputs, FINETUNE_METHODS)
    title = f"[{tag}, {budget} %] every CTD variant has a lower ME than FE, FTP and FT"
    paper = pub.STATEMENTS["ctd_vs_ft" if tag == "full budget" else "few_labels"]
    if not ctd or not base:
        return Claim(title, paper, "n/a", None, "needs a CTD variant and a fine-tuning baseline")
    if tag != "full budget" and budget >= inputs.full_budget:
        return Claim(title, paper, "n/a", None, "no budget below the full one was run")
    pairs = [(c, f, difference(inputs, c, f, budget)) for c in ctd for f in base]
    worst = max(pairs, key=lambda p: p[2].mean)
    failing = [(f"{method_name(c)} - {method_name(f)}", d) for c, f, d in pairs if d.mean >= 0]
    measured = (
        f"ME px: {_me_list(inputs, ctd, budget)} vs {_me_list(inputs, base, budget)}; closest "
        + worst[2].text(f"{method_name(worst[0])} - {method_name(worst[1])}")
    )
    note = (
        f"holds if ME(CTD) < ME(baseline) for all {len(pairs)} pairs (PyTorch, "
        f"{worst[2].n} test images, paired bootstrap {inputs.options['n_bootstrap']}x)."
    )
    if failing:
        note += " Failing: " + "; ".join(d.text(lab) for lab, d in failing) + "."
    return Claim(title, paper, measured, not failing, note + _noise_note(failing))


def _claim_ed_vs_cd(inputs: ReportInputs) -> Claim:
    b = inputs.full_budget
    title = f"[{b} %] CTD-ED: ME <= CTD-CD's and AUC >= CTD-CD's"
    if len(_have(inputs, ("ctd_ed", "ctd_cd"))) < 2:
        return Claim(title, pub.STATEMENTS["ed_vs_cd"], "n/a", None, "needs ctd_ed and ctd_cd")
    me = {m: metric(inputs.summary, m, b, "me_px") for m in ("ctd_ed", "ctd_cd")}
    auc = {m: metric(inputs.summary, m, b, "auc") for m in ("ctd_ed", "ctd_cd")}
    d = difference(inputs, "ctd_ed", "ctd_cd", b)
    ok_me = me["ctd_ed"] <= me["ctd_cd"]  # type: ignore[operator]
    ok_auc = auc["ctd_ed"] >= auc["ctd_cd"]  # type: ignore[operator]
    measured = (
        f"ME {fmt(me['ctd_ed'])} vs {fmt(me['ctd_cd'])} px, AUC {fmt(auc['ctd_ed'], 3)} vs "
        f"{fmt(auc['ctd_cd'], 3)}; {d.text('ME(ED) - ME(CD)')}"
    )
    note = "the paper: 'slightly better'; both conditions must hold."
    if not (ok_me and ok_auc):
        failed = [n for n, ok in (("ME", ok_me), ("AUC", ok_auc)) if not ok]
        note += f" Fails on {' and '.join(failed)}."
        if d.covers_zero:
            note += " The ME difference is within the bootstrap noise (interval includes 0)."
    return Claim(title, pub.STATEMENTS["ed_vs_cd"], measured, ok_me and ok_auc, note)


def _claim_com_vs_ed(inputs: ReportInputs) -> Claim:
    b, frac = inputs.full_budget, float(inputs.options["similar_fraction"])
    title = f"[{b} %] CTD-Com's ME within {frac:.0%} of CTD-ED's"
    if len(_have(inputs, ("ctd_com", "ctd_ed"))) < 2:
        return Claim(title, pub.STATEMENTS["com_vs_ed"], "n/a", None, "needs ctd_com and ctd_ed")
    com, ed = (metric(inputs.summary, m, b, "me_px") for m in ("ctd_com", "ctd_ed"))
    d = difference(inputs, "ctd_com", "ctd_ed", b)
    gap = abs(com - ed)  # type: ignore[operator]
    holds = gap <= frac * ed  # type: ignore[operator]
    return Claim(
        title,
        pub.STATEMENTS["com_vs_ed"],
        f"ME {fmt(com)} vs {fmt(ed)} px, |difference| {fmt(gap)} px (limit "
        f"{fmt(frac * ed)} px); {d.text('ME(Com) - ME(ED)')}",  # type: ignore[operator]
        holds,
        f"'similar' defined here as |ME(CTD-Com) - ME(CTD-ED)| <= {frac:g} x ME(CTD-ED)",
    )


def _claim_fr(inputs: ReportInputs) -> Claim:
    b, t = inputs.full_budget, inputs.threshold_px
    title = f"[{b} %] CTD variants have a lower FR than the fine-tuning baselines"
    ctd, base = _have(inputs, CTD_METHODS), _have(inputs, FINETUNE_METHODS)
    if not ctd or not base:
        return Claim(title, pub.STATEMENTS["fr"], "n/a", None, "needs CTD and fine-tuning runs")
    fr = {m: metric(inputs.summary, m, b, "fr") for m in ctd + base}
    pairs = [(fr[c], fr[f]) for c in ctd for f in base]
    measured = "FR: " + ", ".join(f"{method_name(m)} {fmt(v, 3)}" for m, v in fr.items())
    rule = (
        f"FR = share of test images with mean error > {t:g} px; holds if every CTD FR <= every "
        "baseline FR and at least one is strictly lower"
    )
    if all(c == f for c, f in pairs):
        return Claim(title, pub.STATEMENTS["fr"], measured, None,
                     rule + f"; n/a: every FR is {fmt(pairs[0][0], 3)} (no separation at "
                     f"{t:g} px)")  # fmt: skip
    holds = all(c <= f for c, f in pairs) and any(c < f for c, f in pairs)  # type: ignore[operator]
    return Claim(title, pub.STATEMENTS["fr"], measured, holds, rule)


def _claim_small_budget(inputs: ReportInputs) -> Claim:
    small, full = inputs.smallest_budget, inputs.full_budget
    title = f"CTD's ME gain over FT is larger at {small} % than at {full} % of the labels"
    ctd = _have(inputs, CTD_METHODS)
    if "ft" not in inputs.methods or not ctd or small >= full:
        return Claim(title, pub.STATEMENTS["small_budget"], "n/a", None,
                     "needs ft, a CTD variant and a budget below the full one")  # fmt: skip
    best = {
        b: min(ctd, key=lambda m: metric(inputs.summary, m, b, "me_px"))  # type: ignore[arg-type,return-value]
        for b in (small, full)
    }
    ft_s, c_s, ft_f, c_f = aligned_errors(
        inputs, [("ft", small), (best[small], small), ("ft", full), (best[full], full)]
    )
    mean, lo, hi = paired_bootstrap(
        ft_s - c_s, ft_f - c_f, inputs.options["n_bootstrap"], inputs.options["bootstrap_seed"]
    )
    d = Difference(mean, lo, hi, len(ft_s))
    gain = {
        b: metric(inputs.summary, "ft", b, "me_px") - metric(inputs.summary, best[b], b, "me_px")  # type: ignore[operator]
        for b in (small, full)
    }
    holds = gain[small] > gain[full]
    note = (
        "gain = ME(FT) - ME(best CTD variant at that budget); the difference of gains is "
        f"bootstrapped over the {d.n} shared test images."
    )
    if not holds and d.covers_zero:
        note += " It fails within the bootstrap noise (interval includes 0)."
    return Claim(
        title,
        pub.STATEMENTS["small_budget"],
        f"gain {fmt(gain[small])} px at {small} % ({method_name(best[small])}) vs "
        f"{fmt(gain[full])} px at {full} % ({method_name(best[full])}); "
        + d.text("gain difference"),
        holds,
        note,
    )


def _claim_hg(inputs: ReportInputs) -> Claim:
    b = inputs.full_budget
    title = f"[{b} %] every CTD variant has a lower ME than the stacked hourglass (HG)"
    ctd = _have(inputs, CTD_METHODS)
    if "hg" not in inputs.methods or not ctd:
        return Claim(title, pub.STATEMENTS["hg"], "n/a", None, "needs hg and a CTD variant")
    diffs = [(f"{method_name(c)} - HG", difference(inputs, c, "hg", b)) for c in ctd]
    failing = [(lab, d) for lab, d in diffs if d.mean >= 0]
    return Claim(
        title,
        pub.STATEMENTS["hg"],
        f"ME px: {_me_list(inputs, ctd, b)} vs HG {fmt(metric(inputs.summary, 'hg', b, 'me_px'))}; "
        + "; ".join(d.text(lab) for lab, d in diffs),
        not failing,
        "HG trained from scratch on the same labels and steps" + _noise_note(failing),
    )


def _deploy_me(inputs: ReportInputs, runtime: str) -> float:
    dep = inputs.deploy_summary.set_index("runtime")
    return float(dep.loc[runtime, "me_px"])


def _claim_runtime_me(inputs: ReportInputs, runtime: str, tol: float, label: str) -> Claim:
    ref, me = _deploy_me(inputs, REFERENCE_RUNTIME), _deploy_me(inputs, runtime)
    sel = (
        f"{method_name(str(inputs.selection.get('method')))} at {inputs.selection.get('budget')} %"
    )
    return Claim(
        f"{label} ME within {tol:g} px of PyTorch's (deployed model)",
        pub.STATEMENTS["openvino"],
        f"{label} {fmt(me, 3)} vs PyTorch {fmt(ref, 3)} px (difference {me - ref:+.3f} px)",
        abs(me - ref) <= tol,
        f"{sel}; test split, deploy/evaluation; tolerance {tol:g} px is the project's",
    )


def _claim_int8_speed(inputs: ReportInputs) -> Claim:
    f32 = benchmark_row(inputs.benchmark, "openvino_fp32")
    i8 = benchmark_row(inputs.benchmark, "openvino_int8")
    title = "OpenVINO INT8 is faster than OpenVINO FP32 (batch 1, sync)"
    if f32 is None or i8 is None:
        return Claim(title, pub.STATEMENTS["openvino"], "n/a", None,
                     "no successful batch-1 sync benchmark row for one of them")  # fmt: skip
    a, b = i8["latency_median_ms"], f32["latency_median_ms"]
    return Claim(
        title,
        pub.STATEMENTS["openvino"],
        f"median latency INT8 {fmt(a, 1)} ms vs FP32 {fmt(b, 1)} ms ({fmt(b / a, 2)}x) at "
        f"{int(i8['threads'])} threads",
        a < b,
        "deploy/benchmark.csv on this machine; INT8 gains need VNNI/AMX-class CPU instructions",
    )


def build_claims(inputs: ReportInputs) -> list[Claim]:
    """Every claim, in report order."""
    claims = [
        _claim_ctd_vs_finetune(inputs, inputs.full_budget, "full budget"),
        _claim_ctd_vs_finetune(inputs, inputs.smallest_budget, "fewest labels"),
        _claim_ed_vs_cd(inputs),
        _claim_com_vs_ed(inputs),
        _claim_fr(inputs),
        _claim_small_budget(inputs),
        _claim_hg(inputs),
        _claim_runtime_me(inputs, "openvino_fp32", inputs.options["fp32_tolerance_px"],
                          "OpenVINO FP32"),
        _claim_runtime_me(inputs, "openvino_int8", inputs.options["int8_tolerance_px"],
                          "OpenVINO INT8"),
        _claim_int8_speed(inputs),
    ]  # fmt: skip
    return claims
