"""Normalisation: raw values from any adapter -> canonical, validated :class:`Reading`.

Every adapter (MQTT, Modbus, twin gateway) funnels through :func:`normalise`; a refused value
raises :class:`Rejected` whose ``reason`` is the dead-letter code counted per reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from dcpue.config import MeterKind, Site
from dcpue.core.readings import Reading
from dcpue.core.units import UnitError, canonical_unit, to_canonical

#: Epoch values below this are seconds, at or above it milliseconds (year 2286 in seconds).
_MS_THRESHOLD = 10_000_000_000


class Rejected(ValueError):
    """A value that cannot become a reading; ``reason`` is a short dead-letter code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """What normalisation needs to know about one meter (hot-path friendly)."""

    quantity: str
    unit: str
    canonical: str
    counter: bool
    max_kw: float | None


class MeterIndex:
    """Per-site lookup from meter id to :class:`MeterSpec`."""

    def __init__(self, site: Site) -> None:
        self.site_id = site.id
        self.specs = {
            m.id: MeterSpec(
                m.quantity,
                m.unit,
                canonical_unit(m.quantity),
                m.kind is MeterKind.COUNTER,
                m.max_power_kw,
            )
            for m in site.meters
        }


def parse_timestamp(raw: object) -> int:
    """Device time -> UTC epoch ms: epoch seconds or ms (number), or ISO 8601 with an offset.

    Naive ISO strings are rejected: a device clock without a zone cannot be placed in UTC.
    """
    if type(raw) is int and raw >= _MS_THRESHOLD:  # fast path: integer epoch ms
        return raw
    if isinstance(raw, bool):
        raise Rejected("bad_timestamp", f"boolean timestamp {raw!r}")
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or raw <= 0:
            raise Rejected("bad_timestamp", f"timestamp {raw!r} is not a positive epoch")
        return round(raw if raw >= _MS_THRESHOLD else raw * 1000)
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("bad_timestamp", f"unparseable timestamp {raw!r}") from None
        if moment.tzinfo is None:
            raise Rejected("bad_timestamp", f"timestamp {raw!r} has no UTC offset")
        return round(moment.astimezone(UTC).timestamp() * 1000)
    raise Rejected("bad_timestamp", f"timestamp of type {type(raw).__name__}")


def normalise(
    index: MeterIndex,
    meter: object,
    value: object,
    unit: object,
    ts_ms: int,
) -> Reading:
    """Validate one value and convert it to its meter's canonical unit.

    Args:
        index: the site's meter index.
        meter: meter id as received.
        value: the number as received (int/float; numeric strings are refused as wrong type).
        unit: unit symbol as received, or None for the meter's configured unit.
        ts_ms: UTC epoch milliseconds (device time if given, else receive time).

    Raises:
        Rejected: ``unknown_meter``, ``bad_type``, ``nan``, ``bad_unit``, ``negative_counter``
        or ``above_ceiling``.
    """
    spec = index.specs.get(meter) if isinstance(meter, str) else None
    if spec is None:
        raise Rejected("unknown_meter", f"meter {meter!r} is not in site {index.site_id!r}")
    kind = type(value)  # exact-type checks first: this runs once per reading
    if kind is not float and kind is not int and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise Rejected("bad_type", f"value {value!r} for {meter} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise Rejected("nan", f"value {value!r} for {meter} is not finite")
    symbol = spec.unit if unit is None else unit
    if not isinstance(symbol, str):
        raise Rejected("bad_unit", f"unit {unit!r} for {meter} is not a string")
    if symbol != spec.canonical:
        try:
            number = to_canonical(number, symbol, spec.quantity)
        except UnitError as exc:
            raise Rejected("bad_unit", f"{meter}: {exc}") from None
    if spec.counter and number < 0:
        raise Rejected("negative_counter", f"counter {meter} reads {number} {spec.canonical}")
    if spec.max_kw is not None and spec.quantity == "power" and abs(number) > spec.max_kw:
        raise Rejected("above_ceiling", f"{meter} reads {number} kW > ceiling {spec.max_kw} kW")
    return Reading(ts_ms, meter, spec.quantity, number, spec.canonical)
