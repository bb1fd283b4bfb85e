"""Driving a :class:`~dcpue.twin.simulator.Twin`: fast-forward into a store, real-time pacing,
and reading the results back from the store (thin adapters around the pure twin).

Other front-ends (MQTT / Modbus publishers) reuse :func:`fast_forward` and :func:`paced`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from dcpue.config import MeterRole, Site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.twin.simulator import Twin, TwinStep
from tqdm import tqdm


@dataclass(frozen=True)
class RunSummary:
    """What a fast-forward run produced: rows generated and newly stored, time span (UTC ms)."""

    generated: int
    added: int
    first_ms: int
    last_ms: int


@dataclass(frozen=True)
class StepSummary:
    """One step read back from stored counters: mean kW over the step ending at ``ts_ms``."""

    ts_ms: int
    it_kw: float
    facility_kw: float
    pv_kw: float

    @property
    def pue(self) -> float:
        """Instantaneous PUE (-) = facility / IT energy over the step."""
        return self.facility_kw / self.it_kw


def fast_forward(
    twin: Twin, days: float, *, chunk_days: float = 30.0, progress: bool = True
) -> Iterator[ReadingColumns]:
    """:meth:`Twin.run` with a tqdm progress bar on stderr (simulated steps)."""
    total = round(days * 86400 / twin.step_s)
    with tqdm(
        total=total, unit="step", unit_scale=True, file=sys.stderr, disable=not progress,
        desc=f"simulating {twin.site.id}",
    ) as bar:
        yield from twin.run(days, chunk_days=chunk_days, progress=bar.update)


def simulate_into(
    twin: Twin, store: Store, days: float, *, chunk_days: float = 30.0, progress: bool = True
) -> RunSummary:
    """Fast-forward ``days`` into ``store`` (idempotent: rerunning adds nothing); the summary's
    span is that of the readings generated."""
    first, last = twin.now_ms, twin.now_ms - twin.step_s * 1000
    generated = added = 0
    for cols in fast_forward(twin, days, chunk_days=chunk_days, progress=progress):
        generated += len(cols)
        added += store.append(cols)
        store.maintain()  # hot rows into sorted month tables, as the collector's pipeline does
        if len(cols):
            first, last = min(first, int(cols.ts_ms.min())), max(last, int(cols.ts_ms.max()))
    return RunSummary(generated, added, first, last)


async def paced(
    twin: Twin,
    days: float,
    *,
    speedup: float = 1.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[TwinStep]:
    """Step the twin in wall time (one step every ``step_s / speedup`` s) for ``days``.

    Each :class:`TwinStep` is yielded as soon as it is taken (e.g. to store or publish its
    readings); the wait for the next step's deadline follows.
    """
    steps = round(days * 86400 / twin.step_s)
    period = twin.step_s / speedup
    deadline = time.monotonic()
    for _ in range(steps):
        yield twin.step()
        deadline += period
        await sleep(max(0.0, deadline - time.monotonic()))


def recent_steps(site: Site, store: Store, step_s: int, n: int) -> list[StepSummary]:
    """The last ``n`` steps in the store, from counter deltas of the IT meters' latest time."""
    it_meter = site.meters_with(MeterRole.IT_LOAD)[0].id
    latest = store.latest(it_meter)
    if latest is None:
        return []
    step_ms = step_s * 1000
    out = []
    for k in range(n - 1, -1, -1):
        end = latest.ts_ms - k * step_ms
        b = energy_balance(site, store, end - step_ms, end)
        per_hour = 3600.0 / step_s
        out.append(
            StepSummary(end, b.it_kwh * per_hour, b.facility_kwh * per_hour,
                        b.pv_generation_kwh * per_hour)
        )
    return out
