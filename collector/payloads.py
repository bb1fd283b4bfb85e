"""Payload decoding: JSON bytes -> normalised readings plus dead letters (pure, no I/O).

One decoder per subscription. Every item is validated on its own, so one bad item never
drops the valid readings beside it; a payload that cannot be read at all (too large, not
JSON, nested too deeply, wrong shape) becomes one dead letter holding its raw bytes. No
exception escapes :meth:`PayloadDecoder.decode`, whatever the bytes.

JSON edge cases: ``NaN``/``Infinity`` parse and are refused per item (``nan``); a duplicate
key keeps its last value (as JavaScript's ``JSON.parse``; RFC 8259 leaves it open); integers
longer than Python's 4,300-digit conversion limit are read as floats (then refused as out of
range); invalid UTF-8 refuses the payload (``bad_json``).

Readings stamped with the receive time get distinct timestamps per (meter, quantity): a burst
delivered within one millisecond is spread over consecutive milliseconds (the meter index's
:class:`~dcpue.collector.normalise.ReceiveClock`), while device-stamped readings keep their
time, so a replay of one stays idempotent in the store.

Dead-letter reasons added here (besides those of :func:`dcpue.collector.normalise.normalise`):
``oversized``, ``bad_json``, ``too_deep``, ``bad_shape``, ``missing_field``, ``path_not_found``,
``internal_error``.
"""

from __future__ import annotations

import contextlib
import json
import json.scanner
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from operator import itemgetter
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from dcpue.collector.normalise import (
    LocalTimes,
    MeterIndex,
    Rejected,
    normalise,
    normalise_columns,
    parse_timestamp,
)
from dcpue.config.collector import PayloadFormat, Subscription
from dcpue.core.jsonpath import Step, compile_path, resolve
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import DeadLetter

log = logging.getLogger(__name__)

#: Bytes of an oversized payload kept in its dead letter (the rest is dropped).
OVERSIZED_KEEP_BYTES = 4096
#: Bytes of one item kept in its dead letter.
ITEM_KEEP_BYTES = 4096
#: Characters of a dead letter's detail.
DETAIL_KEEP_CHARS = 500

Decoded = tuple[list[Reading], list[DeadLetter]]
_METER, _VALUE, _TS, _UNIT = (itemgetter(k) for k in ("meter", "value", "ts", "unit"))
_NUMBER_TYPES = frozenset({float, int})
_UNIT_TYPES = frozenset({str, type(None)})
#: Items from which :meth:`PayloadDecoder.decode_any` decodes a clean batch into columns (below,
#: NumPy's per-call overhead, about 0.1 ms, costs more than one Reading per item).
COLUMNAR_MIN_ITEMS = 128
#: Epoch numbers below this are seconds (as :func:`~dcpue.collector.normalise.parse_timestamp`).
_MS_THRESHOLD = 10_000_000_000


def _raw(item: object) -> bytes:
    try:
        data = json.dumps(item, separators=(",", ":"), default=repr).encode(errors="replace")
    except (RecursionError, ValueError):
        data = repr(type(item)).encode()
    return data[:ITEM_KEEP_BYTES]


