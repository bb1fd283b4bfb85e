"""Physics-based digital twin of a data hall that emits the readings real meters would."""
