"""Facility energy balance over a window (ISO/IEC 30134-2), by source and by subsystem.

Boundary: the data center. Energy entering it over a window, in kWh:

    facility = grid_import - grid_export + pv_generation + battery_discharge - battery_charge
               - outside_boundary

This is conservation of energy at the site bus: everything that flows in (grid import, PV,
battery discharge) either feeds the data-center loads or leaves again (export, battery charge,
loads outside the boundary such as EV chargers). Grouped by origin the same sum reads
``facility = grid_import + pv_self_consumed + (battery_discharge - battery_charge) -
outside_boundary`` with ``pv_self_consumed = pv_generation - grid_export`` (only an on-site
surplus can be exported): PV self-consumption plus the grid's net contribution, the battery
term being the storage losses (or stock change) over the window.

IT energy is the sum of ``it_load`` meters of one Green Grid measurement category (the
configured one, or the only one metered). Subsystems: cooling (chiller, crah, pump,
cooling_tower), power-distribution losses (ups_loss, transformer_loss), lighting, and
``other = facility - it - cooling - power_loss - lighting`` (everything not sub-metered, so it
can be negative when sub-meters disagree with the incomer). Within a group a meter whose parent
(or ancestor) is in the same group is not added again.

The computation is a pure function over per-meter energies (:func:`balance_from_energies`);
:func:`energy_balance` is the thin wrapper that reads the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from typing import TypeVar

import numpy as np
from dcpue.config.calculator import CalculatorSettings
from dcpue.config.site import ConfigError, Site
from dcpue.config.topology import COOLING_ROLES, ITCategory, Meter, MeterKind, MeterRole
from dcpue.core.figures import Figure
from dcpue.core.readings import ms_to_datetime
from dcpue.core.store import Store
from dcpue.core.units import canonical_unit, unit
from dcpue.metrics.energy import (
    CounterRules,
    Intervals,
    MeterEnergy,
    Replacement,
    accumulated,
    clean_series,
    counter_intervals,
    power_intervals,
    window_energy,
)
from dcpue.metrics.events import replacements as stored_replacements

#: A float, or an array of them (one per window end): the balance formulas take either.
Num = TypeVar("Num", float, np.ndarray)

#: Metered groups of the balance, in report order, with the roles that make them up.
GROUP_ROLES: dict[str, frozenset[MeterRole]] = {
    "grid_import": frozenset({MeterRole.GRID_IMPORT}),
    "grid_export": frozenset({MeterRole.GRID_EXPORT}),
    "pv_generation": frozenset({MeterRole.PV_GENERATION}),
    "battery_charge": frozenset({MeterRole.BATTERY_CHARGE}),
    "battery_discharge": frozenset({MeterRole.BATTERY_DISCHARGE}),
    "outside_boundary": frozenset(),  # configured meter ids, see BalanceTopology.from_site
    "it": frozenset({MeterRole.IT_LOAD}),
    "cooling": COOLING_ROLES,
    "power_loss": frozenset({MeterRole.UPS_LOSS, MeterRole.TRANSFORMER_LOSS}),
    "lighting": frozenset({MeterRole.LIGHTING}),
    "reused_heat": frozenset({MeterRole.REUSED_HEAT}),
    "water": frozenset({MeterRole.WATER}),
}
#: Groups whose meters make up total facility energy (PUE numerator).
FACILITY_GROUPS = (
    "grid_import", "grid_export", "pv_generation", "battery_charge", "battery_discharge",
    "outside_boundary",
)
FACILITY_FORMULA = (
    "grid_import - grid_export + pv_generation + battery_discharge - battery_charge"
    " - outside_boundary"
)


@dataclass(frozen=True)
class BalanceTopology:
    """Which meters feed each group of the balance (resolved once from the site)."""

    groups: dict[str, tuple[str, ...]]
    meters: dict[str, Meter]
    it_category: ITCategory

    @classmethod
    def from_site(cls, site: Site) -> BalanceTopology:
        """Resolve groups from roles and ``[calculator]``; raise :class:`ConfigError` if unusable."""
        settings = site.calculator
        by_id = site.meter_by_id
        outside = tuple(settings.outside_boundary)
        for mid in outside:
            if mid not in by_id:
                raise ConfigError(f"calculator.outside_boundary: unknown meter {mid!r}")
            if by_id[mid].role is not MeterRole.OTHER_LOAD:
                raise ConfigError(
                    f"calculator.outside_boundary: meter {mid!r} has role {by_id[mid].role},"
                    " only other_load meters can lie outside the boundary"
                )
        categories = {m.it_category for m in site.meters_with(MeterRole.IT_LOAD)}
        category = settings.it_category
        if category is None:
            if len(categories) > 1:
                names = ", ".join(sorted(c.value for c in categories if c is not None))
                raise ConfigError(
                    f"calculator.it_category: IT is metered at several categories ({names});"
                    " choose one"
                )
            category = next(iter(categories))
        elif category not in categories:
            raise ConfigError(f"calculator.it_category: no it_load meter of category {category}")
        assert category is not None
        groups: dict[str, tuple[str, ...]] = {}
        for name, roles in GROUP_ROLES.items():
            members = [
                m for m in site.meters
                if (m.id in outside if name == "outside_boundary" else m.role in roles)
                and (name != "it" or m.it_category is category)
            ]
            groups[name] = _outermost(members, by_id)
        used = {mid for ids in groups.values() for mid in ids}
        # In site order (not the set's, which varies with string hashing per process): the
        # daemon's saved calculator state is laid out by this order.
        return cls(groups, {m.id: m for m in site.meters if m.id in used}, category)

    @cached_property
    def all_meters(self) -> tuple[str, ...]:
        """Every meter the balance reads, in site order."""
        return tuple(self.meters)

    @cached_property
    def rows(self) -> dict[str, int]:
        """Each meter's row in :attr:`all_meters` order (the array form's layout)."""
        return {m: i for i, m in enumerate(self.all_meters)}

    @cached_property
    def meter_kinds(self) -> dict[str, MeterKind]:
        return {mid: m.kind for mid, m in self.meters.items()}

    @cached_property
    def facility_and_it(self) -> tuple[str, ...]:
        """The meters of the facility groups and IT (what a balance's coverage rests on)."""
        return tuple(m for g in (*FACILITY_GROUPS, "it") for m in self.groups[g])


def _outermost(members: list[Meter], by_id: Mapping[str, Meter]) -> tuple[str, ...]:
    """Meter ids of ``members`` without those whose ancestor is also a member."""
    ids = {m.id for m in members}
    out = []
    for m in members:
        parent, seen = m.parent, set()
        while parent is not None and parent not in ids and parent not in seen:
            seen.add(parent)
            parent = by_id[parent].parent
        if parent is None or parent not in ids:
            out.append(m.id)
    return tuple(out)


@dataclass(frozen=True)
class EnergyBalance:
    """Energy flows of the data center over ``[start_ms, end_ms)`` (UTC epoch ms).

    All ``*_kwh`` in kWh, ``water_m3`` in m3. ``coverage`` (0..1) is the lowest coverage of the
    meters facility and IT energy are made of, i.e. what PUE over this window rests on.
    ``groups`` maps each group to its meter ids and ``meter_energy`` holds each meter's
    amount (bridged where :func:`balance_from_energies` bridged it), coverage and events, the
    audit trail of :meth:`figures`. ``pv_inside_kwh`` is the PV energy consumed inside the
    boundary (see :func:`pv_inside`).
    """

    start_ms: int
    end_ms: int
    grid_import_kwh: float
    grid_export_kwh: float
    pv_generation_kwh: float
    pv_self_consumed_kwh: float
    battery_charge_kwh: float
    battery_discharge_kwh: float
    facility_kwh: float
    it_kwh: float
    cooling_kwh: float
    power_loss_kwh: float
    lighting_kwh: float
    other_kwh: float
    reused_heat_kwh: float
    water_m3: float
    coverage: float
    outside_boundary_kwh: float = 0.0
    it_category: ITCategory = ITCategory.UPS_OUTPUT
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    meter_energy: Mapping[str, MeterEnergy] = field(default_factory=dict)
    meter_kinds: Mapping[str, MeterKind] = field(default_factory=dict)
    pv_inside_kwh: float | None = None
    bridged: Mapping[str, float] = field(default_factory=dict)
    #: PV that reached the facility through the battery (set by the provenance ledger,
    #: :func:`dcpue.metrics.provenance.with_origin`; None: the window rule :func:`pv_inside`).
    pv_stored_kwh: float | None = None

    def __post_init__(self) -> None:
        if self.pv_inside_kwh is None:
            object.__setattr__(self, "pv_inside_kwh", float(pv_inside(
                self.pv_generation_kwh, self.grid_export_kwh, self.facility_kwh,
                self.outside_boundary_kwh, self.battery_charge_kwh)))

    @property
    def grid_inside_kwh(self) -> float:
        """Grid electricity used inside the boundary (:func:`grid_inside`)."""
        assert self.pv_inside_kwh is not None
        return float(grid_inside(self.grid_import_kwh, self.battery_discharge_kwh,
                                 self.facility_kwh, self.pv_inside_kwh))

    def group_coverage(self, *names: str) -> float:
        """Lowest coverage of the meters in ``names`` groups (1.0 when they have none)."""
        return self.group_summary(names)[1]

    def group_meters(self, *names: str) -> tuple[str, ...]:
        return self.group_summary(names)[0]

    def quality(self, *names: str) -> str:
        """The data-quality errors of the meters in ``names`` groups ('' when none)."""
        return self.group_summary(names)[2]

    def group_summary(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], float, str]:
        """Meters, lowest coverage and data-quality errors of ``names`` groups, worked out
        once per balance (its figures ask for the same few group sets again and again)."""
        hit = self._groups_seen.get(names)
        if hit is None:
            groups, by_meter = self.groups, self.meter_energy
            meters = tuple(m for n in names for m in groups.get(n, ()))
            energies = [by_meter[m] for m in meters]
            hit = (meters, min([e.coverage for e in energies], default=1.0),
                   "; ".join(q for e in energies if e.events and (q := e.quality)))
            self._groups_seen[names] = hit
        return hit

    @cached_property
    def _groups_seen(self) -> dict[tuple[str, ...], tuple[tuple[str, ...], float, str]]:
        return {}

    def figures(self) -> dict[str, Figure]:
        """Every flow as a :class:`Figure` with its meters, window, coverage and formula."""
        return dict(self._figures)

    @cached_property
    def _figures(self) -> dict[str, Figure]:
        def fig(name: str, value: float, groups: tuple[str, ...], formula: str,
                inputs: tuple[Figure, ...] = (), unit_: str = "kWh") -> Figure:
            meters, coverage, cause = self.group_summary(groups)
            return Figure(
                name, None if cause else value, unit_, formula, self.start_ms, self.end_ms,
                coverage, meters, inputs,
                note=cause, extra={"status": DATA_QUALITY_ERROR, "cause": cause} if cause
                else {},
            )

        out: dict[str, Figure] = {}
        for name in GROUP_ROLES:
            if name == "water":
                continue
            value = self.outside_boundary_kwh if name == "outside_boundary" else getattr(
                self, f"{name}_kwh"
            )
            out[name] = fig(name, value, (name,), _group_formula(name, self.it_category),
                            tuple(self._meter_figures(name)))
        out["water"] = fig("water", self.water_m3, ("water",), "sum of water meters",
                           tuple(self._meter_figures("water")), "m3")
        out["facility"] = fig(
            "facility", self.facility_kwh, FACILITY_GROUPS, FACILITY_FORMULA,
            tuple(out[g] for g in FACILITY_GROUPS),
        )
        out["pv_self_consumed"] = fig(
            "pv_self_consumed", self.pv_self_consumed_kwh, ("pv_generation", "grid_export"),
            "max(pv_generation - grid_export, 0)", (out["pv_generation"], out["grid_export"]),
        )
        assert self.pv_inside_kwh is not None
        out["pv_inside"] = fig(
            "pv_inside", self.pv_inside_kwh, FACILITY_GROUPS,
            PV_INSIDE_FORMULA if self.pv_stored_kwh is None else PV_LEDGER_FORMULA,
            (out["pv_self_consumed"], out["facility"], out["outside_boundary"],
             out["battery_charge"], out["battery_discharge"]),
        )
        if self.pv_stored_kwh is not None:
            out["pv_inside"].extra["pv_stored_kwh"] = self.pv_stored_kwh
        out["grid_inside"] = fig(
            "grid_inside", self.grid_inside_kwh, FACILITY_GROUPS,
            "min(grid_import + battery_discharge, facility - pv_inside)",
            (out["grid_import"], out["battery_discharge"], out["facility"], out["pv_inside"]),
        )
        parts = ("it", "cooling", "power_loss", "lighting")
        out["other"] = fig(
            "other", self.other_kwh, (*FACILITY_GROUPS, *parts),
            "facility - it - cooling - power_loss - lighting",
            (out["facility"], *(out[p] for p in parts)),
        )
        return out

    def _meter_figures(self, group: str) -> list[Figure]:
        return [self._meter_figure(mid, group) for mid in self.groups.get(group, ())]

    def _meter_figure(self, mid: str, group: str) -> Figure:
        e = self.meter_energy[mid]
        extra: dict[str, object] = {k: v for k, v in (
            ("rollovers", e.rollovers), ("resets", e.resets), ("jitter", e.jitter)) if v}
        if e.events:
            extra["events"] = [
                {"ts": ms_to_datetime(ev.ts_ms).isoformat(), "kind": ev.kind,
                 "before": ev.before, "after": ev.after, "counted": ev.counted}
                for ev in e.events
            ]
        if mid in self.bridged:
            extra["bridged"] = self.bridged[mid]
        if e.quality:
            extra.update(status=DATA_QUALITY_ERROR, cause=e.quality)
        formula = ("trapezoid of power readings" if self.meter_kinds.get(mid) is MeterKind.POWER
                   else "held-maximum counter deltas (jitter, rollover, reset, swap rules)")
        if mid in self.bridged:
            formula += "; unknown time bridged at the window's mean measured rate"
        return Figure(mid, e.amount, "m3" if group == "water" else "kWh", formula,
                      self.start_ms, self.end_ms, e.coverage, (mid,), extra=extra)


