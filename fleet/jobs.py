"""Hooks for the daemon: a site daemon's publishing job and the fleet-mode HTTP API.

- :func:`publish_job` is what a site daemon runs (hourly, and after a backfill or import):
  one :func:`dcpue.fleet.publish.publish_site` pass to the site's ``[collector.remote]`` server,
  measurement ``dcpue_hourly``. Without a remote URL it does nothing.
- :func:`api_routes` are the fleet-mode daemon's routes (``dcpue fleet serve``):
  ``GET /api/fleet/report?from=YYYY-MM-DD&to=YYYY-MM-DD[&format=json|md|csv][&hourly=0]``, the
  same figures and audit trail as ``dcpue fleet report``; ``GET /api/fleet/sites`` lists the
  fleet file's sites.
"""

from __future__ import annotations

import logging
from datetime import date

from dcpue.config.collector import RemoteSettings
from dcpue.config.site import ConfigError, Site
from dcpue.core.store import Store
from dcpue.fleet.config import Fleet, PublishSettings
from dcpue.fleet.publish import PublishResult, publish_site
from dcpue.fleet.query import RemoteError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)


def publish_settings(remote: RemoteSettings) -> PublishSettings:
    """The hourly-term settings for a site's remote sink (same server, org, bucket, token)."""
    keep = remote.model_dump(exclude={"measurement", "cursor"})
    return PublishSettings(**keep)


def publish_job(site: Site, store: Store) -> PublishResult | None:
    """One publishing pass of a site daemon; errors are logged, the hours stay queued."""
    if not site.collector.remote.url:
        return None
    try:
        return publish_site(site, store, publish_settings(site.collector.remote))
    except RemoteError as exc:
        log.warning("fleet: hourly terms not published (%s); they stay queued", exc)
        return None


def _day(request: Request, key: str) -> date:
    text = request.query_params.get(key, "")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"query parameter {key!r}: not a date (YYYY-MM-DD): {text!r}") from None


def api_routes(fleet: Fleet) -> list[Route]:
    """Routes of the fleet-mode daemon (see module docstring)."""
    from dcpue.fleet.report import fleet_report

    def report(request: Request) -> Response:
        try:
            start, end = _day(request, "from"), _day(request, "to")
            if end <= start:
                raise ConfigError(f"to {end} must be after from {start} (to is exclusive)")
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        fmt = request.query_params.get("format", "json")
        try:
            result = fleet_report(fleet, start, end,
                                  hourly_matching=request.query_params.get("hourly") != "0")
        except RemoteError as exc:
            return JSONResponse({"error": f"remote store: {exc}"}, status_code=502)
        if fmt == "json":
            return Response(result.to_json(), media_type="application/json")
        return PlainTextResponse(result.render(fmt, explain=True))

    def sites(_: Request) -> Response:
        return JSONResponse([
            {"site": s.id, "region": s.region, "commissioned": s.commissioned.isoformat(),
             "declared": s.declared is not None} for s in fleet.sites
        ])

    return [Route("/api/fleet/report", report), Route("/api/fleet/sites", sites)]
