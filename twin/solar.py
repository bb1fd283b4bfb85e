"""On-site PV with pvlib: solar position, isotropic-sky plane-of-array irradiance, PVWatts DC/AC.

Computed once per TMY record (at its mid-hour, in the reference year) and interpolated in time
like the weather. Cell temperature: Faiman model. Angle-of-incidence losses are folded into the
flat system losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib
from dcpue.config.twin import PVSettings
from dcpue.twin.weather import HOURS_PER_YEAR, MS_PER_HOUR, Weather, hour_of_year


@dataclass(frozen=True)
class PVProfile:
    """Hourly AC power (kW) at the weather's hours."""

    hour: np.ndarray
    ac_kw: np.ndarray

    def ac_at(self, ts_ms: np.ndarray) -> np.ndarray:
        """AC output in kW at UTC epoch ms (interpolated; 0 at night)."""
        return np.interp(hour_of_year(ts_ms), self.hour, self.ac_kw, period=HOURS_PER_YEAR)


def pv_profile(
    weather: Weather, pv: PVSettings, latitude: float, longitude: float, altitude_m: float,
    year: int,
) -> PVProfile:
    """PVWatts output of an array of ``pv.dc_kw`` over the TMY records, placed in ``year``."""
    start_ms = pd.Timestamp(year=year, month=1, day=1, tz="UTC").value // 1_000_000
    times = pd.to_datetime(
        start_ms + np.round(weather.hour * MS_PER_HOUR).astype(np.int64), unit="ms", utc=True
    )
    solpos = pvlib.solarposition.get_solarposition(times, latitude, longitude, altitude_m)
    poa = pvlib.irradiance.get_total_irradiance(
        pv.tilt_deg, pv.azimuth_deg, solpos["apparent_zenith"].to_numpy(),
        solpos["azimuth"].to_numpy(), weather.dni, weather.ghi, weather.dhi,
    )
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=float)).clip(min=0.0)
    t_cell = pvlib.temperature.faiman(poa_global, weather.dry_bulb_c, weather.wind_speed)
    dc = pvlib.pvsystem.pvwatts_dc(poa_global, t_cell, pv.dc_kw, pv.gamma_pdc)
    dc = np.asarray(dc, dtype=float) * (1.0 - pv.losses_pct / 100.0)
    ac_rating = pv.ac_kw or pv.dc_kw / 1.2
    ac = pvlib.inverter.pvwatts(dc, ac_rating / 0.96) if pv.dc_kw > 0 else np.zeros_like(dc)
    return PVProfile(weather.hour, np.clip(np.asarray(ac, dtype=float), 0.0, None))
