"""Publishing a site's finalized hourly terms to the remote store (adapter around
:mod:`dcpue.fleet.terms`), idempotently.

One line per hour (timestamp = hour start, UTC ms), measurement ``dcpue_hourly`` by default,
tags ``site`` and ``it_category``, one field per :data:`~dcpue.fleet.terms.FIELDS`::

    dcpue_hourly,it_category=ups_output,site=hall-a facility_kwh=1043.2,it_kwh=801.5,... 1672531200000

(VictoriaMetrics names the series ``dcpue_hourly_facility_kwh{site="hall-a",...}``.)

Which hours: the store's readings carry an increasing ``seq``. Every pass reads, per balance
meter, the time span of the readings added since the cursor, widened to the meter's neighbouring
stored samples (a backfilled reading changes the interpolation up to them), and recomputes the
hours it touches, plus hours left pending by the previous pass. An hour is **final** once every
balance meter has a reading at or after its end (or the slowest meter lags the newest reading by
``grace_s``); later hours stay pending.

The ledger table ``fleet_hourly`` in the site's store holds every computed hour and whether the
remote confirmed it. Recomputed hours that differ from the ledger (relative 1e-12) replace
their rows; on InfluxDB rewriting them overwrites the old lines; on VictoriaMetrics, whose
equal-timestamp deduplication keeps no defined sample, the site's hourly series are deleted and
the whole ledger rewritten (a flag in the store's state makes this survive a failure half-way).
``republish`` forces that full rewrite, e.g. after the remote lost its last acknowledged writes
in a crash.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
from dcpue.collector.remote import encode_rows, tls_context, write_lines
from dcpue.config.site import Site
from dcpue.core.store import Store
from dcpue.fleet.config import PublishSettings, RemoteKind
from dcpue.fleet.query import RemoteError
from dcpue.fleet.terms import FIELDS, HOUR_MS, HourlyTerms, hour_floor, terms_from_balances
from dcpue.metrics import rollups
from dcpue.metrics.balance import BalanceTopology

LEDGER = "fleet_hourly"
_COLUMNS = ", ".join(f'"{f}" DOUBLE' for f in FIELDS)
LEDGER_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {LEDGER} (hour_ms BIGINT PRIMARY KEY, {_COLUMNS}, "
    "sent BOOLEAN NOT NULL DEFAULT false)"
)
_PENDING = "fleet_hourly.pending_from_ms"
_DIRTY = "fleet_hourly.rewrite_all"
#: Relative difference above which a recomputed hour counts as changed.
CHANGE_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class PublishResult:
    """One pass: hours recomputed, hours new or changed in the ledger, lines written."""

    computed: int
    changed: int
    written: int
    rewrote_all: bool
    pending_from_ms: int | None


def touched_span(
    store: Store, meters: tuple[str, ...], after_seq: int
) -> tuple[int | None, int | None, int]:
    """``(first_ms, last_ms, last_seq)`` spanned by readings of ``meters`` with seq above
    ``after_seq``, widened to each meter's neighbouring samples; None, None when none."""
    last_seq = max(store.last_seq(), after_seq)
    placeholders = ", ".join("?" for _ in meters)
    rows = store.execute(
        f"""
        WITH new AS (
            SELECT meter, min(ts) AS lo, max(ts) AS hi FROM readings
            WHERE seq > ? AND seq <= ? AND meter IN ({placeholders}) GROUP BY meter)
        SELECT
            min(coalesce((SELECT max(r.ts) FROM readings r
                          WHERE r.meter = new.meter AND r.ts < new.lo), new.lo)),
            max(coalesce((SELECT min(r.ts) FROM readings r
                          WHERE r.meter = new.meter AND r.ts > new.hi), new.hi))
        FROM new
        """,
        [after_seq, last_seq, *meters],
    ).fetchone()
    lo, hi = rows if rows else (None, None)
    return (None if lo is None else int(lo)), (None if hi is None else int(hi)), last_seq


def final_until(store: Store, meters: tuple[str, ...], grace_s: float) -> int | None:
    """End (hour-aligned, UTC ms) of the last final hour; None with no readings."""
    latest = []
    for mid in meters:
        row = store.latest(mid)
        if row is None:
            return None
        latest.append(row.ts_ms)
    edge = max(min(latest), max(latest) - int(grace_s * 1000))
    return hour_floor(edge)


def _ledger(store: Store, first_ms: int, end_ms: int) -> dict[int, np.ndarray]:
    cols = ", ".join(f'"{f}"' for f in FIELDS)
    rows = store.execute(
        f"SELECT hour_ms, {cols} FROM {LEDGER} WHERE hour_ms >= ? AND hour_ms < ?",
        [first_ms, end_ms],
    ).fetchall()
    return {int(r[0]): np.array(r[1:], dtype=np.float64) for r in rows}


def _changed(old: np.ndarray, new: np.ndarray) -> bool:
    scale = np.maximum(np.abs(old), np.abs(new))
    return bool(np.any(np.abs(old - new) > CHANGE_TOLERANCE * np.maximum(scale, 1e-300)))


def _upsert(store: Store, terms: HourlyTerms) -> None:
    """Replace the ledger rows of ``terms``' hours (one transaction), as not yet sent."""
    frame = pd.DataFrame({"hour_ms": terms.hour_ms, **terms.values, "sent": False})
    hours = terms.hour_ms.tolist()
    store.replace_rows(LEDGER, f"hour_ms IN ({', '.join('?' * len(hours))})", hours, frame)


