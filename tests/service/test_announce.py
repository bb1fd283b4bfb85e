"""The daemon publishes proposals on MQTT only when asked, and survives a missing broker."""

from __future__ import annotations

import json

import paho.mqtt.subscribe as subscribe
from dcpue.config import example_path, load_site
from dcpue.optimizer.propose import Proposal
from dcpue.service.plant import announce

from tests.servers import free_port

PROPOSAL = Proposal(
    id="p1", ts_ms=1_688_169_600_000, site="hall-a", status="proposed",
    current={"supply_air_c": 20.0}, proposed={"supply_air_c": 21.0}, reason="test",
    saving_kw=12.5, saving_pct=1.4,
)


async def test_published_retained_on_the_topic_when_enabled(mosquitto):
    site = load_site(example_path("single_hall"))
    broker = site.optimizer.mqtt
    broker.port = mosquitto.port
    assert not await announce(site, PROPOSAL)  # off by default
    broker.publish_proposals = True
    assert await announce(site, PROPOSAL)
    msg = subscribe.simple(broker.proposal_topic, qos=1, hostname="127.0.0.1",
                           port=mosquitto.port, keepalive=5)
    assert msg.retain and json.loads(msg.payload)["saving_kw"] == 12.5


async def test_an_unreachable_broker_is_logged_not_raised(caplog):
    site = load_site(example_path("single_hall"))
    site.optimizer.mqtt.port = free_port()  # nothing listens there
    site.optimizer.mqtt.publish_proposals = True
    assert not await announce(site, PROPOSAL)
    assert "proposal not published" in caplog.text
