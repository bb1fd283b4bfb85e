"""The port every source writes into: accepted readings and dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dcpue.core.readings import Reading
from dcpue.core.store import DeadLetter


class ReadingSink(Protocol):
    """What a source (MQTT, Modbus, twin gateway) hands its output to; both calls never block."""

    def submit(self, readings: Sequence[Reading]) -> None:
        """Queue normalised readings for the stores."""

    def reject(self, letter: DeadLetter) -> None:
        """Record a refused payload or value with its reason."""
