"""The long-running daemon: collector, rolling calculator, scheduled jobs, alerts and HTTP API.

One asyncio process. :class:`Runtime` holds the live state of one site and implements the jobs
(write-back, alert evaluation, proposals, retraining, monthly carbon report). Jobs are driven
either by APScheduler's ``AsyncIOScheduler`` on the wall clock, or, in fast-forward, by
:class:`SimScheduler`, which asks the same APScheduler triggers for their fire times on the
simulated clock, so both modes run the same schedule.

Restart safety: readings are only acknowledged (MQTT) after they are durable; the calculator
state (with the store cursor it includes), alert state, next fire times and the twin position
are kept in the store's state table, so a restart restores the calculator and feeds it only
the readings stored since; write-back and report rows are idempotent.

The event loop only routes: every job's store and model work runs in a worker thread
(:meth:`Runtime.run_job`), the live state it shares with the API (calculator, alert engine) is
guarded by :attr:`Runtime.lock`, and the API reads figures memoised by the jobs, so ``/api/*``
answers while a job or a fast-forward chunk is running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import io
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from dcpue.carbon.report import site_report
from dcpue.collector.service import Collector
from dcpue.config.factors import site_hourly_factors
from dcpue.config.service import METER_FIGURE
from dcpue.config.site import Site
from dcpue.core.figures import Figure
from dcpue.core.readings import Reading, ReadingColumns, ms_to_datetime
from dcpue.core.store import Store
from dcpue.fleet.jobs import publish_job
from dcpue.metrics import rollups
from dcpue.metrics.balance import DATA_QUALITY_ERROR, energy_balance
from dcpue.metrics.energy import CounterEvent
from dcpue.metrics.indicators import site_indicator_values, site_indicators
from dcpue.metrics.provenance import stored_window_origins
from dcpue.metrics.rolling import RollingCalculator, Window, figure_keys, value_rows
from dcpue.optimizer.models import PlantModel
from dcpue.optimizer.propose import ProposalLog, describe
from dcpue.optimizer.writeback import Overrides
from dcpue.service import plant, remote_cli
from dcpue.service.actions import AlertActions
from dcpue.service.alerts import Alert, AlertEngine, Observation
from dcpue.service.api import ApiSources, create_app
from dcpue.service.notify import Dispatcher, build_notifiers
from dcpue.service.remote_cli import bearer_token
from dcpue.service.telemetry import HealthSnapshot, Telemetry
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_MS = 86_400_000
#: Readings read per call when feeding the calculator from the store.
INGEST_BATCH = 200_000
#: How long cached carbon figures stay valid, in ms of the daemon's clock.
CARBON_TTL_MS = 15 * 60_000
STATE_ALERTS = "service.alerts"
STATE_SCHEDULE = "service.schedule"
STATE_CALCULATOR = "service.calculator"
#: Least wall time between two saves of the calculator state in real time (s).
CALCULATOR_SAVE_S = 900.0
#: With ``hold_future``, readings up to this far past the clock are fed at once: one
#: calculator update per simulated hour. It must stay below the slack of the calculator's
#: 1-minute ring (one hour beyond its longest minute window) so no window ending at the clock
#: loses buckets.
FEED_AHEAD_MS = 59 * 60_000
#: Most window ends whose values one pass of the calculator's array form computes ahead.
VALUE_BLOCK = 60
#: Longest wait (s) of an API read for the calculator before it takes the last snapshot.
FIGURES_WAIT_S = 0.02
#: Least wall time between two reads of the dead-letter counts for /metrics (s).
DEAD_LETTER_REFRESH_S = 10.0
#: How long a proposals job waits for the first plant model's fit (s); it skips after that.
FIT_WAIT_S = 600.0
#: Ingest lag (s) past which /healthz says degraded and the IngestLag alert may fire.
INGEST_LAG_DEGRADED_S = 300.0

Clock = Callable[[], int]


def dead_letters_now(
    stored: Mapping[str, int], live: Mapping[str, int], live_at_read: Mapping[str, int]
) -> dict[str, int]:
    """Dead letters by reason: the store's counts at their last read (every source, earlier
    runs included) plus what the running collector has counted since that read, so a flood
    shows on /metrics at once instead of at the next read. Letters the collector had counted
    but not yet written at the read are missed until the next read: never counted twice."""
    counts = dict(stored)
    for reason, n in live.items():
        since = n - live_at_read.get(reason, 0)
        if since > 0:
            counts[reason] = counts.get(reason, 0) + since
    return counts


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class StartupError(RuntimeError):
    """The daemon cannot start for a reason the operator can fix (printed as one line)."""


def job_triggers(site: Site) -> dict[str, BaseTrigger]:
    """The daemon's jobs and when they run (intervals aligned to the Unix epoch, i.e. whole
    minutes; daily and monthly jobs in the site's time zone)."""
    s, zone = site.service.schedule, ZoneInfo(site.timezone)
    return {
        "write_back": IntervalTrigger(seconds=s.write_back_every_s, start_date=EPOCH),
        "alerts": IntervalTrigger(seconds=site.service.alerts.evaluate_every_s, start_date=EPOCH),
        "proposals": IntervalTrigger(minutes=s.proposals_every_min, start_date=EPOCH),
        "retrain": CronTrigger(hour=s.retrain_at_hour, minute=0, timezone=zone),
        "report": CronTrigger(day=s.report_day_of_month, hour=0, minute=30, timezone=zone),
        # hourly energy rollups (long windows, reports) follow every stored reading
        "rollups": IntervalTrigger(hours=1, start_date=EPOCH),
        # hourly boundary terms for the fleet report, to the remote sink (docs/fleet.md)
        **({"fleet_publish": IntervalTrigger(hours=1, start_date=EPOCH)}
           if site.collector.remote.url else {}),
    }


