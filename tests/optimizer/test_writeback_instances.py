"""Write-back per lever instance: two air handlers, each its own supply-air target.

The site is the bundled single hall plus a second supply-air setpoint meter, so the optimizer
proposes ``supply_air_temperature@sp-supply-air`` (AHU-1) and ``...@sp-supply-air-2`` (AHU-2)
separately. Declared here: AHU-1 takes holding register 10, AHU-2 register 11 (word = round(degC
x 10)) on a real pymodbus server, or command topics ``dc/hall-a/cmd/ahu-1`` / ``ahu-2`` on a
real Mosquitto; supply-air hard bounds 18-27 degC (the example's).

Hand-worked: proposals 22.5 and 20.9 degC give words 225 and 209 at registers 10 and 11 (their
mean, 21.7 degC, is written nowhere); a wrong model's 28.3 and 17.2 degC are clamped to 27.0 and
18.0 (words 270 and 180); a type override of 20.0 degC writes 200 to both, and an AHU-2 override
of 19.0 degC wins over it there (190). With the type's one target (register 12), the same
proposals write their mean 21.7 degC, word 217, and say so.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dcpue.config import ConfigError, SetpointName, example_path, load_site, parse_site
from dcpue.core.store import Store
from dcpue.optimizer.propose import PlantState, Proposal, ProposalLog, propose, setpoint_bounds
from dcpue.optimizer.writeback import (
    Overrides,
    SetpointWrite,
    WritebackRefused,
    apply_proposal,
    plan_writes,
    write_modbus,
)

from dcpue.cli import main
from tests.optimizer.test_propose import CONDITIONS, Model
from tests.optimizer.test_writeback import SetpointDevice, _collect

SA = SetpointName.SUPPLY_AIR_TEMPERATURE
AHU1, AHU2 = "sp-supply-air", "sp-supply-air-2"
K1, K2 = f"{SA}@{AHU1}", f"{SA}@{AHU2}"
HALL = example_path("single_hall").read_text()
SECOND_AHU = """[[meters]]
id = "sp-supply-air-2"
role = "setpoint"
setpoint = "supply_air_temperature"
kind = "state"
unit = "degC"