#: How far outside a window :func:`stored_intervals` reads samples (ms).
LOOKAROUND_MS = 6 * 3_600_000
#: Figure status (``extra["status"]``) of a figure built on implausible data.
DATA_QUALITY_ERROR = "data-quality error"
PV_INSIDE_FORMULA = (
    "(pv_generation - grid_export) x facility / (facility + outside_boundary + battery_charge)"
)
PV_LEDGER_FORMULA = (
    "per step: PV used as generated + PV discharged from the battery, each in proportion "
    "facility / site-bus sinks (state-of-charge provenance ledger)"
)


def pv_inside(
    pv_kwh: Num, export_kwh: Num, facility_kwh: Num, outside_kwh: Num, charge_kwh: Num,
) -> Num:
    """PV energy consumed inside the data-center boundary (kWh), by proportional allocation;
    floats or arrays of window ends alike.

    Exports are on-site surplus, so they come out of PV first; the PV left on site is shared
    by the site-bus consumers (the data center, loads outside the boundary, the battery
    charge) in proportion to their energy, the allocation rule The Green Grid and ISO/IEC
    30134-3 leave to the operator to state for on-site renewables shared across a boundary.
    It never exceeds facility energy, so REF and the renewable share stay <= 1.
    """
    local_pv = np.maximum(pv_kwh - export_kwh, 0.0)
    facility = np.maximum(facility_kwh, 0.0)
    consumers = facility + np.maximum(outside_kwh, 0.0) + np.maximum(charge_kwh, 0.0)
    # no consumers means no facility energy either: 0 / 1
    return np.minimum(local_pv * facility / (consumers + (consumers <= 0)), facility)