def ledger_terms(store: Store, unsent_only: bool = False) -> HourlyTerms:
    """Hours of the ledger (all, or not yet confirmed by the remote) in time order."""
    store.execute(LEDGER_SCHEMA)
    cols = ", ".join(f'"{f}"' for f in FIELDS)
    where = "WHERE NOT sent" if unsent_only else ""
    got = store.execute(
        f"SELECT hour_ms, {cols} FROM {LEDGER} {where} ORDER BY hour_ms").fetchnumpy()
    return HourlyTerms(np.asarray(got["hour_ms"], dtype=np.int64),
                       {f: np.asarray(got[f], dtype=np.float64) for f in FIELDS})


def hourly_lines(site_id: str, it_category: str, measurement: str, terms: HourlyTerms) -> list[str]:
    """The line protocol of ``terms`` (see the module docstring)."""
    return encode_rows(measurement, {"site": site_id, "it_category": it_category},
                       terms.hour_ms.tolist(), terms.values)


def delete_site_series(settings: PublishSettings, site_id: str) -> None:
    """VictoriaMetrics: delete every hourly series of ``site_id`` (raises on failure).

    The deletion finds series through the index, which does not yet see series ingested in
    the last second or so; ``/internal/force_flush`` first makes them visible, so a rewrite
    right after a write (a backfill shortly after a pass) deletes what that write created.
    """
    base = (settings.admin_url or settings.url).rstrip("/")
    tls = tls_context(settings)
    httpx.get(f"{base}/internal/force_flush", timeout=settings.timeout_s,
              verify=tls).raise_for_status()
    match = f'{{__name__=~"{settings.measurement}_.*",site="{site_id}"}}'
    url = f"{base}/api/v1/admin/tsdb/delete_series?" + urllib.parse.urlencode({"match[]": match})
    httpx.post(url, timeout=settings.timeout_s, verify=tls).raise_for_status()


def recompute(
    site: Site, store: Store, settings: PublishSettings
) -> tuple[int, int, int | None]:
    """Recompute the touched final hours into the ledger; returns (computed, changed, pending)."""
    store.execute(LEDGER_SCHEMA)
    topology = BalanceTopology.from_site(site)
    meters = topology.all_meters
    cursor = store.get_cursor(settings.cursor)
    lo, hi, last_seq = touched_span(store, meters, cursor)
    pending_text = store.get_state(_PENDING)
    pending = None if pending_text is None else int(pending_text)
    starts = [t for t in (lo, pending) if t is not None]
    final = final_until(store, meters, settings.grace_s)
    if not starts or final is None:
        store.set_cursor(settings.cursor, last_seq)
        return 0, 0, pending
    first = hour_floor(min(starts))
    wanted = first if hi is None else hour_floor(hi) + HOUR_MS  # hours the new readings touch
    if pending is not None:
        wanted = max(wanted, final)  # every hour from the pending one on
    end = min(wanted, final)
    still_pending = final  # hours from ``final`` on wait for their readings
    computed = changed = 0
    if end > first:
        rollups.catch_up(site, store)  # the hours any new reading touched, once
        terms = terms_from_balances(rollups.hourly_balances(site, store, first, end))
        computed = len(terms)
        old = _ledger(store, first, end)
        keep = np.array([
            (h not in old) or _changed(old[h], np.array([terms.values[f][k] for f in FIELDS]))
            for k, h in enumerate(terms.hour_ms.tolist())
        ], dtype=bool)
        fresh = terms.select(keep)
        changed = len(fresh)
        if changed:
            if settings.kind is RemoteKind.VICTORIAMETRICS and any(
                int(h) in old for h in fresh.hour_ms.tolist()
            ):
                store.set_state(_DIRTY, "1")
            _upsert(store, fresh)
    store.set_state(_PENDING, str(still_pending))
    store.set_cursor(settings.cursor, last_seq)
    return computed, changed, still_pending


def send(
    site: Site, store: Store, settings: PublishSettings, republish: bool = False
) -> tuple[int, bool]:
    """Write the unsent ledger hours (or all of them, after a deletion on VictoriaMetrics)."""
    store.execute(LEDGER_SCHEMA)
    if republish:
        if settings.kind is RemoteKind.VICTORIAMETRICS:
            store.set_state(_DIRTY, "1")
        else:
            store.execute(f"UPDATE {LEDGER} SET sent = false")
    rewrite = store.get_state(_DIRTY) == "1"
    terms = ledger_terms(store, unsent_only=not rewrite)
    category = BalanceTopology.from_site(site).it_category.value
    try:
        if rewrite:
            delete_site_series(settings, site.id)
        written = write_lines(settings, hourly_lines(site.id, category, settings.measurement,
                                                     terms)) if len(terms) else 0
    except Exception as exc:  # the client's many error types: unreachable, refused, HTTP
        raise RemoteError(f"{settings.url}: {type(exc).__name__}: {exc}"[:500]) from exc
    if len(terms):
        store.execute(f"UPDATE {LEDGER} SET sent = true WHERE hour_ms <= ?",
                      [int(terms.hour_ms[-1])])
    if rewrite:
        store.execute("DELETE FROM state WHERE key = ?", [_DIRTY])
    return written, rewrite


def publish_site(
    site: Site, store: Store, settings: PublishSettings, republish: bool = False
) -> PublishResult:
    """One publishing pass for a site: recompute touched final hours, then send (see module)."""
    computed, changed, pending = recompute(site, store, settings)
    written, rewrote = send(site, store, settings, republish)
    return PublishResult(computed, changed, written, rewrote, pending)
