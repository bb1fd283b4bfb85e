"""Shared fixtures: real Mosquitto and VictoriaMetrics servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.servers import Mosquitto, VictoriaMetrics


@pytest.fixture
def mosquitto(tmp_path):
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def victoria(tmp_path):
    with VictoriaMetrics(tmp_path / "victoria") as vm:
        yield vm
