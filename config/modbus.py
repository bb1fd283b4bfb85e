"""Modbus TCP polling settings (owned by the Modbus source in dcpue.collector)."""

from dcpue.config.base import Section


class ModbusSettings(Section):
    """Modbus TCP devices, poll groups and register maps; extended by the Modbus source."""
