from dcpue.cli import run

raise SystemExit(run())
