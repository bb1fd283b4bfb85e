"""Alert engine on synthetic residual series, thresholds and meter ages (no I/O)."""

from __future__ import annotations

import numpy as np
import pytest
from dcpue.config.service import AlertSettings, DriftSettings, StaleSettings, ThresholdRule
from dcpue.service.alerts import AlertEngine, Gate, Observation, cusum_step, ewma_limit

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000
EXPECTED = 1.30  # model PUE used for every sample


def engine(**drift: object) -> AlertEngine:
    settings = AlertSettings(
        drift=DriftSettings(**drift), thresholds=[], stale=StaleSettings(enabled=False)
    )
    return AlertEngine(settings, "hall-a", ["grid-main"], T0)


def run_residuals(eng: AlertEngine, residuals: np.ndarray, start: int = 0) -> list[tuple[int, str]]:
    """Feed one residual per hour; return (sample index, status) of every change."""
    events = []
    for i, r in enumerate(residuals, start=start):
        obs = Observation(T0 + i * HOUR_MS, {"pue.1h": EXPECTED + float(r)}, EXPECTED)
        events += [(i, a.status) for a in eng.evaluate(obs)]
    return events


def test_gate_needs_minimum_duration_and_hysteresis():
    g = Gate()
    assert g.step(0, True, False, 10, 5) is None  # pending since 0
    assert g.step(9, True, False, 10, 5) is None
    assert g.step(10, True, False, 10, 5) == "fire"
    assert g.step(11, False, False, 10, 5) is None  # between the thresholds: stays active
    assert g.step(12, False, True, 10, 5) is None  # clearing since 12
    assert g.step(13, True, False, 10, 5) is None  # relapse resets the clear timer
    assert g.step(14, False, True, 10, 5) is None
    assert g.step(19, False, True, 10, 5) == "resolve"


def test_cusum_and_ewma_formulas_by_hand():
    # S+ = max(0, 1.0 + 2.0 - 0.5) = 2.5 ; S- = max(0, 0.3 - 2.0 - 0.5) = 0
    assert cusum_step(1.0, 0.3, 2.0, 0.5, 16.0) == (2.5, 0.0)
    assert cusum_step(15.0, 0.0, 3.0, 0.5, 16.0) == (16.0, 0.0)  # capped at 2h
    # L sqrt(λ/(2-λ)) with λ = 0.2, L = 3: 3 * sqrt(0.2/1.8) = 1.0
    assert ewma_limit(0.2, 3.0) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["cusum", "ewma"])
def test_step_change_raises_within_duration_and_resolves(method):
    rng = np.random.default_rng(7)
    sigma = 0.005
    baseline = 48
    noise = rng.normal(0.0, sigma, 400) + 0.01  # a constant model bias is learned, not alerted
    step = noise.copy()
    step[100:200] += 6 * sigma  # fault from sample 100 to 199
    eng = engine(method=method)
    events = run_residuals(eng, step)
    assert eng.drift.n == baseline
    assert eng.drift.mean == pytest.approx(0.01, abs=3 * sigma / np.sqrt(baseline))
    fired = [i for i, s in events if s == "firing"]
    resolved = [i for i, s in events if s == "resolved"]
    assert len(fired) == 1 and len(resolved) == 1
    # CUSUM: z ≈ 6 per sample, S+ grows ~5.5/h and exceeds h = 8 after 2 samples; the 60 min
    # minimum duration adds one more sample. EWMA: λz reaches the 1.17σ limit at once.
    assert 100 < fired[0] <= 104
    # After the fault the capped statistic decays; hysteresis + 60 min clear time bound it.
    assert 200 < resolved[0] <= 240
    alert = eng.history[0]
    assert alert.name == "PueDrift" and alert.labels["direction"] == "up"
    assert "above" in alert.summary and "1.3" in alert.summary


@pytest.mark.parametrize("method", ["cusum", "ewma"])
def test_noise_alone_raises_nothing_over_30_days(method):
    rng = np.random.default_rng(11)
    eng = engine(method=method)
    assert run_residuals(eng, rng.normal(0.0, 0.005, 30 * 24)) == []


def test_small_drift_is_not_a_step_in_the_noise():
    """A shift of 0.25 σ sits inside the CUSUM allowance k = 0.5 σ and never fires."""
    rng = np.random.default_rng(3)
    r = rng.normal(0.0, 0.005, 300)
    r[100:] += 0.25 * 0.005
    assert run_residuals(engine(), r) == []


