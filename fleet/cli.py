"""``dcpue fleet report|publish`` and the ``dcpue simulate --fleet`` entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the commands, not by `dcpue --help`
    from dcpue.fleet.config import Fleet


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fleet`` to the ``dcpue`` parser."""
    from dcpue.carbon.cli import _date

    p = sub.add_parser("fleet", help="fleet figures from the sites' hourly terms in the "
                       "remote store (report, publish)")
    fleet_sub = p.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    r = fleet_sub.add_parser(
        "report", help="fleet PUE, per-site table, renewables, Scope 2 both ways, 24/7 CFE",
        description="Read the sites' published hourly terms from the fleet's remote store "
        "(PromQL/MetricsQL on VictoriaMetrics) and print the fleet report over [--from, --to) "
        "(dates in the fleet's time zone, --to exclusive).",
    )
    r.add_argument("--fleet", required=True, type=Path, help="fleet TOML file")
    r.add_argument("--from", dest="start", required=True, type=_date)
    r.add_argument("--to", dest="end", required=True, type=_date)
    r.add_argument("--format", choices=("md", "csv", "json"), default="md")
    r.add_argument("--explain", action="store_true", help="add the audit trail")
    r.add_argument("--url", default=None, help="remote store URL (default: [remote] url)")
    r.add_argument("--no-hourly", action="store_true",
                   help="skip the hourly export (no 24/7 CFE, flat factors)")
    r.set_defaults(func=_report)

    pub = fleet_sub.add_parser(
        "publish", help="publish a site's finalized hourly terms to the remote store",
        description="Recompute the hours touched by readings added since the last pass and "
        "write them (idempotently) to the fleet's remote store.",
    )
    pub.add_argument("--config", required=True, type=Path, help="site TOML file")
    pub.add_argument("--fleet", type=Path, default=None,
                     help="fleet TOML file whose [remote] to use (or --url)")
    pub.add_argument("--url", default=None, help="remote store URL")
    pub.add_argument("--store", type=Path, default=None, help="store (default: the site's)")
    pub.add_argument("--republish", action="store_true",
                     help="rewrite every published hour (after the remote lost data)")
    pub.set_defaults(func=_publish)

    srv = fleet_sub.add_parser(
        "serve", help="fleet-mode daemon: the fleet report on an HTTP API",
        description="Serve GET /api/fleet/report?from=D&to=D[&format=json|md|csv] and "
        "/api/fleet/sites, read from the fleet's remote store on each request.",
    )
    srv.add_argument("--fleet", required=True, type=Path, help="fleet TOML file")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8081)
    srv.set_defaults(func=_serve)
    _extend_simulate(sub)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from dcpue.fleet.config import load_fleet
    from dcpue.fleet.jobs import api_routes
    from starlette.applications import Starlette

    fleet = load_fleet(args.fleet)
    uvicorn.run(Starlette(routes=api_routes(fleet)), host=args.host, port=args.port,
                log_level="info")
    return 0


def _extend_simulate(sub: argparse._SubParsersAction) -> None:
    """Give ``dcpue simulate`` (registered by dcpue.twin.cli) a ``--fleet`` mode, without the
    twin importing the fleet: ``--config`` becomes optional when ``--fleet`` is given."""
    simulate = sub.choices.get("simulate")
    if simulate is None:
        return
    add_simulate_arguments(simulate)
    for action in simulate._actions:
        if action.dest == "config":
            action.required = False
    site_mode = simulate.get_default("func")

    def dispatch(args: argparse.Namespace) -> int:
        from dcpue.config.site import ConfigError

        if args.fleet is not None:
            return simulate_command(args)
        if args.config is None:
            raise ConfigError("simulate needs --config SITE or --fleet FLEET")
        return site_mode(args)

    simulate.set_defaults(func=dispatch)


def _fleet(path: Path, url: str | None) -> Fleet:
    from dcpue.fleet.config import load_fleet

    fleet = load_fleet(path)
    if url:
        fleet.remote.url = url
    return fleet


def _report(args: argparse.Namespace) -> int:
    from dcpue.config.site import ConfigError
    from dcpue.fleet.query import RemoteError
    from dcpue.fleet.report import fleet_report

    if args.end <= args.start:
        raise ConfigError(f"--to {args.end} must be after --from {args.start} (--to is exclusive)")
    fleet = _fleet(args.fleet, args.url)
    try:
        report = fleet_report(fleet, args.start, args.end, hourly_matching=not args.no_hourly)
    except RemoteError as exc:
        print(f"dcpue fleet report: remote store: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(report.render(args.format, args.explain))
    for warning in report.warnings:
        print(f"dcpue fleet report: warning: {warning}", file=sys.stderr)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from dcpue.config.site import ConfigError, load_site
    from dcpue.core.store import Store
    from dcpue.fleet.config import PublishSettings
    from dcpue.fleet.publish import publish_site
    from dcpue.fleet.query import RemoteError

    site = load_site(args.config)
    if args.fleet is not None:
        settings = _fleet(args.fleet, args.url).remote
    elif args.url:
        settings = PublishSettings(url=args.url)
    else:
        raise ConfigError("fleet publish needs --fleet FILE or --url URL")
    path = args.store or site.store.path
    if not path.exists():
        raise ConfigError(f"{args.config}: store {path} does not exist")
    with Store(path) as store:
        try:
            result = publish_site(site, store, settings, republish=args.republish)
        except RemoteError as exc:
            print(f"dcpue fleet publish: {exc}; the hours stay queued", file=sys.stderr)
            return 1
    print(f"{site.id}: {result.computed} hours recomputed, {result.changed} new or changed, "
          f"{result.written} written to {settings.url}"
          + (" (site series rewritten)" if result.rewrote_all else ""))
    return 0


def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    """``--fleet`` and ``--out`` for ``dcpue simulate``."""
    p.add_argument("--fleet", type=Path, default=None,
                   help="fleet TOML: simulate its [sites.simulate] sites and publish them")
    p.add_argument("--out", type=Path, default=Path("var/fleet"),
                   help="with --fleet: directory for the site files and stores (var/fleet)")
    p.add_argument("--no-publish", action="store_true",
                   help="with --fleet: only simulate, do not publish")


def simulate_command(args: argparse.Namespace) -> int:
    """``dcpue simulate --fleet FILE --days N``."""
    from dcpue.fleet.config import load_fleet
    from dcpue.fleet.query import RemoteError
    from dcpue.fleet.simulate import SimulatedSite, simulate_fleet

    fleet = load_fleet(args.fleet)

    def show(s: SimulatedSite) -> None:
        pub = s.published
        print(f"{s.site.id}: {s.run.added:,} new rows into {s.site.store.path}"
              + ("" if pub is None else f"; {pub.written} hours published to {fleet.remote.url}"),
              flush=True)

    try:
        simulate_fleet(fleet, args.days, args.out, start=args.start,
                       publish=not args.no_publish, progress=not args.no_progress, on_site=show)
    except RemoteError as exc:  # the stores are complete: publish again later
        print(f"dcpue simulate: publishing failed ({exc}); rerun `dcpue fleet publish`",
              file=sys.stderr)
        return 1
    return 0
