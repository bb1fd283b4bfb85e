"""Collector throughput: processing on one core, and sustained MQTT ingestion into both sinks.

Run from the repository root: ``/work/venv/bin/python bench/ingest.py [--readings N]``.
Needs the ``mosquitto`` and ``victoria-metrics`` binaries for the MQTT part (same servers as
the tests, on free 127.0.0.1 ports). Prints a table; nothing here is asserted.

* processing: JSON batch payloads (500 readings each) -> PayloadDecoder (parse, validate,
  unit conversion) -> Pipeline -> DuckDB append, all in this process, no network.
* MQTT: a separate publisher process sends QoS 1 batches to Mosquitto; the collector stores
  them in DuckDB and forwards them to VictoriaMetrics. Rate = readings / time from the first
  publish until both sinks hold every reading.
* memory: peak RSS of this process (``resource.getrusage``), and the tracemalloc peak of
  Python allocations during a processing run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers, run from anywhere

import numpy as np
from dcpue.collector.gateway_mqtt import batch_payloads, publish_readings
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.collector.pipeline import Pipeline
from dcpue.collector.service import Collector
from dcpue.config import Site, parse_site
from dcpue.config.collector import PipelineSettings, Subscription
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store

from tests.servers import Mosquitto, VictoriaMetrics

#: Meters of the synthetic site: 40 power meters and 40 energy counters.
N_METERS = 40
T0_MS = 1_704_067_200_000
BATCH = 500


def bench_site(mqtt_port: int = 1883, remote_url: str = "") -> Site:
    meters = [{"id": "it", "role": "it_load", "kind": "counter", "unit": "kWh",
               "it_category": "ups_output"}]
    for i in range(N_METERS):
        meters.append({"id": f"pdu-{i}", "role": "it_load", "kind": "power", "unit": "kW",
                       "it_category": "pdu_output", "max_power_kw": 1000.0})
        meters.append({"id": f"ctr-{i}", "role": "other_load", "kind": "counter", "unit": "kWh"})
    return parse_site({
        "id": "bench", "latitude": 0, "longitude": 0,
        "grid": {"emission_factor_t_per_mwh": 0.5, "source": "bench"},
        "meters": meters,
        "collector": {
            "mqtt": {"port": mqtt_port, "client_id": "bench-collector",
                     "subscriptions": [{"topic": "dcpue/bench/#"}]},
            "pipeline": {"batch_size": 20_000, "max_age_s": 0.2},
            "remote": {"url": remote_url, "batch_size": 20_000, "interval_s": 0.1},
        },
    })


def columns(n: int) -> ReadingColumns:
    """``n`` readings: every meter once per minute, realistic 3-decimal values."""
    rng = np.random.default_rng(1)
    ids = [f"pdu-{i}" for i in range(N_METERS)] + [f"ctr-{i}" for i in range(N_METERS)]
    k = np.arange(n)
    meter = np.array([ids[i % len(ids)] for i in range(n)], dtype=object)
    power = np.array([m.startswith("pdu") for m in meter])
    value = np.where(power, rng.uniform(1, 900, n), 1000.0 + k * 0.5).round(3)
    return ReadingColumns(
        T0_MS + (k // len(ids)) * 60_000, meter,
        np.where(power, "power", "energy").astype(object), value,
        np.where(power, "kW", "kWh").astype(object),
    )


def payloads(n: int) -> list[bytes]:
    return [p for p, _ in batch_payloads([columns(n)], BATCH)]


async def process(site: Site, data: list[bytes], store: Store) -> dict[str, float]:
    """Decode + normalise + append on one core; wall and CPU seconds of each part.

    DuckDB is limited to one thread, so CPU time is what one core spends; wall time also
    counts waiting for a core on a busy machine.
    """
    store.execute("SET threads TO 1")
    decoder = PayloadDecoder(MeterIndex(site), Subscription(topic="#"), 1 << 20)
    pipeline = Pipeline(store, PipelineSettings(batch_size=20_000))
    decode_wall = decode_cpu = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i, payload in enumerate(data):
        w, c = time.perf_counter(), time.process_time()
        readings, _ = decoder.decode(payload, "dcpue/bench/readings", T0_MS)
        decode_wall += time.perf_counter() - w
        decode_cpu += time.process_time() - c
        pipeline.submit(readings)
        if (i + 1) * BATCH % 20_000 == 0:
            await pipeline.commit()
    await pipeline.commit()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    assert store.count() == len(data) * BATCH, "every reading must be stored"
    return {
        "wall": wall, "cpu": cpu, "decode_wall": decode_wall, "decode_cpu": decode_cpu,
        "store_wall": wall - decode_wall, "store_cpu": cpu - decode_cpu,
    }


def _publisher(port: int, n: int, ready: Event, go: Event) -> None:
    chunk = columns(n)  # prepared before the clock starts
    ready.set()
    go.wait()
    asyncio.run(publish_readings(bench_site(port), [chunk], "127.0.0.1", port,
                                 batch_size=BATCH, client_id="bench-publisher"))


async def mqtt_run(n: int, workdir: Path) -> tuple[float, float]:
    """Seconds until DuckDB, then VictoriaMetrics, hold all ``n`` readings."""
    with Mosquitto(workdir / "mqtt") as broker, VictoriaMetrics(workdir / "vm") as vm:
        site = bench_site(broker.port, vm.url)
        store = Store(workdir / "bench.duckdb")
        async with Collector(site, store) as collector:
            while not collector.stats().mqtt_connected:
                await asyncio.sleep(0.01)
            ctx = multiprocessing.get_context("spawn")
            ready, go = ctx.Event(), ctx.Event()
            publisher = ctx.Process(target=_publisher, args=(broker.port, n, ready, go))
            publisher.start()
            await asyncio.to_thread(ready.wait, 120)
            t0 = time.perf_counter()
            go.set()
            deadline = t0 + 600
            while collector.stats().readings_stored < n and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            local = time.perf_counter() - t0
            while collector.stats().remote_written < n and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            remote = time.perf_counter() - t0
            publisher.join(60)
        store.close()
    return local, remote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=500_000)
    parser.add_argument("--mqtt-readings", type=int, default=200_000)
    args = parser.parse_args()
    site = bench_site()
    data = payloads(args.readings)
    n = len(data) * BATCH

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = asyncio.run(process(site, data, Store(Path(tmp) / "p.duckdb")))
    for label, part in (
        ("processing, one core (parse+normalise+DuckDB)", ""),
        ("  of which parse+normalise", "decode_"),
        ("  of which pipeline + DuckDB append", "store_"),
    ):
        rows.append((label, f"{n / t[part + 'cpu']:,.0f} /s CPU", f"{n / t[part + 'wall']:,.0f} /s wall"))
    sample = data[: max(1, len(data) // 10)]
    tracemalloc.start()
    asyncio.run(process(site, sample, Store()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append((f"tracemalloc peak, {len(sample) * BATCH:,} readings", f"{peak / 2**20:.1f} MiB", ""))
    with tempfile.TemporaryDirectory() as tmp:
        local, remote = asyncio.run(mqtt_run(args.mqtt_readings, Path(tmp)))
    m = args.mqtt_readings
    rows += [
        (f"MQTT -> DuckDB, {m:,} readings in {BATCH}-reading batches", "",
         f"{m / local:,.0f} /s wall"),
        ("MQTT -> DuckDB + VictoriaMetrics (both sinks)", "", f"{m / remote:,.0f} /s wall"),
        ("peak RSS of the process",
         f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", ""),
    ]
    width = max(len(k) for k, _, _ in rows)
    print(f"{n:,} readings processed; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for key, first, second in rows:
        print(f"{key:<{width}}  {first:>18}  {second:>18}")


if __name__ == "__main__":
    main()
