"""Alert engine: PUE drift, static thresholds and stale meters, as a pure state machine.

No I/O: :meth:`AlertEngine.evaluate` takes an :class:`Observation` (time, current figure values,
expected PUE, last reading time per meter) and returns the alerts that changed (newly firing or
resolved). Its whole state round-trips through JSON (:meth:`AlertEngine.dump` /
:meth:`AlertEngine.load`) so a restarted daemon resumes pending and firing alerts.

Drift detection follows the CUSUM (Page 1954) and EWMA (Roberts 1959) control charts as given in
Montgomery, *Introduction to Statistical Quality Control*, ch. 9; see
:class:`dcpue.config.service.DriftSettings` for the formulas and parameters.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dcpue.config.service import METER_FIGURE, AlertSettings, StaleSettings, ThresholdRule
from dcpue.core.readings import ms_to_datetime

MINUTE_MS = 60_000
#: Ingestion must stay behind this long before IngestLag fires (and caught up to resolve).
INGEST_LAG_FOR_MS = 5 * MINUTE_MS
#: Dead letters per minute above which DeadLetterStorm fires (after DEAD_LETTER_STORM_FOR_MS;
#: it resolves below half the rate for as long): a faulty or hostile gateway on the broker.
DEAD_LETTER_STORM_PER_MIN = 1000.0
DEAD_LETTER_STORM_FOR_MS = 2 * MINUTE_MS
#: Resolved alerts kept in memory for the API (most recent first).
HISTORY_SIZE = 100


@dataclass(slots=True)
class Alert:
    """One alert instance. ``ends_ms`` is None while it fires; ``value`` is the triggering value."""

    id: str
    name: str
    severity: str
    summary: str
    labels: dict[str, str]
    starts_ms: int
    ends_ms: int | None = None
    value: float | None = None

    @property
    def firing(self) -> bool:
        return self.ends_ms is None

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with ISO-8601 times, used by the API and the notifiers."""
        out = asdict(self)
        out["status"] = self.status
        out["starts_at"] = ms_to_datetime(self.starts_ms).isoformat()
        out["ends_at"] = None if self.ends_ms is None else ms_to_datetime(self.ends_ms).isoformat()
        return out


@dataclass(slots=True)
class Gate:
    """Hysteresis and minimum duration around a raise / clear condition.

    The alert fires once ``raise_cond`` has held for ``for_ms`` and resolves once ``clear_cond``
    has held for ``clear_for_ms``; in between (neither condition) nothing changes.
    """

    active: bool = False
    pending_since: int | None = None
    clear_since: int | None = None

    def step(
        self, now_ms: int, raise_cond: bool, clear_cond: bool, for_ms: int, clear_for_ms: int
    ) -> str | None:
        """Advance to ``now_ms``; return ``"fire"``, ``"resolve"`` or None."""
        if not self.active:
            if not raise_cond:
                self.pending_since = None
                return None
            if self.pending_since is None:
                self.pending_since = now_ms
            if now_ms - self.pending_since >= for_ms:
                self.active, self.clear_since = True, None
                return "fire"
            return None
        if not clear_cond:
            self.clear_since = None
            return None
        if self.clear_since is None:
            self.clear_since = now_ms
        if now_ms - self.clear_since >= clear_for_ms:
            self.active, self.pending_since = False, None
            return "resolve"
        return None


