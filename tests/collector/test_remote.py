"""Store-and-forward to VictoriaMetrics through influxdb-client: cursor, resume, idempotent replay."""

from __future__ import annotations

import asyncio

import pytest
from dcpue.collector.remote import Forwarder
from dcpue.config.collector import RemoteSettings
from dcpue.core.readings import Reading
from dcpue.core.store import Store

from tests.collector.conftest import T0_MS, make_site
from tests.collector.helpers import once, stream, vm_export, vm_series
from tests.servers import VictoriaMetrics


class DedupVictoriaMetrics(VictoriaMetrics):
    """VictoriaMetrics as the docs advise for dcpue: one sample per series and millisecond."""

    def command(self) -> list[str]:
        return [*super().command(), "-dedup.minScrapeInterval=1ms"]


@pytest.fixture
def dedup_victoria(tmp_path):
    with DedupVictoriaMetrics(tmp_path / "vm-dedup") as vm:
        yield vm


def forwarder(store: Store, url: str, **settings) -> Forwarder:
    return Forwarder(store, make_site(), RemoteSettings(url=url, **settings))


async def test_cursor_survives_a_new_forwarder_and_nothing_is_sent_twice(victoria):
    store = Store()
    readings = stream(0, 50)
    store.append(readings)
    first = forwarder(store, victoria.url, batch_size=120)
    assert first.backlog() == 200
    assert await asyncio.to_thread(first.push_once) == 120  # one batch, then "crash"
    first.close()
    second = forwarder(store, victoria.url, batch_size=120)
    assert second.backlog() == 80
    await second.drain()
    assert second.backlog() == 0
    assert await asyncio.to_thread(second.push_once) == 0  # idle
    second.close()
    await asyncio.to_thread(victoria.flush)
    assert vm_export(victoria.url) == once(readings)  # the plain server would show repeats


async def test_replayed_batches_overwrite_instead_of_duplicating(dedup_victoria):
    store = Store()
    readings = [*stream(0, 30), Reading(T0_MS, "metric.pue.1h", "pue", 1.279, "1")]
    store.append(readings)
    f = forwarder(store, dedup_victoria.url, cursor="vm")
    await f.drain()
    store.set_cursor("vm", 0)  # as if the confirmations had been lost: replay everything
    assert f.backlog() == len(readings)
    await f.drain()
    f.close()
    await asyncio.to_thread(dedup_victoria.flush)
    assert vm_export(dedup_victoria.url) == once(readings)
    [pue] = [r for r in vm_series(dedup_victoria.url) if r["metric"]["meter"] == "metric.pue.1h"]
    assert pue["metric"] == {
        "__name__": "dcpue_pue", "meter": "metric.pue.1h", "role": "metric", "site": "test-site"
    }


async def test_unreachable_remote_raises_and_keeps_the_cursor():
    store = Store()
    store.append(stream(0, 5))
    f = forwarder(store, "http://127.0.0.1:9", timeout_s=1.0)  # discard port: refused
    with pytest.raises(Exception, match="Connection refused"):
        await f.drain()
    assert (f.backlog(), f.stats.errors, f.stats.written) == (20, 1, 0)
    f.close()
