"""Remote sink: store-and-forward from the local DuckDB store to an InfluxDB-compatible server.

The forwarder reads the store by cursor (``Store.read_since``), encodes InfluxDB line protocol
and writes it with influxdb-client's synchronous write API (``POST /api/v2/write``,
``precision=ms``, gzip) on a worker thread. The cursor advances only after the server
confirmed the write, so while the server or network is down readings accumulate locally and
are replayed in store order when it returns. A replayed line has the same series and
timestamp as the first write, so it overwrites instead of adding (InfluxDB natively;
VictoriaMetrics with ``-dedup.minScrapeInterval=1ms``).

Line protocol (one line per reading)::

    dcpue,meter=<meter id>,role=<meter role>,site=<site id> <quantity>=<value> <ts ms>

``role`` is the meter's configured role, ``metric`` for derived series whose meter id starts
with ``metric.`` (e.g. the PUE calculator's ``metric.pue.1h``), and ``unknown`` otherwise.

TLS: an ``https://`` server's certificate and host name are verified against the system trust
store plus ``ca_file``; ``tls_verify = false`` turns that off and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcpue.collector.backoff import Backoff
from dcpue.config import ConfigError, Site
from dcpue.config.collector import RemoteSettings
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store

if TYPE_CHECKING:  # imported where a remote sink is used (0.3 s the daemon need not spend)
    from influxdb_client import InfluxDBClient

log = logging.getLogger(__name__)

#: HTTP statuses meaning "this batch can never be accepted": it is skipped, not retried.
_POISON_STATUSES = frozenset({400, 422})


def tls_context(settings: RemoteSettings) -> ssl.SSLContext:
    """Client TLS for ``settings.url``: the system trust store plus ``ca_file`` (PEM), host name
    checked (RFC 6125); with ``tls_verify = false`` nothing is verified (logged as a warning)."""
    try:
        ctx = ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"collector.remote.ca_file {settings.ca_file}: {exc}") from None
    if not settings.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if settings.url.startswith("https://"):
            log.warning("remote %s: TLS certificate verification is OFF (tls_verify = false, "
                        "lab setups only)", settings.url)
    return ctx


def _client(settings: RemoteSettings) -> InfluxDBClient:
    from influxdb_client import InfluxDBClient

    return InfluxDBClient(
        url=settings.url, token=settings.token() or "", org=settings.org,
        enable_gzip=settings.gzip, timeout=int(settings.timeout_s * 1000),
        verify_ssl=settings.tls_verify, ssl_context=tls_context(settings),
    )


def describe(exc: BaseException) -> str:
    """One line naming why a write failed; an untrusted TLS certificate says what to set."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if isinstance(e, ssl.SSLCertVerificationError):
            return (f"TLS certificate verify failed: {e.verify_message or e.reason}; set "
                    "collector.remote.ca_file to the CA that signed the server's certificate")
        seen.append(e)
        todo += [x for x in (getattr(e, "reason", None), e.__cause__, e.__context__, *e.args)
                 if isinstance(x, BaseException) and x not in seen]
    return f"{type(exc).__name__}: {exc}"


def _escape(text: str) -> str:
    """Escape a tag key/value or field key for line protocol (backslash, comma, equals, space)."""
    return (
        text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")
    )


def meter_roles(site: Site) -> dict[str, str]:
    """Meter id -> role tag value for the configured meters."""
    return {m.id: str(m.role) for m in site.meters}


class LineEncoder:
    """ReadingColumns -> line protocol text (pure); series prefixes are cached per meter."""

    def __init__(self, site_id: str, roles: Mapping[str, str], measurement: str = "dcpue") -> None:
        self.site_id = site_id
        self.roles = roles
        self.measurement = measurement
        self._prefix: dict[str, str] = {}

    def role(self, meter: str) -> str:
        if meter.startswith("metric."):
            return "metric"
        return self.roles.get(meter, "unknown")

    def _series(self, meter: str) -> str:
        prefix = self._prefix.get(meter)
        if prefix is None:
            prefix = (
                f"{self.measurement},meter={_escape(meter)},role={_escape(self.role(meter))},"
                f"site={_escape(self.site_id)} "
            )
            self._prefix[meter] = prefix
        return prefix

    def encode(self, cols: ReadingColumns) -> tuple[str, int]:
        """Lines for ``cols`` and how many non-finite values were left out.

        Values use Python's shortest round-trip float repr, so they arrive digit-exact.
        """
        lines: list[str] = []
        skipped = 0
        series = self._series
        for ts, meter, quantity, value in zip(
            cols.ts_ms.tolist(), cols.meter, cols.quantity, cols.value.tolist(), strict=True
        ):
            if not math.isfinite(value):
                skipped += 1
                continue
            lines.append(f"{series(meter)}{_escape(quantity)}={value!r} {ts}")
        return "\n".join(lines), skipped


@dataclass(slots=True)
class ForwarderStats:
    """Remote-sink counters since start."""

    written: int = 0
    #: Readings left out: non-finite values and batches the server refused as malformed.
    skipped: int = 0
    errors: int = 0
    last_error: str = ""
    #: Readings in the local store not yet confirmed by the remote (refreshed each pass).
    backlog: int = 0


