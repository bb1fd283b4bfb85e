"""A counter that also reports power (``also = ["power"]``) in the rolling calculator: the
same engine rule as :func:`dcpue.metrics.balance.energy_balance` (counter preferred, power
only for the time the counter's energy is unknown), energy counted once.

Declared: the single-hall example with constant powers (grid 1,300 kW, IT 1,000 kW, six
sub-meters at 50 kW), 1-minute samples; the IT meter's counter goes silent from 01:00 to
01:31 and comes back with a +50,000 kWh jump (a torn read: unknown energy), while its power
readings (1,000 kW) go on every minute; its ceiling is declared (1,500 kW). Hand-worked: PUE
1,300 / 1,000 = 1.3 over any window, IT energy 1,000 kWh per hour. Computed: the rolling
windows, fed in 10-minute batches, and the direct balance of the same windows.
"""

import tomllib

import numpy as np
import pytest
from dcpue.config import example_path, parse_site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.metrics.rolling import RollingCalculator

from tests.metrics.synth import HOUR, MINUTE, T0

KW = {"grid-main": 1300.0, "ups-out": 1000.0, **{m: 50.0 for m in (
    "ups-loss", "chiller-1", "crah-fans", "pumps", "tower-1", "lighting")}}
SILENT = (T0 + 60 * MINUTE, T0 + 91 * MINUTE)  # no IT counter sample strictly inside


def _site():
    data = tomllib.loads(example_path("single_hall").read_text())
    ups = next(m for m in data["meters"] if m["id"] == "ups-out")
    ups.update(also=["power"], max_power_kw=1500.0)
    data["calculator"] = {"windows": ["15m", "1h", "1d"]}
    return parse_site(data)


def _readings(
    silent: tuple[int, int] = SILENT, minutes: int = 120, jump: float = 50_000.0
) -> ReadingColumns:
    ts = T0 + MINUTE * np.arange(minutes + 1, dtype=np.int64)
    parts = [ReadingColumns.series(m, "energy", "kWh", ts, 1000.0 + kw * (ts - T0) / HOUR)
             for m, kw in KW.items() if m != "ups-out"]
    energy = 1000.0 + 1000.0 * (ts - T0) / HOUR
    energy[ts >= silent[1]] += jump  # by default the counter comes back 50 MWh too high
    keep = (ts <= silent[0]) | (ts >= silent[1])
    parts.append(ReadingColumns.series("ups-out", "energy", "kWh", ts[keep], energy[keep]))
    parts.append(ReadingColumns.series("ups-out", "power", "kW", ts, np.full(len(ts), 1000.0)))
    return ReadingColumns.concat(parts)


def _take(cols: ReadingColumns, mask: np.ndarray) -> ReadingColumns:
    return ReadingColumns(*(getattr(cols, f)[mask] for f in ReadingColumns.__slots__))