def load_json(payload: bytes) -> object:
    """Parse JSON bytes; integers beyond the digit limit become floats.

    Raises:
        Rejected: ``bad_json`` (not JSON, not UTF-8) or ``too_deep`` (nesting beyond the
        interpreter's recursion limit, about 1,000 levels).
    """
    try:
        try:
            return json.loads(payload)
        except ValueError as exc:
            if "integer string conversion" not in str(exc):
                raise
            return json.loads(payload, parse_int=float)
    except RecursionError:
        raise Rejected("too_deep", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected("bad_json", str(exc)[:DETAIL_KEEP_CHARS]) from None


#: The C scanner behind json.loads (same defaults: NaN and Infinity read, strict strings).
_scan_json = json.scanner.make_scanner(json.JSONDecoder())
_JSON_SPACE = " \t\n\r"


def quick_json(payload: bytes) -> object | None:
    """The document of a plain UTF-8 object or array payload, parsed by orjson (about 3x the
    standard library on 500-reading arrays, ``bench/ingest.py``) or else straight by the C
    scanner (NaN, Infinity, lone surrogates, integers past 64 bits, which orjson refuses);
    None wherever :func:`load_json` must decide (other openings, possible UTF-16/32,
    invalid UTF-8, any parse error)."""
    if payload[:1] not in (b"{", b"[") or payload[1:2] == b"\x00":
        return None
    with contextlib.suppress(orjson.JSONDecodeError):
        return orjson.loads(payload)
    try:
        text = payload.decode()
        document, end = _scan_json(text, 0)
    except Exception:  # every refusal and edge case comes from load_json
        return None
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return None
    return document


class PayloadDecoder:
    """Turns the payloads of one subscription into readings and dead letters.

    Args:
        index: the site's meter index (unit conversion, plausibility limits, window).
        subscription: topic settings, including the payload format, gateway paths and zone.
        max_payload_bytes: larger payloads are dead-lettered as ``oversized`` unparsed.
        source: adapter name written into dead letters (``mqtt``).
    """

    def __init__(
        self,
        index: MeterIndex,
        subscription: Subscription,
        max_payload_bytes: int,
        source: str = "mqtt",
    ) -> None:
        self.index = index
        self.max_payload_bytes = max_payload_bytes
        self.source = source
        zone = ZoneInfo(subscription.timezone) if subscription.timezone else index.zone
        self.local = LocalTimes(zone)
        self.paths: list[tuple[str, str, tuple[Step, ...], str | None]] = [
            (meter, path, compile_path(path), subscription.units.get(meter))
            for meter, path in subscription.paths.items()
        ]
        self.ts_steps = compile_path(subscription.ts_path) if subscription.ts_path else None
        self._shape: Callable[[object, str, int, Decoded], None] = {
            PayloadFormat.READING: self._reading,
            PayloadFormat.BATCH: self._batch,
            PayloadFormat.GATEWAY: self._gateway,
        }[subscription.format]

    def decode(self, payload: bytes, origin: str, received_ms: int) -> Decoded:
        """Decode one payload received on ``origin`` (topic) at ``received_ms`` (UTC ms).

        Readings without a device timestamp get ``received_ms`` (made distinct per meter by
        the receive clock). Never raises.
        """
        readings, letters = self._decode(payload, origin, received_ms, None)
        assert isinstance(readings, list)
        return readings, letters

    def decode_columns(
        self, payload: bytes, origin: str, received_ms: int
    ) -> tuple[ReadingColumns, list[DeadLetter]]:
        """:meth:`decode` into columns: a clean batch goes straight into NumPy arrays.

        A batch (array, or ``{"readings": [...]}``) whose items all have a string ``meter``, a
        numeric ``value``, an integer epoch ``ts`` (or a top-level one) and a string or no
        ``unit`` is validated by :func:`normalise_columns` without a :class:`Reading` per
        item; meter ids come out interned. Any other payload takes the per-item path of
        :meth:`decode`, with the same readings and dead letters. Never raises.
        """
        readings, letters = self._decode(payload, origin, received_ms, 1)
        if isinstance(readings, list):
            readings = ReadingColumns.from_readings(readings)
        return readings, letters

    def decode_any(
        self, payload: bytes, origin: str, received_ms: int
    ) -> tuple[list[Reading] | ReadingColumns, list[DeadLetter]]:
        """What a source hands the pipeline: columns for a clean batch of at least
        :data:`COLUMNAR_MIN_ITEMS` items, else the per-item list (cheaper for small payloads).
        """
        return self._decode(payload, origin, received_ms, COLUMNAR_MIN_ITEMS)

    def decode_many(
        self, payloads: list[bytes], origin: str, received_ms: int
    ) -> tuple[list[list[Reading] | ReadingColumns], list[DeadLetter]]:
        """:meth:`decode_any` of many payloads received together on ``origin``: the same
        readings and dead letters, but the single readings (``reading``) and the small
        arrays without a top-level ``ts`` (``batch``) of all the payloads are validated as
        one batch, in columns when clean and large enough (a large array goes into columns
        on its own: merging large ones measured slower). Returns chunks of readings and the
        dead letters. Never raises."""
        if len(payloads) == 1:
            readings, letters = self.decode_any(payloads[0], origin, received_ms)
            return [readings], letters
        out: Decoded = ([], [])
        chunks: list[list[Reading] | ReadingColumns] = [out[0]]
        single, batch = self._shape == self._reading, self._shape == self._batch
        parts: list[list[object]] = []  # items to validate together, per payload
        for payload in payloads:
            oversized = len(payload) > self.max_payload_bytes
            document = None if oversized else quick_json(payload)
            if single and type(document) is dict:  # the hot case, no guard needed
                parts.append([document])
                continue
            if oversized:
                out[1].extend(self.decode(payload, origin, received_ms)[1])
                continue
            with self._guard(out, origin, received_ms, payload):
                if document is None:
                    document = load_json(payload)
                if single and type(document) is dict:
                    parts.append([document])
                    continue
                items = document
                if (batch and type(document) is dict and document.get("ts") is None
                        and type(document.get("readings")) is list):
                    items = document["readings"]
                if not (batch and type(items) is list):
                    if not (batch and self._emit_columns(document, origin, received_ms, chunks, out)):
                        self._shape(document, origin, received_ms, out)
                elif len(items) < COLUMNAR_MIN_ITEMS or not self._emit_columns(
                        items, origin, received_ms, chunks, out):
                    parts.append(items)
        merged = [item for part in parts for item in part]
        if not self._emit_columns(merged, origin, received_ms, chunks, out):
            for part in parts:  # not clean as a whole: payload by payload, as decode_any would
                if len(parts) == 1 or not self._emit_columns(part, origin, received_ms, chunks, out):
                    for item in part:
                        self._item_guarded(item, origin, received_ms, out)
        return chunks, out[1]

    def _emit_columns(
        self, document: object, origin: str, received_ms: int,
        chunks: list[list[Reading] | ReadingColumns], out: Decoded,
    ) -> bool:
        """Decode a clean batch ``document`` into ``chunks`` and ``out``; False where the
        columnar path does not apply (nothing emitted then)."""
        fast = self._columns_guarded(document, origin, received_ms, COLUMNAR_MIN_ITEMS)
        if fast is not None:
            chunks.append(fast[0])
            out[1].extend(fast[1])
        return fast is not None

    def _item_guarded(self, item: object, origin: str, received_ms: int, out: Decoded) -> None:
        try:
            self._item(item, None, origin, received_ms, out)
        except Exception as exc:  # a decoder bug must cost this item only
            log.exception("cannot decode an item on %s", origin)
            self._letter(out, origin, received_ms, "internal_error", repr(exc), _raw(item))

    def _decode(
        self, payload: bytes, origin: str, received_ms: int, columnar_min: int | None
    ) -> tuple[list[Reading] | ReadingColumns, list[DeadLetter]]:
        out: Decoded = ([], [])
        if len(payload) > self.max_payload_bytes:
            self._letter(
                out, origin, received_ms, "oversized",
                f"{len(payload)} bytes > limit {self.max_payload_bytes}",
                payload[:OVERSIZED_KEEP_BYTES],
            )
            return out
        with self._guard(out, origin, received_ms, payload):
            document = load_json(payload)
            if columnar_min is not None and self._shape == self._batch:
                fast = self._columns_guarded(document, origin, received_ms, columnar_min)
                if fast is not None:
                    return fast
            self._shape(document, origin, received_ms, out)
        return out

    @contextlib.contextmanager
    def _guard(
        self, out: Decoded, origin: str, received_ms: int, payload: bytes
    ) -> Iterator[None]:
        """A payload refused (or a decoder bug) becomes its dead letter, nothing else."""
        try:
            yield
        except Rejected as exc:
            self._letter(out, origin, received_ms, exc.reason, exc.detail, payload)
        except Exception as exc:  # a decoder bug must cost this payload only
            log.exception("cannot decode payload on %s", origin)
            self._letter(out, origin, received_ms, "internal_error", repr(exc), payload)

    def _columns_guarded(
        self, document: object, origin: str, received_ms: int, min_items: int
    ) -> tuple[ReadingColumns, list[DeadLetter]] | None:
        try:
            return self._columns(document, origin, received_ms, min_items)
        except Exception:  # whatever the fast path trips on, the per-item path handles
            log.debug("columnar decode fell back on %s", origin, exc_info=True)
            return None

    def _columns(
        self, document: object, origin: str, received_ms: int, min_items: int
    ) -> tuple[ReadingColumns, list[DeadLetter]] | None:
        """The clean-batch fast path; None when it does not apply (then nothing was emitted)."""
        top = None
        if isinstance(document, dict):
            top, document = document.get("ts"), document.get("readings")
            if top is not None and type(top) is not int:
                return None
        if type(document) is not list or len(document) < max(min_items, 1):
            return None
        items = document
        meters = list(map(_METER, items))
        values = list(map(_VALUE, items))
        try:
            stamps = list(map(_TS, items))
        except KeyError:
            stamps = [i.get("ts", top) for i in items]
        try:
            units = list(map(_UNIT, items))
        except KeyError:
            units = [i.get("unit") for i in items]
        if not (
            set(map(type, meters)) == {str}
            and set(map(type, values)) <= _NUMBER_TYPES
            and set(map(type, stamps)) == {int}
            and set(map(type, units)) <= _UNIT_TYPES
        ):
            return None
        ts = np.array(stamps, dtype=np.int64)
        if ts.min() <= 0 or ts.max() >= 10**16:
            return None
        ts = np.where(ts < _MS_THRESHOLD, ts * 1000, ts)
        with np.errstate(over="ignore"):
            value = np.array(values, dtype=np.float64)
        unit = None if set(units) == {None} else np.array(units, dtype=object)
        accepted, rejected = normalise_columns(
            self.index, np.array(meters, dtype=object), value, unit, ts, received_ms)
        letters = [
            DeadLetter(received_ms, self.source, origin, exc.reason,
                       exc.detail[:DETAIL_KEEP_CHARS], _raw(items[row]))
            for row, exc in rejected
        ]
        return accepted, letters

    # -- formats ----------------------------------------------------------------------------
    def _reading(self, document: object, origin: str, received_ms: int, out: Decoded) -> None:
        if not isinstance(document, dict):
            raise Rejected("bad_shape", f"expected a reading object, got {type(document).__name__}")
        self._item(document, None, origin, received_ms, out)

    def _batch(self, document: object, origin: str, received_ms: int, out: Decoded) -> None:
        if isinstance(document, list):
            items, ts_ms = document, None
        elif isinstance(document, dict):
            raw_ts = document.get("ts")
            ts_ms = None if raw_ts is None else parse_timestamp(raw_ts, self.local, origin)
            items = document.get("readings")
            if items is None:
                self._map(document, ts_ms, origin, received_ms, out)
                return
            if not isinstance(items, list):
                raise Rejected("bad_shape", "'readings' is not an array")
        else:
            raise Rejected("bad_shape", f"expected an array or object, got {type(document).__name__}")
        for item in items:
            self._item(item, ts_ms, origin, received_ms, out)

    def _gateway(self, document: object, origin: str, received_ms: int, out: Decoded) -> None:
        ts_ms = None
        if self.ts_steps is not None:
            try:
                ts_ms = parse_timestamp(resolve(document, self.ts_steps), self.local, origin)
            except LookupError:
                raise Rejected("path_not_found", "timestamp path not in payload") from None
        for meter, path, steps, unit in self.paths:
            value = None
            try:
                value = resolve(document, steps)
                out[0].append(self._normalise(meter, value, unit, ts_ms, received_ms))
            except LookupError:
                self._letter(
                    out, origin, received_ms, "path_not_found", f"{meter}: {path} not in payload",
                    _raw({"meter": meter, "path": path}),
                )
            except Rejected as exc:
                self._letter(
                    out, origin, received_ms, exc.reason, exc.detail,
                    _raw({"meter": meter, "path": path, "value": value}),
                )

    # -- items ------------------------------------------------------------------------------
    def _map(
        self, document: dict, ts_ms: int | None, origin: str, received_ms: int, out: Decoded
    ) -> None:
        """``{meter: value | {"value", "unit"?, "ts"?}, "ts"?: ...}``."""
        for meter, value in document.items():
            if meter == "ts":
                continue
            item = dict(value, meter=meter) if isinstance(value, dict) else {
                "meter": meter, "value": value
            }
            self._item(item, ts_ms, origin, received_ms, out)

    def _item(
        self, item: object, ts_ms: int | None, origin: str, received_ms: int, out: Decoded
    ) -> None:
        """One reading object; its own ``ts`` overrides ``ts_ms``. Never raises."""
        try:
            if type(item) is not dict:
                raise Rejected("bad_shape", f"reading is a {type(item).__name__}, not an object")
            try:
                meter = item["meter"]
                value = item["value"]
            except KeyError as exc:
                raise Rejected("missing_field", f"reading has no {exc.args[0]!r}") from None
            ts = item.get("ts")
            if ts is not None:
                ts_ms = parse_timestamp(ts, self.local, origin)
            out[0].append(self._normalise(meter, value, item.get("unit"), ts_ms, received_ms))
        except Rejected as exc:
            self._letter(out, origin, received_ms, exc.reason, exc.detail, _raw(item))

    def _normalise(
        self, meter: object, value: object, unit: object, ts_ms: int | None, received_ms: int
    ) -> Reading:
        """Normalise one value; ``ts_ms`` None means stamped with the receive clock."""
        if ts_ms is not None:
            return normalise(self.index, meter, value, unit, ts_ms, received_ms)
        reading = normalise(self.index, meter, value, unit, received_ms, received_ms)
        ts = self.index.clock.stamp(reading.meter, reading.quantity, received_ms)
        return reading if ts == received_ms else replace(reading, ts_ms=ts)

    def _letter(
        self, out: Decoded, origin: str, received_ms: int, reason: str, detail: str,
        raw: bytes | None,
    ) -> None:
        out[1].append(DeadLetter(
            received_ms, self.source, origin, reason, detail[:DETAIL_KEEP_CHARS], raw
        ))
