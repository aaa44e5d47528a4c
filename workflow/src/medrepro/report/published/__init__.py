"""The papers' published numbers: the only typed-in numbers of the reports.

One module per paper; every value cites its table. Reports always label them "published".
"""

from __future__ import annotations

__all__: list[str] = []
