"""The daemon's plant-model fits in the trainer's worker process (service.plant.Trainer)."""

from __future__ import annotations

import asyncio
import logging
import time

from dcpue.config import example_path, load_site
from dcpue.core.store import Store
from dcpue.optimizer.models import load_model
from dcpue.optimizer.proposals import ProposalLog
from dcpue.optimizer.propose import model_path
from dcpue.service.daemon import Runtime
from dcpue.service.demo import TwinFeed
from dcpue.service.plant import Trainer

DAY_MS = 86_400_000


def stored_sweep(tmp_path, days: float):
    site = load_site(example_path("single_hall"))
    site.store.path = tmp_path / "site.duckdb"
    store = Store(site.store.path)
    feed = TwinFeed(site, store, commission_days=days)
    while feed.now_ms < feed.twin.start_ms + days * DAY_MS:
        store.append(feed.next(1440))
    return site, store, feed.now_ms


def test_fit_in_the_worker_process_is_saved_and_counted(tmp_path):
    """Computed: a model fitted by the worker process on 3 simulated days of the bundled hall's
    commissioning sweep, the file the daemon loads, its scores (holdout only), the fit count
    and the worker's CPU seconds. Declared: nothing (the rows are whatever the frame kept)."""
    site, store, now = stored_sweep(tmp_path, 3.0)
    trainer = Trainer(site)
    try:
        fit = trainer.start(store, now, 3.0)
        assert fit is not None
        model = fit.result(timeout=600)
        assert model is not None and model.rows > 100
        assert load_model(model_path(site)).rows == model.rows  # written by the worker
        assert trainer.fits == 1 and trainer.fit_cpu_s > 0.0
        # the daemon's fits score on the holdout only (cross-validation: `optimize train`)
        assert set(model.metrics) == {"holdout"} and model.error_metrics["rows"] > 0
    finally:
        trainer.close()
        store.close()


def test_too_little_data_is_a_logged_skip_not_a_model(tmp_path, caplog):
    """Computed: what a fit on 2 hours of readings gives (no model, the reason logged, the
    current model file untouched). Declared: the 2 hours."""
    site, store, now = stored_sweep(tmp_path, 1.0)
    trainer = Trainer(site)
    try:
        with caplog.at_level(logging.INFO, logger="dcpue.service.plant"):
            fit = trainer.start(store, now, 2 / 24)
            result = None if fit is None else fit.result(timeout=600)
        assert result is None
        assert "retraining skipped" in caplog.text
        assert not model_path(site).exists()
    finally:
        trainer.close()
        store.close()


def test_fast_forward_defers_proposals_while_the_first_model_is_fitted(tmp_path):
    """Computed: the daemon's proposals job in fast-forward, on 3.25 simulated days of the
    bundled hall's sweep and no model yet. The first call starts the fit; the next returns at once
    while the fit runs (the other jobs are not held for seconds); once the model is adopted,
    the end of the fast-forward makes the deferred one and the next call its own, each at its
    fire time. Declared: the fire times."""
    site, store, now = stored_sweep(tmp_path, 3.25)
    runtime = Runtime(site, store, lambda: now, hold_future=True)
    runtime.clock_mode = "fast-forward"
    step = 15 * 60_000
    try:
        assert runtime.model is None
        assert runtime.job_proposals(now - 2 * step) is None  # starts the first fit
        fit = runtime._training
        assert fit is not None
        started = time.perf_counter()
        assert runtime.job_proposals(now - step) is None
        assert time.perf_counter() - started < 1.0  # not waited for
        assert not fit.done()  # a fit takes seconds: this call came while it ran
        assert runtime._deferred == [now - step]
        fit.result(timeout=600)
        for _ in range(200):  # the model is adopted by the fit's callback
            if runtime.model is not None:
                break
            time.sleep(0.05)
        assert runtime.model is not None
        # the end of a fast-forward makes what is still deferred (the model is adopted)
        runtime.make_deferred_proposals()
        assert runtime._deferred == []
        sends = runtime.job_proposals(now)  # its announcement (not published here)
        assert sends is not None
        asyncio.run(sends)
        runtime.proposal_log.flush()
        made = [p.ts_ms for p in ProposalLog(store).list(10)]
        assert sorted(made) == [now - step, now]
    finally:
        runtime.trainer.close()
        store.close()
