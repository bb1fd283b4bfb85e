"""Normalisation: raw values from any adapter -> canonical, validated :class:`Reading`.

Every adapter (MQTT, Modbus, twin gateway, ``dcpue import``) funnels through :func:`normalise`;
a refused value raises :class:`Rejected` whose ``reason`` is the dead-letter code counted per
reason. Checks, in order: known meter, a number (JSON bool and numeric strings are refused),
finite, unit of the meter's quantity, counter not negative, value within the quantity's
plausible range (and the meter's ``max_power_kw``), timestamp within the validation window
around the receive time. An accepted reading is always storable: ``ts_ms`` fits int64
milliseconds and ``value`` is a finite float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import repeat
from zoneinfo import ZoneInfo

import numpy as np
from dcpue.config import MeterKind, Site
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.units import SANITY_RANGES, UnitError, canonical_unit, conversion, to_canonical

#: Epoch values below this are seconds, at or above it milliseconds (year 2286 in seconds).
_MS_THRESHOLD = 10_000_000_000
#: Numeric epochs at or above this many ms (year 318857) are refused before any arithmetic.
_MS_LIMIT = 10**16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
#: (meter, quantity) keys a receive clock remembers; bounded although keys are known meters.
_CLOCK_KEYS_MAX = 100_000
#: Sources whose last offset-less timestamp is remembered (bounds memory under topic floods).
_LOCAL_SOURCES_MAX = 10_000
DAY_MS = 86_400_000


class Rejected(ValueError):
    """A value that cannot become a reading; ``reason`` is a short dead-letter code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """What normalisation needs to know about one meter (hot-path friendly).

    ``low``/``high`` bound the canonical value: the quantity's plausible range, narrowed to
    ``±max_power_kw`` for a power meter with a ceiling.
    """

    quantity: str
    unit: str
    canonical: str
    counter: bool
    max_kw: float | None
    low: float
    high: float


