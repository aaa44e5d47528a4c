"""Reports: tables, figures, claims, Markdown and provenance shared by every paper.

Generic helpers live in :mod:`~medrepro.report.markdown`, :mod:`~medrepro.report.figures`,
:mod:`~medrepro.report.claims`, :mod:`~medrepro.report.provenance`,
:mod:`~medrepro.report.inputs` (reading artefacts) and :mod:`~medrepro.report.document` (header,
provenance section, final writes); one module per paper
(e.g. :mod:`~medrepro.report.cephalometry`) turns that paper's artefacts into a report. Published
numbers, the only typed-in numbers, live in :mod:`medrepro.report.published`.
"""

from __future__ import annotations

__all__: list[str] = []
