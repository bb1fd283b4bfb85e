"""Rolling PUE calculator settings (owned by dcpue.metrics)."""

from dcpue.config.base import Section


class CalculatorSettings(Section):
    """Windows, coverage thresholds and gap limits; extended by the metrics module."""
