"""Where a window's facility energy came from: grid or PV, directly or through the battery.

A battery on the site bus shifts energy in time: PV charged at noon and discharged at night is
still PV, and grid energy charged at night carries the emissions of the hour it was bought.
The energy balance alone (:mod:`dcpue.metrics.balance`) sees a night-time discharge as energy
of unknown origin; this module follows the stored energy's origin through time with a
**state-of-charge provenance ledger** (pure core :func:`ledger`, over steps of the engine's
interval energies).

Rule (dcpue's stated allocation; ISO/IEC 30134-3 and -8 count the renewable energy used and
the CO2 of the energy used by the data center but leave shared and stored on-site energy to the
operator to allocate and state; the GHG Protocol Scope 2 Guidance (WRI/WBCSD 2015, ch. 6)
counts grid electricity at the factor of its location and time of consumption from the grid):

1. Steps: whole hours (UTC, or from a report's start), split at the window's edges.
2. Each step, the site bus is a pool: sources are grid import (at the step's grid factor),
   local PV (generation minus export: exports come out of PV first) and the battery discharge;
   sinks are the data center (facility energy), loads outside the boundary, the battery charge
   and any export beyond PV. Every sink takes each source in proportion to its energy.
3. The battery is one well-mixed store: its energy by origin (PV kWh, grid kWh) and the grid
   part's emissions (kgCO2) as charged. A discharge of D kWh carries the store's mix at the
   start of the step and draws D / efficiency kWh from it: the round-trip losses
   (``calculator.battery_efficiency``, default 0.85, NREL Annual Technology Baseline for
   utility-scale lithium-ion) leave the store in proportion to its mix. Losses are not facility
   energy (the balance subtracts charge and adds discharge), so neither are their emissions.
4. The ledger starts empty :data:`LOOKBACK_MS` (48 h) before the window. A discharge the store
   cannot cover (charged before the ledger began, or a battery more efficient than declared)
   is of unknown origin and counted as grid at the discharge step's factor, as without a
   ledger: the rule never claims more PV than was charged from PV, so REF <= 1 and the
   renewable share <= 100 % hold, and an error only overstates emissions.

Units: energies in kWh, emissions in kgCO2, factors in kgCO2/kWh (= tCO2/MWh).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from dcpue.config.factors import HourlyFactors, per_hour
from dcpue.config.site import Site
from dcpue.core.store import Store
from dcpue.metrics.balance import (
    LOOKAROUND_MS,
    BalanceTopology,
    EnergyBalance,
    stored_meter_intervals,
)
from dcpue.metrics.energy import Intervals, accumulated

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: How far before a window the ledger starts (empty): two daily battery cycles.
LOOKBACK_MS = 48 * HOUR_MS
#: Balance groups on the site bus, the ledger's inputs.
BUS_GROUPS = ("grid_import", "grid_export", "pv_generation", "battery_charge",
              "battery_discharge", "outside_boundary")
LEDGER_NOTE = ("battery discharge at the origin and charge-hour factors of the energy stored "
               "(state-of-charge provenance ledger, dcpue.metrics.provenance)")


@dataclass(frozen=True, slots=True)
class BusSteps:
    """Site-bus energy per step ``[t0, t1)`` (kWh arrays, one entry per step, time ordered)
    and the grid factor of each step (kgCO2/kWh); ``found`` says whether the factor came from
    the hourly series (False: the site factor)."""

    t0: np.ndarray
    t1: np.ndarray
    grid_import: np.ndarray
    grid_export: np.ndarray
    pv_generation: np.ndarray
    battery_charge: np.ndarray
    battery_discharge: np.ndarray
    outside_boundary: np.ndarray
    factor: np.ndarray
    found: np.ndarray


@dataclass(frozen=True, slots=True)
class StepOrigins:
    """The facility energy of each step by origin (kWh) and its grid emissions (kgCO2).

    ``pv_direct`` + ``pv_stored`` (PV through the battery) + ``grid_direct`` + ``grid_stored``
    (grid through the battery) + ``unknown_stored`` (discharge the ledger cannot trace,
    counted as grid) = ``facility`` (where facility energy is not negative).
    """

    t0: np.ndarray
    t1: np.ndarray
    facility: np.ndarray
    pv_direct: np.ndarray
    pv_stored: np.ndarray
    grid_direct: np.ndarray
    grid_stored: np.ndarray
    unknown_stored: np.ndarray
    grid_kg: np.ndarray
    found: np.ndarray


@dataclass(frozen=True, slots=True)
class Origin:
    """The sum of the steps inside one window (kWh, kgCO2)."""

    start_ms: int
    end_ms: int
    facility_kwh: float
    pv_direct_kwh: float
    pv_stored_kwh: float
    grid_direct_kwh: float
    grid_stored_kwh: float
    unknown_stored_kwh: float
    grid_kg: float
    steps: int
    steps_without_factor: int

    @property
    def pv_inside_kwh(self) -> float:
        return self.pv_direct_kwh + self.pv_stored_kwh

    @property
    def grid_inside_kwh(self) -> float:
        return self.grid_direct_kwh + self.grid_stored_kwh + self.unknown_stored_kwh

    @property
    def factor(self) -> float | None:
        """kgCO2 per kWh of grid electricity used inside (None without any)."""
        grid = self.grid_inside_kwh
        return self.grid_kg / grid if grid > 0 else None

    def scaled(self, facility_kwh: float) -> Origin:
        """Every energy and the emissions scaled so facility energy is ``facility_kwh`` (the
        window balance's, whose gaps may be bridged): the shares stay the ledger's."""
        k = facility_kwh / self.facility_kwh if self.facility_kwh > 0 else 0.0
        return Origin(self.start_ms, self.end_ms, facility_kwh, k * self.pv_direct_kwh,
                      k * self.pv_stored_kwh, k * self.grid_direct_kwh,
                      k * self.grid_stored_kwh, k * self.unknown_stored_kwh, k * self.grid_kg,
                      self.steps, self.steps_without_factor)


def ledger(steps: BusSteps, efficiency: float) -> StepOrigins:
    """Run the provenance ledger (module docstring, rules 2-4) over ``steps``, from an empty
    store; ``efficiency`` is the battery's round-trip efficiency (0 < efficiency <= 1)."""
    if not 0 < efficiency <= 1:
        raise ValueError(f"battery efficiency {efficiency} outside (0, 1]")
    n = len(steps.t0)
    out = {k: np.zeros(n) for k in ("facility", "pv_direct", "pv_stored", "grid_direct",
                                    "grid_stored", "unknown_stored", "grid_kg")}
    e_pv = e_grid = kg = 0.0  # the store as charged: kWh by origin, kgCO2 of its grid part
    cols = zip(steps.grid_import.tolist(), steps.grid_export.tolist(),
               steps.pv_generation.tolist(), steps.battery_charge.tolist(),
               steps.battery_discharge.tolist(), steps.outside_boundary.tolist(),
               steps.factor.tolist(), strict=True)
    for i, (g, x, pv, c, d, o, f) in enumerate(cols):
        local_pv, excess = max(pv - x, 0.0), max(x - pv, 0.0)
        facility = g - x + pv + d - c - o
        d_pv = d_grid = d_kg = 0.0
        stock = e_pv + e_grid
        if d > 0 and stock > 0:
            draw = min(d / efficiency, stock)
            keep = 1.0 - draw / stock
            d_pv = draw * efficiency * e_pv / stock
            d_grid = draw * efficiency * e_grid / stock
            d_kg = draw * efficiency * kg / stock
            e_pv, e_grid, kg = e_pv * keep, e_grid * keep, kg * keep
        d_unknown = max(d - d_pv - d_grid, 0.0)
        sinks = max(facility, 0.0) + max(o, 0.0) + max(c, 0.0) + excess
        if sinks <= 0:
            continue
        a, b = max(facility, 0.0) / sinks, max(c, 0.0) / sinks
        source_kg = g * f + d_kg + d_unknown * f
        out["facility"][i] = max(facility, 0.0)
        out["pv_direct"][i], out["pv_stored"][i] = a * local_pv, a * d_pv
        out["grid_direct"][i], out["grid_stored"][i] = a * g, a * d_grid
        out["unknown_stored"][i], out["grid_kg"][i] = a * d_unknown, a * source_kg
        e_pv += b * (local_pv + d_pv)
        e_grid += b * (g + d_grid + d_unknown)
        kg += b * source_kg
    return StepOrigins(steps.t0, steps.t1, **out, found=steps.found)


def window_origin(origins: StepOrigins, start_ms: int, end_ms: int) -> Origin:
    """The steps of ``origins`` inside ``[start_ms, end_ms)`` summed."""
    inside = (origins.t0 >= start_ms) & (origins.t1 <= end_ms)

    def total(a: np.ndarray) -> float:
        return float(a[inside].sum())

    return Origin(
        start_ms, end_ms, total(origins.facility), total(origins.pv_direct),
        total(origins.pv_stored), total(origins.grid_direct), total(origins.grid_stored),
        total(origins.unknown_stored), total(origins.grid_kg), int(inside.sum()),
        int((inside & ~origins.found).sum()),
    )


def step_edges(lo_ms: int, hi_ms: int, cuts: Sequence[int], anchor_ms: int = 0) -> np.ndarray:
    """Step edges over ``[lo_ms, hi_ms]``: every hour mark (``anchor_ms`` + whole hours) and
    every cut (window edges), sorted and unique."""
    first = anchor_ms + -(-(lo_ms - anchor_ms) // HOUR_MS) * HOUR_MS
    marks = np.arange(first, hi_ms, HOUR_MS, dtype=np.int64)
    extra = np.array([lo_ms, hi_ms, *(c for c in cuts if lo_ms < c < hi_ms)], dtype=np.int64)
    return np.unique(np.concatenate((marks, extra)))


def bus_steps(
    topology: BalanceTopology, intervals: dict[str, Intervals], edges: np.ndarray,
    factors: HourlyFactors | None, site_factor: float, anchor_ms: int = 0,
) -> BusSteps:
    """The site-bus groups' energy between consecutive ``edges`` from the engine's intervals
    (:func:`dcpue.metrics.energy.accumulated`), and each step's grid factor: the series' factor
    of the hour (from ``anchor_ms``) the step starts in, else ``site_factor``."""
    sums = {}
    for group in BUS_GROUPS:
        total = np.zeros(len(edges) - 1)
        for mid in topology.groups[group]:
            total += np.diff(accumulated(intervals[mid], edges)[0])
        sums[group] = total
    t0, t1 = edges[:-1], edges[1:]
    hours = anchor_ms + (t0 - anchor_ms) // HOUR_MS * HOUR_MS
    factor, found = per_hour(factors, hours, site_factor)
    return BusSteps(t0, t1, **sums, factor=factor, found=found)


def has_battery(groups: BalanceTopology | EnergyBalance) -> bool:
    """Whether the balance meters a battery (charge or discharge)."""
    return bool(groups.groups.get("battery_charge") or groups.groups.get("battery_discharge"))


def with_origin(b: EnergyBalance, origin: Origin | None) -> EnergyBalance:
    """``b`` with PV inside (and so grid inside) from the ledger's shares of its facility
    energy, for a site with a battery; other sites keep the window rule
    (:func:`dcpue.metrics.balance.pv_inside`)."""
    if origin is None or not has_battery(b):
        return b
    o = origin.scaled(b.facility_kwh)
    return replace(b, pv_inside_kwh=o.pv_inside_kwh, pv_stored_kwh=o.pv_stored_kwh)


def stored_origins(
    site: Site, store: Store, start_ms: int, end_ms: int,
    factors: HourlyFactors | None, cuts: Sequence[int] = (), anchor_ms: int = 0,
) -> StepOrigins:
    """One ledger over ``[start_ms - LOOKBACK_MS, end_ms)`` from the stored readings, with
    steps cut at ``start_ms``, ``end_ms`` and ``cuts`` (the windows of a report, which one
    continuous ledger serves), from the hourly rollups where :func:`_from_rollups` says."""
    lo = start_ms - LOOKBACK_MS
    topology = BalanceTopology.from_site(site)
    flat = site.grid.emission_factor_t_per_mwh
    if _from_rollups(store, lo, end_ms, (start_ms, anchor_ms, *cuts)):
        steps = rollup_steps(topology, store, lo, end_ms, factors, flat)
    else:
        edges = step_edges(lo, end_ms, (start_ms, *cuts), anchor_ms)
        steps = bus_steps(topology, _bus_intervals(site, store, topology, lo, end_ms), edges,
                          factors, flat, anchor_ms)
    return ledger(steps, site.calculator.battery_efficiency)


def _from_rollups(store: Store, lo_ms: int, hi_ms: int, marks: Sequence[int]) -> bool:
    """Spans longer than a day on whole UTC hours (the long rolling windows, reports) read
    the hourly rollups (:mod:`dcpue.metrics.rollups`) when they are up to date with every
    stored reading; others the raw readings."""
    if any(m % HOUR_MS for m in (lo_ms, hi_ms, *marks)) or hi_ms - lo_ms <= DAY_MS + LOOKBACK_MS:
        return False
    from dcpue.metrics import rollups  # pandas: loaded for long windows only (CLI start-up)

    return store.get_cursor(rollups.CURSOR) >= store.last_seq()


def _bus_intervals(
    site: Site, store: Store, topology: BalanceTopology, lo_ms: int, hi_ms: int
) -> dict[str, Intervals]:
    """The bus meters' intervals from the raw readings (up to ``max(max_gap_s, 6 h)`` around,
    as :func:`dcpue.metrics.balance.stored_intervals`)."""
    pad = int(max(site.calculator.max_gap_s * 1000.0, LOOKAROUND_MS))
    return {
        mid: stored_meter_intervals(site, store, topology.meters[mid], lo_ms - pad,
                                    hi_ms + pad + 1)
        for group in BUS_GROUPS for mid in topology.groups[group]
    }


def rollup_steps(
    topology: BalanceTopology, store: Store, lo_ms: int, hi_ms: int,
    factors: HourlyFactors | None, site_factor: float,
) -> BusSteps:
    """Hourly steps over the whole UTC hours ``[lo_ms, hi_ms)`` from the stored rollups."""
    from dcpue.metrics import rollups  # pandas: loaded for long windows only (CLI start-up)

    n = (hi_ms - lo_ms) // HOUR_MS
    t0 = lo_ms + HOUR_MS * np.arange(n, dtype=np.int64)
    meters = tuple(mid for group in BUS_GROUPS for mid in topology.groups[group])
    rows = rollups.hourly(store, meters, lo_ms, hi_ms)
    sums = {}
    for group in BUS_GROUPS:
        total = np.zeros(n)
        for mid in topology.groups[group]:
            h = rows[mid]
            np.add.at(total, (h.hour_ms - lo_ms) // HOUR_MS, h.amount)
        sums[group] = total
    factor, found = per_hour(factors, t0, site_factor)
    return BusSteps(t0, t0 + HOUR_MS, **sums, factor=factor, found=found)


def stored_origin(
    site: Site, store: Store, start_ms: int, end_ms: int, factors: HourlyFactors | None
) -> Origin | None:
    """The origin of ``[start_ms, end_ms)``'s facility energy from the stored readings, for
    CUE and REF; None when neither a battery nor hourly factors make it differ from the
    window's own balance (the flat factor, :func:`dcpue.metrics.balance.pv_inside`)."""
    found = stored_window_origins(site, store, [(start_ms, end_ms)], factors)
    return None if found is None else found[0]


def stored_window_origins(
    site: Site, store: Store, windows: Sequence[tuple[int, int]],
    factors: HourlyFactors | None,
) -> list[Origin] | None:
    """:func:`stored_origin` of each window ``(start_ms, end_ms)`` (e.g. the past window ends
    a late-data rewrite recomputes) from one read of the readings they span: each window runs
    its own ledger from ``LOOKBACK_MS`` before it, so its figures are the same as alone."""
    topology = BalanceTopology.from_site(site)
    if (factors is None and not has_battery(topology)) or not windows:
        return None
    lo = min(w[0] for w in windows) - LOOKBACK_MS
    hi = max(w[1] for w in windows)
    flat, efficiency = site.grid.emission_factor_t_per_mwh, site.calculator.battery_efficiency
    hourly = rollup_steps(topology, store, lo, hi, factors, flat) if all(
        _from_rollups(store, s - LOOKBACK_MS, e, (s,)) for s, e in windows) else None
    intervals = None if hourly is not None else _bus_intervals(site, store, topology, lo, hi)
    out = []
    for s, e in windows:
        if hourly is not None:
            k = slice((s - LOOKBACK_MS - lo) // HOUR_MS, (e - lo) // HOUR_MS)
            steps = BusSteps(*(getattr(hourly, f.name)[k] for f in fields(BusSteps)))
        else:
            assert intervals is not None
            steps = bus_steps(topology, intervals, step_edges(s - LOOKBACK_MS, e, (s,)),
                              factors, flat)
        out.append(window_origin(ledger(steps, efficiency), s, e))
    return out
