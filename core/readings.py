"""The typed reading every component exchanges, and a columnar batch for bulk paths.

A :class:`Reading` is a slotted dataclass (not a pydantic model) so hot loops stay cheap.
Timestamps are integer milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value.

    Attributes:
        ts_ms: UTC timestamp, milliseconds since 1970-01-01T00:00:00Z.
        meter: meter id from the site configuration.
        quantity: ``energy``, ``power``, ``temperature``, ... (see :mod:`dcpue.core.units`).
        value: the value in ``unit``.
        unit: unit symbol, canonical for the quantity once normalised.
    """

    ts_ms: int
    meter: str
    quantity: str
    value: float
    unit: str

    @property
    def time(self) -> datetime:
        """Timestamp as an aware UTC datetime."""
        return ms_to_datetime(self.ts_ms)


def datetime_to_ms(moment: datetime) -> int:
    """Aware datetime -> UTC epoch milliseconds; naive datetimes are rejected."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: give a time zone")
    return round(moment.timestamp() * 1000)


def ms_to_datetime(ts_ms: int) -> datetime:
    """UTC epoch milliseconds -> aware UTC datetime."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


@dataclass(slots=True)
class ReadingColumns:
    """Many readings as parallel NumPy arrays (bulk simulation, store I/O).

    ``meter``, ``quantity`` and ``unit`` are object arrays of str; ``ts_ms`` is int64 and
    ``value`` float64. All arrays have the same length.
    """

    ts_ms: np.ndarray
    meter: np.ndarray
    quantity: np.ndarray
    value: np.ndarray
    unit: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ts_ms)
        if any(len(a) != n for a in (self.meter, self.quantity, self.value, self.unit)):
            raise ValueError("ReadingColumns arrays must have equal lengths")

    def __len__(self) -> int:
        return len(self.ts_ms)

    @classmethod
    def empty(cls) -> ReadingColumns:
        obj = np.empty(0, dtype=object)
        return cls(np.empty(0, np.int64), obj, obj.copy(), np.empty(0), obj.copy())

    @classmethod
    def from_readings(cls, readings: Iterable[Reading]) -> ReadingColumns:
        rows = list(readings)
        return cls(
            np.fromiter((r.ts_ms for r in rows), np.int64, len(rows)),
            np.array([r.meter for r in rows], dtype=object),
            np.array([r.quantity for r in rows], dtype=object),
            np.fromiter((r.value for r in rows), np.float64, len(rows)),
            np.array([r.unit for r in rows], dtype=object),
        )

    @classmethod
    def series(
        cls, meter: str, quantity: str, unit: str, ts_ms: np.ndarray, value: np.ndarray
    ) -> ReadingColumns:
        """One meter's series: scalar labels broadcast over the timestamps."""
        n = len(ts_ms)
        return cls(
            np.asarray(ts_ms, dtype=np.int64),
            np.full(n, meter, dtype=object),
            np.full(n, quantity, dtype=object),
            np.asarray(value, dtype=np.float64),
            np.full(n, unit, dtype=object),
        )

    @classmethod
    def concat(cls, parts: Sequence[ReadingColumns]) -> ReadingColumns:
        if not parts:
            return cls.empty()
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__slots__)
        )

    def to_readings(self) -> list[Reading]:
        return [
            Reading(int(t), str(m), str(q), float(v), str(u))
            for t, m, q, v, u in zip(
                self.ts_ms, self.meter, self.quantity, self.value, self.unit, strict=True
            )
        ]