def test_missing_expected_pue_skips_the_sample():
    eng = engine()
    eng.evaluate(Observation(T0, {"pue.1h": 1.4}, None))
    eng.evaluate(Observation(T0, {"pue.1h": None}, 1.3))
    assert eng.drift.n == 0 and eng.drift.last_sample_ms is None


def test_restart_resumes_alert_state():
    rng = np.random.default_rng(5)
    r = rng.normal(0.0, 0.005, 120)
    r[60:] += 0.04
    whole = engine()
    expected = run_residuals(whole, r)
    first = engine()
    run_residuals(first, r[:61])  # stops while the drift is pending
    resumed = engine()
    resumed.load(first.dump())
    assert run_residuals(resumed, r[61:], start=61) == expected
    assert resumed.dump() == whole.dump()


def test_threshold_rule_with_minimum_duration_and_clear_margin():
    rule = ThresholdRule(name="PueHigh", figure="pue.1h", above=1.5, for_min=10, clear_margin=0.05)
    settings = AlertSettings(drift=DriftSettings(enabled=False), thresholds=[rule],
                             stale=StaleSettings(enabled=False))
    eng = AlertEngine(settings, "hall-a", [], T0)
    minute = 60_000
    values = [1.4, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.47, 1.44, 1.6]
    log = []
    for i, v in enumerate(values):
        for a in eng.evaluate(Observation(T0 + i * minute, {"pue.1h": v})):
            log.append((i, a.status, a.value))
    # above since minute 1, fires at minute 11 (10 min); 1.47 is inside the 0.05 margin,
    # 1.44 clears it; 1.6 at minute 14 starts a new pending period only.
    assert log == [(11, "firing", 1.6), (13, "resolved", 1.6)]
    assert eng.history[0].ends_ms == T0 + 13 * minute


def test_stale_meter_fires_and_resolves_itself():
    settings = AlertSettings(drift=DriftSettings(enabled=False), thresholds=[],
                             stale=StaleSettings(expected_interval_s=60, factor=5))
    eng = AlertEngine(settings, "hall-a", ["grid-main", "ups-out"], T0)
    minute = 60_000
    fresh = {"grid-main": T0 + 6 * minute, "ups-out": T0 + 6 * minute}
    assert eng.evaluate(Observation(T0 + 5 * minute, {}, None, {})) == []  # 5 min = limit
    fired = eng.evaluate(Observation(T0 + 6 * minute, {}, None, {"grid-main": T0 + 6 * minute}))
    assert [a.labels["meter"] for a in fired] == ["ups-out"]
    assert "6 min" in fired[0].summary and fired[0].value == pytest.approx(360.0)
    resolved = eng.evaluate(Observation(T0 + 7 * minute, {}, None, fresh))
    assert [(a.id, a.status) for a in resolved] == [("hall-a:stale:ups-out", "resolved")]
    assert eng.active == {}


def test_dead_letter_storm_fires_after_two_minutes_and_resolves():
    """Declared: 3,000 dead letters a minute up to minute 4, then 10 a minute. Hand result: the
    rate (3,000/min) is above the 1,000/min limit from the second evaluation (the first only
    sets the baseline), so DeadLetterStorm fires at minute 3 (2 min later); at 10/min it is
    under half the limit and resolves 2 min after the rate fell, at minute 7."""
    eng = AlertEngine(AlertSettings(drift=DriftSettings(enabled=False),
                                    stale=StaleSettings(enabled=False)), "s", [], 0)
    total, seen = 0, []
    for minute in range(10):
        total += 3000 if minute <= 4 else 10
        for a in eng.evaluate(Observation(minute * 60_000, {}, dead_letters=total)):
            seen.append((minute, a.name, a.status))
    assert seen == [(3, "DeadLetterStorm", "firing"), (7, "DeadLetterStorm", "resolved")]


def test_an_evaluation_reads_only_the_rules_figures():
    """Computed: the rolling figures the rules read (what the daemon's per-minute snapshot is
    narrowed to). Declared: a threshold on pue.15m, one on a meter (read from the meter's
    latest value, not a rolling figure) and the drift detector on cue.1d."""
    rules = [ThresholdRule(name="PueFast", figure="pue.15m", above=2.0),
             ThresholdRule(name="Hot", figure="meter:inlet", above=27.0)]
    settings = AlertSettings(drift=DriftSettings(figure="cue.1d"), thresholds=rules)
    eng = AlertEngine(settings, "hall-a", ["grid-main"], T0)
    assert eng.figures_read() == {"pue.15m", "cue.1d"}
    eng.settings = AlertSettings(drift=DriftSettings(enabled=False), thresholds=rules)
    assert eng.figures_read() == {"pue.15m"}  # a reload's settings, at once
