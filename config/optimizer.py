"""Cooling optimizer settings (owned by dcpue.optimizer)."""

from dcpue.config.base import Section


class OptimizerSettings(Section):
    """Setpoint bounds, limits and model settings; extended by the optimizer module."""
