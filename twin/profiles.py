"""Load profiles and seeded noise that are pure functions of (seed, time).

Noise comes from a counter-based hash (SplitMix64) of the seed and an integer time index, so a
value at a given instant never depends on how a run is chunked or where it started: two twins
with the same seed see the same world.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from dcpue.config.twin import TwinSettings

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
MS_PER_HOUR = 3_600_000
MS_PER_MINUTE = 60_000


def stream_key(seed: int, name: str) -> int:
    """A 64-bit key for the noise stream ``name`` of ``seed``."""
    return (seed * 0x2545F4914F6CDD1D + zlib.crc32(name.encode())) % 2**64


def hash_uniform(key: int, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, one per integer ``index``, fixed by ``key`` (SplitMix64)."""
    with np.errstate(over="ignore"):
        z = np.asarray(index, dtype=np.int64).astype(np.uint64) * _GOLDEN + np.uint64(key)
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hash_normal(key: int, index: np.ndarray) -> np.ndarray:
    """Standard normal numbers per integer ``index`` (Box-Muller on two hashed streams)."""
    idx = np.asarray(index, dtype=np.int64)
    u1 = 1.0 - hash_uniform(key, 2 * idx)
    u2 = hash_uniform(key, 2 * idx + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def smooth_noise(key: int, ts_ms: np.ndarray, period_ms: int) -> np.ndarray:
    """Standard-normal knots every ``period_ms``, linearly interpolated (continuous in time)."""
    pos = np.asarray(ts_ms, dtype=np.int64) / period_ms
    k = np.floor(pos).astype(np.int64)
    w = pos - k
    return (1.0 - w) * hash_normal(key, k) + w * hash_normal(key, k + 1)


def local_time(ts_ms: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """(local hour of day as float, local weekday 0 = Monday) of UTC epoch ms."""
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(ts_ms, dtype=np.int64), unit="ms", utc=True))
    loc = idx.tz_convert(timezone)
    hour = loc.hour.to_numpy() + loc.minute.to_numpy() / 60.0 + loc.second.to_numpy() / 3600.0
    return hour, loc.day_of_week.to_numpy()


def it_load_kw(
    twin: TwinSettings, seed: int, ts_ms: np.ndarray, hour: np.ndarray, weekday: np.ndarray
) -> np.ndarray:
    """IT load in kW: nominal x (1 + daily swing + weekend dip + noise), clipped to the profile.

    The daily swing peaks at 15:00 local; the noise is hourly smooth noise plus a third of it
    per minute; the result lies in ``[trough_factor, peak_factor] x nominal_it_kw``.
    """
    daily = twin.daily_swing * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)
    weekend = np.where(weekday >= 5, -twin.weekend_dip, 0.0)
    key = stream_key(seed, "it_load")
    noise = twin.noise * (
        smooth_noise(key, ts_ms, MS_PER_HOUR)
        + hash_normal(key ^ 1, np.asarray(ts_ms, dtype=np.int64) // MS_PER_MINUTE) / 3.0
    )
    factor = np.clip(1.0 + daily + weekend + noise, twin.trough_factor, twin.peak_factor)
    return twin.nominal_it_kw * factor


def other_load_kw(
    twin: TwinSettings, seed: int, ts_ms: np.ndarray, hour: np.ndarray, weekday: np.ndarray
) -> np.ndarray:
    """EV chargers and other loads in kW: a daytime bell (07:00-20:00 local) of ``other_load_kw``.

    Weekends use 60 % of the weekday shape; hourly noise of +-20 %; never negative.
    """
    if twin.other_load_kw == 0:
        return np.zeros(len(np.atleast_1d(ts_ms)))
    bell = np.clip(np.sin(np.pi * (hour - 7.0) / 13.0), 0.0, None) ** 2
    day = np.where(weekday >= 5, 0.6, 1.0)
    noise = 1.0 + 0.2 * smooth_noise(stream_key(seed, "other_load"), ts_ms, MS_PER_HOUR)
    return twin.other_load_kw * np.clip(0.05 + 0.95 * bell * day * noise, 0.0, 1.0)
