"""Print the soak's figures (``record_property("soak", ...)``) in the terminal summary, so the
exact counts appear in every test log without ``-s``."""

from __future__ import annotations

import json


def pytest_terminal_summary(terminalreporter) -> None:
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "soak":
                    terminalreporter.write_sep("-", f"soak figures ({report.nodeid}, {outcome})")
                    terminalreporter.write_line(json.dumps(json.loads(value), indent=1))
