"""Shared twin fixtures: the single-hall example and a model explored and trained on it once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dcpue.config import Site, example_path, load_site
from dcpue.optimizer.evaluate import explore_and_train
from dcpue.optimizer.models import PlantModel

JULY = datetime(2023, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def hall() -> Site:
    return load_site(example_path("single_hall"))


@pytest.fixture(scope="session")
def july_model(hall: Site) -> PlantModel:
    """14 days of exploration (setpoints held 30 min, drawn within the hard bounds) before
    1 July 2023 in the Greensboro TMY, framed at 15 min, gradient-boosted model."""
    return explore_and_train(hall, JULY, 14.0)
