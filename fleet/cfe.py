"""24/7 carbon-free-energy (CFE) matching per grid region, hour by hour (pure NumPy).

Per region and hour h (energies in MWh):

- load ``L_h`` = the region's sites' facility energy (ISO/IEC 30134-2; on-site PV included);
- clean supply ``C_h`` = on-site PV generation of the region's sites + the hourly delivery of
  the region's contractual instruments (granular certificates, PPA delivery profiles);
- matched ``M_h = min(L_h, C_h)``: clean energy counts only in the hour and region it is
  produced; a surplus in one hour cannot cover a deficit in another.

Hourly-matched CFE score = sum(M_h) / sum(L_h) x 100 % (the share of consumption matched in the
same hour and region, as in Google's 24/7 CFE methodology and the UN 24/7 Carbon-free Energy
Compact). Annual-matching share = min(sum C_h, sum L_h) / sum(L_h) x 100 %; since
sum(min) <= min(sum), it is never below the hourly score. Emissions of unmatched hours =
sum((L_h - M_h) x f_h), f_h the region's hourly grid factor (or its flat factor), tCO2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class CfeResult:
    """One region (or the fleet): MWh totals, the two shares in %, unmatched tCO2."""

    load_mwh: float
    clean_mwh: float
    matched_mwh: float
    unmatched_tco2: float
    hours: int

    @property
    def hourly_score_pct(self) -> float | None:
        return None if self.load_mwh <= 0 else self.matched_mwh / self.load_mwh * 100.0

    @property
    def annual_share_pct(self) -> float | None:
        if self.load_mwh <= 0:
            return None
        return min(self.clean_mwh, self.load_mwh) / self.load_mwh * 100.0

    def __add__(self, other: CfeResult) -> CfeResult:
        """Fleet totals: regions are matched separately, then added (hourly score of the sum)."""
        return CfeResult(
            self.load_mwh + other.load_mwh, self.clean_mwh + other.clean_mwh,
            self.matched_mwh + other.matched_mwh, self.unmatched_tco2 + other.unmatched_tco2,
            max(self.hours, other.hours),
        )


def match_hourly(load_mwh: np.ndarray, clean_mwh: np.ndarray,
                 factor_t_per_mwh: np.ndarray | float) -> CfeResult:
    """Match one region's hourly clean supply to its hourly load (equal-length arrays)."""
    load = np.asarray(load_mwh, dtype=np.float64)
    clean = np.asarray(clean_mwh, dtype=np.float64)
    if load.shape != clean.shape:
        raise ValueError(f"load has {load.shape} hours, clean supply {clean.shape}")
    if np.any(load < 0) or np.any(clean < 0):
        raise ValueError("hourly load and clean supply must not be negative")
    matched = np.minimum(load, clean)
    unmatched = float(((load - matched) * np.broadcast_to(factor_t_per_mwh, load.shape)).sum())
    return CfeResult(float(load.sum()), float(clean.sum()), float(matched.sum()), unmatched,
                     len(load))
