"""Modbus TCP source: polls the devices of ``[collector.modbus]`` and hands readings to a sink.

One asyncio task and one TCP connection per device, so a device that stops answering only
delays itself. Within a device, poll groups run on a fixed-rate schedule (group ``k``-th poll
due at ``start + k × interval_s``; missed slots are skipped, never bunched). A poll that fails
to connect, times out or loses the connection marks the device ``failing`` and retries it after
a delay drawn uniformly up to ``backoff_initial_s × 2^(n-1)`` seconds (n consecutive failures,
capped at ``backoff_max_s``; full jitter, :class:`dcpue.collector.backoff.Backoff`).
A Modbus exception response (the device answered but refused a read, e.g. illegal address) is
not a communication failure: the affected points become dead letters ``modbus_exception``.

Values are timestamped with the receive time of their response (UTC ms) and pass through
:func:`dcpue.collector.normalise.normalise`; refused ones become dead letters with the raw
register words (big-endian bytes) attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from dcpue.collector.backoff import Backoff
from dcpue.collector.modbus_registers import GroupPlan, PointLayout, plan_group
from dcpue.collector.normalise import MeterIndex, Rejected, normalise
from dcpue.collector.ports import ReadingSink
from dcpue.config import ConfigError, Site
from dcpue.config.modbus import ModbusDevice, ModbusPollGroup, ModbusSettings
from dcpue.core.readings import Reading
from dcpue.core.store import DeadLetter
from dcpue.core.units import UnitError, check_unit
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

log = logging.getLogger(__name__)

SOURCE = "modbus"
DeviceState = Literal["unknown", "ok", "failing"]


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """Health of one device, for logs, Prometheus and the health endpoint.

    While failing, ``retry_in_s`` is the delay drawn before the next attempt and
    ``backoff_ceiling_s`` the bound it was drawn under (doubling per consecutive failure, capped);
    both are 0 while ok. Times are UTC epoch ms or None;
    ``polls_ok``/``polls_failed`` count group polls, ``readings`` accepted readings.
    """

    name: str
    origin: str
    state: DeviceState = "unknown"
    consecutive_failures: int = 0
    retry_in_s: float = 0.0
    backoff_ceiling_s: float = 0.0
    last_error: str | None = None
    last_success_ms: int | None = None
    last_failure_ms: int | None = None
    polls_ok: int = 0
    polls_failed: int = 0
    readings: int = 0
    rejected: int = 0


def next_due(due: float, interval: float, now: float) -> float:
    """Next slot of a fixed-rate schedule after ``due``, skipping slots already past ``now``."""
    nxt = due + interval
    if nxt <= now:
        nxt += interval * (int((now - nxt) // interval) + 1)
    return nxt


def check_points(site: Site, settings: ModbusSettings) -> None:
    """Refuse points naming unknown meters or units that do not fit the meter's quantity.

    Raises:
        ConfigError: one line naming the device, group and point.
    """
    for d, device in enumerate(settings.devices):
        for g, group in enumerate(device.groups):
            for p, point in enumerate(group.points):
                where = f"collector.modbus.devices[{d}].groups[{g}].points[{p}]"
                meter = site.meter_by_id.get(point.meter)
                if meter is None:
                    raise ConfigError(f"{where}: unknown meter {point.meter!r}")
                if point.unit is not None:
                    try:
                        check_unit(point.unit, meter.quantity)
                    except UnitError as exc:
                        raise ConfigError(f"{where}: {exc}") from None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _words_bytes(words: Sequence[int]) -> bytes:
    return struct.pack(f">{len(words)}H", *words)


class _Refused(Exception):
    """The device answered a read with a Modbus exception response."""


#: Failures of the device or the network (anything else is logged with its traceback).
_EXPECTED_FAILURES = (ModbusException, OSError, TimeoutError)


@dataclass(slots=True)
class _Group:
    config: ModbusPollGroup
    plan: GroupPlan


class _DevicePoller:
    """One device: its connection, schedule, backoff and status."""

    def __init__(
        self,
        device: ModbusDevice,
        index: MeterIndex,
        sink: ReadingSink,
        settings: ModbusSettings,
    ) -> None:
        self.device = device
        self.index = index
        self.sink = sink
        self.groups = [
            _Group(g, plan_group(g.points, device.max_registers, device.max_gap))
            for g in device.groups
            if g.points
        ]
        self.status = DeviceStatus(device.name, device.origin)
        self.backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self._client: AsyncModbusTcpClient | None = None

    @property
    def client(self) -> AsyncModbusTcpClient:
        """The device's connection (made in the running loop, so only while :meth:`run` runs)."""
        if self._client is None:
            self._client = AsyncModbusTcpClient(
                self.device.host,
                port=self.device.port,
                timeout=self.device.timeout_s,
                retries=self.device.retries,
                reconnect_delay=0,  # reconnects follow this poller's backoff instead
            )
        return self._client

    async def run(self) -> None:
        """Poll until cancelled."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        due = [start] * len(self.groups)
        try:
            while True:
                await asyncio.sleep(max(0.0, min(due) - loop.time()))
                for i, group in enumerate(self.groups):
                    if due[i] > loop.time():
                        continue
                    if await self._poll_guarded(group):
                        due[i] = next_due(due[i], group.config.interval_s, loop.time())
                    else:
                        resume = loop.time() + self.status.retry_in_s
                        due = [max(d, resume) for d in due]
                        break
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def _poll_guarded(self, group: _Group) -> bool:
        """Poll one group; record success or failure; True when the device answered."""
        try:
            await self._poll(group)
        except Exception as exc:  # a long-running daemon records any failure and keeps polling
            if not isinstance(exc, _EXPECTED_FAILURES):
                log.exception("Modbus device %s: unexpected error", self.device.origin)
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        return True

    async def _read(self, table: str, address: int, count: int) -> list[int]:
        """Registers of one request.

        Raises:
            _Refused: the device answered with a Modbus exception response.
        """
        read = (
            self.client.read_holding_registers
            if table == "holding"
            else self.client.read_input_registers
        )
        response = await read(address, count=count, device_id=self.device.unit_id)
        if response.isError():
            code = getattr(response, "exception_code", None)
            raise _Refused(f"exception code {code} reading {table} {address}+{count}")
        registers = list(response.registers)
        if len(registers) < count:
            raise ModbusIOException(f"short response: {len(registers)} of {count} registers")
        return registers

    async def _poll(self, group: _Group) -> None:
        if not self.client.connected and not await self.client.connect():
            raise ConnectionError(f"cannot connect to {self.device.host}:{self.device.port}")
        blocks: list[list[int]] = []
        refusals: dict[int, str] = {}
        received: list[int] = []
        for index, req in enumerate(group.plan.requests):
            try:
                blocks.append(await self._read(req.table, req.address, req.count))
            except _Refused as exc:
                blocks.append([])
                refusals[index] = str(exc)
            received.append(_now_ms())
        readings: list[Reading] = []
        letters: list[DeadLetter] = []
        for layout in group.plan.layouts:
            outcome = self._reading(layout, blocks, refusals, received[layout.value_at[0]])
            (readings if isinstance(outcome, Reading) else letters).append(outcome)
        if readings:
            self.sink.submit(readings)
        for letter in letters:
            self.sink.reject(letter)
        self._succeeded(len(readings), len(letters))

    def _reading(
        self,
        layout: PointLayout,
        blocks: Sequence[Sequence[int]],
        refusals: dict[int, str],
        ts_ms: int,
    ) -> Reading | DeadLetter:
        point = layout.point
        refused = [refusals[i] for i in layout.requests if i in refusals]
        if refused:
            return DeadLetter(
                ts_ms, SOURCE, self.device.origin, "modbus_exception",
                f"{point.meter}: device answered {refused[0]}",
            )
        try:
            value = layout.value(blocks)
            return normalise(self.index, point.meter, value, point.unit, ts_ms)
        except Rejected as exc:
            return DeadLetter(
                ts_ms, SOURCE, self.device.origin, exc.reason,
                f"{point.table} {point.address} {point.type}: {exc.detail}",
                _words_bytes(layout.words(blocks)),
            )

    def _succeeded(self, accepted: int, rejected: int) -> None:
        if self.status.state == "failing":
            log.info(
                "Modbus device %s answers again after %d failures",
                self.device.origin, self.status.consecutive_failures,
            )
        self.backoff.reset()
        s = self.status
        self.status = replace(
            s, state="ok", consecutive_failures=0, retry_in_s=0.0, backoff_ceiling_s=0.0,
            last_success_ms=_now_ms(),
            polls_ok=s.polls_ok + 1, readings=s.readings + accepted, rejected=s.rejected + rejected,
        )

    def _failed(self, error: str) -> None:
        self.client.close()  # a late answer must not be taken for the next request's
        s = self.status
        ceiling = self.backoff.ceiling()
        delay = self.backoff.next()
        if s.state != "failing":
            log.warning("Modbus device %s failing: %s", self.device.origin, error)
        self.status = replace(
            s, state="failing", consecutive_failures=s.consecutive_failures + 1,
            retry_in_s=delay, backoff_ceiling_s=ceiling,
            last_error=error, last_failure_ms=_now_ms(), polls_failed=s.polls_failed + 1,
        )


class ModbusPoller:
    """Polls every active device of ``site.collector.modbus`` into ``sink``.

    ``run()`` returns at once when no device is enabled with points, so callers may always
    start it; otherwise it polls until :meth:`stop` is called or the task is cancelled.

    Raises:
        ConfigError: a point names an unknown meter or a unit unfit for it.
    """

    def __init__(self, site: Site, sink: ReadingSink) -> None:
        settings = site.collector.modbus
        check_points(site, settings)
        index = MeterIndex(site)
        self._devices = [
            _DevicePoller(d, index, sink, settings) for d in settings.active_devices
        ]
        self._stopping = asyncio.Event()

    @property
    def active(self) -> bool:
        """Whether any device will be polled."""
        return bool(self._devices)

    def status(self) -> list[DeviceStatus]:
        """Current status of every polled device, in configuration order."""
        return [d.status for d in self._devices]

    async def run(self) -> None:
        """Poll all devices concurrently until :meth:`stop`."""
        if not self._devices:
            return
        tasks = [
            asyncio.create_task(d.run(), name=f"modbus {d.device.name}") for d in self._devices
        ]
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def stop(self) -> None:
        """Ask :meth:`run` to return; in-flight requests are abandoned."""
        self._stopping.set()
