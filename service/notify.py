"""Notifiers: send alert changes to a webhook, Prometheus Alertmanager, an MQTT topic or e-mail.

Each notifier has one coroutine, :meth:`Notifier.send`, that raises on failure. The
:class:`Dispatcher` sends to every notifier independently, keeps what failed in a bounded retry
queue per notifier (retried at the next dispatch) and counts outcomes for ``/metrics``.

TLS is verified by default (system trust store plus the target's ``ca_file``, host name
checked); ``tls_verify = false`` turns that off for one target and is logged. A notifier's
``name`` (in logs and ``/metrics``) carries scheme, host and port only, and failure messages
are redacted of the target's URL, header values and password.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import smtplib
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiomqtt
import httpx
from dcpue.config.service import (
    AlertmanagerTarget,
    EmailTarget,
    MqttTarget,
    NotifierTarget,
    TlsClient,
    WebhookTarget,
)
from dcpue.service.alerts import Alert

log = logging.getLogger(__name__)
#: Alerts kept per notifier while its receiver is unreachable.
RETRY_QUEUE = 1000


def _iso(ts_ms: float) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _secret(env: str | None) -> str | None:
    return None if env is None else os.environ.get(env)


def tls_context(target: TlsClient) -> ssl.SSLContext:
    """A client context that verifies the peer's certificate and host name (RFC 6125) against
    the system store plus ``ca_file``; with ``tls_verify = false`` it verifies nothing."""
    ctx = ssl.create_default_context(cafile=target.ca_file)
    if not target.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def safe_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no user info, path or query (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret (longest first) replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class Notifier(Protocol):
    """A receiver of alert changes. ``resend_active``: also wants every firing alert each round;
    ``secrets``: strings never to be shown in logs or errors."""

    name: str
    resend_active: bool
    secrets: list[str]

    async def send(self, alerts: Sequence[Alert]) -> None: ...


class WebhookNotifier:
    """POST ``{"version", "site", "status", "alerts": [...]}`` as JSON; 2xx is success."""

    resend_active = False

    def __init__(self, target: WebhookTarget, site_id: str) -> None:
        self.target, self.site_id = target, site_id
        self.name = f"webhook:{safe_url(target.url)}"
        self.headers = dict(target.headers) | {
            k: os.environ.get(env, "") for k, env in target.headers_env.items()}
        parts = urlsplit(target.url)
        self.secrets = [target.url, parts.query, *self.headers.values(),
                        *([parts.path] if len(parts.path) >= 8 else [])]

    async def send(self, alerts: Sequence[Alert]) -> None:
        body = {
            "version": "1",
            "site": self.site_id,
            "status": "firing" if any(a.firing for a in alerts) else "resolved",
            "alerts": [a.to_dict() for a in alerts],
        }
        async with httpx.AsyncClient(timeout=self.target.timeout_s,
                                     verify=tls_context(self.target)) as client:
            resp = await client.post(self.target.url, json=body, headers=self.headers)
            resp.raise_for_status()


class AlertmanagerNotifier:
    """Prometheus Alertmanager API v2: ``POST /api/v2/alerts`` with postable alerts.

    Alertmanager resolves an alert whose ``endsAt`` has passed, so firing alerts are re-sent
    every round with ``endsAt`` = wall-clock now + ``valid_for_s`` (as Prometheus does) and
    resolved ones with their end time. Alertmanager runs on wall-clock time, hence the
    separate ``wall_clock_ms`` even when the daemon runs on simulated time.
    """

    resend_active = True

    def __init__(
        self, target: AlertmanagerTarget, valid_for_s: float, generator_url: str = "",
        wall_clock_ms: Callable[[], float] = lambda: time.time() * 1000,
    ) -> None:
        self.target, self.valid_for_s = target, valid_for_s
        self.generator_url, self.wall_clock_ms = generator_url, wall_clock_ms
        self.name = f"alertmanager:{safe_url(target.url)}"
        self.secrets = [target.url]

    def payload(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        now = self.wall_clock_ms()
        out = []
        for a in alerts:
            ends = now + self.valid_for_s * 1000 if a.firing else min(float(a.ends_ms or 0), now)
            item: dict[str, Any] = {
                "labels": a.labels,
                "annotations": {"summary": a.summary, "alert_id": a.id,
                                "value": "" if a.value is None else f"{a.value:.6g}"},
                "startsAt": _iso(a.starts_ms),
                "endsAt": _iso(ends),
            }
            if self.generator_url:
                item["generatorURL"] = self.generator_url
            out.append(item)
        return out

    async def send(self, alerts: Sequence[Alert]) -> None:
        url = self.target.url.rstrip("/") + "/api/v2/alerts"
        async with httpx.AsyncClient(timeout=self.target.timeout_s,
                                     verify=tls_context(self.target)) as client:
            resp = await client.post(url, json=self.payload(alerts))
            resp.raise_for_status()


class MqttNotifier:
    """Publish each alert as JSON to ``{topic}/{site}/{rule}[/{subject}]`` (retained by default)."""

    resend_active = False

    def __init__(self, target: MqttTarget) -> None:
        self.target = target
        self.name = f"mqtt{'s' if target.tls else ''}:{target.host}:{target.port}/{target.topic}"
        self.secrets = [_secret(target.password_env) or ""]

    def topic(self, alert: Alert) -> str:
        return f"{self.target.topic}/{alert.id.replace(':', '/')}"

    async def send(self, alerts: Sequence[Alert]) -> None:
        t = self.target
        async with aiomqtt.Client(
            t.host, t.port, username=t.username, password=_secret(t.password_env), timeout=10,
            tls_context=tls_context(t) if t.tls else None,
        ) as client:
            for a in alerts:
                await client.publish(
                    self.topic(a), json.dumps(a.to_dict()).encode(), qos=t.qos, retain=t.retain
                )


class EmailNotifier:
    """One plain-text message per round over SMTP (blocking smtplib in a worker thread)."""

    resend_active = False

    def __init__(self, target: EmailTarget, site_id: str) -> None:
        self.target, self.site_id = target, site_id
        self.name = f"email:{target.host}:{target.port}"
        self.secrets = [_secret(target.password_env) or ""]

    def message(self, alerts: Sequence[Alert]) -> EmailMessage:
        msg = EmailMessage()
        if len(alerts) == 1:
            a = alerts[0]
            subject = f"[dcpue] {a.status.upper()}: {a.name} at {self.site_id}"
        else:
            firing = sum(a.firing for a in alerts)
            subject = (f"[dcpue] {firing} firing, {len(alerts) - firing} resolved "
                       f"at {self.site_id}")
        msg["Subject"] = subject
        msg["From"] = self.target.sender
        msg["To"] = ", ".join(self.target.recipients)
        lines = []
        for a in alerts:
            lines += [
                f"{a.status.upper()} [{a.severity}] {a.name}",
                a.summary,
                f"since {_iso(a.starts_ms)}"
                + ("" if a.ends_ms is None else f", resolved {_iso(a.ends_ms)}"),
                f"labels: {', '.join(f'{k}={v}' for k, v in sorted(a.labels.items()))}",
                "",
            ]
        msg.set_content("\n".join(lines))
        return msg

    def _deliver(self, msg: EmailMessage) -> None:
        t = self.target
        if t.smtps:
            smtp = smtplib.SMTP_SSL(t.host, t.port, timeout=t.timeout_s, context=tls_context(t))
        else:
            smtp = smtplib.SMTP(t.host, t.port, timeout=t.timeout_s)
        with smtp:
            if t.starttls:
                smtp.starttls(context=tls_context(t))
            if t.username:
                smtp.login(t.username, _secret(t.password_env) or "")
            smtp.send_message(msg)

    async def send(self, alerts: Sequence[Alert]) -> None:
        await asyncio.to_thread(self._deliver, self.message(alerts))


def build_notifiers(
    targets: Sequence[NotifierTarget], site_id: str, evaluate_every_s: float,
    generator_url: str = "",
) -> list[Notifier]:
    """Notifiers for the configured targets; Alertmanager alerts stay valid 4 rounds."""
    out: list[Notifier] = []
    for t in targets:
        if not t.tls_verify:
            log.warning("notifier %s: TLS certificate verification is OFF (tls_verify = false)",
                        t.kind)
        if isinstance(t, WebhookTarget):
            out.append(WebhookNotifier(t, site_id))
        elif isinstance(t, AlertmanagerTarget):
            out.append(AlertmanagerNotifier(t, 4 * evaluate_every_s, generator_url))
        elif isinstance(t, MqttTarget):
            out.append(MqttNotifier(t))
        else:
            out.append(EmailNotifier(t, site_id))
    return out


class Dispatcher:
    """Sends alert changes to every notifier; failures are queued and retried next round."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)
        self.pending: dict[str, deque[Alert]] = {
            n.name: deque(maxlen=RETRY_QUEUE) for n in self.notifiers
        }
        #: (notifier name, "ok" | "error") -> count of send attempts.
        self.outcomes: Counter[tuple[str, str]] = Counter()

    async def dispatch(self, changes: Sequence[Alert], active: Sequence[Alert]) -> None:
        """Deliver ``changes`` (and ``active`` to notifiers that want them) concurrently."""
        await asyncio.gather(*(self._one(n, changes, active) for n in self.notifiers))

    async def _one(self, n: Notifier, changes: Sequence[Alert], active: Sequence[Alert]) -> None:
        queue = self.pending[n.name]
        queue.extend(changes)
        batch = {a.id: a for a in queue}
        if n.resend_active:
            batch.update({a.id: a for a in active})
        if not batch:
            return
        try:
            await n.send(list(batch.values()))
        except (httpx.HTTPError, aiomqtt.MqttError, smtplib.SMTPException, OSError) as exc:
            self.outcomes[(n.name, "error")] += 1
            log.warning("notifier %s failed (%d alert(s) kept for retry): %s",
                        n.name, len(queue), failure(exc, n.secrets))
            return
        self.outcomes[(n.name, "ok")] += 1
        queue.clear()


def failure(exc: BaseException, secrets: Sequence[str]) -> str:
    """One line on why a send failed, without the target's secrets."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return redact(f"{type(exc).__name__}: {exc}", secrets)
