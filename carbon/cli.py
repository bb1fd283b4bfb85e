"""``dcpue report``: the ESG key-performance table of a site (from its store) or a fleet inventory."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcpue.carbon.report import Report


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``dcpue`` parser."""
    p = sub.add_parser(
        "report",
        help="ESG table: energy, renewables, PUE, Scope 2 both ways, avoided emissions",
        description="Print the ESG key-performance table of a site over [--from, --to) from "
        "its store, or of a fleet inventory of published totals. Dates are local to the site "
        "and --to is exclusive (a year: --from 2023-01-01 --to 2024-01-01).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="site TOML file (reads its store)")
    source.add_argument("--inventory", type=Path, help="fleet inventory TOML file")
    p.add_argument("--store", type=Path, default=None,
                   help="store file (default: the site's [store] path)")
    p.add_argument("--from", dest="start", type=_date, help="first day (inclusive)")
    p.add_argument("--to", dest="end", type=_date, help="end day (exclusive)")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md")
    p.add_argument("--monthly", action="store_true", help="one column per calendar month")
    p.add_argument("--explain", action="store_true",
                   help="add the audit trail (md: tree; csv: formula and factor columns; "
                   "json always has it)")
    p.set_defaults(func=_report)


def _build(args: argparse.Namespace) -> Report:
    from dcpue.carbon.inventory import load_inventory
    from dcpue.carbon.report import inventory_report, site_report
    from dcpue.config.site import ConfigError, load_site
    from dcpue.core.store import Store

    if args.inventory is not None:
        return inventory_report(load_inventory(args.inventory), args.start, args.end,
                                args.monthly)
    if args.start is None or args.end is None:
        raise ConfigError("report --config needs --from and --to")
    if args.end <= args.start:
        raise ConfigError(f"--to {args.end} must be after --from {args.start} (--to is exclusive)")
    site = load_site(args.config)
    path = args.store or site.store.path
    if not path.exists():
        raise ConfigError(f"{args.config}: store {path} does not exist")
    with Store(path) as store:
        return site_report(site, store, args.start, args.end, args.monthly, args.config.parent)


def _report(args: argparse.Namespace) -> int:
    report = _build(args)
    sys.stdout.write(report.render(args.format, args.explain))
    for warning in report.warnings:
        print(f"dcpue report: warning: {warning}", file=sys.stderr)
    return 0
