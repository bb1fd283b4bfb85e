"""The daemon's use of the optimizer: model file, daily retraining, expected PUE, proposals.

Thin glue over :mod:`dcpue.optimizer` (frames, models, proposals); every function reads the
store and returns plain values so the scheduler jobs stay one-liners.
"""

from __future__ import annotations

import logging

import aiomqtt
import numpy as np
from dcpue.config import SetpointName, Site
from dcpue.core.store import Store
from dcpue.optimizer.frames import FrameError, build_frame
from dcpue.optimizer.models import ModelError, PlantModel, load_model, save_model, train
from dcpue.optimizer.propose import (
    Proposal,
    ProposalLog,
    current_state,
    model_path,
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
        log.info("no plant model: %s", exc)
        return None


def retrain(site: Site, store: Store, now_ms: int, days: float) -> PlantModel | None:
    """Fit a new model on the last ``days`` days of readings and save it; None if too little data."""
    cfg = site.optimizer
    try:
        frame = build_frame(store, site, now_ms - round(days * DAY_MS), now_ms)
        model = train(frame, cfg.model_kind, cfg.target, cfg.cv_splits)
    except (FrameError, ValueError) as exc:
        log.warning("retraining skipped: %s", exc)
        return None
    save_model(model, model_path(site))
    log.info("plant model retrained on %d rows, cv %s", model.rows, model.metrics["cv"])
    return model


def expected_pue(
    model: PlantModel, site: Site, store: Store, start_ms: int, end_ms: int
) -> float | None:
    """PUE the model expects over ``[start_ms, end_ms)``: Σ predicted facility kW / Σ IT kW.

    Rows are the model's own step. A cooling-power model adds the measured non-cooling overhead
    (facility − cooling) to its prediction. None when no row of the window is usable.
    """
    try:
        frame = build_frame(store, site, start_ms, end_ms, step_s=model.step_s)
    except FrameError:
        return None
    data = frame.data
    if len(data) == 0:
        return None
    power = model.predict({c: data[c].to_numpy() for c in model.features}).power_kw
    if model.target == "cooling":
        power = power + (data["facility_kw"] - data["cooling_kw"]).to_numpy()
    it = data["it_kw"].to_numpy()
    value = float(np.sum(power) / np.sum(it))
    return value if np.isfinite(value) and value > 0 else None


def propose_now(
    model: PlantModel, site: Site, store: Store, now_ms: int
) -> Proposal | None:
    """Propose setpoints for the latest complete step and log it in ``proposals``."""
    try:
        state = current_state(store, site, now_ms)
    except FrameError as exc:
        log.warning("no proposal: %s", exc)
        return None
    fixed: dict[SetpointName, float] = Overrides(store).fixed_values(state.setpoints)
    proposal = propose(model, state, site.optimizer, site=site.id, fixed=fixed)
    ProposalLog(store).save(proposal)
    return proposal


async def announce(site: Site, proposal: Proposal) -> bool:
    """Publish ``proposal`` on ``[optimizer.mqtt] proposal_topic`` when ``publish_proposals``
    is on; a broker that cannot be reached is logged, never raised. Returns True if sent."""
    broker = site.optimizer.mqtt
    if not broker.publish_proposals:
        return False
    try:
        await publish_proposal(broker.host, broker.proposal_topic, proposal, port=broker.port,
                               qos=broker.qos)
    except (aiomqtt.MqttError, OSError) as exc:
        log.warning("proposal not published on %s:%d: %s", broker.host, broker.port, exc)
        return False
    return True