@dataclass(slots=True)
class DriftState:
    """Learned baseline (Welford running mean / variance) and the detector statistic."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    s_hi: float = 0.0
    s_lo: float = 0.0
    last_sample_ms: int | None = None
    last_residual: float | None = None
    gate: Gate = field(default_factory=Gate)

    def learn(self, residual: float) -> None:
        self.n += 1
        delta = residual - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (residual - self.mean)


def cusum_step(s_hi: float, s_lo: float, z: float, k: float, cap: float) -> tuple[float, float]:
    """One tabular-CUSUM update on a standardised sample ``z`` (Montgomery eq. 9.2–9.3), capped."""
    return min(cap, max(0.0, s_hi + z - k)), min(cap, max(0.0, s_lo - z - k))


def ewma_limit(lam: float, width: float) -> float:
    """Asymptotic EWMA control limit in sigma units: L·sqrt(λ / (2 − λ)) (Montgomery eq. 9.26)."""
    return width * math.sqrt(lam / (2.0 - lam))


@dataclass(frozen=True, slots=True)
class Observation:
    """What the engine sees at one evaluation.

    ``figures``: current value of each rolling figure by name (e.g. ``pue.1h``; None when the
    window has insufficient data). ``expected_pue``: the model's PUE for the same window's IT
    load and weather (dimensionless), None if no model. ``last_seen_ms``: latest reading time
    (UTC ms) per meter id.
    """

    now_ms: int
    figures: Mapping[str, float | None]
    expected_pue: float | None = None
    last_seen_ms: Mapping[str, int] = field(default_factory=dict)
    #: How far ingestion is behind while readings wait to be stored (s; 0 when caught up).
    ingest_lag_s: float = 0.0
    #: Dead letters the collector produced since it started (all reasons; None: no collector).
    dead_letters: int | None = None


class AlertEngine:
    """Evaluates the configured rules and keeps alert state between evaluations."""

    def __init__(
        self, settings: AlertSettings, site_id: str, meters: list[str], started_ms: int,
        lag_limit_s: float = 300.0,
    ) -> None:
        self.settings = settings
        self.lag_limit_s = lag_limit_s
        self.site_id = site_id
        self.meters = meters
        self.started_ms = started_ms
        self.drift = DriftState()
        self.gates: dict[str, Gate] = {}
        self.active: dict[str, Alert] = {}
        self.history: deque[Alert] = deque(maxlen=HISTORY_SIZE)
        self._dead_letters_seen: tuple[int, int] | None = None  # (ms, count) last evaluation

    # -- persistence ----------------------------------------------------------------------
    def dump(self) -> str:
        """The engine's state as JSON (for ``Store.set_state``)."""
        drift = asdict(self.drift)
        return json.dumps({
            "started_ms": self.started_ms,
            "drift": drift,
            "gates": {k: asdict(g) for k, g in self.gates.items()},
            "active": [asdict(a) for a in self.active.values()],
            "history": [asdict(a) for a in self.history],
        })

    def load(self, text: str) -> None:
        """Restore a state written by :meth:`dump` (rules come from the current settings)."""
        data = json.loads(text)
        self.started_ms = int(data["started_ms"])
        drift = dict(data["drift"])
        drift["gate"] = Gate(**drift["gate"])
        self.drift = DriftState(**drift)
        self.gates = {k: Gate(**g) for k, g in data["gates"].items()}
        self.active = {a["id"]: Alert(**a) for a in data["active"]}
        self.history = deque((Alert(**a) for a in data["history"]), maxlen=HISTORY_SIZE)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, obs: Observation) -> list[Alert]:
        """Run every rule at ``obs.now_ms``; return alerts that started or resolved now."""
        changes: list[Alert] = []
        if self.settings.drift.enabled:
            self._drift(obs, changes)
        for rule in self.settings.thresholds:
            self._threshold(rule, obs, changes)
        if self.settings.stale.enabled:
            self._stale(self.settings.stale, obs, changes)
        self._ingest_lag(obs, changes)
        self._dead_letter_storm(obs, changes)
        return changes

    def drift_statistic(self) -> tuple[float, float] | None:
        """Current (statistic, limit) in sigma units, or None while learning the baseline."""
        cfg = self.settings.drift
        sigma = self._sigma()
        if sigma is None:
            return None
        if cfg.method == "cusum":
            return max(self.drift.s_hi, self.drift.s_lo if cfg.two_sided else 0.0), cfg.h
        stat = self.drift.s_hi - self.drift.s_lo
        return (abs(stat) if cfg.two_sided else stat), ewma_limit(cfg.ewma_lambda, cfg.ewma_l)

    def drift_suspected(self) -> bool:
        """Drift firing, pending, or its statistic above the clear level (retraining now would
        teach the model the fault)."""
        cfg = self.settings.drift
        stat = self.drift_statistic()
        return self.drift.gate.active or (
            stat is not None and stat[0] >= cfg.clear_ratio * stat[1]
        )

    def _sigma(self) -> float | None:
        """Residual standard deviation (PUE units), None while the baseline is being learned."""
        cfg, st = self.settings.drift, self.drift
        if (cfg.sigma is None or cfg.bias is None) and st.n < cfg.baseline_samples:
            return None
        if cfg.sigma is not None:
            return cfg.sigma
        return max(cfg.min_sigma, math.sqrt(st.m2 / (st.n - 1)))

    def figures_read(self) -> frozenset[str]:
        """The rolling figures (``pue.1h``, ...) the rules read: all an evaluation needs."""
        names = {r.figure for r in self.settings.thresholds
                 if not r.figure.startswith(METER_FIGURE)}
        if self.settings.drift.enabled:
            names.add(self.settings.drift.figure)
        return frozenset(names)

    def drift_due(self, now_ms: int) -> bool:
        """Whether an evaluation at ``now_ms`` takes a drift sample (so needs expected PUE)."""
        cfg, last = self.settings.drift, self.drift.last_sample_ms
        return cfg.enabled and (
            last is None or now_ms - last >= cfg.sample_every_min * MINUTE_MS
        )

    def _drift(self, obs: Observation, changes: list[Alert]) -> None:
        cfg, st = self.settings.drift, self.drift
        actual = obs.figures.get(cfg.figure)
        if actual is None or obs.expected_pue is None or not self.drift_due(obs.now_ms):
            return
        residual = actual - obs.expected_pue
        st.last_sample_ms, st.last_residual = obs.now_ms, residual
        sigma = self._sigma()
        if sigma is None:
            st.learn(residual)
            return
        bias = cfg.bias if cfg.bias is not None else st.mean
        z = (residual - bias) / sigma
        if cfg.method == "cusum":
            st.s_hi, st.s_lo = cusum_step(st.s_hi, st.s_lo, z, cfg.k, 2.0 * cfg.h)
        else:
            # EWMA kept as s_hi − s_lo with one of them zero, so both methods share the state.
            ewma = cfg.ewma_lambda * z + (1.0 - cfg.ewma_lambda) * (st.s_hi - st.s_lo)
            st.s_hi, st.s_lo = max(ewma, 0.0), max(-ewma, 0.0)
        stat, limit = self.drift_statistic() or (0.0, 1.0)
        verdict = st.gate.step(
            obs.now_ms, stat > limit, stat < cfg.clear_ratio * limit,
            cfg.for_min * MINUTE_MS, cfg.clear_for_min * MINUTE_MS,
        )
        if verdict == "fire":
            higher = st.s_hi >= st.s_lo
            pct = 100.0 * residual / obs.expected_pue
            summary = (
                f"PUE at {self.site_id} has drifted {'above' if higher else 'below'} what the "
                f"model expects for this IT load and weather: {actual:.3f} measured vs "
                f"{obs.expected_pue:.3f} expected ({pct:+.1f} %, {cfg.figure}). "
                + ("Check chillers, economizer and setpoints for lost efficiency."
                   if higher else "Check the meters: the facility uses less than expected.")
            )
            labels = {"direction": "up" if higher else "down", "figure": cfg.figure,
                      "method": cfg.method}
            self._fire("PueDrift", "pue_drift", cfg.severity, summary, labels, obs.now_ms,
                       residual, changes)
        elif verdict == "resolve":
            self._resolve("pue_drift", obs.now_ms, changes)

    def _threshold(self, rule: ThresholdRule, obs: Observation, changes: list[Alert]) -> None:
        value = obs.figures.get(rule.figure)
        key = f"threshold:{rule.name}"
        gate = self.gates.setdefault(key, Gate())
        if value is None:
            raise_cond = clear_cond = False
        elif rule.above is not None:
            raise_cond, clear_cond = value > rule.above, value <= rule.above - rule.clear_margin
        else:
            assert rule.below is not None
            raise_cond, clear_cond = value < rule.below, value >= rule.below + rule.clear_margin
        verdict = gate.step(obs.now_ms, raise_cond, clear_cond, rule.for_min * MINUTE_MS, 0)
        if verdict == "fire":
            assert value is not None
            bound = rule.above if rule.above is not None else rule.below
            side = "above" if rule.above is not None else "below"
            summary = rule.summary or (
                f"{rule.figure} at {self.site_id} is {value:.3f}, {side} the limit {bound:g} "
                f"for at least {rule.for_min} min."
            )
            self._fire(rule.name, key, rule.severity, summary, {"figure": rule.figure},
                       obs.now_ms, value, changes)
        elif verdict == "resolve":
            self._resolve(key, obs.now_ms, changes)

    def _stale(self, cfg: StaleSettings, obs: Observation, changes: list[Alert]) -> None:
        limit_ms = round(cfg.factor * cfg.expected_interval_s * 1000)
        for meter in cfg.meters if cfg.meters is not None else self.meters:
            seen = obs.last_seen_ms.get(meter, self.started_ms)
            age_ms = obs.now_ms - seen
            key = f"stale:{meter}"
            gate = self.gates.get(key) or self.gates.setdefault(key, Gate())
            verdict = gate.step(obs.now_ms, age_ms > limit_ms, age_ms <= limit_ms, 0, 0)
            if verdict == "fire":
                summary = (
                    f"Meter {meter} at {self.site_id} has sent no reading for "
                    f"{age_ms / 60_000:.0f} min (expected every {cfg.expected_interval_s} s). "
                    "Figures that use it lose coverage; check the meter, gateway and network."
                )
                self._fire("MeterStale", key, cfg.severity, summary, {"meter": meter},
                           obs.now_ms, age_ms / 1000.0, changes)
            elif verdict == "resolve":
                self._resolve(key, obs.now_ms, changes)

    def _ingest_lag(self, obs: Observation, changes: list[Alert]) -> None:
        """IngestLag: readings wait while ingestion is more than ``lag_limit_s`` behind for
        5 min; resolves once it is back under half the limit for 5 min."""
        lag, limit = obs.ingest_lag_s, self.lag_limit_s
        gate = self.gates.setdefault("ingest_lag", Gate())
        verdict = gate.step(obs.now_ms, lag > limit, lag <= limit / 2, INGEST_LAG_FOR_MS,
                            INGEST_LAG_FOR_MS)
        if verdict == "fire":
            summary = (
                f"Ingestion at {self.site_id} is {lag:.0f} s behind (limit {limit:.0f} s): the "
                "collector or the store cannot keep up with what the gateways send. Readings "
                "wait at the broker (nothing is lost); figures and alerts lag behind."
            )
            self._fire("IngestLag", "ingest_lag", "warning", summary, {}, obs.now_ms, lag,
                       changes)
        elif verdict == "resolve":
            self._resolve("ingest_lag", obs.now_ms, changes)

    def _dead_letter_storm(self, obs: Observation, changes: list[Alert]) -> None:
        """DeadLetterStorm: more than :data:`DEAD_LETTER_STORM_PER_MIN` dead letters a minute
        between evaluations for 2 min; resolves below half that rate for 2 min."""
        if obs.dead_letters is None:
            return
        seen, self._dead_letters_seen = self._dead_letters_seen, (obs.now_ms, obs.dead_letters)
        if seen is None or obs.now_ms <= seen[0]:
            return
        rate = max(obs.dead_letters - seen[1], 0) / (obs.now_ms - seen[0]) * MINUTE_MS
        limit = DEAD_LETTER_STORM_PER_MIN
        gate = self.gates.setdefault("dead_letter_storm", Gate())
        verdict = gate.step(obs.now_ms, rate > limit, rate <= limit / 2,
                            DEAD_LETTER_STORM_FOR_MS, DEAD_LETTER_STORM_FOR_MS)
        if verdict == "fire":
            summary = (
                f"{rate:,.0f} dead letters a minute at {self.site_id} (limit {limit:,.0f}): a "
                "gateway sends malformed or unknown-meter readings. Valid readings are still "
                "stored; /metrics dcpue_dead_letters shows the reasons."
            )
            self._fire("DeadLetterStorm", "dead_letter_storm", "warning", summary, {},
                       obs.now_ms, rate, changes)
        elif verdict == "resolve":
            self._resolve("dead_letter_storm", obs.now_ms, changes)

    def _fire(
        self, name: str, key: str, severity: str, summary: str, labels: dict[str, str],
        now_ms: int, value: float | None, changes: list[Alert],
    ) -> None:
        alert = Alert(
            id=f"{self.site_id}:{key}", name=name, severity=severity, summary=summary,
            labels={"alertname": name, "site": self.site_id, "severity": severity, **labels},
            starts_ms=now_ms, value=value,
        )
        self.active[key] = alert
        changes.append(alert)

    def _resolve(self, key: str, now_ms: int, changes: list[Alert]) -> None:
        alert = self.active.pop(key, None)
        if alert is None:
            return
        alert.ends_ms = now_ms
        self.history.appendleft(alert)
        changes.append(alert)
