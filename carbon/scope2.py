"""Scope 2 emissions, location- and market-based, and avoided emissions (pure functions).

Units: energy in MWh, emission factors in tCO2/MWh (numerically kgCO2/kWh), emissions in tCO2e.

Source: GHG Protocol Scope 2 Guidance (WRI/WBCSD, 2015).
- Location-based (ch. 6.2): electricity consumed x grid-average emission factor of the location,
  optionally with a time-resolved (hourly) factor, each hour's MWh x that hour's factor.
- Market-based (ch. 6.3, 6.11): MWh covered by contractual instruments at the instrument's own
  factor (0 for renewables) plus the uncovered remainder at the residual-mix factor. Which
  instruments apply to a window, and how much of each, is :mod:`dcpue.config.instruments`
  (quality criteria, proration, cap), shared with REF.
- Avoided emissions (reference operator's ESG method): MWh x one grid factor, by source.

Every function returns :class:`dcpue.core.figures.Figure` objects whose inputs are the figures
they came from, so the audit trail reaches the meters and factor sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from dcpue.config.factors import Factor, HourlyFactors, per_hour
from dcpue.config.instruments import Allocation, InstrumentClaim
from dcpue.core.figures import Figure

T_PER_MWH = "tCO2/MWh"


def _window(basis: Figure) -> dict[str, Any]:
    return {"start_ms": basis.start_ms, "end_ms": basis.end_ms, "coverage": basis.coverage}


def emissions(
    name: str, mwh: Figure, factor: Factor, unit: str = "tCO2e", formula: str = "", note: str = ""
) -> Figure:
    """``mwh`` x ``factor`` (tCO2 = MWh x tCO2/MWh); None when the energy is insufficient."""
    value = None if mwh.value is None else mwh.value * factor.value
    return Figure(
        name, value, unit, formula=formula or f"{mwh.name} [MWh] x factor [{T_PER_MWH}]",
        **_window(mwh), inputs=(mwh,), factor=factor.value, factor_unit=T_PER_MWH,
        factor_source=factor.source, note=note,
    )


def location_based_hourly(
    basis: Figure, hour_ms: np.ndarray, mwh: np.ndarray, factors: HourlyFactors, fallback: Factor
) -> Figure:
    """Location-based Scope 2 from hourly MWh x the factor of the same hour.

    ``hour_ms`` are the hour starts (UTC ms) of the consumption ``mwh``. Hours without a factor
    in the series use ``fallback`` (the site factor) and are counted in the note.
    """
    hourly, found = per_hour(factors, hour_ms, fallback.value)
    total_mwh = float(mwh.sum())
    tonnes = float((mwh * hourly).sum())
    missing = int((~found).sum())
    note = (
        f"{missing} of {len(hour_ms)} hours had no factor in the series; the site factor "
        f"{fallback.value} {T_PER_MWH} ({fallback.source}) was used for them" if missing else ""
    )
    hourly_input = Figure(
        f"{basis.name}_hourly", total_mwh, "MWh", formula="sum of hourly energy",
        **_window(basis), inputs=(basis,), extra={"hours": len(hour_ms)},
    )
    effective = tonnes / total_mwh if total_mwh else fallback.value
    return Figure(
        "scope2_location", tonnes, "tCO2e",
        formula=f"sum over hours of {basis.name} [MWh] x hourly factor [{T_PER_MWH}]",
        **_window(basis), inputs=(hourly_input,), factor=effective, factor_unit=T_PER_MWH,
        factor_source=f"hourly factors, energy-weighted mean: {factors.source}", note=note,
        extra={"hours_with_factor": len(hour_ms) - missing},
    )


def _instrument_figure(claim: InstrumentClaim, applied_mwh: float, basis: Figure) -> Figure:
    note = ""
    if applied_mwh < claim.mwh:
        note = f"capped: {claim.mwh - applied_mwh:.3f} MWh of {claim.mwh:.3f} MWh not applied"
    if not claim.qualifies:
        note = "not applied: " + "; ".join(claim.reasons)
    return Figure(
        claim.name, applied_mwh, "MWh", formula="contract MWh x share of its period in window",
        start_ms=basis.start_ms, end_ms=basis.end_ms, factor=claim.factor.value,
        factor_unit=T_PER_MWH, factor_source=claim.factor.source, note=note,
        extra={"claimed_mwh": claim.mwh, "renewable": claim.renewable, **claim.attributes},
    )


def instrument_figures(allocation: Allocation, basis: Figure) -> tuple[Figure, ...]:
    """One MWh figure per instrument: applied ones with their applied MWh, excluded with 0."""
    applied = [_instrument_figure(c, mwh, basis) for c, mwh in allocation.applied]
    excluded = [_instrument_figure(c, 0.0, basis) for c in allocation.excluded]
    return (*applied, *excluded)


def cap_note(allocation: Allocation) -> str:
    """The warning for instruments exceeding the electricity they can cover ('' if none)."""
    if allocation.excess_mwh <= 0:
        return ""
    return (
        f"instruments exceed the electricity they can cover: "
        f"{allocation.excess_mwh:,.3f} MWh not applied "
        f"(capped at {allocation.covered_mwh:,.3f} MWh)"
    )


def market_based_ghg(basis: Figure, allocation: Allocation, residual: Factor) -> Figure:
    """Market-based Scope 2 (GHG Protocol): instrument MWh x own factor + remainder x residual.

    ``basis`` is the purchased grid electricity in MWh the instruments were allocated against.
    """
    if basis.value is None:
        return Figure("scope2_market", None, "tCO2e", **_window(basis), inputs=(basis,))
    covered = instrument_figures(allocation, basis)
    remainder_mwh = max(basis.value - allocation.applied_mwh, 0.0)
    remainder = emissions(
        "scope2_market_residual",
        Figure("grid_electricity_not_covered", remainder_mwh, "MWh",
               formula=f"{basis.name} - applied instrument MWh", **_window(basis),
               inputs=(basis,)),
        residual,
    )
    tonnes = sum(mwh * claim.factor.value for claim, mwh in allocation.applied)
    tonnes += remainder.value or 0.0
    notes = [n for n in (cap_note(allocation),) if n]
    if allocation.excluded:
        notes.append(
            "instruments failing the Scope 2 quality criteria are at the residual mix: "
            + ", ".join(c.name for c in allocation.excluded)
        )
    return Figure(
        "scope2_market", tonnes, "tCO2e",
        formula="sum(instrument MWh x instrument factor) + (grid MWh - instrument MWh) x "
        "residual-mix factor (GHG Protocol Scope 2 Guidance 6.3)",
        **_window(basis), inputs=(*covered, remainder), note="; ".join(notes),
    )


def market_based_location_minus_avoided(location: Figure, avoided_renewables: Figure) -> Figure:
    """Market-based Scope 2 as the reference operator reports it: location - avoided renewables."""
    value = (
        None if location.value is None or avoided_renewables.value is None
        else location.value - avoided_renewables.value
    )
    return Figure(
        "scope2_market", value, "tCO2e",
        formula="scope2_location - avoided_renewables (reference operator's method; equals the "
        "GHG Protocol market-based total when the residual mix is the grid average)",
        **_window(location), inputs=(location, avoided_renewables),
    )


def total(name: str, unit: str, parts: Sequence[Figure]) -> Figure:
    """Sum of figures (at least one) in the same unit; None if any part is insufficient."""
    values = [p.value for p in parts]
    value = None if None in values else float(sum(v for v in values if v is not None))
    return Figure(
        name, value, unit, formula=" + ".join(p.name for p in parts),
        start_ms=parts[0].start_ms, end_ms=parts[0].end_ms, inputs=tuple(parts),
    )
