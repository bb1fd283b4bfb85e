"""Stored proposals: the :class:`Proposal` record, its table ``proposals`` and a short view.

Light on purpose (JSON, dataclasses, the store): ``dcpue optimize proposals`` lists them without
loading the plant model's libraries (scikit-learn, pandas, SciPy); the search that makes a
proposal is :mod:`dcpue.optimizer.propose`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dcpue.core.store import Store

#: Proposal status values: ``proposed`` (a change), ``keep`` (no change), ``accepted`` and
#: ``applied`` (written back to devices), ``rejected``.
STATUSES = ("proposed", "keep", "accepted", "applied", "rejected")


@dataclass(frozen=True, slots=True)
class Proposal:
    """A setpoint proposal and why.

    Power figures are the objective in kW: total facility power (IT included, with IT power
    predicted per candidate when the model learned how it responds to inlet temperature;
    ``current_it_kw``/``proposed_it_kw``), or cooling + IT power for ``target = "cooling"``;
    PUE is never the objective. ``saving_pct`` is relative to the predicted current power. ``confidence`` is the
    probability that the saving is positive, assuming independent normal prediction errors with
    the model's cross-validated RMSE: ``Phi(saving / (sqrt(2) * rmse))``. ``binding`` names the
    constraints that stop a further saving (``inlet_limit``, ``max_step:<setpoint>``,
    ``bound:<setpoint>``, ``trust:<setpoint>``, ``override:<setpoint>``).
    """

    id: str
    ts_ms: int
    site: str
    status: str
    current: dict[str, float]
    proposed: dict[str, float]
    reason: str
    target: str = "facility"
    current_kw: float | None = None
    proposed_kw: float | None = None
    current_it_kw: float | None = None
    proposed_it_kw: float | None = None
    saving_kw: float = 0.0
    saving_pct: float = 0.0
    predicted_inlet_c: float | None = None
    inlet_limit_c: float | None = None
    confidence: float = 0.0
    binding: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The proposal as one JSON object (pure; what MQTT carries and the table stores)."""
        data = asdict(self)
        data["binding"] = list(self.binding)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Proposal:
        data = json.loads(text)
        data["binding"] = tuple(data.get("binding", ()))
        return cls(**data)


class ProposalLog:
    """Proposals in the store's DuckDB table ``proposals`` (one JSON payload per row)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.execute(
            "CREATE TABLE IF NOT EXISTS proposals (id VARCHAR PRIMARY KEY, ts_ms BIGINT NOT NULL,"
            " site VARCHAR NOT NULL, status VARCHAR NOT NULL, saving_kw DOUBLE,"
            " payload VARCHAR NOT NULL)"
        )

    def save(self, proposal: Proposal) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO proposals VALUES (?, ?, ?, ?, ?, ?)",
            [proposal.id, proposal.ts_ms, proposal.site, proposal.status, proposal.saving_kw,
             proposal.to_json()],
        )

    def list(self, limit: int = 20, status: str | None = None) -> list[Proposal]:
        """Most recent first."""
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows = self.store.execute(
            f"SELECT payload FROM proposals {where} ORDER BY ts_ms DESC, rowid DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [Proposal.from_json(r[0]) for r in rows]

    def get(self, proposal_id: str) -> Proposal | None:
        row = self.store.execute(
            "SELECT payload FROM proposals WHERE id = ?", [proposal_id]
        ).fetchone()
        return None if row is None else Proposal.from_json(row[0])

    def set_status(self, proposal: Proposal, status: str) -> Proposal:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        updated = replace(proposal, status=status)
        self.save(updated)
        return updated


def describe(proposal: Proposal) -> dict[str, Any]:
    """A short, human-oriented view of a proposal for listings."""
    changes = {
        k: f"{proposal.current[k]:g} -> {v:g}"
        for k, v in proposal.proposed.items() if v != proposal.current.get(k)
    }
    return {
        "id": proposal.id, "ts_ms": proposal.ts_ms, "status": proposal.status,
        "saving_kw": round(proposal.saving_kw, 2), "saving_pct": round(proposal.saving_pct, 3),
        "confidence": round(proposal.confidence, 3), "changes": changes,
        "binding": list(proposal.binding), "reason": proposal.reason,
    }
