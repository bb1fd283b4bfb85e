"""Plant state for a proposal: kept incrementally in memory vs re-read from the store.

Run from the repository root: ``.venv/bin/python bench/optimizer_state.py [--days N]``. The
single-hall example's twin writes ``--days`` of 1-minute readings into a DuckDB file; then,
minute by minute over the last hour, each new minute of readings is fed to
:class:`dcpue.optimizer.live.LiveState` and the state taken from it, and
:func:`dcpue.optimizer.propose.current_state` reads the same state from the store. Prints the
median and 95th-percentile time per state of both (goal: LiveState under 50 ms, so a loop over
many halls stays fast); nothing here is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from dcpue.config import example_path, load_site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.optimizer.live import LiveState
from dcpue.optimizer.propose import current_state
from dcpue.twin.simulator import Twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0)
    args = parser.parse_args()
    site = load_site(example_path("single_hall"))
    twin = Twin(site, start=datetime(2023, 7, 1, tzinfo=UTC))
    chunks = list(twin.run(args.days))
    cols = ReadingColumns.concat(chunks)
    newest = int(cols.ts_ms.max())
    minutes = np.arange(newest - 60 * 60_000, newest + 1, 60_000)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        before = cols.ts_ms <= minutes[0]
        store.append(_take(cols, before))
        live = LiveState(site)
        live.add(_take(cols, before & (cols.ts_ms > minutes[0] - 2 * 3600_000)))
        t_live, t_store = [], []
        for m in minutes[1:]:
            batch = _take(cols, (cols.ts_ms > m - 60_000) & (cols.ts_ms <= m))
            store.append(batch)
            t0 = time.perf_counter()
            live.add(batch)
            a = live.state()
            t1 = time.perf_counter()
            b = current_state(store, site)
            t2 = time.perf_counter()
            assert a.ts_ms == b.ts_ms
            t_live.append(t1 - t0)
            t_store.append(t2 - t1)
    for name, t in (("LiveState (memory)", t_live), ("current_state (store)", t_store)):
        ms = 1000 * np.array(t)
        print(f"{name:<24} median {np.median(ms):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms")


def _take(cols: ReadingColumns, mask: np.ndarray) -> ReadingColumns:
    return ReadingColumns(*(getattr(cols, f)[mask] for f in ReadingColumns.__slots__))


if __name__ == "__main__":
    main()
