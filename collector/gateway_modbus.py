"""The twin as Modbus hardware: its latest readings served as registers over Modbus TCP.

:class:`RegisterServer` is a real pymodbus TCP server (SimDevice data model) whose holding and
input registers are plain word lists its owner writes; every read copies the current words
into the response, so updates are visible at the next request. :class:`ModbusGateway` lays a
site's meters out on it (one value per meter, in site order, from holding register 0: float64
for counters and power so energy survives bit for bit, float32 for state values) and can emit
the matching ``[collector.modbus]`` block, so ``dcpue simulate --modbus-port N`` and
``dcpue collect`` meet without hand-written register maps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass

from dcpue.collector.modbus_registers import encode
from dcpue.config import MeterKind, Site
from dcpue.config.modbus import (
    REGISTER_WIDTH,
    ModbusDevice,
    ModbusPoint,
    ModbusPollGroup,
    ModbusSettings,
)
from dcpue.core.readings import Reading
from dcpue.core.units import UnitError, canonical_unit, to_canonical
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger(__name__)

#: Read function codes -> register table (3 read holding, 4 read input registers).
_READ_TABLES = {3: "holding", 4: "input"}


class RegisterServer:
    """A read-only Modbus TCP server on ``host:port`` serving two register images.

    ``port=0`` binds a free port, readable from :attr:`port` once started; a restart after
    :meth:`stop` reuses it. Writes from clients are refused (illegal function).
    :attr:`reads` counts the read requests answered.
    """

    def __init__(
        self,
        holding_size: int,
        input_size: int = 1,
        *,
        unit_id: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not (1 <= holding_size <= 65536 and 1 <= input_size <= 65536):
            raise ValueError("register images hold 1 to 65536 words")
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.images: dict[str, list[int]] = {"holding": [0] * holding_size, "input": [0] * input_size}
        self.reads = 0
        self._server: ModbusTcpServer | None = None

    def write(self, table: str, address: int, words: Sequence[int]) -> None:
        """Set ``words`` from ``address`` on in the ``holding`` or ``input`` image."""
        image = self.images[table]
        if address < 0 or address + len(words) > len(image):
            raise IndexError(f"{table} {address}+{len(words)} outside 0..{len(image) - 1}")
        image[address : address + len(words)] = words

    def _device(self) -> SimDevice:
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        holding, inputs = (
            [SimData(0, count=len(self.images[t]), values=0, datatype=DataType.REGISTERS)]
            for t in ("holding", "input")
        )
        return SimDevice(self.unit_id, simdata=(bits, list(bits), holding, inputs), action=self._serve)

    async def _serve(
        self,
        function_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus action hook: fill the response from the image; refuse writes."""
        table = _READ_TABLES.get(function_code)
        if values is not None or table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        self.reads += 1
        first = address - start
        registers[first : first + count] = self.images[table][address : address + count]
        return None

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen on ``host:port``.

        Raises:
            RuntimeError: the address cannot be bound.
        """
        if self._server is not None:
            return
        server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        await server.serve_forever(background=True)
        if self.port == 0:
            self.port = int(server.transport.sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        """Stop listening and drop every client connection."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> RegisterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass(frozen=True, slots=True)
class GatewayPoint:
    """Where one meter's latest value sits: holding register ``address`` as ``type`` in ``unit``."""

    meter: str
    quantity: str
    address: int
    type: str
    unit: str


def gateway_points(site: Site) -> list[GatewayPoint]:
    """The gateway's register map: every site meter in file order from holding register 0."""
    points: list[GatewayPoint] = []
    address = 0
    for meter in site.meters:
        type_ = "float32" if meter.kind is MeterKind.STATE else "float64"
        unit = canonical_unit(meter.quantity)
        points.append(GatewayPoint(meter.id, meter.quantity, address, type_, unit))
        address += REGISTER_WIDTH[type_]
    return points


class ModbusGateway:
    """Serves a site's latest readings as Modbus registers (unit ``unit_id``, holding table).

    Registers hold NaN until a meter's first reading, which the collector refuses as ``nan``.
    """

    def __init__(
        self, site: Site, *, host: str = "127.0.0.1", port: int = 1502, unit_id: int = 1
    ) -> None:
        self.points = gateway_points(site)
        self._by_meter = {p.meter: p for p in self.points}
        last = self.points[-1]
        self.server = RegisterServer(
            last.address + REGISTER_WIDTH[last.type], unit_id=unit_id, host=host, port=port
        )
        for p in self.points:
            self.server.write("holding", p.address, encode(float("nan"), p.type))

    @property
    def port(self) -> int:
        return self.server.port

    def update(self, readings: Sequence[Reading]) -> int:
        """Write each reading's value into its meter's registers; returns how many were written.

        Readings of meters not in the site, or in units unfit for the meter, are skipped; a value
        a float32 cannot hold is served as NaN.
        """
        written = 0
        for reading in readings:
            point = self._by_meter.get(reading.meter)
            if point is None:
                continue
            value = reading.value
            if reading.unit != point.unit:
                try:
                    value = to_canonical(value, reading.unit, point.quantity)
                except UnitError:
                    log.debug("gateway skips %s in %s", reading.meter, reading.unit)
                    continue
            try:
                words = encode(value, point.type)
            except ValueError:
                words = encode(float("nan"), point.type)
            self.server.write("holding", point.address, words)
            written += 1
        return written

    def settings(
        self, *, name: str = "twin", interval_s: float = 10.0, enabled: bool = True
    ) -> ModbusSettings:
        """The ``[collector.modbus]`` settings that poll this gateway every ``interval_s`` s."""
        points = [
            ModbusPoint.model_validate(
                {"meter": p.meter, "address": p.address, "type": p.type, "unit": p.unit}
            )
            for p in self.points
        ]
        device = ModbusDevice(
            name=name,
            host=self.server.host,
            port=self.port,
            unit_id=self.server.unit_id,
            enabled=enabled,
            groups=[ModbusPollGroup(name="all", interval_s=interval_s, points=points)],
        )
        return ModbusSettings(devices=[device])

    def snippet(self, *, name: str = "twin", interval_s: float = 10.0, enabled: bool = True) -> str:
        """:meth:`settings` as TOML to append to the site file."""
        return self.settings(name=name, interval_s=interval_s, enabled=enabled).to_toml()

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> ModbusGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_modbus(
    site: Site,
    port: int,
    updates: AsyncIterable[Sequence[Reading]],
    *,
    host: str = "127.0.0.1",
    unit_id: int = 1,
) -> ModbusGateway:
    """Serve ``updates`` (e.g. one batch per twin step) until the iterable ends.

    The server starts after the first batch is written, so no client sees the NaN placeholders
    of a fresh gateway. Returns the (stopped) gateway.
    """
    gateway = ModbusGateway(site, host=host, port=port, unit_id=unit_id)
    try:
        async for batch in updates:
            gateway.update(batch)
            await gateway.start()
    finally:
        await gateway.stop()
    return gateway
