"""``dcpue check-config``: validate a site file."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a site configuration file")
    p.add_argument("file", help="site TOML file")
    p.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from dcpue.config.site import load_site

    site = load_site(args.file)
    roles = sorted({m.role.value for m in site.meters})
    print(f"{args.file}: ok: site {site.id!r}, {len(site.meters)} meters ({', '.join(roles)})")
    return 0
