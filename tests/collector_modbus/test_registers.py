"""Pure register arithmetic against hand-worked register words (no I/O)."""

from __future__ import annotations

import math

import pytest
from dcpue.collector.modbus_registers import (
    RegisterRange,
    decode,
    encode,
    plan_group,
    plan_reads,
    scale_factor,
    scaled,
)
from dcpue.collector.normalise import Rejected
from dcpue.config.modbus import ModbusPoint

# (type, value, words in big word / big byte order), worked by hand from the two's complement
# or IEEE 754 bit pattern: e.g. -123456 = 0x100000000 - 0x1E240 = 0xFFFE1DC0,
# 1234567.125 = 1.0010110101101000011100100b x 2^20 -> exponent 0x413 -> 0x4132D68720000000.
CASES = [
    ("int16", -2, [0xFFFE]),
    ("uint16", 65534, [0xFFFE]),
    ("int32", -123456, [0xFFFE, 0x1DC0]),
    ("uint32", 0x12345678, [0x1234, 0x5678]),
    ("int64", -1, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
    ("uint64", 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708]),
    ("uint64", 2**63 + 5, [0x8000, 0x0000, 0x0000, 0x0005]),
    ("float32", 1.5, [0x3FC0, 0x0000]),
    ("float32", 1500.0, [0x44BB, 0x8000]),
    ("float64", 1234567.125, [0x4132, 0xD687, 0x2000, 0x0000]),
]


def _swap(words: list[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


@pytest.mark.parametrize(("type_", "value", "words"), CASES)
def test_decode_every_type_and_order(type_: str, value: float, words: list[int]) -> None:
    assert decode(words, type_) == value
    assert decode(words[::-1], type_, word_order="little") == value
    assert decode(_swap(words), type_, byte_order="little") == value
    assert decode(_swap(words)[::-1], type_, "little", "little") == value


@pytest.mark.parametrize(("type_", "value", "words"), CASES)
def test_encode_is_the_inverse(type_: str, value: float, words: list[int]) -> None:
    assert encode(value, type_) == words
    assert encode(value, type_, "little", "big") == words[::-1]
    assert encode(value, type_, "big", "little") == _swap(words)
    assert encode(value, type_, "little", "little") == _swap(words)[::-1]


def test_named_layouts_of_one_uint32() -> None:
    # 0x12345678 as the ABCD / CDAB / BADC / DCBA layouts vendors document
    assert decode([0x1234, 0x5678], "uint32") == 0x12345678
    assert decode([0x5678, 0x1234], "uint32", "little", "big") == 0x12345678
    assert decode([0x3412, 0x7856], "uint32", "big", "little") == 0x12345678
    assert decode([0x7856, 0x3412], "uint32", "little", "little") == 0x12345678


def test_decode_refuses_wrong_lengths_and_words() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([1], "float32")
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        decode([70000], "uint16")
    with pytest.raises(ValueError, match="does not fit"):
        encode(70000, "uint16")
    with pytest.raises(ValueError, match="does not fit"):
        encode(1e40, "float32")


def test_float32_nan_survives() -> None:
    assert math.isnan(decode(encode(float("nan"), "float32"), "float32"))


def test_scale_factor_and_scaling() -> None:
    assert scaled(12345, -2) == 123.45  # divides by 100: the float nearest 123.45
    assert scaled(12345, 3) == 12_345_000.0
    assert scaled(47, 0, scale=0.5) == 23.5
    assert scaled(1000, -1, scale=2.0, offset=-40.0) == 160.0  # 1000 x 10^-1 x 2 - 40
    assert scale_factor([0xFFFE]) == -2
    assert scale_factor([0x000A]) == 10
    for word, reason in ((0x8000, "not_implemented"), (0x000B, "bad_scale_factor")):
        with pytest.raises(Rejected) as err:
            scale_factor([word])
        assert err.value.reason == reason


def test_adjacent_ranges_join() -> None:
    ranges = [RegisterRange("holding", 0, 2), RegisterRange("holding", 2, 1),
              RegisterRange("holding", 3, 4)]
    assert plan_reads(ranges) == [RegisterRange("holding", 0, 7)]


def test_gap_tolerance() -> None:
    ranges = [RegisterRange("holding", 0, 1), RegisterRange("holding", 10, 1)]  # 9 unused between
    assert plan_reads(ranges, max_gap=8) == ranges
    assert plan_reads(ranges, max_gap=9) == [RegisterRange("holding", 0, 11)]


def test_tables_never_mix_and_duplicates_collapse() -> None:
    ranges = [RegisterRange("input", 0, 2), RegisterRange("holding", 0, 2),
              RegisterRange("holding", 0, 2), RegisterRange("holding", 1, 1)]
    assert plan_reads(ranges, max_gap=10) == [
        RegisterRange("holding", 0, 2), RegisterRange("input", 0, 2),
    ]


def test_thirty_points_over_300_registers_need_three_requests() -> None:
    # uint32 every 10 registers from 0 to 290: 8 unused between neighbours; the span 0..291 is
    # 292 registers > 2 x 125, so 3 requests is the lower bound, reached as 0+122, 130+122, 260+32.
    ranges = [RegisterRange("holding", a, 2) for a in range(0, 300, 10)]
    plan = plan_reads(ranges, max_registers=125, max_gap=8)
    assert plan == [RegisterRange("holding", 0, 122), RegisterRange("holding", 130, 122),
                    RegisterRange("holding", 260, 32)]
    assert all(r.count <= 125 for r in plan)
    assert len(plan_reads(ranges, max_gap=7)) == 30  # gap too small: one request per point
    # a device capped at 60 registers: a window holds 6 points (a..a+51), 30 points need 5
    assert plan_reads(ranges, max_registers=60, max_gap=8) == [
        RegisterRange("holding", a, 52) for a in (0, 60, 120, 180, 240)
    ]


def test_group_plan_places_values_and_shared_scale_factor() -> None:
    points = [
        ModbusPoint(meter="a", address=100, type="uint32", scale_factor_address=104),
        ModbusPoint(meter="b", address=102, type="int16", scale_factor_address=104),
        ModbusPoint(meter="c", table="input", address=100, type="float64"),
    ]
    plan = plan_group(points, max_gap=2)
    assert plan.requests == [RegisterRange("holding", 100, 5), RegisterRange("input", 100, 4)]
    a, b, c = plan.layouts
    assert (a.value_at, a.sf_at, b.value_at, b.sf_at) == ((0, 0), (0, 4), (0, 2), (0, 4))
    assert c.value_at == (1, 0) and c.sf_at is None
    blocks = [[0x0001, 0xE240, 0xFFF6, 0x0000, 0xFFFE], encode(-0.25, "float64")]
    assert a.value(blocks) == 1234.56  # 123456 x 10^-2
    assert b.value(blocks) == -0.1  # -10 x 10^-2
    assert c.value(blocks) == -0.25
