"""``dcpue run --twin --fast-forward`` with EnergyPlus as the plant, and its resumable feed."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib

import numpy as np
from dcpue.config import parse_site
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.twin.energyplus import EnergyPlusFeed

from tests.servers import free_port
from tests.twin_energyplus.conftest import HALL_TOML


def test_a_restarted_feed_continues_the_same_world(hall):
    """Steps 0-40 then (after a restart that replays EnergyPlus silently) 40-96 equal one
    uninterrupted day: same meters, times and values (counters continue)."""
    with Store() as store:
        whole = EnergyPlusFeed(hall, store, days=1)
        expected = whole.next(96)
        whole.close()
    with Store() as store:
        first = EnergyPlusFeed(hall, store, days=1)
        head = first.next(40)
        first.save()
        first.close()
        resumed = EnergyPlusFeed(hall, store, days=1)
        assert resumed.now_ms == first.now_ms
        tail = resumed.next(56)
        resumed.close()
    got = {(m, t): v for part in (head, tail)
           for m, t, v in zip(part.meter, part.ts_ms.tolist(), part.value, strict=True)}
    keys = zip(expected.meter, expected.ts_ms.tolist(), strict=True)
    want = dict(zip(keys, expected.value, strict=True))
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-13)


async def test_run_fast_forward_serves_figures_from_the_energyplus_plant(tmp_path):
    data = HALL_TOML.read_text().replace(
        "[calculator]", f'[service]\nport = {free_port()}\n\n[service.schedule]\n'
        "write_back_every_s = 900\nproposals_every_min = 60\n\n"
        '[store]\npath = "ff.duckdb"\n\n[calculator]')
    site_file = tmp_path / "site.toml"
    site_file.write_text(data)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dcpue", "run", "--config", str(site_file), "--twin",
        "--fast-forward", "1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), timeout=180))
    assert proc.returncode == 0, err
    pue = float(re.search(r"pue\.1h = (\d\.\d+)", out).group(1))
    assert "stopped at 2023-07-02T06:00:00+00:00" in out
    site = parse_site(tomllib.loads(data), str(site_file), tmp_path)
    with Store(tmp_path / "ff.duckdb") as store:
        b = energy_balance(site, store, 1688191200000 + 23 * 3_600_000, 1688277600000)
    assert abs(pue - b.facility_kwh / b.it_kwh) < 1e-4  # the daemon's last hour, from the store
