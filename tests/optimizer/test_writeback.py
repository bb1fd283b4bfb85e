"""Write-back against a real pymodbus TCP server and the real Mosquitto broker; overrides win."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
import pytest
from dcpue.config import SetpointName
from dcpue.core.store import Store
from dcpue.optimizer.propose import Proposal, ProposalLog, publish_proposal, setpoint_bounds
from dcpue.optimizer.writeback import (
    Overrides,
    SetpointWrite,
    WritebackRefused,
    apply_proposal,
    plan_writes,
    register_value,
    write_modbus,
)
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.optimizer.helpers import small_site

CHW = SetpointName.CHILLED_WATER_TEMPERATURE
CURRENT = {"supply_air_temperature": 20.0, "chilled_water_temperature": 10.0,
           "crah_fan_speed": 80.0, "pump_frequency": 50.0, "running_units": 8.0}


def _proposal(**proposed: float) -> Proposal:
    return Proposal(id="p1", ts_ms=0, site="t", status="proposed", current=dict(CURRENT),
                    proposed=CURRENT | proposed, reason="test")


class SetpointDevice:
    """A pymodbus TCP server with 32 writable holding registers (device id 1); it records
    every write request as (address, words)."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, list[int]]] = []
        self.port = 0
        self._server: ModbusTcpServer | None = None

    async def _record(self, fc: int, start: int, address: int, count: int, registers: list[int],
                      values: list[int] | None) -> None:
        if values is not None:
            self.writes.append((address, list(values)))

    async def __aenter__(self) -> SetpointDevice:
        holding = [SimData(0, count=32, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        device = SimDevice(1, simdata=(bits, list(bits), holding, list(holding)),
                           action=self._record)
        self._server = ModbusTcpServer(device, address=("127.0.0.1", 0))
        await self._server.serve_forever(background=True)
        self.port = int(self._server.transport.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.shutdown()

    async def holding(self, address: int) -> int:
        client = AsyncModbusTcpClient("127.0.0.1", port=self.port, timeout=3)
        await client.connect()
        try:
            return (await client.read_holding_registers(address, count=1, device_id=1)).registers[0]
        finally:
            client.close()


def _site(port: int = 502, mqtt_port: int = 1883) -> Any:
    return small_site({
        "mqtt": {"port": mqtt_port, "proposal_topic": "dc/t/proposal"},
        "setpoints": {
            "chilled_water_temperature": {
                "min": 7.0, "max": 20.0, "max_step": 1.0,
                "writeback": {"enabled": True, "transport": "modbus", "modbus": {
                    "port": port, "device_id": 1, "address": 4, "scale": 10.0}},
            },
            "supply_air_temperature": {
                "min": 18.0, "max": 27.0, "max_step": 1.0,
                "writeback": {"enabled": True, "topic": "dc/t/cmd/supply-air"},
            },
        },
    })


def test_plan_clamps_and_overrides_win() -> None:
    cfg = _site().optimizer
    # write-back is enabled for chilled water and supply air only; a wrong proposal of 25 degC
    # chilled water is clamped to the 20 degC bound
    writes = plan_writes(_proposal(chilled_water_temperature=25.0), cfg, {})
    assert {(w.setpoint.value, w.value, w.source) for w in writes} == {
        ("chilled_water_temperature", 20.0, "proposal"),
        ("supply_air_temperature", 20.0, "proposal")}
    with Store() as store:
        overrides = Overrides(store)
        bounds = setpoint_bounds(cfg)
        overrides.set(SetpointName.CHILLED_WATER_TEMPERATURE, 9.0, bounds[
            "chilled_water_temperature"], note="chiller service")
        overrides.set(SetpointName.SUPPLY_AIR_TEMPERATURE, None, bounds["supply_air_temperature"])
        with pytest.raises(WritebackRefused, match="outside hard bounds"):
            overrides.set(SetpointName.CRAH_FAN_SPEED, 120.0, bounds["crah_fan_speed"])
        held = overrides.all()
        assert held[SetpointName.CHILLED_WATER_TEMPERATURE].note == "chiller service"
        writes = plan_writes(_proposal(chilled_water_temperature=12.0), cfg, held)
        # the held supply air is not written at all; chilled water goes to the override value
        assert [(w.setpoint.value, w.value, w.source) for w in writes] == [
            ("chilled_water_temperature", 9.0, "override")]
        fixed = overrides.fixed_values({SetpointName(k): v for k, v in CURRENT.items()})
        assert fixed == {SetpointName.CHILLED_WATER_TEMPERATURE: 9.0,
                         SetpointName.SUPPLY_AIR_TEMPERATURE: 20.0}
        assert overrides.clear(SetpointName.SUPPLY_AIR_TEMPERATURE)
        assert not overrides.clear(SetpointName.SUPPLY_AIR_TEMPERATURE)


def test_overrides_read_the_table_once_per_change() -> None:
    """Computed: what one :class:`Overrides` (the daemon's, read at every proposal) sees after
    another on the same store (an API call or a forwarded CLI command) sets and clears an
    override, and how many table reads it makes. Declared: every change is seen at once; no
    change, no read."""
    cfg = _site().optimizer
    bounds = setpoint_bounds(cfg)["chilled_water_temperature"]
    with Store() as store:
        daemon, api = Overrides(store), Overrides(store)
        reads = []
        execute = store.execute

        def counting(sql, *args, **kwargs):
            if sql.startswith("SELECT setpoint"):
                reads.append(sql)
            return execute(sql, *args, **kwargs)

        store.execute = counting  # type: ignore[method-assign]
        assert daemon.all() == {} and daemon.all() == {}
        assert len(reads) == 1
        api.set(SetpointName.CHILLED_WATER_TEMPERATURE, 9.0, bounds)
        assert daemon.all()[SetpointName.CHILLED_WATER_TEMPERATURE].value == 9.0
        daemon.all()
        assert len(reads) == 2
        api.clear(SetpointName.CHILLED_WATER_TEMPERATURE)
        assert daemon.all() == {}
        with Store() as other:  # another store's changes are not this one's
            Overrides(other).set(SetpointName.CHILLED_WATER_TEMPERATURE, 8.0, bounds)
        assert daemon.all() == {} and len(reads) == 4


def test_register_encoding() -> None:
    target = _site().optimizer.setpoints.chilled_water_temperature.writeback.modbus
    assert register_value(12.34, target) == 123  # x10, rounded
    signed = target.model_copy(update={"signed": True})
    assert register_value(-1.5, signed) == 0xFFF1  # -15 in two's complement
    with pytest.raises(WritebackRefused, match="16 bits"):
        register_value(7000.0, target)


async def test_modbus_write_and_adapter_refusal() -> None:
    async with SetpointDevice() as device:
        cfg = _site(port=device.port).optimizer
        bounds = setpoint_bounds(cfg)["chilled_water_temperature"]
        target = bounds.writeback.targets()[None]
        await write_modbus(SetpointWrite(CHW, 12.5, "proposal", target=target), bounds)
        assert device.writes == [(4, [125])]
        assert await device.holding(4) == 125
        # the adapter checks again: nothing outside the bounds reaches the device
        for wrong in (20.5, 6.9, float("nan")):
            with pytest.raises(WritebackRefused):
                await write_modbus(SetpointWrite(CHW, wrong, "proposal", target=target), bounds)
        assert device.writes == [(4, [125])]


async def _collect(port: int, topics: list[str], n: int, ready: asyncio.Event,
                   out: dict[str, Any]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        ready.set()
        async for message in client.messages:
            out[str(message.topic)] = json.loads(message.payload)
            if len(out) >= n:
                return


async def test_apply_writes_modbus_and_mqtt_and_publishes(mosquitto) -> None:
    async with SetpointDevice() as device:
        site = _site(port=device.port, mqtt_port=mosquitto.port)
        cfg = site.optimizer
        proposal = _proposal(chilled_water_temperature=11.0, supply_air_temperature=21.0)
        got: dict[str, Any] = {}
        ready = asyncio.Event()
        listener = asyncio.create_task(_collect(
            mosquitto.port, ["dc/t/cmd/supply-air", "dc/t/proposal"], 2, ready, got))
        await asyncio.wait_for(ready.wait(), 10)
        with Store() as store:
            ProposalLog(store).save(proposal)
            writes = await apply_proposal(store, cfg, proposal)
            await publish_proposal(cfg.mqtt, cfg.mqtt.proposal_topic, proposal)
            assert ProposalLog(store).get("p1").status == "applied"
        await asyncio.wait_for(listener, 10)
    assert {w.setpoint.value: w.value for w in writes} == {
        "chilled_water_temperature": 11.0, "supply_air_temperature": 21.0}
    assert device.writes == [(4, [110])]
    assert got["dc/t/cmd/supply-air"] == {"setpoint": "supply_air_temperature", "value": 21.0,
                                          "proposal": "p1"}
    assert Proposal.from_json(json.dumps(got["dc/t/proposal"])) == proposal


async def test_write_back_is_off_by_default() -> None:
    site = small_site()
    assert not any(b.writeback.enabled for b in setpoint_bounds(site.optimizer).values())
    with Store() as store:
        ProposalLog(store).save(_proposal(chilled_water_temperature=11.0))
        assert await apply_proposal(store, site.optimizer, _proposal()) == []
        assert ProposalLog(store).get("p1").status == "accepted"
