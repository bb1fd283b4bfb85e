"""A simulated fleet: the digital twins of a fleet file's ``[sites.simulate]`` sites, each into
its own DuckDB store, then their hourly terms published to the fleet's remote store.

Each twin site is a bundled example site (``base``) with the fleet site's id, size
(``nominal_it_kw``), weather (a TMY file pvlib ships), coordinates and seed, the fleet's time
zone, its region's grid factor and no carbon instruments (the fleet file holds those). The
derived site file is written next to its store (``<out>/<site>.toml``), so ``dcpue report
--config <out>/<site>.toml`` gives the site's own figures from its store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from dcpue.config.site import Site, example_path, load_site, read_toml
from dcpue.core.store import Store
from dcpue.fleet.config import Fleet, FleetSite
from dcpue.fleet.publish import PublishResult, publish_site
from dcpue.twin.runner import RunSummary, simulate_into
from dcpue.twin.simulator import Twin


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_lines(data: dict, prefix: str = "") -> Iterator[str]:
    """TOML for the subset site files use: scalars, arrays, tables, arrays of tables."""
    tables = {}
    for key, value in data.items():
        is_table_array = isinstance(value, list) and value and all(isinstance(v, dict)
                                                                  for v in value)
        if isinstance(value, dict) or is_table_array:
            tables[key] = value
        else:
            yield f"{key} = {_toml_value(value)}"
    for key, value in tables.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield f"\n[{name}]"
            yield from _toml_lines(value, f"{name}.")
        else:
            for item in value:
                yield f"\n[[{name}]]"
                yield from _toml_lines(item, f"{name}.")


def to_toml(data: dict) -> str:
    return "\n".join(_toml_lines(data)).lstrip("\n") + "\n"


def sim_site_document(fleet: Fleet, fs: FleetSite, store_path: Path) -> dict:
    """The site document of a simulated fleet site (see module docstring)."""
    assert fs.simulate is not None
    sim = fs.simulate
    base = Path(sim.base)
    data = read_toml(base if base.suffix == ".toml" else example_path(sim.base))
    region = fleet.region(fs.region)
    data.update(id=fs.id, name=fs.name or fs.id, timezone=fleet.timezone)
    data["grid"] = {"emission_factor_t_per_mwh": region.emission_factor_t_per_mwh,
                    "source": region.source}
    data["store"] = {"path": str(store_path)}
    data.pop("carbon", None)
    for key in ("latitude", "longitude"):
        if getattr(sim, key) is not None:
            data[key] = getattr(sim, key)
    twin = data.setdefault("twin", {})
    twin.update(nominal_it_kw=sim.nominal_it_kw, seed=sim.seed)
    if sim.weather is not None:
        twin["weather"] = sim.weather
    collector = data.get("collector", {})
    for sub in ("mqtt", "modbus"):
        collector.pop(sub, None)  # no field hardware for simulated fleet sites
    return data


@dataclass(frozen=True)
class SimulatedSite:
    """One simulated site: its derived site, the twin run and the publishing pass."""

    site: Site
    config_path: Path
    run: RunSummary
    published: PublishResult | None


def simulate_fleet(
    fleet: Fleet, days: float, out_dir: Path, *, start: datetime | None = None,
    publish: bool = True, progress: bool = True,
    on_site: Callable[[SimulatedSite], None] | None = None,
) -> list[SimulatedSite]:
    """Simulate every ``[sites.simulate]`` site into ``out_dir/<site>.duckdb`` and publish."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for fs in fleet.sites:
        if fs.simulate is None:
            continue
        path = out_dir / f"{fs.id}.toml"
        path.write_text(to_toml(sim_site_document(fleet, fs, out_dir / f"{fs.id}.duckdb")),
                        encoding="utf-8")
        site = load_site(path)
        with Store(site.store.path) as store:
            run = simulate_into(Twin(site, start=start), store, days, progress=progress)
            published = publish_site(site, store, fleet.remote) if publish else None
        result = SimulatedSite(site, path, run, published)
        if on_site is not None:
            on_site(result)
        done.append(result)
    return done
