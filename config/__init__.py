"""Site configuration: schema, loader and bundled examples.

The names below load on first use (PEP 562), so importing a ``cli`` module to build the
``dcpue`` parser does not load pydantic and the whole schema.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcpue.config.site import ConfigError, Site, example_path, load_site, parse_site
    from dcpue.config.topology import ITCategory, Meter, MeterKind, MeterRole, SetpointName

_HOME = {
    "ConfigError": "site", "Site": "site", "example_path": "site", "load_site": "site",
    "parse_site": "site", "ITCategory": "topology", "Meter": "topology",
    "MeterKind": "topology", "MeterRole": "topology", "SetpointName": "topology",
}

__all__ = [
    "ConfigError",
    "ITCategory",
    "Meter",
    "MeterKind",
    "MeterRole",
    "SetpointName",
    "Site",
    "example_path",
    "load_site",
    "parse_site",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"dcpue.config.{_HOME[name]}"), name)