def grid_inside(
    grid_import_kwh: Num, discharge_kwh: Num, facility_kwh: Num, pv_inside_kwh: Num
) -> Num:
    """Grid electricity used inside the boundary (kWh): facility - PV inside, at most what came
    from the grid directly or through the battery (grid import + battery discharge)."""
    return np.minimum(grid_import_kwh + discharge_kwh,
                      np.maximum(facility_kwh - pv_inside_kwh, 0.0))


def facility_of(t: Mapping[str, Num]) -> Num:
    """Facility energy from the group totals ``t`` (:data:`FACILITY_FORMULA`)."""
    return (t["grid_import"] - t["grid_export"] + t["pv_generation"] + t["battery_discharge"]
            - t["battery_charge"] - t["outside_boundary"])


def other_of(t: Mapping[str, Num], facility: Num) -> Num:
    """Facility energy not sub-metered: facility - it - cooling - power_loss - lighting."""
    return facility - t["it"] - t["cooling"] - t["power_loss"] - t["lighting"]


@dataclass(frozen=True)
class BalanceArrays:
    """The balances of one window length at ``n`` window ends, as arrays (values only: the
    audit trail is :class:`EnergyBalance`'s, which :func:`balance_from_energies` builds for
    one window from the same formulas). What the rolling calculator's write-back and alert
    evaluation read every minute, computed for an hour of window ends at once.

    Flows in kWh (``water_m3`` in m3) per window end, attribute names as EnergyBalance's so
    the indicators (:mod:`dcpue.metrics.indicators`) read either. ``coverage`` and ``error``
    are per meter (rows in ``topology.all_meters`` order) and window end: the measured share
    and whether a data-quality event falls inside the window.
    """

    topology: BalanceTopology
    start_ms: np.ndarray
    end_ms: np.ndarray
    totals: Mapping[str, np.ndarray]
    coverage: np.ndarray
    error: np.ndarray

    @property
    def it_kwh(self) -> np.ndarray:
        return self.totals["it"]

    @property
    def cooling_kwh(self) -> np.ndarray:
        return self.totals["cooling"]

    @property
    def power_loss_kwh(self) -> np.ndarray:
        return self.totals["power_loss"]

    @property
    def reused_heat_kwh(self) -> np.ndarray:
        return self.totals["reused_heat"]

    @property
    def water_m3(self) -> np.ndarray:
        return self.totals["water"]

    @cached_property
    def facility_kwh(self) -> np.ndarray:
        return facility_of(self.totals)

    @cached_property
    def pv_inside_kwh(self) -> np.ndarray:
        t = self.totals
        return pv_inside(t["pv_generation"], t["grid_export"], self.facility_kwh,
                         t["outside_boundary"], t["battery_charge"])

    @cached_property
    def grid_inside_kwh(self) -> np.ndarray:
        t = self.totals
        return grid_inside(t["grid_import"], t["battery_discharge"], self.facility_kwh,
                           self.pv_inside_kwh)

    def _rows(self, names: tuple[str, ...]) -> list[int]:
        row = self.topology.rows
        return [row[m] for n in names for m in self.topology.groups.get(n, ())]

    def group_coverage(self, names: tuple[str, ...]) -> np.ndarray:
        """Lowest coverage of the meters in ``names`` groups per window end (1 without any)."""
        rows = self._rows(names)
        return self.coverage[rows].min(axis=0) if rows else np.ones(len(self.end_ms))

    def group_error(self, names: tuple[str, ...]) -> np.ndarray:
        """Whether a meter of ``names`` groups has a data-quality error, per window end."""
        rows = self._rows(names)
        return self.error[rows].any(axis=0) if rows else np.zeros(len(self.end_ms), bool)