class SimScheduler:
    """Runs jobs at their trigger times on a simulated clock, in time order.

    ``next_fire`` (job -> UTC ms) is the persisted position; jobs missing from it start at their
    first fire time after ``start_ms``.
    """

    def __init__(
        self, triggers: dict[str, BaseTrigger], run: Callable[[str, int], Awaitable[None]],
        start_ms: int, next_fire: dict[str, int] | None = None,
    ) -> None:
        self.triggers, self.run = triggers, run
        start = ms_to_datetime(start_ms)
        saved = next_fire or {}
        self.next_fire: dict[str, int] = {}
        for name, trigger in triggers.items():
            first = trigger.get_next_fire_time(None, start)
            self.next_fire[name] = saved.get(name, _ms(first))

    @property
    def triggers(self) -> dict[str, BaseTrigger]:
        return self._triggers

    @triggers.setter
    def triggers(self, triggers: dict[str, BaseTrigger]) -> None:
        self._triggers = triggers
        #: fixed intervals (ms) of plain interval triggers: their next fire time is the last
        #: plus the interval, without the trigger's date arithmetic every simulated minute
        self._interval_ms = {
            name: int(t.interval.total_seconds() * 1000) for name, t in triggers.items()
            if isinstance(t, IntervalTrigger) and t.jitter is None and t.end_date is None}

    def due(self, until_ms: int) -> Iterator[tuple[str, int]]:
        """Yield (job, fire time) of every run due at or before ``until_ms``, in time order,
        advancing each job's next fire time as it goes."""
        while True:
            name = min(self.next_fire, key=lambda n: (self.next_fire[n], n))
            fire = self.next_fire[name]
            if fire > until_ms:
                return
            yield name, fire
            step = self._interval_ms.get(name)
            if step is None:
                at = ms_to_datetime(fire)
                self.next_fire[name] = _ms(self.triggers[name].get_next_fire_time(at, at))
            else:
                self.next_fire[name] = fire + step

    async def advance(self, until_ms: int) -> int:
        """Run every job due at or before ``until_ms``; returns how many runs were made."""
        runs = 0
        for name, fire in self.due(until_ms):
            await self.run(name, fire)
            runs += 1
        return runs


def _ms(moment: datetime | None) -> int:
    return 2**62 if moment is None else int(moment.timestamp() * 1000)


@dataclass
class _CarbonCache:
    window: tuple[int, int] | None = None
    figures: dict[str, Figure] | None = None
    computed_ms: int = 0


@dataclass(frozen=True, slots=True)
class _Block:
    """Window ends ``first`` to ``last`` (UTC ms, final when computed) and what was computed
    for them (``payload``), valid while the calculator's recompute count is ``recomputed``."""

    recomputed: int
    first: int
    last: int
    payload: tuple[Any, ...]