"""
WB = "[optimizer.setpoints.supply_air_temperature.writeback]"
INSTANCE = "[optimizer.setpoints.supply_air_temperature.writeback.instances.{}]"


def per_instance_modbus(port: int = 502, second_address: int = 11) -> str:
    return (f'{WB}\nenabled = true\ntransport = "modbus"\n\n'
            f"{INSTANCE.format(AHU1)}\n"
            f'modbus = {{ host = "127.0.0.1", port = {port}, address = 10, scale = 10.0 }}\n\n'
            f"{INSTANCE.format(AHU2)}\n"
            f'modbus = {{ host = "127.0.0.1", port = {port}, address = {second_address},'
            " scale = 10.0 }\n\n")


def per_instance_mqtt(second: str = 'topic = "dc/hall-a/cmd/ahu-2"') -> str:
    return (f"{WB}\nenabled = true\n\n{INSTANCE.format(AHU1)}\n"
            f'topic = "dc/hall-a/cmd/ahu-1"\n\n{INSTANCE.format(AHU2)}\n{second}\n\n')


def shared_modbus(port: int = 502) -> str:
    return (f'{WB}\nenabled = true\ntransport = "modbus"\n'
            f'modbus = {{ host = "127.0.0.1", port = {port}, address = 12, scale = 10.0 }}\n\n')


def site_text(writeback: str, mqtt_port: int = 1883, second_ahu: bool = True) -> str:
    """The example hall with (optionally) a second air handler and ``writeback`` blocks."""
    text = HALL.replace("# Modbus TCP", (SECOND_AHU if second_ahu else "") + "# Modbus TCP", 1)
    text = text.replace("[optimizer.setpoints.chilled_water_temperature]\n",
                        writeback + "[optimizer.setpoints.chilled_water_temperature]\n", 1)
    return text.replace('[optimizer.mqtt]\nhost = "127.0.0.1"\nport = 1883',
                        f'[optimizer.mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}', 1)


def site_of(writeback: str, **kw: Any):
    return parse_site(tomllib.loads(site_text(writeback, **kw)), "site.toml")


CURRENT = {SA.value: 21.5, K1: 21.0, K2: 22.0, "chilled_water_temperature": 10.0,
           "crah_fan_speed": 80.0, "pump_frequency": 50.0, "running_units": 8.0}


def two_ahu_proposal(sa1: float, sa2: float, pid: str = "p1") -> Proposal:
    """A proposal as ``propose`` stores it: each instance, and the type at their mean."""
    proposed = CURRENT | {K1: sa1, K2: sa2, SA.value: (sa1 + sa2) / 2}
    return Proposal(id=pid, ts_ms=0, site="hall-a", status="proposed", current=dict(CURRENT),
                    proposed=proposed, reason="test")


def written(writes: list[SetpointWrite]) -> dict[str, tuple[float, str]]:
    return {w.key: (w.value, w.source) for w in writes}


@pytest.mark.parametrize(("writeback", "message"), [
    (per_instance_mqtt().replace(AHU2 + "]", "sp-supply-air-3]"),
     "instances.sp-supply-air-3: no setpoint meter 'sp-supply-air-3' (setpoint meters of "
     "supply_air_temperature: sp-supply-air, sp-supply-air-2)"),
    (per_instance_mqtt().replace(AHU2 + "]", "sp-chw]"),
     "meter 'sp-chw' is a chilled_water_temperature setpoint, not supply_air_temperature"),
    (per_instance_modbus(second_address=10),
     "supply_air_temperature.writeback.instances.sp-supply-air and supply_air_temperature."
     "writeback.instances.sp-supply-air-2 write-back both use holding register 10 of device 1"),
    (per_instance_mqtt('topic = "dc/hall-a/cmd/ahu-1"'), "both use command topic"),
    (per_instance_mqtt('topic = "dc/hall-a/cmd/+"'), "has an MQTT wildcard"),
    (per_instance_mqtt("transport = \"mqtt\""),
     "instances.sp-supply-air-2: write-back over mqtt needs a command topic"),
    (per_instance_mqtt().replace("enabled = true", 'enabled = true\ntopic = "dc/hall-a/sa"'),
     "the type-level topic/modbus would never be written"),
])
def test_config_errors_name_the_instance(writeback: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        site_of(writeback)
    assert message in str(err.value)


def test_check_config_warns_when_instances_share_one_target(tmp_path: Path, capsys) -> None:
    """Two instances and the type's one target: a warning that it takes their mean; per-
    instance targets for one of two: a warning for the other; one target per instance, or a
    single air handler with the type's target: no warning."""
    def warnings(text: str) -> str:
        path = tmp_path / "site.toml"
        path.write_text(text)
        assert main(["check-config", str(path)]) == 0
        return capsys.readouterr().err

    shared = warnings(site_text(shared_modbus()))
    assert ("optimizer.setpoints.supply_air_temperature.writeback: supply_air_temperature has "
            "2 instances (sp-supply-air, sp-supply-air-2) and one write-back target: it is "
            "written their mean") in shared
    one_of_two = per_instance_mqtt().split(INSTANCE.format(AHU2))[0]
    assert "no write-back target for sp-supply-air-2" in warnings(site_text(one_of_two))
    assert "write-back" not in warnings(site_text(per_instance_mqtt()))
    assert "write-back" not in warnings(site_text(shared_modbus(), second_ahu=False))


def test_each_instance_gets_its_own_value_clamped_into_bounds() -> None:
    cfg = site_of(per_instance_modbus()).optimizer
    writes = plan_writes(two_ahu_proposal(22.5, 20.9), cfg, {})
    assert written(writes) == {K1: (22.5, "proposal"), K2: (20.9, "proposal")}
    assert [(w.instance, w.target.modbus.address) for w in writes] == [(AHU1, 10), (AHU2, 11)]
    # a deliberately wrong proposal leaves the 18-27 degC bounds: each is clamped
    assert written(plan_writes(two_ahu_proposal(28.3, 17.2), cfg, {})) == {
        K1: (27.0, "proposal"), K2: (18.0, "proposal")}
    # a proposal from before the second meter (type key only): both take the type's value
    old = Proposal("p0", 0, "hall-a", "proposed", {SA.value: 21.0}, {SA.value: 22.0}, "old")
    assert written(plan_writes(old, cfg, {})) == {K1: (22.0, "proposal"), K2: (22.0, "proposal")}


