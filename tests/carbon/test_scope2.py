"""Scope 2 both ways, instruments, residual mix and avoided emissions, worked by hand.

Common case: 1,000 MWh bought from the grid plus 100 MWh of on-site PV consumed, grid factor
0.5 tCO2/MWh, one month (2023-01, UTC).
"""

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from dcpue.carbon.accounting import PeriodEnergy, account
from dcpue.carbon.periods import date_ms, report_windows
from dcpue.carbon.scope2 import location_based_hourly
from dcpue.config.carbon import CarbonSettings, GridFactor, Instrument
from dcpue.config.factors import Factor, HourlyFactors
from dcpue.config.instruments import allocate, instrument_claims
from dcpue.core.figures import Figure

UTC = ZoneInfo("UTC")
JAN = report_windows(date(2023, 1, 1), date(2023, 2, 1), UTC, monthly=False)[0]
GRID = GridFactor(emission_factor_t_per_mwh=0.5, source="test grid average")
HOUR = 3_600_000


def energy(grid_mwh=1000.0, pv_mwh=100.0) -> PeriodEnergy:
    w = {"start_ms": JAN.start_ms, "end_ms": JAN.end_ms}
    electricity = Figure("electricity", grid_mwh + pv_mwh, "MWh", **w)
    return PeriodEnergy(
        JAN.label, JAN.start_ms, JAN.end_ms, electricity, electricity,
        Figure("grid_electricity", grid_mwh, "MWh", meters=("grid-main",), **w),
        Figure("onsite_renewable", pv_mwh, "MWh", **w), Figure("pue", 1.3, "1", **w),
    )


def instrument(name="PPA wind", mwh=300.0, start=date(2023, 1, 1), end=date(2023, 2, 1), **kw):
    return Instrument(name=name, type=kw.pop("type", "ppa"), mwh=mwh, start=start, end=end, **kw)


def figures(settings: CarbonSettings, **energy_kw) -> dict[str, Figure]:
    return account(energy(**energy_kw), GRID, settings, UTC).figures


def test_location_based_is_grid_mwh_times_factor_and_explains_itself():
    loc = figures(CarbonSettings())["scope2_location"]
    assert loc.value == pytest.approx(500.0)  # 1,000 MWh x 0.5
    tree = loc.explain()
    assert tree["factor"] == {"value": 0.5, "unit": "tCO2/MWh", "source": "test grid average"}
    assert tree["inputs"][0]["meters"] == ["grid-main"]
    assert tree["window"]["from"] == "2023-01-01T00:00:00+00:00"


def test_market_based_with_residual_mix_and_supplier_factor():
    settings = CarbonSettings(
        residual_mix_t_per_mwh=0.6, residual_mix_source="test residual mix",
        instruments=[
            instrument(),
            instrument("Supplier contract", 200.0, type="supplier_specific",
                       renewable=False, emission_factor_t_per_mwh=0.3),
        ],
    )
    f = figures(settings)
    # 300 x 0 + 200 x 0.3 + (1000 - 500) x 0.6 = 60 + 300
    assert f["scope2_market"].value == pytest.approx(360.0)
    residual = f["scope2_market"].explain()["inputs"][-1]
    assert residual["factor"]["source"] == "test residual mix"
    assert residual["inputs"][0]["value"] == pytest.approx(500.0)
    assert f["purchased_green"].value == pytest.approx(300.0)  # the supplier mix is not green
    assert f["renewable_electricity"].value == pytest.approx(400.0)
    assert f["renewable_share"].value == pytest.approx(400.0 / 1100.0 * 100)


def test_residual_mix_defaults_to_location_factor_and_says_so():
    f = figures(CarbonSettings(instruments=[instrument()]))
    assert f["scope2_market"].value == pytest.approx(350.0)  # (1000 - 300) x 0.5
    source = f["scope2_market"].explain()["inputs"][-1]["factor"]["source"]
    assert source.startswith("residual mix not configured: location factor used")


def test_reference_identity_equals_ghg_when_residual_is_grid_average():
    """Operator: location over all electricity (1,100 MWh x 0.5 = 550) minus avoided renewables
    ((300 + 100) x 0.5 = 200) = 350 = GHG market-based (700 x 0.5) with residual = grid factor."""
    ghg = figures(CarbonSettings(instruments=[instrument()]))
    ref = figures(CarbonSettings(method="location_minus_avoided", instruments=[instrument()]))
    assert ref["scope2_location"].value == pytest.approx(550.0)
    assert ref["avoided_renewables"].value == pytest.approx(200.0)
    assert ref["avoided_purchased_green"].value == pytest.approx(150.0)
    assert ref["avoided_onsite_pv"].value == pytest.approx(50.0)
    assert ref["scope2_market"].value == pytest.approx(350.0)
    assert ghg["scope2_market"].value == pytest.approx(ref["scope2_market"].value)
    assert ghg["scope2_location"].value == pytest.approx(500.0)


