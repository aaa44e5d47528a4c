"""Claims: serialisation of verdicts and the exact CSV layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medrepro.io.errors import InputError
from medrepro.report.claims import (
    CLAIM_COLUMNS,
    Claim,
    claims_frame,
    holds_text,
    parse_holds,
    read_claims,
    write_claims,
)


def test_holds_text() -> None:
    assert holds_text(True) == "yes"
    assert holds_text(False) == "no"
    assert holds_text(None) == "n/a"
    assert holds_text(np.bool_(True)) == "yes"


@pytest.mark.parametrize("text", ["yes", "no", "n/a", " YES "])
def test_parse_roundtrip(text: str) -> None:
    assert holds_text(parse_holds(text)) == text.strip().lower()


def test_parse_rejects_other_values() -> None:
    with pytest.raises(ValueError):
        parse_holds("maybe")


def test_numpy_bool_normalised() -> None:
    c = Claim("x", "p", "m", np.bool_(False))
    assert c.holds is False and isinstance(c.holds, bool)


def test_write_claims_exact_header_and_values(tmp_path: Path) -> None:
    claims = [
        Claim("OpenVINO is faster", "13.8× (Table 3)", "4.2×", True, "f32 sync"),
        Claim('comma, "quote" | pipe', "1.72 mm", "2.0 mm", False),
        Claim("not run", "3.8×", "n/a", None, "model missing"),
    ]
    path = tmp_path / "sub" / "claims.csv"
    write_claims(claims, path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(CLAIM_COLUMNS)
    assert rows[0][:4] == ["claim", "paper", "measured", "holds"]
    assert [r[3] for r in rows[1:]] == ["yes", "no", "n/a"]
    assert rows[2][0] == 'comma, "quote" | pipe'
    assert read_claims(path) == claims
    assert not list(path.parent.glob(".*tmp*"))


def test_claims_frame_columns() -> None:
    df = claims_frame([Claim("a", "b", "c", None)])
    assert tuple(df.columns) == CLAIM_COLUMNS
    assert df.loc[0, "holds"] == "n/a"


def test_read_claims_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        read_claims(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("claim,paper,measured,holds\nx,y,z,perhaps\n")
    with pytest.raises(InputError, match="row 2"):
        read_claims(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="expected columns"):
        read_claims(wrong)
