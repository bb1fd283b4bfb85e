"""Parts of the daemon checked without a daemon process: the memoised calculator and the frame
cache against the code they stand in for, the collector's restart backoff, the one-line
operator errors and shell completion."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from dcpue.collector.backoff import Backoff
from dcpue.collector.service import _supervise
from dcpue.config import example_path, load_site
from dcpue.core.store import Store
from dcpue.metrics.rolling import RollingCalculator
from dcpue.optimizer.propose import current_state
from dcpue.service.daemon import MemoCalculator, dead_letters_now
from dcpue.service.plant import RecentFrames
from dcpue.twin.runner import simulate_into
from dcpue.twin.simulator import Twin

from dcpue.cli import bash_completion, build_parser, main

MINUTE = 60_000
HOUR = 3_600_000


@pytest.fixture(scope="module")
def twin_store(tmp_path_factory):
    """One simulated day and a half of the bundled site in a DuckDB file."""
    site = load_site(example_path("single_hall"))
    site.store.path = tmp_path_factory.mktemp("parts") / "hall.duckdb"
    with Store(site.store.path) as store:
        twin = Twin(site)
        simulate_into(twin, store, 1.5, progress=False)
        yield site, store, twin.start_ms


def test_memoised_snapshot_equals_the_calculators_at_every_minute(twin_store):
    """The daemon's memo (final windows reused, hour windows once an hour) returns exactly what
    RollingCalculator.snapshot computes afresh, minute by minute, fed an hour ahead like the
    fast-forward does; its values (what the write-back stores and the alert rules read, all or
    two of them) are the snapshot's to 1e-12 (the array form sums by a cumulative sum), from
    one array pass per window and hour of minutes, not one per minute."""
    site, store, start = twin_store
    plain, memo = RollingCalculator(site), MemoCalculator(site)
    only = frozenset({"pue.1h", "cue.15m"})
    passes: list[str] = []
    array_form = memo.balances

    def counted(window, ends_ms):
        passes.append(window)
        return array_form(window, ends_ms)

    memo.balances = counted  # type: ignore[method-assign]
    cols = store.read(start_ms=start, end_ms=start + 36 * HOUR)
    t0 = start + 25 * HOUR
    for calc in (plain, memo):
        calc.update(store.read(end_ms=t0 + 1))
    for k in range(150):
        now = t0 + k * MINUTE
        if k % 60 == 0:  # one hour of readings at a time
            ahead = cols.ts_ms[(cols.ts_ms > now) & (cols.ts_ms <= now + 59 * MINUTE)]
            batch = store.read(start_ms=now + 1, end_ms=now + 59 * MINUTE + 1)
            assert len(batch) == len(ahead)
            for calc in (plain, memo):
                calc.update(batch)
        want = {k2: f for k2, f in plain.snapshot(now).items()}
        got = {k2: f.value for k2, f in memo.snapshot(now).items()}
        assert got == {k2: f.value for k2, f in want.items()}, now
        assert memo.snapshot(now) is memo.snapshot(now)  # memoised
        values = memo.values(now)
        assert values.keys() == want.keys()
        for key, v in values.items():
            window = key.partition(".")[2]
            assert memo.window_bounds(window, now) == (want[key].start_ms, want[key].end_ms)
            assert v == (None if want[key].value is None
                         else pytest.approx(want[key].value, rel=1e-12)), (key, now)
        assert memo.values(now, only) == {key: values[key] for key in only}
    assert want["pue.1h"].value is not None and 1.0 < want["pue.1h"].value < 2.0
    # 150 minutes fed an hour ahead: at most one pass per window and hour (plus the end
    # of a feed, where the next hour is not yet in), not 150
    for window in ("15m", "1h", "1d"):
        assert 2 <= passes.count(window) <= 6, (window, passes.count(window))


def test_cached_frames_give_the_optimizers_plant_state(twin_store):
    """RecentFrames.state (one frame reused up to the data's end) equals
    optimizer.propose.current_state (a frame of the last 4 steps) at several times."""
    site, store, start = twin_store
    frames = RecentFrames(site, store)
    data_end = start + 36 * HOUR
    for hours in (6, 6.25, 9.5, 20):
        now = start + int(hours * HOUR)
        want = current_state(store, site, now)
        got = frames.state(now, data_end)
        assert got == want, hours
    assert frames._span[1] >= start + 20 * HOUR  # one frame served them all


async def test_restart_backoff_resets_after_a_healthy_run():
    """Three quick failures raise the backoff attempt to 3; a run that then lasts longer than
    ``healthy_s`` before failing restarts from attempt 0 (a fresh 1-s class delay, not the
    cap)."""
    backoff = Backoff(0.001, 0.01)
    attempts: list[int] = []

    async def run() -> None:
        attempts.append(backoff.attempt)
        if len(attempts) == 4:
            await asyncio.sleep(0.3)  # healthy for longer than healthy_s
        if len(attempts) < 6:
            raise RuntimeError("boom")

    await asyncio.wait_for(_supervise("test", run, backoff=backoff, healthy_s=0.2), 10)
    assert attempts == [0, 1, 2, 3, 1, 2]


def test_truncated_store_is_one_line_naming_the_file(tmp_path, capsys):
    good = tmp_path / "good.duckdb"
    with Store(good) as store:
        store.execute("CREATE TABLE filler AS SELECT range AS a FROM range(200000)")
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    config = str(example_path("single_hall"))
    assert main(["pue", "--config", config, "--store", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(bad) in err[0] and "corrupt or truncated" in err[0] and "backup" in err[0]


def test_store_path_that_cannot_be_created_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = str(example_path("single_hall"))
    code = main(["simulate", "--config", config, "--days", "0.01", "--no-progress",
                 "--store", str(blocker / "s.duckdb")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blocker) in err[0] and "writable" in err[0], err


def test_bash_completion_lists_commands_and_options():
    script = bash_completion(build_parser())
    assert "optimize) case" in script and "--fast-forward" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_readings_fed_ahead_of_the_simulated_clock_are_not_taken_for_future_ones(tmp_path):
    """Fast-forward feeds the calculator up to 59 min past the simulated clock at once; the
    calculator's future-skew rule (default 300 s) must count from that horizon, so none of
    those readings is dropped as from the future."""
    from dcpue.service.daemon import FEED_AHEAD_MS, Runtime
    from dcpue.service.demo import SimClock

    site = load_site(example_path("single_hall"))
    site.store.path = tmp_path / "s.duckdb"
    with Store(site.store.path) as store:
        twin = Twin(site)
        simulate_into(twin, store, 2 / 24, progress=False)
        clock = SimClock(twin.now_ms - MINUTE)
        runtime = Runtime(site, store, clock, hold_future=True)
        simulate_into(twin, store, 2 / 24, progress=False)  # stored, then fed as the clock runs
        clock.now += MINUTE
        assert runtime.ingest() > 0
        assert runtime.calculator.ignored_future == 0
        assert runtime.calculator.latest_ms == clock.now + FEED_AHEAD_MS


def test_dead_letters_on_metrics_add_the_collectors_counts_since_the_store_read():
    """Computed: /metrics' dead letters by reason. Declared: the store's counts at its last
    read (40 nan from an earlier run), the collector's counts then (nan 5) and now (nan 25,
    bad_json 3). A flood since the read shows at once; nothing is counted twice."""
    got = dead_letters_now({"nan": 40, "unknown_meter": 2}, {"nan": 25, "bad_json": 3}, {"nan": 5})
    assert got == {"nan": 60, "unknown_meter": 2, "bad_json": 3}
    assert dead_letters_now({"nan": 40}, {"nan": 5}, {"nan": 5}) == {"nan": 40}


def test_memoised_values_of_a_battery_site_equal_the_snapshot():
    """Computed: the daemon's values (origins of an hour of final window ends from one read
    of the bus meters) and a plain calculator's snapshot, minute by minute over 90 minutes, on
    the microgrid example (PV, battery: CUE and REF follow the provenance ledger, read from
    the store). Declared: the constant powers of tests.metrics.synth; the tolerance (1e-9)."""
    from dcpue.metrics import provenance

    from tests.metrics.synth import MICROGRID_KW, T0, WATER_M3_PER_H, counters, microgrid_site

    site = microgrid_site(windows=["15m", "1h", "1d"])
    store = Store()
    cols = counters(MICROGRID_KW, T0, 300, water_m3_per_h=WATER_M3_PER_H)  # every meter
    store.append(cols)
    plain, memo = RollingCalculator(site, store), MemoCalculator(site, store)
    assert not memo.origin_free
    reads: list[int] = []
    whole = provenance.stored_window_origins

    def counted(site_, store_, windows, factors):
        reads.append(len(windows))
        return whole(site_, store_, windows, factors)

    import dcpue.service.daemon as daemon

    daemon.stored_window_origins = counted  # type: ignore[assignment]
    try:
        for calc in (plain, memo):
            calc.update(cols)
        for k in range(180, 270):
            now = T0 + k * MINUTE
            want = {key: f.value for key, f in plain.snapshot(now).items()}
            got = memo.values(now)
            assert got.keys() == want.keys()
            for key, value in got.items():
                assert value == (None if want[key] is None
                                 else pytest.approx(want[key], rel=1e-9)), (key, now)
    finally:
        daemon.stored_window_origins = whole
    assert want["cue.1h"] is not None and want["ref.1h"] is not None
    # one read per window and block of final ends (here all 90 minutes are final)
    assert len(reads) <= 3 * 3 and sum(reads) >= 3 * 90, reads
