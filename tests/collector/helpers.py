"""Helpers for the collector's integration tests: sites wired to the test servers, streams, VM export."""

from __future__ import annotations

import json
import random
import urllib.parse
import urllib.request
from typing import Any

from dcpue.collector.remote import meter_roles
from dcpue.config import Site
from dcpue.core.readings import Reading
from dcpue.core.store import Store

from tests.collector.conftest import T0_MS, make_site

Key = tuple[str, str, int]
_ROLES = meter_roles(make_site())


def collector_site(
    port: int, remote_url: str = "", *, subscriptions: list[dict[str, Any]] | None = None,
    **mqtt: Any,
) -> Site:
    """The test site with fast timings, MQTT on ``port`` and an optional remote sink."""
    return make_site({
        "mqtt": {
            "port": port,
            "client_id": "collector-test",
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "ack_interval_s": 0.05,
            "subscriptions": subscriptions or [{"topic": "dcpue/test-site/#"}],
            **mqtt,
        },
        "pipeline": {"max_age_s": 0.05},
        "remote": {
            "url": remote_url, "interval_s": 0.05, "retry_min_s": 0.05, "retry_max_s": 0.3,
            "timeout_s": 2.0,
        },
    })


def stream(first: int, last: int, seed: int = 0) -> list[Reading]:
    """Minute readings ``first..last-1`` of all four meters, at a meter's real resolution.

    Counters rise by random kWh with 3 decimals, power has 2 decimals, temperature 1; values
    have at most 10 significant digits, which every store keeps exactly.
    """
    rng = random.Random(seed)
    out: list[Reading] = []
    for i in range(first, last):
        ts = T0_MS + 60_000 * i
        out += [
            Reading(ts, "grid", "energy", round(1_000_000 + 15.5 * i + rng.random(), 3), "kWh"),
            Reading(ts, "it", "energy", round(800_000 + 12.25 * i + rng.random(), 3), "kWh"),
            Reading(ts, "pdu-1", "power", round(rng.uniform(10, 90), 2), "kW"),
            Reading(ts, "oat", "temperature", round(rng.uniform(-10, 35), 1), "degC"),
        ]
    return out


def as_map(readings: list[Reading]) -> dict[Key, float]:
    return {(r.meter, r.quantity, r.ts_ms): r.value for r in readings}


def stored(store: Store) -> dict[Key, list[float]]:
    """Every stored row, keyed; a key holding two values would mean a duplicate."""
    out: dict[Key, list[float]] = {}
    for r in store.read().to_readings():
        out.setdefault((r.meter, r.quantity, r.ts_ms), []).append(r.value)
    return out


def vm_series(url: str) -> list[dict[str, Any]]:
    """The raw rows of VictoriaMetrics' ``/api/v1/export`` for measurement dcpue."""
    query = urllib.parse.urlencode({"match[]": '{__name__=~"dcpue_.*"}'})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as resp:
        return [json.loads(line) for line in resp.read().splitlines()]


def vm_export(url: str) -> dict[Key, list[float]]:
    """Every raw sample VictoriaMetrics holds for measurement dcpue, keyed like :func:`stored`.

    Checks the site tag, and the role tag of the site's meters, on the way.
    """
    out: dict[Key, list[float]] = {}
    for row in vm_series(url):
        labels = row["metric"]
        quantity = labels["__name__"].removeprefix("dcpue_")
        assert labels["site"] == "test-site"
        assert labels["role"] == _ROLES.get(labels["meter"], labels["role"])
        for ts, value in zip(row["timestamps"], row["values"], strict=True):
            out.setdefault((labels["meter"], quantity, ts), []).append(value)
    return out


def once(expected: list[Reading]) -> dict[Key, list[float]]:
    """What a store holding every reading exactly once looks like."""
    return {k: [v] for k, v in as_map(expected).items()}
