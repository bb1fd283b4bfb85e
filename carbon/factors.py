"""Hourly grid emission factors from a CSV file (adapter for the location-based total).

Format: a header ``timestamp,t_per_mwh`` then one row per hour. ``timestamp`` is the hour start
in ISO 8601 with a UTC offset (``2023-01-01T00:00:00Z`` or ``...+08:00``); naive times are refused
because a grid operator's local hour cannot be placed in UTC without its offset around DST.
``t_per_mwh`` is tCO2/MWh (equal to kgCO2/kWh). Consumption hours are counted from the report's
start (local midnight); a consumption hour whose start has no row uses the site factor, and the
audit trail says how many did.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from dcpue.carbon.scope2 import HourlyFactors
from dcpue.config import ConfigError


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


def load_hourly_factors(path: str | Path, source: str) -> HourlyFactors:
    """Read the CSV into sorted hour starts (UTC ms) and factors; errors are one-line ConfigErrors."""
    path = Path(path)
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
    return HourlyFactors(ts, values, source)
