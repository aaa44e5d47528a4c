"""Claims checked against a paper: what the paper says, what we measured, whether it holds.

Every paper's report ends with a ``claims.csv`` with the columns ``claim, paper, measured,
holds, note``. ``holds`` is ``yes``, ``no`` or ``n/a`` (the artefact needed is missing, or the
configuration was not run).

Note:
    pandas reads ``n/a`` as NaN by default; read the file with :func:`read_claims` or
    ``pd.read_csv(path, keep_default_na=False)``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medrepro.io.atomic import write_csv
from medrepro.io.errors import InputError

__all__ = [
    "CLAIM_COLUMNS",
    "Claim",
    "holds_text",
    "parse_holds",
    "claims_frame",
    "write_claims",
    "read_claims",
]

#: column order of ``claims.csv``
CLAIM_COLUMNS: tuple[str, ...] = ("claim", "paper", "measured", "holds", "note")

_TEXT = {True: "yes", False: "no", None: "n/a"}
_PARSE = {v: k for k, v in _TEXT.items()}


@dataclass(frozen=True)
class Claim:
    """One claim of a paper checked against our measurements.

    Attributes:
        claim: the claim in a short sentence, e.g. "OpenVINO is faster than PyTorch".
        paper: the paper's value or statement, e.g. "13.8× (Table 3)".
        measured: our number(s), with units.
        holds: ``True``/``False``, or ``None`` when it could not be checked.
        note: how it was decided (thresholds, configuration) or why it is ``n/a``.
    """

    claim: str
    paper: str
    measured: str
    holds: bool | None
    note: str = ""

    def __post_init__(self) -> None:
        if self.holds is not None and not isinstance(self.holds, bool):
            # numpy booleans are accepted and normalised
            object.__setattr__(self, "holds", bool(self.holds))


def holds_text(holds: bool | None) -> str:
    """Serialise a verdict: ``yes``, ``no`` or ``n/a``."""
    return _TEXT[None if holds is None else bool(holds)]


def parse_holds(text: str) -> bool | None:
    """Inverse of :func:`holds_text`; raises ValueError on anything else."""
    key = text.strip().lower()
    if key not in _PARSE:
        raise ValueError(f"holds must be one of yes/no/n/a, got {text!r}")
    return _PARSE[key]


def claims_frame(claims: Iterable[Claim]) -> pd.DataFrame:
    """Claims as a DataFrame of strings with :data:`CLAIM_COLUMNS`."""
    rows = [
        {
            "claim": c.claim,
            "paper": c.paper,
            "measured": c.measured,
            "holds": holds_text(c.holds),
            "note": c.note,
        }
        for c in claims
    ]
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def write_claims(claims: Iterable[Claim], path: str | Path) -> None:
    """Write ``claims.csv`` atomically (columns :data:`CLAIM_COLUMNS`, all values quoted as needed)."""
    write_csv(claims_frame(claims), path, quoting=csv.QUOTE_MINIMAL)


def read_claims(path: str | Path) -> list[Claim]:
    """Read a ``claims.csv`` back.

    Raises:
        InputError: if the file is missing, has other columns, or an invalid ``holds`` value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "claims file not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(df.columns) not in (CLAIM_COLUMNS, CLAIM_COLUMNS[:4]):
        raise InputError(
            path, f"expected columns {', '.join(CLAIM_COLUMNS)}, got {', '.join(df.columns)}"
        )
    out = []
    for i, row in df.iterrows():
        try:
            holds = parse_holds(row["holds"])
        except ValueError as err:
            raise InputError(path, f"row {i + 2}: {err}") from None
        out.append(Claim(row["claim"], row["paper"], row["measured"], holds, row.get("note", "")))
    return out
