"""The joint trust region: combinations of conditions and setpoints the training never came
near, where each column alone is inside its trained range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from dcpue.config import SetpointName
from dcpue.config.optimizer import OptimizerSettings
from dcpue.optimizer.models import JointRegion, TrustRegion, joint_columns
from dcpue.optimizer.propose import PlantState, propose

from tests.optimizer.test_propose import CONDITIONS, CURRENT, Model


def test_radius_and_distance_by_hand() -> None:
    """Computed: the region of 11 rows x = 0, 1, ..., 10 with k = 1, and the distances of
    x = 5.5 and x = 12. Declared: the standard deviation is sqrt(10) = 3.1623; every row's
    nearest other is 1 away, so the radius is 1 / 3.1623 = 0.3162; 5.5 lies 0.5 from its
    nearest row (0.1581), 12 lies 2 from 10 (0.6325, outside)."""
    region = JointRegion.of(pd.DataFrame({"x": np.arange(11.0)}), ("x",), k=1)
    assert region is not None
    assert region.radius == pytest.approx(1 / np.sqrt(10.0), rel=1e-12)
    d = region.distance({"x": np.array([5.5, 12.0])})
    assert d == pytest.approx([0.5 / np.sqrt(10.0), 2.0 / np.sqrt(10.0)], rel=1e-12)
    assert d[1] > region.radius > d[0]


def test_joint_columns_are_conditions_and_the_levers_that_varied() -> None:
    """Computed: the region's columns of a frame whose sweep moved supply air and chilled
    water only. Declared: IT, dry bulb, wet bulb and those two levers."""
    frame = pd.DataFrame({c: np.arange(4.0) for c in ("supply_air_c", "chilled_water_c")}
                         | {c: np.ones(4) for c in ("crah_fan_speed_pct", "pump_frequency_hz",
                                                    "running_units")})
    features = ("it_kw", "dry_bulb_c", "wet_bulb_c", "supply_air_c", "chilled_water_c",
                "crah_fan_speed_pct", "pump_frequency_hz", "running_units")
    assert joint_columns(frame, features) == (
        "it_kw", "dry_bulb_c", "wet_bulb_c", "supply_air_c", "chilled_water_c")


@dataclass
class Joint(Model):
    joint: JointRegion | None = None


def _sweep() -> pd.DataFrame:
    """A sweep that met warm outdoor air (26-32 degC) only with chilled water 7-9 degC and
    cool air (10-24 degC) with the whole range 7-20 degC; IT 800 kW, wet bulb 5 K below."""
    rng = np.random.default_rng(3)
    cool = rng.uniform([10.0, 7.0], [24.0, 20.0], (300, 2))
    warm = rng.uniform([26.0, 7.0], [32.0, 9.0], (150, 2))
    db, chw = np.concatenate([cool, warm]).T
    return pd.DataFrame({"it_kw": np.full(450, 800.0), "dry_bulb_c": db,
                         "wet_bulb_c": db - 5.0, "supply_air_c": np.full(450, 20.0),
                         "chilled_water_c": chw})


def test_a_combination_never_trained_is_not_proposed() -> None:
    """Computed: the proposal at 29 degC outdoors from chilled water 10 degC on a model that
    saves 10 kW per K of chilled water (inlet independent of it), with a per-column trust
    region spanning the sweep (chilled water 7-20, dry bulb 10-32) and the joint region of
    the sweep above. Declared: without the joint region the proposal raises chilled water by
    its 1 K step (11 degC, inside every column's range); with it, 11 degC at 29 degC outdoors
    lies 2 K beyond what the sweep met there (7-9 degC), farther than any training row from
    its 5 nearest others: chilled water rises less (to the best point inside, below 10.5),
    with ``trust:joint`` binding. At 15 degC outdoors (where the sweep covered 7-20 degC)
    the step to 11 is proposed, and with ``joint_radius = 0`` (no joint region) too. The
    radius is declared at 1 x the training's (the default 1.5 x lets 11 degC pass here: 1.29
    radii)."""
    region = JointRegion.of(_sweep(), ("it_kw", "dry_bulb_c", "wet_bulb_c", "supply_air_c",
                                       "chilled_water_c"))
    assert region is not None
    cols = ("it_kw", "dry_bulb_c", "relative_humidity_pct", "wet_bulb_c", "dew_point_c",
            "supply_air_c", "chilled_water_c", "crah_fan_speed_pct", "pump_frequency_hz",
            "running_units")
    lo = {c: -1e9 for c in cols} | {"chilled_water_c": 7.0, "dry_bulb_c": 10.0,
                                    "supply_air_c": 20.0}
    hi = {c: 1e9 for c in cols} | {"chilled_water_c": 20.0, "dry_bulb_c": 32.0,
                                   "supply_air_c": 20.0}
    trust = TrustRegion(lo, hi)

    def power(x):
        return 1000.0 - 10.0 * x["chilled_water_c"]

    def inlet(x):
        return x["supply_air_c"] + 2.0

    cfg = OptimizerSettings(inlet_sigmas=0.0, joint_radius=1.0)
    setpoints = CURRENT | {SetpointName.CHILLED_WATER_TEMPERATURE: 10.0,
                           SetpointName.SUPPLY_AIR_TEMPERATURE: 20.0}
    hot = PlantState(0, CONDITIONS | {"dry_bulb_c": 29.0, "wet_bulb_c": 24.0}, setpoints)
    assert propose(Joint(power, inlet, trust), hot, cfg).proposed[
        "chilled_water_temperature"] == 11.0
    p = propose(Joint(power, inlet, trust, joint=region), hot, cfg)
    chw = p.proposed["chilled_water_temperature"]
    assert 10.0 <= chw < 10.5 and "trust:joint" in p.binding
    at = hot.conditions | {"supply_air_c": 20.0, "chilled_water_c": chw}
    assert region.distance({k: np.array([v]) for k, v in at.items()})[0] <= region.radius
    mild = PlantState(0, CONDITIONS | {"dry_bulb_c": 15.0, "wet_bulb_c": 10.0}, setpoints)
    assert propose(Joint(power, inlet, trust, joint=region), mild,
                   cfg).proposed["chilled_water_temperature"] == 11.0
    assert propose(Joint(power, inlet, trust, joint=region), hot, OptimizerSettings(
        inlet_sigmas=0.0)).proposed["chilled_water_temperature"] == 11.0
    off = OptimizerSettings(inlet_sigmas=0.0, joint_radius=0.0)
    assert propose(Joint(power, inlet, trust, joint=region), hot,
                   off).proposed["chilled_water_temperature"] == 11.0
