"""MQTT gateway: publish readings (e.g. the digital twin's) to a broker like field hardware.

Readings are sent as JSON batches, QoS 1, on ``<prefix>/<site id>/readings``::

    {"readings": [{"meter": "ups-out", "value": 1234.5, "unit": "kWh", "ts": 1700000000000}, ...]}

which the collector reads with a ``batch`` subscription on ``<prefix>/<site id>/#``.

Like a meter register, a published value has finite resolution: it is rounded to
``significant_digits`` (default 10, finer than a 32-bit meter register or a float32's 7
digits). Every sink then holds it to the last digit: DuckDB and InfluxDB keep float64 as is,
and VictoriaMetrics, which stores values as decimals, was measured exact up to 11
significant digits but not at 12 or more (docs/collector.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Sequence

import aiomqtt
from dcpue.config import Site
from dcpue.core.readings import Reading, ReadingColumns

#: Publishes awaited together (aiomqtt warns above 10 pending calls; Mosquitto allows 20 in flight).
_WINDOW = 10


def readings_topic(site: Site, prefix: str = "dcpue") -> str:
    """The topic the gateway publishes on and the collector's default subscription reads."""
    return f"{prefix}/{site.id}/readings"


def round_significant(value: float, digits: int | None) -> float:
    """``value`` rounded to ``digits`` significant decimal digits (None: unchanged)."""
    return value if digits is None else float(f"{value:.{digits}g}")


def _rows(
    chunk: ReadingColumns | Sequence[Reading], digits: int | None
) -> Iterator[dict[str, object]]:
    if isinstance(chunk, ReadingColumns):
        rows = zip(
            chunk.ts_ms.tolist(), chunk.meter, chunk.value.tolist(), chunk.unit, strict=True
        )
    else:
        rows = ((r.ts_ms, r.meter, r.value, r.unit) for r in chunk)
    for ts, meter, value, unit in rows:
        yield {"meter": meter, "value": round_significant(value, digits), "unit": unit, "ts": ts}


def batch_payloads(
    chunks: Iterable[ReadingColumns | Sequence[Reading]],
    batch_size: int,
    significant_digits: int | None = 10,
) -> Iterator[tuple[bytes, int]]:
    """JSON batch payloads of at most ``batch_size`` readings, with their reading counts."""
    batch: list[dict[str, object]] = []
    for chunk in chunks:
        for row in _rows(chunk, significant_digits):
            batch.append(row)
            if len(batch) >= batch_size:
                yield json.dumps({"readings": batch}, separators=(",", ":")).encode(), len(batch)
                batch = []
    if batch:
        yield json.dumps({"readings": batch}, separators=(",", ":")).encode(), len(batch)


async def publish_readings(
    site: Site,
    chunks: Iterable[ReadingColumns | Sequence[Reading]],
    host: str,
    port: int = 1883,
    *,
    prefix: str = "dcpue",
    batch_size: int = 500,
    significant_digits: int | None = 10,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: aiomqtt.TLSParameters | None = None,
) -> int:
    """Publish every reading of ``chunks`` with QoS 1; returns the number of readings sent.

    Values are rounded to ``significant_digits`` (None: full float64). Returns once the broker
    has acknowledged every message (PUBACK).
    """
    topic = readings_topic(site, prefix)
    sent = 0
    window: list[asyncio.Future[None]] = []
    async with aiomqtt.Client(
        host, port, identifier=client_id, username=username, password=password, tls_params=tls
    ) as client:
        for payload, count in batch_payloads(chunks, batch_size, significant_digits):
            window.append(asyncio.ensure_future(client.publish(topic, payload, qos=1)))
            sent += count
            if len(window) >= _WINDOW:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
    return sent
