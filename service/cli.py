"""``dcpue run``: the long-running daemon (collector, calculator, jobs, alerts, HTTP API)."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

#: Days of twin history the bundled demo (``dcpue run`` without --config) fills in first: the
#: 3-day commissioning sweep the optimizer learns from, so every dashboard card has data.
DEMO_HISTORY_DAYS = 3.5

if TYPE_CHECKING:  # the daemon's modules load when it runs, not for ``dcpue --help``
    from dcpue.config.site import Site


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dcpue run`` to the ``dcpue`` parser."""
    p = sub.add_parser(
        "run", help="run the daemon (without --config: the demo site through the digital twin)",
        description="Run the daemon until SIGTERM/SIGINT. Without --config the bundled "
        "single-hall site runs through the digital twin, its store in ./var/.",
    )
    p.add_argument("--config", type=Path, help="site TOML file")
    p.add_argument("--twin", action="store_true",
                   help="feed the site's meters from the digital twin (implied without --config)")
    p.add_argument("--mqtt", metavar="HOST:PORT",
                   help="twin: publish over this MQTT broker and collect from it")
    p.add_argument("--fast-forward", type=float, metavar="DAYS",
                   help="twin: simulate as fast as possible until DAYS after the twin's start "
                   "(a restart continues to the same end), then exit (or --serve)")
    p.add_argument("--serve", action="store_true",
                   help="after --fast-forward keep serving the API until SIGTERM")
    p.add_argument("--chiller-degradation", type=float, default=0.0, metavar="FRACTION",
                   help="twin fault: chiller power +FRACTION (0.15 = 15 %%) from --fault-day")
    p.add_argument("--fault-day", type=float, default=0.0, metavar="DAYS",
                   help="twin: days after the twin's start when the fault begins")
    p.add_argument("--commission-days", type=float, default=None, metavar="DAYS",
                   help="twin: sweep the cooling setpoints within their hard bounds for the "
                   "first DAYS (a commissioning sweep the optimizer learns from); default "
                   "[service.schedule] first_train_after_days without --config, else 0")
    p.add_argument("--history-days", type=float, default=None, metavar="DAYS",
                   help="twin in real time: start DAYS before now and catch up as fast as "
                   f"possible, so every figure has data (default {DEMO_HISTORY_DAYS:g} "
                   "without --config, else 0)")
    p.add_argument("--port", type=int, help="HTTP port (default: [service] port)")
    p.add_argument("--store", type=Path, help="override the store path")
    p.add_argument("--log-level", default="INFO", type=str.upper,
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="text lines, or one JSON object per line (for journald/Loki)")
    p.set_defaults(func=_run)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601 UTC), level, logger, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _site(args: argparse.Namespace, twin: bool) -> Site:
    """The site as the daemon runs it (also what SIGHUP re-reads)."""
    from dcpue.config import example_path, load_site
    from dcpue.config.site import require_consistent

    if args.config is None:
        site = load_site(example_path("single_hall"))
        site.store.path = Path("var") / f"{site.id}.duckdb"
    else:
        site = load_site(args.config)
        require_consistent(site, str(args.config))  # what check-config rejects, run rejects
    if args.store is not None:
        site.store.path = args.store
    if args.port is not None:
        site.service.port = args.port
    if twin:  # the twin replaces the field sources: collect only what it sends
        site.collector.mqtt.subscriptions = []
        site.collector.modbus = type(site.collector.modbus)()
        if args.mqtt:
            from dcpue.service.demo import subscribe_to_twin

            host, _, port = args.mqtt.rpartition(":")
            subscribe_to_twin(site, host or "127.0.0.1", int(port))
    return site


def _run(args: argparse.Namespace) -> int:
    import asyncio

    setup_logging(args.log_level, args.log_format)
    from dcpue.config.site import ConfigError

    twin = args.twin or args.config is None
    if not twin and (args.mqtt or args.fast_forward or args.chiller_degradation):
        raise ConfigError("--mqtt, --fast-forward and --chiller-degradation need the twin (--twin)")
    site = _site(args, twin)
    return asyncio.run(_main(site, args, twin))


async def _main(site: Site, args: argparse.Namespace, twin: bool) -> int:
    import asyncio
    import sys

    from dcpue.core.readings import ms_to_datetime
    from dcpue.core.store import Store
    from dcpue.service.daemon import DAY_MS, install_stop_handlers, serve_realtime, wall_clock_ms

    # The jobs thread computes in Python while API handler threads wait for the interpreter
    # lock: a 1 ms switch interval instead of 5 ms shortens each wait (bench/daemon.py: /api/pue
    # p99 during a fast-forward 49-54 ms against 60-102 ms, the same days per minute).
    sys.setswitchinterval(0.001)
    stop = asyncio.Event()
    install_stop_handlers(stop)
    load = lambda: _site(args, twin)  # noqa: E731
    with Store(site.store.path) as store:
        if not twin:
            await serve_realtime(site, store, stop, load)
            return 0
        from dcpue.service.demo import Fault, run_with_twin

        history = args.history_days
        if history is None:
            history = DEMO_HISTORY_DAYS if args.config is None else 0.0
        start = None if args.fast_forward else datetime.fromtimestamp(
            (wall_clock_ms() - round(history * DAY_MS)) // 60_000 * 60, tz=UTC)
        twin_start = start or site.twin.start
        fault = None
        if args.chiller_degradation:
            at = int(twin_start.timestamp() * 1000) + round(args.fault_day * DAY_MS)
            fault = Fault(args.chiller_degradation, at)
        commission = args.commission_days
        if commission is None:
            commission = site.service.schedule.first_train_after_days if args.config is None else 0.0
        runtime = await run_with_twin(
            site, store, stop, days=args.fast_forward, via_mqtt=bool(args.mqtt), fault=fault,
            start=start, serve_after=args.serve, commission_days=commission, load=load,
        )
        now = runtime.clock()
        current = runtime.figures(now).get(site.service.current_figure)
        value = "n/a" if current is None or current.value is None else f"{current.value:.4f}"
        print(f"{site.id}: stopped at {ms_to_datetime(now).isoformat()}, "
              f"{site.service.current_figure} = {value}, "
              f"{len(runtime.engine.active)} alert(s) firing")
    return 0
