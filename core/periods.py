"""Calendar dates to UTC epoch-ms instants and time proration (pure, standard library only).

Windows are half-open ``[start, end)``; a date means local midnight in the given zone.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from dcpue.core.readings import datetime_to_ms


def date_ms(day: date, zone: ZoneInfo) -> int:
    """Local midnight starting ``day`` in ``zone`` -> UTC epoch ms."""
    return datetime_to_ms(datetime.combine(day, time(0), tzinfo=zone))


def overlap_share(start_ms: int, end_ms: int, window_start_ms: int, window_end_ms: int) -> float:
    """Share (0-1) of ``[start, end)`` that lies inside the window (proration by time)."""
    inside = min(end_ms, window_end_ms) - max(start_ms, window_start_ms)
    return max(inside, 0) / (end_ms - start_ms)
