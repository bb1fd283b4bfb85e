"""The pipeline: the :class:`~dcpue.collector.ports.ReadingSink` every source writes into.

Accepted readings (lists of :class:`Reading` or columnar :class:`ReadingColumns`) and dead
letters are buffered in memory and written to the embedded DuckDB store (the durable local
history) in batches, by size or by age, on a worker thread so the event loop keeps receiving.
:meth:`Pipeline.commit` makes everything submitted so far durable; the MQTT source
acknowledges messages only after it returns.

Failures: an error of the store itself (disk full, I/O, closed) keeps the batch in the buffer
for the next attempt. A batch the store refuses for its content is split in halves until the
offending readings are isolated; they become dead letters (``unstorable``) and the rest is
stored, so one poison reading is never retried forever.

Dead letters are capped per (origin, reason) and minute: beyond ``dead_letter_cap`` verbatim
letters, the rest of that minute is folded into one aggregate letter whose ``count`` says how
many it stands for, so a flood neither fills memory and disk nor delays valid readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from dcpue.config.collector import PipelineSettings
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import SYSTEM_ERRORS, DeadLetter, Store

log = logging.getLogger(__name__)

#: Distinct (origin, reason) keys tracked per minute; further origins share the key "*".
_MAX_KEYS = 10_000
#: Verbatim dead letters kept per minute over all keys, as a multiple of the per-key cap.
_TOTAL_CAP_FACTOR = 20


@dataclass(slots=True)
class PipelineStats:
    """Counters since start (for ``/metrics``); readings are counted one by one."""

    #: Valid readings handed to :meth:`Pipeline.submit`.
    readings_in: int = 0
    #: Rows actually added to the store.
    readings_stored: int = 0
    #: Readings already in the store (same meter, quantity, timestamp), e.g. MQTT redeliveries.
    duplicates: int = 0
    #: Dead letters by reason code (every one, including those folded into aggregates).
    dead_letters: Counter[str] = field(default_factory=Counter)
    #: Dead letters not kept verbatim, only counted in an aggregate (over the per-minute cap).
    dead_letters_aggregated: int = 0
    commits: int = 0
    commit_errors: int = 0
    #: Newest stored reading timestamp per meter, UTC epoch ms.
    last_ts_ms: dict[str, int] = field(default_factory=dict)


class DeadLetterBuffer:
    """Dead letters waiting for the store, capped per (origin, reason) and minute."""

    def __init__(self, cap_per_minute: int) -> None:
        self.cap = cap_per_minute
        self._letters: list[DeadLetter] = []
        self._minute = -1
        self._seen: Counter[tuple[str, str]] = Counter()
        self._total = 0
        #: (minute, origin, reason) -> [example letter, letters folded so far, of which not
        #: yet drained]; every drain writes the undrained part as a delta that the store adds
        #: to the minute's one aggregate row, so an acknowledged letter is never only in memory.
        self._folded: dict[tuple[int, str, str], list] = {}

    def __len__(self) -> int:
        """Letters to write (aggregates of the current minute not counted)."""
        return len(self._letters)

    def add(self, letter: DeadLetter) -> bool:
        """Queue ``letter``; False if it was folded into an aggregate instead."""
        minute = letter.received_ms // 60_000
        if minute != self._minute:
            self._minute, self._total = minute, 0
            self._seen.clear()
        key = (letter.origin, letter.reason)
        if key not in self._seen and len(self._seen) >= _MAX_KEYS:
            key = ("*", letter.reason)
        self._seen[key] += letter.count
        if self._seen[key] <= self.cap and self._total < self.cap * _TOTAL_CAP_FACTOR:
            self._total += 1
            self._letters.append(letter)
            return True
        folded = self._folded.get((minute, *key))
        if folded is None:
            self._folded[(minute, *key)] = [letter, letter.count, letter.count]
        else:
            folded[1] += letter.count
            folded[2] += letter.count
        return False

    def drain(self) -> list[DeadLetter]:
        """Letters to write now: the verbatim ones, and each aggregate's letters folded since
        the last drain (a delta with a ``merge_key``: the store adds it to the minute's
        aggregate row)."""
        out, self._letters = self._letters, []
        for key, folded in list(self._folded.items()):
            (minute, origin, reason), (example, n, delta) = key, folded
            if delta:
                out.append(DeadLetter(
                    example.received_ms, example.source, origin, reason,
                    f"{n} dead letters beyond {self.cap} per minute for this origin and reason, "
                    f"aggregated; first: {example.detail}"[:1000],
                    example.raw, delta, merge_key=f"{minute}|{origin}|{reason}",
                ))
                folded[2] = 0
            if minute != self._minute:
                del self._folded[key]
        return out

    def restore(self, letters: list[DeadLetter]) -> None:
        """Put drained letters back (after a failed write), ahead of newer ones, uncapped."""
        self._letters[:0] = letters


class Pipeline:
    """Batches readings and dead letters into :class:`Store`; call from the event-loop thread.

    Use as ``async with Pipeline(store, settings):`` (starts the age-based flusher and the
    store's maintenance, and commits whatever is left on exit), or drive :meth:`commit`.

    Args:
        dead_letter_cap: verbatim dead letters kept per (origin, reason) and minute.
        maintain_every_s: how often :meth:`Store.maintain` (retention, sorting closed months)
            runs while the pipeline runs; None: never.
    """

    def __init__(
        self,
        store: Store,
        settings: PipelineSettings | None = None,
        on_commit: Callable[[], None] | None = None,
        *,
        dead_letter_cap: int = 100,
        maintain_every_s: float | None = 60.0,
    ) -> None:
        self.store = store
        self.settings = settings or PipelineSettings()
        self.stats = PipelineStats()
        self._on_commit = on_commit
        self._chunks: list[Sequence[Reading] | ReadingColumns] = []
        self._buffered = 0
        self._letters = DeadLetterBuffer(dead_letter_cap)
        self._maintain_every_s = maintain_every_s
        self._lock = asyncio.Lock()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._stopping = False

    # -- ReadingSink ------------------------------------------------------------------------
    def submit(self, readings: Sequence[Reading] | ReadingColumns) -> None:
        """Queue normalised readings (a list or columns); never blocks."""
        n = len(readings)
        if not n:
            return
        self._chunks.append(readings)
        self._buffered += n
        self.stats.readings_in += n
        if self._buffered >= self.settings.batch_size:
            self._full.set()

    def reject(self, letter: DeadLetter) -> None:
        """Queue a dead letter and count it by reason; never blocks."""
        self.stats.dead_letters[letter.reason] += letter.count
        if not self._letters.add(letter):
            self.stats.dead_letters_aggregated += letter.count

    def reject_many(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            self.reject(letter)

    # -- durability -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Readings and dead letters not yet written."""
        return self._buffered + len(self._letters)

    async def commit(self) -> int:
        """Write everything submitted before this call, dead letters folded into aggregates
        included; returns rows added.

        Raises what the store raised for itself (disk full, I/O); the batch then stays
        queued for the next commit. A caller cancelled meanwhile still lets the write finish
        and be accounted for (the cancellation is re-raised afterwards), so no batch is ever
        half-known.
        """
        async with self._lock:
            chunks, self._chunks = self._chunks, []
            n, self._buffered = self._buffered, 0
            letters = self._letters.drain()
            if not chunks and not letters:
                return 0
            write = asyncio.ensure_future(asyncio.to_thread(self._write, chunks, letters))
            cancelled = False
            while not write.done():
                try:
                    await asyncio.wait([write])
                except asyncio.CancelledError:
                    cancelled = True
            if write.exception() is not None:
                self._chunks[:0] = chunks
                self._buffered += n
                self._letters.restore(letters)
                self.stats.commit_errors += 1
                raise write.exception()
            added = write.result()
        if self._on_commit is not None and added:
            self._on_commit()
        if cancelled:
            raise asyncio.CancelledError
        return added

    def _write(
        self, chunks: list[Sequence[Reading] | ReadingColumns], letters: list[DeadLetter]
    ) -> int:
        """Store readings, isolating any the store refuses, then the dead letters; count
        them here, right after the append, so the counters move together with the store."""
        cols, poison = _columns(chunks)
        newest = _newest(cols.ts_ms, cols.meter) if len(cols) else {}  # before: no lag after
        added, refused = self._isolate(cols, np.arange(len(cols))) if len(cols) else (0, [])
        if refused:  # recount without the refused readings (their times may be absurd)
            keep = np.ones(len(cols), dtype=bool)
            keep[[i for i, _ in refused]] = False
            newest = _newest(cols.ts_ms[keep], cols.meter[keep]) if keep.any() else {}
        stats = self.stats
        stats.readings_stored += added
        stats.duplicates += len(cols) - added - len(refused)
        last = stats.last_ts_ms
        for meter, ts in newest.items():
            if ts > last.get(meter, -1):
                last[meter] = ts
        now = time.time_ns() // 1_000_000
        poison += [_letter(now, _reading(cols, i), exc) for i, exc in refused]
        for letter in poison:
            stats.dead_letters[letter.reason] += 1
        # Readings first: their append is idempotent, so a retry after a dead-letter failure
        # does not double anything.
        if letters or poison:
            self.store.add_dead_letters(letters + poison)
        stats.commits += 1
        return added

    def _isolate(self, cols: ReadingColumns, idx: np.ndarray) -> tuple[int, list]:
        """Append ``cols[idx]``; on a content error split in halves until the offenders are
        single readings. Returns rows added and [(index, error)] of the refused ones."""
        part = cols if len(idx) == len(cols) else _take(cols, idx)
        try:
            return self.store.append(part), []
        except SYSTEM_ERRORS:
            raise
        except Exception as exc:
            if len(idx) == 1:
                return 0, [(int(idx[0]), exc)]
            half = len(idx) // 2
            a_added, a_bad = self._isolate(cols, idx[:half])
            b_added, b_bad = self._isolate(cols, idx[half:])
            if len(a_bad) + len(b_bad) == len(idx):
                raise  # nothing at all goes in: the store's problem, not the readings'
            return a_added + b_added, a_bad + b_bad

    async def run(self) -> None:
        """Commit when the buffer is full or ``max_age_s`` has passed, until :meth:`stop`."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):  # not wait_for: see MqttSource._ack_loop
                async with asyncio.timeout(self.settings.max_age_s):
                    await self._full.wait()
            self._full.clear()
            try:
                await self.commit()
            except Exception:
                log.exception("pipeline: store write failed; %d items kept for retry", self.pending)

    async def _maintain(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                done = await asyncio.to_thread(self.store.maintain)
            except Exception:
                log.exception("pipeline: store maintenance failed; retried in %.0f s", every_s)
                continue
            if any(done.values()):
                log.info("store maintenance: %s", done)

    def stop(self) -> None:
        """Ask :meth:`run` to return after its current commit (never interrupts a write)."""
        self._stopping = True
        self._full.set()

    async def __aenter__(self) -> Pipeline:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="pipeline")
        if self._maintain_every_s is not None:
            self._maintenance = asyncio.create_task(
                self._maintain(self._maintain_every_s), name="store-maintenance"
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self._task is not None:
            self.stop()
            await self._task
            self._task = None
        await self.commit()


def _columns(
    chunks: list[Sequence[Reading] | ReadingColumns],
) -> tuple[ReadingColumns, list[DeadLetter]]:
    """One columnar batch from submitted chunks (runs of reading lists converted at once);
    readings that cannot be put into columns (e.g. a timestamp beyond int64) become letters."""
    parts: list[ReadingColumns] = []
    letters: list[DeadLetter] = []
    run: list[Reading] = []
    for chunk in [*chunks, None]:
        if chunk is not None and not isinstance(chunk, ReadingColumns):
            run.extend(chunk)
            continue
        if run:
            try:
                parts.append(ReadingColumns.from_readings(run))
            except Exception:
                good = []
                now = time.time_ns() // 1_000_000
                for r in run:
                    try:
                        ReadingColumns.from_readings([r])
                    except Exception as exc:
                        letters.append(_letter(now, r, exc))
                    else:
                        good.append(r)
                parts.append(ReadingColumns.from_readings(good))
            run = []
        if chunk is not None:
            parts.append(chunk)
    return (parts[0] if len(parts) == 1 else ReadingColumns.concat(parts)), letters


def _newest(ts: np.ndarray, meter: np.ndarray) -> dict[str, int]:
    """Newest timestamp per meter."""
    return {str(m): int(t) for m, t in pd.Series(ts).groupby(meter, sort=False).max().items()}


def _take(cols: ReadingColumns, idx: np.ndarray) -> ReadingColumns:
    return ReadingColumns(*(np.asarray(getattr(cols, f))[idx] for f in ReadingColumns.__slots__))


def _reading(cols: ReadingColumns, i: int) -> Reading:
    return Reading(*(
        v.item() if isinstance(v, np.generic) else v
        for v in (cols.ts_ms[i], cols.meter[i], cols.quantity[i], cols.value[i], cols.unit[i])
    ))


def _letter(received_ms: int, r: Reading, exc: BaseException) -> DeadLetter:
    raw = json.dumps(
        {"meter": r.meter, "quantity": r.quantity, "ts": r.ts_ms, "value": r.value,
         "unit": r.unit}, default=repr,
    ).encode()
    return DeadLetter(
        received_ms, "pipeline", str(r.meter), "unstorable",
        f"{type(exc).__name__}: {exc}"[:500], raw,
    )
