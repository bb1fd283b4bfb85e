"""Sub-commands of dcpue.carbon (filled in by that component)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this component's sub-commands to the ``dcpue`` parser."""
