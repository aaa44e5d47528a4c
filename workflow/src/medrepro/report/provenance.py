"""Provenance of a report: configuration, seed, software versions, CPU, git commit, inputs.

Written as ``provenance.json`` beside every report, so that each number can be traced to the
run that produced it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medrepro.benchmark import sysinfo

__all__ = [
    "PACKAGES",
    "package_versions",
    "cpu_info",
    "repo_root",
    "git_commit",
    "file_digest",
    "file_sizes",
    "provenance",
]

#: distributions whose versions are recorded (PyPI names)
PACKAGES: tuple[str, ...] = (
    "torch",
    "openvino",
    "nncf",
    "onnxruntime",
    "onnx",
    "SimpleITK",
    "snakemake",
    "numpy",
    "pandas",
    "matplotlib",
    "medrepro",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions without importing the packages (``None`` when not installed).

    Args:
        names: distribution names.

    Returns:
        ``{"python": "3.11.x", name: version or None, ...}``.
    """
    return {"python": platform.python_version(), **sysinfo.package_versions(names)}


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """CPU model name, instruction-set flags and logical core counts.

    Args:
        cpuinfo: Linux ``/proc/cpuinfo``; elsewhere only :mod:`platform` data is returned.

    Returns:
        ``{"model": str, "flags": [str, ...], "logical_cpus": int, "usable_cpus": int, "machine": str}``.
    """
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    model, flags = sysinfo.parse_cpuinfo(text)
    model = model or platform.processor() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "model": model,
        "flags": flags,
        "logical_cpus": os.cpu_count() or 0,
        "usable_cpus": usable,
        "machine": platform.machine(),
    }


def repo_root(start: str | Path | None = None) -> Path | None:
    """The nearest directory at or above ``start`` (default: this package) holding ``.git``."""
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def git_commit(root: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` in the repository root, or ``"unknown"`` (no checkout, no commit, no git)."""
    root = Path(root) if root is not None else repo_root()
    if root is None:
        return "unknown"
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = res.stdout.strip()
    return commit if res.returncode == 0 and commit else "unknown"


def file_digest(path: str | Path, chunk: int = 1 << 20) -> dict[str, Any]:
    """SHA-256 and size (bytes) of a file; ``{"missing": True}`` if it does not exist."""
    path = Path(path)
    if not path.is_file():
        return {"missing": True}
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def file_sizes(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Sizes (bytes) of files recorded without a checksum (large containers read partially);
    each path once, missing ones left out."""
    return {
        str(p): {"bytes": Path(p).stat().st_size} for p in dict.fromkeys(paths) if Path(p).is_file()
    }


def provenance(
    config: dict[str, Any],
    seed: int | None,
    inputs: Iterable[str | Path] = (),
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything needed to trace a report back to its run.

    Args:
        config: the run's configuration (as given to the pipeline).
        seed: the run's random seed.
        inputs: artefacts the report was computed from; each gets a SHA-256 and size.
        argv: the command line (default ``sys.argv``).

    Returns:
        A JSON-serialisable dict with ``created_utc``, ``command``, ``seed``, ``config``,
        ``versions``, ``platform``, ``cpu``, ``git_commit`` and ``inputs``.
    """
    argv = list(sys.argv if argv is None else argv)
    return {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(argv),
        "cwd": str(Path.cwd()),
        "seed": seed,
        "config": config,
        "versions": package_versions(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "platform": platform.platform(),
            "python_implementation": platform.python_implementation(),
        },
        "cpu": cpu_info(),
        "git_commit": git_commit(),
        "inputs": {str(p): file_digest(p) for p in inputs},
    }
