"""Training on a plant that settles slowly, with default settings: the generated EnergyPlus
hall with Miami TMY3 (15-min steps). The default 30-min sweep holds give 2 frame rows per draw
and the rack inlet there settles 2 rows after a setpoint change, so no row of a 30-min hold is
settled (before: ``train`` refused, "1 settled rows is too few to train"). The sweep measures
that lag and runs again with holds that leave settled rows."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dcpue.config import parse_site

pytest.importorskip("pyenergyplus.api", reason="needs the extra: pip install 'dcpue[energyplus]'")

HALL = Path(__file__).parents[1] / "twin_energyplus" / "hall.toml"


def _miami():
    data = tomllib.loads(HALL.read_text())
    data["timezone"] = "America/New_York"
    data["twin"]["energyplus"]["weather"] = "USA_FL_Miami.Intl.AP.722020_TMY3.epw"
    data["twin"]["start"] = datetime(2023, 7, 1, tzinfo=timezone(timedelta(hours=-5)))
    return parse_site(data, str(HALL), HALL.parent)


def test_default_sweep_trains_where_the_inlet_settles_in_two_rows():
    """Computed: the settling lag the sweep measures, the hold it trained on and the model's
    settled rows. Declared: EnergyPlus's Miami hall settles in 2 rows at 15-min frames
    (docs/energyplus.md); a 1-h hold (4 rows) leaves 2 settled rows per draw, half of the
    672 rows of 7 days."""
    from dcpue.optimizer.evaluate import explore_and_train
    from dcpue.optimizer.evaluate_energyplus import EnergyPlusEvaluationPlant

    site = _miami()
    assert site.optimizer.explore_hold_s == 1800  # the default
    model = explore_and_train(site, site.twin.start, 7.0,
                              plant=EnergyPlusEvaluationPlant(site))
    assert model.settling_rows == 2
    assert model.notes["explore_hold_s"] == "3600"
    assert "lag of 2 rows" in model.notes["explore_hold"]
    assert model.rows == pytest.approx(336, abs=4)
    assert model.metrics["holdout"]["pue_mae"] < 0.006
