"""Write-back of accepted proposals to devices, with operator overrides that always win.

Off by default: only setpoints whose ``[optimizer.setpoints.<name>.writeback]`` has
``enabled = true`` are written. Values are clamped into the hard bounds when the write is
planned (:func:`plan_writes`) and checked again by each adapter, which refuses (raises
:class:`WritebackRefused`) rather than send an out-of-bounds value.

A setpoint type with several instances (one supply air per air handler, proposal keys
``<name>@<meter id>``) writes each instance's own value to its own target
(``writeback.instances.<meter id>``); with the type's one target it writes the instances' mean
and logs so.

Operator overrides live in the store (table ``optimizer_overrides``, keyed by setpoint name or
instance key): a setpoint with an override value is proposed and written at that value; one
held without a value (``hold``) is left alone by the optimizer. An override of a type applies
to all its instances; an instance's own override wins over its type's.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiomqtt
from dcpue.config import SetpointName
from dcpue.config.optimizer import ModbusTarget, OptimizerSettings, SetpointBounds, Target
from dcpue.core.store import Store
from dcpue.optimizer.frames import SETPOINTS
from dcpue.optimizer.proposals import Proposal, ProposalLog
from dcpue.optimizer.propose import broker_client, setpoint_bounds
from pymodbus.client import AsyncModbusTcpClient

log = logging.getLogger(__name__)


class WritebackRefused(ValueError):
    """A write that would leave the hard bounds (or cannot be encoded) was not sent."""


class WritebackFailed(RuntimeError):
    """The device or broker did not take the write."""


def split_key(key: str) -> tuple[SetpointName, str | None]:
    """``"supply_air_temperature@ahu-1"`` -> (type, ``"ahu-1"``); a plain name -> (type, None).
    ValueError for an unknown setpoint name or an empty meter id."""
    name, at, meter = key.partition("@")
    if at and not meter:
        raise ValueError(f"setpoint {key!r}: no meter id after '@'")
    return SetpointName(name), meter or None


@dataclass(frozen=True, slots=True)
class Override:
    """An operator override: ``value`` to hold (None: hold whatever the device has), of a
    setpoint type or of one ``instance`` (its setpoint meter id)."""

    setpoint: SetpointName
    value: float | None
    set_ms: int
    note: str = ""
    instance: str | None = None

    @property
    def key(self) -> str:
        """The setpoint name, or ``<name>@<meter id>`` for an instance."""
        return self.setpoint.value if self.instance is None else f"{self.setpoint}@{self.instance}"


#: Per store, how many times its overrides were changed (every change goes through
#: :class:`Overrides` in the process that holds the store; a CLI command while the daemon
#: runs is forwarded into the daemon's process), so :meth:`Overrides.all` reads the table
#: only after a change instead of at every proposal.
_CHANGES: weakref.WeakKeyDictionary[Store, int] = weakref.WeakKeyDictionary()


class Overrides:
    """Persistent operator overrides in the store, keyed by setpoint name or instance key."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._read: tuple[int, dict[str, Override]] | None = None
        store.execute(
            "CREATE TABLE IF NOT EXISTS optimizer_overrides (setpoint VARCHAR PRIMARY KEY,"
            " value DOUBLE, set_ms BIGINT NOT NULL, note VARCHAR NOT NULL)"
        )

    def set(
        self, key: str, value: float | None, bounds: SetpointBounds, note: str = ""
    ) -> Override:
        """Hold ``key`` (a setpoint name or ``<name>@<meter id>``; at ``value`` if given); a
        value outside the type's hard bounds is refused."""
        name, instance = split_key(key)
        if value is not None and not bounds.min <= value <= bounds.max:
            raise WritebackRefused(
                f"override {key}={value:g} outside hard bounds [{bounds.min:g}, {bounds.max:g}]"
            )
        override = Override(name, value, int(time.time() * 1000), note, instance)
        self.store.execute(
            "INSERT OR REPLACE INTO optimizer_overrides VALUES (?, ?, ?, ?)",
            [override.key, value, override.set_ms, note],
        )
        self._changed()
        return override

    def clear(self, key: str) -> bool:
        """Remove an override; True if there was one."""
        had = key in self.all()
        self.store.execute("DELETE FROM optimizer_overrides WHERE setpoint = ?", [key])
        self._changed()
        return had

    def _changed(self) -> None:
        _CHANGES[self.store] = _CHANGES.get(self.store, 0) + 1

    def all(self) -> dict[str, Override]:
        """Overrides by key (a ``SetpointName`` looks up its type's override); the table is
        read again only after a change (:data:`_CHANGES`)."""
        changes = _CHANGES.get(self.store, 0)
        if self._read is None or self._read[0] != changes:
            rows = self.store.execute(
                "SELECT setpoint, value, set_ms, note FROM optimizer_overrides ORDER BY setpoint"
            ).fetchall()
            out = {}
            for key, value, set_ms, note in rows:
                name, instance = split_key(key)
                out[key] = Override(name, value, int(set_ms), note, instance)
            self._read = (changes, out)
        return dict(self._read[1])

    def fixed_values(
        self, current: Mapping[str, float], instances: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Setpoint or instance key -> the value the optimizer must hold (override value, else
        the current one). ``current``: per type (``PlantState.setpoints``); ``instances``: per
        frame column ``<column>@<meter id>`` (``PlantState.instances``). A type held without
        a value holds each instance at its own current value; an instance's override wins."""
        now = {f"{name.value}@{c.split('@', 1)[1]}": float(v)
               for name, column in SETPOINTS.items()
               for c, v in (instances or {}).items() if c.startswith(column + "@")}
        out: dict[str, float] = {}
        held = self.all().values()
        for o in sorted(held, key=lambda o: o.instance is not None):  # types, then instances
            out[o.key] = float(o.value if o.value is not None
                               else now.get(o.key, current[o.setpoint]))
            if o.instance is None and o.value is None:
                out |= {k: v for k, v in now.items() if k.startswith(f"{o.setpoint}@")}
        return out


@dataclass(frozen=True, slots=True)
class SetpointWrite:
    """One planned write: the value in the setpoint's unit, why it is that value
    (``"proposal"`` or ``"override"``), the ``instance`` it is for (its setpoint meter id;
    None: the type's one target) and the resolved ``target``."""

    setpoint: SetpointName
    value: float
    source: str
    instance: str | None = None
    target: Target | None = None

    @property
    def key(self) -> str:
        """The setpoint name, or ``<name>@<meter id>`` for an instance."""
        return self.setpoint.value if self.instance is None else f"{self.setpoint}@{self.instance}"


def _wanted(
    proposal: Proposal, overrides: Mapping[str, Override], name: SetpointName, key: str
) -> tuple[float | None, str]:
    """The value ``key`` should take and why: its own override, its type's, else the proposal
    (an instance the proposal lacks takes its type's value); None: held, not written."""
    override = overrides.get(key) or overrides.get(name.value)
    if override is None:
        value = proposal.proposed.get(key, proposal.proposed.get(name.value))
        # a lever the proposal leaves out (not metered) is not written
        return (None if value is None else float(value)), "proposal"
    return override.value, "override"


def plan_writes(
    proposal: Proposal, cfg: OptimizerSettings, overrides: Mapping[str, Override]
) -> list[SetpointWrite]:
    """Writes for the setpoints with write-back enabled, each clamped into its type's hard
    bounds: the proposed value or the override's (an override without value skips it). A type
    with per-instance targets gets one write per target with that instance's value; a type
    with one target and instance proposals gets their mean (held instances at their current
    value; source ``override`` if any value is an override), logged."""
    writes = []
    for key, b in setpoint_bounds(cfg).items():
        if not b.writeback.enabled:
            continue
        name = SetpointName(key)
        targets = b.writeback.targets()
        if None not in targets:
            planned = [(meter, *_wanted(proposal, overrides, name, f"{key}@{meter}"))
                       for meter in targets]
        else:
            planned = [(None, *_shared(proposal, overrides, name))]
        for meter, value, source in planned:
            if value is None:
                continue
            value = min(max(float(value), b.min), b.max)
            writes.append(SetpointWrite(name, round(value) if b.integer else value, source,
                                        meter, targets[meter]))
    return writes


def _shared(
    proposal: Proposal, overrides: Mapping[str, Override], name: SetpointName
) -> tuple[float | None, str]:
    """The value of a type's one target: its own, or the mean over the proposal's instances."""
    keys = [k for k in proposal.proposed if k.startswith(f"{name.value}@")]
    if not keys:
        return _wanted(proposal, overrides, name, name.value)
    wanted = [_wanted(proposal, overrides, name, k) for k in keys]
    if all(v is None for v, _ in wanted):
        return None, "override"
    values = [proposal.current.get(k, proposal.current[name.value]) if v is None else v
              for k, (v, _) in zip(keys, wanted, strict=True)]
    mean = sum(values) / len(values)
    log.warning("%s: %d instances (%s) and one write-back target: writing their mean %g "
                "(declare writeback.instances to write each its own)", name.value, len(keys),
                ", ".join(f"{k.split('@', 1)[1]} {v:g}" for k, v in zip(keys, values,
                                                                       strict=True)), mean)
    return mean, "override" if any(s == "override" for _, s in wanted) else "proposal"


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


async def write_modbus(write: SetpointWrite, bounds: SetpointBounds) -> None:
    """Write one setpoint to its target's holding register over Modbus TCP (function code 16)."""
    check_bounds(write.value, bounds, write.key)
    target = write.target.modbus if write.target is not None else None
    if target is None:
        raise WritebackRefused(f"{write.key}: no modbus register configured")
    word = register_value(write.value, target)
    client = AsyncModbusTcpClient(target.host, port=target.port, timeout=3, retries=1)
    try:
        if not await client.connect():
            raise WritebackFailed(f"{write.key}: cannot connect to {target.host}:{target.port}")
        response = await client.write_registers(target.address, [word], device_id=target.device_id)
        if response.isError():
            raise WritebackFailed(f"{write.key}: device answered {response}")
    finally:
        client.close()


async def write_mqtt(
    client: aiomqtt.Client, write: SetpointWrite, bounds: SetpointBounds, proposal_id: str,
    qos: int = 1,
) -> None:
    """Publish a JSON command ``{"setpoint", "value", "proposal"}`` (plus ``"instance"``, its
    setpoint meter id, for an instance) on the target's command topic."""
    check_bounds(write.value, bounds, write.key)
    if write.target is None or not write.target.topic:
        raise WritebackRefused(f"{write.key}: no command topic configured")
    command: dict[str, object] = {"setpoint": write.setpoint.value, "value": write.value,
                                  "proposal": proposal_id}
    if write.instance is not None:
        command["instance"] = write.instance
    await client.publish(write.target.topic, json.dumps(command), qos=qos)


async def apply_proposal(
    store: Store, cfg: OptimizerSettings, proposal: Proposal, *,
    mqtt: aiomqtt.Client | None = None,
) -> list[SetpointWrite]:
    """Accept ``proposal`` and write its enabled setpoints; overrides win. The proposal's
    status becomes ``applied`` once every write went through (``accepted`` with no write-back
    enabled). MQTT writes use ``mqtt`` or a connection to ``[optimizer.mqtt]``."""
    proposals = ProposalLog(store)
    proposal = proposals.set_status(proposal, "accepted")
    writes = plan_writes(proposal, cfg, Overrides(store).all())
    if not writes:
        return writes
    bounds = setpoint_bounds(cfg)
    over_mqtt = [w for w in writes if w.target is not None and w.target.transport == "mqtt"]
    for w in writes:
        if w not in over_mqtt:
            await write_modbus(w, bounds[w.setpoint.value])
    if over_mqtt:
        await _publish_all(over_mqtt, bounds, cfg, proposal.id, mqtt)
    proposals.set_status(proposal, "applied")
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
        await write_mqtt(client, w, bounds[w.setpoint.value], proposal_id, cfg.mqtt.qos)
