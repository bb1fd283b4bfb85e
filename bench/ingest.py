"""Collector throughput: processing on one core, and MQTT ingestion beside its peers.

Run from the repository root: ``.venv/bin/python bench/ingest.py [--readings N]``.
Needs the ``mosquitto`` binary for the MQTT part (same server as the tests, on a free
127.0.0.1 port). Prints a table; nothing here is asserted.

* processing: JSON batch payloads (500 readings each) -> PayloadDecoder (parse, validate,
  unit conversion) -> Pipeline -> DuckDB append, all in this process, no network.
* MQTT: the messages (one reading each, or 500-reading batches) are published with QoS 1 to
  one Mosquitto (no on-disk persistence) that queues them for three persistent sessions per
  round; then in each round each consumer drains its own queue in turn: dcpue's collector
  (MQTT 5, acknowledges after the DuckDB commit), a bare paho subscriber that only counts,
  and a naive paho + pandas -> DuckDB peer (both paho's default MQTT 3.1.1, acknowledging on
  receipt). Rate = readings / time from connecting until the consumer holds every reading;
  the table gives the median over the rounds (``--rounds``, default 3) of readings per wall
  second and per CPU second of this process (all its threads; the broker excluded), and in
  brackets dcpue's figure over the peer's. On a shared machine the wall rate follows the
  share of a core the scheduler grants; the CPU rate is steadier.
* stalls: every wait (registration, publisher, each consumer's drain, the collector's stop)
  is bounded: no progress for ``STALL_S`` (20 s) ends the run with "... stalled at X of Y".
* memory: peak RSS of this process (``resource.getrusage``), and the tracemalloc peak of
  Python allocations during a processing run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers, run from anywhere

import duckdb
import numpy as np
import paho.mqtt.client as paho
import pandas as pd
from dcpue.collector.gateway_mqtt import batch_payloads
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.collector.pipeline import Pipeline
from dcpue.collector.service import Collector
from dcpue.config import Site, parse_site
from dcpue.config.collector import PipelineSettings, Subscription
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store

from tests.servers import Mosquitto, binary

#: Meters of the synthetic site: 40 power meters and 40 energy counters.
N_METERS = 40
#: A consumer, publisher or registration that makes no progress for this long has stalled:
#: the run stops with "stalled at X of Y" (a healthy drain moves every few milliseconds).
STALL_S = 20.0
#: Readings start a week ago (midnight UTC), so none is later than its receipt (now).
T0_MS = (int(time.time()) // 86_400 - 7) * 86_400_000
BATCH = 500


def bench_site(
    mqtt_port: int = 1883, remote_url: str = "", client_id: str = "bench-collector"
) -> Site:
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
            "mqtt": {"port": mqtt_port, "client_id": client_id,
                     "subscriptions": [{"topic": "dcpue/bench/single", "format": "reading"},
                                       {"topic": "dcpue/bench/batch"}]},
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
    now_ms = time.time_ns() // 1_000_000
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i, payload in enumerate(data):
        w, c = time.perf_counter(), time.process_time()
        readings, _ = decoder.decode(payload, "dcpue/bench/readings", now_ms)
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


def single_payloads(n: int) -> list[bytes]:
    """``n`` one-reading messages (what Tasmota and most BMS gateways send)."""
    cols = columns(n)
    return [
        json.dumps({"meter": m, "value": v, "unit": u, "ts": t}, separators=(",", ":")).encode()
        for t, m, v, u in zip(cols.ts_ms.tolist(), cols.meter, cols.value.tolist(), cols.unit,
                              strict=True)
    ]


class Stalled(RuntimeError):
    """A bounded wait of the benchmark saw no progress for :data:`STALL_S`."""


class Progress:
    """Bounded wait: :meth:`check` raises :class:`Stalled` ("stalled at X of Y") once the
    count has not moved for ``stall_s``."""

    def __init__(self, what: str, total: int, stall_s: float = STALL_S) -> None:
        self.what, self.total, self.stall_s = what, total, stall_s
        self.last, self.since = -1, time.perf_counter()

    def check(self, done: int, detail: object = "") -> None:
        now = time.perf_counter()
        if done != self.last:
            self.last, self.since = done, now
        elif now - self.since > self.stall_s:
            raise Stalled(f"{self.what} stalled at {done:,} of {self.total:,} (no progress "
                          f"for {self.stall_s:.0f} s){f'; {detail}' if detail else ''}")


def _publish(port: int, topic: str, messages: list[bytes]) -> None:
    """QoS 1 publisher (paho, its own thread); returns when the broker has acknowledged all."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, m, qos=1) for m in messages]
    progress = Progress("publisher", len(infos))
    done = 0
    while done < len(infos):
        if infos[done].is_published():
            done += 1
            continue
        progress.check(done)
        infos[done].wait_for_publish(0.05)
    client.loop_stop()
    client.disconnect()


