"""The PUE family of key performance indicators over one energy balance (pure functions).

Each returns a :class:`~dcpue.core.figures.Figure` whose inputs are the balance figures it
used. A figure's coverage is the lowest coverage of the meters it rests on; below
``min_coverage`` (or with a zero denominator) its value is None: "insufficient data". A figure
resting on implausible data (a meter's data-quality event in the window: an unrecorded swap,
a jump above the ceiling, a power reading above it or a negative load power; or facility
energy below IT energy, i.e. PUE < 1) has value None and ``extra["status"] = "data-quality
error"`` with the cause: never a confident wrong number.

- PUE = facility / IT energy (ISO/IEC 30134-2; The Green Grid), dimensionless.
- DCiE = IT / facility energy x 100 % (The Green Grid), the reciprocal of PUE in percent.
- pPUE of a subsystem = (IT + subsystem energy) / IT energy (The Green Grid partial PUE), for
  cooling and for power distribution losses.
- CUE = grid factor x grid electricity used by the data center / IT energy, kgCO2/kWh
  (ISO/IEC 30134-8, location-based); the grid-sourced share is facility energy minus the
  on-site PV consumed inside the boundary (:func:`dcpue.metrics.balance.pv_inside`), which
  emits nothing at use. The battery is on the site bus: its charge is not facility energy and
  its discharge is, so a window is charged for stored energy when it is used; with the
  provenance ledger (:mod:`dcpue.metrics.provenance`) the discharge keeps the origin and the
  charge-time factor of the energy stored (PV charged at noon is PV at night).
- REF = (on-site PV consumed inside the boundary + purchased green power) / facility energy
  (ISO/IEC 30134-3); the instruments are capped at the grid electricity used inside the
  boundary, so REF <= 1.
- ERF = energy reused outside the data center / facility energy (ISO/IEC 30134-6).
- WUE = site water use in litres / IT energy in kWh, L/kWh (ISO/IEC 30134-9, WUE category 1).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from dcpue.config.instruments import purchased_green_kwh
from dcpue.config.site import Site
from dcpue.core.figures import Figure, LazyInputs
from dcpue.metrics.balance import (
    DATA_QUALITY_ERROR,
    FACILITY_GROUPS,
    BalanceArrays,
    EnergyBalance,
)
from dcpue.metrics.provenance import LEDGER_NOTE, Origin, has_battery, with_origin

LITRES_PER_M3 = 1000.0


@dataclass(frozen=True, slots=True)
class Terms:
    """What an indicator takes besides the balance: the grid factor (kgCO2/kWh) and the
    purchased green power allocated to the window (kWh, capped at the grid electricity used
    inside the boundary; an array per window end for :class:`BalanceArrays`)."""

    factor: float = 0.0
    green: float | np.ndarray = 0.0


@dataclass(frozen=True, slots=True)
class Ratio:
    """One indicator: ``scale x numerator / denominator`` over the meters of ``groups``;
    ``inputs`` names the balance figures it is computed from (its audit trail); ``requires``
    a group the site must meter for the indicator to exist (pPUE, WUE); ``factored``: it
    carries the grid factor (CUE). The numerator and
    denominator read an :class:`EnergyBalance` or a :class:`BalanceArrays` alike."""

    name: str
    unit: str
    formula: str
    groups: tuple[str, ...]
    inputs: tuple[str, ...]
    numerator: Callable[[Any, Terms], Any]
    denominator: Callable[[Any], Any]
    scale: float = 1.0
    requires: str | None = None
    #: whether the figure carries the grid factor (CUE)
    factored: bool = False

    @property
    def checks_pue_below_one(self) -> bool:
        """Whether facility energy below IT energy makes it a data-quality error."""
        return "it" in self.groups and "grid_import" in self.groups


_FACILITY_IT = (*FACILITY_GROUPS, "it")
RATIOS: dict[str, Ratio] = {r.name: r for r in (
    Ratio("pue", "1", "facility / it", _FACILITY_IT, ("facility", "it"),
          lambda b, t: b.facility_kwh, lambda b: b.it_kwh),
    Ratio("dcie", "%", "it / facility x 100", _FACILITY_IT, ("it", "facility"),
          lambda b, t: b.it_kwh, lambda b: b.facility_kwh, scale=100.0),
    Ratio("ppue_cooling", "1", "(it + cooling) / it", ("it", "cooling"), ("it", "cooling"),
          lambda b, t: b.it_kwh + b.cooling_kwh, lambda b: b.it_kwh, requires="cooling"),
    Ratio("ppue_power", "1", "(it + power_loss) / it", ("it", "power_loss"),
          ("it", "power_loss"), lambda b, t: b.it_kwh + b.power_loss_kwh, lambda b: b.it_kwh,
          requires="power_loss"),
    Ratio("cue", "kgCO2/kWh", "factor x (facility - pv_inside) / it", _FACILITY_IT,
          ("facility", "pv_inside", "it"),
          lambda b, t: t.factor * np.maximum(b.facility_kwh - b.pv_inside_kwh, 0.0),
          lambda b: b.it_kwh, factored=True),
    Ratio("ref", "1", "(pv_inside + purchased_green) / facility", FACILITY_GROUPS,
          ("pv_inside", "facility"), lambda b, t: b.pv_inside_kwh + t.green,
          lambda b: b.facility_kwh),
    Ratio("erf", "1", "reused_heat / facility", (*FACILITY_GROUPS, "reused_heat"),
          ("reused_heat", "facility"), lambda b, t: b.reused_heat_kwh, lambda b: b.facility_kwh),
    Ratio("wue", "L/kWh", "water x 1000 / it", ("water", "it"), ("water", "it"),
          lambda b, t: b.water_m3, lambda b: b.it_kwh, scale=LITRES_PER_M3, requires="water"),
)}


def _ratio(
    b: EnergyBalance, r: Ratio, terms: Terms, min_coverage: float,
    factor_source: str | None = None, extra_inputs: tuple[Figure, ...] = (),
) -> Figure | None:
    """The figure of ``r`` over one balance (None when the site lacks its ``requires``)."""
    if r.requires is not None and not b.groups.get(r.requires):
        return None
    numerator, denominator = float(r.numerator(b, terms)), float(r.denominator(b))
    meters, coverage, cause = b.group_summary(r.groups)
    note = ""
    if not cause and r.checks_pue_below_one and b.facility_kwh < b.it_kwh:
        cause = (f"facility energy {b.facility_kwh:,.6g} kWh is below IT energy "
                 f"{b.it_kwh:,.6g} kWh (PUE < 1): a meter or the boundary is wrong")
    if cause:
        note = cause
    elif coverage < min_coverage:
        note = f"coverage {coverage:.3f} below the threshold {min_coverage:.3f}"
    elif denominator <= 0:
        note = "denominator is zero: nothing measured"
    value = None if note else r.scale * numerator / denominator
    factor = terms.factor if r.factored else None
    return Figure(
        r.name, value, r.unit, r.formula, b.start_ms, b.end_ms, coverage, meters,
        LazyInputs(lambda: tuple(b.figures()[k] for k in r.inputs) + extra_inputs),
        factor=factor, factor_unit=None if factor is None else "kgCO2/kWh",
        factor_source=factor_source if factor is not None else None, note=note,
        extra={"status": DATA_QUALITY_ERROR, "cause": cause} if cause else {},
    )


def ratio_values(b: BalanceArrays, r: Ratio, terms: Terms, min_coverage: float) -> np.ndarray:
    """The values of ``r`` at each of ``b``'s window ends, NaN where :func:`_ratio` gives no
    value (a data-quality error, coverage below ``min_coverage``, a zero denominator)."""
    numerator, denominator = r.numerator(b, terms), r.denominator(b)
    bad = b.group_error(r.groups)
    if r.checks_pue_below_one:
        bad = bad | (b.facility_kwh < b.it_kwh)
    ok = ~bad & (b.group_coverage(r.groups) >= min_coverage) & (denominator > 0)
    return np.where(ok, r.scale * numerator / np.where(ok, denominator, 1.0), np.nan)


def pue(b: EnergyBalance, min_coverage: float) -> Figure:
    """Power usage effectiveness = facility / IT energy."""
    fig = _ratio(b, RATIOS["pue"], Terms(), min_coverage)
    assert fig is not None
    return fig


def dcie(b: EnergyBalance, min_coverage: float) -> Figure:
    """Data-center infrastructure efficiency = IT / facility energy, in percent."""
    fig = _ratio(b, RATIOS["dcie"], Terms(), min_coverage)
    assert fig is not None
    return fig


def ppue(b: EnergyBalance, subsystem: str, min_coverage: float) -> Figure | None:
    """Partial PUE of ``cooling`` or ``power_loss``; None when the site has no such meters."""
    name = {"cooling": "ppue_cooling", "power_loss": "ppue_power"}[subsystem]
    return _ratio(b, RATIOS[name], Terms(), min_coverage)


def cue(b: EnergyBalance, factor_kg_per_kwh: float, factor_source: str,
        min_coverage: float) -> Figure:
    """Carbon usage effectiveness in kgCO2/kWh IT (location-based grid factor in kg/kWh)."""
    fig = _ratio(b, RATIOS["cue"], Terms(factor=factor_kg_per_kwh), min_coverage,
                 factor_source)
    assert fig is not None
    return fig


def ref(b: EnergyBalance, min_coverage: float, purchased_green_kwh: float = 0.0) -> Figure:
    """Renewable energy factor = (PV consumed inside the boundary + purchased green power) /
    facility; ``purchased_green_kwh`` is capped at the grid electricity used inside."""
    green = min(purchased_green_kwh, b.grid_inside_kwh)
    extra = (Figure("purchased_green", green, "kWh",
                    note="contractual green power allocated to the window, capped at the grid "
                    "electricity used inside the boundary"),) if purchased_green_kwh else ()
    fig = _ratio(b, RATIOS["ref"], Terms(green=green), min_coverage, extra_inputs=extra)
    assert fig is not None
    return fig


def erf(b: EnergyBalance, min_coverage: float) -> Figure:
    """Energy reuse factor = reused energy / facility (0 when no heat reuse is metered)."""
    fig = _ratio(b, RATIOS["erf"], Terms(), min_coverage)
    assert fig is not None
    return fig


def wue(b: EnergyBalance, min_coverage: float) -> Figure | None:
    """Water usage effectiveness in L/kWh IT; None when the site has no water meters."""
    return _ratio(b, RATIOS["wue"], Terms(), min_coverage)


def indicators(
    b: EnergyBalance,
    min_coverage: float,
    factor_kg_per_kwh: float,
    factor_source: str,
    purchased_green_kwh: float = 0.0,
    names: Collection[str] | None = None,
) -> dict[str, Figure]:
    """Every indicator the site's meters allow, keyed by name (pue, dcie, ppue_cooling, ...);
    with ``names``, only those."""
    compute: dict[str, Callable[[], Figure | None]] = {
        "pue": lambda: pue(b, min_coverage),
        "dcie": lambda: dcie(b, min_coverage),
        "ppue_cooling": lambda: ppue(b, "cooling", min_coverage),
        "ppue_power": lambda: ppue(b, "power_loss", min_coverage),
        "cue": lambda: cue(b, factor_kg_per_kwh, factor_source, min_coverage),
        "ref": lambda: ref(b, min_coverage, purchased_green_kwh),
        "erf": lambda: erf(b, min_coverage),
        "wue": lambda: wue(b, min_coverage),
    }
    figures = {name: f() for name, f in compute.items() if names is None or name in names}
    return {name: fig for name, fig in figures.items() if fig is not None}


def site_indicator_values(
    site: Site, b: BalanceArrays, names: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """The values of :func:`site_indicators` at each of ``b``'s window ends (NaN: no value),
    for a site whose windows need no origin (no battery, no hourly factors): the flat
    ``[grid]`` factor, REF with the renewable instruments applied to each window."""
    grid_inside = b.grid_inside_kwh
    if site.carbon.instruments and (names is None or "ref" in names):
        bought = np.array([
            purchased_green_kwh(site, int(s), int(e), float(g))
            for s, e, g in zip(b.start_ms, b.end_ms, grid_inside, strict=True)])
        green: float | np.ndarray = np.minimum(bought, grid_inside)
    else:
        green = 0.0
    terms = Terms(site.grid.emission_factor_t_per_mwh, green)
    return {
        name: ratio_values(b, r, terms, site.calculator.min_coverage)
        for name, r in RATIOS.items()
        if (names is None or name in names)
        and (r.requires is None or b.topology.groups.get(r.requires))
    }


def site_indicators(
    site: Site, b: EnergyBalance, origin: Origin | None = None,
    names: Collection[str] | None = None,
) -> dict[str, Figure]:
    """:func:`indicators` with the site's coverage threshold and grid factor, REF counting the
    renewable instruments applied to the window as the carbon report does (ISO/IEC 30134-3).

    ``origin`` (:func:`dcpue.metrics.provenance.stored_origin`) is where the window's facility
    energy came from: with a battery, PV inside and grid inside follow the stored energy's
    origin (PV charged at noon and discharged at night is PV), and CUE's factor is the
    energy-weighted mean over the grid electricity used inside, stored grid energy at the
    factors of the steps it was charged in; with hourly factors, each step's factor. Without
    it: the flat ``[grid]`` factor and the window rule. ``names``: only those indicators.

    Instruments cover at most the grid electricity used inside the boundary, so REF <= 1.
    """
    factor, source = site.grid.emission_factor_t_per_mwh, site.grid.source
    if origin is not None:
        b = with_origin(b, origin)
        factor = origin.factor if origin.factor is not None else factor
        source = origin_source(site, origin, has_battery(b))
    green = (purchased_green_kwh(site, b.start_ms, b.end_ms, b.grid_inside_kwh)
             if names is None or "ref" in names else 0.0)
    return indicators(b, site.calculator.min_coverage, factor, source, green, names)


def origin_source(site: Site, origin: Origin, battery: bool) -> str:
    """The factor source of CUE over ``origin``: the hourly series or the site factor, with
    the steps that lacked an hourly factor and the battery ledger named."""
    if site.carbon.hourly_factors_csv is None:
        parts = [site.grid.source]
    else:
        parts = [f"hourly factors, energy-weighted mean: {site.carbon.hourly_factors_source}"]
        if origin.steps_without_factor:
            parts.append(
                f"{origin.steps_without_factor} of {origin.steps} steps had no factor in the "
                f"series; the site factor {site.grid.emission_factor_t_per_mwh} "
                f"({site.grid.source}) was used for them")
    if battery:
        parts.append(LEDGER_NOTE)
        if origin.unknown_stored_kwh > 0:
            parts.append(f"{origin.unknown_stored_kwh:,.6g} kWh of battery discharge had no "
                         "recorded charge in the ledger: counted as grid at its own step")
    return "; ".join(parts)
