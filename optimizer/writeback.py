"""Write-back of accepted proposals to devices, with operator overrides that always win.

Off by default: only setpoints whose ``[optimizer.setpoints.<name>.writeback]`` has
``enabled = true`` are written. Values are clamped into the hard bounds when the write is
planned (:func:`plan_writes`) and checked again by each adapter, which refuses (raises
:class:`WritebackRefused`) rather than send an out-of-bounds value.

Operator overrides live in the store (table ``optimizer_overrides``): a setpoint with an
override value is proposed and written at that value; one held without a value (``hold``) is
left alone by the optimizer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiomqtt
from dcpue.config import SetpointName
from dcpue.config.optimizer import ModbusTarget, OptimizerSettings, SetpointBounds
from dcpue.core.store import Store
from dcpue.optimizer.propose import Proposal, ProposalLog, broker_client, setpoint_bounds
from pymodbus.client import AsyncModbusTcpClient


class WritebackRefused(ValueError):
    """A write that would leave the hard bounds (or cannot be encoded) was not sent."""


class WritebackFailed(RuntimeError):
    """The device or broker did not take the write."""


@dataclass(frozen=True, slots=True)
class Override:
    """An operator override: ``value`` to hold (None: hold whatever the device has)."""

    setpoint: SetpointName
    value: float | None
    set_ms: int
    note: str = ""


class Overrides:
    """Persistent per-setpoint operator overrides in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.execute(
            "CREATE TABLE IF NOT EXISTS optimizer_overrides (setpoint VARCHAR PRIMARY KEY,"
            " value DOUBLE, set_ms BIGINT NOT NULL, note VARCHAR NOT NULL)"
        )

    def set(
        self, setpoint: SetpointName, value: float | None, bounds: SetpointBounds, note: str = ""
    ) -> Override:
        """Hold ``setpoint`` (at ``value`` if given); a value outside the hard bounds is refused."""
        if value is not None and not bounds.min <= value <= bounds.max:
            raise WritebackRefused(
                f"override {setpoint}={value:g} outside hard bounds [{bounds.min:g}, {bounds.max:g}]"
            )
        override = Override(setpoint, value, int(time.time() * 1000), note)
        self.store.execute(
            "INSERT OR REPLACE INTO optimizer_overrides VALUES (?, ?, ?, ?)",
            [setpoint.value, value, override.set_ms, note],
        )
        return override

    def clear(self, setpoint: SetpointName) -> bool:
        """Remove an override; True if there was one."""
        had = setpoint in self.all()
        self.store.execute("DELETE FROM optimizer_overrides WHERE setpoint = ?", [setpoint.value])
        return had

    def all(self) -> dict[SetpointName, Override]:
        rows = self.store.execute(
            "SELECT setpoint, value, set_ms, note FROM optimizer_overrides"
        ).fetchall()
        return {
            SetpointName(r[0]): Override(SetpointName(r[0]), r[1], int(r[2]), r[3]) for r in rows
        }

    def fixed_values(self, current: Mapping[SetpointName, float]) -> dict[SetpointName, float]:
        """Setpoint -> the value the optimizer must hold (override value, else current)."""
        return {
            name: (o.value if o.value is not None else float(current[name]))
            for name, o in self.all().items()
        }


@dataclass(frozen=True, slots=True)
class SetpointWrite:
    """One planned write: the value in the setpoint's unit and why it is that value."""

    setpoint: SetpointName
    value: float
    source: str  # "proposal" | "override"


def plan_writes(
    proposal: Proposal, cfg: OptimizerSettings, overrides: Mapping[SetpointName, Override]
) -> list[SetpointWrite]:
    """Writes for the setpoints with write-back enabled: the proposed value clamped into the
    hard bounds, or the operator's override value (an override without value skips the
    setpoint)."""
    bounds = setpoint_bounds(cfg)
    writes = []
    for key, b in bounds.items():
        name = SetpointName(key)
        if not b.writeback.enabled:
            continue
        override = overrides.get(name)
        if override is not None and override.value is None:
            continue
        value, source = (
            (override.value, "override") if override is not None else (proposal.proposed[key],
                                                                       "proposal")
        )
        value = min(max(float(value), b.min), b.max)
        writes.append(SetpointWrite(name, round(value) if b.integer else value, source))
    return writes