class ReceiveClock:
    """Distinct receive-time stamps per (meter, quantity): never the same millisecond twice.

    ``stamp`` returns ``received_ms``, or one millisecond after the last stamp given to the
    same key when that is not earlier, so N readings received in one millisecond get N
    consecutive timestamps (a sustained rate above 1,000 readings/s for one meter drifts
    ahead of the wall clock by the excess).
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def stamp(self, meter: str, quantity: str, received_ms: int) -> int:
        key = (meter, quantity)
        last = self._last.get(key)
        ts = received_ms if last is None or received_ms > last else last + 1
        if last is None and len(self._last) >= _CLOCK_KEYS_MAX:
            self._last.clear()
        self._last[key] = ts
        return ts


class MeterIndex:
    """Per-site lookup from meter id to :class:`MeterSpec`, plus the validation window.

    Attributes:
        zone: the site's time zone, the default for offset-less device timestamps.
        max_age_ms, max_skew_ms: a timestamp must lie in
            ``[now - max_age_ms, now + max_skew_ms]`` (``now``: receive time).
        clock: receive-time stamps, shared by every decoder built on this index.
    """

    def __init__(self, site: Site) -> None:
        self.site_id = site.id
        self.zone = ZoneInfo(site.timezone)
        self.clock = ReceiveClock()
        rules = site.collector.validation
        self.max_age_ms = round(rules.max_age_days * DAY_MS)
        self.max_skew_ms = round(rules.max_future_skew_s * 1000)
        ranges = SANITY_RANGES | {q: tuple(r) for q, r in rules.ranges.items()}
        self.specs: dict[str, MeterSpec] = {}
        for m in site.meters:
            low, high = ranges[m.quantity]
            if m.max_power_kw is not None and m.quantity == "power":
                low, high = max(low, -m.max_power_kw), min(high, m.max_power_kw)
            self.specs[m.id] = MeterSpec(
                m.quantity, m.unit, canonical_unit(m.quantity), m.kind is MeterKind.COUNTER,
                m.max_power_kw, low, high,
            )

    @cached_property
    def columns(self) -> _SpecColumns:
        """The specs as arrays indexed by meter code (position in :attr:`specs`)."""
        return _SpecColumns(self.specs)


class _SpecColumns:
    """Per-meter arrays for :func:`normalise_columns`; ``ids`` are the interned meter ids."""

    def __init__(self, specs: dict[str, MeterSpec]) -> None:
        self.code = {meter: k for k, meter in enumerate(specs)}
        self.ids = np.array(list(specs), dtype=object)
        rows = list(specs.values())
        self.quantity = np.array([s.quantity for s in rows], dtype=object)
        self.unit = np.array([s.unit for s in rows], dtype=object)
        self.canonical = np.array([s.canonical for s in rows], dtype=object)
        self.counter = np.array([s.counter for s in rows], dtype=bool)
        self.low = np.array([s.low for s in rows], dtype=np.float64)
        self.high = np.array([s.high for s in rows], dtype=np.float64)
        self.quantities = sorted({s.quantity for s in rows})
        self.qcode = np.array([self.quantities.index(s.quantity) for s in rows], dtype=np.int64)
        self._conversions: dict[tuple[str, object], tuple[float, float, float] | None] = {}
        self._tables: dict[tuple[str, ...], np.ndarray] = {}

    def conversion(self, quantity: str, symbol: object) -> tuple[float, float, float] | None:
        """Cached :func:`dcpue.core.units.conversion`; None when the unit does not fit."""
        key = (quantity, symbol)
        if key not in self._conversions:
            try:
                self._conversions[key] = (
                    conversion(symbol, quantity) if isinstance(symbol, str) else None
                )
            except UnitError:
                self._conversions[key] = None
        return self._conversions[key]

    def table(self, symbols: tuple[str, ...]) -> np.ndarray:
        """(multiplier, divisor, offset, fits) by (quantity code, position in ``symbols``).

        The last column (index -1: no unit given) is a placeholder. Cached per unit set.
        """
        found = self._tables.get(symbols)
        if found is None:
            found = np.ones((4, len(self.quantities), len(symbols) + 1))
            for q, quantity in enumerate(self.quantities):
                for k, symbol in enumerate(symbols):
                    conv = self.conversion(quantity, symbol)
                    found[:, q, k] = (1.0, 1.0, 0.0, 0.0) if conv is None else (*conv, 1.0)
            if len(self._tables) >= _CLOCK_KEYS_MAX // 100:
                self._tables.clear()
            self._tables[symbols] = found
        return found

    @cached_property
    def default(self) -> np.ndarray:
        """(multiplier, divisor, offset) rows by meter code for each meter's configured unit."""
        table = np.array([conversion(u, q) for u, q in zip(self.unit, self.quantity, strict=True)])
        return table.T if len(table) else np.empty((3, 0))


