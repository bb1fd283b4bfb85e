"""Threshold rules on a meter's latest value (``meter:<id>``), e.g. the hottest rack inlet."""

from __future__ import annotations

import tomllib
from typing import ClassVar

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


async def test_a_silenced_alert_sends_no_notification():
    """An operator silences the firing RackInletHigh alert (service.actions, what the
    dashboard's Silence button stores); its resolution is then not dispatched, while the
    firing before the silence was."""
    from dcpue.service.actions import AlertActions

    site = site_with(RULE)
    store = Store()
    clock = {"now": T0}
    runtime = Runtime(site, store, lambda: clock["now"])
    sent: list[tuple[str, str]] = []

    class Recorder:
        outcomes: ClassVar[dict] = {}

        async def dispatch(self, changes, active):
            sent.extend((a.name, a.status) for a in changes)

    runtime.dispatcher = Recorder()
    for i, inlet in enumerate([27.4, 27.6, 27.8, 26.0]):
        clock["now"] = T0 + i * MINUTE
        store.append([Reading(clock["now"], "rack-inlet-max", "temperature", inlet, "degC")])
        if i == 3:
            (alert,) = runtime.engine.active.values()
            AlertActions(store).silence(alert.id, "operator", clock["now"], minutes=30)
        await runtime.run_job("alerts", clock["now"])
    assert sent == [("RackInletHigh", "firing")]
    assert runtime.engine.history[-1].status == "resolved"


async def test_metrics_count_future_readings_the_calculator_ignored():
    """A grid reading stamped a year after the daemon's clock is ignored by the rolling
    calculator; /metrics then shows dcpue_data_quality_total{kind="future_ignored"} 1."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    site = site_with(RULE)
    store = Store()
    runtime = Runtime(site, store, lambda: T0)
    store.append([Reading(T0 + 365 * 86_400_000, "grid-main", "energy", 1.0, "kWh")])
    await runtime.run_job("write_back", T0)
    text = generate_latest(runtime.telemetry.registry).decode()
    samples = {
        s.labels.get("kind"): s.value
        for fam in text_string_to_metric_families(text) if fam.name == "dcpue_data_quality"
        for s in fam.samples if s.name.endswith("_total")
    }
    assert samples["future_ignored"] == 1
    assert samples["figures_in_error"] == 0
