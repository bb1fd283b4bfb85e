"""Reported figures with their audit trail: every number can be expanded into its inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dcpue.core.readings import ms_to_datetime


@dataclass(frozen=True, slots=True)
class Figure:
    """A reported number, its unit and how it was obtained.

    ``value`` is None when the window's coverage is below the configured threshold
    ("insufficient data"). ``inputs`` are the figures (or meter energies) it was computed from;
    ``factor`` and ``factor_source`` record an emission or conversion factor where one was used.
    """

    name: str
    value: float | None
    unit: str
    formula: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    coverage: float | None = None
    meters: tuple[str, ...] = ()
    inputs: tuple[Figure, ...] = ()
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
