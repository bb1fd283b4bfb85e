"""TLS and username/password towards a real Mosquitto that demands both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import aiomqtt
import pytest
from dcpue.collector.gateway_mqtt import publish_readings
from dcpue.collector.service import Collector
from dcpue.core.store import Store

from tests.collector.conftest import wait_until
from tests.collector.helpers import collector_site, once, stored, stream
from tests.servers import Mosquitto, binary


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class SecureMosquitto(Mosquitto):
    """TLS only, no anonymous clients, one user ``meter-gw`` with password ``s3cret``."""

    def command(self) -> list[str]:
        d = self.workdir
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                 "/CN=dcpue test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                 "-keyout", "server.key", "-out", "server.csr", cwd=d)
        (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
                 cwd=d)
        subprocess.run([binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd"), "-b", "-c",
                        str(d / "passwd"), "meter-gw", "s3cret"], check=True)
        conf = d / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n"
            f"allow_anonymous false\npassword_file {d / 'passwd'}\nuser root\n"
        )
        return [binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)]


@pytest.fixture
def secure_broker(tmp_path):
    with SecureMosquitto(tmp_path / "secure-mqtt") as broker:
        yield broker


def secure_site(broker: SecureMosquitto):
    return collector_site(
        broker.port, username="meter-gw", password_env="DCPUE_TEST_MQTT_PASSWORD",
        tls={"enabled": True, "ca_file": str(broker.workdir / "ca.pem")},
    )


async def test_collects_over_tls_with_a_password(secure_broker, monkeypatch):
    monkeypatch.setenv("DCPUE_TEST_MQTT_PASSWORD", "s3cret")
    site = secure_site(secure_broker)
    readings = stream(0, 10)
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "TLS connection")
        await publish_readings(
            site, [readings], "127.0.0.1", secure_broker.port, username="meter-gw",
            password="s3cret",
            tls=aiomqtt.TLSParameters(ca_certs=str(secure_broker.workdir / "ca.pem")),
        )
        await wait_until(lambda: store.count() == len(readings), "readings over TLS")
    assert stored(store) == once(readings)


async def test_wrong_password_is_retried_and_reported(secure_broker, monkeypatch):
    monkeypatch.setenv("DCPUE_TEST_MQTT_PASSWORD", "wrong")
    async with Collector(secure_site(secure_broker), Store()) as collector:
        await wait_until(lambda: collector.mqtt.stats.connection_errors >= 2, "retries")
        assert not collector.stats().mqtt_connected
        assert "authori" in collector.mqtt.stats.last_error.lower()


async def test_optimizer_publishes_proposals_with_credentials_and_verified_tls(
    secure_broker, monkeypatch
):
    """[optimizer.mqtt] with username, password_env and TLS reaches the broker that demands
    them; the same broker without its CA configured is refused (certificate not verified)."""
    import asyncio
    import json

    from dcpue.config.optimizer import MqttBroker
    from dcpue.optimizer.propose import Proposal, publish_proposal

    monkeypatch.setenv("DCPUE_TEST_MQTT_PASSWORD", "s3cret")
    ca = str(secure_broker.workdir / "ca.pem")
    broker = MqttBroker(host="127.0.0.1", port=secure_broker.port, username="meter-gw",
                        password_env="DCPUE_TEST_MQTT_PASSWORD",
                        tls={"enabled": True, "ca_file": ca})
    proposal = Proposal(id="p1", ts_ms=0, site="t", status="proposed", current={}, proposed={},
                        reason="test")
    got: list[dict] = []
    async with aiomqtt.Client("127.0.0.1", secure_broker.port, username="meter-gw",
                              password="s3cret",
                              tls_params=aiomqtt.TLSParameters(ca_certs=ca)) as listener:
        await listener.subscribe("dc/proposal", qos=1)
        await publish_proposal(broker, "dc/proposal", proposal)
        async with asyncio.timeout(10):
            async for message in listener.messages:
                got.append(json.loads(message.payload))
                break
    assert got[0]["id"] == "p1"
    unverified = broker.model_copy(update={"tls": broker.tls.model_copy(update={"ca_file": None})})
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)certificate|verify"):
        await publish_proposal(unverified, "dc/proposal", proposal)


async def test_an_insecure_tls_opt_out_is_logged(caplog):
    from dcpue.collector.mqtt import make_client

    site = collector_site(1883, tls={"enabled": True, "insecure": True})
    with caplog.at_level("WARNING", logger="dcpue.collector.mqtt"):
        make_client(site.collector.mqtt)
    assert "verification is off" in caplog.text
