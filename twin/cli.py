"""``dcpue simulate`` and ``dcpue demo``: the digital twin into the embedded store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the twin, the store and the gateways load inside the commands
    from dcpue.config import Site
    from dcpue.core.readings import Reading
    from dcpue.core.store import Store
    from dcpue.twin.energyplus import EnergyPlusPlant
    from dcpue.twin.runner import RunSummary
    from dcpue.twin.simulator import Twin, TwinStep

DEMO_STORE = Path("var/demo.duckdb")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate`` and ``demo`` to the ``dcpue`` parser."""
    p = sub.add_parser(
        "simulate", help="run the digital twin of a site into the embedded store",
        description="Fast-forward (default) or pace in wall time (--realtime) the digital twin "
        "of a site, writing its meter readings into the embedded DuckDB store.",
    )
    p.add_argument("--config", required=True, help="site TOML file")
    p.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    add_twin_arguments(p)
    p.add_argument("--realtime", action="store_true",
                   help="one step per step_s of wall time (start defaults to now)")
    p.add_argument("--speedup", type=float, default=1.0,
                   help="with --realtime: simulated seconds per wall second (default 1)")
    p.add_argument("--chunk-days", type=float, default=30.0,
                   help="fast-forward chunk length in simulated days (default 30)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--mqtt", type=_host_port, default=None, metavar="HOST:PORT",
                   help="publish the readings to this MQTT broker like a gateway (QoS 1 JSON "
                   "batches on dcpue/<site>/readings) instead of writing the store")
    p.add_argument("--modbus-port", type=int, default=None, metavar="N",
                   help="serve the latest readings as Modbus TCP registers on 127.0.0.1:N "
                   "(paced in wall time; prints the [collector.modbus] block that polls it)")
    p.set_defaults(func=_simulate)

    d = sub.add_parser(
        "demo", help="run the bundled example site through the twin and show live values",
        description="Simulate an example site into ./var/demo.duckdb and print IT kW, facility "
        "kW, instantaneous PUE and PV kW of the last steps, read back from the store.",
    )
    d.add_argument("--config", default=None, help="site TOML (default: bundled single_hall)")
    d.add_argument("--store", default=str(DEMO_STORE), help=f"store file (default {DEMO_STORE})")
    d.add_argument("--days", type=float, default=2.0, help="simulated days (default 2)")
    d.add_argument("--steps", type=int, default=5, help="recent steps to show (default 5)")
    d.set_defaults(func=_demo)


def add_twin_arguments(p: argparse.ArgumentParser) -> None:
    """``--store``, ``--seed`` and ``--start``: shared by commands that build a :class:`Twin`."""
    p.add_argument("--store", default=None, help="store file (default: the site's [store] path)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: [twin] seed)")
    p.add_argument("--start", type=_iso, default=None,
                   help="simulated start, ISO 8601 (default: [twin] start, 2023-01-01T00:00Z)")


