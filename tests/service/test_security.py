"""Closed by default: TLS verified for SMTP and webhooks, scoped tokens, request limits, and no
secret in logs, /metrics, API output or errors. Real servers on 127.0.0.1 (aiosmtpd with a
self-signed certificate, an HTTPS webhook sink, uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
import tomllib

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from dcpue.config import ConfigError, example_path, parse_site
from dcpue.config.service import EmailTarget, WebhookTarget
from dcpue.core.store import Store
from dcpue.service.alerts import Alert
from dcpue.service.api import create_app
from dcpue.service.daemon import Runtime
from dcpue.service.notify import Dispatcher, EmailNotifier, WebhookNotifier, build_notifiers

from tests.servers import free_port, wait_for
from tests.service.conftest import MailSink

NOW_MS = int(time.time() * 1000)
READ, OPERATOR, SUPPLIER = "read-token-0123456789", "operator-token-0123456", "supplier-0123456789ab"


def alert() -> Alert:
    return Alert("hall-a:pue_high", "PueHigh", "critical", "PUE 2.1 above 2.0.",
                 {"alertname": "PueHigh", "site": "hall-a"}, NOW_MS)


class Recorder:
    """aiosmtpd authenticator that records every login attempt (and accepts it)."""

    def __init__(self) -> None:
        self.logins: list[bytes] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.logins.append(auth_data.password)
        return AuthResult(success=True)


@pytest.fixture(params=["starttls", "smtps"])
def tls_smtp(request, self_signed):
    """aiosmtpd with a self-signed certificate, STARTTLS required (587-style) or implicit TLS
    (465-style); logins only over TLS."""
    handler, auth = MailSink(), Recorder()
    kwargs = dict(authenticator=auth)
    if request.param == "starttls":
        kwargs |= dict(tls_context=self_signed.server_context(), require_starttls=True,
                       auth_require_tls=True)
    else:  # aiosmtpd does not count implicit TLS for auth_require_tls: the socket is TLS
        kwargs |= dict(ssl_context=self_signed.server_context(), auth_require_tls=False)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    yield request.param, controller.port, handler, auth
    controller.stop()


def email_target(mode: str, port: int, **extra) -> EmailTarget:
    return EmailTarget(kind="email", port=port, sender="dcpue@hall-a.example",
                       recipients=["ops@example.org"], username="dcpue",
                       password_env="DCPUE_TEST_SMTP_PW", **{mode: True}, **extra)


async def test_smtp_refuses_an_unverified_certificate_before_sending_the_password(
        tls_smtp, self_signed, monkeypatch):
    mode, port, handler, auth = tls_smtp
    monkeypatch.setenv("DCPUE_TEST_SMTP_PW", "smtp-secret-pw")
    with pytest.raises(ssl.SSLCertVerificationError):
        await EmailNotifier(email_target(mode, port), "hall-a").send([alert()])
    assert auth.logins == [] and handler.envelopes == []
    # Trusting the test's certificate as CA: the message goes through, login included.
    await EmailNotifier(email_target(mode, port, ca_file=str(self_signed.cert)),
                        "hall-a").send([alert()])
    assert auth.logins == [b"smtp-secret-pw"] and len(handler.envelopes) == 1


def test_smtp_login_without_tls_is_a_config_error():
    with pytest.raises(ValueError, match="needs starttls = true or smtps = true"):
        EmailTarget(kind="email", sender="a@b.c", recipients=["d@e.f"], username="u")


async def test_https_webhook_verified_by_default_and_opt_out_is_logged(https_sink, self_signed,
                                                                       caplog):
    plain = WebhookTarget(kind="webhook", url=https_sink.url)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await WebhookNotifier(plain, "hall-a").send([alert()])
    assert https_sink.bodies == []
    trusted = WebhookTarget(kind="webhook", url=https_sink.url, ca_file=str(self_signed.cert))
    await WebhookNotifier(trusted, "hall-a").send([alert()])
    lab = WebhookTarget(kind="webhook", url=https_sink.url, tls_verify=False)
    with caplog.at_level(logging.WARNING):
        (notifier,) = build_notifiers([lab], "hall-a", 60)
    assert "TLS certificate verification is OFF" in caplog.text
    await notifier.send([alert()])
    assert len(https_sink.bodies) == 2


async def test_notifier_failures_never_show_the_webhook_secret(caplog):
    secret_url = "http://127.0.0.1:9/services/T0001/B0002/hook-secret-xyz?token=q-secret"
    target = WebhookTarget(kind="webhook", url=secret_url, timeout_s=2,
                           headers={"Authorization": "Bearer header-secret"})
    dispatcher = Dispatcher([WebhookNotifier(target, "hall-a")])
    with caplog.at_level(logging.WARNING):
        await dispatcher.dispatch([alert()], [])
    (name, outcome), = dispatcher.outcomes
    assert outcome == "error" and name == "webhook:http://127.0.0.1:9"
    for secret in ("hook-secret", "q-secret", "header-secret"):
        assert secret not in caplog.text


# -- HTTP API ------------------------------------------------------------------------------

def site_with(service: dict):
    data = tomllib.loads(example_path("single_hall").read_text())
    data["service"] = service
    return parse_site(data, "test.toml")


@pytest.fixture
def secured(monkeypatch, tmp_path):
    """A Runtime on an empty store whose site has a read token, an operator token, a supplier
    token limited to another site, a webhook with a secret URL and an SMTP password."""
    monkeypatch.setenv("DCPUE_TEST_OPERATOR", OPERATOR)
    monkeypatch.setenv("DCPUE_TEST_SMTP_PW", "smtp-secret-pw")
    site = site_with({
        "tokens": [
            {"name": "grafana", "token": READ, "scope": "read"},
            {"name": "noc", "token_env": "DCPUE_TEST_OPERATOR", "scope": "operator"},
            {"name": "supplier", "token": SUPPLIER, "sites": ["hall-b"]},
        ],
        "limits": {"max_body_bytes": 65536, "max_targets": 10, "max_points": 1000},
        "notifiers": [
            {"kind": "webhook", "url": "http://127.0.0.1:9/hook/very-secret-path-123"},
            {"kind": "email", "sender": "a@b.c", "recipients": ["d@e.f"], "username": "u",
             "password_env": "DCPUE_TEST_SMTP_PW", "starttls": True},
        ],
    })
    with Store(tmp_path / "s.duckdb") as store:
        yield Runtime(site, store, lambda: NOW_MS)


def client(runtime, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime.api_sources())),
                             base_url="http://dcpue", headers=headers)


async def test_scoped_tokens(secured):
    async with client(secured) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/")).status_code == 200  # the page holds no data
        assert (await anon.get("/api/pue")).status_code == 401
    async with client(secured, "wrong-token-0123456789") as wrong:
        assert (await wrong.get("/api/pue")).status_code == 401
    async with client(secured, READ) as reader:
        assert (await reader.get("/api/pue")).status_code == 200
        assert (await reader.post("/grafana/search", json={})).status_code == 200
        refused = await reader.post("/api/alerts/hall-a:x/ack", json={})
        assert refused.status_code == 403 and "grafana" in refused.json()["error"]
    async with client(secured, SUPPLIER) as supplier:  # its token is for hall-b only
        assert (await supplier.get("/api/pue")).status_code == 403
    async with client(secured, OPERATOR) as operator:
        assert (await operator.post("/api/alerts/hall-a:x/ack", json={})).status_code != 403


async def test_query_string_token_only_when_enabled(secured):
    async with client(secured) as anon:
        assert (await anon.get(f"/api/pue?access_token={READ}")).status_code == 401
    secured.site.service.query_token = True
    async with client(secured) as anon:
        assert (await anon.get(f"/api/pue?access_token={READ}")).status_code == 200


async def test_request_body_limit_413(secured):
    async with client(secured, READ) as reader:
        resp = await reader.post("/grafana/query", content=b"x" * 70_000,
                                 headers={"content-type": "application/json"})
        assert resp.status_code == 413

        async def chunks():  # no Content-Length: counted as it arrives
            for _ in range(100):
                yield b" " * 10_000

        resp = await reader.post("/grafana/query", content=chunks())
        assert resp.status_code == 413


@pytest.mark.parametrize("body", [
    b'{"range": {"from": Infinity, "to": 1}, "targets": []}',
    b'{"range": {"from": 1e30, "to": 2e30}, "targets": []}',
    b'{"range": {"from": 0, "to": 3600000}, "intervalMs": 1e400, "targets": []}',
    b'{"range": {"from": 0, "to": 3600000}, "intervalMs": NaN, "targets": []}',
    b'[1, 2, 3]', b'"text"', b'{"range": [1]}', b'not json', b'{"range": {"from": "x", "to": 1}}',
    b'[' * 50_000,
])
async def test_grafana_query_bad_bodies_are_400(secured, body):
    async with client(secured, READ) as reader:
        resp = await reader.post("/grafana/query", content=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]


async def test_grafana_query_limits(secured):
    iso = {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
    async with client(secured, READ) as reader:
        resp = await reader.post("/grafana/query", json={
            "range": iso, "intervalMs": 1, "targets": [{"target": "meter:ups-out"}]})
        assert resp.status_code == 400 and "range longer than" in resp.json()["error"]
        resp = await reader.post("/grafana/query", json={
            "range": {"from": 0, "to": 86_400_000 * 3000}, "intervalMs": 1,
            "targets": [{"target": "meter:ups-out"}] * 11})
        assert resp.status_code == 400 and "at most 10" in resp.json()["error"]
        resp = await reader.post("/grafana/query", json={
            "range": {"from": 0, "to": 86_400_000 * 3000}, "intervalMs": 1, "maxDataPoints": 10**9,
            "targets": [{"target": "meter:ups-out"}]})
        assert resp.status_code == 200  # 1 ms asked: capped to 1000 buckets of 3000 d / 1000


async def test_secrets_never_in_api_output_metrics_or_errors(secured, caplog):
    secrets = [READ, OPERATOR, SUPPLIER, "very-secret-path-123", "smtp-secret-pw"]
    with caplog.at_level(logging.DEBUG):
        await secured.dispatcher.dispatch([alert()], [])  # both notifiers fail (nothing there)
        seen = []
        async with client(secured, OPERATOR) as operator:
            for path in ("/api/pue", "/api/alerts", "/api/energy", "/api/proposals",
                         "/metrics", "/openapi.json", "/api/pue/history", "/healthz"):
                seen.append((await operator.get(path)).text)
            seen.append((await operator.post("/grafana/query", content=b"[]")).text)
        async with client(secured, READ + "x") as wrong:
            seen.append((await wrong.get("/api/pue")).text)
    text = "\n".join(seen) + caplog.text
    assert "dcpue_notifications_total" in text and "email:127.0.0.1:25" in text
    for secret in secrets:
        assert secret not in text, secret
    assert "very-secret" not in repr(secured.site) and OPERATOR not in repr(secured.site)


def test_api_binds_to_localhost_by_default():
    assert site_with({}).service.host == "127.0.0.1"


def test_a_heavy_grafana_query_does_not_block_the_event_loop(secured):
    """Queries run in a worker thread: /healthz answers while a query is running."""
    import dataclasses

    real = secured.store.bucketed
    entered = threading.Event()

    def slow(*args, **kwargs):
        entered.set()
        time.sleep(1.5)
        return real(*args, **kwargs)

    secured.store.bucketed = slow  # type: ignore[method-assign]
    port = free_port()
    sources = dataclasses.replace(secured.api_sources())
    server = uvicorn.Server(uvicorn.Config(create_app(sources), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn")
        base = f"http://127.0.0.1:{port}"

        async def both() -> float:
            async with httpx.AsyncClient(base_url=base, timeout=10,
                                         headers={"Authorization": f"Bearer {READ}"}) as c:
                query = asyncio.create_task(c.post("/grafana/query", json={
                    "range": {"from": 0, "to": 3_600_000},
                    "targets": [{"target": "meter:ups-out"}]}))
                await asyncio.to_thread(entered.wait, 10)
                t0 = time.monotonic()
                assert (await c.get("/healthz")).status_code == 200
                took = time.monotonic() - t0
                assert (await query).status_code == 200
                return took

        assert asyncio.run(both()) < 1.0
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_config_error_never_echoes_a_token_value():
    data = tomllib.loads(example_path("single_hall").read_text())
    data["service"] = {"tokens": [{"name": "x", "token": "short-secret", "scope": "root"}]}
    with pytest.raises(ConfigError) as info:
        parse_site(data, "t.toml")
    assert "short-secret" not in str(info.value)

