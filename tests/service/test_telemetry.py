"""/metrics content from a health snapshot, parsed with the Prometheus text-format parser."""

from dcpue.collector.modbus import DeviceStatus
from dcpue.service.telemetry import HealthSnapshot, Telemetry
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

NOW = 1_700_000_000_000


def scrape(snapshot: HealthSnapshot) -> dict[str, dict[tuple, float]]:
    text = generate_latest(Telemetry(lambda: snapshot).registry).decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_modbus_device_health_and_meter_age_are_exposed():
    snapshot = HealthSnapshot(
        now_ms=NOW,
        last_seen_ms={"ups-out": NOW - 90_000},
        dead_letters={"nan": 3},
        modbus=(
            DeviceStatus("pdu-gw", "pdu-gw@127.0.0.1:1502/1", "ok", polls_ok=12, polls_failed=1),
            DeviceStatus("chiller-plc", "chiller-plc@127.0.0.1:1503/1", "failing",
                         consecutive_failures=4, polls_failed=4),
        ),
    )
    m = scrape(snapshot)
    assert m["dcpue_meter_last_reading_age_seconds"][(("meter", "ups-out"),)] == 90.0
    assert m["dcpue_dead_letters_total"][(("reason", "nan"),)] == 3
    assert m["dcpue_modbus_device_up"] == {
        (("device", "pdu-gw"),): 1.0, (("device", "chiller-plc"),): 0.0,
    }
    assert m["dcpue_modbus_consecutive_failures"][(("device", "chiller-plc"),)] == 4
    assert m["dcpue_modbus_polls_total"][(("device", "pdu-gw"), ("outcome", "failed"))] == 1