def _iso(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _fmt(ts_ms: int) -> str:
    from dcpue.core.readings import ms_to_datetime

    return ms_to_datetime(ts_ms).strftime("%Y-%m-%d %H:%M")


def _simulate(args: argparse.Namespace) -> int:
    from dcpue.config import load_site
    from dcpue.core.readings import datetime_to_ms, ms_to_datetime
    from dcpue.twin.energyplus import EnergyPlusPlant, make_plant

    site = load_site(args.config)
    start = args.start
    if args.realtime and start is None:
        now = datetime_to_ms(datetime.now(UTC))
        step_ms = site.twin.step_s * 1000
        start = ms_to_datetime(now - now % step_ms)
    twin = make_plant(site, seed=args.seed, start=start, days=args.days)
    try:
        return _simulate_plant(twin, args)
    finally:
        if isinstance(twin, EnergyPlusPlant):
            twin.close()


def _simulate_plant(twin: Twin | EnergyPlusPlant, args: argparse.Namespace) -> int:
    import asyncio

    from dcpue.collector.gateway_mqtt import publish_readings, readings_topic
    from dcpue.core.store import Store
    from dcpue.twin.runner import fast_forward, simulate_into

    site = twin.site
    if args.modbus_port is not None or (args.mqtt and args.realtime):
        asyncio.run(_live(twin, args, None))
        return 0
    if args.mqtt:
        host, port = args.mqtt
        chunks = fast_forward(
            twin, args.days, chunk_days=args.chunk_days, progress=not args.no_progress
        )
        sent = asyncio.run(publish_readings(site, chunks, host, port))
        print(f"{site.id}: published {sent:,} readings to {host}:{port} "
              f"on {readings_topic(site)}")
        return 0
    path = Path(args.store) if args.store else site.store.path
    with Store(path) as store:
        if args.realtime:
            asyncio.run(_live(twin, args, store))
            return 0
        summary = simulate_into(
            twin, store, args.days, chunk_days=args.chunk_days, progress=not args.no_progress
        )
        _report(site, store, path, summary)
    return 0


def _show(step: TwinStep) -> None:
    r = step.result
    print(
        f"{_fmt(step.ts_ms)}  IT {r.it_kw:9.1f} kW  facility {r.facility_kw:9.1f} kW  "
        f"PUE {r.facility_kw / r.it_kw:.3f}  PV {step.pv_kw:8.1f} kW",
        flush=True,
    )


async def _live(twin: Twin, args: argparse.Namespace, store: Store | None) -> None:
    """Step the twin in wall time into ``store`` or, as field hardware, to MQTT and/or Modbus."""
    from dcpue.collector.gateway_modbus import ModbusGateway, serve_modbus
    from dcpue.collector.gateway_mqtt import publish_readings
    from dcpue.twin.runner import paced

    site = twin.site

    async def steps() -> AsyncIterator[list[Reading]]:
        async for step in paced(twin, args.days, speedup=args.speedup):
            if store is not None:
                store.append(step.readings)
            if args.mqtt:
                await publish_readings(site, [step.readings], *args.mqtt)
            _show(step)
            yield step.readings

    if args.modbus_port is None:
        async for _ in steps():
            pass
        return
    snippet = ModbusGateway(site, port=args.modbus_port).snippet()
    print(f"# serving Modbus TCP on 127.0.0.1:{args.modbus_port}; poll it with:", file=sys.stderr)
    print(snippet, file=sys.stderr)
    await serve_modbus(site, args.modbus_port, steps())


def _report(site: Site, store: Store, path: Path, summary: RunSummary) -> None:
    from dcpue.metrics.balance import energy_balance

    print(
        f"{site.id}: wrote {summary.added:,} new rows ({summary.generated:,} generated) into "
        f"{path}; store holds {store.count():,} rows"
    )
    print(f"simulated {_fmt(summary.first_ms)} .. {_fmt(summary.last_ms)} UTC")
    if summary.last_ms > summary.first_ms:
        b = energy_balance(site, store, summary.first_ms, summary.last_ms)
        print(
            f"from the stored counters: facility {b.facility_kwh / 1000:,.1f} MWh, "
            f"IT {b.it_kwh / 1000:,.1f} MWh, PUE {b.facility_kwh / b.it_kwh:.3f}"
            + (f", PV {b.pv_generation_kwh / 1000:,.1f} MWh" if b.groups["pv_generation"] else "")
        )


def _demo(args: argparse.Namespace) -> int:
    from dcpue.config import example_path, load_site
    from dcpue.core.store import Store
    from dcpue.twin.runner import recent_steps, simulate_into
    from dcpue.twin.simulator import Twin

    site = load_site(args.config or example_path("single_hall"))
    twin = Twin(site)
    path = Path(args.store)
    low, high = twin.it_bounds_kw
    print(
        f"dcpue demo: {site.name or site.id}, {args.days:g} simulated days into {path} "
        f"(IT nominal {site.twin.nominal_it_kw:,.0f} kW, profile {low:,.0f}..{high:,.0f} kW)"
    )
    with Store(path) as store:
        summary = simulate_into(twin, store, args.days)
        _report(site, store, path, summary)
        print("last steps, read back from the store (counter deltas over each step):")
        print(f"{'time (UTC)':16}  {'IT kW':>9}  {'facility kW':>11}  {'PUE':>6}  {'PV kW':>8}")
        for s in recent_steps(site, store, twin.step_s, args.steps):
            print(
                f"{_fmt(s.ts_ms):16}  {s.it_kw:9.1f}  {s.facility_kw:11.1f}  {s.pue:6.3f}  "
                f"{s.pv_kw:8.1f}"
            )
    print(f"\nnext: run the daemon on the bundled site, `{_dcpue()} run`, and open "
          f"http://127.0.0.1:{site.service.port}/ in a browser: it simulates a few days of "
          "history first (so every card has data within a couple of minutes), then runs live "
          "(Ctrl-C stops it)")
    return 0


def _dcpue() -> str:
    """How this shell reaches ``dcpue`` (the venv's script when it is not on PATH)."""
    import shutil

    script = Path(sys.argv[0])
    if script.name == "dcpue" and shutil.which("dcpue") != str(script.resolve()):
        return str(script)
    return "dcpue"
