"""The daemon's use of the optimizer: model file, daily retraining, expected PUE, proposals.

Thin glue over :mod:`dcpue.optimizer` (frames, models, proposals); every function reads the
store and returns plain values so the scheduler jobs stay one-liners.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import aiomqtt
import numpy as np
import pandas as pd
from dcpue.config import Site
from dcpue.core.store import Store
from dcpue.optimizer.frames import (
    FrameError,
    TrainingFrame,
    build_frame,
)
from dcpue.optimizer.models import (
    ModelError,
    ModelKind,
    PlantModel,
    Target,
    load_model,
    save_model,
    train,
)
from dcpue.optimizer.propose import (
    PlantState,
    Proposal,
    ProposalLog,
    current_state,
    model_path,
    plant_state,
    propose,
    publish_proposal,
)
from dcpue.optimizer.writeback import Overrides

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


def try_load_model(site: Site) -> PlantModel | None:
    """The saved plant model, or None when there is none yet (logged once by the caller)."""
    try:
        return load_model(model_path(site))
    except ModelError as exc:
        log.info("no plant model yet (%s); the daemon trains one itself once %g days of "
                 "readings are stored, or run `dcpue optimize train --config FILE` now (it "
                 "works while the daemon runs)", exc,
                 site.service.schedule.first_train_after_days)
        return None


def fit_and_save(
    frame: TrainingFrame, kind: ModelKind, target: Target, splits: int, path: Path
) -> tuple[PlantModel | None, str, float]:
    """Fit a model on ``frame`` and save it at ``path`` (runs in the trainer's worker
    process), scored on the holdout only: proposals rest on those scores, and skipping the
    cross-validation ``dcpue optimize train`` reports halves the fit. Returns the model, or
    None and why it could not be fitted, and the CPU seconds the fit took."""
    cpu0 = time.process_time()
    try:
        model = train(frame, kind, target, splits, cross_validated=False)
    except ValueError as exc:
        return None, str(exc), time.process_time() - cpu0
    save_model(model, path)
    return model, "", time.process_time() - cpu0


class Trainer:
    """Fits plant models in one worker process.

    A fit costs seconds of CPU (bagged gradient boosting, a holdout fit and the final fit;
    no cross-validation, see :func:`fit_and_save`): in the daemon's process it would hold the
    interpreter lock that long, stalling the API and the
    per-minute jobs. The frame is read here (the store belongs to this process); the fit and
    the model file are the worker's, which a forkserver starts once with scikit-learn loaded.
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.fits = 0  # fits finished, with or without a model
        self.fit_cpu_s = 0.0  # the worker's CPU seconds over those fits

    def start(self, store: Store, now_ms: int, days: float) -> Future[PlantModel | None] | None:
        """Start fitting on the last ``days`` days of readings before ``now_ms``; the future
        gives the saved model, or None (logged) when the data could not train one. None when
        there is no usable frame at all."""
        cfg = self.site.optimizer
        try:
            frame = build_frame(store, self.site, now_ms - round(days * DAY_MS), now_ms)
        except FrameError as exc:
            log.warning("retraining skipped: %s", exc)
            return None
        done: Future[PlantModel | None] = Future()
        fit = self._worker().submit(fit_and_save, frame, cfg.model_kind, cfg.target,
                                    cfg.cv_splits, model_path(self.site))
        fit.add_done_callback(lambda f: self._finished(f, done))
        return done

    def _worker(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["dcpue.optimizer.models"])
                self._pool = ProcessPoolExecutor(1, mp_context=context)
            return self._pool

    def warm(self) -> None:
        """Start the worker process now, scikit-learn loading there beside this process's own
        start-up, so the first fit does not wait seconds for it. Returns at once: starting a
        worker waits for the forkserver's imports, so a thread of its own does it."""
        threading.Thread(target=self._start_worker, name="trainer-warm", daemon=True).start()

    def _start_worker(self) -> None:
        try:
            self._worker().submit(os.getpid)
        except Exception as exc:  # the first fit tries again (and reports what fails)
            log.warning("the trainer's worker process did not start: %r", exc)
            with self._pool_lock:
                self._pool = None

    def _finished(self, fit: Future[tuple[PlantModel | None, str, float]],
                  done: Future[PlantModel | None]) -> None:
        try:
            model, why, cpu_s = fit.result()
        except Exception as exc:  # the worker died (killed, out of memory): a new one next time
            log.error("plant model fit failed: %r", exc)
            self._pool = None
            done.set_result(None)
            return
        self.fits += 1
        self.fit_cpu_s += cpu_s
        if model is None:
            log.warning("retraining skipped: %s", why)
        else:
            log.info("plant model retrained on %d rows in %.1f s CPU, scores %s", model.rows,
                     cpu_s, model.error_metrics)
        done.set_result(model)

    def close(self) -> None:
        """Stop the worker: fits not yet started are cancelled, one under way is waited for
        (its model file is written whole, and loaded at the daemon's next start)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RecentFrames:
    """The drift detector's expected PUE and the proposals' plant state from one frame per
    stretch of stored data.

    A frame is built from the first window asked for up to the end of the stored data and
    reused for every later window inside it on the same step grid: one store read per
    fast-forward chunk (a simulated day) instead of one per drift sample or proposal; in real
    time each call still reads just its own window. Rows are kept by the frame's rules over the
    whole span (e.g. its median sample count), which for regular data equals a frame of the
    window alone (tests/service/test_plant_frames.py checks it against the optimizer's
    ``current_state``). Use one instance per step grid.
    """

    def __init__(self, site: Site, store: Store) -> None:
        self.site, self.store = site, store
        self._frame: pd.DataFrame | None = None
        self._span = (0, 0, 0)  # start, end, step (ms)

    def rows(self, start_ms: int, end_ms: int, step_s: int, data_end_ms: int) -> pd.DataFrame:
        """Frame rows of the complete steps in ``[start_ms, end_ms)``."""
        step = step_s * 1000
        lo, hi, cached_step = self._span
        inside = (self._frame is not None and cached_step == step and lo <= start_ms
                  and end_ms <= hi and (start_ms - lo) % step == 0)
        if not inside:
            hi = start_ms + max(end_ms - start_ms, (data_end_ms - start_ms) // step * step)
            try:
                self._frame = build_frame(self.store, self.site, start_ms, hi, step_s=step_s).data
            except FrameError:
                self._frame = None
                return pd.DataFrame()
            self._span = (start_ms, hi, step)
        data = self._frame
        assert data is not None
        ts = data.index.to_numpy(np.int64)
        return data[(ts >= start_ms) & (ts + step <= end_ms)]

    def expected_pue(
        self, model: PlantModel, start_ms: int, end_ms: int, data_end_ms: int,
    ) -> float | None:
        """PUE the model expects over ``[start_ms, end_ms)``: Σ predicted facility kW / Σ IT kW.

        Rows are the model's own step. A cooling-power model adds the measured non-cooling
        overhead (facility − cooling) to its prediction. None when no row is usable.
        """
        data = self.rows(start_ms, end_ms, model.step_s, data_end_ms)
        if len(data) == 0:
            return None
        power = model.predict({c: data[c].to_numpy() for c in model.features}).power_kw
        if model.target == "cooling":
            power = power + (data["facility_kw"] - data["cooling_kw"]).to_numpy()
        it = data["it_kw"].to_numpy()
        value = float(np.sum(power) / np.sum(it))
        return value if np.isfinite(value) and value > 0 else None

    def state(self, end_ms: int, data_end_ms: int) -> PlantState:
        """Conditions and setpoints of the last complete ``[optimizer] step_s`` row of the
        4 steps before ``end_ms`` (as :func:`dcpue.optimizer.propose.current_state`)."""
        step_s = self.site.optimizer.step_s
        step = step_s * 1000
        end = end_ms // step * step
        data = self.rows(end - 4 * step, end, step_s, data_end_ms)
        return plant_state(self.site, data, step)


def propose_now(
    model: PlantModel, site: Site, store: Store, now_ms: int,
    frames: RecentFrames | None = None, data_end_ms: int | None = None,
    proposal_log: ProposalLog | None = None, overrides: Overrides | None = None,
) -> Proposal | None:
    """Propose setpoints for the latest complete step and log it in ``proposals`` (the plant
    state from ``frames`` when given, which reuses one frame up to ``data_end_ms``; the
    daemon passes its own ``proposal_log`` and ``overrides``, opened once)."""
    try:
        state = current_state(store, site, now_ms) if frames is None else frames.state(
            now_ms, data_end_ms or now_ms)
    except FrameError as exc:
        log.warning("no proposal: %s", exc)
        return None
    fixed = (overrides or Overrides(store)).fixed_values(state.setpoints, state.instances)
    proposal = propose(model, state, site.optimizer, site=site.id, fixed=fixed)
    (proposal_log or ProposalLog(store)).save(proposal)
    return proposal


async def announce(site: Site, proposal: Proposal) -> bool:
    """Publish ``proposal`` on ``[optimizer.mqtt] proposal_topic`` when ``publish_proposals``
    is on; a broker that cannot be reached is logged, never raised. Returns True if sent."""
    broker = site.optimizer.mqtt
    if not broker.publish_proposals:
        return False
    try:
        await publish_proposal(broker, broker.proposal_topic, proposal, qos=broker.qos)
    except (aiomqtt.MqttError, OSError) as exc:
        log.warning("proposal not published on %s:%d: %s", broker.host, broker.port, exc)
        return False
    return True