class Forwarder:
    """Replays the local store to the remote server in store order, advancing a cursor."""

    def __init__(self, store: Store, site: Site, settings: RemoteSettings) -> None:
        if not settings.url:
            raise ValueError("collector.remote.url is empty: no remote sink configured")
        self.store = store
        self.settings = settings
        self.encoder = LineEncoder(site.id, meter_roles(site), settings.measurement)
        self.stats = ForwarderStats()
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = _client(settings)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()

    def backlog(self) -> int:
        """Readings stored locally but not yet confirmed by the remote server."""
        return self.store.backlog(self.store.get_cursor(self.settings.cursor))

    def wake(self) -> None:
        """New readings were committed: push now instead of at the next interval."""
        self._wake.set()

    def push_once(self) -> int:
        """Send the next batch (blocking); returns readings confirmed or skipped, 0 when idle.

        Raises the client's error when the write was not confirmed; the cursor stays put.
        """
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        cursor = self.store.get_cursor(self.settings.cursor)
        cols, last_seq = self.store.read_since(cursor, self.settings.batch_size)
        if len(cols) == 0:
            return 0
        body, skipped = self.encoder.encode(cols)
        try:
            if body:
                self._write_api.write(
                    bucket=self.settings.bucket, org=self.settings.org,
                    record=body, write_precision=WritePrecision.MS,
                )
        except ApiException as exc:
            if exc.status not in _POISON_STATUSES:
                raise
            log.error(
                "remote: server refused %d readings (seq %d..%d) as malformed: HTTP %s %s",
                len(cols), cursor + 1, last_seq, exc.status, (exc.body or "")[:200],
            )
            skipped = len(cols)
        # counted before the cursor moves: whoever sees the backlog empty sees the count
        self.stats.written += len(cols) - skipped
        self.stats.skipped += skipped
        self.store.set_cursor(self.settings.cursor, last_seq)
        return len(cols)

    async def drain(self, on_error: Callable[[Exception], None] | None = None) -> None:
        """Push until the backlog is empty, :meth:`stop` is called, or a write fails.

        A failure is reported to ``on_error`` (or raised when it is None).
        """
        while not self._stop.is_set():
            try:
                sent = await asyncio.to_thread(self.push_once)
            except Exception as exc:
                self.stats.errors += 1
                self.stats.last_error = describe(exc)[:500]
                if on_error is None:
                    raise
                on_error(exc)
                return
            if sent == 0:
                return

    async def run(self) -> None:
        """Forward until :meth:`stop`: drain, wait for new readings or the interval, back off on errors."""
        backoff = Backoff(self.settings.retry_min_s, self.settings.retry_max_s)
        failed: list[Exception] = []
        while not self._stop.is_set():
            failed.clear()
            self._wake.clear()
            await self.drain(failed.append)
            self.stats.backlog = await asyncio.to_thread(self.backlog)
            if failed:
                delay = backoff.next()
                log.warning(
                    "remote: %s unreachable (%s); %d readings kept locally, retry in %.1f s",
                    self.settings.url, self.stats.last_error, self.stats.backlog, delay,
                )
                event = self._stop
            else:
                backoff.reset()
                delay, event = self.settings.interval_s, self._wake
            with contextlib.suppress(TimeoutError):  # not wait_for: see collector/mqtt.py
                async with asyncio.timeout(delay):
                    await event.wait()

    def stop(self) -> None:
        """Make :meth:`run` return after the write in flight (bounded by ``timeout_s``)."""
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        self._client.close()


def encode_rows(
    measurement: str, tags: Mapping[str, str], ts_ms: Sequence[int],
    fields: Mapping[str, Sequence[float]],
) -> list[str]:
    """Line protocol, one line per timestamp with every field (non-finite values left out).

    ``tags`` are the same on every line (e.g. ``{"site": "hall-a"}``); values use Python's
    shortest round-trip float repr, so they arrive digit-exact.
    """
    prefix = measurement + "".join(f",{_escape(k)}={_escape(v)}" for k, v in sorted(tags.items()))
    names = [_escape(name) for name in fields]
    columns = [list(map(float, values)) for values in fields.values()]
    lines = []
    for k, ts in enumerate(ts_ms):
        body = ",".join(
            f"{name}={col[k]!r}" for name, col in zip(names, columns, strict=True)
            if math.isfinite(col[k])
        )
        if body:
            lines.append(f"{prefix} {body} {int(ts)}")
    return lines


def write_lines(settings: RemoteSettings, lines: Sequence[str]) -> int:
    """Write line-protocol ``lines`` to ``settings.url`` (``/api/v2/write``, ms precision) in
    batches of ``settings.batch_size``, blocking; returns lines written, raises on failure.

    Re-writing a line with the same series and timestamp overwrites it on InfluxDB; see
    :mod:`dcpue.fleet.publish` for VictoriaMetrics.
    """
    from influxdb_client import WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    with _client(settings) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        for first in range(0, len(lines), settings.batch_size):
            api.write(
                bucket=settings.bucket, org=settings.org,
                record="\n".join(lines[first:first + settings.batch_size]),
                write_precision=WritePrecision.MS,
            )
    return len(lines)
