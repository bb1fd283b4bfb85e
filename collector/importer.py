"""``dcpue import``: historical backfill from CSV (BMS/DCIM exports) through the live validation.

Two layouts, told apart by the header:

* long: ``ts,meter,quantity,value,unit`` (``quantity`` and ``unit`` optional; an empty unit is
  the meter's configured unit, a given quantity must be the meter's);
* wide: a ``ts`` column and one column per meter, named ``meter`` or ``meter [unit]``; empty
  cells are gaps, not errors.

``ts`` is ISO 8601 with an offset (``2024-01-01T00:00:00Z``, ``...+01:00``); an offset-less time
is a wall time of the site's zone (DST rules of :class:`~dcpue.collector.normalise.LocalTimes`),
and an epoch number is read as the live decoder reads it. Every row goes through
:func:`~dcpue.collector.normalise.normalise_columns` (the rules of live readings, vectorised per
chunk) with the import's start as receive time; a refused row is a dead letter (source
``import``, origin ``FILE:LINE``, the CSV line as raw bytes) and is counted. Readings are
appended idempotently, so a rerun adds 0. With ``mqtt`` the accepted readings are published as
batch payloads (full float64 precision) on ``dcpue/<site id>/readings`` instead, for a running
daemon (which holds the store) to ingest.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from dcpue.collector.normalise import (
    LocalTimes,
    MeterIndex,
    Rejected,
    normalise_columns,
    parse_timestamp,
)
from dcpue.config import Site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import DeadLetter, Store

SOURCE = "import"
#: Values (long rows, or wide rows x meter columns) read, validated and written per step.
CHUNK_ROWS = 200_000
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$")
_WIDE_HEADER = re.compile(r"^(?P<meter>[^\[\]]+?)\s*(?:\[(?P<unit>[^\[\]]+)\])?$")
_NAN_WORDS = frozenset({"nan", "+nan", "-nan"})


@dataclass(slots=True)
class ImportStats:
    """What one import did: CSV data rows, readings accepted, rows added, dead letters by reason."""

    rows: int = 0
    accepted: int = 0
    added: int = 0
    published: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows, "accepted": self.accepted, "added": self.added,
            "duplicates": self.accepted - self.added if not self.published else 0,
            "published": self.published, "dead_letters": dict(sorted(self.dead_letters.items())),
        }


class CsvImporter:
    """Turns the chunks of one CSV file into validated :class:`ReadingColumns` and dead letters.

    Args:
        site: the site whose meters, zone and validation window apply.
        path: the CSV file (origin of dead letters).
        now_ms: receive time of every row (default: now), the centre of the window.
    """

    def __init__(self, site: Site, path: Path, now_ms: int | None = None) -> None:
        self.index = MeterIndex(site)
        self.path = path
        self.now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        self.local = LocalTimes(self.index.zone)
        self.columns: list[str] | None = None

    def chunks(
        self, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[tuple[ReadingColumns, list[DeadLetter], int]]:
        """``(accepted, dead letters, data rows)`` per chunk of about ``chunk_rows`` values."""
        header = pd.read_csv(self.path, nrows=0, skipinitialspace=True).columns
        self.columns = [str(c).strip() for c in header]
        self._check_header()
        values_per_row = len(self.columns) - 1 if self.wide else 1
        text = {"ts", "meter", "unit", "quantity"}
        reader = pd.read_csv(  # values parse as float64 in C unless a column holds a non-number
            self.path, keep_default_na=False, na_values=[""], skipinitialspace=True,
            dtype={c: object for c in header if str(c).strip() in text},
            chunksize=max(1, chunk_rows // values_per_row),
        )
        first_line = 2  # line 1 is the header
        with reader:
            for frame in reader:
                frame.columns = self.columns
                yield (*self._chunk(frame, first_line), len(frame))
                first_line += len(frame)

    # -- layouts ------------------------------------------------------------------------------
    @property
    def wide(self) -> bool:
        return "meter" not in (self.columns or [])

    def _check_header(self) -> None:
        cols = self.columns or []
        if "ts" not in cols:
            raise ValueError(f"{self.path}: no 'ts' column in header {cols}")
        if not self.wide and "value" not in cols:
            raise ValueError(f"{self.path}: long format needs a 'value' column")
        if self.wide:
            meters = self._wide_meters[0]
            unknown = sorted(set(meters) - set(self.index.specs))
            if not len(meters) or unknown:
                raise ValueError(
                    f"{self.path}: wide format needs one column per site meter"
                    + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                )

    def _chunk(
        self, frame: pd.DataFrame, first_line: int
    ) -> tuple[ReadingColumns, list[DeadLetter]]:
        letters: list[DeadLetter] = []
        lines = np.arange(first_line, first_line + len(frame))
        ts_ms, ts_ok = self._timestamps(_text(frame["ts"]), lines, letters, frame)
        if self.wide:
            meters, units = self._wide_meters
            parts = [_numbers(frame[c]) for c in self.columns if c != "ts"]
            value, empty, bad = (np.stack([p[k] for p in parts], axis=1)[ts_ok].reshape(-1)
                                 for k in range(3))
            rows = int(ts_ok.sum())
            meter, unit = np.tile(meters, rows), np.tile(units, rows)
            line = np.repeat(lines[ts_ok], len(meters))
            ts = np.repeat(ts_ms[ts_ok], len(meters))
            quantity = None
            keep = ~empty  # an empty cell is a gap, not an error
            meter, unit, line, ts, value, bad = (
                a[keep] for a in (meter, unit, line, ts, value, bad))
            missing = np.zeros(len(value), dtype=bool)
        else:
            value, missing, bad = (a[ts_ok] for a in _numbers(frame["value"]))
            meter = _text(frame["meter"]).to_numpy(object)[ts_ok]
            unit = _text(frame["unit"]).to_numpy(object)[ts_ok] if "unit" in frame else None
            quantity = (
                _text(frame["quantity"]).to_numpy(object)[ts_ok] if "quantity" in frame else None
            )
            line, ts = lines[ts_ok], ts_ms[ts_ok]
        ok = ~(missing | bad)
        for row in np.flatnonzero(~ok).tolist():
            letters.append(self._letter(int(line[row]), Rejected(
                "missing_field", "row has no value") if missing[row] else Rejected(
                "bad_type", f"value for {_clip(meter[row])} is not a number"), frame, first_line))
        if quantity is not None:
            for row in np.flatnonzero(ok & (quantity != "")).tolist():
                spec = self.index.specs.get(meter[row])
                if spec is not None and quantity[row] != spec.quantity:
                    letters.append(self._letter(int(line[row]), Rejected(
                        "bad_quantity",
                        f"{meter[row]} measures {spec.quantity}, row says {_clip(quantity[row])}",
                    ), frame, first_line))
                    ok[row] = False
        accepted, rejected = normalise_columns(
            self.index, meter[ok], value[ok], None if unit is None else unit[ok], ts[ok],
            self.now_ms,
        )
        line = line[ok]
        for row, exc in rejected:
            letters.append(self._letter(int(line[row]), exc, frame, first_line))
        return accepted, letters

    @property
    def _wide_meters(self) -> tuple[np.ndarray, np.ndarray]:
        """Meter id and unit ("" for the meter's own) of each non-``ts`` column."""
        meters, units = [], []
        for column in (c for c in self.columns or [] if c != "ts"):
            match = _WIDE_HEADER.match(column)
            meters.append(match["meter"] if match else column)
            units.append((match["unit"] or "") if match else "")
        return np.array(meters, dtype=object), np.array(units, dtype=object)

    # -- fields -------------------------------------------------------------------------------
    def _timestamps(
        self, text: pd.Series, lines: np.ndarray, letters: list[DeadLetter], frame: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """int64 ms per row and a mask of the rows whose time could be read."""
        has_offset = text.str.contains(_OFFSET, regex=True).to_numpy(bool)
        parsed = pd.to_datetime(text.where(has_offset), format="ISO8601", utc=True, errors="coerce")
        ts = parsed.dt.tz_convert(None).to_numpy("datetime64[ms]").view(np.int64).copy()
        ok = ~np.asarray(parsed.isna())
        first_line = int(lines[0]) if len(lines) else 2
        for row in np.flatnonzero(~ok).tolist():
            raw = text.iat[row]
            try:
                number = float(raw)
            except ValueError:
                number = None
            try:
                ts[row] = parse_timestamp(
                    raw if number is None else (int(number) if number.is_integer() else number),
                    self.local, str(self.path),
                )
                ok[row] = True
            except (Rejected, OverflowError) as exc:
                reason = exc if isinstance(exc, Rejected) else Rejected("bad_timestamp", raw)
                letters.append(self._letter(int(lines[row]), reason, frame, first_line))
        return ts, ok

    def _letter(self, line: int, exc: Rejected, frame: pd.DataFrame, first_line: int) -> DeadLetter:
        row = frame.iloc[line - first_line] if 0 <= line - first_line < len(frame) else []
        raw = ",".join(str(v) for v in row).encode(errors="replace")[:4096]
        return DeadLetter(
            self.now_ms, SOURCE, f"{self.path.name}:{line}", exc.reason, exc.detail[:500], raw
        )


def _text(column: pd.Series) -> pd.Series:
    """A column as stripped str, empty cells as ""."""
    return column.astype(object).where(column.notna(), "").astype(str).str.strip()


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A value column -> (float64 values, empty-cell mask, not-a-number mask).

    Columns the CSV parser read as numbers pass straight; others are converted here, where
    ``NaN``/``inf`` words become floats for the normaliser to refuse by name.
    """
    if column.dtype.kind in "fiu":
        value = column.to_numpy(np.float64)
        return value, np.isnan(value), np.zeros(len(value), dtype=bool)
    text = _text(column)
    value = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    empty = (text == "").to_numpy(bool)
    nan_word = text.str.lower().isin(_NAN_WORDS).to_numpy(bool)
    return value, empty, np.isnan(value) & ~empty & ~nan_word


def _clip(text: object) -> str:
    return repr(str(text)[:40])


def count_lines(path: Path) -> int:
    """Data rows of a CSV file (lines after the header), for the progress bar."""
    lines = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


def import_csv(
    site: Site, path: Path, store: Store, *, chunk_rows: int = CHUNK_ROWS, progress: bool = True,
    now_ms: int | None = None,
) -> ImportStats:
    """Validate ``path`` into ``store`` (readings and dead letters); see the module docstring."""
    from tqdm import tqdm

    stats = ImportStats()
    importer = CsvImporter(site, path, now_ms)
    with tqdm(total=count_lines(path), unit="rows", disable=not progress, file=sys.stderr) as bar:
        for accepted, letters, rows in importer.chunks(chunk_rows):
            stats.added += store.append(accepted)
            store.add_dead_letters(letters)
            store.maintain()  # hot rows into sorted month tables, as the live pipeline does
            _count(stats, accepted, letters, rows)
            bar.update(rows)
    return stats


def publish_csv(
    site: Site, path: Path, host: str, port: int, *, chunk_rows: int = CHUNK_ROWS,
    progress: bool = True, now_ms: int | None = None,
) -> ImportStats:
    """Validate ``path`` and publish its accepted readings on ``dcpue/<site id>/readings``.

    Dead letters are counted (the running daemon's store is not ours to write).
    """
    import aiomqtt
    from dcpue.collector.gateway_mqtt import publish_readings
    from tqdm import tqdm

    stats = ImportStats()
    importer = CsvImporter(site, path, now_ms)
    mqtt = site.collector.mqtt
    tls = aiomqtt.TLSParameters(
        ca_certs=mqtt.tls.ca_file, certfile=mqtt.tls.cert_file, keyfile=mqtt.tls.key_file
    ) if mqtt.tls.enabled else None
    with tqdm(total=count_lines(path), unit="rows", disable=not progress, file=sys.stderr) as bar:
        for accepted, letters, rows in importer.chunks(chunk_rows):
            if len(accepted):
                stats.published += asyncio.run(publish_readings(
                    site, [accepted], host, port, significant_digits=None,
                    username=mqtt.username, password=mqtt.password(), tls=tls,
                ))
            _count(stats, accepted, letters, rows)
            bar.update(rows)
    return stats


def _count(
    stats: ImportStats, accepted: ReadingColumns, letters: list[DeadLetter], rows: int
) -> None:
    stats.rows += rows
    stats.accepted += len(accepted)
    stats.dead_letters.update(d.reason for d in letters)
