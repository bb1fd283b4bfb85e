"""PV and EV chargers at the site bus, EV outside the data-center boundary, through the CLI.

Declared (constant powers, UTC, 5-minute counters for two days): grid import 100 kW, PV 300 kW
(nothing exported), EV chargers 350 kW outside the boundary, IT 40 kW; a green tariff far
larger than the site. Computed by dcpue and hand-worked here: facility = 100 + 300 - 350 = 50 kW
(PUE 1.25); PV inside the boundary = 300 x 50 / (50 + 350) = 37.5 kW (the EV chargers take the
rest, in proportion); grid inside = min(100, 50 - 37.5) = 12.5 kW; the tariff is capped there.
So REF = (37.5 + 12.5) / 50 = 1.0 and the renewable share 100 %, never 250 %; CUE uses the
configured hourly factors (0.2 t/MWh every hour) rather than the flat site factor (0.5).
"""

import json
from datetime import UTC, datetime

import pytest
from dcpue.core.readings import Reading, datetime_to_ms
from dcpue.core.store import Store

from dcpue.cli import main

T0 = datetime_to_ms(datetime(2023, 6, 29, 23, 50, tzinfo=UTC))
KW = {"grid-main": 100.0, "pv-roof": 300.0, "ev-chargers": 350.0, "ups-out": 40.0}
SITE = """
id = "bus"
timezone = "UTC"
latitude = 10.0
longitude = 20.0
store = { path = "bus.duckdb" }
grid = { emission_factor_t_per_mwh = 0.5, source = "flat test factor" }
calculator = { outside_boundary = ["ev-chargers"], windows = ["1h"] }
meters = [
  { id = "grid-main", role = "grid_import", kind = "counter", unit = "kWh" },
  { id = "pv-roof", role = "pv_generation", kind = "counter", unit = "kWh" },
  { id = "ev-chargers", role = "other_load", kind = "counter", unit = "kWh" },
  { id = "ups-out", role = "it_load", kind = "counter", unit = "kWh", it_category = "ups_output" },
]
[carbon]
hourly_factors_csv = "factors.csv"
hourly_factors_source = "test hourly factors: 0.2 all day"
[[carbon.instruments]]
name = "Huge green tariff"
type = "green_tariff"
mwh = 100000.0
start = 2023-01-01
end = 2024-01-01
"""


@pytest.fixture
def site_file(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    (tmp_path / "factors.csv").write_text("timestamp,t_per_mwh\n" + "".join(
        f"2023-06-{d}T{h:02d}:00:00Z,0.2\n" for d in (29, 30) for h in range(24)) + "".join(
        f"2023-07-{d:02d}T{h:02d}:00:00Z,0.2\n" for d in (1, 2) for h in range(24)))
    with Store(tmp_path / "bus.duckdb") as store:
        store.append(Reading(T0 + k * 300_000, m, "energy", 500.0 + kw * k / 12, "kWh")
                     for m, kw in KW.items() for k in range(2 * 288 + 5))
    return path


def test_report_renewable_share_is_at_most_100_percent(site_file, capsys):
    assert main(["report", "--config", str(site_file), "--from", "2023-06-30", "--to",
                 "2023-07-01", "--format", "json"]) == 0
    rows = {r["key"]: r["values"][0] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["electricity"] == pytest.approx(1.2)  # 50 kW x 24 h = 1.2 MWh
    assert rows["onsite_pv"] == pytest.approx(0.9)  # 37.5 kW x 24 h
    assert rows["grid_electricity"] == pytest.approx(0.3)  # 12.5 kW x 24 h
    assert rows["purchased_green"] == pytest.approx(0.3)  # capped at the grid inside
    assert rows["renewable_share"] == pytest.approx(100.0)
    assert rows["pue"] == pytest.approx(1.25)


def test_pue_json_ref_is_at_most_one(site_file, capsys):
    assert main(["pue", "--config", str(site_file), "--json"]) == 0
    figs = json.loads(capsys.readouterr().out)["figures"]
    assert figs["pue"]["value"] == pytest.approx(1.25)
    assert figs["pv_inside"]["value"] == pytest.approx(37.5)
    assert figs["ref"]["value"] == pytest.approx(1.0)
    # kgCO2/kWh: the grid electricity inside only, at the hourly factor (0.2), not the flat 0.5
    assert figs["cue"]["value"] == pytest.approx(0.2 * 12.5 / 40)


async def test_daemon_rolling_cue_uses_the_hourly_factors(site_file):
    """The daemon's rolling cue.1h (service.daemon.Runtime fed from the store) uses the
    configured hourly factors like ``dcpue pue``: 0.2 x 12.5 / 40 kgCO2/kWh, not 0.5 x ..."""
    from dcpue.config import load_site
    from dcpue.service.daemon import Runtime

    site = load_site(site_file)
    now = T0 + 24 * 3_600_000
    with Store(site.store.path) as store:
        runtime = Runtime(site, store, lambda: now)
        await runtime.run_job("write_back", now)
        cue = runtime.figures(now)["cue.1h"]
    assert cue.value == pytest.approx(0.2 * 12.5 / 40)
    assert "0.2 all day" in (cue.factor_source or "")
