"""Base model for every configuration section: unknown keys are errors, not silently ignored."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A configuration section; typos in keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=False)
