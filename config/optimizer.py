"""Cooling optimizer settings (owned by dcpue.optimizer).

Every field has a default, so a site file without an ``[optimizer]`` block is valid: proposals
are computed and stored, write-back is off for every setpoint.

Units: temperatures in degC, fan speed in %, pump frequency in Hz, running units as a count,
time steps in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from dcpue.config.base import Section
from dcpue.config.collector import TlsSettings
from dcpue.config.topology import Meter, MeterRole
from pydantic import Field, model_validator


class ModbusTarget(Section):
    """A holding register (``address``) that takes a setpoint: ``word = round(setpoint * scale)``."""

    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    device_id: int = Field(default=1, ge=0, le=255)
    address: int = Field(default=0, ge=0, le=65535)
    scale: float = Field(default=1.0, gt=0)
    signed: bool = False


class Target(Section):
    """One write-back target: a JSON command on ``topic`` (``transport = "mqtt"``) or one
    holding register ``modbus`` (``transport = "modbus"``). An instance's ``transport`` left
    unset is its setpoint type's."""

    transport: Literal["mqtt", "modbus"] | None = None
    topic: str = ""
    modbus: ModbusTarget | None = None

    def problem(self) -> str | None:
        """Why this target cannot take a write (None: it can)."""
        if self.transport == "mqtt" and not self.topic:
            return "write-back over mqtt needs a command topic"
        if self.transport == "mqtt" and ("+" in self.topic or "#" in self.topic):
            return f"command topic {self.topic!r} has an MQTT wildcard"
        if self.transport == "modbus" and self.modbus is None:
            return "write-back over modbus needs a [modbus] register block"
        return None


class Writeback(Section):
    """How an accepted proposal reaches the device; off unless ``enabled = true``.

    ``transport = "mqtt"`` publishes a JSON command on ``topic`` (broker: ``[optimizer.mqtt]``);
    ``transport = "modbus"`` writes one holding register described by ``modbus``. A setpoint
    type with one setpoint meter per instance (one supply air per air handler) gives each
    instance its own target under ``instances.<setpoint meter id>``; the type-level ``topic``
    and ``modbus`` are then not used. Without ``instances`` the type's one target takes the
    instances' mean (logged, and a ``check-config`` warning).
    """

    enabled: bool = False
    transport: Literal["mqtt", "modbus"] = "mqtt"
    topic: str = ""
    modbus: ModbusTarget | None = None
    instances: dict[str, Target] = Field(default_factory=dict)

    def targets(self) -> dict[str | None, Target]:
        """Resolved targets: ``{None: the type's one target}`` without ``instances``, else one
        per instance meter id (each ``transport`` defaulted to the type's)."""
        if not self.instances:
            return {None: Target(transport=self.transport, topic=self.topic, modbus=self.modbus)}
        return {meter: t.model_copy(update={"transport": t.transport or self.transport})
                for meter, t in self.instances.items()}

    @model_validator(mode="after")
    def _target(self) -> Writeback:
        if self.instances and (self.topic or self.modbus is not None):
            raise ValueError("with per-instance targets (instances) the type-level topic/modbus "
                             "would never be written: move it under instances.<meter id>")
        for meter, target in self.targets().items() if self.enabled else ():
            why = target.problem()
            if why is not None:
                raise ValueError(why if meter is None else f"instances.{meter}: {why}")
        return self


class SetpointBounds(Section):
    """Hard bounds of one setpoint and the largest change per control step (``max_step``).

    ``integer`` setpoints (running units) only take whole values. A lever the plant lacks or
    the operator does not hand to the optimizer is declared ``enabled = false`` (held where it
    is) or ``min = max`` (held at that value); it is never searched.
    """

    min: float
    max: float
    max_step: float = Field(gt=0)
    integer: bool = False
    enabled: bool = True
    writeback: Writeback = Writeback()

    @property
    def held(self) -> bool:
        """True when the optimizer may not move this setpoint."""
        return not self.enabled or self.min == self.max

    @model_validator(mode="after")
    def _ordered(self) -> SetpointBounds:
        if self.min > self.max:
            raise ValueError(f"min {self.min} must not exceed max {self.max}")
        return self


