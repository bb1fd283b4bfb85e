"""Shared helpers for the Modbus tests: small sites and a sink that keeps what it is given."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from dcpue.config import Site, parse_site
from dcpue.core.readings import Reading
from dcpue.core.store import DeadLetter

#: Meters of the small test site: (id, role, kind, unit).
METERS = [
    ("grid-main", "grid_import", "counter", "kWh"),
    ("it", "it_load", "counter", "kWh"),
    ("it-power", "it_load", "power", "kW"),
    ("outdoor", "outdoor_temperature", "state", "degC"),
]


def make_site(modbus: dict | None = None, meters: Sequence[tuple[str, str, str, str]] = METERS) -> Site:
    """A valid site with ``meters`` and the given ``[collector.modbus]`` block."""
    doc: dict = {
        "id": "mb-test",
        "latitude": 36.1,
        "longitude": -79.95,
        "grid": {"emission_factor_t_per_mwh": 0.5703, "source": "test"},
        "meters": [
            {"id": m, "role": r, "kind": k, "unit": u}
            | ({"it_category": "ups_output"} if r == "it_load" else {})
            for m, r, k, u in meters
        ],
    }
    if modbus is not None:
        doc["collector"] = {"modbus": modbus}
    return parse_site(doc)


class ListSink:
    """A ReadingSink that keeps readings and dead letters in lists."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.letters: list[DeadLetter] = []

    def submit(self, readings: Sequence[Reading]) -> None:
        self.readings.extend(readings)

    def reject(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def by_meter(self) -> dict[str, Reading]:
        """Latest reading per meter."""
        return {r.meter: r for r in self.readings}


async def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Yield to the event loop until ``check()`` holds; bounded by ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def sink() -> ListSink:
    return ListSink()
