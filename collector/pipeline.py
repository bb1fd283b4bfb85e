"""The pipeline: the :class:`~dcpue.collector.ports.ReadingSink` every source writes into.

Accepted readings and dead letters are buffered in memory and written to the embedded DuckDB
store (the durable local history) in batches, by size or by age, on a worker thread so the
event loop keeps receiving. :meth:`Pipeline.commit` makes everything submitted so far durable;
the MQTT source acknowledges messages only after it returns. A failed write keeps the batch
in the buffer for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dcpue.config.collector import PipelineSettings
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import DeadLetter, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PipelineStats:
    """Counters since start (for ``/metrics``); readings are counted one by one."""

    #: Valid readings handed to :meth:`Pipeline.submit`.
    readings_in: int = 0
    #: Rows actually added to the store.
    readings_stored: int = 0
    #: Readings already in the store (same meter, quantity, timestamp), e.g. MQTT redeliveries.
    duplicates: int = 0
    #: Dead letters by reason code.
    dead_letters: Counter[str] = field(default_factory=Counter)
    commits: int = 0
    commit_errors: int = 0
    #: Newest reading timestamp per meter, UTC epoch ms.
    last_ts_ms: dict[str, int] = field(default_factory=dict)


class Pipeline:
    """Batches readings and dead letters into :class:`Store`; call from the event-loop thread.

    Use as ``async with Pipeline(store, settings):`` (starts the age-based flusher and commits
    whatever is left on exit), or drive :meth:`commit` yourself.
    """

    def __init__(
        self,
        store: Store,
        settings: PipelineSettings | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or PipelineSettings()
        self.stats = PipelineStats()
        self._on_commit = on_commit
        self._readings: list[Reading] = []
        self._letters: list[DeadLetter] = []
        self._lock = asyncio.Lock()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- ReadingSink ------------------------------------------------------------------------
    def submit(self, readings: Sequence[Reading]) -> None:
        """Queue normalised readings; never blocks."""
        self._readings.extend(readings)
        self.stats.readings_in += len(readings)
        if len(self._readings) >= self.settings.batch_size:
            self._full.set()

    def reject(self, letter: DeadLetter) -> None:
        """Queue a dead letter and count it by reason; never blocks."""
        self._letters.append(letter)
        self.stats.dead_letters[letter.reason] += 1

    # -- durability -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Readings and dead letters not yet written."""
        return len(self._readings) + len(self._letters)

    async def commit(self) -> int:
        """Write everything submitted before this call; returns rows added.

        Raises what the store raised; the batch then stays queued for the next commit. A
        caller cancelled meanwhile still lets the write finish and be accounted for (the
        cancellation is re-raised afterwards), so no batch is ever half-known.
        """
        async with self._lock:
            readings, self._readings = self._readings, []
            letters, self._letters = self._letters, []
            if not readings and not letters:
                return 0
            write = asyncio.ensure_future(asyncio.to_thread(self._write, readings, letters))
            cancelled = False
            while not write.done():
                try:
                    await asyncio.wait([write])
                except asyncio.CancelledError:
                    cancelled = True
            if write.exception() is not None:
                self._readings[:0] = readings
                self._letters[:0] = letters
                self.stats.commit_errors += 1
                raise write.exception()
            added = write.result()
        self.stats.commits += 1
        self.stats.readings_stored += added
        self.stats.duplicates += len(readings) - added
        if self._on_commit is not None and added:
            self._on_commit()
        if cancelled:
            raise asyncio.CancelledError
        return added

    def _write(self, readings: list[Reading], letters: list[DeadLetter]) -> int:
        # Readings first: their append is idempotent, so a retry after a dead-letter failure
        # does not double anything.
        added = self.store.append(ReadingColumns.from_readings(readings)) if readings else 0
        if letters:
            self.store.add_dead_letters(letters)
        last = self.stats.last_ts_ms
        for r in readings:
            if r.ts_ms > last.get(r.meter, -1):
                last[r.meter] = r.ts_ms
        return added

    async def run(self) -> None:
        """Commit when the buffer is full or ``max_age_s`` has passed, until :meth:`stop`."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.settings.max_age_s)
            self._full.clear()
            try:
                await self.commit()
            except Exception:
                log.exception("pipeline: store write failed; %d items kept for retry", self.pending)

    def stop(self) -> None:
        """Ask :meth:`run` to return after its current commit (never interrupts a write)."""
        self._stopping = True
        self._full.set()

    async def __aenter__(self) -> Pipeline:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="pipeline")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self.stop()
            await self._task
            self._task = None
        await self.commit()
