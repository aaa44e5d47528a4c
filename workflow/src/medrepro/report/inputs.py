"""Reading helpers shared by the reports' input modules.

Every helper raises :class:`~medrepro.io.errors.InputError` naming the file (or the option) when
an artefact is missing or malformed, so a report fails before it writes anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medrepro.io.errors import InputError

__all__ = [
    "require",
    "read_csv",
    "read_json",
    "read_json_numbers",
    "numeric",
    "number",
    "parse_config",
    "scaled_block",
]


def require(path: Path, what: str) -> Path:
    """``path`` if it is an existing file; InputError naming it (and ``what`` it is) otherwise."""
    if not path.is_file():
        raise InputError(path, f"missing artefact ({what})")
    return path


def read_csv(
    path: Path, columns: Sequence[str], what: str, allow_empty: bool = False
) -> pd.DataFrame:
    """Read a CSV artefact with ``columns`` (and a row unless ``allow_empty``); InputError otherwise."""
    require(path, what)
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise InputError(path, f"empty file ({what})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a readable CSV: {err}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(path, f"missing columns: {', '.join(missing)}")
    if df.empty and not allow_empty:
        raise InputError(path, f"no rows ({what})")
    return df


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON artefact holding one object; InputError naming it otherwise."""
    require(path, what)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise InputError(path, "expected a JSON object")
    return obj


def read_json_numbers(path: Path, what: str, keys: Sequence[str]) -> dict[str, Any]:
    """Read a JSON object (as :func:`read_json`) whose ``keys`` must all hold numbers."""
    obj = read_json(path, what)
    for key in keys:
        if math.isnan(number(obj.get(key))):
            raise InputError(path, f"{key}: expected a number, got {obj.get(key)!r}")
    return obj


def numeric(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A copy of ``df`` with ``columns`` coerced to numbers (unparseable -> NaN)."""
    df = df.copy()
    for c in columns:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def number(value: Any) -> float:
    """A JSON value as float (NaN for anything that is not a real number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def parse_config(value: str | None) -> dict[str, Any]:
    """``--config-json``: a JSON object given inline or as a path to a JSON file."""
    if value is None or value == "":
        return {}
    text = value
    source: Path | str = "--config-json"
    if not value.lstrip().startswith("{"):
        source = Path(value)
        if not source.is_file():
            raise InputError(source, "--config-json is neither inline JSON nor an existing file")
        text = source.read_text()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(source, f"not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise InputError(source, "the configuration must be a JSON object")
    return obj


def scaled_block(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A paper's config block with the settings of its scale merged in (one level deep).

    ``config`` may be the whole pipeline configuration (with ``name`` and ``scale``), the block
    with its ``scales``, or the block already at its scale. A scale's mapping updates the block's
    mapping of the same key; any other value replaces it. The result has a ``scale`` key
    (``None`` if unknown).
    """
    block = config.get(name, config)
    if not isinstance(block, dict):
        return {"scale": config.get("scale")}
    scale = config.get("scale", block.get("scale"))
    merged = {k: v for k, v in block.items() if k != "scales"}
    scales = block.get("scales")
    if isinstance(scales, dict) and isinstance(scales.get(scale), dict):
        for key, value in scales[scale].items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    merged["scale"] = scale
    return merged
