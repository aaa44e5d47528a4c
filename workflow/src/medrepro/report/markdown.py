"""DataFrame -> GitHub-flavoured Markdown, without ``tabulate``.

Numbers are formatted with a fixed number of decimals per column, missing values become an en
dash, numeric columns are right-aligned and ``|`` in cells is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

import pandas as pd

__all__ = ["MISSING", "format_value", "escape_cell", "to_markdown", "bullets"]

#: what a missing value (None, NaN) is shown as
MISSING = "–"


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_value(value: Any, digits: int = 2, na: str = MISSING) -> str:
    """Format one cell.

    Args:
        value: the cell; ``None``/NaN -> ``na``, booleans -> ``yes``/``no``, integers as they are,
            other reals with ``digits`` decimals (scientific notation below ``10**-digits``),
            anything else with ``str``.
        digits: decimals for non-integer reals.
        na: text for missing values.

    Returns:
        The cell text.

    Example:
        >>> format_value(3.14159, 2), format_value(None), format_value(2e-6, 2)
        ('3.14', '–', '2.0e-06')
    """
    if _is_missing(value):
        return na
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        x = float(value)
        if math.isinf(x):
            return "∞" if x > 0 else "-∞"
        if x != 0 and abs(x) < 0.5 * 10.0**-digits:
            return f"{x:.1e}"
        return f"{x:.{digits}f}"
    return str(value)


def escape_cell(text: str) -> str:
    """Make a string safe for a Markdown table cell (pipes escaped, newlines flattened)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _is_numeric(series: pd.Series, na: str = MISSING) -> bool:
    """True if every present cell is a real number (``na`` and empty strings count as missing)."""
    values = [
        v
        for v in series
        if not _is_missing(v) and not (isinstance(v, str) and v.strip() in ("", na))
    ]
    return bool(values) and all(isinstance(v, Real) and not isinstance(v, bool) for v in values)


def to_markdown(
    df: pd.DataFrame,
    digits: int | Mapping[str, int] = 2,
    na: str = MISSING,
    index: bool = False,
) -> str:
    """Render a DataFrame as a Markdown pipe table.

    Args:
        df: the table; column names become the header.
        digits: decimals for real numbers, one for all columns or per column name (default 2 for
            the columns not named).
        na: text for missing values.
        index: also render the index as the first column.

    Returns:
        The table, lines joined with ``\\n``, without a trailing newline.
    """
    if index:
        df = df.reset_index()
    columns = [str(c) for c in df.columns]
    per_col = digits if isinstance(digits, Mapping) else {}
    default = 2 if isinstance(digits, Mapping) else int(digits)
    numeric = {c: _is_numeric(df[c], na) for c in df.columns}
    header = "| " + " | ".join(escape_cell(c) for c in columns) + " |"
    rule = "|" + "|".join("---:" if numeric[c] else "---" for c in df.columns) + "|"
    lines = [header, rule]
    for row in df.itertuples(index=False, name=None):
        cells = [
            escape_cell(format_value(v, per_col.get(str(c), default), na))
            for c, v in zip(df.columns, row, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bullets(items: Iterable[str]) -> str:
    """A Markdown bullet list, one item per line."""
    return "\n".join(f"- {item}" for item in items)
