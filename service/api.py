"""HTTP API (Starlette ASGI app): health, Prometheus metrics, JSON figures, Grafana queries.

The app reads everything through :class:`ApiSources`, a bundle of callables the daemon wires to
its live components (rolling calculator, alert engine, store, carbon and optimizer), so the HTTP
layer stays a thin adapter. Routes are listed in :data:`OPENAPI`, served at ``/openapi.json``.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import numpy as np
from dcpue.config.site import Site
from dcpue.config.topology import ENERGY_ROLES, MeterKind, MeterRole
from dcpue.core.figures import Figure
from dcpue.core.readings import ms_to_datetime
from dcpue.core.store import AGGREGATIONS, Series, Store
from dcpue.service.alerts import Alert
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

HOUR_MS = 3_600_000
#: Numeric columns of the optimizer's ``proposals`` table served as ``proposal:<column>``.
PROPOSAL_SERIES = ("saving_kw",)
#: Meter-id prefix under which the rolling calculator writes its figures back to the store.
METRIC_PREFIX = "metric."
#: Upper bound on points per series returned by one query (keeps responses small).
MAX_POINTS = 5000
STATIC_DIR = resources.files("dcpue.service") / "static"


@dataclass
class ApiSources:
    """What the API reads. All times are UTC epoch ms; ``now_ms`` may be a simulated clock.

    ``figures(now)``: rolling figures by name (``pue.1h``, ...). ``alerts()``: (active,
    recently resolved). ``carbon(now)``: carbon figures by name. ``energy(start, end)``: energy
    balance figures by name (``it``, ``cooling``, ``power_loss``, ``lighting``, ...).
    ``proposals(limit)``: latest optimizer proposals as JSON-ready dicts, newest first.
    """

    site: Site
    store: Store
    registry: CollectorRegistry
    now_ms: Callable[[], int]
    figures: Callable[[int], Mapping[str, Figure]]
    alerts: Callable[[], tuple[list[Alert], list[Alert]]]
    carbon: Callable[[int], Mapping[str, Figure]]
    energy: Callable[[int, int], Mapping[str, Figure]]
    proposals: Callable[[int], list[dict[str, Any]]]
    current_figure: str = "pue.1h"
    token: str | None = None
    #: ``/healthz`` body beyond the site id (e.g. ``{"status": "degraded", "reasons": [...]}``).
    status: Callable[[], Mapping[str, Any]] | None = None
    #: Further routes mounted by the daemon (e.g. ``/api/cli``, :mod:`dcpue.service.remote_cli`).
    routes: Sequence[BaseRoute] = ()


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: replace them by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_finite(data), status_code=status)


def _figure_json(fig: Figure, deep: bool) -> dict[str, Any]:
    out = fig.explain()
    if not deep:
        out.pop("inputs", None)
    return out


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}")
    return value


class BadRequest(ValueError):
    """A client error reported as HTTP 400 with a one-line message."""


class BearerAuth:
    """ASGI middleware: every path except ``/healthz`` and the dashboard's code under
    ``/static/`` (no data) needs ``Authorization: Bearer <token>`` or ``?access_token=<token>``
    (RFC 6750 §2.1 and §2.3)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/healthz" or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get(
            "access_token", ""
        )
        if hmac.compare_digest(given.encode(), self.token):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"error": "missing or wrong bearer token"}, status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="dcpue"'},
        )
        await response(scope, receive, send)


# -- Grafana JSON data source ---------------------------------------------------------------

def grafana_targets(site: Site, store: Store, figure_names: list[str]) -> list[dict[str, str]]:
    """Queryable series: ``meter:<id>``, ``role:<role>``, ``metric:<stored figure>`` and
    ``proposal:saving_kw``."""
    present = {m for m, _, _ in store.meters()}
    out = [{"label": f"meter {m.id} ({m.role})", "value": f"meter:{m.id}"} for m in site.meters]
    roles = dict.fromkeys(m.role for m in site.meters)
    out += [{"label": f"role {r} (sum)", "value": f"role:{r}"} for r in roles]
    out += [{"label": f"metric {n}", "value": f"metric:{n}"} for n in figure_names
            if f"{METRIC_PREFIX}{n}" in present]
    out += [{"label": f"proposals {c} (bucket mean)", "value": f"proposal:{c}"}
            for c in PROPOSAL_SERIES]
    return out


def _default_agg(site: Site, meter: str) -> str:
    m = site.meter_by_id.get(meter)
    return "delta" if m is not None and m.kind is MeterKind.COUNTER else "mean"


