"""The ESG report of a metered site: real DuckDB store, metrics energy balance, CLI formats.

Site (UTC): grid import 100 kWh/h, IT 80 kWh/h, PV 10 kWh/h all self-consumed, so per day
grid 2.4 MWh, electricity 2.64 MWh, PUE 110 / 80 = 1.375. Grid factor 0.5 tCO2/MWh. Counters are
read every 5 minutes from 2023-06-29 23:50 to 2023-07-02 00:10 UTC.
"""

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from dcpue.carbon.report import site_report
from dcpue.config import ConfigError, load_site
from dcpue.config.factors import load_hourly_factors
from dcpue.config.instruments import purchased_green_kwh
from dcpue.core.readings import Reading, datetime_to_ms
from dcpue.core.store import Store

from dcpue.cli import main

T0 = datetime_to_ms(datetime(2023, 6, 29, 23, 50, tzinfo=UTC))
JUNE30 = datetime_to_ms(datetime(2023, 6, 30, tzinfo=UTC))
HOUR = 3_600_000
RATES_KWH_PER_H = {"grid-main": 100.0, "ups-out": 80.0, "pv-roof": 10.0}

SITE = """
id = "carbon-test"
latitude = 0
longitude = 0
timezone = "UTC"
[grid]
emission_factor_t_per_mwh = 0.5
source = "test grid average"
[store]
path = "site.duckdb"
[calculator]
max_gap_s = 600
[[meters]]
id = "grid-main"
role = "grid_import"
kind = "counter"
unit = "kWh"
[[meters]]
id = "ups-out"
role = "it_load"
kind = "counter"
unit = "kWh"
it_category = "ups_output"
parent = "grid-main"
[[meters]]
id = "pv-roof"
role = "pv_generation"
kind = "counter"
unit = "kWh"
[carbon]
hourly_factors_csv = "factors.csv"
hourly_factors_source = "test hourly factors"
[[carbon.instruments]]
name = "Green tariff June"
type = "green_tariff"
mwh = 3.0
start = 2023-06-01
end = 2023-07-01
"""


