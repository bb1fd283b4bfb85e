"""Embedded time-series store on DuckDB: the durable local history every component reads.

Readings are keyed by (meter, quantity, ts_ms); appends are idempotent (an anti-join against the
stored keys of the batch's time range, cheaper than a unique index at a year of 1-minute data),
so replaying a batch never double-counts. Every row gets an increasing ``seq`` so forwarders can read by cursor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
from dcpue.core.readings import Reading, ReadingColumns

Aggregation = Literal["mean", "last", "first", "min", "max", "sum", "delta", "count"]
AGGREGATIONS: tuple[str, ...] = ("mean", "last", "first", "min", "max", "sum", "delta", "count")

_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS reading_seq;
CREATE TABLE IF NOT EXISTS readings (
    meter VARCHAR NOT NULL,
    quantity VARCHAR NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE NOT NULL,
    unit VARCHAR NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('reading_seq')
);
CREATE SEQUENCE IF NOT EXISTS dead_letter_seq;
CREATE TABLE IF NOT EXISTS dead_letters (
    id BIGINT NOT NULL DEFAULT nextval('dead_letter_seq'),
    received_ms BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    raw BLOB
);
CREATE TABLE IF NOT EXISTS cursors (name VARCHAR PRIMARY KEY, position BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""


class StoreBusy(RuntimeError):
    """The store file is held by another process (DuckDB allows one writer process)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected payload or reading, kept verbatim with the reason it was refused.

    ``source`` is the adapter (``mqtt``, ``modbus``, ...), ``origin`` the topic or device,
    ``reason`` a short machine-readable code (``bad_json``, ``unknown_meter``, ``nan``, ...).
    """

    received_ms: int
    source: str
    origin: str
    reason: str
    detail: str
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """A time series: bucket (or sample) start times in UTC ms and values; raw samples from
    :meth:`Store.series` also carry each sample's unit (None for aggregates)."""

    ts_ms: np.ndarray
    value: np.ndarray
    unit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts_ms)


