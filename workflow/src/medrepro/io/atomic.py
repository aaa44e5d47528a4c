"""Atomic outputs: write to a temporary sibling, rename into place only on success.

A stage that fails half-way therefore never leaves a partial output behind, and a reader never
sees a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "atomic_dir", "write_text", "write_json", "write_csv", "write_npz"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _suffix(path: Path) -> str:
    """Full suffix (``.nii.gz``, ``.mrk.json``) so that writers that dispatch on it still work."""
    return "".join(path.suffixes)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds.

    Example:
        >>> with atomic_path("out/table.csv") as tmp:  # doctest: +SKIP
        ...     df.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{_suffix(path)}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; it replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (numpy scalars and arrays allowed)."""

    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def write_csv(df: Any, path: str | Path, **kwargs: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def write_npz(path: str | Path, /, **arrays: Any) -> None:
    """Write ``arrays`` with ``np.savez`` to exactly ``path`` (no ``.npz`` appended), atomically.

    Example:
        >>> write_npz("out/inputs.npz", inputs=x, case_id=ids)  # doctest: +SKIP
    """
    # A file handle stops np.savez from appending ".npz" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
