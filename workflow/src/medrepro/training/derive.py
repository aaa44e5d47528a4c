"""Stage ``derive``: a deployment variant that reuses a trained model's weights.

The paper (Section 4.4, after openvinotoolkit/openvino#1191) replaced the hourglass's trilinear
upscaling with "a specific deconvolution layer, which gives absolutely the same result": a
depthwise transposed convolution whose fixed kernel is the linear-interpolation kernel. No
retraining is involved, so the variant is built from the trained model: same architecture, some
keyword arguments changed (``{"upsample": "deconv", "upsample_learnable": false}``), every trained
weight carried over. Only parameters that the new layers introduce may be missing from the parent
(they keep their construction-time values, here the interpolation kernel); anything else missing
or left over is an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from medrepro.io.atomic import atomic_path
from medrepro.nets import build_model
from medrepro.nets.bundle import load_bundle, save_bundle

__all__ = ["derive_model", "main"]


def derive_model(
    parent: Path, overrides: dict[str, Any]
) -> tuple[torch.nn.Module, dict[str, Any], list[str]]:
    """Rebuild ``parent``'s network with ``overrides`` and load its trained weights.

    Returns:
        ``(model in eval mode, metadata, names of parameters new to the variant)``.

    Raises:
        ValueError: if a trained weight has no place in the variant, or a parameter of the
            variant has no trained counterpart and is trainable.
    """
    trained, meta = load_bundle(parent)
    kwargs = {**meta["kwargs"], **overrides}
    model = build_model(meta["arch"], **kwargs)
    result = model.load_state_dict(trained.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"{parent}: weights without a place in the variant: {result.unexpected_keys}"
        )
    params = dict(model.named_parameters())
    trainable_missing = [
        k for k in result.missing_keys if k not in params or params[k].requires_grad
    ]
    if trainable_missing:
        raise ValueError(f"{parent}: the variant has untrained parameters: {trainable_missing}")
    return model.eval(), {**meta, "kwargs": kwargs}, list(result.missing_keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medrepro derive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parent", type=Path, required=True, help="bundle of the trained model")
    parser.add_argument(
        "--overrides", required=True, help="JSON object of changed architecture arguments"
    )
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    model, meta, new = derive_model(args.parent, json.loads(args.overrides))
    extra = {**meta.get("extra", {}), "derived_from": str(args.parent), "new_parameters": new}
    save_bundle(
        args.out_dir / "model.pt",
        model,
        arch=meta["arch"],
        kwargs=meta["kwargs"],
        input_shape=meta["input_shape"],
        output_kind=meta["output_kind"],
        extra=extra,
    )
    # The variant carries the parent's weights: its training history is the parent's.
    with atomic_path(args.out_dir / "history.csv") as tmp:
        shutil.copyfile(args.parent.parent / "history.csv", tmp)
    print(
        f"derived {args.out_dir / 'model.pt'} from {args.parent}; new parameters: {new}", flush=True
    )
    return 0
