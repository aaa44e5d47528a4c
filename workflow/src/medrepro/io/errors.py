"""The one exception type for bad input."""

from __future__ import annotations

from pathlib import Path

__all__ = ["InputError"]


class InputError(Exception):
    """Bad input data: the message names the offending file and the problem.

    The CLI prints it as ``error: <path>: <problem>`` and exits with status 2.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
