"""``dcpue check-config``: validate a site file the way the daemon does, and say what else
looks wrong.

Three stages, every finding reported at once: the schema (pydantic, every field error),
the site-level checks of :func:`dcpue.config.site.site_problems`, and the constructors the
daemon runs at start (energy-balance topology, rolling calculator, Modbus point map), so a
file check-config accepts is one ``dcpue run`` starts with.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the command, not by ``dcpue --help``
    from dcpue.config.site import ConfigError, Problem, Site

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a site configuration file")
    p.add_argument("file", help="site TOML file")
    p.set_defaults(func=_check)


def startup_problems(site: Site) -> list[Problem]:
    """Errors the daemon's start-up constructors raise for ``site`` (imported lazily: they
    live in metrics and collector), plus figures an alert or the dashboard names that the
    calculator does not produce (e.g. ``ppue_cooling.1h`` without cooling meters)."""
    from dcpue.collector.modbus import check_points
    from dcpue.config.service import METER_FIGURE
    from dcpue.config.site import ConfigError, Problem, near
    from dcpue.metrics.rolling import RollingCalculator

    out: list[Problem] = []
    try:
        check_points(site, site.collector.modbus)
    except ConfigError as exc:
        out.append(_as_problem(exc))
    try:
        names = set(RollingCalculator(site).snapshot(0))
    except ConfigError as exc:
        return [*out, _as_problem(exc)]
    alerts = site.service.alerts
    named = [(f"service.alerts.thresholds[{r.name}].figure", r.figure) for r in alerts.thresholds]
    named += [("service.alerts.drift.figure", alerts.drift.figure),
              ("service.current_figure", site.service.current_figure)]
    for where, figure in named:
        if not figure.startswith(METER_FIGURE) and figure not in names:
            out.append(Problem(where, f"{figure!r} is not computed for this site's meters",
                               near(figure, names)))
    return out


def _as_problem(exc: ConfigError) -> Problem:
    from dcpue.config.site import Problem

    where, _, reason = str(exc).partition(": ")
    return Problem(where, reason) if reason else Problem("(site)", where)


def check(path: str) -> tuple[Site, list[Problem]]:
    """The validated site and its warnings; :class:`ConfigError` with every error otherwise."""
    from dcpue.config.site import ConfigError, load_site, require_consistent

    site = load_site(path)
    try:
        warnings = require_consistent(site, path, log_warnings=False)
    except ConfigError as exc:
        reported = {p.where for p in exc.problems}
        extra = [p for p in startup_problems(site) if p.where not in reported]
        problems = [*exc.problems, *extra]
        raise ConfigError("\n".join(p.line(path) for p in problems), problems) from None
    errors = startup_problems(site)
    if errors:
        raise ConfigError("\n".join(p.line(path) for p in errors), errors)
    return site, warnings


def _check(args: argparse.Namespace) -> int:
    site, warnings = check(args.file)
    for w in warnings:
        print(f"warning: {w.line(args.file)}", file=sys.stderr)
    roles = sorted({m.role.value for m in site.meters})
    extra = f", {len(warnings)} warning(s)" if warnings else ""
    print(f"{args.file}: ok: site {site.id!r}, {len(site.meters)} meters ({', '.join(roles)})"
          f"{extra}")
    return 0
