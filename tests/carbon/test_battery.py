"""Battery charge provenance: CUE, PV inside, REF and Scope 2 over stored energy.

Declared (constant powers per hour, UTC, 5-minute counters over 2023-06-30, battery
round-trip efficiency 0.9): facility 50 kW and IT 40 kW all day (PUE 1.25).

- ``pv`` day: grid 50 kW, except 12:00-13:00 PV 150 kW (50 to the facility, 100 into the
  battery, no grid) and 21:00-24:00 the battery discharges 30 kW (90 kWh) and grid gives 20 kW.
  Flat grid factor 0.5 kgCO2/kWh.
- ``grid`` day: grid 50 kW, except 02:00-03:00 grid 150 kW (100 into the battery) and
  21:00-24:00 discharge 30 kW with grid 20 kW. Hourly factors 0.3 at 02:00, 0.6 otherwise.

Computed by dcpue and hand-worked here (the ledger: PV charged is PV when discharged, grid
charged carries its charge hour's factor; 90 kWh out of 100 in at efficiency 0.9 empties it):

- night 21:00-24:00 of the ``pv`` day: facility 150 kWh, IT 120; grid 60 kWh, PV through the
  battery 90 kWh, so CUE = 0.5 x 60 / 120 = 0.25 (counting the discharge as grid: 0.625),
  PV inside 90 kWh, REF = 90 / 150 = 0.6;
- its whole day: electricity 1.2 MWh = PV 0.14 (50 direct + 90 stored) + grid 1.06; Scope 2
  location-based 1.06 x 0.5 = 0.53 t; renewable share 0.14 / 1.2 = 11.67 %;
- night 21:00-24:00 of the ``grid`` day: 60 kWh grid at 0.6 + 90 kWh stored at 0.3 = 63 kg,
  CUE = 63 / 120 = 0.525 (at the discharge hours' factor: 0.75), PV inside 0;
- its whole day: grid 1.2 MWh; Scope 2 = (1000 x 0.6 + 50 x 0.3 + 60 x 0.6 + 90 x 0.3) kg
  = 0.678 t (without the 90 kWh through the battery: 0.651).
"""

import json

import numpy as np
import pytest
from dcpue.metrics.provenance import BusSteps, ledger, step_edges, window_origin
from hypothesis import given, settings
from hypothesis import strategies as st

from dcpue.cli import main

HOUR = 3_600_000
DAY0 = 1_688_083_200_000  # 2023-06-30T00:00:00Z
METERS = {"grid-main": "grid_import", "pv-roof": "pv_generation", "bat-in": "battery_charge",
          "bat-out": "battery_discharge", "ups-out": "it_load"}


def profile(kind: str) -> dict[str, np.ndarray]:
    """kW of each meter per hour 0..23 of the day (declared, see the module docstring)."""
    kw = {m: np.zeros(24) for m in METERS}
    kw["grid-main"][:] = 50.0
    kw["ups-out"][:] = 40.0
    if kind == "pv":
        kw["grid-main"][12], kw["pv-roof"][12], kw["bat-in"][12] = 0.0, 150.0, 100.0
        kw["grid-main"][21:24], kw["bat-out"][21:24] = 20.0, 30.0
    else:
        kw["grid-main"][2], kw["bat-in"][2] = 150.0, 100.0
        kw["grid-main"][21:24], kw["bat-out"][21:24] = 20.0, 30.0
    return kw


SITE = """
id = "{kind}"
timezone = "UTC"
latitude = 10.0
longitude = 20.0
store = {{ path = "{kind}.duckdb" }}
grid = {{ emission_factor_t_per_mwh = 0.5, source = "flat test factor" }}
calculator = {{ battery_efficiency = 0.9, windows = ["1h", "1d"] }}
{carbon}
"""
METER = """[[meters]]
id = "{id}"
role = "{role}"
kind = "counter"
unit = "kWh"
{extra}"""
CARBON = """[carbon]
hourly_factors_csv = "factors.csv"
hourly_factors_source = "test hourly factors: 0.3 at 02:00, else 0.6"
"""


