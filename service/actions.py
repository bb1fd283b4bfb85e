"""Operator actions on alerts: acknowledge and silence, kept in the store's state table.

An acknowledgement records who (the token's name, never its secret) and when; a silence lasts
until a time in UTC ms. Both survive restarts. Notifiers are not consulted here: the
dashboard shows them, and :meth:`AlertActions.silenced` tells whether an alert is silenced.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from dcpue.core.store import Store

STATE_KEY = "service.alert_actions"
#: Longest silence, in ms (7 days).
MAX_SILENCE_MS = 7 * 86_400_000


@dataclass
class Action:
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    silenced_until_ms: int | None = None
    silenced_by: str | None = None


class AlertActions:
    """Acknowledgements and silences by alert id."""

    def __init__(self, store: Store) -> None:
        self.store = store
        saved = store.get_state(STATE_KEY)
        self.by_id: dict[str, Action] = {
            k: Action(**v) for k, v in (json.loads(saved) if saved else {}).items()
        }

    def _save(self) -> None:
        self.store.set_state(STATE_KEY, json.dumps({k: asdict(v)
                                                    for k, v in self.by_id.items()}))

    def acknowledge(self, alert_id: str, who: str, now_ms: int) -> Action:
        action = self.by_id.setdefault(alert_id, Action())
        action.acknowledged_by, action.acknowledged_ms = who, now_ms
        self._save()
        return action

    def silence(self, alert_id: str, who: str, now_ms: int, minutes: float) -> Action:
        """Silence for ``minutes`` (0 lifts the silence); at most :data:`MAX_SILENCE_MS`."""
        action = self.by_id.setdefault(alert_id, Action())
        until = now_ms + min(int(minutes * 60_000), MAX_SILENCE_MS)
        action.silenced_until_ms, action.silenced_by = (until, who) if minutes > 0 else (None,
                                                                                         None)
        self._save()
        return action

    def silenced(self, alert_id: str, now_ms: int) -> bool:
        action = self.by_id.get(alert_id)
        return bool(action and action.silenced_until_ms and action.silenced_until_ms > now_ms)

    def view(self, alert_id: str, now_ms: int) -> dict:
        """The alert's action fields for the API (a lapsed silence shows as none)."""
        action = self.by_id.get(alert_id, Action())
        out = asdict(action)
        if not self.silenced(alert_id, now_ms):
            out["silenced_until_ms"] = out["silenced_by"] = None
        return out