def test_the_rolling_figures_fill_a_counter_gap_from_power_as_the_balance_does():
    site, cols, store = _site(), _readings(), Store()
    calc = RollingCalculator(site, store, clock=lambda: T0 + 2 * HOUR)
    counter_only = RollingCalculator(site, clock=lambda: T0 + 2 * HOUR)  # no store: no fill
    for lo in range(0, 121, 10):
        batch = _take(cols, (cols.ts_ms >= T0 + lo * MINUTE) & (cols.ts_ms < T0 + (lo + 10)
                                                                  * MINUTE))
        store.append(batch)
        calc.update(batch)
        counter_only.update(batch)
        now = T0 + min(lo + 9, 120) * MINUTE
        for window in ("15m", "1h"):
            rolling = calc.balance(window, now)
            direct = energy_balance(site, store, rolling.start_ms, rolling.end_ms)
            assert rolling.it_kwh == pytest.approx(direct.it_kwh, rel=1e-9), (window, now)
            assert rolling.facility_kwh == pytest.approx(direct.facility_kwh, rel=1e-9)
            assert rolling.coverage == pytest.approx(direct.coverage, abs=1e-9)
            assert ([e.kind for e in rolling.meter_energy["ups-out"].events]
                    == [e.kind for e in direct.meter_energy["ups-out"].events])
        if lo == 80:  # 01:29: the counter silent for 29 minutes, power filling them
            fig = calc.snapshot(now)["pue.1h"]
            assert fig.value == pytest.approx(1.3, rel=1e-9) and fig.coverage == 1.0
            assert calc.balance("1h", now).it_kwh == pytest.approx(1000.0, rel=1e-9)
            assert counter_only.snapshot(now)["pue.1h"].value is None  # 29 of 60 min lost
    now = T0 + 2 * HOUR
    fig = calc.snapshot(now)["pue.1h"]
    assert fig.value == pytest.approx(1.3, rel=1e-9) and fig.coverage == 1.0
    # the jump's 31 minutes from power, the rest from the counter: 2 h x 1,000 kW, once
    two_hours = calc.balance("1d", now)
    assert two_hours.it_kwh == pytest.approx(2000.0, rel=1e-9)
    assert [e.kind for e in two_hours.meter_energy["ups-out"].events] == [
        "jump_filled_by_power"]
    # the counter alone: the jump is a data-quality error, not a figure
    assert counter_only.snapshot(now)["pue.1h"].value is None
    assert calc.recomputed >= 1  # the fill after 01:00 was replaced once the counter came back
    # a restart from the store follows the same rule
    rebuilt = RollingCalculator.from_store(site, store, now).balance("1h", now)
    assert rebuilt.it_kwh == pytest.approx(1000.0, rel=1e-9)


def test_a_replayed_batch_of_such_a_meter_changes_no_figure():
    site, cols, store = _site(), _readings(), Store()
    calc = RollingCalculator(site, store, clock=lambda: T0 + 2 * HOUR)
    store.append(cols)
    calc.update(cols)
    now = T0 + 2 * HOUR
    before = {k: f.value for k, f in calc.snapshot(now).items()}
    calc.update(_take(cols, cols.meter == "ups-out"))
    assert {k: f.value for k, f in calc.snapshot(now).items()} == before
    assert before["pue.1h"] == pytest.approx(1.3, rel=1e-9)


def test_after_a_restart_a_long_power_fill_is_replaced_by_the_returning_counter():
    """The counter silent from 00:30 to 03:01 (power filling the time after its last sample),
    the calculator restarted from the store at 02:30 and fed the rest; the counter comes back
    without a jump, so the silent time's energy is the counter's (known, but unmeasured: the
    engine's rule). Over 00:00-04:00 IT is 4 h x 1,000 kW = 4,000 kWh (hand-worked), and every
    window's energy and coverage equal the direct balance's: a fill kept from before the
    restart would show the silent time as measured."""
    site, store = _site(), Store()
    cols = _readings((T0 + 30 * MINUTE, T0 + 181 * MINUTE), 240, jump=0.0)
    restart = T0 + 150 * MINUTE
    store.append(_take(cols, cols.ts_ms <= restart))
    calc = RollingCalculator.from_store(site, store, restart, clock=lambda: T0 + 4 * HOUR)
    for lo in range(150, 240, 10):
        batch = _take(cols, (cols.ts_ms > T0 + lo * MINUTE) & (cols.ts_ms <= T0 + (lo + 10)
                                                                 * MINUTE))
        store.append(batch)
        calc.update(batch)
    now = T0 + 4 * HOUR
    assert calc.balance("1d", now).it_kwh == pytest.approx(4000.0, rel=1e-9)
    for window in ("15m", "1h", "1d"):
        rolling = calc.balance(window, now)
        direct = energy_balance(site, store, rolling.start_ms, rolling.end_ms)
        assert rolling.it_kwh == pytest.approx(direct.it_kwh, rel=1e-9), window
        assert rolling.coverage == pytest.approx(direct.coverage, abs=1e-9), window
    assert calc.balance("1d", now).meter_energy["ups-out"].coverage == pytest.approx(
        (4 * 60 - 151) / (24 * 60), abs=1e-9)  # 151 silent minutes unmeasured
    assert calc.snapshot(now)["pue.1h"].value == pytest.approx(1.3, rel=1e-9)
