"""Electricity saved by efficiency measures in a reporting window, as MWh figures.

Two sources:
- declared measures from the configuration (name, MWh, period, source), prorated by time;
- measured savings the optimizer's M&V writes into the store table ``mv_savings`` (one row per
  measure and M&V period, kWh, with the ASHRAE Guideline 14 fit statistics CV(RMSE) and NMBE).
  Rows overlapping the window are prorated by time and summed into one figure; their
  uncertainties are combined as independent (root sum of squares). Only rows M&V reported
  (status ``reported``: Guideline 14 gates passed, saving larger than its uncertainty) count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from dcpue.config.carbon import EfficiencyMeasure
from dcpue.core.figures import Figure
from dcpue.core.periods import date_ms, overlap_share
from dcpue.core.store import Store

MV_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mv_savings (measure VARCHAR, start_ms BIGINT, end_ms BIGINT, "
    "savings_kwh DOUBLE, uncertainty_kwh DOUBLE, cvrmse DOUBLE, nmbe DOUBLE)"
)
#: Columns added to ``mv_savings`` by Guideline 14 acceptance (older stores get them on use):
#: ``status`` (``reported``, ``not_significant``, ``rejected``), ``basis`` (what the energy is
#: measured at), ``ipmvp_option`` (``B`` or ``C``) and ``reason``.
MV_COLUMNS = ("status", "basis", "ipmvp_option", "reason")
#: Rows that count as avoided energy: M&V reported them, or (rows written before acceptance
#: gates existed) the saving exceeds its uncertainty.
MV_COUNTED = (
    "(status = 'reported' OR (status IS NULL AND uncertainty_kwh IS NOT NULL "
    "AND savings_kwh > uncertainty_kwh))"
)


def ensure_mv_table(store: Store) -> None:
    """Create ``mv_savings`` or add the acceptance columns to an older one."""
    store.execute(MV_SCHEMA)
    for column in MV_COLUMNS:
        store.execute(f"ALTER TABLE mv_savings ADD COLUMN IF NOT EXISTS {column} VARCHAR")


def declared_savings(
    measures: Sequence[EfficiencyMeasure], start_ms: int, end_ms: int, zone: ZoneInfo
) -> list[Figure]:
    """One MWh figure per declared measure overlapping ``[start_ms, end_ms)``, in config order."""
    out = []
    for m in measures:
        share = overlap_share(date_ms(m.start, zone), date_ms(m.end, zone), start_ms, end_ms)
        if share == 0:
            continue
        out.append(Figure(
            m.name, m.mwh * share, "MWh",
            formula="declared MWh x share of the measure's period in the window",
            start_ms=start_ms, end_ms=end_ms, note=f"declared: {m.source}",
            extra={"declared_mwh": m.mwh, "period": {"start": m.start.isoformat(),
                                                     "end": m.end.isoformat()},
                   "share_in_window": share},
        ))
    return out


def measured_savings(store: Store, label: str, start_ms: int, end_ms: int) -> Figure | None:
    """The optimizer's M&V savings overlapping the window as one MWh figure (None: no rows).

    Only savings M&V reported count (:data:`MV_COUNTED`): a saving that is not significant
    (smaller than its uncertainty) or rests on a baseline that failed the Guideline 14 gates
    never becomes avoided emissions."""
    ensure_mv_table(store)
    rows = store.execute(
        "SELECT measure, start_ms, end_ms, savings_kwh, uncertainty_kwh, cvrmse, nmbe "
        "FROM mv_savings WHERE start_ms < ? AND end_ms > ? AND end_ms > start_ms "
        f"AND savings_kwh IS NOT NULL AND {MV_COUNTED} "
        "ORDER BY start_ms, measure",
        [end_ms, start_ms],
    ).fetchall()
    if not rows:
        return None
    parts = []
    variance_kwh2 = 0.0
    for measure, r_start, r_end, kwh, unc, cvrmse, nmbe in rows:
        share = overlap_share(int(r_start), int(r_end), start_ms, end_ms)
        if unc is not None:
            variance_kwh2 += (unc * share) ** 2
        parts.append(Figure(
            str(measure), kwh * share / 1000.0, "MWh",
            formula="M&V savings_kwh / 1000 x share of the M&V period in the window",
            start_ms=int(r_start), end_ms=int(r_end),
            extra={"savings_kwh": kwh, "uncertainty_kwh": unc, "cvrmse": cvrmse, "nmbe": nmbe,
                   "share_in_window": share},
        ))
    return Figure(
        label, sum(p.value or 0.0 for p in parts), "MWh",
        formula="sum of the optimizer's M&V savings overlapping the window",
        start_ms=start_ms, end_ms=end_ms, inputs=tuple(parts),
        note="measured: optimizer M&V (store table mv_savings)",
        extra={"uncertainty_mwh": math.sqrt(variance_kwh2) / 1000.0},
    )
