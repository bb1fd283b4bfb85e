"""Notifiers against real receivers on 127.0.0.1: Alertmanager, HTTP, Mosquitto, SMTP."""

from __future__ import annotations

import asyncio
import email
import json
import time

import aiomqtt
from dcpue.config.service import AlertmanagerTarget, EmailTarget, MqttTarget, WebhookTarget
from dcpue.service.alerts import Alert
from dcpue.service.notify import (
    AlertmanagerNotifier,
    Dispatcher,
    EmailNotifier,
    MqttNotifier,
    WebhookNotifier,
    build_notifiers,
)

NOW_MS = int(time.time() * 1000)


def drift_alert(ends_ms: int | None = None) -> Alert:
    return Alert(
        id="hall-a:pue_drift", name="PueDrift", severity="warning",
        summary="PUE at hall-a has drifted above what the model expects: 1.420 vs 1.350.",
        labels={"alertname": "PueDrift", "site": "hall-a", "severity": "warning"},
        starts_ms=NOW_MS - 600_000, ends_ms=ends_ms, value=0.07,
    )


async def test_alertmanager_receives_and_resolves(alertmanager):
    notifier = AlertmanagerNotifier(AlertmanagerTarget(kind="alertmanager", url=alertmanager.url),
                                    valid_for_s=240, generator_url="http://127.0.0.1:8080/")
    await notifier.send([drift_alert()])
    held = await asyncio.to_thread(alertmanager.alerts)
    assert len(held) == 1
    got = held[0]
    assert got["labels"] == {"alertname": "PueDrift", "site": "hall-a", "severity": "warning"}
    assert got["status"]["state"] == "active"
    assert got["annotations"]["summary"].startswith("PUE at hall-a has drifted")
    assert got["annotations"]["value"] == "0.07"
    assert got["generatorURL"] == "http://127.0.0.1:8080/"
    await notifier.send([drift_alert(ends_ms=NOW_MS - 1000)])
    assert await asyncio.to_thread(alertmanager.alerts) == []


async def test_webhook_posts_json_and_retries_after_failure(webhook_sink):
    target = WebhookTarget(kind="webhook", url=webhook_sink.url, headers={"X-Site": "hall-a"})
    dispatcher = Dispatcher([WebhookNotifier(target, "hall-a")])
    name = dispatcher.notifiers[0].name
    webhook_sink.status = 503
    await dispatcher.dispatch([drift_alert()], [])
    assert dispatcher.outcomes[(name, "error")] == 1
    assert len(dispatcher.pending[name]) == 1  # kept for the next round
    webhook_sink.status = 200
    await dispatcher.dispatch([], [])
    assert dispatcher.outcomes[(name, "ok")] == 1 and not dispatcher.pending[name]
    body = webhook_sink.bodies[-1]
    assert body["headers"]["X-Site"] == "hall-a"
    assert body["json"]["status"] == "firing" and body["json"]["site"] == "hall-a"
    (sent,) = body["json"]["alerts"]
    assert sent["id"] == "hall-a:pue_drift" and sent["status"] == "firing"
    assert sent["ends_at"] is None and sent["value"] == 0.07


async def test_mqtt_publishes_retained_alert(mosquitto):
    target = MqttTarget(kind="mqtt", port=mosquitto.port, topic="dcpue/alerts")
    notifier = MqttNotifier(target)
    await notifier.send([drift_alert(ends_ms=NOW_MS)])
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe("dcpue/alerts/#", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
    assert str(message.topic) == "dcpue/alerts/hall-a/pue_drift"
    assert message.retain
    payload = json.loads(message.payload)
    assert payload["status"] == "resolved" and payload["name"] == "PueDrift"


async def test_email_over_smtp(smtp_sink):
    handler, port = smtp_sink
    target = EmailTarget(kind="email", port=port, sender="dcpue@hall-a.example",
                         recipients=["ops@example.org", "noc@example.org"])
    stale = Alert("hall-a:stale:ups-out", "MeterStale", "warning", "Meter ups-out is silent.",
                  {"alertname": "MeterStale", "meter": "ups-out"}, NOW_MS)
    await EmailNotifier(target, "hall-a").send([drift_alert(), stale])
    (envelope,) = handler.envelopes
    assert envelope.rcpt_tos == ["ops@example.org", "noc@example.org"]
    msg = email.message_from_bytes(envelope.content)
    assert msg["Subject"] == "[dcpue] 2 firing, 0 resolved at hall-a"
    text = msg.get_payload(decode=True).decode()
    assert "FIRING [warning] PueDrift" in text and "Meter ups-out is silent." in text
    assert "meter=ups-out" in text


async def test_one_failing_notifier_does_not_block_others(webhook_sink):
    targets = [
        AlertmanagerTarget(kind="alertmanager", url="http://127.0.0.1:9", timeout_s=2),
        WebhookTarget(kind="webhook", url=webhook_sink.url),
    ]
    dispatcher = Dispatcher(build_notifiers(targets, "hall-a", 60))
    firing = drift_alert()
    await dispatcher.dispatch([firing], [firing])
    assert [n for (n, outcome) in dispatcher.outcomes if outcome == "error"] == [
        "alertmanager:http://127.0.0.1:9"
    ]
    assert len(webhook_sink.bodies) == 1
