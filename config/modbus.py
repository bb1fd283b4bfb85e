"""Modbus TCP polling settings (owned by the Modbus source in dcpue.collector).

TOML shape (every key has a default except a device's ``name`` and a point's ``meter`` and
``address``)::

    [collector.modbus]
    backoff_initial_s = 1.0      # first retry delay after a failed poll, s
    backoff_max_s = 300.0        # cap of the doubling retry delay, s

    [[collector.modbus.devices]]
    name = "pm-1"
    host = "10.0.0.7"
    port = 502
    unit_id = 1
    timeout_s = 2.0

    [[collector.modbus.devices.groups]]
    name = "energy"
    interval_s = 60
    points = [
        { meter = "grid-main", address = 0, type = "float32", word_order = "little" },
        { meter = "ups-out", table = "input", address = 40, type = "uint32",
          scale_factor_address = 44 },
    ]
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from dcpue.config.base import Section
from pydantic import Field, model_validator

RegisterTable = Literal["holding", "input"]
RegisterType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
ByteOrder = Literal["big", "little"]

#: Registers (16-bit words) occupied by each register type.
REGISTER_WIDTH: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float32": 2, "float64": 4,
}
#: Registers one read request (function 3 or 4) may return: Modbus Application Protocol v1.1b3, 6.3/6.4.
MAX_READ_REGISTERS = 125


def _repeated(names: Iterable[str]) -> list[str]:
    """Names that occur more than once, sorted."""
    counts = Counter(names)
    return sorted(n for n, k in counts.items() if k > 1)


class ModbusPoint(Section):
    """One value on a device, mapped to a site meter.

    The reading is ``raw × 10^sf × scale + offset`` in ``unit`` (the meter's configured unit when
    absent), where ``sf`` is the signed int16 read at ``scale_factor_address`` in the same table
    (SunSpec scale factor) or 0 when no such register is given. ``word_order`` says which register
    holds the most significant word of a multi-register value (big: the first), ``byte_order``
    which byte of each register is the more significant (big: the first, as Modbus transmits).
    With ``not_implemented = "sunspec"`` (default) SunSpec's "not implemented" values (0x8000
    int16, 0xFFFF uint16, 0x80000000/0xFFFFFFFF 32-bit, the 64-bit equivalents, NaN floats, and
    0 when ``accumulator`` is set) become dead letters ``not_implemented``, never readings.
    """

    meter: str
    table: RegisterTable = "holding"
    address: int = Field(ge=0, le=65535)
    type: RegisterType = "uint16"
    word_order: ByteOrder = "big"
    byte_order: ByteOrder = "big"
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)
    scale_factor_address: int | None = Field(default=None, ge=0, le=65535)
    unit: str | None = None
    not_implemented: Literal["sunspec", "none"] = "sunspec"
    #: A SunSpec accumulator (acc16/acc32/acc64): 0 means "not implemented".
    accumulator: bool = False

    @property
    def width(self) -> int:
        """Registers this value occupies."""
        return REGISTER_WIDTH[self.type]

    @model_validator(mode="after")
    def _fits(self) -> ModbusPoint:
        if self.address + self.width > 65536:
            raise ValueError(f"{self.type} at address {self.address} runs past register 65535")
        return self


class ModbusPollGroup(Section):
    """Points read together every ``interval_s`` seconds."""

    name: str = "default"
    interval_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    points: list[ModbusPoint] = Field(default_factory=list)


class ModbusDevice(Section):
    """A Modbus TCP server (meter, PLC or gateway) and what to read from it.

    ``max_registers`` caps one read request (some gateways accept fewer than 125);
    ``max_gap`` is how many unused registers a read may span to join two points into one request
    (0 joins only adjacent points; raise it for devices that answer reads over unmapped registers).
    ``timeout_s`` bounds each connect and each request; ``retries`` re-sends a request that timed out.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=64)
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    retries: int = Field(default=0, ge=0, le=5)
    enabled: bool = True
    max_registers: int = Field(default=MAX_READ_REGISTERS, ge=4, le=MAX_READ_REGISTERS)
    max_gap: int = Field(default=8, ge=0, le=MAX_READ_REGISTERS - 1)
    groups: list[ModbusPollGroup] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_groups(self) -> ModbusDevice:
        repeated = _repeated(g.name for g in self.groups)
        if repeated:
            raise ValueError(f"device {self.name!r}: duplicate poll group {', '.join(repeated)}")
        return self

    @property
    def origin(self) -> str:
        """How dead letters and logs name this device: ``name@host:port/unit``."""
        return f"{self.name}@{self.host}:{self.port}/{self.unit_id}"


class ModbusSettings(Section):
    """Modbus TCP devices, poll groups and register maps; polled only when a device is enabled.

    A device that fails a poll is retried after ``backoff_initial_s``, doubling per consecutive
    failure up to ``backoff_max_s`` (seconds).
    """

    backoff_initial_s: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    backoff_max_s: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    devices: list[ModbusDevice] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ModbusSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        repeated = _repeated(d.name for d in self.devices)
        if repeated:
            raise ValueError(f"duplicate Modbus device name {', '.join(repeated)}")
        return self

    @property
    def active_devices(self) -> list[ModbusDevice]:
        """Enabled devices with at least one point: the ones a poller reads."""
        return [d for d in self.devices if d.enabled and any(g.points for g in d.groups)]

    def to_toml(self) -> str:
        """These settings as a ``[collector.modbus]`` block for a site file (defaults omitted).

        ``tomllib`` parses the text back into equal settings; points are one inline table a line.
        """
        lines = ["[collector.modbus]", *_pairs(self, exclude={"devices"})]
        for device in self.devices:
            lines += ["", "[[collector.modbus.devices]]", *_pairs(device, exclude={"groups"})]
            for group in device.groups:
                lines += ["", "[[collector.modbus.devices.groups]]"]
                lines += _pairs(group, exclude={"points"})
                lines.append("points = [")
                lines += [f"    {{ {', '.join(_pairs(p))} }}," for p in group.points]
                lines.append("]")
        return "\n".join(lines) + "\n"


def _pairs(model: Section, exclude: set[str] | None = None) -> list[str]:
    """``key = value`` TOML lines of a model's non-default fields."""
    return [
        f"{key} = {_toml_value(value)}"
        for key, value in model.model_dump(exclude_defaults=True, exclude=exclude).items()
    ]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    return repr(value)
