"""A small site for collector tests: two energy counters, a capped power meter, a temperature."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from dcpue.config import Site, parse_site

#: Epoch ms of 2024-01-01T00:00:00Z, the start of every synthetic stream here.
T0_MS = 1_704_067_200_000


def site_doc(collector: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "test-site",
        "latitude": 36.1,
        "longitude": -79.95,
        "grid": {"emission_factor_t_per_mwh": 0.5703, "source": "test"},
        "meters": [
            {"id": "grid", "role": "grid_import", "kind": "counter", "unit": "kWh"},
            {"id": "it", "role": "it_load", "kind": "counter", "unit": "kWh",
             "it_category": "ups_output", "parent": "grid"},
            {"id": "pdu-1", "role": "it_load", "kind": "power", "unit": "kW",
             "it_category": "pdu_output", "max_power_kw": 100.0},
            {"id": "oat", "role": "outdoor_temperature", "kind": "state", "unit": "degC"},
        ],
        "collector": collector or {},
    }


def make_site(collector: dict[str, Any] | None = None) -> Site:
    return parse_site(site_doc(collector))


@pytest.fixture
def site() -> Site:
    return make_site()


async def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``check`` on the event loop until true; bounded by ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.05)
