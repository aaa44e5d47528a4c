"""The machine a benchmark ran on: CPU model and flags, cores, memory, OS, library versions.

Benchmarks on shared VMs are noisy and CPU-specific (BF16 is OpenVINO's default precision on
CPUs with native BF16, INT8 speed depends on VNNI/AMX), so every benchmark table ships with this
record, including OpenVINO's ``OPTIMIZATION_CAPABILITIES`` and default precision hint.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "INFERENCE_FLAG_PATTERN",
    "cpu_flags",
    "cpu_model",
    "memory_mb",
    "library_versions",
    "package_versions",
    "parse_cpuinfo",
    "physical_cores",
    "system_info",
]

#: /proc/cpuinfo flags that matter for inference speed
INFERENCE_FLAG_PATTERN = re.compile(
    r"^(avx|avx2|fma|f16c|avx512.*|amx.*|.*vnni.*|.*bf16.*|.*fp16.*)$"
)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> tuple[str | None, list[str]]:
    """``(model name, sorted flags)`` of the first core in ``/proc/cpuinfo`` text.

    The flags line is ``flags`` on x86 and ``Features`` on ARM; either may be absent.
    """
    model: str | None = None
    flags: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = sorted(set(value.split()))
    return model, flags


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    model, _ = parse_cpuinfo(_cpuinfo())
    return model or platform.processor() or platform.machine()


def cpu_flags(all_flags: bool = False) -> list[str]:
    """CPU flags of the first core: those relevant to inference, or all of them."""
    _, flags = parse_cpuinfo(_cpuinfo())
    return flags if all_flags else [f for f in flags if INFERENCE_FLAG_PATTERN.match(f)]


def memory_mb() -> float | None:
    """Total physical memory in MB."""
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo"), re.M)
    return int(match.group(1)) / 1024.0 if match else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of the distributions ``names``, without importing them (``None`` if absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def library_versions() -> dict[str, str | None]:
    """Installed versions of the inference stack (``None`` if absent)."""
    return package_versions(["torch", "openvino", "nncf", "onnxruntime", "onnx", "numpy"])


def _openvino_info() -> dict[str, Any]:
    try:
        import openvino as ov

        core = ov.Core()
        hint = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
        return {
            "openvino_runtime": ov.get_version(),
            "openvino_cpu_name": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
            "openvino_optimization_capabilities": list(
                core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            ),
            "openvino_default_inference_precision": hint.to_string()
            if hasattr(hint, "to_string")
            else str(hint),
        }
    except Exception as err:  # noqa: BLE001 - informative only
        return {"openvino_error": repr(err)}


def _torch_info() -> dict[str, Any]:
    try:
        import torch

        return {
            "torch_num_threads_default": torch.get_num_threads(),
            "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }
    except Exception as err:  # noqa: BLE001 - informative only
        return {"torch_error": repr(err)}


def physical_cores() -> int | None:
    """Physical cores (hyper-threads not counted), or ``None`` where psutil cannot tell."""
    import psutil

    return psutil.cpu_count(logical=False)


def system_info() -> dict[str, Any]:
    """Everything needed to interpret a benchmark table on another machine."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "affinity_cpus": affinity,
        "memory_mb": memory_mb(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": library_versions(),
        **_openvino_info(),
        **_torch_info(),
    }
