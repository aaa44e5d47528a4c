"""Model bundles: a checkpoint that rebuilds its own network.

A bundle is a ``torch.save`` dict (see ``docs/architecture.md``)::

    {"arch": str, "kwargs": dict, "state_dict": dict, "input_shape": list[int] (batch 1),
     "output_kind": "coordinates" | "heatmaps" | "probabilities" | "yolo", "extra": dict}

``arch`` and ``kwargs`` go through :func:`medrepro.nets.build_model`, so the file alone is
enough to run inference or export (no config needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medrepro.io.atomic import atomic_path

__all__ = ["OUTPUT_KINDS", "save_bundle", "load_bundle"]

OUTPUT_KINDS = ("coordinates", "heatmaps", "probabilities", "yolo", "logits")


def save_bundle(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    kwargs: Mapping[str, Any],
    input_shape: Sequence[int],
    output_kind: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model`` and how to rebuild it to ``path`` atomically.

    Args:
        path: destination (``model.pt``).
        model: the network; its ``state_dict`` is stored on CPU.
        arch: registry key (see :data:`medrepro.nets.MODELS`).
        kwargs: constructor arguments, plain Python values only (they are stored as-is and the
            bundle is read back with ``weights_only=True``).
        input_shape: network input shape with batch 1, e.g. ``[1, 1, 128, 128, 64]``.
        output_kind: ``"coordinates"``, ``"heatmaps"``, ``"probabilities"`` (sigmoid maps) or
            ``"yolo"`` (raw ``(N, S, S, 5B + C)`` grids, ``extra={"S", "B", "C"}``).
        extra: anything else the consumers need (e.g. ``{"heatmap_stride": 2, "sigma": 2.0}``).

    Raises:
        ValueError: unknown ``output_kind``.
    """
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {OUTPUT_KINDS}, got {output_kind!r}")
    payload = {
        "arch": arch,
        "kwargs": dict(kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "input_shape": [int(s) for s in input_shape],
        "output_kind": output_kind,
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_bundle(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored by :func:`save_bundle`.

    Args:
        path: a bundle file.

    Returns:
        ``(model, meta)``: the model in eval mode on CPU, and every bundle entry except
        ``state_dict`` (``arch``, ``kwargs``, ``input_shape``, ``output_kind``, ``extra``).
    """
    from medrepro.nets import build_model  # the registry imports this module's siblings

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_model(payload["arch"], **payload["kwargs"])
    model.load_state_dict(payload["state_dict"])
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.eval(), meta