class MemoCalculator(RollingCalculator):
    """The rolling calculator with its snapshot memoised for the daemon's jobs and API.

    A window's figures are recomputed only when its (start, end) moved, late readings made the
    calculator recompute a meter, or, while some balance meter has not yet reported past the
    window's end, when new readings were fed; so the 7 d, 30 d and 12-month figures are
    computed once an hour, not once a minute.
    """

    def __init__(
        self, site: Site, store: Store | None = None, clock: Clock | None = None
    ) -> None:
        super().__init__(site, store, clock)
        self.version = 0
        self._memo: tuple[tuple[int | None, int], dict[str, Figure]] | None = None
        self._final: dict[str, tuple[tuple[int, int, int], dict[str, Figure]]] = {}
        #: per window, blocks of final ends (:meth:`_final_block`): the figures' keys and
        #: their values at each end; where a window's origin is read from the store, the
        #: origins of those ends and the values built per end index so far
        self._blocks: dict[str, _Block] = {}
        self._origin_blocks: dict[str, _Block] = {}

    @property
    def latest(self) -> dict[str, Figure] | None:
        """The newest snapshot computed (None before any); safe to read without the lock."""
        memo = self._memo
        return None if memo is None else memo[1]

    def update(
        self, readings: Sequence[Reading] | ReadingColumns, now_ms: int | None = None
    ) -> int:
        used = super().update(readings, now_ms)
        if used:
            self.version += 1
        return used

    def snapshot(self, now_ms: int | None = None) -> dict[str, Figure]:
        """The figures at ``now_ms`` (memoised)."""
        key = (now_ms, self.version)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        reported = int(self._last_ts.min())
        now = self._now(now_ms)
        out: dict[str, Figure] = {}
        for w in self._windows:
            end = w.end_at(now)
            span = (end - w.length_ms, end, self.recomputed)  # a recompute (late data) too
            hit = self._final.get(w.name)
            if hit is not None and hit[0] == span:
                figures = hit[1]
            else:
                balance = self.balance(w.name, now_ms)
                figures = site_indicators(self.site, balance, self.origin(balance))
                if reported >= end:  # every meter is past the window: final
                    self._final[w.name] = (span, figures)
            out.update({f"{metric}.{w.name}": fig for metric, fig in figures.items()})
        self._memo = (key, out)
        return out

    def _final_block(
        self, blocks: dict[str, _Block], w: Window, end_ms: int,
        compute: Callable[[np.ndarray], tuple[Any, ...]],
    ) -> tuple[_Block, int] | None:
        """The block of final window ends holding ``end_ms`` in ``blocks`` and its index
        there, None when ``end_ms`` is not final (a meter has not reported past it). A missing
        block covers the ends from ``end_ms`` up to the slowest meter's newest reading (at
        most :data:`VALUE_BLOCK`), its payload ``compute(ends)``; a block's ends stay final
        (newest readings only advance), a recompute (late data) or a restore discards it."""
        step, hit = w.ring.step_ms, blocks.get(w.name)
        if (hit is None or hit.recomputed != self.recomputed
                or not hit.first <= end_ms <= hit.last or (end_ms - hit.first) % step):
            reported = int(self._last_ts.min())
            if reported < end_ms:
                return None
            last = min(reported // step * step, end_ms + (VALUE_BLOCK - 1) * step)
            ends = np.arange(end_ms, last + 1, step, dtype=np.int64)
            hit = blocks[w.name] = _Block(self.recomputed, end_ms, last, compute(ends))
        return hit, (end_ms - hit.first) // step

    def _figure_values(
        self, w: Window, end_ms: int, now_ms: int | None
    ) -> dict[str, float | None]:
        """Where a window's origin is read from the store (a battery's provenance ledger,
        hourly factors): for final ends, the origins of a block of ends from one read of the
        bus meters (:func:`dcpue.metrics.provenance.stored_window_origins`), each end's
        figures from its balance and origin once; otherwise the memoised snapshot's."""
        if self.origin_free:
            return super()._figure_values(w, end_ms, now_ms)
        found = self._final_block(self._origin_blocks, w, end_ms, lambda ends: (
            stored_window_origins(self.site, self._source,
                                  [(int(e) - w.length_ms, int(e)) for e in ends],
                                  site_hourly_factors(self.site)), {}))
        if found is None:  # not final: the memoised snapshot's
            suffix = f".{w.name}"
            return {k: f.value for k, f in self.snapshot(now_ms).items() if k.endswith(suffix)}
        (origins, done), i = found[0].payload, found[1]
        if i not in done:  # a final end: the balance at now_ms is the balance at end_ms
            b = self.balance(w.name, end_ms)
            figures = site_indicators(self.site, b, None if origins is None else origins[i])
            done[i] = {f"{name}.{w.name}": f.value for name, f in figures.items()}
        return done[i]

    def _window_values(self, window: str, end_ms: int) -> dict[str, float | None]:
        """The values at ``end_ms`` from a block of final window ends (:meth:`_final_block`)
        computed in one :meth:`balances` pass, which serves the next calls (the write-back
        and the alert evaluation every minute); a window end not final alone."""
        def compute(ends: np.ndarray) -> tuple[list[str], list[list[float | None]]]:
            values = site_indicator_values(self.site, self.balances(window, ends))
            return figure_keys(window, list(values)), value_rows(values)

        found = self._final_block(self._blocks, self._window(window), end_ms, compute)
        if found is None:
            return super()._window_values(window, end_ms)
        (keys, rows), i = found[0].payload, found[1]
        return dict(zip(keys, rows[i], strict=True))

    # -- persistence (start-up without a rebuild from raw history) -------------------------
    def _layout(self) -> dict[str, object]:
        return {"meters": list(self._ids), "windows": [[w.name, w.length_ms] for w in self._windows],
                "rings": [[r.step_ms, r.size] for r in (self._minutes, self._hours)],
                "max_gap_ms": self._max_gap_ms}

    def dump(self, cursor: int) -> str:
        """The buckets, last samples and the store cursor they include, as one state value."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf, last_ts=self._last_ts, last_value=self._last_value,
            ceiling=np.array([np.nan if c is None else c for c in self._ceiling]),
            ceiling_head=self._ceiling_head,
            **{f"{n}_{k}": getattr(r, k) for n, r in (("m", self._minutes), ("h", self._hours))
               for k in ("amount", "measured", "known")},
        )
        events = [[[e.ts_ms, e.kind, e.before, e.after, e.counted, e.start_ms] for e in row]
                  for row in self._events]
        return json.dumps({"layout": self._layout(), "cursor": cursor,
                           "heads": [self._minutes.head, self._hours.head], "events": events,
                           "arrays": base64.b64encode(buf.getvalue()).decode()})

    def load(self, text: str) -> int | None:
        """Restore a :meth:`dump`; returns its store cursor, or None (nothing restored) when
        the site's meters, windows or calculator settings changed since."""
        data = json.loads(text)
        if data["layout"] != json.loads(json.dumps(self._layout())):
            return None
        arrays = np.load(io.BytesIO(base64.b64decode(data["arrays"])))
        self._last_ts[:], self._last_value[:] = arrays["last_ts"], arrays["last_value"]
        self._ceiling = [None if np.isnan(c) else float(c) for c in arrays["ceiling"]]
        self._ceiling_head[:] = arrays["ceiling_head"]
        self._events = [[CounterEvent(*e) for e in row] for row in data["events"]]
        for n, ring, head in (("m", self._minutes, data["heads"][0]),
                              ("h", self._hours, data["heads"][1])):
            ring.amount[:], ring.measured[:], ring.known[:] = (
                arrays[f"{n}_amount"], arrays[f"{n}_measured"], arrays[f"{n}_known"])
            ring.head = head
        self.version += 1
        self._blocks.clear()
        self._origin_blocks.clear()
        return int(data["cursor"])


async def _in_turn(sends: list[Awaitable[bool]]) -> None:
    for send in sends:
        await send


def _take(cols: ReadingColumns, mask: np.ndarray) -> ReadingColumns:
    return ReadingColumns(*(getattr(cols, f)[mask] for f in ReadingColumns.__slots__))


class Runtime:
    """Live state of one site and the jobs that update it.

    ``clock`` returns the daemon's "now" in UTC ms (wall clock, or the simulated clock in
    fast-forward). ``collector`` supplies ingestion counters when the daemon runs one. With
    ``hold_future`` (fast-forward) readings stamped well after ``clock()`` wait in memory until
    the clock comes near, so each job's figures are those at its fire time even when a whole
    day of readings was stored at once.
    """

    def __init__(
        self, site: Site, store: Store, clock: Clock, collector: Collector | None = None,
        *, hold_future: bool = False,
    ) -> None:
        self.site, self.store, self.clock, self.collector = site, store, clock, collector
        self.hold_future = hold_future
        #: Guards the calculator, the alert engine and the held readings (jobs run in threads).
        self.lock = threading.RLock()
        self._ingest_lock = threading.Lock()
        now = clock()
        self.calculator, self.cursor = self._restore(site, store, now, clock)
        self._fed_cursor = self.cursor  # every reading up to here is in the calculator
        self._calculator_saved_at = time.monotonic()
        # Newest reading per meter from the newest months only (no scan of the history); the
        # latest values only of the meters threshold rules watch.
        self.last_seen: dict[str, int] = {
            m: ts for m, ts in store.last_ts_by_meter().items() if not m.startswith("metric.")
        }
        self.last_value: dict[str, float] = {}
        for rule in site.service.alerts.thresholds:
            if rule.figure.startswith(METER_FIGURE):
                latest = store.latest(rule.figure.removeprefix(METER_FIGURE))
                if latest is not None:
                    self.last_value[latest.meter] = latest.value
        self._held = ReadingColumns.empty()
        cfg = site.service
        self.engine = AlertEngine(cfg.alerts, site.id, [m.id for m in site.meters], now,
                                  INGEST_LAG_DEGRADED_S)
        saved = store.get_state(STATE_ALERTS)
        if saved is not None:
            self.engine.load(saved)
        self.dispatcher = Dispatcher(build_notifiers(
            cfg.notifiers, site.id, cfg.alerts.evaluate_every_s, cfg.public_url
        ))
        self.telemetry = Telemetry(self.health)
        self._job_metrics: dict[str, tuple[Counter, Counter, Histogram]] = {}
        self.model = plant.try_load_model(site)
        self.trainer = plant.Trainer(site)
        if self.model is None and hold_future:  # fed by the twin: a first fit comes soon
            self.trainer.warm()
        self._training: Future[PlantModel | None] | None = None  # a fit under way
        #: fire times of proposals deferred until the first model's fit is done (fast-forward)
        self._deferred: list[int] = []
        self.frames = plant.RecentFrames(site, store)  # drift windows' grid
        self.state_frames = plant.RecentFrames(site, store)  # the optimizer's step grid
        self.proposal_log = ProposalLog(store)
        self.overrides = Overrides(store)
        store.execute(
            "CREATE TABLE IF NOT EXISTS service_reports (period VARCHAR PRIMARY KEY, "
            "start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL, "
            "report VARCHAR NOT NULL)"
        )
        self._carbon = _CarbonCache()
        self.expected: float | None = None
        self._saved_alerts = saved
        self._stored_seen = -1
        self._dead_letters = store.dead_letter_counts()
        self._dead_letters_at = time.monotonic()
        self._live_letters_at_read: dict[str, int] = {}  # the collector's counts at that read
        self._last_proposal: str | None = None
        self._first_ms: int | None = None  # oldest stored reading, once known
        # Write-back rows and alert state are saved per scheduler round in fast-forward (one
        # store append per chunk instead of one per simulated minute), at once in real time.
        self.write_buffer = WriteBuffer(store)
        self.save_each_job = True
        self.calculator.store = self.write_buffer  # type: ignore[assignment]
        #: ``wall`` (real time), ``catching-up`` (the twin's history simulated up to the wall
        #: clock), ``fast-forward`` (simulated, running) or ``stopped`` (a finished
        #: fast-forward serving on its frozen clock), shown on ``/healthz``.
        self.clock_mode = "wall"

    @staticmethod
    def _restore(
        site: Site, store: Store, now_ms: int, clock: Clock
    ) -> tuple[MemoCalculator, int]:
        """The calculator as saved by the last run plus the readings stored since (no rebuild
        from raw history), or rebuilt from the store when there is no usable saved state."""
        saved = store.get_state(STATE_CALCULATOR)
        if saved is not None:
            calc = MemoCalculator(site, store, clock)
            cursor = calc.load(saved)
            if cursor is not None:
                log.info("calculator state restored from the store (readings after #%d follow)",
                         cursor)
                return calc, cursor
            log.info("calculator settings or meters changed: rebuilding from the readings")
        calc = MemoCalculator.from_store(site, store, now_ms, clock)
        return calc, store.last_seq()

    def save_calculator(self) -> None:
        """Persist the calculator with the cursor of the readings it holds."""
        with self.lock:
            state = self.calculator.dump(self._fed_cursor)
        self.store.set_state(STATE_CALCULATOR, state)
        self._calculator_saved_at = time.monotonic()

    # -- ingestion ------------------------------------------------------------------------
    def ingest(self) -> int:
        """Feed readings stored since the last call to the calculator (with ``hold_future``
        once some are due at ``clock()``, those up to :data:`FEED_AHEAD_MS` later); returns how
        many were fed. The store is read
        outside :attr:`lock`, so the API is not kept waiting by a large read."""
        with self._ingest_lock:
            self._read_new()
            cols, horizon = self._held, None
            if self.hold_future and len(cols):
                now = self.clock()
                if int(cols.ts_ms.min()) > now:
                    return 0  # nothing due yet
                horizon = now + FEED_AHEAD_MS
                due = cols.ts_ms <= horizon
                cols, self._held = (cols, ReadingColumns.empty()) if due.all() else (
                    _take(cols, due), _take(cols, ~due))
            else:
                self._held = ReadingColumns.empty()
            if len(cols) == 0:
                return 0
            with self.lock:
                # Fed ahead of the simulated clock on purpose: the calculator's future-skew
                # rule counts from the feed horizon, not from the clock.
                self.calculator.update(cols, horizon)
                self._note_latest(cols)
            if len(self._held) == 0:
                self._fed_cursor = self.cursor
            return len(cols)

    def _read_new(self) -> None:
        if self.collector is not None:
            stored = self.collector.pipeline.stats.readings_stored
            if stored == self._stored_seen:
                return
            self._stored_seen = stored
        parts = [self._held]
        if len(self._held) == 0:
            self._fed_cursor = self.cursor
        while True:
            cols, last = self.store.read_since(self.cursor, INGEST_BATCH)
            if len(cols) == 0:
                break
            self.cursor = last
            parts.append(cols)
        if len(parts) > 1:
            self._held = ReadingColumns.concat(parts)

    def _note_latest(self, cols: ReadingColumns) -> None:
        """Newest time and value per field meter (vectorised: one pass per meter, not row)."""
        codes = pd.factorize(cols.meter)[0]
        order = np.lexsort((cols.ts_ms, codes))
        meters = codes[order]
        last = np.flatnonzero(np.r_[meters[1:] != meters[:-1], True])
        for i in order[last].tolist():
            meter, ts = str(cols.meter[i]), int(cols.ts_ms[i])
            if ts > self.last_seen.get(meter, -1) and not meter.startswith("metric."):
                self.last_seen[meter], self.last_value[meter] = ts, float(cols.value[i])

    # -- jobs -----------------------------------------------------------------------------
    async def run_job(self, name: str, now_ms: int) -> None:
        """Run one job at ``now_ms`` in a worker thread, then its follow-up on the loop."""
        follow_up = await asyncio.to_thread(self.run_job_sync, name, now_ms)
        if follow_up is not None:
            await self.follow(follow_up)

    def run_job_sync(self, name: str, now_ms: int) -> Awaitable[object] | None:
        """Run one job at ``now_ms`` (blocking: call from a worker thread), timing it; returns
        the coroutine (notifications, MQTT) to await on the loop, if any. A failing job is
        logged, never fatal."""
        job = getattr(self, f"job_{name}")
        metrics = self._job_metrics.get(name)
        if metrics is None:  # each job's children once (two jobs a simulated minute)
            t = self.telemetry
            metrics = self._job_metrics[name] = (
                t.job_runs.labels(name, "ok"), t.job_runs.labels(name, "error"),
                t.job_seconds.labels(name))
        started = time.perf_counter()
        try:
            follow_up = job(now_ms)
        except Exception:
            log.exception("job %s failed at %s", name, ms_to_datetime(now_ms).isoformat())
            metrics[1].inc()
            return None
        else:
            metrics[0].inc()
            return follow_up
        finally:
            metrics[2].observe(time.perf_counter() - started)

    @staticmethod
    async def follow(follow_up: Awaitable[object]) -> None:
        try:
            await follow_up
        except Exception:
            log.exception("sending a job's notifications failed")

    async def run_job_now(self, name: str) -> None:
        """Run one job at the clock's current time (the wall-clock scheduler's entry point)."""
        await self.run_job(name, self.clock())

    def job_write_back(self, now_ms: int) -> None:
        self.ingest()
        with self.lock:
            self.calculator.write_back(now_ms)
        if time.monotonic() - self._dead_letters_at > DEAD_LETTER_REFRESH_S:
            live = self._live_letters()
            self._dead_letters = self.store.dead_letter_counts()
            self._dead_letters_at = time.monotonic()
            self._live_letters_at_read = live
        if self.save_each_job:
            self.write_buffer.flush()
            if time.monotonic() - self._calculator_saved_at > CALCULATOR_SAVE_S:
                self.save_calculator()

    def job_rollups(self, now_ms: int) -> None:
        """Refresh the hourly rollups for the readings stored since the last pass
        (:func:`dcpue.metrics.rollups.catch_up`: late and backfilled hours re-finalized)."""
        rollups.catch_up(self.site, self.store)

    def job_alerts(self, now_ms: int) -> Awaitable[None] | None:
        self.ingest()
        drift = self.site.service.alerts.drift
        with self.lock:
            values = self.calculator.values(now_ms, self.engine.figures_read())
            due = self.engine.drift_due(now_ms)
            span = self.calculator.window_bounds(drift.figure.partition(".")[2], now_ms) if (
                due and values.get(drift.figure) is not None) else None
        if due:  # expected PUE is only needed for a drift sample
            self.expected = None
            if self.model is not None and span is not None:
                self.expected = self.frames.expected_pue(self.model, *span, self._data_end_ms())
        figures = values | self.meter_values()
        with self.lock:
            obs = Observation(
                now_ms, figures, self.expected, dict(self.last_seen), self.behind_s(now_ms),
                None if self.collector is None
                else sum(self.collector.pipeline.stats.dead_letters.values()),
            )
            changes = self.engine.evaluate(obs)
            active = list(self.engine.active.values())
            if self.save_each_job:
                self.save_alerts()
        for alert in changes:
            log.warning("alert %s %s: %s", alert.status, alert.name, alert.summary)
        if changes:  # an operator's silence (dashboard / API) holds its notifications back
            silences = AlertActions(self.store)
            changes = [a for a in changes if not silences.silenced(a.id, now_ms)]
        return self.dispatcher.dispatch(changes, active) if changes else None

    def _live_letters(self) -> dict[str, int]:
        return {} if self.collector is None else dict(self.collector.pipeline.stats.dead_letters)

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters by reason for /metrics (see :func:`dead_letters_now`)."""
        return dead_letters_now(self._dead_letters, self._live_letters(),
                                self._live_letters_at_read)

    def _data_end_ms(self) -> int:
        """End of the readings stored so far (a frame built up to here is complete)."""
        stored = self.collector.pipeline.stats.last_ts_ms if self.collector else {}
        return max(max(stored.values(), default=0), max(self.last_seen.values(), default=0)) + 1

    def meter_values(self) -> dict[str, float | None]:
        """Latest value of each meter a threshold rule names as ``meter:<id>`` (e.g. the
        hottest rack inlet), keyed like the rule's figure."""
        return {
            rule.figure: self.last_value.get(rule.figure.removeprefix(METER_FIGURE))
            for rule in self.site.service.alerts.thresholds
            if rule.figure.startswith(METER_FIGURE)
        }

    def ingest_lag_s(self, now_ms: int) -> float:
        """How far ingestion is behind ``now`` (s): the age of the newest stored reading while
        the collector runs (0 before any reading or without a collector)."""
        if self.collector is None:
            return 0.0
        newest = max(self.collector.pipeline.stats.last_ts_ms.values(), default=None)
        return 0.0 if newest is None else max(0.0, (now_ms - newest) / 1000.0)

    def behind_s(self, now_ms: int) -> float:
        """The ingest lag while readings wait to be stored (or writes fail), else 0: a
        silent gateway is a stale meter, not a collector falling behind."""
        c = self.collector
        if c is None or not (c.pipeline.pending or c.store_failing):
            return 0.0
        return self.ingest_lag_s(now_ms)

    def save_alerts(self) -> None:
        """Persist the alert engine's state when it changed since the last save."""
        with self.lock:
            state = self.engine.dump()
            if state != self._saved_alerts:
                self.store.set_state(STATE_ALERTS, state)
                self._saved_alerts = state

    def job_proposals(self, now_ms: int) -> Awaitable[object] | None:
        if self.model is None:
            fit = self._training
            if fit is None:  # the first fit, as soon as enough history exists
                self._deferred.clear()  # a first fit that gave no model: none of them is made
                if self._enough_history(now_ms):
                    self._train(now_ms)
                return None
            if self.clock_mode == "fast-forward" and not fit.done():
                # fast-forward: the proposals due while the first model is fitted are made
                # once it is, each at its own time (the twin does not apply them), and the
                # other jobs go on meanwhile instead of waiting seconds for the fit
                self._deferred.append(now_ms)
                return None
            try:  # the first model is used from the next interval on: wait for its fit
                fit.result(timeout=FIT_WAIT_S)
            except TimeoutError:
                log.warning("the first plant model is still being fitted: no proposal")
                return None
            self._adopt(fit)
            if self.model is None:
                return None
        sends = [send for t in [*self._deferred, now_ms]
                 if (send := self._propose_at(t)) is not None]
        self._deferred.clear()
        return sends[0] if len(sends) == 1 else _in_turn(sends) if sends else None

    def _propose_at(self, now_ms: int) -> Awaitable[bool] | None:
        """The proposal at ``now_ms`` with the current model (logged and stored); returns its
        announcement to await on the loop."""
        assert self.model is not None
        proposal = plant.propose_now(self.model, self.site, self.store, now_ms,
                                     self.state_frames, self._data_end_ms(), self.proposal_log,
                                     self.overrides)
        if proposal is None:
            return None
        view = describe(proposal)
        said = f"{proposal.status}: " + (", ".join(
            f"{k} {v}" for k, v in view["changes"].items()) or "keep current setpoints")
        if said != self._last_proposal:  # log when the advice changes, not every interval
            log.info("proposal %s (%s)", said, proposal.reason)
            self._last_proposal = said
        return plant.announce(self.site, proposal)

    def make_deferred_proposals(self) -> None:
        """At the end of a fast-forward: wait for the first fit and make the proposals deferred
        until it is done (their announcements are not sent)."""
        if not self._deferred:
            return
        fit = self._training
        if self.model is None and fit is not None:  # else adopted already (or no fit)
            fit.result(timeout=FIT_WAIT_S)
            self._adopt(fit)
        if self.model is not None:
            for t in self._deferred:
                send = self._propose_at(t)
                if inspect.iscoroutine(send):
                    send.close()
        self._deferred.clear()

    def after_remote_command(self, argv: list[str]) -> None:
        """A forwarded ``dcpue optimize train`` saved a model: use it from now on."""
        if argv[:2] == ["optimize", "train"] and "--out" not in argv:
            self.model = plant.try_load_model(self.site) or self.model

    def job_retrain(self, now_ms: int) -> None:
        """Refit the plant model in the trainer's worker process; the current model serves
        until the fit is done (seconds later; in fast-forward some simulated hours or days
        later, depending on the machine's speed)."""
        if self._training is not None:
            log.info("retraining skipped: the previous fit is still running")
        elif self._deferred:
            log.info("retraining skipped: proposals deferred for the first model are not made "
                     "yet")
        elif self._enough_history(now_ms):
            self._train(now_ms)

    def _train(self, now_ms: int) -> None:
        fit = self.trainer.start(self.store, now_ms, self.site.service.schedule.retrain_days)
        if fit is not None:
            self._training = fit
            fit.add_done_callback(self._adopt)

    def _adopt(self, fit: Future[PlantModel | None]) -> None:
        """Use a finished fit's model (once; a failed fit keeps the current model)."""
        with self.lock:
            if fit is not self._training:
                return
            self._training = None
            model = fit.result()
            if model is not None:
                self.model = model

    def job_fleet_publish(self, now_ms: int) -> None:
        """Publish the finalized hourly terms touched since the last pass (dcpue.fleet)."""
        publish_job(self.site, self.store)

    def job_report(self, now_ms: int) -> None:
        """Store the carbon report of the calendar month that just ended."""
        today = ms_to_datetime(now_ms).astimezone(ZoneInfo(self.site.timezone)).date()
        end = today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
        span = self.store.time_range()
        if span is None or span[0] >= _date_ms(end, ZoneInfo(self.site.timezone)):
            return  # no reading in that month
        report = site_report(self.site, self.store, start, end)
        account = report.accounts[0]
        self.store.execute(
            "INSERT OR REPLACE INTO service_reports VALUES (?, ?, ?, ?, ?)",
            [account.label, account.start_ms, account.end_ms, now_ms, report.to_json()],
        )

    def _enough_history(self, now_ms: int) -> bool:
        """At least ``first_train_after_days`` of readings are stored, and no PUE drift is
        suspected (a model retrained on faulty data would hide the fault)."""
        with self.lock:
            suspected = self.engine.drift_suspected()
        if suspected:
            log.warning("retraining postponed: PUE drift suspected")
            return False
        if self._first_ms is None:
            span = self.store.time_range()
            self._first_ms = None if span is None else span[0]
        need = self.site.service.schedule.first_train_after_days * DAY_MS
        return self._first_ms is not None and now_ms - self._first_ms >= need

    # -- reads for the API and /metrics ---------------------------------------------------
    def figures(self, now_ms: int) -> dict[str, Figure]:
        """Rolling figures at ``now_ms`` from the readings the jobs fed (at most one job
        interval old); memoised, so no store read and rarely a computation. While a job holds
        the calculator longer than :data:`FIGURES_WAIT_S`, the newest memoised snapshot (the
        last job's figures) instead: the API never waits on a long job."""
        if not self.lock.acquire(timeout=FIGURES_WAIT_S):
            latest = self.calculator.latest
            if latest is not None:
                return latest
            self.lock.acquire()
        try:
            return self.calculator.snapshot(now_ms)
        finally:
            self.lock.release()

    def carbon(self, now_ms: int) -> dict[str, Figure]:
        """Carbon figures of the current calendar month up to the start of today (site time)."""
        zone = ZoneInfo(self.site.timezone)
        today = ms_to_datetime(now_ms).astimezone(zone).date()
        start = today.replace(day=1) if today.day > 1 else (
            today - timedelta(days=1)).replace(day=1)
        cache = self._carbon
        window = (_date_ms(start, zone), _date_ms(today, zone))
        if cache.window == window and now_ms - cache.computed_ms < CARBON_TTL_MS:
            return cache.figures or {}
        figures = site_report(self.site, self.store, start, today).accounts[0].figures
        self._carbon = _CarbonCache(window, figures, now_ms)
        return figures

    def energy(self, start_ms: int, end_ms: int) -> dict[str, Figure]:
        return energy_balance(self.site, self.store, start_ms, end_ms).figures()

    def proposals(self, limit: int) -> list[dict]:
        return [describe(p) for p in self.proposal_log.list(limit)]

    def alerts(self) -> tuple[list[Alert], list[Alert]]:
        with self.lock:
            return list(self.engine.active.values()), list(self.engine.history)

    def reports(self) -> list[dict]:
        rows = self.store.execute(
            "SELECT period, start_ms, end_ms, created_ms FROM service_reports ORDER BY start_ms"
        ).fetchall()
        return [dict(zip(("period", "start_ms", "end_ms", "created_ms"), r, strict=True))
                for r in rows]

    def status(self) -> dict[str, object]:
        """``/healthz`` body: ``ok``, or ``degraded`` with the reasons (store writes failing,
        e.g. a full disk, or ingestion lagging by more than :data:`INGEST_LAG_DEGRADED_S`)."""
        now = self.clock()
        reasons = []
        lag = self.behind_s(now)
        waiting = self.collector.pipeline.pending if self.collector is not None else 0
        if self.collector is not None and self.collector.store_failing:
            reasons.append(f"store writes failing ({self.collector.store_failing}); "
                           f"{waiting} readings kept in memory, nothing acknowledged")
        if lag > INGEST_LAG_DEGRADED_S:
            reasons.append(f"ingest lag {lag:.0f} s (over {INGEST_LAG_DEGRADED_S:.0f} s)")
        return {"status": "degraded" if reasons else "ok", "reasons": reasons,
                "ingest_lag_s": round(lag, 3), "readings_waiting": waiting,
                "clock": self.clock_mode}

    def health(self) -> HealthSnapshot:
        now = self.clock()
        firing: dict[str, int] = {}
        for a in self.alerts()[0]:
            firing[a.severity] = firing.get(a.severity, 0) + 1
        stats = self.collector.stats() if self.collector is not None else None
        last_seen = dict(self.last_seen)
        for meter, ts in (stats.last_ts_ms.items() if stats else ()):
            last_seen[meter] = max(ts, last_seen.get(meter, ts))
        # The collector counts readings over all its sources together.
        readings_in = {"+".join(stats.sources) or "direct": stats.readings_in} if stats else {}
        name = self.site.service.current_figure
        snapshot = self.figures(now)
        current = snapshot.get(name)
        figures = {} if current is None or current.value is None else {
            name: (current.value, current.unit)
        }
        quality = {
            "future_ignored": self.calculator.ignored_future,
            "late_recomputed": self.calculator.recomputed,
            "figures_in_error": sum(
                1 for f in snapshot.values() if f.extra.get("status") == DATA_QUALITY_ERROR
            ),
        }
        return HealthSnapshot(
            now_ms=now,
            readings_in=readings_in,
            readings_stored=stats.readings_stored if stats else 0,
            duplicates=stats.duplicates if stats else 0,
            dead_letters=self.dead_letter_counts(),
            backlog={"remote": stats.backlog} if stats and stats.backlog is not None else {},
            pending=stats.pending if stats else 0,
            mqtt_stalls=stats.mqtt_stalls if stats else 0,
            last_seen_ms=last_seen,
            alerts_firing=firing,
            notifications=dict(self.dispatcher.outcomes),
            figures=figures,
            modbus=stats.modbus if stats else (),
            ingest_lag_s=self.ingest_lag_s(now),
            data_quality=quality,
            model_fits=self.trainer.fits,
            model_fit_cpu_s=self.trainer.fit_cpu_s,
        )

    def api_sources(self) -> ApiSources:
        cfg = self.site.service
        return ApiSources(
            site=self.site, store=self.store, registry=self.telemetry.registry,
            now_ms=self.clock, figures=self.figures, alerts=self.alerts, carbon=self.carbon,
            energy=self.energy, proposals=self.proposals, current_figure=cfg.current_figure,
            token=bearer_token(self.site), status=self.status,
        )

    def reload(self, site: Site) -> list[str]:
        """Apply a re-read site file (SIGHUP): alert rules, notifiers, the current figure and
        optimizer settings take effect at once, without a restart or a lost reading. Returns
        what changed; sections that need a restart (meters, store, collector, calculator, HTTP
        address) are named in the log and keep their running values."""
        old = self.site
        changed = [k for k in ("service", "optimizer", "carbon", "grid", "timezone")
                   if getattr(old, k) != getattr(site, k)]
        fixed = [k for k in ("id", "meters", "store", "collector", "calculator", "twin")
                 if getattr(old, k) != getattr(site, k)]
        if (old.service.host, old.service.port) != (site.service.host, site.service.port):
            fixed.append("service.host/port")
            site.service.host, site.service.port = old.service.host, old.service.port
        if fixed:
            log.warning("reload: %s changed; restart the daemon to apply (kept running as is)",
                        ", ".join(fixed))
        for key in fixed:
            if "." not in key:
                setattr(site, key, getattr(old, key))
        with self.lock:
            self.site = site
            self.calculator.site = site
            self.trainer.site = site  # the next fit uses the new optimizer settings
            cfg = site.service
            self.engine.settings = cfg.alerts
            self.dispatcher = Dispatcher(build_notifiers(
                cfg.notifiers, site.id, cfg.alerts.evaluate_every_s, cfg.public_url
            ))
        return changed

    def finish(self, now_ms: int) -> None:
        """Flush on shutdown: feed and write back the last figures, save alert state."""
        self.ingest()
        with self.lock:
            self.calculator.write_back(now_ms)
        self.write_buffer.flush()
        self.make_deferred_proposals()
        self.proposal_log.flush()
        self.save_alerts()
        self.save_calculator()
        self.trainer.close()


class WriteBuffer:
    """Collects the calculator's write-back rows; :meth:`flush` appends them in one batch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rows: list[Reading] = []

    def append(self, rows: list[Reading]) -> int:
        self.rows.extend(rows)
        return len(rows)

    def flush(self) -> int:
        rows, self.rows = self.rows, []
        return self.store.append(rows) if rows else 0


def _date_ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGTERM/SIGINT/SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def bind_api(site: Site, port: int | None = None) -> socket.socket:
    """Bind the API's listening socket first, so a busy port stops the daemon with one line
    before the collector or a store rebuild starts. Port 0 picks a free port."""
    host = site.service.host
    port = site.service.port if port is None else port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # without it every response waited ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot serve the API on {host}:{port}: {exc.strerror or exc} (is another dcpue "
            "or another program using it?); stop it, or choose another port with --port or "
            "[service] port"
        ) from None
    sock.listen(128)
    return sock


class HttpService:
    """The HTTP API on a bound socket, and the state file beside the store that tells CLI
    commands where the daemon answers (:mod:`dcpue.service.remote_cli`)."""

    def __init__(self, runtime: Runtime, sock: socket.socket) -> None:
        self.runtime, self.sock = runtime, sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        sources = runtime.api_sources()
        sources.routes = remote_cli.routes(runtime.after_remote_command)
        self.server = _QuietServer(uvicorn.Config(
            create_app(sources), log_level="warning", lifespan="off",
        ))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="http")
        remote_cli.write_daemon_file(self.runtime.site.store.path, self.url)
        log.info("dashboard on %s/ (API %s/api/pue, metrics %s/metrics)",
                 self.url, self.url, self.url)

    async def stop(self) -> None:
        remote_cli.remove_daemon_file(self.runtime.site.store.path)
        self.server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


SiteLoader = Callable[[], Site]


def install_reload_handler(
    runtime: Runtime, load: SiteLoader, on_reload: Callable[[Site], None] = lambda site: None,
) -> None:
    """SIGHUP re-reads the site file (validated in a worker thread); a file that fails keeps
    the running configuration and logs why."""
    loop = asyncio.get_running_loop()
    busy = asyncio.Lock()

    async def reload() -> None:
        async with busy:
            try:
                site = await asyncio.to_thread(load)
            except Exception as exc:  # a bad file must never stop the daemon
                log.error("reload failed, still running the previous site file: %s", exc)
                return
            changed = runtime.reload(site)
            on_reload(runtime.site)
            log.info("reloaded the site file: %s", ", ".join(changed) or "no change")

    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))


def log_ready(runtime: Runtime, what: str) -> None:
    sources = runtime.collector.source_names if runtime.collector is not None else ()
    log.info("ready: site %s, store %s, %s%s", runtime.site.id, runtime.site.store.path, what,
             f", collecting from {', '.join(sources)}" if sources else "")


async def serve_realtime(
    site: Site, store: Store, stop: asyncio.Event, load: SiteLoader | None = None,
) -> None:
    """Production mode: collector + wall-clock scheduler + HTTP API until ``stop`` is set."""
    sock = bind_api(site)
    collector = Collector(site, store)
    await collector.start()
    runtime = await asyncio.to_thread(Runtime, site, store, wall_clock_ms, collector)
    scheduler = AsyncIOScheduler(timezone=UTC)

    def schedule(current: Site) -> None:
        for name, trigger in job_triggers(current).items():
            scheduler.add_job(
                runtime.run_job_now, trigger, args=[name], id=name, replace_existing=True,
                coalesce=True, max_instances=1, misfire_grace_time=None,
            )

    schedule(site)
    scheduler.start()
    if load is not None:
        install_reload_handler(runtime, load, schedule)
    http = await asyncio.to_thread(HttpService, runtime, sock)
    http.start()
    log_ready(runtime, "jobs on the wall clock")
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await http.stop()
        await collector.stop()
        await asyncio.to_thread(runtime.finish, wall_clock_ms())
        log.info("daemon stopped cleanly")


def save_schedule(store: Store, scheduler: SimScheduler) -> None:
    store.set_state(STATE_SCHEDULE, json.dumps(scheduler.next_fire))


def load_schedule(store: Store) -> dict[str, int] | None:
    saved = store.get_state(STATE_SCHEDULE)
    return None if saved is None else {k: int(v) for k, v in json.loads(saved).items()}
