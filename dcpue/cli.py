"""The ``dcpue`` command line: each component registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dcpue import __version__
from dcpue.config import ConfigError
from dcpue.core.store import StoreBusy

#: Modules that contribute sub-commands through ``register(subparsers)``.
COMMAND_MODULES = (
    "dcpue.config.cli",
    "dcpue.twin.cli",
    "dcpue.collector.cli",
    "dcpue.collector.import_cli",
    "dcpue.metrics.cli",
    "dcpue.metrics.meter_cli",
    "dcpue.carbon.cli",
    "dcpue.fleet.cli",
    "dcpue.optimizer.cli",
    "dcpue.service.cli",
    "dcpue.service.export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcpue", description="Data-center energy, PUE and carbon daemon."
    )
    parser.add_argument("--version", action="version", version=f"dcpue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; each sets ``func(args) -> exit code`` via ``set_defaults``.

    A configuration error prints one line to stderr and exits with status 2; a store held by
    another process (e.g. the running daemon) prints one line and exits with status 1.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"dcpue: config error: {exc}", file=sys.stderr)
        return 2
    except StoreBusy as exc:
        print(f"dcpue: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
