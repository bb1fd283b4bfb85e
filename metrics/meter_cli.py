"""``dcpue meter``: record a meter replacement, list the counter engine's events."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the commands, not by `dcpue --help`
    pass


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dcpue meter replace`` and ``dcpue meter events`` to the ``dcpue`` parser."""
    p = sub.add_parser("meter", help="record meter replacements, list counter events")
    cmds = p.add_subparsers(dest="meter_command", required=True, metavar="ACTION")
    r = cmds.add_parser("replace", help="record a meter swap: closing and opening readings")
    r.add_argument("--config", required=True, help="site TOML file")
    r.add_argument("--store", help="DuckDB store (default: the site's [store] path)")
    r.add_argument("--meter", required=True, help="meter id (a counter)")
    r.add_argument("--at", required=True, help="swap instant, ISO-8601 with offset")
    r.add_argument("--old-final", type=float, required=True,
                   help="last reading of the old meter, in the meter's unit")
    r.add_argument("--new-initial", type=float, required=True,
                   help="first reading of the new meter, in the meter's unit")
    r.set_defaults(func=_replace)
    e = cmds.add_parser("events", help="detect and list counter events (rollover, reset, "
                        "replacement, jump, outlier, over_ceiling, negative_power)")
    e.add_argument("--config", required=True, help="site TOML file")
    e.add_argument("--store", help="DuckDB store (default: the site's [store] path)")
    e.add_argument("--meter", help="only this meter")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=_events)


def _store_path(args: argparse.Namespace, default: Path) -> Path:
    return Path(args.store) if args.store else default


def _replace(args: argparse.Namespace) -> int:
    from dcpue.config.site import ConfigError, load_site
    from dcpue.config.topology import MeterKind
    from dcpue.core.readings import datetime_to_ms
    from dcpue.core.store import Store
    from dcpue.metrics.events import record_replacement

    site = load_site(args.config)
    meter = site.meter_by_id.get(args.meter)
    if meter is None or meter.kind is not MeterKind.COUNTER:
        raise ConfigError(f"meter {args.meter!r} is not a counter meter of site {site.id!r}")
    try:
        at = datetime.fromisoformat(args.at)
    except ValueError:
        raise ConfigError(f"--at {args.at!r} is not an ISO-8601 instant") from None
    if at.tzinfo is None:
        raise ConfigError(f"--at {args.at!r} needs a UTC offset (e.g. +00:00)")
    with Store(_store_path(args, site.store.path)) as store:
        record_replacement(store, meter, datetime_to_ms(at), args.old_final, args.new_initial,
                           int(time.time() * 1000))
    print(f"{meter.id}: replacement at {at.isoformat()} recorded (old meter closed at "
          f"{args.old_final:g} {meter.unit}, new meter opened at {args.new_initial:g} "
          f"{meter.unit})")
    return 0


def _events(args: argparse.Namespace) -> int:
    from dcpue.config.site import load_site
    from dcpue.core.readings import ms_to_datetime
    from dcpue.core.store import Store
    from dcpue.metrics.balance import stored_intervals
    from dcpue.metrics.events import list_events, record_events

    site = load_site(args.config)
    path = _store_path(args, site.store.path)
    if not path.exists():
        print(f"dcpue meter events: no store at {path}")
        return 1
    with Store(path) as store:
        whole = store.time_range()
        if whole is not None:
            _, intervals = stored_intervals(site, store, whole[0], whole[1] + 1)
            for mid, iv in intervals.items():
                record_events(store, mid, iv.events)
        found = list_events(store, args.meter)
    if args.json:
        print(json.dumps([e.as_dict() for e in found], indent=2))
        return 0
    for e in found:
        ev = e.event
        flag = "ERROR " if ev.error else ""
        print(f"{ms_to_datetime(ev.ts_ms).isoformat()}  {e.meter:<16} {flag}{ev.kind:<20} "
              f"{ev.before:,.6g} -> {ev.after:,.6g}  counted {ev.counted:,.6g}")
    if not found:
        print("no counter events")
    return 0
