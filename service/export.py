"""Raw readings out: ``dcpue export`` (CSV or Parquet) and the pages ``/api/readings`` serves.

Readings are read a day at a time through :meth:`Store.read` (memory stays bounded for a year
of data) and written in time order, then meter. While the daemon holds the store, the command
reads the same rows from the daemon's ``/api/readings``, page by page.

Columns: ``ts`` (ISO 8601 UTC), ``ts_ms`` (UTC epoch ms), ``meter``, ``quantity``, ``value``
(in ``unit`` as received, e.g. kWh for energy counters), ``unit``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from dcpue.config.site import Site
    from dcpue.core.readings import ReadingColumns
    from dcpue.core.store import Store

COLUMNS = ("ts", "ts_ms", "meter", "quantity", "value", "unit")
CHUNK_MS = 86_400_000
#: Rows per ``/api/readings`` page the command asks the daemon for.
PAGE_ROWS = 50_000


def iso_ms(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds"
                                                                  ).replace("+00:00", "Z")


def chunks(store: Store, meters: Sequence[str] | None, start_ms: int, end_ms: int,
           chunk_ms: int = CHUNK_MS) -> Iterator[ReadingColumns]:
    """Readings in ``[start_ms, end_ms)`` a chunk at a time, each sorted by time then meter."""
    import numpy as np

    lo = start_ms
    while lo < end_ms:
        hi = min(lo + chunk_ms, end_ms)
        cols = store.read(meters, lo, hi)
        if len(cols):
            order = np.lexsort((cols.meter.astype(str), cols.ts_ms))
            yield type(cols)(cols.ts_ms[order], cols.meter[order], cols.quantity[order],
                             cols.value[order], cols.unit[order])
        lo = hi


def rows(cols: ReadingColumns) -> Iterator[tuple[Any, ...]]:
    for ts, meter, quantity, value, unit in zip(cols.ts_ms.tolist(), cols.meter, cols.quantity,
                                                cols.value.tolist(), cols.unit, strict=True):
        yield iso_ms(ts), ts, meter, quantity, value, unit


@dataclass
class Page:
    """One bounded page of readings; ``next_from`` (UTC ms) continues it, None when done.
    A page ends on a whole millisecond, so no reading is split across two pages."""

    rows: list[tuple[Any, ...]]
    next_from: int | None


def page(store: Store, meters: Sequence[str] | None, start_ms: int, end_ms: int,
         limit: int) -> Page:
    """At most ``limit`` readings from ``start_ms`` on, in time order."""
    out: list[tuple[Any, ...]] = []
    for cols in chunks(store, meters, start_ms, end_ms):
        for row in rows(cols):
            if len(out) == limit:
                cut = out[-1][1]
                if row[1] != cut:
                    return Page(out, row[1])
                kept = [r for r in out if r[1] != cut]
                if not kept:  # one millisecond holds more than ``limit`` readings: keep it
                    out.append(row)
                    continue
                return Page(kept, cut)
            out.append(row)
    return Page(out, None)


def write_csv(out: TextIO, pages: Iterator[list[tuple[Any, ...]]]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for batch in pages:
        writer.writerows(batch)
        n += len(batch)
    return n


def csv_text(batch: list[tuple[Any, ...]]) -> str:
    buf = io.StringIO()
    write_csv(buf, iter([batch]))
    return buf.getvalue()


def write_parquet(path: Path, pages: Iterator[list[tuple[Any, ...]]]) -> int:
    """Parquet through an in-memory DuckDB table (``ts`` as TIMESTAMP WITH TIME ZONE)."""
    import duckdb
    import pandas as pd

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE r (ts_ms BIGINT, meter VARCHAR, quantity VARCHAR, value DOUBLE, "
                "unit VARCHAR)")
    n = 0
    for batch in pages:
        frame = pd.DataFrame([row[1:] for row in batch], columns=list(COLUMNS[1:]))
        con.register("batch", frame)
        con.execute("INSERT INTO r SELECT * FROM batch")
        con.unregister("batch")
        n += len(batch)
    con.execute(f"COPY (SELECT to_timestamp(ts_ms / 1000.0) AS ts, * FROM r ORDER BY ts_ms, "
                f"meter) TO '{_sql_path(path)}' (FORMAT parquet)")
    con.close()
    return n


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


# -- the command ---------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export raw readings (CSV or Parquet)",
                       description="Raw readings in [--from, --to) in time order. Dates and "
                       "times without an offset are in the site's time zone. While the daemon "
                       "runs, the readings come from its HTTP API (/api/readings).")
    p.add_argument("--config", type=Path, required=True, help="site TOML file")
    p.add_argument("--from", dest="start", required=True, help="start (ISO date/time or ms)")
    p.add_argument("--to", dest="end", required=True, help="end, exclusive")
    p.add_argument("--meter", action="append",
                   help="meter id, or metric.<figure> (repeatable; default: every site meter)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--output", "-o", type=Path, help="file (default: stdout; parquet needs it)")
    p.add_argument("--store", type=Path, help="override the store path")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from dcpue.config.site import ConfigError, load_site
    from dcpue.core.store import Store, StoreBusy
    from dcpue.service.api import BadRequest, parse_time

    site = load_site(args.config)
    if args.store is not None:
        site.store.path = args.store
    try:
        start, end = (parse_time(args.start, site.timezone), parse_time(args.end, site.timezone))
    except BadRequest as exc:
        raise ConfigError(f"--from/--to: {exc}") from None
    if end <= start:
        raise ConfigError("--to must be after --from")
    unknown = [m for m in args.meter or () if m not in site.meter_by_id
               and not m.startswith("metric.")]
    if unknown:
        raise ConfigError(f"--meter: unknown meter {', '.join(map(repr, unknown))}")
    if args.format == "parquet" and args.output is None:
        raise ConfigError("--format parquet needs --output FILE")
    meters = args.meter or [m.id for m in site.meters]  # raw readings: not metric.* series
    try:
        with Store(site.store.path) as store:
            return _write(args, (b for _, b in _local_pages(store, meters, start, end)))
    except StoreBusy:
        return _write(args, _remote_pages(site, meters, start, end))


def _local_pages(store: Store, meters, start: int, end: int):
    frm: int | None = start
    while frm is not None:
        got = page(store, meters, frm, end, PAGE_ROWS)
        yield frm, got.rows
        frm = got.next_from


def _remote_pages(site: Site, meters, start: int, end: int) -> Iterator[list[tuple[Any, ...]]]:
    """The same pages from the running daemon's API (token from ``DCPUE_API_TOKEN`` or the
    variable ``[service] bearer_token_env`` names)."""
    import httpx

    cfg = site.service
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    token = os.environ.get(cfg.bearer_token_env or "DCPUE_API_TOKEN") or cfg.bearer_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params: list[tuple[str, str | int]] = [("meter", m) for m in meters or ()]
    frm: int | None = start
    with httpx.Client(base_url=f"http://{host}:{cfg.port}", headers=headers,
                      timeout=120) as client:
        while frm is not None:
            resp = client.get("/api/readings", params=[*params, ("from", frm), ("to", end),
                                                       ("limit", PAGE_ROWS)])
            resp.raise_for_status()
            body = resp.json()
            yield [tuple(r) for r in body["rows"]]
            frm = body["next_from"]


def _write(args: argparse.Namespace, pages: Iterator[list[tuple[Any, ...]]]) -> int:
    if args.format == "parquet":
        n = write_parquet(args.output, pages)
    elif args.output is None:
        n = write_csv(sys.stdout, pages)
    else:
        with args.output.open("w", encoding="utf-8", newline="") as out:
            n = write_csv(out, pages)
    if args.output is not None:
        print(f"{args.output}: {n} readings", file=sys.stderr)
    return 0
