"""HTTP API (Starlette ASGI app): health, Prometheus metrics, JSON figures, Grafana queries.

The app reads everything through :class:`ApiSources`, a bundle of callables the daemon wires to
its live components (rolling calculator, alert engine, store, carbon and optimizer), so the HTTP
layer stays a thin adapter. Routes are listed in :data:`OPENAPI`, served at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import numpy as np
from dcpue.config.site import Site
from dcpue.config.topology import ENERGY_ROLES, MeterKind, MeterRole
from dcpue.core.figures import Figure
from dcpue.core.readings import ms_to_datetime
from dcpue.core.store import AGGREGATIONS, Series, Store
from dcpue.service import views
from dcpue.service.actions import AlertActions
from dcpue.service.alerts import Alert
from dcpue.service.auth import BodyLimit, TokenAuth, grants
from dcpue.service.export import COLUMNS as EXPORT_COLUMNS
from dcpue.service.export import csv_text
from dcpue.service.export import page as readings_page
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

HOUR_MS = 3_600_000
#: Numeric columns of the optimizer's ``proposals`` table served as ``proposal:<column>``.
PROPOSAL_SERIES = ("saving_kw",)
#: Meter-id prefix under which the rolling calculator writes its figures back to the store.
METRIC_PREFIX = "metric."
#: Earliest and latest instants the API accepts: 0001-01-01 and 9999-12-31T23:59:59.999 UTC.
MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_799_999
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
    #: Further counter/data-quality events by kind the daemon knows of (added to those the
    #: energy engine finds in the requested range).
    counter_events: Callable[[], Mapping[str, int]] = dict
    #: Operator token for every site (``[service] bearer_token``); ``[service] tokens`` add more.
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
    """The figure's explanation; with its inputs, recursively, only when ``deep``."""
    return (fig if deep else replace(fig, inputs=())).explain()


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


def parse_time(raw: Any, zone: str = "UTC") -> int:
    """Epoch ms from epoch ms (number or digits) or ISO 8601 (a date or a time without offset
    is in ``zone``); BadRequest outside years 1..9999 or for NaN/Infinity."""
    if isinstance(raw, bool) or raw is None:
        raise BadRequest(f"bad time {raw!r}: use ISO 8601 or epoch ms")
    if isinstance(raw, str) and raw.lstrip("-").isdigit():
        raw = int(raw)
    if isinstance(raw, int | float):
        if not (math.isfinite(raw) and MIN_MS <= raw <= MAX_MS):
            raise BadRequest(f"time {raw!r} is outside years 1..9999 (epoch ms)")
        return int(raw)
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"bad time {raw!r}: use ISO 8601 or epoch ms") from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(zone))
    try:
        return int(moment.astimezone(UTC).timestamp() * 1000)
    except (OverflowError, ValueError):
        raise BadRequest(f"time {raw!r} is outside years 1..9999") from None


class _GrafanaTarget(BaseModel):
    model_config = ConfigDict(extra="allow")
    target: str | None = None
    refId: str | None = None
    hide: bool = False
    payload: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


