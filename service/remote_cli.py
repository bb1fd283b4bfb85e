"""One store, many readers: CLI read commands answered by the running daemon.

DuckDB lets one process write a store file. While ``dcpue run`` holds it, a read command
(``dcpue pue``, ``report``, ``export``, ``optimize proposals|train``) that finds the store busy sends
its arguments to the daemon (``POST /api/cli``), which runs the very same command in its own
process, where opening the store again shares the daemon's database, and returns the
command's stdout, stderr and exit code. The output is therefore the offline output.

The daemon says where it answers in ``<store>.daemon.json`` beside the store (written when the
API is up, removed on a clean stop); the request carries the site's bearer token if one is set.
Only read commands are accepted; anything else gets 403.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcpue.config.site import Site
    from starlette.routing import BaseRoute

#: Commands the daemon runs for a client: (command, sub-command or None for any). All read
#: the store only; ``optimize train`` writes the model file, which the daemon then loads.
READ_COMMANDS: frozenset[tuple[str, str | None]] = frozenset({
    ("pue", None), ("report", None), ("export", None), ("optimize", "proposals"),
    ("optimize", "train"),
})
#: Longest a client waits for the daemon to run its command, in s.
TIMEOUT_S = 300.0
_RUN = threading.Lock()  # one forwarded command at a time (stdout is redirected)


def daemon_file(store_path: str | Path) -> Path:
    return Path(f"{store_path}.daemon.json")


def write_daemon_file(store_path: str | Path, url: str) -> None:
    daemon_file(store_path).write_text(json.dumps({"pid": os.getpid(), "url": url}))


def remove_daemon_file(store_path: str | Path) -> None:
    with contextlib.suppress(OSError):
        daemon_file(store_path).unlink()


def bearer_token(site: Site) -> str | None:
    """The API token from ``[service] bearer_token`` or the variable ``bearer_token_env`` names."""
    cfg = site.service
    if cfg.bearer_token_env:
        return os.environ.get(cfg.bearer_token_env) or cfg.bearer_token
    return cfg.bearer_token


def is_read_command(argv: Sequence[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return False
    sub = words[1] if len(words) > 1 else None
    return (words[0], None) in READ_COMMANDS or (words[0], sub) in READ_COMMANDS


def _absolute(argv: Sequence[str], cwd: Path) -> list[str]:
    """Arguments naming an existing file or directory (relative to the client's ``cwd``)
    made absolute, so the daemon, whose working directory differs, finds them."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if arg.startswith("--") and not eq:
            out.append(arg)
            continue
        if value and not Path(value).is_absolute() and (cwd / value).exists():
            value = str(cwd / value)
        out.append(f"{key}{eq}{value}")
    return out


# -- client -------------------------------------------------------------------------------
def forward(args: argparse.Namespace, argv: Sequence[str]) -> int | None:
    """Run a read command through the daemon holding its store; prints what the command
    printed and returns its exit code, or None when this is no read command or no daemon
    answers (the caller then reports the busy store)."""
    if not is_read_command(argv) or getattr(args, "config", None) is None:
        return None
    from dcpue.config.site import load_site

    site = load_site(args.config)
    store = getattr(args, "store", None) or site.store.path
    try:
        url = json.loads(daemon_file(store).read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None
    body = json.dumps({"argv": _absolute(argv, Path.cwd())}).encode()
    request = urllib.request.Request(f"{url}/api/cli", body, method="POST",
                                     headers={"Content-Type": "application/json"})
    token = bearer_token(site)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            answer = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        detail = exc.read().decode(errors="replace") if isinstance(exc, urllib.error.HTTPError) else exc
        print(f"dcpue: the daemon at {url} did not run the command: {detail}", file=sys.stderr)
        return 1
    sys.stdout.write(answer["stdout"])
    sys.stderr.write(answer["stderr"])
    return int(answer["exit"])


# -- daemon -------------------------------------------------------------------------------
def run_command(argv: Sequence[str]) -> dict[str, Any]:
    """Run ``dcpue ARGV`` in this process, capturing stdout and stderr."""
    from dcpue.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _RUN, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: usage errors, --help
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:  # reported to the client, never fatal to the daemon
            print(f"dcpue: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
    return {"stdout": out.getvalue(), "stderr": err.getvalue(), "exit": code}


def routes(after: Callable[[list[str]], None] = lambda argv: None) -> list[BaseRoute]:
    """``POST /api/cli``: run a read command against the daemon's store, then ``after(argv)``
    (e.g. load the model a forwarded ``optimize train`` saved)."""
    import asyncio

    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def cli(request: Request) -> JSONResponse:
        try:
            argv = (await request.json())["argv"]
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'body must be {"argv": [str, ...]}'}, 400)
        if not is_read_command(argv):
            return JSONResponse({"error": "only read commands run through the daemon: pue, "
                                 "report, export, optimize proposals|train"}, 403)
        answer = await asyncio.to_thread(run_command, argv)
        if answer["exit"] == 0:
            after(argv)
        return JSONResponse(answer)

    return [Route("/api/cli", cli, methods=["POST"])]
