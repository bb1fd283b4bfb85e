"""The test servers themselves: they start, answer and restart on the same port."""

import json
import urllib.request

import paho.mqtt.publish as publish
import paho.mqtt.subscribe as subscribe


def test_victoria_accepts_line_protocol_and_exports(victoria):
    body = b"dcpue,site=s,meter=m power=1.5 1700000000000000000\n"
    req = urllib.request.Request(f"{victoria.url}/api/v2/write", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 204
    victoria.flush()
    with urllib.request.urlopen(
        f"{victoria.url}/api/v1/export?match[]={{__name__=~'dcpue.*'}}", timeout=5
    ) as resp:
        rows = [json.loads(line) for line in resp.read().splitlines()]
    assert rows[0]["metric"]["meter"] == "m"
    assert rows[0]["values"] == [1.5]
    assert rows[0]["timestamps"] == [1_700_000_000_000]


def test_mosquitto_round_trip_and_restart(mosquitto):
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port
    publish.single("t/x", b"hi", qos=1, retain=True, hostname="127.0.0.1", port=port)
    msg = subscribe.simple("t/x", qos=1, hostname="127.0.0.1", port=port, keepalive=5)
    assert msg.payload == b"hi"