class LocalTimes:
    """Places offset-less device times of one zone in UTC.

    A wall time inside a DST gap (spring forward, e.g. 02:30 on 2024-03-31 in Europe/Berlin)
    never happened there: it is refused (``nonexistent_local_time``). A wall time inside a
    fold (fall back, 02:30 on 2024-10-27 happens twice) takes its first instant (PEP 495
    ``fold=0``, daylight time) unless that instant is earlier than the last offset-less time
    seen from the same source, then its second: a device reporting in order through the fold
    is stored in order. The memory per source is lost on restart (a replay of the second pass
    after a restart lands on the first instant).
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._last: dict[str, int] = {}

    def to_ms(self, wall: datetime, source: str) -> int:
        """Naive wall time -> UTC epoch ms (raises :class:`Rejected`)."""
        try:
            first = wall.replace(tzinfo=self.zone, fold=0)
            second = wall.replace(tzinfo=self.zone, fold=1)
            ms = (first - _EPOCH) // _MS
            if first.utcoffset() != second.utcoffset():
                back = first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None)
                if back != wall:
                    raise Rejected(
                        "nonexistent_local_time",
                        f"{wall.isoformat()} does not exist in {self.zone.key} (DST gap)",
                    )
                last = self._last.get(source)
                if last is not None and ms < last:
                    ms = (second - _EPOCH) // _MS
        except OverflowError:
            raise Rejected("bad_timestamp", f"{wall.isoformat()} is out of range") from None
        if len(self._last) >= _LOCAL_SOURCES_MAX and source not in self._last:
            self._last.clear()
        self._last[source] = max(ms, self._last.get(source, ms))
        return ms


def parse_timestamp(raw: object, local: LocalTimes | None = None, source: str = "") -> int:
    """Device time -> UTC epoch ms: epoch seconds or ms (number), or ISO 8601.

    An ISO time without offset is a wall time of ``local`` (refused when None). Never raises
    anything but :class:`Rejected`, whatever ``raw`` is.
    """
    kind = type(raw)
    if kind is int:
        if _MS_THRESHOLD <= raw < _MS_LIMIT:  # fast path: integer epoch ms
            return raw
        if 0 < raw < _MS_THRESHOLD:
            return raw * 1000
    elif kind is float:
        if _MS_THRESHOLD <= raw < _MS_LIMIT:
            return round(raw)
        if 0 < raw < _MS_THRESHOLD:
            return round(raw * 1000)
    elif kind is str:
        return _parse_iso(raw, local, source)
    else:
        raise Rejected("bad_timestamp", f"timestamp of type {kind.__name__}")
    shown = f"{raw:.6g}" if kind is float else (f"{raw}" if -1e15 < raw < 1e15 else "huge int")
    raise Rejected("bad_timestamp", f"timestamp {shown} is not a positive epoch before year 318857")


def _parse_iso(raw: str, local: LocalTimes | None, source: str) -> int:
    try:
        moment = datetime.fromisoformat(raw[:64].replace("Z", "+00:00"))
        if len(raw) > 64:
            raise ValueError
    except ValueError:
        raise Rejected("bad_timestamp", f"unparseable timestamp {raw[:64]!r}") from None
    if moment.tzinfo is None:
        if local is None:
            raise Rejected("bad_timestamp", f"timestamp {raw!r} has no UTC offset")
        return local.to_ms(moment, source)
    return (moment - _EPOCH) // _MS  # exact, and no overflow at year 1 or 9999


def normalise(
    index: MeterIndex,
    meter: object,
    value: object,
    unit: object,
    ts_ms: int,
    now_ms: int | None = None,
) -> Reading:
    """Validate one value and convert it to its meter's canonical unit.

    Args:
        index: the site's meter index.
        meter: meter id as received.
        value: the number as received (int/float; numeric strings are refused as wrong type).
        unit: unit symbol as received, or None for the meter's configured unit.
        ts_ms: UTC epoch milliseconds (device time if given, else receive time).
        now_ms: receive time, UTC epoch ms (default ``ts_ms``): the centre of the window.

    Raises:
        Rejected: ``unknown_meter``, ``bad_type``, ``nan``, ``bad_unit``, ``negative_counter``,
        ``above_ceiling`` (``max_power_kw``), ``out_of_range`` (plausible range),
        ``future_timestamp`` or ``stale_timestamp``.
    """
    spec = index.specs.get(meter) if isinstance(meter, str) else None
    if spec is None:
        raise Rejected("unknown_meter", f"meter {_show(meter)} is not in site {index.site_id!r}")
    kind = type(value)  # exact-type checks first: this runs once per reading
    if kind is not float and kind is not int and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise Rejected("bad_type", f"value {_show(value)} for {meter} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise Rejected("out_of_range", f"integer value for {meter} exceeds float64") from None
    if not math.isfinite(number):
        raise Rejected("nan", f"value {value!r} for {meter} is not finite")
    symbol = spec.unit if unit is None else unit
    if not isinstance(symbol, str):
        raise Rejected("bad_unit", f"unit {_show(unit)} for {meter} is not a string")
    if symbol != spec.canonical:
        try:
            number = to_canonical(number, symbol, spec.quantity)
        except UnitError as exc:
            raise Rejected("bad_unit", f"{meter}: {_clip(str(exc))}") from None
    if spec.counter and number < 0:
        raise Rejected("negative_counter", f"counter {meter} reads {number} {spec.canonical}")
    if not spec.low <= number <= spec.high:
        if spec.max_kw is not None and spec.quantity == "power" and abs(number) > spec.max_kw:
            raise Rejected("above_ceiling", f"{meter} reads {number} kW > ceiling {spec.max_kw} kW")
        raise Rejected(
            "out_of_range",
            f"{meter} reads {number} {spec.canonical}, outside {spec.low}..{spec.high}",
        )
    now = ts_ms if now_ms is None else now_ms
    if ts_ms > now + index.max_skew_ms:
        raise Rejected(
            "future_timestamp",
            f"{meter} at {_iso(ts_ms)} is more than {index.max_skew_ms / 1000:g} s after receipt "
            f"({_iso(now)})",
        )
    if ts_ms < now - index.max_age_ms:
        raise Rejected(
            "stale_timestamp",
            f"{meter} at {_iso(ts_ms)} is more than {index.max_age_ms / DAY_MS:g} days before "
            f"receipt ({_iso(now)})",
        )
    return Reading(ts_ms, meter, spec.quantity, number, spec.canonical)


def normalise_columns(
    index: MeterIndex,
    meter: np.ndarray,
    value: np.ndarray,
    unit: np.ndarray | None,
    ts_ms: np.ndarray,
    now_ms: int,
) -> tuple[ReadingColumns, list[tuple[int, Rejected]]]:
    """:func:`normalise` over columns: the readings that pass, and ``(row, Rejected)`` for the rest.

    Rows every vectorised check passes are converted at once (NumPy, meter ids interned to
    the index's own strings); a row failing any check is handed to :func:`normalise` itself,
    so reasons, details and every edge case come from the one scalar rule.

    Args:
        meter: object array of meter ids as received.
        value: float64 values as received.
        unit: object array of unit symbols (None or "" for the meter's unit), or None.
        ts_ms: int64 UTC epoch ms.
        now_ms: receive time, the centre of the validation window.
    """
    cols = index.columns
    code = np.fromiter(map(cols.code.get, meter, repeat(-1)), np.int64, len(meter))
    known = code >= 0
    safe = np.where(known, code, 0)
    value = np.asarray(value, dtype=np.float64)
    multiplier, divisor, offset = cols.default[:, safe]
    unit_ok = known
    if unit is not None:
        given = sorted(str(u) for u in set(unit) if isinstance(u, str) and u != "")
        if given:
            symbols = {u: k for k, u in enumerate(given)}
            ucode = np.fromiter(map(symbols.get, unit, repeat(-1)), np.int64, len(unit))
            picked = cols.table(tuple(given))[:, cols.qcode[safe], ucode]
            use = ucode >= 0
            multiplier = np.where(use, picked[0], multiplier)
            divisor = np.where(use, picked[1], divisor)
            offset = np.where(use, picked[2], offset)
            unit_ok = known & (~use | (picked[3] == 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        number = value * multiplier / divisor + offset
        ok = (
            unit_ok & np.isfinite(value) & np.isfinite(number)
            & ~(cols.counter[safe] & (number < 0))
            & (cols.low[safe] <= number) & (number <= cols.high[safe])
            & (ts_ms <= now_ms + index.max_skew_ms) & (ts_ms >= now_ms - index.max_age_ms)
        )
    good = np.flatnonzero(ok)
    accepted = ReadingColumns(
        np.asarray(ts_ms, dtype=np.int64)[good], cols.ids[code[good]],
        cols.quantity[code[good]], number[good], cols.canonical[code[good]],
    )
    rejected: list[tuple[int, Rejected]] = []
    extra: list[Reading] = []
    for row in np.flatnonzero(~ok).tolist():
        symbol = None if unit is None else unit[row]
        try:
            extra.append(normalise(
                index, meter[row], float(value[row]),
                None if symbol is None or symbol == "" or symbol != symbol else symbol,
                int(ts_ms[row]), now_ms,
            ))
        except Rejected as exc:
            rejected.append((row, exc))
    if extra:  # the scalar rule accepted what the vectorised checks doubted
        accepted = ReadingColumns.concat([accepted, ReadingColumns.from_readings(extra)])
    return accepted, rejected


def _iso(ts_ms: int) -> str:
    try:
        return (_EPOCH + ts_ms * _MS).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return f"{ts_ms} ms"


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _show(value: object) -> str:
    """A bounded repr for dead-letter details (a 400-digit int or a 1 MB string stays short)."""
    if type(value) is int and not -10**30 < value < 10**30:
        return "huge int"
    return _clip(repr(value))
