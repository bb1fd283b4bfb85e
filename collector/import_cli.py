"""``dcpue import``: the command line of :mod:`dcpue.collector.importer` (imports it lazily)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dcpue import`` to the ``dcpue`` parser."""
    p = sub.add_parser(
        "import",
        help="backfill readings from a CSV file (long ts,meter,quantity,value,unit or wide)",
        description="Validate a CSV of historical readings like live ones and store them "
                    "idempotently (a rerun adds 0); refused rows become dead letters. Prints "
                    "the counts as one JSON line.",
    )
    p.add_argument("--config", required=True, help="site TOML file")
    p.add_argument("csv", type=Path, help="readings CSV (long or wide format)")
    p.add_argument("--store", type=Path, default=None,
                   help="DuckDB store (default: the site's store.path)")
    p.add_argument("--mqtt", metavar="HOST:PORT", default=None,
                   help="publish to the site's broker for a running daemon instead of "
                        "writing the store")
    p.add_argument("--chunk-rows", type=int, default=200_000, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dcpue.collector.importer import import_csv, publish_csv
    from dcpue.config import load_site
    from dcpue.core.store import Store

    site = load_site(args.config)
    if not args.csv.is_file():
        print(f"dcpue import: no such file {args.csv}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    try:
        if args.mqtt:
            host, _, port = args.mqtt.rpartition(":")
            stats = publish_csv(site, args.csv, host or "127.0.0.1", int(port),
                                chunk_rows=args.chunk_rows, progress=progress)
        else:
            with Store(args.store or site.store.path) as store:
                stats = import_csv(site, args.csv, store, chunk_rows=args.chunk_rows,
                                   progress=progress)
    except ValueError as exc:
        print(f"dcpue import: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats.as_dict(), sort_keys=True))
    return 0
