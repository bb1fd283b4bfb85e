"""The store tables metrics owns: operator-recorded meter replacements and counter events.

``meter_replacements``: one row per swap recorded with ``dcpue meter replace`` (closing reading
of the old meter, opening reading of the new one, in the meter's unit). ``counter_events``: the
corrections and data-quality findings of the counter/power engine (rollover, reset,
replacement, jump, outlier, over_ceiling, negative_power, recorded_replacement), keyed by
(meter, ts, kind) so recording the same finding twice keeps one row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dcpue.config.topology import Meter
from dcpue.core.store import Store
from dcpue.core.units import unit
from dcpue.metrics.energy import CounterEvent, Replacement

_TABLES = """
CREATE TABLE IF NOT EXISTS meter_replacements (
    meter VARCHAR NOT NULL, at_ms BIGINT NOT NULL, old_final DOUBLE NOT NULL,
    new_initial DOUBLE NOT NULL, unit VARCHAR NOT NULL, recorded_ms BIGINT NOT NULL,
    PRIMARY KEY (meter, at_ms));
CREATE TABLE IF NOT EXISTS counter_events (
    meter VARCHAR NOT NULL, ts BIGINT NOT NULL, kind VARCHAR NOT NULL, before DOUBLE NOT NULL,
    after DOUBLE NOT NULL, counted DOUBLE NOT NULL, PRIMARY KEY (meter, ts, kind));
"""


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """A stored :class:`CounterEvent` of one meter."""

    meter: str
    event: CounterEvent

    def as_dict(self) -> dict[str, object]:
        e = self.event
        return {"meter": self.meter, "ts_ms": e.ts_ms, "kind": e.kind, "before": e.before,
                "after": e.after, "counted": e.counted, "error": e.error}


def _ensure(store: Store) -> None:
    store.execute(_TABLES)


def record_replacement(
    store: Store, meter: Meter, at_ms: int, old_final: float, new_initial: float, now_ms: int
) -> None:
    """Store a meter swap (values in the meter's unit); recording the same ``at_ms`` again
    replaces it."""
    _ensure(store)
    store.execute(
        "INSERT OR REPLACE INTO meter_replacements VALUES (?, ?, ?, ?, ?, ?)",
        [meter.id, int(at_ms), float(old_final), float(new_initial), meter.unit, int(now_ms)],
    )


def replacements(store: Store, meter: Meter) -> tuple[Replacement, ...]:
    """The recorded swaps of ``meter`` in time order, values in the canonical unit."""
    _ensure(store)
    rows = store.execute(
        "SELECT at_ms, old_final, new_initial, unit FROM meter_replacements WHERE meter = ? "
        "ORDER BY at_ms", [meter.id],
    ).fetchall()
    out = []
    for at_ms, old, new, symbol in rows:
        u = unit(symbol)
        out.append(Replacement(int(at_ms), old * u.scale + u.offset, new * u.scale + u.offset))
    return tuple(out)


def record_events(store: Store, meter: str, events: Iterable[CounterEvent]) -> int:
    """Store events of ``meter`` (already stored ones are kept once); returns how many given."""
    rows = [[meter, e.ts_ms, e.kind, e.before, e.after, e.counted] for e in events]
    if not rows:
        return 0
    _ensure(store)
    for row in rows:
        store.execute("INSERT OR IGNORE INTO counter_events VALUES (?, ?, ?, ?, ?, ?)", row)
    return len(rows)


def list_events(
    store: Store, meter: str | None = None, start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[MeterEvent]:
    """Stored events in time order, optionally of one meter and inside ``[start_ms, end_ms)``."""
    _ensure(store)
    clauses, params = [], []
    for sql, value in (("meter = ?", meter), ("ts >= ?", start_ms), ("ts < ?", end_ms)):
        if value is not None:
            clauses.append(sql)
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = store.execute(
        f"SELECT meter, ts, kind, before, after, counted FROM counter_events {where} "
        "ORDER BY ts, meter", params,
    ).fetchall()
    return [MeterEvent(m, CounterEvent(int(t), k, float(b), float(a), float(c)))
            for m, t, k, b, a, c in rows]
