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

from dcpue.config.instruments import purchased_green_kwh
from dcpue.config.site import Site
from dcpue.core.figures import Figure, LazyInputs
from dcpue.metrics.balance import DATA_QUALITY_ERROR, FACILITY_GROUPS, EnergyBalance
from dcpue.metrics.provenance import LEDGER_NOTE, Origin, has_battery, with_origin

LITRES_PER_M3 = 1000.0


def _ratio(
    b: EnergyBalance,
    name: str,
    unit: str,
    numerator: float,
    denominator: float,
    formula: str,
    groups: tuple[str, ...],
    inputs: tuple[str, ...],
    min_coverage: float,
    scale: float = 1.0,
    factor: float | None = None,
    factor_source: str | None = None,
    extra_inputs: tuple[Figure, ...] = (),
) -> Figure:
    """The figure ``scale x numerator / denominator`` over ``groups``; ``inputs`` names the
    balance figures it is computed from (its audit trail, built only when read)."""
    meters, coverage, cause = b.group_summary(groups)
    note = ""
    if not cause and b.facility_kwh < b.it_kwh and "it" in groups and "grid_import" in groups:
        cause = (f"facility energy {b.facility_kwh:,.6g} kWh is below IT energy "
                 f"{b.it_kwh:,.6g} kWh (PUE < 1): a meter or the boundary is wrong")
    if cause:
        note = cause
    elif coverage < min_coverage:
        note = f"coverage {coverage:.3f} below the threshold {min_coverage:.3f}"
    elif denominator <= 0:
        note = "denominator is zero: nothing measured"
    value = None if note else scale * numerator / denominator
    return Figure(
        name, value, unit, formula, b.start_ms, b.end_ms, coverage, meters,
        LazyInputs(lambda: tuple(b.figures()[k] for k in inputs) + extra_inputs),
        factor=factor, factor_unit=None if factor is None else "kgCO2/kWh",
        factor_source=factor_source, note=note,
        extra={"status": DATA_QUALITY_ERROR, "cause": cause} if cause else {},
    )


def pue(b: EnergyBalance, min_coverage: float) -> Figure:
    """Power usage effectiveness = facility / IT energy."""
    return _ratio(b, "pue", "1", b.facility_kwh, b.it_kwh, "facility / it",
                  (*FACILITY_GROUPS, "it"), ("facility", "it"), min_coverage)


def dcie(b: EnergyBalance, min_coverage: float) -> Figure:
    """Data-center infrastructure efficiency = IT / facility energy, in percent."""
    return _ratio(b, "dcie", "%", b.it_kwh, b.facility_kwh, "it / facility x 100",
                  (*FACILITY_GROUPS, "it"), ("it", "facility"), min_coverage, 100.0)


def ppue(b: EnergyBalance, subsystem: str, min_coverage: float) -> Figure | None:
    """Partial PUE of ``cooling`` or ``power_loss``; None when the site has no such meters."""
    if not b.groups.get(subsystem):
        return None
    name = {"cooling": "ppue_cooling", "power_loss": "ppue_power"}[subsystem]
    return _ratio(b, name, "1", b.it_kwh + getattr(b, f"{subsystem}_kwh"), b.it_kwh,
                  f"(it + {subsystem}) / it", ("it", subsystem), ("it", subsystem),
                  min_coverage)


def cue(b: EnergyBalance, factor_kg_per_kwh: float, factor_source: str,
        min_coverage: float) -> Figure:
    """Carbon usage effectiveness in kgCO2/kWh IT (location-based grid factor in kg/kWh)."""
    assert b.pv_inside_kwh is not None
    grid_kwh = max(b.facility_kwh - b.pv_inside_kwh, 0.0)
    return _ratio(
        b, "cue", "kgCO2/kWh", factor_kg_per_kwh * grid_kwh, b.it_kwh,
        "factor x (facility - pv_inside) / it", (*FACILITY_GROUPS, "it"),
        ("facility", "pv_inside", "it"), min_coverage,
        factor=factor_kg_per_kwh, factor_source=factor_source,
    )


def ref(b: EnergyBalance, min_coverage: float, purchased_green_kwh: float = 0.0) -> Figure:
    """Renewable energy factor = (PV consumed inside the boundary + purchased green power) /
    facility; ``purchased_green_kwh`` is capped at the grid electricity used inside."""
    assert b.pv_inside_kwh is not None
    green = min(purchased_green_kwh, b.grid_inside_kwh)
    extra = (Figure("purchased_green", green, "kWh",
                    note="contractual green power allocated to the window, capped at the grid "
                    "electricity used inside the boundary"),) if purchased_green_kwh else ()
    return _ratio(b, "ref", "1", b.pv_inside_kwh + green, b.facility_kwh,
                  "(pv_inside + purchased_green) / facility", FACILITY_GROUPS,
                  ("pv_inside", "facility"), min_coverage, extra_inputs=extra)


def erf(b: EnergyBalance, min_coverage: float) -> Figure:
    """Energy reuse factor = reused energy / facility (0 when no heat reuse is metered)."""
    return _ratio(b, "erf", "1", b.reused_heat_kwh, b.facility_kwh, "reused_heat / facility",
                  (*FACILITY_GROUPS, "reused_heat"), ("reused_heat", "facility"),
                  min_coverage)


def wue(b: EnergyBalance, min_coverage: float) -> Figure | None:
    """Water usage effectiveness in L/kWh IT; None when the site has no water meters."""
    if not b.groups.get("water"):
        return None
    return _ratio(b, "wue", "L/kWh", b.water_m3, b.it_kwh, "water x 1000 / it",
                  ("water", "it"), ("water", "it"), min_coverage, LITRES_PER_M3)


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