class SetpointSettings(Section):
    """Bounds per setpoint, keyed like :class:`dcpue.config.topology.SetpointName`."""

    supply_air_temperature: SetpointBounds = SetpointBounds(min=18.0, max=27.0, max_step=1.0)
    chilled_water_temperature: SetpointBounds = SetpointBounds(min=7.0, max=20.0, max_step=1.0)
    crah_fan_speed: SetpointBounds = SetpointBounds(min=30.0, max=100.0, max_step=10.0)
    pump_frequency: SetpointBounds = SetpointBounds(min=25.0, max=50.0, max_step=5.0)
    running_units: SetpointBounds = SetpointBounds(
        min=1.0, max=8.0, max_step=1.0, integer=True
    )

    @model_validator(mode="after")
    def _whole_units(self) -> SetpointSettings:
        if not self.running_units.integer:
            raise ValueError("running_units needs integer = true (units run or do not)")
        return self

    @model_validator(mode="after")
    def _distinct_targets(self) -> SetpointSettings:
        """Two write-back targets on one holding register or one command topic would
        overwrite each other's value: refused."""
        seen: dict[tuple[object, ...], str] = {}
        for where, target in self.targets():
            if target.transport == "modbus" and target.modbus is not None:
                m = target.modbus
                what: tuple[object, ...] = ("register", m.host, m.port, m.device_id, m.address)
                said = f"holding register {m.address} of device {m.device_id} at {m.host}:{m.port}"
            elif target.transport == "mqtt" and target.topic:
                what, said = ("topic", target.topic), f"command topic {target.topic!r}"
            else:
                continue
            if what in seen:
                raise ValueError(f"{seen[what]} and {where} write-back both use {said}")
            seen[what] = where
        return self

    def targets(self) -> list[tuple[str, Target]]:
        """(where, target) of every write-back target, enabled or not."""
        return [(name if meter is None else f"{name}.writeback.instances.{meter}", target)
                for name in type(self).model_fields
                for meter, target in getattr(self, name).writeback.targets().items()]