def _combine(parts: list[Series], total: bool) -> Series:
    """Sum (or average) several bucketed series on the union of their bucket times."""
    if not parts:
        return Series(np.empty(0, np.int64), np.empty(0))
    ts = np.unique(np.concatenate([p.ts_ms for p in parts]))
    acc, n = np.zeros(len(ts)), np.zeros(len(ts))
    for p in parts:
        idx = np.searchsorted(ts, p.ts_ms)
        acc[idx] += p.value
        n[idx] += 1
    return Series(ts, acc if total else acc / n)


def query_series(
    site: Site, store: Store, target: str, start_ms: int, end_ms: int, step_ms: int,
    agg: str | None,
) -> Series:
    """One Grafana target over ``[start_ms, end_ms)`` in ``step_ms`` buckets.

    ``meter:<id>``: that meter (counters default to ``delta``, kWh per bucket; others to
    ``mean``). ``role:<role>``: the role's meters aggregated per meter, then summed per bucket
    for energy roles (kWh or kW) and averaged for state roles (°C, %). ``metric:<name>``: a
    series the calculator wrote back (meter ``metric.<name>``, e.g. ``pue.1h``), ``mean`` by
    default.
    """
    kind, _, name = target.partition(":")
    if agg is not None and agg not in AGGREGATIONS:
        raise BadRequest(f"unknown aggregation {agg!r}; use one of {', '.join(AGGREGATIONS)}")
    if kind == "meter":
        if name not in site.meter_by_id:
            raise BadRequest(f"unknown meter {name!r}")
        got = store.bucketed([name], start_ms, end_ms, step_ms, agg or _default_agg(site, name))
        return got.get(name) or _combine([], True)
    if kind == "role":
        try:
            role = MeterRole(name)
        except ValueError:
            raise BadRequest(f"unknown role {name!r}") from None
        parts = [
            store.bucketed([m.id], start_ms, end_ms, step_ms, agg or _default_agg(site, m.id))
            .get(m.id)
            for m in site.meters_with(role)
        ]
        return _combine([p for p in parts if p is not None], role in ENERGY_ROLES)
    if kind == "metric":
        stored = f"{METRIC_PREFIX}{name}"
        got = store.bucketed([stored], start_ms, end_ms, step_ms, agg or "mean")
        return got.get(stored) or _combine([], True)
    if kind == "proposal":
        if name not in PROPOSAL_SERIES:
            raise BadRequest(f"unknown proposal series {name!r}; use {', '.join(PROPOSAL_SERIES)}")
        rows = store.execute(
            f"SELECT ts_ms, {name} FROM proposals WHERE ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms",
            [start_ms, end_ms],
        ).fetchall()
        ts = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.array([r[1] for r in rows], dtype=np.float64)
        return _combine([Series(start_ms + (ts - start_ms) // step_ms * step_ms, values)], False)
    raise BadRequest(f"target {target!r} must start with meter:, role:, metric: or proposal:")


def _parse_time(raw: Any) -> int:
    if isinstance(raw, int | float):
        return int(raw)
    try:
        return int(datetime.fromisoformat(str(raw)).timestamp() * 1000)
    except ValueError:
        raise BadRequest(f"bad time {raw!r}: use ISO 8601 or epoch ms") from None


def create_app(sources: ApiSources) -> Starlette:
    """The ASGI application; wrap with :class:`BearerAuth` when a token is configured."""
    site, store = sources.site, sources.store

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "site": site.id, **(sources.status() if sources.status else {})})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(sources.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return _json(OPENAPI)

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    async def pue(request: Request) -> Response:
        now = sources.now_ms()
        figs = sources.figures(now)
        current = figs.get(sources.current_figure)
        return _json({
            "site": site.id, "name": site.name, "now": ms_to_datetime(now).isoformat(),
            "now_ms": now, "current_figure": sources.current_figure,
            "current": None if current is None else _figure_json(current, deep=True),
            "figures": {k: _figure_json(f, deep=False) for k, f in figs.items()},
        })

    async def pue_history(request: Request) -> Response:
        now = sources.now_ms()
        name = request.query_params.get("figure", sources.current_figure)
        hours = _int_param(request, "hours", 24, 1, 24 * 366)
        step_s = _int_param(request, "step_s", max(60, hours * 3600 // 288), 1, 86400)
        start = now - hours * HOUR_MS
        series = query_series(site, store, f"metric:{name}", start, now + 1, step_s * 1000, None)
        return _json({"figure": name, "step_s": step_s,
                      "points": [[int(t), float(v)] for t, v in zip(series.ts_ms, series.value,
                                                                     strict=True)]})

    async def energy(request: Request) -> Response:
        now = sources.now_ms()
        hours = _int_param(request, "hours", 24, 1, 24 * 366)
        figs = sources.energy(now - hours * HOUR_MS, now)
        return _json({"hours": hours, "figures": {k: _figure_json(f, deep=False)
                                                  for k, f in figs.items()}})

    async def carbon(request: Request) -> Response:
        figs = sources.carbon(sources.now_ms())
        return _json({"figures": {k: _figure_json(f, deep=True) for k, f in figs.items()}})

    async def proposals(request: Request) -> Response:
        limit = _int_param(request, "limit", 10, 1, 1000)
        return _json({"proposals": sources.proposals(limit)})

    async def alerts(request: Request) -> Response:
        active, history = sources.alerts()
        return _json({"active": [a.to_dict() for a in active],
                      "resolved": [a.to_dict() for a in history]})

    async def grafana_health(request: Request) -> Response:
        return _json({"status": "ok"})

    def names() -> list[str]:
        return sorted(sources.figures(sources.now_ms()))

    async def grafana_search(request: Request) -> Response:
        return _json([t["value"] for t in grafana_targets(site, store, names())])

    async def grafana_metrics(request: Request) -> Response:
        options = [{"label": a, "value": a} for a in AGGREGATIONS]
        payloads = [{"name": "agg", "label": "Aggregation", "type": "select",
                     "options": options}]
        return _json([{**t, "payloads": payloads} for t in grafana_targets(site, store, names())])

    async def grafana_payload_options(request: Request) -> Response:
        return _json([{"label": a, "value": a} for a in AGGREGATIONS])

    async def grafana_query(request: Request) -> Response:
        body = await request.json()
        rng = body.get("range") or {}
        start, end = _parse_time(rng.get("from")), _parse_time(rng.get("to"))
        if end <= start:
            raise BadRequest("range.to must be after range.from")
        step = max(int(body.get("intervalMs") or 60_000), 1000)
        points = min(int(body.get("maxDataPoints") or MAX_POINTS), MAX_POINTS)
        step = max(step, -(-(end - start) // points))
        out = []
        for t in body.get("targets", []):
            if t.get("hide") or not t.get("target"):
                continue
            payload = t.get("payload") or t.get("data") or {}
            series = query_series(site, store, t["target"], start, end, step, payload.get("agg"))
            out.append({"target": t["target"], "refId": t.get("refId"), "datapoints": [
                [float(v), int(ts)] for ts, v in zip(series.ts_ms, series.value, strict=True)
            ]})
        return _json(out)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return _json({"error": str(exc)}, 400)

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
        Route("/api/pue", pue),
        Route("/api/pue/history", pue_history),
        Route("/api/energy", energy),
        Route("/api/carbon", carbon),
        Route("/api/proposals", proposals),
        Route("/api/alerts", alerts),
        Route("/grafana/", grafana_health),
        Route("/grafana/search", grafana_search, methods=["POST"]),
        Route("/grafana/metrics", grafana_metrics, methods=["POST"]),
        Route("/grafana/metric-payload-options", grafana_payload_options, methods=["POST"]),
        Route("/grafana/query", grafana_query, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
        *sources.routes,
    ]
    app = Starlette(routes=routes, exception_handlers={BadRequest: bad_request})
    if sources.token:
        app.add_middleware(BearerAuth, token=sources.token)
    return app


def _get(summary: str, params: tuple[str, ...] = (), media: str = "application/json") -> dict:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {"200": {"description": "OK", "content": {media: {}}}}}
    if params:
        op["parameters"] = [{"name": p, "in": "query", "schema": {"type": "string"}}
                            for p in params]
    return {"get": op}


def _post(summary: str) -> dict:
    return {"post": {
        "summary": summary,
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"description": "OK"}, "400": {"description": "bad request"}},
    }}


#: The OpenAPI 3.1 document of the routes above.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "dcpue", "version": "1", "description":
             "PUE, energy, carbon, alerts and proposals of one data-center site."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {"get": {**_get("Liveness (never needs a token)")["get"], "security": []}},
        "/metrics": _get("Daemon health in Prometheus text format", media="text/plain"),
        "/": _get("Live dashboard (HTML)", ("access_token",), "text/html"),
        "/api/pue": _get("Current and rolling PUE figures with their audit trail"),
        "/api/pue/history": _get("Stored rolling PUE series", ("figure", "hours", "step_s")),
        "/api/energy": _get("Energy balance over the last hours (kWh)", ("hours",)),
        "/api/carbon": _get("Carbon figures (tCO2e) with factor sources"),
        "/api/proposals": _get("Latest cooling-setpoint proposals", ("limit",)),
        "/api/alerts": _get("Active and recently resolved alerts"),
        "/grafana/": _get("Grafana JSON data source: connection test"),
        "/grafana/search": _post("Grafana: list targets (meter:, role:, metric:)"),
        "/grafana/metrics": _post("Grafana: targets with aggregation payload"),
        "/grafana/metric-payload-options": _post("Grafana: aggregation options"),
        "/grafana/query": _post("Grafana: bucketed series for targets over range/intervalMs"),
    },
}
