"""Hourly finalized energies of a site's boundary terms (pure; the one metrics engine underneath).

Each hour ``[h, h + 1 h)`` (UTC, hour-aligned) is one :class:`dcpue.metrics.balance.
EnergyBalance`, as :func:`dcpue.metrics.rollups.hourly_balances` gives it from the store's
hourly rollups (meters' amounts per hour from the one energy engine). Because the amount in a
window is ``A(end) - A(start)`` of one accumulated curve, the hours of a period add up to the
energy a window report over that period computes (up to float rounding).

Terms (kWh unless noted), as the balance defines them (ISO/IEC 30134-2):

- ``it`` IT energy at the site's Green Grid category; ``facility`` total facility energy;
- ``grid_import``, ``grid_export``, ``pv_generation`` (PV inside the boundary),
  ``battery_charge``, ``battery_discharge``, ``outside_boundary``, ``reused_heat``;
- ``water`` in m3.

``<term>_coverage`` is the hour's lowest measured share (0..1) over the meters the term rests on
(``facility``: every facility-group meter); a term without meters has coverage 1 and energy 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from dcpue.metrics.balance import FACILITY_GROUPS, EnergyBalance

HOUR_MS = 3_600_000

#: Published term -> (EnergyBalance attribute, balance groups its coverage rests on, unit).
TERMS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "it": ("it_kwh", ("it",), "kWh"),
    "facility": ("facility_kwh", FACILITY_GROUPS, "kWh"),
    "grid_import": ("grid_import_kwh", ("grid_import",), "kWh"),
    "grid_export": ("grid_export_kwh", ("grid_export",), "kWh"),
    "pv_generation": ("pv_generation_kwh", ("pv_generation",), "kWh"),
    "battery_charge": ("battery_charge_kwh", ("battery_charge",), "kWh"),
    "battery_discharge": ("battery_discharge_kwh", ("battery_discharge",), "kWh"),
    "outside_boundary": ("outside_boundary_kwh", ("outside_boundary",), "kWh"),
    "reused_heat": ("reused_heat_kwh", ("reused_heat",), "kWh"),
    "water": ("water_m3", ("water",), "m3"),
}


def field_name(term: str) -> str:
    """The line-protocol field of a term's energy, e.g. ``it_kwh``, ``water_m3``."""
    return f"{term}_{TERMS[term][2].lower()}"


#: Every published field: each term's energy, then each term's coverage.
FIELDS: tuple[str, ...] = (
    *(field_name(t) for t in TERMS), *(f"{t}_coverage" for t in TERMS),
)


@dataclass(frozen=True)
class HourlyTerms:
    """Hour starts (UTC ms, int64) and one float array per field of :data:`FIELDS`."""

    hour_ms: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.hour_ms)

    def select(self, mask: np.ndarray) -> HourlyTerms:
        return HourlyTerms(self.hour_ms[mask], {k: v[mask] for k, v in self.values.items()})


def hour_floor(ms: int) -> int:
    return ms - ms % HOUR_MS


def terms_from_balances(balances: Sequence[EnergyBalance]) -> HourlyTerms:
    """The published fields of consecutive hourly balances (hour starts from each balance)."""
    hours = np.array([b.start_ms for b in balances], dtype=np.int64)
    values = {f: np.empty(len(balances)) for f in FIELDS}
    for k, balance in enumerate(balances):
        for term, (attr, groups, _) in TERMS.items():
            values[field_name(term)][k] = getattr(balance, attr)
            values[f"{term}_coverage"][k] = balance.group_coverage(*groups)
    return HourlyTerms(hours, values)