def balance_arrays(
    topology: BalanceTopology, amount: np.ndarray, coverage: np.ndarray, known: np.ndarray,
    error: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray, *, min_coverage: float,
) -> BalanceArrays:
    """:func:`balance_from_energies` for ``n`` windows: ``amount`` (kWh, m3), ``coverage``,
    ``known`` (shares) and ``error`` (a data-quality event inside) per meter (rows in
    ``topology.all_meters`` order) and window (columns); each meter's unknown time bridged
    as :func:`bridge` does."""
    bridged = ((known < 1.0) & (known > 0.0) & (known >= min_coverage)
               & (coverage >= min_coverage))
    amount = np.where(bridged, amount / np.where(bridged, known, 1.0), amount)
    row, n = topology.rows, len(end_ms)
    totals = {g: amount[[row[m] for m in ids]].sum(axis=0) if ids else np.zeros(n)
              for g, ids in topology.groups.items()}
    return BalanceArrays(topology, start_ms, end_ms, totals, coverage, error)


@cache
def _group_formula(name: str, category: ITCategory) -> str:
    if name == "it":
        return f"sum of it_load meters at category {category.value}"
    if name == "outside_boundary":
        return "sum of load meters configured in calculator.outside_boundary"
    roles = ", ".join(sorted(r.value for r in GROUP_ROLES[name]))
    return f"sum of meters with role {roles}"