class _GrafanaRange(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    start: Any = Field(alias="from")
    end: Any = Field(alias="to")


class GrafanaQuery(BaseModel):
    """The body of ``/grafana/query`` (simpod JSON data source), validated at the edge."""

    model_config = ConfigDict(extra="allow")
    range: _GrafanaRange
    intervalMs: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    maxDataPoints: int | None = Field(default=None, gt=0)
    targets: list[_GrafanaTarget] = Field(default_factory=list)

    @field_validator("intervalMs", mode="before")
    @classmethod
    def _finite_interval(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be finite")
        return value


class SilenceBody(BaseModel):
    """``minutes`` of silence (0 lifts it; at most 7 days)."""

    minutes: float = Field(default=60.0, ge=0, le=7 * 1440, allow_inf_nan=False)


def best_figure(figs: Mapping[str, Figure], current: str) -> str | None:
    """The figure to show: ``current`` if it has a value, else the PUE window closest in
    length to it that has one (shorter first)."""
    from dcpue.config.calculator import window_ms

    if (f := figs.get(current)) is not None and f.value is not None:
        return current
    base, _, window = current.rpartition(".")
    try:
        want = window_ms(window)
    except ValueError:
        return None
    have = []
    for key, fig in figs.items():
        name, _, w = key.rpartition(".")
        if name == base and fig.value is not None:
            length = window_ms(w)
            have.append((abs(length - want), length > want, key))
    return min(have)[2] if have else None


def warming_up(site: Site, store: Store, name: str, current: Figure | None,
               now_ms: int) -> dict[str, Any] | None:
    """None once ``name`` has a value; else how long until its window holds
    ``min_coverage`` of data, from the oldest reading (``ready_in_s``, None if no data)."""
    from dcpue.config.calculator import window_ms

    if current is not None and current.value is not None:
        return None
    try:
        need = window_ms(name.rpartition(".")[2]) * site.calculator.min_coverage
    except ValueError:
        return None
    span = store.time_range()
    if span is None:
        return {"figure": name, "ready_in_s": None}
    have = max(0, min(now_ms, span[1]) - span[0])
    return {"figure": name, "ready_in_s": max(0.0, (need - have) / 1000)}


def alert_groups(active: list[Alert]) -> list[dict[str, Any]]:
    """Firing alerts grouped by cause (alert name) and device (meter or device label), worst
    severity first, so one outage reads as one line per cause."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    groups: dict[str, dict[str, Any]] = {}
    for a in active:
        g = groups.setdefault(a.name, {"cause": a.name, "severity": a.severity, "count": 0,
                                       "devices": [], "summary": a.summary,
                                       "since_ms": a.starts_ms, "ids": []})
        g["count"] += 1
        g["ids"].append(a.id)
        device = a.labels.get("meter") or a.labels.get("device")
        if device and device not in g["devices"]:
            g["devices"].append(device)
        g["since_ms"] = min(g["since_ms"], a.starts_ms)
        if rank.get(a.severity, 3) < rank.get(g["severity"], 3):
            g["severity"] = a.severity
    return sorted(groups.values(), key=lambda g: (rank.get(g["severity"], 3), g["since_ms"]))


def _body(raw: bytes, model: type[BaseModel]) -> Any:
    """Validated JSON body; BadRequest names the first bad field."""
    try:
        data = json.loads(raw or b"null", parse_constant=_no_constant)
        return model.model_validate(data)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            raise BadRequest(f"{where}: {err['msg']}") from None
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _site_selected(chosen: str, site_id: str) -> bool:
    """Whether a Grafana ``$site`` value (one id, ``{a,b}``, ``a|b``, All or unset) includes
    this daemon's site."""
    if chosen in ("", "$site", "$__all", "All", "*", ".*"):
        return True
    return site_id in re.split(r"[{},|\s]+", chosen)


def grafana_plan(query: GrafanaQuery, max_points: int, max_range_days: float,
                 max_targets: int) -> tuple[int, int, int, list[_GrafanaTarget]]:
    """(start, end, step in ms, visible targets) of a Grafana query within the limits: at
    most ``max_points`` buckets per series, a range up to ``max_range_days`` and
    ``max_targets`` targets; otherwise BadRequest."""
    start, end = parse_time(query.range.start), parse_time(query.range.end)
    if end <= start:
        raise BadRequest("range.to must be after range.from")
    if end - start > max_range_days * 86_400_000:
        raise BadRequest(f"range longer than {max_range_days:g} days")
    targets = [t for t in query.targets if t.target and not t.hide]
    if len(targets) > max_targets:
        raise BadRequest(f"{len(targets)} targets; at most {max_targets} per query")
    points = min(query.maxDataPoints or max_points, max_points)
    step = int(min(max(query.intervalMs or 60_000, 1000), end - start))
    step = max(step, -(-(end - start) // points))
    return start, end, step, targets


def create_app(sources: ApiSources) -> Starlette:
    """The ASGI application, behind a request-body limit and, when any token is configured,
    scoped token authentication (:mod:`dcpue.service.auth`)."""
    site, store = sources.site, sources.store
    limits = site.service.limits

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "site": site.id, **(sources.status() if sources.status else {})})

    async def metrics(request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, sources.registry)  # reads figures
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return _json(OPENAPI)

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    async def pue(request: Request) -> Response:
        # off the loop: the figures may need computing, and the JSON of ~50 of them
        return await asyncio.to_thread(lambda: _json(pue_body()))

    def pue_body() -> dict[str, Any]:
        now = sources.now_ms()
        figs = sources.figures(now)
        current = figs.get(sources.current_figure)
        best = best_figure(figs, sources.current_figure)
        return {
            "site": site.id, "name": site.name, "timezone": site.timezone,
            "now": ms_to_datetime(now).isoformat(), "now_ms": now,
            "current_figure": sources.current_figure,
            "current": None if current is None else _figure_json(current, deep=True),
            "best_figure": best,
            "warming_up": warming_up(site, store, sources.current_figure, current, now),
            "figures": {k: _figure_json(f, deep=False) for k, f in figs.items()},
        }

    async def pue_history(request: Request) -> Response:
        start, end = time_range(request)
        name = request.query_params.get("figure", sources.current_figure)
        span_s = (end - start) // 1000
        step_s = _int_param(request, "step_s", max(60, span_s // 288), max(1, span_s // 5000),
                            86400 * 31)
        series = await asyncio.to_thread(query_series, site, store, f"metric:{name}", start,
                                         end + 1, step_s * 1000, None)
        return _json({**range_json(start, end), "figure": name, "step_s": step_s, "unit": "1",
                      "points": [[int(t), float(v)] for t, v in zip(series.ts_ms, series.value,
                                                                     strict=True)]})

    def time_range(request: Request, default_hours: int = 24) -> tuple[int, int]:
        """``from``/``to`` (ISO 8601 in site time without offset, or epoch ms), else the last
        ``hours`` before now; at most ``limits.max_range_days`` long."""
        q = request.query_params
        now = sources.now_ms()
        if "from" in q or "to" in q:
            start = parse_time(q.get("from", ""), site.timezone)
            end = parse_time(q["to"], site.timezone) if "to" in q else now
        else:
            end = now
            start = end - _int_param(request, "hours", default_hours, 1, 24 * 3660) * HOUR_MS
        if end <= start:
            raise BadRequest("to must be after from")
        if end - start > limits.max_range_days * 86_400_000:
            raise BadRequest(f"range longer than {limits.max_range_days:g} days")
        return start, end

    def range_json(start: int, end: int) -> dict[str, Any]:
        return {"from_ms": start, "to_ms": end, "from": ms_to_datetime(start).isoformat(),
                "to": ms_to_datetime(end).isoformat()}

    async def energy(request: Request) -> Response:
        start, end = time_range(request)
        figs = await asyncio.to_thread(sources.energy, start, end)
        return _json({**range_json(start, end), "hours": (end - start) / HOUR_MS,
                      "figures": {k: _figure_json(f, deep=False) for k, f in figs.items()}})

    async def readings(request: Request) -> Response:
        start, end = time_range(request)
        meters = request.query_params.getlist("meter") or [m.id for m in site.meters]
        for m in meters:
            if m not in site.meter_by_id and not m.startswith(METRIC_PREFIX):
                raise BadRequest(f"unknown meter {m!r}")
        limit = _int_param(request, "limit", 10_000, 100, limits.max_export_rows)
        got = await asyncio.to_thread(readings_page, store, meters, start, end, limit)
        if request.query_params.get("format", "json") == "csv":
            headers = {} if got.next_from is None else {"X-Next-From": str(got.next_from)}
            return Response(csv_text(got.rows), media_type="text/csv", headers=headers)
        return _json({**range_json(start, end), "columns": list(EXPORT_COLUMNS),
                      "rows": got.rows, "next_from": got.next_from})

    async def balance(request: Request) -> Response:
        start, end = time_range(request, 24 * 30)
        step = request.query_params.get("step", "day")
        if step not in ("hour", "day", "month"):
            raise BadRequest("step must be hour, day or month")
        edges = views.bucket_edges(start, end, step, site.timezone)  # type: ignore[arg-type]
        if len(edges) > views.MAX_BUCKETS + 1:
            raise BadRequest(f"more than {views.MAX_BUCKETS} {step}s; choose a longer step")
        buckets = await asyncio.to_thread(views.balance_buckets, site, store, edges)
        return _json({**range_json(start, end), "step": step, "unit": "kWh",
                      "buckets": buckets})

    async def weather(request: Request) -> Response:
        start, end = time_range(request, 24 * 7)
        points = await asyncio.to_thread(views.pue_vs_wet_bulb, site, store, start, end)
        return _json({**range_json(start, end), "x": "wet bulb (degC)", "y": "PUE (hourly)",
                      "points": points})

    async def quality(request: Request) -> Response:
        start, end = time_range(request)
        stale = site.service.alerts.stale
        out = await asyncio.to_thread(
            views.data_quality, site, store, start, end, sources.now_ms(),
            int(stale.expected_interval_s * stale.factor * 1000))
        events = dict(out.pop("counter_events"))
        for kind, n in sources.counter_events().items():
            events[kind] = events.get(kind, 0) + n
        return _json({**range_json(start, end), **out, "counter_events": events})

    async def site_info(request: Request) -> Response:
        from dcpue.config.topology import SetpointName

        writable = [n.value for n in SetpointName
                    if getattr(site.optimizer.setpoints, n.value).writeback.enabled]
        return _json({"site": site.id, "name": site.name, "timezone": site.timezone,
                      "current_figure": sources.current_figure,
                      "windows": site.calculator.windows, "write_back": writable,
                      "min_coverage": site.calculator.min_coverage})

    async def carbon(request: Request) -> Response:
        """Month to date by default; ``from``/``to`` (whole site-local days) for a range."""
        if "from" not in request.query_params:
            figs = sources.carbon(sources.now_ms())
            return _json({"figures": {k: _figure_json(f, deep=True) for k, f in figs.items()}})
        from zoneinfo import ZoneInfo

        from dcpue.carbon.report import site_report

        start, end = time_range(request)
        zone = ZoneInfo(site.timezone)
        # The whole site-local days inside the range; at least the day before ``to``'s day.
        begin = ms_to_datetime(start).astimezone(zone)
        first = begin.date() + timedelta(days=0 if begin.time() == datetime.min.time() else 1)
        stop = ms_to_datetime(end).astimezone(zone).date()
        first = min(first, stop - timedelta(days=1))
        report = await asyncio.to_thread(site_report, site, store, first, stop)
        figs = report.accounts[0].figures
        return _json({"from": first.isoformat(), "to": stop.isoformat(),
                      "figures": {k: _figure_json(f, deep=False) for k, f in figs.items()}})

    async def proposals(request: Request) -> Response:
        limit = _int_param(request, "limit", 10, 1, 1000)
        from dcpue.optimizer.propose import ProposalLog

        listed = await asyncio.to_thread(lambda: ProposalLog(store).list(limit))
        texts = {p.id: (views.plain_words(p), p.predicted_inlet_c, p.inlet_limit_c)
                 for p in listed}
        out = []
        for p in await asyncio.to_thread(sources.proposals, limit):
            text, inlet, limit_c = texts.get(p["id"], (p.get("reason", ""), None, None))
            out.append(p | {"text": text, "predicted_inlet_c": inlet, "inlet_limit_c": limit_c})
        return _json({"proposals": out})

    async def proposal_decide(request: Request) -> Response:
        from dcpue.optimizer.propose import ProposalLog
        from dcpue.optimizer.writeback import WritebackRefused, apply_proposal

        log = await asyncio.to_thread(ProposalLog, store)
        proposal = await asyncio.to_thread(log.get, request.path_params["proposal_id"])
        if proposal is None:
            return _json({"error": "no such proposal"}, 404)
        if request.path_params["decision"] == "reject":
            await asyncio.to_thread(log.set_status, proposal, "rejected")
            return _json({"id": proposal.id, "status": "rejected", "writes": []})
        try:
            writes = await apply_proposal(store, site.optimizer, proposal)
        except WritebackRefused as exc:
            raise BadRequest(f"refused: {exc}") from None
        return _json({"id": proposal.id, "status": "applied" if writes else "accepted",
                      "writes": [{"setpoint": w.key, "value": w.value,
                                  "source": w.source} for w in writes]})

    actions = AlertActions(store)

    def alert_view(a: Alert, now: int) -> dict[str, Any]:
        return a.to_dict() | actions.view(a.id, now)

    async def alerts(request: Request) -> Response:
        return await asyncio.to_thread(alerts_body)  # the alert state and actions' store

    def alerts_body() -> Response:
        active, history = sources.alerts()
        now = sources.now_ms()
        return _json({"active": [alert_view(a, now) for a in active],
                      "resolved": [alert_view(a, now) for a in history],
                      "groups": alert_groups(active)})

    def who(request: Request) -> str:
        grant = request.scope.get("state", {}).get("grant")
        return "anonymous" if grant is None else grant.name

    async def alert_ack(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        action = await asyncio.to_thread(actions.acknowledge, alert_id, who(request),
                                         sources.now_ms())
        return _json({"id": alert_id, **action.__dict__})

    async def alert_silence(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        body = _body(await request.body(), SilenceBody)
        action = await asyncio.to_thread(actions.silence, alert_id, who(request),
                                         sources.now_ms(), body.minutes)
        return _json({"id": alert_id, **action.__dict__})

    async def grafana_health(request: Request) -> Response:
        return _json({"status": "ok"})

    def names() -> list[str]:
        return sorted(sources.figures(sources.now_ms()))

    async def grafana_search(request: Request) -> Response:
        targets = await asyncio.to_thread(lambda: grafana_targets(site, store, names()))
        return _json([t["value"] for t in targets])

    async def grafana_metrics(request: Request) -> Response:
        options = [{"label": a, "value": a} for a in AGGREGATIONS]
        payloads = [{"name": "agg", "label": "Aggregation", "type": "select",
                     "options": options}]
        targets = await asyncio.to_thread(lambda: grafana_targets(site, store, names()))
        return _json([{**t, "payloads": payloads} for t in targets])

    async def grafana_payload_options(request: Request) -> Response:
        return _json([{"label": a, "value": a} for a in AGGREGATIONS])

    def run_grafana(query: GrafanaQuery) -> list[dict[str, Any]]:
        start, end, step, targets = grafana_plan(
            query, limits.max_points, limits.max_range_days, limits.max_targets)
        out = []
        for t in targets:
            payload = t.payload or t.data or {}
            assert t.target is not None
            if not _site_selected(str(payload.get("site", "")), site.id):
                out.append({"target": t.target, "refId": t.refId, "datapoints": []})
                continue
            series = query_series(site, store, t.target, start, end, step, payload.get("agg"))
            out.append({"target": t.target, "refId": t.refId, "datapoints": [
                [float(v), int(ts)] for ts, v in zip(series.ts_ms, series.value, strict=True)
            ]})
        return out

    async def grafana_query(request: Request) -> Response:
        query = _body(await request.body(), GrafanaQuery)
        # Queries read the store: off the event loop, so ingestion and keep-alives go on.
        return _json(await asyncio.to_thread(run_grafana, query))

    async def bad_request(request: Request, exc: Exception) -> Response:
        return _json({"error": str(exc)}, 400)

    routes = [
        Route("/", index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
        Route("/api/pue", pue),
        Route("/api/pue/history", pue_history),
        Route("/api/energy", energy),
        Route("/api/readings", readings),
        Route("/api/balance", balance),
        Route("/api/pue/weather", weather),
        Route("/api/quality", quality),
        Route("/api/site", site_info),
        Route("/api/proposals/{proposal_id}/{decision:str}", proposal_decide, methods=["POST"]),
        Route("/api/carbon", carbon),
        Route("/api/proposals", proposals),
        Route("/api/alerts", alerts),
        Route("/api/alerts/{alert_id}/ack", alert_ack, methods=["POST"]),
        Route("/api/alerts/{alert_id}/silence", alert_silence, methods=["POST"]),
        Route("/grafana/", grafana_health),
        Route("/grafana/search", grafana_search, methods=["POST"]),
        Route("/grafana/metrics", grafana_metrics, methods=["POST"]),
        Route("/grafana/metric-payload-options", grafana_payload_options, methods=["POST"]),
        Route("/grafana/query", grafana_query, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
        *sources.routes,
    ]
    middleware = [Middleware(BodyLimit, max_bytes=limits.max_body_bytes)]
    allowed = grants(site.service, sources.token)
    if allowed:
        middleware.append(Middleware(TokenAuth, grants=allowed, site=site.id,
                                     query_token=site.service.query_token))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={BadRequest: bad_request})


def _schema(props: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    if props:
        out["properties"] = props
    return out | extra


_NUM = {"type": ["number", "null"]}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_FIGURE = _schema({"name": _STR, "value": _NUM, "unit": _STR, "formula": _STR,
                   "window": _schema({"from": _STR, "to": _STR}), "coverage": _NUM,
                   "meters": {"type": "array", "items": _STR}})
_FIGURES = _schema(additionalProperties=_FIGURE)
_RANGE = {"from_ms": _INT, "to_ms": _INT, "from": _STR, "to": _STR}
_ALERT = _schema({"id": _STR, "name": _STR, "severity": _STR, "summary": _STR,
                  "labels": _schema(additionalProperties=_STR), "status": _STR,
                  "starts_at": _STR, "ends_at": {"type": ["string", "null"]}, "value": _NUM,
                  "acknowledged_by": {"type": ["string", "null"]},
                  "silenced_until_ms": {"type": ["integer", "null"]}})
_BUCKET = _schema({"start_ms": _INT, "end_ms": _INT, "pue": _NUM, "coverage": _NUM,
                   **{k: _NUM for k in (*views.PARTS, *views.SUPPLY, "facility")}})
_RANGE_PARAMS = ("from", "to", "hours")


def _get(summary: str, params: tuple[str, ...] = (), media: str = "application/json",
         schema: dict[str, Any] | None = None, scope: str = "read") -> dict:
    content: dict[str, Any] = {media: {"schema": schema} if schema else {}}
    op: dict[str, Any] = {"summary": summary, "x-scope": scope, "responses": {
        "200": {"description": "OK", "content": content},
        "400": {"description": "bad parameter (one-line error)"}}}
    if params:
        op["parameters"] = [{"name": p, "in": "query", "schema": {"type": "string"}}
                            for p in params]
    return {"get": op}


def _post(summary: str, schema: dict[str, Any] | None = None, scope: str = "read",
          body: dict[str, Any] | None = None) -> dict:
    return {"post": {
        "summary": summary, "x-scope": scope,
        "requestBody": {"content": {"application/json": {"schema": body or {"type": "object"}}}},
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": schema or {}}}},
            "400": {"description": "bad request"}, "413": {"description": "body too large"}},
    }}


#: The OpenAPI 3.1 document of the routes above (``x-scope``: the token scope a route needs).
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "dcpue", "version": "1", "description":
             "PUE, energy, carbon, alerts and proposals of one data-center site. Times are "
             "UTC epoch ms or ISO 8601 (without an offset: site-local time)."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {"get": {**_get("Liveness (never needs a token)", schema=_schema(
            {"status": _STR, "site": _STR, "clock": _STR}))["get"], "security": []}},
        "/metrics": _get("Daemon health in Prometheus text format", media="text/plain"),
        "/": {"get": {**_get("Live dashboard (HTML; no data, no token)",
                             media="text/html")["get"], "security": []}},
        "/api/site": _get("Site id, name, time zone, windows, setpoints with write-back",
                          schema=_schema({"site": _STR, "name": _STR, "timezone": _STR,
                                          "windows": {"type": "array"},
                                          "write_back": {"type": "array"}})),
        "/api/pue": _get("Current and rolling PUE figures with their audit trail, the best "
                         "window with data and the warming-up state", schema=_schema({
                             "now_ms": _INT, "current_figure": _STR, "current": _FIGURE,
                             "best_figure": {"type": ["string", "null"]},
                             "warming_up": {"type": ["object", "null"]},
                             "figures": _FIGURES})),
        "/api/pue/history": _get("Stored rolling PUE series (bucket means, dimensionless)",
                                 ("figure", *_RANGE_PARAMS, "step_s"), schema=_schema(
                                     {**_RANGE, "figure": _STR, "step_s": _INT, "unit": _STR,
                                      "points": {"type": "array"}})),
        "/api/pue/weather": _get("Hourly PUE against outdoor wet bulb (degC)", _RANGE_PARAMS,
                                 schema=_schema({**_RANGE, "points": {"type": "array"}})),
        "/api/energy": _get("Energy balance over a range (kWh)", _RANGE_PARAMS,
                            schema=_schema({**_RANGE, "hours": _NUM, "figures": _FIGURES})),
        "/api/balance": _get("Energy balance (kWh) and PUE per hour, site-local day or month",
                             (*_RANGE_PARAMS, "step"), schema=_schema(
                                 {**_RANGE, "step": _STR, "unit": _STR,
                                  "buckets": {"type": "array", "items": _BUCKET}})),
        "/api/readings": _get("Raw readings, bounded pages (continue from next_from)",
                              ("meter", *_RANGE_PARAMS, "limit", "format"), schema=_schema(
                                  {**_RANGE, "columns": {"type": "array"},
                                   "rows": {"type": "array"},
                                   "next_from": {"type": ["integer", "null"]}})),
        "/api/quality": _get("Coverage per meter, stale meters, dead letters by reason, "
                             "counter events", _RANGE_PARAMS, schema=_schema(
                                 {**_RANGE, "meters": {"type": "array"},
                                  "stale": {"type": "array"},
                                  "dead_letters": _schema(additionalProperties=_INT),
                                  "counter_events": _schema(additionalProperties=_INT)})),
        "/api/carbon": _get("Carbon figures (tCO2e, MWh) month to date, or whole site days "
                            "of a range", _RANGE_PARAMS, schema=_schema({"figures": _FIGURES})),
        "/api/proposals": _get("Latest cooling-setpoint proposals, in plain words", ("limit",),
                               schema=_schema({"proposals": {"type": "array"}})),
        "/api/proposals/{proposal_id}/{decision}": _post(
            "Accept (writes enabled setpoints back) or reject a proposal", scope="operator"),
        "/api/alerts": _get("Active and recently resolved alerts, grouped by cause",
                            schema=_schema({"active": {"type": "array", "items": _ALERT},
                                            "resolved": {"type": "array", "items": _ALERT},
                                            "groups": {"type": "array"}})),
        "/api/alerts/{alert_id}/ack": _post("Acknowledge an alert", _ALERT, "operator"),
        "/api/alerts/{alert_id}/silence": _post(
            "Silence an alert for minutes (0 lifts it)", _ALERT, "operator",
            _schema({"minutes": {"type": "number"}})),
        "/openapi.json": _get("This document"),
        "/grafana/": _get("Grafana JSON data source: connection test"),
        "/grafana/search": _post("Grafana: list targets (meter:, role:, metric:)"),
        "/grafana/metrics": _post("Grafana: targets with aggregation payload"),
        "/grafana/metric-payload-options": _post("Grafana: aggregation options"),
        "/grafana/query": _post("Grafana: bucketed series for targets over range/intervalMs "
                                "(limits: targets, points, range days)"),
    },
}
