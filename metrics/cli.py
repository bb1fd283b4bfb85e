"""``dcpue pue``: a quick look at PUE and friends over the latest window in the store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the command, not by ``dcpue --help``
    from dcpue.config.site import Site
    from dcpue.core.figures import Figure
    from dcpue.core.store import Store

#: Energy flows shown under the indicators.
SHOWN_FLOWS = ("facility", "it", "cooling", "power_loss", "lighting", "other", "pv_self_consumed",
               "pv_inside")


#: Windows longer than this (ms) are read from the hourly rollups.
LONG_WINDOW_MS = 86_400_000


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dcpue pue`` to the ``dcpue`` parser."""
    p = sub.add_parser("pue", help="PUE, DCiE, pPUE, CUE, REF, ERF, WUE over the latest window")
    p.add_argument("--config", required=True, help="site TOML file")
    p.add_argument("--window", default="1h", help="window ending at the newest reading: "
                   "15m, 1h, 1d, 7d, 30d, 12mo... (default 1h)")
    p.add_argument("--store", help="DuckDB store (default: the site's [store] path)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--explain", action="store_true",
                   help="print each figure's audit trail: meters, window, coverage, formula")
    p.set_defaults(func=_pue)


def latest_end(site: Site, store: Store) -> int | None:
    """The instant the latest window ends at: the time every balance meter has reached (its
    newest reading), held back by at most ``max_gap_s`` from the newest reading of any, so a
    lagging meter does not read as missing data while a silent one shows as lost coverage.
    None when the store holds no reading of the balance's meters."""
    from dcpue.metrics.balance import BalanceTopology

    newest = store.last_ts_by_meter()  # one pass over the newest months, not one per meter
    ends = [newest[m] for m in BalanceTopology.from_site(site).all_meters if m in newest]
    if not ends:
        return None
    return max(min(ends), max(ends) - int(site.calculator.max_gap_s * 1000))


def latest_figures(
    site: Site, store: Store, window: str, base_dir: Path | None = None
) -> dict[str, Figure] | None:
    """Indicators and energy flows over ``window`` ending where :func:`latest_end` says
    (windows over a day: at the whole hour before, summed from the hourly rollups); CUE at the
    window's hourly factors when ``carbon.hourly_factors_csv`` is configured (a relative path
    from ``base_dir``), and with a battery CUE, PV inside and REF from the provenance ledger
    (:func:`dcpue.metrics.provenance.stored_origin`).

    None when the store holds no reading of the balance's meters.
    """
    from dcpue.config.calculator import window_ms
    from dcpue.config.factors import site_hourly_factors
    from dcpue.metrics.balance import energy_balance
    from dcpue.metrics.indicators import site_indicators
    from dcpue.metrics.provenance import stored_origin, with_origin

    length = window_ms(window)
    end = latest_end(site, store)
    if end is None:
        return None
    if length > LONG_WINDOW_MS:  # whole hours from the rollups, as the daemon's long windows
        from dcpue.metrics import rollups  # writes rollups with pandas: only for long windows

        rollups.catch_up(site, store)
        end = rollups.floor_hour(end)
        b = rollups.rollup_balance(site, store, end - length, end)
    else:
        b = energy_balance(site, store, end - length, end)
    origin = stored_origin(site, store, end - length, end, site_hourly_factors(site, base_dir))
    figures = site_indicators(site, b, origin)
    flows = with_origin(b, origin).figures()  # PV inside as CUE and REF count it
    figures.update({name: flows[name] for name in SHOWN_FLOWS})
    return figures


def _pue(args: argparse.Namespace) -> int:
    from dcpue.config.calculator import window_ms
    from dcpue.config.site import load_site
    from dcpue.core.readings import ms_to_datetime
    from dcpue.core.store import Store
    from dcpue.metrics.balance import DATA_QUALITY_ERROR

    site = load_site(args.config)
    try:
        window_ms(args.window)
    except ValueError as exc:
        print(f"dcpue pue: {exc}")
        return 2
    path = Path(args.store) if args.store else site.store.path
    if not path.exists():
        print(f"dcpue pue: no store at {path}")
        return 1
    with Store(path) as store:
        figures = latest_figures(site, store, args.window, Path(args.config).parent)
    if figures is None:
        print(f"dcpue pue: {path} holds no energy readings of site {site.id!r}")
        return 1
    if args.json or args.explain:
        out = {k: (f.explain() if args.explain else _brief(f)) for k, f in figures.items()}
        print(json.dumps({"site": site.id, "window": args.window, "figures": out}, indent=2))
        return 0
    first = next(iter(figures.values()))
    assert first.start_ms is not None and first.end_ms is not None
    print(f"{site.id}: {args.window} from {ms_to_datetime(first.start_ms).isoformat()} "
          f"to {ms_to_datetime(first.end_ms).isoformat()}")
    print(f"{'figure':<18}{'value':>14}  {'unit':<10}{'coverage':>9}")
    errors = []
    for name, fig in figures.items():
        value = status(fig) if fig.value is None else f"{fig.value:.4f}"
        print(f"{name:<18}{value:>14}  {fig.unit:<10}{fig.coverage or 0.0:>9.3f}")
        if fig.extra.get("status") == DATA_QUALITY_ERROR and fig.value is None:
            errors.append(f"{name}: {fig.extra['cause']}")
    for line in dict.fromkeys(errors):
        print(f"data-quality error: {line}")
    return 0


def status(fig: Figure) -> str:
    """'data-quality error' or 'insufficient' for a figure without a value."""
    from dcpue.metrics.balance import DATA_QUALITY_ERROR

    return "dq-error" if fig.extra.get("status") == DATA_QUALITY_ERROR else "insufficient"


def _brief(fig: Figure) -> dict[str, object]:
    out: dict[str, object] = {"value": fig.value, "unit": fig.unit, "coverage": fig.coverage}
    if fig.value is None:
        out["status"] = fig.extra.get("status", "insufficient data")
    if fig.extra.get("cause"):
        out["cause"] = fig.extra["cause"]
    if fig.note:
        out["note"] = fig.note
    return out