def bridge(e: MeterEnergy, min_coverage: float) -> float | None:
    """The meter's amount with its unknown time filled at its mean rate over the known time,
    or None when nothing is to be bridged or too little is known (known share below
    ``min_coverage``, so at most ``1 - min_coverage`` of a window is ever estimated)."""
    known = e.coverage if e.known is None else e.known
    if known >= 1.0 or known <= 0.0 or known < min_coverage or e.coverage < min_coverage:
        return None
    return e.amount / known


def balance_from_energies(
    topology: BalanceTopology, energies: Mapping[str, MeterEnergy], start_ms: int, end_ms: int,
    *, min_coverage: float | None = None,
) -> EnergyBalance:
    """The balance from each meter's amount in the window (missing meters: 0, coverage 0).

    With ``min_coverage``, each meter's unknown time is bridged (:func:`bridge`).
    """
    meter_energy = {
        mid: energies.get(mid, MeterEnergy(mid, 0.0, 0.0)) for mid in topology.all_meters
    }
    bridged: dict[str, float] = {}
    if min_coverage is not None:
        for mid, e in meter_energy.items():
            amount = bridge(e, min_coverage)
            if amount is not None:
                bridged[mid] = amount - e.amount
                meter_energy[mid] = replace(e, amount=amount)

    groups = topology.groups
    t = {g: float(sum([meter_energy[m].amount for m in groups[g]])) for g in GROUP_ROLES}
    facility = facility_of(t)
    other = other_of(t, facility)
    covs = [meter_energy[m].coverage for m in topology.facility_and_it]
    return EnergyBalance(
        start_ms=start_ms, end_ms=end_ms,
        grid_import_kwh=t["grid_import"], grid_export_kwh=t["grid_export"],
        pv_generation_kwh=t["pv_generation"],
        pv_self_consumed_kwh=max(t["pv_generation"] - t["grid_export"], 0.0),
        battery_charge_kwh=t["battery_charge"], battery_discharge_kwh=t["battery_discharge"],
        facility_kwh=facility, it_kwh=t["it"], cooling_kwh=t["cooling"],
        power_loss_kwh=t["power_loss"], lighting_kwh=t["lighting"], other_kwh=other,
        reused_heat_kwh=t["reused_heat"], water_m3=t["water"], coverage=min(covs, default=0.0),
        outside_boundary_kwh=t["outside_boundary"], it_category=topology.it_category,
        groups=groups, meter_energy=meter_energy, meter_kinds=topology.meter_kinds,
        bridged=bridged,
    )


