"""Discussion of the LowRes report: sentences generated from the numbers and the verdicts.

Explains, from the run's own records only, why a claim may not hold: synthetic data, a reduced
scale (narrower networks, smaller volumes, fewer iterations), a machine with fewer cores than
the thread counts timed, CPU instructions for INT8, how much of each volume LowRes's second
stage processed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from medrepro.report.claims import Claim
from medrepro.report.lowres_claims import fmt
from medrepro.report.lowres_inputs import REFERENCE_RUNTIME, ReportInputs
from medrepro.report.lowres_tables import time_of
from medrepro.report.published import lowres as pub

__all__ = ["INT8_FLAGS", "is_synthetic", "discussion"]

#: CPU flags that give INT8 convolutions 8-bit dot products
INT8_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8")


def is_synthetic(block: dict[str, Any], dataset: str) -> bool:
    """True unless the configuration names a data directory for ``dataset``."""
    sub = block.get(dataset)
    return not (isinstance(sub, dict) and sub.get("data_dir"))


def _failed(claims: Sequence[Claim], dataset: str) -> list[Claim]:
    return [c for c in claims if c.holds is False and c.claim.startswith(f"[{dataset}]")]


def _data(inputs: ReportInputs) -> list[str]:
    out = []
    for name, data in inputs.datasets.items():
        test = data.studies[(data.studies["split"] == "test") & ~data.studies["excluded"]]
        n_obj = int((data.objects["split"] == "test").sum())
        excluded = int(data.studies["excluded"].sum())
        src = (
            "synthetic phantoms (not patient data)"
            if is_synthetic(inputs.block, name)
            else "the user's data"
        )
        text = (
            f"{name}: {len(test)} test studies with {n_obj} objects from {src}; the paper's "
            f"Table {pub.TABLE_NUMBERS.get(name, '?')} comes from "
            f"{pub.SETUP.get(name, 'its own data')}. Absolute recall and Dice are therefore not "
            "comparable, only the ranking of the models."
        )
        if excluded:
            text += f" {excluded} studies were excluded in preprocessing (reasons in studies.csv)."
        out.append(text)
    return out


def _machine(inputs: ReportInputs, cpu: dict[str, Any]) -> list[str]:
    usable = int(cpu.get("usable_cpus") or 0)
    out = [
        f"Times are for this machine ({cpu.get('model', 'unknown CPU')}, {usable or '?'} usable "
        f"logical CPUs) at {', '.join(map(str, inputs.threads_list))} threads, not the paper's "
        f"{pub.SETUP['cpu']} at {pub.SETUP['threads']}; ratios between models carry over better "
        "than seconds."
    ]
    over = [t for t in inputs.threads_list if usable and t > usable]
    if over:
        out.append(
            f"Thread counts {over} exceed the {usable} usable CPUs, so they cannot run faster than "
            f"{usable} threads; a failing scaling claim is expected here."
        )
    flags = set(cpu.get("flags") or [])
    isa = [f for f in INT8_FLAGS if f in flags]
    out.append(
        "INT8 instructions: "
        + (
            ", ".join(isa)
            if isa
            else "none (no VNNI/AMX), so OpenVINO INT8 gains little over FP32 on this CPU"
        )
        + "."
    )
    return out


def _scale(inputs: ReportInputs) -> list[str]:
    scale = inputs.scale
    if scale == "paper":
        return ["Scale `paper`: the paper's networks, patch sizes and iteration counts."]
    return [
        f"Scale `{scale or 'unknown'}`: narrower networks, smaller volumes and fewer training "
        "iterations than the paper. LowRes's advantage grows with the volume (its second stage "
        "sees only the detected components), and short training lowers recall unevenly across "
        "models, so speed-ups and recall rankings may differ from the paper's; the 15 s claim is "
        "checked only at the paper scale."
    ]


def _lowres_detail(inputs: ReportInputs, timing: pd.DataFrame) -> list[str]:
    out = []
    for name in inputs.datasets:
        sel = timing[
            (timing["dataset"] == name)
            & (timing["model"] == "lowres")
            & (timing["runtime"] == REFERENCE_RUNTIME)
            & (timing["threads"] == inputs.threads)
        ]
        if sel.empty:
            continue
        r = sel.iloc[0]
        s1, s2, nc = r["stage1_mean_s"], r["stage2_mean_s"], r["n_components_mean"]
        if pd.isna(s1) or pd.isna(s2):
            continue
        un = time_of(timing, name, "unet3d", REFERENCE_RUNTIME, inputs.threads)
        out.append(
            f"{name}: LowRes spends {fmt(float(s1), 2, ' s')} in stage 1 and "
            f"{fmt(float(s2), 2, ' s')} in stage 2 per study "
            f"({fmt(None if pd.isna(nc) else float(nc), 1)} components on average)"
            + (f"; 3D U-Net takes {fmt(un, 2, ' s')}." if un is not None else ".")
        )
    return out


def _coarse_hits(quality: pd.DataFrame | None) -> list[str]:
    """Models whose recall is high while their object Dice is tiny: big components that touch
    the objects count as hits in the LowRes paper's recall (any overlap is a hit)."""
    if quality is None or quality.empty:
        return []
    rows = quality[
        (quality["runtime"] == REFERENCE_RUNTIME)
        & (quality["avg_recall"] >= 0.5)
        & (quality["object_dice_mean"] < 0.1)
    ]
    return [
        f"{r.dataset}: {r.model} reaches avg recall {fmt(float(r.avg_recall), 3)} with object "
        f"Dice {fmt(float(r.object_dice_mean), 3)}: its predicted components are far larger than "
        "the objects, and the paper's recall counts any overlap as a hit (read both columns "
        "together)."
        for r in rows.itertuples()
    ]


def discussion(
    inputs: ReportInputs,
    timing: pd.DataFrame,
    claims: Sequence[Claim],
    cpu: dict[str, Any],
    quality: pd.DataFrame | None = None,
) -> list[str]:
    """Sentences generated from the measured numbers and the claims' verdicts.

    Args:
        inputs: validated inputs.
        timing: the long-form timing table.
        claims: the evaluated claims.
        cpu: :func:`medrepro.report.provenance.cpu_info` of the report's machine (the inference
            stages ran on the same machine in this pipeline).
        quality: the long-form quality table (optional).
    """
    n_yes = sum(c.holds is True for c in claims)
    n_no = sum(c.holds is False for c in claims)
    n_na = sum(c.holds is None for c in claims)
    out = [
        f"{n_yes} of {len(claims)} checked claims hold, {n_no} do not and {n_na} could not be "
        "checked (model, runtime or thread count not run, or paper scale only)."
    ]
    out += _data(inputs)
    out += _scale(inputs)
    out += _machine(inputs, cpu)
    out += _lowres_detail(inputs, timing)
    out += _coarse_hits(quality)
    for name in inputs.datasets:
        failed = _failed(claims, name)
        if failed:
            out.append(
                f"{name}, claims that did not hold: "
                + "; ".join(f"{c.claim.split('] ', 1)[-1]} ({c.measured})" for c in failed)
                + "."
            )
    return out
