"""Publishing bookkeeping without a server: hours recomputed since the cursor, finality,
pending hours, and the ledger's change detection.

Computed: the ledger of a store fed chunk by chunk, one ``recompute`` per chunk (as a daemon
publishes). Compared against: the ledger of the same readings stored at once, and the metrics
energy balance of each hour straight from the readings.
"""

from __future__ import annotations

import numpy as np
import pytest
from dcpue.config import example_path, load_site
from dcpue.core.store import Store
from dcpue.fleet.config import PublishSettings, RemoteKind
from dcpue.fleet.publish import ledger_terms, recompute
from dcpue.fleet.terms import HOUR_MS
from dcpue.metrics.balance import energy_balance
from dcpue.twin.simulator import Twin

SETTINGS = PublishSettings(url="http://127.0.0.1:1", kind=RemoteKind.INFLUXDB)


@pytest.fixture(scope="module")
def chunks():
    site = load_site(example_path("microgrid"))
    return site, list(Twin(site).run(0.75, chunk_days=0.125))  # 18 h in 3-hour chunks


def test_incremental_passes_equal_one_pass_and_the_balance(chunks):
    site, parts = chunks
    with Store() as live, Store() as once:
        for cols in parts:
            live.append(cols)
            recompute(site, live, SETTINGS)
        for cols in parts:
            once.append(cols)
        recompute(site, once, SETTINGS)
        a, b = ledger_terms(live), ledger_terms(once)
        # readings end at 17:59; the slowest meter's last reading bounds the final hours
        assert list(a.hour_ms) == list(b.hour_ms) and len(a) == 17
        for field, values in a.values.items():
            np.testing.assert_allclose(values, b.values[field], rtol=1e-9, atol=1e-9,
                                       err_msg=field)
        for k in (0, 5, 16):
            h = int(a.hour_ms[k])
            bal = energy_balance(site, once, h, h + HOUR_MS)
            assert a.values["facility_kwh"][k] == pytest.approx(bal.facility_kwh, rel=1e-9)
            assert a.values["it_kwh"][k] == pytest.approx(bal.it_kwh, rel=1e-9)
            assert a.values["pv_generation_kwh"][k] == pytest.approx(bal.pv_generation_kwh,
                                                                     rel=1e-9, abs=1e-9)
        assert (a.values["facility_coverage"] == 1.0).all()


def test_a_pass_without_new_readings_changes_nothing(chunks):
    site, parts = chunks
    with Store() as store:
        for cols in parts:
            store.append(cols)
        computed, changed, _ = recompute(site, store, SETTINGS)
        assert changed == computed == 17
        assert recompute(site, store, SETTINGS)[:2] == (0, 0)
        store.append(parts[0])  # a replayed batch: stored nothing new
        assert recompute(site, store, SETTINGS)[1] == 0