def test_instruments_exceeding_consumption_are_capped_with_a_warning():
    settings = CarbonSettings(instruments=[instrument(mwh=800.0),
                                           instrument("RECs", 400.0, type="certificate")])
    acc = account(energy(), GRID, settings, UTC)
    assert acc.figures["purchased_green"].value == pytest.approx(1000.0)
    assert acc.figures["scope2_market"].value == pytest.approx(0.0)
    assert any("200.000 MWh not applied" in w for w in acc.warnings)
    recs = acc.figures["purchased_green"].explain()["inputs"][1]
    assert recs["value"] == pytest.approx(200.0)
    assert recs["note"].startswith("capped: 200.000 MWh of 400.000 MWh")
    assert "not applied" in acc.figures["scope2_market"].note


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"traceable": False}, "registry"),
        ({"same_market": False}, "market"),
        ({"vintage": 2020}, "vintage 2020"),
    ],
)
def test_instruments_failing_quality_criteria_stay_at_residual_mix(kw, reason):
    acc = account(energy(), GRID, CarbonSettings(instruments=[instrument(**kw)]), UTC)
    assert acc.figures["purchased_green"].value == 0.0
    assert acc.figures["scope2_market"].value == pytest.approx(500.0)
    assert any(reason in w for w in acc.warnings)


def test_additionality_is_disclosed_not_required():
    f = figures(CarbonSettings(instruments=[instrument(additional=False, vintage=2022)]))
    assert f["purchased_green"].value == pytest.approx(300.0)  # vintage within 1 year
    ppa = f["purchased_green"].explain()["inputs"][0]
    assert ppa["additional"] is False and ppa["vintage"] == 2022


def test_annual_instrument_is_prorated_by_time():
    annual = instrument(mwh=365.0, start=date(2023, 1, 1), end=date(2024, 1, 1))
    claims = instrument_claims([annual], JAN.start_ms, JAN.end_ms, UTC, 1)
    assert claims[0].mwh == pytest.approx(31.0)  # 31 of 365 days
    assert allocate(claims, 10.0).excess_mwh == pytest.approx(21.0)
    feb = date_ms(date(2023, 2, 1), UTC)
    assert instrument_claims([instrument()], feb, feb + HOUR, UTC, 1) == []


def test_hourly_location_factor_and_missing_hours():
    h0 = JAN.start_ms
    hours = np.array([h0, h0 + HOUR, h0 + 2 * HOUR])
    mwh = np.array([1.0, 2.0, 3.0])
    basis = Figure("grid_electricity", 6.0, "MWh", start_ms=h0, end_ms=h0 + 3 * HOUR)
    full = HourlyFactors(hours, np.array([0.4, 0.5, 0.6]), "test hourly")
    fallback = Factor(0.5, "site")
    loc = location_based_hourly(basis, hours, mwh, full, fallback)
    assert loc.value == pytest.approx(0.4 + 1.0 + 1.8)
    assert loc.factor == pytest.approx(3.2 / 6.0)
    assert loc.note == ""
    partial = HourlyFactors(hours[:2], np.array([0.4, 0.5]), "test hourly")
    loc = location_based_hourly(basis, hours, mwh, partial, fallback)
    assert loc.value == pytest.approx(0.4 + 1.0 + 3 * 0.5)
    assert loc.note.startswith("1 of 3 hours had no factor")


def test_insufficient_energy_propagates_as_insufficient():
    w = {"start_ms": JAN.start_ms, "end_ms": JAN.end_ms}
    e = energy()
    short = PeriodEnergy(
        e.label, e.start_ms, e.end_ms, e.total_energy, Figure("electricity", None, "MWh", **w),
        Figure("grid_electricity", None, "MWh", **w), e.onsite_renewable, e.pue,
    )
    f = account(short, GRID, CarbonSettings(instruments=[instrument()]), UTC).figures
    assert f["scope2_location"].value is None
    assert f["scope2_market"].value is None
    assert f["renewable_share"].value is None
    assert f["scope2_market"].explain()["status"] == "insufficient data"


def test_monthly_windows_follow_local_calendar():
    shanghai = ZoneInfo("Asia/Shanghai")
    windows = report_windows(date(2023, 1, 15), date(2023, 3, 1), shanghai, monthly=True)
    assert [w.label for w in windows] == ["2023-01-15..2023-02-01", "2023-02"]
    assert windows[1].start_ms == date_ms(date(2023, 2, 1), shanghai)
    assert windows[1].start_ms - windows[0].end_ms == 0
    assert windows[0].start_ms == 1_673_712_000_000  # 2023-01-14T16:00Z
