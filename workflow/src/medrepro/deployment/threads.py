"""Thread limits for inference: environment, CPU affinity and torch settings.

OpenMP (torch, onnxruntime's MLAS uses its own pool) and oneTBB (OpenVINO) read their limits at
import or at first use, so :func:`pin_process` must run *before* those libraries are imported;
a benchmark worker calls it at the very top of ``main``. This module imports only the standard
library for that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "THREAD_ENV_VARS",
    "thread_env",
    "first_cpus",
    "pin_process",
    "cpu_affinity",
    "set_torch_threads",
]

#: environment variables read by the OpenMP / BLAS runtimes that torch and numpy may load
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables limiting OpenMP/BLAS pools to ``threads``."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return dict.fromkeys(THREAD_ENV_VARS, str(threads))


def first_cpus(threads: int) -> list[int]:
    """The first ``threads`` CPUs this process may run on (all of them if fewer)."""
    allowed = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    return allowed[: max(1, threads)]


def pin_process(threads: int, affinity: bool = True) -> list[int]:
    """Limit this process to ``threads`` threads: environment and, optionally, CPU affinity.

    Call before importing torch/openvino/onnxruntime. OpenVINO sizes its default thread pool from
    the process affinity mask at first use, so the mask also bounds NNCF's internal compiled
    models, whose configuration we cannot set.

    Returns:
        The CPUs the process is pinned to (empty if affinity was not changed).
    """
    os.environ.update(thread_env(threads))
    if not affinity or not hasattr(os, "sched_setaffinity"):
        return []
    cpus = first_cpus(threads)
    os.sched_setaffinity(0, cpus)
    return cpus


@contextmanager
def cpu_affinity(threads: int) -> Iterator[list[int]]:
    """Temporarily restrict the process to its first ``threads`` CPUs; restore the mask after."""
    if not hasattr(os, "sched_setaffinity"):
        yield []
        return
    before = os.sched_getaffinity(0)
    cpus = first_cpus(threads)
    os.sched_setaffinity(0, cpus)
    try:
        yield cpus
    finally:
        os.sched_setaffinity(0, before)


def set_torch_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` and one inter-op thread (if still allowed)."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work has started in this process
        pass
