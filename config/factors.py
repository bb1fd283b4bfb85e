"""Emission factors a site file declares: one grid factor, or hourly factors from a CSV file.

Below both :mod:`dcpue.metrics` (CUE, ISO/IEC 30134-8) and :mod:`dcpue.carbon` (Scope 2), so
both read the same series (one loader, one cache).

CSV format: a header ``timestamp,t_per_mwh`` then one row per hour. ``timestamp`` is the hour
start in ISO 8601 with a UTC offset (``2023-01-01T00:00:00Z`` or ``...+08:00``); naive times are
refused because a grid operator's local hour cannot be placed in UTC without its offset around
DST. ``t_per_mwh`` is tCO2/MWh (equal to kgCO2/kWh). A consumption hour whose start has no row
uses the site factor (:func:`per_hour`), and the audit trail says how many did.

The parsed series is cached per file, keyed by (path, modification time, size): a daemon
recomputing CUE every minute reads the file once, and again only when it changes.
"""

from __future__ import annotations

import csv
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from dcpue.config.site import ConfigError, Site


@dataclass(frozen=True, slots=True)
class Factor:
    """An emission factor in tCO2/MWh (= kgCO2/kWh) and where it comes from."""

    value: float
    source: str


@dataclass(frozen=True, slots=True)
class HourlyFactors:
    """Hourly emission factors: hour-start UTC ms (sorted, unique) and tCO2/MWh."""

    ts_ms: np.ndarray
    t_per_mwh: np.ndarray
    source: str


def per_hour(
    factors: HourlyFactors | None, hour_ms: np.ndarray, fallback: float
) -> tuple[np.ndarray, np.ndarray]:
    """The factor (tCO2/MWh) of each hour start in ``hour_ms`` and whether the series had
    it; hours it lacks (or every hour, without a series) get ``fallback``."""
    hour_ms = np.asarray(hour_ms, dtype=np.int64)
    values = np.full(len(hour_ms), float(fallback))
    found = np.zeros(len(hour_ms), dtype=bool)
    if factors is None or not len(factors.ts_ms):
        return values, found
    idx = np.searchsorted(factors.ts_ms, hour_ms)
    inside = idx < len(factors.ts_ms)
    found[inside] = factors.ts_ms[idx[inside]] == hour_ms[inside]
    values[found] = factors.t_per_mwh[idx[found]]
    return values, found


def _parse_row(path: Path, line: int, row: dict[str, str]) -> tuple[int, float]:
    where = f"{path}: line {line}"
    raw_ts, raw_factor = (row.get("timestamp") or "").strip(), (row.get("t_per_mwh") or "").strip()
    try:
        moment = datetime.fromisoformat(raw_ts.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where}: unparseable timestamp {raw_ts!r}") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{where}: timestamp {raw_ts!r} has no UTC offset")
    ts_ms = round(moment.astimezone(UTC).timestamp() * 1000)
    try:
        factor = float(raw_factor)
    except ValueError:
        raise ConfigError(f"{where}: factor {raw_factor!r} is not a number") from None
    if not math.isfinite(factor) or not 0 <= factor <= 2.0:
        raise ConfigError(f"{where}: factor {raw_factor} outside 0-2 tCO2/MWh")
    return ts_ms, factor


def _parse(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"timestamp", "t_per_mwh"} <= set(
                reader.fieldnames
            ):
                raise ConfigError(f"{path}: header must be 'timestamp,t_per_mwh'")
            rows = [_parse_row(path, n, row) for n, row in enumerate(reader, start=2)]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not rows:
        raise ConfigError(f"{path}: no factor rows")
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1] for r in rows], dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    repeated = np.flatnonzero(np.diff(ts) == 0)
    if len(repeated):
        when = datetime.fromtimestamp(ts[repeated[0]] / 1000, UTC).isoformat()
        raise ConfigError(f"{path}: hour {when} appears twice")
    ts.setflags(write=False)
    values.setflags(write=False)
    return ts, values


_CACHE: dict[Path, tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = {}
_LOCK = threading.Lock()


def load_hourly_factors(path: str | Path, source: str) -> HourlyFactors:
    """Read the CSV into sorted hour starts (UTC ms) and factors; errors are one-line
    ConfigErrors. Parsed once per (path, mtime, size): an unchanged file is not read again."""
    path = Path(path).absolute()
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    key = (st.st_mtime_ns, st.st_size)
    with _LOCK:
        hit = _CACHE.get(path)
    if hit is None or hit[0] != key:
        hit = (key, _parse(path))
        with _LOCK:
            _CACHE[path] = hit
    return HourlyFactors(*hit[1], source)


def site_hourly_factors(site: Site, base_dir: Path | None = None) -> HourlyFactors | None:
    """The site's ``carbon.hourly_factors_csv`` (a relative path from ``base_dir``), or None."""
    settings = site.carbon
    if settings.hourly_factors_csv is None:
        return None
    path = settings.hourly_factors_csv
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return load_hourly_factors(path, settings.hourly_factors_source)
