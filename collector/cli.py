"""``dcpue collect``: run the collector alone (MQTT, Modbus, DuckDB, remote sink)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcpue.config import Site

log = logging.getLogger("dcpue.collector")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this component's sub-commands to the ``dcpue`` parser."""
    p = sub.add_parser(
        "collect",
        help="run the collector: MQTT/Modbus -> DuckDB (+ remote InfluxDB-compatible sink)",
        description="Collect meter readings until SIGINT/SIGTERM, then flush and exit 0.",
    )
    p.add_argument("--config", required=True, help="site TOML file")
    p.add_argument("--no-remote", action="store_true", help="do not forward to the remote sink")
    p.add_argument(
        "--duration", type=float, default=None, metavar="S",
        help="stop by itself after S seconds (default: run until signalled)",
    )
    p.add_argument(
        "--status-every", type=float, default=60.0, metavar="S",
        help="log a status line every S seconds (default 60)",
    )
    p.set_defaults(func=_collect)


def _collect(args: argparse.Namespace) -> int:
    import asyncio

    from dcpue.config import load_site

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    site = load_site(args.config)
    stats = asyncio.run(_run(site, args))
    print(json.dumps(stats, sort_keys=True))
    return 0


async def _run(site: Site, args: argparse.Namespace) -> dict[str, object]:
    import asyncio

    from dcpue.collector.service import Collector

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    collector = Collector(site, remote=not args.no_remote)
    async with collector:
        log.info(
            "collecting for site %s: sources %s, store %s, remote %s",
            site.id, ", ".join(collector.source_names) or "none", site.store.path,
            site.collector.remote.url if collector.forwarder else "off",
        )
        deadline = None if args.duration is None else loop.time() + args.duration
        while not stop.is_set():
            wait = args.status_every
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    break
            with contextlib.suppress(TimeoutError):  # not wait_for: see collector/mqtt.py
                async with asyncio.timeout(wait):
                    await stop.wait()
            s = collector.stats()
            log.info(
                "status: in %d, stored %d, dead letters %d, backlog %s",
                s.readings_in, s.readings_stored, sum(s.dead_letters.values()), s.backlog,
            )
    s = collector.stats()
    return {
        "readings_in": s.readings_in,
        "readings_stored": s.readings_stored,
        "duplicates": s.duplicates,
        "dead_letters": s.dead_letters,
        "backlog": s.backlog,
        "remote_written": s.remote_written,
    }