class MqttBroker(Section):
    """Broker for proposals and MQTT write-back commands.

    ``publish_proposals``: the daemon publishes every proposal (retained JSON) on
    ``proposal_topic``; off by default so a site without a broker logs no errors.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    proposal_topic: str = "dcpue/optimizer/proposal"
    publish_proposals: bool = False
    qos: int = Field(default=1, ge=0, le=2)
    username: str | None = None
    #: Name of the environment variable that holds the password (never the password itself).
    password_env: str | None = None
    #: TLS towards the broker; certificates and host name verified unless ``insecure``.
    tls: TlsSettings = TlsSettings()

    def password(self) -> str | None:
        """The password from ``password_env`` (None if unset)."""
        return os.environ.get(self.password_env) if self.password_env else None


class MvSettings(Section):
    """Measurement and verification (ASHRAE Guideline 14-2014) settings and acceptance gates.

    A saving is reported only when the baseline's CV(RMSE) is at most ``max_cvrmse_pct`` and
    its |NMBE| at most ``max_nmbe_pct`` (%), the baseline spans at least ``min_baseline_days``
    with at least ``min_baseline_coverage`` of its buckets usable, and the fractional savings
    uncertainty at ``confidence`` is below ``max_fsu_pct`` (Guideline 14: 50 % at 68 %; the
    default 90 % confidence is stricter). CV(RMSE) 20 % is Guideline 14's baseline-model limit
    for energy; an OLS baseline has no in-sample bias, so NMBE 0.5 % only catches defects.
    """

    step_s: int = Field(default=3600, ge=60)
    target: Literal["facility", "cooling"] = "facility"
    confidence: float = Field(default=0.90, gt=0, lt=1)
    max_cvrmse_pct: float = Field(default=20.0, gt=0)
    max_nmbe_pct: float = Field(default=0.5, gt=0)
    min_baseline_days: float = Field(default=14.0, gt=0)
    min_baseline_coverage: float = Field(default=0.9, gt=0, le=1)
    max_fsu_pct: float = Field(default=50.0, gt=0)


class OptimizerSettings(Section):
    """Setpoint bounds, limits and model settings.

    ``inlet_limit_c`` defaults to the ASHRAE TC 9.9 recommended maximum rack inlet (27 degC);
    proposals keep the predicted maximum inlet at or below ``inlet_limit_c - inlet_margin_c -
    inlet_sigmas * (model inlet RMSE)``. ``model_path`` is resolved against the store's folder
    when relative; unset, the model lives beside the store as ``<site id>-optimizer.joblib``.
    ``inlet_disagreement_c``: the least gap (degC) between predicted and measured maximum inlet
    at the current setpoints that makes the model untrusted (the bound is also 3 x its RMSE).
    """

    step_s: int = Field(default=900, ge=60)
    min_coverage: float = Field(default=0.8, gt=0, le=1)
    interval_s: int = Field(default=900, ge=60)
    inlet_limit_c: float = 27.0
    inlet_margin_c: float = Field(default=1.0, ge=0)
    inlet_sigmas: float = Field(default=2.0, ge=0)
    min_saving_pct: float = Field(default=0.1, ge=0)
    reach_sigmas: float = Field(default=1.0, ge=0)
    target: Literal["facility", "cooling"] = "facility"
    model_kind: Literal["gbr", "ridge"] = "gbr"
    cv_splits: int = Field(default=5, ge=2, le=20)
    trust_tolerance: float = Field(default=0.05, ge=0, le=1)
    #: The joint trust region's radius as a multiple of the training rows' largest distance
    #: to their k nearest others (docs/optimizer.md); 0: no joint region.
    joint_radius: float = Field(default=1.5, ge=0)
    inlet_disagreement_c: float = Field(default=1.0, gt=0)
    explore_hold_s: int = Field(default=1800, ge=60)
    model_path: Path | None = None
    setpoints: SetpointSettings = SetpointSettings()
    mqtt: MqttBroker = MqttBroker()
    mv: MvSettings = MvSettings()


def writeback_problems(
    setpoints: SetpointSettings, meters: Sequence[Meter]
) -> list[tuple[str, str, bool]]:
    """Findings ``(where, reason, warning)`` on write-back instances against the site's
    setpoint meters. Errors: an ``instances`` key that is not a setpoint meter of its type.
    Warnings (write-back enabled): a type metered by several instances with one target (it
    takes their mean), and instances metered but given no target (not written)."""
    ids: dict[str, list[str]] = {}
    for m in meters:
        if m.role is MeterRole.SETPOINT and m.setpoint is not None:
            ids.setdefault(m.setpoint.value, []).append(m.id)
    of = {mid: name for name, group in ids.items() for mid in group}
    out = []
    for name in type(setpoints).model_fields:
        wb: Writeback = getattr(setpoints, name).writeback
        where = f"optimizer.setpoints.{name}.writeback"
        metered = ids.get(name, [])
        for meter in wb.instances:
            if meter in metered:
                continue
            why = (f"meter {meter!r} is a {of[meter]} setpoint, not {name}" if meter in of
                   else f"no setpoint meter {meter!r}")
            known = ", ".join(metered) or "none"
            out.append((f"{where}.instances.{meter}",
                        f"{why} (setpoint meters of {name}: {known})", False))
        if not wb.enabled or len(metered) < 2:
            continue
        if not wb.instances:
            out.append((where, f"{name} has {len(metered)} instances ({', '.join(metered)}) "
                        "and one write-back target: it is written their mean; declare "
                        "instances.<meter id> to write each its own value", True))
            continue
        missing = [m for m in metered if m not in wb.instances]
        if missing:
            out.append((f"{where}.instances", f"no write-back target for {', '.join(missing)}: "
                        "their proposed values are not written", True))
    return out
