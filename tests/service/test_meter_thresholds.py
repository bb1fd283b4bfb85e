"""Threshold rules on a meter's latest value (``meter:<id>``), e.g. the hottest rack inlet."""

from __future__ import annotations

import tomllib

import pytest
from dcpue.config import ConfigError, example_path, parse_site
from dcpue.core.readings import Reading
from dcpue.core.store import Store
from dcpue.service.daemon import Runtime

T0 = 1_688_169_600_000  # 2023-07-01T00:00:00Z
MINUTE = 60_000
RULE = {"name": "RackInletHigh", "figure": "meter:rack-inlet-max", "above": 27.0,
        "for_min": 2, "clear_margin": 0.5, "severity": "critical"}


def site_with(rule: dict):
    data = tomllib.loads(example_path("single_hall").read_text())
    alerts = data["service"].setdefault("alerts", {})
    alerts["thresholds"] = [rule]
    alerts["drift"] = {"enabled": False}
    alerts["stale"] = {"enabled": False}
    return parse_site(data, "site.toml")


async def test_rack_inlet_above_the_limit_fires_then_resolves():
    site = site_with(RULE)
    store = Store()
    clock = {"now": T0}
    runtime = Runtime(site, store, lambda: clock["now"])
    firing = []
    for i, inlet in enumerate([26.0, 27.4, 27.6, 27.8, 27.2, 26.4]):
        clock["now"] = T0 + i * MINUTE
        store.append([Reading(clock["now"], "rack-inlet-max", "temperature", inlet, "degC")])
        await runtime.run_job("alerts", clock["now"])
        firing.append(sorted(a.name for a in runtime.engine.active.values()))
    # above 27 from minute 1, fires after 2 min; 27.2 is inside the 0.5 margin; 26.4 clears
    assert firing == [[], [], [], ["RackInletHigh"], ["RackInletHigh"], []]
    (done,) = runtime.engine.history
    assert (done.name, done.status, done.severity) == ("RackInletHigh", "resolved", "critical")


def test_a_rule_naming_an_unknown_meter_is_a_config_error():
    with pytest.raises(ConfigError, match=r"thresholds\[RackInletHigh\]\.figure names unknown meter .ghost."):
        site_with(RULE | {"figure": "meter:ghost"})
