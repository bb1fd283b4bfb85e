"""Embedded time-series store on DuckDB: the durable local history every component reads.

Layout (measured in ``bench/store.py``): raw rows hold only integers and the value — ``sid``
(a series id for (meter, quantity) from the ``series`` dimension table), ``ts`` (UTC ms),
``value``, ``uid`` (unit id, ``units`` table) and ``seq``. Appends go to a small ``raw_hot``
table; :meth:`Store.maintain` moves it, ordered by (sid, ts), into one table per calendar
month of the timestamp (``raw_YYYYMM``), so every moved chunk lets DuckDB's zone maps skip
other meters; once a newer month exists, the closed month is sorted by (sid, ts) as a whole
and one meter's year reads about one row group per month. Retention drops whole months.

Readings are keyed by (meter, quantity, ts_ms); appends are idempotent (an anti-join against
the stored keys of the batch's time range), so replaying a batch never double-counts. Every
row gets an increasing ``seq`` so forwarders can read by cursor. A view ``readings`` (meter,
quantity, ts, value, unit, seq) keeps ad-hoc SQL working.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb
import numpy as np
from dcpue.core.readings import Reading, ReadingColumns

if TYPE_CHECKING:  # pandas is loaded by the writers that need it: readers (dcpue pue) skip it
    import pandas as pd

log = logging.getLogger(__name__)

Aggregation = Literal["mean", "last", "first", "min", "max", "sum", "delta", "count"]
AGGREGATIONS: tuple[str, ...] = ("mean", "last", "first", "min", "max", "sum", "delta", "count")

#: Storable timestamps: 1900-01-01 <= ts < 10000-01-01 (UTC ms); month tables are named by year.
TS_MIN_MS = int(np.datetime64("1900-01-01", "ms").astype(np.int64))
TS_MAX_MS = int(np.datetime64("10000-01-01", "ms").astype(np.int64))
DAY_MS = 86_400_000
#: A sorted month is sorted again once this share of its rows arrived after the last sort.
RESORT_SHARE = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    sid INTEGER PRIMARY KEY, meter VARCHAR NOT NULL, quantity VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS units (uid SMALLINT PRIMARY KEY, unit VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS series_units (sid INTEGER NOT NULL, uid SMALLINT NOT NULL);
CREATE TABLE IF NOT EXISTS raw_partitions (
    name VARCHAR PRIMARY KEY, month INTEGER NOT NULL, sorted_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS raw_hot (
    sid INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE NOT NULL, uid SMALLINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS dead_letter_seq;
CREATE TABLE IF NOT EXISTS dead_letters (
    id BIGINT NOT NULL DEFAULT nextval('dead_letter_seq'),
    received_ms BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    raw BLOB,
    count BIGINT NOT NULL DEFAULT 1
);
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS count BIGINT DEFAULT 1;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS merge_key VARCHAR;
CREATE TABLE IF NOT EXISTS cursors (name VARCHAR PRIMARY KEY, position BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""
_PARTITION = (
    "CREATE TABLE {name} (sid INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE NOT NULL, "
    "uid SMALLINT NOT NULL, seq BIGINT NOT NULL)"
)
#: Errors of the store itself (disk full, closed, I/O), as opposed to a batch it cannot take.
SYSTEM_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.IOException, duckdb.ConnectionException, duckdb.FatalException,
    duckdb.OutOfMemoryException, duckdb.TransactionException, OSError, MemoryError,
)


class StoreBusy(RuntimeError):
    """The store file is held by another process (DuckDB allows one writer process)."""


class StoreLayoutError(RuntimeError):
    """The store file has a layout this version cannot read or migrate."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected payload or reading, kept verbatim with the reason it was refused.

    ``source`` is the adapter (``mqtt``, ``modbus``, ...), ``origin`` the topic or device,
    ``reason`` a short machine-readable code (``bad_json``, ``unknown_meter``, ``nan``, ...).
    ``count`` > 1 marks an aggregate: that many letters of this (origin, reason) beyond the
    per-minute cap, of which this one is kept as the example.
    """

    received_ms: int
    source: str
    origin: str
    reason: str
    detail: str
    raw: bytes | None = None
    count: int = 1
    #: Set on an aggregate's delta: rows with the same key are one row whose count adds up.
    merge_key: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """A time series: bucket (or sample) start times in UTC ms and values; raw samples from
    :meth:`Store.series` also carry each sample's unit (None for aggregates)."""

    ts_ms: np.ndarray
    value: np.ndarray
    unit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(slots=True)
class _Partition:
    name: str
    month: int | None  # months since 1970-01; None: the hot table (any time)
    row_count: int
    #: Upper bound of the seq of its rows (seq may have gaps).
    max_seq: int
    #: Rows appended since the partition was last sorted by (sid, ts).
    unsorted: int
    #: Rows with seq <= this were sorted.
    sorted_seq: int

    @property
    def start_ms(self) -> int:
        return TS_MIN_MS if self.month is None else _month_start_ms(self.month)

    @property
    def end_ms(self) -> int:
        return TS_MAX_MS if self.month is None else _month_start_ms(self.month + 1)


def _month_start_ms(month: int) -> int:
    return int(np.datetime64(month, "M").astype("datetime64[ms]").astype(np.int64))


def _partition_name(month: int) -> str:
    return f"raw_{1970 + month // 12:04d}{month % 12 + 1:02d}"


