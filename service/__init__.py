"""The long-running daemon, HTTP API, dashboard and alerts."""