@pytest.fixture(params=["pv", "grid"])
def site_file(request, tmp_path):
    """A site file and its store, filled through ``dcpue import`` (long CSV)."""
    kind = request.param
    text = SITE.format(kind=kind, carbon=CARBON if kind == "grid" else "") + "".join(
        METER.format(id=m, role=r, extra='it_category = "ups_output"\n' if r == "it_load"
                     else "") for m, r in METERS.items())
    path = tmp_path / "site.toml"
    path.write_text(text)
    (tmp_path / "factors.csv").write_text("timestamp,t_per_mwh\n" + "".join(
        f"2023-06-30T{h:02d}:00:00Z,{0.3 if h == 2 else 0.6}\n" for h in range(24)))
    rows = ["ts,meter,quantity,value,unit"]
    for mid, kw in profile(kind).items():
        kwh = 1000.0 + np.concatenate(([0.0], np.cumsum(np.repeat(kw / 12, 12))))
        for k, value in enumerate(kwh):  # every 5 minutes, 00:00 to 24:00
            ts = np.datetime_as_string(np.datetime64(DAY0 + 300_000 * k, "ms"), unit="s")
            rows.append(f"{ts}Z,{mid},energy,{value:.6f},kWh")
    (tmp_path / "readings.csv").write_text("\n".join(rows) + "\n")
    assert main(["import", "--no-progress", "--config", str(path),
                 str(tmp_path / "readings.csv")]) == 0
    return kind, path


