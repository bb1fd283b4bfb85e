"""The first hour: with 20 minutes of twin readings the 1-h PUE is not yet known, the API says
when it will be (window x min_coverage - data span) and names the best window with data."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from dcpue.config import example_path, load_site
from dcpue.core.store import Store
from dcpue.service.api import create_app
from dcpue.service.daemon import Runtime
from dcpue.twin.simulator import Twin

START = datetime(2023, 7, 1, tzinfo=UTC)


async def test_warming_up_names_the_wait_and_the_best_window(tmp_path):
    site = load_site(example_path("single_hall"))
    with Store(tmp_path / "s.duckdb") as store:
        for cols in Twin(site, start=START).run(21 / 1440):  # 00:00 .. 00:20, 1-min steps
            store.append(cols)
        first, last = store.time_range()
        assert last - first == 20 * 60_000
        runtime = Runtime(site, store, lambda: last)
        transport = httpx.ASGITransport(app=create_app(runtime.api_sources()))
        async with httpx.AsyncClient(transport=transport, base_url="http://dcpue") as client:
            body = (await client.get("/api/pue")).json()
    assert body["current"]["value"] is None
    # 1 h x 0.95 coverage = 57 min of data needed; 20 min are stored: 37 min to go.
    assert body["warming_up"]["figure"] == "pue.1h"
    assert body["warming_up"]["ready_in_s"] == pytest.approx(37 * 60)
    assert body["best_figure"] == "pue.15m"
    assert body["figures"]["pue.15m"]["value"] > 1.0