def canonical_values(values: np.ndarray, units: np.ndarray, quantity: str) -> np.ndarray:
    """Values converted to the quantity's canonical unit (kWh, kW, m3) where given otherwise."""
    target = canonical_unit(quantity)
    foreign = units != target
    if not np.any(foreign):
        return values
    out = np.array(values, dtype=np.float64)
    for symbol in set(units[foreign].tolist()):
        u = unit(symbol)
        mask = units == symbol
        out[mask] = out[mask] * u.scale + u.offset
    return out


#: Roles that consume energy: negative power on them is a data-quality error.
LOAD_ROLES = frozenset({
    MeterRole.IT_LOAD, MeterRole.CHILLER, MeterRole.CRAH, MeterRole.PUMP,
    MeterRole.COOLING_TOWER, MeterRole.LIGHTING, MeterRole.UPS_LOSS,
    MeterRole.TRANSFORMER_LOSS, MeterRole.OTHER_LOAD,
})


def counter_rules(settings: CalculatorSettings | None, meter: Meter | None = None) -> CounterRules:
    """The engine's plausibility rules from ``[calculator]`` (defaults without one) and the
    meter's own ``jitter_tolerance`` (meter unit)."""
    rules = CounterRules() if settings is None else CounterRules(
        abs_tol=settings.jitter_abs, rel_tol=settings.jitter_rel,
        rollover_band=settings.rollover_band, margin=settings.ceiling_margin,
        floor_kw=settings.ceiling_floor_kw, default_max_power_kw=settings.default_max_power_kw,
    )
    if meter is not None and meter.jitter_tolerance is not None:
        rules = replace(rules, abs_tol=meter.jitter_tolerance * unit(meter.unit).scale)
    return rules


