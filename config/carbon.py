"""Carbon accounting settings: grid factors and contractual instruments (owned by dcpue.carbon)."""

from dcpue.config.base import Section
from pydantic import Field


class GridFactor(Section):
    """Location-based grid emission factor and where it comes from."""

    emission_factor_t_per_mwh: float = Field(ge=0, le=2.0)
    source: str = Field(min_length=1)


class CarbonSettings(Section):
    """Market-based instruments and avoided-emission sources; extended by the carbon module."""
