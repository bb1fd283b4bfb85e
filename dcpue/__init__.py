"""dcpue: data-center energy, PUE and carbon daemon."""

__version__ = "0.1.0"