def check_bounds(value: float, bounds: SetpointBounds, what: str) -> None:
    """Refuse a value outside the hard bounds (or not finite)."""
    if not bounds.min <= value <= bounds.max:
        raise WritebackRefused(f"{what}={value!r} outside hard bounds [{bounds.min:g}, {bounds.max:g}]")


def register_value(value: float, target: ModbusTarget) -> int:
    """Setpoint -> 16-bit holding-register word: ``round(value * scale)``, two's complement
    when ``signed``; values that do not fit 16 bits are refused."""
    raw = round(value * target.scale)
    lo, hi = (-32768, 32767) if target.signed else (0, 65535)
    if not lo <= raw <= hi:
        raise WritebackRefused(f"register value {raw} does not fit 16 bits (scale {target.scale})")
    return raw & 0xFFFF


async def write_modbus(value: float, bounds: SetpointBounds, what: str) -> None:
    """Write one setpoint to its holding register over Modbus TCP (function code 16)."""
    check_bounds(value, bounds, what)
    target = bounds.writeback.modbus
    if target is None:
        raise WritebackRefused(f"{what}: no modbus register configured")
    word = register_value(value, target)
    client = AsyncModbusTcpClient(target.host, port=target.port, timeout=3, retries=1)
    try:
        if not await client.connect():
            raise WritebackFailed(f"{what}: cannot connect to {target.host}:{target.port}")
        response = await client.write_registers(target.address, [word], device_id=target.device_id)
        if response.isError():
            raise WritebackFailed(f"{what}: device answered {response}")
    finally:
        client.close()


async def write_mqtt(
    client: aiomqtt.Client, value: float, bounds: SetpointBounds, what: str, proposal_id: str,
    qos: int = 1,
) -> None:
    """Publish a JSON command ``{"setpoint", "value", "proposal"}`` on the command topic."""
    check_bounds(value, bounds, what)
    payload = json.dumps({"setpoint": what, "value": value, "proposal": proposal_id})
    await client.publish(bounds.writeback.topic, payload, qos=qos)


async def apply_proposal(
    store: Store, cfg: OptimizerSettings, proposal: Proposal, *,
    mqtt: aiomqtt.Client | None = None,
) -> list[SetpointWrite]:
    """Accept ``proposal`` and write its enabled setpoints; overrides win. The proposal's
    status becomes ``applied`` once every write went through (``accepted`` with no write-back
    enabled). MQTT writes use ``mqtt`` or a connection to ``[optimizer.mqtt]``."""
    log = ProposalLog(store)
    proposal = log.set_status(proposal, "accepted")
    writes = plan_writes(proposal, cfg, Overrides(store).all())
    if not writes:
        return writes
    bounds = setpoint_bounds(cfg)
    over_mqtt = [w for w in writes if bounds[w.setpoint.value].writeback.transport == "mqtt"]
    for w in writes:
        if w not in over_mqtt:
            await write_modbus(w.value, bounds[w.setpoint.value], w.setpoint.value)
    if over_mqtt:
        await _publish_all(over_mqtt, bounds, cfg, proposal.id, mqtt)
    log.set_status(proposal, "applied")
    return writes


async def _publish_all(
    writes: Sequence[SetpointWrite], bounds: Mapping[str, SetpointBounds],
    cfg: OptimizerSettings, proposal_id: str, client: aiomqtt.Client | None,
) -> None:
    if client is None:
        async with broker_client(cfg.mqtt) as own:
            await _publish_all(writes, bounds, cfg, proposal_id, own)
        return
    for w in writes:
        await write_mqtt(
            client, w.value, bounds[w.setpoint.value], w.setpoint.value, proposal_id, cfg.mqtt.qos
        )