def test_instance_override_wins_over_the_type_override() -> None:
    site = site_of(per_instance_modbus())
    bounds = setpoint_bounds(site.optimizer)[SA.value]
    proposal = two_ahu_proposal(22.5, 20.9)
    with Store() as store:
        overrides = Overrides(store)
        overrides.set(SA.value, 20.0, bounds, note="type")
        assert written(plan_writes(proposal, site.optimizer, overrides.all())) == {
            K1: (20.0, "override"), K2: (20.0, "override")}
        overrides.set(K2, 19.0, bounds, note="AHU-2 coil service")
        assert written(plan_writes(proposal, site.optimizer, overrides.all())) == {
            K1: (20.0, "override"), K2: (19.0, "override")}
        with pytest.raises(WritebackRefused, match="outside hard bounds"):
            overrides.set(K1, 27.5, bounds)
        overrides.set(K1, None, bounds)  # hold AHU-1 as it is: not written
        assert written(plan_writes(proposal, site.optimizer, overrides.all())) == {
            K2: (19.0, "override")}
        # what the optimizer must hold, from the plant state (frame columns per instance):
        # AHU-1 at its own current 21.0 (held), AHU-2 at 19.0 (its override), the type at 20.0
        instances = {"supply_air_c@sp-supply-air": 21.0, "supply_air_c@sp-supply-air-2": 22.0}
        fixed = overrides.fixed_values({SA: 21.5}, instances)
        assert fixed == {SA.value: 20.0, K1: 21.0, K2: 19.0}
        overrides.clear(SA.value)
        overrides.set(SA.value, None, bounds)  # type hold: each instance at its own value
        overrides.clear(K1)
        assert overrides.fixed_values({SA: 21.5}, instances) == {SA.value: 21.5, K1: 21.0,
                                                                 K2: 19.0}
        assert sorted(overrides.all()) == [SA.value, K2]


def test_propose_holds_an_overridden_instance() -> None:
    """A hand-made plant: power 1000 - 2 x (SA1 + SA2) kW, hottest inlet max(SA1 + 2, SA2 + 2)
    degC, limit 26 degC (27 - margin 1, no error allowance). From 21 / 22 degC the search
    raises both by their 1 K step (22 / 23, inlet 25 degC); a type override of 20.0 degC with
    AHU-2's own at 19.0 holds them at 20.0 / 19.0; AHU-2's alone raises AHU-1 (21 -> 22) and
    holds AHU-2 at 19.0, binding ``override:<AHU-2 key>``."""
    from dcpue.config.optimizer import OptimizerSettings

    columns = ("supply_air_c@sp-supply-air", "supply_air_c@sp-supply-air-2")
    model = Model(lambda x: 1000.0 - 2.0 * (x[columns[0]] + x[columns[1]]),
                  lambda x: 2.0 + x[columns[0]].clip(min=x[columns[1]]))
    model.features = columns  # type: ignore[attr-defined]
    state = PlantState(0, dict(CONDITIONS), {SetpointName(k): v for k, v in CURRENT.items()
                                              if "@" not in k},
                       instances={columns[0]: 21.0, columns[1]: 22.0})
    cfg = OptimizerSettings(inlet_sigmas=0.0)
    free = propose(model, state, cfg)
    assert (free.proposed[K1], free.proposed[K2]) == (22.0, 23.0)
    held = propose(model, state, cfg, fixed={SA: 20.0, K2: 19.0})
    assert (held.proposed[K1], held.proposed[K2]) == (20.0, 19.0)  # the type's 20 holds AHU-1
    held = propose(model, state, cfg, fixed={K2: 19.0})
    assert (held.proposed[K1], held.proposed[K2]) == (22.0, 19.0)
    assert f"override:{K2}" in held.binding


async def test_apply_writes_each_air_handler_its_register() -> None:
    async with SetpointDevice() as device:
        site = site_of(per_instance_modbus(device.port))
        with Store() as store:
            ProposalLog(store).save(two_ahu_proposal(22.5, 20.9))
            await apply_proposal(store, site.optimizer, two_ahu_proposal(22.5, 20.9))
            assert ProposalLog(store).get("p1").status == "applied"
            assert device.writes == [(10, [225]), (11, [209])]
            assert [await device.holding(a) for a in (10, 11, 12)] == [225, 209, 0]
            bounds = setpoint_bounds(site.optimizer)[SA.value]
            Overrides(store).set(SA.value, 20.0, bounds)
            Overrides(store).set(K2, 19.0, bounds)
            await apply_proposal(store, site.optimizer, two_ahu_proposal(23.0, 21.0, "p2"))
            assert device.writes[2:] == [(10, [200]), (11, [190])]
            # the adapter checks again: an out-of-bounds value never reaches the register
            target = site.optimizer.setpoints.supply_air_temperature.writeback.targets()[AHU1]
            with pytest.raises(WritebackRefused, match="outside hard bounds"):
                await write_modbus(SetpointWrite(SA, 27.5, "proposal", AHU1, target), bounds)
            assert len(device.writes) == 4


