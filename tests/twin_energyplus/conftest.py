"""EnergyPlus tests: the real engine (the optional extra ``dcpue[energyplus]``, which CI installs)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from dcpue.config import Site, parse_site

pytest.importorskip(
    "pyenergyplus.api", reason="EnergyPlus tests need the extra: pip install 'dcpue[energyplus]'"
)

HALL_TOML = Path(__file__).with_name("hall.toml")


def hall_site(top: dict | None = None, setpoints: dict | None = None,
              **energyplus: object) -> Site:
    """The test hall (generated model, Chicago TMY3, July) with top-level keys,
    ``[twin.setpoints]`` and ``[twin.energyplus]`` keys overridden."""
    data = tomllib.loads(HALL_TOML.read_text()) | (top or {})
    data["twin"]["energyplus"] = {**data["twin"]["energyplus"], **energyplus}
    if setpoints is not None:
        data["twin"]["setpoints"] = setpoints
    return parse_site(data, str(HALL_TOML), HALL_TOML.parent)


@pytest.fixture(scope="session")
def hall() -> Site:
    return hall_site()
