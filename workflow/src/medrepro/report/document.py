"""Parts every paper's report shares: the header, the provenance section and the final writes.

A report stage computes its tables and figures first; :func:`write_claims_provenance_report`
then writes ``claims.csv``, ``provenance.json`` and, last, ``report.md`` (each atomically).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medrepro.io.atomic import write_json, write_text
from medrepro.report.claims import Claim, write_claims
from medrepro.report.provenance import provenance

__all__ = ["report_header", "provenance_section", "write_claims_provenance_report"]


def report_header(title: str, citation: str, stage: str, label: str) -> list[str]:
    """Title, the reproduced paper and the note that only ``label``-ed numbers are typed in."""
    return [
        f"# {title}",
        "",
        f"Reproduces: {citation}",
        "",
        f"Every number below is computed from this run's artefacts by `medrepro {stage}`; the "
        f"only typed-in numbers are the paper's, always labelled **{label}**.",
        "",
    ]


def provenance_section(prov: dict[str, Any]) -> list[str]:
    """The ``## Provenance`` section: creation time, git commit and package versions."""
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items() if v)
    return [
        "## Provenance",
        "",
        f"Generated {prov.get('created_utc')} at git commit `{prov.get('git_commit')}` with "
        f"{versions}. Configuration, seed, CPU and input checksums: "
        "[provenance.json](provenance.json).",
        "",
    ]


def write_claims_provenance_report(
    out: Path,
    claims: Iterable[Claim],
    config: dict[str, Any],
    seed: int | None,
    inputs: Iterable[str | Path],
    report: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
) -> None:
    """Write ``claims.csv``, ``provenance.json`` and ``report.md`` (last) under ``out``.

    Args:
        out: the report's output directory.
        claims: the evaluated claims.
        config: the run's configuration (provenance).
        seed: the run's seed (provenance).
        inputs: every file read (checksummed in the provenance).
        report: stage-specific details, stored under ``provenance["report"]``.
        render: the Markdown report, given the provenance.
    """
    write_claims(claims, out / "claims.csv")
    prov = provenance(config, seed, inputs=inputs)
    prov["report"] = report
    write_json(out / "provenance.json", prov)
    write_text(out / "report.md", render(prov))
