"""Hourly finalized energies of a site's boundary terms (pure; the one metrics engine underneath).

Each hour ``[h, h + 1 h)`` (UTC, hour-aligned) is one :func:`dcpue.metrics.balance.
balance_from_energies` over the meters' amounts in that hour, as
:func:`dcpue.metrics.energy.bucket_amounts` gives them from the intervals of
:func:`dcpue.metrics.balance.stored_intervals`. Because the amount in a window is
``A(end) - A(start)`` of one accumulated curve, the hours of a period add up to the energy a
window report over that period computes (up to float rounding).

Terms (kWh unless noted), as the balance defines them (ISO/IEC 30134-2):

- ``it`` IT energy at the site's Green Grid category; ``facility`` total facility energy;
- ``grid_import``, ``grid_export``, ``pv_generation`` (PV inside the boundary),
  ``battery_charge``, ``battery_discharge``, ``outside_boundary``, ``reused_heat``;
- ``water`` in m3.

``<term>_coverage`` is the hour's lowest measured share (0..1) over the meters the term rests on
(``facility``: every facility-group meter); a term without meters has coverage 1 and energy 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dcpue.metrics.balance import FACILITY_GROUPS, BalanceTopology, balance_from_energies
from dcpue.metrics.energy import Intervals, MeterEnergy, bucket_amounts

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


def hourly_terms(
    topology: BalanceTopology, intervals: dict[str, Intervals], first_hour_ms: int, n_hours: int
) -> HourlyTerms:
    """The terms of ``n_hours`` hours from ``first_hour_ms`` (must be hour-aligned)."""
    if first_hour_ms % HOUR_MS:
        raise ValueError(f"first_hour_ms {first_hour_ms} is not an hour start")
    amounts = {
        mid: bucket_amounts(iv, first_hour_ms, HOUR_MS, n_hours) for mid, iv in intervals.items()
    }
    hours = first_hour_ms + HOUR_MS * np.arange(n_hours, dtype=np.int64)
    values = {f: np.empty(n_hours) for f in FIELDS}
    for k, h in enumerate(hours.tolist()):
        balance = balance_from_energies(topology, {
            mid: MeterEnergy(mid, float(a[k]), float(m[k]) / HOUR_MS)
            for mid, (a, m) in amounts.items()
        }, h, h + HOUR_MS)
        for term, (attr, groups, _) in TERMS.items():
            values[field_name(term)][k] = getattr(balance, attr)
            values[f"{term}_coverage"][k] = balance.group_coverage(*groups)
    return HourlyTerms(hours, values)
