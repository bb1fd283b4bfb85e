"""A simulated fleet (the bundled fleet_sim example, 2 days + 3 h) and VictoriaMetrics."""

from __future__ import annotations

import shutil
from datetime import date

import pytest
from dcpue.config import example_path
from dcpue.config.site import read_toml
from dcpue.core.store import Store
from dcpue.fleet.config import parse_fleet
from dcpue.fleet.publish import publish_site
from dcpue.fleet.simulate import simulate_fleet

from tests.servers import VictoriaMetrics, _Server, binary

START, END = date(2023, 1, 1), date(2023, 1, 3)
#: Two days plus three hours, so every hour of the 2-day period is final (grace 2 h).
DAYS = 2.125


class DedupVictoriaMetrics(VictoriaMetrics):
    """VictoriaMetrics as docs/fleet.md advises: one sample per series and millisecond."""

    def command(self) -> list[str]:
        return [*super().command(), "-dedup.minScrapeInterval=1ms"]

    def kill(self) -> None:
        """SIGKILL (no graceful flush), then wait for the port to be free."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None


class VmAgent(_Server):
    """vmagent (Debian package) accepting line protocol and forwarding to ``target``, with an
    on-disk buffer for while the target is down."""

    def __init__(self, workdir, target: str) -> None:
        super().__init__(workdir)
        self.target = target

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [binary("vmagent", "/usr/bin/vmagent"), f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-remoteWrite.url={self.target}/api/v1/write",
                f"-remoteWrite.tmpDataPath={self.workdir / 'buffer'}",
                "-remoteWrite.flushInterval=100ms"]


def fleet_for(url: str):
    path = example_path("fleet_sim")
    return parse_fleet({**read_toml(path), "remote": {"url": url}}, str(path), path.parent)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Stores of the simulated fleet (unpublished copy kept) and a VM with all sites published."""
    root = tmp_path_factory.mktemp("fleet")
    fleet = fleet_for("http://127.0.0.1:1")
    sites = simulate_fleet(fleet, DAYS, root / "out", publish=False, progress=False)
    shutil.copytree(root / "out", root / "pristine")
    shutil.copytree(root / "out", root / "pristine-agent")
    with DedupVictoriaMetrics(root / "vm") as vm:
        fleet = fleet_for(vm.url)
        for s in sites:
            with Store(s.site.store.path) as store:
                publish_site(s.site, store, fleet.remote)
        vm.flush()
        yield {"root": root, "fleet": fleet, "sites": sites, "vm": vm}
