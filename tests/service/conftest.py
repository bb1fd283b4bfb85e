"""Real alert receivers on 127.0.0.1: Alertmanager, an SMTP server and an HTTP webhook sink."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.servers import _Server, binary, free_port


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