def factors_csv() -> str:
    """June 30: 0.3 until noon, 0.6 after (UTC+2 timestamps); July 1: 0.5."""
    lines = ["timestamp,t_per_mwh"]
    for h in range(48):
        moment = datetime.fromtimestamp((JUNE30 + h * HOUR) / 1000, UTC)
        local = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
        lines.append(f"{local},{0.3 if h < 12 else 0.6 if h < 24 else 0.5}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def site_file(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    (tmp_path / "factors.csv").write_text(factors_csv())
    with Store(tmp_path / "site.duckdb") as store:
        store.append(
            Reading(T0 + k * 300_000, meter, "energy", 1000.0 + rate * k / 12, "kWh")
            for meter, rate in RATES_KWH_PER_H.items() for k in range(2 * 288 + 5)
        )
        store.execute(
            "CREATE TABLE IF NOT EXISTS mv_savings (measure VARCHAR, start_ms BIGINT, "
            "end_ms BIGINT, savings_kwh DOUBLE, uncertainty_kwh DOUBLE, cvrmse DOUBLE, "
            "nmbe DOUBLE)"
        )
        store.execute(
            "INSERT INTO mv_savings VALUES ('chw-reset', ?, ?, 240.0, 24.0, 0.12, 0.004)",
            [JUNE30 + 12 * HOUR, JUNE30 + 36 * HOUR],
        )
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_site_report_by_hand(site_file):
    site = load_site(site_file)
    with Store(site.store.path) as store:
        report = site_report(site, store, date(2023, 6, 30), date(2023, 7, 2), monthly=True,
                             base_dir=site_file.parent)
    june, july = (a.figures for a in report.accounts)
    assert [a.label for a in report.accounts] == ["2023-06-30..2023-07-01", "2023-07-01..2023-07-02"]
    assert june["grid_electricity"].value == pytest.approx(2.4)
    assert june["electricity"].value == pytest.approx(2.64)
    assert june["onsite_pv"].value == pytest.approx(0.24)
    assert june["pue"].value == pytest.approx(1.375)
    # hourly: 0.1 MWh x (12 x 0.3 + 12 x 0.6) and 0.1 x 24 x 0.5
    assert june["scope2_location"].value == pytest.approx(1.08)
    assert july["scope2_location"].value == pytest.approx(1.2)
    # the June tariff (3 MWh over 30 days) covers 0.1 MWh of June 30; the rest at the
    # window's average location factor 1.08 / 2.4 = 0.45
    assert june["purchased_green"].value == pytest.approx(0.1)
    assert june["scope2_market"].value == pytest.approx(2.3 * 0.45)
    assert july["purchased_green"].value == 0.0
    assert july["scope2_market"].value == pytest.approx(1.2)
    # M&V row 12:00 June 30 to 12:00 July 1, 240 kWh: half in each window, x 0.5 tCO2/MWh
    ai = june["avoided:AI cooling optimization"]
    assert ai.value == pytest.approx(0.12 * 0.5)
    assert ai.explain()["inputs"][0]["uncertainty_mwh"] == pytest.approx(0.012)  # 24 kWh / 2
    assert july["avoided:AI cooling optimization"].value == pytest.approx(0.06)
    assert june["avoided_onsite_pv"].value == pytest.approx(0.12)
    assert june["renewable_share"].value == pytest.approx((0.1 + 0.24) / 2.64 * 100)
    assert purchased_green_kwh(site, JUNE30, JUNE30 + 24 * HOUR, 2400.0) == pytest.approx(100.0)
    assert purchased_green_kwh(site, JUNE30, JUNE30 + 24 * HOUR, 40.0) == pytest.approx(40.0)
    meters = json.dumps(june["scope2_location"].explain())
    assert "grid-main" in meters and "test hourly factors" in meters


def test_cli_formats_parse(site_file, capsys):
    args = ["--config", str(site_file), "--from", "2023-06-30", "--to", "2023-07-02"]
    code, out, _ = run(capsys, *args, "--format", "json")
    assert code == 0
    data = json.loads(out)
    rows = {r["key"]: r for r in data["rows"]}
    assert rows["pue"]["values"] == [1.375]
    assert rows["scope2_location"]["values"] == [2.3]  # 1.08 + 1.2, rounded to 0.1
    assert data["audit"]["2023-06-30..2023-07-02"]["scope2_location"]["factor"]["unit"] == (
        "tCO2/MWh"
    )
    code, out, _ = run(capsys, *args, "--format", "csv", "--explain")
    table = {r["key"]: r for r in csv.DictReader(io.StringIO(out))}
    assert table["electricity"]["2023-06-30..2023-07-02"] == "5.3"  # 5.28 MWh
    assert table["scope2_location"]["factor_source"].startswith("hourly factors")
    code, out, _ = run(capsys, *args, "--explain")
    assert "| PUE | 1 | 1.375 |" in out
    assert "## Audit trail 2023-06-30..2023-07-02" in out and "meters grid-main" in out


def test_window_without_data_is_insufficient(site_file, capsys):
    code, out, err = run(capsys, "--config", str(site_file), "--from", "2023-07-03",
                         "--to", "2023-07-04")
    assert code == 0
    assert "| Electricity used | MWh | insufficient data |" in out
    assert "| Scope 2 emissions, market-based | tCO2e | insufficient data |" in out
    assert "23 of 24 hours" not in err and "24 of 24 hours had no factor" in err


def test_hourly_csv_needs_offsets(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("timestamp,t_per_mwh\n2023-01-01T00:00:00Z,0.5\n2023-01-01T01:00:00,0.4\n")
    with pytest.raises(ConfigError, match=r"line 3: timestamp .* has no UTC offset"):
        load_hourly_factors(path, "x")
    path.write_text("timestamp,t_per_mwh\n2023-01-01T01:00:00+01:00,0.5\n2023-01-01T00:00Z,1\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_hourly_factors(path, "x")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[[carbon.measures]]\nname='m'\nmwh=1\nstart=2023-02-01\nend=2023-01-01\nsource='s'\n",
         "carbon.measures[0]: end 2023-01-01 must be after start"),
        ("[carbon]\nresidual_mix_t_per_mwh = 0.4\n", "residual_mix_source is required"),
    ],
)
def test_bad_carbon_config_is_one_line(tmp_path, capsys, extra, message):
    path = tmp_path / "bad.toml"
    path.write_text(SITE.split("[carbon]")[0] + extra)
    code, _, err = run(capsys, "--config", str(path), "--from", "2023-01-01", "--to", "2023-02-01")
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_reference_method_on_a_metered_site(site_file):
    """Location over all electricity per hour: 0.11 MWh x (12 x 0.3 + 12 x 0.6) = 1.188 t;
    market = 1.188 - (0.1 tariff + 0.24 PV) MWh x 0.5 = 1.018 t."""
    site_file.write_text(SITE.replace("[carbon]\n", '[carbon]\nmethod = "location_minus_avoided"\n'))
    site = load_site(site_file)
    with Store(site.store.path) as store:
        report = site_report(site, store, date(2023, 6, 30), date(2023, 7, 1),
                             base_dir=site_file.parent)
    june = report.accounts[0].figures
    assert june["scope2_location"].value == pytest.approx(1.188)
    assert june["avoided_renewables"].value == pytest.approx(0.17)
    assert june["scope2_market"].value == pytest.approx(1.018)