class Store:
    """DuckDB-backed reading store; safe to share between threads of one process."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            holder = str(exc).split("Conflicting lock is held in", 1)[-1].split(" by user", 1)[0]
            raise StoreBusy(
                f"store {self.path} is in use by another process ({holder.strip()}); "
                "stop it, or read the running daemon's HTTP API (/api/pue, /grafana/query)"
            ) from None
        self._lock = threading.RLock()
        with self._lock:
            self._con.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, params: Sequence[object] = ()) -> duckdb.DuckDBPyConnection:
        """Run SQL on a fresh cursor (safe across threads) under the store's write lock.

        Components use it for tables they own (proposals, alerts, ...).
        """
        with self._lock:
            return self._con.cursor().execute(sql, list(params))

    # -- writes -----------------------------------------------------------------------------
    def append(self, readings: ReadingColumns | Iterable[Reading]) -> int:
        """Insert readings, ignoring any (meter, quantity, ts) already stored.

        Returns the number of rows actually added.
        """
        cols = readings if isinstance(readings, ReadingColumns) else ReadingColumns.from_readings(
            readings
        )
        if len(cols) == 0:
            return 0
        frame = pd.DataFrame(
            {
                "meter": pd.Categorical(cols.meter),
                "quantity": pd.Categorical(cols.quantity),
                "ts": cols.ts_ms.astype(np.int64, copy=False),
                "value": cols.value.astype(np.float64, copy=False),
                "unit": pd.Categorical(cols.unit),
            }
        )
        lo, hi = int(cols.ts_ms.min()), int(cols.ts_ms.max())
        with self._lock:
            self._con.register("_incoming", frame)
            try:
                # Anti-join against stored keys in the batch's time range (zone maps prune the
                # rest), then keep one row per key within the batch itself.
                added = self._con.execute(
                    "INSERT INTO readings (meter, quantity, ts, value, unit) "
                    "SELECT meter, quantity, ts, value, unit FROM ("
                    "  SELECT i.meter::VARCHAR AS meter, i.quantity::VARCHAR AS quantity, i.ts,"
                    "         i.value, i.unit::VARCHAR AS unit FROM _incoming i"
                    ") n ANTI JOIN (SELECT meter, quantity, ts FROM readings"
                    "  WHERE ts BETWEEN ? AND ?) e"
                    " ON e.meter = n.meter AND e.quantity = n.quantity AND e.ts = n.ts "
                    "QUALIFY row_number() OVER (PARTITION BY meter, quantity, ts) = 1 "
                    "ORDER BY ts, meter",
                    [lo, hi],
                ).fetchone()
            finally:
                self._con.unregister("_incoming")
        return int(added[0]) if added else 0

    def add_dead_letters(self, letters: Iterable[DeadLetter]) -> int:
        rows = [(d.received_ms, d.source, d.origin, d.reason, d.detail, d.raw) for d in letters]
        if rows:
            with self._lock:
                self._con.executemany(
                    "INSERT INTO dead_letters (received_ms, source, origin, reason, detail, raw) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        return len(rows)

    # -- reads ------------------------------------------------------------------------------
    def count(self, meter: str | None = None) -> int:
        if meter is None:
            return int(self.execute("SELECT count(*) FROM readings").fetchone()[0])
        return int(self.execute("SELECT count(*) FROM readings WHERE meter = ?", [meter]).fetchone()[0])

    def meters(self) -> list[tuple[str, str, str]]:
        """Distinct (meter, quantity, unit) present in the store."""
        return [tuple(r) for r in self.execute(
            "SELECT DISTINCT meter, quantity, unit FROM readings ORDER BY 1, 2"
        ).fetchall()]

    def time_range(self, meter: str | None = None) -> tuple[int, int] | None:
        """(first, last) timestamp in ms of one meter or of the whole store; None if empty."""
        where, params = ("WHERE meter = ?", [meter]) if meter else ("", [])
        lo, hi = self.execute(f"SELECT min(ts), max(ts) FROM readings {where}", params).fetchone()
        return None if lo is None else (int(lo), int(hi))

    def read(
        self,
        meters: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        quantity: str | None = None,
    ) -> ReadingColumns:
        """Raw readings in [start_ms, end_ms), ordered by meter then time."""
        sql, params = self._where(meters, start_ms, end_ms, quantity)
        frame = self.execute(
            f"SELECT ts, meter, quantity, value, unit FROM readings {sql} ORDER BY meter, ts",
            params,
        ).df()
        return _frame_to_columns(frame)

    def series(
        self, meter: str, quantity: str | None = None,
        start_ms: int | None = None, end_ms: int | None = None,
    ) -> Series:
        """One meter's raw samples in time order, with their units (a narrow query straight
        into NumPy: a year of 1-minute samples in about a tenth of a second)."""
        sql, params = self._where([meter], start_ms, end_ms, quantity)
        got = self.execute(
            f"SELECT ts, value, unit FROM readings {sql} ORDER BY ts", params
        ).fetchnumpy()
        return Series(
            np.asarray(got["ts"], dtype=np.int64),
            np.asarray(got["value"], dtype=np.float64),
            np.asarray(got["unit"], dtype=object),
        )

    def latest(self, meter: str, quantity: str | None = None) -> Reading | None:
        sql, params = self._where([meter], None, None, quantity)
        row = self.execute(
            f"SELECT ts, meter, quantity, value, unit FROM readings {sql} ORDER BY ts DESC LIMIT 1",
            params,
        ).fetchone()
        return None if row is None else Reading(int(row[0]), row[1], row[2], float(row[3]), row[4])

    def bucketed(
        self,
        meters: Sequence[str],
        start_ms: int,
        end_ms: int,
        step_ms: int,
        agg: Aggregation = "mean",
        quantity: str | None = None,
    ) -> dict[str, Series]:
        """Aggregate each meter's samples into buckets ``[start + k*step, start + (k+1)*step)``.

        ``delta`` is the counter increase per bucket: last value in the bucket minus the last
        value before it (the first sample of the range is its own baseline). Counter rollovers
        and resets are not corrected here; the PUE calculator does that.
        """
        if agg not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {agg!r}; use one of {', '.join(AGGREGATIONS)}")
        if step_ms <= 0:
            raise ValueError("step_ms must be positive")
        sql, params = self._where(meters, start_ms, end_ms, quantity)
        start_ms, step_ms = int(start_ms), int(step_ms)
        bucket = f"({start_ms} + (ts - {start_ms}) // {step_ms} * {step_ms})"
        expr = {
            "mean": "avg(value)", "min": "min(value)", "max": "max(value)", "sum": "sum(value)",
            "count": "count(*)", "last": "arg_max(value, ts)", "first": "arg_min(value, ts)",
            "delta": "arg_max(value, ts)",
        }[agg]
        query = (
            f"SELECT meter, {bucket} AS bucket, {expr} AS v FROM readings {sql} "
            "GROUP BY meter, bucket ORDER BY meter, bucket"
        )
        if agg == "delta":
            query = (
                "SELECT meter, bucket, v - coalesce(lag(v) OVER (PARTITION BY meter ORDER BY "
                f"bucket), first_v) AS v FROM (SELECT meter, {bucket} AS bucket, "
                "arg_max(value, ts) AS v, min_by(value, ts) AS first_v "
                f"FROM readings {sql} GROUP BY meter, bucket) ORDER BY meter, bucket"
            )
        frame = self.execute(query, params).df()
        out: dict[str, Series] = {}
        for meter, group in frame.groupby("meter", sort=False):
            out[str(meter)] = Series(
                group["bucket"].to_numpy(np.int64), group["v"].to_numpy(np.float64)
            )
        return out

    # -- cursors and state (store-and-forward, daemon restart) ------------------------------
    def read_since(self, after_seq: int, limit: int) -> tuple[ReadingColumns, int]:
        """Readings with ``seq > after_seq`` in insertion order; returns them and the last seq."""
        frame = self.execute(
            "SELECT ts, meter, quantity, value, unit, seq FROM readings WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            [after_seq, limit],
        ).df()
        last = int(frame["seq"].iloc[-1]) if len(frame) else after_seq
        return _frame_to_columns(frame), last

    def backlog(self, after_seq: int) -> int:
        return int(self.execute("SELECT count(*) FROM readings WHERE seq > ?", [after_seq]).fetchone()[0])

    def get_cursor(self, name: str) -> int:
        row = self.execute("SELECT position FROM cursors WHERE name = ?", [name]).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, position: int) -> None:
        self.execute(
            "INSERT OR REPLACE INTO cursors (name, position) VALUES (?, ?)", [name, position]
        )

    def get_state(self, key: str) -> str | None:
        row = self.execute("SELECT value FROM state WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        self.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", [key, value])

    # -- dead letters -----------------------------------------------------------------------
    def dead_letter_counts(self) -> dict[str, int]:
        rows = self.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall()
        return {str(r): int(n) for r, n in rows}

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.execute(
            "SELECT received_ms, source, origin, reason, detail, raw FROM dead_letters "
            "ORDER BY id DESC LIMIT ?",
            [limit],
        ).fetchall()
        return [DeadLetter(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    @staticmethod
    def _where(
        meters: Sequence[str] | None, start_ms: int | None, end_ms: int | None, quantity: str | None
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if meters is not None:
            clauses.append(f"meter IN ({', '.join('?' * len(meters))})" if meters else "FALSE")
            params.extend(meters)
        if start_ms is not None:
            clauses.append("ts >= ?")
            params.append(int(start_ms))
        if end_ms is not None:
            clauses.append("ts < ?")
            params.append(int(end_ms))
        if quantity is not None:
            clauses.append("quantity = ?")
            params.append(quantity)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _frame_to_columns(frame: pd.DataFrame) -> ReadingColumns:
    return ReadingColumns(
        frame["ts"].to_numpy(np.int64),
        frame["meter"].to_numpy(object),
        frame["quantity"].to_numpy(object),
        frame["value"].to_numpy(np.float64),
        frame["unit"].to_numpy(object),
    )
