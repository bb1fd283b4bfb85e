"""Outdoor weather from the TMY files pvlib ships, as periodic hourly series over a UTC year.

A TMY file has 8760 hourly records in local standard time, each the hour ending at its stamp.
Record ``i`` (hour ending ``i + 1`` h LST) is placed at its mid-hour, ``i + 0.5 - tz`` hours after
1 January 00:00 UTC, and values at any instant are linear interpolations, periodic over 8760 h
(the same typical year repeats; in leap years 31 December reuses 1 January's weather).
Wet bulb is computed per record with psychrolib (SI) from dry bulb, RH and pressure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
from dcpue.config import ConfigError
from dcpue.twin.plant import wet_bulb_c

HOURS_PER_YEAR = 8760
MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class Weather:
    """Hourly TMY series (length 8760) at UTC hour-of-year ``hour``.

    Units: temperatures degC, RH %, pressure Pa, irradiance W/m2, wind m/s; ``tz_hours`` is the
    file's standard-time UTC offset.
    """

    source: str
    hour: np.ndarray
    dry_bulb_c: np.ndarray
    relative_humidity_pct: np.ndarray
    pressure_pa: np.ndarray
    wet_bulb_c: np.ndarray
    ghi: np.ndarray
    dni: np.ndarray
    dhi: np.ndarray
    wind_speed: np.ndarray
    tz_hours: float

    def at(self, name: str, ts_ms: np.ndarray) -> np.ndarray:
        """Series ``name`` linearly interpolated at UTC epoch milliseconds ``ts_ms``."""
        return np.interp(hour_of_year(ts_ms), self.hour, getattr(self, name), period=HOURS_PER_YEAR)


def hour_of_year(ts_ms: np.ndarray) -> np.ndarray:
    """Hours since 1 January 00:00 UTC of each timestamp's own year (float)."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    year_start = ts.astype("datetime64[ms]").astype("datetime64[Y]").astype("datetime64[ms]")
    return (ts - year_start.astype(np.int64)) / MS_PER_HOUR


def weather_path(name: str) -> Path:
    """A file name in ``pvlib/data`` (e.g. ``723170TYA.CSV``) or a path to a TMY file."""
    bundled = Path(pvlib.__file__).parent / "data" / name
    path = bundled if bundled.exists() else Path(name)
    if not path.exists():
        raise ConfigError(f"twin.weather: no TMY file {name!r} (neither in pvlib/data nor a path)")
    return path


@cache
def load_weather(name: str) -> Weather:
    """Read a TMY3 (``.csv``) or TMY2 (``.tm2``) file; cached per name."""
    path = weather_path(name)
    if path.suffix.lower() == ".tm2":
        raw, meta = pvlib.iotools.read_tmy2(str(path))
        # TMY2 stores temperatures in 0.1 degC, wind in 0.1 m/s, pressure in mbar.
        frame = pd.DataFrame({
            "temp_air": raw["DryBulb"] / 10.0, "relative_humidity": raw["RHum"],
            "pressure": raw["Pressure"], "ghi": raw["GHI"], "dni": raw["DNI"],
            "dhi": raw["DHI"], "wind_speed": raw["Wspd"] / 10.0,
        })
    else:
        frame, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    if len(frame) != HOURS_PER_YEAR:
        raise ConfigError(f"twin.weather: {name} has {len(frame)} records, expected 8760")
    tz = float(meta["TZ"])
    dry = frame["temp_air"].to_numpy(float)
    rh = frame["relative_humidity"].to_numpy(float)
    pressure = frame["pressure"].to_numpy(float) * 100.0  # mbar -> Pa
    return Weather(
        source=path.name,
        hour=np.arange(HOURS_PER_YEAR) + 0.5 - tz,
        dry_bulb_c=dry,
        relative_humidity_pct=rh,
        pressure_pa=pressure,
        wet_bulb_c=np.asarray(wet_bulb_c(dry, rh, pressure)),
        ghi=frame["ghi"].to_numpy(float),
        dni=frame["dni"].to_numpy(float),
        dhi=frame["dhi"].to_numpy(float),
        wind_speed=frame["wind_speed"].to_numpy(float),
        tz_hours=tz,
    )
