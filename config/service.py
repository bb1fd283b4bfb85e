"""Daemon, HTTP API and alert settings (owned by dcpue.service)."""

from dcpue.config.base import Section


class ServiceSettings(Section):
    """HTTP API, scheduler and alerting; extended by the service module."""
