"""Hourly delivery profiles of contractual instruments from CSV (``timestamp,mwh``).

``timestamp`` is the hour start in ISO 8601 with a UTC offset (naive times are refused, as for
hourly grid factors: DST makes them ambiguous); ``mwh`` the energy delivered (or certified by
granular certificates) in that hour. Errors are one-line :class:`ConfigError`\\ s.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from dcpue.config.site import ConfigError
from dcpue.fleet.terms import HOUR_MS


def load_profile(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Hour starts (UTC ms, sorted) and MWh of a delivery profile CSV."""
    rows: list[tuple[int, float]] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"timestamp", "mwh"} <= set(reader.fieldnames):
                raise ConfigError(f"{path}: header must be 'timestamp,mwh'")
            for line, row in enumerate(reader, start=2):
                raw_ts, raw = (row["timestamp"] or "").strip(), (row["mwh"] or "").strip()
                try:
                    moment = datetime.fromisoformat(raw_ts.replace("Z", "+00:00"))
                    mwh = float(raw)
                except ValueError:
                    raise ConfigError(f"{path}: line {line}: bad row {raw_ts!r},{raw!r}") from None
                if moment.tzinfo is None:
                    raise ConfigError(f"{path}: line {line}: timestamp {raw_ts!r} has no UTC offset")
                ts = round(moment.astimezone(UTC).timestamp() * 1000)
                if ts % HOUR_MS or not math.isfinite(mwh) or mwh < 0:
                    raise ConfigError(f"{path}: line {line}: not an hour start or MWh < 0")
                rows.append((ts, mwh))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    mwh = np.array([r[1] for r in rows], dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    if len(ts) > 1 and np.any(np.diff(ts[order]) == 0):
        raise ConfigError(f"{path}: an hour appears twice")
    return ts[order], mwh[order]


def on_hours(ts_ms: np.ndarray, values: np.ndarray, start_ms: int, n_hours: int) -> np.ndarray:
    """``values`` placed on the period's hours ``start_ms + k h`` (hours without a row: 0)."""
    out = np.zeros(n_hours)
    k = (ts_ms - start_ms) // HOUR_MS
    inside = (k >= 0) & (k < n_hours)
    out[k[inside]] = values[inside]
    return out
