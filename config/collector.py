"""Collector settings: MQTT, Modbus TCP and remote sinks (owned by dcpue.collector)."""

from dcpue.config.base import Section
from dcpue.config.modbus import ModbusSettings


class CollectorSettings(Section):
    """Where readings come from and where they go; extended by the collector module."""

    modbus: ModbusSettings = ModbusSettings()
