"""The device the trainers run on: CUDA when present, the CPU otherwise.

``MEDREPRO_DEVICE`` decides (see ``docs/cluster.md``):

- ``auto`` (default, also when unset or empty): ``cuda`` if ``torch.cuda.is_available()``, else
  ``cpu``. On a SLURM GPU partition the job sees the GPU through ``CUDA_VISIBLE_DEVICES``;
- ``cpu``: always the CPU (e.g. to reproduce a CPU run bit for bit on a GPU node);
- ``cuda`` or ``cuda:N``: that GPU, and an error if there is none.

Trainers move the model and every batch to this device, and the model back to the CPU before a
bundle or checkpoint is written, so that bundles load on CPU-only machines. On the CPU the moves
are no-ops and results are bit-identical to a run that never moved anything.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["ENV_VAR", "training_device", "to_device", "module_device"]

#: environment variable that selects the training device
ENV_VAR = "MEDREPRO_DEVICE"

_CUDA = re.compile(r"cuda(?::(\d+))?")


def training_device(*, log: bool = True) -> torch.device:
    """The training device chosen by ``MEDREPRO_DEVICE`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Args:
        log: print one line naming the device (to stderr, which the rules' logs capture).

    Returns:
        ``torch.device("cpu")`` or ``torch.device("cuda", N)``.

    Raises:
        ValueError: an unknown ``MEDREPRO_DEVICE`` value.
        RuntimeError: CUDA requested but not available (no GPU visible, or a CPU-only PyTorch
            build), or ``cuda:N`` with ``N`` beyond the visible GPUs.
    """
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value == "auto":
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    elif value == "cpu":
        device = torch.device("cpu")
    else:
        match = _CUDA.fullmatch(value)
        if match is None:
            raise ValueError(f"{ENV_VAR}={value!r}: expected auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{ENV_VAR}={value} but CUDA is not available (no GPU visible to this process, "
                f"or PyTorch {torch.__version__} built without CUDA); use {ENV_VAR}=auto or cpu"
            )
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise RuntimeError(
                f"{ENV_VAR}={value} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        device = torch.device("cuda", index)
    if log:
        name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
        print(f"training device: {device}{name} [{ENV_VAR}={value}]", file=sys.stderr, flush=True)
    return device


def to_device(obj: Any, device: torch.device | str) -> Any:
    """``obj`` with every tensor moved to ``device``, through tuples, lists and dicts.

    Tensors keep their dtype; NumPy arrays and other objects are returned as they are. Containers
    are rebuilt with their own type (named tuples, ``OrderedDict`` state dicts with their
    ``_metadata``). A tensor already on ``device`` is returned itself, not copied.
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        items = [(k, to_device(v, device)) for k, v in obj.items()]
        try:
            out = type(obj)(items)
        except TypeError:  # e.g. defaultdict, or a mapping without a pairs constructor
            out = dict(items)
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, tuple):
        moved = [to_device(v, device) for v in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else type(obj)(moved)
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


def module_device(module: nn.Module) -> torch.device:
    """Device of ``module``'s first parameter (or buffer); the CPU for a module without any."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
