"""The ``dcpue`` command line: each component registers its own sub-commands.

Start-up is kept light: the ``cli`` modules import only the standard library at module level
and load pandas, DuckDB, scikit-learn, pvlib or pydantic inside the command that needs them, so
``dcpue --version`` and ``--help`` answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from dcpue import __version__

#: Modules that contribute sub-commands through ``register(subparsers)``.
COMMAND_MODULES = (
    "dcpue.config.cli",
    "dcpue.twin.cli",
    "dcpue.collector.cli",
    "dcpue.metrics.cli",
    "dcpue.carbon.cli",
    "dcpue.optimizer.cli",
    "dcpue.service.cli",
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


def _is(exc: BaseException, module: str, name: str) -> bool:
    """``isinstance(exc, module.name)`` without importing ``module`` (it is loaded if the
    command raised one of its exceptions)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(exc, cls)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; each sets ``func(args) -> exit code`` via ``set_defaults``.

    A configuration error prints one line to stderr and exits with status 2; a store held by
    another process (e.g. the running daemon) and the other failures :func:`operator_error`
    recognises print one line and exit with status 1.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _is(exc, "dcpue.config.site", "ConfigError"):
            print(f"dcpue: config error: {exc}", file=sys.stderr)
            return 2
        if _is(exc, "dcpue.core.store", "StoreBusy"):
            print(f"dcpue: {exc}", file=sys.stderr)
            return 1
        message = operator_error(exc)
        if message is None:
            raise
        print(f"dcpue: {message}", file=sys.stderr)
        return 1


def operator_error(exc: BaseException) -> str | None:
    """One line for a failure the operator can fix (busy port, store file or directory), or
    None for a bug (which keeps its traceback)."""
    if _is(exc, "dcpue.service.daemon", "StartupError"):
        return str(exc)
    if _is(exc, "duckdb", "IOException"):
        text = str(exc)
        path = re.search(r'file "([^"]+)"', text)
        name = path.group(1) if path else "the store file"
        if "not a valid DuckDB database" in text or "read enough bytes" in text:
            return (f"store {name} is corrupt or truncated ({text.splitlines()[0]}); "
                    f"restore it from a backup, or move it aside (mv {name} {name}.bad) and "
                    "start again with a new store (readings not yet acknowledged to the "
                    "broker are delivered again)")
        return f"store {name}: {text.splitlines()[0]}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return (f"cannot use {exc.filename}: {exc.strerror or exc}; check that it and its "
                "directory exist and are writable by this user (the store: [store] path or "
                "--store)")
    return None
