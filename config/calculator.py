"""Rolling PUE calculator settings (owned by dcpue.metrics).

Window spellings: ``<n>m`` minutes, ``<n>h`` hours, ``<n>d`` days, ``<n>mo`` months of
730 h (= 365 d / 12, so ``12mo`` is the trailing 365-day year ISO/IEC 30134-2 asks for).
"""

from __future__ import annotations

import re

from dcpue.config.base import Section
from dcpue.config.topology import ITCategory
from pydantic import Field, field_validator

_WINDOW = re.compile(r"^([1-9][0-9]*)(m|h|d|mo)$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "mo": 730 * 3_600_000}


def window_ms(name: str) -> int:
    """Length in milliseconds of a window spelled like ``15m``, ``1h``, ``7d`` or ``12mo``."""
    match = _WINDOW.match(name)
    if match is None:
        raise ValueError(f"bad window {name!r}: use <n>m, <n>h, <n>d or <n>mo (e.g. 15m, 12mo)")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class CalculatorSettings(Section):
    """Windows, coverage threshold, gap limit and boundary of the PUE calculator.

    - ``windows``: trailing windows of the rolling metrics; those up to one day end at the
      last complete minute, longer ones at the last complete hour (they must be whole hours).
    - ``min_coverage``: share of a window (0..1) every meter a figure needs must have measured;
      below it the figure reports "insufficient data". At or above it, the window's time of
      unknown energy (a power meter's outage, an implausible interval) is bridged at the meter's
      mean power over the rest of the window (at most ``1 - min_coverage`` of it is estimated).
    - ``max_gap_s``: seconds; power readings further apart are not integrated across, and a
      counter interval longer than this counts as unmeasured time (its energy is kept).
    - ``it_category``: Green Grid measurement category of IT energy when the site meters
      several (ups_output = PUE category 1, pdu_output = 2, it_input = 3).
    - ``outside_boundary``: ids of load meters fed from the site's incomer that lie outside
      the data-center boundary (e.g. EV chargers); their energy is subtracted from facility energy.
    - ``jitter_abs`` (canonical unit, kWh or m3) + ``jitter_rel`` x value: a counter stepping
      back by at most this is jitter (0 energy); larger drops are rollovers, resets or swaps.
    - ``rollover_band``: share of a counter's range below its ``rollover`` a wrap must start in.
    - ``ceiling_margin``, ``ceiling_floor_kw``, ``default_max_power_kw``: a meter without
      ``max_power_kw`` gets the ceiling margin x median positive interval power of its history,
      at least the floor, at most the default (kW).
    - ``future_skew_s``: readings stamped further than this past the calculator's clock are
      ignored and counted (``RollingCalculator.ignored_future``).
    - ``battery_efficiency``: the site battery's round-trip efficiency (0..1] the provenance
      ledger draws stored energy with (``dcpue.metrics.provenance``; default 0.85, NREL
      Annual Technology Baseline, utility-scale lithium-ion).
    """

    windows: list[str] = Field(default_factory=lambda: ["15m", "1h", "1d", "7d", "30d", "12mo"])
    min_coverage: float = Field(default=0.95, ge=0.0, le=1.0)
    max_gap_s: float = Field(default=300.0, gt=0)
    it_category: ITCategory | None = None
    outside_boundary: list[str] = Field(default_factory=list)
    jitter_abs: float = Field(default=0.5, ge=0)
    jitter_rel: float = Field(default=1e-6, ge=0, le=0.01)
    rollover_band: float = Field(default=0.05, gt=0, le=0.5)
    ceiling_margin: float = Field(default=10.0, ge=1.0)
    ceiling_floor_kw: float = Field(default=1.0, gt=0)
    default_max_power_kw: float = Field(default=100_000.0, gt=0)
    future_skew_s: float = Field(default=300.0, ge=0)
    battery_efficiency: float = Field(default=0.85, gt=0, le=1)

    @field_validator("windows")
    @classmethod
    def _valid_windows(cls, windows: list[str]) -> list[str]:
        if not windows:
            raise ValueError("at least one window is needed")
        for name in windows:
            length = window_ms(name)
            if length > 86_400_000 and length % 3_600_000:
                raise ValueError(f"window {name!r} is longer than a day but not whole hours")
        if len(set(windows)) != len(windows):
            raise ValueError("duplicate window")
        return windows