def pue_json(path, capsys, window: str) -> dict:
    capsys.readouterr()
    assert main(["pue", "--config", str(path), "--window", window, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["figures"]


def test_pue_json_over_the_discharge(site_file, capsys):
    """The latest 3 h (21:00-24:00): CUE, PV inside and REF from the ledger."""
    kind, path = site_file
    figs = pue_json(path, capsys, "3h")
    assert figs["pue"]["value"] == pytest.approx(1.25)
    if kind == "pv":
        assert figs["cue"]["value"] == pytest.approx(0.5 * 60 / 120)
        assert figs["pv_inside"]["value"] == pytest.approx(90.0)
        assert figs["ref"]["value"] == pytest.approx(0.6)
    else:
        assert figs["cue"]["value"] == pytest.approx((60 * 0.6 + 90 * 0.3) / 120)
        assert figs["pv_inside"]["value"] == pytest.approx(0.0)
        assert figs["ref"]["value"] == pytest.approx(0.0)


def test_report_json_day(site_file, capsys):
    kind, path = site_file
    capsys.readouterr()
    assert main(["report", "--config", str(path), "--from", "2023-06-30", "--to",
                 "2023-07-01", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    audit = {k: v["value"] for k, v in data["audit"]["2023-06-30..2023-07-01"].items()}
    assert audit["electricity"] == pytest.approx(1.2)
    if kind == "pv":
        assert audit["onsite_pv"] == pytest.approx(0.14)
        assert audit["grid_electricity"] == pytest.approx(1.06)
        assert audit["scope2_location"] == pytest.approx(0.53)
        assert audit["renewable_share"] == pytest.approx(0.14 / 1.2 * 100)
    else:
        assert audit["onsite_pv"] == pytest.approx(0.0)
        assert audit["grid_electricity"] == pytest.approx(1.2)
        assert audit["scope2_location"] == pytest.approx(0.678)
    assert audit["renewable_share"] <= 100.0


async def test_daemon_rolling_figures_follow_the_ledger(site_file):
    """The daemon's rolling figures (service.daemon.Runtime fed from the store) over the last
    hour, 23:00-24:00: on the PV day grid 20 kWh at 0.5 of facility 50, IT 40, so cue.1h =
    0.25 and ref.1h = 30 / 50 = 0.6; on the grid day 20 kWh at 0.6 + 30 kWh charged at 0.3:
    cue.1h = 21 / 40 = 0.525."""
    from dcpue.config import load_site
    from dcpue.core.store import Store
    from dcpue.service.daemon import Runtime

    kind, path = site_file
    site = load_site(path)
    now = DAY0 + 24 * HOUR
    with Store(site.store.path) as store:
        runtime = Runtime(site, store, lambda: now)
        await runtime.run_job("write_back", now)
        figures = runtime.figures(now)
    if kind == "pv":
        assert figures["cue.1h"].value == pytest.approx(0.25)
        assert figures["ref.1h"].value == pytest.approx(0.6)
        assert "provenance ledger" in (figures["cue.1h"].factor_source or "")
    else:
        assert figures["cue.1h"].value == pytest.approx((20 * 0.6 + 30 * 0.3) / 40)
        assert "0.3 at 02:00" in (figures["cue.1h"].factor_source or "")


def steps(kind: str, factor: np.ndarray | None = None) -> BusSteps:
    """One step per hour of the declared day (kWh = kW x 1 h)."""
    kw = profile(kind)
    t0 = DAY0 + HOUR * np.arange(24, dtype=np.int64)
    zeros = np.zeros(24)
    return BusSteps(t0, t0 + HOUR, kw["grid-main"], zeros, kw["pv-roof"], kw["bat-in"],
                    kw["bat-out"], zeros, np.full(24, 0.5) if factor is None else factor,
                    np.ones(24, bool))


def test_ledger_pv_charged_at_noon_is_pv_at_night():
    origins = ledger(steps("pv"), efficiency=0.9)
    night = window_origin(origins, DAY0 + 21 * HOUR, DAY0 + 24 * HOUR)
    assert night.pv_stored_kwh == pytest.approx(90.0)
    assert night.grid_inside_kwh == pytest.approx(60.0)
    assert night.grid_kg == pytest.approx(0.5 * 60.0)  # 0 kg for the 90 kWh from PV
    hour = window_origin(origins, DAY0 + 22 * HOUR, DAY0 + 23 * HOUR)  # any 1 h of it
    assert hour.pv_inside_kwh == pytest.approx(30.0)
    assert hour.grid_kg / 40.0 == pytest.approx(0.25)  # CUE over 1 h, kgCO2/kWh IT
    noon = window_origin(origins, DAY0 + 12 * HOUR, DAY0 + 13 * HOUR)
    assert noon.pv_direct_kwh == pytest.approx(50.0) and noon.grid_kg == 0.0
    day = window_origin(origins, DAY0, DAY0 + 24 * HOUR)
    assert day.pv_inside_kwh + day.grid_inside_kwh == pytest.approx(day.facility_kwh)


def test_ledger_grid_charged_at_night_carries_the_charge_hour_factor():
    factor = np.full(24, 0.6)
    factor[2] = 0.3
    origins = ledger(steps("grid", factor), efficiency=0.9)
    night = window_origin(origins, DAY0 + 21 * HOUR, DAY0 + 24 * HOUR)
    assert night.grid_stored_kwh == pytest.approx(90.0)
    assert night.grid_kg == pytest.approx(60 * 0.6 + 90 * 0.3)
    assert night.grid_kg / 120.0 == pytest.approx(0.525)
    assert night.unknown_stored_kwh == pytest.approx(0.0)
    charge = window_origin(origins, DAY0 + 2 * HOUR, DAY0 + 3 * HOUR)  # 50 of 150 kWh inside
    assert charge.grid_inside_kwh == pytest.approx(50.0)
    assert charge.grid_kg == pytest.approx(50 * 0.3)


def test_ledger_losses_and_unknown_discharge_are_bounded():
    """Declared efficiency 0.85 for a battery that gives back 90 of 100 kWh: the store holds
    85 kWh of discharge, the other 5 kWh are of unknown origin and counted as grid at their
    own hour (never as PV); with no charge in the ledger all of it is."""
    origins = ledger(steps("pv"), efficiency=0.85)
    night = window_origin(origins, DAY0 + 21 * HOUR, DAY0 + 24 * HOUR)
    assert night.pv_stored_kwh == pytest.approx(85.0)
    assert night.unknown_stored_kwh == pytest.approx(5.0)
    assert night.grid_kg == pytest.approx(0.5 * (60.0 + 5.0))
    s = steps("pv")
    no_charge = BusSteps(s.t0, s.t1, s.grid_import, s.grid_export, s.pv_generation,
                         np.zeros(24), s.battery_discharge, s.outside_boundary, s.factor,
                         s.found)
    night = window_origin(ledger(no_charge, 0.9), DAY0 + 21 * HOUR, DAY0 + 24 * HOUR)
    assert night.pv_inside_kwh == 0.0 and night.unknown_stored_kwh == pytest.approx(90.0)


def test_ledger_shares_pv_with_outside_loads_and_keeps_ref_at_most_one():
    """One step: PV 300, grid 100, facility 50, EV chargers 350 outside (tests/carbon/
    test_boundary.py): PV inside 300 x 50 / 400 = 37.5, grid inside 12.5."""
    one = BusSteps(np.array([0]), np.array([HOUR]), np.array([100.0]), np.zeros(1),
                   np.array([300.0]), np.zeros(1), np.zeros(1), np.array([350.0]),
                   np.array([0.5]), np.ones(1, bool))
    o = window_origin(ledger(one, 0.9), 0, HOUR)
    assert o.pv_inside_kwh == pytest.approx(37.5) and o.grid_inside_kwh == pytest.approx(12.5)
    assert o.pv_inside_kwh <= o.facility_kwh


def test_step_edges_cut_hours_at_window_edges():
    edges = step_edges(0, 3 * HOUR, (HOUR + 1_800_000,))
    assert edges.tolist() == [0, HOUR, HOUR + 1_800_000, 2 * HOUR, 3 * HOUR]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(*(st.floats(0, 500) for _ in range(6)), st.floats(0, 1)),
                min_size=1, max_size=48),
       st.floats(0.5, 1.0))
def test_ledger_never_claims_more_than_it_was_given(rows, efficiency):
    """Any bus steps (grid, export, PV, charge, discharge, outside loads in kWh, factor):
    the facility's origins add up to its energy, PV inside never exceeds facility energy (REF
    <= 1) nor the PV generated, PV through the battery never exceeds the PV charged, and the
    emissions lie between 0 and the grid energy x the highest factor."""
    a = np.array(rows, dtype=float)
    t0 = HOUR * np.arange(len(a), dtype=np.int64)
    s = BusSteps(t0, t0 + HOUR, *(a[:, k] for k in range(6)), a[:, 6], np.ones(len(a), bool))
    o = ledger(s, efficiency)
    facility = np.maximum(s.grid_import - s.grid_export + s.pv_generation
                          + s.battery_discharge - s.battery_charge - s.outside_boundary, 0.0)
    parts = o.pv_direct + o.pv_stored + o.grid_direct + o.grid_stored + o.unknown_stored
    assert np.allclose(parts, facility, atol=1e-6)
    assert np.all(o.pv_direct + o.pv_stored <= facility + 1e-6)
    total = window_origin(o, 0, int(t0[-1]) + HOUR)
    assert total.pv_direct_kwh <= float(np.maximum(s.pv_generation - s.grid_export, 0).sum()) + 1e-6
    assert total.pv_stored_kwh <= float(s.pv_generation.sum()) + 1e-6
    grid = total.grid_inside_kwh
    assert -1e-9 <= total.grid_kg <= grid * float(s.factor.max()) + 1e-6
