"""Checks of a user's EnergyPlus model against the site file's mapping (pure, no I/O).

Two kinds (docs/energyplus.md, Bring your own model):

- before the run, from the model's objects: a lever whose actuator cannot take effect (a
  schedule no object uses; a node setpoint that a setpoint manager chain overwrites before the
  coil reads it);
- when a mapped name is missing at run time: the closest names EnergyPlus offers, from its
  runtime API's list of available data (``list_available_api_data_csv``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dcpue.config import SetpointName
from dcpue.config.twin import EnergyPlusActuator

#: Setpoint managers whose setpoint follows another node's (the reference node) when they run.
_REFERENCING = {"setpointmanager:mixedair": "reference_setpoint_node_name",
                "setpointmanager:outdoorairpretreat": "reference_setpoint_node_name"}
#: IDF field position (0 = the name) of those managers' reference node; their setpoint node is
#: the last field, as for every setpoint manager.
_IDF_REFERENCE = {"setpointmanager:mixedair": 2, "setpointmanager:outdoorairpretreat": 6}


@dataclass(frozen=True)
class ModelObject:
    """One object of a model: type and name (lower case) and every string value it holds."""

    type: str
    name: str
    values: tuple[str, ...]
    fields: Mapping[str, str]  # epJSON field name -> value (lower case); IDF: position -> value


def idf_objects(text: str) -> list[ModelObject]:
    """The objects of an IDF text (``!`` comments stripped; an object ends at ``;``)."""
    body = "\n".join(re.sub(r"!.*", "", line) for line in text.splitlines())
    out = []
    for chunk in body.split(";"):
        parts = [p.strip() for p in chunk.split(",")]
        if not parts[0]:
            continue
        values = tuple(p.lower() for p in parts[1:])
        out.append(ModelObject(parts[0].lower(), values[0] if values else "", values,
                               {str(i): v for i, v in enumerate(values)}))
    return out


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value.lower()
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def epjson_objects(doc: Mapping[str, object]) -> list[ModelObject]:
    """The objects of an epJSON document (its name is the object's key)."""
    out = []
    for kind, objects in doc.items():
        if not isinstance(objects, dict):
            continue
        for name, body in objects.items():
            fields = {k: v.lower() for k, v in (body or {}).items() if isinstance(v, str)}
            out.append(ModelObject(kind.lower(), name.lower(), (name.lower(), *_strings(body)),
                                   fields))
    return out


def _reference(obj: ModelObject) -> tuple[str, str] | None:
    """(reference node, setpoint node) of a setpoint manager that follows another node."""
    if obj.type not in _REFERENCING:
        return None
    if _REFERENCING[obj.type] in obj.fields:
        return obj.fields[_REFERENCING[obj.type]], obj.fields.get("setpoint_node_or_nodelist_name",
                                                                  "")
    return obj.fields.get(str(_IDF_REFERENCE[obj.type]), ""), obj.values[-1]


#: IDF field position (0 = the name) of the node a controller or coil system holds at its
#: setpoint; in epJSON every field whose name ends in ``sensor_node_name``.
_IDF_SENSOR = {"coilsystem:cooling:dx": 4, "controller:watercoil": 4,
               "evaporativecooler:direct:researchspecial": 10,
               "evaporativecooler:indirect:researchspecial": 20}


def _sensed_nodes(objects: list[ModelObject]) -> set[str]:
    """Nodes whose setpoint a coil, controller or evaporative cooler controls to."""
    out = set()
    for o in objects:
        out |= {v for k, v in o.fields.items() if k.endswith("sensor_node_name")}
        if o.type in _IDF_SENSOR and str(_IDF_SENSOR[o.type]) in o.fields:
            out.add(o.fields[str(_IDF_SENSOR[o.type])])
    return out


def actuator_keys(objects: list[ModelObject], actuator: EnergyPlusActuator) -> list[str]:
    """The actuator's keys, a ``System Node Setpoint`` key naming a NodeList expanded into its
    nodes (upper case, as EnergyPlus names actuators)."""
    lists = {o.name: [v for v in o.values[1:] if v] for o in objects if o.type == "nodelist"}
    node = actuator.component_type.lower() == "system node setpoint"
    keys = []
    for key in actuator.keys:
        keys += [n.upper() for n in lists[key.lower()]] if node and key.lower() in lists else [key]
    return keys


def lever_problems(objects: list[ModelObject],
                   actuators: Mapping[SetpointName, EnergyPlusActuator]) -> list[str]:
    """Why a mapped actuator cannot move the plant, one line per lever (empty: none found).

    A ``Schedule:*`` actuator needs an object that uses the schedule. ``System Node Setpoint``
    actuators none of whose nodes a coil or controller controls to, on a node that a setpoint
    manager sets and a SetpointManager:MixedAir (or OutdoorAirPretreat) follows onto a node a
    coil does control to, never reach the coil: EnergyPlus runs the managers before dcpue's
    value arrives, so the follower passes the model's own value on.
    """
    problems = []
    managed: dict[str, str] = {}  # node -> the setpoint manager that sets it
    node_lists = {o.name: set(o.values[1:]) for o in objects if o.type == "nodelist"}
    for o in objects:
        if o.type.startswith("setpointmanager:"):
            target = o.fields.get("setpoint_node_or_nodelist_name") or (o.values[-1] if o.values
                                                                        else "")
            for node in node_lists.get(target, {target}):
                managed.setdefault(node, f"{o.type} {o.name!r}")
    followers = {ref: (o, node) for o in objects if (r := _reference(o)) for ref, node in [r]}
    sensed = _sensed_nodes(objects)
    for lever, a in actuators.items():
        keys = [k.lower() for k in actuator_keys(objects, a)]
        if a.component_type.lower().startswith("schedule:"):
            for given in a.keys:
                key = given.lower()
                if not [o for o in objects if o.name != key and key in o.values]:
                    problems.append(
                        f"{lever}: schedule {given!r} ({a.component_type}) is used by no object "
                        "of the model, so actuating it changes nothing; actuate the schedule a "
                        "setpoint manager or controller reads, or a System Node Setpoint"
                    )
        elif a.component_type.lower() == "system node setpoint" and not sensed & set(keys):
            for key in keys:
                if key in followers and key in managed and followers[key][1] in sensed:
                    follower, node = followers[key]
                    problems.append(
                        f"{lever}: node {key!r} is set by {managed[key]} and followed by "
                        f"{follower.type} {follower.name!r}, which sets node {node!r} before "
                        f"dcpue's value arrives, so the coil never sees it; actuate {node!r} "
                        "(System Node Setpoint, Temperature Setpoint) instead"
                    )
    return problems


def available_names(csv_text: str) -> dict[str, list[str]]:
    """EnergyPlus's available API data by kind (``Actuator``, ``OutputVariable``,
    ``OutputMeter``): actuators as "type / control / key", variables as "name / key"."""
    out: dict[str, list[str]] = {"Actuator": [], "OutputVariable": [], "OutputMeter": []}
    for line in csv_text.splitlines():
        parts = line.split(",")
        kind = parts[0]
        if kind == "Actuator" and len(parts) >= 4:
            out[kind].append(" / ".join(parts[1:4]))
        elif kind == "OutputVariable" and len(parts) >= 3:
            out[kind].append(f"{parts[1]} / {parts[2]}")
        elif kind == "OutputMeter" and len(parts) >= 2:
            out[kind].append(parts[1])
    return out


def close_matches(wanted: str, choices: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` closest to ``wanted`` (case-insensitive difflib ratio)."""
    lower = {c.lower(): c for c in choices}
    return [lower[c] for c in difflib.get_close_matches(wanted.lower(), list(lower), n=n,
                                                         cutoff=0.5)]