async def test_cli_override_and_apply_per_instance(tmp_path: Path, capsys) -> None:
    """``dcpue optimize override NAME@METER`` and ``apply`` through the CLI to the device."""
    async with SetpointDevice() as device:
        path = tmp_path / "site.toml"
        path.write_text(site_text(per_instance_modbus(device.port)))
        store = str(tmp_path / "s.duckdb")
        with Store(store) as s:
            ProposalLog(s).save(two_ahu_proposal(22.5, 20.9))
        args = ["--config", str(path), "--store", store]

        def run(*argv: str) -> tuple[int, str]:
            code = main(["optimize", *argv])
            return code, capsys.readouterr().out

        code, out = run("override", *args, f"{SA}@sp-supply-air-9", "20")
        assert code == 1 and "'sp-supply-air-9' is not a setpoint meter of" in out
        code, out = run("override", *args, "chilled_water_temperature@sp-chw", "12")
        assert code == 1 and "has one setpoint meter: override chilled_water_temperature" in out
        assert run("override", *args, K2, "19.5", "--note", "coil")[0] == 0
        assert run("override", *args)[1].strip() == f"{K2} = 19.5 coil"
        code, out = await asyncio.to_thread(run, "apply", *args)
        assert code == 0, out
        assert f"{K1} = 22.5 (proposal)\n{K2} = 19.5 (override)" in out
        assert device.writes == [(10, [225]), (11, [195])]


async def test_apply_publishes_each_air_handler_its_topic(mosquitto) -> None:
    site = site_of(per_instance_mqtt(), mqtt_port=mosquitto.port)
    got: dict[str, Any] = {}
    ready = asyncio.Event()
    topics = ["dc/hall-a/cmd/ahu-1", "dc/hall-a/cmd/ahu-2"]
    listener = asyncio.create_task(_collect(mosquitto.port, topics, 2, ready, got))
    await asyncio.wait_for(ready.wait(), 10)
    with Store() as store:
        await apply_proposal(store, site.optimizer, two_ahu_proposal(28.3, 20.9))
    await asyncio.wait_for(listener, 10)
    assert got == {
        "dc/hall-a/cmd/ahu-1": {"setpoint": SA.value, "instance": AHU1, "value": 27.0,
                                "proposal": "p1"},
        "dc/hall-a/cmd/ahu-2": {"setpoint": SA.value, "instance": AHU2, "value": 20.9,
                                "proposal": "p1"},
    }


async def test_one_target_for_two_instances_writes_their_mean(caplog) -> None:
    """Backward compatible: the type's one register takes the mean (22.5 + 20.9) / 2 = 21.7
    degC, word 217, and a log line says so."""
    async with SetpointDevice() as device:
        site = site_of(shared_modbus(device.port))
        caplog.set_level(logging.WARNING, logger="dcpue.optimizer.writeback")
        with Store() as store:
            writes = await apply_proposal(store, site.optimizer, two_ahu_proposal(22.5, 20.9))
        assert written(writes) == {SA.value: (pytest.approx(21.7), "proposal")}
        assert device.writes == [(12, [217])]
    assert ("supply_air_temperature: 2 instances (sp-supply-air 22.5, sp-supply-air-2 20.9) and "
            "one write-back target: writing their mean 21.7") in caplog.text


def test_single_air_handler_config_is_unchanged(tmp_path: Path) -> None:
    """The example's own file (one supply-air meter) loads, and a type target is one write."""
    site = load_site(example_path("single_hall"))
    assert set(site.optimizer.setpoints.chilled_water_temperature.writeback.targets()) == {None}
    site = site_of(shared_modbus(), second_ahu=False)
    proposal = Proposal("p", 0, "hall-a", "proposed", {SA.value: 21.0}, {SA.value: 22.0}, "")
    assert written(plan_writes(proposal, site.optimizer, {})) == {SA.value: (22.0, "proposal")}


async def test_instances_on_different_transports(mosquitto) -> None:
    """AHU-1 on its Modbus register (transport from the type), AHU-2 on its own MQTT topic
    (``transport = "mqtt"`` on the instance): 22.5 degC -> word 225 at 10, 20.9 on the topic."""
    async with SetpointDevice() as device:
        mixed = per_instance_modbus(device.port).split(INSTANCE.format(AHU2))[0] + (
            f'{INSTANCE.format(AHU2)}\ntransport = "mqtt"\ntopic = "dc/hall-a/cmd/ahu-2"\n\n')
        site = site_of(mixed, mqtt_port=mosquitto.port)
        got: dict[str, Any] = {}
        ready = asyncio.Event()
        listener = asyncio.create_task(_collect(mosquitto.port, ["dc/hall-a/cmd/ahu-2"], 1,
                                                ready, got))
        await asyncio.wait_for(ready.wait(), 10)
        with Store() as store:
            await apply_proposal(store, site.optimizer, two_ahu_proposal(22.5, 20.9))
        await asyncio.wait_for(listener, 10)
        assert device.writes == [(10, [225])]
    assert got["dc/hall-a/cmd/ahu-2"]["value"] == 20.9
