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
import csv
import itertools
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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
#: Columns of text (every other column holds numbers).
_TEXT = frozenset({"ts", "meter", "quantity", "unit"})
_WIDE_HEADER = re.compile(r"^(?P<meter>[^\[\]]+?)\s*(?:\[(?P<unit>[^\[\]]+)\])?$")


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

    The file is read with the standard library's CSV reader (fields stripped, a UTF-8 byte
    order mark skipped) and the values converted in NumPy; pandas is not needed.

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
        """``(accepted, dead letters, data rows)`` per chunk of about ``chunk_rows`` values.

        Raises:
            ValueError: a bad header, a row with more fields than the header, or a file the
                CSV reader cannot read (e.g. a NUL byte).
        """
        with self.path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            try:
                self.columns = [c.strip() for c in next(reader, [])]
                self._check_header()
                per_chunk = max(1, chunk_rows // (len(self.columns) - 1 if self.wide else 1))
                rows = (r for r in reader if len(r) > 1 or (r and r[0].strip()))  # no blanks
                first_line = 2  # line 1 is the header
                while block := list(itertools.islice(rows, per_chunk)):
                    yield (*self._chunk(block, first_line), len(block))
                    first_line += len(block)
            except csv.Error as exc:
                raise ValueError(f"{self.path}: {exc}") from None

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

    def _fields(self, block: list[list[str]], first_line: int) -> list[list[str]]:
        """The block's columns ("" for a missing trailing field); text columns stripped
        (numbers need not be: ``float`` ignores surrounding blanks)."""
        width = len(self.columns or [])
        for i, row in enumerate(block):
            if len(row) > width:
                raise ValueError(f"{self.path}:{first_line + i}: {len(row)} fields, the header "
                                 f"has {width}")
        padded = (row if len(row) == width else row + [""] * (width - len(row)) for row in block)
        columns = [list(column) for column in zip(*padded, strict=True)]
        for k, name in enumerate(self.columns or []):
            if name in _TEXT:
                columns[k] = [v.strip() for v in columns[k]]
        return columns

    def _chunk(
        self, block: list[list[str]], first_line: int
    ) -> tuple[ReadingColumns, list[DeadLetter]]:
        letters: list[DeadLetter] = []
        names = self.columns or []
        fields = self._fields(block, first_line)
        text = dict(zip(names, fields, strict=True))
        lines = np.arange(first_line, first_line + len(block))
        ts_ms, ts_ok = self._timestamps(text["ts"], lines, letters, block)
        if self.wide:
            meters, units = self._wide_meters
            parts = [_numbers(f) for name, f in zip(names, fields, strict=True) if name != "ts"]
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
            value, missing, bad = (a[ts_ok] for a in _numbers(text["value"]))

            def column(name: str) -> np.ndarray | None:
                return np.array(text[name], dtype=object)[ts_ok] if name in text else None

            meter, unit, quantity = column("meter"), column("unit"), column("quantity")
            line, ts = lines[ts_ok], ts_ms[ts_ok]
        ok = ~(missing | bad)
        for row in np.flatnonzero(~ok).tolist():
            letters.append(self._letter(int(line[row]), Rejected(
                "missing_field", "row has no value") if missing[row] else Rejected(
                "bad_type", f"value for {_clip(meter[row])} is not a number"), block, first_line))
        if quantity is not None:
            for row in np.flatnonzero(ok & (quantity != "")).tolist():
                spec = self.index.specs.get(meter[row])
                if spec is not None and quantity[row] != spec.quantity:
                    letters.append(self._letter(int(line[row]), Rejected(
                        "bad_quantity",
                        f"{meter[row]} measures {spec.quantity}, row says {_clip(quantity[row])}",
                    ), block, first_line))
                    ok[row] = False
        accepted, rejected = normalise_columns(
            self.index, meter[ok], value[ok], None if unit is None else unit[ok], ts[ok],
            self.now_ms,
        )
        line = line[ok]
        for row, exc in rejected:
            letters.append(self._letter(int(line[row]), exc, block, first_line))
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
        self, text: list[str], lines: np.ndarray, letters: list[DeadLetter],
        block: list[list[str]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """int64 ms per row (the live decoder's :func:`parse_timestamp`: a number is an epoch,
        text ISO 8601) and a mask of the rows whose time could be read."""
        origin = str(self.path)
        parsed: dict[str, int | Rejected] = {}
        for raw in dict.fromkeys(text):  # each distinct text once (a long CSV repeats them)
            try:
                try:
                    number = float(raw)
                except ValueError:
                    parsed[raw] = parse_timestamp(raw, self.local, origin)
                else:
                    parsed[raw] = parse_timestamp(
                        int(number) if number.is_integer() else number, self.local, origin)
            except Rejected as exc:
                parsed[raw] = exc
            except OverflowError:
                parsed[raw] = Rejected("bad_timestamp", raw)
        got = [parsed[raw] for raw in text]
        ok = np.fromiter((type(t) is int for t in got), dtype=bool, count=len(got))
        ts = np.fromiter((t if type(t) is int else 0 for t in got), np.int64, len(got))
        first_line = int(lines[0]) if len(lines) else 2
        for row in np.flatnonzero(~ok).tolist():
            letters.append(self._letter(int(lines[row]), got[row], block, first_line))
        return ts, ok

    def _letter(
        self, line: int, exc: Rejected, block: list[list[str]], first_line: int
    ) -> DeadLetter:
        row = block[line - first_line] if 0 <= line - first_line < len(block) else []
        raw = ",".join(v.strip() for v in row).encode(errors="replace")[:4096]
        return DeadLetter(
            self.now_ms, SOURCE, f"{self.path.name}:{line}", exc.reason, exc.detail[:500], raw
        )


def _numbers(text: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A value column -> (float64 values, empty-cell mask, not-a-number mask).

    ``NaN``/``inf`` words become floats for the normaliser to refuse by name.
    """
    n = len(text)
    empty, bad = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    try:
        return np.array(text, dtype=np.float64), empty, bad  # every cell a number
    except ValueError:
        pass
    value = np.full(n, np.nan)
    for i, cell in enumerate(text):
        if not cell.strip():
            empty[i] = True
            continue
        try:
            value[i] = float(cell)
        except ValueError:
            bad[i] = True
    return value, empty, bad


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
