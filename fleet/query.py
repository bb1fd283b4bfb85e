"""Reading the published hourly terms back from VictoriaMetrics (Prometheus querying API).

Period totals are summed **in the store**: one instant query per field,
``sum_over_time(dcpue_hourly_<field>{site=~"a|b|..."}[<period>s])`` evaluated 1 s before the
period end, i.e. over the hour starts ``start <= h < end`` (samples sit at hour starts and the
lookbehind window is ``(t - d, t]``), so a year of 50 sites is one response of 50 numbers per
field. ``count_over_time`` of ``it_kwh`` gives the hours present. Hourly values (24/7 matching,
hourly factors) are read raw with ``/api/v1/export/csv``: no lookback filling of missing hours.
Queries pass ``nocache=1`` so backfilled hours are never hidden by the rollup cache.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
from dcpue.config.site import ConfigError
from dcpue.fleet.config import PublishSettings
from dcpue.fleet.terms import HOUR_MS


class RemoteError(RuntimeError):
    """The remote store did not answer a query; ``str()`` names the URL and the reason."""


@dataclass(frozen=True)
class SiteSums:
    """One site's published totals over a period: field -> sum, and the hours present."""

    site: str
    sums: dict[str, float]
    hours: int


def _sites_regex(sites: Sequence[str]) -> str:
    """``a|b|c`` with regex dots escaped, as a PromQL string literal's content."""
    return "|".join(s.replace(".", "\\\\.") for s in sites)


def _selector(settings: PublishSettings, field: str, sites: Sequence[str]) -> str:
    return f'{settings.measurement}_{field}{{site=~"{_sites_regex(sites)}"}}'


def _get(settings: PublishSettings, path: str, params: dict, client: httpx.Client) -> httpx.Response:
    url = settings.url.rstrip("/") + path
    try:
        resp = client.get(url, params=params, timeout=max(settings.timeout_s, 60.0))
    except httpx.HTTPError as exc:
        raise RemoteError(f"{url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise RemoteError(f"{url}: HTTP {resp.status_code}: {resp.text[:200]}")
    return resp


def instant(settings: PublishSettings, query: str, at_ms: int,
            client: httpx.Client) -> dict[str, float]:
    """An instant PromQL/MetricsQL query; site label -> value."""
    body = _get(settings, "/api/v1/query",
                {"query": query, "time": f"{at_ms / 1000:.3f}", "nocache": "1"}, client).json()
    if body.get("status") != "success":
        raise RemoteError(f"{settings.url}: query {query!r} failed: {body.get('error')}")
    return {r["metric"].get("site", ""): float(r["value"][1]) for r in body["data"]["result"]}


def period_sums(
    settings: PublishSettings, sites: Sequence[str], fields: Iterable[str],
    start_ms: int, end_ms: int,
) -> dict[str, SiteSums]:
    """Each site's sum of every field over the hours ``[start_ms, end_ms)`` (see module)."""
    if not settings.url:
        raise ConfigError("fleet remote.url is empty: no store to read")
    if (end_ms - start_ms) % 1000 or end_ms <= start_ms:
        raise ValueError("the period must be whole seconds and not empty")
    window = f"[{(end_ms - start_ms) // 1000}s]"
    at = end_ms - 1000
    sums: dict[str, dict[str, float]] = {s: {} for s in sites}
    with httpx.Client() as client:
        for field in fields:
            got = instant(settings, f"sum_over_time({_selector(settings, field, sites)}{window})",
                          at, client)
            for site, value in got.items():
                if site in sums:
                    sums[site][field] = value
        hours = instant(
            settings, f"count_over_time({_selector(settings, 'it_kwh', sites)}{window})", at, client
        )
    return {s: SiteSums(s, sums[s], int(hours.get(s, 0))) for s in sites}


def hourly(
    settings: PublishSettings, sites: Sequence[str], fields: Sequence[str],
    start_ms: int, end_ms: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Each site's raw hourly ``fields`` over ``[start_ms, end_ms)``: field -> site -> array per
    hour of the period (hour k starts at ``start_ms + k h``; missing hours are 0). One CSV
    export (``/api/v1/export/csv``) for all fields, parsed with pandas."""
    n = -(-(end_ms - start_ms) // HOUR_MS)
    out = {f: {s: np.zeros(n) for s in sites} for f in fields}
    names = "|".join(f"{settings.measurement}_{f}" for f in fields)
    with httpx.Client() as client:
        resp = _get(settings, "/api/v1/export/csv", {
            "format": "__name__,site,__timestamp__:unix_ms,__value__",
            "match[]": f'{{__name__=~"{names}",site=~"{_sites_regex(sites)}"}}',
            "start": f"{start_ms / 1000:.3f}", "end": f"{(end_ms - 1) / 1000:.3f}",
        }, client)
    if not resp.text.strip():
        return out
    frame = pd.read_csv(io.StringIO(resp.text), header=None, names=["name", "site", "ts", "v"],
                        dtype={"name": str, "site": str, "ts": np.int64, "v": np.float64})
    prefix = len(settings.measurement) + 1
    for (name, site), group in frame.groupby(["name", "site"], sort=False):
        field = str(name)[prefix:]
        if field not in out or site not in out[field]:
            continue
        offset = group["ts"].to_numpy() - start_ms
        k = offset // HOUR_MS
        ok = (k >= 0) & (k < n) & (offset % HOUR_MS == 0)
        out[field][str(site)][k[ok]] = group["v"].to_numpy()[ok]
    return out
