"""The proposal search on hand-made models, including deliberately wrong ones."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pytest
from dcpue.config import SetpointName
from dcpue.config.optimizer import OptimizerSettings
from dcpue.core.store import Store
from dcpue.optimizer.models import Prediction, TrustRegion
from dcpue.optimizer.propose import PlantState, Proposal, ProposalLog, describe, propose

SA, CHW, FAN, PUMP, UNITS = (
    SetpointName.SUPPLY_AIR_TEMPERATURE, SetpointName.CHILLED_WATER_TEMPERATURE,
    SetpointName.CRAH_FAN_SPEED, SetpointName.PUMP_FREQUENCY, SetpointName.RUNNING_UNITS,
)
CONDITIONS = {"it_kw": 800.0, "dry_bulb_c": 25.0, "relative_humidity_pct": 60.0,
              "wet_bulb_c": 19.6, "dew_point_c": 16.7}
CURRENT = {SA: 20.0, CHW: 10.0, FAN: 80.0, PUMP: 50.0, UNITS: 8.0}
# Default hard bounds: supply 18-27 (step 1), chw 7-20 (1), fan 30-100 (10), pump 25-50 (5),
# units 1-8 (1); limit 27 - margin 1 = 26 degC with no model-error allowance.
CFG = OptimizerSettings(inlet_sigmas=0.0)


@dataclass
class Model:
    """A predictor from two formulas over the feature columns."""

    power: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    inlet: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    trust: TrustRegion | None = None
    target: str = "facility"
    power_rmse_kw: float = 1.0
    inlet_rmse_c: float = 0.2

    def predict(self, x: Mapping[str, np.ndarray]) -> Prediction:
        return Prediction(self.power(x) + 0.0 * x["it_kw"], self.inlet(x) + 0.0 * x["it_kw"])


# Saves 10 kW per degC of chilled water and 2 kW per degC of supply air; inlet = supply + 2.
LINEAR = Model(lambda x: 1000.0 - 10.0 * x["chilled_water_c"] - 2.0 * x["supply_air_c"],
               lambda x: x["supply_air_c"] + 2.0)


def _state(**setpoints: float) -> PlantState:
    return PlantState(0, dict(CONDITIONS), CURRENT | {SetpointName(k): v for k, v in
                                                      setpoints.items()})


def test_moves_by_at_most_the_maximum_step() -> None:
    p = propose(LINEAR, _state(), CFG)
    assert p.status == "proposed"
    assert p.proposed["supply_air_temperature"] == 21.0
    assert p.proposed["chilled_water_temperature"] == 11.0
    # levers the model is indifferent to stay where they are
    assert (p.proposed["crah_fan_speed"], p.proposed["pump_frequency"],
            p.proposed["running_units"]) == (80.0, 50.0, 8.0)
    assert p.saving_kw == pytest.approx(12.0)
    assert p.saving_pct == pytest.approx(100 * 12.0 / (1000 - 100 - 40))
    assert {"max_step:supply_air_temperature", "max_step:chilled_water_temperature"} <= set(
        p.binding)
    # Phi(12 / (sqrt(2) * 1 kW)) ~ 1
    assert p.confidence > 0.999


def test_inlet_limit_binds() -> None:
    p = propose(LINEAR, _state(supply_air_temperature=23.6), CFG)
    assert 23.6 < p.proposed["supply_air_temperature"] <= 24.0  # inlet 26 degC at 24
    assert p.predicted_inlet_c <= 26.0
    assert p.binding[0] == "inlet_limit"
    # the model's inlet error widens the margin: 2 sigma x 0.2 degC -> supply <= 23.6
    cautious = propose(LINEAR, _state(supply_air_temperature=23.0), OptimizerSettings())
    assert cautious.inlet_limit_c == pytest.approx(25.6)
    assert cautious.proposed["supply_air_temperature"] <= 23.6


def test_too_hot_now_proposes_cooling() -> None:
    # inlet 26.5 > 26: the best feasible point within one step is supply 24 degC
    p = propose(LINEAR, _state(supply_air_temperature=24.5), CFG)
    assert p.proposed["supply_air_temperature"] == 24.0
    assert "predicted inlet 26.50 degC above 26.00" in p.reason
    # nothing within one step is feasible: the coolest candidate, at the cost of power
    p = propose(LINEAR, _state(supply_air_temperature=26.5), CFG)
    assert p.proposed["supply_air_temperature"] == 25.5
    assert "proposing the coolest" in p.reason


GREEDY_UP = Model(lambda x: -1e6 * sum(x[c] for c in x), lambda x: 0.0 * x["it_kw"])
GREEDY_DOWN = Model(lambda x: 1e6 * sum(x[c] for c in x), lambda x: -50.0 + 0.0 * x["it_kw"])


@pytest.mark.parametrize("model", [GREEDY_UP, GREEDY_DOWN], ids=["up", "down"])
def test_wrong_models_never_leave_the_hard_bounds(model: Model) -> None:
    """A model that rewards ever larger (or smaller) setpoints and sees no inlet risk."""
    rng = np.random.default_rng(5)
    bounds = {n.value: getattr(CFG.setpoints, n.value) for n in SetpointName}
    for _ in range(40):
        # current values anywhere, including outside the bounds (a manual change at the plant)
        current = {n: float(rng.uniform(b.min - 10, b.max + 10)) for n, b in
                   ((SetpointName(k), b) for k, b in bounds.items())}
        p = propose(model, PlantState(0, dict(CONDITIONS), current), CFG)
        for name, value in p.proposed.items():
            b = bounds[name]
            assert b.min <= value <= b.max, (name, value)
            inside = min(max(current[SetpointName(name)], b.min), b.max)
            inside = round(inside) if b.integer else inside
            assert abs(value - inside) <= b.max_step + 1e-9
        assert float(p.proposed["running_units"]).is_integer()


def test_non_finite_predictions_keep_current() -> None:
    nan = Model(lambda x: np.full(len(x["it_kw"]), np.nan), lambda x: 0.0 * x["it_kw"])
    p = propose(nan, _state(), CFG)
    assert p.status == "keep"
    assert p.proposed == {k.value: v for k, v in CURRENT.items()}
    assert "no finite prediction" in p.reason


def test_outside_the_trained_region_keeps_current() -> None:
    columns = {**CONDITIONS, "supply_air_c": 20.0, "chilled_water_c": 10.0,
               "crah_fan_speed_pct": 80.0, "pump_frequency_hz": 50.0, "running_units": 8.0}
    lo = {c: v - 5.0 for c, v in columns.items()}
    hi = {c: v + 5.0 for c, v in columns.items()} | {"wet_bulb_c": 19.5}
    trusted = Model(LINEAR.power, LINEAR.inlet, trust=TrustRegion(lo, hi))
    # wet bulb 19.6 is inside [14.6, 19.5] widened by 5 % of its 4.9 K span (19.745)
    assert propose(trusted, _state(), CFG).status == "proposed"
    strict = OptimizerSettings(inlet_sigmas=0.0, trust_tolerance=0.0)
    p = propose(trusted, _state(), strict)
    assert p.status == "keep" and "wet_bulb_c=19.6 outside trained range" in p.reason
    # the search never leaves the trained range: chilled water trained up to 10.5 degC only
    narrow = Model(LINEAR.power, LINEAR.inlet,
                   trust=TrustRegion(lo, hi | {"wet_bulb_c": 25.0, "chilled_water_c": 10.5}))
    p = propose(narrow, _state(), strict)
    assert p.proposed["chilled_water_temperature"] == 10.5
    assert "trust:chilled_water_temperature" in p.binding


def test_a_model_trained_at_fixed_setpoints_says_it_cannot_judge_a_change() -> None:
    setpoints = {"supply_air_c": 20.0, "chilled_water_c": 10.0, "crah_fan_speed_pct": 80.0,
                 "pump_frequency_hz": 50.0, "running_units": 8.0}
    lo = {c: v - 5.0 for c, v in CONDITIONS.items()} | setpoints
    hi = {c: v + 5.0 for c, v in CONDITIONS.items()} | setpoints
    p = propose(Model(LINEAR.power, LINEAR.inlet, trust=TrustRegion(lo, hi)), _state(), CFG)
    assert p.status == "keep" and p.proposed == p.current
    assert "trained at fixed setpoints" in p.reason and "commissioning sweep" in p.reason
    # one lever seen moving is enough to search along it
    wider = hi | {"chilled_water_c": 14.0}
    p = propose(Model(LINEAR.power, LINEAR.inlet, trust=TrustRegion(lo, wider)), _state(), CFG)
    assert p.status == "proposed" and p.proposed["chilled_water_temperature"] == 11.0


def test_override_fixes_a_setpoint() -> None:
    p = propose(LINEAR, _state(), CFG, fixed={CHW: 8.0})
    assert p.proposed["chilled_water_temperature"] == 8.0
    assert "override:chilled_water_temperature" in p.binding


def test_small_savings_keep_current() -> None:
    flat = Model(lambda x: 1000.0 - 0.001 * x["chilled_water_c"], LINEAR.inlet)
    p = propose(flat, _state(), CFG)
    assert p.status == "keep" and "below" in p.reason


def test_proposals_are_stored_and_listed() -> None:
    first = propose(LINEAR, _state(), CFG, site="t")
    second = propose(LINEAR, PlantState(1000, dict(CONDITIONS), dict(CURRENT)), CFG, site="t")
    assert Proposal.from_json(first.to_json()) == first
    with Store() as store:
        log = ProposalLog(store)
        log.save(first)
        log.save(second)
        assert [p.id for p in log.list()] == [second.id, first.id]
        accepted = log.set_status(first, "accepted")
        assert log.get(first.id) == accepted
        assert [p.id for p in log.list(status="accepted")] == [first.id]
    view = describe(first)
    assert view["changes"]["chilled_water_temperature"] == "10 -> 11"


def test_untrusted_model_steps_cooler_when_measured_inlet_is_high() -> None:
    columns = {**CONDITIONS, "supply_air_c": 20.0, "chilled_water_c": 10.0,
               "crah_fan_speed_pct": 80.0, "pump_frequency_hz": 50.0, "running_units": 8.0}
    lo = {c: v - 5.0 for c, v in columns.items()}
    hi = {c: v + 5.0 for c, v in columns.items()} | {"it_kw": 700.0}  # IT 800 kW is unseen
    trusted = Model(LINEAR.power, LINEAR.inlet, trust=TrustRegion(lo, hi))
    cool = PlantState(0, dict(CONDITIONS), dict(CURRENT), rack_inlet_c=25.0)
    assert propose(trusted, cool, CFG).status == "keep"
    hot = PlantState(0, dict(CONDITIONS), dict(CURRENT), rack_inlet_c=26.4)
    p = propose(trusted, hot, CFG, fixed={CHW: 10.0})
    assert p.status == "proposed" and "step cooler without the model" in p.reason
    # supply air down one step, fan up one step, units already at the 8 maximum; the
    # overridden chilled water and the pump (no effect on inlet) stay
    assert p.proposed == {"supply_air_temperature": 19.0, "chilled_water_temperature": 10.0,
                          "crah_fan_speed": 90.0, "pump_frequency": 50.0, "running_units": 8.0}


def test_held_levers_are_never_searched() -> None:
    """``enabled = false`` keeps a lever where it is (even outside the bounds: not the
    optimizer's), ``min = max`` holds it at that value; the free levers still move."""
    cfg = OptimizerSettings(inlet_sigmas=0.0, setpoints={
        "chilled_water_temperature": {"min": 7.0, "max": 20.0, "max_step": 1.0,
                                      "enabled": False},
        "supply_air_temperature": {"min": 21.0, "max": 21.0, "max_step": 1.0},
    })
    p = propose(LINEAR, _state(chilled_water_temperature=6.0), cfg)
    assert p.proposed["chilled_water_temperature"] == 6.0
    assert p.proposed["supply_air_temperature"] == 21.0
    assert {"held:chilled_water_temperature", "held:supply_air_temperature"} <= set(p.binding)


def test_a_model_that_disagrees_with_the_sensors_is_not_trusted() -> None:
    """LINEAR predicts inlet = supply + 2 = 22 degC now; sensors reading 27.5 (a plant the model
    never saw: 5.5 K off, beyond max(3 x 0.2, 1.0) K) make it step cooler without the model;
    reading 22.5 (0.5 K off) it is trusted."""
    p = propose(LINEAR, PlantState(0, dict(CONDITIONS), dict(CURRENT), rack_inlet_c=27.5), CFG)
    assert "outside what the model learned" in p.reason and "step cooler" in p.reason
    assert p.proposed["supply_air_temperature"] == 19.0
    ok = propose(LINEAR, PlantState(0, dict(CONDITIONS), dict(CURRENT), rack_inlet_c=22.5), CFG)
    assert ok.status == "proposed" and "outside" not in ok.reason


def test_a_disagreeing_model_that_predicts_overheating_steps_cooler() -> None:
    """LINEAR at supply air 24.8 predicts inlet 26.8 degC, above the 26 degC limit less margin;
    sensors reading 24.5 (2.3 K off: not trusted). Declared: the warmer of the two is acted on,
    one step cooler without the model (on the EnergyPlus hall such a prediction came 3
    intervals before a measured 29.6 degC); reading 28.5 it steps cooler as well."""
    state = PlantState(0, dict(CONDITIONS), CURRENT | {SA: 24.8}, rack_inlet_c=24.5)
    p = propose(LINEAR, state, CFG)
    assert "step cooler without the model: predicted inlet 26.80 degC" in p.reason
    assert p.proposed["supply_air_temperature"] == pytest.approx(23.8)
    cool = propose(LINEAR, PlantState(0, dict(CONDITIONS), dict(CURRENT), rack_inlet_c=24.5),
                   CFG)  # predicted 22, measured 24.5: neither above 26, keep current
    assert cool.reason.startswith("keep current") and cool.status == "keep"


# A bump of 5 kW at chilled water 11 degC between the current 10 degC and a 30 kW saving at
# 14 degC and above (the shape a tree ensemble's step gave on the EnergyPlus hall); inlet
# independent of chilled water.
BUMPY = Model(lambda x: 1000.0 + 5.0 * (np.abs(x["chilled_water_c"] - 11.0) < 0.75)
              - 30.0 * (x["chilled_water_c"] >= 14.0), lambda x: x["supply_air_c"] + 2.0)


def test_a_bump_does_not_hold_the_loop_where_it_is() -> None:
    """Computed: the proposal from 10 degC chilled water. Declared: nothing within one 1 K
    step saves (10.5-11 cost 5 kW, 9-9.5 the same), 14-20 degC save 30 kW, more than the
    power RMSE (1 kW): one step toward them, to 11 degC, with the goal in the reason; the
    levers the model is indifferent to stay."""
    p = propose(BUMPY, _state(supply_air_temperature=24.0), CFG)
    assert p.proposed["chilled_water_temperature"] == 11.0
    assert "one step toward a point predicted at 970.0 kW" in p.reason
    assert (p.proposed["supply_air_temperature"], p.proposed["crah_fan_speed"],
            p.proposed["pump_frequency"], p.proposed["running_units"]) == (24.0, 80.0, 50.0, 8.0)
    # a far saving within the model's error (reach_sigmas x RMSE 40 kW) is not steered toward
    vague = propose(BUMPY, _state(supply_air_temperature=24.0),
                    OptimizerSettings(inlet_sigmas=0.0, reach_sigmas=40.0))
    assert vague.proposed["chilled_water_temperature"] == 10.0
    assert vague.reason.startswith("keep current")


def test_the_local_and_far_grids_share_one_model_call() -> None:
    """Computed: the rows of each predictor call the proposal of
    ``test_a_bump_does_not_hold_the_loop_where_it_is`` makes, and its result. Declared: the
    search is four calls (the current point; the grid within one step together with the far
    grid over the hard bounds; the refinement around the best; the step toward the goal).
    The second holds both grids: within one step 5 levels of supply air, chilled water, fan
    and pump and the whole units 7-8 (5^4 x 2 = 1250), over the bounds 3 levels plus the
    current value (pump: its current 50 Hz is the top level, so 3) and every whole unit
    1-8 (4 x 4 x 4 x 3 x 8 = 1536); the proposal is the one the separate calls gave."""
    calls: list[int] = []

    @dataclass
    class Counted(Model):
        def predict(self, x: Mapping[str, np.ndarray]) -> Prediction:
            calls.append(len(x["chilled_water_c"]))
            return super().predict(x)

    p = propose(Counted(BUMPY.power, BUMPY.inlet), _state(supply_air_temperature=24.0), CFG)
    assert p.proposed["chilled_water_temperature"] == 11.0
    assert "one step toward a point predicted at 970.0 kW" in p.reason
    assert len(calls) == 4
    assert (calls[0], calls[1], calls[3]) == (1, 1250 + 1536, 1)


def test_far_points_above_the_inlet_limit_get_no_power_prediction() -> None:
    """Computed: the rows whose power a plant model (one with ``predict_work``, whose
    ``predict`` takes ``power_rows``) is asked for in the proposal of
    ``test_a_bump_does_not_hold_the_loop_where_it_is``, and the proposal. Declared: of the
    second call's 1250 + 1536 rows, every row within one step and the far rows whose inlet
    (supply + 2) meets the 26 degC limit: the far supply levels are 18, 22.5, 24 (current) and
    27 degC, 27 is too warm, so 3/4 of 1536; the proposal is the one of the model that
    predicts every row's power."""
    asked: list[int] = []

    @dataclass
    class Plant(Model):
        def predict(self, x: Mapping[str, np.ndarray],
                    power_rows: Callable[[np.ndarray], np.ndarray] | None = None) -> Prediction:
            pred = super().predict(x)
            if power_rows is None:
                return pred
            wanted = power_rows(pred.rack_inlet_c)
            asked.append(int(np.count_nonzero(wanted)))
            return Prediction(np.where(wanted, pred.power_kw, np.nan), pred.rack_inlet_c)

        def predict_work(self, x: Mapping[str, np.ndarray]) -> Prediction:
            raise AssertionError("no IT response: the search calls predict")

    state = _state(supply_air_temperature=24.0)
    p = propose(Plant(BUMPY.power, BUMPY.inlet), state, CFG)
    assert asked == [1250 + 1536 * 3 // 4]
    full = propose(BUMPY, state, CFG)
    assert (p.proposed, p.reason, p.proposed_kw, p.saving_kw, p.binding) == (
        full.proposed, full.reason, full.proposed_kw, full.saving_kw, full.binding)


def test_a_plant_models_power_on_some_rows_is_its_power_on_all(july_model) -> None:
    """Computed: the twin model's prediction of 300 candidate rows, with and without
    ``power_rows`` (the rows with a predicted inlet below its median). Declared: inlet and IT
    power unchanged, power equal on the asked rows (1e-12 relative: the init ridge's matrix
    product over fewer rows may round differently) and NaN on the others."""
    rng = np.random.default_rng(5)
    lo, hi = july_model.trust.lo, july_model.trust.hi
    x = {c: rng.uniform(lo[c], hi[c], 300) for c in july_model.features}
    full = july_model.predict(x)
    cut = float(np.median(full.rack_inlet_c))
    part = july_model.predict(x, lambda inlet: inlet < cut)
    wanted = full.rack_inlet_c < cut
    assert 100 < wanted.sum() < 200
    np.testing.assert_array_equal(part.rack_inlet_c, full.rack_inlet_c)
    np.testing.assert_allclose(part.power_kw[wanted], full.power_kw[wanted], rtol=1e-12)
    assert np.isnan(part.power_kw[~wanted]).all()
