"""24/7 CFE matching on a hand-worked 48-hour case (one region, one site).

Declared inputs (typed here): load 10 MWh every hour; on-site PV 15 MWh in hours 10-14 of each
day (a 5 MWh midday surplus), 0 otherwise; a PPA delivering 4 MWh in hours 0-5 (night) and
2 MWh in hours 10-14. Hand result per day:
  hours 0-5:   clean 4,  matched 4  x 6 = 24
  hours 10-14: clean 17, matched 10 x 5 = 50  (7 MWh/h of surplus unmatched)
  13 other hours: nothing matched
  matched 74, clean 24 + 85 = 109, load 240.
Two days: hourly-matched CFE = 148 / 480 = 30.8333 %; annual matching of the same supply =
218 / 480 = 45.4167 % (higher, as it must be). Unmatched emissions at 0.6 tCO2/MWh in hours
0-5 and 0.4 otherwise: per day 6 x 6 x 0.6 + 13 x 10 x 0.4 = 21.6 + 52 = 73.6, two days 147.2 t.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from dcpue.config.site import ConfigError
from dcpue.fleet.cfe import match_hourly
from dcpue.fleet.config import parse_fleet
from dcpue.fleet.profiles import load_profile
from dcpue.fleet.query import SiteSums
from dcpue.fleet.report import compute

HOURS = np.arange(48) % 24
LOAD = np.full(48, 10.0)
PV = np.where((HOURS >= 10) & (HOURS <= 14), 15.0, 0.0)
PPA = np.where(HOURS < 6, 4.0, np.where((HOURS >= 10) & (HOURS <= 14), 2.0, 0.0))
FACTOR = np.where(HOURS < 6, 0.6, 0.4)


def test_hourly_matching_equals_the_hand_result():
    result = match_hourly(LOAD, PV + PPA, FACTOR)
    assert result.load_mwh == 480.0
    assert result.matched_mwh == pytest.approx(148.0, abs=1e-12)
    assert result.clean_mwh == pytest.approx(218.0, abs=1e-12)
    assert result.hourly_score_pct == pytest.approx(148 / 480 * 100, rel=1e-12)
    assert result.annual_share_pct == pytest.approx(218 / 480 * 100, rel=1e-12)
    assert result.annual_share_pct > result.hourly_score_pct
    assert result.unmatched_tco2 == pytest.approx(147.2, abs=1e-9)


def test_bad_hourly_input_is_an_error():
    with pytest.raises(ValueError, match="hours"):
        match_hourly(LOAD, PV[:47], 0.5)
    with pytest.raises(ValueError, match="negative"):
        match_hourly(LOAD, -PV, 0.5)


def _write_profile(path, values, start="2023-01-01"):
    lines = ["timestamp,mwh"]
    for h, v in enumerate(values):
        lines.append(f"{start}T{h % 24:02d}:00:00Z,{v}" if h < 24
                     else f"2023-01-02T{h % 24:02d}:00:00Z,{v}")
    path.write_text("\n".join(lines) + "\n")


def test_fleet_report_runs_the_same_case_from_a_delivery_csv(tmp_path):
    """The report path: hourly terms as the store returns them (kWh), the PPA from its CSV."""
    _write_profile(tmp_path / "ppa.csv", PPA.tolist())
    fleet = parse_fleet({
        "id": "f", "remote": {"url": "http://127.0.0.1:1"},
        "regions": [{"id": "r", "emission_factor_t_per_mwh": 0.5, "source": "test factor"}],
        "sites": [{"id": "s", "commissioned": date(2020, 1, 1), "region": "r"}],
        "instruments": [{"name": "PPA", "type": "ppa", "region": "r", "mwh": float(PPA.sum()),
                         "start": date(2023, 1, 1), "end": date(2023, 1, 3),
                         "delivery_csv": "ppa.csv"}],
    }, "test", tmp_path)
    hourly = {"facility_kwh": {"s": LOAD * 1000}, "pv_generation_kwh": {"s": PV * 1000},
              "grid_import_kwh": {"s": (LOAD - np.minimum(PV, LOAD)) * 1000}}
    sums = {"facility_kwh": 480e3, "it_kwh": 400e3, "pv_generation_kwh": PV.sum() * 1000,
            "grid_export_kwh": 50e3, "grid_import_kwh": 380e3}
    sums |= {f"{t}_coverage": 48.0 for t in ("it", "facility", "grid_import", "grid_export",
                                              "pv_generation", "battery_charge",
                                              "battery_discharge", "outside_boundary",
                                              "reused_heat", "water")}
    report = compute(fleet, date(2023, 1, 1), date(2023, 1, 3), {"s": SiteSums("s", sums, 48)},
                     hourly, None, {"PPA": load_profile(tmp_path / "ppa.csv")})
    assert report.figures["cfe_hourly_score"].value == pytest.approx(148 / 480 * 100, rel=1e-12)
    assert report.figures["cfe_annual_share"].value == pytest.approx(218 / 480 * 100, rel=1e-12)
    assert report.figures["cfe_unmatched_emissions"].value == pytest.approx(332 * 0.5, rel=1e-12)
    # annual-volume accounting: PV 150 MWh - 50 exported = 100 self-consumed, + PPA 68 MWh
    assert report.figures["renewable_share"].value == pytest.approx((100 + 68) / 480 * 100,
                                                                    rel=1e-12)


def test_delivery_csv_errors_are_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,mwh\n2023-01-01T00:00:00,1\n")
    with pytest.raises(ConfigError, match="has no UTC offset"):
        load_profile(path)
    path.write_text("time,mwh\n")
    with pytest.raises(ConfigError, match="header must be"):
        load_profile(path)


def test_region_hourly_factors_give_the_hand_location_based_totals(tmp_path):
    """Same case with the region's hourly factors (0.6 in hours 0-5, 0.4 otherwise). GHG
    location-based on grid import (0 in hours 10-14 where PV covers the load, 10 MWh else):
    per day 6 x 10 x 0.6 + 13 x 10 x 0.4 = 88, two days 176 tCO2e. Identity basis (all
    electricity, 10 MWh every hour): per day 36 + 18 x 10 x 0.4 = 108, two days 216."""
    from dcpue.config.factors import HourlyFactors

    fleet = parse_fleet({
        "id": "f", "remote": {"url": "http://127.0.0.1:1"},
        "regions": [{"id": "r", "emission_factor_t_per_mwh": 0.5, "source": "flat"}],
        "sites": [{"id": "s", "commissioned": date(2020, 1, 1), "region": "r"}],
    }, "test", tmp_path)
    grid = LOAD - np.minimum(PV, LOAD)
    hourly = {"facility_kwh": {"s": LOAD * 1000}, "pv_generation_kwh": {"s": PV * 1000},
              "grid_import_kwh": {"s": grid * 1000}}
    sums = {"facility_kwh": 480e3, "it_kwh": 400e3, "pv_generation_kwh": 150e3,
            "grid_export_kwh": 50e3, "grid_import_kwh": grid.sum() * 1000}
    sums |= {f"{t}_coverage": 48.0 for t in ("it", "facility", "grid_import", "grid_export",
                                              "pv_generation", "battery_charge",
                                              "battery_discharge", "outside_boundary",
                                              "reused_heat", "water")}
    hours = 1672531200000 + 3_600_000 * np.arange(48, dtype=np.int64)
    factors = {"r": HourlyFactors(hours, FACTOR, "test hourly factors")}
    report = compute(fleet, date(2023, 1, 1), date(2023, 1, 3), {"s": SiteSums("s", sums, 48)},
                     hourly, factors)
    assert report.figures["scope2_location"].value == pytest.approx(176.0, rel=1e-12)
    assert report.figures["scope2_location_identity"].value == pytest.approx(216.0, rel=1e-12)
    # no PPA here: the unmatched hours are exactly the grid-import hours, at the same factors
    assert report.figures["cfe_unmatched_emissions"].value == pytest.approx(176.0, rel=1e-12)
