"""Input CSV tables of the stages: read as text, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from medrepro.io.errors import InputError

__all__ = ["read_text_csv", "require_columns"]


def read_text_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV with every cell as ``str`` (empty cells stay ``""``, never NaN).

    Raises:
        InputError: naming ``path`` if it does not exist or is not a readable CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"unreadable CSV: {err}") from err


def require_columns(table: pd.DataFrame, columns: Sequence[str], source: str | Path) -> None:
    """Raise InputError naming ``source`` (the table's file) if ``table`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(source, f"missing column(s) {missing}; found {list(table.columns)}")
