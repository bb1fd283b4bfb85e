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


def lever_problems(objects: list[ModelObject],
                   actuators: Mapping[SetpointName, EnergyPlusActuator]) -> list[str]:
    """Why a mapped actuator cannot move the plant, one line per lever (empty: none found).

    A ``Schedule:*`` actuator needs an object that uses the schedule. A ``System Node
    Setpoint`` actuator on a node that a setpoint manager sets *and* that a
    SetpointManager:MixedAir (or OutdoorAirPretreat) follows is overwritten before the
    following manager reads it (EnergyPlus runs the managers before dcpue's value arrives), so
    the coil never sees it: actuate the node the coil controls to instead.
    """
    problems = []
    managed: dict[str, str] = {}  # node -> the setpoint manager that sets it
    for o in objects:
        if o.type.startswith("setpointmanager:"):
            node = o.fields.get("setpoint_node_or_nodelist_name") or (o.values[-1] if o.values
                                                                      else "")
            managed.setdefault(node, f"{o.type} {o.name!r}")
    followers = {ref: (o, node) for o in objects if (r := _reference(o)) for ref, node in [r]}
    for lever, a in actuators.items():
        key = a.key.lower()
        if a.component_type.lower().startswith("schedule:"):
            users = [o for o in objects if o.name != key and key in o.values]
            if not users:
                problems.append(
                    f"{lever}: schedule {a.key!r} ({a.component_type}) is used by no object of "
                    "the model, so actuating it changes nothing; actuate the schedule a setpoint "
                    "manager or controller reads, or a System Node Setpoint"
                )
        elif a.component_type.lower() == "system node setpoint" and key in followers:
            follower, node = followers[key]
            if key in managed:
                problems.append(
                    f"{lever}: node {a.key!r} is set by {managed[key]} and followed by "
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
