"""Synthetic, hand-checkable meter data for the metrics tests: constant powers -> counters."""

from __future__ import annotations

import tomllib

import numpy as np
from dcpue.config import Site, example_path, parse_site
from dcpue.core.readings import ReadingColumns

T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z
MINUTE = 60_000
HOUR = 3_600_000

#: Constant powers in kW of the microgrid example's energy meters (hand-worked balance):
#: facility = 1000 - 50 + 300 + 40 - 100 - 60 = 1130 kW; IT 800 kW -> PUE 1.4125.
MICROGRID_KW = {
    "grid-main": 1000.0, "grid-export": 50.0, "pv-roof": 300.0, "bess-charge": 100.0,
    "bess-discharge": 40.0, "ev-chargers": 60.0, "ups-out": 800.0, "chiller-1": 120.0,
    "crah-fans": 50.0, "pumps": 20.0, "tower-1": 10.0, "ups-loss": 60.0, "lighting": 20.0,
}
#: Make-up water in m3 per hour (1.6 m3/h over 800 kWh/h of IT: WUE 2.0 L/kWh).
WATER_M3_PER_H = 1.6


def microgrid_site(power: tuple[str, ...] = (), **calculator: object) -> Site:
    """The bundled microgrid example with ``[calculator]`` settings replaced by ``calculator``
    and the ``power`` meters metered by power readings (kW) instead of counters."""
    data = tomllib.loads(example_path("microgrid").read_text())
    data["calculator"] = {"outside_boundary": ["ev-chargers"], **calculator}
    for meter in data["meters"]:
        if meter["id"] in power:
            meter.update(kind="power", unit="kW")
    return parse_site(data)


def counters(
    kw: dict[str, float], start_ms: int, minutes: int, step_ms: int = MINUTE,
    water_m3_per_h: float | None = None, offset: float = 1000.0,
) -> ReadingColumns:
    """Cumulative kWh counters (and a water m3 counter) for constant powers, one per step."""
    ts = start_ms + step_ms * np.arange(minutes * MINUTE // step_ms + 1, dtype=np.int64)
    hours = (ts - start_ms) / HOUR
    parts = [
        ReadingColumns.series(mid, "energy", "kWh", ts, offset + p * hours) for mid, p in kw.items()
    ]
    if water_m3_per_h is not None:
        parts.append(ReadingColumns.series("tower-water", "volume", "m3", ts,
                                           offset + water_m3_per_h * hours))
    return ReadingColumns.concat(parts)