def meter_intervals(
    meter: Meter, ts_ms: np.ndarray, values: np.ndarray, max_gap_ms: float, *,
    settings: CalculatorSettings | None = None, replacements: Sequence[Replacement] = (),
    ceiling_kw: float | None = None, power: tuple[np.ndarray, np.ndarray] | None = None,
) -> Intervals:
    """Intervals of one meter's canonical-unit samples (counter or power rules).

    ``settings`` gives the plausibility rules, ``replacements`` the recorded swaps (counters),
    ``ceiling_kw`` a ceiling derived elsewhere (e.g. from the rolling calculator's history)
    when the meter configures none; ``power`` a counter's own power samples (``also =
    ["power"]``: times, kW), used only where the counter's energy is unknown.
    """
    ts, vs = clean_series(ts_ms, values)
    rules = counter_rules(settings, meter)
    ceiling = meter.max_power_kw if meter.max_power_kw is not None else ceiling_kw
    if meter.kind is MeterKind.POWER:
        return power_intervals(ts, vs, max_gap_ms, max_power_kw=ceiling,
                               load=meter.role in LOAD_ROLES, rules=rules)
    scale = unit(meter.unit).scale
    rollover = None if meter.rollover is None else meter.rollover * scale
    iv = counter_intervals(ts, vs, rollover, max_gap_ms,
                           ceiling if meter.quantity == "energy" else None, rules=rules,
                           replacements=replacements)
    if power is None:
        return iv
    pts, pkw = clean_series(*power)
    return fill_unknown(iv, power_intervals(pts, pkw, max_gap_ms, max_power_kw=ceiling,
                                            load=meter.role in LOAD_ROLES, rules=rules))


