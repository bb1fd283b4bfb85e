"""Real servers for tests, started on free 127.0.0.1 ports: Mosquitto and VictoriaMetrics.

Each is a context manager that starts the Debian binary, waits (bounded) until it answers,
and kills it on exit. ``restart()`` stops and starts the same server on the same port, with
the same data directory, for outage tests.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, what: str, timeout_s: float = 15.0) -> None:
    """Poll ``check()`` until it returns truthy; bounded by ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready within {timeout_s} s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def binary(name: str, *fallbacks: str) -> str:
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if found:
            return found
    raise FileNotFoundError(f"{name} is not installed (run scripts/install-system-deps.sh)")


class _Server:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.port)

    def start(self) -> None:
        log = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ready, type(self).__name__)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None
        wait_for(lambda: not port_open(self.port), "port release", 10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Mosquitto(_Server):
    """A Mosquitto broker with persistence, so QoS 1 persistent sessions survive a restart."""

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            "user root\n"  # if run as root, stay root: the default user cannot write here
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "message_size_limit 1048576\n"
        )
        return [binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)]


class VictoriaMetrics(_Server):
    """A single-node VictoriaMetrics; ``url`` accepts /api/v2/write and serves /api/v1/export."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            binary("victoria-metrics", "/usr/bin/victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",
            "-search.disableCache",
        ]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
            return resp.status == 200

    def flush(self) -> None:
        """Make recent writes visible to queries (test-only endpoint)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
