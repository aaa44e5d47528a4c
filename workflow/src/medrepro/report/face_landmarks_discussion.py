"""Discussion of the face landmark report: sentences generated from the run's numbers.

Explains, from the run's own records only, why the numbers cannot be set beside the paper's
(synthetic faces, lost published values, reduced scale) and why a claim may not hold (a
difference within the bootstrap noise, a weak source network, a CPU without INT8 instructions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medrepro.report.claims import Claim
from medrepro.report.face_landmarks_claims import fmt
from medrepro.report.face_landmarks_inputs import ReportInputs
from medrepro.report.published import face_landmarks as pub

__all__ = ["INT8_FLAGS", "is_synthetic", "discussion"]

#: CPU flags that give INT8 convolutions 8-bit dot products
INT8_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8")


def is_synthetic(block: dict[str, Any]) -> bool:
    """True unless the configuration names a target data directory."""
    return not block.get("data_dir")


def _data(inputs: ReportInputs) -> str:
    src = (
        "synthetic face phantoms (not the paper's CIFASD images)"
        if is_synthetic(inputs.block)
        else "the user's face images"
    )
    return (
        f"Data: {len(inputs.splits)} images of {src}, {inputs.n_train} for training and "
        f"{inputs.n_test} for testing, {len(inputs.landmark_names)} landmarks; the paper used "
        f"{pub.DATASET['n_images']} CIFASD images (80/20). Errors are in pixels of our "
        f"{inputs.block.get('image_size', '?')}-pixel network input, so only the ranking of "
        "the methods, not the values, can be compared, and the paper's values are not in our "
        "copy of the text anyway."
    )


def _source(inputs: ReportInputs) -> str:
    acc = inputs.source_metrics.get("val_accuracy")
    n_id = inputs.source_metrics.get("n_identities")
    text = (
        f"Source network: identity accuracy {fmt(acc, 3) if isinstance(acc, int | float) else acc} "
        f"on {n_id} identities (the paper: a VGGFace2 ResNet-50). CTD can only help as much as "
        "the source features carry facial structure"
    )
    if isinstance(acc, int | float) and isinstance(n_id, int | float) and n_id > 0:
        chance = 1.0 / float(n_id)
        if acc < 5 * chance:
            text += (
                f"; at {fmt(acc, 3)} (chance {fmt(chance, 3)}) they carry little, so the "
                "regularisers pull towards weak features"
            )
    return text + "."


def _scale(inputs: ReportInputs) -> str | None:
    if inputs.scale in (None, "paper"):
        return None
    return (
        f"Scale `{inputs.scale}`: narrower networks, fewer steps and fewer images than the "
        "paper scale, so differences between methods can be smaller than the test-set noise; "
        "the bootstrap intervals in the claims show which differences are resolved."
    )


def _failures(claims: Sequence[Claim]) -> list[str]:
    out = []
    for c in claims:
        if c.holds is False:
            out.append(f"Not borne out: {c.claim}. {c.note}".strip())
    return out


def _cpu(cpu: dict[str, Any]) -> str:
    flags = set(cpu.get("flags") or [])
    isa = [f for f in INT8_FLAGS if f in flags]
    text = f"Deployment timed on {cpu.get('model', 'an unknown CPU')}; INT8 instructions: "
    if isa:
        return text + ", ".join(isa) + "."
    return text + f"none of {', '.join(INT8_FLAGS)}, so OpenVINO INT8 can gain little over FP32."


def discussion(inputs: ReportInputs, claims: Sequence[Claim], cpu: dict[str, Any]) -> list[str]:
    """The discussion bullets, in order."""
    items = [_data(inputs), _source(inputs)]
    scale = _scale(inputs)
    if scale:
        items.append(scale)
    items += _failures(claims)
    items.append(_cpu(cpu))
    return items
