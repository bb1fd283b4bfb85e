"""Contractual instruments applied to a window: claims, quality criteria, cap (pure).

Below both :mod:`dcpue.metrics` (REF, ISO/IEC 30134-3, counts purchased green power) and
:mod:`dcpue.carbon` (market-based Scope 2), so both apply the instruments with one set of rules.

Source: GHG Protocol Scope 2 Guidance (WRI/WBCSD, 2015). Instruments are applied only if they
meet the Scope 2 Quality Criteria (table 7.1) checked here: tracked and retired
(``traceable``), same market as the consumption (``same_market``), vintage close to the period.
An instrument contributes its MWh x the share of its period inside the window (proration by
time), and instruments are capped at the electricity they can cover; the excess is not claimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dcpue.config.carbon import Instrument
from dcpue.config.factors import Factor
from dcpue.config.site import Site
from dcpue.core.periods import date_ms, overlap_share


@dataclass(frozen=True, slots=True)
class InstrumentClaim:
    """The part of a contractual instrument that falls in a reporting window.

    ``mwh`` is the instrument's MWh x the share of its period inside the window; ``reasons`` lists
    the Scope 2 Quality Criteria it fails (empty: it qualifies).
    """

    name: str
    type: str
    mwh: float
    factor: Factor
    renewable: bool
    reasons: tuple[str, ...]
    attributes: dict[str, Any]

    @property
    def qualifies(self) -> bool:
        return not self.reasons


@dataclass(frozen=True, slots=True)
class Allocation:
    """Qualifying instruments applied against the electricity they may cover.

    ``applied`` pairs each claim with the MWh actually applied (claims are applied in
    configuration order until the covered electricity is exhausted); ``excess_mwh`` is the
    qualifying MWh beyond it, not claimed; ``excluded`` failed the quality criteria.
    """

    applied: tuple[tuple[InstrumentClaim, float], ...]
    excluded: tuple[InstrumentClaim, ...]
    covered_mwh: float
    excess_mwh: float

    @property
    def applied_mwh(self) -> float:
        return sum(mwh for _, mwh in self.applied)

    @property
    def renewable_mwh(self) -> float:
        return sum(mwh for claim, mwh in self.applied if claim.renewable)


def instrument_claims(
    instruments: Sequence[Instrument],
    window_start_ms: int,
    window_end_ms: int,
    zone: ZoneInfo,
    max_vintage_gap_years: int,
) -> list[InstrumentClaim]:
    """Claims of the instruments overlapping the window, prorated by time, with criteria verdicts.

    An instrument covering a year contributes a twelfth-ish to each month (by duration); its
    vintage must lie within ``max_vintage_gap_years`` of the window's years.
    """
    first_year = datetime.fromtimestamp(window_start_ms / 1000, zone).year
    last_year = datetime.fromtimestamp((window_end_ms - 1) / 1000, zone).year
    claims = []
    for inst in instruments:
        start, end = date_ms(inst.start, zone), date_ms(inst.end, zone)
        share = overlap_share(start, end, window_start_ms, window_end_ms)
        if share == 0:
            continue
        reasons = []
        if not inst.traceable:
            reasons.append("not tracked and retired on a registry (quality criterion: tracking)")
        if not inst.same_market:
            reasons.append("not from the market where the electricity is consumed "
                           "(quality criterion: market boundary)")
        if inst.vintage is not None and not (
            first_year - max_vintage_gap_years <= inst.vintage <= last_year + max_vintage_gap_years
        ):
            reasons.append(
                f"vintage {inst.vintage} more than {max_vintage_gap_years} year(s) from the "
                "reporting period (quality criterion: vintage)"
            )
        attributes = {
            "type": inst.type.value,
            "period": {"start": inst.start.isoformat(), "end": inst.end.isoformat()},
            "contract_mwh": inst.mwh,
            "share_in_window": share,
            "additional": inst.additional,
            "traceable": inst.traceable,
            "same_market": inst.same_market,
            "vintage": inst.vintage,
        }
        attributes.update({k: v for k, v in (
            ("technology", inst.technology), ("reference", inst.reference)
        ) if v})
        source = inst.source or f"contractual instrument {inst.name!r}"
        claims.append(InstrumentClaim(
            inst.name, inst.type.value, inst.mwh * share,
            Factor(inst.emission_factor_t_per_mwh, source), inst.renewable, tuple(reasons),
            attributes,
        ))
    return claims


def allocate(claims: Sequence[InstrumentClaim], covered_mwh: float) -> Allocation:
    """Apply qualifying claims in order until ``covered_mwh`` is used up (the cap)."""
    applied: list[tuple[InstrumentClaim, float]] = []
    left = max(covered_mwh, 0.0)
    excess = 0.0
    for claim in claims:
        if not claim.qualifies:
            continue
        take = min(claim.mwh, left)
        applied.append((claim, take))
        left -= take
        excess += claim.mwh - take
    excluded = tuple(c for c in claims if not c.qualifies)
    return Allocation(tuple(applied), excluded, covered_mwh, excess)


def purchased_green_kwh(site: Site, start_ms: int, end_ms: int, grid_import_kwh: float) -> float:
    """kWh of renewable instruments applied to ``[start_ms, end_ms)`` (for REF, ISO/IEC 30134-3).

    Same rules as the report: quality criteria met, prorated by time, capped at grid import.
    """
    if not site.carbon.instruments:
        return 0.0
    claims = instrument_claims(site.carbon.instruments, start_ms, end_ms,
                               ZoneInfo(site.timezone), site.carbon.max_vintage_gap_years)
    return allocate(claims, grid_import_kwh / 1000.0).renewable_mwh * 1000.0
