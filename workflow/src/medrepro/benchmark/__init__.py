"""Benchmarks: latency, throughput and peak memory, one process per configuration.

:mod:`~medrepro.benchmark.driver` (stage ``benchmark``) runs every configuration through
:mod:`~medrepro.benchmark.worker` (stage ``benchmark-worker``) in its own subprocess;
:mod:`~medrepro.benchmark.sysinfo` records the machine.
"""

from __future__ import annotations

__all__: list[str] = []
