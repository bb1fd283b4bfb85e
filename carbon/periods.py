"""Reporting windows: calendar dates in a time zone to UTC epoch-ms windows and their labels.

Windows are half-open ``[start, end)``; dates mean local midnight in the given zone
(:func:`dcpue.core.periods.date_ms`, also importable from here).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from dcpue.core.periods import date_ms


@dataclass(frozen=True, slots=True)
class Window:
    """A reporting window: its table label and UTC epoch-ms bounds ``[start_ms, end_ms)``."""

    label: str
    start_ms: int
    end_ms: int


def period_label(start: date, end: date) -> str:
    """``2023`` for a calendar year, ``2023-03`` for a calendar month, else ``start..end``."""
    if (start.month, start.day, end.month, end.day) == (1, 1, 1, 1) and end.year == start.year + 1:
        return str(start.year)
    if start.day == 1 and end == _next_month(start):
        return f"{start.year}-{start.month:02d}"
    return f"{start.isoformat()}..{end.isoformat()}"


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def report_windows(start: date, end: date, zone: ZoneInfo, monthly: bool) -> list[Window]:
    """One window ``[start, end)``, or calendar months (the first and last may be partial)."""
    if end <= start:
        raise ValueError(f"end {end} must be after start {start} (end is exclusive)")
    edges = [start]
    if monthly:
        while (nxt := _next_month(edges[-1].replace(day=1))) < end:
            edges.append(nxt)
    edges.append(end)
    return [Window(period_label(a, b), date_ms(a, zone), date_ms(b, zone))
            for a, b in itertools.pairwise(edges)]
