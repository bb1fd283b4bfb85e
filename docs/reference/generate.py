"""Write docs/reference/meters.md and docs/reference/api.md from the code.

    python docs/reference/generate.py          # rewrite both pages
    tests/service/test_reference_docs.py       # fails when a page is not current

meters.md: every meter role with the kinds the schema accepts (tried against
:class:`dcpue.config.topology.Meter`), the quantity, canonical unit and accepted units
(:mod:`dcpue.core.units`) and a TOML example that validates. api.md: every route of
:data:`dcpue.service.api.OPENAPI` with its scope, parameters and response schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dcpue.config.topology import (
    COOLING_ROLES,
    ENERGY_ROLES,
    ITCategory,
    Meter,
    MeterKind,
    MeterRole,
    SetpointName,
)
from dcpue.core.units import QUANTITIES, UNITS
from pydantic import ValidationError

HERE = Path(__file__).resolve().parent
#: One line on what each role measures (ISO/IEC 30134 and The Green Grid vocabulary).
ROLE_TEXT = {
    "grid_import": "electricity drawn from the grid at the site's incomer (facility energy)",
    "grid_export": "electricity sent back to the grid (subtracted from facility energy)",
    "it_load": "IT equipment energy at a Green Grid category (UPS output, PDU output, IT input)",
    "chiller": "chiller compressors (cooling)",
    "crah": "CRAH/CRAC units and their fans (cooling)",
    "pump": "chilled- and condenser-water pumps (cooling)",
    "cooling_tower": "cooling-tower fans (cooling)",
    "dx_cooling": "DX coils: compressors and condenser fans (cooling)",
    "crac": "computer-room air conditioners, self-contained DX units (cooling)",
    "evaporative_cooler": "evaporative (adiabatic) coolers (cooling)",
    "economizer": "air-side economizer fans and dampers (cooling)",
    "dry_cooler": "dry coolers (cooling)",
    "heat_recovery_chiller": "heat-recovery chillers (cooling)",
    "lighting": "lighting of the data-center space",
    "ups_loss": "UPS losses (power distribution losses)",
    "transformer_loss": "transformer losses (power distribution losses)",
    "other_load": "other loads; with calculator.outside_boundary, loads outside the boundary",
    "pv_generation": "on-site photovoltaic generation (adds to facility energy)",
    "battery_charge": "energy into the battery (subtracted from facility energy)",
    "battery_discharge": "energy out of the battery (adds to facility energy)",
    "battery_soc": "battery state of charge",
    "reused_heat": "heat exported for reuse (ERF numerator)",
    "water": "site water use, cumulative (WUE)",
    "outdoor_temperature": "outdoor dry-bulb temperature",
    "outdoor_humidity": "outdoor relative humidity",
    "irradiance": "plane-of-array or global horizontal irradiance",
    "rack_inlet_temperature": "rack inlet air temperature (ASHRAE TC 9.9 limit)",
    "setpoint": "a cooling setpoint the optimizer reads and may propose",
    "voltage": "supply or feeder voltage (electrical state)",
    "current": "supply or feeder current (electrical state)",
    "power_factor": "power factor of a supply or feeder (electrical state)",
    "apparent_power": "apparent power of a supply or feeder (electrical state)",
    "reactive_power": "reactive power of a supply or feeder (electrical state)",
    "frequency": "grid frequency (electrical state)",
}


def _accepts(**fields: object) -> Meter | None:
    try:
        return Meter(**fields)  # type: ignore[arg-type]
    except ValidationError:
        return None


def _units(quantity: str) -> str:
    dimension, canonical = QUANTITIES[quantity]
    others = [u for u, unit in UNITS.items() if unit.dimension == dimension and u != canonical]
    return ", ".join(f"`{u}`" for u in [canonical, *others])


def _example(m: Meter) -> str:
    lines = ["[[meters]]", f'id = "{m.id}"', f'role = "{m.role}"', f'kind = "{m.kind}"',
             f'unit = "{m.unit}"']
    if m.it_category:
        lines.append(f'it_category = "{m.it_category}"')
    if m.setpoint:
        lines.append(f'setpoint = "{m.setpoint}"')
    if m.max_power_kw:
        lines.append(f"max_power_kw = {m.max_power_kw:g}")
    return "<br>".join(f"`{ln}`" for ln in lines)


def meters_page() -> str:
    out = ["# Meter reference", "",
           "Generated from the code by `docs/reference/generate.py` (a test fails when this page "
           "is not current). Every row is a combination the site-file schema accepts; the "
           "example validates as it stands. Readings may arrive in any accepted unit and are "
           "converted to the canonical one.", "",
           "Kinds: `counter` is cumulative (kWh, m3; optional `rollover`, and `max_power_kw` as "
           "a plausibility bound), `power` is instantaneous (kW, trapezoid-integrated), `state` "
           "is a value (temperature, %, ...).", "",
           "| role | what it measures | group | kind | quantity | canonical unit (accepted) "
           "| example |", "|---|---|---|---|---|---|---|"]
    for role in MeterRole:
        group = ("cooling" if role in COOLING_ROLES else "energy" if role in ENERGY_ROLES
                 else "state")
        combos = []
        for kind in MeterKind:
            extra: dict[str, object] = {}
            if role is MeterRole.IT_LOAD:
                extra["it_category"] = ITCategory.UPS_OUTPUT
            names = list(SetpointName) if role is MeterRole.SETPOINT else [None]
            for name in names:
                if name is not None:
                    extra["setpoint"] = name
                probe = _accepts(id="x", role=role, kind=kind, unit="kWh", **extra)
                quantity = probe.quantity if probe else None
                if quantity is None:  # find the quantity through a canonical unit
                    for q, (_, canonical) in QUANTITIES.items():
                        if _accepts(id="x", role=role, kind=kind, unit=canonical, **extra):
                            quantity = q
                            break
                if quantity is None:
                    continue
                unit = QUANTITIES[quantity][1]
                sample = Meter(id=f"{role.value.replace('_', '-')}-1", role=role, kind=kind,
                               unit=unit, **extra,  # type: ignore[arg-type]
                               **({"max_power_kw": 1000.0} if kind is MeterKind.COUNTER
                                  and quantity == "energy" else {}))
                label = kind.value + (f" (`setpoint = \"{name}\"`)" if name else "")
                combos.append((label, quantity, _units(quantity), _example(sample)))
        for i, (kind, quantity, units, example) in enumerate(combos):
            head = (f"`{role}`", ROLE_TEXT.get(role.value, role.value.replace("_", " ")),
                    group) if i == 0 else ("", "", "")
            out.append(f"| {' | '.join(head)} | {kind} | {quantity} | {units} | {example} |")
    out += ["", "IT categories (`it_category`, role `it_load` only): "
            + ", ".join(f"`{c}`" for c in ITCategory)
            + " (PUE category 1, 2, 3); with several, set `[calculator] it_category`.", ""]
    return "\n".join(out)


def api_page() -> str:
    from dcpue.service.api import OPENAPI

    out = ["# HTTP API reference", "",
           "Generated from `dcpue.service.api.OPENAPI` (served at `/openapi.json`) by "
           "`docs/reference/generate.py`. Scope `read` or `operator` is what a token needs "
           "(see docs/service.md, Access).", ""]
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            out += [f"## `{method.upper()} {path}`", "", op["summary"] + ".", "",
                    f"- scope: `{'none' if op.get('security') == [] else op['x-scope']}`"]
            params = [p["name"] for p in op.get("parameters", [])]
            if params:
                out.append("- query parameters: " + ", ".join(f"`{p}`" for p in params))
            for code, resp in op["responses"].items():
                out.append(f"- {code}: {resp['description']}")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body.get("schema", {}).get("properties"):
                out += ["", "Request body:", "", "```json",
                        json.dumps(body["schema"], indent=1), "```"]
            content = op["responses"]["200"].get("content", {})
            for media, spec in content.items():
                if spec.get("schema"):
                    out += ["", f"Response ({media}):", "", "```json",
                            json.dumps(spec["schema"], indent=1), "```"]
            out.append("")
    return "\n".join(out)


PAGES = {"meters.md": meters_page, "api.md": api_page}


def main() -> int:
    for name, build in PAGES.items():
        (HERE / name).write_text(build(), encoding="utf-8")
        print(f"wrote {HERE / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
