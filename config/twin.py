"""Digital-twin settings (owned by dcpue.twin)."""

from dcpue.config.base import Section


class TwinSettings(Section):
    """Parameters of the simulated data hall; extended by the twin module."""

    seed: int = 0
    step_s: int = 60
