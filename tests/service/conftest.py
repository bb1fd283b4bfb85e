"""Real alert receivers on 127.0.0.1: Alertmanager, an SMTP server and an HTTP webhook sink."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.servers import _Server, binary, free_port, wait_for


class Alertmanager(_Server):
    """Debian's prometheus-alertmanager with a do-nothing receiver, clustering off."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = self.workdir / "alertmanager.yml"
        conf.write_text(
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n"
        )
        return [
            binary("prometheus-alertmanager", "/usr/bin/prometheus-alertmanager"),
            f"--config.file={conf}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
            return resp.status == 200

    def alerts(self) -> list[dict]:
        """Alerts Alertmanager currently holds (GET /api/v2/alerts)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as resp:
            return json.loads(resp.read())


class WebhookSink:
    """A tiny HTTP server that stores every POSTed JSON body (``status`` sets the reply code);
    with ``tls`` (a server context) it serves HTTPS."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                sink.bodies.append(
                    {"headers": dict(self.headers), "json": json.loads(self.rfile.read(length))}
                )
                self.send_response(sink.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


class MailSink:
    """aiosmtpd handler that keeps every message envelope."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def alertmanager(tmp_path: Path):
    with Alertmanager(tmp_path / "alertmanager") as am:
        yield am


@pytest.fixture
def webhook_sink():
    sink = WebhookSink()
    sink.thread.start()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


@pytest.fixture
def smtp_sink():
    handler = MailSink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


class SelfSigned:
    """A throw-away CA-less certificate for 127.0.0.1 (openssl CLI): ``cert`` doubles as the
    CA file a client must be given to trust it."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(self.key), "-out", str(self.cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory) -> SelfSigned:
    return SelfSigned(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_sink(self_signed):
    sink = WebhookSink(self_signed.server_context())
    sink.thread.start()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


# -- one daemon fast-forwarding the twin, shared by the API, dashboard and Grafana tests ------

TWIN_START_MS = 1_688_169_600_000  # 2023-07-01T00:00Z
TWIN_DAYS = 4.0
DAEMON_TOKEN = "test-operator-token-0123456789"


class ScrapingVictoria(_Server):
    """VictoriaMetrics as deploy/compose.yaml runs it: dedup at 1 ms, long retention, and
    scraping dcpue's /metrics (``-promscrape.config``)."""

    def __init__(self, workdir: Path, scrape_port: int) -> None:
        super().__init__(workdir)
        self.scrape_port = scrape_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        scrape = self.workdir / "scrape.yml"
        scrape.write_text(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dcpue\n"
            f"    bearer_token: {DAEMON_TOKEN}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.scrape_port}']\n"
            "        labels:\n          site: hall-a\n"
        )
        return [
            binary("victoria-metrics", "/usr/bin/victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms", "-search.disableCache",
            f"-promscrape.config={scrape}",
        ]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
            return resp.status == 200

    def query(self, path: str, **params: object) -> dict:
        from urllib.parse import urlencode

        with urllib.request.urlopen(f"{self.url}{path}?{urlencode(params)}", timeout=30) as resp:
            return json.loads(resp.read())


def daemon_site_text(store: Path, http_port: int, remote_url: str) -> str:
    """The bundled hall: summer, store moved, remote sink on, test-sized schedule, a PUE
    threshold that fires, and a stale meter that never reports."""
    import re

    from dcpue.config import example_path

    text = example_path("single_hall").read_text()
    text = text.split("\n[service]")[0]
    text = re.sub(r'(?m)^path = "var/hall-a.duckdb"$', f"path = {json.dumps(str(store))}", text)
    text = re.sub(r"(?m)^start = 2023-01-01T00:00:00Z$", "start = 2023-07-01T00:00:00Z", text)
    text = text.replace('[collector.remote]\nurl = ""', f'[collector.remote]\nurl = "{remote_url}"')
    return text + f"""
[service]
port = {http_port}
bearer_token_env = "DCPUE_TEST_DAEMON_TOKEN"

[service.schedule]
write_back_every_s = 900
proposals_every_min = 180
first_train_after_days = 2.0
retrain_days = 2.0

[service.alerts]
evaluate_every_s = 900

[[service.alerts.thresholds]]
name = "PueAboveOne"
figure = "pue.1h"
above = 1.01
for_min = 30
severity = "warning"
summary = "PUE above 1.01"
"""


@dataclass
class Daemon:
    url: str
    token: str
    config: Path
    victoria: ScrapingVictoria
    proc: subprocess.Popen

    def get(self, path: str, **params: object):
        import httpx

        return httpx.get(f"{self.url}{path}", params=params, timeout=60,
                         headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """``dcpue run --twin --fast-forward 4 --serve`` of the hall (commissioning sweep for the
    first 2 days, so the optimizer trains and proposes), writing to a VictoriaMetrics that
    also scrapes its /metrics; yields once the twin has finished and the remote caught up."""
    import os
    import signal
    import sys

    import httpx

    tmp = tmp_path_factory.mktemp("daemon")
    http_port = free_port()
    with ScrapingVictoria(tmp / "vm", http_port) as vm:
        config = tmp / "site.toml"
        config.write_text(daemon_site_text(tmp / "var" / "hall-a.duckdb", http_port, vm.url))
        env = os.environ | {"DCPUE_TEST_DAEMON_TOKEN": DAEMON_TOKEN}
        log = (tmp / "daemon.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dcpue", "run", "--config", str(config), "--twin",
             "--fast-forward", str(TWIN_DAYS), "--serve", "--commission-days", "2",
             "--log-level", "WARNING"], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        d = Daemon(f"http://127.0.0.1:{http_port}", DAEMON_TOKEN, config, vm, proc)
        steps = int(TWIN_DAYS * 1440)

        def finished() -> bool:
            """Every twin reading stored (16 meters, 1-minute steps) and the jobs of the last
            simulated day run: the clock stopped (the twin runs a day ahead of the jobs)."""
            try:
                text = d.get("/metrics").text
                clock = d.get("/healthz").json().get("clock")
            except httpx.HTTPError:
                return False
            stored = [float(ln.split()[-1]) for ln in text.splitlines()
                      if ln.startswith("dcpue_readings_stored_total")]
            return bool(stored) and stored[0] >= 16 * steps and clock == "stopped"

        def caught_up() -> bool:
            backlog = [ln for ln in d.get("/metrics").text.splitlines()
                       if ln.startswith("dcpue_backlog_readings{")]
            return bool(backlog) and all(ln.endswith(" 0.0") for ln in backlog)

        try:
            wait_for(finished, "twin fast-forward", 240)
            wait_for(caught_up, "remote sink caught up", 60)
            yield d
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
