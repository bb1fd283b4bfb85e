"""Reported figures with their audit trail: every number can be expanded into its inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from dcpue.core.readings import ms_to_datetime


class LazyInputs(Sequence["Figure"]):
    """A figure's inputs, built on first use: the audit trail of a figure that nobody expands
    (the daemon computes every window's figures each minute; only the API and reports expand
    them) costs nothing. Behaves as the tuple it builds; pickles as that tuple."""

    __slots__ = ("_items", "_make")

    def __init__(self, make: Callable[[], Sequence[Figure]]) -> None:
        self._make: Callable[[], Sequence[Figure]] | None = make
        self._items: tuple[Figure, ...] | None = None

    def _resolved(self) -> tuple[Figure, ...]:
        if self._items is None:
            assert self._make is not None
            self._items, self._make = tuple(self._make()), None
        return self._items

    @overload
    def __getitem__(self, index: int) -> Figure: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Figure, ...]: ...
    def __getitem__(self, index: int | slice) -> Figure | tuple[Figure, ...]:
        return self._resolved()[index]

    def __len__(self) -> int:
        return len(self._resolved())

    def __iter__(self) -> Iterator[Figure]:
        return iter(self._resolved())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self._resolved() == tuple(other)

    def __hash__(self) -> int:
        return hash(self._resolved())

    def __repr__(self) -> str:
        return repr(self._resolved())

    def __reduce__(self) -> tuple[type, tuple[tuple[Figure, ...]]]:
        return tuple, (self._resolved(),)


@dataclass(frozen=True, slots=True)
class Figure:
    """A reported number, its unit and how it was obtained.

    ``value`` is None when the window's coverage is below the configured threshold
    ("insufficient data"). ``inputs`` are the figures (or meter energies) it was computed from
    (a tuple, or :class:`LazyInputs` built when first read); ``factor`` and ``factor_source`` record an emission or conversion factor where one was used.
    """

    name: str
    value: float | None
    unit: str
    formula: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    coverage: float | None = None
    meters: tuple[str, ...] = ()
    inputs: Sequence[Figure] = ()
    factor: float | None = None
    factor_unit: str | None = None
    factor_source: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sufficient(self) -> bool:
        return self.value is not None

    def explain(self) -> dict[str, Any]:
        """The figure and, recursively, everything it came from, as JSON-ready data."""
        out: dict[str, Any] = {"name": self.name, "value": self.value, "unit": self.unit}
        if self.value is None:
            out["status"] = "insufficient data"
        if self.formula:
            out["formula"] = self.formula
        if self.start_ms is not None and self.end_ms is not None:
            out["window"] = {
                "from": ms_to_datetime(self.start_ms).isoformat(),
                "to": ms_to_datetime(self.end_ms).isoformat(),
            }
        if self.coverage is not None:
            out["coverage"] = self.coverage
        if self.meters:
            out["meters"] = list(self.meters)
        if self.factor is not None:
            out["factor"] = {
                "value": self.factor, "unit": self.factor_unit, "source": self.factor_source
            }
        if self.note:
            out["note"] = self.note
        if self.extra:
            out.update(self.extra)
        if self.inputs:
            out["inputs"] = [i.explain() for i in self.inputs]
        return out
