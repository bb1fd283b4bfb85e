"""Site configuration: schema, loader and bundled examples."""

from dcpue.config.site import ConfigError, Site, example_path, load_site, parse_site
from dcpue.config.topology import ITCategory, Meter, MeterKind, MeterRole, SetpointName

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