def _session(port: int, client_id: str) -> paho.Client:
    """A paho subscriber on a persistent session (MQTT 3.1.1, clean session off)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=False)
    client.connect("127.0.0.1", port)
    client.subscribe("dcpue/bench/#", qos=1)
    return client


def _drain_paho(
    port: int, client_id: str, on_payload, count, total: int
) -> tuple[float, float]:
    """Wall and CPU seconds (of this process, all threads) for a paho subscriber to take its
    queued session, calling ``on_payload``, until ``count()`` reaches ``total``."""
    client = _session(port, client_id)
    client.on_message = lambda _c, _u, m: on_payload(m.payload)
    progress = Progress(client_id, total)
    t0, c0 = time.perf_counter(), time.process_time()
    client.loop_start()
    try:
        while (done := count()) < total:
            progress.check(done)
            time.sleep(0.005)
    finally:
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        client.loop_stop()
        client.disconnect()
    return elapsed, cpu


def bare_paho(port: int, n_messages: int, client_id: str) -> tuple[float, float]:
    """A subscriber that only counts messages (paho acknowledges each on receipt)."""
    got = [0]

    def count(_payload: bytes) -> None:
        got[0] += 1

    return _drain_paho(port, client_id, count, lambda: got[0], n_messages)


def naive_peer(
    port: int, n_readings: int, workdir: Path, client_id: str
) -> tuple[float, float]:
    """paho + pandas -> DuckDB as one would write it: JSON rows into a list, a DataFrame
    inserted every 20,000 rows into a table of strings; acknowledged on receipt (no
    at-least-once, no validation, no dead letters, no deduplication)."""
    con = duckdb.connect(str(workdir / f"naive-{n_readings}-{time.monotonic_ns()}.duckdb"))
    con.execute("CREATE TABLE readings (meter VARCHAR, value DOUBLE, unit VARCHAR, ts BIGINT)")
    rows: list[dict] = []
    stored = [0]

    def flush() -> None:
        con.register("frame", pd.DataFrame(rows, columns=["meter", "value", "unit", "ts"]))
        con.execute("INSERT INTO readings SELECT * FROM frame")
        con.unregister("frame")
        stored[0] += len(rows)
        rows.clear()

    def on_payload(payload: bytes) -> None:
        doc = json.loads(payload)
        rows.extend(doc["readings"] if isinstance(doc, dict) and "readings" in doc else [doc])
        if len(rows) >= 20_000 or stored[0] + len(rows) >= n_readings:
            flush()

    times = _drain_paho(port, client_id, on_payload, lambda: stored[0], n_readings)
    con.close()
    return times


async def dcpue_drain(
    site: Site, n_readings: int, workdir: Path, name: str
) -> tuple[float, float]:
    """Wall and CPU seconds (of this process, all threads) for dcpue's collector
    (at-least-once: acknowledged after the DuckDB commit) to store its queued session."""
    store = Store(workdir / f"{name}.duckdb")
    progress = Progress(f"dcpue ({name})", n_readings)
    t0, c0 = time.perf_counter(), time.process_time()
    async with bounded(Collector(site, store, remote=False)) as collector:
        while (done := collector.stats().readings_stored) < n_readings:
            progress.check(done, f"MQTT {collector.mqtt.stats}; pending "
                                 f"{collector.stats().pending:,}")
            await asyncio.sleep(0.005)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    store.close()
    return elapsed, cpu


@contextlib.asynccontextmanager
async def bounded(collector: Collector):
    """The collector started, and stopped within :data:`STALL_S` (else :class:`Stalled`)."""
    await collector.start()
    try:
        yield collector
    finally:
        try:
            async with asyncio.timeout(STALL_S):
                await collector.stop()
        except TimeoutError:
            raise Stalled(f"the collector did not stop within {STALL_S:.0f} s") from None


class BenchMosquitto(Mosquitto):
    """The tests' broker without its on-disk persistence: with persistence, Mosquitto
    rewrites its whole database every second, a cost that grows with the queues of the
    sessions here and would land on whichever consumer happens to be draining."""

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n"
                        "max_queued_messages 0\nmessage_size_limit 1048576\n")
        return [binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)]


def queued_drain(
    messages: list[bytes], per_message: int, workdir: Path, name: str, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median readings per wall second and per CPU second of dcpue, a bare paho subscriber
    and the naive peer over ``rounds`` rounds, each consumer draining the same ``messages``
    from its own persistent session (one per consumer and round, all queued on one
    Mosquitto before the first round, the consumers taking turns within each round)."""
    n = len(messages) * per_message
    peers = ("dcpue", "bare paho subscriber", "naive paho + pandas -> DuckDB")
    times: dict[str, list[tuple[float, float]]] = {who: [] for who in peers}
    with BenchMosquitto(workdir / f"mqtt-{name}") as broker:
        sites = [bench_site(broker.port, client_id=f"bench-collector-{r}") for r in range(rounds)]
        for r in range(rounds):
            for client_id in (f"bench-bare-{r}", f"bench-naive-{r}"):
                _session(broker.port, client_id).disconnect()

        async def register(site: Site) -> None:  # the collector's persistent session, then away
            async with bounded(Collector(site, Store(), remote=False)) as collector:
                progress = Progress(f"registering {site.collector.mqtt.client_id}", 1)
                while not collector.stats().mqtt_connected:
                    progress.check(0, f"MQTT {collector.mqtt.stats}")
                    await asyncio.sleep(0.01)

        for site in sites:
            asyncio.run(register(site))
        topic = "dcpue/bench/single" if per_message == 1 else "dcpue/bench/batch"
        _publish(broker.port, topic, messages)
        for r, site in enumerate(sites):
            times[peers[0]].append(asyncio.run(dcpue_drain(site, n, workdir, f"{name}-{r}")))
            times[peers[1]].append(bare_paho(broker.port, len(messages), f"bench-bare-{r}"))
            times[peers[2]].append(naive_peer(broker.port, n, workdir, f"bench-naive-{r}"))
    return {
        who: (float(np.median([n / w for w, _ in got])), float(np.median([n / c for _, c in got])))
        for who, got in times.items()
    }