def fill_unknown(counter: Intervals, power: Intervals) -> Intervals:
    """``counter`` with the time its energy is unknown (implausible intervals, before its first
    and after its last sample) filled from ``power`` (the same meter's power readings), each
    filled piece at the mean power of the piece. The counter is preferred everywhere else, so
    the meter's energy is counted once."""
    if len(power) == 0:
        return counter
    assert counter.known is not None
    lo, hi = int(power.t0[0]), int(power.t1[-1])
    if len(counter):
        gaps = [(lo, int(counter.t0[0])), (int(counter.t1[-1]), hi)] + [
            (int(a), int(b)) for a, b in zip(counter.t0[~counter.known],
                                             counter.t1[~counter.known], strict=True)]
    else:
        gaps = [(lo, hi)]
    pieces = []
    for a, b in gaps:
        a, b = max(a, lo), min(b, hi)
        if b <= a:
            continue
        inner = power.t0[(power.t0 > a) & (power.t0 < b)]
        edges = np.unique(np.concatenate(([a], inner, [b]))).astype(np.int64)
        amount, measured = accumulated(power, edges)
        pieces.append((edges[:-1], edges[1:], np.diff(amount), np.diff(measured)))
    if not pieces:
        return counter
    keep = counter.known
    t0 = np.concatenate([counter.t0[keep], *(p[0] for p in pieces)])
    t1 = np.concatenate([counter.t1[keep], *(p[1] for p in pieces)])
    amount = np.concatenate([counter.amount[keep], *(p[2] for p in pieces)])
    dt = (t1 - t0).astype(np.float64)
    full = np.concatenate([counter.measured[keep], *(p[3] >= (p[1] - p[0]) for p in pieces)])
    known = np.concatenate([np.ones(int(keep.sum()), bool), *(p[3] > 0 for p in pieces)])
    flags = [np.concatenate([getattr(counter, f)[keep], np.zeros(len(t0) - int(keep.sum()),
                                                                 bool)])
             for f in ("rollover", "reset", "jitter")]
    order = np.argsort(t0, kind="stable")
    rate = amount / dt
    filled = {(int(p[0][0]), int(p[1][-1])) for p in pieces if (p[3] >= p[1] - p[0]).all()}
    events = tuple(
        replace(e, kind=f"{e.kind}_filled_by_power")
        if e.error and (e.start_ms, e.ts_ms) in filled else e for e in counter.events
    )
    return Intervals(t0[order], t1[order], amount[order], rate[order], rate[order],
                     full[order], flags[0][order], flags[1][order], known[order],
                     flags[2][order], events + power.events, counter.hold,
                     counter.ceiling_kw)


def read_meter(
    store: Store, meter: Meter, start_ms: int, end_ms: int, quantity: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One meter's stored samples in ``[start_ms, end_ms)``: times (ms) and canonical values
    (of ``quantity``, default the meter's main quantity)."""
    quantity = quantity or meter.quantity
    samples = store.series(meter.id, quantity, start_ms, end_ms)
    assert samples.unit is not None
    return samples.ts_ms, canonical_values(samples.value, samples.unit, quantity)


def stored_meter_intervals(
    site: Site, store: Store, meter: Meter, start_ms: int, end_ms: int,
    ceiling_kw: float | None = None, with_power: bool = True,
) -> Intervals:
    """One meter's intervals from the readings in ``[start_ms, end_ms)``, with its recorded
    swaps and (``also = ["power"]``, unless not ``with_power``) its power readings filling
    what its counter cannot."""
    max_gap_ms = site.calculator.max_gap_s * 1000.0
    power = (read_meter(store, meter, start_ms, end_ms, "power")
             if with_power and "power" in meter.also else None)
    return meter_intervals(
        meter, *read_meter(store, meter, start_ms, end_ms), max_gap_ms,
        settings=site.calculator, ceiling_kw=ceiling_kw, power=power,
        replacements=stored_replacements(store, meter) if meter.kind is MeterKind.COUNTER
        else (),
    )


def stored_intervals(
    site: Site, store: Store, start_ms: int, end_ms: int
) -> tuple[BalanceTopology, dict[str, Intervals]]:
    """The balance meters and each one's intervals from the readings covering
    ``[start_ms, end_ms)``; samples up to ``max(calculator.max_gap_s, 6 h)`` outside are read
    too, so counters and power are interpolated to the window's edges (and a counter's long
    gap across an edge keeps its share, as in the rolling calculator)."""
    topology = BalanceTopology.from_site(site)
    pad = int(max(site.calculator.max_gap_s * 1000.0, LOOKAROUND_MS))
    return topology, {
        mid: stored_meter_intervals(site, store, meter, start_ms - pad, end_ms + pad + 1)
        for mid, meter in topology.meters.items()
    }


def energy_balance(site: Site, store: Store, start_ms: int, end_ms: int) -> EnergyBalance:
    """Balance of ``[start_ms, end_ms)`` from the readings in ``store`` (unknown time bridged
    when the window's coverage meets ``min_coverage``)."""
    topology, intervals = stored_intervals(site, store, start_ms, end_ms)
    energies = {
        mid: window_energy(mid, iv, start_ms, end_ms) for mid, iv in intervals.items()
    }
    return balance_from_energies(topology, energies, start_ms, end_ms,
                                 min_coverage=site.calculator.min_coverage)
