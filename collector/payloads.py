"""Payload decoding: JSON bytes -> normalised readings plus dead letters (pure, no I/O).

One decoder per subscription. Every item is validated on its own, so one bad item never
drops the valid readings beside it; a payload that cannot be read at all (too large, not
JSON, wrong shape) becomes one dead letter holding its raw bytes.

Dead-letter reasons added here (besides those of :func:`dcpue.collector.normalise.normalise`):
``oversized``, ``bad_json``, ``bad_shape``, ``missing_field``, ``path_not_found``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from dcpue.collector.jsonpath import Step, compile_path, resolve
from dcpue.collector.normalise import MeterIndex, Rejected, normalise, parse_timestamp
from dcpue.config.collector import PayloadFormat, Subscription
from dcpue.core.readings import Reading
from dcpue.core.store import DeadLetter

#: Bytes of an oversized payload kept in its dead letter (the rest is dropped).
OVERSIZED_KEEP_BYTES = 4096

Decoded = tuple[list[Reading], list[DeadLetter]]


def _raw(item: object) -> bytes:
    return json.dumps(item, separators=(",", ":"), default=repr).encode()


class PayloadDecoder:
    """Turns the payloads of one subscription into readings and dead letters.

    Args:
        index: the site's meter index (unit conversion, plausibility limits).
        subscription: topic settings, including the payload format and gateway paths.
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

        Readings without a device timestamp get ``received_ms``.
        """
        out: Decoded = ([], [])
        if len(payload) > self.max_payload_bytes:
            self._letter(
                out, origin, received_ms, "oversized",
                f"{len(payload)} bytes > limit {self.max_payload_bytes}",
                payload[:OVERSIZED_KEEP_BYTES],
            )
            return out
        try:
            document = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            self._letter(out, origin, received_ms, "bad_json", str(exc), payload)
            return out
        try:
            self._shape(document, origin, received_ms, out)
        except Rejected as exc:
            self._letter(out, origin, received_ms, exc.reason, exc.detail, payload)
        return out

    # -- formats ----------------------------------------------------------------------------
    def _reading(self, document: object, origin: str, received_ms: int, out: Decoded) -> None:
        if not isinstance(document, dict):
            raise Rejected("bad_shape", f"expected a reading object, got {type(document).__name__}")
        self._item(document, received_ms, origin, received_ms, out)

    def _batch(self, document: object, origin: str, received_ms: int, out: Decoded) -> None:
        if isinstance(document, list):
            items, ts_ms = document, received_ms
        elif isinstance(document, dict):
            ts_ms = self._top_ts(document.get("ts"), received_ms)
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
        ts_ms = received_ms
        if self.ts_steps is not None:
            try:
                ts_ms = parse_timestamp(resolve(document, self.ts_steps))
            except LookupError:
                raise Rejected("path_not_found", "timestamp path not in payload") from None
        for meter, path, steps, unit in self.paths:
            try:
                value = resolve(document, steps)
                out[0].append(normalise(self.index, meter, value, unit, ts_ms))
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
        self, document: dict, ts_ms: int, origin: str, received_ms: int, out: Decoded
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
        self, item: object, ts_ms: int, origin: str, received_ms: int, out: Decoded
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
            out[0].append(normalise(
                self.index, meter, value, item.get("unit"),
                ts_ms if ts is None else parse_timestamp(ts),
            ))
        except Rejected as exc:
            self._letter(out, origin, received_ms, exc.reason, exc.detail, _raw(item))

    @staticmethod
    def _top_ts(raw: object, received_ms: int) -> int:
        return received_ms if raw is None else parse_timestamp(raw)

    def _letter(
        self, out: Decoded, origin: str, received_ms: int, reason: str, detail: str,
        raw: bytes | None,
    ) -> None:
        out[1].append(DeadLetter(received_ms, self.source, origin, reason, detail, raw))
