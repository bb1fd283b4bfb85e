"""The poller against real pymodbus TCP servers on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

from dcpue.collector.gateway_modbus import RegisterServer
from dcpue.collector.modbus import ModbusPoller, next_due
from dcpue.collector.modbus_registers import encode
from dcpue.config import Site

from tests.collector_modbus.conftest import ListSink, make_site, wait_until
from tests.servers import free_port


@contextlib.asynccontextmanager
async def polling(site: Site, sink: ListSink) -> AsyncIterator[ModbusPoller]:
    """Run a poller in the background for the body of the block."""
    poller = ModbusPoller(site, sink)
    task = asyncio.create_task(poller.run())
    try:
        yield poller
    finally:
        poller.stop()
        await asyncio.wait_for(task, 5)


def device(name: str, port: int, points: list[dict], interval_s: float = 0.05, **extra) -> dict:
    return {"name": name, "port": port, "timeout_s": 0.5, **extra,
            "groups": [{"interval_s": interval_s, "points": points}]}


def test_fixed_rate_schedule_skips_missed_slots() -> None:
    assert next_due(10.0, 1.0, 10.2) == 11.0
    assert next_due(10.0, 1.0, 13.5) == 14.0  # 11, 12 and 13 were missed: no burst
    assert next_due(10.0, 1.0, 11.0) == 12.0


async def test_word_swapped_float32_and_scale_factor_read_correctly(sink: ListSink) -> None:
    async with RegisterServer(holding_size=8, input_size=16) as server:
        # it-power: float32 1500.0 W = 0x44BB8000, word-swapped -> [0x8000, 0x44BB] -> 1.5 kW
        server.write("holding", 0, [0x8000, 0x44BB])
        # outdoor: int16 47 x scale 0.5 = 23.5 degC
        server.write("holding", 2, [47])
        # grid-main: uint32 0x0001E240 = 123456 with SunSpec sf -2 (0xFFFE) -> 1234.56 kWh
        server.write("input", 10, [0x0001, 0xE240, 0x0000, 0xFFFE])
        # it: uint16 with sf 0x8000 ("not implemented") -> dead letter
        server.write("input", 14, [500, 0x8000])
        site = make_site({"devices": [device("pm", server.port, [
            {"meter": "it-power", "address": 0, "type": "float32", "word_order": "little",
             "unit": "W"},
            {"meter": "outdoor", "address": 2, "type": "int16", "scale": 0.5},
            {"meter": "grid-main", "table": "input", "address": 10, "type": "uint32",
             "scale_factor_address": 13},
            {"meter": "it", "table": "input", "address": 14, "scale_factor_address": 15},
        ])]})
        async with polling(site, sink) as poller:
            await wait_until(lambda: len(sink.letters) >= 1, "first poll")
        got = {m: (r.value, r.unit) for m, r in sink.by_meter().items()}
        assert got == {"it-power": (1.5, "kW"), "outdoor": (23.5, "degC"),
                       "grid-main": (1234.56, "kWh")}
        letter = sink.letters[0]
        assert (letter.source, letter.origin, letter.reason) == (
            "modbus", f"pm@127.0.0.1:{server.port}/1", "not_implemented")
        assert letter.raw == struct.pack(">H", 500)
        assert server.reads == 2 * poller.status()[0].polls_ok  # one read per table per poll


async def test_every_type_and_order_through_a_server(sink: ListSink) -> None:
    values = {"int16": -2, "uint16": 65534, "int32": -123456, "uint32": 305419896,
              "int64": -9_000_000_000_123, "uint64": 9_007_199_254_740_993 - 1,
              "float32": 1.5, "float64": 1234567.125}
    orders = [(w, b) for w in ("big", "little") for b in ("big", "little")]
    meters = [(f"m{i}", "outdoor_temperature", "state", "degC") for i in range(32)]
    meters.append(("it", "it_load", "counter", "kWh"))
    async with RegisterServer(holding_size=200) as server:
        points, expected, address = [], {}, 0
        for i, (type_, (word, byte)) in enumerate((t, o) for t in values for o in orders):
            words = encode(values[type_], type_, word, byte)
            server.write("holding", address, words)
            points.append({"meter": f"m{i}", "address": address, "type": type_,
                           "word_order": word, "byte_order": byte})
            expected[f"m{i}"] = float(values[type_])
            address += len(words)
        site = make_site({"devices": [device("all", server.port, points)]}, meters)
        # raw bit patterns, not temperatures: widen the plausible range so all 32 are kept
        site.collector.validation.ranges["temperature"] = (-1e19, 1e19)
        async with polling(site, sink):
            await wait_until(lambda: len(sink.readings) >= 32, "a poll of 32 points")
        assert {r.meter: r.value for r in sink.readings[:32]} == expected
        assert server.reads == 1  # 96 adjacent registers: one request
        assert sink.letters == []


async def test_thirty_points_over_300_registers_cost_three_requests(sink: ListSink) -> None:
    meters = [(f"m{a}", "outdoor_temperature", "state", "degC") for a in range(0, 300, 10)]
    meters.append(("it", "it_load", "counter", "kWh"))
    async with RegisterServer(holding_size=300) as server:
        for a in range(0, 300, 10):
            server.write("holding", a, encode(a, "uint32"))
        points = [{"meter": f"m{a}", "address": a, "type": "uint32"} for a in range(0, 300, 10)]
        site = make_site({"devices": [device("wide", server.port, points, max_gap=8,
                                              interval_s=30)]}, meters)
        site.collector.validation.ranges["temperature"] = (0, 300)  # addresses as values
        async with polling(site, sink):
            await wait_until(lambda: len(sink.readings) == 30, "a poll of 30 points")
        assert server.reads == 3
        assert {r.meter: r.value for r in sink.readings} == {f"m{a}": a for a in range(0, 300, 10)}


async def test_exception_responses_and_refused_values_become_dead_letters(sink: ListSink) -> None:
    async with RegisterServer(holding_size=4) as server:
        server.write("holding", 0, encode(-5.0, "float32"))  # a negative energy counter
        server.write("holding", 2, encode(21.5, "float32"))
        site = make_site({"devices": [device("pm", server.port, [
            {"meter": "grid-main", "address": 0, "type": "float32"},
            {"meter": "outdoor", "address": 2, "type": "float32"},
            {"meter": "it", "address": 100, "type": "uint16"},  # outside the device's map
        ], max_gap=0)]})
        async with polling(site, sink) as poller:
            await wait_until(lambda: len(sink.letters) >= 2, "first poll")
        assert [(r.meter, r.value) for r in sink.readings[:1]] == [("outdoor", 21.5)]
        reasons = {(d.reason, d.detail.split(":")[0]) for d in sink.letters[:2]}
        assert reasons == {("negative_counter", "holding 0 float32"), ("modbus_exception", "it")}
        assert "exception code 2" in next(d for d in sink.letters if d.reason == "modbus_exception").detail
        status = poller.status()[0]
        assert status.state == "ok" and status.rejected >= 2  # it answered: not a failing device


class HungServer(RegisterServer):
    """A device that accepts connections and requests but never answers in time."""

    async def _serve(self, *args: object) -> None:  # type: ignore[override]
        await asyncio.sleep(30)


async def test_dead_devices_do_not_delay_a_healthy_one(sink: ListSink) -> None:
    interval = 0.1
    healthy, hung, stopped = RegisterServer(4), HungServer(4), RegisterServer(4)
    for server in (healthy, hung, stopped):
        server.write("holding", 0, encode(20.0, "float32"))
        await server.start()
    point = [{"meter": "outdoor", "address": 0, "type": "float32"}]
    site = make_site({
        "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
        "devices": [
            device("healthy", healthy.port, point, interval_s=interval),
            device("unplugged", free_port(), point, interval_s=interval),
            device("hung", hung.port, point, interval_s=interval, timeout_s=0.4),
            device("stopped", stopped.port, point, interval_s=interval),
        ],
    })
    loop = asyncio.get_running_loop()
    try:
        async with polling(site, sink) as poller:
            def status(name: str):
                return next(s for s in poller.status() if s.name == name)

            await wait_until(lambda: status("stopped").polls_ok >= 1, "stopped device answers")
            await stopped.stop()
            # count the healthy device's polls over a window while the others fail
            window_s = 1.5
            polls_before, start = status("healthy").polls_ok, loop.time()
            ceilings: set[tuple[int, float]] = set()
            while loop.time() - start < window_s:
                s = status("unplugged")
                if s.consecutive_failures:
                    ceilings.add((s.consecutive_failures, s.backoff_ceiling_s))
                    assert 0 <= s.retry_in_s <= s.backoff_ceiling_s
                await asyncio.sleep(0.01)
            polls = status("healthy").polls_ok - polls_before
            elapsed = loop.time() - start
            # fixed-rate: one poll per 0.1 s slot; a poller that waited on the hung device's
            # 0.4 s timeouts would lose about 4 slots per attempt
            assert int(elapsed / interval) - 2 <= polls <= int(elapsed / interval) + 1
            assert status("healthy").state == "ok" and status("healthy").consecutive_failures == 0

            # backoff ceiling 0.05 s x 2^(n-1), capped at 0.4 s, grows with each failure
            assert all(c == min(0.4, 0.05 * 2 ** (n - 1)) for n, c in ceilings)
            assert max(n for n, _ in ceilings) >= 4 and max(c for _, c in ceilings) == 0.4
            for name in ("unplugged", "hung", "stopped"):
                s = status(name)
                assert s.state == "failing" and s.consecutive_failures >= 1, name
                assert s.last_error and s.polls_failed >= 1, name
            assert status("unplugged").last_success_ms is None
            assert status("stopped").last_success_ms is not None

            # the stopped device comes back on the same port and is polled again
            await stopped.start()
            await wait_until(lambda: status("stopped").state == "ok", "stopped device recovers")
            assert status("stopped").backoff_ceiling_s == 0.0
    finally:
        for server in (healthy, hung, stopped):
            await server.stop()
    assert {r.meter for r in sink.readings} == {"outdoor"}
    assert sink.letters == []


async def test_no_active_device_returns_at_once(sink: ListSink) -> None:
    site = make_site({"devices": [device("off", free_port(), [
        {"meter": "outdoor", "address": 0}], enabled=False)]})
    poller = ModbusPoller(site, sink)
    assert not poller.active
    await asyncio.wait_for(poller.run(), 1)
    assert poller.status() == []


async def test_unit_id_is_addressed(sink: ListSink) -> None:
    async with RegisterServer(2, unit_id=7) as server:
        server.write("holding", 0, encode(18.25, "float32"))
        point = [{"meter": "outdoor", "address": 0, "type": "float32"}]
        site = make_site({"devices": [
            device("right", server.port, point, unit_id=7),
            device("wrong", server.port, point, unit_id=8),
        ]})
        async with polling(site, sink) as poller:
            await wait_until(lambda: sink.readings and sink.letters, "both devices polled")
        right, wrong = poller.status()
    assert sink.readings[0].value == 18.25
    assert sink.letters[0].origin == f"wrong@127.0.0.1:{server.port}/8"
    assert sink.letters[0].reason == "modbus_exception"  # the server refuses unit 8
    assert right.state == wrong.state == "ok"
