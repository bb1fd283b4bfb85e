"""MQTT gateway: publish readings (e.g. the digital twin's) to a broker like field hardware.

Readings are sent as JSON batches, QoS 1, on ``<prefix>/<site id>/readings``::

    {"readings": [{"meter": "ups-out", "value": 1234.5, "unit": "kWh", "ts": 1700000000000}, ...]}

which the collector reads with a ``batch`` subscription on ``<prefix>/<site id>/#``.
Values are JSON numbers in Python's shortest round-trip repr, so they arrive digit-exact.
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


def _rows(chunk: ReadingColumns | Sequence[Reading]) -> Iterator[dict[str, object]]:
    if isinstance(chunk, ReadingColumns):
        for ts, meter, value, unit in zip(
            chunk.ts_ms.tolist(), chunk.meter, chunk.value.tolist(), chunk.unit, strict=True
        ):
            yield {"meter": meter, "value": value, "unit": unit, "ts": ts}
    else:
        for r in chunk:
            yield {"meter": r.meter, "value": r.value, "unit": r.unit, "ts": r.ts_ms}


def batch_payloads(
    chunks: Iterable[ReadingColumns | Sequence[Reading]], batch_size: int
) -> Iterator[tuple[bytes, int]]:
    """JSON batch payloads of at most ``batch_size`` readings, with their reading counts."""
    batch: list[dict[str, object]] = []
    for chunk in chunks:
        for row in _rows(chunk):
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
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: aiomqtt.TLSParameters | None = None,
) -> int:
    """Publish every reading of ``chunks`` with QoS 1; returns the number of readings sent.

    Returns once the broker has acknowledged every message (PUBACK).
    """
    topic = readings_topic(site, prefix)
    sent = 0
    window: list[asyncio.Future[None]] = []
    async with aiomqtt.Client(
        host, port, identifier=client_id, username=username, password=password, tls_params=tls
    ) as client:
        for payload, count in batch_payloads(chunks, batch_size):
            window.append(asyncio.ensure_future(client.publish(topic, payload, qos=1)))
            sent += count
            if len(window) >= _WINDOW:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
    return sent