def processing_rows(site: Site, data: list[bytes]) -> list[tuple[str, str, str]]:
    """Table rows of the processing part (no network) and its memory."""
    n = len(data) * BATCH
    rows = []
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
    return rows


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=500_000)
    parser.add_argument("--single-messages", type=int, default=50_000)
    parser.add_argument("--mqtt-readings", type=int, default=500_000)
    parser.add_argument("--mqtt-only", action="store_true", help="skip the processing part")
    parser.add_argument("--rounds", type=int, default=3, help="MQTT rounds (medians)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, str, str]] = []
    if not args.mqtt_only:
        rows += processing_rows(bench_site(), payloads(args.readings))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            single = queued_drain(single_payloads(args.single_messages), 1, Path(tmp),
                                  "single", args.rounds)
            batched = queued_drain(payloads(args.mqtt_readings), BATCH, Path(tmp), "batched",
                                   args.rounds)
        except Stalled as exc:
            sys.exit(f"bench/ingest.py: {exc}")
    for title, got in ((f"MQTT, {args.single_messages:,} one-reading messages", single),
                       (f"MQTT, {args.mqtt_readings:,} readings in {BATCH}-reading messages",
                        batched)):
        rows.append((title, "wall", "CPU of this process"))
        ours_wall, ours_cpu = got["dcpue"]
        for who, (wall, cpu) in got.items():  # each a median of the rounds
            ratio = "" if who == "dcpue" else f" ({ours_wall / wall:.2f}x)"
            rows.append((f"  {who}", f"{wall:,.0f} /s{ratio}",
                         f"{cpu:,.0f} /s" + ("" if who == "dcpue" else f" ({ours_cpu / cpu:.2f}x)")))
    rows.append(("peak RSS of the process",
                 f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", ""))
    width = max(len(k) for k, _, _ in rows)
    print(f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
          f"{os.cpu_count()} cores; MQTT: medians of {args.rounds} rounds; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for key, first, second in rows:
        print(f"{key:<{width}}  {first:>18}  {second:>18}")


if __name__ == "__main__":
    main()
