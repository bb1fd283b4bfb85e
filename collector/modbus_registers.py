"""Pure Modbus register arithmetic: value decoding and encoding, scale factors, read planning.

No I/O here: the poller (:mod:`dcpue.collector.modbus`) and the twin's gateway
(:mod:`dcpue.collector.gateway_modbus`) call these with register words they moved themselves.

Register words are the 16-bit unsigned integers a read returns (function 3 or 4). A value of
``n`` words is assembled most significant word first when ``word_order`` is big (Modbus
Application Protocol v1.1b3 leaves multi-register layout to vendors; "word-swapped" devices use
little), and each word's bytes are taken high byte first when ``byte_order`` is big (as
transmitted, section 4.2 of the same document). Floats are IEEE 754 binary32/binary64.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dcpue.collector.normalise import Rejected
from dcpue.config.modbus import REGISTER_WIDTH, ModbusPoint

_STRUCT = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}
#: Valid SunSpec scale factors (SunSpec Information Model Specification: sunssf, -10..10);
#: 0x8000 (-32768) means "not implemented".
SCALE_FACTOR_RANGE = range(-10, 11)
#: SunSpec "not implemented" value of each integer type (SunSpec Information Model
#: Specification, point types): the most negative signed value, the all-ones unsigned value.
#: Floats use NaN (0x7FC00000 for float32); accumulators (acc16/32/64) use 0.
NOT_IMPLEMENTED: dict[str, int] = {
    "int16": -0x8000, "uint16": 0xFFFF, "int32": -0x8000_0000, "uint32": 0xFFFF_FFFF,
    "int64": -0x8000_0000_0000_0000, "uint64": 0xFFFF_FFFF_FFFF_FFFF,
}


def _swap_bytes(data: bytes) -> bytes:
    """Swap the two bytes of every 16-bit word."""
    out = bytearray(data)
    out[0::2], out[1::2] = data[1::2], data[0::2]
    return bytes(out)


def decode(
    words: Sequence[int], type_: str, word_order: str = "big", byte_order: str = "big"
) -> int | float:
    """Register words -> the integer or float they hold.

    Example: float32 1.5 is 0x3FC00000; big/big words ``[0x3FC0, 0x0000]``, word-swapped
    (word_order little) ``[0x0000, 0x3FC0]``, byte-swapped ``[0xC03F, 0x0000]``.

    Raises:
        ValueError: wrong number of words for ``type_`` or a word outside 0..65535.
    """
    width = REGISTER_WIDTH[type_]
    if len(words) != width:
        raise ValueError(f"{type_} needs {width} registers, got {len(words)}")
    ordered = list(words) if word_order == "big" else list(reversed(words))
    try:
        data = struct.pack(f">{width}H", *ordered)
    except struct.error:
        raise ValueError(f"register words {list(words)} are not all in 0..65535") from None
    if byte_order == "little":
        data = _swap_bytes(data)
    return struct.unpack(f">{_STRUCT[type_]}", data)[0]


def encode(
    value: int | float, type_: str, word_order: str = "big", byte_order: str = "big"
) -> list[int]:
    """A value -> the register words that :func:`decode` turns back into it.

    Floats are rounded to the nearest float32 for ``float32``; integers must fit their type.

    Raises:
        ValueError: the value does not fit ``type_``.
    """
    try:
        data = struct.pack(f">{_STRUCT[type_]}", value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit {type_}: {exc}") from None
    if byte_order == "little":
        data = _swap_bytes(data)
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    return words if word_order == "big" else words[::-1]


def scaled(raw: int | float, sf: int = 0, scale: float = 1.0, offset: float = 0.0) -> float:
    """``raw × 10^sf × scale + offset`` (SunSpec scale factor, then linear scaling).

    A negative ``sf`` divides by the exact power of ten, so 12345 with sf -2 gives the float
    nearest 123.45 (multiplying by 0.01 would not).
    """
    value = raw * 10**sf if sf >= 0 else raw / 10**-sf
    return float(value) * scale + offset


def not_implemented(raw: int | float, type_: str, accumulator: bool = False) -> bool:
    """Whether ``raw`` is SunSpec's "not implemented" value for ``type_``.

    Any NaN float, the type's sentinel of :data:`NOT_IMPLEMENTED`, and 0 for an accumulator.
    """
    if isinstance(raw, float):
        return math.isnan(raw)
    return raw == NOT_IMPLEMENTED[type_] or (accumulator and raw == 0)


def scale_factor(words: Sequence[int]) -> int:
    """A SunSpec scale-factor register (int16) -> its exponent.

    Raises:
        Rejected: ``not_implemented`` for 0x8000, ``bad_scale_factor`` when outside -10..10.
    """
    sf = int(decode(words, "int16"))
    if sf == NOT_IMPLEMENTED["int16"]:
        raise Rejected("not_implemented", "scale factor register reads 0x8000 (not implemented)")
    if sf not in SCALE_FACTOR_RANGE:
        raise Rejected("bad_scale_factor", f"scale factor register reads {sf}, outside -10..10")
    return sf


@dataclass(frozen=True, slots=True, order=True)
class RegisterRange:
    """``count`` consecutive registers of one table from ``address`` on (one read request)."""

    table: str
    address: int
    count: int

    @property
    def end(self) -> int:
        """First address after the range."""
        return self.address + self.count


def plan_reads(
    ranges: Iterable[RegisterRange], max_registers: int = 125, max_gap: int = 0
) -> list[RegisterRange]:
    """Coalesce register ranges into the fewest read requests.

    Ranges of one table, sorted by address, join the current request while the request stays
    within ``max_registers`` and the unused registers between them number at most ``max_gap``;
    a range is never split (a multi-register value must come from one response). Greedy
    extension of sorted ranges is minimal for this interval-covering problem.

    Raises:
        ValueError: a single range is longer than ``max_registers``.
    """
    requests: list[RegisterRange] = []
    current: RegisterRange | None = None
    for rng in sorted(set(ranges)):
        if rng.count > max_registers:
            raise ValueError(f"{rng} is longer than {max_registers} registers")
        if (
            current is not None
            and rng.table == current.table
            and rng.address - current.end <= max_gap
            and max(current.end, rng.end) - current.address <= max_registers
        ):
            end = max(current.end, rng.end)
            current = RegisterRange(current.table, current.address, end - current.address)
            continue
        if current is not None:
            requests.append(current)
        current = rng
    if current is not None:
        requests.append(current)
    return requests


@dataclass(frozen=True, slots=True)
class PointLayout:
    """Where one point's value (and scale factor) sit in a group's responses.

    ``value_at`` and ``sf_at`` are (request index, offset in that response).
    """

    point: ModbusPoint
    value_at: tuple[int, int]
    sf_at: tuple[int, int] | None

    @property
    def requests(self) -> tuple[int, ...]:
        """Indexes of the requests this point needs."""
        return (self.value_at[0],) if self.sf_at is None else (self.value_at[0], self.sf_at[0])

    def words(self, blocks: Sequence[Sequence[int]]) -> list[int]:
        """The value's register words out of the responses."""
        index, offset = self.value_at
        return list(blocks[index][offset : offset + self.point.width])

    def value(self, blocks: Sequence[Sequence[int]]) -> float:
        """Decoded, scale-factored and scaled value, in the point's unit.

        Raises:
            Rejected: ``not_implemented`` (a SunSpec sentinel, unless the point sets
            ``not_implemented = "none"``) or ``bad_scale_factor``.
        """
        p = self.point
        raw = decode(self.words(blocks), p.type, p.word_order, p.byte_order)
        if p.not_implemented == "sunspec" and not_implemented(raw, p.type, p.accumulator):
            shown = "NaN" if isinstance(raw, float) else f"{raw & (1 << 16 * p.width) - 1:#x}"
            raise Rejected(
                "not_implemented",
                f"{p.meter}: {p.type} reads {shown}, SunSpec \"not implemented\""
                + (" (accumulator 0)" if p.accumulator and raw == 0 else ""),
            )
        sf = 0
        if self.sf_at is not None:
            index, offset = self.sf_at
            sf = scale_factor(blocks[index][offset : offset + 1])
        return scaled(raw, sf, p.scale, p.offset)


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """The read requests of one poll group and where each point lands in them."""

    requests: list[RegisterRange]
    layouts: list[PointLayout]


def _locate(requests: Sequence[RegisterRange], rng: RegisterRange) -> tuple[int, int]:
    for index, req in enumerate(requests):
        if req.table == rng.table and req.address <= rng.address and rng.end <= req.end:
            return index, rng.address - req.address
    raise LookupError(f"{rng} is not covered by the plan")  # plan_reads covers every range


def plan_group(
    points: Sequence[ModbusPoint], max_registers: int = 125, max_gap: int = 0
) -> GroupPlan:
    """Plan the reads of a poll group: values and their scale-factor registers together."""
    values = [RegisterRange(p.table, p.address, p.width) for p in points]
    factors = [
        None if p.scale_factor_address is None
        else RegisterRange(p.table, p.scale_factor_address, 1)
        for p in points
    ]
    requests = plan_reads(values + [f for f in factors if f], max_registers, max_gap)
    layouts = [
        PointLayout(p, _locate(requests, v), None if f is None else _locate(requests, f))
        for p, v, f in zip(points, values, factors, strict=True)
    ]
    return GroupPlan(requests, layouts)