class Store:
    """DuckDB-backed reading store; safe to share between threads of one process.

    Args:
        path: DuckDB file, or ``:memory:``.
        raw_retention_days: raw readings older than this are dropped by :meth:`maintain`
            (None: kept forever).
        dead_letter_retention_days, dead_letter_max_rows: bounds applied to dead letters by
            :meth:`maintain` (None: unbounded).
        hot_rows: :meth:`maintain` moves the hot table into the month tables once it holds
            this many rows.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        raw_retention_days: float | None = None,
        dead_letter_retention_days: float | None = 30.0,
        dead_letter_max_rows: int | None = 100_000,
        hot_rows: int = 200_000,
    ) -> None:
        self.path = str(path)
        self.hot_rows = hot_rows
        self.raw_retention_days = raw_retention_days
        self.dead_letter_retention_days = dead_letter_retention_days
        self.dead_letter_max_rows = dead_letter_max_rows
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
        self._maint_lock = threading.Lock()
        with self._lock:
            self._con.execute(_SCHEMA)
            self._migrate_v0()
            self._load_catalog()
            if not self._has_view():
                self._refresh_view()

    # -- catalog (dimension tables and partitions, cached in memory) -------------------------
    def _load_catalog(self) -> None:
        con = self._con
        self._sid: dict[tuple[str, str], int] = {
            (m, q): int(s) for s, m, q in con.execute("SELECT sid, meter, quantity FROM series").fetchall()
        }
        self._meter_sids: dict[str, list[int]] = {}
        self._sid_meter: dict[int, tuple[str, str]] = {}
        for (m, q), s in sorted(self._sid.items(), key=lambda kv: kv[1]):
            self._meter_sids.setdefault(m, []).append(s)
            self._sid_meter[s] = (m, q)
        self._uid: dict[str, int] = {
            u: int(i) for i, u in con.execute("SELECT uid, unit FROM units").fetchall()
        }
        self._units = np.empty(max(self._uid.values(), default=-1) + 1, dtype=object)
        for u, i in self._uid.items():
            self._units[i] = u
        self._pairs: set[tuple[int, int]] = {
            (int(s), int(u)) for s, u in con.execute("SELECT sid, uid FROM series_units").fetchall()
        }
        listed = con.execute(
            "SELECT name, month, sorted_seq FROM raw_partitions ORDER BY month"
        ).fetchall()
        # Row counts and the newest seq come from the tables themselves, so an append needs
        # no bookkeeping writes beside its INSERT.
        stats = {
            str(r[0]): r[1:] for r in con.execute(" UNION ALL ".join(
                f"SELECT '{n}', count(*), coalesce(max(seq), 0), count(*) FILTER (WHERE seq > {ss})"
                f" FROM {n}" for n, _, ss in [*listed, ("raw_hot", None, 0)]
            )).fetchall()
        }
        self._parts: dict[int, _Partition] = {
            int(mo): _Partition(n, int(mo), *(int(v) for v in stats[n]), int(ss))
            for n, mo, ss in listed
        }
        self._hot = _Partition("raw_hot", None, *(int(v) for v in stats["raw_hot"]), 0)
        # fetchall, not fetchone, on the shared connection: DuckDB 2 keeps a fetchone()
        # result open, and the next register() on the connection would fail.
        rows = con.execute("SELECT value FROM store_meta WHERE key = 'next_seq'").fetchall()
        self._next_seq = max([
            int(rows[0][0]) if rows else 1,
            *(p.max_seq + 1 for p in (*self._parts.values(), self._hot)),
        ])

    def _has_view(self) -> bool:
        return bool(self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'readings' "
            "AND table_type = 'VIEW'"
        ).fetchall()[0][0])

    def _refresh_view(self) -> None:
        union = " UNION ALL ".join(f"SELECT * FROM {p.name}" for p in self._all())
        self._con.execute(
            "CREATE OR REPLACE VIEW readings AS SELECT s.meter, s.quantity, r.ts, r.value, "
            f"u.unit, r.seq FROM ({union}) r JOIN series s USING (sid) JOIN units u USING (uid)"
        )

    def _ordered(self) -> list[_Partition]:
        """The month tables, oldest first."""
        return [self._parts[m] for m in sorted(self._parts)]

    def _all(self) -> list[_Partition]:
        """The month tables, oldest first, then the hot table."""
        return [*self._ordered(), self._hot]

    def _migrate_v0(self) -> None:
        """Move a pre-partition ``readings`` table (strings per row) into the month tables."""
        kinds = self._con.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = 'readings'"
        ).fetchall()
        if not kinds or kinds[0][0] == "VIEW":
            return
        con = self._con
        n = int(con.execute("SELECT count(*) FROM readings").fetchall()[0][0])
        started = time.perf_counter()
        con.execute("BEGIN")
        try:
            lo, hi = con.execute("SELECT min(ts), max(ts) FROM readings").fetchall()[0]
            if n and (lo < TS_MIN_MS or hi >= TS_MAX_MS):
                raise StoreLayoutError(
                    f"store {self.path}: old readings table has timestamps outside years "
                    "1900-9999; remove them with DuckDB (DELETE FROM readings WHERE ...) and reopen"
                )
            con.execute(
                "INSERT INTO series SELECT (row_number() OVER (ORDER BY meter, quantity))::INTEGER"
                " - 1, meter, quantity FROM (SELECT DISTINCT meter, quantity FROM readings)"
            )
            con.execute(
                "INSERT INTO units SELECT (row_number() OVER (ORDER BY unit))::SMALLINT - 1, unit "
                "FROM (SELECT DISTINCT unit FROM readings)"
            )
            con.execute(
                "CREATE TEMP TABLE _v0 AS SELECT s.sid, r.ts, r.value, u.uid, r.seq, "
                "((year(epoch_ms(r.ts)) - 1970) * 12 + month(epoch_ms(r.ts)) - 1)::INTEGER AS mo "
                "FROM readings r JOIN series s USING (meter, quantity) JOIN units u USING (unit)"
            )
            for (month,) in con.execute("SELECT DISTINCT mo FROM _v0 ORDER BY 1").fetchall():
                name = _partition_name(int(month))
                con.execute(
                    f"CREATE TABLE {name} AS SELECT sid, ts, value, uid, seq FROM _v0 "
                    f"WHERE mo = {int(month)} ORDER BY sid, ts"
                )
                con.execute(
                    f"INSERT INTO raw_partitions SELECT '{name}', {int(month)}, "
                    f"coalesce(max(seq), 0) FROM {name}"
                )
            con.execute("INSERT INTO series_units SELECT DISTINCT sid, uid FROM _v0")
            moved = int(con.execute("SELECT count(*) FROM _v0").fetchall()[0][0])
            if moved != n:
                raise StoreLayoutError(
                    f"store {self.path}: migration moved {moved} of {n} readings; file unchanged"
                )
            con.execute(
                "INSERT OR REPLACE INTO store_meta SELECT 'next_seq', coalesce(max(seq), 0) + 1 "
                "FROM _v0"
            )
            con.execute("DROP TABLE _v0")
            con.execute("DROP TABLE readings")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        log.info("store %s: migrated %d readings to month tables in %.1f s",
                 self.path, n, time.perf_counter() - started)

    # -- lifecycle --------------------------------------------------------------------------
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
        """Insert readings, ignoring any (meter, quantity, ts) already stored; the first of
        several equal keys in one batch wins.

        Returns the number of rows actually added. Raises ValueError for a batch it cannot
        store (timestamps outside years 1900-9999, non-numeric values); nothing is written then.
        """
        return self._write(readings, None)

    def rewrite_series(
        self, meter: str, quantity: str, ts_ms: Sequence[int] | np.ndarray,
        readings: ReadingColumns | Iterable[Reading],
    ) -> int:
        """Replace one series' readings stamped at ``ts_ms`` (UTC ms) by ``readings`` (which
        may hold fewer keys: a key left out is deleted), in ONE transaction, so no reader sees
        a hole and a crash keeps either the old rows or the new. How a derived series
        (``metric.*``) overwrites values it recomputed; the new rows get a new ``seq``, so
        cursor readers (forwarders) send them on. Returns the rows deleted."""
        return self._write(readings, (meter, quantity, np.asarray(ts_ms, dtype=np.int64)))

    def _write(
        self, readings: ReadingColumns | Iterable[Reading],
        replace: tuple[str, str, np.ndarray] | None,
    ) -> int:
        cols = readings if isinstance(readings, ReadingColumns) else ReadingColumns.from_readings(
            readings
        )
        n = len(cols)
        if n == 0 and replace is None:
            return 0
        ts = _checked_ts(cols.ts_ms)
        value = np.asarray(cols.value, dtype=np.float64)
        mq_codes, mq_keys, unit_codes, unit_keys = _empty_codes() if n == 0 else (
            *_factorize_pairs(cols.meter, cols.quantity),
            *_factorize(np.asarray(cols.unit, dtype=object)))
        if (mq_codes < 0).any() or (unit_codes < 0).any():
            raise ValueError("readings need a meter, a quantity and a unit")
        with self._lock:
            con = self._con
            # One INSERT commits on its own; new dimension rows or a delete need a transaction.
            single = replace is None and all(k in self._sid for k in mq_keys) and all(
                u in self._uid for u in unit_keys)
            if not single:
                con.execute("BEGIN")
            try:
                deleted = self._delete_keys(*replace) if replace is not None else []
                added = 0
                if n:
                    sid_of = np.array([self._intern_series(m, q) for m, q in mq_keys],
                                      dtype=np.int32)
                    uid_of = np.array([self._intern_unit(u) for u in unit_keys], dtype=np.int16)
                    sid, uid = sid_of[mq_codes], uid_of[unit_codes]
                    self._intern_pairs(sid, uid, len(unit_keys))
                    added = self._insert(sid, ts, value, uid)
                if not single:
                    con.execute("COMMIT")
            except BaseException:
                if not single:
                    with contextlib.suppress(duckdb.Error):
                        con.execute("ROLLBACK")
                with contextlib.suppress(duckdb.Error):
                    self._load_catalog()
                raise
            for part, count in deleted:
                part.row_count -= count
        return added if replace is None else sum(count for _, count in deleted)

    def _intern_series(self, meter: object, quantity: object) -> int:
        key = (str(meter), str(quantity))
        sid = self._sid.get(key)
        if sid is None:
            sid = len(self._sid)
            self._con.execute("INSERT INTO series VALUES (?, ?, ?)", [sid, *key])
            self._sid[key] = sid
            self._meter_sids.setdefault(key[0], []).append(sid)
            self._sid_meter[sid] = key
        return sid

    def _intern_unit(self, unit: object) -> int:
        unit = str(unit)
        uid = self._uid.get(unit)
        if uid is None:
            uid = len(self._uid)
            if uid > np.iinfo(np.int16).max:
                raise ValueError("too many distinct units")
            self._con.execute("INSERT INTO units VALUES (?, ?)", [uid, unit])
            self._uid[unit] = uid
            self._units = np.append(self._units, np.array([unit], dtype=object))
        return uid

    def _intern_pairs(self, sid: np.ndarray, uid: np.ndarray, n_units: int) -> None:
        if n_units == 1:
            pairs = {(int(s), int(uid[0])) for s in np.unique(sid)}
        else:
            pairs = {(int(k >> 16), int(k & 0xFFFF)) for k in np.unique(
                (sid.astype(np.int64) << 16) | uid.astype(np.int64)
            )}
        for s, u in pairs - self._pairs:
            self._con.execute("INSERT INTO series_units VALUES (?, ?)", [s, u])
            self._pairs.add((s, u))

    def _partition(self, month: int) -> _Partition:
        part = self._parts.get(month)
        if part is None:
            part = _Partition(_partition_name(month), month, 0, 0, 0, 0)
            self._con.execute(_PARTITION.format(name=part.name))
            self._con.execute("INSERT INTO raw_partitions VALUES (?, ?, 0)", [part.name, month])
            self._parts[month] = part
        return part

    def _insert(self, sid: np.ndarray, ts: np.ndarray, value: np.ndarray, uid: np.ndarray) -> int:
        # Order by (ts, sid) and keep the first of equal keys (a stable sort), in NumPy.
        order = np.lexsort((sid, ts))
        sid, ts, value, uid = sid[order], ts[order], value[order], uid[order]
        if len(ts) > 1:
            first = np.ones(len(ts), dtype=bool)
            first[1:] = (ts[1:] != ts[:-1]) | (sid[1:] != sid[:-1])
            if not first.all():
                sid, ts, value, uid = sid[first], ts[first], value[first], uid[first]
        n = len(ts)
        seq = np.arange(self._next_seq, self._next_seq + n, dtype=np.int64)
        frame = {"sid": sid, "ts": ts, "value": value, "uid": uid, "seq": seq}  # NumPy scan
        con = self._con
        lo, hi = int(ts[0]), int(ts[-1])
        stored = " UNION ALL ".join(
            f"SELECT sid, ts FROM {p.name} WHERE ts BETWEEN {lo} AND {hi} "
            f"AND sid BETWEEN {int(sid.min())} AND {int(sid.max())}"
            for p in self._all() if p.end_ms > lo and p.start_ms <= hi
        )
        con.register("_incoming", frame)
        try:
            # Anti-join against the stored keys of the batch's time and series range (zone
            # maps prune the rest). Rows dropped here leave gaps in seq, which is harmless.
            added = int(con.execute(
                f"INSERT INTO raw_hot SELECT n.* FROM _incoming n ANTI JOIN ({stored}) e "
                "ON e.sid = n.sid AND e.ts = n.ts"
            ).fetchall()[0][0])
        finally:
            con.unregister("_incoming")
        self._next_seq += n
        self._hot.max_seq = self._next_seq - 1
        self._hot.row_count += added
        return added

    def replace_rows(
        self, table: str, where: str, params: Sequence[object], frame: pd.DataFrame
    ) -> None:
        """In one transaction, delete the rows of ``table`` matching ``where`` and insert
        ``frame`` (columns in table order): how derived tables overwrite a recomputed range."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                self._con.execute(f"DELETE FROM {table} WHERE {where}", list(params))
                if len(frame):
                    self._con.register("_replacement", frame)
                    try:
                        self._con.execute(f"INSERT INTO {table} SELECT * FROM _replacement")
                    finally:
                        self._con.unregister("_replacement")
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def _delete_keys(self, meter: str, quantity: str, ts_ms: np.ndarray) -> list:
        """Delete one series' rows at ``ts_ms`` inside the caller's transaction; returns
        (partition, rows deleted) pairs for the caller to book after its commit."""
        ts = np.unique(ts_ms)
        sid = self._sid.get((meter, quantity))
        if sid is None or len(ts) == 0:
            return []
        lo, hi = int(ts[0]), int(ts[-1])
        keys = ", ".join(str(int(t)) for t in ts)
        return [(part, int(self._con.execute(
            f"DELETE FROM {part.name} WHERE sid = ? AND ts BETWEEN ? AND ? AND ts IN ({keys})",
            [sid, lo, hi]).fetchall()[0][0]))
            for part in self._all() if part.end_ms > lo and part.start_ms <= hi]

    def add_dead_letters(self, letters: Iterable[DeadLetter]) -> int:
        """Bulk-insert dead letters (one columnar insert) in one transaction; a letter with a
        ``merge_key`` adds its count to the stored row of that key (an aggregate's delta), or
        starts it. Returns how many letters."""
        letters = list(letters)
        rows = [d for d in letters if d.merge_key is None]
        merges = [d for d in letters if d.merge_key is not None]
        if not letters:
            return 0
        def text(name: str) -> np.ndarray:
            return np.array([getattr(d, name) for d in rows], dtype=object)

        frame = {  # DuckDB scans a dict of NumPy arrays (no pandas)
            "received_ms": np.fromiter((d.received_ms for d in rows), np.int64, len(rows)),
            **{name: text(name) for name in ("source", "origin", "reason", "detail", "raw")},
            "count": np.fromiter((d.count for d in rows), np.int64, len(rows)),
        }
        with self._lock:
            con = self._con
            con.execute("BEGIN")
            try:
                if rows:
                    con.register("_letters", frame)
                    try:
                        con.execute(
                            "INSERT INTO dead_letters (received_ms, source, origin, reason, "
                            "detail, raw, count) SELECT received_ms, source, origin, reason, "
                            "detail, raw::BLOB, count FROM _letters"
                        )
                    finally:
                        con.unregister("_letters")
                for d in merges:
                    updated = con.execute(
                        "UPDATE dead_letters SET count = count + ?, detail = ? WHERE "
                        "merge_key = ? AND received_ms BETWEEN ? AND ?",  # zone maps: one minute
                        [d.count, d.detail, d.merge_key, d.received_ms // 60_000 * 60_000,
                         d.received_ms // 60_000 * 60_000 + 59_999]).fetchall()
                    if not updated[0][0]:
                        con.execute(
                            "INSERT INTO dead_letters (received_ms, source, origin, reason, "
                            "detail, raw, count, merge_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [d.received_ms, d.source, d.origin, d.reason, d.detail, d.raw,
                             d.count, d.merge_key])
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
        return len(letters)

    # -- maintenance: sort closed months, retention -----------------------------------------
    def maintain(self, now_ms: int | None = None) -> dict[str, int]:
        """Apply retention (raw readings, dead letters), move the hot table into the month
        tables once it holds ``hot_rows`` rows, and sort closed months by (sid, ts).

        A month is closed once a newer month holds readings. Moving and sorting copy rows
        without holding the write lock (appends go on meanwhile); only the final swap does.
        Returns what was done: ``pruned``, ``dead_letters_pruned``, ``moved``, ``sorted`` (rows).
        """
        now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
        done = {"pruned": 0, "dead_letters_pruned": 0, "moved": 0, "sorted": 0}
        with self._maint_lock:
            if self.raw_retention_days is not None:
                done["pruned"] = self.prune_raw(now_ms - int(self.raw_retention_days * DAY_MS))
            done["dead_letters_pruned"] = self.prune_dead_letters(
                None if self.dead_letter_retention_days is None
                else now_ms - int(self.dead_letter_retention_days * DAY_MS),
                self.dead_letter_max_rows,
            )
            if self._hot.row_count and self._hot.row_count >= self.hot_rows:
                done["moved"] = self._move_hot()
            with self._lock:
                newest = max(self._parts, default=None)
                todo = [
                    p.month for p in self._ordered()
                    if p.month != newest and p.unsorted > RESORT_SHARE * p.row_count
                    and (p.unsorted == p.row_count or p.unsorted > 1000)
                ]
            for month in todo:
                done["sorted"] += self._sort_partition(month)
        return done

    @contextlib.contextmanager
    def _swapping(self, scratch: str) -> Iterator[None]:
        """One transaction (caller holds the lock) that swaps tables; on failure it is rolled
        back, the ``scratch`` table copied outside the lock is dropped, the catalog reloaded."""
        con = self._con
        con.execute("BEGIN")
        try:
            yield
            con.execute("INSERT OR REPLACE INTO store_meta VALUES ('next_seq', ?)", [self._next_seq])
            self._refresh_view()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {scratch}")
            self._load_catalog()
            raise

    def _move_hot(self) -> int:
        """Move the hot table's rows, ordered by (sid, ts), to the end of their month tables."""
        with self._lock:
            snap = self._next_seq - 1
            cursor = self._con.cursor()
        try:
            cursor.execute(
                "CREATE OR REPLACE TABLE raw_moving AS SELECT *, ((year(epoch_ms(ts)) - 1970) * 12"
                f" + month(epoch_ms(ts)) - 1)::INTEGER AS mo FROM raw_hot WHERE seq <= {snap} "
                "ORDER BY sid, ts"
            )
            counts = cursor.execute(
                "SELECT mo, count(*), max(seq) FROM raw_moving GROUP BY mo ORDER BY mo"
            ).fetchall()
        finally:
            cursor.close()
        moved = 0
        with self._lock:
            con = self._con
            with self._swapping("raw_moving"):
                for month, n, top in counts:
                    part = self._partition(int(month))
                    con.execute(
                        f"INSERT INTO {part.name} SELECT sid, ts, value, uid, seq FROM raw_moving "
                        f"WHERE mo = {int(month)}"
                    )
                    part.row_count += int(n)
                    part.unsorted += int(n)
                    part.max_seq = max(part.max_seq, int(top))
                    moved += int(n)
                con.execute(f"CREATE TABLE raw_hot_tail AS SELECT * FROM raw_hot WHERE seq > {snap}")
                con.execute("DROP TABLE raw_hot")
                con.execute("ALTER TABLE raw_hot_tail RENAME TO raw_hot")
                con.execute("DROP TABLE raw_moving")
            self._hot.row_count -= moved
        return moved

    def _sort_partition(self, month: int) -> int:
        with self._lock:
            part = self._parts.get(month)
            if part is None:
                return 0
            snap = self._next_seq - 1
            cursor = self._con.cursor()
        tmp = f"{part.name}_sorted"
        try:
            cursor.execute(
                f"CREATE OR REPLACE TABLE {tmp} AS SELECT * FROM {part.name} WHERE seq <= {snap} "
                "ORDER BY sid, ts"
            )
        finally:
            cursor.close()
        with self._lock:
            con = self._con
            with self._swapping(tmp):
                con.execute(f"INSERT INTO {tmp} SELECT * FROM {part.name} WHERE seq > {snap}")
                tail = int(con.execute(f"SELECT count(*) FROM {tmp} WHERE seq > {snap}").fetchall()[0][0])
                con.execute(f"DROP TABLE {part.name}")
                con.execute(f"ALTER TABLE {tmp} RENAME TO {part.name}")
                con.execute(
                    "UPDATE raw_partitions SET sorted_seq = ? WHERE name = ?", [snap, part.name]
                )
            rows = part.row_count - tail
            part.unsorted, part.sorted_seq = tail, snap
        return rows

    def prune_raw(self, before_ms: int) -> int:
        """Delete raw readings with ``ts < before_ms`` (whole months are dropped); returns rows."""
        removed = 0
        with self._lock:
            con = self._con
            con.execute("BEGIN")
            try:
                for part in self._ordered():
                    if part.start_ms >= before_ms:
                        break
                    if part.end_ms <= before_ms:
                        con.execute(f"DROP TABLE {part.name}")
                        con.execute("DELETE FROM raw_partitions WHERE name = ?", [part.name])
                        removed += part.row_count
                        continue
                    removed += int(con.execute(
                        f"DELETE FROM {part.name} WHERE ts < ?", [int(before_ms)]
                    ).fetchall()[0][0])
                removed += int(con.execute(
                    "DELETE FROM raw_hot WHERE ts < ?", [int(before_ms)]
                ).fetchall()[0][0])
                if removed:
                    # Keep seq increasing even if every row went (cursors of forwarders).
                    con.execute(
                        "INSERT OR REPLACE INTO store_meta VALUES ('next_seq', ?)", [self._next_seq]
                    )
                    con.execute("DELETE FROM series_units")
                    union = " UNION ALL ".join(
                        f"SELECT DISTINCT sid, uid FROM {p.name}" for p in self._all()
                        if p.end_ms > before_ms
                    )
                    con.execute(f"INSERT INTO series_units SELECT DISTINCT * FROM ({union})")
                    self._load_catalog()
                    self._refresh_view()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                self._load_catalog()
                raise
        return removed

    def prune_dead_letters(self, before_ms: int | None, max_rows: int | None) -> int:
        """Delete dead letters received before ``before_ms`` and all but the newest
        ``max_rows``; returns rows deleted."""
        removed = 0
        if before_ms is not None:
            removed += int(self.execute(
                "DELETE FROM dead_letters WHERE received_ms < ?", [int(before_ms)]
            ).fetchone()[0])
        if max_rows is not None:
            removed += int(self.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT coalesce(max(id), 0) - ? "
                "FROM dead_letters)", [int(max_rows)]
            ).fetchone()[0])
        return removed

    # -- reads ------------------------------------------------------------------------------
    def _sids(self, meters: Sequence[str] | None, quantity: str | None) -> list[int] | None:
        """Series ids of ``meters`` (None: all) and ``quantity``; None means no filter."""
        if meters is None and quantity is None:
            return None
        if meters is None:
            return [s for (_, q), s in self._sid.items() if q == quantity]
        out = [s for m in dict.fromkeys(meters) for s in self._meter_sids.get(m, ())]
        if quantity is not None:
            out = [s for s in out if self._sid_meter[s][1] == quantity]
        return out

    def _source(
        self, sids: list[int] | None, start_ms: int | None, end_ms: int | None,
        columns: str = "sid, ts, value, uid, seq", min_seq: int | None = None,
        among: list[_Partition] | None = None,
    ) -> tuple[str, list[object]] | None:
        """``UNION ALL`` of the month tables that can hold matching rows, filtered."""
        if sids is not None and not sids:
            return None
        clauses, params = [], []
        if sids is not None:
            if len(sids) == 1:
                clauses.append(f"sid = {sids[0]}")
            else:
                clauses.append(
                    f"sid BETWEEN {min(sids)} AND {max(sids)} AND sid IN ({', '.join(map(str, sids))})"
                )
        if start_ms is not None:
            clauses.append("ts >= ?")
            params.append(int(start_ms))
        if end_ms is not None:
            clauses.append("ts < ?")
            params.append(int(end_ms))
        if min_seq is not None:
            clauses.append("seq > ?")
            params.append(int(min_seq))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        parts = [
            p for p in (self._all() if among is None else among)
            if (start_ms is None or p.end_ms > start_ms) and (end_ms is None or p.start_ms < end_ms)
            and (min_seq is None or p.max_seq > min_seq) and p.row_count
        ]
        if not parts:
            return None
        return (
            " UNION ALL ".join(f"SELECT {columns} FROM {p.name}{where}" for p in parts),
            params * len(parts),
        )

    def _query(self, sql: str, params: list[object]) -> duckdb.DuckDBPyConnection:
        return self._con.cursor().execute(sql, params)

    def count(self, meter: str | None = None) -> int:
        with self._lock:
            if meter is None:
                return sum(p.row_count for p in self._all())
            src = self._source(self._sids([meter], None), None, None, "count(*) AS n")
            if src is None:
                return 0
            return int(self._query(f"SELECT sum(n) FROM ({src[0]})", src[1]).fetchone()[0] or 0)

    def meters(self) -> list[tuple[str, str, str]]:
        """Distinct (meter, quantity, unit) present in the store."""
        with self._lock:
            return sorted(
                (*self._sid_meter[s], str(self._units[u])) for s, u in self._pairs
            )

    def time_range(self, meter: str | None = None) -> tuple[int, int] | None:
        """(first, last) timestamp in ms of one meter or of the whole store; None if empty."""
        with self._lock:
            src = self._source(
                None if meter is None else self._sids([meter], None), None, None,
                "min(ts) AS lo, max(ts) AS hi",
            )
            if src is None:
                return None
            lo, hi = self._query(f"SELECT min(lo), max(hi) FROM ({src[0]})", src[1]).fetchone()
        return None if lo is None else (int(lo), int(hi))

    def last_ts_by_meter(self) -> dict[str, int]:
        """Newest timestamp per meter (any quantity), UTC ms: the newest months are read first
        and older ones only for meters not found yet."""
        out: dict[str, int] = {}
        with self._lock:
            for part in [self._hot, *reversed(self._ordered())]:
                # Older months cannot beat what is known once every meter has a time in or
                # after this month (the hot table can hold any month).
                if out and len(out) == len(self._meter_sids) and min(out.values()) >= part.end_ms:
                    break
                for sid, ts in self._query(
                    f"SELECT sid, max(ts) FROM {part.name} GROUP BY sid", []
                ).fetchall():
                    meter = self._sid_meter[int(sid)][0]
                    out[meter] = max(int(ts), out.get(meter, int(ts)))
        return out

    def read(
        self,
        meters: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        quantity: str | None = None,
    ) -> ReadingColumns:
        """Raw readings in [start_ms, end_ms), ordered by meter then time."""
        with self._lock:
            src = self._source(self._sids(meters, quantity), start_ms, end_ms)
            if src is None:
                return ReadingColumns.empty()
            got = self._query(
                f"SELECT r.ts, sid, r.value, r.uid FROM ({src[0]}) r JOIN series s USING (sid) "
                "ORDER BY s.meter, r.ts", src[1],
            ).fetchnumpy()
            return self._columns(got)

    def _columns(self, got: dict[str, np.ndarray]) -> ReadingColumns:
        sid = np.asarray(got["sid"], dtype=np.int64)
        names = np.empty((max(self._sid_meter, default=-1) + 1, 2), dtype=object)
        for s, mq in self._sid_meter.items():
            names[s] = mq
        return ReadingColumns(
            np.asarray(got["ts"], dtype=np.int64), names[sid, 0], names[sid, 1],
            np.asarray(got["value"], dtype=np.float64),
            self._units[np.asarray(got["uid"], dtype=np.int64)],
        )

    def series(
        self, meter: str, quantity: str | None = None,
        start_ms: int | None = None, end_ms: int | None = None,
    ) -> Series:
        """One meter's raw samples in time order, with their units (a narrow query straight
        into NumPy; a closed month is sorted by meter, so zone maps skip other meters)."""
        with self._lock:
            src = self._source(self._sids([meter], quantity), start_ms, end_ms, "ts, value, uid")
            if src is None:
                return Series(np.empty(0, np.int64), np.empty(0), np.empty(0, dtype=object))
            # No ORDER BY: rows come month by month, each month in (sid, ts) or append order,
            # so they are usually in time order already; NumPy checks and sorts if not.
            got = self._query(src[0], src[1]).fetchnumpy()
            units = self._units[np.asarray(got["uid"], dtype=np.int64)]
        ts = np.asarray(got["ts"], dtype=np.int64)
        value = np.asarray(got["value"], dtype=np.float64)
        if len(ts) > 1 and not (ts[1:] >= ts[:-1]).all():
            order = np.argsort(ts, kind="stable")
            ts, value, units = ts[order], value[order], units[order]
        return Series(ts, value, units)

    def latest(self, meter: str, quantity: str | None = None) -> Reading | None:
        best = None
        with self._lock:
            sids = self._sids([meter], quantity)
            if not sids:
                return None
            for part in [self._hot, *reversed(self._ordered())]:
                if best is not None and best[0] >= part.end_ms:
                    break  # an older month cannot hold a newer reading
                src = self._source(sids, None, None, among=[part])
                row = None if src is None else self._query(
                    f"SELECT ts, sid, value, uid FROM ({src[0]}) ORDER BY ts DESC LIMIT 1", src[1]
                ).fetchone()
                if row is not None and (best is None or row[0] > best[0]):
                    best = row
        if best is None:
            return None
        m, q = self._sid_meter[int(best[1])]
        return Reading(int(best[0]), m, q, float(best[2]), str(self._units[best[3]]))

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
        start_ms, step_ms = int(start_ms), int(step_ms)
        bucket = f"({start_ms} + (ts - {start_ms}) // {step_ms} * {step_ms})"
        expr = {
            "mean": "avg(value)", "min": "min(value)", "max": "max(value)", "sum": "sum(value)",
            "count": "count(*)", "last": "arg_max(value, ts)", "first": "arg_min(value, ts)",
            "delta": "arg_max(value, ts)",
        }[agg]
        with self._lock:
            src = self._source(self._sids(meters, quantity), start_ms, end_ms, "sid, ts, value")
            if src is None:
                return {}
            rows = f"(SELECT s.meter, r.ts, r.value FROM ({src[0]}) r JOIN series s USING (sid))"
            query = (
                f"SELECT meter, {bucket} AS bucket, {expr} AS v FROM {rows} "
                "GROUP BY meter, bucket ORDER BY meter, bucket"
            )
            if agg == "delta":
                query = (
                    "SELECT meter, bucket, v - coalesce(lag(v) OVER (PARTITION BY meter ORDER BY "
                    f"bucket), first_v) AS v FROM (SELECT meter, {bucket} AS bucket, "
                    "arg_max(value, ts) AS v, min_by(value, ts) AS first_v "
                    f"FROM {rows} GROUP BY meter, bucket) ORDER BY meter, bucket"
                )
            frame = self._query(query, src[1]).df()
        out: dict[str, Series] = {}
        for meter, group in frame.groupby("meter", sort=False):
            out[str(meter)] = Series(
                group["bucket"].to_numpy(np.int64), group["v"].to_numpy(np.float64)
            )
        return out

    # -- cursors and state (store-and-forward, daemon restart) ------------------------------
    def last_seq(self) -> int:
        """The highest ``seq`` handed out (0 if none): no stored row has a larger one. A
        reading refused as a duplicate may use up a number, so seq can have gaps."""
        with self._lock:
            return self._next_seq - 1

    def read_since(self, after_seq: int, limit: int) -> tuple[ReadingColumns, int]:
        """Readings with ``seq > after_seq`` in insertion order; returns them and the last seq."""
        with self._lock:
            src = self._source(None, None, None, min_seq=after_seq)
            if src is None:
                return ReadingColumns.empty(), after_seq
            got = self._query(
                f"SELECT * FROM ({src[0]}) ORDER BY seq LIMIT {int(limit)}", src[1]
            ).fetchnumpy()
            cols = self._columns(got)
        seq = np.asarray(got["seq"], dtype=np.int64)
        return cols, int(seq[-1]) if len(seq) else after_seq

    def backlog(self, after_seq: int) -> int:
        with self._lock:
            src = self._source(None, None, None, "count(*) AS n", min_seq=after_seq)
            if src is None:
                return 0
            return int(self._query(f"SELECT sum(n) FROM ({src[0]})", src[1]).fetchone()[0] or 0)

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
    def dead_letter_counts(self, since_ms: int | None = None) -> dict[str, int]:
        """Dead letters by reason (aggregates count every letter they stand for), received
        at or after ``since_ms`` when given (for /metrics rates)."""
        where, params = ("WHERE received_ms >= ?", [int(since_ms)]) if since_ms is not None else ("", [])
        rows = self.execute(
            f"SELECT reason, sum(count) FROM dead_letters {where} GROUP BY reason", params
        ).fetchall()
        return {str(r): int(n) for r, n in rows}

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.execute(
            "SELECT received_ms, source, origin, reason, detail, raw, count FROM dead_letters "
            "ORDER BY id DESC LIMIT ?",
            [limit],
        ).fetchall()
        return [DeadLetter(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]


def _checked_ts(raw: np.ndarray) -> np.ndarray:
    ts = np.asarray(raw)
    if ts.dtype.kind not in "iu":
        if ts.dtype.kind != "f" or not np.isfinite(ts).all():
            raise ValueError(f"timestamps must be integer ms, got {ts.dtype}")
        if (ts != np.round(ts)).any():
            raise ValueError("timestamps must be whole milliseconds")
    if ts.min() < TS_MIN_MS or ts.max() >= TS_MAX_MS:
        raise ValueError("timestamps outside years 1900-9999 cannot be stored")
    return ts.astype(np.int64, copy=False)


def _empty_codes() -> tuple[np.ndarray, list, np.ndarray, list]:
    return np.zeros(0, np.int64), [], np.zeros(0, np.int64), []


def _factorize(values: np.ndarray) -> tuple[np.ndarray, Sequence]:
    """Code of each value by first appearance (-1 for None/NaN) and the distinct values.

    pandas' hash table when pandas is loaded anyway (the collector, the daemon); a dict
    otherwise, so a command that only writes readings (``dcpue import``) need not load it.
    Both are kept: on 500,000 values of 40 meter ids pandas took 88 ms and the dict 236 ms
    (2026-12-01), which would cost batched ingest (three columns per reading) about 40 %.
    """
    pd = sys.modules.get("pandas")
    if pd is not None:
        return pd.factorize(values, sort=False)
    items = values.tolist()
    keys = [k for k in dict.fromkeys(items) if k is not None and k == k]  # NaN != NaN
    index = {k: i for i, k in enumerate(keys)}
    return np.fromiter((index.get(v, -1) for v in items), np.int64, len(items)), keys


def _factorize_pairs(meter: np.ndarray, quantity: np.ndarray) -> tuple[np.ndarray, list]:
    """Codes of each row's (meter, quantity) and the distinct pairs, by hashing (no sort)."""
    m_codes, m_keys = _factorize(np.asarray(meter, dtype=object))
    q_codes, q_keys = _factorize(np.asarray(quantity, dtype=object))
    if len(q_keys) == 1:
        return m_codes, [(m, q_keys[0]) for m in m_keys]
    codes, pairs = _factorize(m_codes.astype(np.int64) * len(q_keys) + q_codes)
    return codes, [(m_keys[p // len(q_keys)], q_keys[p % len(q_keys)]) for p in pairs]
